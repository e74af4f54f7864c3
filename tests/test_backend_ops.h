/*
 * Naive double-precision references for test_backend_ops, written from the op
 * definitions in kernels/backend.h and kernels/sample.h, independent of the backend
 * code. Inputs are host f32 arrays (already rounded to the backend's act dtype);
 * outputs are double.
 */
#ifndef MS_TEST_BACKEND_OPS_H
#define MS_TEST_BACKEND_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/backend.h"

void ref_matmul(double *y, const float *x, const float *w, const float *bias, int64_t M,
                int64_t K, int64_t N);
void ref_layernorm(double *y, const float *x, const float *g, const float *b, int64_t M,
                   int64_t N, double eps);
void ref_rmsnorm(double *y, const double *x, const float *g, int64_t M, int64_t N, double eps);
void ref_rope(double *y, const float *x, const int32_t *pos, int64_t T, int64_t H, int64_t D,
              float theta);
/* q [T,Hq,D], k/v [T,Hkv,D] packed by cu[nseq+1]. */
void ref_attention(double *out, const float *q, const float *k, const float *v,
                   const int32_t *cu, int64_t nseq, int64_t Hq, int64_t Hkv, int64_t D,
                   bool causal, double scale);
/* caches [n_blocks, bs, Hkv, D]; bt [nseq, max_blocks]. */
void ref_attention_paged(double *out, const float *q, const float *kc, const float *vc,
                         const int32_t *bt, int64_t max_blocks, int64_t bs, const int32_t *cu_q,
                         const int32_t *lens, int64_t nseq, int64_t Hq, int64_t Hkv, int64_t D,
                         double scale);
void ref_softmax(double *y, const float *x, int64_t M, int64_t N);
void ref_gelu(double *y, const float *x, int64_t n);
void ref_quick_gelu(double *y, const float *x, int64_t n);
void ref_silu_mul(double *y, const float *g, const float *u, int64_t n);
/* pixels [N,C,H,W], w [E,C,p,p] -> out [N*(H/p)*(W/p), E] by direct convolution. */
void ref_patch_embed(double *out, const float *px, const float *w, int64_t N, int64_t C,
                     int64_t H, int64_t W, int64_t E, int64_t p);
void ref_image_normalize(double *out, const int32_t *rgb, int64_t N, int64_t H, int64_t W,
                         const float mean[3], const float std[3], float rescale);
int32_t ref_sample(const float *logits, int32_t V, const ms_sample_params *p, float u);

#endif
