/* Capacities of the autoscaling policies from a profile (see autoscale_capacity.h). */
#include "bench/autoscale_capacity.h"

#include <math.h>
#include <stdlib.h>

static double best_throughput(const ms_cost_model *m, bool encode, int32_t max_batch, double units_per_item,
                              double bound) {
    double best = 0;
    for (int32_t b = 1; b <= max_batch; b = b < 64 ? b + 1 : b + b / 16) {
        const double t = encode ? ms_cost_encode(m, b) : ms_cost_prefill(m, b);
        if (t <= 0 || (bound > 0 && t > bound)) continue;
        best = fmax(best, b * units_per_item / t);
    }
    return best;
}

void ms_autoscale_capacities(const ms_cost_model *m, const ms_core_options *core, double ttft_slo_s,
                             double tpot_slo_s, double mean_ctx, double capacity[MS_STAGE_COUNT]) {
    const double half_ttft = ttft_slo_s > 0 ? 0.5 * ttft_slo_s : 0;
    capacity[MS_STAGE_PREPROCESS] = 0;
    capacity[MS_STAGE_ENCODE] = best_throughput(m, true, core->encode_max_batch_images, m->image_tokens, half_ttft);
    capacity[MS_STAGE_PREFILL] = best_throughput(m, false, core->max_num_batched_tokens, 1, half_ttft);
    capacity[MS_STAGE_DECODE] = 0;
    for (int32_t b = 1; b <= core->max_num_seqs; b++) {
        const double t = ms_cost_decode(m, b, mean_ctx);
        if (t > 0 && (tpot_slo_s <= 0 || t <= tpot_slo_s)) capacity[MS_STAGE_DECODE] = fmax(capacity[MS_STAGE_DECODE], b / t);
    }
}

ms_status ms_autoscale_profile_capacities(const char *path, const ms_core_options *core, double ttft_slo_s,
                                          double tpot_slo_s, double capacity[MS_STAGE_COUNT], ms_error *err) {
    ms_cost_model *m = ms_xcalloc(1, sizeof *m); /* ~70 KB: not on the stack */
    ms_status st = ms_cost_model_load(path, m, err);
    if (st == MS_OK) {
        const double ctx = m->n_ctx > 0 ? m->ctx[m->n_ctx / 2] : 0;
        ms_autoscale_capacities(m, core, ttft_slo_s, tpot_slo_s, ctx, capacity);
    }
    free(m);
    return st;
}
