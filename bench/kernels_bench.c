/*
 * `modserve bench kernels` (see kernels_bench.h): written over the op table only, so
 * the same code times any backend. Method (as llm.c's dev harnesses): inputs random,
 * never zeros; a warm-up call; then 5 repetitions of `iters` calls between two
 * ms_ctx_sync, and the median per-call time. Bytes count each input read once and each
 * output written once; FLOPs count 2 per multiply-add. Fractions are of the ceilings
 * measured first on the same device.
 *
 * The stage numbers run the real model code (llm/llama.h, encoder/vision.h) with
 * ms_weights_open_dummy weights at the llava-1.5-7b preset, generated straight into
 * device memory. The torch side (bench/kernels_torch.py) prints the same work; set
 * MS_BENCH_TORCH_SDPA_MS to its causal 4k SDPA time to get the comparison printed here.
 */
#include "bench/kernels_bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "encoder/vision.h"
#include "kernels/backend.h"
#include "llm/config.h"
#include "llm/kv_cache.h"
#include "llm/llama.h"
#include "llm/model_init.h"
#include "llm/weights.h"

typedef struct bench {
    ms_backend *be;
    ms_ctx *ctx;
    bool small;        /* --device cpu: shapes divided down for a smoke test */
    int iters;
    double copy_bw;    /* bytes/s, read + write */
    double mm_rate;    /* FLOP/s */
    uint64_t rng;
} bench;

/* ---- tensors and random data ---- */

static ms_tensor new_tensor(bench *b, ms_dtype dt, int ndim, const int64_t *shape) {
    ms_tensor t;
    ms_error err = {0};
    if (ms_backend_tensor(b->be, dt, ndim, shape, &t, &err) != MS_OK)
        ms_panic(__FILE__, __LINE__, "bench kernels: %s", err.msg);
    return t;
}

static ms_tensor t1(bench *b, ms_dtype dt, int64_t n) {
    return new_tensor(b, dt, 1, &n);
}

static ms_tensor t2(bench *b, ms_dtype dt, int64_t r, int64_t c) {
    const int64_t s[2] = {r, c};
    return new_tensor(b, dt, 2, s);
}

static ms_tensor t3(bench *b, ms_dtype dt, int64_t x, int64_t y, int64_t z) {
    const int64_t s[3] = {x, y, z};
    return new_tensor(b, dt, 3, s);
}

static float urand(bench *b) {
    b->rng ^= b->rng << 13;
    b->rng ^= b->rng >> 7;
    b->rng ^= b->rng << 17;
    return (float)((b->rng >> 40) * (1.0 / 16777216.0));
}

/* Uniform values in [lo, hi) in the tensor's float dtype, uploaded in row chunks. */
static void fill_random(bench *b, ms_tensor *t, float lo, float hi) {
    const int64_t rows = ms_tensor_rows(t), cols = ms_tensor_cols(t);
    if (rows * cols == 0) return;
    int64_t chunk = ((int64_t)1 << 22) / (cols > 0 ? cols : 1);
    if (chunk < 1) chunk = 1;
    if (chunk > rows) chunk = rows;
    float *f = ms_xmalloc((size_t)(chunk * cols) * sizeof(float));
    void *h = ms_xmalloc((size_t)(chunk * cols) * ms_dtype_size(t->dtype));
    for (int64_t i = 0; i < chunk * cols; i++) f[i] = lo + (hi - lo) * urand(b);
    const int64_t shape2[2] = {rows, cols};
    ms_tensor flat = ms_tensor_reshape(t, 2, shape2);
    ms_convert_host(h, t->dtype, f, MS_DTYPE_F32, chunk * cols);
    for (int64_t r = 0; r < rows; r += chunk) {
        const int64_t n = rows - r < chunk ? rows - r : chunk;
        ms_tensor v = ms_tensor_row_view(&flat, r, n);
        ms_op_upload(b->ctx, &v, h); /* same random block repeated: not zeros */
    }
    ms_ctx_sync(b->ctx);
    free(f);
    free(h);
}

static ms_tensor upload_i32(bench *b, const int32_t *v, int ndim, const int64_t *shape) {
    ms_tensor t = new_tensor(b, MS_DTYPE_I32, ndim, shape);
    ms_op_upload(b->ctx, &t, v);
    return t;
}

/* ---- timing ---- */

typedef void (*op_fn)(bench *b, void *arg);

static int cmp_double(const void *a, const void *c) {
    const double x = *(const double *)a, y = *(const double *)c;
    return (x > y) - (x < y);
}

/* Median seconds per call. The arena is rewound after each call (ops may take scratch). */
static double time_op(bench *b, op_fn fn, void *arg, int iters) {
    fn(b, arg);
    ms_ctx_sync(b->ctx);
    ms_ctx_reset(b->ctx);
    double t[5];
    for (int r = 0; r < 5; r++) {
        const double t0 = ms_time_now();
        for (int i = 0; i < iters; i++) {
            fn(b, arg);
            ms_ctx_reset(b->ctx);
        }
        ms_ctx_sync(b->ctx);
        t[r] = (ms_time_now() - t0) / iters;
    }
    qsort(t, 5, sizeof t[0], cmp_double);
    return t[2];
}

static void report_bw(bench *b, const char *name, double sec, double bytes) {
    const double bw = bytes / sec;
    printf("  %-46s %9.3f ms %8.1f GB/s  %5.1f%% of copy\n", name, sec * 1e3, bw / 1e9,
           b->copy_bw > 0 ? 100.0 * bw / b->copy_bw : 0.0);
}

static void report_flops(bench *b, const char *name, double sec, double flops) {
    const double rate = flops / sec;
    printf("  %-46s %9.3f ms %8.1f TFLOP/s %5.1f%% of matmul\n", name, sec * 1e3, rate / 1e12,
           b->mm_rate > 0 ? 100.0 * rate / b->mm_rate : 0.0);
}

/* ---- ops under test: one arg struct, one fn each ---- */

typedef struct op_args {
    ms_tensor y, x, w, bias, a, g, r, pos, cu, kc, vc, bt, lens, ids;
    int32_t max_q, max_ctx, patch;
    bool causal, has_bias;
    float mean[3], std[3];
    ms_sample_params *sp;
    float *u;
} op_args;

static void run_copy(bench *b, void *p) { op_args *a = p; ms_op_copy(b->ctx, &a->y, &a->x); }
static void run_matmul(bench *b, void *p) {
    op_args *a = p;
    ms_op_matmul(b->ctx, &a->y, &a->x, &a->w, a->has_bias ? &a->bias : NULL);
}
static void run_rmsnorm(bench *b, void *p) { op_args *a = p; ms_op_rmsnorm(b->ctx, &a->y, &a->x, &a->g, 1e-5f); }
static void run_add_rmsnorm(bench *b, void *p) {
    op_args *a = p;
    ms_op_add_rmsnorm(b->ctx, &a->r, &a->x, &a->y, &a->g, 1e-5f);
}
static void run_layernorm(bench *b, void *p) {
    op_args *a = p;
    ms_op_layernorm(b->ctx, &a->y, &a->x, &a->g, &a->bias, 1e-5f);
}
static void run_rope(bench *b, void *p) { op_args *a = p; ms_op_rope(b->ctx, &a->x, &a->pos, 10000.0f); }
static void run_silu_mul(bench *b, void *p) { op_args *a = p; ms_op_silu_mul(b->ctx, &a->y, &a->x, &a->a); }
static void run_gelu(bench *b, void *p) { op_args *a = p; ms_op_gelu(b->ctx, &a->y, &a->x); }
static void run_quick_gelu(bench *b, void *p) { op_args *a = p; ms_op_quick_gelu(b->ctx, &a->y, &a->x); }
static void run_add(bench *b, void *p) { op_args *a = p; ms_op_add(b->ctx, &a->y, &a->x, &a->a); }
static void run_softmax(bench *b, void *p) { op_args *a = p; ms_op_softmax(b->ctx, &a->y, &a->x); }
static void run_get_rows(bench *b, void *p) { op_args *a = p; ms_op_get_rows(b->ctx, &a->y, &a->w, &a->ids); }
static void run_kv_write(bench *b, void *p) {
    op_args *a = p;
    ms_op_kv_write(b->ctx, &a->kc, &a->vc, &a->x, &a->a, &a->ids);
}
static void run_attention(bench *b, void *p) {
    op_args *a = p;
    ms_op_attention(b->ctx, &a->y, &a->x, &a->w, &a->a, &a->cu, a->max_q, a->causal,
                    1.0f / sqrtf((float)a->x.shape[2]));
}
static void run_paged(bench *b, void *p) {
    op_args *a = p;
    ms_op_attention_paged(b->ctx, &a->y, &a->x, &a->kc, &a->vc, &a->bt, &a->cu, &a->lens,
                          a->max_q, a->max_ctx, 1.0f / sqrtf((float)a->x.shape[2]));
}
static void run_patch_embed(bench *b, void *p) {
    op_args *a = p;
    ms_op_patch_embed(b->ctx, &a->y, &a->x, &a->w, a->patch);
}
static void run_image_normalize(bench *b, void *p) {
    op_args *a = p;
    ms_op_image_normalize(b->ctx, &a->y, &a->ids, a->mean, a->std, 1.0f / 255.0f);
}
static void run_sample(bench *b, void *p) {
    op_args *a = p;
    ms_op_sample(b->ctx, &a->ids, &a->x, a->sp, a->u);
}

static void free_args(bench *b, op_args *a) {
    ms_tensor *all[] = {&a->y, &a->x, &a->w, &a->bias, &a->a, &a->g, &a->r, &a->pos,
                        &a->cu, &a->kc, &a->vc, &a->bt, &a->lens, &a->ids};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) ms_backend_tensor_free(b->be, all[i]);
    memset(a, 0, sizeof *a);
}

/* ---- ceilings ---- */

static void measure_ceilings(bench *b) {
    const ms_dtype act = b->be->act_dtype;
    const int64_t n = b->small ? ((int64_t)1 << 24) : ((int64_t)1 << 29); /* 1 GiB of bf16 */
    op_args a = {0};
    a.x = t2(b, act, n / 4096, 4096);
    a.y = t2(b, act, n / 4096, 4096);
    fill_random(b, &a.x, -1, 1);
    const double sec = time_op(b, run_copy, &a, b->small ? 3 : 10);
    b->copy_bw = 2.0 * (double)ms_tensor_nbytes(&a.x) / sec;
    printf("ceiling  copy (device to device, %.2f GB read + written)  %.3f ms  %.1f GB/s\n",
           2.0 * (double)ms_tensor_nbytes(&a.x) / 1e9, sec * 1e3, b->copy_bw / 1e9);
    free_args(b, &a);

    const int64_t m = b->small ? 512 : 8192;
    a.x = t2(b, act, m, m);
    a.w = t2(b, act, m, m);
    a.y = t2(b, act, m, m);
    fill_random(b, &a.x, -1, 1);
    fill_random(b, &a.w, -1, 1);
    const double msec = time_op(b, run_matmul, &a, b->small ? 2 : 10);
    b->mm_rate = 2.0 * (double)m * m * m / msec;
    printf("ceiling  matmul %s %lldx%lldx%lld                     %.3f ms  %.1f TFLOP/s\n",
           ms_dtype_name(act), (long long)m, (long long)m, (long long)m, msec * 1e3,
           b->mm_rate / 1e12);
    free_args(b, &a);
}

/* ---- each op at LLaVA-1.5-7B shapes ---- */

static void bench_matmul(bench *b, const char *name, int64_t M, int64_t N, int64_t K,
                         bool bias, bool y_f32) {
    const ms_dtype act = b->be->act_dtype;
    op_args a = {0};
    a.x = t2(b, act, M, K);
    a.w = t2(b, act, N, K);
    a.y = t2(b, y_f32 ? MS_DTYPE_F32 : act, M, N);
    a.has_bias = bias;
    if (bias) {
        a.bias = t1(b, act, N);
        fill_random(b, &a.bias, -1, 1);
    }
    fill_random(b, &a.x, -1, 1);
    fill_random(b, &a.w, -0.05f, 0.05f);
    const double sec = time_op(b, run_matmul, &a, b->iters);
    const double flops = 2.0 * M * N * K;
    const double bytes = (double)(M * K + N * K) * ms_dtype_size(act) + (double)ms_tensor_nbytes(&a.y);
    /* Decode-sized products are bound by reading the weight; the rest by arithmetic. */
    if (M <= 64) report_bw(b, name, sec, bytes);
    else report_flops(b, name, sec, flops);
    free_args(b, &a);
}

/* y = f(x [, a]) elementwise/rowwise ops over [M, N]; bytes = passes * M * N * size. */
static void bench_rowwise(bench *b, const char *name, op_fn fn, int64_t M, int64_t N,
                          int passes) {
    const ms_dtype act = b->be->act_dtype;
    op_args a = {0};
    a.x = t2(b, act, M, N);
    a.y = t2(b, act, M, N);
    a.a = t2(b, act, M, N);
    a.r = t2(b, act, M, N);
    a.g = t1(b, act, N);
    a.bias = a.g; /* layernorm's beta: the same vector */
    fill_random(b, &a.x, -2, 2);
    fill_random(b, &a.a, -2, 2);
    fill_random(b, &a.r, -2, 2);
    fill_random(b, &a.g, 0.5f, 1.5f);
    const double sec = time_op(b, fn, &a, b->iters);
    report_bw(b, name, sec, (double)passes * M * N * ms_dtype_size(act));
    a.bias = (ms_tensor){0};
    free_args(b, &a);
}

static void bench_rope(bench *b, int64_t T, int64_t H, int64_t D) {
    op_args a = {0};
    a.x = t3(b, b->be->act_dtype, T, H, D);
    fill_random(b, &a.x, -1, 1);
    int32_t *pos = ms_xmalloc((size_t)T * sizeof *pos);
    for (int64_t i = 0; i < T; i++) pos[i] = (int32_t)i;
    a.pos = upload_i32(b, pos, 1, &T);
    free(pos);
    const double sec = time_op(b, run_rope, &a, b->iters);
    report_bw(b, "rope [T,32,128] in place", sec, 2.0 * (double)ms_tensor_nbytes(&a.x));
    free_args(b, &a);
}

static void bench_rows(bench *b, int64_t T, int64_t V, int64_t D) {
    op_args a = {0};
    a.w = t2(b, b->be->act_dtype, V, D);
    a.y = t2(b, b->be->act_dtype, T, D);
    fill_random(b, &a.w, -1, 1);
    int32_t *ids = ms_xmalloc((size_t)T * sizeof *ids);
    for (int64_t i = 0; i < T; i++) ids[i] = (int32_t)((i * 7919) % V);
    a.ids = upload_i32(b, ids, 1, &T);
    free(ids);
    const double sec = time_op(b, run_get_rows, &a, b->iters);
    report_bw(b, "get_rows (embedding) [T,4096]", sec, 2.0 * (double)ms_tensor_nbytes(&a.y));
    free_args(b, &a);
}

static void bench_kv_write(bench *b, int64_t T, int64_t H, int64_t D) {
    op_args a = {0};
    const ms_dtype act = b->be->act_dtype;
    const int64_t bs = 16, nb = (T + bs - 1) / bs, cs[4] = {nb, bs, H, D};
    a.kc = new_tensor(b, act, 4, cs);
    a.vc = new_tensor(b, act, 4, cs);
    a.x = t3(b, act, T, H, D);
    a.a = t3(b, act, T, H, D);
    fill_random(b, &a.x, -1, 1);
    fill_random(b, &a.a, -1, 1);
    int32_t *slots = ms_xmalloc((size_t)T * sizeof *slots);
    for (int64_t i = 0; i < T; i++) slots[i] = (int32_t)((i * 37) % T); /* scattered slots */
    a.ids = upload_i32(b, slots, 1, &T);
    free(slots);
    const double sec = time_op(b, run_kv_write, &a, b->iters);
    report_bw(b, "kv_write [T,32,128] k+v", sec, 4.0 * (double)ms_tensor_nbytes(&a.x));
    free_args(b, &a);
}

/* Packed attention: nseq sequences of len, H heads (Hkv = H), head dim D. */
static double bench_attention(bench *b, const char *name, int64_t nseq, int64_t len, int64_t H,
                              int64_t D, bool causal) {
    const ms_dtype act = b->be->act_dtype;
    const int64_t T = nseq * len;
    op_args a = {0};
    a.x = t3(b, act, T, H, D);
    a.w = t3(b, act, T, H, D);
    a.a = t3(b, act, T, H, D);
    a.y = t3(b, act, T, H, D);
    fill_random(b, &a.x, -1, 1);
    fill_random(b, &a.w, -1, 1);
    fill_random(b, &a.a, -1, 1);
    int32_t *cu = ms_xmalloc((size_t)(nseq + 1) * sizeof *cu);
    for (int64_t s = 0; s <= nseq; s++) cu[s] = (int32_t)(s * len);
    const int64_t ncu = nseq + 1;
    a.cu = upload_i32(b, cu, 1, &ncu);
    free(cu);
    a.max_q = (int32_t)len;
    a.causal = causal;
    const double sec = time_op(b, run_attention, &a, b->iters > 5 ? 5 : b->iters);
    /* q.k and p.v: 2 products of len x len x D per head; causal does half. */
    const double flops = 4.0 * nseq * H * len * len * D * (causal ? 0.5 : 1.0);
    report_flops(b, name, sec, flops);
    free_args(b, &a);
    return sec;
}

/* Decode attention: nseq sequences, one query each, ctx tokens cached, block 16. */
static void bench_paged(bench *b, const char *name, int64_t nseq, int64_t ctx, int64_t H,
                        int64_t D) {
    const ms_dtype act = b->be->act_dtype;
    const int64_t bs = 16, per = (ctx + bs - 1) / bs, nb = nseq * per, cs[4] = {nb, bs, H, D};
    op_args a = {0};
    a.kc = new_tensor(b, act, 4, cs);
    a.vc = new_tensor(b, act, 4, cs);
    a.x = t3(b, act, nseq, H, D);
    a.y = t3(b, act, nseq, H, D);
    fill_random(b, &a.kc, -1, 1);
    fill_random(b, &a.vc, -1, 1);
    fill_random(b, &a.x, -1, 1);
    int32_t *bt = ms_xmalloc((size_t)nb * sizeof *bt), *lens = ms_xmalloc((size_t)nseq * 4);
    int32_t *cu = ms_xmalloc((size_t)(nseq + 1) * sizeof *cu);
    for (int64_t i = 0; i < nb; i++) bt[i] = (int32_t)((i * 7) % nb); /* scattered blocks */
    for (int64_t s = 0; s < nseq; s++) lens[s] = (int32_t)ctx;
    for (int64_t s = 0; s <= nseq; s++) cu[s] = (int32_t)s;
    const int64_t bts[2] = {nseq, per}, ncu = nseq + 1;
    a.bt = upload_i32(b, bt, 2, bts);
    a.lens = upload_i32(b, lens, 1, &nseq);
    a.cu = upload_i32(b, cu, 1, &ncu);
    free(bt);
    free(lens);
    free(cu);
    a.max_q = 1;
    a.max_ctx = (int32_t)ctx;
    const double sec = time_op(b, run_paged, &a, b->iters);
    report_bw(b, name, sec, 2.0 * (double)nseq * ctx * H * D * ms_dtype_size(act));
    free_args(b, &a);
}

static void bench_vision_ops(bench *b, int64_t N, int64_t S) {
    const ms_dtype act = b->be->act_dtype;
    op_args a = {0};
    const int64_t ps[4] = {N, 3, S, S}, rs[4] = {N, S, S, 3};
    const int64_t P = N * (S / 14) * (S / 14);
    a.x = new_tensor(b, act, 4, ps);
    a.w = t2(b, act, 1024, 3 * 14 * 14);
    a.y = t2(b, act, P, 1024);
    a.patch = 14;
    fill_random(b, &a.x, -2, 2);
    fill_random(b, &a.w, -0.05f, 0.05f);
    double sec = time_op(b, run_patch_embed, &a, b->iters);
    report_flops(b, "patch_embed 32x3x336x336 -> [18432,1024]", sec, 2.0 * P * 1024 * 588);
    free_args(b, &a);

    a.y = new_tensor(b, act, 4, ps);
    int32_t *rgb = ms_xmalloc((size_t)(N * S * S * 3) * sizeof *rgb);
    for (int64_t i = 0; i < N * S * S * 3; i++) rgb[i] = (int32_t)((i * 2654435761u) >> 24);
    a.ids = upload_i32(b, rgb, 4, rs);
    free(rgb);
    for (int c = 0; c < 3; c++) {
        a.mean[c] = 0.45f;
        a.std[c] = 0.27f;
    }
    sec = time_op(b, run_image_normalize, &a, b->iters);
    report_bw(b, "image_normalize 32x336x336x3 -> bf16 CHW", sec,
              (double)N * S * S * 3 * (4.0 + ms_dtype_size(act)));
    free_args(b, &a);
}

static void bench_sample(bench *b, int64_t B, int64_t V, float temperature) {
    op_args a = {0};
    a.x = t2(b, MS_DTYPE_F32, B, V);
    fill_random(b, &a.x, -10, 10);
    a.ids = new_tensor(b, MS_DTYPE_I32, 1, &B);
    a.sp = ms_xmalloc((size_t)B * sizeof *a.sp);
    a.u = ms_xmalloc((size_t)B * sizeof *a.u);
    for (int64_t i = 0; i < B; i++) {
        a.sp[i] = (ms_sample_params){temperature, 0, temperature > 0 ? 0.9f : 1.0f};
        a.u[i] = urand(b);
    }
    const double sec = time_op(b, run_sample, &a, b->iters);
    char name[96];
    snprintf(name, sizeof name, "sample [%lld,%lld] %s", (long long)B, (long long)V,
             temperature > 0 ? "top-p 0.9" : "greedy");
    report_bw(b, name, sec, (double)B * V * 4);
    free(a.sp);
    free(a.u);
    free_args(b, &a);
}

static void bench_ops(bench *b) {
    const int64_t T = b->small ? 64 : 2048, d = b->small ? 256 : 4096, ff = b->small ? 688 : 11008;
    const int64_t V = b->small ? 1000 : 32000, vt = b->small ? 2 * 50 : 32 * 577;
    const int64_t cd = d / 4, cff = d; /* CLIP: width 1024, MLP 4096 */
    printf("\nops at LLaVA-1.5-7B shapes (T = %lld prefill tokens)\n", (long long)T);
    bench_matmul(b, "matmul decode 1x4096 @ 4096x4096", 1, d, d, false, false);
    bench_matmul(b, "matmul decode 1x4096 @ 11008x4096", 1, ff, d, false, false);
    bench_matmul(b, "matmul decode 64x4096 @ 11008x4096", 64, ff, d, false, false);
    bench_matmul(b, "matmul lm_head 1x4096 @ 32000x4096 -> f32", 1, V, d, false, true);
    bench_matmul(b, "matmul prefill Tx4096 @ 11008x4096", T, ff, d, false, false);
    bench_matmul(b, "matmul prefill Tx11008 @ 4096x11008", T, d, ff, false, false);
    bench_matmul(b, "matmul CLIP 18464x1024 @ 4096x1024 +bias", vt, cff, cd, true, false);
    bench_rowwise(b, "rmsnorm [T,4096]", run_rmsnorm, T, d, 2);
    bench_rowwise(b, "add_rmsnorm [T,4096]", run_add_rmsnorm, T, d, 4);
    bench_rowwise(b, "layernorm [18464,1024]", run_layernorm, vt, cd, 2);
    bench_rowwise(b, "silu_mul [T,11008]", run_silu_mul, T, ff, 3);
    bench_rowwise(b, "gelu [T,4096]", run_gelu, T, d, 2);
    bench_rowwise(b, "quick_gelu [18464,4096]", run_quick_gelu, vt, d, 2);
    bench_rowwise(b, "add [T,4096]", run_add, T, d, 3);
    bench_rowwise(b, "softmax [T,4096]", run_softmax, T, d, 2);
    bench_rope(b, T, 32, 128);
    bench_rows(b, T, V, d);
    bench_kv_write(b, T, 32, 128);
    bench_attention(b, "attention prefill causal 1x2048 h32 d128", 1, T, 32, 128, true);
    bench_attention(b, "attention CLIP 32x577 h16 d64 full", b->small ? 2 : 32, b->small ? 50 : 577,
                    16, 64, false);
    bench_paged(b, "attention_paged decode b1 ctx1024 h32 d128", 1, b->small ? 64 : 1024, 32, 128);
    bench_paged(b, "attention_paged decode b64 ctx1024 h32 d128", b->small ? 4 : 64,
                b->small ? 64 : 1024, 32, 128);
    if (!b->small) bench_vision_ops(b, 32, 336);
    bench_sample(b, 64, V, 0.0f);
    bench_sample(b, 64, V, 0.8f);
}

/* ---- stages: the model code with dummy weights ---- */

static void target_line(const char *what, double achieved, double target, const char *unit,
                        bool higher_is_better) {
    const bool met = higher_is_better ? achieved >= target : achieved <= target;
    printf("TARGET %-44s %10.2f %-9s target %s %.2f  %s\n", what, achieved, unit,
           higher_is_better ? ">=" : "<=", target, met ? "MET" : "MISSED");
}

/* Bytes of the LLM weights one decode step reads: every language-model tensor but the
 * embedding table (one row of it per token). */
static double llm_weight_bytes(const ms_llava_config *cfg, double *flops_per_token) {
    ms_model_tensor *ts = NULL;
    const int32_t n = ms_llava_tensor_list(cfg, &ts);
    double bytes = 0, params_mm = 0;
    for (int32_t i = 0; i < n; i++) {
        if (strncmp(ts[i].name, "language_model.", 15) != 0) continue;
        const double ne = (double)ms_model_tensor_numel(&ts[i]);
        if (strstr(ts[i].name, "embed_tokens")) continue;
        bytes += ne * 2.0;
        if (ts[i].ndim == 2) params_mm += ne;
    }
    free(ts);
    *flops_per_token = 2.0 * params_mm;
    return bytes;
}

static double decode_step_time(bench *b, ms_llama *m, ms_kv_cache *kv, int nseq, int ctx_len,
                               ms_error *err) {
    const int32_t per = (ctx_len + 1 + kv->block_size - 1) / kv->block_size;
    int32_t *tables = ms_xmalloc((size_t)nseq * per * sizeof *tables);
    ms_llama_seq *seqs = ms_xcalloc((size_t)nseq, sizeof *seqs);
    int32_t *tok = ms_xmalloc((size_t)nseq * sizeof *tok);
    for (int s = 0; s < nseq; s++) {
        for (int32_t k = 0; k < per; k++) tables[s * per + k] = (s * per + k) % kv->n_blocks;
        tok[s] = 100 + s;
        seqs[s] = (ms_llama_seq){.tokens = &tok[s], .n_tokens = 1, .pos0 = ctx_len,
                                 .block_table = &tables[s * per], .n_blocks = per};
    }
    double t[7];
    int ok = 0;
    for (int r = 0; r < 7; r++) {
        ms_tensor logits;
        const double t0 = ms_time_now();
        if (ms_llama_forward(b->ctx, m, kv, seqs, nseq, &logits, err) != MS_OK) break;
        ms_ctx_sync(b->ctx);
        t[ok++] = ms_time_now() - t0;
        ms_ctx_reset(b->ctx);
    }
    free(tables);
    free(seqs);
    free(tok);
    if (ok < 7) return -1;
    qsort(t + 1, 6, sizeof t[0], cmp_double); /* the first step warms up */
    return t[3];
}

static void bench_stages(bench *b, double torch_sdpa_ms) {
    printf("\nstages (llava-1.5-7b, dummy weights on the device)\n");
    const double attn = bench_attention(b, "attention prefill causal 1x4096 h32 d128", 1, 4096,
                                        32, 128, true);
    if (torch_sdpa_ms > 0)
        target_line("prefill attention 4k hd128 vs torch SDPA (ms)", attn * 1e3, torch_sdpa_ms,
                    "ms", false);
    else
        printf("TARGET prefill attention 4k hd128: %.3f ms; torch SDPA: run bench/kernels_torch.py "
               "(or set MS_BENCH_TORCH_SDPA_MS)\n", attn * 1e3);

    ms_llava_config cfg;
    ms_error err = {0};
    ms_weights *w = NULL;
    ms_llama *m = NULL;
    ms_vision *vis = NULL;
    ms_kv_cache *kv = NULL;
    if (ms_llava_preset("llava-1.5-7b", &cfg, &err) != MS_OK ||
        ms_weights_open_dummy(&cfg, 1, &w, &err) != MS_OK) {
        printf("stages skipped: %s\n", err.msg);
        return;
    }
    const double t_load = ms_time_now();
    if (ms_llama_load(&cfg, w, b->ctx, &m, &err) != MS_OK ||
        ms_vision_load(&cfg, w, b->ctx, &vis, &err) != MS_OK) {
        printf("stages skipped: loading dummy weights: %s\n", err.msg);
        goto done;
    }
    ms_ctx_sync(b->ctx);
    printf("  dummy weights generated and loaded in %.1f s\n", ms_time_now() - t_load);

    /* Vision tower at batch 32. */
    {
        const int32_t S = cfg.vision.image_size;
        const int64_t ps[4] = {32, 3, S, S};
        ms_tensor px = new_tensor(b, b->be->act_dtype, 4, ps);
        fill_random(b, &px, -2, 2);
        double best[5];
        int ok = 0;
        for (int r = 0; r < 6; r++) {
            ms_tensor emb;
            const double t0 = ms_time_now();
            if (ms_vision_encode(b->ctx, vis, &px, &emb, &err) != MS_OK) break;
            ms_ctx_sync(b->ctx);
            if (r > 0) best[ok++] = ms_time_now() - t0;
            ms_ctx_reset(b->ctx);
        }
        ms_backend_tensor_free(b->be, &px);
        if (ok == 5) {
            qsort(best, 5, sizeof best[0], cmp_double);
            printf("  vision tower batch 32: %.2f ms\n", best[2] * 1e3);
            target_line("CLIP ViT-L/14-336 batch 32 (images/s)", 32.0 / best[2], 1200, "img/s", true);
        } else {
            printf("  vision tower failed: %s\n", err.msg);
        }
    }

    /* KV cache for 64 sequences of 1k context (block 16). */
    double flops_tok = 0;
    const double wbytes = llm_weight_bytes(&cfg, &flops_tok);
    const int32_t ctx_len = 1024, bs = 16, nseq = 64;
    const int32_t blocks = nseq * ((ctx_len + 1 + bs - 1) / bs);
    if (ms_kv_cache_create(b->be, &cfg.text, blocks, bs, &kv, &err) != MS_OK) {
        printf("stages skipped: KV cache: %s\n", err.msg);
        goto done;
    }
    for (int32_t l = 0; l < kv->n_layers; l++) {
        ms_op_fill(b->ctx, &kv->k[l], 0.01f);
        ms_op_fill(b->ctx, &kv->v[l], 0.01f);
    }
    const double kv_tok = 2.0 * cfg.text.num_hidden_layers * cfg.text.num_key_value_heads *
                          cfg.text.head_dim * 2.0; /* bytes of K+V per token */
    {
        const double t1 = decode_step_time(b, m, kv, 1, 128, &err);
        if (t1 > 0) {
            const double floor = (wbytes + 128 * kv_tok) / b->copy_bw;
            printf("  decode batch 1 (ctx 128): %.3f ms/token, floor %.3f ms (%.2f GB weights)\n",
                   t1 * 1e3, floor * 1e3, wbytes / 1e9);
            target_line("decode b1: fraction of copy bandwidth (%)", 100.0 * floor / t1, 85, "%", true);
            target_line("decode b1: ms per token", t1 * 1e3, 5.3, "ms", false);
        } else {
            printf("  decode batch 1 failed: %s\n", err.msg);
        }
        const double t64 = decode_step_time(b, m, kv, nseq, ctx_len, &err);
        if (t64 > 0) {
            const double floor = (wbytes + (double)nseq * ctx_len * kv_tok) / b->copy_bw;
            printf("  decode batch 64 (ctx 1024): %.3f ms/step, floor %.3f ms\n", t64 * 1e3,
                   floor * 1e3);
            target_line("decode b64 ctx1k: fraction of bandwidth floor (%)", 100.0 * floor / t64,
                        80, "%", true);
        } else {
            printf("  decode batch 64 failed: %s\n", err.msg);
        }
    }
    /* Prefill of 2,048 tokens, one sequence. */
    {
        const int32_t T = 2048, per = (T + bs - 1) / bs;
        int32_t *tok = ms_xmalloc((size_t)T * sizeof *tok), *table = ms_xmalloc((size_t)per * 4);
        for (int32_t i = 0; i < T; i++) tok[i] = 1 + (i * 131) % (cfg.text.vocab_size - 1);
        for (int32_t k = 0; k < per; k++) table[k] = k;
        const ms_llama_seq seq = {.tokens = tok, .n_tokens = T, .pos0 = 0, .block_table = table,
                                  .n_blocks = per};
        double t[4];
        int ok = 0;
        for (int r = 0; r < 4; r++) {
            ms_tensor logits;
            const double t0 = ms_time_now();
            if (ms_llama_forward(b->ctx, m, kv, &seq, 1, &logits, &err) != MS_OK) break;
            ms_ctx_sync(b->ctx);
            t[ok++] = ms_time_now() - t0;
            ms_ctx_reset(b->ctx);
        }
        if (ok == 4) {
            qsort(t + 1, 3, sizeof t[0], cmp_double);
            const double attn_flops = 4.0 * cfg.text.num_hidden_layers * cfg.text.hidden_size *
                                      (double)T * T * 0.5;
            const double flops = flops_tok * T + attn_flops;
            printf("  prefill 2048 tokens: %.2f ms, %.1f TFLOP/s of model FLOPs\n", t[2] * 1e3,
                   flops / t[2] / 1e12);
            target_line("prefill 2048: fraction of matmul rate (%)", 100.0 * flops / t[2] / b->mm_rate,
                        65, "%", true);
        } else {
            printf("  prefill failed: %s\n", err.msg);
        }
        free(tok);
        free(table);
    }
done:
    ms_kv_cache_free(kv);
    ms_vision_free(vis);
    ms_llama_free(m);
    ms_weights_close(w);
}

/* ---- entry ---- */

static int usage(void) {
    fprintf(stderr,
            "usage: modserve bench kernels [--device cuda|cpu] [--iters N] [--no-stages]\n"
            "  Times the device's ceilings (copy bandwidth, bf16 matmul rate), each op at\n"
            "  LLaVA-1.5-7B shapes as a fraction of them, and the stage targets (decode b1 and\n"
            "  b64, prefill 2048, CLIP batch 32, prefill attention 4k). Needs a GPU; --device\n"
            "  cpu runs small shapes as a smoke test. MS_BENCH_TORCH_SDPA_MS: torch's causal\n"
            "  4k SDPA time (bench/kernels_torch.py) to compare against.\n");
    return 2;
}

int ms_bench_kernels_main(int argc, char **argv) {
    const char *device = "cuda";
    int iters = 20;
    bool stages = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) device = argv[++i];
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-stages")) stages = false;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage();
            return 0;
        }
        else return usage();
    }
    if (iters < 1 || (strcmp(device, "cuda") && strcmp(device, "cpu"))) return usage();
    const bool cpu = !strcmp(device, "cpu");
    if (!cpu && !ms_cuda_available()) {
        fprintf(stderr, "modserve bench kernels: needs a GPU (no CUDA device found); "
                        "--device cpu runs a small smoke test\n");
        return 77;
    }
    ms_error err = {0};
    ms_backend *be = ms_backend_create(device, 0, 0, &err);
    if (!be) {
        fprintf(stderr, "modserve bench kernels: %s\n", err.msg);
        return cpu ? 1 : 77;
    }
    bench b = {.be = be, .ctx = ms_ctx_create(be), .small = cpu, .iters = cpu ? 2 : iters,
               .rng = 0x2545f4914f6cdd1dull};
    size_t fr = 0, tot = 0;
    be->ops->mem_info(be, &fr, &tot);
    char date[32];
    const time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    printf("modserve bench kernels: backend %s, act %s, %.1f of %.1f GiB free, %s%s\n", be->name,
           ms_dtype_name(be->act_dtype), fr / 1073741824.0, tot / 1073741824.0, date,
           cpu ? " (small shapes: smoke test)" : "");
    measure_ceilings(&b);
    bench_ops(&b);
    const char *sdpa = getenv("MS_BENCH_TORCH_SDPA_MS");
    if (stages && !cpu) bench_stages(&b, sdpa ? atof(sdpa) : 0.0);
    ms_ctx_destroy(b.ctx);
    ms_backend_destroy(be);
    return 0;
}
