/*
 * The simulator against hand-computed timelines on the scheduler core, the cost model's
 * interpolation, and tune on a small window (its answer meets the target and one GPU
 * fewer never does).
 */
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/simulate.h"
#include "tests/test_util.h"

/* Flat costs make timelines easy to compute by hand: preprocess 50 ms per request,
 * encode 200 ms per batch, prefill 100 ms per batch, decode 10 ms per step. */
static const char k_flat[] =
    "{\"model\":\"flat\",\"device\":\"none\",\"image_tokens\":10,"
    "\"preprocess\":{\"images\":[1,100],\"seconds\":[0.05,0.05]},"
    "\"encode\":{\"images\":[1,100],\"seconds\":[0.2,0.2]},"
    "\"prefill\":{\"tokens\":[1,100000],\"seconds\":[0.1,0.1]},"
    "\"decode\":{\"batch\":[1,1000],\"context\":[1],\"seconds\":[[0.01,0.01]]}}";

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    MS_CHECK(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void test_cost_model(void) {
    ms_cost_model m;
    ms_error err = {0};
    const char *j = "{\"image_tokens\":576,\"preprocess\":{\"images\":[1],\"seconds\":[0.01]},"
                    "\"encode\":{\"images\":[1,4],\"seconds\":[0.1,0.25]},"
                    "\"prefill\":{\"tokens\":[100,200,400],\"seconds\":[1,2,3]},"
                    "\"decode\":{\"batch\":[1,3],\"context\":[100,300],\"seconds\":[[1,3],[2,6]]}}";
    EXPECTF(ms_cost_model_parse(j, &m, &err) == MS_OK, "%s", err.msg);
    EXPECT_NEAR(ms_cost_encode(&m, 2), 0.15, 1e-12);
    EXPECT_NEAR(ms_cost_encode(&m, 7), 0.40, 1e-12);      /* extended past the last point */
    EXPECT_NEAR(ms_cost_prefill(&m, 300), 2.5, 1e-12);
    EXPECT_NEAR(ms_cost_prefill(&m, 150), 1.5, 1e-12);
    EXPECT_NEAR(ms_cost_prefill(&m, 0), 0.0, 1e-12);      /* extended below, never negative */
    EXPECT_NEAR(ms_cost_preprocess(&m, 3), 0.03, 1e-12);  /* one point: proportional */
    EXPECT_NEAR(ms_cost_decode(&m, 2, 100), 2.0, 1e-12);
    EXPECT_NEAR(ms_cost_decode(&m, 2, 200), 3.0, 1e-12);  /* between contexts */
    EXPECT_NEAR(ms_cost_decode(&m, 3, 50), 3.0, 1e-12);
    EXPECT(ms_cost_model_parse("{\"image_tokens\":5}", &m, &err) == MS_ERR_INVALID);
    EXPECT(ms_cost_model_parse("{\"image_tokens\":5,\"preprocess\":{\"images\":[2,1],\"seconds\":[1,1]}}", &m, &err) ==
           MS_ERR_INVALID);
    EXPECT(ms_cost_model_parse("not json", &m, &err) == MS_ERR_INVALID);
}

static ms_trace_set make_set(const ms_trace_req *reqs, int n) {
    ms_trace_set s = {0};
    s.reqs = ms_xmalloc((size_t)n * sizeof *s.reqs);
    memcpy(s.reqs, reqs, (size_t)n * sizeof *s.reqs);
    s.n = n;
    return s;
}

static void test_timelines(void) {
    ms_cost_model m;
    ms_error err = {0};
    MS_CHECK(ms_cost_model_parse(k_flat, &m, &err) == MS_OK);
    ms_sim_options o = {.cost = &m, .max_images = 100, .record_itl = 1};
    ms_core_options_default(&o.core);
    /* A text request (100 tokens, 5 out) at 0, an image request (1 image, 200 tokens,
     * 3 out) at 10 s, two text requests together at 20 s. */
    const ms_trace_req reqs[] = {
        {.send_s = 0, .context_tokens = 100, .generated_tokens = 5},
        {.send_s = 10, .n_images = 1, .context_tokens = 200, .generated_tokens = 3},
        {.send_s = 20, .context_tokens = 50, .generated_tokens = 2},
        {.send_s = 20, .context_tokens = 60, .generated_tokens = 2},
    };
    ms_trace_set set = make_set(reqs, 4);
    ms_bench_run run;
    ms_sim_stats ss;
    EXPECT(ms_simulate_run(&o, &set, &run, &ss, &err) == MS_OK);
    EXPECT(ss.stalled == 0 && ss.rejected == 0);
    const ms_run_request *r = run.reqs;
    /* text: prefill 0.1 s gives the first token; 4 decode steps of 10 ms. */
    EXPECT(r[0].m.ok);
    EXPECT_NEAR(r[0].m.ttft_s, 0.1, 1e-9);
    EXPECT_NEAR(r[0].m.e2e_s, 0.14, 1e-9);
    EXPECT_NEAR(ms_req_tpot(&r[0].m), 0.01, 1e-9);
    EXPECT(r[0].m.output_tokens == 5 && r[0].m.n_itl == 4);
    EXPECT_NEAR(r[0].m.itl[2], 0.01, 1e-9);
    EXPECT(r[0].actual_prompt == 100);
    /* image: preprocess 0.05 + encode 0.2 + prefill 0.1; 2 decode steps. */
    EXPECT_NEAR(r[1].m.ttft_s, 0.35, 1e-9);
    EXPECT_NEAR(r[1].m.e2e_s, 0.37, 1e-9);
    EXPECT(r[1].actual_prompt == 200 && r[1].images_sent == 1);
    EXPECT_NEAR(r[1].stage_start[1] - r[1].stage_queued[1], 0.0, 1e-9);  /* encode waited 0 */
    EXPECT_NEAR(r[1].stage_end[1] - r[1].stage_start[1], 0.2, 1e-9);     /* encode took 0.2 */
    /* two together: one prefill batch for both, then one shared decode step. */
    EXPECT_NEAR(r[2].m.ttft_s, 0.1, 1e-9);
    EXPECT_NEAR(r[3].m.ttft_s, 0.1, 1e-9);
    EXPECT_NEAR(r[2].m.e2e_s, 0.11, 1e-9);
    EXPECT_NEAR(r[3].m.e2e_s, 0.11, 1e-9);
    ms_bench_metrics bm;
    ms_run_metrics(&run, -1, &bm);
    EXPECT(bm.completed == 4 && bm.failed == 0);
    EXPECT_NEAR(run.duration_s, 20.11, 1e-9);
    ms_bench_run_free(&run);
    /* Monolithic, one LLM worker: the same image request runs encode on that worker. */
    o.core.mode = MS_MODE_MONOLITHIC;
    EXPECT(ms_simulate_run(&o, &set, &run, &ss, &err) == MS_OK);
    EXPECT(run.reqs[1].m.ok && run.reqs[1].m.ttft_s >= 0.35 - 1e-9);
    EXPECT(run.reqs[0].m.ok && run.reqs[3].m.ok);
    ms_bench_run_free(&run);
    /* A prompt over max_model_len is refused at arrival and counted as failed. */
    o.core.mode = MS_MODE_DISAGG;
    o.core.max_model_len = 80;
    EXPECT(ms_simulate_run(&o, &set, &run, &ss, &err) == MS_OK);
    EXPECT(!run.reqs[0].m.ok && run.reqs[0].error && run.reqs[2].m.ok && ss.rejected == 2);
    ms_run_metrics(&run, -1, &bm);
    EXPECT(bm.requests == 4 && bm.failed == 2);
    ms_bench_run_free(&run);
    free(set.reqs);
}

/* The context simulate runs with follows the profile (as serve's follows the model):
 * a 6,000-token prompt fits a profile that records 8192 positions, is refused with
 * one that records 4096, and --max-model-len overrides both; a profile without the
 * field (older files) gives 4096. */
static void test_context_from_profile(void) {
    static const char k_curves[] = "\"preprocess\":{\"images\":[1],\"seconds\":[0.01]},"
                                   "\"encode\":{\"images\":[1],\"seconds\":[0.1]},"
                                   "\"prefill\":{\"tokens\":[1,10000],\"seconds\":[0.1,0.1]},"
                                   "\"decode\":{\"batch\":[1],\"context\":[1],\"seconds\":[[0.01]]}}";
    char j8k[600], j4k[600], jold[600];
    snprintf(j8k, sizeof j8k, "{\"image_tokens\":64,\"max_model_len\":8192,%s", k_curves);
    snprintf(j4k, sizeof j4k, "{\"image_tokens\":64,\"max_model_len\":4096,%s", k_curves);
    snprintf(jold, sizeof jold, "{\"image_tokens\":64,%s", k_curves);
    ms_cost_model m8k, m4k, mold, mean;
    ms_error err = {0};
    EXPECTF(ms_cost_model_parse(j8k, &m8k, &err) == MS_OK, "%s", err.msg);
    EXPECTF(ms_cost_model_parse(j4k, &m4k, &err) == MS_OK, "%s", err.msg);
    EXPECTF(ms_cost_model_parse(jold, &mold, &err) == MS_OK, "%s", err.msg);
    EXPECT(m8k.max_model_len == 8192 && mold.max_model_len == 0);
    const ms_cost_model *both[2] = {&m8k, &m4k};
    EXPECT(ms_cost_model_mean(both, 2, &mean, &err) == MS_OK && mean.max_model_len == 4096);
    char bad[600];
    snprintf(bad, sizeof bad, "{\"image_tokens\":64,\"max_model_len\":\"big\",%s", k_curves);
    EXPECT(ms_cost_model_parse(bad, &mold, &err) == MS_ERR_INVALID);
    EXPECTF(strstr(err.msg, "max_model_len"), "%s", err.msg);
    MS_CHECK(ms_cost_model_parse(jold, &mold, &err) == MS_OK);

    const ms_trace_req reqs[] = {{.send_s = 0, .context_tokens = 6000, .generated_tokens = 2}};
    ms_trace_set set = make_set(reqs, 1);
    ms_sim_options o = {.max_images = 100, .record_itl = -1};
    ms_sim_core_options_default(&o.core); /* as `bench simulate` */
    const struct {
        const ms_cost_model *cost;
        int32_t flag;
        bool ok;
    } k_cases[] = {{&m8k, 0, true}, {&m4k, 0, false}, {&mold, 0, false}, {&m4k, 8192, true}, {&m8k, 4096, false}};
    for (size_t k = 0; k < sizeof k_cases / sizeof k_cases[0]; k++) {
        o.cost = k_cases[k].cost;
        o.core.max_model_len = k_cases[k].flag;
        ms_bench_run run;
        ms_sim_stats ss;
        EXPECT(ms_simulate_run(&o, &set, &run, &ss, &err) == MS_OK);
        EXPECTF(run.reqs[0].m.ok == k_cases[k].ok, "case %zu: profile context %d, flag %d", k,
                k_cases[k].cost->max_model_len, k_cases[k].flag);
        ms_bench_run_free(&run);
    }
    free(set.reqs);
}

/* --shared-cores: batches running at once share the host's cores (processor sharing),
 * hand-computed on the flat costs. An image request and a text request (one output
 * token each) arrive together on 2 cores, workers wanting 2 threads, preprocess 1:
 *   0      preprocess (1) + text prefill (2): 3 threads wanted, both at 2/3 speed
 *   0.075  preprocess done (0.05 of work); prefill has 0.05 left; encode (2) starts:
 *          4 threads wanted, both at 1/2
 *   0.175  text prefill done (TTFT 0.175); encode has 0.15 left, alone: full speed
 *   0.325  encode done; image prefill 0.1 alone: image TTFT 0.425.
 * With workers wanting 1 thread nothing is oversubscribed: the unshared 0.1 and 0.35. */
static void test_shared_cores(void) {
    ms_cost_model m;
    ms_error err = {0};
    MS_CHECK(ms_cost_model_parse(k_flat, &m, &err) == MS_OK);
    ms_sim_options o = {.cost = &m, .max_images = 100, .record_itl = 1, .shared_cores = 2};
    ms_core_options_default(&o.core);
    const ms_trace_req reqs[] = {
        {.send_s = 0, .n_images = 1, .context_tokens = 200, .generated_tokens = 1},
        {.send_s = 0, .context_tokens = 100, .generated_tokens = 1},
    };
    ms_trace_set set = make_set(reqs, 2);
    ms_bench_run run;
    ms_sim_stats ss;
    EXPECT(ms_simulate_run(&o, &set, &run, &ss, &err) == MS_OK);
    EXPECT(run.reqs[0].m.ok && run.reqs[1].m.ok && ss.stalled == 0);
    EXPECT_NEAR(run.reqs[1].m.ttft_s, 0.175, 1e-9);
    EXPECT_NEAR(run.reqs[0].stage_end[0], 0.075, 1e-9);  /* preprocess */
    EXPECT_NEAR(run.reqs[0].stage_end[1], 0.325, 1e-9);  /* encode */
    EXPECT_NEAR(run.reqs[0].m.ttft_s, 0.425, 1e-9);
    ms_bench_run_free(&run);
    o.worker_threads = 1;
    EXPECT(ms_simulate_run(&o, &set, &run, &ss, &err) == MS_OK);
    EXPECT_NEAR(run.reqs[1].m.ttft_s, 0.1, 1e-9);
    EXPECT_NEAR(run.reqs[0].m.ttft_s, 0.35, 1e-9);
    ms_bench_run_free(&run);
    /* Workers wanting more threads than the host has: alone still at the profile's
     * speed (it was measured so); together the 2 cores go 2 ways (preprocess 1 + prefill
     * capped at 2 = 3 wanted, as in the first case). */
    o.worker_threads = 8;
    EXPECT(ms_simulate_run(&o, &set, &run, &ss, &err) == MS_OK);
    EXPECT_NEAR(run.reqs[1].m.ttft_s, 0.175, 1e-9);
    EXPECT_NEAR(run.reqs[0].m.ttft_s, 0.425, 1e-9);
    ms_bench_run_free(&run);
    /* Off (0), the default: each worker its own device, whatever else runs. */
    o.shared_cores = 0;
    EXPECT(ms_simulate_run(&o, &set, &run, &ss, &err) == MS_OK);
    EXPECT_NEAR(run.reqs[1].m.ttft_s, 0.1, 1e-9);
    EXPECT_NEAR(run.reqs[0].m.ttft_s, 0.35, 1e-9);
    ms_bench_run_free(&run);
    free(set.reqs);
}

/* The profile's front end (client, HTTP, parsing: before the engine) delays the engine's
 * arrival and counts in TTFT and E2E; stage times stay from the engine's arrival. An
 * image request sent at 0 (front end 0.03 s) is overtaken by a text request sent at
 * 0.01 s (front end 0.01 s): the text one reaches the engine at 0.02 and prefills alone
 * (TTFT 0.01 + 0.1); the image one arrives at 0.03: preprocess 0.05 and encode 0.2,
 * then its prefill from 0.28 (the text one's ended at 0.12): TTFT 0.03 + 0.35 = 0.38. */
static void test_frontend(void) {
    static const char k_fe[] =
        "{\"model\":\"flat\",\"device\":\"none\",\"image_tokens\":10,"
        "\"preprocess\":{\"images\":[1,100],\"seconds\":[0.05,0.05]},"
        "\"encode\":{\"images\":[1,100],\"seconds\":[0.2,0.2]},"
        "\"prefill\":{\"tokens\":[1,100000],\"seconds\":[0.1,0.1]},"
        "\"decode\":{\"batch\":[1,1000],\"context\":[1],\"seconds\":[[0.01,0.01]]},"
        "\"frontend\":{\"images\":[0,1],\"seconds\":[0.01,0.03]}}";
    ms_cost_model m;
    ms_error err = {0};
    EXPECTF(ms_cost_model_parse(k_fe, &m, &err) == MS_OK, "%s", err.msg);
    EXPECT_NEAR(ms_cost_frontend(&m, 0), 0.01, 1e-12);
    EXPECT_NEAR(ms_cost_frontend(&m, 2), 0.05, 1e-12);
    ms_sim_options o = {.cost = &m, .max_images = 100, .record_itl = 1};
    ms_core_options_default(&o.core);
    const ms_trace_req reqs[] = {
        {.send_s = 0, .n_images = 1, .context_tokens = 200, .generated_tokens = 1},
        {.send_s = 0.01, .context_tokens = 100, .generated_tokens = 3},
    };
    ms_trace_set set = make_set(reqs, 2);
    ms_bench_run run;
    ms_sim_stats ss;
    EXPECT(ms_simulate_run(&o, &set, &run, &ss, &err) == MS_OK);
    EXPECT(run.reqs[0].m.ok && run.reqs[1].m.ok);
    EXPECT_NEAR(run.reqs[1].m.ttft_s, 0.11, 1e-9);
    EXPECT_NEAR(run.reqs[1].m.e2e_s, 0.13, 1e-9);        /* + 2 decode steps */
    EXPECT_NEAR(run.reqs[1].stage_end[2], 0.1, 1e-9);    /* from the engine's arrival */
    EXPECT_NEAR(run.reqs[0].m.ttft_s, 0.38, 1e-9);
    EXPECT_NEAR(run.reqs[0].stage_start[0], 0.0, 1e-9);  /* preprocess at once on arrival */
    ms_bench_run_free(&run);
    free(set.reqs);
    /* Without "frontend" nothing is added (the flat model of the other tests). */
    MS_CHECK(ms_cost_model_parse(k_flat, &m, &err) == MS_OK);
    EXPECT(m.frontend.n == 0 && ms_cost_frontend(&m, 3) == 0.0);
}

/* The mean of two profiles measured at different points: on every curve, at measured
 * points and between and past them, it is the mean of the two models' own values. */
static void test_cost_mean(void) {
    const char *a = "{\"model\":\"m\",\"device\":\"cpu\",\"image_tokens\":64,"
                    "\"preprocess\":{\"images\":[1],\"seconds\":[0.01]},"
                    "\"encode\":{\"images\":[1,4],\"seconds\":[0.1,0.25]},"
                    "\"prefill\":{\"tokens\":[100,200,400],\"seconds\":[1,2,3]},"
                    "\"decode\":{\"batch\":[1,3],\"context\":[100,300],\"seconds\":[[1,3],[2,6]]},"
                    "\"frontend\":{\"images\":[0,2],\"seconds\":[0.001,0.005]}}";
    const char *b = "{\"model\":\"m\",\"device\":\"cpu\",\"image_tokens\":64,"
                    "\"preprocess\":{\"images\":[2,8],\"seconds\":[0.03,0.1]},"
                    "\"encode\":{\"images\":[2],\"seconds\":[0.3]},"
                    "\"prefill\":{\"tokens\":[50,300],\"seconds\":[0.2,4]},"
                    "\"decode\":{\"batch\":[2,4,8],\"context\":[200],\"seconds\":[[2,3,5]]}}";
    ms_cost_model ma, mb, mean;
    ms_error err = {0};
    MS_CHECK(ms_cost_model_parse(a, &ma, &err) == MS_OK && ms_cost_model_parse(b, &mb, &err) == MS_OK);
    const ms_cost_model *both[] = {&ma, &mb};
    EXPECTF(ms_cost_model_mean(both, 2, &mean, &err) == MS_OK, "%s", err.msg);
    EXPECT(mean.image_tokens == 64 && mean.prefill.n == 5 && mean.n_ctx == 3 && strstr(mean.device, "mean of 2"));
    for (int32_t x = 0; x <= 12; x++) {
        EXPECT_NEAR(ms_cost_preprocess(&mean, x), 0.5 * (ms_cost_preprocess(&ma, x) + ms_cost_preprocess(&mb, x)), 1e-12);
        EXPECT_NEAR(ms_cost_encode(&mean, x), 0.5 * (ms_cost_encode(&ma, x) + ms_cost_encode(&mb, x)), 1e-12);
        EXPECT_NEAR(ms_cost_frontend(&mean, x), ms_cost_frontend(&ma, x), 1e-12); /* b has none */
    }
    /* From the first measured point on (below it b's extension would go negative and is
     * clamped at 0, which no piecewise-linear mean reproduces). */
    for (int32_t t = 50; t <= 800; t += 25)
        EXPECT_NEAR(ms_cost_prefill(&mean, t), 0.5 * (ms_cost_prefill(&ma, t) + ms_cost_prefill(&mb, t)), 1e-12);
    for (int32_t bs = 1; bs <= 12; bs++)
        for (double ctx = 50; ctx <= 500; ctx += 37.5)
            EXPECT_NEAR(ms_cost_decode(&mean, bs, ctx),
                        0.5 * (ms_cost_decode(&ma, bs, ctx) + ms_cost_decode(&mb, bs, ctx)), 1e-9);
    /* One profile: itself. Different image_tokens: not the same model. */
    const ms_cost_model *one[] = {&ma};
    EXPECT(ms_cost_model_mean(one, 1, &mean, &err) == MS_OK && ms_cost_prefill(&mean, 150) == 1.5);
    mb.image_tokens = 576;
    EXPECT(ms_cost_model_mean(both, 2, &mean, &err) == MS_ERR_INVALID && strstr(err.msg, "image_tokens"));
    /* From files, and the simulator's flag takes several. */
    char pa[64], pb[64];
    snprintf(pa, sizeof pa, "testdata/mean-a-%d.json", (int)getpid());
    snprintf(pb, sizeof pb, "testdata/mean-b-%d.json", (int)getpid());
    write_text(pa, a);
    write_text(pb, b);
    const char *paths[] = {pa, pb, "testdata/no-such-profile.json"};
    EXPECT(ms_cost_model_load_mean(paths, 2, &mean, &err) == MS_OK);
    EXPECT_NEAR(ms_cost_prefill(&mean, 300), 0.5 * (2.5 + 4), 1e-12);
    EXPECT(ms_cost_model_load_mean(paths, 3, &mean, &err) == MS_ERR_NOT_FOUND && strstr(err.msg, "no-such-profile"));
    EXPECT(ms_cost_model_load_mean(paths, 0, &mean, &err) == MS_ERR_INVALID);
    ms_sim_options o = {0};
    ms_profile_paths pp = {0};
    char *argv[] = {"x", "--profile", pa, "--profile", pb};
    for (int i = 1; i < 5; i++) EXPECT(ms_sim_input_flag(&o, &pp, 5, argv, &i, &err) == 1);
    EXPECT(pp.n == 2 && !strcmp(pp.path[0], pa) && !strcmp(pp.path[1], pb));
    remove(pa);
    remove(pb);
}

/* Per-image costs: with the profile's pool and seed, each request is charged the images
 * the replayer sends it (ms_image_pool_pick); with another seed, the per-count curves.
 * Pool of 4 (seed 7): preprocess 10/20/30/40 ms, front end beyond text-only 0/0/50/0 ms;
 * text-only front end 1 ms. Request 0 (1 image) sends image 0, request 1 image 3,
 * request 2 (2 images) images 2 and 3. Requests 10 s apart: nothing queues.
 * TTFT = front end + preprocess + encode 0.2 + prefill 0.1. */
static void test_per_image(void) {
    static const char k_img[] =
        "{\"model\":\"flat\",\"device\":\"none\",\"image_tokens\":10,"
        "\"preprocess\":{\"images\":[1,100],\"seconds\":[0.05,0.05]},"
        "\"encode\":{\"images\":[1,100],\"seconds\":[0.2,0.2]},"
        "\"prefill\":{\"tokens\":[1,100000],\"seconds\":[0.1,0.1]},"
        "\"decode\":{\"batch\":[1,1000],\"context\":[1],\"seconds\":[[0.01,0.01]]},"
        "\"frontend\":{\"images\":[0,1,2],\"seconds\":[0.001,0.002,0.003]},"
        "\"images\":{\"pool\":4,\"seed\":7,\"preprocess\":[0.01,0.02,0.03,0.04],\"frontend\":[0,0,0.05,0]}}";
    ms_cost_model m;
    ms_error err = {0};
    EXPECTF(ms_cost_model_parse(k_img, &m, &err) == MS_OK, "%s", err.msg);
    EXPECT(m.images.n == 4 && m.images.seed == 7 && m.images.has_frontend);
    EXPECT(ms_cost_images_match(&m, 4, 7) && !ms_cost_images_match(&m, 16, 7) && !ms_cost_images_match(&m, 4, 8));
    ms_sim_options o = {.cost = &m, .max_images = 100, .record_itl = 1, .image_pool = 4};
    ms_sim_core_options_default(&o.core);
    ms_trace_select_default(&o.sel);
    o.sel.seed = 7;
    const ms_trace_req reqs[] = {
        {.send_s = 0, .n_images = 1, .context_tokens = 50, .generated_tokens = 1},
        {.send_s = 10, .n_images = 1, .context_tokens = 50, .generated_tokens = 1},
        {.send_s = 20, .n_images = 2, .context_tokens = 50, .generated_tokens = 1},
    };
    ms_trace_set set = make_set(reqs, 3);
    ms_bench_run run;
    ms_sim_stats ss;
    EXPECT(ms_simulate_run(&o, &set, &run, &ss, &err) == MS_OK && ss.per_image);
    const double pre[3] = {0.01, 0.04, 0.07}, fe[3] = {0.001, 0.001, 0.051};
    for (int i = 0; i < 3; i++) {
        EXPECTF(run.reqs[i].m.ok, "request %d", i);
        EXPECT_NEAR(run.reqs[i].stage_end[0], pre[i], 1e-9);
        EXPECT_NEAR(run.reqs[i].m.ttft_s, fe[i] + pre[i] + 0.3, 1e-9);
    }
    ms_bench_run_free(&run);
    /* Another seed: other images than the profile measured; the curves by count. */
    o.sel.seed = 8;
    EXPECT(ms_simulate_run(&o, &set, &run, &ss, &err) == MS_OK && !ss.per_image);
    EXPECT_NEAR(run.reqs[0].stage_end[0], 0.05, 1e-9);
    EXPECT_NEAR(run.reqs[2].stage_end[0], 0.05, 1e-9);
    EXPECT_NEAR(run.reqs[2].m.ttft_s, 0.003 + 0.05 + 0.3, 1e-9);
    ms_bench_run_free(&run);
    free(set.reqs);
    /* The mean keeps per-image costs only when every profile measured the same pool. */
    ms_cost_model m2 = m, mean;
    for (int i = 0; i < 4; i++) m2.images.preprocess[i] *= 3;
    const ms_cost_model *both[] = {&m, &m2};
    EXPECT(ms_cost_model_mean(both, 2, &mean, &err) == MS_OK && mean.images.n == 4);
    EXPECT_NEAR(mean.images.preprocess[1], 0.04, 1e-12);
    EXPECT_NEAR(mean.images.frontend[2], 0.05, 1e-12);
    m2.images.seed = 9;
    EXPECT(ms_cost_model_mean(both, 2, &mean, &err) == MS_OK && mean.images.n == 0);
    /* Malformed: arrays that do not match the pool. */
    EXPECT(ms_cost_model_parse("{\"image_tokens\":5,\"preprocess\":{\"images\":[1],\"seconds\":[1]},"
                               "\"encode\":{\"images\":[1],\"seconds\":[1]},\"prefill\":{\"tokens\":[1],\"seconds\":[1]},"
                               "\"images\":{\"pool\":3,\"seed\":1,\"preprocess\":[0.1,0.2]},"
                               "\"decode\":{\"batch\":[1],\"context\":[1],\"seconds\":[[1]]}}",
                               &m, &err) == MS_ERR_INVALID && strstr(err.msg, "images"));
}

/* Runs fn(argc, argv) with stdout in a file; returns the exit status, *text the output. */
static int captured(int (*fn)(int, char **), char **argv, int argc, char **text) {
    char path[64];
    snprintf(path, sizeof path, "testdata/out-%d.txt", (int)getpid());
    fflush(stdout);
    const int saved = dup(1), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    const int rc = fn(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(fd);
    close(saved);
    *text = ms_test_read_file(path, NULL);
    remove(path);
    return rc;
}

/* `bench compare` on two simulated reports of one window: the same profile gives 0%
 * everywhere; a profile with every prefill twice as long moves TTFT by more than 15%
 * (exit 1), which a wide enough tolerance accepts; bad input exits 2. The hand example:
 * one text request, prefill 0.1 s vs 0.2 s: TTFT 100 vs 200 ms, +100%. */
static void test_compare(void) {
    ms_cost_model m1, m2;
    ms_error err = {0};
    MS_CHECK(ms_cost_model_parse(k_flat, &m1, &err) == MS_OK);
    m2 = m1;
    for (int i = 0; i < m2.prefill.n; i++) m2.prefill.y[i] *= 2;
    const ms_trace_req reqs[] = {{.send_s = 0, .context_tokens = 100, .generated_tokens = 3}};
    ms_trace_set set = make_set(reqs, 1);
    char dirs[3][64];
    const ms_cost_model *models[3] = {&m1, &m1, &m2};
    for (int k = 0; k < 3; k++) {
        snprintf(dirs[k], sizeof dirs[k], "testdata/compare-%d-%d", (int)getpid(), k);
        ms_sim_options o = {.cost = models[k], .max_images = 100, .record_itl = 1};
        ms_sim_core_options_default(&o.core);
        ms_bench_run run;
        ms_sim_stats ss;
        MS_CHECK(ms_simulate_run(&o, &set, &run, &ss, &err) == MS_OK);
        run.kind = "simulate";
        EXPECTF(ms_report_write(&run, dirs[k], false, &err) == MS_OK, "%s", err.msg);
        ms_bench_run_free(&run);
    }
    free(set.reqs);
    char *out = NULL;
    char *same[] = {"compare", dirs[0], dirs[1]};
    EXPECT(captured(ms_bench_compare_main, same, 3, &out) == 0);
    EXPECTF(out && strstr(out, "2 of 2 checked numbers within 15.0%"), "%s", out ? out : "");
    free(out);
    char *twice[] = {"compare", dirs[0], dirs[2]};
    EXPECT(captured(ms_bench_compare_main, twice, 3, &out) == 1);
    EXPECTF(out && strstr(out, "overall.ttft.p50: 100.0 ms vs 200.0 ms: +100.0% OUTSIDE"), "%s", out ? out : "");
    free(out);
    char *wide[] = {"compare", dirs[0], dirs[2], "--tolerance", "150", "--check", "text.ttft.p99,overall.e2e.mean"};
    EXPECT(captured(ms_bench_compare_main, wide, 7, &out) == 0);
    /* E2E: 0.1 + 2 decode steps of 0.01 = 120 ms vs 220 ms. */
    EXPECTF(out && strstr(out, "overall.e2e.mean: 120.0 ms vs 220.0 ms: +83.3% within"), "%s", out ? out : "");
    free(out);
    char *image[] = {"compare", dirs[0], dirs[2], "--check", "image.ttft.p50"}; /* no image request: missing */
    EXPECT(captured(ms_bench_compare_main, image, 5, &out) == 1);
    EXPECT(out && strstr(out, "MISSING"));
    free(out);
    char *bad_check[] = {"compare", dirs[0], dirs[2], "--check", "overall.ttft.p42"};
    EXPECT(captured(ms_bench_compare_main, bad_check, 5, &out) == 2);
    free(out);
    char *missing[] = {"compare", dirs[0], "testdata/no-such-report"};
    EXPECT(captured(ms_bench_compare_main, missing, 3, &out) == 2);
    free(out);
    char *one[] = {"compare", dirs[0]};
    EXPECT(captured(ms_bench_compare_main, one, 2, &out) == 2);
    free(out);
    for (int k = 0; k < 3; k++) ms_test_system("rm -rf %s", dirs[k]);
}

/* Runs `bench tune`, returns its stdout. */
static char *tune_output(char **argv, int argc) {
    char *s = NULL;
    EXPECT(captured(ms_bench_tune_main, argv, argc, &s) == 0);
    return s;
}

static void test_tune(void) {
    /* A cost model where encode is the bottleneck: 0.8 s per batch of 2 images, one image
     * request every 0.5 s: one encoder cannot keep up. */
    const char *prof = "{\"model\":\"t\",\"device\":\"none\",\"image_tokens\":10,"
                       "\"preprocess\":{\"images\":[1],\"seconds\":[0.001]},"
                       "\"encode\":{\"images\":[1,2],\"seconds\":[0.5,0.8]},"
                       "\"prefill\":{\"tokens\":[1,4096],\"seconds\":[0.01,0.05]},"
                       "\"decode\":{\"batch\":[1,256],\"context\":[1],\"seconds\":[[0.002,0.004]]}}";
    char ppath[64], tpath[64];
    snprintf(ppath, sizeof ppath, "testdata/tune-prof-%d.json", (int)getpid());
    snprintf(tpath, sizeof tpath, "testdata/tune-trace-%d.csv", (int)getpid());
    write_text(ppath, prof);
    FILE *f = fopen(tpath, "w");
    fprintf(f, "TIMESTAMP,NumImages,ContextTokens,GeneratedTokens\n");
    for (int i = 0; i < 120; i++) /* one request every 0.25 s, every other one with 2 images */
        fprintf(f, "2024-10-15T12:00:%02d.%03dZ,%d,%d,%d\n", i / 4, (i % 4) * 250, i % 2 ? 2 : 0, 100 + i, 5 + i % 7);
    fclose(f);
    char *argv[] = {"tune", "--trace", tpath, "--profile", ppath, "--goodput", "ttft:1500", "--gpus-max", "6",
                    "--encode-max-batch-images", "2"};
    char *out = tune_output(argv, sizeof argv / sizeof argv[0]);
    EXPECT(out != NULL);
    const char *row = out ? strstr(out, "tuned (disagg)") : NULL;
    EXPECTF(row != NULL, "%s", out ? out : "(no output)");
    int g = 0, e = 0, p = 0, d = 0;
    if (row) EXPECT(sscanf(row + strlen("tuned (disagg)"), "%d %d %d %d", &g, &e, &p, &d) == 4);
    EXPECT(g == e + p + d && g >= 3 && e >= 2);
    EXPECT(out && strstr(out, "ModServe rule") && strstr(out, "monolithic"));
    free(out);
    /* Check the answer by simulating: it meets 99%, and no split of one GPU fewer does. */
    ms_cost_model m;
    ms_error err = {0};
    MS_CHECK(ms_cost_model_load(ppath, &m, &err) == MS_OK);
    ms_sim_options o = {.cost = &m, .max_images = 100, .record_itl = 0, .slo = {.ttft_s = 1.5}};
    ms_sim_core_options_default(&o.core); /* as tune */
    o.core.encode_max_batch_images = 2;
    ms_trace_select sel;
    ms_trace_select_default(&sel);
    ms_trace_set set;
    MS_CHECK(ms_trace_load(tpath, &sel, &set, &err) == MS_OK);
    for (int gg = g - 1; gg <= g; gg++)
        for (int ee = 1; ee <= gg - 2; ee++)
            for (int pp = 1; pp <= gg - 1 - ee; pp++) {
                o.core.workers[MS_STAGE_ENCODE] = ee;
                o.core.workers[MS_STAGE_PREFILL] = pp;
                o.core.workers[MS_STAGE_DECODE] = gg - ee - pp;
                ms_bench_run run;
                ms_sim_stats ss;
                MS_CHECK(ms_simulate_run(&o, &set, &run, &ss, &err) == MS_OK);
                ms_bench_metrics bm;
                ms_run_metrics(&run, -1, &bm);
                if (gg < g) EXPECTF(bm.attainment < 0.99, "%d+%d+%d meets the target", ee, pp, gg - ee - pp);
                if (gg == g && ee == e && pp == p) EXPECT(bm.attainment >= 0.99);
                ms_bench_run_free(&run);
            }
    ms_trace_set_free(&set);
    remove(ppath);
    remove(tpath);
}

/* --embedding-cache-images: hits come from the replayer's image ids (pool 8: image k
 * of request i is pool image (7 i + k) % 8). Request 0 sends image 0 (miss); request 1
 * images 7 and 0 (a partial hit: one image preprocessed and encoded); request 8 image 0
 * again (a hit: straight to prefill, TTFT = prefill alone). */
static void test_embedding_cache(void) {
    ms_cost_model m;
    ms_error err = {0};
    MS_CHECK(ms_cost_model_parse(k_flat, &m, &err) == MS_OK);
    ms_sim_options o = {.cost = &m, .max_images = 100, .record_itl = 1, .image_pool = 8};
    ms_sim_core_options_default(&o.core);
    ms_trace_select_default(&o.sel);
    ms_trace_req reqs[9];
    for (int i = 0; i < 9; i++) reqs[i] = (ms_trace_req){.send_s = 10 + i, .context_tokens = 50, .generated_tokens = 1};
    reqs[0] = (ms_trace_req){.send_s = 0, .n_images = 1, .context_tokens = 50, .generated_tokens = 1};
    reqs[1].n_images = 2;
    reqs[1].context_tokens = 60;
    reqs[8].n_images = 1;
    reqs[8].send_s = 30;
    ms_trace_set set = make_set(reqs, 9);
    ms_bench_run run;
    ms_sim_stats ss;
    o.embedding_cache_images = 8;
    EXPECT(ms_simulate_run(&o, &set, &run, &ss, &err) == MS_OK);
    EXPECTF(ss.image_hits == 2 && ss.image_misses == 2, "%llu hits, %llu misses", (unsigned long long)ss.image_hits,
            (unsigned long long)ss.image_misses);
    EXPECT_NEAR(run.reqs[0].m.ttft_s, 0.35, 1e-9);
    EXPECT_NEAR(run.reqs[1].m.ttft_s, 0.35, 1e-9); /* one image: 0.05 + 0.2 + 0.1 */
    EXPECT_NEAR(run.reqs[8].m.ttft_s, 0.1, 1e-9);
    EXPECT(run.reqs[8].m.ok && run.reqs[8].actual_prompt == 50);
    ms_bench_run_free(&run);
    /* room for one image: request 1 still finds 0, then 7 pushes it out before request 8 */
    o.embedding_cache_images = 1;
    EXPECT(ms_simulate_run(&o, &set, &run, &ss, &err) == MS_OK);
    EXPECT(ss.image_hits == 1 && ss.image_misses == 3);
    EXPECT_NEAR(run.reqs[8].m.ttft_s, 0.35, 1e-9);
    ms_bench_run_free(&run);
    /* off (the default): every image is work */
    o.embedding_cache_images = 0;
    EXPECT(ms_simulate_run(&o, &set, &run, &ss, &err) == MS_OK);
    EXPECT(ss.image_hits == 0 && ss.image_misses == 4);
    EXPECT_NEAR(run.reqs[8].m.ttft_s, 0.35, 1e-9);
    ms_bench_run_free(&run);
    free(set.reqs);
}

int main(void) {
    test_embedding_cache();
    test_cost_model();
    test_timelines();
    test_context_from_profile();
    test_shared_cores();
    test_frontend();
    test_cost_mean();
    test_per_image();
    test_compare();
    test_tune();
    return ms_test_finish("test_simulate");
}
