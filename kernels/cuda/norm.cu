/*
 * Row normalisations: layernorm (CLIP), rmsnorm and the fused residual add + rmsnorm
 * (Llama). One block per row; f32 statistics; rows are read from device memory once
 * and again from L1/L2 for the later passes. Rows whose width is a multiple of 8 (every
 * model width) move 16 bytes per thread per access.
 */
#include "kernels/cuda/cuda_ops.cuh"

/* 8 bf16 <-> 8 f32 through one 16-byte access. */
__device__ __forceinline__ void load8(const bf16 *p, float f[8]) {
    const uint4 u = *reinterpret_cast<const uint4 *>(p);
    const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float2 v = __bfloat1622float2(h[i]);
        f[2 * i] = v.x;
        f[2 * i + 1] = v.y;
    }
}

__device__ __forceinline__ void store8(bf16 *p, const float f[8]) {
    uint4 u;
    __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
    *reinterpret_cast<uint4 *>(p) = u;
}

/* Columns [c, c + W) handled per step: W = 8 with vector access, else 1. */
template <int W> struct row_io {
    static __device__ __forceinline__ void load(const bf16 *p, float f[W]) {
        if constexpr (W == 8) load8(p, f);
        else f[0] = __bfloat162float(*p);
    }
    static __device__ __forceinline__ void store(bf16 *p, const float f[W]) {
        if constexpr (W == 8) store8(p, f);
        else *p = __float2bfloat16(f[0]);
    }
};

template <int W>
__global__ void layernorm_kernel(bf16 *__restrict__ y, const bf16 *__restrict__ x,
                                 const bf16 *__restrict__ gamma, const bf16 *__restrict__ beta,
                                 int64_t N, float eps) {
    __shared__ float red[32];
    const bf16 *xr = x + blockIdx.x * N;
    bf16 *yr = y + blockIdx.x * N;
    float f[W], g[W], b[W];
    float s = 0.0f;
    for (int64_t c = (int64_t)threadIdx.x * W; c < N; c += (int64_t)blockDim.x * W) {
        row_io<W>::load(xr + c, f);
#pragma unroll
        for (int i = 0; i < W; i++) s += f[i];
    }
    const float mean = ms_block_sum(s, red) / (float)N;
    float v = 0.0f;
    for (int64_t c = (int64_t)threadIdx.x * W; c < N; c += (int64_t)blockDim.x * W) {
        row_io<W>::load(xr + c, f);
#pragma unroll
        for (int i = 0; i < W; i++) v += (f[i] - mean) * (f[i] - mean);
    }
    const float inv = rsqrtf(ms_block_sum(v, red) / (float)N + eps); /* biased variance */
    for (int64_t c = (int64_t)threadIdx.x * W; c < N; c += (int64_t)blockDim.x * W) {
        row_io<W>::load(xr + c, f);
        row_io<W>::load(gamma + c, g);
        if (beta) row_io<W>::load(beta + c, b);
#pragma unroll
        for (int i = 0; i < W; i++) f[i] = (f[i] - mean) * inv * g[i] + (beta ? b[i] : 0.0f);
        row_io<W>::store(yr + c, f);
    }
}

/* rmsnorm; with residual != NULL first residual += x (rounded to bf16 as stored, which
 * is what the next layer reads), then the norm of the new residual. */
template <int W>
__global__ void rmsnorm_kernel(bf16 *y, bf16 *residual,
                               const bf16 *x, const bf16 *__restrict__ gamma,
                               int64_t N, float eps) {
    __shared__ float red[32];
    const int64_t off = blockIdx.x * N;
    const bf16 *src = residual ? residual + off : x + off;
    float f[W], g[W];
    float ss = 0.0f;
    for (int64_t c = (int64_t)threadIdx.x * W; c < N; c += (int64_t)blockDim.x * W) {
        if (residual) {
            float a[W];
            row_io<W>::load(residual + off + c, f);
            row_io<W>::load(x + off + c, a);
#pragma unroll
            for (int i = 0; i < W; i++) f[i] = __bfloat162float(__float2bfloat16(f[i] + a[i]));
            row_io<W>::store(residual + off + c, f);
        } else {
            row_io<W>::load(src + c, f);
        }
#pragma unroll
        for (int i = 0; i < W; i++) ss += f[i] * f[i];
    }
    const float inv = rsqrtf(ms_block_sum(ss, red) / (float)N + eps);
    /* Each thread re-reads only the columns it wrote: no barrier needed for residual. */
    for (int64_t c = (int64_t)threadIdx.x * W; c < N; c += (int64_t)blockDim.x * W) {
        row_io<W>::load(src + c, f);
        row_io<W>::load(gamma + c, g);
#pragma unroll
        for (int i = 0; i < W; i++) f[i] = g[i] * (f[i] * inv);
        row_io<W>::store(y + off + c, f);
    }
}

static bool aligned16(const void *p) {
    return ((uintptr_t)p & 15) == 0;
}

/* Threads per row block: enough to cover the row once with W columns each, 32..1024. */
static int row_threads(int64_t N, int W) {
    int64_t t = (N / W + 31) / 32 * 32;
    if (t < 32) t = 32;
    if (t > 512) t = 512;
    return (int)t;
}

void ms_cuda_layernorm(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x, const ms_tensor *gamma,
                       const ms_tensor *beta, float eps) {
    cudaStream_t st = ms_cuda_stream_of(ctx);
    const int64_t M = ms_tensor_rows(x), N = ms_tensor_cols(x);
    const bf16 *b = beta ? (const bf16 *)beta->data : NULL;
    const bool vec = N % 8 == 0 && aligned16(x->data) && aligned16(y->data) &&
                     aligned16(gamma->data) && (!b || aligned16(b));
    if (vec)
        layernorm_kernel<8><<<(unsigned)M, row_threads(N, 8), 0, st>>>(
            (bf16 *)y->data, (const bf16 *)x->data, (const bf16 *)gamma->data, b, N, eps);
    else
        layernorm_kernel<1><<<(unsigned)M, row_threads(N, 1), 0, st>>>(
            (bf16 *)y->data, (const bf16 *)x->data, (const bf16 *)gamma->data, b, N, eps);
    MS_CUDA_LAUNCHED(st);
}

static void rmsnorm_launch(ms_ctx *ctx, bf16 *y, bf16 *residual, const bf16 *x,
                           const bf16 *gamma, int64_t M, int64_t N, float eps) {
    cudaStream_t st = ms_cuda_stream_of(ctx);
    const bool vec = N % 8 == 0 && aligned16(x) && aligned16(y) && aligned16(gamma) &&
                     (!residual || aligned16(residual));
    if (vec)
        rmsnorm_kernel<8><<<(unsigned)M, row_threads(N, 8), 0, st>>>(y, residual, x, gamma, N, eps);
    else
        rmsnorm_kernel<1><<<(unsigned)M, row_threads(N, 1), 0, st>>>(y, residual, x, gamma, N, eps);
    MS_CUDA_LAUNCHED(st);
}

void ms_cuda_rmsnorm(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x, const ms_tensor *gamma,
                     float eps) {
    rmsnorm_launch(ctx, (bf16 *)y->data, NULL, (const bf16 *)x->data, (const bf16 *)gamma->data,
                   ms_tensor_rows(x), ms_tensor_cols(x), eps);
}

void ms_cuda_add_rmsnorm(ms_ctx *ctx, ms_tensor *residual, const ms_tensor *x, ms_tensor *y,
                         const ms_tensor *gamma, float eps) {
    rmsnorm_launch(ctx, (bf16 *)y->data, (bf16 *)residual->data, (const bf16 *)x->data,
                   (const bf16 *)gamma->data, ms_tensor_rows(x), ms_tensor_cols(x), eps);
}
