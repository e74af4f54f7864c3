/* Prometheus text exposition of the server and engine metrics (see metrics.h). */
#include "server/metrics.h"

#include <string.h>

#include "server/http_util.h"

static const int k_codes[MS_METRIC_CODES - 1] = {200, 400, 401, 404, 405, 413, 422, 429, 500, 503, 504};
static const char *const k_endpoints[MS_EP_COUNT] = {"/v1/chat/completions", "/v1/completions", "/v1/models",
                                                     "/health", "/metrics", "/admin/workers", "other"};
/* Upper bounds in seconds; the last bucket is +Inf. */
static const double k_bounds[MS_LAT_BUCKETS - 1] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                    0.5,   1,      2.5,   5,    10,    30,   60};

void ms_server_metrics_init(ms_server_metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

void ms_server_metrics_destroy(ms_server_metrics *m) { pthread_mutex_destroy(&m->mu); }

void ms_metrics_count_request(ms_server_metrics *m, int endpoint, int http_status) {
    int k = MS_METRIC_CODES - 1; /* "other" */
    for (int i = 0; i < MS_METRIC_CODES - 1; i++)
        if (k_codes[i] == http_status) k = i;
    pthread_mutex_lock(&m->mu);
    m->requests[endpoint][k]++;
    pthread_mutex_unlock(&m->mu);
}

static void hist_add(ms_latency_hist *h, double v) {
    if (v < 0) return;
    int b = MS_LAT_BUCKETS - 1;
    for (int i = 0; i < MS_LAT_BUCKETS - 1; i++)
        if (v <= k_bounds[i]) {
            b = i;
            break;
        }
    h->bucket[b]++;
    h->count++;
    h->sum += v;
}

/* b - a when both happened (0 = did not happen), else -1 (not observed). */
static double span(double a, double b) { return a > 0 && b > 0 ? b - a : -1; }

void ms_metrics_observe(ms_server_metrics *m, const ms_request_result *r) {
    const ms_request_times *t = &r->times;
    pthread_mutex_lock(&m->mu);
    hist_add(&m->ttft, span(t->arrival, t->first_token));
    if (r->completion_tokens > 1 && t->last_token > t->first_token)
        hist_add(&m->tpot, (t->last_token - t->first_token) / (r->completion_tokens - 1));
    hist_add(&m->e2e, span(t->arrival, t->finished));
    const double q[MS_STAGE_COUNT] = {t->preprocess_queued, t->encode_queued, t->prefill_queued, t->decode_queued};
    const double s[MS_STAGE_COUNT] = {t->preprocess_start, t->encode_start, t->prefill_start, t->decode_start};
    const double e[MS_STAGE_COUNT] = {t->preprocess_end, t->encode_end, t->prefill_end, t->last_token};
    for (int i = 0; i < MS_STAGE_COUNT; i++) {
        hist_add(&m->stage_wait[i], span(q[i], s[i]));
        hist_add(&m->stage_service[i], span(s[i], e[i]));
    }
    m->prompt_tokens += (uint64_t)(r->prompt_tokens > 0 ? r->prompt_tokens : 0);
    m->generation_tokens += (uint64_t)(r->completion_tokens > 0 ? r->completion_tokens : 0);
    pthread_mutex_unlock(&m->mu);
}

void ms_metrics_count_disconnect(ms_server_metrics *m) {
    pthread_mutex_lock(&m->mu);
    m->client_disconnects++;
    pthread_mutex_unlock(&m->mu);
}

static void head(ms_sbuf *b, const char *name, const char *type, const char *help) {
    ms_sbuf_addf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void hist_lines(ms_sbuf *b, const char *name, const char *labels, const ms_latency_hist *h) {
    uint64_t cum = 0;
    const char *sep = labels[0] ? "," : "";
    for (int i = 0; i < MS_LAT_BUCKETS - 1; i++) {
        cum += h->bucket[i];
        ms_sbuf_addf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, k_bounds[i], (unsigned long long)cum);
    }
    ms_sbuf_addf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, (unsigned long long)h->count);
    if (labels[0]) {
        ms_sbuf_addf(b, "%s_sum{%s} %.9g\n", name, labels, h->sum);
        ms_sbuf_addf(b, "%s_count{%s} %llu\n", name, labels, (unsigned long long)h->count);
    } else {
        ms_sbuf_addf(b, "%s_sum %.9g\n", name, h->sum);
        ms_sbuf_addf(b, "%s_count %llu\n", name, (unsigned long long)h->count);
    }
}

static void engine_lines(ms_sbuf *b, const ms_engine_stats *st) {
    static const char *const per_stage[][3] = {
        {"modserve_stage_queue_length", "gauge", "Units waiting in each stage's queue (requests, images, sequences)"},
        {"modserve_stage_workers", "gauge", "Workers in each stage's pool"},
        {"modserve_stage_busy_workers", "gauge", "Workers running a batch"},
        {"modserve_stage_running", "gauge", "Units in flight (decode: sequences in running sets)"},
        {"modserve_stage_last_batch_size", "gauge", "Size of the last batch finished"},
    };
    for (int k = 0; k < 5; k++) {
        head(b, per_stage[k][0], per_stage[k][1], per_stage[k][2]);
        for (int s = 0; s < MS_STAGE_COUNT; s++) {
            const ms_stage_stats *ss = &st->stage[s];
            const int32_t v[5] = {ss->queued, ss->workers, ss->busy, ss->running, ss->last_batch};
            ms_sbuf_addf(b, "%s{stage=\"%s\"} %d\n", per_stage[k][0], ms_stage_name((ms_stage)s), v[k]);
        }
    }
    head(b, "modserve_stage_tokens_total", "counter", "Tokens computed per stage (encode: image tokens)");
    for (int s = 0; s < MS_STAGE_COUNT; s++)
        ms_sbuf_addf(b, "modserve_stage_tokens_total{stage=\"%s\"} %llu\n", ms_stage_name((ms_stage)s),
                     (unsigned long long)st->stage[s].tokens);
    head(b, "modserve_batch_size", "histogram", "Batch sizes per stage (units per batch)");
    for (int s = 0; s < MS_STAGE_COUNT; s++) {
        const ms_stage_stats *ss = &st->stage[s];
        uint64_t cum = 0;
        for (int i = 0; i < MS_BATCH_HIST_BUCKETS - 1; i++) {
            cum += ss->hist[i];
            ms_sbuf_addf(b, "modserve_batch_size_bucket{stage=\"%s\",le=\"%d\"} %llu\n", ms_stage_name((ms_stage)s),
                         1 << i, (unsigned long long)cum);
        }
        ms_sbuf_addf(b, "modserve_batch_size_bucket{stage=\"%s\",le=\"+Inf\"} %llu\n", ms_stage_name((ms_stage)s),
                     (unsigned long long)ss->batches);
        ms_sbuf_addf(b, "modserve_batch_size_sum{stage=\"%s\"} %llu\n", ms_stage_name((ms_stage)s),
                     (unsigned long long)ss->items);
        ms_sbuf_addf(b, "modserve_batch_size_count{stage=\"%s\"} %llu\n", ms_stage_name((ms_stage)s),
                     (unsigned long long)ss->batches);
    }
    head(b, "modserve_kv_blocks_used", "gauge", "KV cache blocks in use over all devices");
    ms_sbuf_addf(b, "modserve_kv_blocks_used %d\n", st->kv_blocks_used);
    head(b, "modserve_kv_blocks_capacity", "gauge", "KV cache blocks over all devices");
    ms_sbuf_addf(b, "modserve_kv_blocks_capacity %d\n", st->kv_blocks_total);
    head(b, "modserve_requests_active", "gauge", "Requests accepted by the engine and not finished");
    ms_sbuf_addf(b, "modserve_requests_active %d\n", st->active);
    head(b, "modserve_engine_rejected_total", "counter", "Requests refused by admission control (503)");
    ms_sbuf_addf(b, "modserve_engine_rejected_total %llu\n", (unsigned long long)st->rejected);
    head(b, "modserve_engine_finished_total", "counter", "Requests finished by the engine, by reason");
    for (int r = MS_FINISH_STOP; r < MS_FINISH_COUNT; r++)
        ms_sbuf_addf(b, "modserve_engine_finished_total{reason=\"%s\"} %llu\n",
                     ms_finish_reason_name((ms_finish_reason)r), (unsigned long long)st->finished[r]);
    head(b, "modserve_preemptions_total", "counter", "Sequences preempted for KV space (recomputed)");
    ms_sbuf_addf(b, "modserve_preemptions_total %llu\n", (unsigned long long)st->preemptions);
    /* prefix cache, in prompt tokens as vLLM's prefix_cache_queries / _hits */
    head(b, "modserve_prefix_cache_queries_total", "counter", "Prompt tokens looked up in the prefix cache");
    ms_sbuf_addf(b, "modserve_prefix_cache_queries_total %llu\n", (unsigned long long)st->prefix_queried_tokens);
    head(b, "modserve_prefix_cache_hits_total", "counter", "Prompt tokens served from the prefix cache");
    ms_sbuf_addf(b, "modserve_prefix_cache_hits_total %llu\n", (unsigned long long)st->prefix_hit_tokens);
    head(b, "modserve_prefix_cache_hit_rate", "gauge", "Prefix cache hits / queries (tokens), 0 before any query");
    ms_sbuf_addf(b, "modserve_prefix_cache_hit_rate %.6f\n",
                 st->prefix_queried_tokens ? (double)st->prefix_hit_tokens / (double)st->prefix_queried_tokens : 0.0);
    head(b, "modserve_prefix_cache_evictions_total", "counter", "Cached KV blocks evicted (LRU) for new data");
    ms_sbuf_addf(b, "modserve_prefix_cache_evictions_total %llu\n", (unsigned long long)st->prefix_evictions);
    head(b, "modserve_kv_blocks_cached", "gauge",
         "KV blocks holding a cached prefix (in use or free), part of the capacity");
    ms_sbuf_addf(b, "modserve_kv_blocks_cached %d\n", st->kv_blocks_cached);
}

/* The image caches: hits, misses, cached bytes and evictions, by cache. */
static void cache_lines(ms_sbuf *b, const ms_engine_cache_stats *cs) {
    const ms_image_cache_stats *c[2] = {&cs->pixels, &cs->embeddings};
    const char *names[2] = {"pixels", "embeddings"};
    static const char *const counters[][2] = {
        {"modserve_image_cache_hits_total", "Images found in the cache (pixels: decode + resize skipped; embeddings: encode skipped)"},
        {"modserve_image_cache_misses_total", "Images looked up and not found"},
        {"modserve_image_cache_evictions_total", "Entries dropped to stay under the byte budget"},
    };
    for (int k = 0; k < 3; k++) {
        head(b, counters[k][0], "counter", counters[k][1]);
        for (int i = 0; i < 2; i++) {
            const uint64_t v[3] = {c[i]->hits, c[i]->misses, c[i]->evictions};
            ms_sbuf_addf(b, "%s{cache=\"%s\"} %llu\n", counters[k][0], names[i], (unsigned long long)v[k]);
        }
    }
    head(b, "modserve_image_cache_bytes", "gauge", "Bytes held by the cache's entries");
    for (int i = 0; i < 2; i++)
        ms_sbuf_addf(b, "modserve_image_cache_bytes{cache=\"%s\"} %zu\n", names[i], c[i]->bytes);
    head(b, "modserve_image_cache_capacity_bytes", "gauge", "The cache's byte budget (0: off)");
    for (int i = 0; i < 2; i++)
        ms_sbuf_addf(b, "modserve_image_cache_capacity_bytes{cache=\"%s\"} %zu\n", names[i], c[i]->budget);
    head(b, "modserve_image_cache_entries", "gauge", "Images in the cache");
    for (int i = 0; i < 2; i++)
        ms_sbuf_addf(b, "modserve_image_cache_entries{cache=\"%s\"} %lld\n", names[i], (long long)c[i]->entries);
}

void ms_metrics_autoscale_enable(ms_server_metrics *m, const ms_engine_stats *now) {
    pthread_mutex_lock(&m->mu);
    m->autoscale_on = true;
    for (int k = 0; k < MS_STAGE_COUNT; k++) m->autoscale_target[k] = now->stage[k].workers;
    pthread_mutex_unlock(&m->mu);
}

void ms_metrics_autoscale_decision(ms_server_metrics *m, ms_stage st, int32_t current, int32_t target) {
    pthread_mutex_lock(&m->mu);
    m->autoscale_decisions[st][target > current ? 0 : target < current ? 1 : 2]++;
    m->autoscale_target[st] = target;
    pthread_mutex_unlock(&m->mu);
}

static void autoscale_lines(ms_sbuf *b, const ms_server_metrics *m) {
    static const char *const dirs[3] = {"up", "down", "hold"};
    head(b, "modserve_autoscale_decisions_total", "counter", "Autoscale decisions by stage and direction");
    for (int k = 0; k < MS_STAGE_COUNT; k++)
        for (int d = 0; d < 3; d++)
            ms_sbuf_addf(b, "modserve_autoscale_decisions_total{stage=\"%s\",direction=\"%s\"} %llu\n",
                         ms_stage_name((ms_stage)k), dirs[d], (unsigned long long)m->autoscale_decisions[k][d]);
    head(b, "modserve_autoscale_target_workers", "gauge", "The autoscaler's last target pool size");
    for (int k = 0; k < MS_STAGE_COUNT; k++)
        ms_sbuf_addf(b, "modserve_autoscale_target_workers{stage=\"%s\"} %d\n", ms_stage_name((ms_stage)k),
                     m->autoscale_target[k]);
}

char *ms_metrics_render(ms_server_metrics *m, const ms_engine_stats *st, const ms_engine_cache_stats *caches,
                        bool ready) {
    ms_sbuf b = {0};
    head(&b, "modserve_ready", "gauge", "1 once the model is loaded");
    ms_sbuf_addf(&b, "modserve_ready %d\n", ready ? 1 : 0);
    pthread_mutex_lock(&m->mu);
    head(&b, "modserve_http_requests_total", "counter", "HTTP requests by endpoint and status code");
    for (int e = 0; e < MS_EP_COUNT; e++)
        for (int k = 0; k < MS_METRIC_CODES; k++) {
            if (!m->requests[e][k]) continue;
            char code[8];
            if (k < MS_METRIC_CODES - 1) snprintf(code, sizeof code, "%d", k_codes[k]);
            else snprintf(code, sizeof code, "other");
            ms_sbuf_addf(&b, "modserve_http_requests_total{endpoint=\"%s\",code=\"%s\"} %llu\n", k_endpoints[e], code,
                         (unsigned long long)m->requests[e][k]);
        }
    head(&b, "modserve_client_disconnects_total", "counter", "Generations cancelled because the client went away");
    ms_sbuf_addf(&b, "modserve_client_disconnects_total %llu\n", (unsigned long long)m->client_disconnects);
    head(&b, "modserve_prompt_tokens_total", "counter", "Prompt tokens of finished requests (images expanded)");
    ms_sbuf_addf(&b, "modserve_prompt_tokens_total %llu\n", (unsigned long long)m->prompt_tokens);
    head(&b, "modserve_generation_tokens_total", "counter", "Tokens generated by finished requests");
    ms_sbuf_addf(&b, "modserve_generation_tokens_total %llu\n", (unsigned long long)m->generation_tokens);
    head(&b, "modserve_time_to_first_token_seconds", "histogram", "Arrival to first output token");
    hist_lines(&b, "modserve_time_to_first_token_seconds", "", &m->ttft);
    head(&b, "modserve_time_per_output_token_seconds", "histogram", "Mean gap between output tokens per request");
    hist_lines(&b, "modserve_time_per_output_token_seconds", "", &m->tpot);
    head(&b, "modserve_e2e_request_latency_seconds", "histogram", "Arrival to finish");
    hist_lines(&b, "modserve_e2e_request_latency_seconds", "", &m->e2e);
    head(&b, "modserve_stage_wait_seconds", "histogram", "Time queued before a stage started");
    for (int s = 0; s < MS_STAGE_COUNT; s++) {
        char l[48];
        snprintf(l, sizeof l, "stage=\"%s\"", ms_stage_name((ms_stage)s));
        hist_lines(&b, "modserve_stage_wait_seconds", l, &m->stage_wait[s]);
    }
    head(&b, "modserve_stage_service_seconds", "histogram", "Stage start to stage end (decode: to the last token)");
    for (int s = 0; s < MS_STAGE_COUNT; s++) {
        char l[48];
        snprintf(l, sizeof l, "stage=\"%s\"", ms_stage_name((ms_stage)s));
        hist_lines(&b, "modserve_stage_service_seconds", l, &m->stage_service[s]);
    }
    if (m->autoscale_on) autoscale_lines(&b, m);
    pthread_mutex_unlock(&m->mu);
    if (st) engine_lines(&b, st);
    if (caches) cache_lines(&b, caches);
    return b.p;
}
