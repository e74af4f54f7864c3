/*
 * The HTTP API end to end: `modserve serve` on the tiny model as a child process
 * (CPU, loopback, --port 0), driven with libcurl and the curl command:
 * endpoint shapes, greedy output equal to `modserve run` (chat with an image,
 * completions with ids), streaming equal to non-streaming, stop strings, a table of
 * hostile requests each with its 4xx (and a normal request still fine after), 200
 * concurrent streams equal to sequential answers, /metrics through promtool, then
 * SIGTERM draining an in-flight stream and exiting 0. Half of the concurrent streams
 * carry an image.
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
static const char *g_model;
static char g_media[512], g_png[600];

static cJSON *post_json(const char *path, const char *body, long *status) {
    http_resp r;
    http_call(&g_srv, "POST", path, body, strlen(body), NULL, &r);
    *status = r.status;
    cJSON *j = cJSON_Parse(r.body);
    if (!j) fprintf(stderr, "unparsable body (%ld): %.300s\n", r.status, r.body);
    http_resp_free(&r);
    return j;
}

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(f) ? f->valuestring : "";
}

static double jnum(const cJSON *o, const char *k) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(f) ? f->valuedouble : -1;
}

/* "1,2,3" of a cJSON array of numbers. */
static void ids_text(const cJSON *a, char *out, size_t cap) {
    out[0] = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a) {
        size_t n = strlen(out);
        snprintf(out + n, cap - n, "%s%d", n ? "," : "", (int)x->valuedouble);
    }
}

static void run_cli(const char *args, char *ids, size_t cap) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "./modserve run --model %s --device cpu --threads 2 %s 2>/dev/null", g_model, args);
    FILE *f = popen(cmd, "r");
    ids[0] = 0;
    if (f) {
        if (!fgets(ids, (int)cap, f)) ids[0] = 0;
        pclose(f);
    }
    ids[strcspn(ids, "\n")] = 0;
}

static void test_shapes(void) {
    http_resp r;
    EXPECT(http_call(&g_srv, "GET", "/health", NULL, 0, NULL, &r) && r.status == 200);
    http_resp_free(&r);
    EXPECT(http_call(&g_srv, "GET", "/v1/models", NULL, 0, NULL, &r) && r.status == 200);
    cJSON *j = cJSON_Parse(r.body);
    const cJSON *m0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "data"), 0);
    EXPECT(!strcmp(jstr(j, "object"), "list") && !strcmp(jstr(m0, "object"), "model") && !strcmp(jstr(m0, "id"), "tiny"));
    EXPECT(jnum(cJSON_GetObjectItemCaseSensitive(m0, "modserve"), "image_seq_length") > 0);
    EXPECT(jnum(m0, "max_model_len") > 0);
    cJSON_Delete(j);
    http_resp_free(&r);
    /* The curl command too: an unknown path is a JSON 404. */
    EXPECT(ms_test_system("curl -s -o /dev/null -w '%%{http_code}' %s/nope | grep -q 404", g_srv.base) == 0);
    EXPECT(ms_test_system("curl -sf %s/health | grep -q ok", g_srv.base) == 0);
}

/* Chat with an image and completions with ids give `modserve run`'s greedy ids. */
static void test_equal_to_run(void) {
    char *url = png_data_url(48, 36, 5);
    char *body = malloc(strlen(url) + 512);
    sprintf(body, "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":"
                  "{\"url\":\"%s\"}},{\"type\":\"text\",\"text\":\"What is in the picture?\"}]}],\"max_tokens\":8,"
                  "\"temperature\":0,\"return_token_ids\":true,\"ignore_eos\":true}", url);
    long st;
    cJSON *j = post_json("/v1/chat/completions", body, &st);
    EXPECT(st == 200);
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(ch, "message");
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(j, "usage");
    EXPECT(!strncmp(jstr(j, "id"), "chatcmpl-", 9) && !strcmp(jstr(j, "object"), "chat.completion"));
    EXPECT(jnum(j, "created") > 0 && !strcmp(jstr(j, "model"), "tiny"));
    EXPECT(!strcmp(jstr(msg, "role"), "assistant") && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(msg, "content")));
    EXPECT(!strcmp(jstr(ch, "finish_reason"), "length") && jnum(ch, "index") == 0);
    EXPECT(jnum(usage, "completion_tokens") == 8 &&
           jnum(usage, "total_tokens") == jnum(usage, "prompt_tokens") + 8);
    char got[512], want[512];
    ids_text(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "modserve"), "token_ids"), got,
             sizeof got);
    size_t n;
    unsigned char *png = png_bytes(48, 36, 5, &n);
    FILE *f = fopen(g_png, "wb");
    fwrite(png, 1, n, f);
    fclose(f);
    f = fopen("testdata/secret.png", "wb"); /* a real image just outside the allowed folder */
    fwrite(png, 1, n, f);
    fclose(f);
    free(png);
    char args[1024];
    snprintf(args, sizeof args, "--image %s --ignore-eos --max-tokens 8 --prompt 'USER: <image>\nWhat is in the picture? ASSISTANT:'", g_png);
    run_cli(args, want, sizeof want);
    EXPECTF(got[0] && !strcmp(got, want), "http %s vs run %s", got, want);
    cJSON_Delete(j);
    free(body);
    free(url);

    j = post_json("/v1/completions", "{\"prompt\":[1,300,301,302,303],\"max_tokens\":6,\"temperature\":0,"
                                     "\"return_token_ids\":true,\"ignore_eos\":true}", &st);
    EXPECT(st == 200 && !strcmp(jstr(j, "object"), "text_completion") && !strncmp(jstr(j, "id"), "cmpl-", 5));
    ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
    EXPECT(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(ch, "text")));
    ids_text(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "modserve"), "token_ids"), got,
             sizeof got);
    run_cli("--prompt-ids 1,300,301,302,303 --max-tokens 6 --ignore-eos", want, sizeof want);
    EXPECTF(got[0] && !strcmp(got, want), "http %s vs run %s", got, want);
    cJSON_Delete(j);
}

static char *chat_body(const char *text, int max_tokens, bool stream, const char *extra) {
    char *b = malloc(strlen(text) + 512);
    sprintf(b, "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"max_tokens\":%d,\"temperature\":0,"
               "\"ignore_eos\":true,\"stream\":%s%s}", text, max_tokens, stream ? "true" : "false", extra ? extra : "");
    return b;
}

static char *chat_text(const char *text, int max_tokens, const char *extra, char **finish) {
    char *b = chat_body(text, max_tokens, false, extra);
    long st;
    cJSON *j = post_json("/v1/chat/completions", b, &st);
    free(b);
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
    char *out = strdup(jstr(cJSON_GetObjectItemCaseSensitive(ch, "message"), "content"));
    if (finish) *finish = strdup(jstr(ch, "finish_reason"));
    cJSON_Delete(j);
    return st == 200 ? out : (free(out), strdup("<error>"));
}

static void test_stream_and_stop(void) {
    char *full = chat_text("Tell me a story", 12, NULL, NULL);
    char *b = chat_body("Tell me a story", 12, true, ",\"stream_options\":{\"include_usage\":true},\"timings\":true");
    http_resp r;
    EXPECT(http_call(&g_srv, "POST", "/v1/chat/completions", b, strlen(b), NULL, &r) && r.status == 200);
    free(b);
    char *text, *finish;
    int events;
    EXPECT(sse_collect(r.body, &text, &finish, &events));
    EXPECTF(!strcmp(text, full), "stream '%s' vs '%s'", text, full);
    EXPECT(finish && !strcmp(finish, "length") && events >= 4);
    EXPECT(strstr(r.body, "\"object\":\"chat.completion.chunk\"") && strstr(r.body, "\"role\":\"assistant\""));
    EXPECT(strstr(r.body, "\"choices\":[],\"usage\":{\"prompt_tokens\":") && strstr(r.body, "\"timings\":{\"arrival\":"));
    free(text);
    free(finish);
    http_resp_free(&r);
    /* A stop string from the middle of the greedy text: the answer ends just before it. */
    const size_t len = strlen(full);
    if (len >= 6) {
        char stop[8] = {0};
        memcpy(stop, full + len / 2, 2);
        if (stop[0] == '"' || stop[0] == '\\' || stop[1] == '"' || stop[1] == '\\' || (unsigned char)stop[0] >= 0x80 ||
            (unsigned char)stop[1] >= 0x80 || stop[0] < 0x20 || stop[1] < 0x20)
            memcpy(stop, full, 1), stop[1] = 0;
        const size_t cut = (size_t)(strstr(full, stop) - full);
        char extra[64];
        snprintf(extra, sizeof extra, ",\"stop\":[\"%s\"]", stop);
        char *fin = NULL;
        char *got = chat_text("Tell me a story", 12, extra, &fin);
        EXPECTF(strlen(got) == cut && !strncmp(got, full, cut), "stop '%s': '%s' vs '%s'", stop, got, full);
        EXPECT(!strcmp(fin, "stop"));
        free(got);
        free(fin);
        b = chat_body("Tell me a story", 12, true, extra);
        EXPECT(http_call(&g_srv, "POST", "/v1/chat/completions", b, strlen(b), NULL, &r) && r.status == 200);
        EXPECT(sse_collect(r.body, &text, &finish, &events));
        EXPECTF(strlen(text) == cut && !strncmp(text, full, cut), "stream stop '%s': '%s'", stop, text);
        EXPECT(finish && !strcmp(finish, "stop"));
        free(text);
        free(finish);
        free(b);
        http_resp_free(&r);
    } else EXPECTF(false, "greedy text too short: '%s'", full);
    free(full);
}

typedef struct hostile {
    const char *method, *path;
    char *body;       /* malloc'd */
    long status;
    const char *code; /* expected "code" in the error, or NULL */
} hostile;

static char *dupf(const char *fmt, const char *a) {
    char *s = malloc(strlen(fmt) + (a ? strlen(a) : 0) + 1);
    sprintf(s, fmt, a ? a : "");
    return s;
}

/* "0x..." not preceded by a digit (a pointer, not "20000x20000"). */
static bool has_pointer(const char *s) {
    for (const char *p = strstr(s, "0x"); p; p = strstr(p + 1, "0x"))
        if (p == s || p[-1] < '0' || p[-1] > '9') return true;
    return false;
}

#define CHAT_IMG "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"%s\"}}]}]}"
#define USER_X "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]"

static void test_hostile(void) {
    char *url = png_data_url(32, 32, 7);
    /* Truncated pixel data behind an intact header: refused by the engine's decoder. */
    size_t n;
    unsigned char *png = png_bytes(32, 32, 7, &n);
    char *cut_url = png_data_url(32, 32, 7);
    cut_url[strlen("data:image/png;base64,") + (n * 4 / 3) / 2 / 4 * 4] = 0;
    free(png);
    char *too_many = malloc(4 * strlen(url) + 512);
    sprintf(too_many, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"%s\"}},"
                      "{\"type\":\"image_url\",\"image_url\":{\"url\":\"%s\"}},{\"type\":\"image_url\",\"image_url\":{\"url\":\"%s\"}},"
                      "{\"type\":\"image_url\",\"image_url\":{\"url\":\"%s\"}}]}]}", url, url, url, url);
    char *huge = malloc(3u << 20);
    memset(huge, ' ', 3u << 20);
    memcpy(huge, "{\"prompt\":\"x\"", 13);
    strcpy(huge + (3u << 20) - 2, "}");
    char *deep = malloc(300);
    memset(deep, '[', 150);
    memset(deep + 150, ']', 149);
    deep[299] = 0;
    char outside[600];
    snprintf(outside, sizeof outside, "%s/../%s", g_media, "secret.png");
    hostile t[] = {
        {"POST", "/v1/chat/completions", dupf("{", NULL), 400, "invalid_json"},
        {"POST", "/v1/chat/completions", dupf("not json at all", NULL), 400, "invalid_json"},
        {"POST", "/v1/chat/completions", dupf("", NULL), 400, "invalid_json"},
        {"POST", "/v1/chat/completions", dupf("[]", NULL), 400, "invalid_json"},
        {"POST", "/v1/chat/completions", deep, 422, "max_json_depth"},
        {"POST", "/v1/chat/completions", dupf("{\"messages\":42}", NULL), 400, "invalid_type"},
        {"POST", "/v1/chat/completions", dupf("{\"messages\":[{\"role\":7,\"content\":\"x\"}]}", NULL), 400, "invalid_type"},
        {"POST", "/v1/chat/completions", dupf("{" USER_X ",\"max_tokens\":-5}", NULL), 400, "invalid_value"},
        {"POST", "/v1/chat/completions", dupf("{" USER_X ",\"max_tokens\":1e308}", NULL), 400, "invalid_value"},
        {"POST", "/v1/chat/completions", dupf("{" USER_X ",\"max_tokens\":100000}", NULL), 400, "context_length_exceeded"},
        {"POST", "/v1/chat/completions", dupf("{" USER_X ",\"temperature\":\"hot\"}", NULL), 400, "invalid_type"},
        {"POST", "/v1/chat/completions", dupf("{" USER_X ",\"top_k\":1.5}", NULL), 400, "invalid_type"},
        {"POST", "/v1/chat/completions", dupf("{" USER_X ",\"seed\":1e40}", NULL), 400, "invalid_value"},
        {"POST", "/v1/chat/completions", dupf("{" USER_X ",\"n\":3}", NULL), 400, "invalid_value"},
        {"POST", "/v1/chat/completions", dupf("{" USER_X ",\"model\":\"gpt-4\"}", NULL), 404, "model_not_found"},
        {"POST", "/v1/chat/completions", dupf("{" USER_X ",\"stop\":{}}", NULL), 400, "invalid_type"},
        {"POST", "/v1/chat/completions", dupf(CHAT_IMG, "data:image/gif;base64,R0lGODlhAQABAAAAACw="), 400, "unsupported_image_type"},
        {"POST", "/v1/chat/completions", dupf(CHAT_IMG, "data:image/png;base64,iVBORw0KGgoAAAANSUhEU"), 400, "invalid_base64"},
        {"POST", "/v1/chat/completions", dupf(CHAT_IMG, "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAATiAAAE4gCAIAAABsEtFu"), 422, "max_image_width"},
        {"POST", "/v1/chat/completions", dupf(CHAT_IMG, "data:text/plain;base64,aGk="), 400, "invalid_image_url"},
        {"POST", "/v1/chat/completions", dupf(CHAT_IMG, "http://127.0.0.1:1/cat.png"), 400, "remote_url_not_supported"},
        {"POST", "/v1/chat/completions", dupf(CHAT_IMG, "https://example.com/cat.png"), 400, "remote_url_not_supported"},
        {"POST", "/v1/chat/completions", dupf(CHAT_IMG, "/etc/passwd"), 400, "local_path_not_allowed"},
        {"POST", "/v1/chat/completions", dupf(CHAT_IMG, outside), 400, "local_path_not_allowed"},
        {"POST", "/v1/chat/completions", dupf(CHAT_IMG, cut_url), 400, "invalid_image"},
        {"POST", "/v1/chat/completions", too_many, 422, "max_images"},
        {"POST", "/v1/chat/completions", dupf("{\"messages\":[{\"role\":\"user\",\"content\":\"<image> hi\"}]}", NULL), 400, "image_count_mismatch"},
        {"POST", "/v1/chat/completions", dupf("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"video\"}]}]}", NULL), 400, "unsupported_content_type"},
        {"POST", "/v1/completions", huge, 413, "max_body_bytes"},
        {"POST", "/v1/completions", dupf("{\"prompt\":[1,999999]}", NULL), 400, "invalid_token_id"},
        {"POST", "/v1/completions", dupf("{\"prompt\":[1,1000,5]}", NULL), 400, "image_count_mismatch"},
        {"POST", "/v1/completions", dupf("{\"prompt\":[\"a\",\"b\"]}", NULL), 400, "unsupported"},
        {"POST", "/v1/completions", dupf("{\"prompt\":\"x\",\"min_tokens\":-1}", NULL), 400, "invalid_value"},
        {"GET", "/v1/chat/completions", NULL, 405, "method_not_allowed"},
        {"GET", "/v1/nothing", NULL, 404, "not_found"},
    };
    const size_t nt = sizeof t / sizeof t[0];
    EXPECT(nt >= 30);
    for (size_t i = 0; i < nt; i++) {
        http_resp r;
        const bool ok = http_call(&g_srv, t[i].method, t[i].path, t[i].body, t[i].body ? strlen(t[i].body) : 0, NULL, &r);
        cJSON *j = cJSON_Parse(r.body);
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
        EXPECTF(ok && r.status == t[i].status && !strcmp(jstr(err, "code"), t[i].code) && jstr(err, "message")[0] &&
                    jstr(err, "type")[0],
                "hostile case %zu: status %ld body %.200s", i, r.status, r.body);
        /* Error bodies carry no internal details. */
        EXPECTF(!has_pointer(r.body) && !strstr(r.body, "/tmp") && !strstr(r.body, ".c:") && !strstr(r.body, g_media),
                "case %zu leaks: %.200s", i, r.body);
        cJSON_Delete(j);
        http_resp_free(&r);
        free(t[i].body);
    }
    free(url);
    free(cut_url);
    /* A normal request right after. */
    char *text = chat_text("Hello", 4, NULL, NULL);
    EXPECT(strcmp(text, "<error>") != 0);
    free(text);
    /* A local file under the allowed folder is accepted. */
    char body[1024];
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"file://%s\"}}]}],"
             "\"max_tokens\":2}", g_png);
    long st;
    cJSON_Delete(post_json("/v1/chat/completions", body, &st));
    EXPECTF(st == 200, "allowed local image: %ld", st);
}

/* A request over the context names the field at fault and the counts it was refused for
 * (max_tokens as asked; the prompt's own length when max_tokens is absent). */
static void expect_context_error(const char *path, const char *body, const char *param, const char *count) {
    long st;
    cJSON *j = post_json(path, body, &st);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    const char *msg = jstr(err, "message");
    EXPECTF(st == 400 && !strcmp(jstr(err, "code"), "context_length_exceeded") && !strcmp(jstr(err, "param"), param),
            "%s: status %ld code '%s' param '%s' (want '%s')", path, st, jstr(err, "code"), jstr(err, "param"), param);
    EXPECTF(strstr(msg, count) != NULL, "%s: message '%s' lacks '%s'", path, msg, count);
    cJSON_Delete(j);
}

static void test_context_errors(void) {
    http_resp r;
    EXPECT(http_call(&g_srv, "GET", "/v1/models", NULL, 0, NULL, &r) && r.status == 200);
    cJSON *j = cJSON_Parse(r.body);
    const int ctx = (int)jnum(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "data"), 0), "max_model_len");
    cJSON_Delete(j);
    http_resp_free(&r);
    EXPECT(ctx > 16);
    expect_context_error("/v1/chat/completions", "{" USER_X ",\"max_tokens\":100000}", "max_tokens",
                         "asks for 100000 more");
    char count[64];
    snprintf(count, sizeof count, "prompt alone has %d tokens", ctx + 3);
    /* Completions with ctx + 3 token ids and no max_tokens: the prompt is at fault. */
    char *body = malloc((size_t)ctx * 4 + 64);
    size_t n = (size_t)sprintf(body, "{\"prompt\":[1");
    for (int i = 1; i < ctx + 3; i++) n += (size_t)sprintf(body + n, ",%d", 5 + i % 200);
    strcpy(body + n, "]}");
    expect_context_error("/v1/completions", body, "prompt", count);
    free(body);
}

/* ---- 200 concurrent streams ---- */
enum { N_CONC = 200, N_VARIANTS = 8 };

typedef struct stream_buf {
    char *p;
    size_t n;
} stream_buf;

static size_t on_stream(char *d, size_t s, size_t m, void *ctx) {
    stream_buf *b = ctx;
    b->p = realloc(b->p, b->n + s * m + 1);
    memcpy(b->p + b->n, d, s * m);
    b->n += s * m;
    b->p[b->n] = 0;
    return s * m;
}

/* Odd variants carry an image (different per variant), even ones are text only. */
static char *variant_body(int v, const char *text, bool stream) {
    if (v % 2 == 0) return chat_body(text, 6, stream, NULL);
    char *url = png_data_url(24 + v, 20 + 2 * v, v);
    char *b = malloc(strlen(url) + strlen(text) + 512);
    sprintf(b, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"%s\"}},"
               "{\"type\":\"text\",\"text\":\"%s\"}]}],\"max_tokens\":6,\"temperature\":0,\"ignore_eos\":true,"
               "\"stream\":%s}", url, text, stream ? "true" : "false");
    free(url);
    return b;
}

static void test_concurrent(void) {
    char *ref[N_VARIANTS], prompt[N_VARIANTS][64];
    for (int v = 0; v < N_VARIANTS; v++) {
        snprintf(prompt[v], sizeof prompt[v], "Question number %d about cats", v * 7 + 1);
        char *b = variant_body(v, prompt[v], false);
        long st;
        cJSON *j = post_json("/v1/chat/completions", b, &st);
        const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
        ref[v] = strdup(jstr(cJSON_GetObjectItemCaseSensitive(ch, "message"), "content"));
        EXPECT(st == 200);
        cJSON_Delete(j);
        free(b);
    }
    CURLM *m = curl_multi_init();
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)N_CONC);
    CURL *h[N_CONC];
    stream_buf out[N_CONC] = {0};
    char *bodies[N_CONC];
    char url[128];
    snprintf(url, sizeof url, "%s/v1/chat/completions", g_srv.base);
    struct curl_slist *json_hdr = curl_slist_append(NULL, "Content-Type: application/json");
    for (int i = 0; i < N_CONC; i++) {
        bodies[i] = variant_body(i % N_VARIANTS, prompt[i % N_VARIANTS], true);
        h[i] = curl_easy_init();
        curl_easy_setopt(h[i], CURLOPT_URL, url);
        curl_easy_setopt(h[i], CURLOPT_POSTFIELDS, bodies[i]);
        curl_easy_setopt(h[i], CURLOPT_HTTPHEADER, json_hdr); /* JSON endpoints refuse other types */
        curl_easy_setopt(h[i], CURLOPT_WRITEFUNCTION, on_stream);
        curl_easy_setopt(h[i], CURLOPT_WRITEDATA, &out[i]);
        curl_easy_setopt(h[i], CURLOPT_TIMEOUT, 600L);
        curl_multi_add_handle(m, h[i]);
    }
    int running = 1;
    while (running) {
        curl_multi_perform(m, &running);
        if (running) curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    int equal = 0;
    for (int i = 0; i < N_CONC; i++) {
        long st = 0;
        curl_easy_getinfo(h[i], CURLINFO_RESPONSE_CODE, &st);
        char *text = NULL, *finish = NULL;
        int ev;
        const bool ok = out[i].p && sse_collect(out[i].p, &text, &finish, &ev);
        if (st == 200 && ok && !strcmp(text, ref[i % N_VARIANTS])) equal++;
        else if (equal + 5 > i) fprintf(stderr, "stream %d: status %ld ok %d text '%s'\n", i, st, ok, text ? text : "");
        free(text);
        free(finish);
        free(out[i].p);
        free(bodies[i]);
        curl_multi_remove_handle(m, h[i]);
        curl_easy_cleanup(h[i]);
    }
    curl_multi_cleanup(m);
    curl_slist_free_all(json_hdr);
    EXPECTF(equal == N_CONC, "%d of %d streams equal to the sequential answers", equal, N_CONC);
    for (int v = 0; v < N_VARIANTS; v++) free(ref[v]);
}

static void test_metrics(void) {
    http_resp r;
    EXPECT(http_call(&g_srv, "GET", "/metrics", NULL, 0, NULL, &r) && r.status == 200);
    EXPECT(strstr(r.body, "modserve_http_requests_total{endpoint=\"/v1/chat/completions\",code=\"400\"}") != NULL);
    EXPECT(strstr(r.body, "modserve_time_to_first_token_seconds_bucket") && strstr(r.body, "modserve_stage_queue_length{stage=\"decode\"}"));
    EXPECT(strstr(r.body, "modserve_kv_blocks_used 0\n") != NULL);
    /* The format check is part of the test: no promtool is a failure, not a pass. */
    const bool have_promtool = ms_test_system("command -v promtool > /dev/null") == 0;
    EXPECTF(have_promtool, "promtool is not installed (Debian's prometheus package): /metrics format unchecked");
    if (have_promtool) {
        FILE *f = fopen("testdata/server_metrics.txt", "w");
        fwrite(r.body, 1, r.n, f);
        fclose(f);
        EXPECT(ms_test_system("promtool check metrics < testdata/server_metrics.txt") == 0);
    }
    http_resp_free(&r);
}

/* SIGTERM with a stream in flight: the stream completes, the server exits 0. */
static void test_sigterm(void) {
    unlink("testdata/server_sigterm.txt");
    EXPECT(ms_test_system("curl -sN -H 'Content-Type: application/json' -d '{\"prompt\":[1,5,6],\"max_tokens\":200,"
                          "\"ignore_eos\":true,\"stream\":true,\"temperature\":0}' %s/v1/completions "
                          "> testdata/server_sigterm.txt 2>/dev/null &",
                          g_srv.base) == 0);
    struct stat st;
    for (int i = 0; i < 3000 && (stat("testdata/server_sigterm.txt", &st) || st.st_size == 0); i++) usleep(10000);
    EXPECT(srv_stop(&g_srv, SIGTERM, 120) == 0);
    char *body = NULL;
    for (int i = 0; i < 500; i++) {
        free(body);
        body = ms_test_read_file("testdata/server_sigterm.txt", NULL);
        if (body && strstr(body, "[DONE]")) break;
        usleep(10000);
    }
    char *text = NULL, *finish = NULL;
    int ev = 0;
    EXPECTF(body && sse_collect(body, &text, &finish, &ev) && finish && !strcmp(finish, "length"),
            "drained stream: %.200s", body ? body : "(none)");
    free(text);
    free(finish);
    free(body);
}

int main(void) {
    if (ms_test_system("command -v curl > /dev/null")) {
        fprintf(stderr, "FAIL: the curl command is not installed (Debian's curl): the API test cannot run\n");
        return 1;
    }
    curl_global_init(CURL_GLOBAL_ALL);
    g_model = ms_test_tiny_model(1, "f32");
    snprintf(g_media, sizeof g_media, "testdata/server_media");
    mkdir(g_media, 0755);
    char abs[512];
    if (!realpath(g_media, abs)) return 1;
    snprintf(g_media, sizeof g_media, "%s", abs);
    snprintf(g_png, sizeof g_png, "%s/img.png", abs);
    char extra[1024];
    snprintf(extra, sizeof extra, "--served-model-name tiny --allowed-media-path %s --max-body-bytes 2000000 "
                                  "--max-images 3 --shutdown-timeout 60", abs);
    if (!srv_start(&g_srv, g_model, extra)) {
        fprintf(stderr, "server did not start\n");
        return 1;
    }
    test_shapes();
    test_equal_to_run();
    test_stream_and_stop();
    test_hostile();
    test_context_errors();
    test_concurrent();
    test_metrics();
    test_sigterm();
    if (g_srv.pid) srv_stop(&g_srv, SIGKILL, 10);
    curl_global_cleanup();
    return ms_test_finish("test_server_api");
}
