/*
 * RoPE, attention over packed sequences (prefill, vision tower), the paged KV cache
 * write and attention against the paged cache (decode, chunked prefill).
 *
 * Attention runs in tiles (cpu_attention_tile.c): one tile is a block of query
 * positions of one sequence times the query heads of one kv head, so each key block is
 * read once for the whole group; the tile takes the sequence's keys in blocks of
 * MS_ATTN_KEY_BLOCK with two sgemm calls each and an online (flash-style) softmax, so
 * scratch stays a few hundred KiB per thread at any context length. Tiles run on the
 * backend's pool. Index tensors live in host memory here, so every index is
 * range-checked before anything is read (a bad one is a bug in model code: tier 1).
 */
#include "kernels/cpu_internal.h"
#include "kernels/cpu_attention_tile.h"

#include <math.h>
#include <string.h>
#include <stdlib.h>

/* ---- RoPE ---- */

typedef struct rope_job {
    float *x;                 /* [T, H, D] */
    const int32_t *pos;       /* [T] */
    const float *inv_freq;    /* [D/2] */
    int64_t H, D;
} rope_job;

static void rope_rows(void *arg, int64_t t0, int64_t t1) {
    const rope_job *j = arg;
    const int64_t half = j->D / 2;
    for (int64_t t = t0; t < t1; t++)
        for (int64_t i = 0; i < half; i++) {
            /* transformers: freqs = position (f32) * inv_freq (f32), cos/sin of that. */
            const float ang = (float)j->pos[t] * j->inv_freq[i];
            const float c = (float)cos((double)ang), s = (float)sin((double)ang);
            for (int64_t h = 0; h < j->H; h++) {
                float *v = j->x + (t * j->H + h) * j->D;
                const float a = v[i], b = v[i + half];
                v[i] = a * c - b * s;
                v[i + half] = b * c + a * s;
            }
        }
}

void ms_cpu_rope(ms_ctx *ctx, ms_tensor *x, const ms_tensor *positions, float theta) {
    const int64_t T = x->shape[0], H = x->shape[1], D = x->shape[2];
    float *inv_freq = ms_xmalloc((size_t)(D / 2 + 1) * sizeof(float));
    for (int64_t i = 0; i < D / 2; i++)
        inv_freq[i] = (float)(1.0 / pow((double)theta, (double)(2 * i) / (double)D));
    rope_job j = {.x = x->data, .pos = positions->data, .inv_freq = inv_freq, .H = H, .D = D};
    ms_cpu_parallel_for(ms_cpu_ctx_pool(ctx), T, 8, rope_rows, &j);
    free(inv_freq);
}

static void check_cu(const int32_t *cu, int64_t nseq, int64_t T, int64_t max_len,
                     const char *op, const char *what) {
    MS_CHECKF(cu[0] == 0 && cu[nseq] == T, "%s: %s must run from 0 to %lld (got %d..%d)", op,
              what, (long long)T, cu[0], cu[nseq]);
    for (int64_t s = 0; s < nseq; s++)
        MS_CHECKF(cu[s + 1] >= cu[s] && cu[s + 1] - cu[s] <= max_len,
                  "%s: sequence %lld has %d rows (max given %lld)", op, (long long)s,
                  cu[s + 1] - cu[s], (long long)max_len);
}

/* ---- query tiles ---- */

/* Tiles of `per_tile` positions over sequences cu[s] .. cu[s+1]: the first row and the
 * sequence of each. A tile holds those positions' rows for one kv head group. */
typedef struct tile_list {
    int64_t n;        /* tiles */
    int64_t *row0;    /* [n] first row of the tile */
    int64_t *seq;     /* [n] its sequence */
    int64_t per_tile; /* positions a tile takes at most */
} tile_list;

static tile_list tiles_make(const int32_t *cu, int64_t nseq, int64_t group) {
    tile_list L = {.per_tile = MS_ATTN_TILE_ROWS / group > 0 ? MS_ATTN_TILE_ROWS / group : 1};
    for (int64_t s = 0; s < nseq; s++) L.n += (cu[s + 1] - cu[s] + L.per_tile - 1) / L.per_tile;
    L.row0 = ms_xmalloc((size_t)(L.n > 0 ? L.n : 1) * sizeof(int64_t));
    L.seq = ms_xmalloc((size_t)(L.n > 0 ? L.n : 1) * sizeof(int64_t));
    int64_t i = 0;
    for (int64_t s = 0; s < nseq; s++)
        for (int64_t t = cu[s]; t < cu[s + 1]; t += L.per_tile) {
            L.row0[i] = t;
            L.seq[i++] = s;
        }
    return L;
}

static void tiles_free(tile_list *L) {
    free(L->row0);
    free(L->seq);
}

/* Work item `it` of n_tiles x Hkv: its tile and kv head. Items run from the last tile
 * back, so under causal masking the longest rows are handed out first and the pool's
 * last pieces are short ones. */
static void item_tile(int64_t it, int64_t n_tiles, int64_t Hkv, int64_t *tile, int64_t *kvh) {
    const int64_t back = n_tiles * Hkv - 1 - it;
    *tile = back / Hkv;
    *kvh = back % Hkv;
}

/* Loads rows t0 .. t1-1 of the query heads of kv head kvh (q [T, Hq, D]) into the tile,
 * row (t - t0) * group + h. */
static void tile_load_q(ms_attn_tile *tile, const float *q, int64_t t0, int64_t t1, int64_t Hq,
                        int64_t group, int64_t kvh, int64_t D) {
    tile->rows = (t1 - t0) * group;
    for (int64_t t = t0; t < t1; t++)
        memcpy(tile->q + (t - t0) * group * D, q + (t * Hq + kvh * group) * D,
               (size_t)(group * D) * sizeof(float));
}

static void tile_store_out(const ms_attn_tile *tile, float *out, int64_t t0, int64_t Hq,
                           int64_t group, int64_t kvh, int64_t D) {
    for (int64_t r = 0; r < tile->rows; r++) {
        const int64_t t = t0 + r / group, h = kvh * group + r % group;
        ms_attn_tile_row_out(tile, r, out + (t * Hq + h) * D);
    }
}

static int64_t tile_max_keys(const ms_attn_tile *tile) {
    int64_t n = 0;
    for (int64_t r = 0; r < tile->rows; r++) n = tile->n_keys[r] > n ? tile->n_keys[r] : n;
    return n;
}

/* ---- attention over packed sequences ---- */

typedef struct attn_job {
    float *out;                    /* [T, Hq, D] */
    const float *q, *k, *v;        /* q [T, Hq, D]; k, v [T, Hkv, D] */
    const int32_t *cu;             /* [nseq + 1] */
    tile_list tiles;
    int64_t Hq, Hkv, D;
    bool causal;
    float scale;
} attn_job;

static void attention_items(void *arg, int64_t i0, int64_t i1) {
    const attn_job *j = arg;
    const int64_t group = j->Hq / j->Hkv, D = j->D, ld = j->Hkv * D;
    ms_attn_tile tile;
    ms_attn_tile_init(&tile, j->tiles.per_tile * group, D);
    for (int64_t it = i0; it < i1; it++) {
        int64_t ti, kvh;
        item_tile(it, j->tiles.n, j->Hkv, &ti, &kvh);
        const int64_t s = j->tiles.seq[ti], first = j->cu[s], len = j->cu[s + 1] - first;
        const int64_t t0 = j->tiles.row0[ti];
        const int64_t t1 = t0 + j->tiles.per_tile < first + len ? t0 + j->tiles.per_tile
                                                                 : first + len;
        tile_load_q(&tile, j->q, t0, t1, j->Hq, group, kvh, D);
        for (int64_t r = 0; r < tile.rows; r++)
            tile.n_keys[r] = j->causal ? t0 + r / group - first + 1 : len;
        ms_attn_tile_begin(&tile);
        const int64_t n_keys = tile_max_keys(&tile);
        for (int64_t key0 = 0; key0 < n_keys; key0 += MS_ATTN_KEY_BLOCK) {
            const int64_t nk = n_keys - key0 < MS_ATTN_KEY_BLOCK ? n_keys - key0
                                                                  : MS_ATTN_KEY_BLOCK;
            const int64_t off = ((first + key0) * j->Hkv + kvh) * D;
            ms_attn_tile_keys(&tile, key0, nk, j->k + off, ld, j->v + off, ld, j->scale);
        }
        tile_store_out(&tile, j->out, t0, j->Hq, group, kvh, D);
    }
    ms_attn_tile_free(&tile);
}

void ms_cpu_attention(ms_ctx *ctx, ms_tensor *out, const ms_tensor *q, const ms_tensor *k,
                      const ms_tensor *v, const ms_tensor *cu_seqlens, int32_t max_seqlen,
                      bool causal, float scale) {
    const int64_t T = q->shape[0], nseq = cu_seqlens->shape[0] - 1;
    const int32_t *cu = cu_seqlens->data;
    check_cu(cu, nseq, T, max_seqlen, "attention", "cu_seqlens");
    attn_job j = {.out = out->data, .q = q->data, .k = k->data, .v = v->data, .cu = cu,
                  .Hq = q->shape[1], .Hkv = k->shape[1], .D = q->shape[2],
                  .causal = causal, .scale = scale};
    j.tiles = tiles_make(cu, nseq, j.Hq / j.Hkv);
    ms_cpu_parallel_for(ms_cpu_ctx_pool(ctx), j.tiles.n * j.Hkv, 1, attention_items, &j);
    tiles_free(&j.tiles);
}

/* ---- paged KV cache ---- */

void ms_cpu_kv_write(ms_ctx *ctx, ms_tensor *k_cache, ms_tensor *v_cache, const ms_tensor *k,
                     const ms_tensor *v, const ms_tensor *slots) {
    const int64_t T = k->shape[0], row = k->shape[1] * k->shape[2];
    const int64_t n_slots = k_cache->shape[0] * k_cache->shape[1];
    const int32_t *sl = slots->data;
    for (int64_t t = 0; t < T; t++) {
        if (sl[t] < 0) continue;
        MS_CHECKF(sl[t] < n_slots, "kv_write: slot %d at row %lld outside a cache of %lld slots",
                  sl[t], (long long)t, (long long)n_slots);
        memcpy((float *)k_cache->data + sl[t] * row, (const float *)k->data + t * row,
               (size_t)row * sizeof(float));
        memcpy((float *)v_cache->data + sl[t] * row, (const float *)v->data + t * row,
               (size_t)row * sizeof(float));
    }
}

typedef struct paged_job {
    float *out;                       /* [T, Hq, D] */
    const float *q;                   /* [T, Hq, D] */
    const float *kc, *vc;             /* [n_blocks, bs, Hkv, D] */
    const int32_t *bt, *cu_q, *lens;  /* [nseq, max_blocks], [nseq + 1], [nseq] */
    tile_list tiles;
    int64_t max_blocks, bs, Hq, Hkv, D;
    float scale;
} paged_job;

/* Keys key0 .. key0+nk-1 of kv head kvh of one sequence (block table `table`) from the
 * cache [n_blocks, bs, Hkv, D] into dst [nk, D]. */
static void gather_keys(float *dst, const float *cache, const int32_t *table, int64_t key0,
                        int64_t nk, int64_t bs, int64_t Hkv, int64_t kvh, int64_t D) {
    for (int64_t i = 0; i < nk; i++) {
        const int64_t pos = key0 + i;
        const int64_t slot = (int64_t)table[pos / bs] * bs + pos % bs;
        memcpy(dst + i * D, cache + (slot * Hkv + kvh) * D, (size_t)D * sizeof(float));
    }
}

static void paged_items(void *arg, int64_t i0, int64_t i1) {
    const paged_job *j = arg;
    const int64_t group = j->Hq / j->Hkv, D = j->D;
    ms_attn_tile tile;
    ms_attn_tile_init(&tile, j->tiles.per_tile * group, D);
    for (int64_t it = i0; it < i1; it++) {
        int64_t ti, kvh;
        item_tile(it, j->tiles.n, j->Hkv, &ti, &kvh);
        const int64_t s = j->tiles.seq[ti], first = j->cu_q[s];
        const int64_t q_len = j->cu_q[s + 1] - first, t0 = j->tiles.row0[ti];
        const int64_t t1 = t0 + j->tiles.per_tile < first + q_len ? t0 + j->tiles.per_tile
                                                                   : first + q_len;
        const int32_t *table = j->bt + s * j->max_blocks;
        tile_load_q(&tile, j->q, t0, t1, j->Hq, group, kvh, D);
        /* row t sits at position lens[s] - q_len + (t - first) and attends 0 .. that */
        for (int64_t r = 0; r < tile.rows; r++)
            tile.n_keys[r] = j->lens[s] - q_len + (t0 + r / group - first) + 1;
        ms_attn_tile_begin(&tile);
        const int64_t n_keys = tile_max_keys(&tile);
        for (int64_t key0 = 0; key0 < n_keys; key0 += MS_ATTN_KEY_BLOCK) {
            const int64_t nk = n_keys - key0 < MS_ATTN_KEY_BLOCK ? n_keys - key0
                                                                  : MS_ATTN_KEY_BLOCK;
            gather_keys(tile.k, j->kc, table, key0, nk, j->bs, j->Hkv, kvh, D);
            gather_keys(tile.v, j->vc, table, key0, nk, j->bs, j->Hkv, kvh, D);
            ms_attn_tile_keys(&tile, key0, nk, tile.k, D, tile.v, D, j->scale);
        }
        tile_store_out(&tile, j->out, t0, j->Hq, group, kvh, D);
    }
    ms_attn_tile_free(&tile);
}

void ms_cpu_attention_paged(ms_ctx *ctx, ms_tensor *out, const ms_tensor *q,
                            const ms_tensor *k_cache, const ms_tensor *v_cache,
                            const ms_tensor *block_tables, const ms_tensor *cu_q,
                            const ms_tensor *ctx_lens, int32_t max_q, int32_t max_ctx,
                            float scale) {
    paged_job j = {.out = out->data, .q = q->data, .kc = k_cache->data, .vc = v_cache->data,
                   .bt = block_tables->data, .cu_q = cu_q->data, .lens = ctx_lens->data,
                   .max_blocks = block_tables->shape[1], .bs = k_cache->shape[1],
                   .Hq = q->shape[1], .Hkv = k_cache->shape[2], .D = q->shape[2],
                   .scale = scale};
    const int64_t T = q->shape[0], nseq = ctx_lens->shape[0], n_blocks = k_cache->shape[0];
    check_cu(j.cu_q, nseq, T, max_q, "attention_paged", "cu_q");
    /* Every block a query will read must be a real block of the cache. */
    for (int64_t s = 0; s < nseq; s++) {
        const int64_t q_len = j.cu_q[s + 1] - j.cu_q[s], len = j.lens[s];
        MS_CHECKF(len >= q_len && len <= max_ctx,
                  "attention_paged: sequence %lld has ctx_len %lld with %lld queries (max_ctx %d)",
                  (long long)s, (long long)len, (long long)q_len, max_ctx);
        const int64_t used = (len + j.bs - 1) / j.bs;
        MS_CHECKF(used <= j.max_blocks, "attention_paged: sequence %lld needs %lld blocks, "
                  "table has %lld", (long long)s, (long long)used, (long long)j.max_blocks);
        for (int64_t b = 0; b < used; b++) {
            const int32_t blk = j.bt[s * j.max_blocks + b];
            MS_CHECKF(blk >= 0 && blk < n_blocks, "attention_paged: sequence %lld block %lld "
                      "is %d, cache has %lld blocks", (long long)s, (long long)b, blk,
                      (long long)n_blocks);
        }
    }
    j.tiles = tiles_make(j.cu_q, nseq, j.Hq / j.Hkv);
    ms_cpu_parallel_for(ms_cpu_ctx_pool(ctx), j.tiles.n * j.Hkv, 1, paged_items, &j);
    tiles_free(&j.tiles);
}
