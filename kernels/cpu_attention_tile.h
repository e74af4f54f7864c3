/*
 * Private to the CPU backend: one attention tile, i.e. the query rows of one block of
 * positions for all query heads of one kv head, against that kv head's keys, fed key
 * block by key block (cpu_attention_tile.c). cpu_attention.c drives it for packed
 * sequences (keys read in place) and for the paged cache (keys gathered block by block).
 */
#ifndef MS_CPU_ATTENTION_TILE_H
#define MS_CPU_ATTENTION_TILE_H

#include <stdint.h>

/* Keys a tile takes at once: the scores of one key block (max_rows x 512 f32, 128 KiB at
 * 64 rows) stay in cache between the two products. */
#define MS_ATTN_KEY_BLOCK 512
/* Query rows (positions x heads of the group) a tile stacks, so that K and V of a key
 * block are read once for all of them. */
#define MS_ATTN_TILE_ROWS 64

typedef struct ms_attn_tile {
    int64_t rows, D;    /* rows in use (<= max_rows), head dim */
    float *q;           /* [max_rows, D] this tile's query rows, contiguous */
    int64_t *n_keys;    /* [max_rows] row r attends keys 0 .. n_keys[r] - 1 */
    float *acc;         /* [max_rows, D] unnormalised output */
    float *row_max;     /* [max_rows] running max of the scaled scores */
    double *row_sum;    /* [max_rows] running sum of exp(score - row_max) */
    float *p;           /* [max_rows, MS_ATTN_KEY_BLOCK] scores, then probabilities */
    float *k, *v;       /* [MS_ATTN_KEY_BLOCK, D] gather room for key blocks */
} ms_attn_tile;

/* Scratch for tiles of up to max_rows rows and head dim D; free with ms_attn_tile_free. */
void ms_attn_tile_init(ms_attn_tile *t, int64_t max_rows, int64_t D);
void ms_attn_tile_free(ms_attn_tile *t);
/* Before the first key block: rows and n_keys set, q filled. */
void ms_attn_tile_begin(ms_attn_tile *t);
/* Keys key0 .. key0 + nk - 1 (nk <= MS_ATTN_KEY_BLOCK): k [nk, D] with row stride ldk,
 * v likewise with ldv. Rows whose n_keys end before a key leave that key out. */
void ms_attn_tile_keys(ms_attn_tile *t, int64_t key0, int64_t nk, const float *k, int64_t ldk,
                       const float *v, int64_t ldv, float scale);
/* Normalised output of row r (a row with no keys gets zeros). */
void ms_attn_tile_row_out(const ms_attn_tile *t, int64_t r, float *out);

#endif
