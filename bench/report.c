/* The benchmark report: console tables, summary.json, requests.csv (see report.h). */
#include "bench/report.h"
#include "bench/replay.h" /* ms_session_ttft */

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static ms_req_metrics *metrics_array(const ms_bench_run *run) {
    ms_req_metrics *m = ms_xmalloc((size_t)(run->n ? run->n : 1) * sizeof *m);
    for (int64_t i = 0; i < run->n; i++) m[i] = run->reqs[i].m;
    return m;
}

void ms_run_metrics(const ms_bench_run *run, int cls, ms_bench_metrics *out) {
    ms_req_metrics *m = metrics_array(run);
    ms_bench_metrics_compute(m, run->n, cls, run->duration_s, &run->slo, out);
    free(m);
}

/* Wait (queued -> start) and service (start -> end) of one stage over the requests
 * that have them. */
static void stage_stats(const ms_bench_run *run, int s, ms_latency_stats *wait, ms_latency_stats *service) {
    double *w = ms_xmalloc((size_t)(run->n + 1) * sizeof *w), *v = ms_xmalloc((size_t)(run->n + 1) * sizeof *v);
    int64_t nw = 0, nv = 0;
    for (int64_t i = 0; i < run->n; i++) {
        const ms_run_request *r = &run->reqs[i];
        if (!r->has_stages) continue;
        if (r->stage_queued[s] >= 0 && r->stage_start[s] >= 0) w[nw++] = r->stage_start[s] - r->stage_queued[s];
        if (r->stage_start[s] >= 0 && r->stage_end[s] >= 0) v[nv++] = r->stage_end[s] - r->stage_start[s];
    }
    ms_latency_stats_compute(w, nw, wait);
    ms_latency_stats_compute(v, nv, service);
    free(w);
    free(v);
}

/* Requests whose actual prompt differs from the target by more than 5%. */
static void prompt_deviation(const ms_bench_run *run, int64_t *reported, int64_t *deviated, double *mean_abs_rel,
                             int64_t *target_sum, int64_t *actual_sum) {
    *reported = *deviated = *target_sum = *actual_sum = 0;
    double s = 0;
    for (int64_t i = 0; i < run->n; i++) {
        const ms_run_request *r = &run->reqs[i];
        if (r->actual_prompt < 0) continue;
        (*reported)++;
        *target_sum += r->target_prompt;
        *actual_sum += r->actual_prompt;
        const double rel = fabs((double)(r->actual_prompt - r->target_prompt)) / fmax(1.0, (double)r->target_prompt);
        s += rel;
        *deviated += rel > 0.05;
    }
    *mean_abs_rel = *reported ? s / (double)*reported : 0;
}

static void print_lat(FILE *out, const char *name, const ms_latency_stats *s) {
    fprintf(out, "  %-6s %9.1f %9.1f %9.1f %9.1f\n", name, 1e3 * s->mean, 1e3 * s->p50, 1e3 * s->p90, 1e3 * s->p99);
}

void ms_report_console(const ms_bench_run *run, FILE *out) {
    static const char *const k_names[3] = {"text", "image", "overall"};
    ms_bench_metrics m[3];
    for (int c = 0; c < 3; c++) ms_run_metrics(run, c < 2 ? c : -1, &m[c]);
    fprintf(out, "\n==== modserve bench %s: %s -> %s ====\n", run->kind, run->trace_path ? run->trace_path : "-",
            run->target ? run->target : "-");
    fprintf(out, "duration %.1f s, image policy %s, %d tokens per image (%s)%s\n", run->duration_s, run->image_policy,
            run->image_tokens, run->image_tokens_source ? run->image_tokens_source : "-",
            run->max_concurrency > 0 ? ", concurrency capped" : "");
    fprintf(out, "\n%-8s %8s %9s %7s %8s %10s %10s %9s %9s\n", "class", "requests", "completed", "failed", "req/s",
            "out tok/s", "tot tok/s", "goodput", "SLO att.");
    for (int c = 0; c < 3; c++)
        fprintf(out, "%-8s %8lld %9lld %7lld %8.3f %10.1f %10.1f %9.3f %8.1f%%\n", k_names[c], (long long)m[c].requests,
                (long long)m[c].completed, (long long)m[c].failed, m[c].request_throughput, m[c].output_throughput,
                m[c].total_token_throughput, m[c].goodput, 100 * m[c].attainment);
    if (!m[2].has_slo) fprintf(out, "(no --goodput SLO given: goodput counts every completed request)\n");
    for (int c = 0; c < 3; c++) {
        fprintf(out, "\n%s latency (ms)    mean       p50       p90       p99\n", k_names[c]);
        print_lat(out, "TTFT", &m[c].ttft);
        print_lat(out, "TPOT", &m[c].tpot);
        print_lat(out, "ITL", &m[c].itl);
        print_lat(out, "E2E", &m[c].e2e);
    }
    bool stages = false;
    for (int64_t i = 0; i < run->n && !stages; i++) stages = run->reqs[i].has_stages;
    if (stages) {
        fprintf(out, "\nper stage (ms)      wait mean  wait p50  wait p99   svc mean   svc p50   svc p99\n");
        for (int s = 0; s < MS_RUN_STAGES; s++) {
            ms_latency_stats w, v;
            stage_stats(run, s, &w, &v);
            fprintf(out, "  %-14s %11.1f %9.1f %9.1f %10.1f %9.1f %9.1f  (n=%lld)\n", ms_run_stage_names[s], 1e3 * w.mean,
                    1e3 * w.p50, 1e3 * w.p99, 1e3 * v.mean, 1e3 * v.p50, 1e3 * v.p99, (long long)v.n);
        }
    } else {
        fprintf(out, "\n(no per-stage timestamps from the server)\n");
    }
    if (run->sessions > 0) { /* replay --sessions: what a cache can change is turns 2+ */
        ms_latency_stats first, later;
        ms_session_ttft(run, &first, &later);
        fprintf(out, "\nsessions: %d x %d turns, think time %.1f s\n", run->sessions, run->turns, run->think_time_s);
        fprintf(out, "  TTFT turn 1  (ms): p50 %9.1f  p99 %9.1f  (n=%lld)\n", 1e3 * first.p50, 1e3 * first.p99,
                (long long)first.n);
        fprintf(out, "  TTFT turns 2+ (ms): p50 %9.1f  p99 %9.1f  (n=%lld)\n", 1e3 * later.p50, 1e3 * later.p99,
                (long long)later.n);
    }
    int64_t rep, dev, ts, as;
    double mar;
    prompt_deviation(run, &rep, &dev, &mar, &ts, &as);
    fprintf(out, "\nprompt tokens: target %lld, actual %lld over %lld requests with usage; %lld deviate > 5%% "
                 "(mean |dev| %.1f%%); %lld requests sent fewer images than the trace\n",
            (long long)ts, (long long)as, (long long)rep, (long long)dev, 100 * mar, (long long)run->images_capped);
    int shown = 0;
    for (int64_t i = 0; i < run->n && shown < 5; i++)
        if (!run->reqs[i].m.ok) {
            fprintf(out, "  failed request %lld: %s\n", (long long)i, run->reqs[i].error ? run->reqs[i].error : "?");
            shown++;
        }
}

static cJSON *lat_json(const ms_latency_stats *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "n", (double)s->n);
    cJSON_AddNumberToObject(o, "mean_ms", 1e3 * s->mean);
    cJSON_AddNumberToObject(o, "std_ms", 1e3 * s->std);
    cJSON_AddNumberToObject(o, "p50_ms", 1e3 * s->p50);
    cJSON_AddNumberToObject(o, "p90_ms", 1e3 * s->p90);
    cJSON_AddNumberToObject(o, "p99_ms", 1e3 * s->p99);
    cJSON_AddNumberToObject(o, "max_ms", 1e3 * s->max);
    return o;
}

static cJSON *metrics_json(const ms_bench_metrics *m) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "requests", (double)m->requests);
    cJSON_AddNumberToObject(o, "completed", (double)m->completed);
    cJSON_AddNumberToObject(o, "failed", (double)m->failed);
    cJSON_AddNumberToObject(o, "input_tokens", (double)m->input_tokens);
    cJSON_AddNumberToObject(o, "output_tokens", (double)m->output_tokens);
    cJSON_AddNumberToObject(o, "request_throughput", m->request_throughput);
    cJSON_AddNumberToObject(o, "output_throughput", m->output_throughput);
    cJSON_AddNumberToObject(o, "total_token_throughput", m->total_token_throughput);
    cJSON_AddNumberToObject(o, "good_requests", (double)m->good);
    cJSON_AddNumberToObject(o, "goodput", m->goodput);
    cJSON_AddNumberToObject(o, "slo_attainment", m->attainment);
    cJSON_AddItemToObject(o, "ttft", lat_json(&m->ttft));
    cJSON_AddItemToObject(o, "tpot", lat_json(&m->tpot));
    cJSON_AddItemToObject(o, "itl", lat_json(&m->itl));
    cJSON_AddItemToObject(o, "e2e", lat_json(&m->e2e));
    return o;
}

static ms_status write_text(const char *dir, const char *name, const char *text, ms_error *err) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return ms_errorf(err, MS_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    fputs(text, f);
    if (fclose(f) != 0) return ms_errorf(err, MS_ERR_IO, "writing %s failed", path);
    return MS_OK;
}

static char *summary_json(const ms_bench_run *run) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", run->kind);
    cJSON_AddStringToObject(o, "trace", run->trace_path ? run->trace_path : "");
    cJSON_AddStringToObject(o, "target", run->target ? run->target : "");
    cJSON *sel = cJSON_AddObjectToObject(o, "selection");
    char ts[32];
    ms_trace_time_format(run->n ? run->reqs[0].trace.t_ms : 0, ts, sizeof ts);
    cJSON_AddStringToObject(sel, "first_request", ts);
    cJSON_AddNumberToObject(sel, "duration_s", run->sel.duration_s);
    cJSON_AddNumberToObject(sel, "time_scale", run->sel.time_scale);
    cJSON_AddNumberToObject(sel, "rate_scale", run->sel.rate_scale);
    cJSON_AddNumberToObject(sel, "max_requests", (double)run->sel.max_requests);
    cJSON_AddNumberToObject(sel, "seed", (double)run->sel.seed);
    cJSON *slo = cJSON_AddObjectToObject(o, "slo_ms");
    if (run->slo.ttft_s > 0) cJSON_AddNumberToObject(slo, "ttft", 1e3 * run->slo.ttft_s);
    if (run->slo.tpot_s > 0) cJSON_AddNumberToObject(slo, "tpot", 1e3 * run->slo.tpot_s);
    if (run->slo.e2e_s > 0) cJSON_AddNumberToObject(slo, "e2el", 1e3 * run->slo.e2e_s);
    cJSON_AddNumberToObject(o, "max_concurrency", run->max_concurrency);
    cJSON_AddNumberToObject(o, "duration_s", run->duration_s);
    cJSON *pr = cJSON_AddObjectToObject(o, "prompt");
    cJSON_AddStringToObject(pr, "image_policy", run->image_policy ? run->image_policy : "");
    cJSON_AddNumberToObject(pr, "image_tokens", run->image_tokens);
    cJSON_AddStringToObject(pr, "image_tokens_source", run->image_tokens_source ? run->image_tokens_source : "");
    cJSON_AddBoolToObject(pr, "calibrated", run->calibrated);
    cJSON_AddNumberToObject(pr, "overhead_tokens", run->prompt_overhead);
    cJSON_AddNumberToObject(pr, "tokens_per_word", run->tokens_per_word);
    int64_t rep, dev, tsum, asum;
    double mar;
    prompt_deviation(run, &rep, &dev, &mar, &tsum, &asum);
    cJSON_AddNumberToObject(pr, "requests_with_usage", (double)rep);
    cJSON_AddNumberToObject(pr, "target_tokens", (double)tsum);
    cJSON_AddNumberToObject(pr, "actual_tokens", (double)asum);
    cJSON_AddNumberToObject(pr, "deviated_over_5pct", (double)dev);
    cJSON_AddNumberToObject(pr, "mean_abs_rel_deviation", mar);
    cJSON_AddNumberToObject(pr, "requests_with_fewer_images", (double)run->images_capped);
    if (run->sessions > 0) {
        ms_latency_stats first, later;
        ms_session_ttft(run, &first, &later);
        cJSON *se = cJSON_AddObjectToObject(o, "sessions");
        cJSON_AddNumberToObject(se, "sessions", run->sessions);
        cJSON_AddNumberToObject(se, "turns", run->turns);
        cJSON_AddNumberToObject(se, "think_time_s", run->think_time_s);
        cJSON_AddItemToObject(se, "ttft_turn1", lat_json(&first));
        cJSON_AddItemToObject(se, "ttft_turns2plus", lat_json(&later));
    }
    static const char *const k_names[3] = {"text", "image", "overall"};
    for (int c = 0; c < 3; c++) {
        ms_bench_metrics m;
        ms_run_metrics(run, c < 2 ? c : -1, &m);
        cJSON_AddItemToObject(o, k_names[c], metrics_json(&m));
    }
    cJSON *stages = cJSON_AddObjectToObject(o, "stages");
    for (int s = 0; s < MS_RUN_STAGES; s++) {
        ms_latency_stats w, v;
        stage_stats(run, s, &w, &v);
        cJSON *so = cJSON_AddObjectToObject(stages, ms_run_stage_names[s]);
        cJSON_AddItemToObject(so, "wait", lat_json(&w));
        cJSON_AddItemToObject(so, "service", lat_json(&v));
    }
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

static ms_status write_requests_csv(const ms_bench_run *run, const char *dir, ms_error *err) {
    char path[2048];
    snprintf(path, sizeof path, "%s/requests.csv", dir);
    FILE *f = fopen(path, "w");
    if (!f) return ms_errorf(err, MS_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    fprintf(f, "index,trace_row,replica,trace_timestamp,class,num_images,images_sent,target_prompt_tokens,"
               "expected_prompt_tokens,actual_prompt_tokens,text_words,generated_tokens,output_tokens,chunks,"
               "scheduled_s,send_s,ok,http_status,ttft_ms,tpot_ms,e2e_ms");
    for (int s = 0; s < MS_RUN_STAGES; s++)
        fprintf(f, ",%s_wait_ms,%s_service_ms", ms_run_stage_names[s], ms_run_stage_names[s]);
    fprintf(f, ",error\n");
    for (int64_t i = 0; i < run->n; i++) {
        const ms_run_request *r = &run->reqs[i];
        char ts[32];
        ms_trace_time_format(r->trace.t_ms, ts, sizeof ts);
        const double tpot = ms_req_tpot(&r->m);
        fprintf(f, "%lld,%lld,%d,%s,%s,%d,%d,%d,%d,%d,%d,%d,%d,%d,%.6f,%.6f,%d,%d,", (long long)i,
                (long long)r->trace.row, r->trace.replica, ts, ms_req_class_name(r->m.cls), r->trace.n_images,
                r->images_sent, r->target_prompt, r->expected_prompt, r->actual_prompt, r->text_words,
                r->trace.generated_tokens, r->m.output_tokens, r->chunks, r->trace.send_s, r->m.send_s, r->m.ok,
                r->http_status);
        if (r->m.ok) {
            fprintf(f, "%.3f,", 1e3 * r->m.ttft_s);
            if (tpot >= 0) fprintf(f, "%.3f", 1e3 * tpot);
            fprintf(f, ",%.3f", 1e3 * r->m.e2e_s);
        } else {
            fprintf(f, ",,");
        }
        for (int s = 0; s < MS_RUN_STAGES; s++) {
            const bool w = r->stage_queued[s] >= 0 && r->stage_start[s] >= 0;
            const bool v = r->stage_start[s] >= 0 && r->stage_end[s] >= 0;
            if (w) fprintf(f, ",%.3f", 1e3 * (r->stage_start[s] - r->stage_queued[s]));
            else fprintf(f, ",");
            if (v) fprintf(f, ",%.3f", 1e3 * (r->stage_end[s] - r->stage_start[s]));
            else fprintf(f, ",");
        }
        /* The error text without commas or quotes, so the CSV stays simple. */
        char e[160];
        snprintf(e, sizeof e, "%s", r->error ? r->error : "");
        for (char *p = e; *p; p++) if (*p == ',' || *p == '"' || *p == '\n') *p = ' ';
        fprintf(f, ",%s\n", e);
    }
    if (fclose(f) != 0) return ms_errorf(err, MS_ERR_IO, "writing %s failed", path);
    return MS_OK;
}

ms_status ms_report_write(const ms_bench_run *run, const char *dir, bool plots, ms_error *err) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return ms_errorf(err, MS_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
    char *s = summary_json(run);
    ms_status st = write_text(dir, "summary.json", s, err);
    free(s);
    if (st == MS_OK) st = write_requests_csv(run, dir, err);
    if (st == MS_OK && plots) {
        ms_error perr = {0};
        if (ms_report_plots(run, dir, &perr) != MS_OK) ms_log(MS_LOG_WARN, "report", "plots: %s", perr.msg);
    }
    return st;
}

void ms_bench_run_free(ms_bench_run *run) {
    for (int64_t i = 0; i < run->n; i++) {
        free(run->reqs[i].itl_buf);
        free(run->reqs[i].error);
    }
    free(run->reqs);
    memset(run, 0, sizeof *run);
}
