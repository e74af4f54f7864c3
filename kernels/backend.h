/*
 * The backend op table. Model code (encoder/, llm/) calls ops only through the
 * ms_op_* wrappers below, never a backend directly, so the same model code runs on the
 * CPU backend (f32, the reference) and the CUDA backend (bf16 storage, f32 accumulate).
 *
 * Conventions for every op:
 * - All tensors live on the context's device. "act" means the backend's activation
 *   dtype (backend->act_dtype): f32 on the CPU, bf16 on CUDA. Weights use the same
 *   dtype. Index tensors (ids, positions, slots, block tables, cu_seqlens) are i32.
 * - Shapes are written beside each argument; the wrappers check them (tier 1: a shape
 *   mismatch is a bug in model code and aborts).
 * - Outputs never alias inputs unless the op says "in place".
 * - Ops are asynchronous on devices with streams; ms_ctx_sync() waits.
 */
#ifndef MS_BACKEND_H
#define MS_BACKEND_H

#include "kernels/ms_common.h"
#include "kernels/tensor.h"

typedef struct ms_backend ms_backend;
typedef struct ms_ctx ms_ctx;
typedef struct ms_arena ms_arena;

/* Per-row sampling parameters, see ms_op_sample. */
typedef struct ms_sample_params {
    float temperature; /* <= 0: greedy (argmax, lowest index on ties) */
    int32_t top_k;     /* <= 0: off */
    float top_p;       /* >= 1: off */
} ms_sample_params;

typedef struct ms_backend_ops {
    /* ---- memory ---- */
    void *(*alloc)(ms_backend *be, size_t bytes); /* NULL when out of memory */
    void (*free)(ms_backend *be, void *ptr);
    /* Free and total device memory in bytes (CPU: from /proc/meminfo). */
    void (*mem_info)(ms_backend *be, size_t *free_bytes, size_t *total_bytes);
    void *(*stream_create)(ms_backend *be); /* NULL on the CPU */
    void (*stream_destroy)(ms_backend *be, void *stream);
    void (*sync)(ms_ctx *ctx);
    /* host <-> device and device -> device copies of whole tensors, same dtype */
    void (*upload)(ms_ctx *ctx, ms_tensor *dst, const void *host_src);
    void (*download)(ms_ctx *ctx, void *host_dst, const ms_tensor *src);
    void (*copy)(ms_ctx *ctx, ms_tensor *dst, const ms_tensor *src);
    /* dst = src converted to dst->dtype (f32/bf16/f16), same shape */
    void (*convert)(ms_ctx *ctx, ms_tensor *dst, const ms_tensor *src);
    void (*fill)(ms_ctx *ctx, ms_tensor *dst, float value);

    /* ---- compute ---- */
    void (*matmul)(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x, const ms_tensor *w,
                   const ms_tensor *bias);
    void (*layernorm)(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x, const ms_tensor *gamma,
                      const ms_tensor *beta, float eps);
    void (*rmsnorm)(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x, const ms_tensor *gamma,
                    float eps);
    void (*add_rmsnorm)(ms_ctx *ctx, ms_tensor *residual, const ms_tensor *x, ms_tensor *y,
                        const ms_tensor *gamma, float eps);
    void (*rope)(ms_ctx *ctx, ms_tensor *x, const ms_tensor *positions, float theta);
    void (*attention)(ms_ctx *ctx, ms_tensor *out, const ms_tensor *q, const ms_tensor *k,
                      const ms_tensor *v, const ms_tensor *cu_seqlens, int32_t max_seqlen,
                      bool causal, float scale);
    void (*kv_write)(ms_ctx *ctx, ms_tensor *k_cache, ms_tensor *v_cache, const ms_tensor *k,
                     const ms_tensor *v, const ms_tensor *slots);
    void (*attention_paged)(ms_ctx *ctx, ms_tensor *out, const ms_tensor *q,
                            const ms_tensor *k_cache, const ms_tensor *v_cache,
                            const ms_tensor *block_tables, const ms_tensor *cu_q,
                            const ms_tensor *ctx_lens, int32_t max_q, int32_t max_ctx,
                            float scale);
    void (*softmax)(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x);
    void (*gelu)(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x);
    void (*quick_gelu)(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x);
    void (*silu_mul)(ms_ctx *ctx, ms_tensor *y, const ms_tensor *gate, const ms_tensor *up);
    void (*add)(ms_ctx *ctx, ms_tensor *y, const ms_tensor *a, const ms_tensor *b);
    void (*get_rows)(ms_ctx *ctx, ms_tensor *out, const ms_tensor *table, const ms_tensor *ids);
    void (*scatter_rows)(ms_ctx *ctx, ms_tensor *dst, const ms_tensor *src, const ms_tensor *idx);
    void (*patch_embed)(ms_ctx *ctx, ms_tensor *out, const ms_tensor *pixels,
                        const ms_tensor *weight, int32_t patch);
    void (*image_normalize)(ms_ctx *ctx, ms_tensor *out, const ms_tensor *rgb_u8_as_i32,
                            const float mean[3], const float std[3], float rescale);
    void (*sample)(ms_ctx *ctx, ms_tensor *out_ids, const ms_tensor *logits,
                   const ms_sample_params *params, const float *uniforms);
} ms_backend_ops;

struct ms_backend {
    const char *name;          /* "cpu" or "cuda" */
    ms_device_kind device;
    int32_t device_index;
    ms_dtype act_dtype;        /* f32 (cpu) or bf16 (cuda) */
    const ms_backend_ops *ops;
    void *impl;                /* backend-private state */
    void (*destroy)(ms_backend *be);
};

/* An execution context: one per worker thread. Owns a stream (on devices that have
 * them) and a scratch arena for activations that is rewound between forward passes,
 * so steady-state serving allocates nothing. */
struct ms_ctx {
    ms_backend *backend;
    void *stream;
    ms_arena *arena;
};

/* ---- backends ---- */
ms_backend *ms_backend_cpu_create(int n_threads); /* n_threads <= 0: all cores */
/* Returns NULL with err set when CUDA was not built in or no GPU is present. */
ms_backend *ms_backend_cuda_create(int device_index, ms_error *err);
/* "cpu", "cuda" or "auto" (CUDA when a GPU is present, else CPU). */
ms_backend *ms_backend_create(const char *name, int device_index, int cpu_threads, ms_error *err);
bool ms_cuda_available(void);
void ms_backend_destroy(ms_backend *be);

/* Tensor with fresh memory from the backend (NULL data + err on OOM). */
ms_status ms_backend_tensor(ms_backend *be, ms_dtype dt, int ndim, const int64_t *shape,
                            ms_tensor *out, ms_error *err);
void ms_backend_tensor_free(ms_backend *be, ms_tensor *t);

/* ---- contexts and scratch ---- */
ms_ctx *ms_ctx_create(ms_backend *be);
void ms_ctx_destroy(ms_ctx *ctx);
/* Scratch tensor valid until the next ms_ctx_reset (aborts if the device is out of memory). */
ms_tensor ms_ctx_tensor(ms_ctx *ctx, ms_dtype dt, int ndim, const int64_t *shape);
ms_tensor ms_ctx_tensor_2d(ms_ctx *ctx, ms_dtype dt, int64_t rows, int64_t cols);
/* Scratch i32 tensor filled from a host array (for ids, positions, slots, ...). */
ms_tensor ms_ctx_upload_i32(ms_ctx *ctx, const int32_t *host, int ndim, const int64_t *shape);
void ms_ctx_reset(ms_ctx *ctx);
void ms_ctx_sync(ms_ctx *ctx);

/* ---- ops: shape-checked wrappers over backend->ops ---- */
void ms_op_upload(ms_ctx *ctx, ms_tensor *dst, const void *host_src);
void ms_op_download(ms_ctx *ctx, void *host_dst, const ms_tensor *src);
void ms_op_copy(ms_ctx *ctx, ms_tensor *dst, const ms_tensor *src);
void ms_op_convert(ms_ctx *ctx, ms_tensor *dst, const ms_tensor *src);
void ms_op_fill(ms_ctx *ctx, ms_tensor *dst, float value);

/* y[M,N] = x[M,K] @ w[N,K]^T (+ bias[N]); w in PyTorch nn.Linear layout.
 * y may be f32 when x is act (logits); bias may be NULL. */
void ms_op_matmul(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x, const ms_tensor *w,
                  const ms_tensor *bias);
/* y[M,N] = (x - mean) / sqrt(var + eps) * gamma[N] + beta[N], per row, biased variance. */
void ms_op_layernorm(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x, const ms_tensor *gamma,
                     const ms_tensor *beta, float eps);
/* y[M,N] = x / sqrt(mean(x^2) + eps) * gamma[N] (Llama RMSNorm; f32 math). */
void ms_op_rmsnorm(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x, const ms_tensor *gamma,
                   float eps);
/* residual[M,N] += x[M,N]; y[M,N] = rmsnorm(residual). */
void ms_op_add_rmsnorm(ms_ctx *ctx, ms_tensor *residual, const ms_tensor *x, ms_tensor *y,
                       const ms_tensor *gamma, float eps);
/* In place on x[T,H,D]: rotate-half RoPE as transformers' Llama (inv_freq over D/2
 * pairs (i, i + D/2)), position of row t = positions[t] (i32[T]). */
void ms_op_rope(ms_ctx *ctx, ms_tensor *x, const ms_tensor *positions, float theta);
/* Attention over packed sequences: q[T,Hq,D], k/v[T,Hkv,D] (Hq % Hkv == 0, query head h
 * uses kv head h / (Hq/Hkv)), out[T,Hq,D]. cu_seqlens i32[nseq+1]: sequence s is rows
 * [cu[s], cu[s+1]). causal: row i attends to rows <= i of its sequence; else to all.
 * scale multiplies q.k (usually 1/sqrt(D)). max_seqlen: longest sequence. */
void ms_op_attention(ms_ctx *ctx, ms_tensor *out, const ms_tensor *q, const ms_tensor *k,
                     const ms_tensor *v, const ms_tensor *cu_seqlens, int32_t max_seqlen,
                     bool causal, float scale);
/* Paged KV cache: k_cache/v_cache[n_blocks, block_size, Hkv, D]. Row t of k/v[T,Hkv,D]
 * goes to slot slots[t] = block * block_size + offset (slots i32[T]; -1 = skip). */
void ms_op_kv_write(ms_ctx *ctx, ms_tensor *k_cache, ms_tensor *v_cache, const ms_tensor *k,
                    const ms_tensor *v, const ms_tensor *slots);
/* Attention of new queries against the paged cache (decode: 1 query per sequence;
 * chunked prefill: several). q[T,Hq,D], out[T,Hq,D]; cu_q i32[nseq+1] splits q rows
 * into sequences; ctx_lens i32[nseq] = tokens in the cache for the sequence, the new
 * ones included (already written by kv_write); block_tables i32[nseq, max_blocks].
 * Query i of sequence s (q_len = cu_q[s+1]-cu_q[s]) is at position
 * ctx_lens[s] - q_len + i and attends to cache positions 0..that position. */
void ms_op_attention_paged(ms_ctx *ctx, ms_tensor *out, const ms_tensor *q,
                           const ms_tensor *k_cache, const ms_tensor *v_cache,
                           const ms_tensor *block_tables, const ms_tensor *cu_q,
                           const ms_tensor *ctx_lens, int32_t max_q, int32_t max_ctx,
                           float scale);
/* y[M,N] = softmax over each row of x (f32 math, max-subtracted). */
void ms_op_softmax(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x);
/* Elementwise, any shape: gelu (erf form), quick_gelu x*sigmoid(1.702x). */
void ms_op_gelu(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x);
void ms_op_quick_gelu(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x);
/* y[M,N] = silu(gate) * up. */
void ms_op_silu_mul(ms_ctx *ctx, ms_tensor *y, const ms_tensor *gate, const ms_tensor *up);
/* y[M,N] = a[M,N] + b[i % R] with b[R,N], R dividing M (R == M: plain residual add;
 * R < M: broadcast, e.g. position embeddings over images). y may alias a. */
void ms_op_add(ms_ctx *ctx, ms_tensor *y, const ms_tensor *a, const ms_tensor *b);
/* out[T,D] = table[ids[t]] (embedding gather); table[V,D] act, ids i32[T], ids in range. */
void ms_op_get_rows(ms_ctx *ctx, ms_tensor *out, const ms_tensor *table, const ms_tensor *ids);
/* dst[idx[r]] = src[r] for src[R,D], idx i32[R] (image-feature splice). */
void ms_op_scatter_rows(ms_ctx *ctx, ms_tensor *dst, const ms_tensor *src, const ms_tensor *idx);
/* Convolution with stride = kernel = patch, no bias: pixels[N,C,H,W] act,
 * weight[E, C*patch*patch] act (conv weight [E,C,p,p] flattened),
 * out[N*(H/p)*(W/p), E], patches in row-major (py, px) order per image. */
void ms_op_patch_embed(ms_ctx *ctx, ms_tensor *out, const ms_tensor *pixels,
                       const ms_tensor *weight, int32_t patch);
/* out[N,3,H,W] act = (rgb * rescale - mean[c]) / std[c] for rgb i32[N,H,W,3] (0..255):
 * HWC bytes to normalised CHW. */
void ms_op_image_normalize(ms_ctx *ctx, ms_tensor *out, const ms_tensor *rgb,
                           const float mean[3], const float std[3], float rescale);
/* out_ids i32[B] from logits f32[B,V]; params and uniforms (in [0,1)) are host arrays of
 * B. Temperature scales logits, top-k then top-p keep the smallest set of most likely
 * tokens (ties by lower index), the token is the first whose cumulative probability
 * exceeds uniforms[b] * total. Greedy when temperature <= 0. Same draws, same token, on
 * every backend (up to float ties). */
void ms_op_sample(ms_ctx *ctx, ms_tensor *out_ids, const ms_tensor *logits,
                  const ms_sample_params *params, const float *uniforms);

#endif
