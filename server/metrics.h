/*
 * Server metrics in Prometheus' text format (GET /metrics): HTTP requests by endpoint
 * and status, request latencies (TTFT, time per output token, end to end, per-stage
 * wait and service) as histograms fed from each finished request's stage timestamps,
 * and the engine's live state (queues, busy workers, batch sizes, KV blocks).
 */
#ifndef MS_SERVER_METRICS_H
#define MS_SERVER_METRICS_H

#include <pthread.h>
#include <stdint.h>

#include "scheduler/engine.h"

enum { MS_EP_CHAT, MS_EP_COMPLETIONS, MS_EP_MODELS, MS_EP_HEALTH, MS_EP_METRICS, MS_EP_ADMIN, MS_EP_OTHER, MS_EP_COUNT };
enum { MS_METRIC_CODES = 12, MS_LAT_BUCKETS = 16 };

typedef struct ms_latency_hist {
    uint64_t bucket[MS_LAT_BUCKETS]; /* non-cumulative counts per upper bound */
    uint64_t count;
    double sum;
} ms_latency_hist;

typedef struct ms_server_metrics {
    pthread_mutex_t mu;
    uint64_t requests[MS_EP_COUNT][MS_METRIC_CODES];
    ms_latency_hist ttft, tpot, e2e;
    ms_latency_hist stage_wait[MS_STAGE_COUNT], stage_service[MS_STAGE_COUNT];
    uint64_t prompt_tokens, generation_tokens;
    uint64_t client_disconnects;
    /* serve --autoscale: decisions per stage and direction (up, down, hold), the last
     * target per stage */
    bool autoscale_on;
    uint64_t autoscale_decisions[MS_STAGE_COUNT][3];
    int32_t autoscale_target[MS_STAGE_COUNT];
} ms_server_metrics;

void ms_server_metrics_init(ms_server_metrics *m);
void ms_server_metrics_destroy(ms_server_metrics *m);
void ms_metrics_count_request(ms_server_metrics *m, int endpoint, int http_status);
/* A finished generation: its latencies and token counts. */
void ms_metrics_observe(ms_server_metrics *m, const ms_request_result *r);
void ms_metrics_count_disconnect(ms_server_metrics *m);
/* Autoscaling on: the target gauges start at the pools' sizes now. */
void ms_metrics_autoscale_enable(ms_server_metrics *m, const ms_engine_stats *now);
/* One controller decision for a stage: from `current` workers to `target`. */
void ms_metrics_autoscale_decision(ms_server_metrics *m, ms_stage st, int32_t current, int32_t target);
/* The exposition text (malloc'd); st and caches NULL while the model loads. */
char *ms_metrics_render(ms_server_metrics *m, const ms_engine_stats *st, const ms_engine_cache_stats *caches,
                        bool ready);

#endif
