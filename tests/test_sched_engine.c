/*
 * The engine with real threads on the tiny model (CPU backend): 200 concurrent mixed
 * text/image requests all complete with the greedy outputs of running each alone (with
 * KV pressure, so preemption happens), the KV pool ends empty, monolithic mode and a
 * cross-device (two CPU "devices") hand-off give the same outputs, and cancel, resize,
 * bad images, admission control and drain behave.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <stb_image_write.h>

#include "scheduler/engine.h"
#include "tests/test_util.h"

/* N_REQS requests; MS_ENGINE_TEST_REQS (60..200) runs fewer, as the ThreadSanitizer
 * build of scripts/test.sh does to stay short. */
enum { N_REQS = 200, MIN_REQS = 60, MAX_OUT = 64, MAX_PROMPT = 64 };

typedef struct req_spec {
    int32_t prompt[MAX_PROMPT];
    int32_t n_prompt;
    int32_t n_images;
    int32_t max_tokens;
    bool bad_image;
} req_spec;

typedef struct req_out {
    int32_t tokens[MAX_OUT];
    int32_t n;
    bool order_ok;
    int done;
    ms_request_result res;
} req_out;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_done;

static void on_token(void *user, int32_t token, int32_t index) {
    req_out *o = user;
    if (index != o->n || o->n >= MAX_OUT) o->order_ok = false;
    else o->tokens[o->n++] = token;
}

static void on_done(void *user, const ms_request_result *res) {
    req_out *o = user;
    pthread_mutex_lock(&g_mu);
    o->res = *res;
    o->done++;
    g_done++;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

typedef struct png_buf {
    uint8_t *p;
    size_t n;
} png_buf;

static void png_write(void *ctx, void *data, int size) {
    png_buf *b = ctx;
    b->p = realloc(b->p, b->n + (size_t)size);
    memcpy(b->p + b->n, data, (size_t)size);
    b->n += (size_t)size;
}

/* A small deterministic image (different per k), PNG-encoded. */
static png_buf make_png(int k) {
    int w = 40 + 7 * (k % 5), h = 30 + 5 * (k % 7);
    uint8_t *px = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h * 3; i++) px[i] = (uint8_t)((i * (k + 3) * 31) ^ (i >> 5));
    png_buf b = {0};
    stbi_write_png_to_func(png_write, &b, w, h, 3, px, w * 3);
    free(px);
    return b;
}

static png_buf g_png[8];

static void make_specs(req_spec *s, int n, int32_t image_token) {
    uint32_t h = 2024;
    for (int i = 0; i < n; i++) {
        h = h * 1664525u + 1013904223u;
        s[i].n_images = (h >> 28) % 3 == 0 ? (int32_t)((h >> 20) % 2) + 1 : 0;
        int32_t text = 3 + (int32_t)((h >> 8) % 20);
        int32_t k = 0;
        for (int t = 0; t < text; t++) {
            h = h * 1664525u + 1013904223u;
            s[i].prompt[k++] = 3 + (int32_t)((h >> 12) % 990u);
            if (t == 1)
                for (int m = 0; m < s[i].n_images; m++) s[i].prompt[k++] = image_token;
        }
        s[i].n_prompt = k;
        s[i].max_tokens = 8;
    }
}

static void wait_done(int target) {
    pthread_mutex_lock(&g_mu);
    while (g_done < target) pthread_cond_wait(&g_cv, &g_mu);
    pthread_mutex_unlock(&g_mu);
}

static ms_status submit(ms_engine *e, const req_spec *s, req_out *o, uint64_t *id) {
    ms_image_input imgs[4];
    for (int m = 0; m < s->n_images; m++) {
        const png_buf *b = &g_png[(s->n_prompt + m) % 8];
        imgs[m] = (ms_image_input){b->p, s->bad_image ? b->n / 2 : b->n};
    }
    ms_request_desc d = {.prompt = s->prompt, .n_prompt = s->n_prompt, .images = imgs,
                         .n_images = s->n_images, .on_token = on_token, .on_done = on_done, .user = o};
    ms_request_params_default(&d.params);
    d.params.max_tokens = s->max_tokens;
    o->order_ok = true;
    ms_error err = {0};
    for (;;) {
        ms_status st = ms_engine_submit(e, &d, id, &err);
        if (st != MS_ERR_BUSY) {
            if (st != MS_OK) fprintf(stderr, "submit: %s\n", err.msg);
            return st;
        }
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
}

static void base_options(ms_engine_options *o, const char *model) {
    ms_engine_options_default(o);
    o->model_dir = model;
    o->device = "cpu";
    o->cpu_threads = 2;
    o->max_model_len = 512;
}

static ms_engine *engine_make(const ms_engine_options *o) {
    ms_engine *e = NULL;
    ms_error err = {0};
    ms_status st = ms_engine_create(o, &e, &err);
    EXPECTF(st == MS_OK, "%s", err.msg);
    return e;
}

/* Every request alone on a 1-worker engine: the reference outputs. */
static void run_alone(const char *model, const req_spec *s, int n, req_out *out) {
    ms_engine_options o;
    base_options(&o, model);
    ms_engine *e = engine_make(&o);
    if (!e) return;
    for (int i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        int target = g_done + 1;
        uint64_t id;
        if (submit(e, &s[i], &out[i], &id) == MS_OK) wait_done(target);
    }
    ms_engine_destroy(e);
}

static void run_all(const ms_engine_options *o, const req_spec *s, int n, req_out *out,
                    ms_engine_stats *stats) {
    ms_engine *e = engine_make(o);
    if (!e) return;
    int target = g_done + n;
    for (int i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        uint64_t id;
        EXPECT(submit(e, &s[i], &out[i], &id) == MS_OK);
    }
    wait_done(target);
    ms_engine_stats_get(e, stats);
    ms_engine_resources res;
    ms_engine_resources_get(e, &res);
    EXPECTF(res.scratch_underestimates == 0, "%d passes used more scratch than estimated",
            res.scratch_underestimates);
    ms_engine_destroy(e);
}

static int compare(const req_out *a, const req_out *ref, int n, const char *what) {
    int bad = 0;
    for (int i = 0; i < n; i++) {
        bool ok = a[i].done == 1 && a[i].order_ok && a[i].n == ref[i].n &&
                  memcmp(a[i].tokens, ref[i].tokens, (size_t)a[i].n * sizeof(int32_t)) == 0 &&
                  a[i].res.finish == ref[i].res.finish && a[i].res.completion_tokens == a[i].n;
        if (!ok && bad++ < 5)
            fprintf(stderr, "%s: request %d differs (%d vs %d tokens, finish %s vs %s)\n", what, i,
                    a[i].n, ref[i].n, ms_finish_reason_name(a[i].res.finish),
                    ms_finish_reason_name(ref[i].res.finish));
    }
    return bad;
}

/* min_tokens masks stop ids out of sampling: with the first greedy token as a stop id,
 * min_tokens 0 stops at once, min_tokens 3 must produce 3 tokens none of which is it. */
static void check_min_tokens(const char *model, const req_spec *s, const req_out *ref) {
    ms_engine_options o;
    base_options(&o, model);
    ms_engine *e = engine_make(&o);
    if (!e) return;
    const int32_t stop = ref->tokens[0];
    for (int32_t min_tokens = 0; min_tokens <= 3; min_tokens += 3) {
        req_out out = {.order_ok = true};
        ms_request_desc d = {.prompt = s->prompt, .n_prompt = s->n_prompt, .on_token = on_token,
                             .on_done = on_done, .user = &out};
        ms_request_params_default(&d.params);
        d.params.max_tokens = 6;
        d.params.min_tokens = min_tokens;
        d.params.stop_ids = &stop;
        d.params.n_stop_ids = 1;
        ms_error err = {0};
        uint64_t id;
        int target = g_done + 1;
        EXPECTF(ms_engine_submit(e, &d, &id, &err) == MS_OK, "%s", err.msg);
        wait_done(target);
        if (min_tokens == 0) {
            EXPECTF(out.n == 1 && out.res.finish == MS_FINISH_STOP, "%d tokens", out.n);
        } else {
            EXPECTF(out.n >= min_tokens, "%d tokens", out.n);
            for (int32_t i = 0; i < min_tokens && i < out.n; i++)
                EXPECTF(out.tokens[i] != stop, "stop id %d sampled at %d below min_tokens", stop, i);
        }
    }
    ms_engine_destroy(e);
}

int main(void) {
    const char *env = getenv("MS_ENGINE_TEST_REQS");
    int n_reqs = env ? atoi(env) : N_REQS;
    if (n_reqs < MIN_REQS || n_reqs > N_REQS) n_reqs = N_REQS;
    const char *model = ms_test_tiny_model(1, "f32");
    for (int k = 0; k < 8; k++) g_png[k] = make_png(k);
    req_spec *specs = calloc(n_reqs, sizeof *specs);
    req_out *ref = calloc(n_reqs, sizeof *ref), *out = calloc(n_reqs, sizeof *out);
    make_specs(specs, n_reqs, 1000);

    run_alone(model, specs, n_reqs, ref);
    int finished = 0;
    for (int i = 0; i < n_reqs; i++) {
        EXPECT(ref[i].done == 1 && ref[i].res.status == MS_OK);
        finished += ref[i].res.finish == MS_FINISH_STOP || ref[i].res.finish == MS_FINISH_LENGTH;
    }
    for (int i = 0; i < n_reqs; i++)
        if (specs[i].n_images == 0 && !specs[i].bad_image && ref[i].n >= 1) {
            check_min_tokens(model, &specs[i], &ref[i]);
            break;
        }
    EXPECT(finished == n_reqs);

    /* disagg, several workers per pool, a KV pool small enough to force preemption */
    ms_engine_options o;
    ms_engine_stats st;
    base_options(&o, model);
    o.encode_workers = 2;
    o.prefill_workers = 2;
    o.decode_workers = 2;
    o.max_num_seqs = 16;
    o.max_num_batched_tokens = 256;
    o.kv_blocks = 40;
    o.max_model_len = 256;
    run_all(&o, specs, n_reqs, out, &st);
    EXPECT(compare(out, ref, n_reqs, "disagg") == 0);
    EXPECTF(st.kv_blocks_used == 0, "%d KV blocks still used", st.kv_blocks_used);
    EXPECT(st.active == 0);
    EXPECT(st.finished[MS_FINISH_STOP] + st.finished[MS_FINISH_LENGTH] == (uint64_t)n_reqs);
    EXPECTF(st.preemptions > 0, "no preemption with 40 KV blocks");
    EXPECT(st.stage[MS_STAGE_ENCODE].batches > 0 && st.stage[MS_STAGE_DECODE].max_batch > 1);
    fprintf(stderr, "disagg: %llu preemptions, decode max batch %d\n",
            (unsigned long long)st.preemptions, st.stage[MS_STAGE_DECODE].max_batch);

    /* monolithic: same outputs */
    base_options(&o, model);
    o.mode = MS_MODE_MONOLITHIC;
    o.decode_workers = 2;
    o.max_num_seqs = 16;
    run_all(&o, specs, n_reqs, out, &st);
    EXPECT(compare(out, ref, n_reqs, "monolithic") == 0);
    EXPECT(st.kv_blocks_used == 0);

    /* prefill on CPU device 0, decode and encode on CPU device 1: copies across */
    base_options(&o, model);
    o.prefill_devices = "0";
    o.decode_devices = "1";
    o.encode_devices = "1";
    run_all(&o, specs, 40, out, &st);
    EXPECT(compare(out, ref, 40, "cross-device") == 0);
    EXPECT(st.kv_blocks_used == 0);

    /* cancel, resize, bad image, admission, drain */
    base_options(&o, model);
    o.encode_workers = 2;
    o.max_num_seqs = 8;
    o.max_queued_requests = 30;
    ms_engine *e = engine_make(&o);
    if (e) {
        enum { M = 60 };
        uint64_t ids[M];
        int target = g_done;
        for (int i = 0; i < M; i++) {
            req_spec s = specs[i];
            s.max_tokens = 24; /* greedy: the first 8 tokens are the reference's */
            s.bad_image = i == 7 && s.n_images > 0;
            memset(&out[i], 0, sizeof out[i]);
            ids[i] = 0;
            if (submit(e, &s, &out[i], &ids[i]) == MS_OK) target++;
            if (i == 10) EXPECT(ms_engine_resize(e, MS_STAGE_DECODE, 3, NULL) == MS_OK);
            if (i == 20) EXPECT(ms_engine_resize(e, MS_STAGE_ENCODE, 1, NULL) == MS_OK);
            if (i == 30) EXPECT(ms_engine_resize(e, MS_STAGE_DECODE, 1, NULL) == MS_OK);
            if (i == 35) EXPECT(ms_engine_resize(e, MS_STAGE_PREFILL, 2, NULL) == MS_OK);
            if (i % 5 == 4) ms_engine_cancel(e, ids[i - 2]);
        }
        ms_error err;
        EXPECT(ms_engine_resize(e, MS_STAGE_DECODE, 0, &err) == MS_ERR_INVALID);
        wait_done(target);
        ms_engine_stats_get(e, &st);
        EXPECT(st.kv_blocks_used == 0 && st.active == 0);
        EXPECT(st.stage[MS_STAGE_DECODE].workers == 1 && st.stage[MS_STAGE_PREFILL].workers == 2);
        int cancelled = 0;
        for (int i = 0; i < M; i++) {
            EXPECT(out[i].done == 1 && out[i].order_ok);
            if (out[i].res.finish == MS_FINISH_CANCELLED) {
                cancelled++;
                continue;
            }
            if (i == 7 && specs[i].n_images > 0) {
                EXPECT(out[i].res.finish == MS_FINISH_ERROR && out[i].res.error[0]);
                continue;
            }
            int32_t n = ref[i].n < out[i].n ? ref[i].n : out[i].n;
            EXPECT(n == ref[i].n && memcmp(out[i].tokens, ref[i].tokens, (size_t)n * sizeof(int32_t)) == 0);
        }
        fprintf(stderr, "cancelled %d of %d\n", cancelled, M);
        /* drain: stops accepting, then cancels what is left */
        memset(&out[0], 0, sizeof out[0]);
        req_spec s = specs[0];
        s.max_tokens = 300;
        target = g_done + 1;
        EXPECT(submit(e, &s, &out[0], &ids[0]) == MS_OK);
        ms_engine_drain(e, 0.01);
        EXPECT(out[0].done == 1 && out[0].res.finish == MS_FINISH_CANCELLED);
        uint64_t id;
        const int32_t text[3] = {5, 6, 7};
        ms_request_desc d = {.prompt = text, .n_prompt = 3};
        ms_request_params_default(&d.params);
        EXPECT(ms_engine_submit(e, &d, &id, &err) == MS_ERR_BUSY);
        ms_engine_destroy(e);
    }
    for (int k = 0; k < 8; k++) free(g_png[k].p);
    free(specs);
    free(ref);
    free(out);
    return ms_test_finish("test_sched_engine");
}
