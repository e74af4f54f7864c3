/*
 * CUDA kernels against the CPU reference at the shapes that pick the fast paths
 * (test_backend_ops covers every op on small, odd shapes): the tensor-core flash
 * attention at head dims 16/64/128 with grouped-query heads and several sequences, the
 * split-context decode kernel and chunked prefill over a shuffled paged cache, cuBLASLt
 * products with fused and unfused bias, vectorised norms, and device sampling against
 * ms_sample_row_f32 token for token. Inputs are rounded to bf16 first so both backends
 * see the same values. Exits 77 without a GPU.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/sample.h"
#include "tests/test_util.h"

static ms_ctx *g_cpu, *g_gpu;
static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static float urand(void) { /* [0, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((g_rng >> 40) * (1.0 / 16777216.0));
}

/* The same act tensor on both backends (CPU f32, CUDA bf16) from bf16-rounded values. */
typedef struct pair {
    ms_tensor c, g;
    int64_t n;
} pair;

static pair act(int ndim, const int64_t *shape, float lo, float hi) {
    pair p;
    p.c = ms_ctx_tensor(g_cpu, MS_DTYPE_F32, ndim, shape);
    p.g = ms_ctx_tensor(g_gpu, MS_DTYPE_BF16, ndim, shape);
    p.n = ms_tensor_numel(&p.c);
    float *h = malloc((size_t)(p.n ? p.n : 1) * sizeof(float));
    uint16_t *hb = malloc((size_t)(p.n ? p.n : 1) * sizeof(uint16_t));
    for (int64_t i = 0; i < p.n; i++) {
        hb[i] = ms_f32_to_bf16(lo + (hi - lo) * urand());
        h[i] = ms_bf16_to_f32(hb[i]);
    }
    ms_op_upload(g_cpu, &p.c, h);
    ms_op_upload(g_gpu, &p.g, hb);
    free(h);
    free(hb);
    return p;
}

static pair act2(int64_t r, int64_t c, float lo, float hi) {
    const int64_t s[2] = {r, c};
    return act(2, s, lo, hi);
}

static pair act3(int64_t a, int64_t b, int64_t c, float lo, float hi) {
    const int64_t s[3] = {a, b, c};
    return act(3, s, lo, hi);
}

static pair i32(const int32_t *v, int ndim, const int64_t *shape) {
    pair p;
    p.c = ms_ctx_upload_i32(g_cpu, v, ndim, shape);
    p.g = ms_ctx_upload_i32(g_gpu, v, ndim, shape);
    p.n = ms_tensor_numel(&p.c);
    return p;
}

static pair i32_1d(const int32_t *v, int64_t n) {
    return i32(v, 1, &n);
}

/* Output pair filled with NaN on the GPU side, so unwritten elements fail. */
static pair out_like(const pair *a) {
    pair p;
    p.c = ms_ctx_tensor(g_cpu, MS_DTYPE_F32, a->c.ndim, a->c.shape);
    p.g = ms_ctx_tensor(g_gpu, a->g.dtype, a->g.ndim, a->g.shape);
    p.n = a->n;
    ms_op_fill(g_gpu, &p.g, NAN);
    ms_op_fill(g_cpu, &p.c, 0.0f);
    return p;
}

/* ||gpu - cpu|| / ||cpu|| <= tol, no NaN. */
static void expect_close(const char *what, const pair *p, double tol) {
    float *c = malloc((size_t)p->n * sizeof(float)), *g = malloc((size_t)p->n * sizeof(float));
    ms_op_download(g_cpu, c, &p->c);
    if (p->g.dtype == MS_DTYPE_F32) {
        ms_op_download(g_gpu, g, &p->g);
    } else {
        uint16_t *gb = malloc((size_t)p->n * sizeof(uint16_t));
        ms_op_download(g_gpu, gb, &p->g);
        ms_convert_host(g, MS_DTYPE_F32, gb, p->g.dtype, p->n);
        free(gb);
    }
    double num = 0, den = 0, worst = 0;
    int64_t nan = 0, at = -1;
    for (int64_t i = 0; i < p->n; i++) {
        if (isnan(g[i]) != isnan(c[i])) nan++;
        if (isnan(g[i]) || isnan(c[i])) continue;
        const double d = (double)g[i] - c[i];
        num += d * d;
        den += (double)c[i] * c[i];
        if (fabs(d) > worst) {
            worst = fabs(d);
            at = i;
        }
    }
    const double rel = sqrt(num / (den > 0 ? den : 1));
    EXPECTF(nan == 0 && rel <= tol, "%s: rel err %.3g (tol %.3g), %lld NaN mismatches, worst %g at %lld "
            "(gpu %g cpu %g)", what, rel, tol, (long long)nan, worst, (long long)at,
            at >= 0 ? g[at] : 0.0, at >= 0 ? c[at] : 0.0);
    printf("  %-44s rel %.2e\n", what, rel);
    free(c);
    free(g);
}

static void reset(void) {
    ms_ctx_sync(g_gpu);
    ms_ctx_reset(g_cpu);
    ms_ctx_reset(g_gpu);
}

static void test_attention(int D, bool causal) {
    const int32_t lens[4] = {1, 70, 130, 64};
    int32_t cu[5] = {0};
    for (int i = 0; i < 4; i++) cu[i + 1] = cu[i] + lens[i];
    const int64_t T = cu[4], Hq = 8, Hkv = 2;
    pair q = act3(T, Hq, D, -2, 2), k = act3(T, Hkv, D, -2, 2), v = act3(T, Hkv, D, -1, 1);
    pair cus = i32_1d(cu, 5), o = out_like(&q);
    const float scale = 1.0f / sqrtf((float)D);
    ms_op_attention(g_cpu, &o.c, &q.c, &k.c, &v.c, &cus.c, 130, causal, scale);
    ms_op_attention(g_gpu, &o.g, &q.g, &k.g, &v.g, &cus.g, 130, causal, scale);
    char what[96];
    snprintf(what, sizeof what, "attention D=%d %s", D, causal ? "causal" : "full");
    expect_close(what, &o, 2e-2);
    reset();
}

/* Paged attention: q_lens per sequence (1 everywhere = decode), ctx lens, block 16,
 * blocks handed out in a shuffled order. */
static void test_paged(int D, const int32_t *q_lens, const int32_t *ctx, int nseq, int max_q) {
    const int64_t bs = 16, Hq = 8, Hkv = 4;
    int32_t max_ctx = 0, n_blocks = 0, cu[16] = {0};
    for (int s = 0; s < nseq; s++) {
        max_ctx = ctx[s] > max_ctx ? ctx[s] : max_ctx;
        n_blocks += (int32_t)((ctx[s] + bs - 1) / bs);
        cu[s + 1] = cu[s] + q_lens[s];
    }
    const int32_t max_blocks = (int32_t)((max_ctx + bs - 1) / bs);
    int32_t *perm = malloc((size_t)n_blocks * sizeof *perm);
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) {
        const int j = (int)(urand() * (float)(i + 1));
        const int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    int32_t *bt = calloc((size_t)nseq * max_blocks, sizeof *bt);
    int used = 0;
    for (int s = 0; s < nseq; s++)
        for (int b = 0; b < (ctx[s] + bs - 1) / bs; b++) bt[s * max_blocks + b] = perm[used++];
    const int64_t cshape[4] = {n_blocks, bs, Hkv, D}, btshape[2] = {nseq, max_blocks};
    pair kc = act(4, cshape, -2, 2), vc = act(4, cshape, -1, 1);
    pair q = act3(cu[nseq], Hq, D, -2, 2), o = out_like(&q);
    pair bts = i32(bt, 2, btshape), cuq = i32_1d(cu, nseq + 1), lens = i32_1d(ctx, nseq);
    const float scale = 1.0f / sqrtf((float)D);
    ms_op_attention_paged(g_cpu, &o.c, &q.c, &kc.c, &vc.c, &bts.c, &cuq.c, &lens.c, max_q,
                          max_ctx, scale);
    ms_op_attention_paged(g_gpu, &o.g, &q.g, &kc.g, &vc.g, &bts.g, &cuq.g, &lens.g, max_q,
                          max_ctx, scale);
    char what[96];
    snprintf(what, sizeof what, "attention_paged D=%d max_q=%d max_ctx=%d", D, max_q, max_ctx);
    expect_close(what, &o, 2e-2);
    free(perm);
    free(bt);
    reset();
}

static void test_matmul(int64_t M, int64_t N, int64_t K, bool bias, bool y_f32) {
    pair x = act2(M, K, -1, 1), w = act2(N, K, -0.2f, 0.2f), b = act2(1, N, -1, 1);
    pair y;
    y.c = ms_ctx_tensor_2d(g_cpu, MS_DTYPE_F32, M, N);
    y.g = ms_ctx_tensor_2d(g_gpu, y_f32 ? MS_DTYPE_F32 : MS_DTYPE_BF16, M, N);
    y.n = M * N;
    ms_op_fill(g_gpu, &y.g, NAN);
    const int64_t bshape[1] = {N};
    ms_tensor bc = ms_tensor_reshape(&b.c, 1, bshape), bg = ms_tensor_reshape(&b.g, 1, bshape);
    ms_op_matmul(g_cpu, &y.c, &x.c, &w.c, bias ? &bc : NULL);
    ms_op_matmul(g_gpu, &y.g, &x.g, &w.g, bias ? &bg : NULL);
    char what[96];
    snprintf(what, sizeof what, "matmul %lldx%lldx%lld%s%s", (long long)M, (long long)N,
             (long long)K, bias ? " bias" : "", y_f32 ? " f32" : "");
    expect_close(what, &y, 1e-2);
    reset();
}

static void test_norms(int64_t M, int64_t N) {
    pair x = act2(M, N, -3, 3), r = act2(M, N, -3, 3), gm = act2(1, N, 0.5f, 1.5f);
    pair bt = act2(1, N, -0.5f, 0.5f), y = out_like(&x);
    const int64_t vs[1] = {N};
    ms_tensor gc = ms_tensor_reshape(&gm.c, 1, vs), gg = ms_tensor_reshape(&gm.g, 1, vs);
    ms_tensor bc = ms_tensor_reshape(&bt.c, 1, vs), bg = ms_tensor_reshape(&bt.g, 1, vs);
    char what[96];
    ms_op_rmsnorm(g_cpu, &y.c, &x.c, &gc, 1e-5f);
    ms_op_rmsnorm(g_gpu, &y.g, &x.g, &gg, 1e-5f);
    snprintf(what, sizeof what, "rmsnorm %lldx%lld", (long long)M, (long long)N);
    expect_close(what, &y, 1e-2);
    ms_op_layernorm(g_cpu, &y.c, &x.c, &gc, &bc, 1e-5f);
    ms_op_layernorm(g_gpu, &y.g, &x.g, &gg, &bg, 1e-5f);
    snprintf(what, sizeof what, "layernorm %lldx%lld", (long long)M, (long long)N);
    expect_close(what, &y, 1e-2);
    ms_op_add_rmsnorm(g_cpu, &r.c, &x.c, &y.c, &gc, 1e-5f);
    ms_op_add_rmsnorm(g_gpu, &r.g, &x.g, &y.g, &gg, 1e-5f);
    snprintf(what, sizeof what, "add_rmsnorm %lldx%lld (y)", (long long)M, (long long)N);
    expect_close(what, &y, 1e-2);
    snprintf(what, sizeof what, "add_rmsnorm %lldx%lld (residual)", (long long)M, (long long)N);
    expect_close(what, &r, 1e-2);
    reset();
}

static void test_sample(void) {
    enum { B = 6, V = 5000 };
    float *lg = malloc((size_t)B * V * sizeof(float));
    for (int i = 0; i < B * V; i++) lg[i] = (float)(int)(urand() * 400.0f) / 40.0f; /* ties */
    lg[3 * V + 7] = NAN;
    for (int i = 0; i < V; i++) lg[5 * V + i] = -INFINITY; /* no finite logit */
    const ms_sample_params pp[B] = {{0.0f, 0, 1.0f}, {0.8f, 0, 1.0f}, {1.0f, 40, 1.0f},
                                    {1.3f, 0, 0.9f}, {0.7f, 100, 0.5f}, {1.0f, 0, 1.0f}};
    const int64_t sh[2] = {B, V}, ns[1] = {B};
    ms_tensor lc = ms_ctx_tensor(g_cpu, MS_DTYPE_F32, 2, sh);
    ms_tensor lgpu = ms_ctx_tensor(g_gpu, MS_DTYPE_F32, 2, sh);
    ms_op_upload(g_cpu, &lc, lg);
    ms_op_upload(g_gpu, &lgpu, lg);
    ms_tensor og = ms_ctx_tensor(g_gpu, MS_DTYPE_I32, 1, ns);
    int mismatches = 0;
    for (int trial = 0; trial < 50; trial++) {
        float u[B];
        for (int b = 0; b < B; b++) u[b] = urand();
        int32_t got[B];
        ms_op_sample(g_gpu, &og, &lgpu, pp, u);
        ms_op_download(g_gpu, got, &og);
        for (int b = 0; b < B; b++) {
            const int32_t want = ms_sample_row_f32(lg + (int64_t)b * V, V, &pp[b], u[b]);
            if (got[b] != want) {
                mismatches++;
                fprintf(stderr, "  sample row %d u=%.6f: cuda %d, reference %d\n", b, u[b], got[b],
                        want);
            }
        }
    }
    EXPECTF(mismatches == 0, "sample: %d of %d draws differ from the reference", mismatches,
            50 * B);
    printf("  %-44s %d mismatches\n", "sample (greedy, temp, top-k, top-p)", mismatches);
    free(lg);
    reset();
}

int main(void) {
    if (!ms_cuda_available()) return ms_test_skip("test_cuda_kernels", "no CUDA GPU");
    ms_error err = {0};
    ms_backend *gpu = ms_backend_cuda_create(0, &err);
    if (!gpu) return ms_test_skip("test_cuda_kernels", err.msg);
    ms_backend *cpu = ms_backend_cpu_create(0);
    g_cpu = ms_ctx_create(cpu);
    g_gpu = ms_ctx_create(gpu);

    const int dims[4] = {16, 64, 128, 40}; /* 40: the generic kernel */
    for (int i = 0; i < 4; i++) {
        test_attention(dims[i], true);
        test_attention(dims[i], false);
    }
    const int32_t dec_q[5] = {1, 1, 1, 1, 1}, dec_ctx[5] = {1, 17, 300, 1025, 64};
    const int32_t pre_q[3] = {5, 67, 1}, pre_ctx[3] = {20, 200, 33};
    for (int i = 0; i < 4; i++) {
        test_paged(dims[i], dec_q, dec_ctx, 5, 1);
        test_paged(dims[i], pre_q, pre_ctx, 3, 67);
    }
    const int32_t one_q[1] = {1}, one_ctx[1] = {4000}; /* batch 1: the context splits */
    test_paged(128, one_q, one_ctx, 1, 1);

    test_matmul(37, 72, 96, true, false);
    test_matmul(1, 4096, 4096, false, false);
    test_matmul(5, 1000, 256, true, true);
    test_matmul(64, 588, 588, false, false); /* K not a multiple of 8 elements of 16 B */
    test_norms(7, 4096);
    test_norms(3, 100);
    test_sample();

    ms_ctx_destroy(g_gpu);
    ms_ctx_destroy(g_cpu);
    ms_backend_destroy(gpu);
    ms_backend_destroy(cpu);
    return ms_test_finish("test_cuda_kernels");
}
