/* `modserve bench stats` and `modserve bench synth`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/stats.h"
#include "bench/synth.h"

static void stats_usage(FILE *out) {
    fprintf(out, "usage: modserve bench stats --trace F [--json] [selection flags]\n\n"
                 "Prints the figures of a trace (.csv or .csv.gz, Azure LMM format): requests by class,\n"
                 "images per image request, ContextTokens and GeneratedTokens quantiles by class,\n"
                 "first/last timestamp, duration, mean and peak requests per minute, peak images per minute,\n"
                 "hourly image-request share.\n\n  --trace F    the trace file\n  --json       JSON instead of text\n\n%s",
            ms_trace_select_help);
}

int ms_bench_stats_main(int argc, char **argv) {
    ms_trace_select sel;
    ms_trace_select_default(&sel);
    const char *path = NULL;
    bool json = false;
    ms_error err = {0};
    for (int i = 1; i < argc; i++) {
        const int r = ms_trace_select_flag(&sel, argc, argv, &i, &err);
        if (r < 0) {
            fprintf(stderr, "bench stats: %s\n", err.msg);
            return 2;
        }
        if (r > 0) continue;
        if (!strcmp(argv[i], "--trace") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            stats_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "bench stats: unknown or incomplete option '%s'\n", argv[i]);
            stats_usage(stderr);
            return 2;
        }
    }
    if (!path) {
        stats_usage(stderr);
        return 2;
    }
    ms_trace_set set;
    if (ms_trace_load(path, &sel, &set, &err) != MS_OK) {
        fprintf(stderr, "bench stats: %s\n", err.msg);
        return 1;
    }
    if (set.bad_lines) fprintf(stderr, "bench stats: %lld bad lines skipped\n", (long long)set.bad_lines);
    if (set.n == 0) {
        fprintf(stderr, "bench stats: no requests in the selection (%lld rows read)\n", (long long)set.rows_read);
        ms_trace_set_free(&set);
        return 1;
    }
    ms_trace_stats st;
    ms_trace_stats_compute(&set, &st);
    if (json) {
        char *s = ms_trace_stats_json(&st, path);
        puts(s);
        free(s);
    } else {
        ms_trace_stats_print(&st, path, stdout);
    }
    ms_trace_set_free(&set);
    return 0;
}

static void synth_usage(FILE *out) {
    fprintf(out, "usage: modserve bench synth (--requests N | --duration D) [--seed S] [--start TIME]\n"
                 "                            [--requests-per-week N] --out F.csv[.gz]\n\n"
                 "Writes a SYNTHETIC trace in the Azure LMM trace format whose distributions follow the\n"
                 "published statistics (../shared/TRACE.md, docs/bench.md). It is not the real trace.\n\n"
                 "  --requests N          number of rows\n"
                 "  --duration D          length (90s, 15m, 2h, 7d); the full week is --duration 7d\n"
                 "  --seed S              seed (default 0)\n"
                 "  --start TIME          first timestamp (default 2024-10-15T12:00:00.000Z, the trace's)\n"
                 "  --requests-per-week N mean volume (default 1000000, as the trace)\n"
                 "  --out F               output; gzip when it ends in .gz\n");
}

int ms_bench_synth_main(int argc, char **argv) {
    ms_synth_options o;
    ms_synth_options_default(&o);
    const char *out = NULL;
    ms_error err = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        ms_status st = MS_OK;
        char *end = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            synth_usage(stdout);
            return 0;
        } else if (!v) {
            st = ms_errorf(&err, MS_ERR_INVALID, "unknown or incomplete option '%s'", a);
        } else if (!strcmp(a, "--requests")) {
            o.requests = strtoll(v, &end, 10);
            if (*end || o.requests <= 0) st = ms_errorf(&err, MS_ERR_INVALID, "--requests '%s': expected a positive integer", v);
        } else if (!strcmp(a, "--duration")) {
            st = ms_duration_parse(v, &o.duration_s, &err);
        } else if (!strcmp(a, "--seed")) {
            o.seed = strtoull(v, &end, 10);
            if (*end) st = ms_errorf(&err, MS_ERR_INVALID, "--seed '%s': expected an integer", v);
        } else if (!strcmp(a, "--start")) {
            st = ms_trace_time_parse(v, &o.start_ms, &err);
        } else if (!strcmp(a, "--requests-per-week")) {
            o.requests_per_week = strtod(v, &end);
            if (*end || !(o.requests_per_week > 0)) st = ms_errorf(&err, MS_ERR_INVALID, "--requests-per-week '%s'", v);
        } else if (!strcmp(a, "--out")) {
            out = v;
        } else {
            st = ms_errorf(&err, MS_ERR_INVALID, "unknown option '%s'", a);
        }
        if (st != MS_OK) {
            fprintf(stderr, "bench synth: %s\n", err.msg);
            return 2;
        }
        i++;
    }
    if (!out || (o.requests <= 0 && !(o.duration_s > 0))) {
        synth_usage(stderr);
        return 2;
    }
    int64_t rows = 0;
    if (ms_synth_write(&o, out, &rows, &err) != MS_OK) {
        fprintf(stderr, "bench synth: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "bench synth: wrote %lld synthetic rows to %s (seed %llu)\n", (long long)rows, out,
            (unsigned long long)o.seed);
    return 0;
}
