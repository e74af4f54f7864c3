/*
 * End of sequence (issue 14, bug 8): every id of an eos_token_id list (config.json or
 * generation_config.json), the tokenizer's eos_token and the ChatML end-of-turn token
 * <|im_end|> stop generation, unless ignore_eos; min_tokens holds all of them back.
 *
 * The tiny model has random weights, so each case first generates greedily with
 * ignore_eos, picks a token the model really produces at position k (and not before),
 * makes that token an end token in a copy of the folder, and checks that a real
 * generation through the engine (and through `modserve run`) ends exactly there.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "llm/config.h"
#include "llm/tokenizer.h"
#include "scheduler/engine.h"
#include "tests/test_util.h"

enum { MAX_TOKENS = 10 };
static const int32_t k_prompt[] = {1, 5, 6, 7};
static char work[200];
static const char *model;

typedef struct gen_out {
    int32_t ids[MAX_TOKENS];
    int32_t n;
    ms_request_result res;
} gen_out;

static void on_token(void *user, int32_t token, int32_t index) {
    gen_out *g = user;
    if (index < MAX_TOKENS) g->ids[index] = token;
    g->n = index + 1;
}

static void on_done(void *user, const ms_request_result *res) { ((gen_out *)user)->res = *res; }

/* One greedy request through the engine (disagg, CPU) on the folder dir. */
static bool generate(const char *dir, bool ignore_eos, int32_t min_tokens, gen_out *g) {
    memset(g, 0, sizeof *g);
    ms_engine_options o;
    ms_engine_options_default(&o);
    o.model_dir = dir;
    o.device = "cpu";
    o.preprocess_threads = 1;
    o.max_model_len = 256;
    ms_engine *e = NULL;
    ms_error err = {0};
    if (ms_engine_create(&o, &e, &err) != MS_OK) {
        fprintf(stderr, "engine on %s: %s\n", dir, err.msg);
        return false;
    }
    ms_request_desc d = {.prompt = k_prompt, .n_prompt = 4, .on_token = on_token, .on_done = on_done, .user = g};
    ms_request_params_default(&d.params);
    d.params.max_tokens = MAX_TOKENS;
    d.params.ignore_eos = ignore_eos;
    d.params.min_tokens = min_tokens;
    bool ok = ms_engine_submit(e, &d, NULL, &err) == MS_OK;
    ms_engine_drain(e, 600); /* waits for the request's on_done */
    ms_engine_destroy(e);
    return ok && g->res.status == MS_OK;
}

static void copy_model(const char *name, char *dir, size_t n) {
    snprintf(dir, n, "%s/%s", work, name);
    MS_CHECK(ms_test_system("rm -rf %s && cp -r %s %s", dir, model, dir) == 0);
}

/* Sets (or, with value NULL, removes) a top-level key of dir/file. */
static void json_set(const char *dir, const char *file, const char *key, cJSON *value) {
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *text = ms_test_read_file(path, NULL);
    MS_CHECK(text);
    cJSON *root = cJSON_Parse(text);
    free(text);
    MS_CHECK(root);
    cJSON_DeleteItemFromObjectCaseSensitive(root, key);
    if (value) cJSON_AddItemToObject(root, key, value);
    char *out = cJSON_Print(root);
    FILE *f = fopen(path, "wb");
    MS_CHECK(f && fputs(out, f) >= 0 && fclose(f) == 0);
    free(out);
    cJSON_Delete(root);
}

static cJSON *id_list(int32_t a, int32_t b) {
    const int ids[2] = {a, b};
    return cJSON_CreateIntArray(ids, 2);
}

/* text_config.eos_token_id of dir/config.json := value. */
static void set_text_eos(const char *dir, cJSON *value) {
    char path[400];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text = ms_test_read_file(path, NULL);
    cJSON *root = cJSON_Parse(text);
    free(text);
    cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    MS_CHECK(tc);
    cJSON_ReplaceItemInObjectCaseSensitive(tc, "eos_token_id", value);
    char *out = cJSON_Print(root);
    FILE *f = fopen(path, "wb");
    MS_CHECK(f && fputs(out, f) >= 0 && fclose(f) == 0);
    free(out);
    cJSON_Delete(root);
}

/* The first position >= from whose token is new (not earlier in ref) and not EOS 2. */
static int32_t fresh_position(const gen_out *ref, int32_t from) {
    for (int32_t k = from; k < ref->n; k++) {
        bool seen = ref->ids[k] == 2;
        for (int32_t j = 0; j < k; j++) seen |= ref->ids[j] == ref->ids[k];
        if (!seen) return k;
    }
    return -1;
}

/* A greedy run on dir ends with a stop exactly at position k of ref. */
static void expect_stop_at(const char *what, const char *dir, const gen_out *ref, int32_t k) {
    gen_out g;
    EXPECTF(generate(dir, false, 0, &g), "%s: generation failed: %s", what, g.res.error);
    EXPECTF(g.n == k + 1 && g.res.finish == MS_FINISH_STOP, "%s: %d tokens, finish %s (want %d, stop)",
            what, g.n, ms_finish_reason_name(g.res.finish), k + 1);
    EXPECTF(g.n >= 1 && !memcmp(g.ids, ref->ids, (size_t)g.n * sizeof *g.ids), "%s: other tokens", what);
    /* ignore_eos: the whole reference again */
    EXPECT(generate(dir, true, 0, &g) && g.n == MAX_TOKENS && g.res.finish == MS_FINISH_LENGTH);
    /* min_tokens past k: the end token is masked at k, so another token comes there */
    EXPECT(generate(dir, false, k + 2, &g) && g.n >= k + 2 && g.ids[k] != ref->ids[k]);
    printf("test_eos: %s: stops at position %d on token %d\n", what, k, ref->ids[k]);
}

static bool has_id(const int32_t *ids, int32_t n, int32_t id) {
    for (int32_t i = 0; i < n; i++)
        if (ids[i] == id) return true;
    return false;
}

static void config_lists(void) {
    ms_llava_config cfg;
    ms_error err = {0};
    const char *js = "{\"text_config\": {\"vocab_size\": 100, \"hidden_size\": 64, \"num_attention_heads\": 4,"
                     " \"eos_token_id\": [7, 3, 9]}, \"image_token_index\": 50}";
    EXPECT(ms_llava_config_parse(js, strlen(js), &cfg, &err) == MS_OK);
    EXPECT(cfg.text.n_eos_token_ids == 3 && cfg.text.eos_token_ids[1] == 3 && cfg.text.eos_token_id == 7);
    js = "{\"text_config\": {\"vocab_size\": 100, \"eos_token_id\": [7, 300]}, \"image_token_index\": 50}";
    EXPECT(ms_llava_config_parse(js, strlen(js), &cfg, &err) != MS_OK && strstr(err.msg, "300"));
    js = "{\"text_config\": {\"vocab_size\": 100, \"eos_token_id\": [7, \"x\"]}, \"image_token_index\": 50}";
    EXPECT(ms_llava_config_parse(js, strlen(js), &cfg, &err) != MS_OK && strstr(err.msg, "eos_token_id[1]"));
    js = "{\"text_config\": {\"vocab_size\": 100, \"eos_token_id\": null}, \"image_token_index\": 50}";
    EXPECT(ms_llava_config_parse(js, strlen(js), &cfg, &err) == MS_OK && cfg.text.n_eos_token_ids == 0 &&
           cfg.text.eos_token_id == -1);
}

static void generation_ends(const gen_out *ref) {
    char dir[300];
    /* generation_config.json: the second id of its list stops */
    int32_t k1 = fresh_position(ref, 1);
    MS_CHECK(k1 > 0);
    copy_model("gen", dir, sizeof dir);
    json_set(dir, "generation_config.json", "eos_token_id", id_list(2, ref->ids[k1]));
    expect_stop_at("generation_config.json [2, t]", dir, ref, k1);
    /* the whole folder through `modserve run`: same stop */
    EXPECT(ms_test_system("./modserve run --model %s --prompt-ids 1,5,6,7 --max-tokens %d --device cpu "
                          ">%s/run.out 2>%s/run.err", dir, MAX_TOKENS, work, work) == 0);
    char path[400];
    snprintf(path, sizeof path, "%s/run.err", work);
    char *run_err = ms_test_read_file(path, NULL);
    EXPECTF(run_err && strstr(run_err, "finish: stop"), "modserve run: %s", run_err ? run_err : "(no stderr)");
    free(run_err);
    snprintf(path, sizeof path, "%s/run.out", work);
    char *run_out = ms_test_read_file(path, NULL);
    int32_t last = -1, count = 0;
    for (char *p = run_out; p && *p && *p != '\n'; p++)
        if (p == run_out || p[-1] == ',') last = atoi(p), count++;
    EXPECTF(count == k1 + 1 && last == ref->ids[k1], "modserve run printed %s", run_out ? run_out : "(nothing)");
    free(run_out);
    /* a bad id in generation_config.json is named */
    json_set(dir, "generation_config.json", "eos_token_id", id_list(2, 5000));
    gen_out g;
    EXPECT(!generate(dir, false, 0, &g));

    /* config.json: a list in text_config (no generation_config.json) */
    copy_model("cfg", dir, sizeof dir);
    MS_CHECK(ms_test_system("rm %s/generation_config.json", dir) == 0);
    set_text_eos(dir, id_list(2, ref->ids[k1]));
    expect_stop_at("config.json text_config [2, t]", dir, ref, k1);

    /* the tokenizer's eos_token (tokenizer_config.json), config ids unchanged */
    int32_t k2 = fresh_position(ref, k1 + 1);
    MS_CHECK(k2 > k1);
    ms_tokenizer *tok = NULL;
    ms_error err = {0};
    MS_CHECK(ms_tokenizer_load(model, &tok, &err) == MS_OK);
    const char *piece = ms_tokenizer_piece(tok, ref->ids[k2]);
    MS_CHECK(piece);
    copy_model("tok", dir, sizeof dir);
    json_set(dir, "tokenizer_config.json", "eos_token", cJSON_CreateString(piece));
    ms_tokenizer_free(tok);
    expect_stop_at("tokenizer eos_token", dir, ref, k2);

    /* a ChatML template: <|im_end|> ends the turn though eos_token stays </s> (the added
     * token takes the id of a token the model produces, so the stop is observable) */
    copy_model("chatml", dir, sizeof dir);
    json_set(dir, "tokenizer_config.json", "chat_template",
             cJSON_CreateString("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                                "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if "
                                "add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"));
    char path2[400];
    snprintf(path2, sizeof path2, "%s/tokenizer.json", dir);
    char *text = ms_test_read_file(path2, NULL);
    cJSON *root = cJSON_Parse(text);
    free(text);
    cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    const char *names[2] = {"<|im_start|>", "<|im_end|>"};
    const int ids[2] = {1002, ref->ids[k2]};
    for (int i = 0; i < 2; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddNumberToObject(t, "id", ids[i]);
        cJSON_AddStringToObject(t, "content", names[i]);
        cJSON_AddBoolToObject(t, "single_word", 0);
        cJSON_AddBoolToObject(t, "lstrip", 0);
        cJSON_AddBoolToObject(t, "rstrip", 0);
        cJSON_AddBoolToObject(t, "normalized", 0);
        cJSON_AddBoolToObject(t, "special", 1);
        cJSON_AddItemToArray(added, t);
    }
    char *out = cJSON_Print(root);
    FILE *f = fopen(path2, "wb");
    MS_CHECK(f && fputs(out, f) >= 0 && fclose(f) == 0);
    free(out);
    cJSON_Delete(root);
    ms_engine_options o;
    ms_engine_options_default(&o);
    o.model_dir = dir;
    o.device = "cpu";
    o.max_model_len = 64;
    ms_engine *e = NULL;
    EXPECTF(ms_engine_create(&o, &e, &err) == MS_OK, "%s", err.msg);
    if (e) {
        int32_t n = 0;
        const int32_t *set = ms_engine_eos_ids(e, &n);
        EXPECTF(n == 2 && has_id(set, n, 2) && has_id(set, n, ref->ids[k2]), "stop set of %d ids", n);
        ms_engine_destroy(e);
    }
    expect_stop_at("ChatML <|im_end|>", dir, ref, k2);
}

int main(void) {
    model = ms_test_tiny_model(1, "f32");
    snprintf(work, sizeof work, "testdata/test_eos.%d", (int)getpid());
    ms_test_system("mkdir -p %s", work);
    config_lists();
    gen_out ref;
    MS_CHECK(generate(model, true, 0, &ref) && ref.n == MAX_TOKENS);
    generation_ends(&ref);
    int rc = ms_test_finish("test_eos");
    if (rc == 0) ms_test_system("rm -rf %s", work);
    return rc;
}
