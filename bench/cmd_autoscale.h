/* `bench simulate --autoscale` flags, setup and report (bench/cmd_autoscale.c). */
#ifndef MS_BENCH_CMD_AUTOSCALE_H
#define MS_BENCH_CMD_AUTOSCALE_H

#include <stdio.h>

#include "bench/simulate.h"

typedef struct ms_sim_autoscale_args {
    bool on;
    ms_autoscale_policy policy;
    double interval_s, target;
    int32_t min[MS_STAGE_COUNT], max[MS_STAGE_COUNT];
} ms_sim_autoscale_args;

extern const char ms_sim_autoscale_help[];
void ms_sim_autoscale_args_default(ms_sim_autoscale_args *a);
/* --autoscale --interval --autoscale-min --autoscale-max --target; same return
 * convention as ms_trace_select_flag. */
int ms_sim_autoscale_flag(ms_sim_autoscale_args *a, int argc, char **argv, int *i, ms_error *err);
/* The policy's configuration: capacities from the profile under the SLO, limits, the
 * static counts (o->core.workers). */
ms_status ms_sim_autoscale_setup(const ms_sim_autoscale_args *a, const ms_sim_options *o, const ms_trace_set *set,
                                 ms_autoscale_config *cfg, ms_error *err);
/* GPU-hours (always) and, with a (on), the policy's line. */
void ms_sim_autoscale_print(const ms_sim_autoscale_args *a, const ms_autoscale_config *cfg, const ms_sim_stats *ss,
                            FILE *out);
/* scaling.csv (time_s,stage,workers), workers.dat and, with plots, workers.png. */
ms_status ms_sim_autoscale_write(const ms_sim_stats *ss, const char *dir, bool plots, ms_error *err);

#endif
