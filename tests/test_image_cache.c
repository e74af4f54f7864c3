/*
 * Image caches (encoder/image_cache.h, scheduler/engine_images.c):
 * - the LRU by bytes: hits, misses, eviction order, references keeping an evicted
 *   value alive, the byte count never over the budget over many distinct images, and a
 *   forced hash collision (ms_image_hash_test_bits = 0) never served as a hit;
 * - the engine on the tiny model: the prompt logits (bit for bit) and greedy tokens of
 *   one image, several images, the same image twice in a prompt and two same-size
 *   images one byte apart are the same with the caches off, on (first and repeated
 *   requests: misses, partial and full hits), with only the pixel cache, with small
 *   budgets that evict, and with every hash colliding; a long run of distinct images
 *   keeps both caches under their budgets; /metrics shows the counters.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <stb_image_write.h>

#include "encoder/image_cache.h"
#include "scheduler/engine.h"
#include "server/metrics.h"
#include "tests/test_util.h"

/* ---- the cache alone ---- */
static int g_freed;
static void count_free(void *ctx, void *value) {
    (void)ctx;
    g_freed++;
    free(value);
}

static ms_image_key key_of_int(int i) {
    uint8_t b[16];
    memset(b, 0, sizeof b);
    memcpy(b, &i, sizeof i);
    return ms_image_key_of(b, sizeof b);
}

static void test_lru(void) {
    g_freed = 0;
    ms_image_cache *c = ms_image_cache_create(300, count_free, NULL);
    bool taken;
    for (int i = 0; i < 3; i++) {
        ms_image_key k = key_of_int(i);
        ms_image_cache_entry *en = ms_image_cache_put(c, &k, malloc(100), 100, &taken);
        EXPECT(en && taken);
        ms_image_cache_release(c, en);
    }
    ms_image_key k0 = key_of_int(0), k1 = key_of_int(1), k3 = key_of_int(3);
    ms_image_cache_entry *h0 = ms_image_cache_get(c, &k0); /* 0 is now the most recent */
    EXPECT(h0 != NULL);
    /* a fourth evicts the least recently used: 1, not 0 (0 is also still referenced) */
    ms_image_cache_entry *en = ms_image_cache_put(c, &k3, malloc(100), 100, &taken);
    ms_image_cache_release(c, en);
    ms_image_cache_entry *h1 = ms_image_cache_get(c, &k1);
    EXPECT(h1 == NULL);
    EXPECT(g_freed == 1);
    /* the same key again: the cached entry, the caller keeps its value */
    void *dup = malloc(100);
    en = ms_image_cache_put(c, &k0, dup, 100, &taken);
    EXPECT(en == h0 && !taken);
    free(dup);
    ms_image_cache_release(c, en);
    /* more than the budget: refused */
    void *big = malloc(400);
    ms_image_key k9 = key_of_int(9);
    EXPECT(ms_image_cache_put(c, &k9, big, 400, &taken) == NULL && !taken);
    free(big);
    /* evict 0 while h0 holds it: its value lives until the release */
    for (int i = 10; i < 13; i++) {
        ms_image_key k = key_of_int(i);
        ms_image_cache_release(c, ms_image_cache_put(c, &k, malloc(100), 100, &taken));
    }
    int before = g_freed;
    EXPECT(ms_image_cache_get(c, &k0) == NULL);
    ms_image_cache_release(c, h0);
    EXPECT(g_freed == before + 1);
    ms_image_cache_stats st;
    ms_image_cache_stats_get(c, &st);
    EXPECTF(st.bytes == 300 && st.entries == 3 && st.peak_bytes == 300 && st.evictions == 4,
            "bytes %zu entries %lld peak %zu evictions %llu", st.bytes, (long long)st.entries,
            st.peak_bytes, (unsigned long long)st.evictions);
    ms_image_cache_destroy(c);
    EXPECT(g_freed == 7);
    /* budget 0: off, nothing counted */
    c = ms_image_cache_create(0, count_free, NULL);
    EXPECT(!ms_image_cache_enabled(c) && ms_image_cache_get(c, &k0) == NULL);
    ms_image_cache_destroy(c);
}

/* Many distinct images of varied sizes: the byte count never passes the budget. */
static void test_budget(void) {
    const size_t budget = 10000;
    ms_image_cache *c = ms_image_cache_create(budget, count_free, NULL);
    uint32_t h = 7;
    for (int i = 0; i < 5000; i++) {
        h = h * 1664525u + 1013904223u;
        size_t n = 1 + (h >> 8) % 3000;
        /* half the lookups among 8 images (hits), half new ones */
        ms_image_key k = key_of_int(i % 2 ? 100 + i : (int)((h >> 4) % 8));
        ms_image_cache_entry *en = ms_image_cache_get(c, &k);
        if (!en) {
            bool taken;
            void *v = malloc(n);
            en = ms_image_cache_put(c, &k, v, n, &taken);
            if (!taken) free(v);
        }
        ms_image_cache_release(c, en);
        ms_image_cache_stats st;
        ms_image_cache_stats_get(c, &st);
        if (st.bytes > budget) {
            EXPECTF(st.bytes <= budget, "%zu bytes cached after %d images, budget %zu", st.bytes, i, budget);
            break;
        }
    }
    ms_image_cache_stats st;
    ms_image_cache_stats_get(c, &st);
    EXPECT(st.peak_bytes <= budget && st.evictions > 1000 && st.hits > 0);
    printf("budget: %llu hits, %llu misses, %llu evictions, peak %zu of %zu bytes\n",
           (unsigned long long)st.hits, (unsigned long long)st.misses, (unsigned long long)st.evictions,
           st.peak_bytes, budget);
    ms_image_cache_destroy(c);
}

/* Every hash forced to 0: an entry of other bytes is never a hit. */
static void test_collision(void) {
    ms_image_hash_test_bits = 0;
    uint8_t a[64], b[64];
    memset(a, 1, sizeof a);
    memcpy(b, a, sizeof b);
    b[40] ^= 1; /* one byte apart, same length */
    ms_image_key ka = ms_image_key_of(a, sizeof a), kb = ms_image_key_of(b, sizeof b);
    ms_image_key kc = ms_image_key_of(a, sizeof a - 1);
    EXPECT(ka.hash == 0 && kb.hash == 0 && !ms_image_key_equal(&ka, &kb) && !ms_image_key_equal(&ka, &kc));
    ms_image_cache *c = ms_image_cache_create(1000, count_free, NULL);
    bool taken;
    int *va = malloc(sizeof *va);
    *va = 1;
    ms_image_cache_release(c, ms_image_cache_put(c, &ka, va, 10, &taken));
    EXPECT(ms_image_cache_get(c, &kb) == NULL && ms_image_cache_get(c, &kc) == NULL);
    int *vb = malloc(sizeof *vb);
    *vb = 2;
    ms_image_cache_entry *en = ms_image_cache_put(c, &kb, vb, 10, &taken);
    EXPECT(taken && *(int *)ms_image_cache_value(en) == 2);
    ms_image_cache_release(c, en);
    en = ms_image_cache_get(c, &ka);
    EXPECT(en && *(int *)ms_image_cache_value(en) == 1);
    ms_image_cache_release(c, en);
    ms_image_cache_stats st;
    ms_image_cache_stats_get(c, &st);
    EXPECT(st.collisions >= 3 && st.entries == 2);
    ms_image_cache_destroy(c);
    ms_image_hash_test_bits = 64;
}

/* ---- the engine ---- */
enum { IMAGE_TOKEN = 1000, MAX_OUT = 4, N_CASES = 5, MAX_IMAGES = 3 };

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

/* A w x h image seeded by k; `poke` changes one byte in the middle (which the center
 * crop keeps). */
static png_buf make_png(int k, int w, int h, bool poke) {
    uint8_t *px = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h * 3; i++) px[i] = (uint8_t)((i * (k + 3) * 31) ^ (i >> 4) ^ (k * 17));
    if (poke) px[((h / 2) * w + w / 2) * 3] ^= 0x5a;
    png_buf b = {0};
    stbi_write_png_to_func(png_write, &b, w, h, 3, px, w * 3);
    free(px);
    return b;
}

typedef struct case_spec {
    int images[MAX_IMAGES];    /* indexes into g_img */
    int n_images;
} case_spec;

static png_buf g_img[64];
/* one image; several; the same image twice; two same-size images one byte apart */
static const case_spec k_cases[N_CASES] = {
    {{0}, 1}, {{0, 1, 2}, 3}, {{3, 3}, 2}, {{4}, 1}, {{5}, 1},
};

typedef struct case_out {
    float *logits;             /* (vocab) last prompt position */
    int32_t tokens[MAX_OUT];
    int32_t n;
    ms_request_result res;
    bool done;
} case_out;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;

static void on_token(void *user, int32_t token, int32_t index) {
    case_out *o = user;
    if (index < MAX_OUT && index == o->n) o->tokens[o->n++] = token;
}

static void on_done(void *user, const ms_request_result *res) {
    case_out *o = user;
    pthread_mutex_lock(&g_mu);
    o->res = *res;
    o->done = true;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

/* Runs one request with images img[0..n) to completion. */
static void run_one(ms_engine *e, const int *img, int n, case_out *o, int32_t vocab) {
    int32_t prompt[16];
    int32_t k = 0;
    prompt[k++] = 5;
    for (int i = 0; i < n; i++) prompt[k++] = IMAGE_TOKEN;
    prompt[k++] = 17;
    prompt[k++] = 42;
    ms_image_input in[MAX_IMAGES];
    for (int i = 0; i < n; i++) in[i] = (ms_image_input){g_img[img[i]].p, g_img[img[i]].n};
    memset(o, 0, sizeof *o);
    o->logits = calloc((size_t)vocab, sizeof *o->logits);
    ms_request_desc d = {.prompt = prompt, .n_prompt = k, .images = in, .n_images = n,
                         .on_token = on_token, .on_done = on_done, .user = o};
    ms_request_params_default(&d.params);
    d.params.max_tokens = MAX_OUT;
    d.params.ignore_eos = true;
    d.params.prompt_logits = o->logits;
    ms_error err = {0};
    uint64_t id;
    ms_status st = ms_engine_submit(e, &d, &id, &err);
    EXPECTF(st == MS_OK, "%s", err.msg);
    if (st != MS_OK) return;
    pthread_mutex_lock(&g_mu);
    while (!o->done) pthread_cond_wait(&g_cv, &g_mu);
    pthread_mutex_unlock(&g_mu);
    EXPECTF(o->res.status == MS_OK, "%s", o->res.error);
}

static ms_engine *engine_with(const char *model, int64_t pixel_bytes, int64_t embed_bytes) {
    ms_engine_options o;
    ms_engine_options_default(&o);
    o.model_dir = model;
    o.device = "cpu";
    o.cpu_threads = 2;
    o.max_model_len = 256;
    o.image_cache_bytes = pixel_bytes;
    o.embedding_cache_bytes = embed_bytes;
    /* Prefix caching off: a warm prefix computes a shorter last chunk, whose logits round
     * differently in the last bits (test_prefix_cache checks that cache on its own); this
     * test compares the image caches bit for bit. */
    o.enable_prefix_caching = false;
    /* One image per encode batch: the CPU GEMMs round differently for other batch
     * shapes (more rows), so an embedding encoded beside other images may differ in the
     * last bits from one encoded alone, caches or not; alone, bit-for-bit equality of
     * the logits is what shows the cached embedding is the image's own. */
    o.encode_max_batch_images = 1;
    ms_engine *e = NULL;
    ms_error err = {0};
    EXPECTF(ms_engine_create(&o, &e, &err) == MS_OK, "%s", err.msg);
    return e;
}

static bool same_output(const case_out *a, const case_out *b, int32_t vocab) {
    return a->n == b->n && !memcmp(a->tokens, b->tokens, sizeof a->tokens[0] * (size_t)a->n) &&
           !memcmp(a->logits, b->logits, sizeof *a->logits * (size_t)vocab);
}

/* Every case twice (the second round repeats every image) on an engine with these
 * budgets: the outputs equal the reference's bit for bit. Returns the cache stats. */
static ms_engine_cache_stats run_cases(const char *what, const char *model, int64_t pixel_bytes,
                                       int64_t embed_bytes, case_out ref[N_CASES]) {
    ms_engine_cache_stats cs = {0};
    ms_engine *e = engine_with(model, pixel_bytes, embed_bytes);
    if (!e) return cs;
    int32_t vocab = ms_engine_model_config(e)->text.vocab_size;
    for (int round = 0; round < 2; round++)
        for (int c = 0; c < N_CASES; c++) {
            case_out o;
            run_one(e, k_cases[c].images, k_cases[c].n_images, &o, vocab);
            EXPECTF(same_output(&o, &ref[c], vocab), "%s: case %d round %d differs from the cache-off run",
                    what, c, round);
            free(o.logits);
        }
    ms_engine_cache_stats_get(e, &cs);
    printf("%-22s pixels %llu hits %llu misses %llu evictions; embeddings %llu hits %llu misses "
           "%llu evictions %llu collisions\n", what, (unsigned long long)cs.pixels.hits,
           (unsigned long long)cs.pixels.misses, (unsigned long long)cs.pixels.evictions,
           (unsigned long long)cs.embeddings.hits, (unsigned long long)cs.embeddings.misses,
           (unsigned long long)cs.embeddings.evictions, (unsigned long long)cs.embeddings.collisions);
    EXPECT(cs.pixels.peak_bytes <= cs.pixels.budget && cs.embeddings.peak_bytes <= cs.embeddings.budget);
    ms_engine_destroy(e);
    return cs;
}

/* Distinct images one after another on small budgets: cached bytes stay under them. */
static void test_engine_budget(const char *model, size_t embed_one, size_t pixel_one) {
    size_t eb = embed_one * 5 / 2, pb = pixel_one * 7 / 2;
    ms_engine *e = engine_with(model, (int64_t)pb, (int64_t)eb);
    if (!e) return;
    int32_t vocab = ms_engine_model_config(e)->text.vocab_size;
    for (int i = 0; i < 40; i++) {
        int img = 8 + i % 48;
        case_out o;
        run_one(e, &img, 1, &o, vocab);
        free(o.logits);
        ms_engine_cache_stats cs;
        ms_engine_cache_stats_get(e, &cs);
        EXPECTF(cs.embeddings.bytes <= eb && cs.pixels.bytes <= pb, "after %d images: %zu/%zu, %zu/%zu bytes",
                i + 1, cs.embeddings.bytes, eb, cs.pixels.bytes, pb);
    }
    ms_engine_cache_stats cs;
    ms_engine_cache_stats_get(e, &cs);
    EXPECT(cs.embeddings.peak_bytes <= eb && cs.pixels.peak_bytes <= pb);
    EXPECT(cs.embeddings.evictions >= 35 && cs.pixels.evictions >= 35 && cs.embeddings.entries == 2);
    printf("long run: 40 distinct images, embeddings peak %zu of %zu bytes, pixels peak %zu of %zu bytes\n",
           cs.embeddings.peak_bytes, eb, cs.pixels.peak_bytes, pb);
    ms_engine_destroy(e);
}

static void test_metrics_text(const ms_engine_cache_stats *cs) {
    ms_server_metrics m;
    ms_server_metrics_init(&m);
    ms_engine_stats st;
    memset(&st, 0, sizeof st);
    char *text = ms_metrics_render(&m, &st, cs, true);
    char want[160];
    snprintf(want, sizeof want, "modserve_image_cache_hits_total{cache=\"embeddings\"} %llu\n",
             (unsigned long long)cs->embeddings.hits);
    EXPECTF(strstr(text, want) != NULL, "no line '%s'", want);
    snprintf(want, sizeof want, "modserve_image_cache_misses_total{cache=\"pixels\"} %llu\n",
             (unsigned long long)cs->pixels.misses);
    EXPECTF(strstr(text, want) != NULL, "no line '%s'", want);
    EXPECT(strstr(text, "modserve_image_cache_bytes{cache=\"pixels\"}") != NULL);
    EXPECT(strstr(text, "modserve_image_cache_evictions_total{cache=\"embeddings\"}") != NULL);
    free(text);
    ms_server_metrics_destroy(&m);
}

static void test_engine(void) {
    const char *model = ms_test_tiny_model(1, "f32");
    for (int k = 0; k < 4; k++) g_img[k] = make_png(k, 40 + 6 * k, 36, false);
    g_img[4] = make_png(9, 48, 48, false);
    g_img[5] = make_png(9, 48, 48, true); /* g_img[4] with one byte changed */
    for (int k = 8; k < 56; k++) g_img[k] = make_png(k, 32 + k % 9, 30 + k % 5, false);

    /* the reference: both caches off */
    case_out ref[N_CASES];
    ms_engine *e = engine_with(model, 0, 0);
    if (!e) return;
    int32_t vocab = ms_engine_model_config(e)->text.vocab_size;
    for (int c = 0; c < N_CASES; c++) run_one(e, k_cases[c].images, k_cases[c].n_images, &ref[c], vocab);
    ms_engine_cache_stats cs;
    ms_engine_cache_stats_get(e, &cs);
    EXPECT(cs.pixels.hits + cs.pixels.misses + cs.embeddings.hits + cs.embeddings.misses == 0);
    ms_engine_destroy(e);
    /* the two one-byte-apart images give other logits: serving one for the other shows */
    EXPECT(memcmp(ref[3].logits, ref[4].logits, sizeof(float) * (size_t)vocab) != 0);

    /* both on (defaults): round 2 is all embedding hits; case 1 after case 0 is a partial
     * hit; case 2's second copy of its image hits or is encoded again, never mixed up */
    cs = run_cases("caches on", model, -1, -1, ref);
    EXPECT(cs.embeddings.hits >= 8 && cs.embeddings.misses >= 6 && cs.embeddings.evictions == 0);
    test_metrics_text(&cs);
    /* pixels only: every image is encoded, round 2 skips decode + resize */
    cs = run_cases("pixel cache only", model, -1, 0, ref);
    EXPECT(cs.pixels.hits >= 8 && cs.embeddings.hits == 0);
    /* every hash collides: hits only for the same bytes */
    ms_image_hash_test_bits = 0;
    cs = run_cases("all hashes collide", model, -1, -1, ref);
    ms_image_hash_test_bits = 64;
    EXPECT(cs.embeddings.collisions > 0 && cs.embeddings.hits >= 8);

    /* sizes of one cached entry, from a run with room for one image */
    e = engine_with(model, -1, -1);
    case_out o;
    int img0 = 0;
    run_one(e, &img0, 1, &o, vocab);
    free(o.logits);
    ms_engine_cache_stats_get(e, &cs);
    ms_engine_destroy(e);
    size_t embed_one = cs.embeddings.bytes, pixel_one = cs.pixels.bytes;
    EXPECT(embed_one > 0 && pixel_one > 0);
    /* small budgets: evictions between the rounds, the same outputs */
    cs = run_cases("small budgets", model, (int64_t)(pixel_one * 2), (int64_t)(embed_one * 2), ref);
    EXPECT(cs.embeddings.evictions > 0 && cs.pixels.evictions > 0);
    test_engine_budget(model, embed_one, pixel_one);
    for (int c = 0; c < N_CASES; c++) free(ref[c].logits);
    for (int k = 0; k < 64; k++) free(g_img[k].p);
}

/* `serve` refuses a bad byte count with a message naming the flag (exit 2, before
 * loading anything). */
static void test_serve_flags(void) {
    mkdir("testdata", 0755);
    EXPECT(ms_test_system("./modserve serve --model none --embedding-cache-bytes 12Q 2>testdata/cache-flag.txt") == 2);
    char *msg = ms_test_read_file("testdata/cache-flag.txt", NULL);
    EXPECTF(msg && strstr(msg, "--embedding-cache-bytes '12Q' is not a byte count"), "%s", msg ? msg : "(none)");
    free(msg);
    EXPECT(ms_test_system("./modserve serve --model none --image-cache-bytes -1 2>/dev/null") == 2);
    char *help = NULL;
    EXPECT(ms_test_system("./modserve serve --help > testdata/cache-help.txt") == 0);
    help = ms_test_read_file("testdata/cache-help.txt", NULL);
    EXPECT(help && strstr(help, "--image-cache-bytes") && strstr(help, "--embedding-cache-bytes"));
    free(help);
}

int main(void) {
    test_serve_flags();
    test_lru();
    test_budget();
    test_collision();
    test_engine();
    return ms_test_finish("test_image_cache");
}
