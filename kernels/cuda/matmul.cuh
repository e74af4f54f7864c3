/* The matrix product launcher, shared by matmul and patch_embed. */
#ifndef MS_CUDA_MATMUL_CUH
#define MS_CUDA_MATMUL_CUH

#include "kernels/cuda/cuda_common.cuh"

/* y[M,N] = x[M,K] w[N,K]^T (+ bias[N]) on s's stream: bf16 x, w, bias; y bf16 or f32
 * (y_f32); f32 accumulation. Row-major, contiguous. */
void ms_cuda_gemm(ms_cuda_stream *s, void *y, bool y_f32, const bf16 *x, const bf16 *w,
                  const bf16 *bias, int64_t M, int64_t N, int64_t K);

#endif
