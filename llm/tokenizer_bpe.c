/*
 * The BPE model: one word (a pre-tokenized span) into ids, following HF tokenizers'
 * BPE::merge_word and Word::merge_all exactly: initial symbols per character (unknown
 * characters to <0xNN> byte pieces with byte_fallback, else to a fused <unk>), then
 * merges applied lowest rank first, leftmost first on ties, through a binary heap over
 * a linked list of symbols (O(n log n) in the word length; SentencePiece-style files
 * have no pre-tokenizer, so a "word" can be a whole paragraph). Short words are cached.
 */
#include "llm/tokenizer_internal.h"

#include <pthread.h>
#include <string.h>

/* ---- merges: (left id, right id) -> (rank, merged id), open addressing ---- */

static uint64_t pair_key(int32_t l, int32_t r) { return ((uint64_t)(uint32_t)l << 32) | (uint32_t)r; }
static uint32_t pair_slot(uint64_t key, uint32_t cap) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return (uint32_t)key & (cap - 1);
}

void tok_merges_init(ms_tokenizer *t, uint32_t expected) {
    uint32_t cap = 16;
    while (cap < expected * 2u) cap *= 2;
    t->merge_cap = cap;
    t->merges = ms_xmalloc(cap * sizeof *t->merges);
    for (uint32_t i = 0; i < cap; i++) t->merges[i] = (tok_merge_entry){0, -1, -1};
}

/* A pair listed twice keeps its later rank, as HF's HashMap built from the list does. */
void tok_merges_put(ms_tokenizer *t, int32_t left, int32_t right, int32_t rank, int32_t merged) {
    uint64_t key = pair_key(left, right);
    uint32_t j = pair_slot(key, t->merge_cap);
    while (t->merges[j].rank >= 0 && t->merges[j].key != key) j = (j + 1) & (t->merge_cap - 1);
    t->merges[j] = (tok_merge_entry){key, rank, merged};
}

static const tok_merge_entry *merges_get(const ms_tokenizer *t, int32_t left, int32_t right) {
    uint64_t key = pair_key(left, right);
    uint32_t j = pair_slot(key, t->merge_cap);
    while (t->merges[j].rank >= 0) {
        if (t->merges[j].key == key) return &t->merges[j];
        j = (j + 1) & (t->merge_cap - 1);
    }
    return NULL;
}

/* ---- the word ---- */

typedef struct sym {
    int32_t id;
    int32_t prev, next; /* -1 at the ends */
    uint32_t len;       /* bytes; 0 = merged away */
} sym;

typedef struct heap_item {
    int32_t rank, pos, merged;
    int32_t left, right; /* the pair it was pushed for: a cheap validity check */
} heap_item;

typedef struct word_state {
    sym *syms;
    int32_t n, cap;
    heap_item *heap;
    int32_t n_heap, heap_cap;
    bool syms_local, heap_local; /* still on the caller's stack arrays */
} word_state;

static bool heap_less(heap_item a, heap_item b) { return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos; }

static void heap_push(word_state *w, heap_item it) {
    if (w->n_heap == w->heap_cap) {
        w->heap_cap = w->heap_cap ? w->heap_cap * 2 : 64;
        heap_item *p = ms_xmalloc((size_t)w->heap_cap * sizeof *p);
        if (w->n_heap) memcpy(p, w->heap, (size_t)w->n_heap * sizeof *p);
        if (!w->heap_local) free(w->heap);
        w->heap = p;
        w->heap_local = false;
    }
    int32_t i = w->n_heap++;
    while (i > 0) {
        int32_t p = (i - 1) / 2;
        if (!heap_less(it, w->heap[p])) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = it;
}

static heap_item heap_pop(word_state *w) {
    heap_item top = w->heap[0], last = w->heap[--w->n_heap];
    int32_t i = 0;
    for (;;) {
        int32_t c = 2 * i + 1;
        if (c >= w->n_heap) break;
        if (c + 1 < w->n_heap && heap_less(w->heap[c + 1], w->heap[c])) c++;
        if (!heap_less(w->heap[c], last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (w->n_heap > 0) w->heap[i] = last;
    return top;
}

static void sym_add(word_state *w, int32_t id, uint32_t len) {
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 64;
        sym *p = ms_xmalloc((size_t)w->cap * sizeof *p);
        if (w->n) memcpy(p, w->syms, (size_t)w->n * sizeof *p);
        if (!w->syms_local) free(w->syms);
        w->syms = p;
        w->syms_local = false;
    }
    w->syms[w->n] = (sym){id, w->n - 1, -1, len};
    if (w->n > 0) w->syms[w->n - 1].next = w->n;
    w->n++;
}

static void push_pair(const ms_tokenizer *t, word_state *w, int32_t pos) {
    int32_t next = w->syms[pos].next;
    if (next < 0) return;
    const tok_merge_entry *m = merges_get(t, w->syms[pos].id, w->syms[next].id);
    if (m) heap_push(w, (heap_item){m->rank, pos, m->merged, w->syms[pos].id, w->syms[next].id});
}

static void merge_all(const ms_tokenizer *t, word_state *w) {
    for (int32_t i = 0; i + 1 < w->n; i++) push_pair(t, w, i);
    while (w->n_heap > 0) {
        heap_item top = heap_pop(w);
        sym *cur = &w->syms[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        sym *right = &w->syms[cur->next];
        /* Stale entry? HF's test: the pair now at pos merges into the same id. Same
         * pair as pushed implies that; only otherwise is the table consulted. */
        if (cur->id != top.left || right->id != top.right) {
            const tok_merge_entry *m = merges_get(t, cur->id, right->id);
            if (!m || m->merged != top.merged) continue;
        }
        cur->id = top.merged;
        cur->len += right->len;
        cur->next = right->next;
        right->len = 0;
        if (cur->next >= 0) w->syms[cur->next].prev = top.pos;
        if (cur->prev >= 0) push_pair(t, w, cur->prev);
        push_pair(t, w, top.pos);
    }
}

static void ids_push(int32_t **ids, size_t *n, size_t *cap, int32_t id) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *ids = ms_xrealloc(*ids, *cap * sizeof **ids);
    }
    (*ids)[(*n)++] = id;
}

/* Initial symbols as HF's merge_word builds them. */
static void word_init(const ms_tokenizer *t, word_state *w, const char *s, size_t n) {
    int32_t unk_len = -1; /* pending <unk> bytes (fused), -1 none */
    for (size_t i = 0; i < n;) {
        size_t l = tok_utf8_len((const unsigned char *)s + i, n - i);
        int32_t id = tok_map_get(&t->vocab, s + i, l);
        if (id >= 0) {
            if (unk_len >= 0) sym_add(w, t->unk_id, (uint32_t)unk_len);
            unk_len = -1;
            sym_add(w, id, (uint32_t)l);
        } else {
            bool bytes_ok = t->byte_fallback;
            for (size_t k = 0; k < l && bytes_ok; k++) bytes_ok = t->byte_ids[(unsigned char)s[i + k]] >= 0;
            if (bytes_ok) {
                for (size_t k = 0; k < l; k++) sym_add(w, t->byte_ids[(unsigned char)s[i + k]], 1);
            } else if (t->unk_id >= 0) {
                if (unk_len >= 0 && t->fuse_unk) unk_len += (int32_t)l;
                else {
                    if (unk_len >= 0) sym_add(w, t->unk_id, (uint32_t)unk_len);
                    unk_len = (int32_t)l;
                }
            } /* no unk token: the character is dropped, as in HF */
        }
        i += l;
    }
    if (unk_len >= 0) sym_add(w, t->unk_id, (uint32_t)unk_len);
}

enum { CACHE_MAX_WORD = 64 };

static bool cache_get(const ms_tokenizer *t, const char *s, size_t n, int32_t **ids, size_t *n_ids, size_t *cap) {
    if (!t->cache || n > CACHE_MAX_WORD) return false;
    uint32_t slot = (uint32_t)tok_hash(s, n) & (TOK_CACHE_SLOTS - 1);
    bool hit = false;
    pthread_mutex_lock(t->cache_lock);
    tok_cache_entry *e = &t->cache[slot];
    if (e->word && e->len == n && !memcmp(e->word, s, n)) {
        for (uint32_t i = 0; i < e->n_ids; i++) ids_push(ids, n_ids, cap, e->ids[i]);
        hit = true;
    }
    pthread_mutex_unlock(t->cache_lock);
    return hit;
}

static void cache_put(const ms_tokenizer *t, const char *s, size_t n, const int32_t *ids, size_t n_ids) {
    if (!t->cache || n > CACHE_MAX_WORD) return;
    uint32_t slot = (uint32_t)tok_hash(s, n) & (TOK_CACHE_SLOTS - 1);
    pthread_mutex_lock(t->cache_lock);
    tok_cache_entry *e = &t->cache[slot];
    free(e->word);
    free(e->ids);
    e->word = ms_xmalloc(n + 1);
    memcpy(e->word, s, n);
    e->len = (uint32_t)n;
    e->ids = ms_xmalloc((n_ids ? n_ids : 1) * sizeof *ids);
    memcpy(e->ids, ids, n_ids * sizeof *ids);
    e->n_ids = (uint32_t)n_ids;
    pthread_mutex_unlock(t->cache_lock);
}

void tok_bpe_word(const ms_tokenizer *t, const char *s, size_t n, int32_t **ids, size_t *n_ids, size_t *cap) {
    if (n == 0) return;
    if (t->ignore_merges) {
        int32_t id = tok_map_get(&t->vocab, s, n);
        if (id >= 0) {
            ids_push(ids, n_ids, cap, id);
            return;
        }
    }
    if (cache_get(t, s, n, ids, n_ids, cap)) return;
    sym local_syms[64];
    heap_item local_heap[64];
    /* Stack arrays serve short words; longer ones move to malloc'd memory as they grow. */
    word_state w = {local_syms, 0, 64, local_heap, 0, 64, true, true};
    word_init(t, &w, s, n);
    merge_all(t, &w);
    size_t start = *n_ids;
    for (int32_t i = 0; i >= 0 && i < w.n; i = w.syms[i].next) ids_push(ids, n_ids, cap, w.syms[i].id);
    cache_put(t, s, n, *ids + start, *n_ids - start);
    if (!w.syms_local) free(w.syms);
    if (!w.heap_local) free(w.heap);
}
