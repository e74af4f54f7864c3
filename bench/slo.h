/*
 * SLOs as ModServe defines them: a request's SLO is F times its own latency alone (the
 * latency it would see on an idle system), for TTFT and for the time between tokens,
 * beside the absolute --goodput thresholds. The latency alone comes from the profile's
 * cost model, per request size and image count:
 *   TTFT alone = front end + (with images) preprocess + one encode batch of its images
 *              + its prompt prefilled in chunks of max_num_batched_tokens (each chunk
 *                after the first also charged the attention over the earlier ones, as
 *                the simulator charges it);
 *   TPOT alone = one decode step of a batch of 1 at the request's mean context
 *                (prompt + half its output; the decode cost is linear in context
 *                between measured points, so this is the mean step).
 * A request meets the factor SLO when it completed, TTFT <= F x TTFT alone and (more
 * than one output token) TPOT <= F x TPOT alone. With an absolute SLO, a request whose
 * latency alone already exceeds it "cannot meet it even alone": no allocation helps it.
 */
#ifndef MS_BENCH_SLO_H
#define MS_BENCH_SLO_H

#include <stdio.h>

#include "bench/cost_model.h"
#include "bench/report.h"

typedef struct ms_alone_latency {
    double ttft_s, tpot_s;
} ms_alone_latency;

/* preprocess_s, frontend_s: the request's own (ms_cost_*_request); chunk_tokens: the
 * engine's max_num_batched_tokens (<= 0: one chunk). */
ms_alone_latency ms_slo_alone(const ms_cost_model *m, int32_t chunk_tokens, int32_t prompt_tokens, int32_t images,
                              int32_t output_tokens, double preprocess_s, double frontend_s);

/* True when request r (alone latency in r->alone_*) meets factor x its latency alone. */
bool ms_slo_factor_meets(const ms_run_request *r, double factor);
/* True when r's latency alone already misses an absolute SLO that is given. */
bool ms_slo_cannot_meet_alone(const ms_run_request *r, const ms_slo *slo);

/* Share of the run's requests (class cls, -1: all) that meet every SLO given: factor x
 * latency alone (factor > 0) and the run's absolute SLO; 1 - failures when none. */
double ms_slo_attainment(const ms_bench_run *run, int cls, double factor);

/* Per class: [0] text, [1] image, [2] all. */
typedef struct ms_slo_summary {
    double factor;                 /* 0: not given */
    int64_t requests[3];
    int64_t good_factor[3];        /* meet factor x latency alone */
    int64_t cannot_meet_alone[3];  /* absolute SLO given: miss it even alone */
    bool has_alone;                /* the run carries latencies alone (simulate) */
} ms_slo_summary;

void ms_slo_summarize(const ms_bench_run *run, double factor, ms_slo_summary *out);
/* Prints the lines for what was given (factor, absolute SLO); nothing when neither. */
void ms_slo_summary_print(const ms_slo_summary *s, const ms_slo *slo, FILE *out);
/* "--slo-factor F": F > 0 (ModServe uses 5 or so). */
ms_status ms_slo_factor_parse(const char *s, double *factor, ms_error *err);

#endif
