/* Serving metrics against hand-computed examples (vLLM's definitions, numpy percentiles). */
#include <math.h>
#include <string.h>
#include <stdlib.h>

#include "bench/metrics.h"
#include "tests/test_util.h"

static void test_percentiles(void) {
    const double a[] = {1, 2, 3, 4};
    /* numpy.percentile([1,2,3,4], q): 50 -> 2.5, 90 -> 3.7, 99 -> 3.97, 0 -> 1, 100 -> 4 */
    EXPECT_NEAR(ms_percentile(a, 4, 50), 2.5, 1e-12);
    EXPECT_NEAR(ms_percentile(a, 4, 90), 3.7, 1e-12);
    EXPECT_NEAR(ms_percentile(a, 4, 99), 3.97, 1e-12);
    EXPECT_NEAR(ms_percentile(a, 4, 0), 1, 1e-12);
    EXPECT_NEAR(ms_percentile(a, 4, 100), 4, 1e-12);
    const double one[] = {7};
    EXPECT_NEAR(ms_percentile(one, 1, 99), 7, 1e-12);
    EXPECT(ms_percentile(NULL, 0, 50) == 0);
    double v[] = {10, 0, 5, 20, 15}; /* sorted 0 5 10 15 20: mean 10, std sqrt(50), p90 18 */
    ms_latency_stats s;
    ms_latency_stats_compute(v, 5, &s);
    EXPECT_NEAR(s.mean, 10, 1e-12);
    EXPECT_NEAR(s.std, sqrt(50), 1e-12);
    EXPECT_NEAR(s.p50, 10, 1e-12);
    EXPECT_NEAR(s.p90, 18, 1e-12);
    EXPECT_NEAR(s.p99, 19.8, 1e-12);
    EXPECT_NEAR(s.max, 20, 1e-12);
}

static void test_requests(void) {
    const double itl_a[10] = {0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1};
    const double itl_c[2] = {0.2, 0.4};
    const ms_req_metrics reqs[] = {
        /* text: TTFT 0.1, 11 tokens over 1.1 s: TPOT (1.1 - 0.1) / 10 = 0.1 */
        {.cls = MS_CLASS_TEXT, .ok = true, .send_s = 0, .ttft_s = 0.1, .e2e_s = 1.1, .prompt_tokens = 100,
         .output_tokens = 11, .itl = itl_a, .n_itl = 10},
        /* image: 1 token, no TPOT (0 for goodput) */
        {.cls = MS_CLASS_IMAGE, .ok = true, .send_s = 0.5, .ttft_s = 0.3, .e2e_s = 0.3, .prompt_tokens = 700,
         .output_tokens = 1},
        /* image: TTFT 0.15, 3 tokens, E2E 0.75: TPOT 0.3 */
        {.cls = MS_CLASS_IMAGE, .ok = true, .send_s = 1.0, .ttft_s = 0.15, .e2e_s = 0.75, .prompt_tokens = 800,
         .output_tokens = 3, .itl = itl_c, .n_itl = 2},
        /* failed text request */
        {.cls = MS_CLASS_TEXT, .ok = false, .send_s = 1.5, .prompt_tokens = 50},
    };
    EXPECT_NEAR(ms_req_tpot(&reqs[0]), 0.1, 1e-12);
    EXPECT(ms_req_tpot(&reqs[1]) < 0);
    EXPECT_NEAR(ms_req_tpot(&reqs[2]), 0.3, 1e-12);
    ms_bench_metrics m;
    ms_slo slo = {.ttft_s = 0.2};
    ms_bench_metrics_compute(reqs, 4, -1, 2.0, &slo, &m);
    EXPECT(m.requests == 4 && m.completed == 3 && m.failed == 1);
    EXPECT(m.input_tokens == 1600 && m.output_tokens == 15);
    EXPECT_NEAR(m.request_throughput, 1.5, 1e-12);
    EXPECT_NEAR(m.output_throughput, 7.5, 1e-12);
    EXPECT_NEAR(m.total_token_throughput, 807.5, 1e-12);
    EXPECT(m.good == 2); /* TTFT 0.1 and 0.15 meet 200 ms; 0.3 does not; the failure never does */
    EXPECT_NEAR(m.goodput, 1.0, 1e-12);
    EXPECT_NEAR(m.attainment, 0.5, 1e-12);
    EXPECT_NEAR(m.ttft.mean, (0.1 + 0.3 + 0.15) / 3, 1e-12);
    EXPECT_NEAR(m.ttft.p50, 0.15, 1e-12);
    EXPECT_NEAR(m.ttft.p99, 0.15 + 0.98 * 0.15, 1e-12); /* sorted .1 .15 .3: pos 1.98 */
    EXPECT(m.tpot.n == 2);
    EXPECT_NEAR(m.tpot.mean, 0.2, 1e-12);
    EXPECT(m.itl.n == 12);
    EXPECT_NEAR(m.itl.mean, (1.0 + 0.6) / 12, 1e-12);
    EXPECT_NEAR(m.itl.max, 0.4, 1e-12);
    EXPECT_NEAR(m.e2e.p50, 0.75, 1e-12);
    /* TPOT SLO: 1-token request passes (TPOT 0), 0.3 fails, 0.1 passes. */
    slo = (ms_slo){.tpot_s = 0.15};
    ms_bench_metrics_compute(reqs, 4, -1, 2.0, &slo, &m);
    EXPECT(m.good == 2);
    /* Both SLOs, per class. */
    slo = (ms_slo){.ttft_s = 0.2, .tpot_s = 0.15};
    ms_bench_metrics_compute(reqs, 4, MS_CLASS_IMAGE, 2.0, &slo, &m);
    EXPECT(m.requests == 2 && m.completed == 2 && m.failed == 0 && m.good == 0);
    ms_bench_metrics_compute(reqs, 4, MS_CLASS_TEXT, 2.0, &slo, &m);
    EXPECT(m.requests == 2 && m.completed == 1 && m.failed == 1 && m.good == 1);
    EXPECT_NEAR(m.attainment, 0.5, 1e-12);
    /* SLO boundary is inclusive (vLLM: slo >= value). */
    slo = (ms_slo){.ttft_s = 0.15};
    ms_bench_metrics_compute(reqs, 4, MS_CLASS_IMAGE, 2.0, &slo, &m);
    EXPECT(m.good == 1);
    /* No SLO: every completed request counts as good. */
    ms_bench_metrics_compute(reqs, 4, -1, 2.0, NULL, &m);
    EXPECT(!m.has_slo && m.good == 3);
    /* Empty set. */
    ms_bench_metrics_compute(reqs, 0, -1, 0.0, NULL, &m);
    EXPECT(m.requests == 0 && m.ttft.n == 0 && m.attainment == 0);
}

static void test_slo_parse(void) {
    ms_slo s;
    ms_error err = {0};
    EXPECT(ms_slo_parse("ttft:500,tpot:50", &s, &err) == MS_OK);
    EXPECT_NEAR(s.ttft_s, 0.5, 1e-12);
    EXPECT_NEAR(s.tpot_s, 0.05, 1e-12);
    EXPECT(s.e2e_s == 0);
    EXPECT(ms_slo_parse("e2el:2000", &s, &err) == MS_OK && fabs(s.e2e_s - 2) < 1e-12);
    EXPECT(ms_slo_parse("ttft", &s, &err) == MS_ERR_INVALID);
    EXPECT(ms_slo_parse("ttft:-1", &s, &err) == MS_ERR_INVALID);
    EXPECT(ms_slo_parse("itl:5", &s, &err) == MS_ERR_INVALID);
    EXPECT(ms_slo_parse("ttft:5x", &s, &err) == MS_ERR_INVALID);
}

/* The radix sort against qsort on values with both signs, zeros, ties, huge and tiny
 * magnitudes, at sizes on both sides of its insertion-sort cutoff. */
static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_sort(void) {
    uint64_t state = 12345;
    for (int64_t n = 0; n <= 5000; n = n < 70 ? n + 7 : n * 3) {
        double *v = malloc((size_t)(n + 1) * sizeof *v), *w = malloc((size_t)(n + 1) * sizeof *w);
        for (int64_t i = 0; i < n; i++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            const double u = (double)(state >> 11) / 9007199254740992.0;
            v[i] = i % 11 == 0 ? 0.0 : i % 13 == 0 ? -0.0 : i % 5 == 0 ? v[i / 2] /* ties */
                 : (u - 0.3) * pow(10.0, (double)((int)(state % 40) - 20));
        }
        memcpy(w, v, (size_t)n * sizeof *v);
        ms_sort_doubles(v, n);
        qsort(w, (size_t)n, sizeof *w, cmp_d);
        bool same = true;
        for (int64_t i = 0; i < n; i++) same = same && v[i] == w[i];
        EXPECTF(same, "n = %lld", (long long)n);
        free(v);
        free(w);
    }
}

int main(void) {
    test_sort();
    test_percentiles();
    test_requests();
    test_slo_parse();
    return ms_test_finish("test_metrics");
}
