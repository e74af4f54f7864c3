/*
 * `modserve bench profile`: measures the real engine for the simulator's cost model and
 * writes profile.json (format in cost_model.h). Everything goes through the engine API
 * and the stage timestamps it returns, so the numbers include what a worker really does
 * around a batch:
 * - preprocess: one request with k images (decode + resize), preprocess_end - start,
 *   the mean over a pool of 16 images drawn as the replayer draws them (sizes vary);
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
 *   tokenizing and streaming back, which the simulator adds before the engine.
 * Each point is the median of --repeats runs after one warm-up.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bench/images.h"
#include "bench/simulate.h"
#include "llm/config.h"
#include "scheduler/engine.h"

enum { MAX_LIST = 16 };

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

enum { POOL_IMAGES = 16 };

/* Stage time of one request after a warm-up: prefill and encode the median over repeats;
 * preprocess the mean over at least the whole image pool, because its cost follows each
 * image's size and the replayer sends all of them. */
static ms_status measure(prof *p, measure_kind kind, int32_t x, int repeats, double *out, ms_error *err) {
    double v[64];
    if (kind == M_PRE && repeats < POOL_IMAGES) repeats = POOL_IMAGES;
    ms_request_result r;
    for (int k = -1; k < repeats; k++) {
        const int32_t first = k < 0 ? 0 : k * x;
        ms_status st = kind == M_PREFILL ? run_batch(p, 1, x, 0, 0, 1, &r, NULL, err)
                                         : run_batch(p, 1, 8, x, first, 1, &r, NULL, err);
        if (st != MS_OK) return st;
        const ms_request_times *t = &r.times;
        const double d = kind == M_PRE ? t->preprocess_end - t->preprocess_start
                         : kind == M_ENC ? t->encode_end - t->encode_start
                                         : t->prefill_end - t->prefill_start;
        if (k >= 0) v[k] = d;
    }
    if (kind == M_PRE) {
        double sum = 0;
        for (int k = 0; k < repeats; k++) sum += v[k];
        *out = sum / repeats;
    } else {
        *out = median(v, repeats);
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

/* Front-end time vs images over HTTP (see the top); out[i] for k = xs[i] images. */
static ms_status measure_frontend(const char *url, const int32_t *xs, int n_x, int repeats, double *out,
                                  ms_error *err) {
    ms_replay_options o;
    ms_replay_options_default(&o);
    o.url = url;
    o.max_concurrency = 1; /* one at a time: nothing queues */
    o.policy = MS_IMAGE_POLICY_KEEP;
    o.progress = 0;
    o.plots = false;
    o.image_pool = POOL_IMAGES;
    int32_t max_x = 1;
    for (int i = 0; i < n_x; i++) max_x = xs[i] > max_x ? xs[i] : max_x;
    o.max_images = max_x;
    const int per = repeats + 1; /* the first of each point is a warm-up */
    ms_trace_set set = {.n = (int64_t)n_x * per};
    set.reqs = ms_xcalloc((size_t)set.n, sizeof *set.reqs);
    /* Four output tokens: the first can be one that decodes to no text (random weights),
     * and TTFT is the first chunk with text; a request still without text is skipped. */
    for (int i = 0; i < n_x; i++)
        for (int k = 0; k < per; k++)
            set.reqs[i * per + k] = (ms_trace_req){.n_images = xs[i], .context_tokens = 32, /* keep: images + short text */
                                                   .generated_tokens = 4};
    ms_bench_run run;
    ms_status st = ms_replay_run(&o, &set, &run, err);
    for (int i = 0; i < n_x && st == MS_OK; i++) {
        double v[65];
        int nv = 0;
        const char *why = "no request";
        for (int k = 1; k < per; k++) {
            const ms_run_request *r = &run.reqs[i * per + k];
            if (!r->m.ok || r->stage_end[2] < 0) {
                why = r->error ? r->error : "no modserve.timings";
                continue;
            }
            v[nv++] = fmax(0.0, r->m.ttft_s - r->stage_end[2]); /* stage_end[2]: the server's first token */
        }
        if (nv == 0)
            st = ms_errorf(err, MS_ERR_INVALID, "frontend: every request of %d images failed or the server sent no "
                           "stage times (%s)", xs[i], why);
        else
            out[i] = median(v, nv);
    }
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

static cJSON *curve_json(const char *xkey, const int32_t *x, const double *y, int n) {
    cJSON *o = cJSON_CreateObject();
    cJSON *xs = cJSON_AddArrayToObject(o, xkey), *ys = cJSON_AddArrayToObject(o, "seconds");
    for (int i = 0; i < n; i++) {
        cJSON_AddItemToArray(xs, cJSON_CreateNumber(x[i]));
        cJSON_AddItemToArray(ys, cJSON_CreateNumber(y[i]));
    }
    return o;
}

static void usage(FILE *out) {
    fprintf(out, "usage: modserve bench profile --model DIR [--device cpu|cuda|auto] [--out profile.json]\n"
                 "       [--encode-images 1,2,4,8] [--prefill-tokens 16,64,256,1024] [--decode-batch 1,4,16]\n"
                 "       [--decode-context 64,512] [--decode-steps 16] [--repeats 3] [--max-num-batched-tokens 2048]\n"
                 "       [--threads N] [--url http://127.0.0.1:8000]\n\n"
                 "Measures the real engine (one worker per stage) and writes the simulator's cost model:\n"
                 "preprocess and encode time vs images, prefill time vs batched tokens, decode step time\n"
                 "vs batch size and context. --threads: CPU backend threads per worker (default 0 = all\n"
                 "cores), as `modserve serve --threads`. Prompts longer than --max-num-batched-tokens (default 2048,\n"
                 "as `modserve serve`) are prefilled in chunks, as the server does; use the server's value.\n"
                 "With --url (a running `modserve serve` of the same model) also the front end: per request\n"
                 "with 0 and --encode-images images, the client's TTFT minus the server's own (HTTP, JSON,\n"
                 "base64, tokenizing, streaming back), which `bench simulate` adds before the engine.\n");
}

int ms_bench_profile_main(int argc, char **argv) {
    const char *model = NULL, *device = "auto", *out_path = "profile.json", *url = NULL;
    int32_t enc[MAX_LIST] = {1, 2, 4, 8}, pre[MAX_LIST] = {16, 64, 256, 1024}, dbat[MAX_LIST] = {1, 4, 16},
            dctx[MAX_LIST] = {64, 512};
    int n_enc = 4, n_pre = 4, n_dbat = 3, n_dctx = 2, repeats = 3, steps = 16, budget = 2048, threads = 0;
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
        else if (!strcmp(a, "--url")) url = v;
        else if (!strcmp(a, "--threads")) ok = (threads = atoi(v)) >= 0;
        else if (!strcmp(a, "--encode-images")) ok = (n_enc = parse_list(v, enc)) > 0;
        else if (!strcmp(a, "--prefill-tokens")) ok = (n_pre = parse_list(v, pre)) > 0;
        else if (!strcmp(a, "--decode-batch")) ok = (n_dbat = parse_list(v, dbat)) > 0;
        else if (!strcmp(a, "--decode-context")) ok = (n_dctx = parse_list(v, dctx)) > 0;
        else if (!strcmp(a, "--decode-steps")) ok = (steps = atoi(v)) >= 2;
        else if (!strcmp(a, "--repeats")) ok = (repeats = atoi(v)) >= 1 && repeats <= 64;
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
    for (int i = 0; i < n_enc; i++) max_x = enc[i] > max_x ? enc[i] : max_x;
    int32_t max_b = 1;
    for (int i = 0; i < n_dbat; i++) max_b = dbat[i] > max_b ? dbat[i] : max_b;
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
    prof p = {0};
    ms_error err = {0};
    if (ms_engine_create(&eo, &p.e, &err) != MS_OK) {
        fprintf(stderr, "bench profile: %s\n", err.msg);
        return 1;
    }
    p.cfg = ms_engine_model_config(p.e);
    /* Images as the replayer sends them. */
    ms_image_pool_build(&p.pool, POOL_IMAGES, 1);
    double pre_t[MAX_LIST], enc_t[MAX_LIST], pf_t[MAX_LIST], dec_t[MAX_LIST][MAX_LIST];
    ms_status st = MS_OK;
    for (int i = 0; i < n_enc && st == MS_OK; i++) st = measure(&p, M_PRE, enc[i], repeats, &pre_t[i], &err);
    for (int i = 0; i < n_enc && st == MS_OK; i++) st = measure(&p, M_ENC, enc[i], repeats, &enc_t[i], &err);
    for (int i = 0; i < n_pre && st == MS_OK; i++) st = measure(&p, M_PREFILL, pre[i], repeats, &pf_t[i], &err);
    for (int c = 0; c < n_dctx && st == MS_OK; c++)
        for (int b = 0; b < n_dbat && st == MS_OK; b++)
            st = measure_decode(&p, dbat[b], dctx[c], steps, repeats, &dec_t[c][b], &err);
    int32_t fe_x[MAX_LIST + 1] = {0};
    double fe_t[MAX_LIST + 1];
    for (int i = 0; i < n_enc; i++) fe_x[i + 1] = enc[i];
    if (st == MS_OK && url) st = measure_frontend(url, fe_x, n_enc + 1, repeats, fe_t, &err);
    int rc = 0;
    if (st != MS_OK) {
        fprintf(stderr, "bench profile: %s\n", err.msg);
        rc = 1;
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", model);
        cJSON_AddStringToObject(o, "device", device);
        cJSON_AddNumberToObject(o, "image_tokens", ms_llava_image_tokens(p.cfg));
        cJSON_AddItemToObject(o, "preprocess", curve_json("images", enc, pre_t, n_enc));
        cJSON_AddItemToObject(o, "encode", curve_json("images", enc, enc_t, n_enc));
        cJSON_AddItemToObject(o, "prefill", curve_json("tokens", pre, pf_t, n_pre));
        if (url) cJSON_AddItemToObject(o, "frontend", curve_json("images", fe_x, fe_t, n_enc + 1));
        cJSON *d = cJSON_AddObjectToObject(o, "decode");
        cJSON *bs = cJSON_AddArrayToObject(d, "batch"), *cs = cJSON_AddArrayToObject(d, "context");
        cJSON *ss = cJSON_AddArrayToObject(d, "seconds");
        for (int b = 0; b < n_dbat; b++) cJSON_AddItemToArray(bs, cJSON_CreateNumber(dbat[b]));
        for (int c = 0; c < n_dctx; c++) {
            cJSON_AddItemToArray(cs, cJSON_CreateNumber(dctx[c]));
            cJSON *row = cJSON_CreateArray();
            for (int b = 0; b < n_dbat; b++) cJSON_AddItemToArray(row, cJSON_CreateNumber(dec_t[c][b]));
            cJSON_AddItemToArray(ss, row);
        }
        char *s = cJSON_Print(o);
        cJSON_Delete(o);
        FILE *f = fopen(out_path, "w");
        if (!f || fputs(s, f) < 0 || fclose(f) != 0) {
            fprintf(stderr, "bench profile: cannot write %s\n", out_path);
            rc = 1;
        } else {
            printf("%s\nbench profile: wrote %s\n", s, out_path);
        }
        free(s);
    }
    ms_engine_destroy(p.e);
    ms_image_pool_free(&p.pool);
    return rc;
}
