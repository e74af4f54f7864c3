/*
 * What a browser page can make the server do (issue 15 item 4), against `modserve serve`
 * child processes: a JSON endpoint refuses a body that is not application/json (415; the
 * text/plain "simple" cross-site POST), a request with a foreign Origin is refused (403)
 * unless --allowed-origins lists it (then CORS headers and the OPTIONS preflight), never
 * on /admin/workers; a Host header that is not the loopback address or a name from
 * --allowed-hosts is refused (421, DNS rebinding); /admin/workers refuses pool sizes over
 * the machine-derived cap (max(4, 2 x online cores) for the preprocess pool); strict JSON on /admin/workers.
 */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "tests/test_server_util.h"
#include "tests/test_util.h"

static srv_proc g_srv;

typedef struct raw_resp {
    long status;
    char body[4096];
    size_t n;
    char headers[4096]; /* every response header line, as received */
    size_t nh;
} raw_resp;

static size_t raw_body(char *d, size_t s, size_t m, void *ctx) {
    raw_resp *r = ctx;
    const size_t k = s * m, room = sizeof r->body - 1 - r->n;
    memcpy(r->body + r->n, d, k < room ? k : room);
    r->n += k < room ? k : room;
    r->body[r->n] = 0;
    return k;
}

static size_t raw_header(char *d, size_t s, size_t m, void *ctx) {
    raw_resp *r = ctx;
    const size_t k = s * m, room = sizeof r->headers - 1 - r->nh;
    memcpy(r->headers + r->nh, d, k < room ? k : room);
    r->nh += k < room ? k : room;
    r->headers[r->nh] = 0;
    return k;
}

/* One request with exactly the headers given (NULL-terminated list; "Content-Type:" with
 * nothing after it removes curl's default). */
static long raw(const srv_proc *p, const char *method, const char *path, const char *body, const char *const *hdrs,
                raw_resp *out) {
    memset(out, 0, sizeof *out);
    CURL *c = curl_easy_init();
    char url[256];
    snprintf(url, sizeof url, "%s%s", p->base, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    for (const char *const *x = hdrs; x && *x; x++) h = curl_slist_append(h, *x);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, raw_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, raw_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return out->status;
}

static bool has_header(const raw_resp *r, const char *line) { return strcasestr(r->headers, line) != NULL; }

static const char *k_prompt = "{\"prompt\":[1,5,6],\"max_tokens\":2,\"temperature\":0}";

static void expect_status(const srv_proc *p, const char *method, const char *path, const char *body,
                          const char *const *hdrs, long want, const char *want_in_body) {
    raw_resp r;
    const long st = raw(p, method, path, body, hdrs, &r);
    EXPECTF(st == want && (!want_in_body || strstr(r.body, want_in_body)), "%s %s [%s%s]: %ld %.300s (want %ld, %s)",
            method, path, hdrs && hdrs[0] ? hdrs[0] : "", hdrs && hdrs[0] && hdrs[1] ? ", ..." : "", st, r.body, want,
            want_in_body ? want_in_body : "");
}

/* 415 for a JSON endpoint's body sent as anything but application/json. */
static void test_content_type(void) {
    const char *plain[] = {"Content-Type: text/plain", NULL};
    const char *form[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    const char *none[] = {"Content-Type:", NULL};
    const char *json_cs[] = {"Content-Type: application/json; charset=utf-8", NULL};
    const char *json_caps[] = {"Content-Type: Application/JSON", NULL};
    const char *jsonx[] = {"Content-Type: application/jsonx", NULL};
    expect_status(&g_srv, "POST", "/v1/completions", k_prompt, plain, 415, "text/plain");
    expect_status(&g_srv, "POST", "/v1/completions", k_prompt, form, 415, "application/x-www-form-urlencoded");
    expect_status(&g_srv, "POST", "/v1/completions", k_prompt, none, 415, "\"code\":\"unsupported_media_type\"");
    expect_status(&g_srv, "POST", "/v1/completions", k_prompt, jsonx, 415, "application/jsonx");
    expect_status(&g_srv, "POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                  plain, 415, "text/plain");
    /* The attack of the issue: a text/plain cross-site POST growing a pool. */
    expect_status(&g_srv, "POST", "/admin/workers", "{\"preprocess\":3}", plain, 415, "text/plain");
    expect_status(&g_srv, "POST", "/v1/completions", k_prompt, json_cs, 200, "\"choices\"");
    expect_status(&g_srv, "POST", "/v1/completions", k_prompt, json_caps, 200, "\"choices\"");
    /* Bodiless GETs (Prometheus, health checks) need no Content-Type. */
    expect_status(&g_srv, "GET", "/metrics", NULL, none, 200, "modserve_ready 1");
    expect_status(&g_srv, "GET", "/health", NULL, none, 200, "ok");
}

/* 403 for a foreign Origin; the server's own origin passes. */
static void test_origin(void) {
    char own[128], own_host[128];
    snprintf(own, sizeof own, "Origin: http://127.0.0.1:%d", g_srv.port);
    snprintf(own_host, sizeof own_host, "Origin: http://localhost:%d", g_srv.port);
    const char *evil[] = {"Content-Type: application/json", "Origin: http://evil.example", NULL};
    const char *null_origin[] = {"Content-Type: application/json", "Origin: null", NULL};
    const char *same[] = {"Content-Type: application/json", own, NULL};
    char host_localhost[64];
    snprintf(host_localhost, sizeof host_localhost, "Host: localhost:%d", g_srv.port);
    const char *same_localhost[] = {"Content-Type: application/json", own_host, host_localhost, NULL};
    expect_status(&g_srv, "POST", "/v1/completions", k_prompt, evil, 403, "http://evil.example");
    expect_status(&g_srv, "GET", "/v1/models", NULL, evil, 403, "\"code\":\"origin_not_allowed\"");
    expect_status(&g_srv, "POST", "/admin/workers", "{\"preprocess\":3}", evil, 403, "origin_not_allowed");
    expect_status(&g_srv, "POST", "/v1/completions", k_prompt, null_origin, 403, "origin_not_allowed");
    expect_status(&g_srv, "OPTIONS", "/v1/completions", NULL, evil, 403, "origin_not_allowed");
    expect_status(&g_srv, "POST", "/v1/completions", k_prompt, same, 200, "\"choices\"");
    expect_status(&g_srv, "POST", "/v1/completions", k_prompt, same_localhost, 200, "\"choices\"");
    expect_status(&g_srv, "POST", "/admin/workers", "{\"preprocess\":1}", same, 200, "\"workers\"");
}

/* 421 for a Host that is not the loopback address the server is bound to. */
static void test_host(void) {
    char h[6][96];
    snprintf(h[0], sizeof h[0], "Host: evil.example:%d", g_srv.port);
    snprintf(h[1], sizeof h[1], "Host: localhost:%d", g_srv.port);
    snprintf(h[2], sizeof h[2], "Host: localhost");
    snprintf(h[3], sizeof h[3], "Host: [::1]:%d", g_srv.port);
    snprintf(h[4], sizeof h[4], "Host: 127.0.0.1:%d", g_srv.port == 1 ? 2 : 1); /* the wrong port */
    snprintf(h[5], sizeof h[5], "Host: myhost.internal:%d", g_srv.port);
    const long want[6] = {421, 200, 200, 200, 421, 421};
    for (int i = 0; i < 6; i++) {
        const char *hd[] = {"Content-Type: application/json", h[i], NULL};
        expect_status(&g_srv, "POST", "/v1/completions", k_prompt, hd, want[i],
                      want[i] == 421 ? "\"code\":\"host_not_allowed\"" : "\"choices\"");
    }
    const char *hd[] = {h[0], NULL};
    expect_status(&g_srv, "GET", "/metrics", NULL, hd, 421, "host_not_allowed");
}

/* /admin/workers: a preprocess pool over max(4, 2 x online cores) is refused, naming the
 * cap; strict JSON. */
static void test_worker_cap(void) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    long cap = 2 * cores < 4 ? 4 : 2 * cores;
    if (cap > 256) cap = 256;
    char body[64], capmsg[64];
    const char *json[] = {"Content-Type: application/json", NULL};
    snprintf(body, sizeof body, "{\"preprocess\":%ld}", cap + 1);
    snprintf(capmsg, sizeof capmsg, "%ld", cap);
    expect_status(&g_srv, "POST", "/admin/workers", body, json, 400, "\"code\":\"max_workers\"");
    expect_status(&g_srv, "POST", "/admin/workers", body, json, 400, capmsg);
    expect_status(&g_srv, "POST", "/admin/workers", "{\"decode\":100000}", json, 400, "max_workers");
    snprintf(body, sizeof body, "{\"preprocess\":%ld}", cap);
    expect_status(&g_srv, "POST", "/admin/workers", body, json, 200, "\"workers\"");
    expect_status(&g_srv, "POST", "/admin/workers", "{\"preprocess\":1} x", json, 400, "json_trailing_data");
    expect_status(&g_srv, "POST", "/admin/workers", "{\"preprocess\":2,\"preprocess\":1}", json, 400,
                  "json_duplicate_key");
    expect_status(&g_srv, "POST", "/admin/workers", "{\"preprocess\":1}", json, 200, "\"preprocess\":1");
}

/* A server with --allowed-origins and --allowed-hosts: listed origins get CORS headers
 * (also on a stream) and a preflight answer; never on /admin/workers. */
static void test_allowed(const char *model) {
    srv_proc s;
    if (!srv_start(&s, model, "--allowed-origins http://app.example,https://ui.example:8443 --allowed-hosts myhost.internal")) {
        EXPECTF(false, "server with --allowed-origins did not start");
        return;
    }
    const char *app[] = {"Content-Type: application/json", "Origin: http://app.example", NULL};
    raw_resp r;
    EXPECT(raw(&s, "POST", "/v1/completions", k_prompt, app, &r) == 200);
    EXPECTF(has_header(&r, "Access-Control-Allow-Origin: http://app.example") && has_header(&r, "Vary: Origin"), "%s",
            r.headers);
    const char *ui_stream = "{\"prompt\":[1,5,6],\"max_tokens\":2,\"stream\":true}";
    const char *ui[] = {"Content-Type: application/json", "Origin: https://ui.example:8443", NULL};
    EXPECT(raw(&s, "POST", "/v1/completions", ui_stream, ui, &r) == 200 && strstr(r.body, "[DONE]"));
    EXPECTF(has_header(&r, "Access-Control-Allow-Origin: https://ui.example:8443"), "%s", r.headers);
    const char *pre[] = {"Origin: http://app.example", "Access-Control-Request-Method: POST",
                         "Access-Control-Request-Headers: content-type, authorization", NULL};
    EXPECT(raw(&s, "OPTIONS", "/v1/chat/completions", NULL, pre, &r) == 204);
    EXPECTF(has_header(&r, "Access-Control-Allow-Origin: http://app.example") &&
                has_header(&r, "Access-Control-Allow-Methods:") && has_header(&r, "Access-Control-Allow-Headers:") &&
                strcasestr(r.headers, "Content-Type") && strcasestr(r.headers, "Authorization"),
            "%s", r.headers);
    expect_status(&s, "OPTIONS", "/admin/workers", NULL, pre, 403, "origin_not_allowed");
    expect_status(&s, "POST", "/admin/workers", "{\"preprocess\":2}", app, 403, "origin_not_allowed");
    const char *other[] = {"Content-Type: application/json", "Origin: http://app.example.evil", NULL};
    expect_status(&s, "POST", "/v1/completions", k_prompt, other, 403, "origin_not_allowed");
    char host[96];
    snprintf(host, sizeof host, "Host: myhost.internal:%d", s.port);
    const char *listed[] = {"Content-Type: application/json", host, NULL};
    expect_status(&s, "POST", "/v1/completions", k_prompt, listed, 200, "\"choices\"");
    snprintf(host, sizeof host, "Host: yourhost.internal:%d", s.port);
    expect_status(&s, "POST", "/v1/completions", k_prompt, listed, 421, "host_not_allowed");
    EXPECT(srv_stop(&s, SIGTERM, 60) == 0);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_ALL);
    const char *model = ms_test_tiny_model(1, "f32");
    if (!srv_start(&g_srv, model, NULL)) {
        fprintf(stderr, "server did not start\n");
        return 1;
    }
    test_content_type();
    test_origin();
    test_host();
    test_worker_cap();
    EXPECT(srv_stop(&g_srv, SIGTERM, 60) == 0);
    test_allowed(model);
    curl_global_cleanup();
    return ms_test_finish("test_server_strict");
}
