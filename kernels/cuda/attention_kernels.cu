/*
 * The attention kernels (see attention.cuh): the tensor-core flash kernel and the
 * generic one-warp-per-query fallback.
 *
 * Fragment layouts are the PTX ISA's for mma.m16n8k16 with bf16 inputs, lane = 4*g + t
 * (g = lane / 4 the "group", t = lane % 4):
 *   A (16x16, row-major) regs a0..a3: (row g, cols 2t..2t+1), (row g+8, cols 2t..),
 *                                     (row g, cols 2t+8..), (row g+8, cols 2t+8..)
 *   B (16x8, "col")      regs b0, b1: (k rows 2t..2t+1, col g), (k rows 2t+8.., col g)
 *   C (16x8, f32)        c0..c3:      (row g, cols 2t, 2t+1), (row g+8, cols 2t, 2t+1)
 * so a C tile of scores becomes, two n-tiles at a time, the A operand of P.V with no
 * data movement, and each row's softmax statistics are reduced over the 4 lanes of a
 * group. ldmatrix fills A and B from shared memory (with .trans for V, which is stored
 * [key][dim] but consumed as the k x n operand).
 */
#include <math.h>

#include "kernels/cuda/attention.cuh"

/* ---- PTX wrappers ---- */

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16 bytes global -> shared, asynchronously; zero-filled when !valid. */
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, bool valid) {
    const int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem)),
                 "l"(gmem), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::);
}
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

/* c += a b for one 16x8x16 tile. */
__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t *>(&h);
}

/* ---- flash kernel ---- */

enum { FA_BM = 64, FA_BN = 64, FA_WARPS = 4, FA_THREADS = FA_WARPS * 32 };

template <int D> constexpr int fa_stride() {
    return D + 8; /* 16-byte aligned rows for ldmatrix, and no bank conflicts */
}
template <int D> constexpr size_t fa_smem_bytes() {
    return (size_t)(FA_BM + 4 * FA_BN) * fa_stride<D>() * sizeof(bf16); /* Q, 2x K, 2x V */
}

/* Rows [0, n_rows) of a 64-row tile into smem (row stride fa_stride<D>); rows past the
 * end are zero-filled. row_ptr(r) gives the global row. */
template <int D, typename RowPtr>
__device__ __forceinline__ void fa_load_tile(bf16 *sm, int n_rows, RowPtr row_ptr,
                                             const bf16 *any_valid) {
    constexpr int CH = D / 8; /* 16-byte chunks per row */
    for (int c = threadIdx.x; c < FA_BN * CH; c += FA_THREADS) {
        const int r = c / CH, ch = c % CH;
        const bool ok = r < n_rows;
        const bf16 *src = ok ? row_ptr(r) + ch * 8 : any_valid;
        cp_async16(sm + r * fa_stride<D>() + ch * 8, src, ok);
    }
}

template <int D>
__global__ void __launch_bounds__(FA_THREADS) attn_flash_kernel(const attn_params p) {
    constexpr int S = fa_stride<D>();
    constexpr int NT_S = FA_BN / 8;  /* score n-tiles per warp row block */
    constexpr int NT_O = D / 8;      /* output n-tiles */
    constexpr int KC = D / 16;       /* k-chunks of q.k */
    extern __shared__ __align__(16) unsigned char fa_smem[];
    bf16 *Qs = reinterpret_cast<bf16 *>(fa_smem);
    bf16 *Ks = Qs + FA_BM * S;        /* [2][FA_BN][S] */
    bf16 *Vs = Ks + 2 * FA_BN * S;    /* [2][FA_BN][S] */

    const int s = blockIdx.z, h = blockIdx.y;
    const attn_seq sq = attn_seq_info(p, s);
    const int m0 = blockIdx.x * FA_BM;
    if (m0 >= sq.q_len) return; /* whole block: no barrier is skipped by part of it */
    const int kvh = h / (p.Hq / p.Hkv);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;

    /* Keys this tile of queries can see. */
    int kv_end = sq.kv_len;
    if (p.causal) kv_end = min(kv_end, sq.q_pos0 + m0 + FA_BM);
    const int n_tiles = kv_end > 0 ? (kv_end + FA_BN - 1) / FA_BN : 0;

    const int q_rows = min(FA_BM, sq.q_len - m0);
    fa_load_tile<D>(Qs, q_rows,
                    [&](int r) { return p.q + ((int64_t)(sq.q_start + m0 + r) * p.Hq + h) * D; },
                    p.q);
    cp_async_commit();
    auto load_kv = [&](int jt, int buf) {
        const int n0 = jt * FA_BN, rows = min(FA_BN, kv_end - n0);
        fa_load_tile<D>(Ks + buf * FA_BN * S, rows,
                        [&](int r) { return attn_kv_row(p, s, sq, n0 + r, kvh, false); }, p.k);
        fa_load_tile<D>(Vs + buf * FA_BN * S, rows,
                        [&](int r) { return attn_kv_row(p, s, sq, n0 + r, kvh, true); }, p.v);
    };
    if (n_tiles > 0) load_kv(0, 0);
    cp_async_commit();
    cp_async_wait<1>(); /* Q has landed */
    __syncthreads();

    /* This warp's 16 query rows as A fragments, one per k-chunk. */
    uint32_t qa[KC][4];
    {
        const int mi = lane / 8;
        const bf16 *base = Qs + (warp * 16 + (mi & 1) * 8 + lane % 8) * S + (mi >> 1) * 8;
#pragma unroll
        for (int kc = 0; kc < KC; kc++) ldsm_x4(qa[kc], base + kc * 16);
    }

    float o[NT_O][4];
#pragma unroll
    for (int i = 0; i < NT_O; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};
    /* Query index (within the sequence) of this lane's two rows. */
    const int qi0 = m0 + warp * 16 + g, qi1 = qi0 + 8;

    for (int jt = 0; jt < n_tiles; jt++) {
        const int buf = jt & 1;
        if (jt + 1 < n_tiles) load_kv(jt + 1, buf ^ 1);
        cp_async_commit();
        cp_async_wait<1>(); /* tile jt has landed (the one just issued may still fly) */
        __syncthreads();
        const bf16 *Kb = Ks + buf * FA_BN * S, *Vb = Vs + buf * FA_BN * S;
        const int n0 = jt * FA_BN;

        /* S = Q K^T for 16 rows x 64 keys. */
        float sc[NT_S][4];
#pragma unroll
        for (int i = 0; i < NT_S; i++) sc[i][0] = sc[i][1] = sc[i][2] = sc[i][3] = 0.0f;
        {
            const int mi = lane / 8;
            const bf16 *base = Kb + ((mi >> 1) * 8 + lane % 8) * S + (mi & 1) * 8;
#pragma unroll
            for (int kc = 0; kc < KC; kc++)
#pragma unroll
                for (int np = 0; np < NT_S / 2; np++) {
                    uint32_t b[4];
                    ldsm_x4(b, base + np * 16 * S + kc * 16);
                    mma_bf16(sc[2 * np], qa[kc], b[0], b[1]);
                    mma_bf16(sc[2 * np + 1], qa[kc], b[2], b[3]);
                }
        }

        /* Scale, mask, online softmax. */
        const bool need_mask = n0 + FA_BN > sq.kv_len ||
                               (p.causal && n0 + FA_BN - 1 > sq.q_pos0 + m0 + warp * 16);
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int i = 0; i < NT_S; i++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float v = sc[i][e] * p.scale_log2;
                if (need_mask) {
                    const int j = n0 + i * 8 + 2 * t + (e & 1);
                    const int qi = e < 2 ? qi0 : qi1;
                    if (j >= sq.kv_len || (p.causal && j > sq.q_pos0 + qi)) v = -INFINITY;
                }
                sc[i][e] = v;
                mx[e >> 1] = fmaxf(mx[e >> 1], v);
            }
        float alpha[2], m_use[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
            const float m_new = fmaxf(m_run[r], mx[r]);
            m_use[r] = m_new == -INFINITY ? 0.0f : m_new; /* fully masked so far: p = 0 */
            alpha[r] = exp2f(m_run[r] - m_use[r]);
            m_run[r] = m_new;
        }
        float rs[2] = {0.0f, 0.0f};
#pragma unroll
        for (int i = 0; i < NT_S; i++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float pe = exp2f(sc[i][e] - m_use[e >> 1]);
                sc[i][e] = pe;
                rs[e >> 1] += pe;
            }
#pragma unroll
        for (int r = 0; r < 2; r++) l_run[r] = l_run[r] * alpha[r] + rs[r];
#pragma unroll
        for (int i = 0; i < NT_O; i++) {
            o[i][0] *= alpha[0];
            o[i][1] *= alpha[0];
            o[i][2] *= alpha[1];
            o[i][3] *= alpha[1];
        }

        /* O += P V: P's C tiles (2kk, 2kk+1) are the A operand for keys 16kk..16kk+15. */
        {
            const int mi = lane / 8;
            const bf16 *base = Vb + ((mi & 1) * 8 + lane % 8) * S + (mi >> 1) * 8;
#pragma unroll
            for (int kk = 0; kk < FA_BN / 16; kk++) {
                uint32_t pa[4];
                pa[0] = pack_bf16x2(sc[2 * kk][0], sc[2 * kk][1]);
                pa[1] = pack_bf16x2(sc[2 * kk][2], sc[2 * kk][3]);
                pa[2] = pack_bf16x2(sc[2 * kk + 1][0], sc[2 * kk + 1][1]);
                pa[3] = pack_bf16x2(sc[2 * kk + 1][2], sc[2 * kk + 1][3]);
#pragma unroll
                for (int dp = 0; dp < NT_O / 2; dp++) {
                    uint32_t b[4];
                    ldsm_x4_trans(b, base + kk * 16 * S + dp * 16);
                    mma_bf16(o[2 * dp], pa, b[0], b[1]);
                    mma_bf16(o[2 * dp + 1], pa, b[2], b[3]);
                }
            }
        }
        __syncthreads(); /* every warp is done with buf before it is refilled */
    }
    cp_async_wait<0>();

    /* Normalise and store this lane's two rows. */
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float l = l_run[r];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        const int qi = r == 0 ? qi0 : qi1;
        if (qi >= sq.q_len) continue;
        bf16 *dst = p.out + ((int64_t)(sq.q_start + qi) * p.Hq + h) * D + 2 * t;
#pragma unroll
        for (int i = 0; i < NT_O; i++)
            *reinterpret_cast<__nv_bfloat162 *>(dst + i * 8) =
                __floats2bfloat162_rn(o[i][2 * r] * inv, o[i][2 * r + 1] * inv);
    }
}

template <int D> static void flash_launch(const attn_params &p, int32_t max_q, cudaStream_t st) {
    const size_t smem = fa_smem_bytes<D>();
    MS_CUDA_CHECK(cudaFuncSetAttribute(attn_flash_kernel<D>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    const dim3 grid((unsigned)((max_q + FA_BM - 1) / FA_BM), (unsigned)p.Hq, (unsigned)p.nseq);
    attn_flash_kernel<D><<<grid, FA_THREADS, smem, st>>>(p);
    MS_CUDA_LAUNCHED(st);
}

bool ms_cuda_attn_flash_supported(int D) {
    return D == 16 || D == 64 || D == 128;
}

void ms_cuda_attn_flash(const attn_params &p, int32_t max_q, cudaStream_t st) {
    MS_CHECKF(((uintptr_t)p.q | (uintptr_t)p.k | (uintptr_t)p.v | (uintptr_t)p.out) % 16 == 0,
              "attention: tensors must be 16-byte aligned for the flash kernel");
    switch (p.D) {
    case 16: flash_launch<16>(p, max_q, st); return;
    case 64: flash_launch<64>(p, max_q, st); return;
    case 128: flash_launch<128>(p, max_q, st); return;
    }
    MS_CHECKF(false, "attention: no flash kernel for head dim %d", p.D);
}

/* ---- generic kernel: one warp per (query row, head) ---- */

enum { GEN_MAX_PER_LANE = 8 }; /* D <= 256 */

__global__ void attn_generic_kernel(const attn_params p) {
    const int s = blockIdx.z, h = blockIdx.y, qi = blockIdx.x, lane = threadIdx.x;
    const attn_seq sq = attn_seq_info(p, s);
    if (qi >= sq.q_len) return;
    const int kvh = h / (p.Hq / p.Hkv), D = p.D;
    const int n_keys = p.causal ? min(sq.kv_len, sq.q_pos0 + qi + 1) : sq.kv_len;
    const bf16 *q = p.q + ((int64_t)(sq.q_start + qi) * p.Hq + h) * D;
    float qv[GEN_MAX_PER_LANE], acc[GEN_MAX_PER_LANE];
#pragma unroll
    for (int r = 0; r < GEN_MAX_PER_LANE; r++) {
        const int d = lane + 32 * r;
        qv[r] = d < D ? __bfloat162float(q[d]) * p.scale_log2 : 0.0f;
        acc[r] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int j = 0; j < n_keys; j++) {
        const bf16 *k = attn_kv_row(p, s, sq, j, kvh, false);
        float dot = 0.0f;
#pragma unroll
        for (int r = 0; r < GEN_MAX_PER_LANE; r++) {
            const int d = lane + 32 * r;
            if (d < D) dot += qv[r] * __bfloat162float(k[d]);
        }
        dot = ms_warp_sum(dot);
        const float m_new = fmaxf(m, dot);
        const float corr = exp2f(m - m_new), pj = exp2f(dot - m_new);
        l = l * corr + pj;
        const bf16 *v = attn_kv_row(p, s, sq, j, kvh, true);
#pragma unroll
        for (int r = 0; r < GEN_MAX_PER_LANE; r++) {
            const int d = lane + 32 * r;
            if (d < D) acc[r] = acc[r] * corr + pj * __bfloat162float(v[d]);
        }
        m = m_new;
    }
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    bf16 *out = p.out + ((int64_t)(sq.q_start + qi) * p.Hq + h) * D;
#pragma unroll
    for (int r = 0; r < GEN_MAX_PER_LANE; r++) {
        const int d = lane + 32 * r;
        if (d < D) out[d] = __float2bfloat16(acc[r] * inv);
    }
}

void ms_cuda_attn_generic(const attn_params &p, int32_t max_q, cudaStream_t st) {
    MS_CHECKF(p.D <= 32 * GEN_MAX_PER_LANE, "attention: head dim %d over %d", p.D,
              32 * GEN_MAX_PER_LANE);
    MS_CHECKF(p.Hq <= 65535 && p.nseq <= 65535, "attention: %d heads, %d sequences", p.Hq,
              p.nseq);
    const dim3 grid((unsigned)max_q, (unsigned)p.Hq, (unsigned)p.nseq);
    attn_generic_kernel<<<grid, 32, 0, st>>>(p);
    MS_CUDA_LAUNCHED(st);
}
