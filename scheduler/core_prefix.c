/*
 * Scheduler core, part 3: the KV block pools and the prefix cache.
 *
 * A pool hands out block ids from a stack of uncached free blocks. With prefix caching,
 * every block also has a reference count (requests whose table holds it), and a full
 * prompt block that has been computed is registered under a chained hash of its content:
 *   hash(block i) = mix(hash(block i-1), keys of the block's positions)
 * where a position's key is its token id, or (MS_CORE_IMAGE_KEY) its image's byte hash,
 * so two different images never share a block. A registered block whose last reference
 * goes stays registered on an LRU list: it is free (counted as available, taken when the
 * uncached stack is empty, oldest first) but a later request with the same prefix takes
 * it back instead of recomputing it. Cached blocks are thus part of the pool, never more.
 *
 * A hash match alone never serves KV: the block's stored keys must equal the request's,
 * and its parent (the block it was registered after, with that block's generation, bumped
 * whenever a block leaves the cache) must be the block matched just before. By induction
 * the whole prefix is equal, whatever the hash width (prefix_hash_bits, a test hook).
 */
#include <string.h>

#include "scheduler/core_internal.h"

struct core_prefix {
    int32_t *ref;              /* (kv_blocks) table references */
    bool *registered;          /* (kv_blocks) in the hash table */
    uint64_t *hash;            /* (kv_blocks) chained hash (masked) */
    uint64_t *keys;            /* (kv_blocks * block_size) content of a registered block */
    int32_t *parent;           /* (kv_blocks) block registered before it, -1 for a first block */
    uint32_t *parent_gen;      /* (kv_blocks) that parent's generation at registration */
    uint32_t *gen;             /* (kv_blocks) bumped when the block leaves the cache */
    int32_t *bucket_next;      /* (kv_blocks) hash chain */
    int32_t *buckets;          /* (n_buckets) first block of each chain, -1 */
    uint32_t n_buckets;        /* power of two */
    int32_t *lru_prev, *lru_next; /* (kv_blocks) registered blocks with ref 0 */
    int32_t lru_head, lru_tail, n_lru;
    int32_t n_registered;
};

/* ---- hashing ---- */
uint64_t ms_core_hash_bytes(const void *data, size_t n, uint64_t seed) {
    /* FNV-1a 64, then a splitmix finaliser so the low bits (bucket index) mix well */
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

static uint64_t hash_mask(const ms_core *c) {
    int32_t b = c->o.prefix_hash_bits;
    return b <= 0 || b >= 64 ? ~0ull : (1ull << b) - 1;
}

void core_prefix_req_init(ms_core *c, core_req *r) {
    if (!c->o.prefix_caching || !r->d.token_keys) return;
    int32_t bs = c->o.block_size, n = r->d.n_prompt;
    r->keys = ms_xmalloc((size_t)n * sizeof *r->keys);
    memcpy(r->keys, r->d.token_keys, (size_t)n * sizeof *r->keys);
    r->n_hash_blocks = n / bs;
    r->block_hash = ms_xmalloc((size_t)(r->n_hash_blocks + 1) * sizeof *r->block_hash);
    uint64_t h = 0;
    for (int32_t i = 0; i < r->n_hash_blocks; i++) {
        h = ms_core_hash_bytes(r->keys + (size_t)i * bs, (size_t)bs * sizeof *r->keys, h);
        r->block_hash[i] = h & hash_mask(c);
    }
}

/* ---- pools ---- */
void core_pool_init(ms_core *c, core_pool *p) {
    int32_t n = c->o.kv_blocks;
    p->free_ids = ms_xmalloc((size_t)n * sizeof(int32_t));
    for (int32_t b = 0; b < n; b++) p->free_ids[b] = n - 1 - b; /* hand out low ids first */
    p->n_free = n;
    if (!c->o.prefix_caching) return;
    core_prefix *x = ms_xcalloc(1, sizeof *x);
    x->ref = ms_xcalloc((size_t)n, sizeof *x->ref);
    x->registered = ms_xcalloc((size_t)n, sizeof *x->registered);
    x->hash = ms_xcalloc((size_t)n, sizeof *x->hash);
    x->keys = ms_xcalloc((size_t)n * (size_t)c->o.block_size, sizeof *x->keys);
    x->parent = ms_xcalloc((size_t)n, sizeof *x->parent);
    x->parent_gen = ms_xcalloc((size_t)n, sizeof *x->parent_gen);
    x->gen = ms_xcalloc((size_t)n, sizeof *x->gen);
    x->bucket_next = ms_xcalloc((size_t)n, sizeof *x->bucket_next);
    x->lru_prev = ms_xcalloc((size_t)n, sizeof *x->lru_prev);
    x->lru_next = ms_xcalloc((size_t)n, sizeof *x->lru_next);
    x->n_buckets = 1;
    while (x->n_buckets < (uint32_t)n) x->n_buckets *= 2;
    x->buckets = ms_xmalloc(x->n_buckets * sizeof *x->buckets);
    for (uint32_t i = 0; i < x->n_buckets; i++) x->buckets[i] = -1;
    x->lru_head = x->lru_tail = -1;
    p->px = x;
}

void core_pool_free(core_pool *p) {
    free(p->free_ids);
    core_prefix *x = p->px;
    if (!x) return;
    free(x->ref);
    free(x->registered);
    free(x->hash);
    free(x->keys);
    free(x->parent);
    free(x->parent_gen);
    free(x->gen);
    free(x->bucket_next);
    free(x->buckets);
    free(x->lru_prev);
    free(x->lru_next);
    free(x);
}

int32_t core_pool_available(const ms_core *c, int32_t device) {
    const core_pool *p = &c->pool[device];
    return p->n_free + (p->px ? p->px->n_lru : 0);
}

static void lru_remove(core_prefix *x, int32_t b) {
    int32_t pv = x->lru_prev[b], nx = x->lru_next[b];
    if (pv >= 0) x->lru_next[pv] = nx;
    else x->lru_head = nx;
    if (nx >= 0) x->lru_prev[nx] = pv;
    else x->lru_tail = pv;
    x->n_lru--;
}

static void lru_push_back(core_prefix *x, int32_t b) {
    x->lru_prev[b] = x->lru_tail;
    x->lru_next[b] = -1;
    if (x->lru_tail >= 0) x->lru_next[x->lru_tail] = b;
    else x->lru_head = b;
    x->lru_tail = b;
    x->n_lru++;
}

static void unregister(ms_core *c, core_prefix *x, int32_t b) {
    int32_t *pp = &x->buckets[x->hash[b] & (x->n_buckets - 1)];
    while (*pp != b) pp = &x->bucket_next[*pp];
    *pp = x->bucket_next[b];
    x->registered[b] = false;
    x->gen[b]++; /* children registered under it no longer match */
    x->n_registered--;
    c->stats.kv_blocks_cached--;
}

int32_t core_pool_take(ms_core *c, int32_t device) {
    core_pool *p = &c->pool[device];
    core_prefix *x = p->px;
    int32_t b;
    if (p->n_free > 0) {
        b = p->free_ids[--p->n_free];
    } else {
        MS_CHECK(x && x->n_lru > 0);
        b = x->lru_head; /* least recently used cached block */
        lru_remove(x, b);
        unregister(c, x, b);
        c->stats.prefix_evictions++;
    }
    if (x) x->ref[b] = 1;
    return b;
}

/* Drops one reference per block. Last blocks first, so that of one sequence's cached
 * blocks the tail (the least shareable) is evicted before the head. */
void core_pool_put(ms_core *c, int32_t device, const int32_t *ids, int32_t n) {
    core_pool *p = &c->pool[device];
    core_prefix *x = p->px;
    for (int32_t i = n - 1; i >= 0; i--) {
        int32_t b = ids[i];
        if (x) {
            MS_CHECK(x->ref[b] > 0);
            if (--x->ref[b] > 0) continue;
            if (x->registered[b]) {
                lru_push_back(x, b);
                continue;
            }
        }
        p->free_ids[p->n_free++] = b;
    }
    MS_CHECK(p->n_free + (x ? x->n_lru : 0) <= c->o.kv_blocks);
}

/* The registered block with r's block i content after `parent` (gen), or -1. */
static int32_t lookup(ms_core *c, core_prefix *x, const core_req *r, int32_t i, int32_t parent,
                      uint32_t parent_gen) {
    int32_t bs = c->o.block_size;
    uint64_t h = r->block_hash[i];
    for (int32_t b = x->buckets[h & (x->n_buckets - 1)]; b >= 0; b = x->bucket_next[b]) {
        if (x->hash[b] != h) continue;
        if (x->parent[b] == parent && x->parent_gen[b] == parent_gen &&
            !memcmp(&x->keys[(size_t)b * bs], r->keys + (size_t)i * bs, (size_t)bs * sizeof *r->keys))
            return b;
        c->stats.prefix_hash_collisions++; /* same hash, other content or prefix */
    }
    return -1;
}

void core_prefix_match(ms_core *c, core_req *r, int32_t device) {
    core_prefix *x = c->pool[device].px;
    if (!x || !r->keys || r->n_blocks > 0 || r->n_cached > 0) return;
    /* the last prompt token is always computed: its logits give the first token */
    int32_t max_blocks = (r->d.n_prompt - 1) / c->o.block_size, k = 0;
    int32_t parent = -1;
    uint32_t parent_gen = 0;
    c->stats.prefix_queried_tokens += (uint64_t)r->d.n_prompt;
    while (k < max_blocks) {
        int32_t b = lookup(c, x, r, k, parent, parent_gen);
        if (b < 0) break;
        if (x->ref[b]++ == 0) lru_remove(x, b);
        if (r->n_blocks == r->cap_blocks) {
            r->cap_blocks = r->cap_blocks * 2 + 4;
            r->blocks = ms_xrealloc(r->blocks, (size_t)r->cap_blocks * sizeof *r->blocks);
        }
        r->blocks[r->n_blocks++] = b;
        parent = b;
        parent_gen = x->gen[b];
        k++;
    }
    if (k == 0) return;
    r->device = device;
    core_holder_insert(c, r);
    r->n_cached = k * c->o.block_size;
    r->n_registered = k;
    r->reg_tail = parent;
    r->reg_tail_gen = parent_gen;
    c->stats.prefix_hit_tokens += (uint64_t)r->n_cached;
    if (r->n_preemptions == 0) r->cached_tokens = r->n_cached;
}

void core_prefix_register(ms_core *c, core_req *r) {
    core_prefix *x = r->n_blocks > 0 ? c->pool[r->device].px : NULL;
    if (!x || !r->keys) return;
    int32_t bs = c->o.block_size;
    int32_t computed = r->n_cached < r->d.n_prompt ? r->n_cached : r->d.n_prompt;
    int32_t full = computed / bs;
    if (full > r->n_blocks) full = r->n_blocks;
    for (int32_t i = r->n_registered; i < full; i++) {
        int32_t parent = i > 0 ? r->reg_tail : -1;
        uint32_t parent_gen = i > 0 ? r->reg_tail_gen : 0;
        int32_t b = lookup(c, x, r, i, parent, parent_gen);
        if (b < 0) { /* new: r's own block becomes the cached one */
            b = r->blocks[i];
            MS_CHECK(!x->registered[b]);
            x->registered[b] = true;
            x->hash[b] = r->block_hash[i];
            memcpy(&x->keys[(size_t)b * bs], r->keys + (size_t)i * bs, (size_t)bs * sizeof *r->keys);
            x->parent[b] = parent;
            x->parent_gen[b] = parent_gen;
            uint32_t slot = (uint32_t)(x->hash[b] & (x->n_buckets - 1));
            x->bucket_next[b] = x->buckets[slot];
            x->buckets[slot] = b;
            x->n_registered++;
            c->stats.kv_blocks_cached++;
        } /* else computed twice (two requests at once): the first copy stays cached and
           * r's block stays private, freed uncached; r's later blocks chain to the first */
        r->reg_tail = b;
        r->reg_tail_gen = x->gen[b];
    }
    if (full > r->n_registered) r->n_registered = full;
}
