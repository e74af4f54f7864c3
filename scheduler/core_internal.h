/*
 * Private structures of the scheduler core, shared by core.c (requests, queues,
 * lifecycle, KV accounting) and core_batch.c (batch building per stage).
 */
#ifndef MS_SCHED_CORE_INTERNAL_H
#define MS_SCHED_CORE_INTERNAL_H

#include "scheduler/core.h"

typedef struct core_req core_req;

/* Where a request is. A request in a WAIT or RUN state of the LLM may also hold
 * KV blocks; `inflight` counts its units inside running batches. */
typedef enum req_state {
    RS_PREPROCESS_WAIT,  /* in c->pre_q */
    RS_PREPROCESS_RUN,
    RS_ENCODE,           /* images queued / running on encoders (disagg) */
    RS_PREFILL_WAIT,     /* in c->prefill_q (heap; disagg) or c->ready_q (mono, not owned) */
    RS_PREFILL_RUN,      /* a prefill chunk is running (disagg) */
    RS_DECODE_WAIT,      /* in c->decode_q (disagg) */
    RS_DECODE,           /* in a decode worker's running set (disagg) */
    RS_OWNED,            /* monolithic: owned by an LLM worker */
    RS_DONE,             /* in c->done list */
} req_state;

/* One image of a request on an encoder worker's queue (or running). */
typedef struct core_image {
    core_req *req;
    int32_t index;
    int32_t worker;            /* -1: not assigned */
    bool queued, running, done;
    struct core_image *prev, *next;
} core_image;

/* A doubly linked list node embedded in a request (one per list kind). */
typedef struct core_link {
    core_req *prev, *next;
} core_link;

typedef struct core_list {
    core_req *head, *tail;
    int32_t n;
} core_list;

enum { LINK_QUEUE = 0, LINK_HOLDER, LINK_DONE, LINK_COUNT };

struct core_req {
    uint64_t id;
    void *user;
    ms_core_req_desc d;
    req_state state;
    ms_finish_reason finish;   /* set once; NONE while running */
    ms_status status;
    int32_t inflight;          /* units of this request in running batches */
    int32_t n_known;           /* prompt + generated */
    int32_t n_cached;          /* positions in the KV cache */
    int32_t generated;
    int32_t images_done;
    int32_t n_preemptions;
    double deadline;           /* prefill order key */
    int32_t heap_idx;          /* in c->prefill_q / c->ready_q, -1 if not */
    int32_t worker;            /* decode running set / monolithic owner, -1 if none */
    int32_t slot;              /* index in that worker's set */
    /* KV: blocks in pool `device`; copy_* = source of a pending cross-device hand-off */
    int32_t device;
    int32_t *blocks;
    int32_t n_blocks, cap_blocks;
    int32_t copy_device;
    int32_t *copy_blocks;
    int32_t n_copy;
    /* prefix cache: keys (n_prompt, copied), chained hashes of the full prompt blocks;
     * blocks [0, n_registered) of the table are registered (or deduplicated), the last
     * of them as reg_tail (generation reg_tail_gen) in the cache */
    uint64_t *keys;
    uint64_t *block_hash;
    int32_t n_hash_blocks;
    int32_t n_registered;
    int32_t reg_tail;
    uint32_t reg_tail_gen;
    int32_t cached_tokens;     /* reported: prompt tokens served from the cache */
    core_image *images;        /* (n_images) */
    core_link link[LINK_COUNT];
    core_req *hash_next;
    ms_request_times times;
};

typedef struct core_heap {
    core_req **a;
    int32_t n, cap;
    int32_t which;             /* unused tag for debugging */
} core_heap;

typedef struct core_worker {
    ms_stage stage;
    int32_t id;
    int32_t device;
    bool removed;              /* by a resize: takes no new work */
    bool busy;                 /* a batch is out */
    ms_core_batch batch;
    core_req **reqs;           /* (cap_items) request of each batch item */
    int32_t cap_items;
    /* encode: queue of images and pending image tokens (queued + running) */
    core_image *img_head, *img_tail;
    int32_t img_queued;
    int64_t pending_tokens;
    /* decode (disagg) running set / monolithic owned requests, in admission order */
    core_req **set;
    int32_t n_set, cap_set;
} core_worker;

typedef struct core_prefix core_prefix; /* core_prefix.c */

typedef struct core_pool {
    int32_t *free_ids;         /* (kv_blocks) stack of uncached free blocks */
    int32_t n_free;
    core_prefix *px;           /* refcounts, cache, LRU; NULL without prefix caching */
    core_list holders;         /* requests holding blocks here, by id (arrival) order */
} core_pool;

struct ms_core {
    ms_core_options o;
    uint64_t next_id;
    bool closed;
    /* id -> request */
    core_req **hash;
    uint32_t hash_cap;         /* power of two */
    int32_t active;
    core_list pre_q;           /* preprocess FIFO */
    core_heap prefill_q;       /* disagg prefill queue by (deadline, id) */
    core_heap ready_q;         /* monolithic: ready requests by (arrival, id) */
    core_list decode_q;        /* disagg: sequences waiting for a decode slot, FIFO */
    core_list done;            /* finished, not yet popped */
    int64_t img_queued;        /* images queued over all encode workers */
    core_worker *workers[MS_STAGE_COUNT];
    int32_t n_slots[MS_STAGE_COUNT];
    int32_t n_active[MS_STAGE_COUNT];
    core_pool pool[MS_CORE_MAX_DEVICES];
    int32_t n_pools;
    core_req **scratch;        /* snapshot of a worker's set while building a batch */
    int32_t cap_scratch;
    ms_core_stats stats;
};

/* ---- core.c ---- */
void core_list_push_back(core_list *l, core_req *r, int k);
void core_list_push_front(core_list *l, core_req *r, int k);
void core_list_remove(core_list *l, core_req *r, int k);
void core_heap_push(core_heap *h, core_req *r);
core_req *core_heap_pop(core_heap *h);
void core_heap_remove(core_heap *h, core_req *r);
static inline int32_t core_blocks_for(const ms_core *c, int32_t tokens) {
    return (tokens + c->o.block_size - 1) / c->o.block_size;
}
/* Makes r's table in pool `device` cover `tokens` positions, preempting younger
 * requests there that are not running when needed. False: not possible now. */
bool core_kv_reserve(ms_core *c, core_req *r, int32_t device, int32_t tokens);
void core_kv_release(ms_core *c, core_req *r);
void core_kv_release_copy(ms_core *c, core_req *r);
/* Sends r back to recompute its prompt + output (blocks freed). */
void core_preempt(ms_core *c, core_req *r);
/* Ends r with a reason: leaves every queue now; finalised when nothing runs it. */
void core_req_end(ms_core *c, core_req *r, ms_finish_reason why, ms_status st);
/* Prefill is over (first token sampled): next stage for r. */
void core_to_decode(ms_core *c, core_req *r);
void core_to_prefill(ms_core *c, core_req *r);
void core_encode_assign(ms_core *c, core_image *img);
void core_set_remove(ms_core *c, core_req *r);
void core_set_add(core_worker *w, core_req *r);
/* A batch item of r is done: false when r has ended (then finalised if idle). */
bool core_item_release(ms_core *c, core_req *r);
void core_preprocess_done(ms_core *c, core_req *r, ms_status st);
void core_worker_hand_back(ms_core *c, core_worker *w);
void core_encode_unqueue(ms_core *c, core_image *img);
void core_holder_insert(ms_core *c, core_req *r);

/* ---- core_prefix.c ---- */
void core_pool_init(ms_core *c, core_pool *p);
void core_pool_free(core_pool *p);
/* Uncached free blocks + cached blocks no request holds. */
int32_t core_pool_available(const ms_core *c, int32_t device);
/* A block for a table (ref 1): an uncached one, else the LRU cached one (evicted). */
int32_t core_pool_take(ms_core *c, int32_t device);
/* Drops a reference to each block; unheld ones become free (cached ones stay cached). */
void core_pool_put(ms_core *c, int32_t device, const int32_t *ids, int32_t n);
/* At arrive: copies the keys and hashes the full prompt blocks (caching on, keys given). */
void core_prefix_req_init(ms_core *c, core_req *r);
/* r holds no blocks and nothing is computed: takes its longest cached prefix on
 * `device` (at most n_prompt - 1 tokens) into its table and sets n_cached. */
void core_prefix_match(ms_core *c, core_req *r, int32_t device);
/* After a prefill chunk: registers r's newly full, computed prompt blocks. */
void core_prefix_register(ms_core *c, core_req *r);

/* ---- core_batch.c ---- */
const ms_core_batch *core_batch_preprocess(ms_core *c, core_worker *w);
const ms_core_batch *core_batch_encode(ms_core *c, core_worker *w);
const ms_core_batch *core_batch_prefill(ms_core *c, core_worker *w);
const ms_core_batch *core_batch_decode(ms_core *c, core_worker *w);
const ms_core_batch *core_batch_mono(ms_core *c, core_worker *w);
void core_batch_item_add(core_worker *w, core_req *r);
core_req *core_lookup(const ms_core *c, uint64_t id);

#endif
