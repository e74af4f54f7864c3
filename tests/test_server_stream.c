/*
 * Streaming flows end to end: `modserve serve` on a random tiny model (its greedy
 * output is full of byte-fallback pieces, valid and ill-formed UTF-8) answers greedy
 * completions for several prompts, streamed and not. For each prompt the streamed
 * deltas join to exactly the non-streamed text and to ms_tokenizer_decode of the
 * generated ids (the server builds both texts with the streaming decoder, so the ids
 * are decoded here too), and the text comes in many SSE events (close to one per
 * generated token), not in one event at the end.
 */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "llm/tokenizer.h"
#include "tests/test_server_util.h"
#include "tests/test_util.h"

enum { MAX_TOKENS = 96 };

static srv_proc g_srv;

static char *body_for(const char *prompt, bool stream) {
    char *b = malloc(strlen(prompt) + 256);
    sprintf(b, "{\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0,\"ignore_eos\":true,"
               "\"return_token_ids\":true,\"stream\":%s}", prompt,
            MAX_TOKENS, stream ? "true" : "false");
    return b;
}

/* The non-streamed text and the generated ids decoded (*decoded, malloc'd), and the
 * number of generated tokens; NULL on an error. */
static char *complete(const ms_tokenizer *tok, const char *prompt, int *n_tokens, char **decoded) {
    *decoded = NULL;
    char *b = body_for(prompt, false);
    http_resp r;
    bool ok = http_call(&g_srv, "POST", "/v1/completions", b, strlen(b), NULL, &r) && r.status == 200;
    free(b);
    char *text = NULL;
    cJSON *j = ok ? cJSON_Parse(r.body) : NULL;
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(ch, "text");
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "usage"), "completion_tokens");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "modserve"), "token_ids");
    if (cJSON_IsString(t) && cJSON_IsNumber(u) && cJSON_IsArray(ids)) {
        text = strdup(t->valuestring);
        *n_tokens = u->valueint;
        int32_t id_list[4 * MAX_TOKENS], n = 0;
        const cJSON *x;
        cJSON_ArrayForEach(x, ids) if (n < 4 * MAX_TOKENS) id_list[n++] = (int32_t)x->valuedouble;
        ms_error err = {0};
        EXPECTF(n == *n_tokens && ms_tokenizer_decode(tok, id_list, n, true, decoded, &err) == MS_OK,
                "'%s': %d ids for %d tokens (%s)", prompt, n, *n_tokens, err.msg);
    } else
        fprintf(stderr, "completion of '%s': status %ld body %.300s\n", prompt, r.status, r.body ? r.body : "");
    cJSON_Delete(j);
    http_resp_free(&r);
    return text;
}

/* The streamed text joined, the number of events with text, the longest text of one. */
static char *complete_streamed(const char *prompt, int *text_events, size_t *longest) {
    char *b = body_for(prompt, true);
    http_resp r;
    bool ok = http_call(&g_srv, "POST", "/v1/completions", b, strlen(b), NULL, &r) && r.status == 200;
    free(b);
    char *text = NULL, *finish = NULL;
    int events = 0;
    if (!ok || !sse_collect(r.body, &text, &finish, &events)) {
        fprintf(stderr, "stream of '%s': status %ld body %.300s\n", prompt, r.status, r.body ? r.body : "");
        free(text);
        text = NULL;
    }
    *text_events = 0;
    *longest = 0;
    for (const char *p = ok ? r.body : NULL; p && (p = strstr(p, "data: ")); p += 6) {
        const char *end = strstr(p, "\n\n");
        if (!end) break;
        char *data = strndup(p + 6, (size_t)(end - p - 6));
        cJSON *j = cJSON_Parse(data);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0), "text");
        if (cJSON_IsString(t) && t->valuestring[0]) {
            (*text_events)++;
            size_t l = strlen(t->valuestring);
            if (l > *longest) *longest = l;
        }
        cJSON_Delete(j);
        free(data);
    }
    free(finish);
    http_resp_free(&r);
    return text;
}

int main(void) {
    curl_global_init(CURL_GLOBAL_ALL);
    const char *model = ms_test_tiny_model(5, "f32");
    ms_tokenizer *tok = NULL;
    ms_error err = {0};
    if (ms_tokenizer_load(model, &tok, &err) != MS_OK) {
        fprintf(stderr, "FAIL: the tiny model's tokenizer: %s\n", err.msg);
        return 1;
    }
    if (!srv_start(&g_srv, model, "--served-model-name tiny")) {
        fprintf(stderr, "FAIL: server did not start\n");
        return 1;
    }
    static const char *prompts[] = {"Once upon a time", "Hello", "The capital of France is", "1 2 3 4",
                                    "def main():",      "Dear diary,", "Zebra crossing at noon", "ok"};
    const int n_prompts = (int)(sizeof prompts / sizeof prompts[0]);
    int flowing = 0, equal = 0;
    for (int i = 0; i < n_prompts; i++) {
        int n_tokens = 0, events = 0;
        size_t longest = 0;
        char *decoded = NULL;
        char *full = complete(tok, prompts[i], &n_tokens, &decoded);
        char *streamed = complete_streamed(prompts[i], &events, &longest);
        const bool same = full && streamed && !strcmp(full, streamed);
        const bool exact = full && decoded && !strcmp(full, decoded);
        /* "close to one event per token": a byte-fallback run that is well-formed UTF-8
         * so far waits for its end (its text depends on it), so a few tokens share an
         * event; a stalled stream has one or two. */
        const bool flows = n_tokens > 0 && events * 2 >= n_tokens;
        printf("prompt %d '%s': %d tokens, %zu bytes of text, %d SSE events with text (longest %zu bytes), "
               "streamed %s the non-streamed text, which %s the decoded ids\n",
               i, prompts[i], n_tokens, full ? strlen(full) : 0, events, longest, same ? "equals" : "DIFFERS from",
               exact ? "equals" : "DIFFERS from");
        EXPECTF(same, "prompt '%s': streamed '%s' vs '%s'", prompts[i], streamed ? streamed : "(none)",
                full ? full : "(none)");
        EXPECTF(exact, "prompt '%s': non-streamed '%s' vs decoded ids '%s'", prompts[i], full ? full : "(none)",
                decoded ? decoded : "(none)");
        EXPECTF(flows, "prompt '%s': %d events with text for %d tokens", prompts[i], events, n_tokens);
        flowing += flows;
        equal += same && exact;
        free(decoded);
        free(full);
        free(streamed);
    }
    printf("%d of %d prompts streamed token by token, %d of %d equal to the non-streamed text and the decoded ids\n", flowing,
           n_prompts, equal, n_prompts);
    EXPECT(srv_stop(&g_srv, SIGTERM, 30) == 0);
    curl_global_cleanup();
    ms_tokenizer_free(tok);
    return ms_test_finish("test_server_stream");
}
