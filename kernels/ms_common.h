/*
 * Common ground for every layer: the two error tiers and logging.
 *
 * Tier 1 (bugs): MS_CHECK(cond) aborts with file and line. A broken invariant or a
 * failed CUDA/cuBLAS call is never handed to a caller to "handle".
 * Tier 2 (bad input from outside: a request, an image, a model file, a trace line):
 * functions return ms_status and fill an ms_error whose message names the thing and
 * what is wrong with it. The server turns these into 4xx JSON errors.
 */
#ifndef MS_COMMON_H
#define MS_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef enum ms_status {
    MS_OK = 0,
    MS_ERR_INVALID,      /* malformed input: bad JSON, bad header, wrong shape */
    MS_ERR_NOT_FOUND,    /* missing file, missing tensor, unknown model */
    MS_ERR_IO,           /* read/write/mmap failed */
    MS_ERR_LIMIT,        /* input over a configured limit (size, count, length) */
    MS_ERR_UNSUPPORTED,  /* valid but not supported (dtype, tokenizer component) */
    MS_ERR_NOMEM,        /* allocation failed (host or device) */
    MS_ERR_BUSY,         /* queue full, try again later */
    MS_ERR_CANCELLED,    /* request cancelled */
    MS_ERR_INTERNAL,     /* engine failure reported to one request */
} ms_status;

enum { MS_ERROR_MSG_MAX = 512 };

typedef struct ms_error {
    ms_status status;
    char msg[MS_ERROR_MSG_MAX];
} ms_error;

/* Fills err (may be NULL) and returns code, so callers write `return ms_errorf(...)`. */
ms_status ms_errorf(ms_error *err, ms_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prepends context to an existing message: "loading model: <old message>". */
ms_status ms_error_wrap(ms_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *ms_status_name(ms_status s);

/* Tier 1: abort on a broken invariant. Always on (not tied to NDEBUG). */
#define MS_CHECK(cond)                                                              \
    do {                                                                            \
        if (!(cond)) ms_panic(__FILE__, __LINE__, "check failed: %s", #cond);       \
    } while (0)
#define MS_CHECKF(cond, ...)                                                        \
    do {                                                                            \
        if (!(cond)) ms_panic(__FILE__, __LINE__, __VA_ARGS__);                     \
    } while (0)
_Noreturn void ms_panic(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Allocation that aborts on failure: for internal buffers whose size we control.
 * Sizes that come from outside must be checked against a limit first. */
void *ms_xmalloc(size_t n);
void *ms_xcalloc(size_t count, size_t size);
void *ms_xrealloc(void *p, size_t n);
char *ms_xstrdup(const char *s);

/* Logging with a module prefix: ms_log(MS_LOG_INFO, "server", "listening on %s", ...). */
typedef enum { MS_LOG_DEBUG, MS_LOG_INFO, MS_LOG_WARN, MS_LOG_ERROR } ms_log_level;
void ms_log(ms_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void ms_log_set_level(ms_log_level level);

/* Monotonic time in seconds (CLOCK_MONOTONIC). */
double ms_time_now(void);

#endif
