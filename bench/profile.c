/*
 * `modserve bench profile`: measures the real engine for the simulator's cost model and
 * writes profile.json (format in cost_model.h). Everything goes through the engine API
 * and the stage timestamps it returns, so the numbers include what a worker really does
 * around a batch:
 * - preprocess: one request with k images (decode + resize), preprocess_end - start;
 * - encode: one request with k images on one encoder that batches them all,
 *   encode_end - encode_start;
 * - prefill: one text request of N prompt tokens (token budget >= N), prefill_end - start;
 * - decode: B requests of C prompt tokens and T output tokens submitted together on one
 *   decode worker; a step takes the median over requests of (last - first token)/(T - 1),
 *   which slightly underestimates the full batch while the first ones start decoding.
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
} slot;

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

/* Runs n identical requests at once (prompt_tokens text tokens + images), waits. */
static ms_status run_batch(prof *p, int n, int32_t text_tokens, int32_t images, int32_t max_tokens,
                           ms_request_result *out, ms_error *err) {
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
        in[i].bytes = p->pool.images[i % p->pool.n].raw;
        in[i].n_bytes = p->pool.images[i % p->pool.n].bytes;
    }
    waiter w = {.pending = 0, .results = out};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    slot *slots = ms_xcalloc((size_t)n, sizeof *slots);
    ms_status st = MS_OK;
    for (int k = 0; k < n && st == MS_OK; k++) {
        slots[k] = (slot){&w, k};
        ms_request_desc d = {.prompt = ids, .n_prompt = n_prompt, .images = in, .n_images = images,
                             .on_done = on_done, .user = &slots[k]};
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

/* Median stage time of one request, over repeats (after a warm-up). */
static ms_status measure(prof *p, measure_kind kind, int32_t x, int repeats, double *out, ms_error *err) {
    double v[64];
    ms_request_result r;
    for (int k = -1; k < repeats; k++) {
        ms_status st = kind == M_PREFILL ? run_batch(p, 1, x, 0, 1, &r, err) : run_batch(p, 1, 8, x, 1, &r, err);
        if (st != MS_OK) return st;
        const ms_request_times *t = &r.times;
        const double d = kind == M_PRE ? t->preprocess_end - t->preprocess_start
                         : kind == M_ENC ? t->encode_end - t->encode_start
                                         : t->prefill_end - t->prefill_start;
        if (k >= 0) v[k] = d;
    }
    *out = median(v, repeats);
    return MS_OK;
}

static ms_status measure_decode(prof *p, int32_t batch, int32_t ctx, int32_t steps, int repeats, double *out,
                                ms_error *err) {
    ms_request_result *r = ms_xcalloc((size_t)batch, sizeof *r);
    double *v = ms_xcalloc((size_t)(batch * repeats + 1), sizeof *v);
    int nv = 0;
    ms_status st = MS_OK;
    for (int k = -1; k < repeats && st == MS_OK; k++) {
        st = run_batch(p, batch, ctx, 0, steps, r, err);
        for (int b = 0; b < batch && st == MS_OK && k >= 0; b++)
            v[nv++] = (r[b].times.last_token - r[b].times.first_token) / (steps - 1);
    }
    if (st == MS_OK) *out = median(v, nv);
    free(v);
    free(r);
    return st;
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
                 "       [--decode-context 64,512] [--decode-steps 16] [--repeats 3]\n\n"
                 "Measures the real engine (one worker per stage) and writes the simulator's cost model:\n"
                 "preprocess and encode time vs images, prefill time vs batched tokens, decode step time\n"
                 "vs batch size and context.\n");
}

int ms_bench_profile_main(int argc, char **argv) {
    const char *model = NULL, *device = "auto", *out_path = "profile.json";
    int32_t enc[MAX_LIST] = {1, 2, 4, 8}, pre[MAX_LIST] = {16, 64, 256, 1024}, dbat[MAX_LIST] = {1, 4, 16},
            dctx[MAX_LIST] = {64, 512};
    int n_enc = 4, n_pre = 4, n_dbat = 3, n_dctx = 2, repeats = 3, steps = 16;
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
        else if (!strcmp(a, "--encode-images")) ok = (n_enc = parse_list(v, enc)) > 0;
        else if (!strcmp(a, "--prefill-tokens")) ok = (n_pre = parse_list(v, pre)) > 0;
        else if (!strcmp(a, "--decode-batch")) ok = (n_dbat = parse_list(v, dbat)) > 0;
        else if (!strcmp(a, "--decode-context")) ok = (n_dctx = parse_list(v, dctx)) > 0;
        else if (!strcmp(a, "--decode-steps")) ok = (steps = atoi(v)) >= 2;
        else if (!strcmp(a, "--repeats")) ok = (repeats = atoi(v)) >= 1 && repeats <= 64;
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
    int32_t max_tok = 1, max_b = 1;
    for (int i = 0; i < n_pre; i++) max_tok = pre[i] > max_tok ? pre[i] : max_tok;
    for (int i = 0; i < n_dbat; i++) max_b = dbat[i] > max_b ? dbat[i] : max_b;
    ms_engine_options eo;
    ms_engine_options_default(&eo);
    eo.model_dir = model;
    eo.device = device;
    eo.encode_max_batch_images = max_x;
    eo.max_images_per_request = max_x;
    eo.max_num_batched_tokens = max_tok > 2048 ? max_tok : 2048;
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
    ms_image_pool_build(&p.pool, 4, 1);
    double pre_t[MAX_LIST], enc_t[MAX_LIST], pf_t[MAX_LIST], dec_t[MAX_LIST][MAX_LIST];
    int32_t pre_x[2] = {1, max_x};
    ms_status st = MS_OK;
    for (int i = 0; i < 2 && st == MS_OK; i++) st = measure(&p, M_PRE, pre_x[i], repeats, &pre_t[i], &err);
    for (int i = 0; i < n_enc && st == MS_OK; i++) st = measure(&p, M_ENC, enc[i], repeats, &enc_t[i], &err);
    for (int i = 0; i < n_pre && st == MS_OK; i++) st = measure(&p, M_PREFILL, pre[i], repeats, &pf_t[i], &err);
    for (int c = 0; c < n_dctx && st == MS_OK; c++)
        for (int b = 0; b < n_dbat && st == MS_OK; b++)
            st = measure_decode(&p, dbat[b], dctx[c], steps, repeats, &dec_t[c][b], &err);
    int rc = 0;
    if (st != MS_OK) {
        fprintf(stderr, "bench profile: %s\n", err.msg);
        rc = 1;
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", model);
        cJSON_AddStringToObject(o, "device", device);
        cJSON_AddNumberToObject(o, "image_tokens", ms_llava_image_tokens(p.cfg));
        cJSON_AddItemToObject(o, "preprocess", curve_json("images", pre_x, pre_t, max_x > 1 ? 2 : 1));
        cJSON_AddItemToObject(o, "encode", curve_json("images", enc, enc_t, n_enc));
        cJSON_AddItemToObject(o, "prefill", curve_json("tokens", pre, pf_t, n_pre));
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
