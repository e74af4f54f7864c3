/*
 * ms_op_attention_paged on CUDA: queries against the paged KV cache.
 *
 * Decode (one query per sequence, max_q == 1) is bound by reading the cache, so its
 * kernel streams keys with 16-byte loads: a group of D/8 lanes owns one key at a time
 * (each lane 8 dims), the groups of a block walk the keys of one split of the context
 * with their own online softmax, and the block merges them. When sequences x heads
 * would not fill the GPU, the context is split over several blocks (flash-decoding)
 * and a second kernel merges the splits. Chunked prefill (max_q > 1) uses the
 * tensor-core flash kernel with the block table, and other head dims the generic one.
 */
#include <math.h>

#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/cuda_ops.cuh"

enum { DEC_THREADS = 128, DEC_MIN_KEYS_PER_SPLIT = 256, DEC_MAX_SPLITS = 64 };

/* Partial results of one (sequence, head, split): m and l in the base-2 log domain,
 * o unnormalised, [nseq, Hq, n_splits] x (D + 2) floats: o[D], m, l. */
template <int D>
__global__ void __launch_bounds__(DEC_THREADS)
    attn_decode_kernel(const attn_params p, int32_t keys_per_split, float *__restrict__ part) {
    constexpr int TPK = D / 8;                   /* lanes per key */
    constexpr int GROUPS = DEC_THREADS / TPK;    /* keys in flight per block */
    __shared__ float sm_m[GROUPS], sm_l[GROUPS];
    __shared__ __align__(16) float sm_o[GROUPS][D];

    const int s = blockIdx.z, h = blockIdx.y, split = blockIdx.x, n_splits = gridDim.x;
    const attn_seq sq = attn_seq_info(p, s);
    if (sq.q_len < 1) return; /* no query for this sequence in this step */
    const int kvh = h / (p.Hq / p.Hkv);
    const int grp = threadIdx.x / TPK, sub = threadIdx.x % TPK, d0 = sub * 8;
    /* The one query of this sequence is its last row (position kv_len - 1). */
    const int qrow = sq.q_start + sq.q_len - 1;
    const int kv_end_all = sq.kv_len; /* causal: the last query sees every cached key */
    const int j_begin = split * keys_per_split;
    const int j_end = min(kv_end_all, j_begin + keys_per_split);

    float q[8];
    {
        const uint4 u = *reinterpret_cast<const uint4 *>(p.q + ((int64_t)qrow * p.Hq + h) * D + d0);
        const __nv_bfloat162 *hv = reinterpret_cast<const __nv_bfloat162 *>(&u);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float2 f = __bfloat1622float2(hv[i]);
            q[2 * i] = f.x * p.scale_log2;
            q[2 * i + 1] = f.y * p.scale_log2;
        }
    }
    float m = -INFINITY, l = 0.0f, acc[8];
#pragma unroll
    for (int i = 0; i < 8; i++) acc[i] = 0.0f;

    /* Every lane of the block runs the same iterations (the bounds are block-uniform):
     * the dot product's shuffles name the whole warp, so a lane whose group has no key
     * left must still execute them. Its loads are skipped and its state kept. */
    for (int j0 = j_begin; j0 < j_end; j0 += GROUPS) {
        const int j = j0 + grp;
        const bool has_key = j < j_end;
        uint4 ku = make_uint4(0, 0, 0, 0), vu = make_uint4(0, 0, 0, 0);
        if (has_key) {
            ku = *reinterpret_cast<const uint4 *>(attn_kv_row(p, s, sq, j, kvh, false) + d0);
            vu = *reinterpret_cast<const uint4 *>(attn_kv_row(p, s, sq, j, kvh, true) + d0);
        }
        const __nv_bfloat162 *kh = reinterpret_cast<const __nv_bfloat162 *>(&ku);
        const __nv_bfloat162 *vh = reinterpret_cast<const __nv_bfloat162 *>(&vu);
        float dot = 0.0f;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float2 f = __bfloat1622float2(kh[i]);
            dot += q[2 * i] * f.x + q[2 * i + 1] * f.y;
        }
#pragma unroll
        for (int o = TPK / 2; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
        if (!has_key) continue; /* after the shuffles: no lane skips them */
        const float m_new = fmaxf(m, dot);
        const float corr = exp2f(m - m_new), pj = exp2f(dot - m_new);
        l = l * corr + pj;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float2 f = __bfloat1622float2(vh[i]);
            acc[2 * i] = acc[2 * i] * corr + pj * f.x;
            acc[2 * i + 1] = acc[2 * i + 1] * corr + pj * f.y;
        }
        m = m_new;
    }

    /* Merge the groups of the block. */
    if (sub == 0) {
        sm_m[grp] = m;
        sm_l[grp] = l;
    }
#pragma unroll
    for (int i = 0; i < 8; i++) sm_o[grp][d0 + i] = acc[i];
    __syncthreads();
    float M = -INFINITY;
    for (int g2 = 0; g2 < GROUPS; g2++) M = fmaxf(M, sm_m[g2]);
    for (int d = threadIdx.x; d < D; d += DEC_THREADS) {
        float o = 0.0f, L = 0.0f;
        if (M > -INFINITY)
            for (int g2 = 0; g2 < GROUPS; g2++) {
                const float w = exp2f(sm_m[g2] - M); /* empty groups: exp2(-inf) = 0 */
                o += sm_o[g2][d] * w;
                L += sm_l[g2] * w;
            }
        if (n_splits == 1) {
            p.out[((int64_t)qrow * p.Hq + h) * D + d] = __float2bfloat16(L > 0.0f ? o / L : 0.0f);
        } else {
            float *pp = part + (((int64_t)s * p.Hq + h) * n_splits + split) * (D + 2);
            pp[d] = o;
            if (d == 0) {
                pp[D] = M;
                pp[D + 1] = L;
            }
        }
    }
}

/* out = merge of the splits' (o, m, l); one block per (head, sequence). */
__global__ void attn_decode_merge_kernel(const attn_params p, int n_splits,
                                         const float *__restrict__ part) {
    const int s = blockIdx.y, h = blockIdx.x, D = p.D;
    const attn_seq sq = attn_seq_info(p, s);
    if (sq.q_len < 1) return;
    const int qrow = sq.q_start + sq.q_len - 1;
    const float *pp = part + ((int64_t)s * p.Hq + h) * n_splits * (D + 2);
    float M = -INFINITY;
    for (int k = 0; k < n_splits; k++) M = fmaxf(M, pp[k * (D + 2) + D]);
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float o = 0.0f, L = 0.0f;
        if (M > -INFINITY)
            for (int k = 0; k < n_splits; k++) {
                const float w = exp2f(pp[k * (D + 2) + D] - M);
                o += pp[k * (D + 2) + d] * w;
                L += pp[k * (D + 2) + D + 1] * w;
            }
        p.out[((int64_t)qrow * p.Hq + h) * D + d] = __float2bfloat16(L > 0.0f ? o / L : 0.0f);
    }
}

template <int D>
static void decode_launch(ms_ctx *ctx, const attn_params &p, int32_t max_ctx, cudaStream_t st) {
    /* Enough blocks to fill the GPU twice over, but no split under 256 keys. */
    const int sms = ms_cuda_state_of(ctx)->sm_count;
    const int64_t base = (int64_t)p.nseq * p.Hq;
    int64_t splits = (2 * sms + base - 1) / base;
    const int64_t by_len = (max_ctx + DEC_MIN_KEYS_PER_SPLIT - 1) / DEC_MIN_KEYS_PER_SPLIT;
    if (splits > by_len) splits = by_len;
    if (splits > DEC_MAX_SPLITS) splits = DEC_MAX_SPLITS;
    if (splits < 1) splits = 1;
    const int32_t per_split = (int32_t)((max_ctx + splits - 1) / splits);
    float *part = NULL;
    if (splits > 1)
        part = (float *)ms_cuda_scratch(ctx, (size_t)(base * splits * (D + 2)) * sizeof(float));
    const dim3 grid((unsigned)splits, (unsigned)p.Hq, (unsigned)p.nseq);
    attn_decode_kernel<D><<<grid, DEC_THREADS, 0, st>>>(p, per_split > 0 ? per_split : 1, part);
    MS_CUDA_LAUNCHED(st);
    if (splits > 1) {
        attn_decode_merge_kernel<<<dim3((unsigned)p.Hq, (unsigned)p.nseq), 128, 0, st>>>(
            p, (int)splits, part);
        MS_CUDA_LAUNCHED(st);
    }
}

void ms_cuda_attention_paged(ms_ctx *ctx, ms_tensor *out, const ms_tensor *q,
                             const ms_tensor *k_cache, const ms_tensor *v_cache,
                             const ms_tensor *block_tables, const ms_tensor *cu_q,
                             const ms_tensor *ctx_lens, int32_t max_q, int32_t max_ctx,
                             float scale) {
    cudaStream_t st = ms_cuda_stream_of(ctx);
    attn_params p = {};
    p.out = (bf16 *)out->data;
    p.q = (const bf16 *)q->data;
    p.k = (const bf16 *)k_cache->data;
    p.v = (const bf16 *)v_cache->data;
    p.cu = (const int32_t *)cu_q->data;
    p.ctx_lens = (const int32_t *)ctx_lens->data;
    p.bt = (const int32_t *)block_tables->data;
    p.max_blocks = block_tables->shape[1];
    p.block_size = (int32_t)k_cache->shape[1];
    p.nseq = (int32_t)block_tables->shape[0];
    p.Hq = (int32_t)q->shape[1];
    p.Hkv = (int32_t)k_cache->shape[2];
    p.D = (int32_t)q->shape[2];
    p.n_blocks = (int32_t)k_cache->shape[0];
    p.T = (int32_t)q->shape[0];
    p.max_q = max_q;
    p.max_ctx = max_ctx;
    p.causal = true;
    p.scale_log2 = scale * 1.4426950408889634f;
    p.bad = ms_cuda_violations_of(ctx);
    p.op = MS_CUDA_OP_ATTENTION_PAGED;
    MS_CHECKF(p.nseq <= 65535 && p.Hq <= 65535, "attention_paged: %d sequences, %d heads",
              p.nseq, p.Hq);
    MS_CHECKF(q->shape[0] <= INT32_MAX && k_cache->shape[0] <= INT32_MAX,
              "attention_paged: %lld rows, %lld blocks", (long long)q->shape[0],
              (long long)k_cache->shape[0]);
    /* q has rows (the wrapper dispatches only then), so some sequence has a query and
     * reads at least one block: as the CPU, refuse what no sequence could hold. */
    MS_CHECKF(p.nseq > 0 && max_q > 0 && p.n_blocks > 0,
              "attention_paged: %lld query rows for %d sequences, max_q %d, %d cache blocks",
              (long long)q->shape[0], p.nseq, max_q, p.n_blocks);
    const bool aligned =
        ((uintptr_t)p.q | (uintptr_t)p.k | (uintptr_t)p.v | (uintptr_t)p.out) % 16 == 0;
    if (max_q == 1 && aligned && (p.D == 64 || p.D == 128)) {
        if (p.D == 64) decode_launch<64>(ctx, p, max_ctx, st);
        else decode_launch<128>(ctx, p, max_ctx, st);
    } else if (aligned && ms_cuda_attn_flash_supported(p.D)) {
        ms_cuda_attn_flash(p, max_q, st);
    } else {
        ms_cuda_attn_generic(p, max_q, st);
    }
    ms_cuda_indices_checked(ctx);
}
