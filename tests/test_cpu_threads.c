/*
 * The CPU backend under concurrent use: several worker threads, each with its own
 * ms_ctx, call ops on one shared multi-threaded backend at the same time (as serving
 * workers do). Every worker must get the result a single-threaded backend gives, and
 * a ThreadSanitizer build (-DMODSERVE_TSAN=ON) must stay clean. Also checks that a
 * context's scratch arena stops asking the backend for memory once warm.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/arena.h"
#include "kernels/backend.h"
#include "tests/test_util.h"

enum { WORKERS = 4, ITERS = 12, T = 37, HQ = 6, HKV = 2, HD = 16, E = HQ * HD, F = 150 };

typedef struct result {
    float out[T * F]; /* [T, F] */
} result;

/* One small transformer-ish pass: rmsnorm, matmul, RoPE, attention, matmul, gelu,
 * softmax. Inputs depend only on `seed`. */
static void run_pass(ms_ctx *ctx, uint32_t seed, result *res) {
    float *x = malloc(sizeof(float) * T * E), *w1 = malloc(sizeof(float) * 3 * E * E),
          *w2 = malloc(sizeof(float) * F * E), *g = malloc(sizeof(float) * E);
    uint32_t s = seed * 2654435761u + 1;
#define RND() ((s = s * 1664525u + 1013904223u), (float)(s >> 8) / (float)(1u << 24) - 0.5f)
    for (int i = 0; i < T * E; i++) x[i] = RND() * 4;
    for (int i = 0; i < 3 * E * E; i++) w1[i] = RND() * 0.3f;
    for (int i = 0; i < F * E; i++) w2[i] = RND() * 0.3f;
    for (int i = 0; i < E; i++) g[i] = 1 + RND();
#undef RND
    ms_ctx_reset(ctx);
    ms_tensor tx = ms_ctx_tensor_2d(ctx, MS_DTYPE_F32, T, E);           /* [T, E] */
    ms_tensor tw1 = ms_ctx_tensor_2d(ctx, MS_DTYPE_F32, 3 * E, E);      /* [3E, E] */
    ms_tensor tw2 = ms_ctx_tensor_2d(ctx, MS_DTYPE_F32, F, E);          /* [F, E] */
    ms_tensor tg = ms_ctx_tensor_2d(ctx, MS_DTYPE_F32, 1, E);           /* [1, E] */
    ms_op_upload(ctx, &tx, x);
    ms_op_upload(ctx, &tw1, w1);
    ms_op_upload(ctx, &tw2, w2);
    ms_op_upload(ctx, &tg, g);
    ms_tensor h = ms_ctx_tensor_2d(ctx, MS_DTYPE_F32, T, E);            /* [T, E] */
    ms_op_rmsnorm(ctx, &h, &tx, &tg, 1e-6f);
    /* q, k, v from three row blocks of w1 */
    ms_tensor qkv[3];
    for (int i = 0; i < 3; i++) {
        ms_tensor wi = ms_tensor_row_view(&tw1, (int64_t)i * E, E);    /* [E, E] */
        qkv[i] = ms_ctx_tensor_2d(ctx, MS_DTYPE_F32, T, E);             /* [T, E] */
        ms_op_matmul(ctx, &qkv[i], &h, &wi, NULL);
    }
    const int64_t q3[3] = {T, HQ, HD}, kv3[3] = {T, HKV, HD};
    ms_tensor q = ms_tensor_reshape(&qkv[0], 3, q3);                    /* [T, HQ, HD] */
    /* k, v use the first HKV heads' worth of columns: view as [T, HKV, HD] via a copy */
    ms_tensor k = ms_ctx_tensor(ctx, MS_DTYPE_F32, 3, kv3), v = ms_ctx_tensor(ctx, MS_DTYPE_F32, 3, kv3);
    float *tmp = malloc(sizeof(float) * T * E), *kk = malloc(sizeof(float) * T * HKV * HD);
    for (int j = 0; j < 2; j++) {
        ms_op_download(ctx, tmp, &qkv[1 + j]);
        for (int t = 0; t < T; t++) memcpy(kk + t * HKV * HD, tmp + t * E, sizeof(float) * HKV * HD);
        ms_op_upload(ctx, j ? &v : &k, kk);
    }
    int32_t pos[T], cu[4] = {0, 10, 11, T};
    for (int t = 0; t < T; t++) pos[t] = t < 10 ? t : t < 11 ? 0 : t - 11;
    const int64_t nt = T, ncu = 4;
    ms_tensor tpos = ms_ctx_upload_i32(ctx, pos, 1, &nt), tcu = ms_ctx_upload_i32(ctx, cu, 1, &ncu);
    ms_op_rope(ctx, &q, &tpos, 10000.0f);
    ms_op_rope(ctx, &k, &tpos, 10000.0f);
    ms_tensor att = ms_ctx_tensor(ctx, MS_DTYPE_F32, 3, q3);            /* [T, HQ, HD] */
    ms_op_attention(ctx, &att, &q, &k, &v, &tcu, 26, true, 0.25f);
    ms_tensor att2 = ms_tensor_reshape(&att, 2, (int64_t[]){T, E});      /* [T, E] */
    ms_tensor o = ms_ctx_tensor_2d(ctx, MS_DTYPE_F32, T, F), o2 = ms_ctx_tensor_2d(ctx, MS_DTYPE_F32, T, F);
    ms_op_matmul(ctx, &o, &att2, &tw2, NULL);
    ms_op_gelu(ctx, &o2, &o);
    ms_op_softmax(ctx, &o, &o2);
    ms_op_download(ctx, res->out, &o);
    ms_ctx_sync(ctx);
    free(x);
    free(w1);
    free(w2);
    free(g);
    free(tmp);
    free(kk);
}

typedef struct worker {
    ms_backend *be;
    const result *expect; /* per seed */
    int id, bad;
    size_t allocs_after_warmup, allocs_end;
} worker;

static void *worker_main(void *arg) {
    worker *w = arg;
    ms_ctx *ctx = ms_ctx_create(w->be);
    result *r = malloc(sizeof *r);
    for (int it = 0; it < ITERS; it++) {
        const int seed = (w->id + it) % WORKERS;
        run_pass(ctx, (uint32_t)seed, r);
        for (int i = 0; i < T * F; i++)
            if (!(fabsf(r->out[i] - w->expect[seed].out[i]) <= 1e-6f * (1 + fabsf(w->expect[seed].out[i]))))
                w->bad++;
        if (it == 1) w->allocs_after_warmup = ms_arena_backend_allocs(ctx->arena);
    }
    w->allocs_end = ms_arena_backend_allocs(ctx->arena);
    free(r);
    ms_ctx_destroy(ctx);
    return NULL;
}

int main(void) {
    /* expected results from a single-threaded backend, one context */
    result *expect = malloc(sizeof(result) * WORKERS);
    ms_backend *one = ms_backend_cpu_create(1);
    ms_ctx *c1 = ms_ctx_create(one);
    for (int s = 0; s < WORKERS; s++) run_pass(c1, (uint32_t)s, &expect[s]);
    ms_ctx_destroy(c1);
    ms_backend_destroy(one);
    bool finite = true;
    for (int i = 0; i < T * F; i++) finite &= isfinite(expect[0].out[i]);
    EXPECT(finite);

    ms_backend *be = ms_backend_cpu_create(3);
    pthread_t th[WORKERS];
    worker ws[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        ws[i] = (worker){.be = be, .expect = expect, .id = i};
        EXPECT(pthread_create(&th[i], NULL, worker_main, &ws[i]) == 0);
    }
    for (int i = 0; i < WORKERS; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < WORKERS; i++) {
        EXPECTF(ws[i].bad == 0, "worker %d: %d values differ from the single-thread run", i,
                ws[i].bad);
        EXPECTF(ws[i].allocs_end == ws[i].allocs_after_warmup,
                "worker %d: arena allocated after warm-up (%zu -> %zu)", i,
                ws[i].allocs_after_warmup, ws[i].allocs_end);
    }
    ms_backend_destroy(be);
    /* backend selection */
    ms_error err = {0};
    ms_backend *b = ms_backend_create("cpu", 0, 2, &err);
    EXPECT(b && strcmp(b->name, "cpu") == 0 && b->act_dtype == MS_DTYPE_F32);
    ms_backend_destroy(b);
    b = ms_backend_create("auto", 0, 1, &err);
    EXPECT(b && (ms_cuda_available() || strcmp(b->name, "cpu") == 0));
    ms_backend_destroy(b);
    b = ms_backend_create("tpu", 0, 1, &err);
    EXPECT(!b && err.status == MS_ERR_INVALID && strstr(err.msg, "tpu"));
    if (!ms_cuda_available()) {
        err = (ms_error){0};
        b = ms_backend_create("cuda", 0, 1, &err);
        EXPECT(!b && err.status != MS_OK && err.msg[0]);
    }
    free(expect);
    return ms_test_finish("test_cpu_threads");
}
