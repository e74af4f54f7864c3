/*
 * Attention kernels shared by ms_op_attention (packed sequences) and
 * ms_op_attention_paged (queries against the paged KV cache).
 *
 * Both ops are "query rows of sequence s against keys 0..kv_len-1 of s"; they differ in
 * where rows live. attn_seq_info() reads one sequence's rows and mask from the index
 * tensors; attn_kv_row() finds a key/value row, packed or through the block table.
 *
 * Kernels:
 * - attn_flash<D>: tensor cores (mma.sync m16n8k16 bf16, f32 accumulate), a block of 4
 *   warps per 64 query rows of one head, key/value tiles of 64 rows double-buffered in
 *   shared memory through cp.async, online softmax in registers (FlashAttention-2's
 *   scheme). D in {16, 64, 128}.
 * - attn_generic: one warp per (query row, head), online softmax over keys one by one;
 *   any D <= 256. Correct everywhere, fast nowhere: the fallback.
 */
#ifndef MS_CUDA_ATTENTION_CUH
#define MS_CUDA_ATTENTION_CUH

#include "kernels/cuda/cuda_common.cuh"

/* Where the rows are. Packed: k/v [T,Hkv,D], sequence s's keys at rows cu[s]...
 * Paged: k/v caches [n_blocks, bs, Hkv, D], key j of s in block bt[s][j / bs]. */
typedef struct attn_params {
    bf16 *out;                 /* [T, Hq, D] */
    const bf16 *q;             /* [T, Hq, D] */
    const bf16 *k, *v;
    const int32_t *cu;         /* [nseq + 1] query row starts (packed: also key rows) */
    const int32_t *ctx_lens;   /* [nseq], paged only (NULL: packed) */
    const int32_t *bt;         /* [nseq, max_blocks], paged only */
    int64_t max_blocks;
    int32_t block_size;
    int32_t nseq, Hq, Hkv, D;
    bool causal;
    float scale_log2;          /* scale * log2(e): softmax in base 2 */
} attn_params;

typedef struct attn_seq {
    int32_t q_start, q_len, kv_len;
    int32_t q_pos0; /* position of query row 0 (causal mask: key j <= q_pos0 + i) */
} attn_seq;

__device__ __forceinline__ attn_seq attn_seq_info(const attn_params &p, int s) {
    attn_seq r;
    r.q_start = p.cu[s];
    r.q_len = p.cu[s + 1] - p.cu[s];
    if (p.ctx_lens) {
        r.kv_len = p.ctx_lens[s];
        r.q_pos0 = r.kv_len - r.q_len;
    } else {
        r.kv_len = r.q_len;
        r.q_pos0 = 0;
    }
    return r;
}

/* Row j of sequence s's keys (want_v: values), kv head kvh. */
__device__ __forceinline__ const bf16 *attn_kv_row(const attn_params &p, int s,
                                                   const attn_seq &sq, int j, int kvh,
                                                   bool want_v) {
    const bf16 *base = want_v ? p.v : p.k;
    int64_t row;
    if (p.bt) {
        const int32_t blk = p.bt[(int64_t)s * p.max_blocks + j / p.block_size];
        row = (int64_t)blk * p.block_size + j % p.block_size;
    } else {
        row = (int64_t)sq.q_start + j;
    }
    return base + (row * p.Hkv + kvh) * p.D;
}

/* Launchers (attention_kernels.cu). max_q: longest query run of a sequence. */
bool ms_cuda_attn_flash_supported(int D);
void ms_cuda_attn_flash(const attn_params &p, int32_t max_q, cudaStream_t st);
void ms_cuda_attn_generic(const attn_params &p, int32_t max_q, cudaStream_t st);

#endif
