/*
 * The benchmark report shared by `bench replay` (measured) and `bench simulate`:
 * a console table per class and overall, summary.json, requests.csv and gnuplot
 * plots (TTFT CDF by class, latency over time with arrivals, per-stage queue length
 * over time from the server's stage timestamps).
 */
#ifndef MS_BENCH_REPORT_H
#define MS_BENCH_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "bench/metrics.h"
#include "bench/trace.h"

enum { MS_RUN_STAGES = 4 };  /* preprocess, encode, prefill, decode */
extern const char *const ms_run_stage_names[MS_RUN_STAGES];

/* One request of a run. Times are seconds from the run start on the client's clock;
 * the stage times are seconds from the request's send, taken from the server's
 * timestamps (relative to its arrival), -1 where absent. */
typedef struct ms_run_request {
    ms_trace_req trace;       /* what the trace asked for (send_s = scheduled send) */
    ms_req_metrics m;         /* what was measured (m.itl points into itl_buf) */
    double *itl_buf;
    int32_t itl_cap;
    int32_t images_sent;
    int32_t text_words;       /* words of filler text sent */
    int32_t target_prompt;    /* = trace ContextTokens */
    int32_t expected_prompt;  /* what the client expects the server to count */
    int32_t actual_prompt;    /* usage.prompt_tokens, -1 when not reported */
    int32_t chunks;           /* streamed chunks with content */
    int32_t http_status;
    char *error;              /* why it failed (malloc'd; NULL when ok) */
    bool has_stages;
    double stage_queued[MS_RUN_STAGES], stage_start[MS_RUN_STAGES], stage_end[MS_RUN_STAGES];
    int32_t session, turn;    /* replay --sessions: conversation and turn (1-based); turn 0: none */
    double alone_ttft_s, alone_tpot_s; /* simulate: latency alone from the cost model (bench/slo.h); 0: unknown */
} ms_run_request;

typedef struct ms_bench_run {
    const char *kind;         /* "replay" or "simulate" */
    const char *trace_path;
    const char *target;       /* URL or simulated configuration */
    ms_trace_select sel;
    ms_slo slo;
    int32_t max_concurrency;
    const char *image_policy; /* "keep" or "fit" */
    int32_t image_tokens;     /* tokens per image the prompt sizing used */
    const char *image_tokens_source; /* "flag", "calibrated", "server", "default" */
    double prompt_overhead, tokens_per_word; /* text sizing: template tokens, per word */
    bool calibrated;
    int64_t images_capped;    /* requests that sent fewer images than the trace's */
    ms_run_request *reqs;
    int64_t n;
    double duration_s;        /* first send to last response */
    int32_t sessions, turns;  /* replay --sessions (0: open loop) */
    double think_time_s;
} ms_bench_run;

/* Frees the requests (their ITL buffers and error texts). */
void ms_bench_run_free(ms_bench_run *run);
/* Per-class and overall metrics of a run. */
void ms_run_metrics(const ms_bench_run *run, int cls, ms_bench_metrics *out);
void ms_report_console(const ms_bench_run *run, FILE *out);
/* summary.json, requests.csv and, when gnuplot is found and plots is true, PNG plots
 * (their .gp scripts and .dat data are written either way). */
ms_status ms_report_write(const ms_bench_run *run, const char *dir, bool plots, ms_error *err);
/* Writes the plot data (.dat) and scripts (.gp) into dir and runs gnuplot; MS_ERR_NOT_FOUND when gnuplot is missing. */
ms_status ms_report_plots(const ms_bench_run *run, const char *dir, ms_error *err);

#endif
