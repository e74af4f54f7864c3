/*
 * Elementwise ops over bf16: gelu (erf form), quick_gelu, silu(gate) * up, and the add
 * with row broadcast. f32 math. When every pointer is 16-byte aligned and the count is
 * a multiple of 8, each thread moves 8 elements per access.
 */
#include <math.h>

#include "kernels/cuda/cuda_ops.cuh"

struct op_gelu {
    __device__ float operator()(float x, float) const {
        return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    }
};
struct op_quick_gelu {
    __device__ float operator()(float x, float) const { return x / (1.0f + expf(-1.702f * x)); }
};
struct op_silu_mul {
    __device__ float operator()(float g, float u) const { return g / (1.0f + expf(-g)) * u; }
};
struct op_add {
    __device__ float operator()(float a, float b) const { return a + b; }
};

/* y[i] = f(a[i], b[bidx(i)]), b's index wrapping every bn elements (bn = n: no broadcast). */
template <typename F, int W>
__global__ void binary_kernel(bf16 *y, const bf16 *a, const bf16 *b, int64_t n, int64_t bn, F f) {
    const int64_t nv = n / W;
    for (int64_t v = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; v < nv;
         v += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = v * W;
        if constexpr (W == 8) {
            uint4 ua = *reinterpret_cast<const uint4 *>(a + i), ub = make_uint4(0, 0, 0, 0), uy;
            if (b) ub = *reinterpret_cast<const uint4 *>(b + i % bn);
            const __nv_bfloat162 *ha = reinterpret_cast<const __nv_bfloat162 *>(&ua);
            const __nv_bfloat162 *hb = reinterpret_cast<const __nv_bfloat162 *>(&ub);
            __nv_bfloat162 *hy = reinterpret_cast<__nv_bfloat162 *>(&uy);
#pragma unroll
            for (int k = 0; k < 4; k++) {
                const float2 fa = __bfloat1622float2(ha[k]), fb = __bfloat1622float2(hb[k]);
                hy[k] = __floats2bfloat162_rn(f(fa.x, fb.x), f(fa.y, fb.y));
            }
            *reinterpret_cast<uint4 *>(y + i) = uy;
        } else {
            const float fb = b ? __bfloat162float(b[i % bn]) : 0.0f;
            y[i] = __float2bfloat16(f(__bfloat162float(a[i]), fb));
        }
    }
}

/* bn must be a multiple of 8 for the vector path (then i % bn stays 8-aligned). */
template <typename F>
static void binary_launch(ms_ctx *ctx, void *y, const void *a, const void *b, int64_t n,
                          int64_t bn, F f) {
    cudaStream_t st = ms_cuda_stream_of(ctx);
    const uintptr_t al = (uintptr_t)y | (uintptr_t)a | (uintptr_t)b;
    if ((al & 15) == 0 && n % 8 == 0 && bn % 8 == 0)
        binary_kernel<F, 8><<<ms_cuda_blocks(n / 8, 256), 256, 0, st>>>(
            (bf16 *)y, (const bf16 *)a, (const bf16 *)b, n, bn, f);
    else
        binary_kernel<F, 1><<<ms_cuda_blocks(n, 256), 256, 0, st>>>(
            (bf16 *)y, (const bf16 *)a, (const bf16 *)b, n, bn, f);
    MS_CUDA_LAUNCHED(st);
}

void ms_cuda_gelu(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x) {
    const int64_t n = ms_tensor_numel(x);
    binary_launch(ctx, y->data, x->data, NULL, n, n, op_gelu());
}

void ms_cuda_quick_gelu(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x) {
    const int64_t n = ms_tensor_numel(x);
    binary_launch(ctx, y->data, x->data, NULL, n, n, op_quick_gelu());
}

void ms_cuda_silu_mul(ms_ctx *ctx, ms_tensor *y, const ms_tensor *gate, const ms_tensor *up) {
    const int64_t n = ms_tensor_numel(gate);
    binary_launch(ctx, y->data, gate->data, up->data, n, n, op_silu_mul());
}

/* y[i,:] = a[i,:] + b[i % R,:]: flat index i*N + c maps to b's flat (i*N + c) % (R*N). */
void ms_cuda_add(ms_ctx *ctx, ms_tensor *y, const ms_tensor *a, const ms_tensor *b) {
    binary_launch(ctx, y->data, a->data, b->data, ms_tensor_numel(a), ms_tensor_numel(b),
                  op_add());
}
