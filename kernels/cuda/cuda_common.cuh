/*
 * Shared ground of the CUDA backend: the check macros (tier 1: a failed CUDA or cuBLAS
 * call is a bug, reported with file, line, device and the call, then abort), the
 * per-context stream state, bf16 helpers and block reductions.
 *
 * Every op file (one op or one family per .cu, as ggml-cuda does) has a kernel, a
 * launcher that takes a cudaStream_t and raw pointers, and an entry ms_cuda_<op> that
 * unpacks the tensors; cuda_backend.cu puts the entries into the op table. The ms_op_*
 * wrappers in kernels/backend.c have already checked shapes, dtypes and devices.
 */
#ifndef MS_CUDA_COMMON_CUH
#define MS_CUDA_COMMON_CUH

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

/* The C headers use C11's _Noreturn, which C++ spells [[noreturn]]. */
#ifndef _Noreturn
#define _Noreturn [[noreturn]]
#endif
extern "C" {
#include "kernels/arena.h"
#include "kernels/backend.h"
}

/* ---- tier-1 checks ---- */

[[noreturn]] void ms_cuda_fail(const char *file, int line, const char *call, const char *what);

/* One macro for CUDA runtime and cuBLAS(Lt) calls: the status type picks the overload. */
static inline bool ms_cuda_ok(cudaError_t e) { return e == cudaSuccess; }
static inline bool ms_cuda_ok(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS; }
static inline const char *ms_cuda_what(cudaError_t e) { return cudaGetErrorString(e); }
static inline const char *ms_cuda_what(cublasStatus_t s) { return cublasLtGetStatusString(s); }

#define MS_CUDA_CHECK(call)                                                            \
    do {                                                                               \
        const auto ms_cuda_r_ = (call);                                                \
        if (!ms_cuda_ok(ms_cuda_r_))                                                   \
            ms_cuda_fail(__FILE__, __LINE__, #call, ms_cuda_what(ms_cuda_r_));         \
    } while (0)

/* After every launch: a bad configuration is reported at once; in debug builds (no
 * NDEBUG, or MODSERVE_CUDA_DEBUG) the stream is synchronised too, so a fault inside the
 * kernel is reported at the launch that caused it, not at some later call. */
#if !defined(NDEBUG) || defined(MODSERVE_CUDA_DEBUG)
#define MS_CUDA_LAUNCHED(stream)                                                       \
    do {                                                                               \
        MS_CUDA_CHECK(cudaGetLastError());                                             \
        MS_CUDA_CHECK(cudaStreamSynchronize(stream));                                  \
    } while (0)
#else
#define MS_CUDA_LAUNCHED(stream) MS_CUDA_CHECK(cudaGetLastError())
#endif

/* ---- index checks on the device ----
 *
 * Index tensors (cu_seqlens, ctx_lens, block tables, slots, row ids) live on the device,
 * so the CUDA ops check them where they are read, against the same contract the CPU
 * backend checks on the host (docs/kernels.md). The first bad index on a stream is
 * recorded in host-mapped memory of that stream; the kernel then treats the offending
 * sequence or row as empty, so nothing is read or written out of bounds. The host aborts
 * with the record (tier 1, like a failed CUDA call) at the stream's next check: after
 * the op's launch in debug builds (ms_cuda_indices_checked), and at every ms_ctx_sync,
 * download and stream teardown in all builds. */
typedef enum ms_cuda_bad_index {
    MS_CUDA_BAD_NONE = 0,
    MS_CUDA_BAD_CU_START,   /* cu[0] != 0: value = cu[0], limit = T */
    MS_CUDA_BAD_CU_END,     /* cu[nseq] != T: value = cu[nseq], limit = T */
    MS_CUDA_BAD_SEQ_ROWS,   /* rows of sequence `row` not in [0, max]: value, limit = max */
    MS_CUDA_BAD_CTX_OVER,   /* ctx_lens[row] > max_ctx: value, limit = max_ctx */
    MS_CUDA_BAD_CTX_UNDER,  /* ctx_lens[row] < its query rows: value, limit = q_len */
    MS_CUDA_BAD_BLOCK,      /* sequence `row` reads block `value` of `limit` */
    MS_CUDA_BAD_SLOT,       /* kv_write: row `row` has slot `value` >= `limit` slots */
    MS_CUDA_BAD_ROW_ID,     /* get_rows/scatter_rows: row `row` has index `value` */
} ms_cuda_bad_index;

typedef enum ms_cuda_checked_op {
    MS_CUDA_OP_ATTENTION = 1,
    MS_CUDA_OP_ATTENTION_PAGED,
    MS_CUDA_OP_KV_WRITE,
    MS_CUDA_OP_GET_ROWS,
    MS_CUDA_OP_SCATTER_ROWS,
} ms_cuda_checked_op;

typedef struct ms_cuda_violation {
    int32_t code;   /* ms_cuda_bad_index; 0 while no violation */
    int32_t op;     /* ms_cuda_checked_op */
    int64_t row;    /* sequence or row */
    int64_t value, limit;
} ms_cuda_violation;

/* Records the first violation; later ones (other threads, other ops) are dropped. */
__device__ __forceinline__ void ms_cuda_report(ms_cuda_violation *v, int op, int code,
                                               int64_t row, int64_t value, int64_t limit) {
    if (atomicCAS(&v->code, 0, code) == 0) {
        v->op = op;
        v->row = row;
        v->value = value;
        v->limit = limit;
        __threadfence_system();
    }
}

/* ---- backend and stream state ---- */

typedef struct ms_cuda_state {
    int device;
    int sm_count;
    size_t smem_optin;          /* max dynamic shared memory per block */
    char name[256];
} ms_cuda_state;

/* What ctx->stream points at: the stream plus what its ops need privately, so
 * concurrent workers never share a cuBLASLt workspace. */
typedef struct ms_cuda_stream {
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *lt_workspace;         /* device, MS_CUDA_LT_WORKSPACE bytes */
    ms_cuda_violation *bad;     /* host-mapped (the device writes, the host reads) */
    int device;
} ms_cuda_stream;

enum { MS_CUDA_LT_WORKSPACE = 32 << 20 };

static inline ms_cuda_state *ms_cuda_state_of(const ms_ctx *ctx) {
    return (ms_cuda_state *)ctx->backend->impl;
}

/* The context's stream state, with the calling thread bound to the backend's device
 * (workers are threads; the current device is per thread). */
ms_cuda_stream *ms_cuda_ctx_stream(ms_ctx *ctx);
static inline cudaStream_t ms_cuda_stream_of(ms_ctx *ctx) {
    return ms_cuda_ctx_stream(ctx)->stream;
}

/* The violation record kernels of this context's stream write to. */
static inline ms_cuda_violation *ms_cuda_violations_of(ms_ctx *ctx) {
    return ms_cuda_ctx_stream(ctx)->bad;
}
/* After launching an op that checks indices: in debug builds (where the launch has
 * already synchronised) abort now with the op's bad index, if any; in release builds
 * the check waits for the stream's next sync or download. */
void ms_cuda_indices_checked(ms_ctx *ctx);

/* Scratch device memory from the context's arena (valid until ms_ctx_reset); aborts when
 * the device is out of memory. */
void *ms_cuda_scratch(ms_ctx *ctx, size_t bytes);

/* ---- element helpers ---- */

typedef __nv_bfloat16 bf16;

static inline unsigned ms_cuda_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    if (b > 1048576) b = 1048576; /* grid-stride loops take the rest */
    return (unsigned)(b > 0 ? b : 1);
}

__device__ __forceinline__ float ms_ld(const bf16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ float ms_ld(const float *p) { return *p; }
__device__ __forceinline__ float ms_ld(const __half *p) { return __half2float(*p); }
__device__ __forceinline__ void ms_st(bf16 *p, float v) { *p = __float2bfloat16(v); }
__device__ __forceinline__ void ms_st(float *p, float v) { *p = v; }
__device__ __forceinline__ void ms_st(__half *p, float v) { *p = __float2half(v); }

/* Sum over a warp, and over a block of blockDim.x threads (a multiple of 32, <= 1024);
 * every thread gets the result. `red` is __shared__ scratch of 32 values. */
template <typename T> __device__ __forceinline__ T ms_warp_sum(T v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

template <typename T> __device__ __forceinline__ T ms_warp_max(T v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

template <typename T> __device__ T ms_block_sum(T v, T *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = ms_warp_sum(v);
    __syncthreads(); /* red may still be read from a previous call */
    if (lane == 0) red[warp] = v;
    __syncthreads();
    T s = lane < nw ? red[lane] : T(0);
    return ms_warp_sum(s);
}

template <typename T> __device__ T ms_block_max(T v, T *red, T lowest) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = ms_warp_max(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    T s = lane < nw ? red[lane] : lowest;
    return ms_warp_max(s);
}

#endif
