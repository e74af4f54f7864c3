/*
 * `bench simulate --autoscale`: its flags, the policy's configuration from the profile
 * and the SLO, and its report (GPU-hours, scaling events as CSV, a gnuplot plot of the
 * pool sizes over time beside the arrival rate).
 */
#include "bench/cmd_autoscale.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

const char ms_sim_autoscale_help[] =
    "autoscaling (disagg; GPU stages encode, prefill, decode):\n"
    "  --autoscale static|modserve|trend   resize the pools every --interval of virtual time:\n"
    "                      static keeps the --*-workers counts; modserve: ceil(load / capacity)\n"
    "                      per stage plus a step up while attainment is below --target; trend\n"
    "                      (ours): predicted load (EWMA + trend), backlog, hysteresis down\n"
    "  --interval D        decision interval (5m, 30s; default 5m)\n"
    "  --autoscale-min E,P,D  --autoscale-max E,P,D   pool limits (default 1,1,1 and 64,64,64)\n"
    "  --target X          attainment the modserve policy keeps (0-1, default 0.99)\n";

void ms_sim_autoscale_args_default(ms_sim_autoscale_args *a) {
    memset(a, 0, sizeof *a);
    a->interval_s = 300;
    a->target = 0.99;
    for (int k = 1; k < MS_STAGE_COUNT; k++) a->min[k] = 1, a->max[k] = 64;
}

static bool parse_triple(const char *v, int32_t out[MS_STAGE_COUNT]) {
    int e, p, d, n = 0;
    if (sscanf(v, "%d,%d,%d%n", &e, &p, &d, &n) != 3 || v[n] || e < 1 || p < 1 || d < 1) return false;
    out[MS_STAGE_ENCODE] = e, out[MS_STAGE_PREFILL] = p, out[MS_STAGE_DECODE] = d;
    return true;
}

int ms_sim_autoscale_flag(ms_sim_autoscale_args *a, int argc, char **argv, int *i, ms_error *err) {
    static const char *const k_flags[] = {"--autoscale", "--interval", "--autoscale-min", "--autoscale-max", "--target"};
    const char *f = argv[*i];
    size_t k = 0;
    for (; k < sizeof k_flags / sizeof k_flags[0]; k++)
        if (!strcmp(f, k_flags[k])) break;
    if (k == sizeof k_flags / sizeof k_flags[0]) return 0;
    if (*i + 1 >= argc) {
        ms_errorf(err, MS_ERR_INVALID, "%s needs a value", f);
        return -1;
    }
    const char *v = argv[++*i];
    if (k == 0) {
        a->on = true;
        return ms_autoscale_policy_parse(v, &a->policy, err) == MS_OK ? 1 : -1;
    }
    if (k == 1) {
        if (ms_duration_parse(v, &a->interval_s, err) != MS_OK) return -1;
        if (a->interval_s > 0) return 1;
    } else if (k == 4) {
        char *end;
        a->target = strtod(v, &end);
        if (!*end && a->target > 0 && a->target <= 1) return 1;
    } else if (parse_triple(v, k == 2 ? a->min : a->max)) {
        return 1;
    }
    ms_errorf(err, MS_ERR_INVALID, "bad value for %s: '%s'%s", f, v,
              k >= 2 && k <= 3 ? " (expected E,P,D, each >= 1)" : k == 4 ? " (expected 0-1)" : " (expected > 0)");
    return -1;
}

ms_status ms_sim_autoscale_setup(const ms_sim_autoscale_args *a, const ms_sim_options *o, const ms_trace_set *set,
                                 ms_autoscale_config *cfg, ms_error *err) {
    memset(cfg, 0, sizeof *cfg);
    for (int k = 1; k < MS_STAGE_COUNT; k++)
        if (a->max[k] < a->min[k])
            return ms_errorf(err, MS_ERR_INVALID, "--autoscale-max is below --autoscale-min for stage %s",
                             ms_stage_name((ms_stage)k));
    cfg->policy = a->policy;
    cfg->target_attainment = a->target;
    /* Capacity bounds: the absolute SLO where given, else factor x the mean request's
     * latency alone (no bound without either). */
    const ms_cost_model *m = o->cost;
    const ms_prompt_plan plan = {.per_word = 1, .image_tokens = m->image_tokens};
    double ttft = 0, tpot = 0, ctx = 0;
    for (int64_t i = 0; i < set->n; i++) {
        int32_t imgs, words, expect;
        ms_prompt_size(&plan, o->policy, o->max_images, set->reqs[i].n_images, set->reqs[i].context_tokens, &imgs,
                       &words, &expect);
        const ms_alone_latency al = ms_slo_alone(m, o->core.max_num_batched_tokens, expect > 0 ? expect : 1, imgs,
                                                 set->reqs[i].generated_tokens, ms_cost_preprocess(m, imgs), 0);
        ttft += al.ttft_s, tpot += al.tpot_s;
        ctx += expect + 0.5 * set->reqs[i].generated_tokens;
    }
    const double n = set->n ? (double)set->n : 1;
    const double ttft_bound = o->slo.ttft_s > 0 ? o->slo.ttft_s : o->slo_factor > 0 ? o->slo_factor * ttft / n : 0;
    const double tpot_bound = o->slo.tpot_s > 0 ? o->slo.tpot_s : o->slo_factor > 0 ? o->slo_factor * tpot / n : 0;
    ms_autoscale_capacities(m, &o->core, ttft_bound, tpot_bound, ctx / n, cfg->capacity);
    for (int k = 1; k < MS_STAGE_COUNT; k++) {
        if (!(cfg->capacity[k] > 0))
            return ms_errorf(err, MS_ERR_INVALID, "autoscale: no batch of stage %s fits the SLO (capacity 0)",
                             ms_stage_name((ms_stage)k));
        cfg->min[k] = a->min[k];
        cfg->max[k] = a->max[k];
        cfg->fixed[k] = o->core.workers[k];
    }
    return MS_OK;
}

void ms_sim_autoscale_print(const ms_sim_autoscale_args *a, const ms_autoscale_config *cfg, const ms_sim_stats *ss,
                            FILE *out) {
    if (a && a->on)
        fprintf(out, "autoscale %s every %.0f s: capacity per worker %.0f image tok/s, %.0f prompt tok/s, %.1f out tok/s; "
                     "%lld intervals, %lld scaling events\n",
                ms_autoscale_policy_name(cfg->policy), a->interval_s, cfg->capacity[MS_STAGE_ENCODE],
                cfg->capacity[MS_STAGE_PREFILL], cfg->capacity[MS_STAGE_DECODE], (long long)ss->n_ticks,
                (long long)ss->n_scale_events);
    fprintf(out, "GPU-hours (worker-hours of encode + prefill + decode): %.3f\n", ss->worker_seconds / 3600.0);
}

static FILE *open_in(const char *dir, const char *name, ms_error *err) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) ms_errorf(err, MS_ERR_IO, "cannot write %s", path);
    return f;
}

ms_status ms_sim_autoscale_write(const ms_sim_stats *ss, const char *dir, bool plots, ms_error *err) {
    FILE *f = open_in(dir, "scaling.csv", err);
    if (!f) return MS_ERR_IO;
    fprintf(f, "time_s,stage,workers\n");
    for (int64_t i = 0; i < ss->n_scale_events; i++)
        fprintf(f, "%.3f,%s,%d\n", ss->scale_events[i].t, ms_stage_name((ms_stage)ss->scale_events[i].stage),
                ss->scale_events[i].workers);
    fclose(f);
    if (!(f = open_in(dir, "workers.dat", err))) return MS_ERR_IO;
    fprintf(f, "# interval_start_s requests_per_s encode prefill decode (decided at the interval's end)\n");
    for (int64_t i = 0; i < ss->n_ticks; i++) {
        const ms_sim_scale_tick *t = &ss->ticks[i];
        fprintf(f, "%.3f %.4f %d %d %d\n", t->t, t->arrival_rate, t->workers[MS_STAGE_ENCODE],
                t->workers[MS_STAGE_PREFILL], t->workers[MS_STAGE_DECODE]);
    }
    fclose(f);
    if (!plots) return MS_OK;
    if (!(f = open_in(dir, "workers.gp", err))) return MS_ERR_IO;
    /* column 1 + interval: a decision takes effect at the end of the interval it saw */
    fprintf(f, "set terminal pngcairo size 1100,650 noenhanced\nset grid\nset key top left\n"
               "set output 'workers.png'\nset title 'Workers per stage (autoscale) and arrivals'\n"
               "set xlabel 'time since start (s)'\nset ylabel 'workers'\nset y2label 'requests/s'\n"
               "set y2tics\nset ytics nomirror\nset yrange [0:*]\nset y2range [0:*]\nset offsets 0,0,0.5,0\n"
               "iv = %g\n"
               "plot 'workers.dat' using ($1+iv):3 with steps lw 2 title 'encode', "
               "'' using ($1+iv):4 with steps lw 2 title 'prefill', '' using ($1+iv):5 with steps lw 2 title 'decode', "
               "'' using 1:2 axes x1y2 with steps lw 1 lc rgb 'black' title 'arrivals/s'\n",
          ss->n_ticks > 1 ? ss->ticks[1].t - ss->ticks[0].t : 0.0);
    fclose(f);
    char cmd[2300];
    snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot workers.gp >>gnuplot.log 2>&1", dir);
    const int rc = system(cmd);
    if (rc != 0)
        return ms_errorf(err, MS_ERR_IO, "gnuplot failed on %s/workers.gp (exit %d, see %s/gnuplot.log)", dir,
                         WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, dir);
    return MS_OK;
}
