/*
 * Image ops: patch embedding (a convolution with stride = kernel = patch) as an im2col
 * kernel into scratch followed by one cuBLASLt product, and the u8 HWC -> normalised
 * CHW conversion.
 */
#include "kernels/cuda/cuda_ops.cuh"
#include "kernels/cuda/matmul.cuh"

/* cols[P, C*p*p], column order (c, ky, kx) as the conv weight [E, C, p, p] flattened;
 * patch r = (n, py, px) row-major. One thread per element of cols. */
__global__ void im2col_kernel(bf16 *__restrict__ cols, const bf16 *__restrict__ px, int64_t P,
                              int64_t C, int64_t H, int64_t W, int64_t p, int64_t gh,
                              int64_t gw) {
    const int64_t K = C * p * p, n_el = P * K;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n_el;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / K, col = i % K;
        const int64_t img = r / (gh * gw), py = r / gw % gh, pxi = r % gw;
        const int64_t c = col / (p * p), ky = col / p % p, kx = col % p;
        cols[i] = px[((img * C + c) * H + py * p + ky) * W + pxi * p + kx];
    }
}

void ms_cuda_patch_embed(ms_ctx *ctx, ms_tensor *out, const ms_tensor *pixels,
                         const ms_tensor *weight, int32_t patch) {
    ms_cuda_stream *s = ms_cuda_ctx_stream(ctx);
    const int64_t N = pixels->shape[0], C = pixels->shape[1], H = pixels->shape[2],
                  W = pixels->shape[3];
    const int64_t gh = H / patch, gw = W / patch, P = N * gh * gw, K = C * patch * patch;
    const int64_t E = weight->shape[0];
    bf16 *cols = (bf16 *)ms_cuda_scratch(ctx, (size_t)(P * K) * sizeof(bf16)); /* [P, K] */
    im2col_kernel<<<ms_cuda_blocks(P * K, 256), 256, 0, s->stream>>>(
        cols, (const bf16 *)pixels->data, P, C, H, W, patch, gh, gw);
    MS_CUDA_LAUNCHED(s->stream);
    /* out[P, E] = cols[P, K] weight[E, K]^T */
    ms_cuda_gemm(s, out->data, false, cols, (const bf16 *)weight->data, NULL, P, E, K);
}

__global__ void image_normalize_kernel(bf16 *__restrict__ out, const int32_t *__restrict__ rgb,
                                       int64_t N, int64_t HW, float m0, float m1, float m2,
                                       float s0, float s1, float s2, float rescale) {
    const int64_t n_el = N * 3 * HW;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n_el;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t n = i / (3 * HW), c = i / HW % 3, px = i % HW;
        /* As CLIPImageProcessor (and the reference): rescale into f32, normalise in f32. */
        const float v = (float)((double)rgb[(n * HW + px) * 3 + c] * (double)rescale);
        const float mean = c == 0 ? m0 : c == 1 ? m1 : m2;
        const float sd = c == 0 ? s0 : c == 1 ? s1 : s2;
        out[i] = __float2bfloat16((v - mean) / sd);
    }
}

void ms_cuda_image_normalize(ms_ctx *ctx, ms_tensor *out, const ms_tensor *rgb,
                             const float mean[3], const float std[3], float rescale) {
    cudaStream_t st = ms_cuda_stream_of(ctx);
    const int64_t N = rgb->shape[0], HW = rgb->shape[1] * rgb->shape[2];
    image_normalize_kernel<<<ms_cuda_blocks(N * 3 * HW, 256), 256, 0, st>>>(
        (bf16 *)out->data, (const int32_t *)rgb->data, N, HW, mean[0], mean[1], mean[2], std[0],
        std[1], std[2], rescale);
    MS_CUDA_LAUNCHED(st);
}
