/*
 * Matrix products through cuBLASLt: bf16 operands, f32 compute, bf16 or f32 output.
 *
 * Row-major y[M,N] = x[M,K] w[N,K]^T is, in cuBLAS's column-major terms,
 * y^T[N,M] = w^T x^T with w seen as a K x N column-major matrix (op T) and x as K x M
 * (op N): m = N, n = M, k = K. The bias (length N = rows of the column-major result) is
 * fused through the BIAS epilogue when y is bf16; for f32 y (logits) a small kernel adds
 * it. The heuristic's choice is cached per shape, because asking costs tens of
 * microseconds, as much as a small decode product.
 */
#include <pthread.h>

#include "kernels/cuda/cuda_ops.cuh"
#include "kernels/cuda/matmul.cuh"

/* ---- algorithm cache: (M, N, K, y dtype, bias, device) -> heuristic result ---- */

enum { ALGO_CACHE_SIZE = 4096 };

typedef struct algo_key {
    int64_t M, N, K;
    int32_t y_f32, bias, device, align; /* align: packed log2 alignments of x, w, y */
} algo_key;

typedef struct algo_entry {
    bool used;
    algo_key key;
    cublasLtMatmulAlgo_t algo;
} algo_entry;

static algo_entry g_algo_cache[ALGO_CACHE_SIZE];
static pthread_mutex_t g_algo_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t algo_hash(const algo_key *k) {
    uint64_t h = 1469598103934665603ull;
    const int64_t v[7] = {k->M, k->N, k->K, k->y_f32, k->bias, k->device, k->align};
    for (int i = 0; i < 7; i++) h = (h ^ (uint64_t)v[i]) * 1099511628211ull;
    return h;
}

static bool key_eq(const algo_key *a, const algo_key *b) {
    return a->M == b->M && a->N == b->N && a->K == b->K && a->y_f32 == b->y_f32 &&
           a->bias == b->bias && a->device == b->device && a->align == b->align;
}

/* Finds the cached algorithm; returns false (and the slot to fill, or -1 when full). */
static bool algo_lookup(const algo_key *k, cublasLtMatmulAlgo_t *out, int *slot) {
    pthread_mutex_lock(&g_algo_lock);
    const uint64_t h = algo_hash(k);
    *slot = -1;
    for (int i = 0; i < 64; i++) {
        const int at = (int)((h + (uint64_t)i) % ALGO_CACHE_SIZE);
        if (!g_algo_cache[at].used) {
            *slot = at;
            break;
        }
        if (key_eq(&g_algo_cache[at].key, k)) {
            *out = g_algo_cache[at].algo;
            pthread_mutex_unlock(&g_algo_lock);
            return true;
        }
    }
    pthread_mutex_unlock(&g_algo_lock);
    return false;
}

static void algo_store(int slot, const algo_key *k, const cublasLtMatmulAlgo_t *algo) {
    if (slot < 0) return;
    pthread_mutex_lock(&g_algo_lock);
    if (!g_algo_cache[slot].used) {
        g_algo_cache[slot].key = *k;
        g_algo_cache[slot].algo = *algo;
        g_algo_cache[slot].used = true;
    }
    pthread_mutex_unlock(&g_algo_lock);
}

/* ---- bias add for f32 outputs, and the K == 0 case ---- */

template <typename TY>
__global__ void bias_rows_kernel(TY *__restrict__ y, const bf16 *__restrict__ bias, int64_t M,
                                 int64_t N, bool accumulate) {
    const int64_t n = M * N;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const float b = bias ? __bfloat162float(bias[i % N]) : 0.0f;
        ms_st(y + i, (accumulate ? ms_ld(y + i) : 0.0f) + b);
    }
}

static void bias_rows(cudaStream_t st, void *y, bool y_f32, const bf16 *bias, int64_t M,
                      int64_t N, bool accumulate) {
    if (y_f32)
        bias_rows_kernel<float><<<ms_cuda_blocks(M * N, 256), 256, 0, st>>>((float *)y, bias, M,
                                                                             N, accumulate);
    else
        bias_rows_kernel<bf16><<<ms_cuda_blocks(M * N, 256), 256, 0, st>>>((bf16 *)y, bias, M, N,
                                                                            accumulate);
    MS_CUDA_LAUNCHED(st);
}

/* Largest power of two <= 256 dividing the address: cuBLASLt's heuristic assumes 256-byte
 * aligned buffers unless told otherwise, and row views need not be. */
static uint32_t ptr_align(const void *p) {
    uint32_t a = 256;
    while (a > 1 && (uintptr_t)p % a != 0) a >>= 1;
    return a;
}

static int log2u(uint32_t v) {
    int l = 0;
    while (v > 1) {
        v >>= 1;
        l++;
    }
    return l;
}

void ms_cuda_gemm(ms_cuda_stream *s, void *y, bool y_f32, const bf16 *x, const bf16 *w,
                  const bf16 *bias, int64_t M, int64_t N, int64_t K) {
    if (M == 0 || N == 0) return;
    if (K == 0) { /* empty sum: y = bias (or 0) */
        bias_rows(s->stream, y, y_f32, bias, M, N, false);
        return;
    }
    const bool fuse_bias = bias && !y_f32;
    const cudaDataType_t ytype = y_f32 ? CUDA_R_32F : CUDA_R_16BF;

    cublasLtMatmulDesc_t op;
    MS_CUDA_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    MS_CUDA_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    MS_CUDA_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (fuse_bias) {
        const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        MS_CUDA_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                       sizeof epi));
        const void *bp = bias;
        MS_CUDA_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp,
                                                       sizeof bp));
        const cudaDataType_t bt = CUDA_R_16BF;
        MS_CUDA_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                       &bt, sizeof bt));
    }
    /* Column-major layouts: A = w as K x N (ld K), B = x as K x M (ld K), D = y as N x M. */
    cublasLtMatrixLayout_t la, lb, ld;
    MS_CUDA_CHECK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, (uint64_t)K, (uint64_t)N, K));
    MS_CUDA_CHECK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, (uint64_t)K, (uint64_t)M, K));
    MS_CUDA_CHECK(cublasLtMatrixLayoutCreate(&ld, ytype, (uint64_t)N, (uint64_t)M, N));

    const uint32_t al_w = ptr_align(w), al_x = ptr_align(x), al_y = ptr_align(y);
    const algo_key key = {M, N, K, y_f32, fuse_bias, s->device,
                          log2u(al_w) | log2u(al_x) << 4 | log2u(al_y) << 8};
    cublasLtMatmulAlgo_t algo;
    int slot = -1;
    if (!algo_lookup(&key, &algo, &slot)) {
        cublasLtMatmulPreference_t pref;
        MS_CUDA_CHECK(cublasLtMatmulPreferenceCreate(&pref));
        const size_t ws = MS_CUDA_LT_WORKSPACE;
        MS_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(
            pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
        MS_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(
            pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_w, sizeof al_w));
        MS_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(
            pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_x, sizeof al_x));
        MS_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(
            pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_y, sizeof al_y));
        MS_CUDA_CHECK(cublasLtMatmulPreferenceSetAttribute(
            pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_y, sizeof al_y));
        cublasLtMatmulHeuristicResult_t res;
        int found = 0;
        MS_CUDA_CHECK(cublasLtMatmulAlgoGetHeuristic(s->lt, op, la, lb, ld, ld, pref, 1, &res,
                                                       &found));
        MS_CHECKF(found > 0, "cuBLASLt has no algorithm for y[%lld,%lld] = x[%lld,%lld] w^T",
                  (long long)M, (long long)N, (long long)M, (long long)K);
        MS_CUDA_CHECK(cublasLtMatmulPreferenceDestroy(pref));
        algo = res.algo;
        algo_store(slot, &key, &algo);
    }
    const float alpha = 1.0f, beta = 0.0f;
    MS_CUDA_CHECK(cublasLtMatmul(s->lt, op, &alpha, w, la, x, lb, &beta, y, ld, y, ld, &algo,
                                   s->lt_workspace, MS_CUDA_LT_WORKSPACE, s->stream));
    MS_CUDA_CHECK(cublasLtMatrixLayoutDestroy(ld));
    MS_CUDA_CHECK(cublasLtMatrixLayoutDestroy(lb));
    MS_CUDA_CHECK(cublasLtMatrixLayoutDestroy(la));
    MS_CUDA_CHECK(cublasLtMatmulDescDestroy(op));
    if (bias && !fuse_bias) bias_rows(s->stream, y, y_f32, bias, M, N, true);
}

void ms_cuda_matmul(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x, const ms_tensor *w,
                    const ms_tensor *bias) {
    const int64_t M = ms_tensor_rows(x), K = ms_tensor_cols(x), N = w->shape[0];
    ms_cuda_gemm(ms_cuda_ctx_stream(ctx), y->data, y->dtype == MS_DTYPE_F32,
                 (const bf16 *)x->data, (const bf16 *)w->data,
                 bias ? (const bf16 *)bias->data : NULL, M, N, K);
}
