/*
 * The scheduler core on a virtual clock (deterministic): routing, gathering, priority
 * with aging, token budget, preemption, resize, cancel, cross-device hand-off and the
 * monolithic mode, all checked against a fake model that keeps a real KV store.
 */
#include <stdlib.h>
#include <string.h>

#include "llm/model_init.h"
#include "tests/sched_harness.h"
#include "tests/test_util.h"

static sim_req *reqs_alloc(int32_t n) { return calloc((size_t)n, sizeof(sim_req)); }

static void core_make(sim *s, ms_core_options *o) {
    ms_error err;
    ms_status st = ms_core_create(o, &s->core, &err);
    EXPECTF(st == MS_OK, "%s", err.msg);
}

static void expect_clean(sim *s) {
    ms_core_stats stats;
    ms_core_stats_get(s->core, &stats);
    EXPECTF(stats.kv_blocks_used == 0, "%d blocks still used", stats.kv_blocks_used);
    EXPECT(stats.active == 0);
    EXPECT(s->kv_errors == 0);
    EXPECT(s->gather_errors == 0);
    ms_core_finished f;
    EXPECT(!ms_core_pop_finished(s->core, &f));
}

/* Text-only requests arriving behind a burst of image requests get their first token
 * long before the images are encoded. */
static void test_text_never_waits(void) {
    enum { N = 12 };
    sim_req *r = reqs_alloc(N);
    for (int i = 0; i < N - 2; i++) r[i] = (sim_req){.at = 0, .n_text = 20, .n_images = 4, .max_tokens = 4};
    r[N - 2] = (sim_req){.at = 0.05, .n_text = 30, .max_tokens = 4};
    r[N - 1] = (sim_req){.at = 0.06, .n_text = 10, .max_tokens = 4};
    sim s;
    ms_core_options o;
    ms_core_options_default(&o);
    sim_init(&s, &o, r, N);
    s.cost.encode_per_image = 1.0; /* slow encoders: 40 images = 40 s on one worker */
    core_make(&s, &o);
    EXPECT(sim_run(&s, 1e6));
    double first_image_ttft = 1e9;
    for (int i = 0; i < N - 2; i++)
        if (r[i].fin.times.first_token < first_image_ttft) first_image_ttft = r[i].fin.times.first_token;
    for (int i = N - 2; i < N; i++) {
        EXPECT(r[i].fin.finish == MS_FINISH_STOP || r[i].fin.finish == MS_FINISH_LENGTH);
        EXPECTF(r[i].fin.times.first_token - r[i].at < 0.5, "text TTFT %g",
                r[i].fin.times.first_token - r[i].at);
        EXPECT(r[i].fin.times.first_token < first_image_ttft);
        EXPECT(r[i].fin.times.encode_queued == 0); /* skipped encode */
    }
    expect_clean(&s);
    sim_free(&s);
    free(r);
}

/* One request's 8 images go to 4 encoders (2 each) and prefill waits for all of them. */
static void test_images_spread_and_gathered(void) {
    sim_req *r = reqs_alloc(1);
    r[0] = (sim_req){.n_text = 10, .n_images = 8, .max_tokens = 3};
    sim s;
    ms_core_options o;
    ms_core_options_default(&o);
    o.workers[MS_STAGE_ENCODE] = 4;
    o.encode_max_batch_images = 1;
    sim_init(&s, &o, r, 1);
    core_make(&s, &o);
    EXPECT(sim_run(&s, 1e6));
    int per[4] = {0};
    double last = 0;
    for (int k = 0; k < 8; k++) {
        per[r[0].encoder_of[k]]++;
        if (r[0].image_done_at[k] > last) last = r[0].image_done_at[k];
    }
    for (int w = 0; w < 4; w++) EXPECTF(per[w] == 2, "encoder %d ran %d images", w, per[w]);
    EXPECT(r[0].fin.times.encode_end == last);
    EXPECT(r[0].fin.times.prefill_start >= last);
    /* 2 images per encoder in sequence: about 2 encode times, not 8 */
    EXPECT(last < 3 * s.cost.encode_per_image);
    expect_clean(&s);
    sim_free(&s);
    free(r);
}

/* Large image requests yield to small ones arriving soon after, but a steady stream of
 * small requests cannot starve them: they start within the aging bound. */
static void test_priority_aging(void) {
    enum { N = 400 };
    sim_req *r = reqs_alloc(N);
    /* small text requests every 20 ms, each 40 prefill tokens at 1 ms per token: the
     * prefill worker is always busy (overloaded) */
    for (int i = 0; i < N; i++) r[i] = (sim_req){.at = i * 0.02, .n_text = 40, .max_tokens = 2, .no_stop = true};
    r[5] = (sim_req){.at = 5 * 0.02, .n_text = 600, .n_images = 2, .max_tokens = 2, .no_stop = true};
    sim s;
    ms_core_options o;
    ms_core_options_default(&o);
    o.max_num_batched_tokens = 64;
    o.priority_aging_s = 1.0;
    o.short_prompt_tokens = 100;
    sim_init(&s, &o, r, N);
    s.cost.prefill_per_token = 0.001;
    s.cost.encode_per_image = 0.001;
    core_make(&s, &o);
    EXPECT(sim_run(&s, 1e6));
    double large_ready = r[5].fin.times.prefill_queued;
    /* small requests queued shortly after it went first */
    EXPECT(r[6].fin.times.prefill_start < r[5].fin.times.prefill_start);
    /* but nothing queued more than aging_s (1 s) after it goes before it, although
     * the prefill worker stays overloaded: it cannot starve */
    int passed_late = 0, after = 0;
    for (int i = 6; i < N; i++) {
        if (r[i].fin.times.prefill_queued <= large_ready + 1.0) continue;
        after++;
        passed_late += r[i].fin.times.prefill_start < r[5].fin.times.prefill_start;
    }
    EXPECT(after > 100);
    EXPECTF(passed_late == 0, "%d later requests passed the large one", passed_late);
    EXPECT(r[5].fin.finish == MS_FINISH_LENGTH);
    for (int i = 0; i < N; i++) EXPECT(r[i].done);
    expect_clean(&s);
    sim_free(&s);
    free(r);
}

/* The short/large class follows the model's tokens per image: with LLaVA-1.5-7b's
 * config (576 tokens an image, 4096 positions) and the default short_prompt_tokens, a
 * one-image prompt is short and passes a 4-image request queued half a second before
 * it, while a 2-image prompt is large and waits its turn. (A fixed 512-token threshold
 * made every LLaVA image request large: the short image class was empty.) */
static void test_classes_follow_model(void) {
    ms_llava_config cfg;
    ms_error err = {0};
    MS_CHECK(ms_llava_preset("llava-1.5-7b", &cfg, &err) == MS_OK);
    enum { N = 4 };
    sim_req *r = reqs_alloc(N);
    r[0] = (sim_req){.at = 0, .n_text = 3000, .max_tokens = 2, .no_stop = true};   /* keeps prefill busy ~3 s */
    r[1] = (sim_req){.at = 0.01, .n_text = 100, .n_images = 4, .max_tokens = 2, .no_stop = true}; /* large */
    r[2] = (sim_req){.at = 0.5, .n_text = 40, .n_images = 1, .max_tokens = 2, .no_stop = true};   /* short */
    r[3] = (sim_req){.at = 0.6, .n_text = 40, .n_images = 2, .max_tokens = 2, .no_stop = true};   /* large */
    sim s;
    ms_core_options o;
    ms_core_options_default(&o);
    o.max_model_len = cfg.text.max_position_embeddings;
    o.max_num_batched_tokens = 256;
    sim_init(&s, &o, r, N);
    s.image_tokens = cfg.image_seq_length;
    s.cost.prefill_per_token = 0.001;
    s.cost.encode_per_image = 0.001;
    core_make(&s, &o);
    EXPECT(sim_run(&s, 1e6));
    EXPECT(ms_core_large_prompt_tokens(&o, cfg.image_seq_length) == 576 + 512);
    EXPECTF(r[2].fin.times.prefill_start < r[1].fin.times.prefill_start,
            "one-image request (%d tokens) started prefill at %.3f s, after the 4-image one (%d tokens) at %.3f s",
            r[2].n_prompt, r[2].fin.times.prefill_start, r[1].n_prompt, r[1].fin.times.prefill_start);
    EXPECTF(r[1].fin.times.prefill_start < r[3].fin.times.prefill_start,
            "2-image request (%d tokens) passed the 4-image one queued 0.6 s before it", r[3].n_prompt);
    for (int i = 0; i < N; i++) EXPECT(r[i].fin.finish == MS_FINISH_LENGTH);
    expect_clean(&s);
    sim_free(&s);
    free(r);
}

/* Prefill batches never exceed the token budget; a long prompt is chunked. */
static void test_token_budget(void) {
    enum { N = 30 };
    sim_req *r = reqs_alloc(N);
    sim_make_mixed(r, N, 3, 50.0);
    r[0].n_text = 3000;
    sim s;
    ms_core_options o;
    ms_core_options_default(&o);
    o.max_num_batched_tokens = 256;
    sim_init(&s, &o, r, N);
    core_make(&s, &o);
    EXPECT(sim_run(&s, 1e6));
    EXPECT(s.max_prefill_tokens_seen <= 256);
    EXPECT(s.max_prefill_tokens_seen == 256);
    ms_core_stats st;
    ms_core_stats_get(s.core, &st);
    EXPECT(st.stage[MS_STAGE_PREFILL].batches >= 3000 / 256);
    EXPECT(sim_compare_alone(r, N, s.image_tokens) == 0);
    expect_clean(&s);
    sim_free(&s);
    free(r);
}

/* A KV pool too small for all the sequences: preemption happens, no request is lost,
 * and every output equals the output of running the request alone. */
static void test_preemption(ms_engine_mode mode) {
    enum { N = 60 };
    sim_req *r = reqs_alloc(N);
    sim_make_mixed(r, N, 7, 200.0);
    for (int i = 0; i < N; i++) {
        r[i].max_tokens = 40;
        r[i].no_stop = true;
    }
    sim s;
    ms_core_options o;
    ms_core_options_default(&o);
    o.mode = mode;
    o.block_size = 4;
    o.kv_blocks = 64; /* 256 tokens for ~60 sequences of up to ~110 */
    o.max_model_len = 256;
    o.workers[MS_STAGE_DECODE] = 2;
    sim_init(&s, &o, r, N);
    core_make(&s, &o);
    EXPECT(sim_run(&s, 1e6));
    ms_core_stats st;
    ms_core_stats_get(s.core, &st);
    EXPECTF(st.preemptions > 0, "no preemption happened (%s)", mode ? "mono" : "disagg");
    EXPECT(st.finished[MS_FINISH_LENGTH] == N);
    for (int i = 0; i < N; i++) EXPECT(r[i].n_out == 40);
    EXPECT(sim_compare_alone(r, N, s.image_tokens) == 0);
    expect_clean(&s);
    sim_free(&s);
    free(r);
}

/* Pools grow and shrink while requests stream; nothing is lost or changed. */
static void test_resize(ms_engine_mode mode) {
    enum { N = 120 };
    sim_req *r = reqs_alloc(N);
    sim_make_mixed(r, N, 11, 100.0);
    sim s;
    ms_core_options o;
    ms_core_options_default(&o);
    o.mode = mode;
    o.workers[MS_STAGE_ENCODE] = 2;
    o.workers[MS_STAGE_DECODE] = 3;
    o.max_num_seqs = 8;
    sim_init(&s, &o, r, N);
    if (mode == MS_MODE_DISAGG) {
        s.resizes[s.n_resizes++] = (sim_resize){0.2, MS_STAGE_ENCODE, 5};
        s.resizes[s.n_resizes++] = (sim_resize){0.25, MS_STAGE_PREFILL, 3};
        s.resizes[s.n_resizes++] = (sim_resize){0.5, MS_STAGE_ENCODE, 1};
        s.resizes[s.n_resizes++] = (sim_resize){0.55, MS_STAGE_PREFILL, 1};
    }
    s.resizes[s.n_resizes++] = (sim_resize){0.3, MS_STAGE_DECODE, 1};
    s.resizes[s.n_resizes++] = (sim_resize){0.6, MS_STAGE_DECODE, 4};
    s.resizes[s.n_resizes++] = (sim_resize){0.8, MS_STAGE_DECODE, 2};
    s.resizes[s.n_resizes++] = (sim_resize){0.35, MS_STAGE_PREPROCESS, 1};
    core_make(&s, &o);
    EXPECT(sim_run(&s, 1e6));
    ms_core_stats st;
    ms_core_stats_get(s.core, &st);
    EXPECT(st.finished[MS_FINISH_STOP] + st.finished[MS_FINISH_LENGTH] == N);
    EXPECT(st.stage[MS_STAGE_DECODE].workers == 2);
    EXPECT(sim_compare_alone(r, N, s.image_tokens) == 0);
    /* removed workers retire once idle */
    int32_t slots = ms_core_worker_slots(s.core, MS_STAGE_DECODE), retired = 0;
    for (int32_t w = 0; w < slots; w++) retired += ms_core_worker_retired(s.core, MS_STAGE_DECODE, w);
    EXPECT(retired == slots - 2);
    ms_error err;
    EXPECT(ms_core_resize(s.core, MS_STAGE_DECODE, 0, &err) == MS_ERR_INVALID);
    expect_clean(&s);
    sim_free(&s);
    free(r);
}

/* Cancel in every state frees queues and blocks; the others are unaffected. */
static void test_cancel(void) {
    enum { N = 80 };
    sim_req *r = reqs_alloc(N);
    sim_make_mixed(r, N, 5, 100.0);
    for (int i = 0; i < N; i += 3) r[i].cancel_at = r[i].at + 0.001 * (i % 40);
    r[1].fail_preprocess = true;
    r[1].n_images = 2;
    sim s;
    ms_core_options o;
    ms_core_options_default(&o);
    sim_init(&s, &o, r, N);
    core_make(&s, &o);
    EXPECT(sim_run(&s, 1e6));
    int cancelled = 0;
    for (int i = 0; i < N; i++) {
        EXPECT(r[i].done);
        if (r[i].fin.finish == MS_FINISH_CANCELLED) {
            cancelled++;
            EXPECT(r[i].fin.status == MS_ERR_CANCELLED);
        }
    }
    EXPECT(cancelled > N / 6);
    EXPECT(r[1].fin.finish == MS_FINISH_ERROR && r[1].fin.status == MS_ERR_INVALID);
    EXPECT(sim_compare_alone(r, N, s.image_tokens) == 0);
    expect_clean(&s);
    /* cancelling a finished or unknown id is a no-op */
    ms_core_cancel(s.core, r[0].id);
    ms_core_cancel(s.core, 999999);
    expect_clean(&s);
    sim_free(&s);
    free(r);
}

/* Prefill on device 0, decode on device 1: the KV goes by copy, outputs unchanged. */
static void test_cross_device(void) {
    enum { N = 20 };
    sim_req *r = reqs_alloc(N);
    sim_make_mixed(r, N, 13, 100.0);
    sim s;
    ms_core_options o;
    ms_core_options_default(&o);
    o.devices[MS_STAGE_PREFILL][0] = 0;
    o.n_devices[MS_STAGE_PREFILL] = 1;
    o.devices[MS_STAGE_DECODE][0] = 1;
    o.n_devices[MS_STAGE_DECODE] = 1;
    sim_init(&s, &o, r, N);
    core_make(&s, &o);
    EXPECT(sim_run(&s, 1e6));
    EXPECT(s.copies > 0);
    EXPECT(sim_compare_alone(r, N, s.image_tokens) == 0);
    expect_clean(&s);
    sim_free(&s);

    /* two prefill devices with chunked prompts; the pool shrinks to one device while
     * partial KV sits on the other: those requests recompute, none is stuck */
    sim_make_mixed(r, N, 19, 400.0);
    for (int i = 0; i < N; i++) r[i].n_text += 200;
    ms_core_options_default(&o);
    o.max_num_batched_tokens = 32;
    o.workers[MS_STAGE_PREFILL] = 2;
    o.workers[MS_STAGE_DECODE] = 2;
    for (int st = MS_STAGE_PREFILL; st <= MS_STAGE_DECODE; st++) {
        o.devices[st][0] = 0;
        o.devices[st][1] = 1;
        o.n_devices[st] = 2;
    }
    sim_init(&s, &o, r, N);
    s.resizes[s.n_resizes++] = (sim_resize){0.02, MS_STAGE_PREFILL, 1};
    core_make(&s, &o);
    EXPECT(sim_run(&s, 1e6));
    EXPECT(s.copies > 0);
    EXPECT(sim_compare_alone(r, N, s.image_tokens) == 0);
    expect_clean(&s);
    sim_free(&s);
    free(r);
}

/* Monolithic and disagg give the same outputs; admission control refuses when full. */
static void test_mono_equals_disagg_and_admission(void) {
    enum { N = 50 };
    sim_req *a = reqs_alloc(N), *b = reqs_alloc(N);
    sim_make_mixed(a, N, 17, 100.0);
    memcpy(b, a, N * sizeof *a);
    sim s1, s2;
    ms_core_options o;
    ms_core_options_default(&o);
    sim_init(&s1, &o, a, N);
    core_make(&s1, &o);
    EXPECT(sim_run(&s1, 1e6));
    ms_core_options_default(&o);
    o.mode = MS_MODE_MONOLITHIC;
    o.workers[MS_STAGE_DECODE] = 2;
    sim_init(&s2, &o, b, N);
    core_make(&s2, &o);
    EXPECT(sim_run(&s2, 1e6));
    for (int i = 0; i < N; i++) {
        EXPECT(a[i].n_out == b[i].n_out && memcmp(a[i].out, b[i].out, a[i].n_out * sizeof(int32_t)) == 0);
        EXPECT(a[i].fin.finish == b[i].fin.finish);
    }
    expect_clean(&s1);
    expect_clean(&s2);
    sim_free(&s1);
    sim_free(&s2);

    /* admission */
    ms_core_options_default(&o);
    o.max_queued_requests = 2;
    sim_init(&s1, &o, a, 0);
    core_make(&s1, &o);
    ms_core_req_desc d = {.n_prompt = 5, .max_tokens = 2};
    ms_error err;
    uint64_t id;
    EXPECT(ms_core_arrive(s1.core, &d, &id, &err) == MS_OK);
    EXPECT(ms_core_arrive(s1.core, &d, &id, &err) == MS_OK);
    EXPECT(ms_core_arrive(s1.core, &d, &id, &err) == MS_ERR_BUSY);
    d.n_prompt = 5000;
    ms_core_cancel_all(s1.core);
    EXPECT(ms_core_arrive(s1.core, &d, &id, &err) == MS_ERR_LIMIT);
    ms_core_stats st;
    ms_core_stats_get(s1.core, &st);
    EXPECT(st.rejected == 1 && st.finished[MS_FINISH_CANCELLED] == 2);
    sim_free(&s1);
    free(a);
    free(b);
}

/* Two chunked prefills that together need more KV than the pool: the younger one
 * (ahead in the queue by priority) cannot preempt the older one, so the older one must
 * be run out of turn (it preempts the younger) or both wait forever. Found by
 * `bench simulate` on a synthetic week. */
static void test_partial_prefills_do_not_stall(void) {
    sim_req *r = reqs_alloc(2);
    /* 0 starts its chunked prefill; 1 arrives, is ahead by priority, and runs out of
     * blocks while 0 holds its first chunk's */
    r[0] = (sim_req){.at = 0.0, .n_text = 700, .priority = 1, .max_tokens = 20, .no_stop = true};
    r[1] = (sim_req){.at = 0.01, .n_text = 700, .priority = 0, .max_tokens = 20, .no_stop = true};
    sim s;
    ms_core_options o;
    ms_core_options_default(&o);
    o.block_size = 4;
    o.kv_blocks = 200; /* 800 tokens: each request fits alone (720), not both */
    o.max_model_len = 800;
    o.max_num_batched_tokens = 128;
    sim_init(&s, &o, r, 2);
    core_make(&s, &o);
    EXPECTF(sim_run(&s, 1e5), "two partial prefills stalled");
    for (int i = 0; i < 2; i++) EXPECTF(r[i].done && r[i].n_out == 20, "request %d: %d tokens", i, r[i].n_out);
    expect_clean(&s);
    sim_free(&s);
    free(r);
}

int main(void) {
    test_text_never_waits();
    test_images_spread_and_gathered();
    test_priority_aging();
    test_classes_follow_model();
    test_token_budget();
    test_preemption(MS_MODE_DISAGG);
    test_preemption(MS_MODE_MONOLITHIC);
    test_resize(MS_MODE_DISAGG);
    test_resize(MS_MODE_MONOLITHIC);
    test_cancel();
    test_cross_device();
    test_mono_equals_disagg_and_admission();
    test_partial_prefills_do_not_stall();
    return ms_test_finish("test_sched_core");
}
