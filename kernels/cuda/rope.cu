/*
 * Rotate-half RoPE in place on x[T,H,D], as transformers' Llama: pairs (i, i + D/2),
 * inv_freq[i] = 1 / theta^(2i/D), angle = position * inv_freq (both f32), cos and sin
 * taken in double of that f32 angle (as the reference) so large positions agree.
 * One thread per (row, pair); it rotates that pair in every head.
 */
#include <math.h>

#include "kernels/cuda/cuda_ops.cuh"

__global__ void rope_kernel(bf16 *__restrict__ x, const int32_t *__restrict__ pos, int64_t T,
                            int64_t H, int64_t D, float theta) {
    const int64_t half = D / 2;
    const int64_t n = T * half;
    for (int64_t it = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; it < n;
         it += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = it / half, i = it % half;
        const float inv_freq = (float)(1.0 / pow((double)theta, (double)(2 * i) / (double)D));
        const float ang = (float)pos[t] * inv_freq;
        double sd, cd;
        sincos((double)ang, &sd, &cd);
        const float c = (float)cd, s = (float)sd;
        for (int64_t h = 0; h < H; h++) {
            bf16 *v = x + (t * H + h) * D;
            const float a = __bfloat162float(v[i]), b = __bfloat162float(v[i + half]);
            v[i] = __float2bfloat16(a * c - b * s);
            v[i + half] = __float2bfloat16(b * c + a * s);
        }
    }
}

void ms_cuda_rope(ms_ctx *ctx, ms_tensor *x, const ms_tensor *positions, float theta) {
    cudaStream_t st = ms_cuda_stream_of(ctx);
    const int64_t T = x->shape[0], H = x->shape[1], D = x->shape[2];
    rope_kernel<<<ms_cuda_blocks(T * (D / 2), 128), 128, 0, st>>>(
        (bf16 *)x->data, (const int32_t *)positions->data, T, H, D, theta);
    MS_CUDA_LAUNCHED(st);
}
