/*
 * Row-wise normalisations and softmax. Sums are accumulated in double: cheap next to
 * the memory traffic, and it keeps the reference free of accumulation error on wide
 * rows. Rows are spread over the pool.
 */
#include "kernels/cpu_internal.h"

#include <math.h>

enum { NORM_GRAIN_ELEMS = 16384 }; /* a piece of work worth a thread hand-off */

static int64_t row_grain(int64_t cols) {
    const int64_t g = NORM_GRAIN_ELEMS / (cols > 0 ? cols : 1);
    return g > 0 ? g : 1;
}

typedef struct norm_job {
    float *y;            /* [M, N] */
    float *residual;     /* [M, N], add_rmsnorm only */
    const float *x;      /* [M, N] */
    const float *gamma;  /* [N] */
    const float *beta;   /* [N] or NULL */
    int64_t N;
    float eps;
} norm_job;

static void layernorm_rows(void *arg, int64_t r0, int64_t r1) {
    const norm_job *j = arg;
    const int64_t N = j->N;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = j->x + r * N;
        float *y = j->y + r * N;
        double sum = 0;
        for (int64_t i = 0; i < N; i++) sum += x[i];
        const double mean = sum / (double)N;
        double var = 0;
        for (int64_t i = 0; i < N; i++) var += (x[i] - mean) * (x[i] - mean);
        const double inv = 1.0 / sqrt(var / (double)N + j->eps); /* biased variance */
        for (int64_t i = 0; i < N; i++) {
            const float b = j->beta ? j->beta[i] : 0.0f;
            y[i] = (float)((x[i] - mean) * inv) * j->gamma[i] + b;
        }
    }
}

void ms_cpu_layernorm(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x, const ms_tensor *gamma,
                      const ms_tensor *beta, float eps) {
    norm_job j = {.y = y->data, .x = x->data, .gamma = gamma->data,
                  .beta = beta ? beta->data : NULL, .N = ms_tensor_cols(x), .eps = eps};
    ms_cpu_parallel_for(ms_cpu_ctx_pool(ctx), ms_tensor_rows(x), row_grain(j.N),
                        layernorm_rows, &j);
}

/* Llama RMSNorm: x * rsqrt(mean(x^2) + eps), then times gamma (transformers multiplies
 * the normalised value, cast back to the input dtype, by the weight). */
static void rmsnorm_row(float *y, const float *x, const float *gamma, int64_t N, float eps) {
    double ss = 0;
    for (int64_t i = 0; i < N; i++) ss += (double)x[i] * x[i];
    const float inv = (float)(1.0 / sqrt(ss / (double)N + eps));
    for (int64_t i = 0; i < N; i++) y[i] = gamma[i] * (x[i] * inv);
}

static void rmsnorm_rows(void *arg, int64_t r0, int64_t r1) {
    const norm_job *j = arg;
    for (int64_t r = r0; r < r1; r++)
        rmsnorm_row(j->y + r * j->N, j->x + r * j->N, j->gamma, j->N, j->eps);
}

void ms_cpu_rmsnorm(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x, const ms_tensor *gamma,
                    float eps) {
    norm_job j = {.y = y->data, .x = x->data, .gamma = gamma->data, .N = ms_tensor_cols(x),
                  .eps = eps};
    ms_cpu_parallel_for(ms_cpu_ctx_pool(ctx), ms_tensor_rows(x), row_grain(j.N),
                        rmsnorm_rows, &j);
}

static void add_rmsnorm_rows(void *arg, int64_t r0, int64_t r1) {
    const norm_job *j = arg;
    for (int64_t r = r0; r < r1; r++) {
        float *res = j->residual + r * j->N;
        const float *x = j->x + r * j->N;
        for (int64_t i = 0; i < j->N; i++) res[i] += x[i];
        rmsnorm_row(j->y + r * j->N, res, j->gamma, j->N, j->eps);
    }
}

void ms_cpu_add_rmsnorm(ms_ctx *ctx, ms_tensor *residual, const ms_tensor *x, ms_tensor *y,
                        const ms_tensor *gamma, float eps) {
    norm_job j = {.y = y->data, .residual = residual->data, .x = x->data,
                  .gamma = gamma->data, .N = ms_tensor_cols(x), .eps = eps};
    ms_cpu_parallel_for(ms_cpu_ctx_pool(ctx), ms_tensor_rows(x), row_grain(j.N),
                        add_rmsnorm_rows, &j);
}

static void softmax_rows(void *arg, int64_t r0, int64_t r1) {
    const norm_job *j = arg;
    const int64_t N = j->N;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = j->x + r * N;
        float *y = j->y + r * N;
        float mx = -INFINITY;
        for (int64_t i = 0; i < N; i++) mx = x[i] > mx ? x[i] : mx;
        if (mx == -INFINITY) mx = 0.0f; /* all -inf: exp gives 0s, the sum 0 */
        double sum = 0;
        for (int64_t i = 0; i < N; i++) {
            y[i] = expf(x[i] - mx);
            sum += y[i];
        }
        const float inv = sum > 0 ? (float)(1.0 / sum) : 0.0f;
        for (int64_t i = 0; i < N; i++) y[i] *= inv;
    }
}

void ms_cpu_softmax(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x) {
    norm_job j = {.y = y->data, .x = x->data, .N = ms_tensor_cols(x)};
    ms_cpu_parallel_for(ms_cpu_ctx_pool(ctx), ms_tensor_rows(x), row_grain(j.N),
                        softmax_rows, &j);
}
