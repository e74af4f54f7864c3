/*
 * Row gather (embedding lookup) and scatter (image-feature splice). One block per row
 * moved; 16-byte accesses when rows allow. An index out of range is a bug in the
 * caller: the kernel records it (cuda_common.cuh), skips the row, and the host aborts.
 */
#include "kernels/cuda/cuda_ops.cuh"

/* dst row dst_row(r) = src row src_row(r), rows of `bytes` bytes, for r = blockIdx.x. */
template <typename U>
__global__ void move_rows_kernel(char *__restrict__ dst, const char *__restrict__ src,
                                 const int32_t *__restrict__ idx, int64_t n_idx_rows,
                                 int64_t row_bytes, bool gather, ms_cuda_violation *bad) {
    const int64_t r = blockIdx.x;
    const int32_t j = idx[r];
    if (j < 0 || j >= n_idx_rows) { /* the whole block: no barrier below */
        ms_cuda_report(bad, gather ? MS_CUDA_OP_GET_ROWS : MS_CUDA_OP_SCATTER_ROWS,
                       MS_CUDA_BAD_ROW_ID, r, j, n_idx_rows);
        return;
    }
    const U *s = reinterpret_cast<const U *>(src + (gather ? (int64_t)j : r) * row_bytes);
    U *d = reinterpret_cast<U *>(dst + (gather ? r : (int64_t)j) * row_bytes);
    for (int64_t i = threadIdx.x; i < row_bytes / (int64_t)sizeof(U); i += blockDim.x) d[i] = s[i];
}

static void move_rows(ms_ctx *ctx, void *dst, const void *src, const int32_t *idx, int64_t rows,
                      int64_t n_idx_rows, int64_t row_bytes, bool gather) {
    cudaStream_t st = ms_cuda_stream_of(ctx);
    ms_cuda_violation *bad = ms_cuda_violations_of(ctx);
    const bool vec = row_bytes % 16 == 0 && (((uintptr_t)dst | (uintptr_t)src) & 15) == 0;
    if (vec)
        move_rows_kernel<uint4><<<(unsigned)rows, 128, 0, st>>>(
            (char *)dst, (const char *)src, idx, n_idx_rows, row_bytes, gather, bad);
    else
        move_rows_kernel<uint16_t><<<(unsigned)rows, 128, 0, st>>>(
            (char *)dst, (const char *)src, idx, n_idx_rows, row_bytes, gather, bad);
    MS_CUDA_LAUNCHED(st);
    ms_cuda_indices_checked(ctx);
}

void ms_cuda_get_rows(ms_ctx *ctx, ms_tensor *out, const ms_tensor *table, const ms_tensor *ids) {
    const int64_t T = ms_tensor_numel(ids);
    move_rows(ctx, out->data, table->data, (const int32_t *)ids->data, T, table->shape[0],
              ms_tensor_cols(table) * (int64_t)sizeof(bf16), true);
}

void ms_cuda_scatter_rows(ms_ctx *ctx, ms_tensor *dst, const ms_tensor *src,
                          const ms_tensor *idx) {
    move_rows(ctx, dst->data, src->data, (const int32_t *)idx->data, ms_tensor_rows(src),
              ms_tensor_rows(dst), ms_tensor_cols(src) * (int64_t)sizeof(bf16), false);
}
