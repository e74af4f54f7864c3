/*
 * Strict JSON for request bodies. cJSON (1.7) is lax where vLLM's pydantic models are
 * not: it stops at the end of the first value and leaves the rest unread, keeps the
 * bytes of a string as they come (invalid UTF-8, raw control characters), cuts a string
 * at a "\u0000" escape (it writes the NUL into a C string), and keeps duplicate keys as
 * siblings (cJSON_GetObjectItem then sees the first). So a body is scanned before cJSON
 * parses it (UTF-8, control characters, \u0000), the parse end must be the body's end
 * (whitespace aside), and the parsed tree is walked for duplicate keys. Each refusal is
 * a 400 naming what it found and its byte offset (or the key).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "kernels/ms_common.h"
#include "server/request_parse.h"

static bool json_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), 0 when it is not one. */
static size_t utf8_seq_len(const unsigned char *s, size_t n) {
    const unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* the range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;      /* overlong */
        else if (c == 0xED) hi = 0x9F; /* U+D800..U+DFFF */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;      /* overlong */
        else if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
    } else return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return len;
}

/* The raw bytes: UTF-8 and control characters in strings, \u0000 escapes, and stray
 * bytes between tokens (cJSON skips any byte <= 32 and a UTF-8 BOM as whitespace). */
static bool scan_body(const char *body, size_t n, ms_api_error *err) {
    const unsigned char *s = (const unsigned char *)body;
    bool in_str = false;
    for (size_t i = 0; i < n;) {
        const unsigned char c = s[i];
        if (!in_str) {
            if (c == '"') in_str = true;
            else if ((c < 0x20 && !json_space(c)) || c >= 0x7F)
                return ms_api_fail(err, 400, NULL, "invalid_json",
                                   "request body is not valid JSON: unexpected byte 0x%02x at offset %zu", c, i);
            i++;
            continue;
        }
        if (c == '"') {
            in_str = false;
            i++;
        } else if (c == '\\') {
            if (i + 5 < n && s[i + 1] == 'u' && !memcmp(s + i + 2, "0000", 4))
                return ms_api_fail(err, 400, NULL, "json_nul_escape",
                                   "a JSON string has the escape \\u0000 (a NUL character) at offset %zu; NUL "
                                   "characters are not accepted",
                                   i);
            i += 2; /* cJSON checks the escape itself */
        } else if (c < 0x20) {
            return ms_api_fail(err, 400, NULL, "json_control_character",
                               "a JSON string has the raw control character 0x%02x at offset %zu (escape it, e.g. "
                               "\\n or \\u00%02x)",
                               c, i, c);
        } else if (c < 0x80) {
            i++;
        } else {
            const size_t len = utf8_seq_len(s + i, n - i);
            if (!len)
                return ms_api_fail(err, 400, NULL, "json_invalid_utf8",
                                   "a JSON string has invalid UTF-8 (byte 0x%02x) at offset %zu", c, i);
            i += len;
        }
    }
    return true;
}

static int cmp_key(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Duplicate keys anywhere in the tree (cJSON keeps them as siblings). Sorting the keys
 * keeps an object of k keys at O(k log k). Depth is bounded by the caller's depth check. */
static bool no_duplicate_keys(const cJSON *v, ms_api_error *err) {
    if (!cJSON_IsObject(v) && !cJSON_IsArray(v)) return true;
    size_t k = 0;
    for (const cJSON *c = v->child; c; c = c->next) {
        if (!no_duplicate_keys(c, err)) return false;
        k++;
    }
    if (!cJSON_IsObject(v) || k < 2) return true;
    const char **keys = ms_xmalloc(k * sizeof *keys);
    size_t i = 0;
    for (const cJSON *c = v->child; c; c = c->next) keys[i++] = c->string ? c->string : "";
    qsort(keys, k, sizeof *keys, cmp_key);
    bool ok = true;
    for (i = 1; i < k && ok; i++)
        if (!strcmp(keys[i - 1], keys[i]))
            ok = ms_api_fail(err, 400, keys[i], "json_duplicate_key", "the key '%.64s' appears twice in one JSON object",
                             keys[i]);
    free(keys);
    return ok;
}

cJSON *ms_json_parse_strict(const char *body, size_t n, ms_api_error *err) {
    if (!scan_body(body, n, err)) return NULL;
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(body, n, &end, false);
    if (!o) {
        const size_t at = end && end >= body && end <= body + n ? (size_t)(end - body) : 0;
        ms_api_fail(err, 400, NULL, "invalid_json", "request body is not valid JSON (at offset %zu)", at);
        return NULL;
    }
    size_t at = (size_t)(end - body);
    while (at < n && json_space((unsigned char)body[at])) at++;
    if (at < n) {
        cJSON_Delete(o);
        ms_api_fail(err, 400, NULL, "json_trailing_data",
                    "request body has data after the JSON value, at offset %zu (one JSON object per request)", at);
        return NULL;
    }
    if (!no_duplicate_keys(o, err)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}
