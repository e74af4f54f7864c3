/* Serving-benchmark metrics (definitions in metrics.h). */
#include "bench/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *ms_req_class_name(ms_req_class c) {
    switch (c) {
    case MS_CLASS_TEXT: return "text";
    case MS_CLASS_IMAGE: return "image";
    default: return "?";
    }
}

double ms_percentile(const double *sorted, int64_t n, double q) {
    if (n <= 0) return 0.0;
    const double pos = (double)(n - 1) * q / 100.0;
    int64_t lo = (int64_t)floor(pos);
    if (lo < 0) lo = 0;
    if (lo >= n - 1) return sorted[n - 1];
    const double frac = pos - (double)lo;
    return sorted[lo] + (sorted[lo + 1] - sorted[lo]) * frac;
}

/* A double's bits as an unsigned key with the same order (negatives flipped whole,
 * positives with the sign bit set); NaN never occurs in latencies. */
static inline uint64_t sort_key(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u >> 63 ? ~u : u | (1ull << 63);
}

/* Ascending sort of n doubles: LSD radix sort on 16-bit digits (4 passes, O(n)), since
 * a simulated week's report sorts millions of latencies several times and qsort's
 * callbacks were a tenth of the whole run. Small arrays use insertion sort. */
void ms_sort_doubles(double *v, int64_t n) {
    if (n < 64) {
        for (int64_t i = 1; i < n; i++) {
            const double x = v[i];
            int64_t j = i;
            for (; j > 0 && v[j - 1] > x; j--) v[j] = v[j - 1];
            v[j] = x;
        }
        return;
    }
    uint64_t *a = ms_xmalloc((size_t)n * sizeof *a), *b = ms_xmalloc((size_t)n * sizeof *b);
    for (int64_t i = 0; i < n; i++) a[i] = sort_key(v[i]);
    size_t *count = ms_xmalloc(65536 * sizeof *count);
    for (int shift = 0; shift < 64; shift += 16) {
        memset(count, 0, 65536 * sizeof *count);
        for (int64_t i = 0; i < n; i++) count[(a[i] >> shift) & 0xffff]++;
        size_t sum = 0;
        for (int d = 0; d < 65536; d++) {
            const size_t c = count[d];
            count[d] = sum;
            sum += c;
        }
        for (int64_t i = 0; i < n; i++) b[count[(a[i] >> shift) & 0xffff]++] = a[i];
        uint64_t *t = a;
        a = b;
        b = t;
    }
    for (int64_t i = 0; i < n; i++) {
        const uint64_t u = a[i] >> 63 ? a[i] & ~(1ull << 63) : ~a[i];
        memcpy(&v[i], &u, sizeof u);
    }
    free(count);
    free(a);
    free(b);
}

void ms_latency_stats_compute(double *v, int64_t n, ms_latency_stats *out) {
    memset(out, 0, sizeof *out);
    out->n = n;
    if (n == 0) return;
    ms_sort_doubles(v, n);
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += v[i];
    out->mean = sum / (double)n;
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (v[i] - out->mean) * (v[i] - out->mean);
    out->std = sqrt(ss / (double)n); /* numpy's default ddof = 0 */
    out->p50 = ms_percentile(v, n, 50);
    out->p90 = ms_percentile(v, n, 90);
    out->p99 = ms_percentile(v, n, 99);
    out->max = v[n - 1];
}

double ms_req_tpot(const ms_req_metrics *r) {
    if (r->output_tokens <= 1) return -1.0;
    return (r->e2e_s - r->ttft_s) / (double)(r->output_tokens - 1);
}

bool ms_req_meets_slo(const ms_req_metrics *r, const ms_slo *slo) {
    if (!r->ok) return false;
    const double tpot = r->output_tokens > 1 ? ms_req_tpot(r) : 0.0;
    if (slo->ttft_s > 0 && r->ttft_s > slo->ttft_s) return false;
    if (slo->tpot_s > 0 && tpot > slo->tpot_s) return false;
    if (slo->e2e_s > 0 && r->e2e_s > slo->e2e_s) return false;
    return true;
}

void ms_bench_metrics_compute(const ms_req_metrics *reqs, int64_t n, int cls, double duration_s,
                              const ms_slo *slo, ms_bench_metrics *out) {
    memset(out, 0, sizeof *out);
    out->duration_s = duration_s;
    out->has_slo = slo && (slo->ttft_s > 0 || slo->tpot_s > 0 || slo->e2e_s > 0);
    int64_t n_itl = 0;
    for (int64_t i = 0; i < n; i++)
        if ((cls < 0 || (int)reqs[i].cls == cls) && reqs[i].ok) n_itl += reqs[i].n_itl;
    double *ttft = ms_xmalloc((size_t)(n + 1) * sizeof *ttft);
    double *tpot = ms_xmalloc((size_t)(n + 1) * sizeof *tpot);
    double *e2e = ms_xmalloc((size_t)(n + 1) * sizeof *e2e);
    double *itl = ms_xmalloc((size_t)(n_itl + 1) * sizeof *itl);
    int64_t n_tpot = 0, k_itl = 0;
    for (int64_t i = 0; i < n; i++) {
        const ms_req_metrics *r = &reqs[i];
        if (cls >= 0 && (int)r->cls != cls) continue;
        out->requests++;
        if (!r->ok) {
            out->failed++;
            continue;
        }
        ttft[out->completed] = r->ttft_s;
        e2e[out->completed] = r->e2e_s;
        out->completed++;
        const double t = ms_req_tpot(r);
        if (t >= 0) tpot[n_tpot++] = t;
        for (int32_t k = 0; k < r->n_itl; k++) itl[k_itl++] = r->itl[k];
        out->input_tokens += r->prompt_tokens;
        out->output_tokens += r->output_tokens;
        if (out->has_slo && ms_req_meets_slo(r, slo)) out->good++;
    }
    ms_latency_stats_compute(ttft, out->completed, &out->ttft);
    ms_latency_stats_compute(tpot, n_tpot, &out->tpot);
    ms_latency_stats_compute(e2e, out->completed, &out->e2e);
    ms_latency_stats_compute(itl, k_itl, &out->itl);
    if (!out->has_slo) out->good = out->completed;
    if (duration_s > 0) {
        out->request_throughput = (double)out->completed / duration_s;
        out->output_throughput = (double)out->output_tokens / duration_s;
        out->total_token_throughput = (double)(out->input_tokens + out->output_tokens) / duration_s;
        out->goodput = (double)out->good / duration_s;
    }
    out->attainment = out->requests ? (double)out->good / (double)out->requests : 0.0;
    free(ttft);
    free(tpot);
    free(e2e);
    free(itl);
}

ms_status ms_slo_parse(const char *s, ms_slo *slo, ms_error *err) {
    memset(slo, 0, sizeof *slo);
    char buf[256];
    if (strlen(s) >= sizeof buf) return ms_errorf(err, MS_ERR_INVALID, "--goodput '%.40s...': too long", s);
    strcpy(buf, s);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tok, ':');
        char *end = NULL;
        const double ms = colon ? strtod(colon + 1, &end) : 0;
        if (!colon || end == colon + 1 || *end || !(ms > 0))
            return ms_errorf(err, MS_ERR_INVALID, "--goodput '%s': expected KEY:MILLISECONDS items (ttft:500,tpot:50)", s);
        *colon = 0;
        if (!strcmp(tok, "ttft")) slo->ttft_s = ms / 1000.0;
        else if (!strcmp(tok, "tpot")) slo->tpot_s = ms / 1000.0;
        else if (!strcmp(tok, "e2el") || !strcmp(tok, "e2e")) slo->e2e_s = ms / 1000.0;
        else return ms_errorf(err, MS_ERR_INVALID, "--goodput: unknown key '%s' (ttft, tpot, e2el)", tok);
    }
    return MS_OK;
}
