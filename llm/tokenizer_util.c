/* Tokenizer plumbing: the string hash map, growing buffers, UTF-8 helpers. */
#include "llm/tokenizer_internal.h"

#include <string.h>

/* FNV-1a over 8 bytes at a time is enough here: keys are short pieces. */
uint64_t tok_hash(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

void tok_map_init(tok_map *m, uint32_t expected) {
    uint32_t cap = 16;
    while (cap < expected * 2u) cap *= 2;
    m->cap = cap;
    m->n = 0;
    m->keys = ms_xcalloc(cap, sizeof *m->keys);
    m->lens = ms_xcalloc(cap, sizeof *m->lens);
    m->vals = ms_xcalloc(cap, sizeof *m->vals);
}

void tok_map_free(tok_map *m) {
    if (!m->keys) return;
    for (uint32_t i = 0; i < m->cap; i++) free(m->keys[i]);
    free(m->keys);
    free(m->lens);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static void map_grow(tok_map *m) {
    tok_map bigger;
    tok_map_init(&bigger, m->cap);
    for (uint32_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        uint32_t j = (uint32_t)tok_hash(m->keys[i], m->lens[i]) & (bigger.cap - 1);
        while (bigger.keys[j]) j = (j + 1) & (bigger.cap - 1);
        bigger.keys[j] = m->keys[i];
        bigger.lens[j] = m->lens[i];
        bigger.vals[j] = m->vals[i];
        bigger.n++;
    }
    free(m->keys);
    free(m->lens);
    free(m->vals);
    *m = bigger;
}

bool tok_map_put(tok_map *m, const char *key, size_t len, int32_t val) {
    if ((m->n + 1) * 2 > m->cap) map_grow(m);
    uint32_t j = (uint32_t)tok_hash(key, len) & (m->cap - 1);
    while (m->keys[j]) {
        if (m->lens[j] == len && !memcmp(m->keys[j], key, len)) return false;
        j = (j + 1) & (m->cap - 1);
    }
    m->keys[j] = ms_xmalloc(len + 1);
    memcpy(m->keys[j], key, len);
    m->keys[j][len] = 0;
    m->lens[j] = (uint32_t)len;
    m->vals[j] = val;
    m->n++;
    return true;
}

int32_t tok_map_get(const tok_map *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    uint32_t j = (uint32_t)tok_hash(key, len) & (m->cap - 1);
    while (m->keys[j]) {
        if (m->lens[j] == len && !memcmp(m->keys[j], key, len)) return m->vals[j];
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

void tok_buf_add(tok_buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2 + 64;
        b->p = ms_xrealloc(b->p, b->cap);
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void tok_buf_addc(tok_buf *b, char c) { tok_buf_add(b, &c, 1); }

/* Sequence length a lead byte announces (0: not a lead byte) and the range its second
 * byte must lie in (Unicode table 3-7: no overlongs, surrogates or past U+10FFFF). */
static size_t utf8_lead(unsigned c, unsigned *lo, unsigned *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0) *lo = 0xA0;
        if (c == 0xED) *hi = 0x9F;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0) *lo = 0x90;
        if (c == 0xF4) *hi = 0x8F;
        return 4;
    }
    return 0;
}

/* Length of a well-formed UTF-8 sequence at s, or 0 when it is not one (overlong
 * forms, surrogates and code points past U+10FFFF are ill-formed, as in Unicode 3.9). */
static size_t utf8_valid_len(const unsigned char *s, size_t n) {
    if (s[0] < 0x80) return 1;
    unsigned lo, hi;
    size_t len = utf8_lead(s[0], &lo, &hi);
    if (len == 0 || n < len) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

size_t tok_utf8_len(const unsigned char *s, size_t n) {
    size_t l = utf8_valid_len(s, n);
    return l ? l : 1;
}

/* Bytes a decoder would consume as one maximal subpart of an ill-formed sequence
 * (WHATWG / Unicode "substitution of maximal subparts"): each becomes one U+FFFD. */
static size_t utf8_bad_len(const unsigned char *s, size_t n) {
    unsigned lo, hi;
    size_t len = utf8_lead(s[0], &lo, &hi);
    if (len == 0) return 1;
    size_t i = 1;
    if (i < n && i < len && s[i] >= lo && s[i] <= hi) {
        i++;
        while (i < n && i < len && s[i] >= 0x80 && s[i] <= 0xBF) i++;
    }
    return i;
}

size_t tok_utf8_unit(const unsigned char *s, size_t n) {
    if (s[0] < 0x80) return 1;
    unsigned lo, hi;
    const size_t len = utf8_lead(s[0], &lo, &hi);
    if (len == 0) return 1;
    const size_t ok = utf8_valid_len(s, n);
    if (ok) return ok;
    const size_t bad = utf8_bad_len(s, n);
    return bad == n && n < len ? 0 : bad; /* every byte fits so far: the end is to come */
}

bool tok_utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t l = utf8_valid_len(u + i, n - i);
        if (!l) return false;
        i += l;
    }
    return true;
}

bool tok_utf8_sanitize(const char *s, size_t n, tok_buf *out) {
    const unsigned char *u = (const unsigned char *)s;
    bool changed = false;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_valid_len(u + i, n - i);
        if (l) {
            tok_buf_add(out, s + i, l);
            i += l;
        } else {
            tok_buf_add(out, "\xEF\xBF\xBD", 3);
            i += utf8_bad_len(u + i, n - i);
            changed = true;
        }
    }
    return changed;
}

uint32_t tok_utf8_decode(const unsigned char *s, size_t n, size_t *len) {
    size_t l = utf8_valid_len(s, n);
    *len = l ? l : 1;
    if (!l) return 0xFFFD;
    if (l == 1) return s[0];
    if (l == 2) return ((s[0] & 0x1Fu) << 6) | (s[1] & 0x3Fu);
    if (l == 3) return ((s[0] & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
    return ((s[0] & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
}

size_t tok_utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}
