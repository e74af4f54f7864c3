/*
 * `serve --autoscale POLICY`: a controller thread that every interval reads the engine's
 * live load, asks the autoscaling policy (scheduler/autoscale.h, the one `bench simulate
 * --autoscale` runs) for pool sizes, and resizes the pools through /admin/workers' own
 * path (ms_admin_apply_workers). Every decision goes to /metrics and the log.
 *
 * Load per stage, from ms_engine_stats deltas over the interval (units as the policy's:
 * encode = image tokens, prefill = prompt tokens, decode = output tokens):
 *   queued  = the stage's waiting count x its mean units per batch item so far;
 *   arrived = units computed in the interval + the growth of queued (what came in is
 *             what was done plus what piled up);
 *   busy_s  = busy workers at the tick x the interval (a sample);
 *   wait_s  = mean stage wait of the requests finished in the interval (/metrics'
 *             histograms).
 * The server knows no SLO attainment, so the policies' reactive parts stay idle.
 */
#ifndef MS_SERVER_AUTOSCALE_CTL_H
#define MS_SERVER_AUTOSCALE_CTL_H

#include <stdbool.h>

#include "scheduler/autoscale.h"
#include "scheduler/engine.h"

typedef struct ms_autoscale_ctl_options {
    bool on;
    ms_autoscale_policy policy;
    double interval_s;                                /* default 10 */
    int32_t min[MS_STAGE_COUNT], max[MS_STAGE_COUNT]; /* 0: 1 / the admin cap */
    const char *profile;                              /* `bench profile`'s profile.json */
    double ttft_slo_s, tpot_slo_s;                    /* capacity bounds; 0: none */
} ms_autoscale_ctl_options;

/* Per-worker capacities (units/s) from a profile. The server layer cannot read profiles
 * (bench/ does); the binary (server/cli) passes bench's ms_autoscale_profile_capacities. */
typedef ms_status (*ms_autoscale_capacity_fn)(const char *profile, const ms_core_options *core, double ttft_slo_s,
                                              double tpot_slo_s, double capacity[MS_STAGE_COUNT], ms_error *err);
void ms_autoscale_set_capacity_loader(ms_autoscale_capacity_fn fn);

/* Parses "E,P,D" (three integers >= lo) into v[ENCODE], v[PREFILL], v[DECODE]. */
bool ms_autoscale_parse_counts(const char *s, int32_t lo, int32_t v[MS_STAGE_COUNT]);

struct ms_http_server;
typedef struct ms_autoscale_ctl ms_autoscale_ctl;
/* Loads the capacities and starts the thread (disagg mode only); eng: the options the
 * engine was created with (batch limits for the capacities, start sizes for static). */
ms_status ms_autoscale_ctl_start(struct ms_http_server *s, const ms_autoscale_ctl_options *o,
                                 const ms_engine_options *eng, ms_autoscale_ctl **out, ms_error *err);
void ms_autoscale_ctl_stop(ms_autoscale_ctl *c); /* NULL: nothing */

#endif
