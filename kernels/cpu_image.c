/*
 * Image ops: patch embedding (a convolution with stride = kernel) as im2col followed
 * by one sgemm, and the uint8 HWC -> normalised CHW conversion.
 */
#include "kernels/cpu_internal.h"

#include <stdlib.h>

/* cols[P, C*p*p] for P = N*(H/p)*(W/p) patches; column order (c, ky, kx) matches the
 * conv weight [E, C, p, p] flattened to [E, C*p*p]. */
typedef struct im2col_job {
    float *cols;
    const float *px; /* [N, C, H, W] */
    int64_t C, H, W, p, gh, gw;
} im2col_job;

static void im2col_range(void *arg, int64_t r0, int64_t r1) {
    const im2col_job *j = arg;
    const int64_t p = j->p, K = j->C * p * p;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t n = r / (j->gh * j->gw), py = r / j->gw % j->gh, px = r % j->gw;
        float *dst = j->cols + r * K;
        for (int64_t c = 0; c < j->C; c++)
            for (int64_t ky = 0; ky < p; ky++) {
                const float *src = j->px + ((n * j->C + c) * j->H + py * p + ky) * j->W + px * p;
                for (int64_t kx = 0; kx < p; kx++) *dst++ = src[kx];
            }
    }
}

void ms_cpu_patch_embed(ms_ctx *ctx, ms_tensor *out, const ms_tensor *pixels,
                        const ms_tensor *weight, int32_t patch) {
    im2col_job j = {.px = pixels->data, .C = pixels->shape[1], .H = pixels->shape[2],
                    .W = pixels->shape[3], .p = patch};
    j.gh = j.H / patch;
    j.gw = j.W / patch;
    const int64_t P = pixels->shape[0] * j.gh * j.gw, K = j.C * patch * patch;
    const int64_t E = weight->shape[0];
    if (P == 0 || E == 0) return;
    j.cols = ms_xmalloc((size_t)(P * K) * sizeof(float));
    ms_cpu_parallel_for(ms_cpu_ctx_pool(ctx), P, 16, im2col_range, &j);
    /* out[P, E] = cols[P, K] weight[E, K]^T */
    ms_cpu_gemm_nt(ctx, P, E, K, j.cols, weight->data, 0.0f, out->data);
    free(j.cols);
}

void ms_cpu_image_normalize(ms_ctx *ctx, ms_tensor *out, const ms_tensor *rgb,
                            const float mean[3], const float std[3], float rescale) {
    const int64_t N = rgb->shape[0], H = rgb->shape[1], W = rgb->shape[2];
    const int32_t *in = rgb->data; /* [N, H, W, 3] */
    float *o = out->data;          /* [N, 3, H, W] */
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < 3; c++)
            for (int64_t i = 0; i < H * W; i++) {
                /* As CLIPImageProcessor: rescale into f32, then normalise in f32. */
                const float v = (float)((double)in[(n * H * W + i) * 3 + c] * rescale);
                o[(n * 3 + c) * H * W + i] = (v - mean[c]) / std[c];
            }
}
