/*
 * Serving-benchmark metrics with vLLM's definitions (benchmarks/benchmark_serving.py):
 * TTFT = send to first streamed token; TPOT = (E2E - TTFT) / (output tokens - 1) for
 * requests with more than one output token (taken as 0 for goodput otherwise); ITL =
 * every gap between streamed chunks, pooled over requests; E2E = send to last byte.
 * Latency statistics are over completed requests; percentiles are numpy's default
 * (linear interpolation between closest ranks). Goodput = completed requests meeting
 * every given SLO (value <= SLO) per second of benchmark time; attainment = those
 * requests over all requests, failed ones included, so a failure is never dropped.
 */
#ifndef MS_BENCH_METRICS_H
#define MS_BENCH_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/ms_common.h"

typedef enum ms_req_class {
    MS_CLASS_TEXT = 0,        /* NumImages == 0 in the trace */
    MS_CLASS_IMAGE,
    MS_CLASS_COUNT
} ms_req_class;

const char *ms_req_class_name(ms_req_class c); /* "text", "image" */

/* What the client measured for one request (times in seconds from the bench start). */
typedef struct ms_req_metrics {
    ms_req_class cls;
    bool ok;                  /* completed with a 2xx and a well-formed stream */
    double send_s;            /* when it was sent */
    double ttft_s;            /* send -> first token chunk */
    double e2e_s;             /* send -> end of the response */
    int32_t prompt_tokens;    /* counted for throughput (usage, else the target) */
    int32_t output_tokens;    /* usage.completion_tokens, else token chunks */
    const double *itl;        /* gaps between token chunks (n_itl of them) */
    int32_t n_itl;
} ms_req_metrics;

typedef struct ms_latency_stats {
    int64_t n;
    double mean, std, p50, p90, p99, max;   /* seconds */
} ms_latency_stats;

/* SLOs in seconds; 0 = not given. */
typedef struct ms_slo {
    double ttft_s, tpot_s, e2e_s;
} ms_slo;

typedef struct ms_bench_metrics {
    int64_t requests, completed, failed;
    double duration_s;
    int64_t input_tokens, output_tokens;    /* completed requests */
    double request_throughput;              /* completed / s */
    double output_throughput;               /* output tokens / s */
    double total_token_throughput;          /* (input + output) tokens / s */
    bool has_slo;
    int64_t good;
    double goodput;                         /* good requests / s */
    double attainment;                      /* good / requests (failed count as missed) */
    ms_latency_stats ttft, tpot, itl, e2e;
} ms_bench_metrics;

/* numpy.percentile(sorted[0..n), q) with q in [0, 100]; 0 for n == 0. */
/* Sorts n doubles ascending (radix sort; NaN not allowed). */
void ms_sort_doubles(double *v, int64_t n);
double ms_percentile(const double *sorted, int64_t n, double q);
/* Sorts v in place and fills the statistics (all 0 for n == 0). */
void ms_latency_stats_compute(double *v, int64_t n, ms_latency_stats *out);
/* The TPOT of one request, or -1 when it has at most one output token. */
double ms_req_tpot(const ms_req_metrics *r);
/* True when a completed request meets every given SLO. */
bool ms_req_meets_slo(const ms_req_metrics *r, const ms_slo *slo);
/* Metrics over the requests of class cls (-1: all). */
void ms_bench_metrics_compute(const ms_req_metrics *reqs, int64_t n, int cls, double duration_s,
                              const ms_slo *slo, ms_bench_metrics *out);
/* "ttft:500,tpot:50[,e2el:2000]" in milliseconds (vLLM's --goodput keys). */
ms_status ms_slo_parse(const char *s, ms_slo *slo, ms_error *err);

#endif
