/*
 * Paged KV cache: per-layer K/V block tensors on the backend and a mutex-guarded stack
 * of free block ids. Allocation is all or nothing so a sequence never holds half of
 * what it asked for (the scheduler then decides whether to wait or preempt).
 */
#include "llm/kv_cache.h"

#include <string.h>

size_t ms_kv_block_bytes(const ms_llama_config *cfg, int32_t block_size, ms_dtype dt) {
    return (size_t)2 * (size_t)cfg->num_hidden_layers * (size_t)block_size *
           (size_t)cfg->num_key_value_heads * (size_t)cfg->head_dim * ms_dtype_size(dt);
}

ms_status ms_kv_cache_create(ms_backend *be, const ms_llama_config *cfg, int32_t n_blocks,
                             int32_t block_size, ms_kv_cache **out, ms_error *err) {
    *out = NULL;
    if (n_blocks <= 0 || block_size <= 0)
        return ms_errorf(err, MS_ERR_INVALID, "kv cache: %d blocks of %d tokens is not a valid size",
                         n_blocks, block_size);
    MS_CHECK(cfg->num_hidden_layers > 0 && cfg->num_key_value_heads > 0 && cfg->head_dim > 0);
    ms_kv_cache *kv = ms_xcalloc(1, sizeof *kv);
    kv->n_layers = cfg->num_hidden_layers;
    kv->n_blocks = n_blocks;
    kv->block_size = block_size;
    kv->n_kv_heads = cfg->num_key_value_heads;
    kv->head_dim = cfg->head_dim;
    kv->backend = be;
    kv->k = ms_xcalloc((size_t)kv->n_layers, sizeof *kv->k);
    kv->v = ms_xcalloc((size_t)kv->n_layers, sizeof *kv->v);
    pthread_mutex_init(&kv->lock, NULL);
    kv->free_ids = ms_xmalloc((size_t)n_blocks * sizeof *kv->free_ids);
    /* Stack top = lowest id, so a fresh cache hands out blocks 0, 1, 2, ... */
    for (int32_t i = 0; i < n_blocks; i++) kv->free_ids[i] = n_blocks - 1 - i;
    kv->n_free = n_blocks;

    const int64_t shape[4] = {n_blocks, block_size, kv->n_kv_heads, kv->head_dim};
    ms_ctx *ctx = ms_ctx_create(be);
    for (int32_t l = 0; l < kv->n_layers; l++) {
        if (ms_backend_tensor(be, be->act_dtype, 4, shape, &kv->k[l], err) != MS_OK ||
            ms_backend_tensor(be, be->act_dtype, 4, shape, &kv->v[l], err) != MS_OK) {
            ms_ctx_destroy(ctx);
            ms_kv_cache_free(kv);
            return ms_error_wrap(err, "kv cache (%d blocks x %d tokens, layer %d)", n_blocks,
                                 block_size, l);
        }
        /* Zeroed so that no kernel ever meets NaN garbage in slots it masks out. */
        ms_op_fill(ctx, &kv->k[l], 0.0f);
        ms_op_fill(ctx, &kv->v[l], 0.0f);
    }
    ms_ctx_sync(ctx);
    ms_ctx_destroy(ctx);
    *out = kv;
    return MS_OK;
}

void ms_kv_cache_free(ms_kv_cache *kv) {
    if (!kv) return;
    for (int32_t l = 0; l < kv->n_layers; l++) {
        if (kv->k[l].data) ms_backend_tensor_free(kv->backend, &kv->k[l]);
        if (kv->v[l].data) ms_backend_tensor_free(kv->backend, &kv->v[l]);
    }
    free(kv->k);
    free(kv->v);
    free(kv->free_ids);
    pthread_mutex_destroy(&kv->lock);
    free(kv);
}

bool ms_kv_alloc(ms_kv_cache *kv, int32_t n, int32_t *out_ids) {
    MS_CHECK(n >= 0);
    pthread_mutex_lock(&kv->lock);
    bool ok = n <= kv->n_free;
    if (ok) {
        for (int32_t i = 0; i < n; i++) out_ids[i] = kv->free_ids[--kv->n_free];
    }
    pthread_mutex_unlock(&kv->lock);
    return ok;
}

void ms_kv_release(ms_kv_cache *kv, const int32_t *ids, int32_t n) {
    pthread_mutex_lock(&kv->lock);
    MS_CHECKF(kv->n_free + n <= kv->n_blocks, "kv cache: releasing %d blocks overflows the pool", n);
    for (int32_t i = n - 1; i >= 0; i--) {
        MS_CHECKF(ids[i] >= 0 && ids[i] < kv->n_blocks, "kv cache: releasing bad block id %d", ids[i]);
        kv->free_ids[kv->n_free++] = ids[i];
    }
    pthread_mutex_unlock(&kv->lock);
}

int32_t ms_kv_free_blocks(ms_kv_cache *kv) {
    pthread_mutex_lock(&kv->lock);
    int32_t n = kv->n_free;
    pthread_mutex_unlock(&kv->lock);
    return n;
}
