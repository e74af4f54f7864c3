/*
 * Per-worker capacities of the autoscaling policies (scheduler/autoscale.h) from a
 * profile's cost model: what `bench simulate --autoscale` and `serve --autoscale
 * --profile` (through server/cli, the one place that knows both layers) pass the policy.
 */
#ifndef MS_BENCH_AUTOSCALE_CAPACITY_H
#define MS_BENCH_AUTOSCALE_CAPACITY_H

#include "bench/cost_model.h"
#include "scheduler/autoscale.h"

/* Capacities from the profile, as `bench tune`'s ModServe rule: the best throughput of
 * one worker over the batch sizes the engine allows whose batch latency stays within
 * half the TTFT bound (encode, prefill) or the TPOT bound (decode); a bound <= 0: none.
 * The simulator passes the absolute SLO where given, else factor x the latency alone of
 * the window's mean request. mean_ctx: the decode context to price steps at. */
void ms_autoscale_capacities(const ms_cost_model *m, const ms_core_options *core, double ttft_slo_s,
                             double tpot_slo_s, double mean_ctx, double capacity[MS_STAGE_COUNT]);

/* The server's: loads the profile(s) at path and prices decode steps at the middle
 * measured context; SLO bounds as above (<= 0: none). */
ms_status ms_autoscale_profile_capacities(const char *path, const ms_core_options *core, double ttft_slo_s,
                                          double tpot_slo_s, double capacity[MS_STAGE_COUNT], ms_error *err);

#endif
