/*
 * Scheduling overhead of the core: a virtual-clock loop keeps `requests` requests
 * active (a finished one is replaced at once by a new arrival) over `workers` workers
 * (1/4 encode, 1/4 prefill, 1/2 decode over 8 devices; monolithic: all LLM workers)
 * and times every call into the core with the monotonic clock. Requests follow the
 * Azure LMM trace's shape loosely (synthetic: half image requests, 1-9 images of 576
 * tokens, prompts 100-4000 tokens, 10-500 output tokens); see docs/scheduler.md.
 */
#include "bench/sched_bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/core.h"

typedef struct bench {
    double now;                /* virtual seconds */
    uint64_t rng;
    ms_core *core;
    int32_t n_workers[MS_STAGE_COUNT];
    const ms_core_batch **out[MS_STAGE_COUNT];
    double *until[MS_STAGE_COUNT];
    double *samples;           /* ns per decision */
    int64_t n_samples, cap_samples;
    double t_next, t_done, t_arrive;
    int64_t n_next, n_next_hit, n_done, n_arrive;
} bench;

static double bench_clock(void *ctx) { return ((bench *)ctx)->now; }

static uint64_t rnd(bench *b) {
    b->rng ^= b->rng << 13;
    b->rng ^= b->rng >> 7;
    b->rng ^= b->rng << 17;
    return b->rng;
}

static double unif(bench *b) { return (double)(rnd(b) >> 11) / 9007199254740992.0; }

static void arrive_one(bench *b) {
    ms_core_req_desc d = {0};
    bool image = unif(b) < 0.5;
    d.n_images = image ? 1 + (int32_t)(unif(b) * unif(b) * 9) : 0;
    d.image_tokens = 576;
    d.n_prompt = 100 + (int32_t)(unif(b) * unif(b) * 3900) + d.n_images * d.image_tokens;
    d.max_tokens = 10 + (int32_t)(unif(b) * unif(b) * 490);
    d.skip_preprocess = true;
    ms_error err;
    double t0 = ms_time_now();
    ms_status st = ms_core_arrive(b->core, &d, NULL, &err);
    b->t_arrive += ms_time_now() - t0;
    b->n_arrive++;
    MS_CHECKF(st == MS_OK, "bench: arrive: %s", err.msg);
}

static double batch_cost(const ms_core_batch *bt) {
    switch (bt->stage) {
    case MS_STAGE_ENCODE: return 0.005 + 0.02 * bt->n_items;
    case MS_STAGE_PREFILL: return 0.005 + 1e-4 * bt->n_tokens;
    default: return 0.02;
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void record(bench *b, double s) {
    if (b->n_samples == b->cap_samples) {
        b->cap_samples = b->cap_samples ? b->cap_samples * 2 : 1 << 16;
        b->samples = ms_xrealloc(b->samples, (size_t)b->cap_samples * sizeof *b->samples);
    }
    b->samples[b->n_samples++] = s * 1e9;
}

static void usage(void) {
    fprintf(stderr,
            "usage: modserve bench sched [--requests N] [--workers W] [--decisions D]\n"
            "                            [--mode disagg|monolithic] [--seed S] [--out FILE.md]\n"
            "Times the scheduler core per decision on a virtual clock with N requests kept\n"
            "active and W workers (defaults 10000, 64, 200000 decisions, disagg).\n");
}

int ms_bench_sched_main(int argc, char **argv) {
    int32_t requests = 10000, workers = 64;
    int64_t decisions = 200000;
    uint64_t seed = 1;
    ms_engine_mode mode = MS_MODE_DISAGG;
    const char *out_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage();
            return 0;
        }
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (!strcmp(a, "--requests")) requests = atoi(v);
        else if (!strcmp(a, "--workers")) workers = atoi(v);
        else if (!strcmp(a, "--decisions")) decisions = atoll(v);
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--out")) out_path = v;
        else if (!strcmp(a, "--mode")) {
            if (!strcmp(v, "disagg")) mode = MS_MODE_DISAGG;
            else if (!strcmp(v, "monolithic")) mode = MS_MODE_MONOLITHIC;
            else {
                usage();
                return 2;
            }
        } else {
            fprintf(stderr, "bench sched: unknown option %s\n", a);
            usage();
            return 2;
        }
    }
    if (requests < 1 || workers < 4 || workers > 1024 || decisions < 1) {
        fprintf(stderr, "bench sched: need --requests >= 1, --workers 4..1024, --decisions >= 1\n");
        return 2;
    }
    bench b;
    memset(&b, 0, sizeof b);
    b.rng = seed * 0x9e3779b97f4a7c15ull + 1;
    ms_core_options o;
    ms_core_options_default(&o);
    o.mode = mode;
    o.clock = (ms_clock){bench_clock, &b};
    o.workers[MS_STAGE_PREPROCESS] = 1;
    if (mode == MS_MODE_DISAGG) {
        o.workers[MS_STAGE_ENCODE] = workers / 4;
        o.workers[MS_STAGE_PREFILL] = workers / 4;
        o.workers[MS_STAGE_DECODE] = workers - 2 * (workers / 4);
    } else {
        o.workers[MS_STAGE_DECODE] = workers;
    }
    for (int s = MS_STAGE_ENCODE; s <= MS_STAGE_DECODE; s++) {
        o.n_devices[s] = 8;
        for (int d = 0; d < 8; d++) o.devices[s][d] = d;
    }
    o.kv_blocks = 65536;
    o.max_queued_requests = 0;
    o.max_model_len = 16384;
    ms_error err;
    if (ms_core_create(&o, &b.core, &err) != MS_OK) {
        fprintf(stderr, "bench sched: %s\n", err.msg);
        return 1;
    }
    for (int s = 0; s < MS_STAGE_COUNT; s++) {
        b.n_workers[s] = ms_core_worker_slots(b.core, (ms_stage)s);
        b.out[s] = ms_xcalloc((size_t)b.n_workers[s] + 1, sizeof *b.out[s]);
        b.until[s] = ms_xcalloc((size_t)b.n_workers[s] + 1, sizeof *b.until[s]);
    }
    for (int32_t i = 0; i < requests; i++) arrive_one(&b);

    int64_t steps = 0;
    while (b.n_next_hit < decisions) {
        for (int s = 0; s < MS_STAGE_COUNT; s++)
            for (int32_t w = 0; w < b.n_workers[s]; w++) {
                if (b.out[s][w]) continue;
                double t0 = ms_time_now();
                const ms_core_batch *bt = ms_core_next_batch(b.core, (ms_stage)s, w);
                double dt = ms_time_now() - t0;
                b.t_next += dt;
                b.n_next++;
                if (!bt) continue;
                b.n_next_hit++;
                record(&b, dt);
                b.out[s][w] = bt;
                b.until[s][w] = b.now + batch_cost(bt);
            }
        double next = 1e300;
        for (int s = 0; s < MS_STAGE_COUNT; s++)
            for (int32_t w = 0; w < b.n_workers[s]; w++)
                if (b.out[s][w] && b.until[s][w] < next) next = b.until[s][w];
        if (next == 1e300) break;
        b.now = next;
        for (int s = 0; s < MS_STAGE_COUNT; s++)
            for (int32_t w = 0; w < b.n_workers[s]; w++) {
                if (!b.out[s][w] || b.until[s][w] > b.now) continue;
                double t0 = ms_time_now();
                ms_core_batch_done(b.core, b.out[s][w], NULL);
                ms_core_finished f;
                int32_t finished = 0;
                while (ms_core_pop_finished(b.core, &f)) finished++;
                b.t_done += ms_time_now() - t0;
                b.n_done++;
                b.out[s][w] = NULL;
                for (int32_t k = 0; k < finished; k++) arrive_one(&b); /* keep the queue full */
            }
        steps++;
    }
    ms_core_stats st;
    ms_core_stats_get(b.core, &st);
    qsort(b.samples, (size_t)b.n_samples, sizeof *b.samples, cmp_double);
    double p50 = b.n_samples ? b.samples[b.n_samples / 2] : 0;
    double p99 = b.n_samples ? b.samples[(int64_t)((double)b.n_samples * 0.99)] : 0;
    double pmax = b.n_samples ? b.samples[b.n_samples - 1] : 0;
    double per_decision = (b.t_next + b.t_done) / (double)(b.n_next_hit ? b.n_next_hit : 1) * 1e9;
    char report[4096];
    snprintf(report, sizeof report,
             "| setting | value |\n|---|---|\n"
             "| mode | %s |\n| requests kept active | %d |\n| workers (encode/prefill/decode) | %d/%d/%d |\n"
             "| decisions (batches handed out) | %lld |\n| virtual time simulated | %.1f s |\n"
             "| next_batch calls (incl. empty) | %lld, mean %.0f ns |\n"
             "| next_batch with a batch: p50 / p99 / max | %.0f / %.0f / %.0f ns |\n"
             "| batch_done + pop_finished | mean %.0f ns |\n| arrive | mean %.0f ns |\n"
             "| **core time per decision (next_batch + done)** | **%.0f ns** |\n"
             "| queued at end: prefill / decode wait / encode images | %d / %d / %d |\n"
             "| decode running sequences at end | %d |\n| preemptions | %llu |\n"
             "| finished requests | %llu |\n",
             mode == MS_MODE_DISAGG ? "disagg" : "monolithic", requests,
             b.n_workers[MS_STAGE_ENCODE], b.n_workers[MS_STAGE_PREFILL], b.n_workers[MS_STAGE_DECODE],
             (long long)b.n_next_hit, b.now, (long long)b.n_next,
             b.t_next / (double)(b.n_next ? b.n_next : 1) * 1e9, p50, p99, pmax,
             b.t_done / (double)(b.n_done ? b.n_done : 1) * 1e9,
             b.t_arrive / (double)(b.n_arrive ? b.n_arrive : 1) * 1e9, per_decision,
             st.stage[MS_STAGE_PREFILL].queued, st.stage[MS_STAGE_DECODE].queued,
             st.stage[MS_STAGE_ENCODE].queued, st.stage[MS_STAGE_DECODE].running,
             (unsigned long long)st.preemptions,
             (unsigned long long)(st.finished[MS_FINISH_STOP] + st.finished[MS_FINISH_LENGTH]));
    printf("%s", report);
    int rc = 0;
    if (out_path) {
        FILE *f = fopen(out_path, "w");
        if (!f) {
            fprintf(stderr, "bench sched: cannot write %s\n", out_path);
            rc = 1;
        } else {
            fprintf(f, "# Scheduler core overhead (`modserve bench sched`)\n\n"
                       "Virtual clock, synthetic requests shaped loosely like the Azure LMM trace "
                       "(not the real trace); times are wall-clock time inside the core.\n\n%s", report);
            fclose(f);
        }
    }
    for (int s = 0; s < MS_STAGE_COUNT; s++) {
        free(b.out[s]);
        free(b.until[s]);
    }
    free(b.samples);
    ms_core_destroy(b.core);
    (void)steps;
    return rc;
}
