/*
 * The Azure LMM inference trace (see ../shared/TRACE.md and docs/bench.md):
 * `TIMESTAMP,NumImages,ContextTokens,GeneratedTokens`, one request per row, rows in
 * time order, as .csv or .csv.gz. The reader streams the file through zlib (gzopen
 * reads plain files too), never holding the text in memory; a selection then turns the
 * rows of one window into requests with send offsets (seconds from the window start).
 */
#ifndef MS_BENCH_TRACE_H
#define MS_BENCH_TRACE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kernels/ms_common.h"
#include "kernels/rng.h"

#define MS_TRACE_HEADER "TIMESTAMP,NumImages,ContextTokens,GeneratedTokens"

/* One row as read. */
typedef struct ms_trace_row {
    int64_t t_ms;             /* milliseconds since 1970-01-01T00:00:00Z */
    int32_t n_images;
    int32_t context_tokens;
    int32_t generated_tokens;
} ms_trace_row;

/* ---- timestamps: exact ISO 8601 UTC with milliseconds, no locale, no timegm ---- */
/* "2024-10-16T03:14:07.512Z" -> ms. Also accepts no fraction ("...:07Z") and 1-3
 * fraction digits. MS_ERR_INVALID naming the text for anything else. */
ms_status ms_trace_time_parse(const char *s, int64_t *ms, ms_error *err);
/* ms -> "2024-10-16T03:14:07.512Z" (buf of at least 32 bytes). */
void ms_trace_time_format(int64_t ms, char *buf, size_t size);
/* Days since 1970-01-01 for a proleptic Gregorian date, and back (H. Hinnant's
 * days_from_civil / civil_from_days). */
int64_t ms_days_from_civil(int64_t y, int m, int d);
void ms_civil_from_days(int64_t days, int64_t *y, int *m, int *d);
/* A duration: "90" or "90s", "15m", "2h", "1d", "1d12h", "500ms" -> seconds. */
ms_status ms_duration_parse(const char *s, double *seconds, ms_error *err);

/* One CSV line (no newline) into a row; MS_ERR_INVALID saying which field is bad. */
ms_status ms_trace_parse_line(const char *line, ms_trace_row *row, ms_error *err);

/* ---- streaming reader ---- */
typedef enum ms_trace_bad_line {
    MS_TRACE_BAD_FAIL = 0,    /* the first bad line is an error (default) */
    MS_TRACE_BAD_SKIP,        /* warn, count and skip bad lines */
} ms_trace_bad_line;

typedef struct ms_trace_reader ms_trace_reader;

/* Opens the file and checks its header line. */
ms_status ms_trace_open(const char *path, ms_trace_bad_line policy, ms_trace_reader **out, ms_error *err);
/* Next row: MS_OK with *eof false, or *eof true at the end. A bad line (malformed,
 * or a timestamp earlier than the previous row's) fails with its line number and
 * content, or under MS_TRACE_BAD_SKIP is logged (first 10), counted and skipped. */
ms_status ms_trace_next(ms_trace_reader *r, ms_trace_row *row, bool *eof, ms_error *err);
int64_t ms_trace_bad_lines(const ms_trace_reader *r);
int64_t ms_trace_line_number(const ms_trace_reader *r);
void ms_trace_close(ms_trace_reader *r);

/* ---- selection and reshaping ---- */
typedef struct ms_trace_select {
    bool has_start;
    int64_t start_ms;         /* absolute start (ms since epoch) when has_start */
    double start_offset_s;    /* else: offset from the first row (0 = first row) */
    double duration_s;        /* window length in trace time; 0 = to the end */
    int64_t max_requests;     /* 0 = no limit; applied after rate scaling */
    double time_scale;        /* send offset = trace offset * time_scale (0.1 = 10x faster) */
    double rate_scale;        /* < 1 thins, > 1 replicates arrivals (seeded) */
    uint64_t seed;
    ms_trace_bad_line bad_line;
} ms_trace_select;

void ms_trace_select_default(ms_trace_select *s);
/* Parses one selection flag at argv[*i] (with its value at argv[*i + 1]): returns 1 and
 * advances *i when it was one (--start --duration --max-requests --time-scale
 * --rate-scale --seed --on-bad-line), 0 when it is not a selection flag, -1 with err
 * filled for a bad value. */
int ms_trace_select_flag(ms_trace_select *s, int argc, char **argv, int *i, ms_error *err);
extern const char ms_trace_select_help[];

/* One selected request. */
typedef struct ms_trace_req {
    double send_s;            /* send offset from the replay start (after time scaling) */
    int64_t t_ms;             /* the row's trace timestamp */
    int64_t row;              /* data row index (0-based) in the file */
    int32_t n_images;
    int32_t context_tokens;
    int32_t generated_tokens;
    int32_t replica;          /* 0 = the row itself, k > 0 = k-th extra copy */
} ms_trace_req;

typedef struct ms_trace_set {
    ms_trace_req *reqs;
    int64_t n;
    int64_t window_start_ms;  /* trace time of send offset 0 */
    double window_s;          /* selected window length (trace time, before scaling) */
    int64_t rows_read;
    int64_t bad_lines;
} ms_trace_set;

/* Reads path and applies the selection. */
ms_status ms_trace_load(const char *path, const ms_trace_select *sel, ms_trace_set *out, ms_error *err);
void ms_trace_set_free(ms_trace_set *s);

/* The selection core on rows already in memory (rows in time order); what
 * ms_trace_load uses and what the tests check. */
ms_status ms_trace_select_rows(const ms_trace_row *rows, int64_t n_rows, const ms_trace_select *sel,
                               ms_trace_set *out, ms_error *err);

/* A small seeded PRNG (splitmix64 seeding xoshiro256**), shared by synth and select. */
int64_t ms_rng_poisson(ms_rng *r, double mean);

#endif
