/*
 * Paged KV cache write: row t of k/v[T,Hkv,D] to slot slots[t] of the caches
 * [n_blocks * block_size slots, Hkv, D]; a negative slot skips the row (as on the CPU).
 * A slot past the cache is recorded (cuda_common.cuh), skipped, and the host aborts.
 * One block per row.
 */
#include "kernels/cuda/cuda_ops.cuh"

template <typename U>
__global__ void kv_write_kernel(char *__restrict__ kc, char *__restrict__ vc,
                                const char *__restrict__ k, const char *__restrict__ v,
                                const int32_t *__restrict__ slots, int64_t n_slots,
                                int64_t row_bytes, ms_cuda_violation *bad) {
    const int64_t t = blockIdx.x;
    const int32_t s = slots[t];
    if (s < 0) return;
    if (s >= n_slots) {
        ms_cuda_report(bad, MS_CUDA_OP_KV_WRITE, MS_CUDA_BAD_SLOT, t, s, n_slots);
        return;
    }
    const int64_t n = row_bytes / (int64_t)sizeof(U);
    const U *ks = reinterpret_cast<const U *>(k + t * row_bytes);
    const U *vs = reinterpret_cast<const U *>(v + t * row_bytes);
    U *kd = reinterpret_cast<U *>(kc + (int64_t)s * row_bytes);
    U *vd = reinterpret_cast<U *>(vc + (int64_t)s * row_bytes);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        kd[i] = ks[i];
        vd[i] = vs[i];
    }
}

void ms_cuda_kv_write(ms_ctx *ctx, ms_tensor *k_cache, ms_tensor *v_cache, const ms_tensor *k,
                      const ms_tensor *v, const ms_tensor *slots) {
    cudaStream_t st = ms_cuda_stream_of(ctx);
    ms_cuda_violation *bad = ms_cuda_violations_of(ctx);
    const int64_t T = k->shape[0];
    const int64_t row_bytes = k->shape[1] * k->shape[2] * (int64_t)sizeof(bf16);
    const int64_t n_slots = k_cache->shape[0] * k_cache->shape[1];
    const uintptr_t al = (uintptr_t)k_cache->data | (uintptr_t)v_cache->data |
                         (uintptr_t)k->data | (uintptr_t)v->data;
    if (row_bytes % 16 == 0 && (al & 15) == 0)
        kv_write_kernel<uint4><<<(unsigned)T, 128, 0, st>>>(
            (char *)k_cache->data, (char *)v_cache->data, (const char *)k->data,
            (const char *)v->data, (const int32_t *)slots->data, n_slots, row_bytes, bad);
    else
        kv_write_kernel<uint16_t><<<(unsigned)T, 128, 0, st>>>(
            (char *)k_cache->data, (char *)v_cache->data, (const char *)k->data,
            (const char *)v->data, (const int32_t *)slots->data, n_slots, row_bytes, bad);
    MS_CUDA_LAUNCHED(st);
    ms_cuda_indices_checked(ctx);
}
