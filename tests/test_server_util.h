/*
 * Helpers for the server tests: start `modserve serve` on the tiny model as a child
 * process on --port 0 (the port is read from its "listening on" line), and make HTTP
 * calls to it with libcurl.
 */
#ifndef MS_TEST_SERVER_UTIL_H
#define MS_TEST_SERVER_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct srv_proc {
    pid_t pid;
    int port;
    char base[64];      /* "http://127.0.0.1:PORT" */
} srv_proc;

/* extra: more flags, space separated (no quoting). Returns false if it did not start. */
bool srv_start(srv_proc *p, const char *model_dir, const char *extra);
/* Sends sig (SIGTERM) and waits up to timeout_s; returns the exit code, -1 on a crash
 * or timeout (then the child is killed). */
int srv_stop(srv_proc *p, int sig, double timeout_s);

typedef struct http_resp {
    long status;
    char *body;          /* NUL-terminated, malloc'd */
    size_t n;
    char retry_after[16];
} http_resp;

/* method "GET"/"POST"; body may be NULL; auth (API key) may be NULL. */
bool http_call(const srv_proc *p, const char *method, const char *path, const char *body, size_t body_len,
               const char *auth, http_resp *out);
void http_resp_free(http_resp *r);

/* Concatenated content (chat delta.content or completions text) of an SSE body; sets
 * *finish (malloc'd, may be NULL) and *n_events; false when malformed or no [DONE]. */
bool sse_collect(const char *body, char **text, char **finish, int *n_events);

/* A small deterministic PNG (w x h) as a data: URL (malloc'd), and as raw bytes. */
char *png_data_url(int w, int h, int k);
unsigned char *png_bytes(int w, int h, int k, size_t *n);

#endif
