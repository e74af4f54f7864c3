/*
 * Selection and reshaping of a trace: a window (--start, --duration), a cap
 * (--max-requests), time compression (--time-scale) and rate scaling (--rate-scale).
 *
 * Rate scaling keeps the trace's shape at every scale above a single gap: thinning keeps
 * each row with probability X (seeded); replication sends floor(X) copies of each row
 * plus one more with probability frac(X), the extra copies placed uniformly between the
 * row and the next row of the window, so bursts stay bursts and no two copies of a
 * request collide on one millisecond by construction.
 */
#include "bench/trace.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- random draws on top of kernels/rng.h ---- */
int64_t ms_rng_poisson(ms_rng *r, double mean) {
    if (mean <= 0) return 0;
    if (mean > 60) { /* normal approximation: exact enough for arrival counts */
        const double v = floor(mean + sqrt(mean) * ms_rng_normal(r) + 0.5);
        return v < 0 ? 0 : (int64_t)v;
    }
    const double l = exp(-mean);
    int64_t k = 0;
    double p = ms_rng_uniform(r);
    while (p > l) {
        k++;
        p *= ms_rng_uniform(r);
    }
    return k;
}

/* ---- flags ---- */
const char ms_trace_select_help[] =
    "selection (applied in this order):\n"
    "  --start TIME         window start: ISO 8601 UTC (2024-10-18T08:00:00.000Z) or an\n"
    "                       offset from the first row (2h, 1d6h); default: the first row\n"
    "  --duration D         window length in trace time (90s, 15m, 2h, 1d); default: to the end\n"
    "  --rate-scale X       X < 1 keeps each request with probability X; X > 1 sends\n"
    "                       floor(X) copies (+1 with probability frac(X)), extra copies\n"
    "                       spread up to the next arrival; default 1\n"
    "  --max-requests N     at most the first N requests after rate scaling\n"
    "  --time-scale X       send time = trace offset * X (0.1 replays 10x faster); default 1\n"
    "  --seed S             seed for rate scaling (default 0)\n"
    "  --on-bad-line fail|skip  a malformed line stops the run (default) or is skipped\n";

void ms_trace_select_default(ms_trace_select *s) {
    memset(s, 0, sizeof *s);
    s->time_scale = 1.0;
    s->rate_scale = 1.0;
}

static ms_status parse_positive(const char *flag, const char *v, double *out, ms_error *err) {
    char *end;
    const double x = strtod(v, &end);
    if (end == v || *end || !(x > 0) || !isfinite(x))
        return ms_errorf(err, MS_ERR_INVALID, "%s '%s': expected a positive number", flag, v);
    *out = x;
    return MS_OK;
}

int ms_trace_select_flag(ms_trace_select *s, int argc, char **argv, int *i, ms_error *err) {
    static const char *const k_flags[] = {"--start", "--duration", "--max-requests", "--time-scale",
                                          "--rate-scale", "--seed", "--on-bad-line"};
    const char *a = argv[*i];
    size_t k = 0;
    for (; k < sizeof k_flags / sizeof k_flags[0]; k++)
        if (!strcmp(a, k_flags[k])) break;
    if (k == sizeof k_flags / sizeof k_flags[0]) return 0;
    if (*i + 1 >= argc) {
        ms_errorf(err, MS_ERR_INVALID, "%s needs a value", a);
        return -1;
    }
    const char *v = argv[++*i];
    ms_status st = MS_OK;
    if (k == 0) {
        const char *off = v[0] == '+' ? v + 1 : v;
        if (ms_trace_time_parse(v, &s->start_ms, NULL) == MS_OK) {
            s->has_start = true;
        } else if (ms_duration_parse(off, &s->start_offset_s, NULL) == MS_OK) {
            s->has_start = false;
        } else {
            st = ms_errorf(err, MS_ERR_INVALID, "--start '%s': expected an ISO 8601 UTC time "
                           "(2024-10-18T08:00:00.000Z) or an offset (2h)", v);
        }
    } else if (k == 1) {
        st = ms_duration_parse(v, &s->duration_s, err);
        if (st == MS_OK && s->duration_s <= 0) st = ms_errorf(err, MS_ERR_INVALID, "--duration must be positive");
    } else if (k == 2) {
        char *end;
        const long long n = strtoll(v, &end, 10);
        if (end == v || *end || n <= 0) st = ms_errorf(err, MS_ERR_INVALID, "--max-requests '%s': expected a positive integer", v);
        s->max_requests = n;
    } else if (k == 3) {
        st = parse_positive(a, v, &s->time_scale, err);
    } else if (k == 4) {
        st = parse_positive(a, v, &s->rate_scale, err);
    } else if (k == 5) {
        char *end;
        s->seed = strtoull(v, &end, 10);
        if (end == v || *end) st = ms_errorf(err, MS_ERR_INVALID, "--seed '%s': expected an integer", v);
    } else {
        if (!strcmp(v, "fail")) s->bad_line = MS_TRACE_BAD_FAIL;
        else if (!strcmp(v, "skip")) s->bad_line = MS_TRACE_BAD_SKIP;
        else st = ms_errorf(err, MS_ERR_INVALID, "--on-bad-line '%s': expected fail or skip", v);
    }
    return st == MS_OK ? 1 : -1;
}

/* ---- selection ---- */
static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int64_t window_start(const ms_trace_row *rows, int64_t n, const ms_trace_select *sel) {
    if (sel->has_start) return sel->start_ms;
    return (n ? rows[0].t_ms : 0) + (int64_t)llround(sel->start_offset_s * 1000.0);
}

ms_status ms_trace_select_rows(const ms_trace_row *rows, int64_t n_rows, const ms_trace_select *sel,
                               ms_trace_set *out, ms_error *err) {
    memset(out, 0, sizeof *out);
    if (!(sel->time_scale > 0) || !(sel->rate_scale > 0))
        return ms_errorf(err, MS_ERR_INVALID, "time and rate scales must be positive");
    const int64_t start = window_start(rows, n_rows, sel);
    const bool bounded = sel->duration_s > 0;
    const int64_t end = bounded ? start + (int64_t)llround(sel->duration_s * 1000.0) : INT64_MAX;
    ms_rng rng;
    ms_rng_seed(&rng, sel->seed);
    int64_t cap = 0, n = 0;
    ms_trace_req *reqs = NULL;
    double *extra = NULL;
    int64_t extra_cap = 0, last_in = -1;
    const double whole = floor(sel->rate_scale), frac = sel->rate_scale - whole;
    for (int64_t i = 0; i < n_rows; i++) {
        const ms_trace_row *r = &rows[i];
        if (r->t_ms < start) continue;
        if (r->t_ms >= end) break;
        last_in = i;
        if (sel->max_requests && n >= sel->max_requests) break;
        /* Copies of this row: the row itself (kept with probability X when thinning). */
        int64_t copies;
        if (sel->rate_scale < 1.0) copies = ms_rng_uniform(&rng) < sel->rate_scale ? 1 : 0;
        else copies = (int64_t)whole + (ms_rng_uniform(&rng) < frac ? 1 : 0);
        if (copies == 0) continue;
        /* Extra copies go between this row and the next one in the window. */
        int64_t next = i + 1 < n_rows && rows[i + 1].t_ms < end ? rows[i + 1].t_ms : (bounded ? end : r->t_ms);
        if (copies - 1 > extra_cap) {
            extra_cap = copies - 1;
            extra = ms_xrealloc(extra, (size_t)extra_cap * sizeof *extra);
        }
        for (int64_t k = 0; k < copies - 1; k++)
            extra[k] = (double)r->t_ms + ms_rng_uniform(&rng) * (double)(next - r->t_ms);
        if (copies > 2) qsort(extra, (size_t)(copies - 1), sizeof *extra, cmp_double);
        for (int64_t k = 0; k < copies; k++) {
            if (sel->max_requests && n >= sel->max_requests) break;
            if (n == cap) {
                cap = cap ? cap * 2 : 1024;
                reqs = ms_xrealloc(reqs, (size_t)cap * sizeof *reqs);
            }
            const double t = k == 0 ? (double)r->t_ms : extra[k - 1];
            reqs[n++] = (ms_trace_req){
                .send_s = (t - (double)start) / 1000.0 * sel->time_scale,
                .t_ms = (int64_t)floor(t),
                .row = i,
                .n_images = r->n_images,
                .context_tokens = r->context_tokens,
                .generated_tokens = r->generated_tokens,
                .replica = (int32_t)k,
            };
        }
    }
    free(extra);
    out->reqs = reqs;
    out->n = n;
    out->window_start_ms = start;
    out->window_s = bounded ? sel->duration_s
                            : (last_in >= 0 ? (double)(rows[last_in].t_ms - start) / 1000.0 : 0.0);
    out->rows_read = n_rows;
    return MS_OK;
}

ms_status ms_trace_load(const char *path, const ms_trace_select *sel, ms_trace_set *out, ms_error *err) {
    memset(out, 0, sizeof *out);
    ms_trace_reader *r;
    ms_status st = ms_trace_open(path, sel->bad_line, &r, err);
    if (st != MS_OK) return st;
    /* Keep only the window's rows (the trace has a million), stopping at its end. */
    ms_trace_row *rows = NULL;
    int64_t n = 0, cap = 0, read = 0;
    int64_t start = 0, end = INT64_MAX;
    ms_trace_select local = *sel;
    for (;;) {
        ms_trace_row row;
        bool eof;
        st = ms_trace_next(r, &row, &eof, err);
        if (st != MS_OK || eof) break;
        if (read++ == 0) {
            start = window_start(&row, 1, sel);
            if (sel->duration_s > 0) end = start + (int64_t)llround(sel->duration_s * 1000.0);
            local.has_start = true;
            local.start_ms = start;
        }
        if (row.t_ms < start) continue;
        if (row.t_ms >= end) break;
        if (sel->max_requests && sel->rate_scale >= 1.0 && n >= sel->max_requests) break;
        if (n == cap) {
            cap = cap ? cap * 2 : 4096;
            rows = ms_xrealloc(rows, (size_t)cap * sizeof *rows);
        }
        rows[n++] = row;
    }
    const int64_t bad = ms_trace_bad_lines(r);
    ms_trace_close(r);
    if (st == MS_OK) {
        st = ms_trace_select_rows(rows, n, &local, out, err);
        out->rows_read = read;
        out->bad_lines = bad;
    }
    free(rows);
    return st;
}

void ms_trace_set_free(ms_trace_set *s) {
    free(s->reqs);
    memset(s, 0, sizeof *s);
}
