/*
 * Paged KV cache: per layer, K and V [n_blocks, block_size, n_kv_heads, head_dim] in
 * the backend's act dtype, and a thread-safe pool of block ids. A sequence owns a block
 * table (block ids in position order); position p lives in block table[p / block_size]
 * at offset p % block_size.
 */
#ifndef MS_LLM_KV_CACHE_H
#define MS_LLM_KV_CACHE_H

#include <pthread.h>

#include "kernels/backend.h"
#include "llm/config.h"

typedef struct ms_kv_cache {
    int32_t n_layers;
    int32_t n_blocks;
    int32_t block_size;
    int32_t n_kv_heads;
    int32_t head_dim;
    ms_backend *backend;
    ms_tensor *k;              /* (n_layers) each [n_blocks, block_size, Hkv, D] */
    ms_tensor *v;              /* (n_layers) each [n_blocks, block_size, Hkv, D] */
    pthread_mutex_t lock;
    int32_t *free_ids;         /* (n_blocks) stack of free block ids */
    int32_t n_free;
} ms_kv_cache;

/* Bytes one block takes over all layers (K and V). */
size_t ms_kv_block_bytes(const ms_llama_config *cfg, int32_t block_size, ms_dtype dt);
ms_status ms_kv_cache_create(ms_backend *be, const ms_llama_config *cfg, int32_t n_blocks,
                             int32_t block_size, ms_kv_cache **out, ms_error *err);
void ms_kv_cache_free(ms_kv_cache *kv);
/* All or nothing: false (nothing taken) when fewer than n blocks are free. */
bool ms_kv_alloc(ms_kv_cache *kv, int32_t n, int32_t *out_ids);
void ms_kv_release(ms_kv_cache *kv, const int32_t *ids, int32_t n);
int32_t ms_kv_free_blocks(ms_kv_cache *kv);
static inline int32_t ms_kv_blocks_for(const ms_kv_cache *kv, int32_t n_tokens) {
    return (n_tokens + kv->block_size - 1) / kv->block_size;
}

#endif
