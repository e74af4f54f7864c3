/* Growable buffer, JSON escaping and error bodies. */
#include "server/http_util.h"

#include <stdio.h>
#include <string.h>

#include "kernels/ms_common.h"

static void sbuf_reserve(ms_sbuf *b, size_t extra) {
    if (b->n + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra + 1) cap *= 2;
    b->p = ms_xrealloc(b->p, cap);
    b->cap = cap;
}

void ms_sbuf_add(ms_sbuf *b, const void *data, size_t n) {
    sbuf_reserve(b, n);
    if (n) memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = 0;
}

void ms_sbuf_adds(ms_sbuf *b, const char *s) { ms_sbuf_add(b, s, strlen(s)); }

void ms_sbuf_addf(ms_sbuf *b, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    MS_CHECK(k >= 0);
    sbuf_reserve(b, (size_t)k);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap2);
    va_end(ap2);
    b->n += (size_t)k;
}

void ms_sbuf_add_json_str(ms_sbuf *b, const char *s, size_t n) {
    sbuf_reserve(b, n + 2);
    ms_sbuf_add(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default:
            if (c < 0x20 || c == 0x7f) {
                snprintf(u, sizeof u, "\\u%04x", c);
                esc = u;
            }
        }
        if (!esc) continue;
        ms_sbuf_add(b, s + run, i - run);
        ms_sbuf_adds(b, esc);
        run = i + 1;
    }
    ms_sbuf_add(b, s + run, n - run);
    ms_sbuf_add(b, "\"", 1);
}

void ms_sbuf_free(ms_sbuf *b) {
    free(b->p);
    *b = (ms_sbuf){0};
}

bool ms_api_fail(ms_api_error *e, int http, const char *param, const char *code, const char *fmt, ...) {
    e->http = http;
    e->type = http == 401 ? "authentication_error"
            : http == 404 ? "not_found_error"
            : http == 503 ? "server_overloaded"
            : http >= 500 ? "internal_server_error"
                          : "invalid_request_error";
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return false;
}

char *ms_api_error_json(const ms_api_error *e) {
    ms_sbuf b = {0};
    ms_sbuf_adds(&b, "{\"error\":{\"message\":");
    ms_sbuf_add_json_str(&b, e->message, strlen(e->message));
    ms_sbuf_adds(&b, ",\"type\":");
    ms_sbuf_add_json_str(&b, e->type, strlen(e->type));
    ms_sbuf_adds(&b, ",\"param\":");
    if (e->param[0]) ms_sbuf_add_json_str(&b, e->param, strlen(e->param));
    else ms_sbuf_adds(&b, "null");
    ms_sbuf_adds(&b, ",\"code\":");
    if (e->code[0]) ms_sbuf_add_json_str(&b, e->code, strlen(e->code));
    else ms_sbuf_adds(&b, "null");
    ms_sbuf_adds(&b, "}}");
    return b.p;
}
