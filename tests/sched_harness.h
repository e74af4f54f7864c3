/*
 * A deterministic driver for the scheduler core in tests: a virtual clock, workers that
 * take a fixed cost per batch, and a fake model that keeps a real KV store (token and
 * owner per slot) so that a wrong block table, a stolen block or a lost hand-off changes
 * the output. The next token is a hash of every token read back from the KV store, so
 * greedy outputs can be compared between runs (alone, with preemption, resized, ...).
 */
#ifndef MS_TEST_SCHED_HARNESS_H
#define MS_TEST_SCHED_HARNESS_H

#include "scheduler/core.h"

enum { SIM_MAX_REQS = 4096, SIM_MAX_TOKENS = 8192, SIM_MAX_WORKERS = 64 };

typedef struct sim_req {
    double at;                 /* arrival time */
    int32_t n_text;            /* text tokens (image tokens come on top) */
    int32_t n_images;
    int32_t max_tokens;
    int32_t priority;
    bool no_stop;              /* never report STOP (forced length) */
    bool fail_preprocess;      /* the "image" is bad */
    double cancel_at;          /* > 0: cancel at this time */
    uint32_t prompt_seed;      /* 0: index + 1 */
    int32_t diverge_at;        /* > 0: text tokens from this index on use diverge_seed */
    uint32_t diverge_seed;
    bool keys;                 /* pass token keys: prefix caching applies */
    uint32_t image_id[8];      /* content of image k (0: unique to this request) */
    /* filled by the run */
    uint64_t id;
    bool submitted, done;
    ms_core_finished fin;
    int32_t tokens[SIM_MAX_TOKENS]; /* prompt (expanded) then output */
    int32_t n_tokens;
    int32_t n_prompt;
    int32_t out[SIM_MAX_TOKENS];
    int32_t n_out;
    int32_t images_encoded;
    int32_t encoder_of[64];    /* which encoder worker ran each image */
    double image_done_at[64];
    int32_t max_prefill_batch_tokens;
} sim_req;

typedef struct sim_cost {
    double preprocess;         /* per request */
    double encode_per_image;
    double prefill_per_token;
    double decode_step;        /* per batch */
    double batch_overhead;
} sim_cost;

typedef struct sim_resize {
    double at;
    ms_stage stage;
    int32_t workers;
} sim_resize;

typedef struct sim {
    ms_core *core;
    double now;
    sim_cost cost;
    int32_t image_tokens;
    sim_req *reqs;
    int32_t n_reqs;
    sim_resize resizes[16];
    int32_t n_resizes;
    /* per stage, worker slot: the batch out and when it ends */
    const ms_core_batch *out[MS_STAGE_COUNT][SIM_MAX_WORKERS];
    double until[MS_STAGE_COUNT][SIM_MAX_WORKERS];
    /* fake KV: owner request index + 1 and token per slot, per device */
    int32_t *kv_owner[4], *kv_token[4];
    int32_t kv_slots;
    int32_t max_prefill_tokens_seen;
    uint64_t *kv_ctx[4];       /* hash of the keys of positions [0, p] of the writer */
    int32_t kv_errors;         /* reads that found another prefix's data (or, for requests
                                  without keys, another request's data) */
    int32_t shared_reads;      /* cached positions read that another request wrote */
    int32_t gather_errors;     /* prefill of an image token before its image was encoded */
    int32_t copies;            /* cross-device hand-offs executed */
    int64_t batches;
} sim;

/* Default options: clock reads s->now; kv sized from opts (caller fills the rest). */
void sim_init(sim *s, ms_core_options *o, sim_req *reqs, int32_t n);
/* Runs until every request is done (or max_time); returns false on timeout. */
bool sim_run(sim *s, double max_time);
void sim_free(sim *s);
/* Runs each request alone in a fresh core (large KV, one worker per stage) and checks
 * the outputs equal those of `reqs`; returns mismatches. */
int32_t sim_compare_alone(const sim_req *reqs, int32_t n, int32_t image_tokens);
/* A request list with a fixed seed: mixed text-only and image requests. */
void sim_make_mixed(sim_req *reqs, int32_t n, uint64_t seed, double rate);

#endif
