/*
 * `modserve tokenize` over files, one process for many inputs (the reference test
 * tests/ref/test_tokenizers.py compares thousands of lines with Hugging Face's library):
 *   --file F          one text per line, escapes \n \t \r \\ \xHH (a raw byte, so
 *                     ill-formed UTF-8 can be written); ids per line, or with --jsonl
 *                     {"ids": [...], "text": decode(ids), "skip": decode(ids, skip special)}
 *   --decode-file F   comma-separated ids per line (an empty line is no ids);
 *                     {"text": ..., "skip": ..., "stream": ..., "stream_skip": ...} per
 *                     line, stream*: the concatenated pieces of a streaming decode
 *   --messages F      one chat request per line: {"messages": [...], "add_generation_prompt":
 *                     true|false (default true)}, messages as in the OpenAI chat API
 *                     (content a string or parts {"type": "text"|"image"|"image_url"});
 *                     {"prompt": rendered text, "ids": [...]} per line, through
 *                     ms_chat_tokenize (the rules of a chat request to the server).
 * An input line that cannot be read is an error naming its line number.
 */
#include "server/cmd_tokenize.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/chat_template.h"
#include "server/http_util.h"

/* The corpus escapes (shared with `modserve bench tokenizer`): \n \t \r \\ and \xHH. */
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
                const char hex[] = "0123456789abcdef0123456789ABCDEF";
                const char *a = s[i + 2] ? memchr(hex, s[i + 2], 32) : NULL;
                const char *b = s[i + 3] ? memchr(hex, s[i + 3], 32) : NULL;
                if (a && b) {
                    out[o++] = (char)(((a - hex) % 16) * 16 + (b - hex) % 16);
                    i += 3;
                    continue;
                }
            }
        }
        out[o++] = s[i];
    }
    return o;
}

typedef int (*line_fn)(const ms_tokenizer *tok, const tok_batch_opts *o, char *line, size_t n, long line_no,
                       ms_sbuf *out);

/* Calls fn for every line of path (without its '\n'), printing what fn appends. */
static int for_each_line(const ms_tokenizer *tok, const tok_batch_opts *o, const char *path, line_fn fn) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "modserve tokenize: cannot open '%s': %s\n", path, strerror(errno));
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    long line_no = 0;
    int rc = 0;
    ms_sbuf out = {0};
    while (rc == 0 && (got = getline(&line, &cap, f)) >= 0) {
        line_no++;
        if (got > 0 && line[got - 1] == '\n') got--;
        line[got] = 0;
        out.n = 0;
        rc = fn(tok, o, line, (size_t)got, line_no, &out);
        if (rc == 0) {
            ms_sbuf_add(&out, "\n", 1);
            fwrite(out.p, 1, out.n, stdout);
        }
    }
    free(line);
    ms_sbuf_free(&out);
    if (f != stdin) fclose(f);
    return rc;
}

static void add_ids(ms_sbuf *b, const int32_t *ids, int32_t n, bool json) {
    if (json) ms_sbuf_adds(b, "[");
    for (int32_t i = 0; i < n; i++) ms_sbuf_addf(b, i ? ",%d" : "%d", ids[i]);
    if (json) ms_sbuf_adds(b, "]");
}

/* "text": decode(ids), "skip": decode(ids, skip_special) */
static int add_decodes(const ms_tokenizer *tok, const int32_t *ids, int32_t n, long line_no, ms_sbuf *b) {
    for (int skip = 0; skip < 2; skip++) {
        char *text = NULL;
        ms_error err = {0};
        if (ms_tokenizer_decode(tok, ids, n, skip, &text, &err) != MS_OK) {
            fprintf(stderr, "modserve tokenize: line %ld: %s\n", line_no, err.msg);
            return 1;
        }
        ms_sbuf_adds(b, skip ? ",\"skip\":" : "\"text\":");
        ms_sbuf_add_json_str(b, text, strlen(text));
        free(text);
    }
    return 0;
}

/* "stream": the concatenated text of a streaming decode (one id pushed at a time), as
 * the server streams a completion. */
static int add_stream(const ms_tokenizer *tok, const int32_t *ids, int32_t n, bool skip, long line_no, ms_sbuf *b) {
    ms_tokenizer_stream *s = ms_tokenizer_stream_new(tok, skip);
    ms_sbuf all = {0};
    ms_error err = {0};
    ms_status st = MS_OK;
    for (int32_t i = 0; i <= n && st == MS_OK; i++) {
        char *piece = NULL;
        st = i < n ? ms_tokenizer_stream_push(s, ids[i], &piece, &err) : ms_tokenizer_stream_finish(s, &piece, &err);
        if (st == MS_OK) ms_sbuf_adds(&all, piece);
        free(piece);
    }
    ms_tokenizer_stream_free(s);
    if (st != MS_OK) {
        fprintf(stderr, "modserve tokenize: line %ld: streaming decode: %s\n", line_no, err.msg);
        ms_sbuf_free(&all);
        return 1;
    }
    ms_sbuf_adds(b, skip ? ",\"stream_skip\":" : ",\"stream\":");
    ms_sbuf_add_json_str(b, all.p ? all.p : "", all.n);
    ms_sbuf_free(&all);
    return 0;
}

static int encode_line(const ms_tokenizer *tok, const tok_batch_opts *o, char *line, size_t n, long line_no,
                       ms_sbuf *out) {
    char *text = ms_xmalloc(n + 1);
    size_t len = unescape(line, n, text);
    int32_t *ids = NULL, n_ids = 0;
    ms_error err = {0};
    ms_status st = ms_tokenizer_encode(tok, text, len, o->add_special, &ids, &n_ids, &err);
    free(text);
    if (st != MS_OK) {
        fprintf(stderr, "modserve tokenize: line %ld: %s\n", line_no, err.msg);
        return 1;
    }
    int rc = 0;
    if (o->jsonl) {
        ms_sbuf_adds(out, "{\"ids\":");
        add_ids(out, ids, n_ids, true);
        ms_sbuf_adds(out, ",");
        rc = add_decodes(tok, ids, n_ids, line_no, out);
        ms_sbuf_adds(out, "}");
    } else {
        add_ids(out, ids, n_ids, false);
    }
    free(ids);
    return rc;
}

static int decode_line(const ms_tokenizer *tok, const tok_batch_opts *o, char *line, size_t n, long line_no,
                       ms_sbuf *out) {
    (void)o;
    (void)n;
    int32_t *ids = NULL, n_ids = 0;
    for (const char *p = line; *p;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < INT32_MIN || v > INT32_MAX) {
            fprintf(stderr, "modserve tokenize: --decode-file line %ld: '%s' is not a comma-separated id list\n",
                    line_no, line);
            free(ids);
            return 2;
        }
        ids = ms_xrealloc(ids, (size_t)(n_ids + 1) * sizeof *ids);
        ids[n_ids++] = (int32_t)v;
        p = end;
        while (*p == ',' || *p == ' ') p++;
    }
    ms_sbuf_adds(out, "{");
    int rc = add_decodes(tok, ids, n_ids, line_no, out);
    for (int skip = 0; skip < 2 && rc == 0; skip++) rc = add_stream(tok, ids, n_ids, skip, line_no, out);
    ms_sbuf_adds(out, "}");
    free(ids);
    return rc;
}

/* One OpenAI-style message's content into parts (string: one text part). */
static const char *message_parts(const cJSON *content, ms_chat_part **parts, int *n_parts) {
    *parts = NULL;
    *n_parts = 0;
    if (cJSON_IsString(content)) {
        *parts = ms_xcalloc(1, sizeof **parts);
        (*parts)[0] = (ms_chat_part){MS_CHAT_PART_TEXT, content->valuestring};
        *n_parts = 1;
        return NULL;
    }
    if (!cJSON_IsArray(content)) return "content is neither a string nor an array of parts";
    int n = cJSON_GetArraySize(content);
    *parts = ms_xcalloc((size_t)n + 1, sizeof **parts);
    const cJSON *p;
    cJSON_ArrayForEach(p, content) {
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "type"));
        const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "text"));
        if (type && !strcmp(type, "text") && text) (*parts)[(*n_parts)++] = (ms_chat_part){MS_CHAT_PART_TEXT, text};
        else if (type && (!strcmp(type, "image") || !strcmp(type, "image_url")))
            (*parts)[(*n_parts)++] = (ms_chat_part){MS_CHAT_PART_IMAGE, NULL};
        else return "a content part is not {\"type\": \"text\", \"text\": ...}, \"image\" or \"image_url\"";
    }
    return NULL;
}

static int messages_line(const ms_tokenizer *tok, const tok_batch_opts *o, char *line, size_t n, long line_no,
                         ms_sbuf *out) {
    cJSON *root = cJSON_ParseWithLength(line, n);
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    const cJSON *gen = cJSON_GetObjectItemCaseSensitive(root, "add_generation_prompt");
    const char *bad = !root ? "not JSON" : !cJSON_IsArray(msgs) ? "no \"messages\" array"
                                          : gen && !cJSON_IsBool(gen) ? "add_generation_prompt is not a boolean"
                                                                      : NULL;
    int n_msgs = bad ? 0 : cJSON_GetArraySize(msgs);
    ms_chat_message *m = ms_xcalloc((size_t)n_msgs + 1, sizeof *m);
    for (int i = 0; i < n_msgs && !bad; i++) {
        const cJSON *mi = cJSON_GetArrayItem(msgs, i);
        m[i].role = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(mi, "role"));
        ms_chat_part *parts = NULL;
        bad = m[i].role ? message_parts(cJSON_GetObjectItemCaseSensitive(mi, "content"), &parts, &m[i].n_parts)
                        : "a message has no \"role\" string";
        m[i].parts = parts;
    }
    ms_error err = {0};
    ms_chat_format f;
    char *prompt = NULL;
    int32_t *ids = NULL, n_ids = 0;
    const bool add_gen = !gen || cJSON_IsTrue(gen);
    int rc = 0;
    if (bad) {
        fprintf(stderr, "modserve tokenize: --messages line %ld: %s\n", line_no, bad);
        rc = 2;
    } else if (ms_chat_format_for(tok, o->chat_template, &f, &err) != MS_OK ||
               ms_chat_render(f, m, n_msgs, add_gen, ms_tokenizer_bos_token(tok), ms_tokenizer_eos_token(tok), &prompt,
                              &err) != MS_OK ||
               ms_chat_tokenize(tok, f, m, n_msgs, add_gen, &ids, &n_ids, &err) != MS_OK) {
        fprintf(stderr, "modserve tokenize: --messages line %ld: %s\n", line_no, err.msg);
        rc = 1;
    } else {
        ms_sbuf_adds(out, "{\"prompt\":");
        ms_sbuf_add_json_str(out, prompt, strlen(prompt));
        ms_sbuf_adds(out, ",\"ids\":");
        add_ids(out, ids, n_ids, true);
        ms_sbuf_adds(out, "}");
    }
    for (int i = 0; i < n_msgs; i++) free((void *)m[i].parts);
    free(m);
    free(prompt);
    free(ids);
    cJSON_Delete(root);
    return rc;
}

int ms_tokenize_batch(const ms_tokenizer *tok, const tok_batch_opts *o) {
    if (o->file) return for_each_line(tok, o, o->file, encode_line);
    if (o->decode_file) return for_each_line(tok, o, o->decode_file, decode_line);
    return for_each_line(tok, o, o->messages_file, messages_line);
}
