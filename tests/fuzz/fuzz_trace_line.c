/*
 * Fuzz target: the Azure trace format (bench/trace.h). A single line goes through
 * ms_trace_parse_line, plus ms_trace_time_parse and ms_duration_parse on the same text;
 * an input with newlines is also read as a whole file by the streaming reader (in a
 * memfd, both bad-line policies). Properties checked on success: counts are
 * non-negative, and a parsed timestamp formats back to text that parses to the same ms.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench/trace.h"
#include "tests/fuzz/fuzz_util.h"

static void check_time_roundtrip(int64_t ms) {
    char buf[64];
    ms_trace_time_format(ms, buf, sizeof buf);
    int64_t back = 0;
    ms_error err = {0};
    if (ms_trace_time_parse(buf, &back, &err) != MS_OK || back != ms) __builtin_trap();
}

static void read_as_file(const uint8_t *data, size_t size, ms_trace_bad_line policy) {
    int fd = memfd_create("fuzz_trace", 0);
    if (fd < 0) return;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ms_trace_reader *r = NULL;
    ms_error err = {0};
    if (ms_trace_open(path, policy, &r, &err) == MS_OK) {
        ms_trace_row row;
        bool eof = false;
        int64_t last = INT64_MIN;
        while (ms_trace_next(r, &row, &eof, &err) == MS_OK && !eof) {
            /* rows come out in time order, or not at all */
            if (row.t_ms < last || row.n_images < 0 || row.context_tokens < 0 || row.generated_tokens < 0)
                __builtin_trap();
            last = row.t_ms;
        }
        ms_trace_close(r);
    }
    close(fd);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    ms_log_set_level(MS_LOG_ERROR); /* the reader warns about each skipped line */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 8192) return 0; /* the reader's lines are at most 4 KiB */
    char *line = malloc(size + 1);
    memcpy(line, data, size);
    line[size] = 0;
    ms_error err = {0};
    ms_trace_row row;
    if (ms_trace_parse_line(line, &row, &err) == MS_OK) {
        if (row.n_images < 0 || row.context_tokens < 0 || row.generated_tokens < 0) __builtin_trap();
        check_time_roundtrip(row.t_ms);
    } else if (err.msg[0] == 0) {
        __builtin_trap();
    }
    int64_t ms = 0;
    if (ms_trace_time_parse(line, &ms, &err) == MS_OK) check_time_roundtrip(ms);
    double seconds = 0;
    if (ms_duration_parse(line, &seconds, &err) == MS_OK && !(seconds >= 0)) __builtin_trap();
    if (memchr(data, '\n', size)) {
        read_as_file(data, size, MS_TRACE_BAD_SKIP);
        read_as_file(data, size, MS_TRACE_BAD_FAIL);
    }
    free(line);
    return 0;
}
