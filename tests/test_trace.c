/* Trace reader: timestamps, lines, plain and gzip files, bad lines, selection arithmetic. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "bench/trace.h"
#include "tests/test_util.h"

static void test_timestamps(void) {
    static const struct { const char *s; int64_t ms; } k_good[] = {
        {"1970-01-01T00:00:00.000Z", 0},
        {"2024-10-16T03:14:07.512Z", INT64_C(1729048447512)},
        {"2024-02-29T23:59:59.999Z", INT64_C(1709251199999)}, /* leap day */
        {"2000-03-01T00:00:00.000Z", INT64_C(951868800000)},  /* after a 400-year leap day */
        {"1969-12-31T23:59:59.999Z", -1},
        {"2100-12-31T12:00:00.000Z", INT64_C(4133937600000)},
        {"2024-10-16T03:14:07.5Z", INT64_C(1729048447500)},   /* short fraction */
        {"2024-10-16T03:14:07Z", INT64_C(1729048447000)},     /* no fraction */
    };
    for (size_t i = 0; i < sizeof k_good / sizeof k_good[0]; i++) {
        int64_t ms = 42;
        ms_error err = {0};
        EXPECTF(ms_trace_time_parse(k_good[i].s, &ms, &err) == MS_OK, "%s: %s", k_good[i].s, err.msg);
        EXPECTF(ms == k_good[i].ms, "%s -> %lld", k_good[i].s, (long long)ms);
    }
    static const char *const k_bad[] = {
        "2023-02-29T00:00:00.000Z", "1900-02-29T00:00:00.000Z", "2024-13-01T00:00:00.000Z",
        "2024-10-32T00:00:00.000Z", "2024-10-16T24:00:00.000Z", "2024-10-16T03:60:00.000Z",
        "2024-10-16T03:14:60.000Z", "2024-10-16T03:14:07.512", "2024-10-16T03:14:07.5123Z",
        "2024-10-16 03:14:07.512Z", "2024-10-16T03:14:07.Z", "2024-1x-16T03:14:07.512Z",
        "2024-10-16T03:14:07.512+00:00", "", "2024-10-16T03:14:07.512ZZ",
    };
    for (size_t i = 0; i < sizeof k_bad / sizeof k_bad[0]; i++) {
        int64_t ms;
        ms_error err = {0};
        EXPECTF(ms_trace_time_parse(k_bad[i], &ms, &err) == MS_ERR_INVALID, "accepted '%s'", k_bad[i]);
        EXPECTF(strstr(err.msg, k_bad[i]) != NULL, "message names the text: %s", err.msg);
    }
    /* Round trip over four centuries of random instants, both sides of the epoch. */
    ms_rng r;
    ms_rng_seed(&r, 7);
    for (int i = 0; i < 20000; i++) {
        const int64_t ms = (int64_t)(ms_rng_next(&r) % UINT64_C(12600000000000)) - INT64_C(3000000000000);
        char buf[32];
        ms_trace_time_format(ms, buf, sizeof buf);
        int64_t back = 0;
        EXPECTF(ms_trace_time_parse(buf, &back, NULL) == MS_OK && back == ms, "%lld -> %s -> %lld", (long long)ms, buf,
                (long long)back);
    }
    for (int64_t d = -800000; d <= 800000; d += 997) {
        int64_t y;
        int m, dd;
        ms_civil_from_days(d, &y, &m, &dd);
        EXPECT(ms_days_from_civil(y, m, dd) == d);
    }
}

static void test_durations(void) {
    static const struct { const char *s; double v; } k[] = {
        {"90", 90}, {"90s", 90}, {"15m", 900}, {"2h", 7200}, {"1d12h", 129600}, {"500ms", 0.5}, {"1.5h", 5400}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        double v = -1;
        EXPECTF(ms_duration_parse(k[i].s, &v, NULL) == MS_OK && fabs(v - k[i].v) < 1e-9, "%s -> %g", k[i].s, v);
    }
    double v;
    EXPECT(ms_duration_parse("", &v, NULL) != MS_OK);
    EXPECT(ms_duration_parse("10x", &v, NULL) != MS_OK);
    EXPECT(ms_duration_parse("-5m", &v, NULL) != MS_OK);
    EXPECT(ms_duration_parse("h", &v, NULL) != MS_OK);
}

static void test_lines(void) {
    ms_trace_row r;
    ms_error err = {0};
    EXPECT(ms_trace_parse_line("2024-10-16T03:14:07.512Z,2,1830,97", &r, &err) == MS_OK);
    EXPECT(r.t_ms == INT64_C(1729048447512) && r.n_images == 2 && r.context_tokens == 1830 && r.generated_tokens == 97);
    static const char *const k_bad[] = {
        "2024-10-16T03:14:07.512Z,2,1830",      "2024-10-16T03:14:07.512Z,2,1830,97,1", "2024-10-16T03:14:07.512Z,-2,1830,97",
        "2024-10-16T03:14:07.512Z,2,18x0,97",   "2024-10-16T03:14:07.512Z,2,1830,",    "2024-10-16T03:14:07.512Z,,1830,97",
        "2024-10-16T03:14:07.512Z,2,99999999999,97", "garbage", "2024-10-16T03:14:07.512Z, 2,1830,97",
    };
    for (size_t i = 0; i < sizeof k_bad / sizeof k_bad[0]; i++)
        EXPECTF(ms_trace_parse_line(k_bad[i], &r, &err) == MS_ERR_INVALID, "accepted '%s'", k_bad[i]);
}

static void write_file(const char *path, const char *text, bool gz) {
    gzFile f = gzopen(path, gz ? "wb" : "wbT");
    MS_CHECK(f);
    gzputs(f, text);
    gzclose(f);
}

static const char k_good_csv[] =
    "TIMESTAMP,NumImages,ContextTokens,GeneratedTokens\n"
    "2024-10-15T12:00:00.000Z,0,100,10\r\n"
    "2024-10-15T12:00:00.500Z,3,2000,1\n"
    "\n"
    "2024-10-15T12:00:01.000Z,1,700,230\n"
    "2024-10-15T12:00:01.000Z,0,50,2";  /* no final newline */

static void test_reader(void) {
    char plain[64], gz[64];
    snprintf(plain, sizeof plain, "testdata/trace-%d.csv", (int)getpid());
    snprintf(gz, sizeof gz, "testdata/trace-%d.csv.gz", (int)getpid());
    for (int g = 0; g < 2; g++) {
        const char *path = g ? gz : plain;
        write_file(path, k_good_csv, g);
        ms_trace_select sel;
        ms_trace_select_default(&sel);
        ms_trace_set set;
        ms_error err = {0};
        EXPECTF(ms_trace_load(path, &sel, &set, &err) == MS_OK, "%s", err.msg);
        EXPECT(set.n == 4 && set.bad_lines == 0);
        if (set.n == 4) {
            EXPECT(set.reqs[1].n_images == 3 && set.reqs[1].context_tokens == 2000 && set.reqs[1].generated_tokens == 1);
            EXPECT_NEAR(set.reqs[2].send_s, 1.0, 1e-12);
            EXPECT(set.reqs[3].context_tokens == 50 && set.reqs[3].generated_tokens == 2);
        }
        ms_trace_set_free(&set);
        remove(path);
    }
    /* Header check. */
    write_file(plain, "time,images,context,generated\n2024-10-15T12:00:00.000Z,0,100,10\n", false);
    ms_trace_reader *r;
    ms_error err = {0};
    EXPECT(ms_trace_open(plain, MS_TRACE_BAD_FAIL, &r, &err) == MS_ERR_INVALID);
    EXPECTF(strstr(err.msg, "header") && strstr(err.msg, "line 1"), "%s", err.msg);
    write_file(plain, "", false);
    EXPECT(ms_trace_open(plain, MS_TRACE_BAD_FAIL, &r, &err) == MS_ERR_INVALID);
    EXPECT(ms_trace_open("testdata/no-such-trace.csv", MS_TRACE_BAD_FAIL, &r, &err) == MS_ERR_NOT_FOUND);
    /* A bad line: fail names its number and content; skip counts it. A timestamp going
     * backwards is a bad line too. */
    write_file(plain, "TIMESTAMP,NumImages,ContextTokens,GeneratedTokens\n"
                      "2024-10-15T12:00:00.000Z,0,100,10\n"
                      "2024-10-15T12:00:00.100Z,x,100,10\n"
                      "2024-10-15T12:00:00.200Z,1,600,10\n"
                      "2024-10-15T11:00:00.000Z,1,600,10\n"
                      "2024-10-15T12:00:00.300Z,0,90,5\n", false);
    ms_trace_select sel;
    ms_trace_select_default(&sel);
    ms_trace_set set;
    EXPECT(ms_trace_load(plain, &sel, &set, &err) == MS_ERR_INVALID);
    EXPECTF(strstr(err.msg, "line 3") && strstr(err.msg, "2024-10-15T12:00:00.100Z,x,100,10") && strstr(err.msg, "NumImages"),
            "%s", err.msg);
    sel.bad_line = MS_TRACE_BAD_SKIP;
    EXPECTF(ms_trace_load(plain, &sel, &set, &err) == MS_OK, "%s", err.msg);
    EXPECT(set.n == 3 && set.bad_lines == 2);
    ms_trace_set_free(&set);
    /* A corrupt gzip stream is an I/O error, not a silent end. */
    write_file(gz, k_good_csv, true);
    FILE *f = fopen(gz, "r+b");
    MS_CHECK(f);
    fseek(f, 30, SEEK_SET);
    fputs("\xff\xff\xff\xff\xff\xff\xff\xff", f);
    fclose(f);
    sel.bad_line = MS_TRACE_BAD_FAIL;
    EXPECT(ms_trace_load(gz, &sel, &set, &err) != MS_OK);
    /* NUL bytes inside a line (found by fuzzing): a bad line named as such, both at the
     * start of a line and in its middle; skip keeps the rest. */
    static const char k_nul[] = "TIMESTAMP,NumImages,ContextTokens,GeneratedTokens\n"
                                "2024-10-15T12:00:00.000Z,0,100,10\n"
                                "\0\0x\n"
                                "2024-10-15T12:00:00.200Z,1,6\0" "00,10\n"
                                "2024-10-15T12:00:00.300Z,0,90,5\n";
    f = fopen(plain, "wb");
    MS_CHECK(f);
    fwrite(k_nul, 1, sizeof k_nul - 1, f);
    fclose(f);
    sel.bad_line = MS_TRACE_BAD_FAIL;
    EXPECT(ms_trace_load(plain, &sel, &set, &err) == MS_ERR_INVALID);
    EXPECTF(strstr(err.msg, "line 3") && strstr(err.msg, "NUL byte"), "%s", err.msg);
    sel.bad_line = MS_TRACE_BAD_SKIP;
    EXPECTF(ms_trace_load(plain, &sel, &set, &err) == MS_OK, "%s", err.msg);
    EXPECT(set.n == 2 && set.bad_lines == 2);
    ms_trace_set_free(&set);
    remove(plain);
    remove(gz);
}

/* Rows one second apart starting at t0. */
static ms_trace_row *rows_make(int64_t n, int64_t t0) {
    ms_trace_row *rows = ms_xcalloc((size_t)n, sizeof *rows);
    for (int64_t i = 0; i < n; i++)
        rows[i] = (ms_trace_row){.t_ms = t0 + i * 1000, .n_images = (int32_t)(i % 3), .context_tokens = 100 + (int32_t)i,
                                 .generated_tokens = 1 + (int32_t)i};
    return rows;
}

static void test_selection(void) {
    const int64_t t0 = INT64_C(1728993600000), n = 10000;
    ms_trace_row *rows = rows_make(n, t0);
    ms_trace_select sel;
    ms_trace_set set;
    ms_error err = {0};
    /* Window by offset + duration, then time compression. */
    ms_trace_select_default(&sel);
    char *argv[] = {"x", "--start", "100s", "--duration", "1m", "--time-scale", "0.5"};
    for (int i = 1; i < 7; i++) EXPECT(ms_trace_select_flag(&sel, 7, argv, &i, &err) == 1);
    EXPECT(ms_trace_select_rows(rows, n, &sel, &set, &err) == MS_OK);
    EXPECT(set.n == 60 && set.window_start_ms == t0 + 100000 && fabs(set.window_s - 60) < 1e-9);
    EXPECT(set.reqs[0].row == 100 && set.reqs[59].row == 159);
    EXPECT_NEAR(set.reqs[10].send_s, 5.0, 1e-9); /* 10 s of trace at scale 0.5 */
    ms_trace_set_free(&set);
    /* Absolute start, max requests. */
    ms_trace_select_default(&sel);
    char *argv2[] = {"x", "--start", "2024-10-15T12:00:30.000Z", "--max-requests", "7", "--seed", "9"};
    for (int i = 1; i < 7; i++) EXPECT(ms_trace_select_flag(&sel, 7, argv2, &i, &err) == 1);
    EXPECT(ms_trace_select_rows(rows, n, &sel, &set, &err) == MS_OK);
    EXPECT(set.n == 7 && set.reqs[0].row == 30 && set.reqs[0].send_s == 0.0);
    ms_trace_set_free(&set);
    char *argv3[] = {"x", "--rate-scale", "-1"};
    int i3 = 1;
    EXPECT(ms_trace_select_flag(&sel, 3, argv3, &i3, &err) == -1);
    char *argv4[] = {"x", "--model", "m"};
    int i4 = 1;
    EXPECT(ms_trace_select_flag(&sel, 3, argv4, &i4, &err) == 0);
    /* Thinning keeps about X of the rows; replication gives about X copies, placed
     * between a row and the next, all in time order; same seed, same result. */
    ms_trace_select_default(&sel);
    sel.rate_scale = 0.3;
    sel.seed = 5;
    EXPECT(ms_trace_select_rows(rows, n, &sel, &set, &err) == MS_OK);
    EXPECTF(fabs((double)set.n - 0.3 * n) < 4 * sqrt(0.21 * n), "thinned to %lld", (long long)set.n);
    ms_trace_set_free(&set);
    sel.rate_scale = 2.5;
    EXPECT(ms_trace_select_rows(rows, n, &sel, &set, &err) == MS_OK);
    EXPECTF(fabs((double)set.n - 2.5 * n) < 4 * sqrt(0.25 * n), "replicated to %lld", (long long)set.n);
    bool ordered = true, between = true;
    for (int64_t i = 1; i < set.n; i++) ordered &= set.reqs[i].send_s >= set.reqs[i - 1].send_s;
    for (int64_t i = 0; i < set.n; i++) {
        const ms_trace_req *q = &set.reqs[i];
        const double row_s = (double)(rows[q->row].t_ms - t0) / 1000.0;
        between &= q->send_s >= row_s && q->send_s < row_s + 1.0 + 1e-9 && (q->replica > 0 || q->send_s == row_s);
        between &= q->context_tokens == rows[q->row].context_tokens;
    }
    EXPECT(ordered);
    EXPECT(between);
    ms_trace_set set2;
    EXPECT(ms_trace_select_rows(rows, n, &sel, &set2, &err) == MS_OK);
    EXPECT(set2.n == set.n && !memcmp(set2.reqs, set.reqs, (size_t)set.n * sizeof *set.reqs));
    ms_trace_set_free(&set2);
    ms_trace_set_free(&set);
    free(rows);
}

int main(void) {
    test_timestamps();
    test_durations();
    test_lines();
    test_reader();
    test_selection();
    return ms_test_finish("test_trace");
}
