/*
 * Reuse of image work across requests (docs/encoder.md, "Image caches"): images are
 * keyed by their encoded bytes, and a byte-budgeted LRU cache keeps what an image
 * became (the engine keeps two: resized + cropped pixels on the host, and vision
 * embeddings on the device that computed them).
 *
 * Key: a 64-bit FNV-1a hash of the bytes picks the bucket; an entry is served only
 * when a second, independent 64-bit hash and the byte length match too, so two images
 * whose first hashes collide (tests force that with ms_image_hash_test_bits) never get
 * each other's pixels or embeddings.
 *
 * Entries are reference counted: a lookup or insert hands the caller a reference that
 * keeps the value alive after eviction (a request still reading an evicted embedding).
 * The cached byte count covers the entries in the cache only, and never exceeds the
 * budget: an insert evicts least recently used entries first, and a value larger than
 * the whole budget is not cached. Thread-safe (one mutex per cache).
 */
#ifndef MS_ENCODER_IMAGE_CACHE_H
#define MS_ENCODER_IMAGE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ms_image_key {
    uint64_t hash;             /* FNV-1a 64 (bucket) */
    uint64_t check;            /* independent 64-bit hash, compared on lookup */
    uint64_t n_bytes;          /* encoded length, compared on lookup */
} ms_image_key;

/* FNV-1a, 64 bit, of the bytes (truncated to ms_image_hash_test_bits bits). */
uint64_t ms_image_hash(const uint8_t *bytes, size_t n);
/* The key of an image's encoded bytes. */
ms_image_key ms_image_key_of(const uint8_t *bytes, size_t n);
bool ms_image_key_equal(const ms_image_key *a, const ms_image_key *b);
/* Test hook: ms_image_hash keeps only this many low bits (64 in production; 0 makes
 * every image hash to 0, so every lookup meets a collision). Set before use. */
extern int ms_image_hash_test_bits;

typedef struct ms_image_cache ms_image_cache;
typedef struct ms_image_cache_entry ms_image_cache_entry;
/* Frees a value the cache owns (called when its last reference goes). */
typedef void (*ms_image_cache_free_fn)(void *ctx, void *value);

typedef struct ms_image_cache_stats {
    uint64_t hits, misses;     /* lookups */
    uint64_t inserts;          /* values taken into the cache */
    uint64_t evictions;        /* entries dropped to make room */
    uint64_t collisions;       /* lookups that met an entry with the same hash, other bytes */
    size_t bytes;              /* bytes of the entries in the cache now */
    size_t peak_bytes;         /* most bytes held at once (never above budget) */
    size_t budget;
    int64_t entries;
} ms_image_cache_stats;

/* budget 0: the cache is disabled (lookups miss and are not counted, inserts refuse). */
ms_image_cache *ms_image_cache_create(size_t budget, ms_image_cache_free_fn free_fn, void *ctx);
/* Frees every entry; entries still referenced must have been released first. */
void ms_image_cache_destroy(ms_image_cache *c);
bool ms_image_cache_enabled(const ms_image_cache *c);

/* The entry of key with a reference taken (marked most recently used), or NULL
 * (counted as a miss). */
ms_image_cache_entry *ms_image_cache_get(ms_image_cache *c, const ms_image_key *key);
/* Offers value (n_bytes) under key. Returns an entry with a reference for the caller:
 * the new one (*taken true: the cache owns value now), or one already cached under
 * key (*taken false: the caller keeps value). NULL when disabled or n_bytes is over
 * the budget (the caller keeps value). */
ms_image_cache_entry *ms_image_cache_put(ms_image_cache *c, const ms_image_key *key, void *value,
                                         size_t n_bytes, bool *taken);
void *ms_image_cache_value(const ms_image_cache_entry *en);
/* Drops a reference from get or put; frees an evicted entry's value when it was the last. */
void ms_image_cache_release(ms_image_cache *c, ms_image_cache_entry *en);
void ms_image_cache_stats_get(ms_image_cache *c, ms_image_cache_stats *out);

#endif
