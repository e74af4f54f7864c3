/* Elementwise activations and the (broadcasting) add. Large tensors go over the pool. */
#include "kernels/cpu_internal.h"

#include <math.h>

enum { EW_GRAIN = 32768 };

typedef struct ew_job {
    float *y;
    const float *a, *b;
    int64_t N, R; /* add: columns, rows of b */
} ew_job;

static void gelu_range(void *arg, int64_t i0, int64_t i1) {
    const ew_job *j = arg;
    for (int64_t i = i0; i < i1; i++) {
        const double x = j->a[i];
        j->y[i] = (float)(0.5 * x * (1.0 + erf(x * M_SQRT1_2)));
    }
}

static void quick_gelu_range(void *arg, int64_t i0, int64_t i1) {
    const ew_job *j = arg;
    for (int64_t i = i0; i < i1; i++) {
        const float x = j->a[i];
        j->y[i] = x / (1.0f + expf(-1.702f * x));
    }
}

static void silu_mul_range(void *arg, int64_t i0, int64_t i1) {
    const ew_job *j = arg;
    for (int64_t i = i0; i < i1; i++) {
        const float g = j->a[i];
        j->y[i] = g / (1.0f + expf(-g)) * j->b[i];
    }
}

/* y[i, :] = a[i, :] + b[i % R, :]; y may alias a (same index read before write). */
static void add_range(void *arg, int64_t r0, int64_t r1) {
    const ew_job *j = arg;
    for (int64_t r = r0; r < r1; r++) {
        const float *a = j->a + r * j->N, *b = j->b + (r % j->R) * j->N;
        float *y = j->y + r * j->N;
        for (int64_t i = 0; i < j->N; i++) y[i] = a[i] + b[i];
    }
}

void ms_cpu_gelu(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x) {
    ew_job j = {.y = y->data, .a = x->data};
    ms_cpu_parallel_for(ms_cpu_ctx_pool(ctx), ms_tensor_numel(x), EW_GRAIN, gelu_range, &j);
}

void ms_cpu_quick_gelu(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x) {
    ew_job j = {.y = y->data, .a = x->data};
    ms_cpu_parallel_for(ms_cpu_ctx_pool(ctx), ms_tensor_numel(x), EW_GRAIN, quick_gelu_range,
                        &j);
}

void ms_cpu_silu_mul(ms_ctx *ctx, ms_tensor *y, const ms_tensor *gate, const ms_tensor *up) {
    ew_job j = {.y = y->data, .a = gate->data, .b = up->data};
    ms_cpu_parallel_for(ms_cpu_ctx_pool(ctx), ms_tensor_numel(gate), EW_GRAIN, silu_mul_range,
                        &j);
}

void ms_cpu_add(ms_ctx *ctx, ms_tensor *y, const ms_tensor *a, const ms_tensor *b) {
    ew_job j = {.y = y->data, .a = a->data, .b = b->data, .N = ms_tensor_cols(a),
                .R = ms_tensor_rows(b)};
    const int64_t grain = EW_GRAIN / (j.N > 0 ? j.N : 1);
    ms_cpu_parallel_for(ms_cpu_ctx_pool(ctx), ms_tensor_rows(a), grain > 0 ? grain : 1,
                        add_range, &j);
}
