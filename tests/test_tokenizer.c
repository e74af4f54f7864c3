/*
 * Tokenizer unit checks: the tiny tokenizer (ids, byte fallback, decode, streaming),
 * load errors naming the component, the chat formats. The comparison with Hugging
 * Face's `tokenizers` and transformers' chat templates is a reference test
 * (tests/ref/test_tokenizers.py, tests/ref/test_chat_templates.py).
 */
#include <string.h>

#include "llm/chat_template.h"
#include "llm/tokenizer.h"
#include "test_util.h"

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
 * full decode gives U+FFFD per byte of the run, and so does the stream, which holds
 * "€A" while the run is well-formed so far (test_tokenizer_stream has more). */
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
        EXPECTF(!strcmp(joined, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"),
                "stream gave '%s'", joined);
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

/* U+0000 (the piece <0x00>) cannot live in the C string decode returns: it is dropped
 * and the text after it kept (it used to end the text; tests/ref/test_tokenizers.py
 * compares this against the library, which keeps the U+0000). */
static void test_decode_nul(void) {
    ms_error err = {0};
    ms_tokenizer *tok = tiny_in("testdata/tok_nul");
    EXPECT(tok != NULL);
    if (tok) {
        int32_t *ids = NULL, n = 0;
        EXPECT(ms_tokenizer_encode(tok, "ab\0cd", 5, false, &ids, &n, &err) == MS_OK);
        bool has_nul_piece = false;
        for (int32_t i = 0; i < n; i++) has_nul_piece |= ids[i] == 3; /* <0x00> */
        EXPECT(has_nul_piece);
        char *text = NULL;
        EXPECT(ms_tokenizer_decode(tok, ids, n, false, &text, &err) == MS_OK);
        EXPECTF(text && !strcmp(text, "abcd"), "decode gave '%s'", text ? text : "");
        char *streamed = stream_all(tok, ids, n, false);
        EXPECTF(!strcmp(streamed, "abcd"), "stream gave '%s'", streamed);
        free(streamed);
        free(text);
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
    /* Llama-2's template strips content with Python's str.strip(): Unicode whitespace
     * too (U+3000, U+00A0, U+2003; not U+200B), found by tests/ref/test_chat_templates.py. */
    ms_chat_part spaced[] = {{MS_CHAT_PART_TEXT, "\xE3\x80\x80 Hi\xC2\xA0\xE2\x80\x83\n"}};
    ms_chat_part zwsp[] = {{MS_CHAT_PART_TEXT, "\xE2\x80\x8BHi"}};
    ms_chat_message spaced_msgs[] = {{"user", spaced, 1}, {"assistant", zwsp, 1}};
    EXPECT(ms_chat_render(MS_CHAT_FORMAT_LLAMA2, spaced_msgs, 2, true, "<s>", "</s>", &out, &err) == MS_OK);
    EXPECTF(!strcmp(out, "<s>[INST] Hi [/INST] \xE2\x80\x8BHi </s>"), "%s", out);
    free(out);
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

int main(void) {
    test_tiny();
    test_errors();
    test_chat();
    test_unknown_ids();
    test_decode_nul();
    test_stream_invalid_run();
    return ms_test_finish("test_tokenizer");
}
