/*
 * Image keys: FNV-1a 64 over the encoded bytes, and an independent check hash (a
 * multiply-xorshift over 8-byte words, another construction than FNV so that inputs
 * that collide in one are not likely to collide in the other) plus the length.
 */
#include <string.h>

#include "encoder/image_cache.h"

int ms_image_hash_test_bits = 64;

uint64_t ms_image_hash(const uint8_t *bytes, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV offset basis */
    for (size_t i = 0; i < n; i++) {
        h ^= bytes[i];
        h *= 0x100000001b3ull;          /* FNV prime */
    }
    int bits = ms_image_hash_test_bits;
    if (bits <= 0) return 0;
    return bits >= 64 ? h : h & ((1ull << bits) - 1);
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t check_hash(const uint8_t *bytes, size_t n) {
    uint64_t h = 0x243f6a8885a308d3ull ^ (uint64_t)n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, bytes + i, 8);
        h = mix64(h ^ w) + 0x9e3779b97f4a7c15ull;
    }
    uint64_t tail = 0;
    for (size_t k = 0; i + k < n; k++) tail |= (uint64_t)bytes[i + k] << (8 * k);
    return mix64(h ^ tail ^ ((uint64_t)(n - i) << 56));
}

ms_image_key ms_image_key_of(const uint8_t *bytes, size_t n) {
    return (ms_image_key){ms_image_hash(bytes, n), check_hash(bytes, n), (uint64_t)n};
}

bool ms_image_key_equal(const ms_image_key *a, const ms_image_key *b) {
    return a->hash == b->hash && a->check == b->check && a->n_bytes == b->n_bytes;
}
