/*
 * The server's guard rails, against a `modserve serve` child process with an API key and
 * a queue of one request: 401 without or with a wrong key (not on /health), pool
 * resizing through POST /admin/workers (a body is applied whole or not at all: after a
 * refused body every pool is read back unchanged, also on a monolithic server and after
 * an engine refusal that came once another pool had grown), 503 with Retry-After when
 * the queue is full, and
 * a client that disconnects mid-stream gets its request cancelled and its KV blocks
 * freed (seen in /metrics). The long stream is greedy with 4000 tokens: it outlives the
 * checks made while it runs by far on the tiny model.
 */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "tests/test_server_util.h"
#include "tests/test_util.h"

static srv_proc g_srv;

static long call(const char *method, const char *path, const char *body, const char *key, char **out) {
    http_resp r;
    http_call(&g_srv, method, path, body, body ? strlen(body) : 0, key, &r);
    if (out) *out = strdup(r.body);
    const long st = r.status;
    http_resp_free(&r);
    return st;
}

static double metric(const char *name) {
    char *body = NULL;
    call("GET", "/metrics", NULL, NULL, &body);
    double v = -1;
    for (char *l = body; l && *l;) {
        char *nl = strchr(l, '\n');
        if (!strncmp(l, name, strlen(name)) && l[strlen(name)] == ' ') v = atof(l + strlen(name) + 1);
        l = nl ? nl + 1 : NULL;
    }
    free(body);
    return v;
}

/* The four pool sizes as /metrics reports them ("preprocess=2 encode=1 ..."). */
static void pools_text(char *out, size_t cap) {
    static const char *names[] = {"preprocess", "encode", "prefill", "decode"};
    out[0] = 0;
    for (int i = 0; i < 4; i++) {
        char m[96];
        snprintf(m, sizeof m, "modserve_stage_workers{stage=\"%s\"}", names[i]);
        const size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s%s=%g", i ? " " : "", names[i], metric(m));
    }
}

/* A body with valid and invalid stages is refused whole: no pool changes, and the error
 * names the field at fault. */
static void expect_refused_unchanged(const char *body, const char *param, const char *code) {
    char before[256], after[256], *resp = NULL;
    pools_text(before, sizeof before);
    const long st = call("POST", "/admin/workers", body, "sekret", &resp);
    cJSON *j = cJSON_Parse(resp);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(e, "param"), *c = cJSON_GetObjectItemCaseSensitive(e, "code");
    EXPECTF(st == 400 && cJSON_IsString(p) && !strcmp(p->valuestring, param) && cJSON_IsString(c) &&
                !strcmp(c->valuestring, code),
            "%s: %ld %s (want param %s, code %s)", body, st, resp, param, code);
    cJSON_Delete(j);
    free(resp);
    pools_text(after, sizeof after);
    EXPECTF(!strcmp(before, after), "%s changed the pools: %s -> %s", body, before, after);
}

static void test_auth_admin(void) {
    const char *chat = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2}";
    char *body = NULL;
    EXPECT(call("POST", "/v1/chat/completions", chat, NULL, &body) == 401);
    EXPECT(strstr(body, "\"code\":\"invalid_api_key\"") && !strstr(body, "sekret"));
    free(body);
    EXPECT(call("POST", "/v1/chat/completions", chat, "wrong", NULL) == 401);
    EXPECT(call("POST", "/v1/chat/completions", chat, "sekretX", NULL) == 401);
    EXPECT(call("GET", "/v1/models", NULL, NULL, NULL) == 401);
    EXPECT(call("POST", "/v1/chat/completions", chat, "sekret", NULL) == 200);
    EXPECT(call("GET", "/health", NULL, NULL, NULL) == 200);
    EXPECT(call("POST", "/admin/workers", "{\"encode\":2}", NULL, NULL) == 401);
    EXPECT(call("POST", "/admin/workers", "{\"encode\":2,\"decode\":2}", "sekret", &body) == 200);
    EXPECTF(strstr(body, "\"encode\":2") && strstr(body, "\"decode\":2"), "%s", body);
    free(body);
    EXPECT(metric("modserve_stage_workers{stage=\"encode\"}") == 2);
    EXPECT(call("POST", "/admin/workers", "{\"bogus\":1}", "sekret", NULL) == 400);
    EXPECT(call("POST", "/admin/workers", "{\"encode\":0}", "sekret", NULL) == 400);
    EXPECT(call("POST", "/admin/workers", "[1]", "sekret", NULL) == 400);
    expect_refused_unchanged("{\"encode\":3,\"decode\":0}", "decode", "invalid_value");
    expect_refused_unchanged("{\"encode\":3,\"bogus\":1}", "bogus", "unknown_pool");
    EXPECT(call("POST", "/admin/workers", "{\"decode\":1}", "sekret", NULL) == 200);
    EXPECT(call("POST", "/v1/chat/completions", chat, "sekret", NULL) == 200); /* still serving */
}

/* Resizing goes on past the engine's old limit of 1,024 worker slots per stage (retired
 * slots are reused): 1,100 resizes through the API all succeed and the server still
 * serves. */
static void test_admin_many_resizes(void) {
    int ok = 0;
    for (int i = 0; i < 1100; i++)
        ok += call("POST", "/admin/workers", i % 2 ? "{\"encode\":1}" : "{\"encode\":3}", "sekret", NULL) == 200;
    EXPECTF(ok == 1100, "%d of 1100 resizes accepted", ok);
    EXPECT(metric("modserve_stage_workers{stage=\"encode\"}") == 1);
    EXPECT(call("POST", "/v1/completions", "{\"prompt\":[1,5,6],\"max_tokens\":2}", "sekret", NULL) == 200);
}

/* The engine's own refusal comes after other pools were resized: they are put back.
 * The engine has 1024 worker slots per pool (retired ones are reused); the server runs
 * with --admin-max-workers 2048 so a body over the slots gets past the server's cap to
 * the engine, which refuses it before starting anything. */
static void test_admin_put_back(void) {
    expect_refused_unchanged("{\"preprocess\":3,\"encode\":1025}", "encode", "resize_refused");
    EXPECT(call("POST", "/v1/completions", "{\"prompt\":[1,5,6],\"max_tokens\":2}", "sekret", NULL) == 200);
}

typedef struct stream_state {
    size_t bytes;
    char head[4096];
} stream_state;

static size_t on_data(char *d, size_t s, size_t m, void *ctx) {
    stream_state *st = ctx;
    const size_t k = s * m;
    if (st->bytes < sizeof st->head - 1) {
        const size_t c = k < sizeof st->head - 1 - st->bytes ? k : sizeof st->head - 1 - st->bytes;
        memcpy(st->head + st->bytes, d, c);
    }
    st->bytes += k;
    return k;
}

/* A long stream holds the only queue slot: the next request is 503 with Retry-After;
 * then the stream's client goes away and the engine frees everything. */
static void test_overload_disconnect(void) {
    CURLM *m = curl_multi_init();
    CURL *h = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "%s/v1/completions", g_srv.base);
    const char *body = "{\"prompt\":[1,5,6,7],\"max_tokens\":4000,\"ignore_eos\":true,\"stream\":true,\"temperature\":0}";
    struct curl_slist *hd = curl_slist_append(NULL, "Authorization: Bearer sekret");
    hd = curl_slist_append(hd, "Content-Type: application/json");
    stream_state ss = {0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &ss);
    curl_multi_add_handle(m, h);
    int running = 1;
    for (int i = 0; i < 6000 && running && ss.bytes < 400; i++) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 10, NULL);
    }
    EXPECTF(running && ss.bytes >= 400, "stream running %d, %zu bytes: %.600s", running, ss.bytes, ss.head);
    http_resp r;
    const char *chat = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2}";
    http_call(&g_srv, "POST", "/v1/chat/completions", chat, strlen(chat), "sekret", &r);
    EXPECTF(r.status == 503 && r.retry_after[0] && strstr(r.body, "\"code\":\"server_overloaded\""), "%ld %s", r.status,
            r.body);
    http_resp_free(&r);
    EXPECT(metric("modserve_requests_active") == 1);
    EXPECT(metric("modserve_kv_blocks_used") > 0);
    /* Disconnect mid-stream. */
    curl_multi_remove_handle(m, h);
    curl_easy_cleanup(h);
    curl_multi_cleanup(m);
    curl_slist_free_all(hd);
    bool freed = false;
    for (int i = 0; i < 3000 && !freed; i++) {
        freed = metric("modserve_requests_active") == 0 && metric("modserve_kv_blocks_used") == 0 &&
                metric("modserve_client_disconnects_total") == 1;
        if (!freed) usleep(10000);
    }
    EXPECT(freed);
    EXPECT(metric("modserve_engine_finished_total{reason=\"cancelled\"}") == 1);
    /* The slot is free again. */
    EXPECT(call("POST", "/v1/chat/completions", chat, "sekret", NULL) == 200);
}

/* SIGINT with a stream longer than --shutdown-timeout (1 s): the drain cancels it, the
 * stream still ends cleanly (finish_reason "abort", [DONE]) and the server exits 0. */
static void test_drain_timeout(void) {
    unlink("testdata/server_drain.txt");
    EXPECT(ms_test_system("curl -sN -H 'Authorization: Bearer sekret' -H 'Content-Type: application/json' -d '{\"prompt\":[1,5,6],\"max_tokens\":4000,"
                          "\"ignore_eos\":true,\"stream\":true,\"temperature\":0}' %s/v1/completions "
                          "> testdata/server_drain.txt 2>/dev/null &",
                          g_srv.base) == 0);
    struct stat st;
    for (int i = 0; i < 3000 && (stat("testdata/server_drain.txt", &st) || st.st_size < 400); i++) usleep(10000);
    EXPECT(srv_stop(&g_srv, SIGINT, 120) == 0);
    char *body = NULL;
    for (int i = 0; i < 500; i++) {
        free(body);
        body = ms_test_read_file("testdata/server_drain.txt", NULL);
        if (body && strstr(body, "[DONE]")) break;
        usleep(10000);
    }
    char *text = NULL, *finish = NULL;
    int ev = 0;
    EXPECTF(body && sse_collect(body, &text, &finish, &ev) && finish && !strcmp(finish, "abort"), "drained: %.300s",
            body ? body + (strlen(body) > 300 ? strlen(body) - 300 : 0) : "(none)");
    free(text);
    free(finish);
    free(body);
}

/* Monolithic mode has no encode or prefill pool: naming one beside a valid pool refuses
 * the whole body (the valid pool used to be resized before the refusal). */
static void test_admin_monolithic(const char *model) {
    if (!srv_start(&g_srv, model, "--api-key sekret --mode monolithic")) {
        EXPECTF(false, "monolithic server did not start");
        return;
    }
    expect_refused_unchanged("{\"preprocess\":3,\"encode\":2}", "encode", "pool_not_used");
    expect_refused_unchanged("{\"prefill\":2,\"decode\":3}", "prefill", "pool_not_used");
    /* No --admin-max-workers here: the machine's cap (at least 4, at most 256) refuses. */
    expect_refused_unchanged("{\"preprocess\":2,\"decode\":100000}", "decode", "max_workers");
    char *body = NULL;
    EXPECT(call("POST", "/admin/workers", "{\"preprocess\":3,\"decode\":2}", "sekret", &body) == 200);
    EXPECTF(strstr(body, "\"preprocess\":3") && strstr(body, "\"decode\":2"), "%s", body);
    free(body);
    char pools[256];
    pools_text(pools, sizeof pools);
    EXPECTF(strstr(pools, "preprocess=3 ") && strstr(pools, "decode=2"), "%s", pools);
    EXPECT(srv_stop(&g_srv, SIGTERM, 60) == 0);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_ALL);
    const char *model = ms_test_tiny_model(1, "f32");
    if (!srv_start(&g_srv, model, "--api-key sekret --max-queued-requests 1 --shutdown-timeout 1 --admin-max-workers 2048")) {
        fprintf(stderr, "server did not start\n");
        return 1;
    }
    test_auth_admin();
    test_admin_many_resizes();
    test_admin_put_back();
    test_overload_disconnect();
    test_drain_timeout();
    test_admin_monolithic(model);
    curl_global_cleanup();
    return ms_test_finish("test_server_admin");
}
