/* Naive double-precision references for test_backend_ops (see test_backend_ops.h). */
#include "tests/test_backend_ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ref_matmul(double *y, const float *x, const float *w, const float *bias, int64_t M,
                int64_t K, int64_t N) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = bias ? bias[n] : 0.0;
            for (int64_t k = 0; k < K; k++) s += (double)x[m * K + k] * w[n * K + k];
            y[m * N + n] = s;
        }
}

void ref_layernorm(double *y, const float *x, const float *g, const float *b, int64_t M,
                   int64_t N, double eps) {
    for (int64_t m = 0; m < M; m++) {
        const float *r = x + m * N;
        double mean = 0, var = 0;
        for (int64_t i = 0; i < N; i++) mean += r[i];
        mean /= (double)N;
        for (int64_t i = 0; i < N; i++) var += (r[i] - mean) * (r[i] - mean);
        var /= (double)N;
        for (int64_t i = 0; i < N; i++)
            y[m * N + i] = (r[i] - mean) / sqrt(var + eps) * g[i] + (b ? b[i] : 0.0);
    }
}

void ref_rmsnorm(double *y, const double *x, const float *g, int64_t M, int64_t N, double eps) {
    for (int64_t m = 0; m < M; m++) {
        double ss = 0;
        for (int64_t i = 0; i < N; i++) ss += x[m * N + i] * x[m * N + i];
        const double inv = 1.0 / sqrt(ss / (double)N + eps);
        for (int64_t i = 0; i < N; i++) y[m * N + i] = x[m * N + i] * inv * g[i];
    }
}

void ref_rope(double *y, const float *x, const int32_t *pos, int64_t T, int64_t H, int64_t D,
              float theta) {
    const int64_t half = D / 2;
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < D; i++) {
                /* transformers: inv_freq and position * inv_freq are f32 tensors. */
                const int64_t k = i % half;
                const float inv_freq = (float)pow((double)theta, -(double)(2 * k) / (double)D);
                const double ang = (double)((float)pos[t] * inv_freq);
                const float *r = x + (t * H + h) * D;
                /* rotate_half(x) = cat(-x2, x1) */
                const double rot = i < half ? -(double)r[i + half] : (double)r[i - half];
                y[(t * H + h) * D + i] = r[i] * cos(ang) + rot * sin(ang);
            }
}

/* softmax(scale * q.K) V for one query row over keys kr[j], vr[j], j < n. */
static void attend(double *out, const float *q, const float *const *kr, const float *const *vr,
                   int64_t n, int64_t D, double scale) {
    double *s = malloc(sizeof(double) * (size_t)(n ? n : 1));
    double mx = -INFINITY, sum = 0;
    for (int64_t j = 0; j < n; j++) {
        double d = 0;
        for (int64_t c = 0; c < D; c++) d += (double)q[c] * kr[j][c];
        s[j] = d * scale;
        if (s[j] > mx) mx = s[j];
    }
    for (int64_t j = 0; j < n; j++) sum += s[j] = exp(s[j] - mx);
    for (int64_t c = 0; c < D; c++) {
        double a = 0;
        for (int64_t j = 0; j < n; j++) a += s[j] * vr[j][c];
        out[c] = a / sum;
    }
    free(s);
}

void ref_attention(double *out, const float *q, const float *k, const float *v,
                   const int32_t *cu, int64_t nseq, int64_t Hq, int64_t Hkv, int64_t D,
                   bool causal, double scale) {
    const int64_t T = cu[nseq];
    const float **kr = malloc(sizeof(float *) * (size_t)(T ? T : 1));
    const float **vr = malloc(sizeof(float *) * (size_t)(T ? T : 1));
    for (int64_t s = 0; s < nseq; s++)
        for (int64_t t = cu[s]; t < cu[s + 1]; t++)
            for (int64_t h = 0; h < Hq; h++) {
                const int64_t kvh = h * Hkv / Hq; /* = h / (Hq / Hkv) */
                const int64_t last = causal ? t : cu[s + 1] - 1;
                int64_t n = 0;
                for (int64_t j = cu[s]; j <= last; j++, n++) {
                    kr[n] = k + (j * Hkv + kvh) * D;
                    vr[n] = v + (j * Hkv + kvh) * D;
                }
                attend(out + (t * Hq + h) * D, q + (t * Hq + h) * D, kr, vr, n, D, scale);
            }
    free(kr);
    free(vr);
}

void ref_attention_paged(double *out, const float *q, const float *kc, const float *vc,
                         const int32_t *bt, int64_t max_blocks, int64_t bs, const int32_t *cu_q,
                         const int32_t *lens, int64_t nseq, int64_t Hq, int64_t Hkv, int64_t D,
                         double scale) {
    for (int64_t s = 0; s < nseq; s++) {
        const int64_t q_len = cu_q[s + 1] - cu_q[s], len = lens[s];
        const float **kr = malloc(sizeof(float *) * (size_t)(len ? len : 1));
        const float **vr = malloc(sizeof(float *) * (size_t)(len ? len : 1));
        for (int64_t i = 0; i < q_len; i++) {
            const int64_t t = cu_q[s] + i, pos = len - q_len + i;
            for (int64_t h = 0; h < Hq; h++) {
                const int64_t kvh = h * Hkv / Hq;
                for (int64_t j = 0; j <= pos; j++) {
                    const int64_t slot = (int64_t)bt[s * max_blocks + j / bs] * bs + j % bs;
                    kr[j] = kc + (slot * Hkv + kvh) * D;
                    vr[j] = vc + (slot * Hkv + kvh) * D;
                }
                attend(out + (t * Hq + h) * D, q + (t * Hq + h) * D, kr, vr, pos + 1, D, scale);
            }
        }
        free(kr);
        free(vr);
    }
}

void ref_softmax(double *y, const float *x, int64_t M, int64_t N) {
    for (int64_t m = 0; m < M; m++) {
        double mx = -INFINITY, sum = 0;
        for (int64_t i = 0; i < N; i++) mx = fmax(mx, x[m * N + i]);
        for (int64_t i = 0; i < N; i++) sum += exp(x[m * N + i] - mx);
        for (int64_t i = 0; i < N; i++) y[m * N + i] = exp(x[m * N + i] - mx) / sum;
    }
}

void ref_gelu(double *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = 0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0)));
}

void ref_quick_gelu(double *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0 + exp(-1.702 * x[i]));
}

void ref_silu_mul(double *y, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
}

void ref_patch_embed(double *out, const float *px, const float *w, int64_t N, int64_t C,
                     int64_t H, int64_t W, int64_t E, int64_t p) {
    const int64_t gh = H / p, gw = W / p;
    for (int64_t n = 0; n < N; n++)
        for (int64_t oy = 0; oy < gh; oy++)
            for (int64_t ox = 0; ox < gw; ox++)
                for (int64_t e = 0; e < E; e++) {
                    double s = 0;
                    for (int64_t c = 0; c < C; c++)
                        for (int64_t ky = 0; ky < p; ky++)
                            for (int64_t kx = 0; kx < p; kx++)
                                s += (double)w[((e * C + c) * p + ky) * p + kx] *
                                     px[((n * C + c) * H + oy * p + ky) * W + ox * p + kx];
                    out[((n * gh + oy) * gw + ox) * E + e] = s;
                }
}

void ref_image_normalize(double *out, const int32_t *rgb, int64_t N, int64_t H, int64_t W,
                         const float mean[3], const float std[3], float rescale) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++)
                for (int64_t c = 0; c < 3; c++)
                    out[((n * 3 + c) * H + y) * W + x] =
                        (rgb[((n * H + y) * W + x) * 3 + c] * (double)rescale - mean[c]) / std[c];
}

/* Sampling by the letter of sample.h: rank by (logit desc, id asc), cut by top-k and
 * top-p, draw by the running weight sum. */
typedef struct ranked {
    double logit;
    int32_t id;
} ranked;

static int ranked_cmp(const void *pa, const void *pb) {
    const ranked *a = pa, *b = pb;
    if (a->logit > b->logit) return -1;
    if (a->logit < b->logit) return 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

int32_t ref_sample(const float *logits, int32_t V, const ms_sample_params *p, float u) {
    int32_t best = 0;
    for (int32_t i = 1; i < V; i++)
        if (logits[i] > logits[best] || isnan(logits[best])) best = i;
    if (p->temperature <= 0) return best;
    ranked *r = malloc(sizeof(ranked) * (size_t)V);
    int32_t n = 0;
    for (int32_t i = 0; i < V; i++)
        if (logits[i] > -INFINITY) r[n++] = (ranked){logits[i], i};
    qsort(r, (size_t)n, sizeof *r, ranked_cmp);
    if (p->top_k > 0 && p->top_k < n) n = p->top_k;
    double *w = malloc(sizeof(double) * (size_t)(n ? n : 1));
    double sum = 0;
    for (int32_t i = 0; i < n; i++) sum += w[i] = exp((r[i].logit - logits[best]) / p->temperature);
    if (p->top_p < 1.0f) {
        double run = 0;
        int32_t keep = 0;
        while (keep < n && run < p->top_p * sum) run += w[keep++];
        n = keep < 1 ? 1 : keep;
        sum = 0;
        for (int32_t i = 0; i < n; i++) sum += w[i];
    }
    int32_t pick = r[n - 1].id;
    double run = 0;
    for (int32_t i = 0; i < n; i++) {
        run += w[i];
        if (run > u * sum) {
            pick = r[i].id;
            break;
        }
    }
    free(r);
    free(w);
    return pick;
}
