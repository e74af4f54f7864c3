/*
 * The synthetic trace follows TRACE.md: a full synthetic week (about 1M rows, a few
 * seconds under ASan) generated in memory and measured with the same statistics code
 * as `bench stats`; the key figures must be within 10% of the published ones.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/metrics.h"
#include "bench/stats.h"
#include "bench/synth.h"
#include "tests/test_util.h"

#define WITHIN(got, want, rel) EXPECTF(fabs((double)(got) - (double)(want)) <= (rel) * fabs((double)(want)), "%s = %g, want %g +-%.0f%%", #got, \
                                       (double)(got), (double)(want), 100.0 * (rel))

static void test_samplers(void) {
    /* Monotone in u, squares favoured over their neighbours. */
    int32_t prev = 0;
    for (double u = 0; u < 1; u += 1e-4) {
        const int32_t v = ms_synth_images_for_u(u);
        EXPECT(v >= prev && v >= 1 && v <= 10000);
        prev = v;
    }
    EXPECT(ms_synth_images_for_u(0.0) == 1 && ms_synth_images_for_u(0.6599) == 1);
    EXPECT(ms_synth_context_tokens(false, 0.5) == 792 && ms_synth_context_tokens(true, 0.9) == 9703);
    EXPECT(ms_synth_generated_tokens(true, 0.01) == 1 && ms_synth_generated_tokens(false, 0.04) == 1);
    EXPECT(ms_synth_context_tokens(false, 0.999999999) <= 150000 && ms_synth_context_tokens(true, 0.999999999) <= 40000);
}

static void test_week(void) {
    ms_synth_options o;
    ms_synth_options_default(&o);
    o.duration_s = 7 * 86400;
    o.seed = 1;
    ms_synth *s;
    ms_error err = {0};
    EXPECT(ms_synth_create(&o, &s, &err) == MS_OK);
    int64_t n = 0, cap = 1 << 20;
    ms_trace_row *rows = ms_xmalloc((size_t)cap * sizeof *rows);
    ms_trace_row r;
    int64_t prev = INT64_MIN;
    bool ordered = true;
    int64_t square_hits[6] = {0}, neighbour_hits[6] = {0};
    double text_h[168] = {0}, img_h[168] = {0};
    while (ms_synth_next(s, &r)) {
        if (n == cap) rows = ms_xrealloc(rows, (size_t)(cap *= 2) * sizeof *rows);
        rows[n++] = r;
        ordered &= r.t_ms >= prev;
        prev = r.t_ms;
        for (int k = 2; k <= 5; k++) {
            square_hits[k] += r.n_images == k * k;
            neighbour_hits[k] += r.n_images == k * k + 1 || r.n_images == k * k - 1;
        }
        const int64_t h = (r.t_ms - MS_SYNTH_EPOCH_MS) / 3600000;
        if (h >= 0 && h < 168) {
            if (r.n_images) img_h[h] += r.n_images;
            else text_h[h]++;
        }
    }
    ms_synth_destroy(s);
    EXPECT(ordered);
    EXPECT(rows[0].t_ms >= MS_SYNTH_EPOCH_MS && rows[n - 1].t_ms < MS_SYNTH_EPOCH_MS + INT64_C(604800000));
    for (int k = 2; k <= 5; k++) EXPECTF(square_hits[k] > neighbour_hits[k], "%d: squares %lld vs neighbours %lld", k * k,
                                         (long long)square_hits[k], (long long)neighbour_hits[k]);
    ms_trace_select sel;
    ms_trace_select_default(&sel);
    ms_trace_set set;
    EXPECT(ms_trace_select_rows(rows, n, &sel, &set, &err) == MS_OK);
    ms_trace_stats st;
    ms_trace_stats_compute(&set, &st);
    ms_trace_stats_print(&st, "synthetic week (seed 1)", stdout);
    char *json = ms_trace_stats_json(&st, "week");
    cJSON *j = cJSON_Parse(json);
    EXPECT(cJSON_GetObjectItem(j, "requests") && cJSON_GetObjectItem(j, "requests")->valuedouble == (double)st.requests);
    EXPECT(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "images_cdf"), "le_500") != NULL);
    cJSON_Delete(j);
    free(json);
    const double rel = 0.10;
    WITHIN((double)st.requests, 1e6, rel);
    WITHIN((double)st.image_requests / (double)st.requests, 0.5, rel);
    WITHIN(st.duration_s, 7 * 86400.0, rel);
    static const double k_cdf[MS_STATS_IMG_CDF_POINTS] = {0.66, 0.71, 0.86, 0.88, 0.92, 0.945, 0.995};
    for (int k = 0; k < MS_STATS_IMG_CDF_POINTS; k++) WITHIN(st.img_cdf[k], k_cdf[k], rel);
    EXPECT(st.images_per_request.max >= 5000 && st.images_per_request.max <= 10000);
    const ms_quantiles *ct = &st.context[1], *ci = &st.context[2], *gt = &st.generated[1], *gi = &st.generated[2];
    WITHIN(ct->p10, 176, rel); WITHIN(ct->p25, 370, rel); WITHIN(ct->p50, 792, rel);
    WITHIN(ct->p75, 1471, rel); WITHIN(ct->p90, 3151, rel);
    WITHIN(ci->p10, 435, rel); WITHIN(ci->p25, 882, rel); WITHIN(ci->p50, 1422, rel);
    WITHIN(ci->p75, 4049, rel); WITHIN(ci->p90, 9703, rel);
    EXPECT(ci->n && ct->max <= 150000 && ci->max <= 40000);
    WITHIN(st.text_context_under_100, 0.01, 0.2);
    WITHIN(gi->p10, 12, rel); WITHIN(gi->p50, 80, rel); WITHIN(gi->p80, 200, rel); WITHIN(gi->p97, 500, rel);
    WITHIN(gt->p50, 180, rel); WITHIN(gt->p90, 500, rel);
    WITHIN(st.generated_one[1], 0.05, rel); WITHIN(st.generated_one[2], 0.015, rel);
    WITHIN(st.text_generated_200_230, 0.20, rel);
    WITHIN(st.mean_rpm, 99.2, rel);
    WITHIN(st.image_share_median, 0.49, rel);
    EXPECT(st.image_share_min < 0.25 && st.image_share_max > 0.70);
    EXPECT(st.peak_image_rpm > 200 && st.peak_image_rpm < 600);
    EXPECT(st.peak_text_rpm > 100 && st.peak_text_rpm < 250);
    EXPECTF(st.peak_images_pm > 12000 && st.peak_images_pm < 40000, "peak images/min %g", st.peak_images_pm);
    /* Image bursts are not text peaks: hourly images and text requests barely correlate. */
    double mt = 0, mi = 0, sxy = 0, sxx = 0, syy = 0;
    for (int h = 0; h < 168; h++) mt += text_h[h] / 168, mi += img_h[h] / 168;
    for (int h = 0; h < 168; h++) {
        sxy += (text_h[h] - mt) * (img_h[h] - mi);
        sxx += (text_h[h] - mt) * (text_h[h] - mt);
        syy += (img_h[h] - mi) * (img_h[h] - mi);
    }
    const double corr = sxy / sqrt(sxx * syy);
    EXPECTF(fabs(corr) < 0.3, "hourly text/images correlation %g", corr);
    /* Quieter weekend: Oct 19-20 (hours 60..108 from Oct 15 12:00 are Oct 18 00:00 ..). */
    double weekday = 0, weekend = 0;
    for (int h = 12; h < 60; h++) weekday += text_h[h];  /* Oct 16-17 */
    for (int h = 84; h < 132; h++) weekend += text_h[h]; /* Oct 19-20 */
    EXPECTF(weekend < 0.8 * weekday, "weekend %g vs weekday %g text requests", weekend, weekday);
    ms_trace_set_free(&set);
    free(rows);
}

static void test_file_and_size(void) {
    char path[64];
    snprintf(path, sizeof path, "testdata/synth-%d.csv.gz", (int)getpid());
    ms_synth_options o;
    ms_synth_options_default(&o);
    o.requests = 3000;
    o.seed = 3;
    int64_t rows = 0;
    ms_error err = {0};
    EXPECT(ms_synth_write(&o, path, &rows, &err) == MS_OK && rows == 3000);
    ms_trace_select sel;
    ms_trace_select_default(&sel);
    ms_trace_set set;
    EXPECTF(ms_trace_load(path, &sel, &set, &err) == MS_OK, "%s", err.msg);
    EXPECT(set.n == 3000);
    /* Same seed, same trace. */
    ms_synth *s;
    EXPECT(ms_synth_create(&o, &s, &err) == MS_OK);
    ms_trace_row r;
    bool same = true;
    for (int64_t i = 0; i < set.n && ms_synth_next(s, &r); i++)
        same &= r.t_ms == set.reqs[i].t_ms && r.n_images == set.reqs[i].n_images &&
                r.context_tokens == set.reqs[i].context_tokens && r.generated_tokens == set.reqs[i].generated_tokens;
    EXPECT(same);
    ms_synth_destroy(s);
    ms_trace_set_free(&set);
    remove(path);
    o.requests = 0;
    EXPECT(ms_synth_create(&o, &s, &err) == MS_ERR_INVALID);
}

/* `bench stats`' quantiles (radix-sorted) equal those of a qsort-sorted copy, on data
 * with ties, both signs, zeros of both signs, infinities, subnormals and huge values,
 * at sizes on both sides of the sort's insertion cutoff. */
static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_quantiles_match_qsort(void) {
    uint64_t state = 99;
    for (int64_t n = 1; n <= 200000; n = n < 80 ? n + 9 : n * 4) {
        double *v = malloc((size_t)n * sizeof *v), *w = malloc((size_t)n * sizeof *w);
        for (int64_t i = 0; i < n; i++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            const double u = (double)(state >> 11) / 9007199254740992.0;
            const int kind = (int)(state % 17);
            v[i] = kind == 0 ? 0.0 : kind == 1 ? -0.0 : kind == 2 ? INFINITY : kind == 3 ? -INFINITY
                 : kind == 4 ? 4.9e-324 * (double)(i % 7) : kind == 5 ? -1e300 * u
                 : kind < 9 && i > 0 ? v[(int64_t)(u * (double)i)]          /* ties with earlier values */
                 : kind < 12 ? floor(u * 50.0) - 10.0                       /* small integers, as counts */
                 : (u - 0.4) * pow(10.0, (double)((int)(state % 30) - 10));
        }
        memcpy(w, v, (size_t)n * sizeof *v);
        qsort(w, (size_t)n, sizeof *w, cmp_d);
        ms_quantiles q;
        ms_quantiles_compute(v, n, &q);
        double sum = 0;
        for (int64_t i = 0; i < n; i++) sum += w[i];
        const double want[] = {ms_percentile(w, n, 10), ms_percentile(w, n, 25), ms_percentile(w, n, 50),
                               ms_percentile(w, n, 75), ms_percentile(w, n, 80), ms_percentile(w, n, 90),
                               ms_percentile(w, n, 97), ms_percentile(w, n, 99), w[n - 1]};
        const double got[] = {q.p10, q.p25, q.p50, q.p75, q.p80, q.p90, q.p97, q.p99, q.max};
        for (int k = 0; k < 9; k++)
            EXPECTF(got[k] == want[k] || (isnan(got[k]) && isnan(want[k])), "n %lld, quantile %d: %g vs %g",
                    (long long)n, k, got[k], want[k]);
        EXPECTF(q.n == n && (q.mean == sum / (double)n || (isnan(q.mean) && isnan(sum))), "n %lld: mean %g vs %g",
                (long long)n, q.mean, sum / (double)n);
        bool sorted = true;
        for (int64_t i = 0; i < n; i++) sorted = sorted && (v[i] == w[i]);
        EXPECTF(sorted, "n %lld: the values are left sorted as qsort sorts them", (long long)n);
        free(v);
        free(w);
    }
    ms_quantiles q;
    ms_quantiles_compute(NULL, 0, &q);
    EXPECT(q.n == 0 && q.p50 == 0 && q.max == 0 && q.mean == 0);
}

int main(void) {
    test_samplers();
    test_quantiles_match_qsort();
    test_file_and_size();
    test_week();
    return ms_test_finish("test_synth");
}
