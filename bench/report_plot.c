/*
 * The report's plots: data files and a gnuplot script in the output folder, then one
 * gnuplot run. Queue lengths come from the server's stage timestamps (a request waits
 * in a stage's queue from its *_queued to its *_start time), swept over a grid of
 * the run's time; without timestamps the plot shows the client's requests in flight.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "bench/report.h"

enum { GRID = 600 };

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static FILE *open_in(const char *dir, const char *name, ms_error *err) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) ms_errorf(err, MS_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    return f;
}

/* Counts of intervals [a_i, b_i) covering each grid point t_k = k * step. */
static void sweep(double *a, double *b, int64_t n, double step, double *out) {
    qsort(a, (size_t)n, sizeof *a, cmp_double);
    qsort(b, (size_t)n, sizeof *b, cmp_double);
    int64_t ia = 0, ib = 0;
    for (int k = 0; k <= GRID; k++) {
        const double t = k * step;
        while (ia < n && a[ia] <= t) ia++;
        while (ib < n && b[ib] <= t) ib++;
        out[k] = (double)(ia - ib);
    }
}

static bool write_queue(const ms_bench_run *run, const char *dir, double step, ms_error *err) {
    double *a = ms_xmalloc((size_t)(run->n + 1) * sizeof *a), *b = ms_xmalloc((size_t)(run->n + 1) * sizeof *b);
    double q[MS_RUN_STAGES + 1][GRID + 1];
    bool any = false;
    for (int s = 0; s < MS_RUN_STAGES; s++) {
        int64_t n = 0;
        for (int64_t i = 0; i < run->n; i++) {
            const ms_run_request *r = &run->reqs[i];
            if (!r->has_stages || r->stage_queued[s] < 0 || r->stage_start[s] < 0) continue;
            a[n] = r->m.send_s + r->stage_queued[s];
            b[n++] = r->m.send_s + r->stage_start[s];
        }
        any |= n > 0;
        sweep(a, b, n, step, q[s]);
    }
    int64_t n = 0; /* client view: requests in flight */
    for (int64_t i = 0; i < run->n; i++) {
        a[n] = run->reqs[i].m.send_s;
        b[n++] = run->reqs[i].m.send_s + run->reqs[i].m.e2e_s;
    }
    sweep(a, b, n, step, q[MS_RUN_STAGES]);
    free(a);
    free(b);
    FILE *f = open_in(dir, "queue.dat", err);
    if (!f) return false;
    fprintf(f, "# time_s preprocess encode prefill decode in_flight\n");
    for (int k = 0; k <= GRID; k++) {
        fprintf(f, "%.3f", k * step);
        for (int s = 0; s <= MS_RUN_STAGES; s++) fprintf(f, " %.0f", q[s][k]);
        fprintf(f, "\n");
    }
    fclose(f);
    return any;
}

ms_status ms_report_plots(const ms_bench_run *run, const char *dir, ms_error *err) {
    if (strchr(dir, '\'')) return ms_errorf(err, MS_ERR_INVALID, "output folder name with a quote: no plots");
    /* TTFT CDF by class. */
    for (int c = 0; c < MS_CLASS_COUNT; c++) {
        char name[64];
        snprintf(name, sizeof name, "ttft_cdf_%s.dat", ms_req_class_name((ms_req_class)c));
        FILE *f = open_in(dir, name, err);
        if (!f) return MS_ERR_IO;
        double *v = ms_xmalloc((size_t)(run->n + 1) * sizeof *v);
        int64_t n = 0;
        for (int64_t i = 0; i < run->n; i++)
            if ((int)run->reqs[i].m.cls == c && run->reqs[i].m.ok) v[n++] = 1e3 * run->reqs[i].m.ttft_s;
        qsort(v, (size_t)n, sizeof *v, cmp_double);
        fprintf(f, "# ttft_ms cumulative_fraction\n");
        for (int64_t i = 0; i < n; i++) fprintf(f, "%.3f %.6f\n", v[i], (double)(i + 1) / (double)n);
        if (n == 0) fprintf(f, "0 0\n");
        free(v);
        fclose(f);
    }
    /* Latency over time and arrivals. */
    FILE *f = open_in(dir, "latency.dat", err);
    if (!f) return MS_ERR_IO;
    fprintf(f, "# send_s ttft_ms e2e_ms class(0 text, 1 image)\n");
    double end = 0;
    for (int64_t i = 0; i < run->n; i++) {
        const ms_run_request *r = &run->reqs[i];
        end = fmax(end, r->m.send_s + r->m.e2e_s);
        if (r->m.ok) fprintf(f, "%.3f %.3f %.3f %d\n", r->m.send_s, 1e3 * r->m.ttft_s, 1e3 * r->m.e2e_s, (int)r->m.cls);
    }
    if (run->n == 0) fprintf(f, "0 0 0 0\n");
    fclose(f);
    const double step = fmax(end, 1e-3) / GRID;
    const double bin = fmax(end / 100.0, 1e-3); /* about 100 bins over the run */
    f = open_in(dir, "arrivals.dat", err);
    if (!f) return MS_ERR_IO;
    const int nbins = (int)(end / bin) + 1;
    double *cnt = ms_xcalloc((size_t)nbins, sizeof *cnt), *failed = ms_xcalloc((size_t)nbins, sizeof *failed);
    for (int64_t i = 0; i < run->n; i++) {
        const int k = (int)fmin(nbins - 1, run->reqs[i].m.send_s / bin);
        cnt[k]++;
        failed[k] += !run->reqs[i].m.ok;
    }
    fprintf(f, "# bin_start_s requests_per_s failed_per_s\n");
    for (int k = 0; k < nbins; k++) fprintf(f, "%.3f %.4f %.4f\n", k * bin, cnt[k] / bin, failed[k] / bin);
    free(cnt);
    free(failed);
    fclose(f);
    const bool stages = write_queue(run, dir, step, err);
    f = open_in(dir, "plots.gp", err);
    if (!f) return MS_ERR_IO;
    fprintf(f, "# modserve bench %s plots (gnuplot plots.gp in this folder)\n"
               "set terminal pngcairo size 1100,650 noenhanced\nset grid\nset key top left\n"
               "set output 'ttft_cdf.png'\nset title 'TTFT CDF by class'\nset xlabel 'TTFT (ms)'\n"
               "set ylabel 'fraction of completed requests'\nset logscale x\nset yrange [0:1]\n"
               "plot 'ttft_cdf_text.dat' using 1:2 with steps lw 2 title 'text-only', "
               "'ttft_cdf_image.dat' using 1:2 with steps lw 2 title 'image'\n"
               "unset logscale x\nset yrange [*:*]\n"
               "set output 'latency_over_time.png'\nset title 'Latency over time (arrivals on the right axis)'\n"
               "set xlabel 'time since start (s)'\nset ylabel 'latency (ms)'\nset logscale y\n"
               "set y2label 'requests/s'\nset y2tics\nset ytics nomirror\n"
               "plot 'latency.dat' using 1:($4==0?$2:1/0) with points pt 7 ps 0.8 title 'TTFT text', "
               "'latency.dat' using 1:($4==1?$2:1/0) with points pt 7 ps 0.8 title 'TTFT image', "
               "'latency.dat' using 1:3 with points pt 1 ps 0.3 lc rgb '#999999' title 'E2E', "
               "'arrivals.dat' using 1:2 axes x1y2 with steps lw 2 lc rgb 'black' title 'arrivals/s', "
               "'arrivals.dat' using 1:3 axes x1y2 with steps lw 1 lc rgb 'red' title 'failed/s'\n"
               "unset logscale y\nunset y2tics\nunset y2label\nset ytics mirror\n"
               "set output 'queue_length.png'\n", run->kind);
    if (stages)
        fprintf(f, "set title 'Queue length per stage (from server stage timestamps)'\nset xlabel 'time since start (s)'\n"
                   "set ylabel 'requests waiting'\n"
                   "plot 'queue.dat' using 1:2 with steps lw 2 title 'preprocess', '' using 1:3 with steps lw 2 title 'encode', "
                   "'' using 1:4 with steps lw 2 title 'prefill', '' using 1:5 with steps lw 2 title 'decode', "
                   "'' using 1:6 with steps lw 1 lc rgb '#999999' title 'in flight (client)'\n");
    else
        fprintf(f, "set title 'Requests in flight (client view; the server sent no stage timestamps)'\n"
                   "set xlabel 'time since start (s)'\nset ylabel 'requests'\n"
                   "plot 'queue.dat' using 1:6 with steps lw 2 title 'in flight'\n");
    fclose(f);
    char cmd[2300];
    snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot plots.gp >gnuplot.log 2>&1", dir);
    const int rc = system(cmd);
    if (rc != 0) {
        const int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
        return ms_errorf(err, code == 127 ? MS_ERR_NOT_FOUND : MS_ERR_IO,
                         "gnuplot failed (exit %d, see %s/gnuplot.log); data and plots.gp are in %s", code, dir, dir);
    }
    return MS_OK;
}
