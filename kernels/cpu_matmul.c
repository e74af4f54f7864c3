/*
 * CPU matrix products through OpenBLAS: y[M,N] = x[M,K] w[N,K]^T + bias[N].
 *
 * OpenBLAS runs single-threaded (set once at backend creation) and the backend's own
 * pool splits the product over column blocks of y, i.e. row blocks of w. Reasons: the
 * backend's thread count then means what it says, several serving workers calling
 * matmul at once do not each wake a full set of OpenBLAS threads, and OpenBLAS's
 * internal thread hand-off (invisible to ThreadSanitizer) stays out of TSan builds.
 */
#include "kernels/cpu_internal.h"

#include <cblas.h>
#include <pthread.h>
#include <string.h>

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

static void blas_single_thread(void) {
    openblas_set_num_threads(1);
}

void ms_cpu_blas_init(void) {
    pthread_once(&blas_once, blas_single_thread);
}

typedef struct gemm_job {
    int64_t M, K;
    const float *a;  /* [M, K] */
    const float *b;  /* [N, K] */
    float *c;        /* [M, ldc] */
    int64_t ldc;
    float beta;
} gemm_job;

static void gemm_cols(void *arg, int64_t n0, int64_t n1) {
    const gemm_job *j = arg;
    const int lda = j->K > 0 ? (int)j->K : 1;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)j->M, (int)(n1 - n0), (int)j->K,
                1.0f, j->a, lda, j->b + n0 * j->K, lda, j->beta, j->c + n0, (int)j->ldc);
}

void ms_cpu_gemm_nt(ms_ctx *ctx, int64_t M, int64_t N, int64_t K, const float *a,
                    const float *b, float beta, float *c) {
    if (M == 0 || N == 0) return;
    gemm_job j = {.M = M, .K = K, .a = a, .b = b, .c = c, .ldc = N, .beta = beta};
    /* Pieces of at least ~2 MFLOP and 16 columns: below that a hand-off costs more. */
    const int64_t flop_per_col = 2 * M * (K > 0 ? K : 1);
    int64_t grain = (int64_t)(1 << 21) / flop_per_col;
    if (grain < 16) grain = 16;
    ms_cpu_parallel_for(ms_cpu_ctx_pool(ctx), N, grain, gemm_cols, &j);
}

void ms_cpu_matmul(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x, const ms_tensor *w,
                   const ms_tensor *bias) {
    const int64_t M = ms_tensor_rows(x), K = ms_tensor_cols(x), N = w->shape[0];
    float *Y = y->data; /* [M, N] */
    float beta = 0.0f;
    if (bias) {
        /* Start from the bias and let sgemm accumulate onto it (beta = 1). */
        for (int64_t m = 0; m < M; m++) memcpy(Y + m * N, bias->data, (size_t)N * sizeof(float));
        beta = 1.0f;
    }
    ms_cpu_gemm_nt(ctx, M, N, K, x->data, w->data, beta, Y);
}
