/*
 * `modserve bench profile`: measures the real engine for the simulator's cost model and
 * writes profile.json (format in cost_model.h). Everything goes through the engine API
 * and the stage timestamps it returns, so the numbers include what a worker really does
 * around a batch:
 * - preprocess: one request with k images (decode + resize), preprocess_end - start,
 *   the mean over the replayer's image pool (--image-pool, --seed: the same images);
 *   and each pool image alone (median of repeats), for the simulator to charge each
 *   request its own images;
 * - encode: one request with k images on one encoder that batches them all,
 *   encode_end - encode_start;
 * - prefill: one text request of N prompt tokens (token budget >= N), prefill_end - start;
 * - decode: B requests of C prompt tokens submitted together on one decode worker. Their
 *   prompts prefill one after another, so only the stretch where all B are decoding (from
 *   the last first token to the first last token) is a batch of B; a step is the median
 *   over requests of their token gaps inside that stretch. The decode length is grown
 *   from --decode-steps until the stretch holds that many steps (bounded by the model's
 *   context; past it the point is refused with the reason).
 * - frontend (with --url, a running `modserve serve` of the same model): requests of k
 *   images and one output token sent one at a time by the replayer; per request the
 *   client's TTFT minus the server's own (arrival to first token): HTTP, JSON, base64,
 *   tokenizing and streaming back, which the simulator adds before the engine; and each
 *   pool image in a request of its own, beyond a text-only request's front end.
 * Each point is the median of --repeats runs after one warm-up; with --rounds R the whole
 * pass is made R times and each point is the mean of its R medians.
 */
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bench/images.h"
#include "bench/simulate.h"
#include "llm/config.h"
#include "scheduler/engine.h"

enum { MAX_LIST = 16, MAX_ROUNDS = 64 };

typedef struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending;
    ms_request_result *results;
} waiter;

typedef struct slot {
    waiter *w;
    int index;
    double *token_times; /* [max_tokens] when the caller wants them, else NULL */
} slot;

static void on_token(void *user, int32_t token, int32_t index) {
    (void)token;
    slot *s = user;
    if (s->token_times) s->token_times[index] = ms_time_now();
}

static void on_done(void *user, const ms_request_result *r) {
    slot *s = user;
    pthread_mutex_lock(&s->w->mu);
    s->w->results[s->index] = *r;
    s->w->pending--;
    pthread_cond_broadcast(&s->w->cv);
    pthread_mutex_unlock(&s->w->mu);
}

typedef struct prof {
    ms_engine *e;
    const ms_llava_config *cfg;
    ms_image_pool pool;
} prof;

/* Runs n identical requests at once (prompt_tokens text tokens + images, the images
 * from pool index first_image on), waits. token_times: NULL or n rows of max_tokens. */
static ms_status run_batch(prof *p, int n, int32_t text_tokens, int32_t images, int32_t first_image,
                           int32_t max_tokens, ms_request_result *out, double **token_times, ms_error *err) {
    const int32_t n_prompt = text_tokens + images;
    int32_t *ids = ms_xmalloc((size_t)(n_prompt + 1) * sizeof *ids);
    const int32_t vocab = p->cfg->text.vocab_size;
    for (int32_t i = 0; i < images; i++) ids[i] = p->cfg->image_token_index;
    for (int32_t i = 0; i < text_tokens; i++) {
        int32_t id = 3 + (int32_t)((i * 7919u) % (uint32_t)(vocab - 3)); /* past <unk> <s> </s> */
        if (id == p->cfg->image_token_index) id = 3;
        ids[images + i] = id;
    }
    ms_image_input *in = ms_xcalloc((size_t)(images + 1), sizeof *in);
    for (int32_t i = 0; i < images; i++) {
        in[i].bytes = p->pool.images[(first_image + i) % p->pool.n].raw;
        in[i].n_bytes = p->pool.images[(first_image + i) % p->pool.n].bytes;
    }
    waiter w = {.pending = 0, .results = out};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    slot *slots = ms_xcalloc((size_t)n, sizeof *slots);
    ms_status st = MS_OK;
    for (int k = 0; k < n && st == MS_OK; k++) {
        slots[k] = (slot){&w, k, token_times ? token_times[k] : NULL};
        ms_request_desc d = {.prompt = ids, .n_prompt = n_prompt, .images = in, .n_images = images,
                             .on_token = on_token, .on_done = on_done, .user = &slots[k]};
        ms_request_params_default(&d.params);
        d.params.max_tokens = max_tokens;
        d.params.min_tokens = max_tokens;
        d.params.ignore_eos = true;
        uint64_t id;
        pthread_mutex_lock(&w.mu);
        w.pending++;
        pthread_mutex_unlock(&w.mu);
        st = ms_engine_submit(p->e, &d, &id, err);
        if (st != MS_OK) {
            pthread_mutex_lock(&w.mu);
            w.pending--;
            pthread_mutex_unlock(&w.mu);
        }
    }
    pthread_mutex_lock(&w.mu);
    while (w.pending > 0) pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    for (int k = 0; k < n && st == MS_OK; k++)
        if (out[k].status != MS_OK) st = ms_errorf(err, out[k].status, "profile request failed: %s", out[k].error);
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    free(slots);
    free(in);
    free(ids);
    return st;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef enum { M_PRE, M_ENC, M_PREFILL } measure_kind;

/* Stage time of one request after a warm-up: prefill and encode the median over repeats;
 * preprocess the mean over at least the whole image pool, because its cost follows each
 * image's size and the replayer sends all of them. */
static ms_status measure(prof *p, measure_kind kind, int32_t x, int repeats, double *out, ms_error *err) {
    if (kind == M_PRE && repeats < p->pool.n) repeats = p->pool.n;
    double *v = ms_xcalloc((size_t)repeats, sizeof *v);
    ms_request_result r;
    ms_status st = MS_OK;
    for (int k = -1; k < repeats && st == MS_OK; k++) {
        const int32_t first = k < 0 ? 0 : k * x;
        st = kind == M_PREFILL ? run_batch(p, 1, x, 0, 0, 1, &r, NULL, err)
                               : run_batch(p, 1, 8, x, first, 1, &r, NULL, err);
        if (st != MS_OK) break;
        const ms_request_times *t = &r.times;
        const double d = kind == M_PRE ? t->preprocess_end - t->preprocess_start
                         : kind == M_ENC ? t->encode_end - t->encode_start
                                         : t->prefill_end - t->prefill_start;
        if (k >= 0) v[k] = d;
    }
    if (st == MS_OK && kind == M_PRE) {
        double sum = 0;
        for (int k = 0; k < repeats; k++) sum += v[k];
        *out = sum / repeats;
    } else if (st == MS_OK) {
        *out = median(v, repeats);
    }
    free(v);
    return st;
}

/* Preprocess of each pool image alone: out[i] the median of repeats (after a warm-up). */
static ms_status measure_images(prof *p, int repeats, double *out, ms_error *err) {
    double v[65];
    ms_request_result r;
    for (int32_t i = 0; i < p->pool.n; i++)
        for (int k = i == 0 ? -1 : 0; k < repeats; k++) {
            ms_status st = run_batch(p, 1, 8, 1, i, 1, &r, NULL, err);
            if (st != MS_OK) return st;
            if (k >= 0) v[k] = r.times.preprocess_end - r.times.preprocess_start;
            if (k == repeats - 1) out[i] = median(v, repeats);
        }
    return MS_OK;
}

/* From the token times of a batch run (rows of T): the per-request median token gap
 * inside the stretch where all n requests were decoding, and how many steps that
 * stretch held (the fewest over requests). Index 0 is the prefill's token. */
static void decode_window(double **times, int n, int32_t T, double *v, int *nv, int32_t *steps_in) {
    double w0 = 0, w1 = INFINITY;
    for (int j = 0; j < n; j++) {
        w0 = fmax(w0, times[j][0]);
        w1 = fmin(w1, times[j][T - 1]);
    }
    *steps_in = INT32_MAX;
    for (int j = 0; j < n; j++) {
        int32_t a = -1, b = -1;
        for (int32_t i = 1; i < T; i++)
            if (times[j][i] >= w0 && times[j][i] <= w1) {
                if (a < 0) a = i;
                b = i;
            }
        const int32_t in = a < 0 ? 0 : b - a;
        if (in < *steps_in) *steps_in = in;
        if (in >= 1) v[(*nv)++] = (times[j][b] - times[j][a]) / in;
    }
    if (n == 0) *steps_in = 0;
}

static ms_status measure_decode(prof *p, int32_t batch, int32_t ctx, int32_t steps, int repeats, double *out,
                                ms_error *err) {
    const int32_t max_len = ms_engine_max_model_len(p->e);
    int32_t T = steps + 1;
    if (ctx + T > max_len)
        return ms_errorf(err, MS_ERR_INVALID, "decode context %d + %d steps is over the model's %d tokens", ctx, T,
                         max_len);
    ms_request_result *r = ms_xcalloc((size_t)batch, sizeof *r);
    double **times = ms_xcalloc((size_t)batch, sizeof *times);
    double *v = ms_xcalloc((size_t)(batch * repeats + 1), sizeof *v);
    int nv = 0;
    ms_status st = MS_OK;
    /* A run whose stretch is too short (the prompts prefilled one by one) is run again
     * with more steps: enough to outlast the prefills it saw, within the context. */
    for (int k = -1; k < repeats && st == MS_OK;) {
        for (int j = 0; j < batch; j++) times[j] = ms_xrealloc(times[j], (size_t)T * sizeof **times);
        st = run_batch(p, batch, ctx, 0, 0, T, r, times, err);
        if (st != MS_OK) break;
        int n_here = 0;
        int32_t in = 0;
        decode_window(times, batch, T, v + nv, &n_here, &in);
        if (in < steps / 2 || n_here < batch) {
            double stagger = 0, gap = INFINITY;
            for (int j = 0; j < batch; j++) {
                stagger = fmax(stagger, times[j][0] - times[0][0]);
                gap = fmin(gap, (times[j][T - 1] - times[j][0]) / (T - 1));
            }
            const double need = steps + 1 + 1.5 * stagger / fmax(gap, 1e-6);
            const int32_t grown = need > max_len - ctx ? max_len - ctx : (int32_t)need;
            if (grown <= T)
                st = ms_errorf(err, MS_ERR_INVALID,
                               "decode batch %d at context %d: the %d prompts take longer to prefill than the %d "
                               "decode steps that fit in the model's %d tokens, so they never decode together; "
                               "choose a smaller batch or context", batch, ctx, batch, T - 1, max_len);
            T = grown;
            continue;
        }
        if (k >= 0) nv += n_here; /* the first good run is the warm-up */
        k++;
    }
    if (st == MS_OK) *out = median(v, nv);
    for (int j = 0; j < batch; j++) free(times[j]);
    free(times);
    free(v);
    free(r);
    return st;
}

/* Front-end time over HTTP (see the top): out[i] for xs[i] images; with per_image (pool
 * images) also each pool image's, beyond a text-only request's, sent alone. */
static ms_status measure_frontend(const char *url, const int32_t *xs, int n_x, int repeats, int32_t pool_n,
                                  uint64_t seed, double *out, double *per_image, ms_error *err) {
    ms_replay_options o;
    ms_replay_options_default(&o);
    o.url = url;
    o.max_concurrency = 1; /* one at a time: nothing queues */
    o.policy = MS_IMAGE_POLICY_KEEP;
    o.progress = 0;
    o.plots = false;
    o.image_pool = pool_n;
    o.sel.seed = seed; /* the replayer's images */
    int32_t max_x = 1;
    for (int i = 0; i < n_x; i++) max_x = xs[i] > max_x ? xs[i] : max_x;
    o.max_images = max_x;
    const int per = repeats + 1; /* the first of each point is a warm-up */
    /* Then one-image requests until every pool image went out `repeats` times: request
     * index j sends pool image ms_image_pool_pick(j, 0, pool_n). */
    const int64_t curve_n = (int64_t)n_x * per, img_n = per_image ? (int64_t)pool_n * repeats : 0;
    ms_trace_set set = {.n = curve_n + img_n};
    set.reqs = ms_xcalloc((size_t)set.n, sizeof *set.reqs);
    /* Four output tokens: the first can be one that decodes to no text (random weights),
     * and TTFT is the first chunk with text; a request still without text is skipped. */
    for (int64_t j = 0; j < set.n; j++)
        set.reqs[j] = (ms_trace_req){.n_images = j < curve_n ? xs[j / per] : 1,
                                     .context_tokens = 32, /* keep: images + short text */
                                     .generated_tokens = 4};
    ms_bench_run run;
    ms_status st = ms_replay_run(&o, &set, &run, err);
    double *v = ms_xcalloc((size_t)(set.n + 1), sizeof *v);
    /* The front end of request j: the client's TTFT minus the server's own. */
    const char *why = "no request";
    for (int i = 0; i < n_x && st == MS_OK; i++) {
        int nv = 0;
        for (int k = 1; k < per; k++) {
            const ms_run_request *r = &run.reqs[i * per + k];
            if (!r->m.ok || r->stage_end[2] < 0) why = r->error ? r->error : "no modserve.timings";
            else v[nv++] = fmax(0.0, r->m.ttft_s - r->stage_end[2]); /* stage_end[2]: first token */
        }
        if (nv == 0)
            st = ms_errorf(err, MS_ERR_INVALID, "frontend: every request of %d images failed or the server sent no "
                           "stage times (%s)", xs[i], why);
        else
            out[i] = median(v, nv);
    }
    const double text_only = n_x > 0 && xs[0] == 0 ? out[0] : 0;
    for (int32_t img = 0; img < pool_n && per_image && st == MS_OK; img++) {
        int nv = 0;
        for (int64_t j = curve_n; j < set.n; j++) {
            const ms_run_request *r = &run.reqs[j];
            if (ms_image_pool_pick(j, 0, pool_n) != img) continue;
            if (r->m.ok && r->stage_end[2] >= 0) v[nv++] = fmax(0.0, r->m.ttft_s - r->stage_end[2]);
        }
        /* An image no one-image request reaches (pool sizes that share a factor with the
         * replayer's stride) is not sent alone by the replayer either: the 1-image median. */
        per_image[img] = fmax(0.0, (nv ? median(v, nv) : out[n_x > 1 ? 1 : 0]) - text_only);
    }
    free(v);
    ms_bench_run_free(&run);
    free(set.reqs);
    return st == MS_OK ? MS_OK : ms_error_wrap(err, "profile --url %s", url);
}

static int parse_list(const char *s, int32_t *out) {
    int n = 0;
    char *end;
    while (*s && n < MAX_LIST) {
        const long v = strtol(s, &end, 10);
        if (end == s || v < 1) return -1;
        out[n++] = (int32_t)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

/* The points to measure and, per round, what was measured at each. */
typedef struct plan {
    int32_t enc[MAX_LIST], pre[MAX_LIST], dbat[MAX_LIST], dctx[MAX_LIST], fe_x[MAX_LIST + 1];
    int n_enc, n_pre, n_dbat, n_dctx, n_fe, repeats, steps;
    int32_t pool_n;   /* the replayer's image pool: --image-pool, --seed */
    uint64_t seed;
    const char *url;
} plan;

typedef struct round_times {
    double pre[MAX_LIST], enc[MAX_LIST], pf[MAX_LIST], dec[MAX_LIST][MAX_LIST], fe[MAX_LIST + 1];
    double img_pre[MS_COST_MAX_POOL], img_fe[MS_COST_MAX_POOL]; /* per pool image */
} round_times;

/* One pass over every point, in the order preprocess, encode, prefill, decode, frontend. */
static ms_status measure_round(prof *p, const plan *pl, round_times *t, ms_error *err) {
    ms_status st = MS_OK;
    for (int i = 0; i < pl->n_enc && st == MS_OK; i++) st = measure(p, M_PRE, pl->enc[i], pl->repeats, &t->pre[i], err);
    if (st == MS_OK) st = measure_images(p, pl->repeats, t->img_pre, err);
    for (int i = 0; i < pl->n_enc && st == MS_OK; i++) st = measure(p, M_ENC, pl->enc[i], pl->repeats, &t->enc[i], err);
    for (int i = 0; i < pl->n_pre && st == MS_OK; i++)
        st = measure(p, M_PREFILL, pl->pre[i], pl->repeats, &t->pf[i], err);
    for (int c = 0; c < pl->n_dctx && st == MS_OK; c++)
        for (int b = 0; b < pl->n_dbat && st == MS_OK; b++)
            st = measure_decode(p, pl->dbat[b], pl->dctx[c], pl->steps, pl->repeats, &t->dec[c][b], err);
    if (st == MS_OK && pl->url)
        st = measure_frontend(pl->url, pl->fe_x, pl->n_fe, pl->repeats, pl->pool_n, pl->seed, t->fe, t->img_fe, err);
    return st;
}

/* A point over the rounds: the mean goes to the simulator, min and max show the drift. */
typedef struct over_rounds {
    double mean, min, max;
} over_rounds;

static over_rounds across(const round_times *t, int rounds, size_t offset) {
    over_rounds o = {0, INFINITY, -INFINITY};
    for (int r = 0; r < rounds; r++) {
        const double v = *(const double *)((const char *)&t[r] + offset);
        o.mean += v / rounds;
        o.min = fmin(o.min, v);
        o.max = fmax(o.max, v);
    }
    return o;
}

/* {"<xkey>": [...], "seconds": [...]} and, over several rounds, "seconds_min"/"_max".
 * offsets[i]: where point i lives in round_times. */
static cJSON *curve_json(const char *xkey, const int32_t *x, const size_t *offsets, int n, const round_times *t,
                         int rounds) {
    cJSON *o = cJSON_CreateObject();
    cJSON *xs = cJSON_AddArrayToObject(o, xkey), *ys = cJSON_AddArrayToObject(o, "seconds");
    cJSON *lo = rounds > 1 ? cJSON_AddArrayToObject(o, "seconds_min") : NULL;
    cJSON *hi = rounds > 1 ? cJSON_AddArrayToObject(o, "seconds_max") : NULL;
    for (int i = 0; i < n; i++) {
        const over_rounds v = across(t, rounds, offsets[i]);
        cJSON_AddItemToArray(xs, cJSON_CreateNumber(x[i]));
        cJSON_AddItemToArray(ys, cJSON_CreateNumber(v.mean));
        if (lo) cJSON_AddItemToArray(lo, cJSON_CreateNumber(v.min));
        if (hi) cJSON_AddItemToArray(hi, cJSON_CreateNumber(v.max));
    }
    return o;
}

#define RT_OFFSET(field, i) (offsetof(round_times, field) + (size_t)(i) * sizeof(double))

static cJSON *profile_json(const char *model, const char *device, int32_t image_tokens, int32_t max_model_len,
                           const plan *pl, const round_times *t, int rounds) {
    size_t off[MAX_LIST + 1] = {0};
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddStringToObject(o, "device", device);
    cJSON_AddNumberToObject(o, "image_tokens", image_tokens);
    cJSON_AddNumberToObject(o, "max_model_len", max_model_len); /* simulate's default, as serve's */
    cJSON_AddNumberToObject(o, "rounds", rounds);
    for (int i = 0; i < pl->n_enc; i++) off[i] = RT_OFFSET(pre, i);
    cJSON_AddItemToObject(o, "preprocess", curve_json("images", pl->enc, off, pl->n_enc, t, rounds));
    for (int i = 0; i < pl->n_enc; i++) off[i] = RT_OFFSET(enc, i);
    cJSON_AddItemToObject(o, "encode", curve_json("images", pl->enc, off, pl->n_enc, t, rounds));
    for (int i = 0; i < pl->n_pre; i++) off[i] = RT_OFFSET(pf, i);
    cJSON_AddItemToObject(o, "prefill", curve_json("tokens", pl->pre, off, pl->n_pre, t, rounds));
    if (pl->url) {
        for (int i = 0; i < pl->n_fe; i++) off[i] = RT_OFFSET(fe, i);
        cJSON_AddItemToObject(o, "frontend", curve_json("images", pl->fe_x, off, pl->n_fe, t, rounds));
    }
    cJSON *im = cJSON_AddObjectToObject(o, "images");
    cJSON_AddNumberToObject(im, "pool", pl->pool_n);
    cJSON_AddNumberToObject(im, "seed", (double)pl->seed);
    cJSON *ip = cJSON_AddArrayToObject(im, "preprocess"), *ifr = pl->url ? cJSON_AddArrayToObject(im, "frontend") : NULL;
    for (int32_t i = 0; i < pl->pool_n; i++) {
        cJSON_AddItemToArray(ip, cJSON_CreateNumber(across(t, rounds, offsetof(round_times, img_pre[i])).mean));
        if (ifr) cJSON_AddItemToArray(ifr, cJSON_CreateNumber(across(t, rounds, offsetof(round_times, img_fe[i])).mean));
    }
    cJSON *d = cJSON_AddObjectToObject(o, "decode");
    cJSON *bs = cJSON_AddArrayToObject(d, "batch"), *cs = cJSON_AddArrayToObject(d, "context");
    cJSON *ss = cJSON_AddArrayToObject(d, "seconds");
    cJSON *lo = rounds > 1 ? cJSON_AddArrayToObject(d, "seconds_min") : NULL;
    cJSON *hi = rounds > 1 ? cJSON_AddArrayToObject(d, "seconds_max") : NULL;
    for (int b = 0; b < pl->n_dbat; b++) cJSON_AddItemToArray(bs, cJSON_CreateNumber(pl->dbat[b]));
    for (int c = 0; c < pl->n_dctx; c++) {
        cJSON_AddItemToArray(cs, cJSON_CreateNumber(pl->dctx[c]));
        cJSON *row = cJSON_CreateArray(), *rlo = cJSON_CreateArray(), *rhi = cJSON_CreateArray();
        for (int b = 0; b < pl->n_dbat; b++) {
            const over_rounds v = across(t, rounds, offsetof(round_times, dec[c][b]));
            cJSON_AddItemToArray(row, cJSON_CreateNumber(v.mean));
            cJSON_AddItemToArray(rlo, cJSON_CreateNumber(v.min));
            cJSON_AddItemToArray(rhi, cJSON_CreateNumber(v.max));
        }
        cJSON_AddItemToArray(ss, row);
        if (lo) cJSON_AddItemToArray(lo, rlo);
        else cJSON_Delete(rlo);
        if (hi) cJSON_AddItemToArray(hi, rhi);
        else cJSON_Delete(rhi);
    }
    return o;
}

/* The point whose rounds differ most, relative to its mean (how much the machine drifted). */
static void print_spread(const plan *pl, const round_times *t, int rounds) {
    double worst = 0;
    char what[96] = "";
    for (int i = 0; i < pl->n_pre; i++) {
        const over_rounds v = across(t, rounds, RT_OFFSET(pf, i));
        if (v.mean > 0 && (v.max - v.min) / v.mean > worst) {
            worst = (v.max - v.min) / v.mean;
            snprintf(what, sizeof what, "prefill %d tokens", pl->pre[i]);
        }
    }
    for (int i = 0; i < pl->n_enc; i++) {
        const over_rounds v = across(t, rounds, RT_OFFSET(enc, i));
        if (v.mean > 0 && (v.max - v.min) / v.mean > worst) {
            worst = (v.max - v.min) / v.mean;
            snprintf(what, sizeof what, "encode %d images", pl->enc[i]);
        }
    }
    if (what[0])
        printf("bench profile: %d rounds; widest spread (max - min) / mean: %.1f%% at %s\n", rounds, 100 * worst,
               what);
}

static void usage(FILE *out) {
    fprintf(out, "usage: modserve bench profile --model DIR [--device cpu|cuda|auto] [--out profile.json]\n"
                 "       [--encode-images 1,2,4,8] [--prefill-tokens 16,64,256,1024] [--decode-batch 1,4,16]\n"
                 "       [--decode-context 64,512] [--decode-steps 16] [--repeats 3] [--max-num-batched-tokens 2048]\n"
                 "       [--rounds 1] [--threads N] [--url http://127.0.0.1:8000] [--image-pool 16] [--seed 0]\n\n"
                 "Measures the real engine (one worker per stage) and writes the simulator's cost model:\n"
                 "preprocess and encode time vs images, prefill time vs batched tokens, decode step time\n"
                 "vs batch size and context. --threads: CPU backend threads per worker (default 0 = all\n"
                 "cores), as `modserve serve --threads`. Prompts longer than --max-num-batched-tokens (default 2048,\n"
                 "as `modserve serve`) are prefilled in chunks, as the server does; use the server's value.\n"
                 "With --url (a running `modserve serve` of the same model) also the front end: per request\n"
                 "with 0 and --encode-images images, the client's TTFT minus the server's own (HTTP, JSON,\n"
                 "base64, tokenizing, streaming back), which `bench simulate` adds before the engine.\n"
                 "--rounds R measures every point R times, one pass over all points after another, and\n"
                 "writes the mean (with seconds_min / seconds_max over the rounds): a machine whose speed\n"
                 "drifts then moves every point alike instead of the last ones measured.\n"
                 "Images are the replayer's (`bench replay --image-pool N --seed S` sends the same ones);\n"
                 "each is also measured alone (preprocess, and the front end with --url), so that\n"
                 "`bench simulate` with the same --image-pool and --seed charges every request its own\n"
                 "images instead of the mean.\n");
}

int ms_bench_profile_main(int argc, char **argv) {
    const char *model = NULL, *device = "auto", *out_path = "profile.json";
    plan pl = {.enc = {1, 2, 4, 8}, .pre = {16, 64, 256, 1024}, .dbat = {1, 4, 16}, .dctx = {64, 512},
               .n_enc = 4, .n_pre = 4, .n_dbat = 3, .n_dctx = 2, .repeats = 3, .steps = 16, .pool_n = 16};
    int budget = 2048, threads = 0, rounds = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        bool ok = v != NULL;
        if (!ok) {
        } else if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "--out")) out_path = v;
        else if (!strcmp(a, "--url")) pl.url = v;
        else if (!strcmp(a, "--threads")) ok = (threads = atoi(v)) >= 0;
        else if (!strcmp(a, "--encode-images")) ok = (pl.n_enc = parse_list(v, pl.enc)) > 0;
        else if (!strcmp(a, "--prefill-tokens")) ok = (pl.n_pre = parse_list(v, pl.pre)) > 0;
        else if (!strcmp(a, "--decode-batch")) ok = (pl.n_dbat = parse_list(v, pl.dbat)) > 0;
        else if (!strcmp(a, "--decode-context")) ok = (pl.n_dctx = parse_list(v, pl.dctx)) > 0;
        else if (!strcmp(a, "--decode-steps")) ok = (pl.steps = atoi(v)) >= 2;
        else if (!strcmp(a, "--repeats")) ok = (pl.repeats = atoi(v)) >= 1 && pl.repeats <= 64;
        else if (!strcmp(a, "--rounds")) ok = (rounds = atoi(v)) >= 1 && rounds <= MAX_ROUNDS;
        else if (!strcmp(a, "--image-pool")) ok = (pl.pool_n = atoi(v)) >= 1 && pl.pool_n <= MS_COST_MAX_POOL;
        else if (!strcmp(a, "--seed")) {
            char *end;
            pl.seed = strtoull(v, &end, 10);
            ok = end != v && !*end && v[0] != '-';
        }
        else if (!strcmp(a, "--max-num-batched-tokens")) ok = (budget = atoi(v)) >= 16;
        else {
            fprintf(stderr, "bench profile: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "bench profile: bad or missing value for %s\n", a);
            return 2;
        }
        i++;
    }
    if (!model) {
        usage(stderr);
        return 2;
    }
    int32_t max_x = 1;
    for (int i = 0; i < pl.n_enc; i++) max_x = pl.enc[i] > max_x ? pl.enc[i] : max_x;
    int32_t max_b = 1;
    for (int i = 0; i < pl.n_dbat; i++) max_b = pl.dbat[i] > max_b ? pl.dbat[i] : max_b;
    /* Front end: text-only (0 images) and every --encode-images count. */
    pl.n_fe = pl.n_enc + 1;
    pl.fe_x[0] = 0;
    for (int i = 0; i < pl.n_enc; i++) pl.fe_x[i + 1] = pl.enc[i];
    ms_engine_options eo;
    ms_engine_options_default(&eo);
    eo.model_dir = model;
    eo.device = device;
    eo.encode_max_batch_images = max_x;
    eo.max_images_per_request = max_x;
    eo.max_num_batched_tokens = budget;
    eo.cpu_threads = threads;
    eo.max_num_seqs = max_b;
    eo.max_queued_requests = max_b + 4;
    /* the cost model is of the work itself: the same pool images and prompts are sent
     * again and again, which the image and prefix caches would skip */
    eo.image_cache_bytes = eo.embedding_cache_bytes = 0;
    eo.enable_prefix_caching = false;
    prof p = {0};
    ms_error err = {0};
    if (ms_engine_create(&eo, &p.e, &err) != MS_OK) {
        fprintf(stderr, "bench profile: %s\n", err.msg);
        return 1;
    }
    p.cfg = ms_engine_model_config(p.e);
    /* Images as the replayer sends them. */
    ms_image_pool_build(&p.pool, pl.pool_n, pl.seed);
    round_times *t = ms_xcalloc((size_t)rounds, sizeof *t);
    ms_status st = MS_OK;
    for (int r = 0; r < rounds && st == MS_OK; r++) st = measure_round(&p, &pl, &t[r], &err);
    int rc = 0;
    if (st != MS_OK) {
        fprintf(stderr, "bench profile: %s\n", err.msg);
        rc = 1;
    } else {
        cJSON *o = profile_json(model, device, ms_llava_image_tokens(p.cfg), ms_engine_max_model_len(p.e), &pl, t,
                                 rounds);
        char *s = cJSON_Print(o);
        cJSON_Delete(o);
        FILE *f = fopen(out_path, "w");
        if (!f || fputs(s, f) < 0 || fclose(f) != 0) {
            fprintf(stderr, "bench profile: cannot write %s\n", out_path);
            rc = 1;
        } else {
            printf("%s\n", s);
            if (rounds > 1) print_spread(&pl, t, rounds);
            printf("bench profile: wrote %s\n", out_path);
        }
        free(s);
    }
    free(t);
    ms_engine_destroy(p.e);
    ms_image_pool_free(&p.pool);
    return rc;
}
