/*
 * RoPE, attention over packed sequences (prefill, vision tower), the paged KV cache
 * write and attention against the paged cache (decode, chunked prefill).
 *
 * Attention is parallel over (query row, head) pairs; each pair does the plain
 * three-step computation (scores, max-subtracted softmax, weighted sum of values), with
 * the softmax sum in double. Index tensors live in host memory here, so every index is
 * range-checked (a bad one is a bug in model code: tier 1).
 */
#include "kernels/cpu_internal.h"

#include <math.h>
#include <string.h>

/* ---- RoPE ---- */

typedef struct rope_job {
    float *x;                 /* [T, H, D] */
    const int32_t *pos;       /* [T] */
    const float *inv_freq;    /* [D/2] */
    int64_t H, D;
} rope_job;

static void rope_rows(void *arg, int64_t t0, int64_t t1) {
    const rope_job *j = arg;
    const int64_t half = j->D / 2;
    for (int64_t t = t0; t < t1; t++)
        for (int64_t i = 0; i < half; i++) {
            /* transformers: freqs = position (f32) * inv_freq (f32), cos/sin of that. */
            const float ang = (float)j->pos[t] * j->inv_freq[i];
            const float c = (float)cos((double)ang), s = (float)sin((double)ang);
            for (int64_t h = 0; h < j->H; h++) {
                float *v = j->x + (t * j->H + h) * j->D;
                const float a = v[i], b = v[i + half];
                v[i] = a * c - b * s;
                v[i + half] = b * c + a * s;
            }
        }
}

void ms_cpu_rope(ms_ctx *ctx, ms_tensor *x, const ms_tensor *positions, float theta) {
    const int64_t T = x->shape[0], H = x->shape[1], D = x->shape[2];
    float *inv_freq = ms_xmalloc((size_t)(D / 2 + 1) * sizeof(float));
    for (int64_t i = 0; i < D / 2; i++)
        inv_freq[i] = (float)(1.0 / pow((double)theta, (double)(2 * i) / (double)D));
    rope_job j = {.x = x->data, .pos = positions->data, .inv_freq = inv_freq, .H = H, .D = D};
    ms_cpu_parallel_for(ms_cpu_ctx_pool(ctx), T, 8, rope_rows, &j);
    free(inv_freq);
}

/* ---- one (query, head) against a list of keys ---- */

/* out[D] = softmax(scale * q.k_j) weighted sum of v_j over n keys; key j's rows come
 * from kv_row(j). scores has room for n floats. */
typedef const float *(*kv_row_fn)(const void *env, int64_t j, bool want_v);

static void attend_one(float *out, const float *q, int64_t n, int64_t D, float scale,
                       kv_row_fn kv_row, const void *env, float *scores) {
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        const float *k = kv_row(env, j, false);
        float dot = 0.0f;
        for (int64_t d = 0; d < D; d++) dot += q[d] * k[d];
        scores[j] = dot * scale;
        mx = scores[j] > mx ? scores[j] : mx;
    }
    double sum = 0;
    for (int64_t j = 0; j < n; j++) {
        scores[j] = expf(scores[j] - mx);
        sum += scores[j];
    }
    for (int64_t d = 0; d < D; d++) out[d] = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        const float *v = kv_row(env, j, true);
        const float p = scores[j];
        for (int64_t d = 0; d < D; d++) out[d] += p * v[d];
    }
    const float inv = n > 0 ? (float)(1.0 / sum) : 0.0f;
    for (int64_t d = 0; d < D; d++) out[d] *= inv;
}

/* Index of the sequence holding row t: cu[s] <= t < cu[s+1] (cu ascending). */
static int64_t seq_of_row(const int32_t *cu, int64_t nseq, int64_t t) {
    int64_t lo = 0, hi = nseq - 1;
    while (lo < hi) {
        const int64_t mid = (lo + hi + 1) / 2;
        if (cu[mid] <= t) lo = mid; else hi = mid - 1;
    }
    return lo;
}

static void check_cu(const int32_t *cu, int64_t nseq, int64_t T, int64_t max_len,
                     const char *op, const char *what) {
    MS_CHECKF(cu[0] == 0 && cu[nseq] == T, "%s: %s must run from 0 to %lld (got %d..%d)", op,
              what, (long long)T, cu[0], cu[nseq]);
    for (int64_t s = 0; s < nseq; s++)
        MS_CHECKF(cu[s + 1] >= cu[s] && cu[s + 1] - cu[s] <= max_len,
                  "%s: sequence %lld has %d rows (max given %lld)", op, (long long)s,
                  cu[s + 1] - cu[s], (long long)max_len);
}

/* ---- attention over packed sequences ---- */

typedef struct attn_job {
    float *out;                    /* [T, Hq, D] */
    const float *q, *k, *v;        /* q [T, Hq, D]; k, v [T, Hkv, D] */
    const int32_t *cu;             /* [nseq + 1] */
    int64_t nseq, Hq, Hkv, D, max_len;
    bool causal;
    float scale;
} attn_job;

typedef struct packed_env {
    const attn_job *j;
    int64_t first, kvh; /* row of key 0, kv head */
} packed_env;

static const float *packed_row(const void *env, int64_t j, bool want_v) {
    const packed_env *e = env;
    const float *base = want_v ? e->j->v : e->j->k;
    return base + ((e->first + j) * e->j->Hkv + e->kvh) * e->j->D;
}

static void attention_items(void *arg, int64_t i0, int64_t i1) {
    const attn_job *j = arg;
    float *scores = ms_xmalloc((size_t)(j->max_len > 0 ? j->max_len : 1) * sizeof(float));
    const int64_t group = j->Hq / j->Hkv;
    for (int64_t it = i0; it < i1; it++) {
        const int64_t t = it / j->Hq, h = it % j->Hq;
        const int64_t s = seq_of_row(j->cu, j->nseq, t);
        const packed_env env = {j, j->cu[s], h / group};
        const int64_t n = j->causal ? t - j->cu[s] + 1 : j->cu[s + 1] - j->cu[s];
        attend_one(j->out + (t * j->Hq + h) * j->D, j->q + (t * j->Hq + h) * j->D, n, j->D,
                   j->scale, packed_row, &env, scores);
    }
    free(scores);
}

void ms_cpu_attention(ms_ctx *ctx, ms_tensor *out, const ms_tensor *q, const ms_tensor *k,
                      const ms_tensor *v, const ms_tensor *cu_seqlens, int32_t max_seqlen,
                      bool causal, float scale) {
    attn_job j = {.out = out->data, .q = q->data, .k = k->data, .v = v->data,
                  .cu = cu_seqlens->data, .nseq = cu_seqlens->shape[0] - 1, .Hq = q->shape[1],
                  .Hkv = k->shape[1], .D = q->shape[2], .max_len = max_seqlen,
                  .causal = causal, .scale = scale};
    const int64_t T = q->shape[0];
    check_cu(j.cu, j.nseq, T, max_seqlen, "attention", "cu_seqlens");
    ms_cpu_parallel_for(ms_cpu_ctx_pool(ctx), T * j.Hq, 4, attention_items, &j);
}

/* ---- paged KV cache ---- */

void ms_cpu_kv_write(ms_ctx *ctx, ms_tensor *k_cache, ms_tensor *v_cache, const ms_tensor *k,
                     const ms_tensor *v, const ms_tensor *slots) {
    const int64_t T = k->shape[0], row = k->shape[1] * k->shape[2];
    const int64_t n_slots = k_cache->shape[0] * k_cache->shape[1];
    const int32_t *sl = slots->data;
    for (int64_t t = 0; t < T; t++) {
        if (sl[t] < 0) continue;
        MS_CHECKF(sl[t] < n_slots, "kv_write: slot %d at row %lld outside a cache of %lld slots",
                  sl[t], (long long)t, (long long)n_slots);
        memcpy((float *)k_cache->data + sl[t] * row, (const float *)k->data + t * row,
               (size_t)row * sizeof(float));
        memcpy((float *)v_cache->data + sl[t] * row, (const float *)v->data + t * row,
               (size_t)row * sizeof(float));
    }
}

typedef struct paged_job {
    float *out;                       /* [T, Hq, D] */
    const float *q;                   /* [T, Hq, D] */
    const float *kc, *vc;             /* [n_blocks, bs, Hkv, D] */
    const int32_t *bt, *cu_q, *lens;  /* [nseq, max_blocks], [nseq + 1], [nseq] */
    int64_t nseq, max_blocks, n_blocks, bs, Hq, Hkv, D, max_ctx;
    float scale;
} paged_job;

typedef struct paged_env {
    const paged_job *j;
    const int32_t *table; /* this sequence's block table */
    int64_t kvh;
} paged_env;

static const float *paged_row(const void *env, int64_t pos, bool want_v) {
    const paged_env *e = env;
    const paged_job *j = e->j;
    const int32_t block = e->table[pos / j->bs];
    const float *base = want_v ? j->vc : j->kc;
    return base + (((int64_t)block * j->bs + pos % j->bs) * j->Hkv + e->kvh) * j->D;
}

static void paged_items(void *arg, int64_t i0, int64_t i1) {
    const paged_job *j = arg;
    float *scores = ms_xmalloc((size_t)(j->max_ctx > 0 ? j->max_ctx : 1) * sizeof(float));
    const int64_t group = j->Hq / j->Hkv;
    for (int64_t it = i0; it < i1; it++) {
        const int64_t t = it / j->Hq, h = it % j->Hq;
        const int64_t s = seq_of_row(j->cu_q, j->nseq, t);
        const int64_t q_len = j->cu_q[s + 1] - j->cu_q[s];
        const int64_t pos = j->lens[s] - q_len + (t - j->cu_q[s]); /* attends to 0..pos */
        const paged_env env = {j, j->bt + s * j->max_blocks, h / group};
        attend_one(j->out + (t * j->Hq + h) * j->D, j->q + (t * j->Hq + h) * j->D, pos + 1,
                   j->D, j->scale, paged_row, &env, scores);
    }
    free(scores);
}

void ms_cpu_attention_paged(ms_ctx *ctx, ms_tensor *out, const ms_tensor *q,
                            const ms_tensor *k_cache, const ms_tensor *v_cache,
                            const ms_tensor *block_tables, const ms_tensor *cu_q,
                            const ms_tensor *ctx_lens, int32_t max_q, int32_t max_ctx,
                            float scale) {
    paged_job j = {.out = out->data, .q = q->data, .kc = k_cache->data, .vc = v_cache->data,
                   .bt = block_tables->data, .cu_q = cu_q->data, .lens = ctx_lens->data,
                   .nseq = ctx_lens->shape[0], .max_blocks = block_tables->shape[1],
                   .n_blocks = k_cache->shape[0], .bs = k_cache->shape[1], .Hq = q->shape[1],
                   .Hkv = k_cache->shape[2], .D = q->shape[2], .max_ctx = max_ctx,
                   .scale = scale};
    const int64_t T = q->shape[0];
    check_cu(j.cu_q, j.nseq, T, max_q, "attention_paged", "cu_q");
    /* Every block a query will read must be a real block of the cache. */
    for (int64_t s = 0; s < j.nseq; s++) {
        const int64_t q_len = j.cu_q[s + 1] - j.cu_q[s], len = j.lens[s];
        MS_CHECKF(len >= q_len && len <= max_ctx,
                  "attention_paged: sequence %lld has ctx_len %lld with %lld queries (max_ctx %d)",
                  (long long)s, (long long)len, (long long)q_len, max_ctx);
        const int64_t used = (len + j.bs - 1) / j.bs;
        MS_CHECKF(used <= j.max_blocks, "attention_paged: sequence %lld needs %lld blocks, "
                  "table has %lld", (long long)s, (long long)used, (long long)j.max_blocks);
        for (int64_t b = 0; b < used; b++) {
            const int32_t blk = j.bt[s * j.max_blocks + b];
            MS_CHECKF(blk >= 0 && blk < j.n_blocks, "attention_paged: sequence %lld block %lld "
                      "is %d, cache has %lld blocks", (long long)s, (long long)b, blk,
                      (long long)j.n_blocks);
        }
    }
    ms_cpu_parallel_for(ms_cpu_ctx_pool(ctx), T * j.Hq, 4, paged_items, &j);
}
