/*
 * The engine: the scheduler core behind one mutex, worker threads per pool that ask the
 * core for work, run it on their device (engine_exec.c) and report it done, and a
 * reaper thread that delivers on_done outside the lock. All model objects (backends,
 * weights, KV caches) are created here, once per device.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "llm/prompt.h"
#include "scheduler/engine_internal.h"

#define LOG "engine"

void ms_engine_options_default(ms_engine_options *o) {
    memset(o, 0, sizeof *o);
    o->device = "auto";
    o->mode = MS_MODE_DISAGG;
    o->encode_workers = o->prefill_workers = o->decode_workers = 1;
    o->preprocess_threads = 2;
    o->max_num_seqs = 64;
    o->max_num_batched_tokens = 2048;
    o->encode_max_batch_images = 8;
    o->block_size = 16;
    o->gpu_memory_utilization = 0.9f;
    o->max_queued_requests = 1024;
    o->max_images_per_request = 64;
    ms_image_limits_default(&o->image_limits);
    o->priority_aging_s = 2.0;
    o->short_prompt_tokens = 512;
    o->image_cache_bytes = o->embedding_cache_bytes = -1; /* defaults, see engine.h */
    o->enable_prefix_caching = true;
}

void ms_request_params_default(ms_request_params *p) {
    memset(p, 0, sizeof *p);
    p->max_tokens = 16;
    p->top_p = 1.0f;
}

bool ms_engine_mode_parse(const char *name, ms_engine_mode *out) {
    if (!strcmp(name, "disagg")) *out = MS_MODE_DISAGG;
    else if (!strcmp(name, "monolithic")) *out = MS_MODE_MONOLITHIC;
    else return false;
    return true;
}

const char *ms_engine_mode_name(ms_engine_mode m) {
    return m == MS_MODE_MONOLITHIC ? "monolithic" : "disagg";
}

bool ms_stage_parse(const char *name, ms_stage *out) {
    for (int s = 0; s < MS_STAGE_COUNT; s++)
        if (!strcmp(name, ms_stage_name((ms_stage)s))) {
            *out = (ms_stage)s;
            return true;
        }
    return false;
}

static double engine_clock(void *ctx) { return ms_time_now(); }

/* "0,1,3" -> ids; NULL or "" -> {0}. */
static ms_status parse_devices(const char *what, const char *list, int32_t *ids, int32_t *n,
                               ms_error *err) {
    *n = 0;
    if (!list || !*list) {
        ids[(*n)++] = 0;
        return MS_OK;
    }
    const char *p = list;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v >= MS_CORE_MAX_DEVICES || *n == MS_CORE_MAX_DEVICES)
            return ms_errorf(err, MS_ERR_INVALID, "--%s-devices \"%s\": expected indices 0..%d, comma separated",
                             what, list, MS_CORE_MAX_DEVICES - 1);
        ids[(*n)++] = (int32_t)v;
        p = end;
        if (*p == ',') p++;
        else if (*p) return ms_errorf(err, MS_ERR_INVALID, "--%s-devices \"%s\": unexpected '%c'", what, list, *p);
    }
    return MS_OK;
}

static ms_status device_open(ms_engine *e, const char *kind, int32_t idx, bool vision, bool llama,
                             ms_error *err) {
    eng_device *d = &e->dev[idx];
    if (!d->used) {
        d->be = ms_backend_create(kind ? kind : "auto", idx, e->o.cpu_threads, err);
        if (!d->be) return ms_error_wrap(err, "engine: device %d", idx);
        d->used = true;
        pthread_mutex_init(&d->copy_lock, NULL);
        d->copy_ctx = ms_ctx_create(d->be);
    }
    ms_status st = MS_OK;
    if (vision && !d->has_vision) {
        st = ms_vision_load(&e->cfg, e->weights, d->copy_ctx, &d->vision, err);
        if (st != MS_OK) return ms_error_wrap(err, "engine: loading the vision tower on device %d", idx);
        d->has_vision = true;
    }
    if (llama && !d->has_llama) {
        st = ms_llama_load(&e->cfg, e->weights, d->copy_ctx, &d->llama, err);
        if (st != MS_OK) return ms_error_wrap(err, "engine: loading the language model on device %d", idx);
        d->has_llama = true;
    }
    ms_ctx_sync(d->copy_ctx);
    ms_ctx_reset(d->copy_ctx);
    return MS_OK;
}

/* KV blocks per device when the options leave it to us. */
static int32_t kv_blocks_auto(ms_engine *e, int32_t max_model_len) {
    const ms_engine_options *o = &e->o;
    int32_t per_seq = (max_model_len + o->block_size - 1) / o->block_size;
    int64_t best = -1;
    for (int d = 0; d < MS_CORE_MAX_DEVICES; d++) {
        eng_device *dv = &e->dev[d];
        if (!dv->has_llama) continue;
        size_t bytes = ms_kv_block_bytes(&e->cfg.text, o->block_size, dv->be->act_dtype);
        int64_t n;
        if (dv->be->device == MS_DEVICE_CPU) {
            n = (int64_t)per_seq * o->max_num_seqs;
            int64_t cap = (int64_t)((1ull << 30) / bytes);
            if (cap < per_seq) cap = per_seq; /* always room for one full sequence */
            if (n > cap) n = cap;
        } else {
            size_t free_b = 0, total_b = 0;
            dv->be->ops->mem_info(dv->be, &free_b, &total_b);
            double budget = (double)total_b * o->gpu_memory_utilization - (double)(total_b - free_b);
            n = budget > 0 ? (int64_t)(budget / (double)bytes) : 0;
        }
        if (best < 0 || n < best) best = n;
    }
    if (best > INT32_MAX) best = INT32_MAX;
    return (int32_t)best;
}

static void *worker_main(void *arg);
static void *reaper_main(void *arg);

/* Starts threads for the core's active worker slots that have none (after create or a
 * resize). A slot's earlier thread that is leaving (it saw the slot retired) is joined
 * first: it no longer takes the lock, so joining under it is safe, and a retired slot
 * the core hands out again gets a fresh thread and context. A slot whose thread has
 * not yet seen its retirement keeps that thread. Locked. */
static void spawn_workers(ms_engine *e) {
    const ms_core_options *co = ms_core_options_of(e->core);
    for (int s = 0; s < MS_STAGE_COUNT; s++) {
        int32_t n = ms_core_worker_slots(e->core, (ms_stage)s);
        MS_CHECK(n <= ENG_MAX_WORKERS);
        for (int32_t i = 0; i < n; i++) {
            eng_worker *w = &e->workers[s][i];
            if (w->started && w->exiting) {
                pthread_join(w->thread, NULL);
                w->started = w->exiting = false;
            }
            if (w->started || ms_core_worker_retired(e->core, (ms_stage)s, i)) continue;
            w->e = e;
            w->pool = (ms_stage)s;
            w->id = i;
            w->device = co->n_devices[s] > 0 ? co->devices[s][i % co->n_devices[s]] : 0;
            if (s != MS_STAGE_PREPROCESS) {
                w->ctx = ms_ctx_create(e->dev[w->device].be);
                atomic_fetch_add(&e->live_contexts, 1);
            }
            atomic_fetch_add(&e->live_threads, 1);
            MS_CHECK(pthread_create(&w->thread, NULL, worker_main, w) == 0);
            w->started = true;
        }
    }
}

/* Per-pass scratch limit when the options leave it to us (see engine.h): on CUDA what
 * is free after the weights and KV caches, less a reserve (streams, BLAS workspaces),
 * on the device with the least; none on the CPU. Not divided among the workers: their
 * peaks rarely meet, and a pass bigger than the whole free memory is the one that can
 * never run. */
static size_t scratch_limit_auto(ms_engine *e) {
    size_t limit = SIZE_MAX;
    const size_t reserve = (size_t)512 << 20;
    for (int d = 0; d < MS_CORE_MAX_DEVICES; d++) {
        eng_device *dv = &e->dev[d];
        if (!dv->used || dv->be->device != MS_DEVICE_CUDA) continue;
        size_t free_b = 0, total_b = 0;
        dv->be->ops->mem_info(dv->be, &free_b, &total_b);
        size_t avail = free_b > 2 * reserve ? free_b - reserve : free_b / 2;
        /* the embedding cache fills this memory over time */
        size_t cache = (size_t)e->o.embedding_cache_bytes;
        avail = avail > 2 * cache ? avail - cache : avail / 2;
        if (avail < limit) limit = avail;
    }
    return limit;
}

ms_status ms_engine_create(const ms_engine_options *o, ms_engine **out, ms_error *err) {
    *out = NULL;
    if (!o->model_dir) return ms_errorf(err, MS_ERR_INVALID, "engine: no model folder given");
    ms_engine *e = ms_xcalloc(1, sizeof *e);
    e->o = *o;
    e->model_dir = ms_xstrdup(o->model_dir);
    e->o.model_dir = e->model_dir;
    /* the caller's strings are not kept */
    e->o.device = NULL;
    e->o.encode_devices = e->o.prefill_devices = e->o.decode_devices = NULL;
    pthread_mutex_init(&e->mu, NULL);
    atomic_init(&e->live_threads, 0);
    atomic_init(&e->live_contexts, 0);
    atomic_init(&e->scratch_underestimates, 0);
    atomic_init(&e->split_batches, 0);
    pthread_cond_init(&e->work_cv, NULL);
    pthread_cond_init(&e->done_cv, NULL);
    for (int s = 0; s < MS_STAGE_COUNT; s++) e->workers[s] = ms_xcalloc(ENG_MAX_WORKERS, sizeof(eng_worker));
    e->seed_state = (uint64_t)(ms_time_now() * 1e9) ^ 0x9e3779b97f4a7c15ull;

    ms_core_options co;
    ms_core_options_default(&co);
    co.mode = o->mode;
    co.clock = (ms_clock){engine_clock, NULL};
    co.workers[MS_STAGE_PREPROCESS] = o->preprocess_threads;
    co.workers[MS_STAGE_ENCODE] = o->encode_workers;
    co.workers[MS_STAGE_PREFILL] = o->prefill_workers;
    co.workers[MS_STAGE_DECODE] = o->decode_workers;
    co.block_size = o->block_size;
    co.max_num_seqs = o->max_num_seqs;
    co.max_num_batched_tokens = o->max_num_batched_tokens;
    co.encode_max_batch_images = o->encode_max_batch_images;
    co.max_queued_requests = o->max_queued_requests;
    co.priority_aging_s = o->priority_aging_s;
    co.short_prompt_tokens = o->short_prompt_tokens;
    co.prefix_caching = o->enable_prefix_caching;
    co.prefix_hash_bits = o->prefix_hash_bits;

    ms_status st = parse_devices("encode", o->encode_devices, co.devices[MS_STAGE_ENCODE],
                                 &co.n_devices[MS_STAGE_ENCODE], err);
    if (st == MS_OK) st = parse_devices("prefill", o->prefill_devices, co.devices[MS_STAGE_PREFILL],
                                        &co.n_devices[MS_STAGE_PREFILL], err);
    if (st == MS_OK) st = parse_devices("decode", o->decode_devices, co.devices[MS_STAGE_DECODE],
                                        &co.n_devices[MS_STAGE_DECODE], err);
    if (st == MS_OK) st = ms_llava_config_load(e->model_dir, &e->cfg, err);
    if (st == MS_OK) st = eng_eos_ids_build(e, err);
    if (st == MS_OK) st = ms_weights_open(e->model_dir, &e->weights, err);
    if (st != MS_OK) goto fail;
    e->image_tokens = e->cfg.image_seq_length;

    /* load the model on every device a pool uses: vision where images are encoded,
     * the decoder where prefill/decode run (monolithic: both on the LLM devices) */
    for (int s = MS_STAGE_ENCODE; s <= MS_STAGE_DECODE && st == MS_OK; s++) {
        bool mono = o->mode == MS_MODE_MONOLITHIC;
        if (mono && s != MS_STAGE_DECODE) continue;
        bool vision = s == MS_STAGE_ENCODE || mono, llama = s != MS_STAGE_ENCODE;
        for (int32_t i = 0; i < co.n_devices[s] && st == MS_OK; i++)
            st = device_open(e, o->device, co.devices[s][i], vision, llama, err);
    }
    if (st != MS_OK) goto fail;

    int32_t model_max = e->cfg.text.max_position_embeddings;
    co.max_model_len = o->max_model_len > 0 ? o->max_model_len : model_max;
    if (co.max_model_len > model_max) {
        st = ms_errorf(err, MS_ERR_INVALID, "engine: max_model_len %d exceeds the model's %d positions",
                       co.max_model_len, model_max);
        goto fail;
    }
    co.kv_blocks = o->kv_blocks > 0 ? o->kv_blocks : kv_blocks_auto(e, co.max_model_len);
    if ((int64_t)co.kv_blocks * co.block_size < co.max_model_len) {
        st = ms_errorf(err, MS_ERR_NOMEM, "engine: room for %d KV blocks of %d tokens per device, less "
                       "than one sequence of max_model_len %d (lower --max-model-len or raise "
                       "--gpu-memory-utilization)", co.kv_blocks, co.block_size, co.max_model_len);
        goto fail;
    }
    st = ms_core_create(&co, &e->core, err);
    if (st != MS_OK) goto fail;
    for (int d = 0; d < MS_CORE_MAX_DEVICES && st == MS_OK; d++)
        if (e->dev[d].has_llama)
            st = ms_kv_cache_create(e->dev[d].be, &e->cfg.text, co.kv_blocks, co.block_size,
                                    &e->dev[d].kv, err);
    if (st != MS_OK) goto fail;
    e->o.max_model_len = co.max_model_len;
    e->o.kv_blocks = co.kv_blocks;
    eng_caches_create(e);
    e->scratch_limit = o->scratch_limit_bytes > 0 ? o->scratch_limit_bytes : scratch_limit_auto(e);

    pthread_mutex_lock(&e->mu);
    spawn_workers(e);
    pthread_mutex_unlock(&e->mu);
    MS_CHECK(pthread_create(&e->reaper, NULL, reaper_main, e) == 0);
    e->started = true;
    if (o->mode == MS_MODE_MONOLITHIC)
        ms_log(MS_LOG_INFO, LOG, "monolithic mode, workers: %d preprocess, %d LLM (all stages); "
               "%d KV blocks of %d tokens per device", o->preprocess_threads, o->decode_workers,
               co.kv_blocks, co.block_size);
    else
        ms_log(MS_LOG_INFO, LOG, "disagg mode, workers: %d preprocess, %d encode, %d prefill, %d decode; "
               "%d KV blocks of %d tokens per device", o->preprocess_threads, o->encode_workers,
               o->prefill_workers, o->decode_workers, co.kv_blocks, co.block_size);
    *out = e;
    return MS_OK;
fail:
    ms_engine_destroy(e);
    return st;
}

/* ---- threads ---- */
static void *worker_main(void *arg) {
    eng_worker *w = arg;
    ms_engine *e = w->e;
    pthread_mutex_lock(&e->mu);
    while (!e->stop) {
        const ms_core_batch *b = ms_core_next_batch(e->core, w->pool, w->id);
        if (!b) {
            if (ms_core_worker_retired(e->core, w->pool, w->id)) {
                w->exiting = true; /* from here on the slot is the next spawn's to reuse */
                break;
            }
            pthread_cond_wait(&e->work_cv, &e->mu);
            continue;
        }
        pthread_mutex_unlock(&e->mu);
        eng_exec_batch(w, b);
        pthread_mutex_lock(&e->mu);
        ms_core_batch_done(e->core, b, w->results);
        pthread_cond_broadcast(&e->work_cv);
        pthread_cond_broadcast(&e->done_cv);
    }
    pthread_mutex_unlock(&e->mu);
    /* Without the lock: whoever joins this thread may hold it. */
    if (w->ctx) {
        ms_ctx_destroy(w->ctx);
        w->ctx = NULL;
        atomic_fetch_sub(&e->live_contexts, 1);
    }
    free(w->results);
    w->results = NULL;
    w->cap_results = 0;
    atomic_fetch_sub(&e->live_threads, 1);
    return NULL;
}

static void *reaper_main(void *arg) {
    ms_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        ms_core_finished f;
        if (ms_core_pop_finished(e->core, &f)) {
            pthread_mutex_unlock(&e->mu);
            eng_req *r = f.user;
            ms_request_result res;
            memset(&res, 0, sizeof res);
            res.finish = f.finish;
            res.status = f.status;
            if (f.status != MS_OK) {
                int failures = atomic_load(&r->n_failures);
                if (r->err_status != MS_OK && r->error[0] && failures > 1)
                    snprintf(res.error, sizeof res.error, "%.200s (and %d more failures)", r->error, failures - 1);
                else if (r->err_status != MS_OK && r->error[0])
                    snprintf(res.error, sizeof res.error, "%s", r->error);
                else snprintf(res.error, sizeof res.error, "request %llu: %s", (unsigned long long)f.id,
                              f.finish == MS_FINISH_CANCELLED ? "cancelled" : ms_status_name(f.status));
            }
            res.prompt_tokens = f.prompt_tokens;
            res.completion_tokens = f.completion_tokens;
            res.n_preemptions = f.n_preemptions;
            res.cached_tokens = f.cached_tokens;
            res.times = f.times;
            if (r->on_done) r->on_done(r->user, &res);
            eng_req_free(e, r);
            pthread_mutex_lock(&e->mu);
            e->undelivered--;
            pthread_cond_broadcast(&e->done_cv);
            /* freeing embeddings or a cancel may let a worker go on */
            pthread_cond_broadcast(&e->work_cv);
            continue;
        }
        if (e->stop && e->undelivered == 0) break;
        pthread_cond_wait(&e->done_cv, &e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ---- requests ---- */
void eng_req_free(ms_engine *e, eng_req *r) {
    eng_req_images_free(e, r);
    free(r->tokens);
    free(r->stop_ids);
    free(r);
}

/* The prefix cache's key of each expanded prompt position: the token id, or the key of
 * the image an image token belongs to (keys (n), images in prompt order). The image key
 * is the image cache's (eng_req_images_init hashed the bytes once): its independent
 * check hash mixed with the length, so the image cache's test hook that truncates its
 * bucket hash cannot make two images share KV blocks. */
static void prompt_keys(const ms_engine *e, const eng_req *r, int32_t n, const ms_request_desc *d,
                        uint64_t *keys) {
    const int32_t *tokens = r->tokens;
    int32_t seen = 0, T = e->image_tokens;
    uint64_t h = 0;
    for (int32_t i = 0; i < n; i++) {
        if (tokens[i] != e->cfg.image_token_index || d->n_images == 0) {
            keys[i] = (uint64_t)(uint32_t)tokens[i];
            continue;
        }
        if (seen % T == 0) {
            int32_t k = seen / T;
            MS_CHECK(k < d->n_images);
            h = r->img_key[k].check ^ (r->img_key[k].n_bytes * 0x9e3779b97f4a7c15ull);
        }
        keys[i] = MS_CORE_IMAGE_KEY(h);
        seen++;
    }
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

ms_status ms_engine_submit(ms_engine *e, const ms_request_desc *d, uint64_t *id, ms_error *err) {
    const ms_request_params *p = &d->params;
    /* refuse early, before any copy or image work */
    pthread_mutex_lock(&e->mu);
    const int32_t active = ms_core_active(e->core);
    const bool full = e->o.max_queued_requests > 0 && active >= e->o.max_queued_requests;
    if (full) ms_core_count_rejected(e->core); /* modserve_engine_rejected_total */
    pthread_mutex_unlock(&e->mu);
    if (full)
        return ms_errorf(err, MS_ERR_BUSY, "engine: %d requests in flight, try again later", active);
    if (p->max_tokens < 1 || p->min_tokens < 0 || p->n_stop_ids < 0 || p->n_stop_ids > 1024 ||
        p->priority < 0 || (p->n_stop_ids > 0 && !p->stop_ids) || d->n_images < 0 ||
        (d->n_images > 0 && !d->images))
        return ms_errorf(err, MS_ERR_INVALID, "engine: bad request parameters (max_tokens %d, "
                         "min_tokens %d, %d stop ids, priority %d, %d images)", p->max_tokens,
                         p->min_tokens, p->n_stop_ids, p->priority, d->n_images);
    if (d->n_images > e->o.max_images_per_request)
        return ms_errorf(err, MS_ERR_LIMIT, "engine: %d images, the limit is %d per request",
                         d->n_images, e->o.max_images_per_request);
    for (int32_t i = 0; i < d->n_images; i++)
        if (!d->images[i].bytes || d->images[i].n_bytes > e->o.image_limits.max_bytes)
            return ms_errorf(err, MS_ERR_LIMIT, "engine: image %d is %zu bytes, the limit is %zu", i,
                             d->images[i].n_bytes, e->o.image_limits.max_bytes);
    int32_t *expanded = NULL, n_exp = 0;
    ms_status st = ms_prompt_expand(&e->cfg, d->prompt, d->n_prompt, d->n_images, &expanded, &n_exp,
                                    NULL, err);
    if (st != MS_OK) return st;
    if ((int64_t)n_exp + p->max_tokens > e->o.max_model_len) {
        free(expanded);
        return ms_errorf(err, MS_ERR_LIMIT, "engine: prompt of %d tokens (images expanded) + max_tokens "
                         "%d exceeds max_model_len %d", n_exp, p->max_tokens, e->o.max_model_len);
    }
    eng_req *r = ms_xcalloc(1, sizeof *r);
    atomic_init(&r->err_claimed, false);
    atomic_init(&r->n_failures, 0);
    r->cap = n_exp + p->max_tokens;
    r->tokens = ms_xrealloc(expanded, (size_t)r->cap * sizeof *r->tokens);
    r->n_prompt = r->n_tokens = n_exp;
    r->image_tokens = e->image_tokens;
    eng_req_images_init(e, r, d); /* embedding cache hits need no preprocess or encode */
    r->params = *p;
    if (p->n_stop_ids > 0) {
        r->stop_ids = ms_xmalloc((size_t)p->n_stop_ids * sizeof *r->stop_ids);
        memcpy(r->stop_ids, p->stop_ids, (size_t)p->n_stop_ids * sizeof *r->stop_ids);
    }
    r->params.stop_ids = r->stop_ids;
    r->on_token = d->on_token;
    r->on_done = d->on_done;
    r->user = d->user;

    uint64_t *keys = NULL; /* computed outside the lock, copied by the core */
    if (e->o.enable_prefix_caching) {
        keys = ms_xmalloc((size_t)n_exp * sizeof *keys);
        prompt_keys(e, r, n_exp, d, keys);
    }
    ms_core_req_desc cd = {.n_prompt = n_exp, .n_images = r->n_encode, .image_tokens = e->image_tokens,
                           .max_tokens = p->max_tokens, .priority = p->priority, .user = r,
                           .token_keys = keys};
    pthread_mutex_lock(&e->mu);
    uint64_t seed = p->has_seed ? p->seed : splitmix(&e->seed_state);
    ms_sampler_init(&r->sampler, (ms_sample_params){p->temperature, p->top_k, p->top_p}, seed);
    uint64_t new_id = 0; /* r may be finished and freed as soon as the lock is released */
    st = ms_core_arrive(e->core, &cd, &new_id, err);
    r->id = new_id;
    if (st == MS_OK) {
        e->undelivered++;
        pthread_cond_broadcast(&e->work_cv);
    }
    pthread_mutex_unlock(&e->mu);
    free(keys);
    if (st != MS_OK) {
        eng_req_free(e, r);
        return st;
    }
    if (id) *id = new_id;
    return MS_OK;
}

void ms_engine_cancel(ms_engine *e, uint64_t id) {
    pthread_mutex_lock(&e->mu);
    ms_core_cancel(e->core, id);
    pthread_cond_broadcast(&e->done_cv);
    pthread_cond_broadcast(&e->work_cv);
    pthread_mutex_unlock(&e->mu);
}

ms_status ms_engine_resize(ms_engine *e, ms_stage stage, int32_t workers, ms_error *err) {
    pthread_mutex_lock(&e->mu);
    ms_status st = ms_core_resize(e->core, stage, workers, err);
    if (st == MS_OK) {
        spawn_workers(e);
        pthread_cond_broadcast(&e->work_cv);
    }
    pthread_mutex_unlock(&e->mu);
    return st;
}

void ms_engine_resources_get(ms_engine *e, ms_engine_resources *out) {
    pthread_mutex_lock(&e->mu);
    out->threads = atomic_load(&e->live_threads);
    out->contexts = atomic_load(&e->live_contexts);
    for (int s = 0; s < MS_STAGE_COUNT; s++) out->slots[s] = ms_core_worker_slots(e->core, (ms_stage)s);
    out->scratch_underestimates = atomic_load(&e->scratch_underestimates);
    out->split_batches = atomic_load(&e->split_batches);
    out->scratch_limit = e->scratch_limit;
    pthread_mutex_unlock(&e->mu);
}

void ms_engine_stats_get(ms_engine *e, ms_engine_stats *out) {
    pthread_mutex_lock(&e->mu);
    ms_core_stats_get(e->core, out);
    pthread_mutex_unlock(&e->mu);
}

const ms_llava_config *ms_engine_model_config(const ms_engine *e) { return &e->cfg; }
ms_engine_mode ms_engine_mode_of(const ms_engine *e) { return e->o.mode; }
int32_t ms_engine_max_model_len(const ms_engine *e) { return e->o.max_model_len; }

const char *ms_engine_backend_name(const ms_engine *e) {
    for (int d = 0; d < MS_CORE_MAX_DEVICES; d++)
        if (e->dev[d].used) return e->dev[d].be->name;
    return "none";
}

static void deadline_after(struct timespec *ts, double s) {
    clock_gettime(CLOCK_REALTIME, ts);
    double ns = (double)ts->tv_nsec + s * 1e9;
    ts->tv_sec += (time_t)(ns / 1e9);
    ts->tv_nsec = (long)(ns - (double)(time_t)(ns / 1e9) * 1e9);
}

void ms_engine_drain(ms_engine *e, double timeout_s) {
    pthread_mutex_lock(&e->mu);
    ms_core_close(e->core);
    double end = ms_time_now() + (timeout_s > 0 ? timeout_s : 0);
    while (e->undelivered > 0 && ms_time_now() < end) {
        struct timespec ts;
        deadline_after(&ts, 0.05);
        pthread_cond_timedwait(&e->done_cv, &e->mu, &ts);
    }
    ms_core_cancel_all(e->core);
    pthread_cond_broadcast(&e->done_cv);
    pthread_cond_broadcast(&e->work_cv);
    while (e->undelivered > 0) pthread_cond_wait(&e->done_cv, &e->mu);
    pthread_mutex_unlock(&e->mu);
}

void ms_engine_destroy(ms_engine *e) {
    if (!e) return;
    bool running = e->started;
    if (running) ms_engine_drain(e, 0);
    pthread_mutex_lock(&e->mu);
    e->stop = true;
    pthread_cond_broadcast(&e->work_cv);
    pthread_cond_broadcast(&e->done_cv);
    pthread_mutex_unlock(&e->mu);
    for (int s = 0; s < MS_STAGE_COUNT; s++) {
        if (!e->workers[s]) continue;
        for (int32_t i = 0; i < ENG_MAX_WORKERS; i++) {
            eng_worker *w = &e->workers[s][i];
            if (w->started) pthread_join(w->thread, NULL); /* the thread freed its context */
        }
        free(e->workers[s]);
    }
    if (running) pthread_join(e->reaper, NULL);
    ms_core_destroy(e->core);
    eng_caches_destroy(e); /* every request is freed: no reference is left */
    for (int d = 0; d < MS_CORE_MAX_DEVICES; d++) {
        eng_device *dv = &e->dev[d];
        if (!dv->used) continue;
        ms_kv_cache_free(dv->kv);
        if (dv->llama) ms_llama_free(dv->llama);
        if (dv->vision) ms_vision_free(dv->vision);
        ms_ctx_destroy(dv->copy_ctx);
        pthread_mutex_destroy(&dv->copy_lock);
        ms_backend_destroy(dv->be);
    }
    if (e->weights) ms_weights_close(e->weights);
    pthread_cond_destroy(&e->work_cv);
    pthread_cond_destroy(&e->done_cv);
    pthread_mutex_destroy(&e->mu);
    free(e->model_dir);
    free(e->eos_ids);
    free(e);
}
