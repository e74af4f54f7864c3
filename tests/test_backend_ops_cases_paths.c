/*
 * test_backend_ops cases for code paths the per-op shapes do not reach, run on every
 * backend against the double references: SMALL sizes in test_backend_ops (the CPU under
 * ASan in seconds), FULL sizes in test_cuda_kernels (the sizes that pick the CUDA fast
 * paths: tensor-core flash attention, the split decode kernel, cuBLASLt, vector norms).
 *
 * - prefill attention over more than 3 key tiles of 64 (577, 2k and 4k keys), packed
 *   and against the paged cache (chunked prefill);
 * - decode at context lengths that are not multiples of the decode kernel's key groups
 *   (1, 17, 31, 129, 1025: lanes of one warp have different numbers of keys), with
 *   grouped-query ratios 4 and 8 and block sizes 16, 32 and 7;
 * - every op again on views that start one element past a 16-byte boundary;
 * - two contexts (two streams on a GPU) running at once from two threads;
 * - sampling over a 128k vocabulary.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "tests/test_backend_ops.h"

static const limits LIM_ATTN = {1e-10, 5e-4};
static const limits LIM_MATMUL = {1e-10, 1e-4};

static bool attention_on(void) {
    return tbo_selected("attention") && tbo_supported("attention", tbo_backend()->ops->attention);
}

static bool paged_on(void) {
    return tbo_selected("attention_paged") &&
           tbo_supported("attention_paged", tbo_backend()->ops->attention_paged);
}

/* ---- long prefill ---- */

static void case_long_prefill(tbo_size size) {
    const bool full = size == TBO_SIZE_FULL;
    if (attention_on()) {
        const int32_t l577[1] = {577}, l2k[2] = {70, 2048}, l4k[1] = {4096};
        tbo_run_attention(l577, 1, full ? 8 : 4, full ? 2 : 1, full ? 128 : 16, true);
        tbo_run_attention(l577, 1, full ? 8 : 2, 1, full ? 64 : 16, false);
        /* the CPU's tiles (cpu_attention_tile.h): 21 positions x 3 heads, keys in blocks
         * of 512. 1,100 rows end mid-tile, causal rows cross key blocks at 512 and 1,024;
         * 601 rows: 8 positions x 8 heads a tile, a last key block of 89. */
        const int32_t l1100[2] = {1100, 30};
        tbo_run_attention(l1100, 2, 6, 2, 16, true);
        const int32_t l601[1] = {601};
        tbo_run_attention(l601, 1, 8, 1, 24, false);
        if (full) {
            tbo_run_attention(l2k, 2, 4, 1, 64, true);
            tbo_run_attention(l4k, 1, 2, 1, 128, true);
        }
    }
    if (paged_on()) {
        /* chunked prefill: the last chunk of a long prompt against its whole context */
        const int32_t len[3] = {4096, 2048, 577}, q_full[3] = {130, 64, 577}, q_small[3] = {3, 2, 5};
        tbo_run_paged(16, full ? 8 : 2, full ? 2 : 1, full ? 128 : 16, 3, len,
                      full ? q_full : q_small);
        tbo_run_paged(32, 4, 1, full ? 64 : 16, 2, len + 1, full ? q_full + 1 : q_small + 1);
        /* a chunk of 100 rows (not a multiple of the CPU's 21-position tiles) at positions
         * 1,000..1,099, across the key block boundary at 1,024; a whole 530-token prompt
         * through the cache (block size 7) */
        const int32_t len_b[2] = {1100, 530}, q_b[2] = {100, 530};
        tbo_run_paged(7, 6, 2, 16, 2, len_b, q_b);
    }
}

/* ---- decode ---- */

static void case_decode(tbo_size size) {
    if (!paged_on()) return;
    const int32_t len[5] = {1, 17, 31, 129, 1025}, one[5] = {1, 1, 1, 1, 1};
    const struct { int64_t Hq, Hkv, bs; } gqa[] = {
        {8, 2, 16}, {8, 1, 32}, {32, 4, 7}, {8, 2, 1},
    };
    const int n_gqa = size == TBO_SIZE_FULL ? 4 : 3;
    const int64_t dims[2] = {64, 128};
    for (int g = 0; g < n_gqa; g++)
        for (int d = 0; d < (size == TBO_SIZE_FULL ? 2 : 1); d++)
            tbo_run_paged(gqa[g].bs, gqa[g].Hq, gqa[g].Hkv, dims[d], 5, len, one);
    if (size == TBO_SIZE_FULL) {
        /* batch 1: the context splits over many blocks, and splits end mid-group */
        const int32_t l1[1] = {4001}, q1[1] = {1};
        tbo_run_paged(16, 32, 8, 128, 1, l1, q1);
        tbo_run_paged(16, 8, 1, 64, 1, l1, q1);
    }
}

/* ---- two contexts at once ---- */

typedef struct worker {
    ms_ctx *ctx;
    bool paged;              /* attention_paged, else matmul */
    ms_tensor out, a, b, c, d, e, f;
    int32_t max_q, max_ctx;
    int reps;
} worker;

static void *worker_run(void *arg) {
    worker *w = arg;
    for (int r = 0; r < w->reps; r++) {
        if (w->paged)
            ms_op_attention_paged(w->ctx, &w->out, &w->a, &w->b, &w->c, &w->d, &w->e, &w->f,
                                  w->max_q, w->max_ctx, 1.0f / sqrtf((float)w->a.shape[2]));
        else
            ms_op_matmul(w->ctx, &w->out, &w->a, &w->b, NULL);
    }
    ms_ctx_sync(w->ctx);
    return NULL;
}

/* A decode step on one context while a product runs on another, each many times over
 * (same inputs, so the last result must equal the reference). */
static void case_two_contexts(tbo_size size) {
    if (!tbo_selected("two_contexts") || !tbo_backend()->ops->attention_paged ||
        !tbo_backend()->ops->matmul)
        return;
    const bool full = size == TBO_SIZE_FULL;
    const int64_t bs = 16, Hq = 8, Hkv = 2, D = full ? 128 : 16;
    const int nseq = 3;
    const int32_t len[3] = {31, 129, 1025}, cu[4] = {0, 1, 2, 3};
    int64_t max_blocks = (1025 + bs - 1) / bs, n_blocks = nseq * max_blocks;
    int32_t *bt = malloc(sizeof(int32_t) * (size_t)n_blocks);
    for (int64_t i = 0; i < n_blocks; i++) bt[i] = (int32_t)((i * 7) % n_blocks); /* 7 coprime */
    const int64_t sc[4] = {n_blocks, bs, Hkv, D}, sq[3] = {nseq, Hq, D}, sbt[2] = {nseq, max_blocks};
    float *hkc, *hvc, *hq, *hx, *hw;
    dbuf kc = tbo_rand(4, sc, -1, 1, &hkc), vc = tbo_rand(4, sc, -1, 1, &hvc);
    dbuf q = tbo_rand(3, sq, -3, 3, &hq), out = tbo_new(tbo_backend()->act_dtype, 3, sq);
    dbuf dbt = tbo_i32(2, sbt, bt), dcu = tbo_i32_1d(nseq + 1, cu), dlen = tbo_i32_1d(nseq, len);
    const int64_t M = full ? 64 : 8, K = full ? 4096 : 256, N = full ? 4096 : 96;
    dbuf x = tbo_rand2(M, K, -1, 1, &hx), w = tbo_rand2(N, K, -1, 1, &hw);
    dbuf y = tbo_new2(tbo_backend()->act_dtype, M, N);
    ms_ctx_sync(tbo_ctx()); /* inputs uploaded before the other context reads them */

    ms_ctx *second = ms_ctx_create(tbo_backend());
    worker wa = {.ctx = tbo_ctx(), .paged = true, .out = out.t, .a = q.t, .b = kc.t, .c = vc.t,
                 .d = dbt.t, .e = dcu.t, .f = dlen.t, .max_q = 1, .max_ctx = 1025,
                 .reps = full ? 40 : 3};
    worker wb = {.ctx = second, .paged = false, .out = y.t, .a = x.t, .b = w.t,
                 .reps = full ? 10 : 3};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, worker_run, &wa);
    pthread_create(&tb, NULL, worker_run, &wb);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);

    double *ref = tbo_ref_buf(nseq * Hq * D);
    ref_attention_paged(ref, hq, hkc, hvc, bt, max_blocks, bs, cu, len, nseq, Hq, Hkv, D,
                        1.0f / sqrtf((float)D));
    char sh[96];
    snprintf(sh, sizeof sh, "two contexts: decode ctx=31,129,1025 D=%lld", (long long)D);
    tbo_check_out("attention_paged", sh, &out, ref, LIM_ATTN);
    double *yref = tbo_ref_buf(M * N);
    ref_matmul(yref, hx, hw, NULL, M, K, N);
    snprintf(sh, sizeof sh, "two contexts: M=%lld K=%lld N=%lld", (long long)M, (long long)K,
             (long long)N);
    tbo_check_out("matmul", sh, &y, yref, LIM_MATMUL);
    ms_ctx_destroy(second);
    dbuf all[] = {kc, vc, q, out, dbt, dcu, dlen, x, w, y};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tbo_free(&all[i]);
    free(hkc);
    free(hvc);
    free(hq);
    free(hx);
    free(hw);
    free(bt);
    free(ref);
    free(yref);
}

/* ---- sampling over a 128k vocabulary ---- */

static void case_sample_128k(tbo_size size) {
    if (!tbo_selected("sample") || !tbo_supported("sample", tbo_backend()->ops->sample)) return;
    const ms_sample_params ps[] = {
        {0.0f, 0, 1.0f}, {0.8f, 0, 1.0f}, {1.0f, 50, 1.0f}, {1.0f, 0, 0.9f},
        {0.7f, 1000, 0.95f}, {1.2f, 0, 0.5f},
    };
    const int32_t V = 131072, B = size == TBO_SIZE_FULL ? 24 : 6;
    float *lg = tbo_rand_f32((int64_t)B * V, -12.0f, 12.0f);
    ms_sample_params *pp = malloc(sizeof *pp * (size_t)B);
    float *u = malloc(sizeof(float) * (size_t)B);
    int32_t *want = malloc(sizeof(int32_t) * (size_t)B);
    for (int32_t b = 0; b < B; b++) {
        pp[b] = ps[b % 6];
        u[b] = tbo_uniform(0.0f, 1.0f);
        lg[(int64_t)b * V + V - 1] = 14.0f; /* the last id is the likeliest in every row */
        want[b] = ref_sample(lg + (int64_t)b * V, V, &pp[b], u[b]);
    }
    dbuf logits = tbo_new2(MS_DTYPE_F32, B, V), ids = tbo_new2(MS_DTYPE_I32, 1, B);
    tbo_set_f32(&logits, lg);
    ms_op_sample(tbo_ctx(), &ids.t, &logits.t, pp, u);
    char sh[64];
    snprintf(sh, sizeof sh, "B=%d V=%d", B, V);
    tbo_check_ids("sample", sh, &ids, want);
    tbo_free(&logits);
    tbo_free(&ids);
    free(lg);
    free(pp);
    free(u);
    free(want);
}

void tbo_cases_paths(tbo_size size) {
    case_long_prefill(size);
    case_decode(size);
    case_two_contexts(size);
    case_sample_128k(size);
    /* every op again on views one element past 16-byte alignment */
    tbo_misaligned(true);
    tbo_cases_core();
    tbo_cases_attention();
    if (size == TBO_SIZE_FULL) {
        tbo_run_norms(7, 4096, -3, 3, true, 0);
        tbo_run_matmul(37, 96, 72, true, false);
        const int32_t len[5] = {1, 17, 31, 129, 1025}, one[5] = {1, 1, 1, 1, 1};
        tbo_run_paged(16, 8, 2, 128, 5, len, one);
        const int32_t l577[1] = {577};
        tbo_run_attention(l577, 1, 8, 2, 64, true);
    }
    tbo_misaligned(false);
}
