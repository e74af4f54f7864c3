/*
 * The op entries of the CUDA backend, one group per file; cuda_backend.cu puts them in
 * the op table. Each takes checked tensors (see kernels/backend.h for the semantics).
 */
#ifndef MS_CUDA_OPS_CUH
#define MS_CUDA_OPS_CUH

#include "kernels/cuda/cuda_common.cuh"

/* convert.cu */
void ms_cuda_convert(ms_ctx *ctx, ms_tensor *dst, const ms_tensor *src);
void ms_cuda_fill(ms_ctx *ctx, ms_tensor *dst, float value);
/* matmul.cu */
void ms_cuda_matmul(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x, const ms_tensor *w,
                    const ms_tensor *bias);
/* norm.cu */
void ms_cuda_layernorm(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x, const ms_tensor *gamma,
                       const ms_tensor *beta, float eps);
void ms_cuda_rmsnorm(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x, const ms_tensor *gamma,
                     float eps);
void ms_cuda_add_rmsnorm(ms_ctx *ctx, ms_tensor *residual, const ms_tensor *x, ms_tensor *y,
                         const ms_tensor *gamma, float eps);
/* softmax.cu */
void ms_cuda_softmax(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x);
/* rope.cu */
void ms_cuda_rope(ms_ctx *ctx, ms_tensor *x, const ms_tensor *positions, float theta);
/* attention.cu */
void ms_cuda_attention(ms_ctx *ctx, ms_tensor *out, const ms_tensor *q, const ms_tensor *k,
                       const ms_tensor *v, const ms_tensor *cu_seqlens, int32_t max_seqlen,
                       bool causal, float scale);
/* kv_write.cu */
void ms_cuda_kv_write(ms_ctx *ctx, ms_tensor *k_cache, ms_tensor *v_cache, const ms_tensor *k,
                      const ms_tensor *v, const ms_tensor *slots);
/* attention_paged.cu */
void ms_cuda_attention_paged(ms_ctx *ctx, ms_tensor *out, const ms_tensor *q,
                             const ms_tensor *k_cache, const ms_tensor *v_cache,
                             const ms_tensor *block_tables, const ms_tensor *cu_q,
                             const ms_tensor *ctx_lens, int32_t max_q, int32_t max_ctx,
                             float scale);
/* elementwise.cu */
void ms_cuda_gelu(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x);
void ms_cuda_quick_gelu(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x);
void ms_cuda_silu_mul(ms_ctx *ctx, ms_tensor *y, const ms_tensor *gate, const ms_tensor *up);
void ms_cuda_add(ms_ctx *ctx, ms_tensor *y, const ms_tensor *a, const ms_tensor *b);
/* rows.cu */
void ms_cuda_get_rows(ms_ctx *ctx, ms_tensor *out, const ms_tensor *table, const ms_tensor *ids);
void ms_cuda_scatter_rows(ms_ctx *ctx, ms_tensor *dst, const ms_tensor *src,
                          const ms_tensor *idx);
/* image.cu */
void ms_cuda_patch_embed(ms_ctx *ctx, ms_tensor *out, const ms_tensor *pixels,
                         const ms_tensor *weight, int32_t patch);
void ms_cuda_image_normalize(ms_ctx *ctx, ms_tensor *out, const ms_tensor *rgb,
                             const float mean[3], const float std[3], float rescale);
/* sample.cu */
void ms_cuda_sample(ms_ctx *ctx, ms_tensor *out_ids, const ms_tensor *logits,
                    const ms_sample_params *params, const float *uniforms);

#endif
