/*
 * Attention kernels shared by ms_op_attention (packed sequences) and
 * ms_op_attention_paged (queries against the paged KV cache).
 *
 * Both ops are "query rows of sequence s against keys 0..kv_len-1 of s"; they differ in
 * where rows live. attn_seq_info() reads one sequence's rows and mask from the index
 * tensors; attn_kv_row() finds a key/value row, packed or through the block table.
 * Both check the indices they read against the op's contract (docs/kernels.md): a bad
 * one is recorded in p.bad (see cuda_common.cuh) and its sequence made empty, or its
 * block replaced by block 0, so no kernel reads or writes outside the tensors.
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
    int32_t n_blocks;          /* paged: blocks in the cache */
    int32_t nseq, Hq, Hkv, D;
    int32_t T;                 /* rows of q */
    int32_t max_q;             /* most query rows a sequence may have (max_seqlen, max_q) */
    int32_t max_ctx;           /* paged: most keys a sequence may have */
    bool causal;
    float scale_log2;          /* scale * log2(e): softmax in base 2 */
    ms_cuda_violation *bad;    /* where a bad index is recorded */
    int32_t op;                /* ms_cuda_checked_op, for the record */
} attn_params;

typedef struct attn_seq {
    int32_t q_start, q_len, kv_len;
    int32_t q_pos0; /* position of query row 0 (causal mask: key j <= q_pos0 + i) */
} attn_seq;

/* Sequence s's rows, checked: cu runs from 0 to T without going back, no sequence has
 * more than max_q query rows, and (paged) q_len <= ctx_len <= max_ctx. A sequence that
 * breaks the contract is reported and comes back empty (q_len = kv_len = 0). Every
 * thread of a block computes the same answer, so an early return on it is uniform. */
__device__ __forceinline__ attn_seq attn_seq_info(const attn_params &p, int s) {
    attn_seq r;
    const int32_t c0 = p.cu[s], c1 = p.cu[s + 1];
    r.q_start = c0;
    r.q_len = c1 - c0;
    int code = MS_CUDA_BAD_NONE;
    int64_t value = 0, limit = 0;
    if (s == 0 && c0 != 0) {
        code = MS_CUDA_BAD_CU_START, value = c0, limit = p.T;
    } else if (s == p.nseq - 1 && c1 != p.T) {
        code = MS_CUDA_BAD_CU_END, value = c1, limit = p.T;
    } else if (c0 < 0 || c1 > p.T || r.q_len < 0 || r.q_len > p.max_q) {
        code = MS_CUDA_BAD_SEQ_ROWS, value = r.q_len, limit = p.max_q;
    }
    if (p.ctx_lens) {
        r.kv_len = p.ctx_lens[s];
        if (code == MS_CUDA_BAD_NONE && r.kv_len > p.max_ctx)
            code = MS_CUDA_BAD_CTX_OVER, value = r.kv_len, limit = p.max_ctx;
        else if (code == MS_CUDA_BAD_NONE && r.kv_len < r.q_len)
            code = MS_CUDA_BAD_CTX_UNDER, value = r.kv_len, limit = r.q_len;
        r.q_pos0 = r.kv_len - r.q_len;
    } else {
        r.kv_len = r.q_len;
        r.q_pos0 = 0;
    }
    if (code != MS_CUDA_BAD_NONE) {
        ms_cuda_report(p.bad, p.op, code, s, value, limit);
        r.q_start = r.q_len = r.kv_len = r.q_pos0 = 0;
    }
    return r;
}

/* Row j of sequence s's keys (want_v: values), kv head kvh; j < sq.kv_len, so the
 * block table entry read is inside the table (max_ctx <= max_blocks * block_size is
 * checked on the host). A block id outside the cache is reported and block 0 read. */
__device__ __forceinline__ const bf16 *attn_kv_row(const attn_params &p, int s,
                                                   const attn_seq &sq, int j, int kvh,
                                                   bool want_v) {
    const bf16 *base = want_v ? p.v : p.k;
    int64_t row;
    if (p.bt) {
        int32_t blk = p.bt[(int64_t)s * p.max_blocks + j / p.block_size];
        if (blk < 0 || blk >= p.n_blocks) {
            ms_cuda_report(p.bad, p.op, MS_CUDA_BAD_BLOCK, s, blk, p.n_blocks);
            blk = 0;
        }
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
