/*
 * Admission control end to end: `modserve serve` with --max-queued-requests 2 and
 * --max-num-seqs 1. Two long greedy streams (400 tokens each, ignore_eos) fill the two
 * slots; the second cannot even start decoding until the first is done, so both stay
 * accepted for the whole of the first one's generation. Once /metrics shows both
 * active, a chat request and a streaming completions request are each refused with 503,
 * Retry-After and an OpenAI-style JSON error body, and the refusals are counted. Both
 * accepted streams still run to the end (finish "length", usage of 400 tokens, [DONE]),
 * and the server takes requests again afterwards.
 */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "tests/test_server_util.h"
#include "tests/test_util.h"

enum { N_ACCEPTED = 2, MAX_TOKENS = 400 };

static srv_proc g_srv;

static double metric(const char *name) {
    http_resp r;
    double v = -1;
    const bool ok = http_call(&g_srv, "GET", "/metrics", NULL, 0, NULL, &r);
    for (char *l = ok ? r.body : NULL; l && *l;) {
        char *nl = strchr(l, '\n');
        if (!strncmp(l, name, strlen(name)) && l[strlen(name)] == ' ') v = atof(l + strlen(name) + 1);
        l = nl ? nl + 1 : NULL;
    }
    http_resp_free(&r);
    return v;
}

typedef struct stream_buf {
    char *p;
    size_t n;
} stream_buf;

static size_t on_data(char *d, size_t s, size_t m, void *ctx) {
    stream_buf *b = ctx;
    b->p = realloc(b->p, b->n + s * m + 1);
    memcpy(b->p + b->n, d, s * m);
    b->n += s * m;
    b->p[b->n] = 0;
    return s * m;
}

/* A refused request: 503, a Retry-After header and {"error": {message, type, code}}. */
static void expect_busy(const char *path, const char *body) {
    http_resp r;
    const bool ok = http_call(&g_srv, "POST", path, body, strlen(body), NULL, &r);
    cJSON *j = ok ? cJSON_Parse(r.body) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(e, "type");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
    EXPECTF(ok && r.status == 503, "%s with the queue full: status %ld body %.300s", path, r.status, r.body);
    EXPECTF(ok && atoi(r.retry_after) >= 1, "%s: Retry-After '%s'", path, ok ? r.retry_after : "");
    EXPECTF(cJSON_IsString(code) && !strcmp(code->valuestring, "server_overloaded") && cJSON_IsString(type) &&
                cJSON_IsString(msg) && msg->valuestring[0],
            "%s: error body %.300s", path, ok ? r.body : "(no answer)");
    cJSON_Delete(j);
    http_resp_free(&r);
}

static void test_admission(void) {
    CURLM *m = curl_multi_init();
    CURL *h[N_ACCEPTED];
    stream_buf out[N_ACCEPTED] = {0};
    char url[128], bodies[N_ACCEPTED][256];
    snprintf(url, sizeof url, "%s/v1/completions", g_srv.base);
    struct curl_slist *json_hdr = curl_slist_append(NULL, "Content-Type: application/json");
    for (int i = 0; i < N_ACCEPTED; i++) {
        snprintf(bodies[i], sizeof bodies[i],
                 "{\"prompt\":[1,5,%d],\"max_tokens\":%d,\"ignore_eos\":true,\"temperature\":0,\"stream\":true,"
                 "\"stream_options\":{\"include_usage\":true}}",
                 6 + i, MAX_TOKENS);
        h[i] = curl_easy_init();
        curl_easy_setopt(h[i], CURLOPT_URL, url);
        curl_easy_setopt(h[i], CURLOPT_POSTFIELDS, bodies[i]);
        curl_easy_setopt(h[i], CURLOPT_HTTPHEADER, json_hdr); /* JSON endpoints refuse other types */
        curl_easy_setopt(h[i], CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(h[i], CURLOPT_WRITEDATA, &out[i]);
        curl_easy_setopt(h[i], CURLOPT_TIMEOUT, 600L);
        curl_multi_add_handle(m, h[i]);
    }
    /* Wait until the engine holds both (the queue is full), driving the transfers. */
    int running = 1;
    double active = 0;
    for (int i = 0; i < 3000 && running && active < N_ACCEPTED; i++) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 10, NULL);
        active = metric("modserve_requests_active");
    }
    EXPECTF(active == N_ACCEPTED, "requests active: %g (want %d)", active, N_ACCEPTED);
    expect_busy("/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2}");
    expect_busy("/v1/completions", "{\"prompt\":[1,5,6],\"max_tokens\":2,\"stream\":true}");
    /* Counted per endpoint. (modserve_engine_rejected_total counts only the scheduler
     * core's own refusals, not the engine's early one before any copy: not checked.) */
    EXPECT(metric("modserve_http_requests_total{endpoint=\"/v1/chat/completions\",code=\"503\"}") == 1);
    EXPECT(metric("modserve_http_requests_total{endpoint=\"/v1/completions\",code=\"503\"}") == 1);
    /* the engine's own count of admission refusals sees the same two */
    EXPECT(metric("modserve_engine_rejected_total") == 2);
    /* Every accepted request still completes in full. */
    while (running) {
        curl_multi_perform(m, &running);
        if (running) curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    char usage[64];
    snprintf(usage, sizeof usage, "\"completion_tokens\":%d,", MAX_TOKENS);
    for (int i = 0; i < N_ACCEPTED; i++) {
        long st = 0;
        curl_easy_getinfo(h[i], CURLINFO_RESPONSE_CODE, &st);
        char *text = NULL, *finish = NULL;
        int events = 0;
        const bool ok = out[i].p && sse_collect(out[i].p, &text, &finish, &events);
        EXPECTF(st == 200 && ok && finish && !strcmp(finish, "length") && strstr(out[i].p, usage),
                "accepted stream %d: status %ld, finish %s, tail %.300s", i, st, finish ? finish : "(none)",
                out[i].p ? out[i].p + (out[i].n > 300 ? out[i].n - 300 : 0) : "(nothing)");
        free(text);
        free(finish);
        free(out[i].p);
        curl_multi_remove_handle(m, h[i]);
        curl_easy_cleanup(h[i]);
    }
    curl_multi_cleanup(m);
    curl_slist_free_all(json_hdr);
    EXPECT(metric("modserve_requests_active") == 0);
    http_resp r;
    const char *again = "{\"prompt\":[1,5,6],\"max_tokens\":2}";
    EXPECT(http_call(&g_srv, "POST", "/v1/completions", again, strlen(again), NULL, &r) && r.status == 200);
    http_resp_free(&r);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_ALL);
    if (!srv_start(&g_srv, ms_test_tiny_model(1, "f32"), "--max-queued-requests 2 --max-num-seqs 1")) {
        fprintf(stderr, "server did not start\n");
        return 1;
    }
    test_admission();
    EXPECT(srv_stop(&g_srv, SIGTERM, 60) == 0);
    curl_global_cleanup();
    return ms_test_finish("test_server_admission");
}
