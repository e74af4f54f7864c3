/* SLOs relative to a request's latency alone (see slo.h). */
#include "bench/slo.h"

#include <math.h>
#include <stdlib.h>

ms_alone_latency ms_slo_alone(const ms_cost_model *m, int32_t chunk_tokens, int32_t prompt_tokens, int32_t images,
                              int32_t output_tokens, double preprocess_s, double frontend_s) {
    ms_alone_latency a = {0};
    double t = frontend_s;
    if (images > 0) t += preprocess_s + ms_cost_encode(m, images); /* text skips both stages */
    const int32_t chunk = chunk_tokens > 0 ? chunk_tokens : prompt_tokens;
    for (int32_t pos0 = 0; pos0 < prompt_tokens; pos0 += chunk) {
        const int32_t n = prompt_tokens - pos0 < chunk ? prompt_tokens - pos0 : chunk;
        t += ms_cost_prefill(m, n);
        if (pos0 > 0) /* attention over the cached part, as simulate.c charges it */
            t += fmax(0.0, ms_cost_prefill(m, pos0 + n) - ms_cost_prefill(m, pos0) - ms_cost_prefill(m, n));
    }
    a.ttft_s = t;
    const int32_t out = output_tokens > 1 ? output_tokens : 1;
    a.tpot_s = ms_cost_decode(m, 1, prompt_tokens + 0.5 * out);
    return a;
}

bool ms_slo_factor_meets(const ms_run_request *r, double factor) {
    if (!r->m.ok) return false;
    if (r->m.ttft_s > factor * r->alone_ttft_s) return false;
    if (r->m.output_tokens > 1 && ms_req_tpot(&r->m) > factor * r->alone_tpot_s) return false;
    return true;
}

bool ms_slo_cannot_meet_alone(const ms_run_request *r, const ms_slo *slo) {
    const int32_t out = r->trace.generated_tokens > 1 ? r->trace.generated_tokens : 1;
    if (slo->ttft_s > 0 && r->alone_ttft_s > slo->ttft_s) return true;
    if (slo->tpot_s > 0 && out > 1 && r->alone_tpot_s > slo->tpot_s) return true;
    if (slo->e2e_s > 0 && r->alone_ttft_s + (out - 1) * r->alone_tpot_s > slo->e2e_s) return true;
    return false;
}

double ms_slo_attainment(const ms_bench_run *run, int cls, double factor) {
    int64_t n = 0, good = 0;
    for (int64_t i = 0; i < run->n; i++) {
        const ms_run_request *r = &run->reqs[i];
        if (cls >= 0 && (int)r->m.cls != cls) continue;
        n++;
        good += r->m.ok && (factor <= 0 || ms_slo_factor_meets(r, factor)) && ms_req_meets_slo(&r->m, &run->slo);
    }
    return n ? (double)good / (double)n : 0.0;
}

void ms_slo_summarize(const ms_bench_run *run, double factor, ms_slo_summary *out) {
    *out = (ms_slo_summary){.factor = factor};
    for (int64_t i = 0; i < run->n; i++) {
        const ms_run_request *r = &run->reqs[i];
        if (r->alone_ttft_s > 0) out->has_alone = true;
        const int c = (int)r->m.cls;
        const bool good = factor > 0 && ms_slo_factor_meets(r, factor), cannot = ms_slo_cannot_meet_alone(r, &run->slo);
        for (int k = 0; k < 3; k++) {
            if (k < 2 && k != c) continue;
            out->requests[k]++;
            out->good_factor[k] += good;
            out->cannot_meet_alone[k] += cannot;
        }
    }
}

void ms_slo_summary_print(const ms_slo_summary *s, const ms_slo *slo, FILE *out) {
    if (!s->has_alone) return;
    static const char *const k_names[3] = {"text", "image", "all"};
    const bool absolute = slo->ttft_s > 0 || slo->tpot_s > 0 || slo->e2e_s > 0;
    if (s->factor > 0) {
        fprintf(out, "SLO %.3g x latency alone (TTFT, TPOT):", s->factor);
        for (int k = 0; k < 3; k++)
            fprintf(out, " %s %.2f%% (%lld/%lld)%s", k_names[k],
                    s->requests[k] ? 100.0 * (double)s->good_factor[k] / (double)s->requests[k] : 0.0,
                    (long long)s->good_factor[k], (long long)s->requests[k], k < 2 ? "," : "\n");
    }
    if (absolute) {
        fprintf(out, "cannot meet the absolute SLO even alone (latency alone exceeds it):");
        for (int k = 0; k < 3; k++)
            fprintf(out, " %s %lld of %lld%s", k_names[k], (long long)s->cannot_meet_alone[k],
                    (long long)s->requests[k], k < 2 ? "," : "\n");
    }
}

ms_status ms_slo_factor_parse(const char *s, double *factor, ms_error *err) {
    char *end;
    const double f = strtod(s, &end);
    if (end == s || *end || !(f > 0) || !isfinite(f))
        return ms_errorf(err, MS_ERR_INVALID, "--slo-factor '%s': expected a number > 0 (e.g. 5)", s);
    *factor = f;
    return MS_OK;
}
