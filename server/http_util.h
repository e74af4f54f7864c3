/*
 * Small helpers shared by the server files: a growable byte buffer, JSON string
 * escaping, and the OpenAI-style error value every 4xx/5xx body is built from.
 */
#ifndef MS_SERVER_HTTP_UTIL_H
#define MS_SERVER_HTTP_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct ms_sbuf {
    char *p;   /* NUL-terminated when non-NULL */
    size_t n, cap;
} ms_sbuf;

void ms_sbuf_add(ms_sbuf *b, const void *data, size_t n);
void ms_sbuf_adds(ms_sbuf *b, const char *s);
void ms_sbuf_addf(ms_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s (n bytes) as a JSON string literal, quotes included. */
void ms_sbuf_add_json_str(ms_sbuf *b, const char *s, size_t n);
void ms_sbuf_free(ms_sbuf *b);

/* An API error: HTTP status and OpenAI's {"error": {message, type, param, code}}.
 * Messages name the limit or field, never internal details (paths, pointers). */
typedef struct ms_api_error {
    int http;               /* 400, 401, 404, 413, 422, 500, 503 ... */
    const char *type;       /* "invalid_request_error", "authentication_error", ... */
    char param[64];         /* the offending field, "" when none */
    char code[48];          /* machine-readable, e.g. "max_images" */
    char message[384];
} ms_api_error;

/* Fills e and returns false (so parsers write `return api_fail(...)`). */
bool ms_api_fail(ms_api_error *e, int http, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The JSON body of an error (malloc'd). */
char *ms_api_error_json(const ms_api_error *e);

#endif
