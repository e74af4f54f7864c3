/* Error tiers, allocation helpers and logging (see ms_common.h). */
#include "kernels/ms_common.h"

#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

ms_status ms_errorf(ms_error *err, ms_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = code;
    }
    return code;
}

ms_status ms_error_wrap(ms_error *err, const char *fmt, ...) {
    if (!err) return MS_ERR_INTERNAL;
    char prefix[MS_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* Build "<prefix>: <old>" in a buffer big enough for both, then truncate. */
    char joined[2 * MS_ERROR_MSG_MAX + 2];
    size_t np = strlen(prefix);
    memcpy(joined, prefix, np);
    joined[np] = ':';
    joined[np + 1] = ' ';
    size_t no = strnlen(err->msg, sizeof err->msg - 1);
    memcpy(joined + np + 2, err->msg, no);
    joined[np + 2 + no] = 0;
    snprintf(err->msg, sizeof err->msg, "%.*s", (int)(sizeof err->msg - 1), joined);
    return err->status;
}

const char *ms_status_name(ms_status s) {
    switch (s) {
    case MS_OK: return "ok";
    case MS_ERR_INVALID: return "invalid";
    case MS_ERR_NOT_FOUND: return "not_found";
    case MS_ERR_IO: return "io";
    case MS_ERR_LIMIT: return "limit";
    case MS_ERR_UNSUPPORTED: return "unsupported";
    case MS_ERR_NOMEM: return "out_of_memory";
    case MS_ERR_BUSY: return "busy";
    case MS_ERR_CANCELLED: return "cancelled";
    case MS_ERR_INTERNAL: return "internal";
    }
    return "unknown";
}

void ms_panic(const char *file, int line, const char *fmt, ...) {
    fprintf(stderr, "modserve: fatal: %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

void *ms_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) ms_panic(__FILE__, __LINE__, "out of host memory allocating %zu bytes", n);
    return p;
}

void *ms_xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) ms_panic(__FILE__, __LINE__, "out of host memory allocating %zu x %zu bytes", count, size);
    return p;
}

void *ms_xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) ms_panic(__FILE__, __LINE__, "out of host memory reallocating %zu bytes", n);
    return q;
}

char *ms_xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = ms_xmalloc(n);
    memcpy(p, s, n);
    return p;
}

static ms_log_level g_log_level = MS_LOG_INFO;
static pthread_mutex_t g_log_lock = PTHREAD_MUTEX_INITIALIZER;

void ms_log_set_level(ms_log_level level) { g_log_level = level; }

void ms_log(ms_log_level level, const char *module, const char *fmt, ...) {
    if (level < g_log_level) return;
    static const char *names[] = {"debug", "info", "warn", "error"};
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&g_log_lock);
    fprintf(stderr, "[%s] %s: %s\n", names[level], module, line);
    pthread_mutex_unlock(&g_log_lock);
}

double ms_time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
