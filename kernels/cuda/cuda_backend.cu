/*
 * The CUDA backend: device selection, memory, streams, copies, and the op table.
 *
 * Activations and weights are bf16 (act_dtype), arithmetic is f32. Each ms_ctx gets an
 * ms_cuda_stream (a non-blocking stream with its own cuBLASLt handle and workspace), so
 * workers on one device run concurrently without sharing mutable state. Allocation goes
 * straight to cudaMalloc: the weights are allocated once and the per-pass activations
 * come from the context's arena, so nothing is allocated on the per-token path.
 */
#include <stdio.h>
#include <string.h>

#include "kernels/cuda/cuda_ops.cuh"

void ms_cuda_fail(const char *file, int line, const char *call, const char *what) {
    int dev = -1;
    cudaGetDevice(&dev); /* best effort: the error itself may be sticky */
    ms_panic(file, line, "CUDA call failed on device %d: %s: %s", dev, call, what);
}

/* ---- bad indices found on the device (see cuda_common.cuh) ---- */

static const char *checked_op_name(int op) {
    switch (op) {
    case MS_CUDA_OP_ATTENTION: return "attention";
    case MS_CUDA_OP_ATTENTION_PAGED: return "attention_paged";
    case MS_CUDA_OP_KV_WRITE: return "kv_write";
    case MS_CUDA_OP_GET_ROWS: return "get_rows";
    case MS_CUDA_OP_SCATTER_ROWS: return "scatter_rows";
    }
    return "?";
}

/* Aborts with the stream's recorded violation, if any; the stream must be idle. The
 * wording follows the CPU backend's checks of the same contract. */
static void check_violations(const ms_cuda_stream *s) {
    const volatile ms_cuda_violation *v = s->bad;
    if (v->code == MS_CUDA_BAD_NONE) return;
    const char *op = checked_op_name(v->op);
    const char *cu = v->op == MS_CUDA_OP_ATTENTION ? "cu_seqlens" : "cu_q";
    const long long row = (long long)v->row, val = (long long)v->value,
                    lim = (long long)v->limit;
    switch (v->code) {
    case MS_CUDA_BAD_CU_START:
        ms_panic(__FILE__, __LINE__, "cuda %s: %s must run from 0 to %lld (starts at %lld)", op,
                 cu, lim, val);
    case MS_CUDA_BAD_CU_END:
        ms_panic(__FILE__, __LINE__, "cuda %s: %s must run from 0 to %lld (ends at %lld)", op,
                 cu, lim, val);
    case MS_CUDA_BAD_SEQ_ROWS:
        ms_panic(__FILE__, __LINE__, "cuda %s: sequence %lld has %lld rows (max given %lld)",
                 op, row, val, lim);
    case MS_CUDA_BAD_CTX_OVER:
        ms_panic(__FILE__, __LINE__, "cuda %s: sequence %lld has ctx_len %lld over max_ctx %lld",
                 op, row, val, lim);
    case MS_CUDA_BAD_CTX_UNDER:
        ms_panic(__FILE__, __LINE__,
                 "cuda %s: sequence %lld has ctx_len %lld under its %lld queries", op, row, val,
                 lim);
    case MS_CUDA_BAD_BLOCK:
        ms_panic(__FILE__, __LINE__, "cuda %s: sequence %lld reads block id %lld, cache has "
                 "%lld blocks", op, row, val, lim);
    case MS_CUDA_BAD_SLOT:
        ms_panic(__FILE__, __LINE__, "cuda %s: slot %lld at row %lld outside a cache of %lld "
                 "slots", op, val, row, lim);
    case MS_CUDA_BAD_ROW_ID:
        if (v->op == MS_CUDA_OP_GET_ROWS)
            ms_panic(__FILE__, __LINE__, "cuda %s: id %lld at row %lld outside table of %lld",
                     op, val, row, lim);
        ms_panic(__FILE__, __LINE__, "cuda %s: index %lld at row %lld outside %lld rows", op,
                 val, row, lim);
    }
    ms_panic(__FILE__, __LINE__, "cuda %s: bad index (code %d)", op, (int)v->code);
}

void ms_cuda_indices_checked(ms_ctx *ctx) {
#if !defined(NDEBUG) || defined(MODSERVE_CUDA_DEBUG)
    ms_cuda_stream *s = ms_cuda_ctx_stream(ctx);
    MS_CUDA_CHECK(cudaStreamSynchronize(s->stream));
    check_violations(s);
#else
    (void)ctx;
#endif
}

/* ---- availability ---- */

extern "C" bool ms_cuda_available(void) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* no driver or no device: clear the error, report none */
        return false;
    }
    return n > 0;
}

/* ---- memory ---- */

static void cuda_bind(const ms_backend *be) {
    int cur = -1;
    MS_CUDA_CHECK(cudaGetDevice(&cur));
    if (cur != be->device_index) MS_CUDA_CHECK(cudaSetDevice(be->device_index));
}

static void *cuda_alloc(ms_backend *be, size_t bytes) {
    cuda_bind(be);
    void *p = NULL;
    const cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError(); /* not sticky: clear it and let the caller report sizes */
        return NULL;
    }
    MS_CUDA_CHECK(e);
    return p;
}

static void cuda_free(ms_backend *be, void *ptr) {
    if (!ptr) return;
    cuda_bind(be);
    MS_CUDA_CHECK(cudaFree(ptr));
}

static void cuda_mem_info(ms_backend *be, size_t *free_bytes, size_t *total_bytes) {
    cuda_bind(be);
    size_t f = 0, t = 0;
    MS_CUDA_CHECK(cudaMemGetInfo(&f, &t));
    if (free_bytes) *free_bytes = f;
    if (total_bytes) *total_bytes = t;
}

/* ---- streams ---- */

static void *cuda_stream_create(ms_backend *be) {
    cuda_bind(be);
    ms_cuda_stream *s = (ms_cuda_stream *)ms_xcalloc(1, sizeof *s);
    s->device = be->device_index;
    MS_CUDA_CHECK(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
    MS_CUDA_CHECK(cublasLtCreate(&s->lt));
    MS_CUDA_CHECK(cudaMalloc(&s->lt_workspace, MS_CUDA_LT_WORKSPACE));
    /* Mapped pinned memory: kernels write it through UVA, the host reads it after a
     * sync with no copy. */
    MS_CUDA_CHECK(cudaHostAlloc((void **)&s->bad, sizeof *s->bad, cudaHostAllocMapped));
    memset(s->bad, 0, sizeof *s->bad);
    return s;
}

static void cuda_stream_destroy(ms_backend *be, void *stream) {
    ms_cuda_stream *s = (ms_cuda_stream *)stream;
    if (!s) return;
    cuda_bind(be);
    MS_CUDA_CHECK(cudaStreamSynchronize(s->stream));
    check_violations(s);
    MS_CUDA_CHECK(cudaFreeHost(s->bad));
    MS_CUDA_CHECK(cudaFree(s->lt_workspace));
    MS_CUDA_CHECK(cublasLtDestroy(s->lt));
    MS_CUDA_CHECK(cudaStreamDestroy(s->stream));
    free(s);
}

ms_cuda_stream *ms_cuda_ctx_stream(ms_ctx *ctx) {
    ms_cuda_stream *s = (ms_cuda_stream *)ctx->stream;
    MS_CHECKF(s, "cuda: context has no stream");
    cuda_bind(ctx->backend);
    return s;
}

void *ms_cuda_scratch(ms_ctx *ctx, size_t bytes) {
    void *p = ms_arena_alloc(ctx->arena, bytes);
    MS_CHECKF(p, "cuda: scratch arena out of device memory for %zu bytes (%zu in use)", bytes,
              ms_arena_used(ctx->arena));
    return p;
}

static void cuda_sync(ms_ctx *ctx) {
    ms_cuda_stream *s = ms_cuda_ctx_stream(ctx);
    MS_CUDA_CHECK(cudaStreamSynchronize(s->stream));
    check_violations(s);
}

/* ---- copies ---- */

static void cuda_upload(ms_ctx *ctx, ms_tensor *dst, const void *host_src) {
    /* From pageable memory the source is staged before the call returns, so the caller
     * may reuse host_src at once; the copy itself stays ordered on the stream. */
    MS_CUDA_CHECK(cudaMemcpyAsync(dst->data, host_src, ms_tensor_nbytes(dst),
                                  cudaMemcpyHostToDevice, ms_cuda_stream_of(ctx)));
}

static void cuda_download(ms_ctx *ctx, void *host_dst, const ms_tensor *src) {
    ms_cuda_stream *s = ms_cuda_ctx_stream(ctx);
    MS_CUDA_CHECK(cudaMemcpyAsync(host_dst, src->data, ms_tensor_nbytes(src),
                                  cudaMemcpyDeviceToHost, s->stream));
    MS_CUDA_CHECK(cudaStreamSynchronize(s->stream)); /* the caller reads host_dst next */
    check_violations(s); /* what the caller reads may come from a bad index */
}

static void cuda_copy(ms_ctx *ctx, ms_tensor *dst, const ms_tensor *src) {
    MS_CUDA_CHECK(cudaMemcpyAsync(dst->data, src->data, ms_tensor_nbytes(src),
                                  cudaMemcpyDeviceToDevice, ms_cuda_stream_of(ctx)));
}

static const ms_backend_ops cuda_ops = {
    /* .alloc = */ cuda_alloc,
    /* .free = */ cuda_free,
    /* .mem_info = */ cuda_mem_info,
    /* .stream_create = */ cuda_stream_create,
    /* .stream_destroy = */ cuda_stream_destroy,
    /* .sync = */ cuda_sync,
    /* .upload = */ cuda_upload,
    /* .download = */ cuda_download,
    /* .copy = */ cuda_copy,
    /* .convert = */ ms_cuda_convert,
    /* .fill = */ ms_cuda_fill,
    /* .matmul = */ ms_cuda_matmul,
    /* .layernorm = */ ms_cuda_layernorm,
    /* .rmsnorm = */ ms_cuda_rmsnorm,
    /* .add_rmsnorm = */ ms_cuda_add_rmsnorm,
    /* .rope = */ ms_cuda_rope,
    /* .attention = */ ms_cuda_attention,
    /* .kv_write = */ ms_cuda_kv_write,
    /* .attention_paged = */ ms_cuda_attention_paged,
    /* .softmax = */ ms_cuda_softmax,
    /* .gelu = */ ms_cuda_gelu,
    /* .quick_gelu = */ ms_cuda_quick_gelu,
    /* .silu_mul = */ ms_cuda_silu_mul,
    /* .add = */ ms_cuda_add,
    /* .get_rows = */ ms_cuda_get_rows,
    /* .scatter_rows = */ ms_cuda_scatter_rows,
    /* .patch_embed = */ ms_cuda_patch_embed,
    /* .image_normalize = */ ms_cuda_image_normalize,
    /* .sample = */ ms_cuda_sample,
};

/* ---- backend ---- */

static void cuda_destroy(ms_backend *be) {
    cuda_bind(be);
    MS_CUDA_CHECK(cudaDeviceSynchronize());
    free(be->impl);
    free(be);
}

extern "C" ms_backend *ms_backend_cuda_create(int device_index, ms_error *err) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        ms_errorf(err, MS_ERR_UNSUPPORTED, "backend cuda: no usable GPU (%s)",
                  cudaGetErrorString(e));
        return NULL;
    }
    if (device_index < 0 || device_index >= n) {
        ms_errorf(err, MS_ERR_INVALID, "backend cuda: device %d does not exist (%d GPU%s)",
                  device_index, n, n == 1 ? "" : "s");
        return NULL;
    }
    MS_CUDA_CHECK(cudaSetDevice(device_index));
    cudaDeviceProp prop;
    MS_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_index));
    if (prop.major < 8) {
        ms_errorf(err, MS_ERR_UNSUPPORTED,
                  "backend cuda: device %d (%s) has compute capability %d.%d; bf16 kernels "
                  "need 8.0 or newer", device_index, prop.name, prop.major, prop.minor);
        return NULL;
    }
    ms_cuda_state *st = (ms_cuda_state *)ms_xcalloc(1, sizeof *st);
    st->device = device_index;
    st->sm_count = prop.multiProcessorCount;
    st->smem_optin = prop.sharedMemPerBlockOptin;
    snprintf(st->name, sizeof st->name, "%s", prop.name);
    ms_log(MS_LOG_INFO, "cuda", "device %d: %s, sm_%d%d, %d SMs, %.1f GiB", device_index,
           prop.name, prop.major, prop.minor, prop.multiProcessorCount,
           (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));

    ms_backend *be = (ms_backend *)ms_xcalloc(1, sizeof *be);
    be->name = "cuda";
    be->device = MS_DEVICE_CUDA;
    be->device_index = device_index;
    be->act_dtype = MS_DTYPE_BF16;
    be->ops = &cuda_ops;
    be->impl = st;
    be->destroy = cuda_destroy;
    return be;
}
