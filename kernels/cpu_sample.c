/* Token sampling (see sample.h for the algorithm every backend follows). */
#include "kernels/sample.h"

#include <math.h>

#include "kernels/cpu_internal.h"

typedef struct cand {
    float logit;
    int32_t id;
} cand;

/* Decreasing logit, then increasing id: a total order, so qsort's result is unique. */
static int cand_cmp(const void *pa, const void *pb) {
    const cand *a = pa, *b = pb;
    if (a->logit != b->logit) return a->logit > b->logit ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

static int32_t argmax_row(const float *l, int32_t V) {
    int32_t best = 0;
    float bv = -INFINITY;
    for (int32_t i = 0; i < V; i++)
        if (l[i] > bv) { /* strict: the lowest index wins ties; NaN never wins */
            bv = l[i];
            best = i;
        }
    return best;
}

int32_t ms_sample_row_f32(const float *logits, int32_t vocab, const ms_sample_params *p, float u) {
    MS_CHECK(vocab > 0);
    const int32_t top = argmax_row(logits, vocab);
    const float mx = logits[top];
    if (p->temperature <= 0.0f || !(mx > -INFINITY) || p->top_k == 1) return top;
    /* Tokens with zero weight (-inf or NaN logits) can never be drawn: leave them out. */
    cand *c = ms_xmalloc((size_t)vocab * sizeof *c);
    int32_t n = 0;
    for (int32_t i = 0; i < vocab; i++)
        if (logits[i] > -INFINITY) c[n++] = (cand){logits[i], i};
    qsort(c, (size_t)n, sizeof *c, cand_cmp);
    if (p->top_k > 0 && p->top_k < n) n = p->top_k;
    double *w = ms_xmalloc((size_t)n * sizeof *w);
    const double inv_t = 1.0 / (double)p->temperature;
    double sum = 0;
    for (int32_t i = 0; i < n; i++) {
        w[i] = exp(((double)c[i].logit - (double)mx) * inv_t);
        sum += w[i];
    }
    if (p->top_p < 1.0f) {
        const double want = (double)p->top_p * sum;
        double run = 0;
        int32_t keep = 0;
        while (keep < n) {
            run += w[keep++];
            if (run >= want) break;
        }
        n = keep > 0 ? keep : 1;
    }
    double total = 0;
    for (int32_t i = 0; i < n; i++) total += w[i];
    const double target = (double)u * total;
    int32_t pick = c[n - 1].id;
    double run = 0;
    for (int32_t i = 0; i < n; i++) {
        run += w[i];
        if (run > target) {
            pick = c[i].id;
            break;
        }
    }
    free(w);
    free(c);
    return pick;
}

typedef struct sample_job {
    int32_t *out;
    const float *logits; /* [B, V] */
    const ms_sample_params *params;
    const float *u;
    int32_t V;
} sample_job;

static void sample_rows(void *arg, int64_t b0, int64_t b1) {
    const sample_job *j = arg;
    for (int64_t b = b0; b < b1; b++)
        j->out[b] = ms_sample_row_f32(j->logits + b * j->V, j->V, &j->params[b], j->u[b]);
}

void ms_cpu_sample(ms_ctx *ctx, ms_tensor *out_ids, const ms_tensor *logits,
                   const ms_sample_params *params, const float *uniforms) {
    sample_job j = {.out = out_ids->data, .logits = logits->data, .params = params,
                    .u = uniforms, .V = (int32_t)ms_tensor_cols(logits)};
    ms_cpu_parallel_for(ms_cpu_ctx_pool(ctx), ms_tensor_rows(logits), 1, sample_rows, &j);
}
