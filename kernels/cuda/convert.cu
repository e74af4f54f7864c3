/* convert (f32/bf16/f16 to f32/bf16/f16, i32 to i32) and fill, elementwise. */
#include "kernels/cuda/cuda_ops.cuh"

template <typename TD, typename TS>
__global__ void convert_kernel(TD *__restrict__ dst, const TS *__restrict__ src, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        ms_st(dst + i, ms_ld(src + i));
}

template <typename T> __global__ void fill_kernel(T *__restrict__ dst, T value, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = value;
}

template <typename TD, typename TS>
static void convert_launch(cudaStream_t st, void *dst, const void *src, int64_t n) {
    convert_kernel<TD, TS><<<ms_cuda_blocks(n, 256), 256, 0, st>>>((TD *)dst, (const TS *)src, n);
    MS_CUDA_LAUNCHED(st);
}

template <typename TD>
static void convert_from(cudaStream_t st, void *dst, const void *src, ms_dtype sdt, int64_t n) {
    switch (sdt) {
    case MS_DTYPE_F32: convert_launch<TD, float>(st, dst, src, n); return;
    case MS_DTYPE_BF16: convert_launch<TD, bf16>(st, dst, src, n); return;
    case MS_DTYPE_F16: convert_launch<TD, __half>(st, dst, src, n); return;
    case MS_DTYPE_I32: break;
    }
    MS_CHECKF(false, "cuda convert: source dtype %s", ms_dtype_name(sdt));
}

void ms_cuda_convert(ms_ctx *ctx, ms_tensor *dst, const ms_tensor *src) {
    cudaStream_t st = ms_cuda_stream_of(ctx);
    const int64_t n = ms_tensor_numel(src);
    if (dst->dtype == src->dtype) { /* same dtype (i32 included): a plain copy */
        MS_CUDA_CHECK(cudaMemcpyAsync(dst->data, src->data, ms_tensor_nbytes(src),
                                      cudaMemcpyDeviceToDevice, st));
        return;
    }
    switch (dst->dtype) {
    case MS_DTYPE_F32: convert_from<float>(st, dst->data, src->data, src->dtype, n); return;
    case MS_DTYPE_BF16: convert_from<bf16>(st, dst->data, src->data, src->dtype, n); return;
    case MS_DTYPE_F16: convert_from<__half>(st, dst->data, src->data, src->dtype, n); return;
    case MS_DTYPE_I32: break;
    }
    MS_CHECKF(false, "cuda convert: %s -> %s", ms_dtype_name(src->dtype), ms_dtype_name(dst->dtype));
}

template <typename T> static void fill_launch(cudaStream_t st, void *dst, T v, int64_t n) {
    fill_kernel<T><<<ms_cuda_blocks(n, 256), 256, 0, st>>>((T *)dst, v, n);
    MS_CUDA_LAUNCHED(st);
}

void ms_cuda_fill(ms_ctx *ctx, ms_tensor *dst, float value) {
    cudaStream_t st = ms_cuda_stream_of(ctx);
    const int64_t n = ms_tensor_numel(dst);
    switch (dst->dtype) {
    case MS_DTYPE_F32: fill_launch<float>(st, dst->data, value, n); return;
    case MS_DTYPE_BF16: fill_launch<bf16>(st, dst->data, __float2bfloat16(value), n); return;
    case MS_DTYPE_F16: fill_launch<__half>(st, dst->data, __float2half(value), n); return;
    case MS_DTYPE_I32: fill_launch<int32_t>(st, dst->data, (int32_t)value, n); return;
    }
}
