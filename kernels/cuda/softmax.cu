/* Row softmax, f32 math, max-subtracted; one block per row. */
#include <math.h>

#include "kernels/cuda/cuda_ops.cuh"

__global__ void softmax_kernel(bf16 *__restrict__ y, const bf16 *__restrict__ x, int64_t N) {
    __shared__ float red[32];
    const bf16 *xr = x + blockIdx.x * N;
    bf16 *yr = y + blockIdx.x * N;
    float mx = -INFINITY;
    for (int64_t c = threadIdx.x; c < N; c += blockDim.x) mx = fmaxf(mx, __bfloat162float(xr[c]));
    mx = ms_block_max(mx, red, -INFINITY);
    if (mx == -INFINITY) mx = 0.0f; /* all -inf: zeros, as the reference */
    float s = 0.0f;
    for (int64_t c = threadIdx.x; c < N; c += blockDim.x) s += expf(__bfloat162float(xr[c]) - mx);
    s = ms_block_sum(s, red);
    const float inv = s > 0.0f ? 1.0f / s : 0.0f;
    for (int64_t c = threadIdx.x; c < N; c += blockDim.x)
        yr[c] = __float2bfloat16(expf(__bfloat162float(xr[c]) - mx) * inv);
}

void ms_cuda_softmax(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x) {
    cudaStream_t st = ms_cuda_stream_of(ctx);
    const int64_t M = ms_tensor_rows(x), N = ms_tensor_cols(x);
    int threads = (int)((N + 31) / 32 * 32);
    threads = threads < 32 ? 32 : threads > 1024 ? 1024 : threads;
    softmax_kernel<<<(unsigned)M, threads, 0, st>>>((bf16 *)y->data, (const bf16 *)x->data, N);
    MS_CUDA_LAUNCHED(st);
}
