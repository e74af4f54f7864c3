/*
 * The prefix KV cache in the engine (tiny model, CPU): greedy outputs and the logits of
 * the last prompt position (what `modserve run --dump-logits` prints) are the same with
 * the cache on (cold and warm) as with it off, for text, one image, several images, the
 * same image twice and two different images of the same size; a second chat turn that
 * re-sends the history reuses it; a small KV pool evicts and still gives the same
 * outputs; a concurrent burst sharing a prefix under KV pressure (preemption) with
 * cancels matches the outputs of the cache-off engine; with block hashes cut to 2 bits
 * (collisions everywhere) the outputs are still those of the cache-off engine.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image_write.h>

#include "scheduler/engine.h"
#include "tests/test_util.h"

enum { MAX_OUT = 32, MAX_PROMPT = 200, IMAGE_TOKEN = 1000 };

typedef struct out {
    int32_t tokens[MAX_OUT];
    int32_t n;
    float *logits;             /* (vocab) last prompt position */
    bool done;
    ms_request_result res;
} out;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;

static void on_token(void *user, int32_t token, int32_t index) {
    out *o = user;
    if (index == o->n && o->n < MAX_OUT) o->tokens[o->n++] = token;
}

static void on_done(void *user, const ms_request_result *res) {
    out *o = user;
    pthread_mutex_lock(&g_mu);
    o->res = *res;
    o->done = true;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static void wait_for(out *o) {
    pthread_mutex_lock(&g_mu);
    while (!o->done) pthread_cond_wait(&g_cv, &g_mu);
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

/* A w x h image whose pixels depend on k. */
static png_buf make_png(int k, int w, int h) {
    uint8_t *px = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h * 3; i++) px[i] = (uint8_t)((i * (k + 3) * 31) ^ (i >> 5) ^ (k * 77));
    png_buf b = {0};
    stbi_write_png_to_func(png_write, &b, w, h, 3, px, w * 3);
    free(px);
    return b;
}

typedef struct prompt {
    int32_t ids[MAX_PROMPT];
    int32_t n;
    const png_buf *images[4];
    int32_t n_images;
} prompt;

static void add_text(prompt *p, uint32_t seed, int n) {
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p->ids[p->n++] = 3 + (int32_t)((seed >> 12) % 990u);
    }
}

static void add_image(prompt *p, const png_buf *img) {
    p->ids[p->n++] = IMAGE_TOKEN;
    p->images[p->n_images++] = img;
}

static int32_t g_vocab;
static bool g_ignore_eos; /* forced lengths (KV pressure) */

static ms_status submit(ms_engine *e, const prompt *p, int32_t max_tokens, out *o, uint64_t *id) {
    memset(o->tokens, 0, sizeof o->tokens);
    o->n = 0;
    o->done = false;
    if (!o->logits) o->logits = calloc((size_t)g_vocab, sizeof(float));
    ms_image_input imgs[4];
    for (int k = 0; k < p->n_images; k++) imgs[k] = (ms_image_input){p->images[k]->p, p->images[k]->n};
    ms_request_desc d = {.prompt = p->ids, .n_prompt = p->n, .images = imgs, .n_images = p->n_images,
                         .on_token = on_token, .on_done = on_done, .user = o};
    ms_request_params_default(&d.params);
    d.params.max_tokens = max_tokens;
    d.params.prompt_logits = o->logits;
    d.params.ignore_eos = g_ignore_eos;
    ms_error err = {0};
    ms_status st = ms_engine_submit(e, &d, id, &err);
    if (st != MS_OK) fprintf(stderr, "submit: %s\n", err.msg);
    return st;
}

static void run_one(ms_engine *e, const prompt *p, int32_t max_tokens, out *o) {
    uint64_t id;
    if (submit(e, p, max_tokens, o, &id) == MS_OK) wait_for(o);
    EXPECT(o->done && o->res.status == MS_OK);
}

static const char *g_model;

static int32_t g_hash_bits; /* the engine's prefix_hash_bits test hook (0: 64) */

static ms_engine *engine_make(bool cache, int32_t kv_blocks, int32_t max_num_batched_tokens) {
    ms_engine_options o;
    ms_engine_options_default(&o);
    o.model_dir = g_model;
    o.device = "cpu";
    o.cpu_threads = 2;
    o.max_model_len = 512;
    o.enable_prefix_caching = cache;
    o.prefix_hash_bits = g_hash_bits;
    o.kv_blocks = kv_blocks;
    if (max_num_batched_tokens > 0) o.max_num_batched_tokens = max_num_batched_tokens;
    ms_engine *e = NULL;
    ms_error err = {0};
    ms_status st = ms_engine_create(&o, &e, &err);
    EXPECTF(st == MS_OK, "%s", err.msg);
    return e;
}

static double g_max_logit_diff;

/* a and ref agree: same greedy tokens, same last-position logits. */
static bool same(const out *a, const out *ref, const char *what) {
    bool ok = a->n == ref->n && !memcmp(a->tokens, ref->tokens, (size_t)a->n * sizeof(int32_t)) &&
              a->res.finish == ref->res.finish;
    double diff = 0;
    for (int32_t v = 0; v < g_vocab; v++) {
        double d = fabs((double)a->logits[v] - (double)ref->logits[v]);
        if (!(d <= diff)) diff = d; /* NaN counts */
    }
    if (diff > g_max_logit_diff) g_max_logit_diff = diff;
    /* Chunks of other lengths may round differently (BLAS blocking); greedy outputs
     * must not change and the logits stay within float rounding. */
    if (!(diff <= 1e-4)) ok = false;
    if (!ok) fprintf(stderr, "%s: differs from the cache-off run (%d vs %d tokens, logits max diff %g)\n",
                     what, a->n, ref->n, diff);
    return ok;
}

static png_buf g_img[4]; /* 0, 1: 64 x 48, different pixels; 2: 50 x 70; 3: 90 x 40 */

static int make_prompts(prompt *ps) {
    int n = 0;
    memset(ps, 0, 6 * sizeof *ps);
    add_text(&ps[n], 11, 40); /* text */
    n++;
    add_text(&ps[n], 12, 20), add_image(&ps[n], &g_img[2]), add_text(&ps[n], 13, 12); /* one image */
    n++;
    add_text(&ps[n], 14, 6), add_image(&ps[n], &g_img[2]), add_text(&ps[n], 15, 5);
    add_image(&ps[n], &g_img[3]), add_text(&ps[n], 16, 9); /* several images */
    n++;
    add_text(&ps[n], 17, 18), add_image(&ps[n], &g_img[0]), add_text(&ps[n], 18, 3);
    add_image(&ps[n], &g_img[0]), add_text(&ps[n], 19, 7); /* the same image twice */
    n++;
    add_text(&ps[n], 17, 18), add_image(&ps[n], &g_img[0]), add_text(&ps[n], 18, 9); /* image 0 ... */
    n++;
    add_text(&ps[n], 17, 18), add_image(&ps[n], &g_img[1]), add_text(&ps[n], 18, 9); /* ... vs 1, same size */
    n++;
    return n;
}

/* bits 2: block hashes cut to 2 bits, so most lookups meet other prompts' blocks under
 * the same hash; the key and parent checks refuse them and the outputs do not change. */
static void test_same_outputs(int32_t bits) {
    g_hash_bits = bits;
    prompt ps[6];
    int n = make_prompts(ps);
    const char *names[6] = {"text", "one image", "several images", "same image twice", "image A",
                            "image B (same size as A)"};
    out ref[6] = {0}, cold[6] = {0}, warm[6] = {0};
    ms_engine *off = engine_make(false, 0, 0);
    if (!off) return;
    for (int i = 0; i < n; i++) run_one(off, &ps[i], 8, &ref[i]);
    ms_engine_stats st;
    ms_engine_stats_get(off, &st);
    EXPECT(st.prefix_queried_tokens == 0 && st.kv_blocks_cached == 0);
    ms_engine_destroy(off);

    ms_engine *on = engine_make(true, 0, 0);
    if (!on) return;
    for (int i = 0; i < n; i++) {
        run_one(on, &ps[i], 8, &cold[i]);
        run_one(on, &ps[i], 8, &warm[i]);
        char what[64];
        snprintf(what, sizeof what, "%s (cold)", names[i]);
        EXPECT(same(&cold[i], &ref[i], what));
        snprintf(what, sizeof what, "%s (warm)", names[i]);
        EXPECT(same(&warm[i], &ref[i], what));
        /* all but the block of the last prompt token comes from the cache */
        int32_t P = warm[i].res.prompt_tokens;
        EXPECTF(warm[i].res.cached_tokens == (P - 1) / 16 * 16, "%s: %d of %d tokens cached", names[i],
                warm[i].res.cached_tokens, P);
        printf("%-26s prompt %3d tokens, cold cached %3d, warm cached %3d\n", names[i], P,
               cold[i].res.cached_tokens, warm[i].res.cached_tokens);
    }
    /* image B after A (same size, other pixels): only the 18 text tokens before the
     * image could match, i.e. one block; the first run of B above was after A */
    EXPECTF(cold[5].res.cached_tokens == 16, "image B shared %d tokens with image A", cold[5].res.cached_tokens);
    ms_engine_stats_get(on, &st);
    EXPECT(st.prefix_hit_tokens > 0 && st.kv_blocks_cached > 0 && st.kv_blocks_cached <= st.kv_blocks_total);
    printf("hash bits %d: %llu hash collisions refused\n", bits ? bits : 64,
           (unsigned long long)st.prefix_hash_collisions);
    if (bits == 2) EXPECT(st.prefix_hash_collisions > 0);
    ms_engine_destroy(on);
    g_hash_bits = 0;
    for (int i = 0; i < n; i++) free(ref[i].logits), free(cold[i].logits), free(warm[i].logits);
}

/* Turn 2 re-sends turn 1 and its answer: the history comes from the cache. */
static void test_second_turn(void) {
    prompt t1 = {0}, t2 = {0};
    add_text(&t1, 21, 30), add_image(&t1, &g_img[2]), add_text(&t1, 22, 10);
    out a = {0}, b = {0}, ref = {0};
    ms_engine *on = engine_make(true, 0, 0);
    if (!on) return;
    run_one(on, &t1, 12, &a);
    t2 = t1;
    for (int32_t i = 0; i < a.n; i++) t2.ids[t2.n++] = a.tokens[i];
    add_text(&t2, 23, 15);
    run_one(on, &t2, 8, &b);
    ms_engine_destroy(on);
    EXPECTF(b.res.cached_tokens >= (a.res.prompt_tokens / 16) * 16, "turn 2: %d cached (turn 1 prompt %d)",
            b.res.cached_tokens, a.res.prompt_tokens);
    printf("second turn: prompt %d tokens, %d cached\n", b.res.prompt_tokens, b.res.cached_tokens);
    ms_engine *off = engine_make(false, 0, 0);
    if (!off) return;
    run_one(off, &t2, 8, &ref);
    ms_engine_destroy(off);
    EXPECT(same(&b, &ref, "second turn"));
    free(a.logits), free(b.logits), free(ref.logits);
}

/* A pool of 32 blocks (one 512-token sequence): the prompts, and a long text prompt
 * between them, do not fit together and evict each other's cached blocks; outputs
 * stay those of the cache-off engine. */
static void test_eviction(void) {
    prompt ps[6];
    int n = make_prompts(ps);
    out ref[6], o[2][6];
    memset(ref, 0, sizeof ref);
    memset(o, 0, sizeof o);
    prompt filler = {0};
    add_text(&filler, 51, 190);
    out fill = {0};
    ms_engine *off = engine_make(false, 32, 0);
    ms_engine *on = engine_make(true, 32, 0);
    if (!off || !on) {
        ms_engine_destroy(off), ms_engine_destroy(on);
        return;
    }
    for (int i = 0; i < n; i++) run_one(off, &ps[i], 8, &ref[i]);
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < n; i++) {
            run_one(on, &ps[i], 8, &o[round][i]);
            char what[64];
            snprintf(what, sizeof what, "eviction round %d prompt %d", round, i);
            EXPECT(same(&o[round][i], &ref[i], what));
            if (round == 0 && i % 2) run_one(on, &filler, 4, &fill);
        }
    ms_engine_stats st;
    ms_engine_stats_get(on, &st);
    printf("eviction: %llu evictions, %llu of %llu tokens hit, %d blocks cached of %d\n",
           (unsigned long long)st.prefix_evictions, (unsigned long long)st.prefix_hit_tokens,
           (unsigned long long)st.prefix_queried_tokens, st.kv_blocks_cached, st.kv_blocks_total);
    EXPECT(st.prefix_evictions > 0);
    EXPECT(st.kv_blocks_cached <= st.kv_blocks_total && st.kv_blocks_used == 0);
    ms_engine_destroy(off);
    ms_engine_destroy(on);
    for (int i = 0; i < n; i++) free(ref[i].logits), free(o[0][i].logits), free(o[1][i].logits);
    free(fill.logits);
}

/* 16 requests sharing a long prefix (text + image) at once, on a pool that cannot hold
 * them all (preemption), chunked prefill, two cancelled: the rest match the cache-off
 * engine's outputs and every block is back at the end. */
static void test_burst(void) {
    enum { N = 16 };
    prompt ps[N];
    memset(ps, 0, sizeof ps);
    for (int i = 0; i < N; i++) {
        add_text(&ps[i], 31, 24), add_image(&ps[i], &g_img[2]), add_text(&ps[i], 32, 20);
        add_text(&ps[i], 40 + (uint32_t)i, 20 + i % 4);
    }
    out ref[N] = {0}, o[N] = {0};
    g_ignore_eos = true;
    ms_engine *off = engine_make(false, 0, 0);
    if (!off) return;
    for (int i = 0; i < N; i++) run_one(off, &ps[i], 24, &ref[i]);
    ms_engine_destroy(off);
    ms_engine *on = engine_make(true, 32, 48); /* 32 blocks: one 512-token sequence */
    if (!on) return;
    run_one(on, &ps[0], 24, &o[0]); /* warm the shared prefix */
    uint64_t ids[N];
    for (int i = 1; i < N; i++) EXPECT(submit(on, &ps[i], 24, &o[i], &ids[i]) == MS_OK);
    ms_engine_cancel(on, ids[3]);
    ms_engine_cancel(on, ids[9]);
    for (int i = 1; i < N; i++) wait_for(&o[i]);
    ms_engine_stats st;
    ms_engine_stats_get(on, &st);
    ms_engine_destroy(on);
    g_ignore_eos = false;
    int bad = 0, reused = 0;
    for (int i = 0; i < N; i++) {
        if (o[i].res.finish == MS_FINISH_CANCELLED) continue;
        char what[32];
        snprintf(what, sizeof what, "burst request %d", i);
        bad += !same(&o[i], &ref[i], what);
        reused += o[i].res.cached_tokens >= 96;
    }
    printf("burst: %llu preemptions, %d of %d requests reused the prefix, %llu cancelled\n",
           (unsigned long long)st.preemptions, reused, N, (unsigned long long)st.finished[MS_FINISH_CANCELLED]);
    EXPECT(bad == 0);
    EXPECT(reused >= N / 2);
    EXPECT(st.kv_blocks_used == 0 && st.active == 0);
    for (int i = 0; i < N; i++) free(ref[i].logits), free(o[i].logits);
}

int main(void) {
    g_model = ms_test_tiny_model(1, "f32");
    g_img[0] = make_png(1, 64, 48);
    g_img[1] = make_png(2, 64, 48);
    g_img[2] = make_png(3, 50, 70);
    g_img[3] = make_png(4, 90, 40);
    ms_engine *probe = engine_make(true, 0, 0);
    if (!probe) return ms_test_finish("test_prefix_cache");
    g_vocab = ms_engine_model_config(probe)->text.vocab_size;
    ms_engine_destroy(probe);
    test_same_outputs(0);
    test_same_outputs(2);
    test_second_turn();
    test_eviction();
    test_burst();
    printf("logits: max abs difference to the cache-off runs %g\n", g_max_logit_diff);
    for (int k = 0; k < 4; k++) free(g_img[k].p);
    return ms_test_finish("test_prefix_cache");
}
