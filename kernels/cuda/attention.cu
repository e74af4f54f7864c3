/*
 * ms_op_attention on CUDA: packed sequences (prefill, vision tower), causal or not,
 * grouped-query heads, all sequences in one launch (cu_seqlens). The tensor-core flash
 * kernel takes the head dims models use; others go to the generic kernel.
 */
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/cuda_ops.cuh"

void ms_cuda_attention(ms_ctx *ctx, ms_tensor *out, const ms_tensor *q, const ms_tensor *k,
                       const ms_tensor *v, const ms_tensor *cu_seqlens, int32_t max_seqlen,
                       bool causal, float scale) {
    cudaStream_t st = ms_cuda_stream_of(ctx);
    attn_params p = {};
    p.out = (bf16 *)out->data;
    p.q = (const bf16 *)q->data;
    p.k = (const bf16 *)k->data;
    p.v = (const bf16 *)v->data;
    p.cu = (const int32_t *)cu_seqlens->data;
    p.nseq = (int32_t)(cu_seqlens->shape[0] - 1);
    p.Hq = (int32_t)q->shape[1];
    p.Hkv = (int32_t)k->shape[1];
    p.D = (int32_t)q->shape[2];
    p.T = (int32_t)q->shape[0];
    p.max_q = max_seqlen;
    p.causal = causal;
    p.scale_log2 = scale * 1.4426950408889634f;
    p.bad = ms_cuda_violations_of(ctx);
    p.op = MS_CUDA_OP_ATTENTION;
    MS_CHECKF(p.nseq <= 65535 && p.Hq <= 65535, "attention: %d sequences, %d heads", p.nseq, p.Hq);
    MS_CHECKF(q->shape[0] <= INT32_MAX, "attention: %lld rows", (long long)q->shape[0]);
    if (max_seqlen <= 0) return;
    const bool aligned =
        ((uintptr_t)p.q | (uintptr_t)p.k | (uintptr_t)p.v | (uintptr_t)p.out) % 16 == 0;
    if (aligned && ms_cuda_attn_flash_supported(p.D))
        ms_cuda_attn_flash(p, max_seqlen, st);
    else
        ms_cuda_attn_generic(p, max_seqlen, st);
    ms_cuda_indices_checked(ctx);
}
