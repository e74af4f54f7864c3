/*
 * The byte-budgeted LRU cache of image_cache.h: a chained hash table on key.hash for
 * lookups and a doubly linked list in use order (head = most recent) for eviction.
 */
#include <pthread.h>
#include <stdlib.h>

#include "encoder/image_cache.h"
#include "kernels/ms_common.h"

struct ms_image_cache_entry {
    ms_image_key key;
    void *value;
    size_t n_bytes;
    int32_t refs;              /* references held by callers */
    bool cached;               /* in the table and the list (false once evicted) */
    ms_image_cache_entry *chain;       /* next in the bucket */
    ms_image_cache_entry *prev, *next; /* use order */
};

struct ms_image_cache {
    pthread_mutex_t mu;
    size_t budget;
    ms_image_cache_free_fn free_fn;
    void *free_ctx;
    ms_image_cache_entry **buckets; /* (n_buckets) */
    size_t n_buckets;          /* power of two */
    ms_image_cache_entry *head, *tail;
    ms_image_cache_stats st;
};

ms_image_cache *ms_image_cache_create(size_t budget, ms_image_cache_free_fn free_fn, void *ctx) {
    ms_image_cache *c = ms_xcalloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    c->budget = budget;
    c->st.budget = budget;
    c->free_fn = free_fn;
    c->free_ctx = ctx;
    c->n_buckets = 64;
    c->buckets = ms_xcalloc(c->n_buckets, sizeof *c->buckets);
    return c;
}

void ms_image_cache_destroy(ms_image_cache *c) {
    if (!c) return;
    for (ms_image_cache_entry *en = c->head, *next; en; en = next) {
        next = en->next;
        MS_CHECK(en->refs == 0);
        c->free_fn(c->free_ctx, en->value);
        free(en);
    }
    free(c->buckets);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

bool ms_image_cache_enabled(const ms_image_cache *c) { return c && c->budget > 0; }

static size_t bucket_of(const ms_image_cache *c, uint64_t hash) {
    return (size_t)(hash ^ (hash >> 29)) & (c->n_buckets - 1);
}

static void list_unlink(ms_image_cache *c, ms_image_cache_entry *en) {
    if (en->prev) en->prev->next = en->next;
    else c->head = en->next;
    if (en->next) en->next->prev = en->prev;
    else c->tail = en->prev;
    en->prev = en->next = NULL;
}

static void list_push_front(ms_image_cache *c, ms_image_cache_entry *en) {
    en->prev = NULL;
    en->next = c->head;
    if (c->head) c->head->prev = en;
    c->head = en;
    if (!c->tail) c->tail = en;
}

static void table_remove(ms_image_cache *c, ms_image_cache_entry *en) {
    ms_image_cache_entry **p = &c->buckets[bucket_of(c, en->key.hash)];
    while (*p != en) p = &(*p)->chain;
    *p = en->chain;
    en->chain = NULL;
}

static void table_grow(ms_image_cache *c) {
    size_t old_n = c->n_buckets;
    ms_image_cache_entry **old = c->buckets;
    c->n_buckets = old_n * 2;
    c->buckets = ms_xcalloc(c->n_buckets, sizeof *c->buckets);
    for (size_t i = 0; i < old_n; i++)
        for (ms_image_cache_entry *en = old[i], *next; en; en = next) {
            next = en->chain;
            size_t b = bucket_of(c, en->key.hash);
            en->chain = c->buckets[b];
            c->buckets[b] = en;
        }
    free(old);
}

/* Locked. Counts collisions: same hash, other bytes. */
static ms_image_cache_entry *find(ms_image_cache *c, const ms_image_key *key) {
    for (ms_image_cache_entry *en = c->buckets[bucket_of(c, key->hash)]; en; en = en->chain) {
        if (en->key.hash != key->hash) continue;
        if (ms_image_key_equal(&en->key, key)) return en;
        c->st.collisions++;
    }
    return NULL;
}

/* Locked. Takes en out of the cache; its value is freed now when nobody holds it, else
 * by the last release. Returns the value to free (NULL when still referenced). */
static void *evict(ms_image_cache *c, ms_image_cache_entry *en) {
    table_remove(c, en);
    list_unlink(c, en);
    en->cached = false;
    c->st.bytes -= en->n_bytes;
    c->st.entries--;
    c->st.evictions++;
    if (en->refs > 0) return NULL;
    void *v = en->value;
    free(en);
    return v;
}

ms_image_cache_entry *ms_image_cache_get(ms_image_cache *c, const ms_image_key *key) {
    if (!ms_image_cache_enabled(c)) return NULL;
    pthread_mutex_lock(&c->mu);
    ms_image_cache_entry *en = find(c, key);
    if (en) {
        en->refs++;
        list_unlink(c, en);
        list_push_front(c, en);
        c->st.hits++;
    } else {
        c->st.misses++;
    }
    pthread_mutex_unlock(&c->mu);
    return en;
}

ms_image_cache_entry *ms_image_cache_put(ms_image_cache *c, const ms_image_key *key, void *value,
                                         size_t n_bytes, bool *taken) {
    *taken = false;
    if (!ms_image_cache_enabled(c) || n_bytes > c->budget) return NULL;
    pthread_mutex_lock(&c->mu);
    ms_image_cache_entry *en = find(c, key);
    if (en) { /* another request cached the same image first */
        en->refs++;
        pthread_mutex_unlock(&c->mu);
        return en;
    }
    /* Evict before inserting, so the byte count never goes over the budget. Values
     * are freed after the lock is dropped (a device free may wait on the device). */
    void **victims = NULL;
    size_t n_victims = 0;
    while (c->st.bytes + n_bytes > c->budget && c->tail) {
        void *v = evict(c, c->tail);
        if (v) {
            victims = ms_xrealloc(victims, (n_victims + 1) * sizeof *victims);
            victims[n_victims++] = v;
        }
    }
    en = ms_xcalloc(1, sizeof *en);
    en->key = *key;
    en->value = value;
    en->n_bytes = n_bytes;
    en->refs = 1;
    en->cached = true;
    if ((size_t)c->st.entries + 1 > c->n_buckets) table_grow(c);
    size_t b = bucket_of(c, key->hash);
    en->chain = c->buckets[b];
    c->buckets[b] = en;
    list_push_front(c, en);
    c->st.bytes += n_bytes;
    c->st.entries++;
    c->st.inserts++;
    if (c->st.bytes > c->st.peak_bytes) c->st.peak_bytes = c->st.bytes;
    MS_CHECK(c->st.bytes <= c->budget);
    *taken = true;
    pthread_mutex_unlock(&c->mu);
    for (size_t i = 0; i < n_victims; i++) c->free_fn(c->free_ctx, victims[i]);
    free(victims);
    return en;
}

void *ms_image_cache_value(const ms_image_cache_entry *en) { return en->value; }

void ms_image_cache_release(ms_image_cache *c, ms_image_cache_entry *en) {
    if (!en) return;
    pthread_mutex_lock(&c->mu);
    MS_CHECK(en->refs > 0);
    bool last = --en->refs == 0 && !en->cached;
    pthread_mutex_unlock(&c->mu);
    if (!last) return;
    c->free_fn(c->free_ctx, en->value);
    free(en);
}

void ms_image_cache_stats_get(ms_image_cache *c, ms_image_cache_stats *out) {
    if (!c) {
        *out = (ms_image_cache_stats){0};
        return;
    }
    pthread_mutex_lock(&c->mu);
    *out = c->st;
    pthread_mutex_unlock(&c->mu);
}
