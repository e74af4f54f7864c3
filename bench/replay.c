/*
 * The replay loop: one thread, libcurl multi. Each turn sends every request whose time
 * has come (and for which a --max-concurrency slot is free), lets curl move bytes,
 * and parses the server-sent events as they arrive, stamping each chunk with the
 * monotonic clock. A request that fails (transport error, non-200, error event, no
 * [DONE]) is recorded as failed with the reason, never dropped.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/replay.h"

const char *const ms_run_stage_names[MS_RUN_STAGES] = {"preprocess", "encode", "prefill", "decode"};

void ms_replay_options_default(ms_replay_options *o) {
    memset(o, 0, sizeof *o);
    o->url = "http://127.0.0.1:8000";
    ms_trace_select_default(&o->sel);
    o->policy = MS_IMAGE_POLICY_KEEP;
    o->max_images = 100;
    o->image_pool = 16;
    o->calibrate = true;
    o->request_timeout_s = 600;
    o->progress = -1;
    o->plots = true;
    o->turns = 3;
    o->think_time_s = 1.0;
}

/* Per in-flight request state. */
typedef struct flight {
    ms_sse_stream s;          /* the response's stream parser (replay_sse.c) */
    CURL *easy;
    char *body;
} flight;

static size_t on_data(char *data, size_t size, size_t nmemb, void *ctx) {
    flight *f = ctx;
    const size_t k = size * nmemb;
    return ms_sse_feed(&f->s, data, k, ms_time_now()) ? k : 0;
}

static void flight_finish(flight *f, CURLcode code, double now) {
    ms_run_request *r = f->s.r;
    long status = 0;
    curl_easy_getinfo(f->easy, CURLINFO_RESPONSE_CODE, &status);
    r->http_status = (int32_t)status;
    r->m.e2e_s = now - f->s.t0;
    if (code != CURLE_OK) {
        ms_run_request_fail(r, curl_easy_strerror(code));
    } else if (status != 200) {
        char msg[160];
        /* The error body is JSON without SSE framing: show its start. */
        snprintf(msg, sizeof msg, "HTTP %ld: %.120s", status, f->s.sse ? f->s.sse : "");
        for (char *p = msg; *p; p++) if (*p == '\n' || *p == '\r') *p = ' ';
        ms_run_request_fail(r, msg);
    } else if (!f->s.error_event && !f->s.done_seen) {
        ms_run_request_fail(r, "stream ended without [DONE]");
    } else if (!f->s.error_event && r->chunks == 0) {
        ms_run_request_fail(r, "no tokens streamed");
    }
    r->m.ok = !r->error;
    r->m.output_tokens = f->s.usage_completion > 0 ? f->s.usage_completion : r->chunks;
    r->m.prompt_tokens = r->actual_prompt >= 0 ? r->actual_prompt : r->expected_prompt;
    r->m.itl = r->itl_buf;
    if (!r->m.ok) r->m.n_itl = 0;
}

static void progress_print(int64_t sent, int64_t n, int64_t inflight, int64_t done, int64_t errors, double t) {
    const int width = 30, fill = n ? (int)(width * done / n) : width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    fprintf(stderr, "\r[%s] sent %lld/%lld  in flight %lld  done %lld  errors %lld  %.0fs ", bar, (long long)sent,
            (long long)n, (long long)inflight, (long long)done, (long long)errors, t);
    fflush(stderr);
}

ms_status ms_replay_run(const ms_replay_options *o, const ms_trace_set *set, ms_bench_run *run, ms_error *err) {
    memset(run, 0, sizeof *run);
    run->kind = "replay";
    run->trace_path = o->trace;
    run->target = o->url;
    run->sel = o->sel;
    run->slo = o->slo;
    run->max_concurrency = o->max_concurrency;
    run->image_policy = o->policy == MS_IMAGE_POLICY_FIT ? "fit" : "keep";
    ms_image_pool pool;
    ms_image_pool_build(&pool, o->image_pool, o->sel.seed);
    char model[256];
    ms_prompt_plan plan;
    ms_status st = ms_replay_prepare(o, &pool, model, sizeof model, &plan, err);
    if (st != MS_OK) {
        ms_image_pool_free(&pool);
        return st;
    }
    run->image_tokens = plan.image_tokens;
    run->image_tokens_source = plan.image_tokens_source;
    run->prompt_overhead = plan.overhead;
    run->tokens_per_word = plan.per_word;
    run->calibrated = plan.calibrated;
    run->n = set->n;
    run->reqs = ms_xcalloc((size_t)(set->n ? set->n : 1), sizeof *run->reqs);
    for (int64_t i = 0; i < set->n; i++) {
        ms_run_request *r = &run->reqs[i];
        r->trace = set->reqs[i];
        r->m.cls = r->trace.n_images > 0 ? MS_CLASS_IMAGE : MS_CLASS_TEXT;
        r->target_prompt = r->trace.context_tokens;
        r->actual_prompt = -1;
        ms_prompt_size(&plan, o->policy, o->max_images, r->trace.n_images, r->trace.context_tokens, &r->images_sent,
                       &r->text_words, &r->expected_prompt);
        if (r->images_sent < r->trace.n_images) run->images_capped++;
        for (int s = 0; s < MS_RUN_STAGES; s++) r->stage_queued[s] = r->stage_start[s] = r->stage_end[s] = -1;
    }
    if (o->sessions > 0 && (st = ms_sessions_layout(o, &plan, run, err)) != MS_OK) {
        ms_image_pool_free(&pool);
        ms_bench_run_free(run);
        return st;
    }
    const bool sessions = o->sessions > 0;
    /* When each request may go (seconds from the start): its trace time, or, for a
     * session's later turn, unknown (INFINITY) until the turn before it has ended. */
    double *due = ms_xmalloc((size_t)(run->n ? run->n : 1) * sizeof *due);
    bool *sent = ms_xcalloc((size_t)(run->n ? run->n : 1), sizeof *sent);
    for (int64_t i = 0; i < run->n; i++)
        due[i] = sessions && run->reqs[i].turn > 1 ? INFINITY : run->reqs[i].trace.send_s;
    const bool progress = o->progress > 0 || (o->progress < 0 && isatty(STDERR_FILENO));
    CURLM *multi = curl_multi_init();
    MS_CHECK(multi);
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    hdr = curl_slist_append(hdr, "Expect:"); /* no 100-continue round trip for large bodies */
    hdr = curl_slist_append(hdr, "Accept: text/event-stream");
    char auth[512];
    if (o->api_key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->api_key);
        hdr = curl_slist_append(hdr, auth);
    }
    char url[1024];
    snprintf(url, sizeof url, "%s/v1/chat/completions", o->url);
    int64_t next = 0, n_sent = 0, inflight = 0, done = 0, errors = 0;
    const double t_start = ms_time_now();
    double last_progress = 0, last_end = t_start;
    const int64_t n = run->n;
    while (done < n) {
        double now = ms_time_now();
        /* Send every request whose time has come: in order for the open loop (due times
         * ascend), any due one for sessions (later turns become due as answers end). */
        for (int64_t i = next; i < n && (o->max_concurrency <= 0 || inflight < o->max_concurrency); i++) {
            if (sent[i]) continue;
            if (due[i] > now - t_start) {
                if (sessions) continue;
                break;
            }
            ms_run_request *r = &run->reqs[i];
            flight *f = ms_xcalloc(1, sizeof *f);
            f->s.r = r;
            f->body = sessions ? ms_replay_session_body(model, &pool, run, i)
                               : ms_replay_body(model, &pool, i, r->images_sent, r->text_words,
                                                r->trace.generated_tokens > 0 ? r->trace.generated_tokens : 1, true);
            f->easy = curl_easy_init();
            MS_CHECK(f->easy);
            curl_easy_setopt(f->easy, CURLOPT_URL, url);
            curl_easy_setopt(f->easy, CURLOPT_HTTPHEADER, hdr);
            curl_easy_setopt(f->easy, CURLOPT_POSTFIELDS, f->body);
            curl_easy_setopt(f->easy, CURLOPT_WRITEFUNCTION, on_data);
            curl_easy_setopt(f->easy, CURLOPT_WRITEDATA, f);
            curl_easy_setopt(f->easy, CURLOPT_PRIVATE, f);
            curl_easy_setopt(f->easy, CURLOPT_NOSIGNAL, 1L);
            if (o->request_timeout_s > 0)
                curl_easy_setopt(f->easy, CURLOPT_TIMEOUT_MS, (long)(o->request_timeout_s * 1000));
            f->s.t0 = ms_time_now();
            r->m.send_s = f->s.t0 - t_start;
            curl_multi_add_handle(multi, f->easy);
            sent[i] = true;
            inflight++;
            n_sent++;
        }
        while (next < n && sent[next]) next++;
        int running = 0;
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            flight *f = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&f);
            const double t = ms_time_now();
            flight_finish(f, msg->data.result, t);
            const int64_t idx = f->s.r - run->reqs;
            if (sessions && f->s.r->turn < o->turns) { /* the session's next turn */
                due[idx + 1] = t - t_start + o->think_time_s;
                run->reqs[idx + 1].trace.send_s = due[idx + 1];
            }
            last_end = t;
            errors += !f->s.r->m.ok;
            curl_multi_remove_handle(multi, f->easy);
            curl_easy_cleanup(f->easy);
            free(f->body);
            free(f->s.sse);
            free(f);
            inflight--;
            done++;
        }
        now = ms_time_now();
        if (progress && (now - last_progress > 0.2 || done == n)) {
            progress_print(n_sent, n, inflight, done, errors, now - t_start);
            last_progress = now;
        }
        if (done == n) break;
        /* Sleep in curl until the next send time, at most 50 ms. */
        int wait_ms = 50;
        if (next < n && (o->max_concurrency <= 0 || inflight < o->max_concurrency)) {
            double first = due[next];
            for (int64_t i = next + 1; sessions && i < n; i++)
                if (!sent[i] && due[i] < first) first = due[i];
            const double wait = first - (now - t_start);
            wait_ms = wait <= 0 ? 0 : (int)fmin(50.0, ceil(wait * 1000.0));
        }
        curl_multi_poll(multi, NULL, 0, wait_ms, NULL);
    }
    if (progress) fputc('\n', stderr);
    run->duration_s = n ? last_end - t_start - run->reqs[0].m.send_s : 0;
    free(due);
    free(sent);
    curl_slist_free_all(hdr);
    curl_multi_cleanup(multi);
    ms_image_pool_free(&pool);
    return MS_OK;
}
