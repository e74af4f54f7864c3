/*
 * `modserve bench compare BASE NEW`: two reports (summary.json of `bench replay` or
 * `bench simulate`) side by side, NEW's difference from BASE in percent, and a check of
 * chosen numbers against a tolerance. Its first use is the simulator's validation
 * (simulate vs replay of the same window: TTFT p50 and p99 within 15%), and it serves
 * any before/after comparison of two runs.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "bench/simulate.h"

static const char *const k_classes[] = {"text", "image", "overall"};
static const char *const k_metrics[] = {"ttft", "tpot", "itl", "e2e"};
static const char *const k_stats[] = {"mean", "p50", "p90", "p99", "max"};
enum { N_CLASSES = 3, N_METRICS = 4, N_STATS = 5, MAX_CHECKS = 32 };

static cJSON *load_summary(const char *dir, ms_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/summary.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) {
        ms_errorf(err, MS_ERR_NOT_FOUND, "%s: cannot open (a folder written by bench replay or simulate --out?)",
                  path);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = ms_xmalloc(cap);
    for (size_t got; (got = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (n + 1 == cap) buf = ms_xrealloc(buf, cap *= 2);
    }
    fclose(f);
    buf[n] = 0;
    cJSON *j = cJSON_Parse(buf);
    free(buf);
    if (!j || !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "overall"))) {
        ms_errorf(err, MS_ERR_INVALID, "%s: not a bench report (no \"overall\" object)", path);
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* summary[class][metric][stat_ms]; NAN where missing or where the class had no request. */
static double value(const cJSON *summary, const char *cls, const char *metric, const char *stat) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(summary, cls), metric);
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(m, "n");
    char key[16];
    snprintf(key, sizeof key, "%s_ms", stat);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, key);
    if (!cJSON_IsNumber(v) || !cJSON_IsNumber(n) || n->valuedouble < 1) return NAN;
    return v->valuedouble;
}

static double number(const cJSON *summary, const char *cls, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(summary, cls), key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static double rel_diff(double base, double now) { return base != 0 ? (now - base) / fabs(base) : NAN; }

static void print_value(double v) {
    if (isnan(v)) printf(" %12s", "-");
    else printf(" %12.1f", v);
}

static void print_row(const char *cls, const char *what, const char *stat, double a, double b, const char *unit,
                      const char *mark) {
    printf("%-8s %-18s %-5s", cls, what, stat);
    print_value(a);
    print_value(b);
    printf(" %s", unit);
    const double d = rel_diff(a, b);
    if (isnan(d)) printf("        -");
    else printf("  %+7.1f%%", 100 * d);
    printf("%s\n", mark);
}

typedef struct check {
    int cls, metric, stat;
} check;

static int index_of(const char *const *names, int n, const char *s, size_t len) {
    for (int i = 0; i < n; i++)
        if (strlen(names[i]) == len && !strncmp(names[i], s, len)) return i;
    return -1;
}

/* "overall.ttft.p50,image.e2e.p99" -> checks; false with a message on a bad entry. */
static bool parse_checks(const char *s, check *out, int *n, ms_error *err) {
    *n = 0;
    while (*s) {
        const char *end = strchr(s, ',');
        const size_t len = end ? (size_t)(end - s) : strlen(s);
        const char *d1 = memchr(s, '.', len);
        const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - s)) : NULL;
        check c = {-1, -1, -1};
        if (d1 && d2) {
            c.cls = index_of(k_classes, N_CLASSES, s, (size_t)(d1 - s));
            c.metric = index_of(k_metrics, N_METRICS, d1 + 1, (size_t)(d2 - d1 - 1));
            c.stat = index_of(k_stats, N_STATS, d2 + 1, len - (size_t)(d2 + 1 - s));
        }
        if (c.cls < 0 || c.metric < 0 || c.stat < 0 || *n == MAX_CHECKS) {
            ms_errorf(err, MS_ERR_INVALID,
                      "--check '%.*s': expected CLASS.METRIC.STAT with CLASS text|image|overall, METRIC "
                      "ttft|tpot|itl|e2e, STAT mean|p50|p90|p99|max (at most %d)", (int)len, s, MAX_CHECKS);
            return false;
        }
        out[(*n)++] = c;
        s += len + (end ? 1 : 0);
    }
    return *n > 0 || (ms_errorf(err, MS_ERR_INVALID, "--check: empty list"), false);
}

static void usage(FILE *out) {
    fprintf(out, "usage: modserve bench compare BASE NEW [--check LIST] [--tolerance PCT]\n\n"
                 "Two report folders (summary.json of `bench replay` or `bench simulate --out`) side by\n"
                 "side: per class (text, image, overall) requests, SLO attainment, throughput and\n"
                 "TTFT / TPOT / ITL / E2E mean, p50, p90, p99, max, with NEW's difference from BASE.\n"
                 "The simulator's validation is `bench compare REPLAY_DIR SIMULATE_DIR`.\n\n"
                 "  --check LIST      CLASS.METRIC.STAT entries that must be within the tolerance\n"
                 "                    (default overall.ttft.p50,overall.ttft.p99)\n"
                 "  --tolerance PCT   allowed |NEW - BASE| / BASE in percent (default 15)\n\n"
                 "Exit status: 0 every checked number within the tolerance, 1 one is not (or is\n"
                 "missing), 2 usage error or unreadable report.\n");
}

int ms_bench_compare_main(int argc, char **argv) {
    const char *dirs[2] = {NULL, NULL};
    const char *check_list = "overall.ttft.p50,overall.ttft.p99";
    double tolerance = 15;
    int n_dirs = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--check") || !strcmp(a, "--tolerance")) {
            char *end = NULL;
            if (v && !strcmp(a, "--check")) check_list = v;
            else if (v) tolerance = strtod(v, &end);
            if (!v || (end && (*end || end == v || !(tolerance >= 0)))) {
                fprintf(stderr, "bench compare: bad or missing value for %s\n", a);
                return 2;
            }
            i++;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "bench compare: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (n_dirs < 2) {
            dirs[n_dirs++] = a;
        } else {
            fprintf(stderr, "bench compare: more than two report folders ('%s')\n", a);
            return 2;
        }
    }
    if (n_dirs != 2) {
        usage(stderr);
        return 2;
    }
    check checks[MAX_CHECKS];
    int n_checks = 0;
    ms_error err = {0};
    if (!parse_checks(check_list, checks, &n_checks, &err)) {
        fprintf(stderr, "bench compare: %s\n", err.msg);
        return 2;
    }
    cJSON *s[2];
    for (int k = 0; k < 2; k++)
        if (!(s[k] = load_summary(dirs[k], &err))) {
            fprintf(stderr, "bench compare: %s\n", err.msg);
            if (k) cJSON_Delete(s[0]);
            return 2;
        }
    for (int k = 0; k < 2; k++) {
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(s[k], "kind"),
                    *target = cJSON_GetObjectItemCaseSensitive(s[k], "target");
        printf("%s: %s (%s, %s)\n", k ? "NEW " : "BASE", dirs[k], cJSON_IsString(kind) ? kind->valuestring : "?",
               cJSON_IsString(target) ? target->valuestring : "?");
    }
    printf("\n%-8s %-18s %-5s %12s %12s     %s\n", "class", "", "", "BASE", "NEW", "NEW vs BASE");
    for (int c = 0; c < N_CLASSES; c++) {
        const char *cls = k_classes[c];
        print_row(cls, "requests", "", number(s[0], cls, "requests"), number(s[1], cls, "requests"), "  ", "");
        print_row(cls, "completed", "", number(s[0], cls, "completed"), number(s[1], cls, "completed"), "  ", "");
        print_row(cls, "SLO attainment", "", 100 * number(s[0], cls, "slo_attainment"),
                  100 * number(s[1], cls, "slo_attainment"), "% ", "");
        print_row(cls, "output tok/s", "", number(s[0], cls, "output_throughput"),
                  number(s[1], cls, "output_throughput"), "  ", "");
        for (int m = 0; m < N_METRICS; m++)
            for (int st = 0; st < N_STATS; st++) {
                bool checked = false;
                for (int k = 0; k < n_checks; k++)
                    checked |= checks[k].cls == c && checks[k].metric == m && checks[k].stat == st;
                char what[16];
                snprintf(what, sizeof what, "%s", k_metrics[m]);
                for (char *p = what; *p; p++) *p = (char)(*p - 32 * (*p >= 'a' && *p <= 'z'));
                print_row(cls, st ? "" : what, k_stats[st], value(s[0], cls, k_metrics[m], k_stats[st]),
                          value(s[1], cls, k_metrics[m], k_stats[st]), "ms", checked ? "  <- checked" : "");
            }
    }
    int bad = 0;
    printf("\nchecks (tolerance %.1f%%):\n", tolerance);
    for (int k = 0; k < n_checks; k++) {
        const check *c = &checks[k];
        const double a = value(s[0], k_classes[c->cls], k_metrics[c->metric], k_stats[c->stat]);
        const double b = value(s[1], k_classes[c->cls], k_metrics[c->metric], k_stats[c->stat]);
        const double d = rel_diff(a, b);
        const bool ok = !isnan(d) && 100 * fabs(d) <= tolerance;
        bad += !ok;
        printf("  %s.%s.%s: %.1f ms vs %.1f ms: %+.1f%% %s\n", k_classes[c->cls], k_metrics[c->metric],
               k_stats[c->stat], a, b, 100 * d, ok ? "within" : isnan(d) ? "MISSING" : "OUTSIDE");
    }
    printf("%d of %d checked numbers within %.1f%%\n", n_checks - bad, n_checks, tolerance);
    cJSON_Delete(s[0]);
    cJSON_Delete(s[1]);
    return bad ? 1 : 0;
}
