/*
 * CLIPImageProcessor's geometry, exactly as transformers runs it: the output size from
 * get_resize_output_image_size, PIL's Image.resize for the pixels, then center_crop.
 *
 * PIL's resize (Pillow src/libImaging/Resample.c) is a separable convolution: for each
 * output column a window of source columns weighted by the filter, stretched by the
 * downscale factor (so downscaling antialiases), weights normalised to sum 1 and turned
 * into 22-bit fixed point; the horizontal pass runs first into an 8-bit intermediate
 * (rounded and clipped), then the vertical pass. Every step below keeps Pillow's
 * arithmetic (double weights, the same rounding casts, integer accumulation starting at
 * half a unit) so the bytes are the ones PIL produces.
 *
 * Each output pixel depends only on its own column's and row's weights, so we compute
 * just the window the center crop keeps: the same bytes, and an extreme aspect ratio
 * cannot make us build a huge resized image.
 */
#include <math.h>
#include <string.h>

#include "encoder/image.h"

/* 8 bits of result; filters have negative lobes, so 2 spare bits for over/undershoot. */
enum { PIL_PRECISION_BITS = 32 - 8 - 2 };

typedef struct pil_filter {
    double (*fn)(double x);
    double support;
} pil_filter;

static double filter_box(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }

static double filter_bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double filter_hamming(double x) {
    if (x < 0.0) x = -x;
    if (x == 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x = x * M_PI;
    return sin(x) / x * (0.54f + 0.46f * cos(x)); /* float constants, as Pillow writes them */
}

/* Keys' cubic convolution with a = -0.5. */
static double filter_bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static double sinc(double x) {
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double filter_lanczos(double x) {
    return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0;
}

static const pil_filter *pil_filter_for(int32_t resample) {
    static const pil_filter lanczos = {filter_lanczos, 3.0}, bilinear = {filter_bilinear, 1.0},
                            bicubic = {filter_bicubic, 2.0}, box = {filter_box, 0.5},
                            hamming = {filter_hamming, 1.0};
    switch (resample) {
    case 1: return &lanczos;
    case 2: return &bilinear;
    case 3: return &bicubic;
    case 4: return &box;
    case 5: return &hamming;
    default: return NULL;
    }
}

/* Weights of one axis for output indexes [first, first + count) of out_size, source
 * in_size. kk[count, ksize] fixed point, bounds[count, 2] = (first source index, taps).
 * Returns ksize; the caller frees *kk_out and *bounds_out. */
static int pil_coeffs(int in_size, int out_size, int first, int count, const pil_filter *f,
                      int32_t **kk_out, int **bounds_out) {
    double scale = (double)(float)in_size / out_size; /* Pillow: (in1 - in0) / outSize, box in float */
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = f->support * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    int32_t *kk = ms_xcalloc((size_t)count * (size_t)ksize, sizeof *kk);
    int *bounds = ms_xcalloc((size_t)count * 2, sizeof *bounds);
    double *w = ms_xmalloc((size_t)ksize * sizeof *w);
    for (int i = 0; i < count; i++) {
        int xx = first + i;
        double center = 0.0 + (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5); /* truncation, as Pillow's cast */
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            w[x] = f->fn((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        for (int x = 0; x < xmax; x++) {
            double k = ww != 0.0 ? w[x] / ww : w[x];
            /* normalize_coeffs_8bpc: round half away from zero into 22-bit fixed point */
            kk[(size_t)i * ksize + x] = k < 0 ? (int32_t)(-0.5 + k * (1 << PIL_PRECISION_BITS))
                                              : (int32_t)(0.5 + k * (1 << PIL_PRECISION_BITS));
        }
        bounds[i * 2] = xmin;
        bounds[i * 2 + 1] = xmax;
    }
    free(w);
    *kk_out = kk;
    *bounds_out = bounds;
    return ksize;
}

/* Pillow's clip8: the accumulator's integer part, clamped to 0..255. The sums stay far
 * inside int32 as in Pillow; int64 only keeps UBSan from having to trust that. */
static uint8_t pil_clip8(int64_t acc) {
    if (acc < 0) return 0;
    int64_t v = acc >> PIL_PRECISION_BITS;
    return v > 255 ? 255 : (uint8_t)v;
}

/* Pixels [y0, y0+wh) x [x0, x0+ww) of PIL's resize of in to rw x rh, into dst
 * (wh, ww, 3) with row stride dst_stride bytes. */
static void pil_resize_window(const ms_image_u8 *in, int rw, int rh, const pil_filter *f,
                              int x0, int y0, int ww, int wh, uint8_t *dst, size_t dst_stride) {
    bool need_h = rw != in->width, need_v = rh != in->height;
    int32_t *kh = NULL, *kv = NULL;
    int *bh = NULL, *bv = NULL;
    int ksh = 0, ksv = 0;
    /* source rows the window needs */
    int row0 = y0, row1 = y0 + wh;
    if (need_v) {
        ksv = pil_coeffs(in->height, rh, y0, wh, f, &kv, &bv);
        row0 = bv[0];
        row1 = 0;
        for (int j = 0; j < wh; j++) {
            if (bv[j * 2] < row0) row0 = bv[j * 2];
            if (bv[j * 2] + bv[j * 2 + 1] > row1) row1 = bv[j * 2] + bv[j * 2 + 1];
        }
        if (row1 < row0) row1 = row0;
    }
    /* horizontal pass into an 8-bit intermediate: rows [row0, row1), window columns */
    size_t tstride = (size_t)ww * 3;
    uint8_t *tmp = ms_xmalloc((size_t)(row1 - row0) * tstride + 1);
    if (need_h) ksh = pil_coeffs(in->width, rw, x0, ww, f, &kh, &bh);
    for (int y = row0; y < row1; y++) {
        const uint8_t *src = in->rgb + (size_t)y * in->width * 3;
        uint8_t *t = tmp + (size_t)(y - row0) * tstride;
        if (!need_h) {
            memcpy(t, src + (size_t)x0 * 3, tstride);
            continue;
        }
        for (int i = 0; i < ww; i++) {
            const int32_t *k = kh + (size_t)i * ksh;
            const uint8_t *s = src + (size_t)bh[i * 2] * 3;
            int64_t a0 = 1 << (PIL_PRECISION_BITS - 1), a1 = a0, a2 = a0;
            for (int x = 0; x < bh[i * 2 + 1]; x++) {
                a0 += (int64_t)s[x * 3 + 0] * k[x];
                a1 += (int64_t)s[x * 3 + 1] * k[x];
                a2 += (int64_t)s[x * 3 + 2] * k[x];
            }
            t[i * 3 + 0] = pil_clip8(a0);
            t[i * 3 + 1] = pil_clip8(a1);
            t[i * 3 + 2] = pil_clip8(a2);
        }
    }
    /* vertical pass */
    for (int j = 0; j < wh; j++) {
        uint8_t *d = dst + (size_t)j * dst_stride;
        if (!need_v) {
            memcpy(d, tmp + (size_t)j * tstride, tstride);
            continue;
        }
        const int32_t *k = kv + (size_t)j * ksv;
        int ymin = bv[j * 2] - row0, ylen = bv[j * 2 + 1];
        for (size_t c = 0; c < tstride; c++) {
            int64_t acc = 1 << (PIL_PRECISION_BITS - 1);
            for (int y = 0; y < ylen; y++) acc += (int64_t)tmp[(size_t)(ymin + y) * tstride + c] * k[y];
            d[c] = pil_clip8(acc);
        }
    }
    free(tmp);
    free(kh);
    free(bh);
    free(kv);
    free(bv);
}

void ms_image_resize_size(int32_t w, int32_t h, int32_t shortest_edge, int64_t *out_w,
                          int64_t *out_h) {
    MS_CHECK(w > 0 && h > 0 && shortest_edge > 0);
    int64_t s = w <= h ? w : h, l = w <= h ? h : w;
    /* Python: int(size * long / short): exact integer product, true division, truncation */
    int64_t new_long = (int64_t)((double)((int64_t)shortest_edge * l) / (double)s);
    *out_w = w <= h ? shortest_edge : new_long;
    *out_h = w <= h ? new_long : shortest_edge;
}

ms_status ms_image_resize_pil(const ms_image_u8 *in, int32_t out_w, int32_t out_h,
                              int32_t resample, ms_image_u8 *out, ms_error *err) {
    MS_CHECK(in && in->rgb && in->width > 0 && in->height > 0 && out);
    MS_CHECK(out_w > 0 && out_h > 0);
    memset(out, 0, sizeof *out);
    const pil_filter *f = pil_filter_for(resample);
    if (!f)
        return ms_errorf(err, MS_ERR_UNSUPPORTED,
                         "image: resample filter %d is not supported (1 lanczos, 2 bilinear, "
                         "3 bicubic, 4 box, 5 hamming)", resample);
    out->rgb = ms_xmalloc((size_t)out_w * out_h * 3);
    out->width = out_w;
    out->height = out_h;
    pil_resize_window(in, out_w, out_h, f, 0, 0, out_w, out_h, out->rgb, (size_t)out_w * 3);
    return MS_OK;
}

/* Python's a // 2 (floor), also for negative a. */
static int64_t floor_half(int64_t a) { return a >= 0 ? a / 2 : -((-a + 1) / 2); }

ms_status ms_image_resize_crop(const ms_image_u8 *in, const ms_image_proc_config *cfg,
                               ms_image_u8 *out, ms_error *err) {
    MS_CHECK(in && in->rgb && in->width > 0 && in->height > 0 && cfg && out);
    memset(out, 0, sizeof *out);
    int64_t rw = in->width, rh = in->height;
    const pil_filter *f = NULL;
    if (cfg->do_resize) {
        if (cfg->shortest_edge <= 0)
            return ms_errorf(err, MS_ERR_INVALID, "image: shortest_edge %d must be positive",
                             cfg->shortest_edge);
        f = pil_filter_for(cfg->resample);
        if (!f)
            return ms_errorf(err, MS_ERR_UNSUPPORTED,
                             "image: resample filter %d is not supported (1 lanczos, 2 bilinear, "
                             "3 bicubic, 4 box, 5 hamming)", cfg->resample);
        ms_image_resize_size(in->width, in->height, cfg->shortest_edge, &rw, &rh);
        if (rw > INT32_MAX / 4 || rh > INT32_MAX / 4)
            return ms_errorf(err, MS_ERR_LIMIT, "image: resizing %dx%d gives %lldx%lld, too large",
                             in->width, in->height, (long long)rw, (long long)rh);
    } else {
        f = pil_filter_for(3); /* unused: sizes match, so no pass runs */
    }
    /* The kept window of the resized image, and where it lands in the output. */
    int64_t ow = rw, oh = rh, top = 0, left = 0;
    if (cfg->do_center_crop) {
        if (cfg->crop_width <= 0 || cfg->crop_height <= 0)
            return ms_errorf(err, MS_ERR_INVALID, "image: crop size %dx%d must be positive",
                             cfg->crop_width, cfg->crop_height);
        ow = cfg->crop_width;
        oh = cfg->crop_height;
        /* transformers' center_crop: top = (h - crop_h) // 2; where the image is smaller
         * than the crop it pads with zeros, which lands on the same offsets */
        top = floor_half(rh - oh);
        left = floor_half(rw - ow);
    } else if (rw * rh > ((int64_t)1 << 26)) {
        return ms_errorf(err, MS_ERR_LIMIT, "image: resized image of %lldx%lld is too large "
                         "(no center crop)", (long long)rw, (long long)rh);
    }
    int64_t y0 = top > 0 ? top : 0, y1 = top + oh < rh ? top + oh : rh;
    int64_t x0 = left > 0 ? left : 0, x1 = left + ow < rw ? left + ow : rw;
    out->width = (int32_t)ow;
    out->height = (int32_t)oh;
    out->rgb = ms_xcalloc((size_t)(ow * oh * 3), 1);
    if (y1 > y0 && x1 > x0) {
        uint8_t *dst = out->rgb + ((size_t)(y0 - top) * ow + (size_t)(x0 - left)) * 3;
        pil_resize_window(in, (int)rw, (int)rh, f, (int)x0, (int)y0, (int)(x1 - x0),
                          (int)(y1 - y0), dst, (size_t)ow * 3);
    }
    return MS_OK;
}
