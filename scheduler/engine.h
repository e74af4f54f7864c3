/*
 * The stage-aware engine: the public, thread-safe C API the HTTP server, `modserve run`
 * and the tests drive. It wraps the scheduler core (scheduler/core.h) with a mutex and
 * condition variables, and runs worker threads per pool:
 *   preprocess (CPU threads: image decode + resize/crop),
 *   encode (vision tower + projector), prefill and decode (the Llama decoder),
 * each LLM/encoder worker bound to a device with its own ms_ctx (stream + scratch).
 * Weights are loaded once per device and shared by the workers on it; one paged KV
 * cache per device. See docs/scheduler.md for the policies.
 *
 * Callbacks run on engine threads, never under the engine's lock: they may call
 * ms_engine_cancel, ms_engine_stats_get and ms_engine_submit, must not block for long
 * (they delay the batch of every other request on that worker), and must not call
 * ms_engine_drain or ms_engine_destroy.
 */
#ifndef MS_SCHED_ENGINE_H
#define MS_SCHED_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "encoder/image.h"
#include "encoder/image_cache.h"
#include "kernels/ms_common.h"
#include "llm/config.h"
#include "scheduler/core.h"

typedef struct ms_engine ms_engine;

typedef struct ms_engine_options {
    const char *model_dir;         /* Hugging Face LLaVA folder (required) */
    const char *device;            /* "cpu", "cuda" or "auto" (default "auto") */
    int cpu_threads;               /* CPU backend threads, <= 0: all cores */
    ms_engine_mode mode;           /* MS_MODE_DISAGG (default) or MS_MODE_MONOLITHIC */
    /* Pool sizes. Monolithic mode uses decode_workers LLM workers (on decode_devices),
     * each running encode, prefill and decode of its requests; encode_workers and
     * prefill_workers are ignored there. */
    int32_t encode_workers, prefill_workers, decode_workers; /* default 1 each */
    int32_t preprocess_threads;    /* default 2 */
    /* Device index lists, e.g. "0,1": worker w of a pool runs on list[w % n]. NULL or
     * "" = "0". Weights and a KV cache are loaded once per index. On the CPU backend
     * each index is a separate CPU "device" (own weights copy and KV cache), which
     * exercises the cross-device hand-off; use one index to share them. */
    const char *encode_devices, *prefill_devices, *decode_devices;
    int32_t max_num_seqs;          /* decode running set per worker (default 64) */
    int32_t max_num_batched_tokens;/* prefill token budget per batch (default 2048) */
    int32_t encode_max_batch_images; /* default 8 */
    int32_t block_size;            /* KV tokens per block (default 16) */
    int32_t kv_blocks;             /* per device; 0 = from gpu_memory_utilization (CUDA)
                                      or enough for max_num_seqs * max_model_len capped
                                      at 1 GiB, at least one sequence (CPU) */
    float gpu_memory_utilization;  /* share of device memory for weights + KV (0.9) */
    int32_t max_queued_requests;   /* active requests before MS_ERR_BUSY (default 1024) */
    int32_t max_model_len;         /* prompt + output tokens; 0 = the model's
                                      max_position_embeddings */
    int32_t max_images_per_request;/* default 64 */
    ms_image_limits image_limits;  /* default ms_image_limits_default */
    double priority_aging_s;       /* default 2.0, see ms_core_arrive */
    int32_t short_prompt_tokens;   /* default 512 */
    /* Scratch (activation) bytes one forward pass of a worker may take, by the engine's
     * upper-bound estimate. A batch over it runs in passes of fewer items; an item over
     * it alone (a prompt chunk, one image) fails with an error naming this limit
     * instead of the device running out mid-pass. 0 = auto: none on the CPU; on CUDA
     * the memory free after the weights and KV caches, less 512 MiB (the least of the
     * devices). Workers' passes that each fit may still not fit together. */
    size_t scratch_limit_bytes;
    /* Image caches (docs/encoder.md, "Image caches"), keyed by the encoded bytes; 0
     * disables one, < 0 = its default. Pixels: resized + cropped images on the host
     * (a hit skips decode and resize; default 512 MiB). Embeddings: vision-tower
     * outputs on the device that computed them (a hit skips preprocess and encode;
     * default 2 GiB on CUDA, 256 MiB on the CPU). */
    int64_t image_cache_bytes;
    int64_t embedding_cache_bytes;
    /* Prefix caching (default on, vLLM's --enable-prefix-caching): the KV of full prompt
     * blocks stays cached after a request, keyed by its token ids and image byte hashes,
     * and a request with the same prefix reuses it (see docs/scheduler.md). */
    bool enable_prefix_caching;
    int32_t prefix_hash_bits;      /* test hook: block hashes cut to this many bits (0: 64) */
} ms_engine_options;

void ms_engine_options_default(ms_engine_options *o);

typedef struct ms_request_params {
    int32_t max_tokens;            /* >= 1 */
    int32_t min_tokens;            /* EOS and stop ids are ignored before this many */
    bool ignore_eos;               /* never stop on an EOS id (ms_engine_eos_ids; trace
                                      replay forces lengths); stop_ids still stop */
    float temperature;             /* <= 0: greedy */
    float top_p;                   /* >= 1: off */
    int32_t top_k;                 /* <= 0: off */
    uint64_t seed;                 /* used when has_seed; else drawn per request */
    bool has_seed;
    int32_t priority;              /* >= 0; larger waits longer (vLLM semantics) */
    const int32_t *stop_ids;       /* extra stop token ids (copied by submit) */
    int32_t n_stop_ids;
    /* NULL, or room for vocab_size floats that receive the logits of the last prompt
     * position, as the model computed them (before min_tokens masking and sampling).
     * Written once, on a worker thread, before the first token's on_token; must stay
     * valid until on_done. Costs nothing when NULL (`modserve run --dump-logits`). */
    float *prompt_logits;
} ms_request_params;

/* Greedy, max_tokens 16, no seed, priority 0. */
void ms_request_params_default(ms_request_params *p);

typedef struct ms_request_result {
    ms_finish_reason finish;
    ms_status status;              /* MS_OK, MS_ERR_CANCELLED, or why it failed */
    char error[256];               /* message when status is not MS_OK */
    int32_t prompt_tokens;         /* after image expansion */
    int32_t completion_tokens;
    int32_t n_preemptions;
    int32_t cached_tokens;         /* prompt tokens served from the prefix cache */
    ms_request_times times;        /* on ms_time_now()'s clock */
} ms_request_result;

typedef struct ms_image_input {
    const uint8_t *bytes;          /* encoded PNG or JPEG; copied by submit */
    size_t n_bytes;
} ms_image_input;

/* A generated token, on a worker thread, in order (index 0, 1, ...). */
typedef void (*ms_token_fn)(void *user, int32_t token, int32_t index);
/* Exactly once per accepted request, after its last token. */
typedef void (*ms_done_fn)(void *user, const ms_request_result *result);

typedef struct ms_request_desc {
    const int32_t *prompt;         /* token ids; the model's image token id appears once
                                      per image and is expanded by the engine */
    int32_t n_prompt;
    const ms_image_input *images;  /* in the order of the image tokens */
    int32_t n_images;
    ms_request_params params;
    ms_token_fn on_token;          /* may be NULL */
    ms_done_fn on_done;            /* may be NULL */
    void *user;
} ms_request_desc;

/* Loads the model on every device the pools use, creates the KV caches and starts
 * the workers. Errors name what failed (model folder, device, memory). */
ms_status ms_engine_create(const ms_engine_options *o, ms_engine **out, ms_error *err);

/* Checks and queues a request; on MS_OK *id is its handle and on_done will be called.
 * Fails without calling anything: MS_ERR_BUSY when the engine is full or draining
 * (checked before any image is decoded), MS_ERR_INVALID (token id out of range, image
 * token count differs from n_images, bad params), MS_ERR_LIMIT (too many images, image
 * bytes over the limit, prompt + max_tokens over max_model_len). */
ms_status ms_engine_submit(ms_engine *e, const ms_request_desc *d, uint64_t *id, ms_error *err);

/* Cancels a request: it leaves every queue and its KV blocks are freed at once (or when
 * the batch running it ends); on_done follows with MS_FINISH_CANCELLED. Its image
 * embeddings and images, like every request's, are freed on the engine's reaper
 * thread right after its on_done returns. Unknown or finished ids are ignored. */
void ms_engine_cancel(ms_engine *e, uint64_t id);

/* Resizes a pool while serving (MS_STAGE_PREPROCESS, ENCODE, PREFILL, DECODE). A removed
 * worker finishes its running batch and hands back its queued work; nothing is lost.
 * Its thread then exits and frees its context (stream, scratch, BLAS handle). New
 * workers take retired slots first (so resizing never runs out of slots), then new
 * ones; a slot's device is list[slot % n] of the pool's device list. */
ms_status ms_engine_resize(ms_engine *e, ms_stage stage, int32_t workers, ms_error *err);

/* What the engine holds for its workers now (leak checks, tests). */
typedef struct ms_engine_resources {
    int32_t threads;           /* worker threads not yet exited */
    int32_t contexts;          /* worker device contexts not yet freed */
    int32_t slots[MS_STAGE_COUNT]; /* core worker slots per pool (active + retired) */
    int32_t scratch_underestimates; /* passes that used more scratch than estimated */
    int32_t split_batches;     /* batches run in several passes (scratch limit) */
    size_t scratch_limit;      /* bytes per pass, SIZE_MAX when none */
} ms_engine_resources;
void ms_engine_resources_get(ms_engine *e, ms_engine_resources *out);

typedef ms_core_stats ms_engine_stats;

/* The image caches' counters (hits and misses count images looked up). */
typedef struct ms_engine_cache_stats {
    ms_image_cache_stats pixels, embeddings;
} ms_engine_cache_stats;
void ms_engine_cache_stats_get(ms_engine *e, ms_engine_cache_stats *out);
void ms_engine_stats_get(ms_engine *e, ms_engine_stats *out);

const ms_llava_config *ms_engine_model_config(const ms_engine *e);
/* The ids that end a request unless ignore_eos (and that min_tokens masks): every
 * eos_token_id of config.json / generation_config.json, the tokenizer's eos_token, and
 * <|im_end|> when the folder's chat template is ChatML or Qwen2 (vLLM's rule). */
const int32_t *ms_engine_eos_ids(const ms_engine *e, int32_t *n);
/* The backend name of the first device the engine uses ("cpu", "cuda"). */
const char *ms_engine_backend_name(const ms_engine *e);
ms_engine_mode ms_engine_mode_of(const ms_engine *e);
/* Prompt + output tokens a request may have (the option, or the model's positions). */
int32_t ms_engine_max_model_len(const ms_engine *e);

/* Stops accepting (submit returns MS_ERR_BUSY), lets in-flight requests finish for up
 * to timeout_s seconds, then cancels the rest and waits for their on_done. */
void ms_engine_drain(ms_engine *e, double timeout_s);

/* Drains with timeout 0 (cancels everything), stops the workers, frees all. */
void ms_engine_destroy(ms_engine *e);

/* "disagg" / "monolithic" <-> enum; false for an unknown name. */
bool ms_engine_mode_parse(const char *name, ms_engine_mode *out);
const char *ms_engine_mode_name(ms_engine_mode m);
/* "preprocess" | "encode" | "prefill" | "decode" -> stage; false if unknown. */
bool ms_stage_parse(const char *name, ms_stage *out);

#endif
