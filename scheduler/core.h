/*
 * The scheduler core: every decision of the stage-aware engine (routing, batching,
 * priorities, KV block accounting, preemption, resizing, cancellation), as pure logic
 * over events on an injected clock. It never sleeps, blocks, locks or does I/O and holds
 * no model object: only counts (tokens, image tokens) and KV block ids as numbers.
 *
 * Two drivers use it (see docs/scheduler.md):
 * - the engine (scheduler/engine.c): worker threads call ms_core_next_batch under the
 *   engine's mutex, run the batch on their backend outside it, then ms_core_batch_done;
 * - the simulator (bench/): a discrete-event loop with a virtual clock; a "worker"
 *   takes the time a cost model predicts for the batch, then reports it done.
 *
 * A request's way through (disagg mode):
 *   arrive --(has images)--> PREPROCESS (one request per batch: decode + resize)
 *          --> ENCODE (unit = image; a request's images are spread over the encoder
 *              workers by least pending image tokens, each worker batches up to
 *              encode_max_batch_images, and the request waits until all are done)
 *          --> PREFILL (token budget, chunked prefill, priority with aging; the chunk
 *              that reaches the last known token samples the first output token)
 *          --> DECODE (continuous batching: per worker a running set of up to
 *              max_num_seqs sequences, one token each per batch; KV blocks on demand)
 *   text-only requests go straight from arrive to PREFILL.
 * Monolithic mode: PREPROCESS as above, then each LLM worker (the DECODE pool) admits
 * requests first come first served and runs all their stages itself: an ENCODE batch of
 * its requests' images when some wait, else one LLM batch mixing decode tokens of its
 * running sequences and prefill chunks under the token budget (as vLLM does).
 *
 * KV blocks: one pool of block ids per device. A request owns a block table in the pool
 * of the device its KV lives on. Prefill -> decode on the same device hands over the
 * table (no copy); to a decode worker on another device the core allocates a table there
 * and the batch item carries a copy order (ms_core_item.copy_*); the source blocks are
 * freed when that batch is done. When a pool runs out, the youngest (latest arrival)
 * request holding blocks there and not in a running batch is preempted: its blocks are
 * freed and it goes back to PREFILL to recompute prompt + generated tokens (vLLM's
 * recompute preemption); a decode sequence with no younger victim preempts itself.
 * Prefix cache (core_prefix.c): blocks are reference counted; full prompt blocks of
 * requests that carry token keys stay registered under a chained hash after use (free
 * but cached, evicted LRU), and a request starting its prefill takes its longest cached
 * prefix (at most n_prompt - 1 tokens) and computes from there.
 *
 * Lifetimes: a request is referenced by at most one running batch at a time. Cancel
 * removes it from every queue and frees its blocks at once, unless a running batch
 * holds it: then it is finished as cancelled when that batch is reported done (its
 * blocks may still be written by the running forward pass). Finished requests wait in
 * a completion list (ms_core_pop_finished) so the driver can deliver results and free
 * its own per-request data (embeddings, images) outside any lock.
 */
#ifndef MS_SCHED_CORE_H
#define MS_SCHED_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/ms_common.h"

typedef enum ms_engine_mode {
    MS_MODE_DISAGG = 0,  /* separate encode / prefill / decode pools (default) */
    MS_MODE_MONOLITHIC,  /* each LLM worker runs all stages of its requests, FCFS */
} ms_engine_mode;

typedef enum ms_stage {
    MS_STAGE_PREPROCESS = 0, /* CPU pool: image decode + resize/crop */
    MS_STAGE_ENCODE,         /* vision tower + projector, unit = image */
    MS_STAGE_PREFILL,        /* prompt (chunks) into the KV cache, first token */
    MS_STAGE_DECODE,         /* one token per sequence per batch; monolithic: all LLM work */
    MS_STAGE_COUNT
} ms_stage;

const char *ms_stage_name(ms_stage s); /* "preprocess", "encode", "prefill", "decode" */

typedef enum ms_finish_reason {
    MS_FINISH_NONE = 0,  /* still running */
    MS_FINISH_STOP,      /* end-of-sequence or a stop token */
    MS_FINISH_LENGTH,    /* max_tokens or max_model_len reached */
    MS_FINISH_CANCELLED, /* cancelled by the caller (or by drain) */
    MS_FINISH_ERROR,     /* a stage failed for this request (bad image, ...) */
    MS_FINISH_COUNT
} ms_finish_reason;

const char *ms_finish_reason_name(ms_finish_reason r); /* "stop", "length", ... */

/* Timestamps of one request on the core's clock (seconds); 0 = did not happen.
 * For a request preempted and recomputed, prefill_* and decode_* keep the first pass. */
typedef struct ms_request_times {
    double arrival;
    double preprocess_queued, preprocess_start, preprocess_end;
    double encode_queued, encode_start, encode_end; /* first image started, last done */
    double prefill_queued, prefill_start, prefill_end;
    double decode_queued, decode_start;
    double first_token, last_token;
    double finished;
} ms_request_times;

/* ---- statistics ---- */
enum { MS_BATCH_HIST_BUCKETS = 10 }; /* batch sizes 1, 2, 3-4, 5-8, ..., 257-512, >512 */

typedef struct ms_stage_stats {
    int32_t workers;           /* workers in the pool now (removed ones still finishing excluded) */
    int32_t busy;              /* workers running a batch */
    int32_t queued;            /* waiting units: requests (preprocess, prefill), images
                                  (encode), sequences waiting for a decode slot (decode) */
    int32_t running;           /* decode: sequences in running sets; others: units in flight */
    uint64_t batches;          /* batches finished */
    uint64_t items;            /* units in those batches (images, chunks, sequences) */
    uint64_t tokens;           /* tokens computed (prefill/decode) or image tokens (encode) */
    int32_t last_batch;        /* size of the last batch finished */
    int32_t max_batch;
    uint64_t hist[MS_BATCH_HIST_BUCKETS];
} ms_stage_stats;

typedef struct ms_core_stats {
    ms_stage_stats stage[MS_STAGE_COUNT];
    int32_t kv_blocks_used;    /* over all devices */
    int32_t kv_blocks_total;
    int32_t active;            /* accepted and not yet finished */
    uint64_t submitted;        /* accepted by ms_core_arrive */
    uint64_t rejected;         /* refused by admission control (MS_ERR_BUSY) */
    uint64_t finished[MS_FINISH_COUNT];
    uint64_t preemptions;
    /* prefix cache (see ms_core_options.prefix_caching), over all devices */
    uint64_t prefix_queried_tokens;  /* prompt tokens of requests looked up */
    uint64_t prefix_hit_tokens;      /* of those, served from cached blocks */
    uint64_t prefix_evictions;       /* cached blocks taken back for new data */
    uint64_t prefix_hash_collisions; /* hash matches refused: other content or prefix */
    int32_t kv_blocks_cached;        /* blocks registered in the cache (in use or free) */
} ms_core_stats;

/* Batch size -> histogram bucket (0 for 1, 1 for 2, 2 for 3-4, ...). */
int ms_batch_hist_bucket(int32_t n);

/* ---- configuration ---- */
typedef struct ms_clock {
    double (*now)(void *ctx); /* seconds, never decreasing */
    void *ctx;
} ms_clock;

enum { MS_CORE_MAX_DEVICES = 16 };

typedef struct ms_core_options {
    ms_engine_mode mode;
    ms_clock clock;                        /* required */
    int32_t workers[MS_STAGE_COUNT];       /* initial pool sizes (monolithic: DECODE only,
                                              plus PREPROCESS) */
    /* Worker w of stage s runs on devices[s][w % n_devices[s]] (n_devices 0: device 0).
     * Device ids are < MS_CORE_MAX_DEVICES; they select the KV pool. */
    int32_t devices[MS_STAGE_COUNT][MS_CORE_MAX_DEVICES];
    int32_t n_devices[MS_STAGE_COUNT];
    int32_t kv_blocks;                     /* blocks per device pool */
    int32_t block_size;                    /* tokens per block */
    int32_t max_num_seqs;                  /* decode running set per worker; seqs per prefill batch */
    int32_t max_num_batched_tokens;        /* prefill (monolithic: LLM) batch token budget */
    int32_t encode_max_batch_images;       /* images per encode batch */
    int32_t max_queued_requests;           /* admission: active requests limit (0 = none) */
    int32_t max_model_len;                 /* prompt + output tokens per request */
    double priority_aging_s;               /* see ms_core_arrive: priority penalty unit */
    int32_t short_prompt_tokens;           /* text tokens a "short" image request may have
                                              beside one image: ms_core_large_prompt_tokens */
    /* Prefix caching (default on): full prompt blocks of requests that carry token_keys
     * stay cached (LRU) after use, and a request reuses its longest cached prefix. */
    bool prefix_caching;
    int32_t prefix_hash_bits;              /* test hook: keep the low 1..63 bits of block
                                              hashes (forces collisions); 0 = all 64 */
} ms_core_options;

/* Defaults: disagg, 1 worker per stage (2 preprocess), device 0, block 16, 4096
 * blocks, 256 seqs, 2048 batched tokens, 16 images, 1024 queued, model len 4096,
 * aging 2 s, short prompt 512 (text beside one image), prefix caching on. The clock is
 * left NULL (the caller must set it). */
void ms_core_options_default(ms_core_options *o);
/* The prompt length (tokens, images expanded) above which a request with images is
 * "large" for prefill priority (see ms_core_arrive): one image of the model
 * (image_tokens) plus short_prompt_tokens, at most half of max_model_len. So a
 * one-image prompt with a short text is "short" for every model (LLaVA-1.5: 576 + 512
 * = 1088 of 4096; tiny: 64 + 512). Text-only requests are never large. */
int32_t ms_core_large_prompt_tokens(const ms_core_options *o, int32_t image_tokens);

typedef struct ms_core ms_core;

/* Checks the options (tier 2: returns MS_ERR_INVALID naming the bad field). */
ms_status ms_core_create(const ms_core_options *o, ms_core **out, ms_error *err);
void ms_core_destroy(ms_core *c);
double ms_core_now(const ms_core *c);

/* ---- events ---- */
typedef struct ms_core_req_desc {
    int32_t n_prompt;          /* expanded prompt tokens (image tokens included) */
    int32_t n_images;
    int32_t image_tokens;      /* tokens one image becomes (same for every image) */
    int32_t max_tokens;        /* output limit (>= 1) */
    int32_t priority;          /* 0 normal; larger waits longer (vLLM style), >= 0 */
    bool skip_preprocess;      /* images are already decoded (simulator, tests) */
    void *user;                /* driver's per-request data, handed back in items */
    /* NULL (no prefix caching for this request), or (n_prompt) the content of each
     * prompt position: the token id, or MS_CORE_IMAGE_KEY(image byte hash) at an image
     * token. Copied by ms_core_arrive. */
    const uint64_t *token_keys;
} ms_core_req_desc;

/* The key of an image token position: the image's 64-bit byte hash with the top bit
 * set, so it never equals a token id. */
#define MS_CORE_IMAGE_KEY(image_hash) ((uint64_t)(image_hash) | (1ull << 63))
/* 64-bit FNV-1a of the bytes (seeded), finalised with splitmix's mixer: the block hash
 * of the prefix cache and the engine's image byte hash. */
uint64_t ms_core_hash_bytes(const void *data, size_t n, uint64_t seed);

/* A new request. MS_ERR_BUSY when max_queued_requests requests are active,
 * MS_ERR_LIMIT when n_prompt + 1 exceeds max_model_len or the KV pool, MS_ERR_INVALID
 * for negative counts. Prefill order: by "deadline" = time queued + aging_s * (priority
 * + (large ? 1 : 0)), large = images and a prompt over ms_core_large_prompt_tokens,
 * so short and text-only requests pass large image requests, and any request passes
 * everything that arrives aging_s * penalty later than it: nothing starves. Monolithic: by arrival only (FCFS). */
ms_status ms_core_arrive(ms_core *c, const ms_core_req_desc *d, uint64_t *id, ms_error *err);

/* One unit of work in a batch. Pointers stay valid until the batch is reported done. */
typedef struct ms_core_item {
    uint64_t id;
    void *user;
    bool is_prefill;           /* LLM items: a prefill chunk (else a decode token) */
    int32_t image;             /* ENCODE: image index in the request; else -1 */
    int32_t pos0;              /* LLM: first position of the chunk (tokens [0,pos0) cached) */
    int32_t n_tokens;          /* LLM: tokens in the chunk; ENCODE: image tokens */
    int32_t n_known;           /* LLM: prompt + tokens generated so far */
    bool samples;              /* LLM: the chunk ends at n_known: sample one new token */
    int32_t device;            /* device (KV pool) of the block table */
    const int32_t *block_table;/* LLM: blocks covering positions [0, pos0 + n_tokens) */
    int32_t n_blocks;
    /* Cross-device hand-off: before running, copy the first n_copy blocks of
     * copy_src (pool copy_device) into block_table[0..n_copy). n_copy 0: none. */
    int32_t copy_device;
    const int32_t *copy_src;
    int32_t n_copy;
} ms_core_item;

typedef struct ms_core_batch {
    ms_stage stage;            /* PREPROCESS, ENCODE, PREFILL (has prefill chunks) or DECODE */
    ms_stage pool;             /* the worker's pool (monolithic: DECODE for every batch) */
    int32_t worker;
    int32_t device;
    int32_t n_items;
    ms_core_item *items;
    int32_t n_tokens;          /* sum of item n_tokens (encode: image tokens) */
    double start;
} ms_core_batch;

/* Work for free worker `worker` of pool `stage`, or NULL when it has none now. The
 * batch is owned by the core until ms_core_batch_done; a worker has at most one.
 * A worker that was removed by a resize and has nothing left gets NULL and
 * ms_core_worker_retired() turns true. */
const ms_core_batch *ms_core_next_batch(ms_core *c, ms_stage stage, int32_t worker);

/* What the driver reports per item, in item order. */
typedef struct ms_core_item_result {
    ms_status status;          /* not MS_OK: the request ends with MS_FINISH_ERROR */
    ms_finish_reason finish;   /* LLM items that sampled: STOP ends it, NONE goes on
                                  (the core applies max_tokens / max_model_len itself) */
} ms_core_item_result;

/* The batch ran; results has batch->n_items entries (NULL: all MS_OK / NONE). */
void ms_core_batch_done(ms_core *c, const ms_core_batch *b, const ms_core_item_result *results);

/* Cancels a request wherever it is (no effect on unknown or finished ids). */
void ms_core_cancel(ms_core *c, uint64_t id);

/* Sets a pool's size (>= 1 for pools in use, >= 0 otherwise). New workers take retired
 * slots first (lowest id first; the driver must be done with that slot's old worker
 * or let it go on as the new one), then ids after the existing ones; worker w runs on
 * the stage's device list[w % n] either way. Removed workers
 * (the highest ids) take no new work; their queued images (encode) are handed to the
 * others and their decode running set goes back to the decode queue; a batch in
 * flight finishes normally. Returns MS_ERR_INVALID for a bad size. */
ms_status ms_core_resize(ms_core *c, ms_stage stage, int32_t workers, ms_error *err);
/* Worker slots of the pool (ids 0..n-1): active, removed and retired ones. */
int32_t ms_core_worker_slots(const ms_core *c, ms_stage stage);
/* True when the worker was removed by a resize and has finished its last batch. */
bool ms_core_worker_retired(const ms_core *c, ms_stage stage, int32_t worker);
/* True when worker could start a batch now (has queued or running work); cheap. */
bool ms_core_has_work(const ms_core *c, ms_stage stage, int32_t worker);
/* False when no worker of the stage has work (ms_core_has_work false for each); O(1),
 * so a caller polling many idle workers (the simulator, after every event) skips a
 * stage with nothing queued. True says only "ask each worker". */
bool ms_core_stage_may_have_work(const ms_core *c, ms_stage stage);

/* Stop accepting (ms_core_arrive returns MS_ERR_BUSY). */
void ms_core_close(ms_core *c);
/* Cancels every active request (drain timeout, shutdown). */
void ms_core_cancel_all(ms_core *c);

/* A finished request (completed, cancelled or failed), oldest first; the core has
 * freed everything it held for it. Returns false when none. */
typedef struct ms_core_finished {
    uint64_t id;
    void *user;
    ms_finish_reason finish;
    ms_status status;          /* MS_OK, MS_ERR_CANCELLED or the failing item's status */
    int32_t prompt_tokens;
    int32_t completion_tokens;
    int32_t n_preemptions;
    int32_t cached_tokens;     /* prompt tokens served from the prefix cache (first pass) */
    ms_request_times times;
} ms_core_finished;
bool ms_core_pop_finished(ms_core *c, ms_core_finished *out);

void ms_core_stats_get(const ms_core *c, ms_core_stats *out);
int32_t ms_core_active(const ms_core *c);
/* Counts a request refused before it reached ms_core_arrive (the engine's early
 * admission check), so stats.rejected holds every 503. */
void ms_core_count_rejected(ms_core *c);
int32_t ms_core_block_size(const ms_core *c);
int32_t ms_core_kv_blocks(const ms_core *c); /* per device pool */
const ms_core_options *ms_core_options_of(const ms_core *c);
/* Free blocks of one device's pool (cached blocks no request holds included). */
int32_t ms_core_kv_free(const ms_core *c, int32_t device);

#endif
