/*
 * Shared by the parts of test_backend_ops and test_cuda_kernels: the harness
 * (test_backend_ops_harness.c: device buffers with guard bytes, random inputs, error
 * check and report), the op cases (test_backend_ops_cases*.c) and the naive
 * double-precision references
 * (test_backend_ops_ref.c), written from the op definitions in kernels/backend.h and
 * kernels/sample.h, independent of the backend code. Reference inputs are host f32
 * arrays already rounded to the backend's act dtype; outputs are double.
 */
#ifndef MS_TEST_BACKEND_OPS_H
#define MS_TEST_BACKEND_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/backend.h"

/* ---- harness ---- */
typedef struct dbuf {
    ms_tensor raw; /* i32[words]: GUARD | data (rounded up to 4 bytes) | GUARD */
    ms_tensor t;   /* the tensor the op sees */
    size_t nbytes;
    size_t lead;   /* bytes of raw before t.data: the guard, plus one element if misaligned */
} dbuf;

typedef struct limits {
    double f32, bf16; /* NMSE limits for an f32 backend and a bf16 one; the per-row
                       * limit is 4 x sqrt of it (see test_backend_ops_harness.c) */
} limits;

/* The backend and context the cases run on; only_op: run just that op (NULL: all);
 * seed 0 keeps the default. */
void tbo_init(ms_backend *be, ms_ctx *ctx, const char *only_op, uint64_t seed);
void tbo_counts(int *cases, int *failed);
/* While on, new buffers start one element past a 16-byte boundary (a row view of an
 * odd-width tensor), so vectorised kernels must take their unaligned paths. */
void tbo_misaligned(bool on);
bool tbo_is_misaligned(void);
ms_backend *tbo_backend(void);
ms_ctx *tbo_ctx(void);
float tbo_uniform(float lo, float hi);      /* [lo, hi) */
int32_t tbo_int(int32_t lo, int32_t hi);    /* [lo, hi] */
float *tbo_rand_f32(int64_t n, float lo, float hi);
/* Device buffer between guard bytes; data starts as NaN (0xFF bytes). */
dbuf tbo_new(ms_dtype dt, int ndim, const int64_t *shape);
dbuf tbo_new2(ms_dtype dt, int64_t a, int64_t c);
/* Upload f32 host values in the buffer's dtype; host is rounded to what the device holds. */
void tbo_set_f32(dbuf *b, float *host);
void tbo_set_i32(dbuf *b, const int32_t *host);
void tbo_get_f32(const dbuf *b, float *host);
bool tbo_guards_ok(const dbuf *b);
void tbo_free(dbuf *b);
/* Random act-dtype input in [lo, hi); *host gets the (rounded) values, malloc'd. */
dbuf tbo_rand(int ndim, const int64_t *shape, float lo, float hi, float **host);
dbuf tbo_rand2(int64_t a, int64_t c, float lo, float hi, float **host);
dbuf tbo_i32(int ndim, const int64_t *shape, const int32_t *host);
dbuf tbo_i32_1d(int64_t n, const int32_t *host);
bool tbo_selected(const char *op);
/* One report line; counts a failure on NMSE over the limit, NaN/inf or touched guards. */
void tbo_check_out(const char *op, const char *shape, const dbuf *out, const double *ref,
                   limits lim);
void tbo_check_ids(const char *op, const char *shape, const dbuf *out, const int32_t *ref);
double *tbo_ref_buf(int64_t n);
double *tbo_to_double(const float *x, int64_t n);
/* False (and a failure) when the backend's table lacks the op. */
bool tbo_supported(const char *op, bool present);

/* ---- op cases ---- */
void tbo_cases_core(void);      /* memory ops, matmul, norms, elementwise, rows */
void tbo_cases_attention(void); /* rope, attention, kv_write, attention_paged */
void tbo_cases_misc(void);      /* patch_embed, image_normalize, sample */
/* The code paths that the shapes above do not reach (docs/kernels.md lists them): long
 * prefill key runs, decode GQA ratios and context lengths, other block sizes, misaligned
 * views, two contexts at once, a 128k vocabulary. SMALL keeps the CPU under ASan fast;
 * FULL is the size that picks the CUDA fast paths (test_cuda_kernels). */
/* Single cases the path tests reuse (test_backend_ops_cases.c, _cases_attn.c). */
void tbo_run_matmul(int64_t M, int64_t K, int64_t N, bool bias, bool y_f32);
void tbo_run_norms(int64_t M, int64_t N, float lo, float hi, bool beta, int variant);
void tbo_run_attention(const int32_t *lens, int nseq, int64_t Hq, int64_t Hkv, int64_t D,
                       bool causal);
void tbo_run_paged(int64_t bs, int64_t Hq, int64_t Hkv, int64_t D, int nseq,
                   const int32_t *len, const int32_t *q);
typedef enum tbo_size { TBO_SIZE_SMALL, TBO_SIZE_FULL } tbo_size;
void tbo_cases_paths(tbo_size size);

/* ---- references ---- */
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
