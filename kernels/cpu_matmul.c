/* CPU matrix product through OpenBLAS: y[M,N] = x[M,K] w[N,K]^T + bias[N]. */
#include "kernels/cpu_internal.h"

#include <cblas.h>
#include <string.h>

void ms_cpu_matmul(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x, const ms_tensor *w,
                   const ms_tensor *bias) {
    const int64_t M = ms_tensor_rows(x), K = ms_tensor_cols(x), N = w->shape[0];
    if (M == 0 || N == 0) return;
    float *Y = y->data; /* [M, N] */
    float beta = 0.0f;
    if (bias) {
        /* Start from the bias and let sgemm accumulate onto it (beta = 1). */
        for (int64_t m = 0; m < M; m++) memcpy(Y + m * N, bias->data, (size_t)N * sizeof(float));
        beta = 1.0f;
    }
    const int lda = K > 0 ? (int)K : 1;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1.0f,
                x->data, lda, w->data, lda, beta, Y, (int)N);
}
