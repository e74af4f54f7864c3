/*
 * The engine under faults and churn (real threads, tiny model on the CPU):
 * - a scratch limit: a batch over it runs in passes (outputs unchanged), a prompt chunk
 *   over it alone fails with an error naming the limit, and the next request completes;
 * - encode failures of two images of one request on two encoders at once (a data race
 *   on the request's error before; ThreadSanitizer runs this test in scripts/test.sh);
 * - 2,000 resizes of a pool (1 <-> 3 workers): slots are reused, contexts and threads
 *   of retired workers are freed, memory stays flat;
 * - preemption of requests whose generated tokens include the image token id: their
 *   recompute treats those ids as text and the outputs equal running alone.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <stb_image_write.h>

#include "scheduler/engine.h"
#include "scheduler/engine_internal.h"
#include "tests/test_util.h"

enum { MAX_OUT = 32, IMAGE_TOKEN = 1000 };

typedef struct req_out {
    int32_t tokens[MAX_OUT];
    int32_t n;
    int done;
    ms_request_result res;
} req_out;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_done;

static void on_token(void *user, int32_t token, int32_t index) {
    req_out *o = user;
    if (index == o->n && o->n < MAX_OUT) o->tokens[o->n++] = token;
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

static void wait_done(int target) {
    pthread_mutex_lock(&g_mu);
    while (g_done < target) pthread_cond_wait(&g_cv, &g_mu);
    pthread_mutex_unlock(&g_mu);
}

static void png_write(void *ctx, void *data, int size) {
    ms_image_input *b = ctx;
    uint8_t *p = realloc((void *)b->bytes, b->n_bytes + (size_t)size);
    memcpy(p + b->n_bytes, data, (size_t)size);
    b->bytes = p;
    b->n_bytes += (size_t)size;
}

static ms_image_input g_img[2];

static ms_image_input make_png(int k) {
    int w = 40 + 9 * k, h = 33 + 4 * k;
    uint8_t *px = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h * 3; i++) px[i] = (uint8_t)((i * (k + 5) * 29) ^ (i >> 4));
    ms_image_input b = {0};
    stbi_write_png_to_func(png_write, &b, w, h, 3, px, w * 3);
    free(px);
    return b;
}

/* A prompt of n text tokens (ids 3..999), with n_images image tokens after the second. */
static int32_t make_prompt(int32_t *out, int32_t n, int32_t n_images, uint32_t seed) {
    int32_t k = 0;
    for (int32_t t = 0; t < n; t++) {
        seed = seed * 1664525u + 1013904223u;
        out[k++] = 3 + (int32_t)((seed >> 12) % 990u);
        if (t == 1)
            for (int32_t m = 0; m < n_images; m++) out[k++] = IMAGE_TOKEN;
    }
    return k;
}

static void submit(ms_engine *e, const int32_t *prompt, int32_t n, int32_t n_images, int32_t max_tokens,
                   req_out *o) {
    memset(o, 0, sizeof *o);
    ms_request_desc d = {.prompt = prompt, .n_prompt = n, .images = g_img, .n_images = n_images,
                         .on_token = on_token, .on_done = on_done, .user = o};
    ms_request_params_default(&d.params);
    d.params.max_tokens = max_tokens;
    ms_error err = {0};
    uint64_t id;
    ms_status st = ms_engine_submit(e, &d, &id, &err);
    EXPECTF(st == MS_OK, "submit: %s", err.msg);
    if (st != MS_OK) { /* count it as delivered so waits end */
        pthread_mutex_lock(&g_mu);
        g_done++;
        pthread_mutex_unlock(&g_mu);
    }
}

static ms_engine *engine_make(const char *model, void (*tune)(ms_engine_options *o, void *arg), void *arg) {
    ms_engine_options o;
    ms_engine_options_default(&o);
    o.model_dir = model;
    o.device = "cpu";
    o.cpu_threads = 2;
    o.max_model_len = 512;
    if (tune) tune(&o, arg);
    ms_engine *e = NULL;
    ms_error err = {0};
    EXPECTF(ms_engine_create(&o, &e, &err) == MS_OK, "%s", err.msg);
    return e;
}

/* Destroys e after checking every pass stayed within its scratch estimate. */
static void engine_done(ms_engine *e) {
    ms_engine_resources r;
    ms_engine_resources_get(e, &r);
    EXPECTF(r.scratch_underestimates == 0, "%d passes used more scratch than estimated",
            r.scratch_underestimates);
    ms_engine_destroy(e);
}

static void tune_scratch(ms_engine_options *o, void *arg) { o->scratch_limit_bytes = *(size_t *)arg; }

/* Batch hooks: hold a batch 5 ms so that work queues up behind it (several requests in
 * the next prefill batch) or so that two encoders both take an image of one request
 * before either fails (a failure alone takes microseconds). */
static void hold(void) {
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL);
}
static void hold_prefill(const ms_core_batch *b) {
    if (b->stage == MS_STAGE_PREFILL) hold();
}
static void hold_encode(const ms_core_batch *b) {
    if (b->stage == MS_STAGE_ENCODE) hold();
}

/* ---- scratch limit ---- */
static void test_scratch_limit(const char *model) {
    enum { N = 8, LEN = 60 };
    static int32_t prompts[N][LEN + 4], big[420];
    static req_out ref[N], out[N], big_out, small_out;
    for (int i = 0; i < N; i++) make_prompt(prompts[i], LEN, 0, 77u + (uint32_t)i);
    int32_t n_big = make_prompt(big, 400, 0, 5u);

    ms_engine *e = engine_make(model, NULL, NULL); /* no limit: the reference outputs */
    if (!e) return;
    int target = g_done;
    for (int i = 0; i < N; i++) {
        submit(e, prompts[i], LEN, 0, 6, &ref[i]);
        wait_done(++target);
    }
    engine_done(e);

    /* 512 KiB: one 60-token chunk fits (~0.3 MiB by the estimate), two do not, and the
     * 400-token prompt (~1.8 MiB) cannot run at all */
    size_t limit = (size_t)512 << 10;
    eng_test_batch_hook = hold_prefill;
    e = engine_make(model, tune_scratch, &limit);
    if (!e) return;
    target = g_done + N;
    for (int i = 0; i < N; i++) submit(e, prompts[i], LEN, 0, 6, &out[i]);
    wait_done(target);
    for (int i = 0; i < N; i++)
        EXPECTF(out[i].res.status == MS_OK && out[i].n == ref[i].n &&
                    !memcmp(out[i].tokens, ref[i].tokens, (size_t)ref[i].n * sizeof(int32_t)),
                "request %d: %s, %d tokens vs %d alone", i, out[i].res.error, out[i].n, ref[i].n);

    ms_engine_resources res;
    ms_engine_resources_get(e, &res);
    fprintf(stderr, "scratch: %d batches split into passes\n", res.split_batches);
    EXPECTF(res.split_batches > 0, "no batch was split under the limit");
    eng_test_batch_hook = NULL;
    submit(e, big, n_big, 0, 4, &big_out);
    wait_done(++target);
    EXPECTF(big_out.res.finish == MS_FINISH_ERROR && big_out.res.status == MS_ERR_NOMEM &&
                strstr(big_out.res.error, "scratch limit") && big_out.n == 0,
            "the 400-token prompt: finish %s, \"%s\"", ms_finish_reason_name(big_out.res.finish),
            big_out.res.error);
    fprintf(stderr, "scratch: %s\n", big_out.res.error);
    submit(e, prompts[0], LEN, 0, 6, &small_out); /* the engine keeps serving */
    wait_done(++target);
    EXPECTF(small_out.res.status == MS_OK && small_out.n == ref[0].n &&
                !memcmp(small_out.tokens, ref[0].tokens, (size_t)ref[0].n * sizeof(int32_t)),
            "after the failure: %s", small_out.res.error);
    engine_done(e);
}

/* ---- encode failures of one request's images on two encoders at once ---- */
static void tune_encode_fail(ms_engine_options *o, void *arg) {
    o->encode_workers = 2;
    o->encode_max_batch_images = 1;
    o->scratch_limit_bytes = (size_t)256 << 10; /* an image needs ~0.6 MiB */
}

static void test_encode_failures(const char *model) {
    enum { N = 12 };
    static int32_t prompts[N][16];
    static req_out out[N];
    eng_test_batch_hook = hold_encode;
    ms_engine *e = engine_make(model, tune_encode_fail, NULL);
    if (!e) return;
    int target = g_done + N;
    for (int i = 0; i < N; i++) {
        int32_t n = make_prompt(prompts[i], 6, 2, 300u + (uint32_t)i);
        submit(e, prompts[i], n, 2, 4, &out[i]);
    }
    wait_done(target);
    int both = 0;
    for (int i = 0; i < N; i++) {
        EXPECTF(out[i].res.finish == MS_FINISH_ERROR && strstr(out[i].res.error, "encoding images: one image") &&
                    strstr(out[i].res.error, "scratch limit"),
                "request %d: \"%s\"", i, out[i].res.error);
        both += strstr(out[i].res.error, "1 more failures") != NULL;
    }
    fprintf(stderr, "encode failures: %d of %d requests saw both images fail\n", both, N);
    EXPECTF(both > 0, "no request had both images fail: the race was not exercised");
    engine_done(e);
    eng_test_batch_hook = NULL;
}

/* ---- resize churn ---- */
static long rss_kib(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Waits (no time asserted) until the retired workers' threads have gone. */
static void settle(ms_engine *e, int32_t threads, ms_engine_resources *r) {
    for (int i = 0; i < 2000; i++) {
        ms_engine_resources_get(e, r);
        if (r->threads == threads) return;
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
}

static void test_resize_churn(const char *model) {
    enum { STEPS = 2000 };
    static int32_t prompt[16];
    static req_out out[STEPS / 100];
    ms_engine *e = engine_make(model, NULL, NULL);
    if (!e) return;
    ms_engine_resources r0, r;
    ms_engine_resources_get(e, &r0); /* 2 preprocess + 1 encode, prefill, decode; 3 contexts */
    int32_t n = make_prompt(prompt, 8, 0, 9u);
    int target = g_done, max_slots = 0, max_contexts = 0;
    long rss_early = 0;
    for (int step = 0; step < STEPS; step++) {
        ms_error err = {0};
        ms_status st = ms_engine_resize(e, MS_STAGE_DECODE, step % 2 ? 1 : 3, &err);
        if (st != MS_OK) {
            EXPECTF(0, "resize %d: %s", step, err.msg);
            break;
        }
        if (step % 100 == 50) { /* work in flight while the pool changes */
            submit(e, prompt, n, 0, 4, &out[step / 100]);
            target++;
        }
        /* mostly let the removed workers' threads exit (their slots and contexts are then
         * reused / freed), sometimes resize up again while they are still there */
        if (step % 2 == 1 && step % 10 != 1) settle(e, r0.threads, &r);
        ms_engine_resources_get(e, &r);
        if (r.slots[MS_STAGE_DECODE] > max_slots) max_slots = r.slots[MS_STAGE_DECODE];
        if (r.contexts > max_contexts) max_contexts = r.contexts;
        if (step == 200) rss_early = rss_kib();
    }
    wait_done(target);
    settle(e, r0.threads, &r);
    long rss_late = rss_kib();
    fprintf(stderr, "resize churn: %d resizes, decode slots at most %d, contexts at most %d, "
            "end %d threads %d contexts (start %d, %d); RSS %ld KiB at step 200, %ld KiB at the end\n",
            STEPS, max_slots, max_contexts, r.threads, r.contexts, r0.threads, r0.contexts, rss_early,
            rss_late);
    EXPECTF(r.threads == r0.threads && r.contexts == r0.contexts, "%d threads, %d contexts left",
            r.threads, r.contexts);
    /* a resize to 3 finds the 2 retired slots (or their threads still leaving, then new ones) */
    EXPECTF(max_slots <= 16, "%d decode slots for a pool of at most 3", max_slots);
    EXPECTF(max_contexts <= r0.contexts + 16, "%d contexts at once", max_contexts);
    EXPECTF(rss_late - rss_early < 64 * 1024, "RSS grew by %ld KiB", rss_late - rss_early);
    for (int i = 0; i < STEPS / 100; i++) EXPECT(out[i].done == 1 && out[i].res.status == MS_OK && out[i].n == 4);
    engine_done(e);
}

/* ---- preempted requests whose generated tokens include the image token id ---- */
static int32_t force_image_token(uint64_t id, int32_t index, int32_t sampled) {
    return index == 1 || index == 3 ? IMAGE_TOKEN : sampled;
}

static void tune_preempt(ms_engine_options *o, void *arg) {
    o->max_model_len = 128;
    /* 11 blocks of 16: two prompts of 72 tokens (5 blocks each) fit, and the 6th block
     * each needs at its 9th output token is there for one of them only */
    o->kv_blocks = 11;
    o->max_num_seqs = 8;
}

static void test_preempt_image_token(const char *model) {
    enum { N = 16 };
    static int32_t prompts[N][16];
    static int32_t lens[N];
    static req_out ref[N], out[N];
    eng_test_token_hook = force_image_token;
    ms_engine *e = engine_make(model, tune_preempt, NULL);
    if (!e) return;
    int target = g_done;
    for (int i = 0; i < N; i++) {
        lens[i] = make_prompt(prompts[i], 8, 1, 900u + (uint32_t)i);
        submit(e, prompts[i], lens[i], 1, 16, &ref[i]); /* alone: never preempted */
        wait_done(++target);
        EXPECT(ref[i].res.status == MS_OK && ref[i].res.n_preemptions == 0);
    }
    target = g_done + N;
    for (int i = 0; i < N; i++) submit(e, prompts[i], lens[i], 1, 16, &out[i]);
    wait_done(target);
    ms_engine_stats st;
    ms_engine_stats_get(e, &st);
    int preempted_late = 0; /* preempted after generating the image token id */
    for (int i = 0; i < N; i++) {
        EXPECTF(out[i].res.status == MS_OK && out[i].n == ref[i].n &&
                    !memcmp(out[i].tokens, ref[i].tokens, (size_t)ref[i].n * sizeof(int32_t)),
                "request %d (%d preemptions): %s, %d tokens vs %d alone", i, out[i].res.n_preemptions,
                out[i].res.error, out[i].n, ref[i].n);
        preempted_late += out[i].res.n_preemptions > 0;
        EXPECT(ref[i].n < 2 || ref[i].tokens[1] == IMAGE_TOKEN);
    }
    fprintf(stderr, "image token preemption: %llu preemptions, %d of %d requests preempted\n",
            (unsigned long long)st.preemptions, preempted_late, N);
    EXPECTF(st.preemptions > 0 && st.kv_blocks_used == 0, "%llu preemptions, %d blocks left",
            (unsigned long long)st.preemptions, st.kv_blocks_used);
    engine_done(e);
    eng_test_token_hook = NULL;
}

int main(void) {
    const char *model = ms_test_tiny_model(1, "f32");
    for (int k = 0; k < 2; k++) g_img[k] = make_png(k);
    test_scratch_limit(model);
    test_encode_failures(model);
    test_resize_churn(model);
    test_preempt_image_token(model);
    for (int k = 0; k < 2; k++) free((void *)g_img[k].bytes);
    return ms_test_finish("test_sched_engine_faults");
}
