/* The autoscaling controller of `serve --autoscale` (see autoscale_ctl.h). */
#include "server/autoscale_ctl.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/http_server.h"

static ms_autoscale_capacity_fn g_capacity_loader;

void ms_autoscale_set_capacity_loader(ms_autoscale_capacity_fn fn) { g_capacity_loader = fn; }

static const ms_stage k_scaled[3] = {MS_STAGE_ENCODE, MS_STAGE_PREFILL, MS_STAGE_DECODE};

bool ms_autoscale_parse_counts(const char *s, int32_t lo, int32_t v[MS_STAGE_COUNT]) {
    const char *p = s;
    for (int i = 0; i < 3; i++) {
        char *end;
        const long x = strtol(p, &end, 10);
        if (end == p || x < lo || x > 1 << 16 || *end != (i < 2 ? ',' : '\0')) return false;
        v[k_scaled[i]] = (int32_t)x;
        p = end + 1;
    }
    return true;
}

struct ms_autoscale_ctl {
    ms_http_server *srv;
    ms_autoscaler policy;
    double interval_s;
    pthread_t thread;
    atomic_bool stop;
    ms_engine_stats prev;
    double prev_queued[MS_STAGE_COUNT];   /* units */
    double prev_wait_sum[MS_STAGE_COUNT];
    uint64_t prev_wait_n[MS_STAGE_COUNT];
};

static void read_waits(ms_server_metrics *m, double sum[MS_STAGE_COUNT], uint64_t n[MS_STAGE_COUNT]) {
    pthread_mutex_lock(&m->mu);
    for (int k = 0; k < MS_STAGE_COUNT; k++) sum[k] = m->stage_wait[k].sum, n[k] = m->stage_wait[k].count;
    pthread_mutex_unlock(&m->mu);
}

/* Units one queued item stands for: the stage's mean units per batch item so far. */
static double units_per_item(const ms_stage_stats *s) {
    return s->items ? (double)s->tokens / (double)s->items : 1.0;
}

static void tick(ms_autoscale_ctl *c) {
    ms_http_server *s = c->srv;
    ms_engine_stats now;
    ms_engine_stats_get(s->engine, &now);
    double wait_sum[MS_STAGE_COUNT];
    uint64_t wait_n[MS_STAGE_COUNT];
    read_waits(&s->metrics, wait_sum, wait_n);
    ms_autoscale_input in = {.interval_s = c->interval_s, .attainment = -1};
    for (int k = 0; k < MS_STAGE_COUNT; k++) {
        const ms_stage_stats *a = &c->prev.stage[k], *b = &now.stage[k];
        const double queued = b->queued * units_per_item(b);
        const double done = (double)(b->tokens - a->tokens);
        const double arrived = done + queued - c->prev_queued[k];
        const uint64_t finished = wait_n[k] - c->prev_wait_n[k];
        in.current[k] = b->workers;
        in.stage[k] = (ms_autoscale_stage_load){
            .arrived = arrived > 0 ? arrived : 0,
            .queued = queued,
            .busy_s = b->busy * c->interval_s,
            .wait_s = finished ? (wait_sum[k] - c->prev_wait_sum[k]) / (double)finished : 0,
        };
        c->prev_queued[k] = queued;
        c->prev_wait_sum[k] = wait_sum[k];
        c->prev_wait_n[k] = wait_n[k];
    }
    c->prev = now;
    int32_t target[MS_STAGE_COUNT], want[MS_STAGE_COUNT];
    ms_autoscaler_decide(&c->policy, &in, target);
    bool change = false;
    for (int k = 0; k < MS_STAGE_COUNT; k++) {
        want[k] = -1;
        if (c->policy.cfg.capacity[k] <= 0 && c->policy.cfg.policy != MS_AUTOSCALE_STATIC) continue;
        if (k == MS_STAGE_PREPROCESS) continue; /* CPU threads: not scaled */
        const int32_t cap = ms_admin_worker_cap(s, (ms_stage)k, in.current[k]);
        if (target[k] > cap) target[k] = cap;
        if (target[k] != in.current[k]) want[k] = target[k], change = true;
    }
    ms_api_error e;
    const bool applied = !change || ms_admin_apply_workers(s->engine, want, &e);
    if (!applied) ms_log(MS_LOG_WARN, "autoscale", "resize refused: %s; pools unchanged", e.message);
    for (int i = 0; i < 3; i++) {
        const ms_stage k = k_scaled[i];
        if (c->policy.cfg.capacity[k] <= 0 && c->policy.cfg.policy != MS_AUTOSCALE_STATIC) continue;
        const int32_t to = applied ? target[k] : in.current[k];
        ms_metrics_autoscale_decision(&s->metrics, k, in.current[k], to);
        if (to != in.current[k])
            ms_log(MS_LOG_INFO, "autoscale", "%s %s %d -> %d workers (%s; arrived %.0f units, queued %.0f)",
                   ms_stage_name(k), to > in.current[k] ? "up" : "down", in.current[k], to,
                   ms_autoscale_policy_name(c->policy.cfg.policy), in.stage[k].arrived, in.stage[k].queued);
    }
}

static void *ctl_main(void *arg) {
    ms_autoscale_ctl *c = arg;
    double next = ms_time_now() + c->interval_s;
    while (!atomic_load(&c->stop)) {
        usleep(20000); /* short naps: stop is seen at once, the tick within 20 ms */
        if (ms_time_now() < next) continue;
        next += c->interval_s;
        tick(c);
    }
    return NULL;
}

ms_status ms_autoscale_ctl_start(ms_http_server *s, const ms_autoscale_ctl_options *o, const ms_engine_options *eng,
                                 ms_autoscale_ctl **out, ms_error *err) {
    *out = NULL;
    if (ms_engine_mode_of(s->engine) != MS_MODE_DISAGG)
        return ms_errorf(err, MS_ERR_INVALID, "--autoscale needs --mode disagg (it scales the encode, prefill "
                                              "and decode pools)");
    ms_autoscale_config cfg = {.policy = o->policy};
    ms_engine_stats now;
    ms_engine_stats_get(s->engine, &now);
    if (o->policy != MS_AUTOSCALE_STATIC) {
        if (!o->profile)
            return ms_errorf(err, MS_ERR_INVALID, "--autoscale %s needs --profile profile.json (from `modserve "
                             "bench profile`) for the workers' capacities", ms_autoscale_policy_name(o->policy));
        if (!g_capacity_loader)
            return ms_errorf(err, MS_ERR_UNSUPPORTED, "this binary cannot read profiles (no capacity loader)");
        ms_core_options core = {.max_num_seqs = eng->max_num_seqs,
                                .max_num_batched_tokens = eng->max_num_batched_tokens,
                                .encode_max_batch_images = eng->encode_max_batch_images};
        ms_status st = g_capacity_loader(o->profile, &core, o->ttft_slo_s, o->tpot_slo_s, cfg.capacity, err);
        if (st != MS_OK) return ms_error_wrap(err, "--profile %s", o->profile);
    }
    for (int i = 0; i < 3; i++) {
        const ms_stage k = k_scaled[i];
        cfg.min[k] = o->min[k] > 0 ? o->min[k] : 1;
        cfg.max[k] = ms_admin_worker_cap(s, k, now.stage[k].workers);
        if (o->max[k] > 0 && o->max[k] < cfg.max[k]) cfg.max[k] = o->max[k];
        if (cfg.min[k] > cfg.max[k])
            return ms_errorf(err, MS_ERR_INVALID, "--autoscale-min %s %d is above its max %d", ms_stage_name(k),
                             cfg.min[k], cfg.max[k]);
        cfg.fixed[k] = now.stage[k].workers;
        if (o->policy != MS_AUTOSCALE_STATIC && cfg.capacity[k] <= 0)
            ms_log(MS_LOG_WARN, "autoscale", "the profile gives the %s stage no capacity: it keeps %d workers",
                   ms_stage_name(k), now.stage[k].workers);
        ms_log(MS_LOG_INFO, "autoscale", "%s: %d..%d workers, %.1f units/s per worker", ms_stage_name(k),
               cfg.min[k], cfg.max[k], cfg.capacity[k]);
    }
    ms_autoscale_ctl *c = ms_xcalloc(1, sizeof *c);
    c->srv = s;
    c->interval_s = o->interval_s > 0 ? o->interval_s : 10;
    ms_autoscaler_init(&c->policy, &cfg);
    c->prev = now;
    for (int k = 0; k < MS_STAGE_COUNT; k++) c->prev_queued[k] = now.stage[k].queued * units_per_item(&now.stage[k]);
    read_waits(&s->metrics, c->prev_wait_sum, c->prev_wait_n);
    ms_metrics_autoscale_enable(&s->metrics, &now);
    if (pthread_create(&c->thread, NULL, ctl_main, c)) {
        free(c);
        return ms_errorf(err, MS_ERR_INVALID, "could not start the autoscale thread");
    }
    *out = c;
    return MS_OK;
}

void ms_autoscale_ctl_stop(ms_autoscale_ctl *c) {
    if (!c) return;
    atomic_store(&c->stop, true);
    pthread_join(c->thread, NULL);
    free(c);
}
