/*
 * `modserve bench simulate`: a discrete-event simulation that drives the same scheduler
 * core as the server (scheduler/core.h) on a virtual clock. Arrivals come from the trace
 * (after selection), prompts are sized as the replayer sizes them (same image policy),
 * and a worker that gets a batch from the core is busy for the time the cost model
 * (profile.json) predicts; then the batch is reported done. The result is a
 * ms_bench_run, so the report is the replayer's.
 */
#ifndef MS_BENCH_SIMULATE_H
#define MS_BENCH_SIMULATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "bench/autoscale_capacity.h"
#include "bench/cost_model.h"
#include "bench/replay.h"
#include "bench/slo.h"
#include "scheduler/core.h"

typedef struct ms_sim_options {
    ms_core_options core;     /* workers, batching, KV; the clock is the simulator's */
    const ms_cost_model *cost;
    ms_image_policy policy;
    int32_t max_images;
    int32_t image_pool;       /* the replayer's --image-pool (0: its default, 16); with the
                                 selection's seed it names the images each request sends */
    ms_slo slo;
    double slo_factor;        /* --slo-factor: SLO = F x each request's latency alone (bench/slo.h); 0: off */
    int record_itl;           /* -1 auto (when the run's output tokens are < 50M), 0, 1 */
    const char *trace_path;
    ms_trace_select sel;
    /* Shared host (the CPU backend): every worker runs on the same shared_cores cores.
     * While the running batches want more threads than that, each progresses at
     * shared_cores / (threads wanted) of the speed the profile measured alone (processor
     * sharing). Encode and LLM workers want worker_threads each (0: shared_cores, as
     * `serve --threads 0`), preprocess one. 0 = off: each worker has its own device. */
    int32_t shared_cores, worker_threads;
    /* The server's embedding cache (--embedding-cache-images): an LRU of this many pool
     * images (the replayer's image ids: --image-pool, --seed). An image whose id is
     * cached when its request arrives is a hit: no preprocess, no encode (the core gets
     * only the misses, as the engine does); an image enters the cache when its encode
     * batch ends. 0 = off (default). */
    int32_t embedding_cache_images;
    /* Autoscaling (disagg only): every autoscale_interval_s of virtual time from the first
     * send, the policy sees each stage's last interval and the pools are resized to its
     * answer through ms_core_resize, as the server's controller would. NULL: fixed pools. */
    const ms_autoscale_config *autoscale;
    double autoscale_interval_s;
    /* Early stop (bench tune's pruning): when set, the run stops as soon as more than
     * *stop_misses_above requests have missed the SLO (refused at arrival, or finished
     * without meeting --goodput / --slo-factor: the attainment's test), so its attainment
     * is already below that of a run with that many misses; stats->cut_short is then set
     * and the run's metrics are partial. Read after every event: another thread may lower
     * it. NULL: run to the end. */
    const _Atomic int64_t *stop_misses_above;
} ms_sim_options;

/* A pool size change (autoscale), seconds from the first send. */
typedef struct ms_sim_scale_event {
    double t;
    int32_t stage, workers;
} ms_sim_scale_event;

/* One autoscale interval: its start (seconds from the first send), requests that arrived
 * per second during it, and the pool sizes decided at its end. */
typedef struct ms_sim_scale_tick {
    double t, arrival_rate;
    int32_t workers[MS_STAGE_COUNT];
} ms_sim_scale_tick;

typedef struct ms_sim_stats {
    bool per_image;           /* the profile's per-image costs matched the run's image pool */
    uint64_t events, batches;
    uint64_t rejected;        /* refused at arrival (busy or over the limits) */
    uint64_t stalled;         /* never finished (should be 0) */
    uint64_t image_hits, image_misses; /* embedding cache (--embedding-cache-images) */
    ms_core_stats end;        /* the core's statistics when the events ran out */
    double wall_s;            /* real time the simulation took */
    /* Worker-seconds of the GPU stages (encode, prefill, decode; monolithic: the LLM
     * pool): pool size x time from the first send to the last finish (a removed worker
     * finishing its last batch is not counted). */
    double worker_seconds;
    ms_sim_scale_event *scale_events; /* autoscale: every change (malloc'd) */
    int64_t n_scale_events;
    ms_sim_scale_tick *ticks;         /* autoscale: every interval (malloc'd) */
    int64_t n_ticks;
    bool cut_short;                   /* stopped by stop_misses_above: metrics are partial */
    int64_t missed;                   /* requests that missed the SLO when the run ended */
} ms_sim_stats;

void ms_sim_stats_free(ms_sim_stats *s);

ms_status ms_simulate_run(const ms_sim_options *o, const ms_trace_set *set, ms_bench_run *run, ms_sim_stats *stats,
                          ms_error *err);

/* Core flags shared by simulate and tune: --mode, --encode-workers, --prefill-workers,
 * --decode-workers, --preprocess-threads, --max-num-seqs, --max-num-batched-tokens,
 * --encode-max-batch-images, --kv-blocks, --block-size, --max-model-len,
 * --max-queued-requests, --priority-aging. Same return convention as
 * ms_trace_select_flag. */
/* The core options `modserve serve` runs with (its engine's defaults), for simulate and
 * tune; the KV pool stays the core's default (serve sizes it from the device's memory). */
void ms_sim_core_options_default(ms_core_options *c);
/* The context simulate runs with: --max-model-len when given (> 0), else the profile's
 * (the profiled engine's), else 4096 (profiles written before they recorded it). */
int32_t ms_sim_max_model_len(const ms_core_options *c, const ms_cost_model *cost);
int ms_sim_core_flag(ms_core_options *c, int argc, char **argv, int *i, ms_error *err);
extern const char ms_sim_core_help[];
/* --profile may be given up to MS_COST_MAX_PROFILES times: the cost model is their mean. */
typedef struct ms_profile_paths {
    const char *path[MS_COST_MAX_PROFILES];
    int n;
} ms_profile_paths;
/* Input flags shared by simulate and tune: --trace, --profile (added to *profiles),
 * --goodput, --max-images, --image-policy, --image-pool, --shared-cores,
 * --worker-threads. Same return convention. */
int ms_sim_input_flag(ms_sim_options *o, ms_profile_paths *profiles, int argc, char **argv, int *i, ms_error *err);

int ms_bench_simulate_main(int argc, char **argv);
int ms_bench_tune_main(int argc, char **argv);
int ms_bench_profile_main(int argc, char **argv); /* bench/profile.c: needs the engine */
int ms_bench_compare_main(int argc, char **argv); /* bench/cmd_compare.c: two reports side by side */

#endif
