/*
 * The engine's image caches (encoder/image_cache.h): at submit every image is keyed by
 * its bytes and looked up in the embedding cache; a hit's embedding is used as is (a
 * cache reference held until the request is freed) and only the misses go to the core
 * as images to preprocess and encode (ms_core_req_desc.n_images = misses, so a request
 * whose images all hit goes straight to prefill like a text request). Preprocessing
 * looks each miss up in the pixel cache (a hit copies the cached crop and skips decode
 * and resize); encoding offers each new embedding to the embedding cache.
 */
#include <string.h>

#include "scheduler/engine_internal.h"

#define LOG "engine"

static void free_crop(void *ctx, void *value) {
    (void)ctx;
    ms_image_u8 *img = value;
    ms_image_free(img);
    free(img);
}

static void free_embed(void *ctx, void *value) {
    (void)ctx;
    eng_cached_embed *c = value;
    ms_backend_tensor_free(c->be, &c->t);
    free(c);
}

void eng_caches_create(ms_engine *e) {
    bool cuda = false;
    for (int d = 0; d < MS_CORE_MAX_DEVICES; d++)
        if (e->dev[d].used && e->dev[d].be->device == MS_DEVICE_CUDA) cuda = true;
    int64_t px = e->o.image_cache_bytes, em = e->o.embedding_cache_bytes;
    if (px < 0) px = (int64_t)512 << 20;
    if (em < 0) em = cuda ? (int64_t)2 << 30 : (int64_t)256 << 20;
    e->o.image_cache_bytes = px;
    e->o.embedding_cache_bytes = em;
    e->pixel_cache = ms_image_cache_create((size_t)px, free_crop, NULL);
    e->embed_cache = ms_image_cache_create((size_t)em, free_embed, NULL);
    ms_log(MS_LOG_INFO, LOG, "image caches: pixels %lld MiB (host), embeddings %lld MiB (%s)",
           (long long)(px >> 20), (long long)(em >> 20), cuda ? "GPU" : "CPU");
}

void eng_caches_destroy(ms_engine *e) {
    ms_image_cache_destroy(e->pixel_cache);
    ms_image_cache_destroy(e->embed_cache);
}

void eng_req_images_init(ms_engine *e, eng_req *r, const ms_request_desc *d) {
    int32_t n = d->n_images;
    r->n_images = n;
    if (n == 0) return;
    r->img_bytes = ms_xcalloc((size_t)n, sizeof *r->img_bytes);
    r->img_len = ms_xcalloc((size_t)n, sizeof *r->img_len);
    r->crops = ms_xcalloc((size_t)n, sizeof *r->crops);
    r->embeds = ms_xcalloc((size_t)n, sizeof *r->embeds);
    r->embed_dev = ms_xcalloc((size_t)n, sizeof *r->embed_dev);
    r->img_key = ms_xcalloc((size_t)n, sizeof *r->img_key);
    r->embed_entry = ms_xcalloc((size_t)n, sizeof *r->embed_entry);
    r->encode_idx = ms_xcalloc((size_t)n, sizeof *r->encode_idx);
    for (int32_t k = 0; k < n; k++) {
        const ms_image_input *in = &d->images[k];
        r->img_key[k] = ms_image_key_of(in->bytes, in->n_bytes);
        ms_image_cache_entry *en = ms_image_cache_get(e->embed_cache, &r->img_key[k]);
        if (en) {
            const eng_cached_embed *c = ms_image_cache_value(en);
            r->embed_entry[k] = en;
            r->embeds[k] = c->t;
            r->embed_dev[k] = c->dev;
            continue;
        }
        r->encode_idx[r->n_encode++] = k;
        r->img_bytes[k] = ms_xmalloc(in->n_bytes ? in->n_bytes : 1);
        memcpy(r->img_bytes[k], in->bytes, in->n_bytes);
        r->img_len[k] = in->n_bytes;
    }
}

void eng_req_images_free(ms_engine *e, eng_req *r) {
    for (int32_t k = 0; k < r->n_images; k++) {
        free(r->img_bytes[k]);
        ms_image_free(&r->crops[k]);
        if (r->embed_entry[k]) ms_image_cache_release(e->embed_cache, r->embed_entry[k]);
        else if (r->embeds[k].data) ms_backend_tensor_free(e->dev[r->embed_dev[k]].be, &r->embeds[k]);
    }
    free(r->img_bytes);
    free(r->img_len);
    free(r->crops);
    free(r->embeds);
    free(r->embed_dev);
    free(r->img_key);
    free(r->embed_entry);
    free(r->encode_idx);
}

static void crop_copy(const ms_image_u8 *src, ms_image_u8 *dst) {
    size_t n = (size_t)src->width * (size_t)src->height * 3;
    dst->width = src->width;
    dst->height = src->height;
    dst->rgb = ms_xmalloc(n ? n : 1);
    memcpy(dst->rgb, src->rgb, n);
}

bool eng_pixels_lookup(ms_engine *e, const ms_image_key *key, ms_image_u8 *out) {
    ms_image_cache_entry *en = ms_image_cache_get(e->pixel_cache, key);
    if (!en) return false;
    crop_copy(ms_image_cache_value(en), out);
    ms_image_cache_release(e->pixel_cache, en);
    return true;
}

void eng_pixels_insert(ms_engine *e, const ms_image_key *key, const ms_image_u8 *crop) {
    if (!ms_image_cache_enabled(e->pixel_cache)) return;
    ms_image_u8 *copy = ms_xmalloc(sizeof *copy);
    crop_copy(crop, copy);
    size_t bytes = (size_t)crop->width * (size_t)crop->height * 3 + sizeof *copy;
    bool taken = false;
    ms_image_cache_entry *en = ms_image_cache_put(e->pixel_cache, key, copy, bytes, &taken);
    if (!taken) free_crop(NULL, copy);
    ms_image_cache_release(e->pixel_cache, en);
}

void eng_embed_insert(ms_engine *e, eng_req *r, int32_t k) {
    if (!ms_image_cache_enabled(e->embed_cache) || r->embed_entry[k] || !r->embeds[k].data) return;
    eng_cached_embed *c = ms_xmalloc(sizeof *c);
    c->t = r->embeds[k];
    c->be = e->dev[r->embed_dev[k]].be;
    c->dev = r->embed_dev[k];
    bool taken = false;
    ms_image_cache_entry *en = ms_image_cache_put(e->embed_cache, &r->img_key[k], c, ms_tensor_nbytes(&c->t),
                                                  &taken);
    if (!taken) { /* r keeps its own copy */
        free(c);
        ms_image_cache_release(e->embed_cache, en);
        return;
    }
    r->embed_entry[k] = en; /* the tensor is the cache's now; r holds a reference */
}

void ms_engine_cache_stats_get(ms_engine *e, ms_engine_cache_stats *out) {
    ms_image_cache_stats_get(e->pixel_cache, &out->pixels);
    ms_image_cache_stats_get(e->embed_cache, &out->embeddings);
}
