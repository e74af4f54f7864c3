/*
 * Fuzz target: the replayer's SSE parser (bench/replay_sse.c), which reads whatever a
 * server streams back. The input is split into chunks at points the first byte chooses
 * (as network reads split a stream), and must give the same measurements as the same
 * bytes fed whole. Properties: chunk counts and inter-token gaps agree and stay finite,
 * nothing reads past the bytes given.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench/replay.h"
#include "tests/fuzz/fuzz_util.h"

static void run(const uint8_t *data, size_t size, size_t step, ms_run_request *r, ms_sse_stream *s) {
    memset(r, 0, sizeof *r);
    memset(s, 0, sizeof *s);
    s->r = r;
    s->t0 = 0.0;
    double now = 1.0;
    for (size_t off = 0; off < size; off += step) {
        size_t n = size - off < step ? size - off : step;
        if (!ms_sse_feed(s, (const char *)data + off, n, now)) break;
        now += 0.001;
    }
}

static void release(ms_run_request *r, ms_sse_stream *s) {
    free(s->sse);
    free(r->itl_buf);
    free(r->error);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    size_t step = 1 + data[0] % 17; /* 1..17-byte reads */
    data++;
    size--;
    ms_run_request whole_r, split_r;
    ms_sse_stream whole_s, split_s;
    run(data, size, size ? size : 1, &whole_r, &whole_s);
    run(data, size, step, &split_r, &split_s);
    /* Event boundaries do not depend on how the bytes arrived. */
    if (whole_r.chunks != split_r.chunks || whole_s.done_seen != split_s.done_seen ||
        whole_s.error_event != split_s.error_event || whole_s.usage_completion != split_s.usage_completion ||
        whole_r.actual_prompt != split_r.actual_prompt)
        __builtin_trap();
    for (int64_t i = 0; i < split_r.m.n_itl; i++)
        if (!isfinite(split_r.itl_buf[i]) || split_r.itl_buf[i] < 0) __builtin_trap();
    release(&whole_r, &whole_s);
    release(&split_r, &split_s);
    return 0;
}
