/*
 * Generated request images for the replayer: a pool of PNG and JPEG images whose sizes
 * follow TRACE.md (median about 500 pixels per side, p95 over 1,000: a log-normal with
 * median 500 and sigma 0.48, aspect ratio 0.6-1.6, sides clamped to [64, 2048]), with
 * content that does not compress to nothing (smooth gradients, shapes and pixel noise,
 * so PNG stays large and JPEG does real work), kept as ready data: URLs.
 */
#ifndef MS_BENCH_IMAGES_H
#define MS_BENCH_IMAGES_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/ms_common.h"

typedef struct ms_bench_image {
    int32_t width, height;
    const char *format;       /* "png" or "jpeg" */
    size_t bytes;             /* encoded size */
    uint8_t *raw;             /* the encoded file (bytes of them) */
    char *data_url;           /* "data:image/png;base64,..." */
} ms_bench_image;

typedef struct ms_image_pool {
    ms_bench_image *images;
    int32_t n;
} ms_image_pool;

/* Which pool image the replayer sends as image `image` of request `request_index`
 * (consecutive images differ); the simulator charges that image's measured cost. */
static inline int32_t ms_image_pool_pick(int64_t request_index, int32_t image, int32_t pool_n) {
    return (int32_t)((uint64_t)(request_index * 7 + image) % (uint64_t)pool_n);
}
/* n images (alternating JPEG and PNG), deterministic for a seed. */
void ms_image_pool_build(ms_image_pool *p, int32_t n, uint64_t seed);
void ms_image_pool_free(ms_image_pool *p);
/* Draws one side length pair as the pool does (for tests). */
void ms_image_size_draw(uint64_t seed, int32_t index, int32_t *w, int32_t *h);
/* Base64 (standard alphabet, padded) of n bytes; malloc'd, NUL-terminated. */
char *ms_base64_encode(const uint8_t *data, size_t n, size_t *out_len);

#endif
