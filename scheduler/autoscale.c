/* Autoscaling policies (see autoscale.h): pure logic, no clock, no I/O. */
#include "scheduler/autoscale.h"

#include <math.h>
#include <string.h>

static const char *const k_names[] = {"static", "modserve", "trend"};

const char *ms_autoscale_policy_name(ms_autoscale_policy p) {
    return (unsigned)p < sizeof k_names / sizeof k_names[0] ? k_names[p] : "?";
}

ms_status ms_autoscale_policy_parse(const char *s, ms_autoscale_policy *p, ms_error *err) {
    for (size_t k = 0; k < sizeof k_names / sizeof k_names[0]; k++)
        if (!strcmp(s, k_names[k])) {
            *p = (ms_autoscale_policy)k;
            return MS_OK;
        }
    return ms_errorf(err, MS_ERR_INVALID, "--autoscale '%s': expected static, modserve or trend", s);
}

void ms_autoscaler_init(ms_autoscaler *a, const ms_autoscale_config *cfg) {
    memset(a, 0, sizeof *a);
    a->cfg = *cfg;
    ms_autoscale_config *c = &a->cfg;
    if (c->target_attainment <= 0) c->target_attainment = 0.99;
    if (c->alpha <= 0) c->alpha = 0.5;
    if (c->beta <= 0) c->beta = 0.3;
    if (c->utilization <= 0) c->utilization = 0.85;
    if (c->down_after <= 0) c->down_after = 2;
    for (int k = 0; k < MS_STAGE_COUNT; k++) a->util[k] = c->utilization;
}

/* The stages to blame for a missed interval: every stage with a backlog, else the one
 * with the longest mean wait, else the busiest (by busy time per worker). */
static void blame(const ms_autoscale_config *c, const ms_autoscale_input *in, bool out[MS_STAGE_COUNT]) {
    int longest = -1, busiest = -1;
    double wait = 0, util = -1;
    bool any_backlog = false;
    for (int k = 0; k < MS_STAGE_COUNT; k++) {
        out[k] = false;
        if (c->capacity[k] <= 0) continue;
        const double u = in->current[k] > 0 ? in->stage[k].busy_s / (in->current[k] * in->interval_s) : 0;
        if (u > util) util = u, busiest = k;
        if (in->stage[k].wait_s > wait) wait = in->stage[k].wait_s, longest = k;
        any_backlog |= in->stage[k].queued > 0;
    }
    for (int k = 0; k < MS_STAGE_COUNT; k++)
        if (c->capacity[k] > 0)
            out[k] = any_backlog ? in->stage[k].queued > 0 : k == (longest >= 0 ? longest : busiest);
}

static int32_t clamp_workers(const ms_autoscale_config *c, int k, double want) {
    int32_t n = want > 1e9 ? 1000000000 : (int32_t)want;
    if (n < c->min[k]) n = c->min[k];
    if (c->max[k] > 0 && n > c->max[k]) n = c->max[k];
    return n;
}

/* ceil with a little slack so 2.0000000001 workers' worth of load stays 2 */
static double ceil_units(double x) { return ceil(x - 1e-9); }

static void decide_modserve(ms_autoscaler *a, const ms_autoscale_input *in, int32_t *target) {
    const ms_autoscale_config *c = &a->cfg;
    const bool missing = in->attainment >= 0 && in->attainment < c->target_attainment;
    bool blamed[MS_STAGE_COUNT];
    blame(c, in, blamed);
    for (int k = 0; k < MS_STAGE_COUNT; k++) {
        if (c->capacity[k] <= 0) {
            target[k] = in->current[k];
            continue;
        }
        if (!missing) a->extra[k] = 0; /* attainment recovered: back to the rule */
        else if (blamed[k]) a->extra[k]++;
        const double rate = in->stage[k].arrived / in->interval_s;
        target[k] = clamp_workers(c, k, ceil_units(rate / c->capacity[k]) + a->extra[k]);
    }
}

static void decide_trend(ms_autoscaler *a, const ms_autoscale_input *in, int32_t *target) {
    const ms_autoscale_config *c = &a->cfg;
    if (in->attainment >= 0) {
        bool blamed[MS_STAGE_COUNT];
        blame(c, in, blamed);
        /* Give headroom back only with a margin (half the way from the target to 1):
         * raising it on every interval that just meets the target oscillates. */
        const bool missing = in->attainment < c->target_attainment;
        const bool comfortable = in->attainment >= 0.5 * (1 + c->target_attainment);
        for (int k = 0; k < MS_STAGE_COUNT; k++) {
            if (missing && blamed[k]) a->util[k] = fmax(0.05, a->util[k] * 0.7);
            else if (comfortable) a->util[k] = fmin(c->utilization, a->util[k] * 1.1);
        }
    }
    for (int k = 0; k < MS_STAGE_COUNT; k++) {
        if (c->capacity[k] <= 0) {
            target[k] = in->current[k];
            continue;
        }
        const double rate = in->stage[k].arrived / in->interval_s;
        double growth = 0;
        if (a->intervals == 0) {
            a->level[k] = rate;
            a->trend[k] = 0;
        } else {
            const double prev = a->level[k];
            a->level[k] = c->alpha * rate + (1 - c->alpha) * (prev + a->trend[k]);
            a->trend[k] = c->beta * (a->level[k] - prev) + (1 - c->beta) * a->trend[k];
            growth = fmax(0.0, a->trend[k]);
        }
        double predicted = fmax(rate, a->level[k] + a->trend[k]);
        /* The encoder leads: an image burst reaches prefill after encoding, so the
         * encoder plans for one more step of the growth it sees. */
        if (k == MS_STAGE_ENCODE) predicted += growth;
        const double demand = predicted + in->stage[k].queued / in->interval_s; /* drain the backlog */
        const int32_t want = clamp_workers(c, k, ceil_units(demand / (c->capacity[k] * a->util[k])));
        if (want >= in->current[k]) {
            target[k] = want;
            a->down_wait[k] = 0;
            a->down_want[k] = 0;
            continue;
        }
        /* fewer: only after down_after intervals in a row all wanting fewer */
        a->down_want[k] = a->down_wait[k] == 0 || want > a->down_want[k] ? want : a->down_want[k];
        if (++a->down_wait[k] >= c->down_after) {
            target[k] = a->down_want[k];
            a->down_wait[k] = 0;
            a->down_want[k] = 0;
        } else {
            target[k] = in->current[k];
        }
    }
}

void ms_autoscaler_decide(ms_autoscaler *a, const ms_autoscale_input *in, int32_t target[MS_STAGE_COUNT]) {
    const ms_autoscale_config *c = &a->cfg;
    switch (c->policy) {
    case MS_AUTOSCALE_STATIC:
        for (int k = 0; k < MS_STAGE_COUNT; k++)
            target[k] = c->capacity[k] > 0 || c->fixed[k] > 0 ? clamp_workers(c, k, c->fixed[k]) : in->current[k];
        break;
    case MS_AUTOSCALE_MODSERVE: decide_modserve(a, in, target); break;
    case MS_AUTOSCALE_TREND: decide_trend(a, in, target); break;
    }
    a->intervals++;
}
