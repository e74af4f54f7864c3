/* `modserve bench replay`: flags, then load -> replay -> report. */
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "bench/replay.h"
#include "bench/simulate.h"
#include "scheduler/engine.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: modserve bench replay --trace F [--url http://127.0.0.1:8000] --out DIR [options]\n\n"
            "Open-loop replay of a trace against an OpenAI-style server: each request is sent at its\n"
            "(scaled) trace time as a streaming chat completion with ignore_eos and\n"
            "max_tokens = min_tokens = GeneratedTokens, NumImages generated images and filler text\n"
            "sized so the prompt has ContextTokens tokens. Writes summary.json, requests.csv and PNG\n"
            "plots (gnuplot) into DIR and prints the report.\n\n"
            "  --trace F               trace (.csv or .csv.gz, Azure LMM format)\n"
            "  --url URL               server base URL (default http://127.0.0.1:8000)\n"
            "  --out DIR               report folder (created)\n"
            "  --model NAME            model field (default: the first id of /v1/models)\n"
            "  --api-key KEY           sent as a bearer token\n"
            "  --goodput ttft:MS,tpot:MS[,e2el:MS]  SLOs for goodput and attainment\n"
            "  --max-concurrency N     at most N requests in flight (late ones wait; default no cap)\n"
            "  --image-policy keep|fit keep: send every image, the prompt may grow past the target\n"
            "                          (default); fit: send only the images whose tokens fit the\n"
            "                          target (at least one)\n"
            "  --image-tokens N        tokens per image (default: measured, else the server's\n"
            "                          /v1/models image_seq_length, else 576; the tiny model has 64)\n"
            "  --max-images N          at most N images per request (default 100; reported)\n"
            "  --image-pool N          distinct generated images (default 16)\n"
            "  --no-calibrate          do not measure prompt overhead / tokens per word first\n"
            "  --request-timeout S     per-request timeout in seconds (default 600)\n"
            "  --progress / --no-progress  progress bar (default: when stderr is a terminal)\n"
            "  --no-plots              skip gnuplot\n"
            "  --sessions N            multi-turn conversations instead of the open loop: the\n"
            "                          first N*T selected rows become N sessions of T turns; each\n"
            "                          turn re-sends the history (earlier turns' images and text,\n"
            "                          placeholder answers); the report adds TTFT of turn 1 and of\n"
            "                          turns 2+ (image/prefix cache benefit)\n"
            "  --turns T               turns per session (default 3)\n"
            "  --think-time S          seconds between an answer's end and the next turn (default 1)\n\n"
            "in-process engine instead of HTTP (checks the simulator without the HTTP layer):\n"
            "  --engine-model DIR      run the engine of DIR in this process (no --url)\n"
            "  --device cpu|cuda|auto  its device (default auto)\n"
            "  and the engine flags of `bench simulate --help` (--encode-workers ...)\n\n%s",
            ms_trace_select_help);
}

static bool parse_int(const char *v, int32_t lo, int32_t *out) {
    char *end;
    const long x = strtol(v, &end, 10);
    if (end == v || *end || x < lo || x > INT32_MAX) return false;
    *out = (int32_t)x;
    return true;
}

int ms_bench_replay_main(int argc, char **argv) {
    ms_replay_options o;
    ms_replay_options_default(&o);
    ms_error err = {0};
    const char *engine_model = NULL, *device = "auto";
    ms_core_options given; /* engine flags given (-1: not given) */
    memset(&given, 0xff, sizeof given);
    given.mode = (ms_engine_mode)-1;
    given.priority_aging_s = -1;
    for (int i = 1; i < argc; i++) {
        int r = ms_trace_select_flag(&o.sel, argc, argv, &i, &err);
        if (r == 0) r = ms_sim_core_flag(&given, argc, argv, &i, &err);
        if (r < 0) {
            fprintf(stderr, "bench replay: %s\n", err.msg);
            return 2;
        }
        if (r > 0) continue;
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--no-calibrate")) { o.calibrate = false; continue; }
        if (!strcmp(a, "--progress")) { o.progress = 1; continue; }
        if (!strcmp(a, "--no-progress")) { o.progress = 0; continue; }
        if (!strcmp(a, "--no-plots")) { o.plots = false; continue; }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = v != NULL;
        if (!ok) {
        } else if (!strcmp(a, "--trace")) o.trace = v;
        else if (!strcmp(a, "--url")) o.url = v;
        else if (!strcmp(a, "--out")) o.out_dir = v;
        else if (!strcmp(a, "--model")) o.model = v;
        else if (!strcmp(a, "--engine-model")) engine_model = v;
        else if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "--api-key")) o.api_key = v;
        else if (!strcmp(a, "--goodput")) {
            if (ms_slo_parse(v, &o.slo, &err) != MS_OK) {
                fprintf(stderr, "bench replay: %s\n", err.msg);
                return 2;
            }
        } else if (!strcmp(a, "--max-concurrency")) ok = parse_int(v, 1, &o.max_concurrency);
        else if (!strcmp(a, "--image-tokens")) ok = parse_int(v, 1, &o.image_tokens);
        else if (!strcmp(a, "--max-images")) ok = parse_int(v, 1, &o.max_images);
        else if (!strcmp(a, "--image-pool")) ok = parse_int(v, 1, &o.image_pool) && o.image_pool <= 1024;
        else if (!strcmp(a, "--request-timeout")) ok = (o.request_timeout_s = strtod(v, NULL)) > 0;
        else if (!strcmp(a, "--sessions")) ok = parse_int(v, 1, &o.sessions);
        else if (!strcmp(a, "--turns")) ok = parse_int(v, 1, &o.turns) && o.turns <= 1000;
        else if (!strcmp(a, "--think-time")) {
            char *end;
            o.think_time_s = strtod(v, &end);
            ok = end != v && !*end && o.think_time_s >= 0 && o.think_time_s <= 3600;
        }
        else if (!strcmp(a, "--image-policy")) {
            if (!strcmp(v, "keep")) o.policy = MS_IMAGE_POLICY_KEEP;
            else if (!strcmp(v, "fit")) o.policy = MS_IMAGE_POLICY_FIT;
            else ok = false;
        } else {
            fprintf(stderr, "bench replay: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "bench replay: bad or missing value for %s\n", a);
            return 2;
        }
        i++;
    }
    if (!o.trace || !o.out_dir) {
        usage(stderr);
        return 2;
    }
    if (o.sessions > 0 && engine_model) {
        fprintf(stderr, "bench replay: --sessions runs over HTTP only (not with --engine-model)\n");
        return 2;
    }
    ms_trace_set set;
    if (ms_trace_load(o.trace, &o.sel, &set, &err) != MS_OK) {
        fprintf(stderr, "bench replay: %s\n", err.msg);
        return 1;
    }
    if (set.n == 0) {
        fprintf(stderr, "bench replay: the selection has no requests\n");
        ms_trace_set_free(&set);
        return 1;
    }
    fprintf(stderr, "bench replay: %lld requests over %.1f s of replay time -> %s\n", (long long)set.n,
            set.reqs[set.n - 1].send_s, engine_model ? engine_model : o.url);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ms_bench_run run;
    ms_status st;
    if (engine_model) {
        ms_engine_options eo;
        ms_engine_options_default(&eo);
        eo.model_dir = engine_model;
        eo.device = device;
        if ((int)given.mode >= 0) eo.mode = given.mode;
        const int32_t *w = given.workers;
        if (w[MS_STAGE_ENCODE] >= 0) eo.encode_workers = w[MS_STAGE_ENCODE];
        if (w[MS_STAGE_PREFILL] >= 0) eo.prefill_workers = w[MS_STAGE_PREFILL];
        if (w[MS_STAGE_DECODE] >= 0) eo.decode_workers = w[MS_STAGE_DECODE];
        if (w[MS_STAGE_PREPROCESS] >= 0) eo.preprocess_threads = w[MS_STAGE_PREPROCESS];
        if (given.max_num_seqs >= 0) eo.max_num_seqs = given.max_num_seqs;
        if (given.max_num_batched_tokens >= 0) eo.max_num_batched_tokens = given.max_num_batched_tokens;
        if (given.encode_max_batch_images >= 0) eo.encode_max_batch_images = given.encode_max_batch_images;
        if (given.kv_blocks >= 0) eo.kv_blocks = given.kv_blocks;
        if (given.block_size >= 0) eo.block_size = given.block_size;
        if (given.max_model_len >= 0) eo.max_model_len = given.max_model_len;
        if (given.max_queued_requests >= 0) eo.max_queued_requests = given.max_queued_requests;
        if (given.priority_aging_s >= 0) eo.priority_aging_s = given.priority_aging_s;
        if (o.max_images > eo.max_images_per_request) eo.max_images_per_request = o.max_images;
        st = ms_replay_engine_run(&eo, &o, &set, &run, &err);
    } else {
        st = ms_replay_run(&o, &set, &run, &err);
    }
    int rc = 0;
    if (st != MS_OK) {
        fprintf(stderr, "bench replay: %s\n", err.msg);
        rc = 1;
    } else {
        ms_report_console(&run, stdout);
        if (ms_report_write(&run, o.out_dir, o.plots, &err) != MS_OK) {
            fprintf(stderr, "bench replay: %s\n", err.msg);
            rc = 1;
        } else {
            printf("\nreport: %s/summary.json, %s/requests.csv%s\n", o.out_dir, o.out_dir,
                   o.plots ? "; plots: ttft_cdf.png, latency_over_time.png, queue_length.png" : "");
        }
        ms_bench_run_free(&run);
    }
    curl_global_cleanup();
    ms_trace_set_free(&set);
    return rc;
}
