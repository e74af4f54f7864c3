/*
 * Trace reading: exact timestamps, one CSV line, and the streaming reader.
 *
 * Timestamps are converted with integer calendar arithmetic (days_from_civil) rather
 * than timegm/strptime so the result never depends on the locale, the TZ variable or
 * the C library, and milliseconds are kept exactly.
 */
#include "bench/trace.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

int64_t ms_days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;                                  /* [0, 399] */
    const int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* [0, 365] */
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;          /* [0, 146096] */
    return era * 146097 + doe - 719468;
}

void ms_civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const int64_t doe = z - era * 146097;
    const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int64_t y, int m) {
    static const int k_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : k_days[m - 1];
}

/* Exactly n decimal digits at s; -1 if any is not a digit. */
static int64_t digits(const char *s, int n) {
    int64_t v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

ms_status ms_trace_time_parse(const char *s, int64_t *ms, ms_error *err) {
    /* YYYY-MM-DDTHH:MM:SS[.f{1,3}]Z */
    const size_t len = strlen(s);
    if (len < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
        return ms_errorf(err, MS_ERR_INVALID, "timestamp '%s': expected YYYY-MM-DDTHH:MM:SS.mmmZ", s);
    const int64_t y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
    const int64_t h = digits(s + 11, 2), mi = digits(s + 14, 2), se = digits(s + 17, 2);
    if (y < 0 || mo < 0 || d < 0 || h < 0 || mi < 0 || se < 0)
        return ms_errorf(err, MS_ERR_INVALID, "timestamp '%s': non-digit in a date or time field", s);
    int64_t frac = 0;
    size_t p = 19;
    if (s[p] == '.') {
        size_t n = 0;
        while (isdigit((unsigned char)s[p + 1 + n])) n++;
        if (n < 1 || n > 3)
            return ms_errorf(err, MS_ERR_INVALID, "timestamp '%s': expected 1 to 3 fraction digits", s);
        frac = digits(s + p + 1, (int)n);
        for (size_t k = n; k < 3; k++) frac *= 10;
        p += 1 + n;
    }
    if (s[p] != 'Z' || s[p + 1] != 0)
        return ms_errorf(err, MS_ERR_INVALID, "timestamp '%s': expected a trailing 'Z' (UTC)", s);
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, (int)mo) || h > 23 || mi > 59 || se > 59)
        return ms_errorf(err, MS_ERR_INVALID, "timestamp '%s': date or time out of range", s);
    const int64_t days = ms_days_from_civil(y, (int)mo, (int)d);
    *ms = ((days * 24 + h) * 60 + mi) * 60000 + se * 1000 + frac;
    return MS_OK;
}

void ms_trace_time_format(int64_t ms, char *buf, size_t size) {
    int64_t days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
    int64_t rem = ms - days * 86400000; /* [0, 86400000) */
    int64_t y;
    int m, d;
    ms_civil_from_days(days, &y, &m, &d);
    snprintf(buf, size, "%04lld-%02d-%02dT%02d:%02d:%02d.%03dZ", (long long)y, m, d, (int)(rem / 3600000),
             (int)(rem / 60000 % 60), (int)(rem / 1000 % 60), (int)(rem % 1000));
}

ms_status ms_duration_parse(const char *s, double *seconds, ms_error *err) {
    const char *p = s;
    double total = 0;
    bool any = false;
    while (*p) {
        char *end;
        errno = 0;
        const double v = strtod(p, &end);
        if (end == p || errno || !(v >= 0) || v > 1e9) break;
        p = end;
        double unit = 1;
        if (!strncmp(p, "ms", 2)) unit = 0.001, p += 2;
        else if (*p == 's') p++;
        else if (*p == 'm') unit = 60, p++;
        else if (*p == 'h') unit = 3600, p++;
        else if (*p == 'd') unit = 86400, p++;
        else if (*p) break;
        total += v * unit;
        any = true;
    }
    if (!any || *p)
        return ms_errorf(err, MS_ERR_INVALID, "duration '%s': expected e.g. 90, 90s, 15m, 2h, 1d12h, 500ms", s);
    *seconds = total;
    return MS_OK;
}

/* A non-negative decimal integer field [s, e) that fits in int32. */
static bool parse_count(const char *s, const char *e, int32_t *out) {
    if (s == e || e - s > 10) return false;
    int64_t v = 0;
    for (const char *p = s; p < e; p++) {
        if (!isdigit((unsigned char)*p)) return false;
        v = v * 10 + (*p - '0');
    }
    if (v > INT32_MAX) return false;
    *out = (int32_t)v;
    return true;
}

ms_status ms_trace_parse_line(const char *line, ms_trace_row *row, ms_error *err) {
    const char *f[5];
    int nf = 0;
    f[nf++] = line;
    for (const char *p = line; *p; p++)
        if (*p == ',') {
            if (nf == 4) return ms_errorf(err, MS_ERR_INVALID, "expected 4 fields, found more");
            f[nf++] = p + 1;
        }
    if (nf != 4) return ms_errorf(err, MS_ERR_INVALID, "expected 4 fields, found %d", nf);
    const char *end = line + strlen(line);
    char ts[48];
    const size_t tlen = (size_t)(f[1] - 1 - f[0]);
    if (tlen >= sizeof ts) return ms_errorf(err, MS_ERR_INVALID, "TIMESTAMP too long");
    memcpy(ts, f[0], tlen);
    ts[tlen] = 0;
    if (ms_trace_time_parse(ts, &row->t_ms, err) != MS_OK) return ms_error_wrap(err, "TIMESTAMP");
    if (!parse_count(f[1], f[2] - 1, &row->n_images))
        return ms_errorf(err, MS_ERR_INVALID, "NumImages is not a non-negative integer");
    if (!parse_count(f[2], f[3] - 1, &row->context_tokens))
        return ms_errorf(err, MS_ERR_INVALID, "ContextTokens is not a non-negative integer");
    if (!parse_count(f[3], end, &row->generated_tokens))
        return ms_errorf(err, MS_ERR_INVALID, "GeneratedTokens is not a non-negative integer");
    return MS_OK;
}

/* ---- the streaming reader ---- */
enum { LINE_MAX_BYTES = 4096, BAD_LINES_LOGGED = 10 };

struct ms_trace_reader {
    gzFile gz;
    char *path;
    ms_trace_bad_line policy;
    int64_t line_no;          /* 1-based number of the last line read */
    int64_t bad;
    int64_t last_ms;
    bool have_last;
    char line[LINE_MAX_BYTES];
};

typedef enum line_problem { LINE_OK, LINE_TOO_LONG, LINE_HAS_NUL } line_problem;

/* Next line without its newline (and CR) into r->line; false at the end. *problem says
 * when the line did not fit (the rest of it is consumed) or held a NUL byte, which
 * would cut it short as a C string (found by fuzzing: a NUL-led line was once read as
 * "too long" and indexed before its start). */
static bool read_line(ms_trace_reader *r, line_problem *problem) {
    *problem = LINE_OK;
    size_t n = 0;
    int c = gzgetc(r->gz);
    if (c < 0) return false;
    r->line_no++;
    for (; c >= 0 && c != '\n'; c = gzgetc(r->gz)) {
        if (c == 0 && *problem == LINE_OK) *problem = LINE_HAS_NUL;
        if (n + 1 < sizeof r->line) r->line[n++] = (char)c;
        else *problem = LINE_TOO_LONG;
    }
    r->line[n] = 0;
    if (*problem == LINE_HAS_NUL) /* show what can be shown: NULs as '?' */
        for (size_t i = 0; i < n; i++)
            if (!r->line[i]) r->line[i] = '?';
    if (n && r->line[n - 1] == '\r') r->line[--n] = 0;
    return true;
}

ms_status ms_trace_open(const char *path, ms_trace_bad_line policy, ms_trace_reader **out, ms_error *err) {
    gzFile gz = gzopen(path, "rb");
    if (!gz) return ms_errorf(err, MS_ERR_NOT_FOUND, "trace %s: cannot open", path);
    gzbuffer(gz, 1 << 17);
    ms_trace_reader *r = ms_xcalloc(1, sizeof *r);
    r->gz = gz;
    r->path = ms_xstrdup(path);
    r->policy = policy;
    line_problem problem;
    if (!read_line(r, &problem)) {
        ms_trace_close(r);
        return ms_errorf(err, MS_ERR_INVALID, "trace %s: empty file (expected the header %s)", path,
                         MS_TRACE_HEADER);
    }
    const char *h = r->line;
    if (!strncmp(h, "\xEF\xBB\xBF", 3)) h += 3; /* a UTF-8 byte order mark */
    if (problem != LINE_OK || strcmp(h, MS_TRACE_HEADER) != 0) {
        ms_errorf(err, MS_ERR_INVALID, "trace %s: line 1: header '%.80s' is not '%s'", path, h, MS_TRACE_HEADER);
        ms_trace_close(r);
        return MS_ERR_INVALID;
    }
    *out = r;
    return MS_OK;
}

ms_status ms_trace_next(ms_trace_reader *r, ms_trace_row *row, bool *eof, ms_error *err) {
    line_problem problem;
    for (;;) {
        if (!read_line(r, &problem)) {
            int zerr = Z_OK;
            const char *zmsg = gzerror(r->gz, &zerr);
            if (zerr != Z_OK && zerr != Z_STREAM_END)
                return ms_errorf(err, MS_ERR_IO, "trace %s: after line %lld: read error: %s", r->path,
                                 (long long)r->line_no, zmsg);
            *eof = true;
            return MS_OK;
        }
        if (problem == LINE_OK && r->line[0] == 0) continue; /* blank lines carry nothing */
        ms_error lerr = {0};
        ms_status st = problem == LINE_TOO_LONG ? ms_errorf(&lerr, MS_ERR_INVALID, "line longer than %d bytes", LINE_MAX_BYTES)
                       : problem == LINE_HAS_NUL ? ms_errorf(&lerr, MS_ERR_INVALID, "line contains a NUL byte")
                                                 : ms_trace_parse_line(r->line, row, &lerr);
        if (st == MS_OK && r->have_last && row->t_ms < r->last_ms)
            st = ms_errorf(&lerr, MS_ERR_INVALID, "timestamp earlier than the previous row's (rows must be in time order)");
        if (st == MS_OK) {
            r->last_ms = row->t_ms;
            r->have_last = true;
            *eof = false;
            return MS_OK;
        }
        if (r->policy == MS_TRACE_BAD_FAIL)
            return ms_errorf(err, st, "trace %s: line %lld: %s: '%.200s' (--on-bad-line skip to skip such lines)",
                             r->path, (long long)r->line_no, lerr.msg, r->line);
        if (r->bad < BAD_LINES_LOGGED)
            ms_log(MS_LOG_WARN, "trace", "%s: line %lld skipped: %s: '%.200s'", r->path, (long long)r->line_no,
                   lerr.msg, r->line);
        r->bad++;
    }
}

int64_t ms_trace_bad_lines(const ms_trace_reader *r) { return r->bad; }
int64_t ms_trace_line_number(const ms_trace_reader *r) { return r->line_no; }

void ms_trace_close(ms_trace_reader *r) {
    if (!r) return;
    gzclose(r->gz);
    free(r->path);
    free(r);
}
