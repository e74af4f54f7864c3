/*
 * Autoscaling policies: pure decision logic behind one interface, used unchanged by
 * `bench simulate --autoscale` and by the server's controller (`serve --autoscale`,
 * server/autoscale_ctl.c); here in the scheduler layer so both may include it.
 * Every interval the driver reports, per stage, what it observed over the last interval
 * and the current pool sizes; the policy answers the target pool size per stage.
 *
 * Load units per stage (the ones ModServe scales by): encode = image tokens, prefill =
 * prompt tokens, decode = output tokens; capacity = units per second one worker
 * carries within the SLO (ms_autoscale_capacities in bench/autoscale_capacity.h, from
 * the profile; the policy takes them as numbers). Preprocess runs on
 * CPU threads and is not scaled (capacity 0 leaves a stage at its current size).
 *
 * Policies:
 *   static    the counts given, always.
 *   modserve  ModServe's rule: per stage ceil(arrival rate / capacity), plus a reactive
 *             step: for every interval whose SLO attainment is below the target, one
 *             more worker on the stage to blame (every stage with a backlog, else the
 *             one with the longest mean wait, else the busiest); the extras stay until
 *             an interval meets the target.
 *   trend     ours: the next interval's rate predicted from the last ones (Holt's
 *             linear trend on an EWMA, never below the last rate, so a burst is met at
 *             once), plus the backlog to drain within the next interval, at a target
 *             utilization; up at once, down only after `down_after` intervals that all
 *             want fewer (hysteresis), to the largest of those; the encoder also leads
 *             by the image-token growth (image bursts reach prefill one stage later).
 *             The planned utilization is learned per stage: an interval below the
 *             attainment target cuts the blamed stage's (as modserve blames) by 30%,
 *             one that meets it raises every stage's by 10% back towards the
 *             configured one, so the headroom the SLO needs (queueing, not only
 *             throughput, for SLOs relative to the latency alone) is found from the
 *             attainment instead of guessed.
 */
#ifndef MS_SCHEDULER_AUTOSCALE_H
#define MS_SCHEDULER_AUTOSCALE_H

#include <stdbool.h>
#include <stdint.h>

#include "scheduler/core.h"

typedef enum ms_autoscale_policy {
    MS_AUTOSCALE_STATIC = 0,
    MS_AUTOSCALE_MODSERVE,
    MS_AUTOSCALE_TREND,
} ms_autoscale_policy;

const char *ms_autoscale_policy_name(ms_autoscale_policy p);
ms_status ms_autoscale_policy_parse(const char *s, ms_autoscale_policy *p, ms_error *err);

/* What one stage saw over the last interval. */
typedef struct ms_autoscale_stage_load {
    double arrived;      /* load units that arrived (see above) */
    double queued;       /* load units waiting at the interval's end */
    double busy_s;       /* worker-seconds spent running batches */
    double wait_s;       /* mean queueing delay in the stage of the requests that finished
                            in the interval (0: none) */
} ms_autoscale_stage_load;

typedef struct ms_autoscale_input {
    double interval_s;
    ms_autoscale_stage_load stage[MS_STAGE_COUNT];
    int32_t current[MS_STAGE_COUNT];
    double attainment;   /* of the requests that finished in the interval and could meet the
                            SLO alone; < 0: none finished */
} ms_autoscale_input;

typedef struct ms_autoscale_config {
    ms_autoscale_policy policy;
    double capacity[MS_STAGE_COUNT];   /* units/s per worker; 0: do not scale this stage */
    int32_t min[MS_STAGE_COUNT], max[MS_STAGE_COUNT]; /* max 0: no limit */
    int32_t fixed[MS_STAGE_COUNT];     /* static: the counts */
    double target_attainment;          /* modserve's reactive step (0: 0.99) */
    /* trend: smoothing of the level and of the trend (0: 0.5, 0.3), utilization to plan
     * for (0: 0.85), intervals of wanting fewer before scaling down (0: 2) */
    double alpha, beta, utilization;
    int32_t down_after;
} ms_autoscale_config;

typedef struct ms_autoscaler {
    ms_autoscale_config cfg;
    int64_t intervals;                  /* decisions made */
    double level[MS_STAGE_COUNT], trend[MS_STAGE_COUNT]; /* trend: units/s */
    int32_t extra[MS_STAGE_COUNT];      /* modserve: reactive workers added */
    int32_t down_wait[MS_STAGE_COUNT];  /* trend: intervals that wanted fewer so far */
    int32_t down_want[MS_STAGE_COUNT];  /* trend: the largest of those wants */
    double util[MS_STAGE_COUNT];        /* trend: the learned planned utilization */
} ms_autoscaler;

void ms_autoscaler_init(ms_autoscaler *a, const ms_autoscale_config *cfg);
/* The pool sizes for the next interval (clamped to min..max). */
void ms_autoscaler_decide(ms_autoscaler *a, const ms_autoscale_input *in, int32_t target[MS_STAGE_COUNT]);

#endif
