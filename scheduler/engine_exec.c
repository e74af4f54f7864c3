/*
 * Running one batch of the core on a worker's device: preprocess (decode + resize +
 * crop on the CPU), encode (vision tower, embeddings kept per image on the encoder's
 * device), and LLM batches (prefill chunks and decode tokens in one ms_llama_forward,
 * then sampling). Hand-offs: embeddings are gathered onto the prefill device (a device
 * copy on the same device, through the host across devices); KV blocks move by table
 * ownership on one device, and by a block copy through the op table across devices.
 * Runs without the engine lock: the core guarantees one batch per request at a time.
 */
#include <math.h>
#include <string.h>

#include "scheduler/engine_internal.h"

static void results_reset(eng_worker *w, int32_t n) {
    if (w->cap_results < n) {
        w->cap_results = n * 2;
        w->results = ms_xrealloc(w->results, (size_t)w->cap_results * sizeof *w->results);
    }
    for (int32_t i = 0; i < n; i++) w->results[i] = (ms_core_item_result){MS_OK, MS_FINISH_NONE};
}

static void item_fail(eng_worker *w, int32_t i, eng_req *r, ms_status st, const char *what, const ms_error *err) {
    w->results[i].status = st;
    r->err_status = st;
    snprintf(r->error, sizeof r->error, "%.40s: %.200s", what, err->msg);
}

static void exec_preprocess(eng_worker *w, const ms_core_batch *b) {
    ms_engine *e = w->e;
    for (int32_t i = 0; i < b->n_items; i++) {
        eng_req *r = b->items[i].user;
        for (int32_t k = 0; k < r->n_images; k++) {
            ms_error err = {0};
            ms_image_u8 img = {0};
            ms_status st = ms_image_decode(r->img_bytes[k], r->img_len[k], &e->o.image_limits, &img, &err);
            if (st == MS_OK) st = ms_image_resize_crop(&img, &e->cfg.image, &r->crops[k], &err);
            ms_image_free(&img);
            free(r->img_bytes[k]);
            r->img_bytes[k] = NULL;
            if (st != MS_OK) {
                char what[32];
                snprintf(what, sizeof what, "image %d", k);
                item_fail(w, i, r, st, what, &err);
                break;
            }
        }
    }
}

static void exec_encode(eng_worker *w, const ms_core_batch *b) {
    ms_engine *e = w->e;
    eng_device *dv = &e->dev[w->device];
    int32_t n = b->n_items;
    ms_image_u8 *crops = ms_xmalloc((size_t)n * sizeof *crops);
    for (int32_t i = 0; i < n; i++) {
        eng_req *r = b->items[i].user;
        crops[i] = r->crops[b->items[i].image];
    }
    ms_error err = {0};
    ms_tensor pixels = ms_vision_pixels(w->ctx, dv->vision, crops, n); /* act[n,3,H,W] */
    ms_tensor emb;                                                     /* act[n*T, hidden] */
    ms_status st = ms_vision_encode(w->ctx, dv->vision, &pixels, &emb, &err);
    for (int32_t i = 0; i < n; i++) {
        eng_req *r = b->items[i].user;
        int32_t k = b->items[i].image;
        if (st != MS_OK) {
            item_fail(w, i, r, st, "encoding images", &err);
            continue;
        }
        int32_t T = r->image_tokens;
        MS_CHECK(ms_tensor_rows(&emb) == (int64_t)n * T);
        int64_t shape[2] = {T, ms_tensor_cols(&emb)};
        ms_error aerr = {0};
        ms_status ast = ms_backend_tensor(dv->be, dv->be->act_dtype, 2, shape, &r->embeds[k], &aerr);
        if (ast != MS_OK) {
            item_fail(w, i, r, ast, "keeping image embeddings", &aerr);
            continue;
        }
        ms_tensor rows = ms_tensor_row_view(&emb, (int64_t)i * T, T); /* act[T, hidden] */
        ms_op_copy(w->ctx, &r->embeds[k], &rows);
        r->embed_dev[k] = w->device;
    }
    ms_ctx_sync(w->ctx);
    ms_ctx_reset(w->ctx);
    for (int32_t i = 0; i < n; i++) { /* the crop is not needed once encoded */
        eng_req *r = b->items[i].user;
        if (w->results[i].status == MS_OK) ms_image_free(&r->crops[b->items[i].image]);
    }
    free(crops);
}

/* dst (on w's device) = src (on device src_dev), through the host when they differ. */
static void copy_across(eng_worker *w, ms_tensor *dst, const ms_tensor *src, int32_t src_dev) {
    if (src_dev == w->device) {
        ms_op_copy(w->ctx, dst, src);
        return;
    }
    eng_device *sd = &w->e->dev[src_dev];
    void *host = ms_xmalloc(ms_tensor_nbytes(src));
    pthread_mutex_lock(&sd->copy_lock);
    ms_op_download(sd->copy_ctx, host, src);
    ms_ctx_sync(sd->copy_ctx);
    pthread_mutex_unlock(&sd->copy_lock);
    ms_op_upload(w->ctx, dst, host);
    ms_ctx_sync(w->ctx);
    free(host);
}

/* Cross-device hand-off: blocks copy_src[i] of the source cache -> block_table[i]. */
static void copy_kv_blocks(eng_worker *w, const ms_core_item *it) {
    ms_kv_cache *src = w->e->dev[it->copy_device].kv, *dst = w->e->dev[w->device].kv;
    for (int32_t l = 0; l < dst->n_layers; l++)
        for (int kv = 0; kv < 2; kv++) {
            ms_tensor *st = kv ? &src->v[l] : &src->k[l], *dt = kv ? &dst->v[l] : &dst->k[l];
            int64_t flat_s[2] = {src->n_blocks, ms_tensor_numel(st) / src->n_blocks};
            int64_t flat_d[2] = {dst->n_blocks, ms_tensor_numel(dt) / dst->n_blocks};
            ms_tensor s2 = ms_tensor_reshape(st, 2, flat_s); /* [n_blocks, bs*Hkv*D] */
            ms_tensor d2 = ms_tensor_reshape(dt, 2, flat_d);
            for (int32_t b = 0; b < it->n_copy; b++) {
                ms_tensor sb = ms_tensor_row_view(&s2, it->copy_src[b], 1);
                ms_tensor db = ms_tensor_row_view(&d2, it->block_table[b], 1);
                copy_across(w, &db, &sb, it->copy_device);
            }
        }
}

static int32_t count_image_tokens(const ms_engine *e, const int32_t *ids, int32_t n) {
    int32_t c = 0;
    for (int32_t i = 0; i < n; i++) c += ids[i] == e->cfg.image_token_index;
    return c;
}

/* Below min_tokens the end-of-sequence and stop ids are masked out of sampling (-inf
 * logit), as vLLM and transformers' min_new_tokens do, rather than emitted. */
static void mask_token(ms_ctx *ctx, ms_tensor *logits, int32_t row, int32_t tok) {
    int64_t vocab = logits->shape[1];
    if (tok < 0 || tok >= vocab) return;
    int64_t one[1] = {1};
    ms_tensor cell = ms_tensor_make(MS_DTYPE_F32, 1, one,
                                    (float *)logits->data + (int64_t)row * vocab + tok,
                                    logits->device, logits->device_index); /* f32[1] */
    ms_op_fill(ctx, &cell, -INFINITY);
}

static void mask_until_min_tokens(ms_ctx *ctx, ms_tensor *logits, int32_t row, const eng_req *r,
                                  const ms_engine *e) {
    if (r->n_tokens - r->n_prompt >= r->params.min_tokens) return;
    if (!r->params.ignore_eos)
        for (int32_t i = 0; i < e->n_eos_ids; i++) mask_token(ctx, logits, row, e->eos_ids[i]);
    for (int32_t i = 0; i < r->params.n_stop_ids; i++) mask_token(ctx, logits, row, r->params.stop_ids[i]);
}

static bool is_stop(const eng_req *r, int32_t tok, int32_t generated, const ms_engine *e) {
    if (generated < r->params.min_tokens) return false;
    if (!r->params.ignore_eos)
        for (int32_t i = 0; i < e->n_eos_ids; i++)
            if (tok == e->eos_ids[i]) return true;
    for (int32_t i = 0; i < r->params.n_stop_ids; i++)
        if (tok == r->params.stop_ids[i]) return true;
    return false;
}

static void exec_llm(eng_worker *w, const ms_core_batch *b) {
    ms_engine *e = w->e;
    eng_device *dv = &e->dev[w->device];
    int32_t n = b->n_items;
    int32_t hidden = e->cfg.text.hidden_size;
    ms_llama_seq *seqs = ms_xcalloc((size_t)n, sizeof *seqs);
    ms_tensor *embeds = ms_xcalloc((size_t)n, sizeof *embeds);
    for (int32_t i = 0; i < n; i++) {
        const ms_core_item *it = &b->items[i];
        eng_req *r = it->user;
        MS_CHECK(it->device == w->device && it->n_known == r->n_tokens);
        if (it->n_copy > 0) copy_kv_blocks(w, it);
        ms_llama_seq *s = &seqs[i];
        s->tokens = r->tokens + it->pos0;
        s->n_tokens = it->n_tokens;
        s->pos0 = it->pos0;
        s->block_table = it->block_table;
        s->n_blocks = (it->pos0 + it->n_tokens + e->o.block_size - 1) / e->o.block_size;
        MS_CHECK(s->n_blocks <= it->n_blocks);
        int32_t prompt_end = it->pos0 + it->n_tokens < r->n_prompt ? it->pos0 + it->n_tokens : r->n_prompt;
        if (r->n_images > 0 && it->pos0 < r->n_prompt &&
            count_image_tokens(e, r->tokens + it->pos0, prompt_end - it->pos0) > 0) {
            /* gather this request's image embeddings: act[n_images * T, hidden] */
            int32_t T = r->image_tokens;
            embeds[i] = ms_ctx_tensor_2d(w->ctx, dv->be->act_dtype, (int64_t)r->n_images * T, hidden);
            for (int32_t k = 0; k < r->n_images; k++) {
                ms_tensor rows = ms_tensor_row_view(&embeds[i], (int64_t)k * T, T);
                copy_across(w, &rows, &r->embeds[k], r->embed_dev[k]);
            }
            s->image_embeds = &embeds[i];
            s->image_row0 = count_image_tokens(e, r->tokens, it->pos0);
        }
    }
    ms_error err = {0};
    ms_tensor logits; /* f32[n, vocab] */
    ms_status st = ms_llama_forward(w->ctx, dv->llama, dv->kv, seqs, n, &logits, &err);
    if (st != MS_OK) {
        for (int32_t i = 0; i < n; i++) item_fail(w, i, b->items[i].user, st, "running the model", &err);
    } else {
        ms_sample_params *params = ms_xcalloc((size_t)n, sizeof *params);
        float *uniforms = ms_xcalloc((size_t)n, sizeof *uniforms);
        int32_t *ids = ms_xcalloc((size_t)n, sizeof *ids);
        for (int32_t i = 0; i < n; i++) {
            eng_req *r = b->items[i].user;
            if (!b->items[i].samples) continue; /* greedy row, discarded */
            if (r->params.prompt_logits && r->n_tokens == r->n_prompt) { /* first sample */
                ms_tensor row = ms_tensor_row_view(&logits, i, 1); /* f32[1, vocab] */
                ms_op_download(w->ctx, r->params.prompt_logits, &row); /* before the mask */
            }
            params[i] = r->sampler.params;
            uniforms[i] = ms_sampler_uniform(&r->sampler);
            mask_until_min_tokens(w->ctx, &logits, i, r, e);
        }
        int64_t shape[1] = {n};
        ms_tensor out = ms_ctx_tensor(w->ctx, MS_DTYPE_I32, 1, shape); /* i32[n] */
        ms_op_sample(w->ctx, &out, &logits, params, uniforms);
        ms_op_download(w->ctx, ids, &out);
        ms_ctx_sync(w->ctx);
        for (int32_t i = 0; i < n; i++) {
            eng_req *r = b->items[i].user;
            if (!b->items[i].samples) continue;
            MS_CHECK(r->n_tokens < r->cap);
            int32_t index = r->n_tokens - r->n_prompt;
            r->tokens[r->n_tokens++] = ids[i];
            if (r->on_token) r->on_token(r->user, ids[i], index);
            if (is_stop(r, ids[i], index + 1, e)) w->results[i].finish = MS_FINISH_STOP;
        }
        free(params);
        free(uniforms);
        free(ids);
    }
    ms_ctx_reset(w->ctx);
    free(seqs);
    free(embeds);
}

void eng_exec_batch(eng_worker *w, const ms_core_batch *b) {
    results_reset(w, b->n_items);
    switch (b->stage) {
    case MS_STAGE_PREPROCESS: exec_preprocess(w, b); break;
    case MS_STAGE_ENCODE: exec_encode(w, b); break;
    default: exec_llm(w, b); break;
    }
}
