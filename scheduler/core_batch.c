/*
 * Scheduler core, part 2: building a batch for a free worker (per stage and mode) and
 * applying a finished batch. Policies are described in core.h.
 */
#include <stdint.h>
#include <string.h>

#include "scheduler/core_internal.h"

/* ---- batch assembly ---- */
static void batch_begin(core_worker *w, ms_stage stage) {
    w->batch.stage = stage;
    w->batch.pool = w->stage;
    w->batch.worker = w->id;
    w->batch.device = w->device;
    w->batch.n_items = 0;
    w->batch.n_tokens = 0;
}

static ms_core_item *item_add(core_worker *w, core_req *r) {
    if (w->batch.n_items == w->cap_items) {
        w->cap_items = w->cap_items ? w->cap_items * 2 : 16;
        w->batch.items = ms_xrealloc(w->batch.items, (size_t)w->cap_items * sizeof *w->batch.items);
        w->reqs = ms_xrealloc(w->reqs, (size_t)w->cap_items * sizeof *w->reqs);
    }
    int32_t i = w->batch.n_items++;
    ms_core_item *it = &w->batch.items[i];
    memset(it, 0, sizeof *it);
    it->id = r->id;
    it->user = r->user;
    it->image = -1;
    it->device = r->device;
    w->reqs[i] = r;
    r->inflight++;
    return it;
}

static const ms_core_batch *batch_finish(ms_core *c, core_worker *w) {
    if (w->batch.n_items == 0) return NULL;
    w->busy = true;
    w->batch.start = ms_core_now(c);
    return &w->batch;
}

/* An LLM chunk of `chunk` tokens from r's first uncached position; blocks reserved. */
static void llm_item(ms_core *c, core_worker *w, core_req *r, int32_t chunk, bool is_prefill) {
    ms_core_item *it = item_add(w, r);
    it->is_prefill = is_prefill;
    it->pos0 = r->n_cached;
    it->n_tokens = chunk;
    it->n_known = r->n_known;
    it->samples = r->n_cached + chunk == r->n_known;
    it->device = r->device;
    it->block_table = r->blocks;
    it->n_blocks = r->n_blocks;
    it->copy_device = r->copy_device;
    it->copy_src = r->copy_blocks;
    it->n_copy = r->n_copy;
    w->batch.n_tokens += chunk;
    if (r->times.prefill_start == 0 && is_prefill) r->times.prefill_start = ms_core_now(c);
}

/* Copies w's set so that preemption (which edits sets) cannot disturb the walk. */
static int32_t snapshot_set(ms_core *c, const core_worker *w) {
    if (c->cap_scratch < w->n_set) {
        c->cap_scratch = w->n_set * 2;
        c->scratch = ms_xrealloc(c->scratch, (size_t)c->cap_scratch * sizeof *c->scratch);
    }
    if (w->n_set > 0) memcpy(c->scratch, w->set, (size_t)w->n_set * sizeof *w->set);
    return w->n_set;
}

const ms_core_batch *core_batch_preprocess(ms_core *c, core_worker *w) {
    core_req *r = c->pre_q.head;
    if (!r) return NULL;
    batch_begin(w, MS_STAGE_PREPROCESS);
    core_list_remove(&c->pre_q, r, LINK_QUEUE);
    r->state = RS_PREPROCESS_RUN;
    r->times.preprocess_start = ms_core_now(c);
    item_add(w, r);
    return batch_finish(c, w);
}

static void encode_item(ms_core *c, core_worker *w, core_req *r, core_image *img) {
    img->running = true;
    ms_core_item *it = item_add(w, r);
    it->image = img->index;
    it->n_tokens = r->d.image_tokens;
    w->batch.n_tokens += r->d.image_tokens;
    if (r->times.encode_start == 0) r->times.encode_start = ms_core_now(c);
}

const ms_core_batch *core_batch_encode(ms_core *c, core_worker *w) {
    batch_begin(w, MS_STAGE_ENCODE);
    while (w->img_head && w->batch.n_items < c->o.encode_max_batch_images) {
        core_image *img = w->img_head;
        core_encode_unqueue(c, img);
        w->pending_tokens += img->req->d.image_tokens; /* pending until done */
        img->worker = w->id;
        encode_item(c, w, img->req, img);
    }
    return batch_finish(c, w);
}

enum { PREFILL_MAX_SKIPS = 64 };

static bool pool_has_device(const ms_core *c, ms_stage stage, int32_t device) {
    for (int32_t i = 0; i < c->n_slots[stage]; i++) {
        const core_worker *w = &c->workers[stage][i];
        if (!w->removed && w->device == device) return true;
    }
    return false;
}

/* The oldest request older than `id` that waits in the prefill queue while holding KV
 * blocks on `device`, or NULL. */
static core_req *oldest_waiting_holder(ms_core *c, int32_t device, uint64_t id) {
    for (core_req *h = c->pool[device].holders.head; h && h->id < id; h = h->link[LINK_HOLDER].next)
        if (h->state == RS_PREFILL_WAIT && h->heap_idx >= 0 && h->inflight == 0) return h;
    return NULL;
}

const ms_core_batch *core_batch_prefill(ms_core *c, core_worker *w) {
    batch_begin(w, MS_STAGE_PREFILL);
    core_req *skipped[PREFILL_MAX_SKIPS];
    int32_t n_skipped = 0;
    int32_t budget = c->o.max_num_batched_tokens;
    core_req *senior = NULL; /* taken out of turn, see below */
    while (budget > 0 && w->batch.n_items < c->o.max_num_seqs) {
        core_req *r = senior ? senior : core_heap_pop(&c->prefill_q);
        senior = NULL;
        if (!r) break;
        if (r->n_blocks > 0 && r->device != w->device) {
            if (pool_has_device(c, MS_STAGE_PREFILL, r->device)) {
                /* its partial KV lives on another prefill device: leave it to that one */
                skipped[n_skipped++] = r;
                if (n_skipped == PREFILL_MAX_SKIPS) break;
                continue;
            }
            core_kv_release(c, r); /* that device lost its prefill workers: recompute here */
            r->n_cached = 0;
        }
        core_prefix_match(c, r, w->device); /* a fresh start: skip the cached prefix */
        int32_t remaining = r->n_known - r->n_cached;
        int32_t chunk = remaining < budget ? remaining : budget;
        if (!core_kv_reserve(c, r, w->device, r->n_cached + chunk)) {
            skipped[n_skipped++] = r; /* KV full: wait for blocks, keep the order */
            /* r could not preempt anyone (no younger holder is idle). An older request
             * still waiting with part of its prompt cached here can: run it out of turn,
             * or the two partial prefills would wait on each other's blocks forever.
             * Only older ones, so a younger request never takes the blocks r waits for. */
            senior = n_skipped < PREFILL_MAX_SKIPS ? oldest_waiting_holder(c, w->device, r->id) : NULL;
            if (!senior) break;
            core_heap_remove(&c->prefill_q, senior);
            continue;
        }
        r->state = RS_PREFILL_RUN;
        llm_item(c, w, r, chunk, true);
        budget -= chunk;
    }
    for (int32_t i = 0; i < n_skipped; i++) core_heap_push(&c->prefill_q, skipped[i]);
    return batch_finish(c, w);
}

/* Moves r's blocks to its copy source so a table can be built on `device`. */
static bool admit_cross_device(ms_core *c, core_req *r, int32_t device) {
    MS_CHECK(r->n_copy == 0);
    core_list_remove(&c->pool[r->device].holders, r, LINK_HOLDER);
    r->copy_blocks = ms_xrealloc(r->copy_blocks, (size_t)r->n_blocks * sizeof(int32_t));
    memcpy(r->copy_blocks, r->blocks, (size_t)r->n_blocks * sizeof(int32_t));
    r->n_copy = r->n_blocks;
    r->copy_device = r->device;
    r->n_blocks = 0;
    if (core_kv_reserve(c, r, device, r->n_known)) {
        r->n_registered = 0; /* the copies are private; the source blocks stay cached */
        return true;
    }
    /* undo: the request keeps its blocks where they are */
    memcpy(r->blocks, r->copy_blocks, (size_t)r->n_copy * sizeof(int32_t));
    r->n_blocks = r->n_copy;
    r->device = r->copy_device;
    r->n_copy = 0;
    core_holder_insert(c, r);
    return false;
}

const ms_core_batch *core_batch_decode(ms_core *c, core_worker *w) {
    batch_begin(w, MS_STAGE_DECODE);
    double now = ms_core_now(c);
    while (w->n_set < c->o.max_num_seqs && c->decode_q.head) {
        core_req *r = c->decode_q.head;
        if (r->n_blocks > 0 && r->device != w->device && !admit_cross_device(c, r, w->device))
            break;
        core_list_remove(&c->decode_q, r, LINK_QUEUE);
        core_set_add(w, r);
        r->state = RS_DECODE;
        if (r->times.decode_start == 0) r->times.decode_start = now;
    }
    int32_t n = snapshot_set(c, w);
    for (int32_t i = 0; i < n; i++) {
        core_req *r = c->scratch[i];
        if (r->state != RS_DECODE || r->worker != w->id) continue; /* preempted meanwhile */
        MS_CHECK(r->n_known - r->n_cached == 1);
        if (!core_kv_reserve(c, r, w->device, r->n_known)) {
            core_preempt(c, r); /* no younger victim: give way to the older ones */
            continue;
        }
        llm_item(c, w, r, 1, false);
    }
    return batch_finish(c, w);
}

/* Fewest requests any other active monolithic worker owns (INT32_MAX when alone). */
static int32_t mono_min_other_set(const ms_core *c, const core_worker *w) {
    int32_t m = INT32_MAX;
    for (int32_t i = 0; i < c->n_slots[MS_STAGE_DECODE]; i++) {
        const core_worker *o = &c->workers[MS_STAGE_DECODE][i];
        if (o != w && !o->removed && o->n_set < m) m = o->n_set;
    }
    return m;
}

/* Monolithic: admit FCFS while KV blocks for the prompt are free, encode the owned
 * requests' images first, else one LLM batch: decode tokens, then prefill chunks.
 * Admission is balanced (a worker takes a request only while it owns no more than the
 * least-loaded other worker), as a load balancer in front of colocated replicas would;
 * otherwise the first worker to ask would take every request of a burst. */
const ms_core_batch *core_batch_mono(ms_core *c, core_worker *w) {
    int32_t min_other = mono_min_other_set(c, w);
    while (w->n_set < c->o.max_num_seqs && c->ready_q.n > 0 && w->n_set <= min_other) {
        core_req *r = c->ready_q.a[0];
        if (r->n_blocks > 0 && r->device != w->device) { /* KV on another device: recompute */
            core_kv_release(c, r);
            r->n_cached = 0;
        }
        int32_t need = core_blocks_for(c, r->n_known + 1) - r->n_blocks;
        if (need > core_pool_available(c, w->device)) break;
        core_heap_pop(&c->ready_q);
        core_set_add(w, r);
        r->state = RS_OWNED;
    }
    batch_begin(w, MS_STAGE_ENCODE);
    for (int32_t i = 0; i < w->n_set && w->batch.n_items < c->o.encode_max_batch_images; i++) {
        core_req *r = w->set[i];
        for (int32_t k = 0; k < r->d.n_images && w->batch.n_items < c->o.encode_max_batch_images; k++) {
            core_image *img = &r->images[k];
            if (!img->done && !img->running) encode_item(c, w, r, img);
        }
    }
    if (w->batch.n_items > 0) return batch_finish(c, w);

    batch_begin(w, MS_STAGE_DECODE);
    int32_t budget = c->o.max_num_batched_tokens;
    int32_t n = snapshot_set(c, w);
    for (int32_t i = 0; i < n && budget > 0; i++) { /* decode tokens first */
        core_req *r = c->scratch[i];
        if (r->state != RS_OWNED || r->worker != w->id || r->images_done < r->d.n_images) continue;
        if (r->generated == 0 || r->n_known - r->n_cached != 1) continue;
        if (!core_kv_reserve(c, r, w->device, r->n_known)) {
            core_preempt(c, r);
            continue;
        }
        llm_item(c, w, r, 1, false);
        budget--;
    }
    for (int32_t i = 0; i < n && budget > 0; i++) { /* then prefill chunks, FCFS */
        core_req *r = c->scratch[i];
        if (r->state != RS_OWNED || r->worker != w->id || r->images_done < r->d.n_images) continue;
        if (r->inflight > 0) continue;
        core_prefix_match(c, r, w->device);
        int32_t remaining = r->n_known - r->n_cached;
        int32_t chunk = remaining < budget ? remaining : budget;
        if (!core_kv_reserve(c, r, w->device, r->n_cached + chunk)) break;
        llm_item(c, w, r, chunk, true);
        w->batch.stage = MS_STAGE_PREFILL;
        budget -= chunk;
    }
    return batch_finish(c, w);
}

const ms_core_batch *ms_core_next_batch(ms_core *c, ms_stage stage, int32_t worker) {
    MS_CHECK((int)stage >= 0 && stage < MS_STAGE_COUNT);
    MS_CHECK(worker >= 0 && worker < c->n_slots[stage]);
    core_worker *w = &c->workers[stage][worker];
    MS_CHECKF(!w->busy, "scheduler: %s worker %d asked for a batch before reporting the last",
              ms_stage_name(stage), worker);
    if (w->removed) return NULL;
    bool mono = c->o.mode == MS_MODE_MONOLITHIC;
    switch (stage) {
    case MS_STAGE_PREPROCESS: return core_batch_preprocess(c, w);
    case MS_STAGE_ENCODE: return mono ? NULL : core_batch_encode(c, w);
    case MS_STAGE_PREFILL: return mono ? NULL : core_batch_prefill(c, w);
    case MS_STAGE_DECODE: return mono ? core_batch_mono(c, w) : core_batch_decode(c, w);
    default: return NULL;
    }
}

/* ---- completion ---- */
static void encode_done(ms_core *c, core_req *r, const ms_core_item *it, ms_status st) {
    core_image *img = &r->images[it->image];
    img->running = false;
    img->done = true;
    if (c->o.mode == MS_MODE_DISAGG)
        c->workers[MS_STAGE_ENCODE][img->worker].pending_tokens -= r->d.image_tokens;
    if (!core_item_release(c, r)) return;
    if (st != MS_OK) {
        core_req_end(c, r, MS_FINISH_ERROR, st);
        return;
    }
    if (++r->images_done < r->d.n_images) return;
    r->times.encode_end = ms_core_now(c);
    if (c->o.mode == MS_MODE_DISAGG) core_to_prefill(c, r); /* gathered: all images done */
}

static void llm_done(ms_core *c, core_req *r, const ms_core_item *it, const ms_core_item_result *res) {
    if (it->n_copy > 0) core_kv_release_copy(c, r); /* hand-off copy has run */
    if (!core_item_release(c, r)) return;
    if (res && res->status != MS_OK) {
        core_req_end(c, r, MS_FINISH_ERROR, res->status);
        return;
    }
    bool mono = c->o.mode == MS_MODE_MONOLITHIC;
    r->n_cached = it->pos0 + it->n_tokens;
    if (it->is_prefill) core_prefix_register(c, r);
    if (!it->samples) { /* a chunk of a long prompt: back in line for the next */
        if (!mono) core_to_prefill(c, r);
        return;
    }
    double now = ms_core_now(c);
    r->generated++;
    r->n_known++;
    if (r->generated == 1) r->times.first_token = now;
    r->times.last_token = now;
    if (r->times.prefill_end == 0) r->times.prefill_end = now;
    if (mono && r->times.decode_start == 0) r->times.decode_queued = r->times.decode_start = now;
    ms_finish_reason why = MS_FINISH_NONE;
    if (res && res->finish == MS_FINISH_STOP) why = MS_FINISH_STOP;
    else if (r->generated >= r->d.max_tokens || r->n_known >= c->o.max_model_len) why = MS_FINISH_LENGTH;
    if (why != MS_FINISH_NONE) core_req_end(c, r, why, MS_OK);
    else if (r->state == RS_PREFILL_RUN) core_to_decode(c, r);
}

void ms_core_batch_done(ms_core *c, const ms_core_batch *b, const ms_core_item_result *results) {
    MS_CHECK(b && (int)b->pool >= 0 && b->pool < MS_STAGE_COUNT);
    MS_CHECK(b->worker >= 0 && b->worker < c->n_slots[b->pool]);
    core_worker *w = &c->workers[b->pool][b->worker];
    MS_CHECKF(b == &w->batch && w->busy, "scheduler: batch reported done twice or by the wrong worker");
    ms_stage_stats *st = &c->stats.stage[b->stage];
    st->batches++;
    st->items += (uint64_t)b->n_items;
    st->tokens += (uint64_t)b->n_tokens;
    st->last_batch = b->n_items;
    if (b->n_items > st->max_batch) st->max_batch = b->n_items;
    st->hist[ms_batch_hist_bucket(b->n_items)]++;
    for (int32_t i = 0; i < b->n_items; i++) {
        const ms_core_item *it = &b->items[i];
        const ms_core_item_result *res = results ? &results[i] : NULL;
        ms_status s = res ? res->status : MS_OK;
        core_req *r = w->reqs[i];
        switch (b->stage) {
        case MS_STAGE_PREPROCESS: core_preprocess_done(c, r, s); break;
        case MS_STAGE_ENCODE: encode_done(c, r, it, s); break;
        default: llm_done(c, r, it, res); break;
        }
    }
    w->busy = false;
    if (w->removed) core_worker_hand_back(c, w);
}
