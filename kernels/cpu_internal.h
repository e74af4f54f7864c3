/*
 * Private to the CPU backend: its state, the parallel-for, and the op entry points the
 * op table in cpu_backend.c points at. Every op is f32 (the CPU's act dtype); the
 * ms_op_* wrappers in backend.c have already checked shapes, dtypes and devices.
 */
#ifndef MS_CPU_INTERNAL_H
#define MS_CPU_INTERNAL_H

#include "kernels/backend.h"

/* ---- parallel-for over [0, n) on a small pthread pool (cpu_threads.c) ---- */
typedef struct ms_cpu_pool ms_cpu_pool;
/* fn handles items [begin, end); it may run on any pool thread or the caller. */
typedef void (*ms_cpu_range_fn)(void *arg, int64_t begin, int64_t end);

ms_cpu_pool *ms_cpu_pool_create(int n_threads);
void ms_cpu_pool_destroy(ms_cpu_pool *pool);
int ms_cpu_pool_threads(const ms_cpu_pool *pool);
/* Runs fn over [0, n) split into pieces of at least `grain` items. Safe to call from
 * several threads at once: a caller that finds the pool busy runs its range itself,
 * so concurrent workers never wait on each other. */
void ms_cpu_parallel_for(ms_cpu_pool *pool, int64_t n, int64_t grain, ms_cpu_range_fn fn,
                         void *arg);

typedef struct ms_cpu_state {
    ms_cpu_pool *pool;
    int n_threads;
} ms_cpu_state;

static inline ms_cpu_pool *ms_cpu_ctx_pool(ms_ctx *ctx) {
    return ((ms_cpu_state *)ctx->backend->impl)->pool;
}

/* ---- ops (one group per file) ---- */
/* cpu_matmul.c */
/* Makes OpenBLAS single-threaded (once per process); the pool parallelises instead. */
void ms_cpu_blas_init(void);
/* c[M,N] = a[M,K] b[N,K]^T + beta * c, split over column blocks on the pool. */
void ms_cpu_gemm_nt(ms_ctx *ctx, int64_t M, int64_t N, int64_t K, const float *a,
                    const float *b, float beta, float *c);
void ms_cpu_matmul(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x, const ms_tensor *w,
                   const ms_tensor *bias);
/* cpu_norm.c */
void ms_cpu_layernorm(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x, const ms_tensor *gamma,
                      const ms_tensor *beta, float eps);
void ms_cpu_rmsnorm(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x, const ms_tensor *gamma,
                    float eps);
void ms_cpu_add_rmsnorm(ms_ctx *ctx, ms_tensor *residual, const ms_tensor *x, ms_tensor *y,
                        const ms_tensor *gamma, float eps);
void ms_cpu_softmax(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x);
/* cpu_attention.c */
void ms_cpu_rope(ms_ctx *ctx, ms_tensor *x, const ms_tensor *positions, float theta);
void ms_cpu_attention(ms_ctx *ctx, ms_tensor *out, const ms_tensor *q, const ms_tensor *k,
                      const ms_tensor *v, const ms_tensor *cu_seqlens, int32_t max_seqlen,
                      bool causal, float scale);
void ms_cpu_kv_write(ms_ctx *ctx, ms_tensor *k_cache, ms_tensor *v_cache, const ms_tensor *k,
                     const ms_tensor *v, const ms_tensor *slots);
void ms_cpu_attention_paged(ms_ctx *ctx, ms_tensor *out, const ms_tensor *q,
                            const ms_tensor *k_cache, const ms_tensor *v_cache,
                            const ms_tensor *block_tables, const ms_tensor *cu_q,
                            const ms_tensor *ctx_lens, int32_t max_q, int32_t max_ctx,
                            float scale);
/* cpu_elementwise.c */
void ms_cpu_gelu(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x);
void ms_cpu_quick_gelu(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x);
void ms_cpu_silu_mul(ms_ctx *ctx, ms_tensor *y, const ms_tensor *gate, const ms_tensor *up);
void ms_cpu_add(ms_ctx *ctx, ms_tensor *y, const ms_tensor *a, const ms_tensor *b);
/* cpu_rows.c */
void ms_cpu_get_rows(ms_ctx *ctx, ms_tensor *out, const ms_tensor *table, const ms_tensor *ids);
void ms_cpu_scatter_rows(ms_ctx *ctx, ms_tensor *dst, const ms_tensor *src,
                         const ms_tensor *idx);
/* cpu_image.c */
void ms_cpu_patch_embed(ms_ctx *ctx, ms_tensor *out, const ms_tensor *pixels,
                        const ms_tensor *weight, int32_t patch);
void ms_cpu_image_normalize(ms_ctx *ctx, ms_tensor *out, const ms_tensor *rgb,
                            const float mean[3], const float std[3], float rescale);
/* cpu_sample.c */
void ms_cpu_sample(ms_ctx *ctx, ms_tensor *out_ids, const ms_tensor *logits,
                   const ms_sample_params *params, const float *uniforms);

#endif
