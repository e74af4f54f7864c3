/*
 * Scheduler core, part 1: requests, queues, KV block accounting, preemption, the
 * lifecycle events (arrive, cancel, resize, finish) and statistics. Batch building per
 * stage and batch completion live in core_batch.c. See core.h for the policies.
 */
#include <string.h>

#include "scheduler/core_internal.h"

const char *ms_stage_name(ms_stage s) {
    switch (s) {
    case MS_STAGE_PREPROCESS: return "preprocess";
    case MS_STAGE_ENCODE: return "encode";
    case MS_STAGE_PREFILL: return "prefill";
    case MS_STAGE_DECODE: return "decode";
    default: return "?";
    }
}

const char *ms_finish_reason_name(ms_finish_reason r) {
    switch (r) {
    case MS_FINISH_NONE: return "none";
    case MS_FINISH_STOP: return "stop";
    case MS_FINISH_LENGTH: return "length";
    case MS_FINISH_CANCELLED: return "cancelled";
    case MS_FINISH_ERROR: return "error";
    default: return "?";
    }
}

int ms_batch_hist_bucket(int32_t n) {
    int b = 0;
    int32_t lim = 1;
    while (n > lim && b < MS_BATCH_HIST_BUCKETS - 1) {
        lim *= 2;
        b++;
    }
    return b;
}

void ms_core_options_default(ms_core_options *o) {
    memset(o, 0, sizeof *o);
    o->mode = MS_MODE_DISAGG;
    o->workers[MS_STAGE_PREPROCESS] = 2;
    o->workers[MS_STAGE_ENCODE] = 1;
    o->workers[MS_STAGE_PREFILL] = 1;
    o->workers[MS_STAGE_DECODE] = 1;
    o->kv_blocks = 4096;
    o->block_size = 16;
    o->max_num_seqs = 256;
    o->max_num_batched_tokens = 2048;
    o->encode_max_batch_images = 16;
    o->max_queued_requests = 1024;
    o->max_model_len = 4096;
    o->priority_aging_s = 2.0;
    o->short_prompt_tokens = 512;
    o->prefix_caching = true;
}

/* From the model's tokens per image, not a fixed count: a fixed 512 was below
 * LLaVA-1.5's 576 tokens for one image, so every LLaVA image request was "large". */
int32_t ms_core_large_prompt_tokens(const ms_core_options *o, int32_t image_tokens) {
    const int64_t one_image = (int64_t)(image_tokens > 0 ? image_tokens : 0) + o->short_prompt_tokens;
    const int64_t half_context = o->max_model_len / 2;
    return (int32_t)(one_image < half_context ? one_image : half_context);
}

double ms_core_now(const ms_core *c) { return c->o.clock.now(c->o.clock.ctx); }

/* ---- intrusive lists ---- */
void core_list_push_back(core_list *l, core_req *r, int k) {
    r->link[k].prev = l->tail;
    r->link[k].next = NULL;
    if (l->tail) l->tail->link[k].next = r;
    else l->head = r;
    l->tail = r;
    l->n++;
}

void core_list_push_front(core_list *l, core_req *r, int k) {
    r->link[k].next = l->head;
    r->link[k].prev = NULL;
    if (l->head) l->head->link[k].prev = r;
    else l->tail = r;
    l->head = r;
    l->n++;
}

void core_list_remove(core_list *l, core_req *r, int k) {
    core_link *ln = &r->link[k];
    if (ln->prev) ln->prev->link[k].next = ln->next;
    else l->head = ln->next;
    if (ln->next) ln->next->link[k].prev = ln->prev;
    else l->tail = ln->prev;
    ln->prev = ln->next = NULL;
    l->n--;
}

/* Inserts r keeping the list in id order (scans from the tail: r is usually newest). */
static void list_insert_by_id(core_list *l, core_req *r, int k) {
    core_req *after = l->tail;
    while (after && after->id > r->id) after = after->link[k].prev;
    if (!after) {
        core_list_push_front(l, r, k);
        return;
    }
    r->link[k].prev = after;
    r->link[k].next = after->link[k].next;
    if (after->link[k].next) after->link[k].next->link[k].prev = r;
    else l->tail = r;
    after->link[k].next = r;
    l->n++;
}

/* ---- binary heap by (deadline, id) ---- */
static bool heap_less(const core_req *a, const core_req *b) {
    if (a->deadline != b->deadline) return a->deadline < b->deadline;
    return a->id < b->id;
}

static void heap_set(core_heap *h, int32_t i, core_req *r) {
    h->a[i] = r;
    r->heap_idx = i;
}

static void heap_up(core_heap *h, int32_t i) {
    core_req *r = h->a[i];
    while (i > 0) {
        int32_t p = (i - 1) / 2;
        if (!heap_less(r, h->a[p])) break;
        heap_set(h, i, h->a[p]);
        i = p;
    }
    heap_set(h, i, r);
}

static void heap_down(core_heap *h, int32_t i) {
    core_req *r = h->a[i];
    for (;;) {
        int32_t l = 2 * i + 1, m = i;
        const core_req *best = r;
        if (l < h->n && heap_less(h->a[l], best)) { m = l; best = h->a[l]; }
        if (l + 1 < h->n && heap_less(h->a[l + 1], best)) m = l + 1;
        if (m == i) break;
        heap_set(h, i, h->a[m]);
        i = m;
    }
    heap_set(h, i, r);
}

void core_heap_push(core_heap *h, core_req *r) {
    MS_CHECK(r->heap_idx < 0);
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 64;
        h->a = ms_xrealloc(h->a, (size_t)h->cap * sizeof *h->a);
    }
    h->a[h->n++] = r;
    heap_up(h, h->n - 1);
}

void core_heap_remove(core_heap *h, core_req *r) {
    int32_t i = r->heap_idx;
    MS_CHECK(i >= 0 && i < h->n && h->a[i] == r);
    r->heap_idx = -1;
    h->n--;
    if (i == h->n) return;
    heap_set(h, i, h->a[h->n]);
    heap_up(h, i);
    heap_down(h, h->a[i]->heap_idx);
}

core_req *core_heap_pop(core_heap *h) {
    if (h->n == 0) return NULL;
    core_req *r = h->a[0];
    core_heap_remove(h, r);
    return r;
}

/* ---- id -> request ---- */
core_req *core_lookup(const ms_core *c, uint64_t id) {
    core_req *r = c->hash[id & (c->hash_cap - 1)];
    while (r && r->id != id) r = r->hash_next;
    return r;
}

static void hash_insert(ms_core *c, core_req *r) {
    if ((uint32_t)c->active * 2 >= c->hash_cap) {
        uint32_t ncap = c->hash_cap * 2;
        core_req **nh = ms_xcalloc(ncap, sizeof *nh);
        for (uint32_t i = 0; i < c->hash_cap; i++) {
            core_req *e = c->hash[i];
            while (e) {
                core_req *next = e->hash_next;
                e->hash_next = nh[e->id & (ncap - 1)];
                nh[e->id & (ncap - 1)] = e;
                e = next;
            }
        }
        free(c->hash);
        c->hash = nh;
        c->hash_cap = ncap;
    }
    core_req **slot = &c->hash[r->id & (c->hash_cap - 1)];
    r->hash_next = *slot;
    *slot = r;
}

static void hash_remove(ms_core *c, core_req *r) {
    core_req **p = &c->hash[r->id & (c->hash_cap - 1)];
    while (*p != r) p = &(*p)->hash_next;
    *p = r->hash_next;
}

/* ---- KV blocks (pools: core_prefix.c) ---- */
void core_kv_release(ms_core *c, core_req *r) {
    if (r->n_blocks > 0) {
        core_pool_put(c, r->device, r->blocks, r->n_blocks);
        core_list_remove(&c->pool[r->device].holders, r, LINK_HOLDER);
        r->n_blocks = 0;
    }
    r->n_registered = 0;
    core_kv_release_copy(c, r);
}

void core_kv_release_copy(ms_core *c, core_req *r) {
    if (r->n_copy > 0) core_pool_put(c, r->copy_device, r->copy_blocks, r->n_copy);
    r->n_copy = 0;
}

bool core_kv_reserve(ms_core *c, core_req *r, int32_t device, int32_t tokens) {
    MS_CHECK(device >= 0 && device < c->n_pools && c->pool[device].free_ids);
    MS_CHECK(r->n_blocks == 0 || r->device == device);
    int32_t need = core_blocks_for(c, tokens) - r->n_blocks;
    if (need <= 0) return true;
    core_pool *p = &c->pool[device];
    while (core_pool_available(c, device) < need) {
        /* youngest holder not in a running batch, younger than r */
        core_req *v = p->holders.tail;
        while (v && (v->inflight > 0 || v == r)) v = v->link[LINK_HOLDER].prev;
        if (!v || v->id < r->id) return false;
        core_preempt(c, v);
    }
    if (r->n_blocks + need > r->cap_blocks) {
        r->cap_blocks = r->n_blocks + need + 4;
        r->blocks = ms_xrealloc(r->blocks, (size_t)r->cap_blocks * sizeof *r->blocks);
    }
    bool was_holder = r->n_blocks > 0;
    for (int32_t i = 0; i < need; i++) r->blocks[r->n_blocks++] = core_pool_take(c, device);
    r->device = device;
    if (!was_holder) list_insert_by_id(&p->holders, r, LINK_HOLDER);
    return true;
}

void core_holder_insert(ms_core *c, core_req *r) {
    list_insert_by_id(&c->pool[r->device].holders, r, LINK_HOLDER);
}

/* ---- moves between stages ---- */
void core_set_add(core_worker *w, core_req *r) {
    if (w->n_set == w->cap_set) {
        w->cap_set = w->cap_set ? w->cap_set * 2 : 16;
        w->set = ms_xrealloc(w->set, (size_t)w->cap_set * sizeof *w->set);
    }
    r->worker = w->id;
    r->slot = w->n_set;
    w->set[w->n_set++] = r;
}

void core_set_remove(ms_core *c, core_req *r) {
    core_worker *w = &c->workers[MS_STAGE_DECODE][r->worker];
    MS_CHECK(r->slot < w->n_set && w->set[r->slot] == r);
    /* keep admission order: shift (sets are at most max_num_seqs long) */
    for (int32_t i = r->slot; i + 1 < w->n_set; i++) {
        w->set[i] = w->set[i + 1];
        w->set[i]->slot = i;
    }
    w->n_set--;
    r->worker = -1;
    r->slot = -1;
}

void core_to_prefill(ms_core *c, core_req *r) {
    double now = ms_core_now(c);
    if (r->times.prefill_queued == 0) {
        r->times.prefill_queued = now;
        if (c->o.mode == MS_MODE_MONOLITHIC) {
            r->deadline = r->times.arrival; /* FCFS */
        } else {
            bool large = r->d.n_images > 0 && r->d.n_prompt > ms_core_large_prompt_tokens(&c->o, r->d.image_tokens);
            r->deadline = now + c->o.priority_aging_s * (r->d.priority + (large ? 1 : 0));
        }
    }
    r->state = RS_PREFILL_WAIT;
    core_heap_push(c->o.mode == MS_MODE_MONOLITHIC ? &c->ready_q : &c->prefill_q, r);
}

void core_to_decode(ms_core *c, core_req *r) {
    double now = ms_core_now(c);
    if (r->times.decode_queued == 0) r->times.decode_queued = now;
    r->state = RS_DECODE_WAIT;
    core_list_push_back(&c->decode_q, r, LINK_QUEUE);
}

void core_encode_assign(ms_core *c, core_image *img) {
    core_worker *best = NULL;
    for (int32_t i = 0; i < c->n_slots[MS_STAGE_ENCODE]; i++) {
        core_worker *w = &c->workers[MS_STAGE_ENCODE][i];
        if (w->removed) continue;
        if (!best || w->pending_tokens < best->pending_tokens) best = w;
    }
    MS_CHECK(best != NULL);
    img->worker = best->id;
    img->queued = true;
    img->next = NULL;
    img->prev = best->img_tail;
    if (best->img_tail) best->img_tail->next = img;
    else best->img_head = img;
    best->img_tail = img;
    best->img_queued++;
    c->img_queued++;
    best->pending_tokens += img->req->d.image_tokens;
}

void core_encode_unqueue(ms_core *c, core_image *img) {
    core_worker *w = &c->workers[MS_STAGE_ENCODE][img->worker];
    if (img->prev) img->prev->next = img->next;
    else w->img_head = img->next;
    if (img->next) img->next->prev = img->prev;
    else w->img_tail = img->prev;
    img->prev = img->next = NULL;
    img->queued = false;
    w->img_queued--;
    c->img_queued--;
    w->pending_tokens -= img->req->d.image_tokens;
}

/* After preprocessing: images to the encoders (disagg) or the ready queue (mono). */
static void core_after_preprocess(ms_core *c, core_req *r) {
    r->times.encode_queued = ms_core_now(c);
    if (c->o.mode == MS_MODE_MONOLITHIC) {
        core_to_prefill(c, r);
        return;
    }
    r->state = RS_ENCODE;
    for (int32_t i = 0; i < r->d.n_images; i++) core_encode_assign(c, &r->images[i]);
}

void core_preempt(ms_core *c, core_req *r) {
    MS_CHECK(r->inflight == 0 && r->finish == MS_FINISH_NONE);
    core_kv_release(c, r);
    r->n_cached = 0;
    r->n_preemptions++;
    c->stats.preemptions++;
    switch (r->state) {
    case RS_DECODE:
        core_set_remove(c, r);
        core_to_prefill(c, r);
        break;
    case RS_DECODE_WAIT:
        core_list_remove(&c->decode_q, r, LINK_QUEUE);
        core_to_prefill(c, r);
        break;
    case RS_PREFILL_WAIT: /* stays queued (or in a batch builder's skip list) */
    case RS_OWNED:        /* monolithic: its owner recomputes it */
        break;
    default: ms_panic(__FILE__, __LINE__, "preempting a request in state %d", (int)r->state);
    }
}

static void core_finalize(ms_core *c, core_req *r) {
    MS_CHECK(r->inflight == 0);
    core_kv_release(c, r);
    r->state = RS_DONE;
    r->times.finished = ms_core_now(c);
    core_list_push_back(&c->done, r, LINK_DONE);
    c->active--;
    c->stats.finished[r->finish]++;
}

void core_req_end(ms_core *c, core_req *r, ms_finish_reason why, ms_status st) {
    if (r->finish != MS_FINISH_NONE) return;
    r->finish = why;
    r->status = st;
    switch (r->state) {
    case RS_PREPROCESS_WAIT: core_list_remove(&c->pre_q, r, LINK_QUEUE); break;
    case RS_ENCODE:
        for (int32_t i = 0; i < r->d.n_images; i++)
            if (r->images[i].queued) core_encode_unqueue(c, &r->images[i]);
        break;
    case RS_PREFILL_WAIT:
        if (r->heap_idx >= 0)
            core_heap_remove(c->o.mode == MS_MODE_MONOLITHIC ? &c->ready_q : &c->prefill_q, r);
        break;
    case RS_DECODE_WAIT: core_list_remove(&c->decode_q, r, LINK_QUEUE); break;
    case RS_DECODE:
    case RS_OWNED: core_set_remove(c, r); break;
    default: break; /* running: finalised when its batch is done */
    }
    if (r->inflight == 0) core_finalize(c, r);
}

/* Batch item done for r: drops the running mark; true when r should go on. */
bool core_item_release(ms_core *c, core_req *r) {
    MS_CHECK(r->inflight > 0);
    r->inflight--;
    if (r->finish == MS_FINISH_NONE) return true;
    if (r->inflight == 0) core_finalize(c, r);
    return false;
}

void core_preprocess_done(ms_core *c, core_req *r, ms_status st) {
    if (!core_item_release(c, r)) return;
    r->times.preprocess_end = ms_core_now(c);
    if (st != MS_OK) core_req_end(c, r, MS_FINISH_ERROR, st);
    else core_after_preprocess(c, r);
}

/* ---- create / destroy ---- */
static void worker_init(ms_core *c, ms_stage s, int32_t id) {
    core_worker *w = &c->workers[s][id];
    memset(w, 0, sizeof *w);
    w->stage = s;
    w->id = id;
    int32_t nd = c->o.n_devices[s];
    w->device = nd > 0 ? c->o.devices[s][id % nd] : 0;
}

enum { MAX_WORKER_SLOTS = 1024 };

static bool stage_used(const ms_core *c, ms_stage s) {
    if (c->o.mode == MS_MODE_MONOLITHIC) return s == MS_STAGE_PREPROCESS || s == MS_STAGE_DECODE;
    return true;
}

ms_status ms_core_create(const ms_core_options *o, ms_core **out, ms_error *err) {
    *out = NULL;
    if (!o->clock.now) return ms_errorf(err, MS_ERR_INVALID, "scheduler: no clock");
    if (o->block_size < 1 || o->kv_blocks < 1)
        return ms_errorf(err, MS_ERR_INVALID, "scheduler: block_size %d and kv_blocks %d must be >= 1",
                         o->block_size, o->kv_blocks);
    if (o->max_num_seqs < 1 || o->max_num_batched_tokens < 1 || o->encode_max_batch_images < 1)
        return ms_errorf(err, MS_ERR_INVALID,
                         "scheduler: max_num_seqs, max_num_batched_tokens and "
                         "encode_max_batch_images must be >= 1");
    if (o->max_model_len < 2)
        return ms_errorf(err, MS_ERR_INVALID, "scheduler: max_model_len %d must be >= 2", o->max_model_len);
    if ((int64_t)o->kv_blocks * o->block_size < o->max_model_len)
        return ms_errorf(err, MS_ERR_INVALID,
                         "scheduler: the KV pool (%d blocks of %d) cannot hold one sequence of "
                         "max_model_len %d tokens", o->kv_blocks, o->block_size, o->max_model_len);
    if (o->short_prompt_tokens < 0)
        return ms_errorf(err, MS_ERR_INVALID, "scheduler: short_prompt_tokens %d must be >= 0", o->short_prompt_tokens);
    if (o->priority_aging_s < 0)
        return ms_errorf(err, MS_ERR_INVALID, "scheduler: priority_aging_s must be >= 0");
    ms_core *c = ms_xcalloc(1, sizeof *c);
    c->o = *o;
    for (int s = 0; s < MS_STAGE_COUNT; s++) {
        if (o->n_devices[s] < 0 || o->n_devices[s] > MS_CORE_MAX_DEVICES) {
            free(c);
            return ms_errorf(err, MS_ERR_INVALID, "scheduler: %d devices for %s", o->n_devices[s],
                             ms_stage_name((ms_stage)s));
        }
        for (int i = 0; i < o->n_devices[s]; i++)
            if (o->devices[s][i] < 0 || o->devices[s][i] >= MS_CORE_MAX_DEVICES) {
                free(c);
                return ms_errorf(err, MS_ERR_INVALID, "scheduler: device %d of %s out of range",
                                 o->devices[s][i], ms_stage_name((ms_stage)s));
            }
        int32_t n = stage_used(c, (ms_stage)s) ? o->workers[s] : 0;
        if (stage_used(c, (ms_stage)s) && (n < 1 || n > MAX_WORKER_SLOTS)) {
            free(c);
            return ms_errorf(err, MS_ERR_INVALID, "scheduler: %d %s workers (need 1..%d)", n,
                             ms_stage_name((ms_stage)s), MAX_WORKER_SLOTS);
        }
        c->workers[s] = ms_xcalloc(MAX_WORKER_SLOTS, sizeof(core_worker));
        c->n_slots[s] = c->n_active[s] = n;
        for (int32_t i = 0; i < n; i++) worker_init(c, (ms_stage)s, i);
    }
    /* one KV pool per device an LLM worker can run on */
    c->n_pools = MS_CORE_MAX_DEVICES;
    for (int s = MS_STAGE_PREFILL; s <= MS_STAGE_DECODE; s++) {
        if (!stage_used(c, (ms_stage)s)) continue;
        int32_t nd = o->n_devices[s] > 0 ? o->n_devices[s] : 1;
        for (int32_t i = 0; i < nd; i++) {
            int32_t dev = o->n_devices[s] > 0 ? o->devices[s][i] : 0;
            core_pool *p = &c->pool[dev];
            if (p->free_ids) continue;
            core_pool_init(c, p);
            c->stats.kv_blocks_total += o->kv_blocks;
        }
    }
    c->hash_cap = 1024;
    c->hash = ms_xcalloc(c->hash_cap, sizeof *c->hash);
    *out = c;
    return MS_OK;
}

static void req_free(core_req *r) {
    free(r->keys);
    free(r->block_hash);
    free(r->blocks);
    free(r->copy_blocks);
    free(r->images);
    free(r);
}

void ms_core_destroy(ms_core *c) {
    if (!c) return;
    for (uint32_t i = 0; i < c->hash_cap; i++) {
        core_req *r = c->hash[i];
        while (r) {
            core_req *next = r->hash_next;
            req_free(r);
            r = next;
        }
    }
    free(c->hash);
    for (int s = 0; s < MS_STAGE_COUNT; s++) {
        for (int32_t i = 0; i < c->n_slots[s]; i++) {
            free(c->workers[s][i].batch.items);
            free(c->workers[s][i].reqs);
            free(c->workers[s][i].set);
        }
        free(c->workers[s]);
    }
    for (int d = 0; d < MS_CORE_MAX_DEVICES; d++) core_pool_free(&c->pool[d]);
    free(c->scratch);
    free(c->prefill_q.a);
    free(c->ready_q.a);
    free(c);
}

/* ---- events ---- */
ms_status ms_core_arrive(ms_core *c, const ms_core_req_desc *d, uint64_t *id, ms_error *err) {
    if (c->closed || (c->o.max_queued_requests > 0 && c->active >= c->o.max_queued_requests)) {
        c->stats.rejected++;
        return ms_errorf(err, MS_ERR_BUSY, "scheduler: %s (%d requests active)",
                         c->closed ? "not accepting requests" : "queue full", c->active);
    }
    if (d->n_prompt < 1 || d->n_images < 0 || d->image_tokens < 0 || d->max_tokens < 1 ||
        d->priority < 0 || (int64_t)d->n_images * d->image_tokens > d->n_prompt)
        return ms_errorf(err, MS_ERR_INVALID,
                         "scheduler: bad request (prompt %d tokens, %d images of %d tokens, "
                         "max_tokens %d, priority %d)", d->n_prompt, d->n_images, d->image_tokens,
                         d->max_tokens, d->priority);
    if (d->n_prompt + 1 > c->o.max_model_len)
        return ms_errorf(err, MS_ERR_LIMIT, "scheduler: prompt of %d tokens leaves no room in "
                         "max_model_len %d", d->n_prompt, c->o.max_model_len);
    core_req *r = ms_xcalloc(1, sizeof *r);
    r->id = ++c->next_id;
    r->user = d->user;
    r->d = *d;
    r->n_known = d->n_prompt;
    r->heap_idx = -1;
    r->worker = r->slot = -1;
    r->times.arrival = ms_core_now(c);
    core_prefix_req_init(c, r);
    r->d.token_keys = NULL; /* copied or unused: the caller's array may go */
    if (d->n_images > 0) {
        r->images = ms_xcalloc((size_t)d->n_images, sizeof *r->images);
        for (int32_t i = 0; i < d->n_images; i++) {
            r->images[i].req = r;
            r->images[i].index = i;
            r->images[i].worker = -1;
        }
    }
    hash_insert(c, r);
    c->active++;
    c->stats.submitted++;
    if (d->n_images == 0) {
        core_to_prefill(c, r);
    } else if (d->skip_preprocess) {
        core_after_preprocess(c, r);
    } else {
        r->state = RS_PREPROCESS_WAIT;
        r->times.preprocess_queued = r->times.arrival;
        core_list_push_back(&c->pre_q, r, LINK_QUEUE);
    }
    if (id) *id = r->id;
    return MS_OK;
}

void ms_core_cancel(ms_core *c, uint64_t id) {
    core_req *r = core_lookup(c, id);
    if (r && r->state != RS_DONE) core_req_end(c, r, MS_FINISH_CANCELLED, MS_ERR_CANCELLED);
}

void ms_core_close(ms_core *c) { c->closed = true; }

void ms_core_cancel_all(ms_core *c) {
    for (uint32_t i = 0; i < c->hash_cap; i++)
        for (core_req *r = c->hash[i]; r;) {
            core_req *next = r->hash_next; /* ending never frees: safe to go on */
            if (r->state != RS_DONE) core_req_end(c, r, MS_FINISH_CANCELLED, MS_ERR_CANCELLED);
            r = next;
        }
}

bool ms_core_pop_finished(ms_core *c, ms_core_finished *out) {
    core_req *r = c->done.head;
    if (!r) return false;
    core_list_remove(&c->done, r, LINK_DONE);
    hash_remove(c, r);
    out->id = r->id;
    out->user = r->user;
    out->finish = r->finish;
    out->status = r->status;
    out->prompt_tokens = r->d.n_prompt;
    out->completion_tokens = r->generated;
    out->n_preemptions = r->n_preemptions;
    out->cached_tokens = r->cached_tokens;
    out->times = r->times;
    req_free(r);
    return true;
}

/* A removed worker's queued work goes back to the shared queues. */
void core_worker_hand_back(ms_core *c, core_worker *w) {
    if (w->stage == MS_STAGE_ENCODE) {
        while (w->img_head) {
            core_image *img = w->img_head;
            core_encode_unqueue(c, img);
            core_encode_assign(c, img);
        }
    } else if (w->stage == MS_STAGE_DECODE) {
        /* from the back so the decode queue keeps admission order */
        for (int32_t i = w->n_set - 1; i >= 0; i--) {
            core_req *r = w->set[i];
            if (r->inflight > 0) continue;
            core_set_remove(c, r);
            if (c->o.mode == MS_MODE_MONOLITHIC) {
                r->state = RS_PREFILL_WAIT;
                core_heap_push(&c->ready_q, r);
            } else {
                r->state = RS_DECODE_WAIT;
                core_list_push_front(&c->decode_q, r, LINK_QUEUE);
            }
        }
    }
}

ms_status ms_core_resize(ms_core *c, ms_stage stage, int32_t workers, ms_error *err) {
    if ((int)stage < 0 || stage >= MS_STAGE_COUNT)
        return ms_errorf(err, MS_ERR_INVALID, "scheduler: no stage %d", (int)stage);
    if (!stage_used(c, stage))
        return ms_errorf(err, MS_ERR_INVALID, "scheduler: the %s pool is not used in monolithic mode",
                         ms_stage_name(stage));
    if (workers < 1)
        return ms_errorf(err, MS_ERR_INVALID, "scheduler: the %s pool needs at least 1 worker",
                         ms_stage_name(stage));
    int32_t add = workers - c->n_active[stage];
    /* retired slots (removed and idle) are taken again first, lowest id first, so a pool
     * resized up and down forever keeps a bounded number of slots */
    int32_t reusable = 0;
    for (int32_t i = 0; i < c->n_slots[stage]; i++)
        reusable += ms_core_worker_retired(c, stage, i);
    if (add > 0 && c->n_slots[stage] + add - reusable > MAX_WORKER_SLOTS)
        return ms_errorf(err, MS_ERR_LIMIT, "scheduler: more than %d %s worker slots",
                         MAX_WORKER_SLOTS, ms_stage_name(stage));
    for (int32_t i = 0; i < c->n_slots[stage] && add > 0; i++) {
        core_worker *w = &c->workers[stage][i];
        if (!ms_core_worker_retired(c, stage, i)) continue;
        w->removed = false; /* idle and empty: only the flag changes; device is by id */
        add--;
    }
    for (int32_t i = 0; i < add; i++) {
        /* new ids after the existing ones; device round-robin over the pool's list */
        worker_init(c, stage, c->n_slots[stage]);
        c->n_slots[stage]++;
    }
    /* remove the highest active ids */
    for (int32_t i = c->n_slots[stage] - 1; i >= 0 && add < 0; i--) {
        core_worker *w = &c->workers[stage][i];
        if (w->removed) continue;
        w->removed = true;
        add++;
        core_worker_hand_back(c, w);
    }
    c->n_active[stage] = workers;
    return MS_OK;
}

int32_t ms_core_worker_slots(const ms_core *c, ms_stage stage) { return c->n_slots[stage]; }

bool ms_core_worker_retired(const ms_core *c, ms_stage stage, int32_t worker) {
    const core_worker *w = &c->workers[stage][worker];
    return w->removed && !w->busy && w->n_set == 0 && w->img_queued == 0;
}

bool ms_core_stage_may_have_work(const ms_core *c, ms_stage stage) {
    switch (stage) {
    case MS_STAGE_PREPROCESS: return c->pre_q.n > 0;
    case MS_STAGE_ENCODE: return c->img_queued > 0;
    case MS_STAGE_PREFILL: return c->prefill_q.n > 0;
    default: return true; /* decode: a worker's running set is its own */
    }
}

bool ms_core_has_work(const ms_core *c, ms_stage stage, int32_t worker) {
    const core_worker *w = &c->workers[stage][worker];
    if (w->removed || w->busy) return false;
    switch (stage) {
    case MS_STAGE_PREPROCESS: return c->pre_q.n > 0;
    case MS_STAGE_ENCODE: return w->img_queued > 0;
    case MS_STAGE_PREFILL: return c->prefill_q.n > 0;
    case MS_STAGE_DECODE:
        if (c->o.mode == MS_MODE_MONOLITHIC) return w->n_set > 0 || c->ready_q.n > 0;
        return w->n_set > 0 || c->decode_q.n > 0;
    default: return false;
    }
}

void ms_core_stats_get(const ms_core *c, ms_core_stats *out) {
    *out = c->stats;
    for (int s = 0; s < MS_STAGE_COUNT; s++) {
        ms_stage_stats *st = &out->stage[s];
        st->workers = c->n_active[s];
        st->busy = st->queued = st->running = 0;
        for (int32_t i = 0; i < c->n_slots[s]; i++) {
            const core_worker *w = &c->workers[s][i];
            if (w->busy) {
                st->busy++;
                if (s != MS_STAGE_DECODE) st->running += w->batch.n_items;
            }
            if (s == MS_STAGE_ENCODE) st->queued += w->img_queued;
            if (s == MS_STAGE_DECODE) st->running += w->n_set;
        }
    }
    out->stage[MS_STAGE_PREPROCESS].queued = c->pre_q.n;
    out->stage[MS_STAGE_PREFILL].queued = c->o.mode == MS_MODE_MONOLITHIC ? c->ready_q.n : c->prefill_q.n;
    out->stage[MS_STAGE_DECODE].queued = c->decode_q.n;
    int32_t used = 0;
    for (int d = 0; d < MS_CORE_MAX_DEVICES; d++)
        if (c->pool[d].free_ids) used += c->o.kv_blocks - core_pool_available(c, d);
    out->kv_blocks_used = used;
    out->active = c->active;
}

int32_t ms_core_active(const ms_core *c) { return c->active; }
void ms_core_count_rejected(ms_core *c) { c->stats.rejected++; }

int32_t ms_core_kv_free(const ms_core *c, int32_t device) {
    if (device < 0 || device >= MS_CORE_MAX_DEVICES || !c->pool[device].free_ids) return 0;
    return core_pool_available(c, device);
}

int32_t ms_core_block_size(const ms_core *c) { return c->o.block_size; }
int32_t ms_core_kv_blocks(const ms_core *c) { return c->o.kv_blocks; }
const ms_core_options *ms_core_options_of(const ms_core *c) { return &c->o; }
