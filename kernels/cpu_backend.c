/*
 * The CPU backend: f32 activations and weights, OpenBLAS for matrix products, plain C
 * for the rest (cpu_*.c), a pthread pool for the parallel parts. It is the reference
 * every other backend is tested against, so clarity wins over speed where they differ.
 *
 * Thread safety: the backend holds no mutable state besides the pool (which takes
 * concurrent callers, see cpu_threads.c); each worker thread uses its own ms_ctx.
 */
#include "kernels/cpu_internal.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kernels/arena.h"

static void *cpu_alloc(ms_backend *be, size_t bytes) {
    void *p = NULL;
    /* 256-byte alignment, as device allocators give, so arena offsets mean the same. */
    if (posix_memalign(&p, MS_ARENA_ALIGN, bytes ? bytes : 1) != 0) return NULL;
    return p;
}

static void cpu_free(ms_backend *be, void *ptr) {
    free(ptr);
}

static void cpu_mem_info(ms_backend *be, size_t *free_bytes, size_t *total_bytes) {
    unsigned long long total_kb = 0, avail_kb = 0;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f)) {
            sscanf(line, "MemTotal: %llu kB", &total_kb);
            sscanf(line, "MemAvailable: %llu kB", &avail_kb);
        }
        fclose(f);
    }
    if (free_bytes) *free_bytes = (size_t)avail_kb * 1024;
    if (total_bytes) *total_bytes = (size_t)total_kb * 1024;
}

static void *cpu_stream_create(ms_backend *be) {
    return NULL;
}

static void cpu_stream_destroy(ms_backend *be, void *stream) {}

static void cpu_sync(ms_ctx *ctx) {}

static void cpu_upload(ms_ctx *ctx, ms_tensor *dst, const void *host_src) {
    memcpy(dst->data, host_src, ms_tensor_nbytes(dst));
}

static void cpu_download(ms_ctx *ctx, void *host_dst, const ms_tensor *src) {
    memcpy(host_dst, src->data, ms_tensor_nbytes(src));
}

static void cpu_copy(ms_ctx *ctx, ms_tensor *dst, const ms_tensor *src) {
    memmove(dst->data, src->data, ms_tensor_nbytes(src));
}

static void cpu_convert(ms_ctx *ctx, ms_tensor *dst, const ms_tensor *src) {
    ms_convert_host(dst->data, dst->dtype, src->data, src->dtype, ms_tensor_numel(src));
}

static void cpu_fill(ms_ctx *ctx, ms_tensor *dst, float value) {
    const int64_t n = ms_tensor_numel(dst);
    switch (dst->dtype) {
    case MS_DTYPE_F32:
        for (int64_t i = 0; i < n; i++) ((float *)dst->data)[i] = value;
        break;
    case MS_DTYPE_BF16: {
        const uint16_t h = ms_f32_to_bf16(value);
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst->data)[i] = h;
        break;
    }
    case MS_DTYPE_F16: {
        const uint16_t h = ms_f32_to_f16(value);
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst->data)[i] = h;
        break;
    }
    case MS_DTYPE_I32:
        for (int64_t i = 0; i < n; i++) ((int32_t *)dst->data)[i] = (int32_t)value;
        break;
    }
}

static const ms_backend_ops cpu_ops = {
    .alloc = cpu_alloc,
    .free = cpu_free,
    .mem_info = cpu_mem_info,
    .stream_create = cpu_stream_create,
    .stream_destroy = cpu_stream_destroy,
    .sync = cpu_sync,
    .upload = cpu_upload,
    .download = cpu_download,
    .copy = cpu_copy,
    .convert = cpu_convert,
    .fill = cpu_fill,
    .matmul = ms_cpu_matmul,
    .layernorm = ms_cpu_layernorm,
    .rmsnorm = ms_cpu_rmsnorm,
    .add_rmsnorm = ms_cpu_add_rmsnorm,
    .rope = ms_cpu_rope,
    .attention = ms_cpu_attention,
    .kv_write = ms_cpu_kv_write,
    .attention_paged = ms_cpu_attention_paged,
    .softmax = ms_cpu_softmax,
    .gelu = ms_cpu_gelu,
    .quick_gelu = ms_cpu_quick_gelu,
    .silu_mul = ms_cpu_silu_mul,
    .add = ms_cpu_add,
    .get_rows = ms_cpu_get_rows,
    .scatter_rows = ms_cpu_scatter_rows,
    .patch_embed = ms_cpu_patch_embed,
    .image_normalize = ms_cpu_image_normalize,
    .sample = ms_cpu_sample,
};

static void cpu_destroy(ms_backend *be) {
    ms_cpu_state *st = be->impl;
    ms_cpu_pool_destroy(st->pool);
    free(st);
    free(be);
}

ms_backend *ms_backend_cpu_create(int n_threads) {
    if (n_threads <= 0) {
        const long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    ms_cpu_blas_init();
    ms_cpu_state *st = ms_xcalloc(1, sizeof *st);
    st->n_threads = n_threads;
    st->pool = ms_cpu_pool_create(n_threads);
    ms_backend *be = ms_xcalloc(1, sizeof *be);
    be->name = "cpu";
    be->device = MS_DEVICE_CPU;
    be->device_index = 0;
    be->act_dtype = MS_DTYPE_F32;
    be->ops = &cpu_ops;
    be->impl = st;
    be->destroy = cpu_destroy;
    return be;
}
