/*
 * Running one batch of the core on a worker's device: preprocess (decode + resize +
 * crop on the CPU), encode (vision tower, embeddings kept per image on the encoder's
 * device), and LLM batches (prefill chunks and decode tokens in one ms_llama_forward,
 * then sampling). Hand-offs: embeddings are gathered onto the prefill device (a device
 * copy on the same device, through the host across devices); KV blocks move by table
 * ownership on one device, and by a block copy through the op table across devices.
 *
 * A batch runs as one pass unless it must be split: when its scratch estimate
 * (engine_scratch.c) is over the worker's limit it runs in passes of fewer items (a
 * single item over the limit fails with an error naming the limit), and a recompute
 * chunk whose generated tokens hold the image token id runs its prompt part and its
 * generated part in separate passes (image features go to prompt positions only).
 *
 * Runs without the engine lock: one LLM or preprocess batch holds a request at a
 * time; encode batches of one request may run at once (see eng_req).
 */
#include <math.h>
#include <string.h>

#include "kernels/arena.h"
#include "scheduler/engine_internal.h"

#define LOG "engine"

eng_token_hook eng_test_token_hook;
eng_batch_hook eng_test_batch_hook;

static void results_reset(eng_worker *w, int32_t n) {
    if (w->cap_results < n) {
        w->cap_results = n * 2;
        w->results = ms_xrealloc(w->results, (size_t)w->cap_results * sizeof *w->results);
    }
    for (int32_t i = 0; i < n; i++) w->results[i] = (ms_core_item_result){MS_OK, MS_FINISH_NONE};
}

void eng_req_fail(eng_req *r, ms_status st, const char *what, const char *msg) {
    atomic_fetch_add(&r->n_failures, 1);
    if (atomic_exchange(&r->err_claimed, true)) return; /* an earlier failure keeps its message */
    r->err_status = st;
    snprintf(r->error, sizeof r->error, "%.40s: %.200s", what, msg);
}

static void item_fail(eng_worker *w, int32_t i, eng_req *r, ms_status st, const char *what, const char *msg) {
    w->results[i].status = st;
    eng_req_fail(r, st, what, msg);
}

/* "12.0 MiB" / "300 KiB" */
static void bytes_text(char *buf, size_t n, size_t bytes) {
    if (bytes >= (size_t)1 << 20) snprintf(buf, n, "%.1f MiB", (double)bytes / (1 << 20));
    else snprintf(buf, n, "%zu KiB", (bytes + 1023) / 1024);
}

static void scratch_error(const eng_worker *w, size_t need, const char *unit, char *msg, size_t n) {
    char a[32], b[32];
    bytes_text(a, sizeof a, need);
    bytes_text(b, sizeof b, w->e->scratch_limit);
    snprintf(msg, n, "%s needs about %s of scratch, over the worker scratch limit of %s "
             "(scratch_limit_bytes)", unit, a, b);
}

/* Counts a pass that used more scratch than estimated: the estimate must be an upper
 * bound (the engine test checks this counter stays 0). Call before ms_ctx_reset. */
static void scratch_audit(eng_worker *w, size_t estimate, const char *what) {
    size_t used = ms_arena_used(w->ctx->arena);
    if (used <= estimate) return;
    atomic_fetch_add(&w->e->scratch_underestimates, 1);
    ms_log(MS_LOG_WARN, LOG, "%s pass used %zu scratch bytes, estimated %zu", what, used, estimate);
}

/* Decodes + resizes r's images that need encoding (the pixel cache first). */
static void exec_preprocess(eng_worker *w, const ms_core_batch *b) {
    ms_engine *e = w->e;
    for (int32_t i = 0; i < b->n_items; i++) {
        eng_req *r = b->items[i].user;
        for (int32_t j = 0; j < r->n_encode; j++) {
            int32_t k = r->encode_idx[j];
            ms_error err = {0};
            ms_status st = MS_OK;
            if (!eng_pixels_lookup(e, &r->img_key[k], &r->crops[k])) {
                ms_image_u8 img = {0};
                st = ms_image_decode(r->img_bytes[k], r->img_len[k], &e->o.image_limits, &img, &err);
                if (st == MS_OK) st = ms_image_resize_crop(&img, &e->cfg.image, &r->crops[k], &err);
                ms_image_free(&img);
                if (st == MS_OK) eng_pixels_insert(e, &r->img_key[k], &r->crops[k]);
            }
            free(r->img_bytes[k]);
            r->img_bytes[k] = NULL;
            if (st != MS_OK) {
                char what[32];
                snprintf(what, sizeof what, "image %d", k);
                item_fail(w, i, r, st, what, err.msg);
                break;
            }
        }
    }
}

/* Items [i0, i0 + n) of an encode batch in one vision pass. */
static void encode_pass(eng_worker *w, const ms_core_batch *b, int32_t i0, int32_t n) {
    ms_engine *e = w->e;
    eng_device *dv = &e->dev[w->device];
    ms_image_u8 *crops = ms_xmalloc((size_t)n * sizeof *crops);
    for (int32_t i = 0; i < n; i++) {
        eng_req *r = b->items[i0 + i].user;
        crops[i] = r->crops[r->encode_idx[b->items[i0 + i].image]];
    }
    ms_error err = {0};
    ms_tensor pixels = ms_vision_pixels(w->ctx, dv->vision, crops, n); /* act[n,3,H,W] */
    ms_tensor emb;                                                     /* act[n*T, hidden] */
    ms_status st = ms_vision_encode(w->ctx, dv->vision, &pixels, &emb, &err);
    for (int32_t i = 0; i < n; i++) {
        eng_req *r = b->items[i0 + i].user;
        int32_t k = r->encode_idx[b->items[i0 + i].image];
        if (st != MS_OK) {
            item_fail(w, i0 + i, r, st, "encoding images", err.msg);
            continue;
        }
        int32_t T = r->image_tokens;
        MS_CHECK(ms_tensor_rows(&emb) == (int64_t)n * T);
        int64_t shape[2] = {T, ms_tensor_cols(&emb)};
        ms_error aerr = {0};
        ms_status ast = ms_backend_tensor(dv->be, dv->be->act_dtype, 2, shape, &r->embeds[k], &aerr);
        if (ast != MS_OK) {
            item_fail(w, i0 + i, r, ast, "keeping image embeddings", aerr.msg);
            continue;
        }
        ms_tensor rows = ms_tensor_row_view(&emb, (int64_t)i * T, T); /* act[T, hidden] */
        ms_op_copy(w->ctx, &r->embeds[k], &rows);
        r->embed_dev[k] = w->device;
    }
    ms_ctx_sync(w->ctx);
    scratch_audit(w, eng_scratch_encode(e, dv->be, n), "encode");
    ms_ctx_reset(w->ctx);
    for (int32_t i = 0; i < n; i++) { /* the crop is not needed once encoded */
        eng_req *r = b->items[i0 + i].user;
        int32_t k = r->encode_idx[b->items[i0 + i].image];
        if (w->results[i0 + i].status != MS_OK) continue;
        ms_image_free(&r->crops[k]);
        eng_embed_insert(e, r, k); /* after the sync: the rows are written */
    }
    free(crops);
}

/* Encodes in passes of as many images as the scratch limit allows. */
static void exec_encode(eng_worker *w, const ms_core_batch *b) {
    ms_engine *e = w->e;
    const ms_backend *be = e->dev[w->device].be;
    int32_t n = b->n_items, per = n;
    while (per > 0 && eng_scratch_encode(e, be, per) > e->scratch_limit) per--;
    if (per == 0) {
        char msg[200];
        scratch_error(w, eng_scratch_encode(e, be, 1), "one image", msg, sizeof msg);
        for (int32_t i = 0; i < n; i++) item_fail(w, i, b->items[i].user, MS_ERR_NOMEM, "encoding images", msg);
        return;
    }
    if (per < n) atomic_fetch_add(&e->split_batches, 1);
    for (int32_t i0 = 0; i0 < n; i0 += per) encode_pass(w, b, i0, n - i0 < per ? n - i0 : per);
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

/* A part of a batch item run in one pass: positions [pos0, pos0 + n_tokens). */
typedef struct llm_seg {
    int32_t item;
    int32_t pos0, n_tokens;
    bool samples;              /* the item's last part, and the item samples */
    bool images;               /* covers prompt image tokens: gather the embeddings */
} llm_seg;

/* An item's parts: one, or two when a chunk of a request with images crosses the prompt
 * end and its generated tokens hold the image token id (a recompute after preemption).
 * Generated ids are text, but the decoder puts image features at every image token id
 * of a chunk that has features, so the generated part runs in a later pass without. */
static int32_t item_segments(const ms_engine *e, const ms_core_item *it, int32_t item, llm_seg out[2]) {
    const eng_req *r = it->user;
    int32_t end = it->pos0 + it->n_tokens, cut = end, n = 0;
    if (r->n_images > 0 && it->pos0 < r->n_prompt && end > r->n_prompt &&
        count_image_tokens(e, r->tokens + r->n_prompt, end - r->n_prompt) > 0)
        cut = r->n_prompt;
    for (int32_t a = it->pos0; a < end; a = cut, cut = end) {
        int32_t prompt_end = cut < r->n_prompt ? cut : r->n_prompt;
        bool images = r->n_images > 0 && a < r->n_prompt &&
                      count_image_tokens(e, r->tokens + a, prompt_end - a) > 0;
        out[n++] = (llm_seg){item, a, cut - a, it->samples && cut == end, images};
    }
    return n;
}

/* The scratch shape of a pass being packed. */
typedef struct pass_shape {
    eng_llm_piece_shape s;
    int last_fresh;            /* -1: empty pass; else whether the last part starts at 0 */
} pass_shape;

static void shape_add(pass_shape *p, const eng_req *r, const llm_seg *sg, int32_t block_size) {
    int fresh = sg->pos0 == 0;
    if (!fresh && p->last_fresh != 0) p->s.cont_groups++; /* a new run of continuing parts */
    p->last_fresh = fresh;
    p->s.nseq++;
    p->s.n_tokens += sg->n_tokens;
    int32_t blocks = (sg->pos0 + sg->n_tokens + block_size - 1) / block_size;
    if (blocks > p->s.max_blocks) p->s.max_blocks = blocks;
    if (sg->images) p->s.image_rows += (int64_t)r->n_images * r->image_tokens;
    p->s.samples = p->s.samples || sg->samples;
}

/* One ms_llama_forward over the parts, then sampling for the parts that sample. */
static void llm_pass(eng_worker *w, const ms_core_batch *b, const llm_seg *segs, int32_t n, size_t estimate) {
    ms_engine *e = w->e;
    eng_device *dv = &e->dev[w->device];
    int32_t hidden = e->cfg.text.hidden_size;
    ms_llama_seq *seqs = ms_xcalloc((size_t)n, sizeof *seqs);
    ms_tensor *embeds = ms_xcalloc((size_t)n, sizeof *embeds);
    for (int32_t i = 0; i < n; i++) {
        const llm_seg *sg = &segs[i];
        const ms_core_item *it = &b->items[sg->item];
        eng_req *r = it->user;
        ms_llama_seq *s = &seqs[i];
        s->tokens = r->tokens + sg->pos0;
        s->n_tokens = sg->n_tokens;
        s->pos0 = sg->pos0;
        s->block_table = it->block_table;
        s->n_blocks = (sg->pos0 + sg->n_tokens + e->o.block_size - 1) / e->o.block_size;
        MS_CHECK(s->n_blocks <= it->n_blocks);
        if (sg->images) {
            /* gather this request's image embeddings: act[n_images * T, hidden] */
            int32_t T = r->image_tokens;
            embeds[i] = ms_ctx_tensor_2d(w->ctx, dv->be->act_dtype, (int64_t)r->n_images * T, hidden);
            for (int32_t k = 0; k < r->n_images; k++) {
                ms_tensor rows = ms_tensor_row_view(&embeds[i], (int64_t)k * T, T);
                copy_across(w, &rows, &r->embeds[k], r->embed_dev[k]);
            }
            s->image_embeds = &embeds[i];
            s->image_row0 = count_image_tokens(e, r->tokens, sg->pos0);
        }
    }
    ms_error err = {0};
    ms_tensor logits; /* f32[n, vocab] */
    ms_status st = ms_llama_forward(w->ctx, dv->llama, dv->kv, seqs, n, &logits, &err);
    if (st != MS_OK) {
        for (int32_t i = 0; i < n; i++)
            item_fail(w, segs[i].item, b->items[segs[i].item].user, st, "running the model", err.msg);
    } else {
        ms_sample_params *params = ms_xcalloc((size_t)n, sizeof *params);
        float *uniforms = ms_xcalloc((size_t)n, sizeof *uniforms);
        int32_t *ids = ms_xcalloc((size_t)n, sizeof *ids);
        for (int32_t i = 0; i < n; i++) {
            eng_req *r = b->items[segs[i].item].user;
            if (!segs[i].samples) continue; /* greedy row, discarded */
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
            eng_req *r = b->items[segs[i].item].user;
            if (!segs[i].samples) continue;
            MS_CHECK(r->n_tokens < r->cap);
            int32_t index = r->n_tokens - r->n_prompt;
            if (eng_test_token_hook) ids[i] = eng_test_token_hook(r->id, index, ids[i]);
            r->tokens[r->n_tokens++] = ids[i];
            if (r->on_token) r->on_token(r->user, ids[i], index);
            if (is_stop(r, ids[i], index + 1, e)) w->results[segs[i].item].finish = MS_FINISH_STOP;
        }
        free(params);
        free(uniforms);
        free(ids);
    }
    scratch_audit(w, estimate, "LLM");
    ms_ctx_reset(w->ctx);
    free(seqs);
    free(embeds);
}

/* Packs the items' parts into passes under the scratch limit, in item order; second
 * parts (see item_segments) go after every first part. */
static void exec_llm(eng_worker *w, const ms_core_batch *b) {
    ms_engine *e = w->e;
    const ms_backend *be = e->dev[w->device].be;
    int32_t n = b->n_items, n_first = 0, n_second = 0;
    llm_seg *segs = ms_xmalloc((size_t)n * 2 * sizeof *segs), *second = ms_xmalloc((size_t)n * sizeof *second);
    llm_seg *pass = ms_xmalloc((size_t)n * 2 * sizeof *pass);
    for (int32_t i = 0; i < n; i++) {
        const ms_core_item *it = &b->items[i];
        const eng_req *r = it->user;
        MS_CHECK(it->device == w->device && it->n_known == r->n_tokens);
        if (it->n_copy > 0) copy_kv_blocks(w, it);
        llm_seg parts[2] = {0}; /* item_segments fills 1 or 2 */
        int32_t k = item_segments(e, it, i, parts);
        MS_CHECK(k >= 1); /* a batch item has at least one token */
        segs[n_first++] = parts[0];
        if (k == 2) second[n_second++] = parts[1];
    }
    memcpy(segs + n_first, second, (size_t)n_second * sizeof *second);
    int32_t np = 0, passes = 0;
    pass_shape ps = {.last_fresh = -1};
    for (int32_t j = 0; j <= n_first + n_second; j++) {
        bool round_end = j == n_first && n_second > 0;
        if ((j == n_first + n_second || round_end) && np > 0) { /* flush */
            llm_pass(w, b, pass, np, eng_scratch_llm(e, be, &ps.s));
            passes++;
            np = 0;
            ps = (pass_shape){.last_fresh = -1};
        }
        if (j == n_first + n_second) break;
        const llm_seg *sg = &segs[j];
        eng_req *r = b->items[sg->item].user;
        if (w->results[sg->item].status != MS_OK) continue; /* its first part failed */
        pass_shape trial = ps;
        shape_add(&trial, r, sg, e->o.block_size);
        if (np > 0 && eng_scratch_llm(e, be, &trial.s) > e->scratch_limit) {
            llm_pass(w, b, pass, np, eng_scratch_llm(e, be, &ps.s));
            passes++;
            np = 0;
            trial = (pass_shape){.last_fresh = -1};
            shape_add(&trial, r, sg, e->o.block_size);
        }
        size_t need = eng_scratch_llm(e, be, &trial.s);
        if (need > e->scratch_limit) { /* too big even alone */
            char unit[64], msg[200];
            snprintf(unit, sizeof unit, "a chunk of %d tokens", sg->n_tokens);
            scratch_error(w, need, unit, msg, sizeof msg);
            item_fail(w, sg->item, r, MS_ERR_NOMEM, "running the model", msg);
            continue;
        }
        pass[np++] = *sg;
        ps = trial;
    }
    if (passes > 1) atomic_fetch_add(&e->split_batches, 1);
    free(segs);
    free(second);
    free(pass);
}

void eng_exec_batch(eng_worker *w, const ms_core_batch *b) {
    results_reset(w, b->n_items);
    if (eng_test_batch_hook) eng_test_batch_hook(b);
    switch (b->stage) {
    case MS_STAGE_PREPROCESS: exec_preprocess(w, b); break;
    case MS_STAGE_ENCODE: exec_encode(w, b); break;
    default: exec_llm(w, b); break;
    }
}
