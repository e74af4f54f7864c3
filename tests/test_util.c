/* Test harness helpers (see test_util.h). */
#include "tests/test_util.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ms_test_failures = 0;
int ms_test_checks = 0;

int ms_test_finish(const char *name) {
    printf("%s: %d checks, %d failed\n", name, ms_test_checks, ms_test_failures);
    if (ms_test_checks == 0) {
        printf("%s: no checks ran: failing\n", name);
        return 1;
    }
    return ms_test_failures ? 1 : 0;
}

int ms_test_skip(const char *name, const char *why) {
    printf("%s: skipped: %s\n", name, why);
    return MS_TEST_SKIP_CODE;
}

int ms_test_system(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc == -1) return -1;
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

char *ms_test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    buf[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

const char *ms_test_tiny_model(int seed, const char *dtype) {
    static char path[1024];
    snprintf(path, sizeof path, "testdata/tiny-s%d-%s", seed, dtype);
    char marker[1100];
    snprintf(marker, sizeof marker, "%s/config.json", path);
    struct stat st;
    if (stat(marker, &st) == 0) return path;
    /* ctest may run tests in parallel: write to a private folder, then rename. */
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
    int rc = ms_test_system("./modserve model init --preset tiny --seed %d --dtype %s --out %s >/dev/null",
                            seed, dtype, tmp);
    if (rc != 0) {
        fprintf(stderr, "could not write the tiny model (modserve model init exit %d)\n", rc);
        exit(1);
    }
    if (rename(tmp, path) != 0) ms_test_system("rm -rf %s", tmp); /* another test won */
    return path;
}
