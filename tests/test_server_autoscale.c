/*
 * `serve --autoscale trend --autoscale-interval 1` on the tiny model with a hand-made
 * profile whose workers are slow on paper (decode: 2 tokens/s per worker), so any real
 * load wants more workers: under a burst of concurrent requests /metrics shows a scale-up
 * decision, after the burst a scale-down; every request answers 200 (resizing loses or
 * fails none), the pool gauges stay within --autoscale-min .. --autoscale-max, and
 * /metrics passes promtool. The burst is bounded by a request count and every wait by a
 * poll count.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/test_server_util.h"
#include "tests/test_util.h"

static srv_proc g_srv;

enum { BURST_THREADS = 6, BURST_MAX_REQUESTS = 600, MAX_POLLS = 600 };
static const int k_min[3] = {1, 1, 1}, k_max[3] = {2, 2, 3}; /* encode, prefill, decode */
static const char *const k_stages[3] = {"encode", "prefill", "decode"};

static atomic_int g_sent, g_ok, g_failed;
static atomic_bool g_stop_burst;

static double metric(const char *name) {
    http_resp r;
    double v = -1;
    if (!http_call(&g_srv, "GET", "/metrics", NULL, 0, NULL, &r)) return v;
    for (char *l = r.body; l && *l;) {
        char *nl = strchr(l, '\n');
        if (!strncmp(l, name, strlen(name)) && l[strlen(name)] == ' ') v = atof(l + strlen(name) + 1);
        l = nl ? nl + 1 : NULL;
    }
    http_resp_free(&r);
    return v;
}

static double decisions(const char *stage, const char *direction) {
    char m[128];
    snprintf(m, sizeof m, "modserve_autoscale_decisions_total{stage=\"%s\",direction=\"%s\"}", stage, direction);
    return metric(m);
}

static int g_bound_violations;
static void check_bounds(void) {
    for (int i = 0; i < 3; i++) {
        char m[96];
        snprintf(m, sizeof m, "modserve_stage_workers{stage=\"%s\"}", k_stages[i]);
        const double w = metric(m);
        if (w < k_min[i] || w > k_max[i]) {
            fprintf(stderr, "%s pool has %g workers (bounds %d..%d)\n", k_stages[i], w, k_min[i], k_max[i]);
            g_bound_violations++;
        }
    }
}

static void *burst(void *arg) {
    (void)arg;
    const char *body = "{\"prompt\":[1,5,6,7,8,9,10,11],\"max_tokens\":24,\"temperature\":0}";
    while (!atomic_load(&g_stop_burst) && atomic_fetch_add(&g_sent, 1) < BURST_MAX_REQUESTS) {
        http_resp r;
        const bool sent = http_call(&g_srv, "POST", "/v1/completions", body, strlen(body), NULL, &r);
        if (sent && r.status == 200) atomic_fetch_add(&g_ok, 1);
        else {
            atomic_fetch_add(&g_failed, 1);
            fprintf(stderr, "request failed: %ld %s\n", sent ? r.status : 0, sent && r.body ? r.body : "");
        }
        if (sent) http_resp_free(&r);
    }
    return NULL;
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT); /* before the burst threads use curl */
    const char *model = ms_test_tiny_model(1, "f32");
    char profile[4096];
    snprintf(profile, sizeof profile, "%s.autoscale_profile.json", model);
    FILE *f = fopen(profile, "w");
    EXPECT(f != NULL);
    if (!f) return ms_test_finish("test_server_autoscale");
    /* throughputs per worker: encode 1 image/s, prefill 10 tokens/s, decode 2 tokens/s */
    fputs("{\"model\": \"tiny\", \"device\": \"cpu\", \"image_tokens\": 4,\n"
          " \"preprocess\": {\"images\": [1, 8], \"seconds\": [0.01, 0.08]},\n"
          " \"encode\": {\"images\": [1, 8], \"seconds\": [1, 8]},\n"
          " \"prefill\": {\"tokens\": [1, 4096], \"seconds\": [0.1, 409.6]},\n"
          " \"decode\": {\"batch\": [1, 64], \"context\": [128], \"seconds\": [[0.5, 32]]}}\n", f);
    fclose(f);
    char flags[4400];
    snprintf(flags, sizeof flags, "--autoscale trend --autoscale-interval 1 --autoscale-min 1,1,1 "
             "--autoscale-max 2,2,3 --profile %s --shutdown-timeout 5", profile);
    if (!srv_start(&g_srv, model, flags)) {
        EXPECT(!"server started");
        return ms_test_finish("test_server_autoscale");
    }
    EXPECT(decisions("decode", "up") == 0);

    /* The burst runs until a scale-up is seen (or its request bound). */
    pthread_t th[BURST_THREADS];
    for (int i = 0; i < BURST_THREADS; i++) pthread_create(&th[i], NULL, burst, NULL);
    double ups = 0;
    for (int p = 0; p < MAX_POLLS && ups < 1 && atomic_load(&g_sent) < BURST_MAX_REQUESTS; p++) {
        usleep(100000);
        ups = decisions("decode", "up");
        check_bounds();
    }
    atomic_store(&g_stop_burst, true);
    for (int i = 0; i < BURST_THREADS; i++) pthread_join(th[i], NULL);
    EXPECTF(ups >= 1, "no decode scale-up decision during the burst of %d requests", atomic_load(&g_ok));
    EXPECT(metric("modserve_autoscale_target_workers{stage=\"decode\"}") >= 2);

    /* Idle: the trend policy comes back down (after its hysteresis). */
    double downs = 0;
    for (int p = 0; p < MAX_POLLS && downs < 1; p++) {
        usleep(100000);
        downs = decisions("decode", "down");
        check_bounds();
    }
    EXPECTF(downs >= 1, "no decode scale-down decision after the burst");
    /* Still serving after the pools shrank. */
    atomic_store(&g_stop_burst, false);
    atomic_store(&g_sent, BURST_MAX_REQUESTS - 4);
    burst(NULL);
    printf("burst: %d requests answered 200, %d failed; decode decisions: %g up, %g down, %g hold\n",
           atomic_load(&g_ok), atomic_load(&g_failed), decisions("decode", "up"), decisions("decode", "down"),
           decisions("decode", "hold"));
    EXPECTF(atomic_load(&g_failed) == 0, "%d requests failed", atomic_load(&g_failed));
    EXPECT(atomic_load(&g_ok) > 0);
    /* The autoscale lines keep /metrics valid (as test_server_api checks without them). */
    http_resp r;
    EXPECT(http_call(&g_srv, "GET", "/metrics", NULL, 0, NULL, &r) && r.status == 200);
    FILE *mf = fopen("testdata/server_autoscale_metrics.txt", "w");
    EXPECT(mf != NULL);
    if (mf) {
        fwrite(r.body, 1, r.n, mf);
        fclose(mf);
        EXPECTF(ms_test_system("promtool check metrics < testdata/server_autoscale_metrics.txt") == 0,
                "promtool refused /metrics (or is not installed: Debian's prometheus package)");
    }
    http_resp_free(&r);
    EXPECTF(g_bound_violations == 0, "pool sizes left the bounds %d times", g_bound_violations);
    EXPECT(srv_stop(&g_srv, SIGTERM, 30) == 0);
    return ms_test_finish("test_server_autoscale");
}
