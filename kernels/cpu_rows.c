/* Row gather (embedding lookup) and scatter (splicing image features into a prompt). */
#include "kernels/cpu_internal.h"

#include <string.h>

void ms_cpu_get_rows(ms_ctx *ctx, ms_tensor *out, const ms_tensor *table, const ms_tensor *ids) {
    const int64_t T = ms_tensor_numel(ids), V = table->shape[0], D = ms_tensor_cols(table);
    const int32_t *id = ids->data;
    for (int64_t t = 0; t < T; t++) {
        MS_CHECKF(id[t] >= 0 && id[t] < V, "get_rows: id %d at row %lld outside table of %lld",
                  id[t], (long long)t, (long long)V);
        memcpy((float *)out->data + t * D, (const float *)table->data + (int64_t)id[t] * D,
               (size_t)D * sizeof(float));
    }
}

void ms_cpu_scatter_rows(ms_ctx *ctx, ms_tensor *dst, const ms_tensor *src, const ms_tensor *idx) {
    const int64_t R = ms_tensor_rows(src), D = ms_tensor_cols(src), M = ms_tensor_rows(dst);
    const int32_t *ix = idx->data;
    for (int64_t r = 0; r < R; r++) {
        MS_CHECKF(ix[r] >= 0 && ix[r] < M, "scatter_rows: index %d at row %lld outside %lld rows",
                  ix[r], (long long)r, (long long)M);
        memcpy((float *)dst->data + (int64_t)ix[r] * D, (const float *)src->data + r * D,
               (size_t)D * sizeof(float));
    }
}
