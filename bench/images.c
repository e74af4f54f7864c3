/* Generated request images (see images.h). */
#include "bench/images.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image_write.h> /* PNG/JPEG encoders to memory (libstb) */

#include "bench/trace.h"

char *ms_base64_encode(const uint8_t *d, size_t n, size_t *out_len) {
    static const char k[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const size_t len = 4 * ((n + 2) / 3);
    char *o = ms_xmalloc(len + 1);
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        const uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        o[j++] = k[v >> 18 & 63];
        o[j++] = k[v >> 12 & 63];
        o[j++] = i + 1 < n ? k[v >> 6 & 63] : '=';
        o[j++] = i + 2 < n ? k[v & 63] : '=';
    }
    o[j] = 0;
    if (out_len) *out_len = j;
    return o;
}

void ms_image_size_draw(uint64_t seed, int32_t index, int32_t *w, int32_t *h) {
    ms_rng r;
    ms_rng_seed(&r, seed * 1000003u + (uint64_t)index);
    const double side = 500.0 * exp(0.48 * ms_rng_normal(&r)); /* geometric mean of the sides */
    const double aspect = 0.6 + 1.0 * ms_rng_uniform(&r);
    const double ww = side * sqrt(aspect), hh = side / sqrt(aspect);
    *w = (int32_t)fmin(2048, fmax(64, round(ww)));
    *h = (int32_t)fmin(2048, fmax(64, round(hh)));
}

typedef struct mem_buf {
    uint8_t *p;
    size_t n, cap;
} mem_buf;

static void mem_write(void *ctx, void *data, int size) {
    mem_buf *b = ctx;
    if (b->n + (size_t)size > b->cap) {
        b->cap = (b->n + (size_t)size) * 2;
        b->p = ms_xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, data, (size_t)size);
    b->n += (size_t)size;
}

/* RGB pixels [h, w, 3]: a gradient, a few soft discs and rectangles, noise. */
static uint8_t *pixels_make(ms_rng *r, int32_t w, int32_t h) {
    uint8_t *px = ms_xmalloc((size_t)w * (size_t)h * 3);
    double base[3], dx[3], dy[3];
    for (int c = 0; c < 3; c++) {
        base[c] = 255 * ms_rng_uniform(r);
        dx[c] = (ms_rng_uniform(r) - 0.5) * 300 / w;
        dy[c] = (ms_rng_uniform(r) - 0.5) * 300 / h;
    }
    enum { SHAPES = 12 };
    double cx[SHAPES], cy[SHAPES], rad[SHAPES], col[SHAPES][3];
    for (int s = 0; s < SHAPES; s++) {
        cx[s] = ms_rng_uniform(r) * w;
        cy[s] = ms_rng_uniform(r) * h;
        rad[s] = (0.05 + 0.2 * ms_rng_uniform(r)) * (w < h ? w : h);
        for (int c = 0; c < 3; c++) col[s][c] = 255 * ms_rng_uniform(r);
    }
    uint64_t noise = ms_rng_next(r) | 1;
    for (int32_t y = 0; y < h; y++)
        for (int32_t x = 0; x < w; x++) {
            double v[3];
            for (int c = 0; c < 3; c++) v[c] = base[c] + dx[c] * x + dy[c] * y;
            for (int s = 0; s < SHAPES; s++) {
                const double d2 = (x - cx[s]) * (x - cx[s]) + (y - cy[s]) * (y - cy[s]);
                if (d2 < rad[s] * rad[s])
                    for (int c = 0; c < 3; c++) v[c] = 0.5 * v[c] + 0.5 * col[s][c];
            }
            for (int c = 0; c < 3; c++) {
                noise ^= noise << 13, noise ^= noise >> 7, noise ^= noise << 17; /* xorshift: per-pixel noise */
                const double n = (double)(noise & 31) - 16.0;
                const double q = fmod(fabs(v[c] + n), 512.0);
                px[((size_t)y * (size_t)w + (size_t)x) * 3 + (size_t)c] = (uint8_t)(q > 255 ? 511 - q : q);
            }
        }
    return px;
}

void ms_image_pool_build(ms_image_pool *p, int32_t n, uint64_t seed) {
    MS_CHECK(n >= 1);
    p->n = n;
    p->images = ms_xcalloc((size_t)n, sizeof *p->images);
    ms_rng r;
    ms_rng_seed(&r, seed ^ 0x1A6Eu);
    for (int32_t i = 0; i < n; i++) {
        ms_bench_image *im = &p->images[i];
        ms_image_size_draw(seed, i, &im->width, &im->height);
        uint8_t *px = pixels_make(&r, im->width, im->height);
        mem_buf b = {0};
        const bool jpeg = i % 2 == 0;
        const int ok = jpeg ? stbi_write_jpg_to_func(mem_write, &b, im->width, im->height, 3, px, 90)
                            : stbi_write_png_to_func(mem_write, &b, im->width, im->height, 3, px, im->width * 3);
        MS_CHECKF(ok && b.n > 0, "image encoder failed for %dx%d", im->width, im->height);
        free(px);
        im->format = jpeg ? "jpeg" : "png";
        im->bytes = b.n;
        size_t len;
        char *b64 = ms_base64_encode(b.p, b.n, &len);
        im->raw = b.p;
        const size_t hdr = strlen("data:image/jpeg;base64,");
        im->data_url = ms_xmalloc(hdr + len + 1);
        snprintf(im->data_url, hdr + len + 1, "data:image/%s;base64,%s", im->format, b64);
        free(b64);
    }
}

void ms_image_pool_free(ms_image_pool *p) {
    for (int32_t i = 0; i < p->n; i++) {
        free(p->images[i].data_url);
        free(p->images[i].raw);
    }
    free(p->images);
    memset(p, 0, sizeof *p);
}
