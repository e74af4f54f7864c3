/*
 * Prompt sizing for the replayer. The trace gives only counts, so a prompt is built
 * from generated images and filler text. The filler is one short common word repeated
 * ("the the the ..."): with a SentencePiece/BPE tokenizer every repetition costs the
 * same number of tokens (no merges across the word boundary), so prompt tokens are a
 * straight line in the number of words. The line (template overhead, tokens per word)
 * and the tokens per image are measured on the server itself with three tiny
 * non-streaming requests, which works for any tokenizer and chat template; the report
 * still compares every request's target with the server's usage.prompt_tokens.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench/replay.h"

static const char k_word[] = "the ";

char *ms_filler_text(int32_t words) {
    const size_t wl = sizeof k_word - 1;
    char *s = ms_xmalloc((size_t)words * wl + 1);
    for (int32_t i = 0; i < words; i++) memcpy(s + (size_t)i * wl, k_word, wl);
    size_t n = (size_t)words * wl;
    if (n) n--; /* no trailing space */
    s[n] = 0;
    return s;
}

void ms_prompt_size(const ms_prompt_plan *plan, ms_image_policy policy, int32_t max_images, int32_t n_images,
                    int32_t context_tokens, int32_t *images_sent, int32_t *words, int32_t *expected_prompt) {
    int32_t imgs = n_images;
    if (max_images > 0 && imgs > max_images) imgs = max_images;
    if (policy == MS_IMAGE_POLICY_FIT && imgs > 0) {
        const double room = (double)context_tokens - plan->overhead;
        int32_t fit = plan->image_tokens > 0 ? (int32_t)floor(room / plan->image_tokens) : imgs;
        if (fit < 1) fit = 1; /* keep the request an image request */
        if (fit < imgs) imgs = fit;
    }
    const double rest = (double)context_tokens - plan->overhead - (double)imgs * plan->image_tokens;
    int32_t w = plan->per_word > 0 && rest > 0 ? (int32_t)lround(rest / plan->per_word) : 0;
    *images_sent = imgs;
    *words = w;
    *expected_prompt = (int32_t)lround(plan->overhead + (double)imgs * plan->image_tokens + w * plan->per_word);
}

cJSON *ms_replay_user_message(const ms_image_pool *pool, int64_t index, int32_t images, int32_t words) {
    cJSON *msg = cJSON_CreateObject();
    cJSON_AddStringToObject(msg, "role", "user");
    cJSON *content = cJSON_AddArrayToObject(msg, "content");
    for (int32_t i = 0; i < images; i++) {
        const ms_bench_image *im = &pool->images[ms_image_pool_pick(index, i, pool->n)];
        cJSON *part = cJSON_CreateObject();
        cJSON_AddStringToObject(part, "type", "image_url");
        cJSON *iu = cJSON_AddObjectToObject(part, "image_url");
        cJSON_AddItemToObject(iu, "url", cJSON_CreateStringReference(im->data_url)); /* no copy */
        cJSON_AddItemToArray(content, part);
    }
    if (words > 0 || images == 0) {
        char *text = ms_filler_text(words);
        cJSON *part = cJSON_CreateObject();
        cJSON_AddStringToObject(part, "type", "text");
        cJSON_AddStringToObject(part, "text", text);
        cJSON_AddItemToArray(content, part);
        free(text);
    }
    return msg;
}

char *ms_replay_body_messages(const char *model, cJSON *messages, int32_t max_tokens, bool stream) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddItemToObject(o, "messages", messages);
    cJSON_AddNumberToObject(o, "max_tokens", max_tokens);
    cJSON_AddNumberToObject(o, "min_tokens", max_tokens);
    cJSON_AddTrueToObject(o, "ignore_eos");
    cJSON_AddNumberToObject(o, "temperature", 0);
    cJSON_AddBoolToObject(o, "stream", stream);
    if (stream) {
        cJSON *so = cJSON_AddObjectToObject(o, "stream_options");
        cJSON_AddTrueToObject(so, "include_usage");
    }
    cJSON_AddTrueToObject(o, "timings"); /* ask for the per-stage timestamps (docs/bench.md) */
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

char *ms_replay_body(const char *model, const ms_image_pool *pool, int64_t index, int32_t images, int32_t words,
                     int32_t max_tokens, bool stream) {
    cJSON *msgs = cJSON_CreateArray();
    cJSON_AddItemToArray(msgs, ms_replay_user_message(pool, index, images, words));
    return ms_replay_body_messages(model, msgs, max_tokens, stream);
}

/* ---- small blocking requests for the preparation step ---- */
typedef struct grow_buf {
    char *p;
    size_t n;
} grow_buf;

static size_t grow_write(char *data, size_t size, size_t nmemb, void *ctx) {
    grow_buf *b = ctx;
    const size_t k = size * nmemb;
    if (b->n + k > (64u << 20)) return 0; /* a probe answer is small: refuse runaway bodies */
    b->p = ms_xrealloc(b->p, b->n + k + 1);
    memcpy(b->p + b->n, data, k);
    b->n += k;
    b->p[b->n] = 0;
    return k;
}

/* GET (body NULL) or POST JSON; returns the HTTP status (0 on transport failure). */
static long http_call(const ms_replay_options *o, const char *path, const char *body, grow_buf *resp) {
    CURL *c = curl_easy_init();
    MS_CHECK(c);
    char url[1024];
    snprintf(url, sizeof url, "%s%s", o->url, path);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    char auth[512];
    if (o->api_key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->api_key);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 600L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, grow_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
    if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

/* usage.prompt_tokens of a 1-token non-streaming request; -1 on failure. */
static int32_t probe(const ms_replay_options *o, const char *model, const ms_image_pool *pool, int32_t images,
                     int32_t words) {
    char *body = ms_replay_body(model, pool, 0, images, words, 1, false);
    grow_buf b = {0};
    const long st = http_call(o, "/v1/chat/completions", body, &b);
    free(body);
    int32_t tokens = -1;
    cJSON *j = st == 200 && b.p ? cJSON_Parse(b.p) : NULL;
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "usage"), "prompt_tokens");
    if (cJSON_IsNumber(pt)) tokens = (int32_t)pt->valuedouble;
    if (tokens < 0)
        ms_log(MS_LOG_WARN, "replay", "calibration request (%d images, %d words) failed: HTTP %ld %.200s", images,
               words, st, b.p ? b.p : "");
    cJSON_Delete(j);
    free(b.p);
    return tokens;
}

ms_status ms_replay_prepare(const ms_replay_options *o, const ms_image_pool *pool, char *model, size_t model_size,
                            ms_prompt_plan *plan, ms_error *err) {
    memset(plan, 0, sizeof *plan);
    plan->per_word = 1.0;
    plan->image_tokens = 576;
    plan->image_tokens_source = "default";
    snprintf(model, model_size, "%s", o->model ? o->model : "default");
    grow_buf b = {0};
    const long st = http_call(o, "/v1/models", NULL, &b);
    if (st == 0) {
        free(b.p);
        return ms_errorf(err, MS_ERR_IO, "replay: cannot reach %s (is the server running?)", o->url);
    }
    cJSON *j = st == 200 && b.p ? cJSON_Parse(b.p) : NULL;
    const cJSON *m0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "data"), 0);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(m0, "id");
    if (!o->model && cJSON_IsString(id)) snprintf(model, model_size, "%s", id->valuestring);
    const cJSON *ist = cJSON_GetObjectItemCaseSensitive(m0, "image_seq_length");
    if (!ist) ist = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(m0, "modserve"), "image_seq_length");
    if (cJSON_IsNumber(ist) && ist->valuedouble > 0) {
        plan->image_tokens = (int32_t)ist->valuedouble;
        plan->image_tokens_source = "server";
    }
    cJSON_Delete(j);
    free(b.p);
    if (o->image_tokens > 0) {
        plan->image_tokens = o->image_tokens;
        plan->image_tokens_source = "flag";
    }
    if (!o->calibrate) return MS_OK;
    enum { PROBE_WORDS = 200 };
    const int32_t t0 = probe(o, model, pool, 0, 0), t1 = probe(o, model, pool, 0, PROBE_WORDS);
    if (t0 < 0 || t1 <= t0) {
        ms_log(MS_LOG_WARN, "replay", "calibration failed: sizing prompts with 1 token per word, no overhead");
        return MS_OK;
    }
    plan->overhead = t0;
    plan->per_word = (double)(t1 - t0) / PROBE_WORDS;
    plan->calibrated = true;
    if (o->image_tokens <= 0) {
        const int32_t ti = probe(o, model, pool, 1, 0);
        if (ti > t0) {
            plan->image_tokens = ti - t0;
            plan->image_tokens_source = "calibrated";
        }
    }
    return MS_OK;
}
