/*
 * CUDA kernels at the shapes that pick their fast paths, through the harness of
 * test_backend_ops (test_backend_ops_harness.c: guard bytes around every buffer,
 * NaN-filled outputs, NMSE and per-row error limits against double references):
 * the tensor-core flash attention at head dims 16/64/128 (40: the generic kernel) with
 * grouped-query heads and several sequences, the split-context decode kernel and
 * chunked prefill over a shuffled paged cache, cuBLASLt products with fused and unfused
 * bias, vectorised norms, and device sampling against ms_sample_row_f32 token for
 * token; then the code-path cases (test_backend_ops_cases_paths.c) at full size: long
 * prefill, decode context lengths and GQA ratios, block sizes, misaligned views, two
 * streams at once, a 128k vocabulary. Exits 77 without a GPU.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/backend.h"
#include "kernels/sample.h"
#include "tests/test_backend_ops.h"
#include "tests/test_util.h"

static void test_attention(void) {
    const int32_t lens[4] = {1, 70, 130, 64};
    const int64_t dims[4] = {16, 64, 128, 40}; /* 40: the generic kernel */
    for (int d = 0; d < 4; d++) {
        tbo_run_attention(lens, 4, 8, 2, dims[d], true);
        tbo_run_attention(lens, 4, 8, 2, dims[d], false);
    }
}

static void test_paged(void) {
    const int64_t dims[4] = {16, 64, 128, 40};
    const int32_t dec_q[5] = {1, 1, 1, 1, 1}, dec_ctx[5] = {1, 17, 300, 1025, 64};
    const int32_t pre_q[3] = {5, 67, 1}, pre_ctx[3] = {20, 200, 33};
    for (int d = 0; d < 4; d++) {
        tbo_run_paged(16, 8, 4, dims[d], 5, dec_ctx, dec_q);
        tbo_run_paged(16, 8, 4, dims[d], 3, pre_ctx, pre_q);
    }
    const int32_t one_q[1] = {1}, one_ctx[1] = {4000}; /* batch 1: the context splits */
    tbo_run_paged(16, 8, 4, 128, 1, one_ctx, one_q);
}

/* Device sampling against the project's CPU sampler, with ties, a NaN and a row with no
 * finite logit, over 50 draws. */
static void test_sample(void) {
    enum { B = 6, V = 5000 };
    float *lg = malloc((size_t)B * V * sizeof(float));
    for (int i = 0; i < B * V; i++) lg[i] = (float)(int)(tbo_uniform(0, 1) * 400.0f) / 40.0f;
    lg[3 * V + 7] = NAN;
    for (int i = 0; i < V; i++) lg[5 * V + i] = -INFINITY; /* no finite logit */
    const ms_sample_params pp[B] = {{0.0f, 0, 1.0f}, {0.8f, 0, 1.0f}, {1.0f, 40, 1.0f},
                                    {1.3f, 0, 0.9f}, {0.7f, 100, 0.5f}, {1.0f, 0, 1.0f}};
    dbuf logits = tbo_new2(MS_DTYPE_F32, B, V);
    tbo_set_f32(&logits, lg);
    for (int trial = 0; trial < 50; trial++) {
        float u[B];
        int32_t want[B];
        for (int b = 0; b < B; b++) {
            u[b] = tbo_uniform(0, 1);
            want[b] = ms_sample_row_f32(lg + (int64_t)b * V, V, &pp[b], u[b]);
        }
        dbuf ids = tbo_new2(MS_DTYPE_I32, 1, B);
        ms_op_sample(tbo_ctx(), &ids.t, &logits.t, pp, u);
        char sh[64];
        snprintf(sh, sizeof sh, "B=%d V=%d ties NaN -inf draw %d", B, V, trial);
        tbo_check_ids("sample", sh, &ids, want);
        tbo_free(&ids);
    }
    tbo_free(&logits);
    free(lg);
}

int main(void) {
    if (!ms_cuda_available()) return ms_test_skip("test_cuda_kernels", "no CUDA GPU");
    ms_error err = {0};
    ms_backend *gpu = ms_backend_cuda_create(0, &err);
    if (!gpu) return ms_test_skip("test_cuda_kernels", err.msg);
    ms_ctx *ctx = ms_ctx_create(gpu);
    tbo_init(gpu, ctx, NULL, 0);

    test_attention();
    test_paged();
    tbo_run_matmul(37, 96, 72, true, false);
    tbo_run_matmul(1, 4096, 4096, false, false);
    tbo_run_matmul(5, 256, 1000, true, true);
    tbo_run_matmul(64, 588, 588, false, false); /* K not a multiple of 8 elements of 16 B */
    tbo_run_norms(7, 4096, -3, 3, true, 0);
    tbo_run_norms(3, 100, -3, 3, true, 1);
    test_sample();
    tbo_cases_paths(TBO_SIZE_FULL);

    int cases, failed;
    tbo_counts(&cases, &failed);
    printf("%d cases, %d failed\n", cases, failed);
    ms_ctx_destroy(ctx);
    ms_backend_destroy(gpu);
    return ms_test_finish("test_cuda_kernels");
}
