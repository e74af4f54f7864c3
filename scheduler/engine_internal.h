/*
 * Private structures of the engine, shared by engine.c (API, threads, lifecycle) and
 * engine_exec.c (running a batch of the core on a backend).
 */
#ifndef MS_SCHED_ENGINE_INTERNAL_H
#define MS_SCHED_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "encoder/vision.h"
#include "llm/kv_cache.h"
#include "llm/llama.h"
#include "llm/sampler.h"
#include "llm/weights.h"
#include "scheduler/engine.h"

/* One device: a backend, the weights loaded on it (shared by its workers) and its KV
 * cache. The KV cache's own block pool is not used: the core hands out block ids. */
typedef struct eng_device {
    bool used;
    bool has_vision, has_llama;
    ms_backend *be;
    ms_vision *vision;
    ms_llama *llama;
    ms_kv_cache *kv;
    pthread_mutex_t copy_lock; /* guards copy_ctx (cross-device KV / embedding copies) */
    ms_ctx *copy_ctx;
} eng_device;

/* The engine's side of a request: the data the core only counts. One LLM or preprocess
 * batch at a time holds a request (the core guarantees it), but its images may be in
 * several encode batches at once, on different workers: those touch only their own
 * image's slots (crops[k], embeds[k], embed_dev[k]), and a failure is recorded
 * through eng_req_fail, where the first one wins (atomic claim) and later ones are
 * only counted. The reaper reads the error after the core finished the request,
 * under the engine lock (which orders it after every batch). */
typedef struct eng_req {
    uint64_t id;
    int32_t *tokens;           /* (cap) expanded prompt, then generated tokens */
    int32_t n_prompt, n_tokens, cap;
    int32_t n_images;
    int32_t image_tokens;      /* rows per image */
    uint8_t **img_bytes;       /* (n_images) encoded copies, freed after preprocessing */
    size_t *img_len;
    ms_image_u8 *crops;        /* (n_images) resized + cropped, freed once encoded */
    ms_tensor *embeds;         /* (n_images) [image_tokens, hidden] on embed_dev */
    int32_t *embed_dev;
    ms_request_params params;
    int32_t *stop_ids;
    ms_sampler sampler;
    ms_token_fn on_token;
    ms_done_fn on_done;
    void *user;
    atomic_bool err_claimed;   /* a failure has taken err_status / error */
    atomic_int n_failures;     /* failures reported (the first one is in error) */
    ms_status err_status;
    char error[256];
} eng_req;

typedef struct eng_worker {
    ms_engine *e;
    ms_stage pool;
    int32_t id;
    int32_t device;
    ms_ctx *ctx;               /* NULL for preprocess workers; freed by the thread on exit */
    pthread_t thread;
    bool started;              /* a thread was created and not yet joined */
    bool exiting;              /* (engine lock) the thread saw its slot retired and is
                                  leaving without taking the lock again: join it */
    /* scratch reused between batches */
    ms_core_item_result *results;
    int32_t cap_results;
} eng_worker;

/* Core worker slots per pool: the core reuses a retired slot before adding one, so this
 * bounds the workers alive at once, not the resizes. */
enum { ENG_MAX_WORKERS = 1024 };

struct ms_engine {
    ms_engine_options o;
    char *model_dir;
    ms_llava_config cfg;
    ms_weights *weights;
    eng_device dev[MS_CORE_MAX_DEVICES];
    ms_core *core;
    pthread_mutex_t mu;
    pthread_cond_t work_cv;    /* workers: something changed in the core */
    pthread_cond_t done_cv;    /* reaper: a request finished; drain: one was delivered */
    bool started;              /* threads are running */
    bool stop;                 /* workers and reaper exit */
    eng_worker *workers[MS_STAGE_COUNT]; /* (ENG_MAX_WORKERS) by core worker id */
    pthread_t reaper;
    uint64_t undelivered;      /* accepted, on_done not yet returned */
    uint64_t seed_state;
    int32_t image_tokens;
    int32_t *eos_ids;          /* (n_eos_ids) ids that end a request (engine_stop.c) */
    int32_t n_eos_ids;
    size_t scratch_limit;      /* per worker context, bytes; SIZE_MAX = none */
    atomic_int live_threads;   /* worker threads not yet exited */
    atomic_int live_contexts;  /* worker ms_ctx not yet destroyed */
    atomic_int scratch_underestimates; /* passes whose scratch use beat the estimate */
    atomic_int split_batches;  /* batches run in more than one pass */
};

/* engine_exec.c: runs b on w's device; fills w->results; calls on_token. */
void eng_exec_batch(eng_worker *w, const ms_core_batch *b);
void eng_req_free(ms_engine *e, eng_req *r);
/* The 64-bit hash of an image's encoded bytes that keys its positions in the prefix
 * cache (two different images never share KV blocks). */
uint64_t eng_image_hash(const uint8_t *bytes, size_t n);
/* engine_stop.c: fills e->eos_ids from the config and the folder's tokenizer. */
ms_status eng_eos_ids_build(ms_engine *e, ms_error *err);
/* Records why r failed: the first failure of a request keeps its message, later ones
 * (its other images' encode batches, concurrently) are only counted. Thread-safe. */
void eng_req_fail(eng_req *r, ms_status st, const char *what, const char *msg);

/* engine_scratch.c: upper bounds of the scratch (ms_ctx arena bytes) one forward pass
 * takes, mirroring the allocations of llm/llama.c, encoder/vision.c and the backends'
 * kernel workspaces (CUDA: paged-attention partials, sampling sort, im2col).
 * A piece is a set of LLM chunks run in one ms_llama_forward. */
typedef struct eng_llm_piece_shape {
    int32_t nseq, n_tokens;    /* sequences and tokens (sum of chunk lengths) */
    int32_t max_blocks;        /* longest block table */
    int32_t cont_groups;       /* runs of consecutive chunks that continue a sequence */
    int64_t image_rows;        /* image embedding rows gathered (sum over chunks) */
    bool samples;              /* some row is sampled (not only greedy rows) */
} eng_llm_piece_shape;
size_t eng_scratch_llm(const ms_engine *e, const ms_backend *be, const eng_llm_piece_shape *s);
size_t eng_scratch_encode(const ms_engine *e, const ms_backend *be, int32_t n_images);

/* Test hooks (NULL in production; set before ms_engine_create). The token hook may
 * replace the token sampled at output index `index` of a request before it is recorded
 * and streamed; the batch hook runs on the worker before each batch (a test can hold
 * a batch there to make batches overlap). */
typedef int32_t (*eng_token_hook)(uint64_t request_id, int32_t index, int32_t sampled);
extern eng_token_hook eng_test_token_hook;
typedef void (*eng_batch_hook)(const ms_core_batch *b);
extern eng_batch_hook eng_test_batch_hook;

#endif
