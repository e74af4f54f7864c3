/*
 * The prefix cache of the scheduler core on a virtual clock: the longest cached prefix
 * is reused (never the last prompt token), LRU eviction order, blocks shared by running
 * requests survive a sharer's cancel and preemption, images key their positions, and a
 * forced tiny hash never serves another prefix's KV. The harness's fake KV store keeps,
 * per slot, a hash of every key up to that position, so a block served for the wrong
 * prefix is counted (kv_errors); outputs are compared with each request run alone
 * without any cache.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/sched_harness.h"
#include "tests/test_util.h"

static sim_req *reqs_alloc(int32_t n) { return calloc((size_t)n, sizeof(sim_req)); }

static void run_checked(sim *s, ms_core_options *o, sim_req *r, int32_t n) {
    ms_error err;
    ms_status st = ms_core_create(o, &s->core, &err);
    EXPECTF(st == MS_OK, "%s", err.msg);
    EXPECT(sim_run(s, 1e6));
    EXPECTF(s->kv_errors == 0, "%d KV reads found another prefix's data", s->kv_errors);
    EXPECT(s->gather_errors == 0);
    ms_core_stats stats;
    ms_core_stats_get(s->core, &stats);
    EXPECTF(stats.kv_blocks_used == 0, "%d blocks still held", stats.kv_blocks_used);
    EXPECT(stats.kv_blocks_cached <= stats.kv_blocks_total);
    EXPECT(stats.active == 0);
    EXPECT(sim_compare_alone(r, n, s->image_tokens) == 0);
}

static ms_core_stats stats_of(const sim *s) {
    ms_core_stats st;
    ms_core_stats_get(s->core, &st);
    return st;
}

/* A second request reuses the longest full-block prefix it shares with the first; an
 * identical prompt reuses all but the block of its last token. */
static void test_longest_prefix(ms_engine_mode mode) {
    enum { N = 4 };
    sim_req *r = reqs_alloc(N);
    r[0] = (sim_req){.at = 0, .n_text = 100, .max_tokens = 5, .no_stop = true, .keys = true, .prompt_seed = 9};
    /* shares text tokens [0, 70): 4 blocks of 16 */
    r[1] = (sim_req){.at = 10, .n_text = 100, .max_tokens = 5, .no_stop = true, .keys = true,
                     .prompt_seed = 9, .diverge_at = 70, .diverge_seed = 3};
    r[2] = (sim_req){.at = 20, .n_text = 100, .max_tokens = 5, .no_stop = true, .keys = true, .prompt_seed = 9};
    /* the first 96 tokens of r[0]: 6 full blocks, but the last token is computed */
    r[3] = (sim_req){.at = 30, .n_text = 96, .max_tokens = 5, .no_stop = true, .keys = true, .prompt_seed = 9};
    sim s;
    ms_core_options o;
    ms_core_options_default(&o);
    o.mode = mode;
    sim_init(&s, &o, r, N);
    run_checked(&s, &o, r, N);
    EXPECTF(r[0].fin.cached_tokens == 0, "first request: %d cached", r[0].fin.cached_tokens);
    EXPECTF(r[1].fin.cached_tokens == 64, "diverging at 70: %d cached, expected 64", r[1].fin.cached_tokens);
    EXPECTF(r[2].fin.cached_tokens == 96, "same prompt: %d cached, expected 96", r[2].fin.cached_tokens);
    EXPECTF(r[3].fin.cached_tokens == 80, "96-token prefix: %d cached, expected 80", r[3].fin.cached_tokens);
    EXPECT(s.shared_reads > 0);
    ms_core_stats st = stats_of(&s);
    EXPECT(st.prefix_hit_tokens == 64 + 96 + 80);
    EXPECT(st.prefix_queried_tokens == 100 + 100 + 100 + 96);
    EXPECT(st.prefix_evictions == 0);
    /* r[0] registered 6 blocks, r[1] 2 more after its shared 4 (100 / 16 = 6 full) */
    EXPECTF(st.kv_blocks_cached == 8, "%d blocks cached", st.kv_blocks_cached);
    /* the prefill stage computed only the uncached tokens */
    if (mode == MS_MODE_DISAGG)
        EXPECTF(st.stage[MS_STAGE_PREFILL].tokens == 100 + 36 + 4 + 16, "%llu prefill tokens",
                (unsigned long long)st.stage[MS_STAGE_PREFILL].tokens);
    sim_free(&s);
    free(r);
}

/* Turned off, or for requests without keys (the simulator's), nothing is cached. */
static void test_off(void) {
    for (int off = 0; off < 2; off++) {
        sim_req *r = reqs_alloc(2);
        r[0] = (sim_req){.at = 0, .n_text = 64, .max_tokens = 3, .no_stop = true, .keys = !off, .prompt_seed = 5};
        r[1] = (sim_req){.at = 10, .n_text = 64, .max_tokens = 3, .no_stop = true, .keys = !off, .prompt_seed = 5};
        sim s;
        ms_core_options o;
        ms_core_options_default(&o);
        o.prefix_caching = off == 0 ? false : true;
        sim_init(&s, &o, r, 2);
        run_checked(&s, &o, r, 2);
        EXPECT(r[1].fin.cached_tokens == 0);
        ms_core_stats st = stats_of(&s);
        EXPECT(st.prefix_hit_tokens == 0 && st.kv_blocks_cached == 0 && st.prefix_queried_tokens == 0);
        sim_free(&s);
        free(r);
    }
}

/* Freed cached blocks are evicted least recently used first: a prefix used again
 * survives a request that needs most of the pool, one not used since is evicted. */
static void test_lru_order(void) {
    enum { N = 6 };
    sim_req *r = reqs_alloc(N);
    /* A and B: 49 tokens (3 full blocks), then C re-uses A, D fills the pool */
    r[0] = (sim_req){.at = 0, .n_text = 49, .max_tokens = 1, .no_stop = true, .keys = true, .prompt_seed = 1};
    r[1] = (sim_req){.at = 1, .n_text = 49, .max_tokens = 1, .no_stop = true, .keys = true, .prompt_seed = 2};
    r[2] = (sim_req){.at = 2, .n_text = 49, .max_tokens = 1, .no_stop = true, .keys = true, .prompt_seed = 1};
    r[3] = (sim_req){.at = 3, .n_text = 207, .max_tokens = 1, .no_stop = true, .keys = true, .prompt_seed = 4};
    r[4] = (sim_req){.at = 4, .n_text = 49, .max_tokens = 1, .no_stop = true, .keys = true, .prompt_seed = 1};
    r[5] = (sim_req){.at = 5, .n_text = 49, .max_tokens = 1, .no_stop = true, .keys = true, .prompt_seed = 2};
    sim s;
    ms_core_options o;
    ms_core_options_default(&o);
    o.kv_blocks = 16; /* 10 uncached blocks left when D (13 blocks) arrives: 3 evicted */
    o.max_model_len = 256;
    sim_init(&s, &o, r, N);
    run_checked(&s, &o, r, N);
    EXPECT(r[2].fin.cached_tokens == 48);
    EXPECTF(r[4].fin.cached_tokens == 48, "A used last before D: %d cached", r[4].fin.cached_tokens);
    EXPECTF(r[5].fin.cached_tokens == 0, "B, least recently used, evicted: %d cached", r[5].fin.cached_tokens);
    ms_core_stats st = stats_of(&s);
    EXPECT(st.prefix_evictions >= 3);
    EXPECT(st.kv_blocks_cached <= 16);
    sim_free(&s);
    free(r);
}

/* Requests sharing cached blocks run together; one is cancelled mid-decode, others
 * are preempted under a tight pool and recompute: the sharers' outputs stay right and
 * every block is returned. */
static void test_sharers_cancel_preempt(ms_engine_mode mode) {
    enum { N = 24 };
    sim_req *r = reqs_alloc(N);
    r[0] = (sim_req){.at = 0, .n_text = 80, .max_tokens = 4, .no_stop = true, .keys = true, .prompt_seed = 7};
    for (int i = 1; i < N; i++)
        r[i] = (sim_req){.at = 5 + 0.01 * i, .n_text = 80 + (i % 5) * 7, .max_tokens = 30 + i % 7,
                         .no_stop = true, .keys = true, .prompt_seed = 7, .diverge_at = 40 + (i % 3) * 16,
                         .diverge_seed = (uint32_t)i};
    r[3].cancel_at = 5.2;
    r[8].cancel_at = 5.3; /* after its arrival (5.08) */
    sim s;
    ms_core_options o;
    ms_core_options_default(&o);
    o.mode = mode;
    o.kv_blocks = 48; /* 23 sequences of ~8 blocks each: preemption */
    o.max_model_len = 256;
    o.max_num_batched_tokens = 64; /* chunked prefill */
    sim_init(&s, &o, r, N);
    run_checked(&s, &o, r, N);
    ms_core_stats st = stats_of(&s);
    EXPECTF(st.preemptions > 0, "no preemption (%llu)", (unsigned long long)st.preemptions);
    EXPECT(st.finished[MS_FINISH_CANCELLED] == 2);
    EXPECT(st.prefix_hit_tokens > 0);
    EXPECT(s.shared_reads > 0);
    int hits = 0;
    for (int i = 1; i < N; i++) hits += r[i].fin.cached_tokens >= 32;
    EXPECTF(hits > N / 2, "%d requests reused the shared prefix", hits);
    sim_free(&s);
    free(r);
}

/* Image positions are keyed by the image: the same image is reused, another image at
 * the same place (same size) is not, and the same image twice in one prompt is fine. */
static void test_images(void) {
    enum { N = 4 };
    sim_req *r = reqs_alloc(N);
    /* 20 text tokens: 10 before the images, 8 tokens per image, block 4 */
    r[0] = (sim_req){.at = 0, .n_text = 20, .n_images = 2, .max_tokens = 3, .no_stop = true, .keys = true,
                     .prompt_seed = 3, .image_id = {7, 7}};
    r[1] = (sim_req){.at = 10, .n_text = 20, .n_images = 2, .max_tokens = 3, .no_stop = true, .keys = true,
                     .prompt_seed = 3, .image_id = {7, 7}};
    r[2] = (sim_req){.at = 20, .n_text = 20, .n_images = 2, .max_tokens = 3, .no_stop = true, .keys = true,
                     .prompt_seed = 3, .image_id = {8, 7}};
    r[3] = (sim_req){.at = 30, .n_text = 20, .n_images = 2, .max_tokens = 3, .no_stop = true, .keys = true,
                     .prompt_seed = 3, .image_id = {7, 9}};
    sim s;
    ms_core_options o;
    ms_core_options_default(&o);
    o.block_size = 4;
    sim_init(&s, &o, r, N);
    run_checked(&s, &o, r, N);
    /* prompt: 10 text, 16 image, 10 text = 36 tokens, 9 blocks */
    EXPECTF(r[1].fin.cached_tokens == 32, "same images: %d cached", r[1].fin.cached_tokens);
    EXPECTF(r[2].fin.cached_tokens == 8, "other first image: %d cached, expected 8", r[2].fin.cached_tokens);
    EXPECTF(r[3].fin.cached_tokens == 16, "other second image: %d cached, expected 16", r[3].fin.cached_tokens);
    sim_free(&s);
    free(r);
}

/* With block hashes cut to 2 bits most lookups meet a block of another prefix under the
 * same hash: the stored keys and parent refuse them, and nothing wrong is read. */
static void collision_reqs(sim_req *r, int32_t n) {
    memset(r, 0, (size_t)n * sizeof *r);
    for (int i = 0; i < n; i++)
        r[i] = (sim_req){.at = 0.5 * i, .n_text = 30 + (i * 13) % 50, .n_images = i % 3 == 0 ? 1 : 0,
                         .max_tokens = 4, .no_stop = true, .keys = true, .prompt_seed = 1 + (uint32_t)(i % 4),
                         .diverge_at = 8 + (i % 5) * 5, .diverge_seed = (uint32_t)(i % 6),
                         .image_id = {1 + (uint32_t)(i % 2)}};
}

static void test_tiny_hash_collisions(void) {
    enum { N = 40 };
    sim_req *r = reqs_alloc(N);
    const int bits_list[2] = {2, 0}; /* 0: all 64 bits */
    for (int k = 0; k < 2; k++) {
        collision_reqs(r, N);
        sim s;
        ms_core_options o;
        ms_core_options_default(&o);
        o.block_size = 4;
        o.prefix_hash_bits = bits_list[k];
        o.kv_blocks = 64; /* evictions too */
        o.max_model_len = 256;
        sim_init(&s, &o, r, N);
        run_checked(&s, &o, r, N);
        ms_core_stats st = stats_of(&s);
        printf("hash bits %d: %llu of %llu prompt tokens hit, %llu collisions refused, %llu evictions\n",
               bits_list[k] ? bits_list[k] : 64, (unsigned long long)st.prefix_hit_tokens,
               (unsigned long long)st.prefix_queried_tokens, (unsigned long long)st.prefix_hash_collisions,
               (unsigned long long)st.prefix_evictions);
        EXPECT(st.prefix_hit_tokens > 0);
        EXPECT(st.prefix_evictions > 0);
        if (bits_list[k] == 2) EXPECT(st.prefix_hash_collisions > 0);
        sim_free(&s);
    }
    free(r);
}

int main(void) {
    test_longest_prefix(MS_MODE_DISAGG);
    test_longest_prefix(MS_MODE_MONOLITHIC);
    test_off();
    test_lru_order();
    test_sharers_cancel_preempt(MS_MODE_DISAGG);
    test_sharers_cancel_preempt(MS_MODE_MONOLITHIC);
    test_images();
    test_tiny_hash_collisions();
    return ms_test_finish("test_sched_prefix");
}
