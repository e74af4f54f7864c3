/* Scratch arena (see arena.h). */
#include "kernels/arena.h"

#include <stdint.h>

enum { ARENA_MAX_CHUNKS = 48 };
static const size_t ARENA_DEFAULT_CHUNK = (size_t)16 << 20;

typedef struct arena_chunk {
    char *base;  /* from be->ops->alloc */
    size_t size;
} arena_chunk;

struct ms_arena {
    ms_backend *be;
    arena_chunk chunks[ARENA_MAX_CHUNKS];
    int n_chunks;
    int cur;          /* chunk being bumped */
    size_t off;       /* offset in chunks[cur] */
    size_t used;      /* bytes handed out since reset (with padding) */
    size_t first_size;
    size_t n_backend_allocs;
};

static size_t align_up(size_t n, size_t a) {
    return (n + a - 1) / a * a;
}

static bool arena_add_chunk(ms_arena *a, size_t size) {
    MS_CHECKF(a->n_chunks < ARENA_MAX_CHUNKS, "scratch arena: more than %d chunks",
              ARENA_MAX_CHUNKS);
    char *p = a->be->ops->alloc(a->be, size);
    if (!p) return false;
    MS_CHECKF((uintptr_t)p % MS_ARENA_ALIGN == 0, "backend %s allocation not %d-aligned",
              a->be->name, MS_ARENA_ALIGN);
    a->chunks[a->n_chunks++] = (arena_chunk){p, size};
    a->n_backend_allocs++;
    return true;
}

ms_arena *ms_arena_create(ms_backend *be, size_t first_chunk_bytes) {
    ms_arena *a = ms_xcalloc(1, sizeof *a);
    a->be = be;
    a->first_size = align_up(first_chunk_bytes ? first_chunk_bytes : ARENA_DEFAULT_CHUNK,
                             MS_ARENA_ALIGN);
    return a; /* the first chunk comes with the first allocation */
}

static void arena_free_chunks(ms_arena *a) {
    for (int i = 0; i < a->n_chunks; i++) a->be->ops->free(a->be, a->chunks[i].base);
    a->n_chunks = 0;
}

void ms_arena_destroy(ms_arena *a) {
    if (!a) return;
    arena_free_chunks(a);
    free(a);
}

void *ms_arena_alloc(ms_arena *a, size_t bytes) {
    const size_t need = align_up(bytes ? bytes : 1, MS_ARENA_ALIGN);
    /* Chunk sizes are multiples of the alignment, so offsets stay aligned. */
    while (a->cur < a->n_chunks) {
        arena_chunk *c = &a->chunks[a->cur];
        if (c->size - a->off >= need) {
            void *p = c->base + a->off;
            a->off += need;
            a->used += need;
            return p;
        }
        a->cur++;
        a->off = 0;
    }
    /* Grow: at least double what we hold, so the number of chunks stays logarithmic. */
    size_t held = ms_arena_capacity(a);
    size_t size = held ? held : a->first_size;
    if (size < need) size = need;
    if (!arena_add_chunk(a, size)) return NULL;
    a->cur = a->n_chunks - 1;
    a->off = need;
    a->used += need;
    return a->chunks[a->cur].base;
}

void ms_arena_reset(ms_arena *a) {
    if (a->n_chunks > 1) {
        /* Coalesce into one chunk big enough for the whole pass. The caller has synced
         * the stream (ms_ctx_reset), so no queued work still reads the old chunks. */
        const size_t total = ms_arena_capacity(a);
        arena_free_chunks(a);
        if (!arena_add_chunk(a, total)) {
            /* Out of memory for the big chunk: fall back to lazy regrowth. */
            a->first_size = a->first_size < total ? a->first_size : total;
        }
    }
    a->cur = 0;
    a->off = 0;
    a->used = 0;
}

size_t ms_arena_used(const ms_arena *a) {
    return a->used;
}

size_t ms_arena_capacity(const ms_arena *a) {
    size_t n = 0;
    for (int i = 0; i < a->n_chunks; i++) n += a->chunks[i].size;
    return n;
}

int ms_arena_chunk_count(const ms_arena *a) {
    return a->n_chunks;
}

size_t ms_arena_backend_allocs(const ms_arena *a) {
    return a->n_backend_allocs;
}
