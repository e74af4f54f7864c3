/*
 * Prefix caching over HTTP: `modserve serve` on the tiny model reports
 * usage.prompt_tokens_details.cached_tokens (chat, completions, and the streamed usage
 * chunk) as OpenAI does: 0 on the first request, > 0 when the prompt is sent again, with
 * the same text; /metrics counts hits; with --no-enable-prefix-caching it stays 0.
 */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tests/test_server_util.h"
#include "tests/test_util.h"

static srv_proc g_srv;

/* A prompt of a few hundred characters (well over one 16-token block). */
static const char *PROMPT =
    "The quick brown fox jumps over the lazy dog while the cat watches from the old wooden "
    "fence, and the farmer counts sheep in the green valley beyond the river near the mill";

typedef struct reply {
    long status;
    char text[512];
    int cached;               /* -1: the field is missing */
    int prompt_tokens;
} reply;

static int usage_cached(const cJSON *usage) {
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens_details");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(d, "cached_tokens");
    return cJSON_IsNumber(c) ? (int)c->valuedouble : -1;
}

static reply post(const char *path, bool chat, bool stream) {
    char body[1024];
    if (chat)
        snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],\"max_tokens\":6,"
                 "\"temperature\":0,\"ignore_eos\":true,\"stream\":%s%s}", PROMPT, stream ? "true" : "false",
                 stream ? ",\"stream_options\":{\"include_usage\":true}" : "");
    else
        snprintf(body, sizeof body, "{\"prompt\":\"%s\",\"max_tokens\":6,\"temperature\":0,\"ignore_eos\":true}",
                 PROMPT);
    reply out = {.cached = -1};
    http_resp r;
    http_call(&g_srv, "POST", path, body, strlen(body), NULL, &r);
    out.status = r.status;
    if (stream) {
        /* the usage chunk: the last "data: {...}" before [DONE] */
        char *text = NULL, *finish = NULL;
        int n = 0;
        if (sse_collect(r.body, &text, &finish, &n)) snprintf(out.text, sizeof out.text, "%s", text);
        free(text);
        free(finish);
        const char *u = strstr(r.body, "\"choices\":[],\"usage\":");
        const char *line = u ? u : NULL;
        while (line && line > r.body && strncmp(line, "data: ", 6)) line--;
        if (line) {
            const char *end = strchr(line, '\n');
            char *one = strndup(line + 6, end ? (size_t)(end - line - 6) : strlen(line + 6));
            cJSON *j = cJSON_Parse(one);
            const cJSON *usage = cJSON_GetObjectItemCaseSensitive(j, "usage");
            out.cached = usage_cached(usage);
            const cJSON *pt = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens");
            out.prompt_tokens = cJSON_IsNumber(pt) ? (int)pt->valuedouble : 0;
            cJSON_Delete(j);
            free(one);
        }
    } else {
        cJSON *j = cJSON_Parse(r.body);
        const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
        const cJSON *t = chat ? cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ch, "message"),
                                                                 "content")
                              : cJSON_GetObjectItemCaseSensitive(ch, "text");
        if (cJSON_IsString(t)) snprintf(out.text, sizeof out.text, "%s", t->valuestring);
        const cJSON *usage = cJSON_GetObjectItemCaseSensitive(j, "usage");
        out.cached = usage_cached(usage);
        const cJSON *pt = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens");
        out.prompt_tokens = cJSON_IsNumber(pt) ? (int)pt->valuedouble : 0;
        cJSON_Delete(j);
    }
    http_resp_free(&r);
    return out;
}

static double metric(const char *name) {
    http_resp r;
    double v = -1;
    if (http_call(&g_srv, "GET", "/metrics", NULL, 0, NULL, &r) && r.status == 200) {
        char key[128];
        snprintf(key, sizeof key, "\n%s ", name);
        const char *p = strstr(r.body, key);
        if (p) v = strtod(p + strlen(key), NULL);
    }
    http_resp_free(&r);
    return v;
}

static void run_server(const char *model, bool caching) {
    if (!srv_start(&g_srv, model, caching ? "--served-model-name tiny" :
                                            "--served-model-name tiny --no-enable-prefix-caching")) {
        EXPECTF(false, "server did not start (caching %d)", caching);
        return;
    }
    const struct { const char *path; bool chat, stream; } cases[3] = {
        {"/v1/completions", false, false}, {"/v1/chat/completions", true, false}, {"/v1/chat/completions", true, true}};
    for (int k = 0; k < 3; k++) {
        reply a = post(cases[k].path, cases[k].chat, cases[k].stream);
        reply b = post(cases[k].path, cases[k].chat, cases[k].stream);
        printf("caching %d, %s%s: prompt %d tokens, cached %d then %d\n", caching, cases[k].path,
               cases[k].stream ? " (stream)" : "", a.prompt_tokens, a.cached, b.cached);
        EXPECT(a.status == 200 && b.status == 200);
        EXPECT(a.prompt_tokens > 32);
        EXPECTF(!strcmp(a.text, b.text) && a.text[0], "replies differ: '%s' vs '%s'", a.text, b.text);
        /* the chat stream repeats the non-stream chat prompt: cached from the start */
        if (caching) {
            EXPECTF(a.cached == (k == 2 ? (a.prompt_tokens - 1) / 16 * 16 : 0), "first: %d cached", a.cached);
            EXPECTF(b.cached == (b.prompt_tokens - 1) / 16 * 16, "repeat: %d cached", b.cached);
        } else {
            EXPECTF(a.cached == 0 && b.cached == 0, "caching off: %d, %d cached", a.cached, b.cached);
        }
    }
    double hits = metric("modserve_prefix_cache_hits_total"), queries = metric("modserve_prefix_cache_queries_total");
    double rate = metric("modserve_prefix_cache_hit_rate"), cached = metric("modserve_kv_blocks_cached");
    double evictions = metric("modserve_prefix_cache_evictions_total");
    printf("metrics: hits %g of %g tokens (rate %g), %g blocks cached, %g evictions\n", hits, queries, rate, cached,
           evictions);
    EXPECT(evictions == 0);
    if (caching) EXPECT(hits > 0 && queries > hits && rate > 0 && rate < 1 && cached > 0);
    else EXPECT(hits == 0 && queries == 0 && rate == 0 && cached == 0);
    EXPECT(srv_stop(&g_srv, SIGTERM, 30) == 0);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_ALL);
    const char *model = ms_test_tiny_model(1, "f32");
    run_server(model, true);
    run_server(model, false);
    curl_global_cleanup();
    return ms_test_finish("test_server_prefix");
}
