/*
 * A tiny test harness: checks count failures and keep going, the test exits non-zero
 * if any failed, and 77 (ctest: skipped) when it cannot run here.
 */
#ifndef MS_TEST_UTIL_H
#define MS_TEST_UTIL_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>

extern int ms_test_failures;
extern int ms_test_checks;

#define MS_TEST_SKIP_CODE 77

#define EXPECT(cond)                                                                  \
    do {                                                                              \
        ms_test_checks++;                                                             \
        if (!(cond)) {                                                                \
            ms_test_failures++;                                                       \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);           \
        }                                                                             \
    } while (0)
#define EXPECTF(cond, ...)                                                            \
    do {                                                                              \
        ms_test_checks++;                                                             \
        if (!(cond)) {                                                                \
            ms_test_failures++;                                                       \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);           \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
        }                                                                             \
    } while (0)
#define EXPECT_NEAR(a, b, tol) EXPECTF(fabs((double)(a) - (double)(b)) <= (tol),       \
                                       "%g vs %g (tol %g)", (double)(a), (double)(b), (double)(tol))

/* Prints "N checks, M failed" and returns the process exit code. */
int ms_test_finish(const char *name);
/* Prints why and returns 77 for main to return. */
int ms_test_skip(const char *name, const char *why);
/* Runs a shell command, returns its exit status (-1 if it could not run). */
int ms_test_system(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Reads a whole file into a malloc'd buffer (NUL-terminated); NULL if unreadable. */
char *ms_test_read_file(const char *path, size_t *len);
/* A tiny model folder for tests, written once per build tree by `modserve model init`
 * (preset tiny, given seed and dtype) under testdata/; returns its path. */
const char *ms_test_tiny_model(int seed, const char *dtype);

#endif
