/*
 * Private structures of the engine, shared by engine.c (API, threads, lifecycle) and
 * engine_exec.c (running a batch of the core on a backend).
 */
#ifndef MS_SCHED_ENGINE_INTERNAL_H
#define MS_SCHED_ENGINE_INTERNAL_H

#include <pthread.h>

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

/* The engine's side of a request: the data the core only counts. Touched by one batch
 * at a time (the core guarantees it), so no lock is needed for its fields. */
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
    ms_status err_status;
    char error[256];
} eng_req;

typedef struct eng_worker {
    ms_engine *e;
    ms_stage pool;
    int32_t id;
    int32_t device;
    ms_ctx *ctx;               /* NULL for preprocess workers */
    pthread_t thread;
    bool started;
    /* scratch reused between batches */
    ms_core_item_result *results;
    int32_t cap_results;
} eng_worker;

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
};

/* engine_exec.c: runs b on w's device; fills w->results; calls on_token. */
void eng_exec_batch(eng_worker *w, const ms_core_batch *b);
void eng_req_free(ms_engine *e, eng_req *r);
/* engine_stop.c: fills e->eos_ids from the config and the folder's tokenizer. */
ms_status eng_eos_ids_build(ms_engine *e, ms_error *err);

#endif
