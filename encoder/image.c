/*
 * Image decode with hard limits, and the host reference of CLIPImageProcessor's
 * rescale + normalise.
 *
 * Why the order of checks matters: an image "bomb" is a few hundred bytes whose header
 * claims 100000 x 100000 pixels. stb_image would allocate for the claim before it finds
 * out the data is missing, so we read the header with stbi_info_from_memory and refuse
 * oversized dimensions before a single pixel buffer exists. A PNG whose IDAT inflates
 * far past what its header needs (a deflate bomb) is caught by ms_image_png_guard first.
 *
 * stb_image is Debian's libstb (the implementation is compiled there; we only include
 * the declarations). Its failure reason is thread-local in that build (the library is
 * compiled with STBI_THREAD_LOCAL), so reading it right after a failed call on the same
 * thread is safe while other workers decode.
 */
#include "encoder/image.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image.h>

#include "encoder/image_internal.h"

void ms_image_limits_default(ms_image_limits *lim) {
    lim->max_width = 8192;
    lim->max_height = 8192;
    lim->max_pixels = 33554432; /* 32 MP */
    lim->max_bytes = 20u << 20;
}

static bool bytes_start_with(const uint8_t *b, size_t n, size_t off, const char *magic, size_t len) {
    return n >= off + len && memcmp(b + off, magic, len) == 0;
}

const char *ms_image_format_name(const uint8_t *b, size_t n) {
    if (!b) return NULL;
    if (bytes_start_with(b, n, 0, "GIF87a", 6) || bytes_start_with(b, n, 0, "GIF89a", 6)) return "GIF";
    if (bytes_start_with(b, n, 0, "BM", 2)) return "BMP";
    if (bytes_start_with(b, n, 0, "RIFF", 4) && bytes_start_with(b, n, 8, "WEBP", 4)) return "WebP";
    if (bytes_start_with(b, n, 0, "II*\0", 4) || bytes_start_with(b, n, 0, "MM\0*", 4)) return "TIFF";
    if (bytes_start_with(b, n, 4, "ftypavif", 8) || bytes_start_with(b, n, 4, "ftypavis", 8)) return "AVIF";
    if (bytes_start_with(b, n, 4, "ftyphei", 7) || bytes_start_with(b, n, 4, "ftypmif1", 8)) return "HEIF";
    if (bytes_start_with(b, n, 0, "\0\0\0\x0cjP  ", 8)) return "JPEG 2000";
    if (bytes_start_with(b, n, 0, "\xff\x0a", 2) || bytes_start_with(b, n, 0, "\0\0\0\x0cJXL ", 8)) return "JPEG XL";
    if (bytes_start_with(b, n, 0, "\0\0\1\0", 4)) return "ICO";
    if (bytes_start_with(b, n, 0, "8BPS", 4)) return "PSD";
    if (bytes_start_with(b, n, 0, "qoif", 4)) return "QOI";
    if (bytes_start_with(b, n, 0, "#?RADIANCE", 10) || bytes_start_with(b, n, 0, "#?RGBE", 6)) return "Radiance HDR";
    if (bytes_start_with(b, n, 0, "%PDF", 4)) return "PDF";
    if (bytes_start_with(b, n, 0, "<?xml", 5) || bytes_start_with(b, n, 0, "<svg", 4)) return "SVG/XML";
    if (n >= 2 && b[0] == 'P' && b[1] >= '1' && b[1] <= '7') return "PNM";
    if (bytes_start_with(b, n, 0, "DDS ", 4)) return "DDS";
    if (bytes_start_with(b, n, 0, "icns", 4)) return "ICNS";
    if (bytes_start_with(b, n, 0, "\x01\xda", 2)) return "SGI";
    if (bytes_start_with(b, n, 0, "BLP1", 4) || bytes_start_with(b, n, 0, "BLP2", 4)) return "BLP";
    if (bytes_start_with(b, n, 0, "%!PS", 4) || bytes_start_with(b, n, 0, "\xc5\xd0\xd3\xc6", 4)) return "EPS";
    if (bytes_start_with(b, n, 0, "\x59\xa6\x6a\x95", 4)) return "Sun raster";
    if (bytes_start_with(b, n, 0, "/* XPM */", 9)) return "XPM";
    if (bytes_start_with(b, n, 0, "#define", 7)) return "XBM";
    if (bytes_start_with(b, n, 0, "SIMPLE  =", 9)) return "FITS";
    if (bytes_start_with(b, n, 0, "DanM", 4) || bytes_start_with(b, n, 0, "LinS", 4)) return "MSP";
    if (bytes_start_with(b, n, 0, "Image type:", 11)) return "IM";
    /* PCX: manufacturer 10, a version Pillow reads (0, 2, 3, 5), RLE encoding 1 */
    if (n >= 3 && b[0] == 0x0a && (b[1] == 0 || b[1] == 2 || b[1] == 3 || b[1] == 5) && b[2] == 1) return "PCX";
    return NULL;
}

static const char *stb_reason(void) {
    const char *r = stbi_failure_reason();
    return r ? r : "unknown error";
}

ms_status ms_image_probe(const uint8_t *bytes, size_t n, const ms_image_limits *lim,
                         int32_t *out_w, int32_t *out_h, ms_error *err) {
    MS_CHECK(lim != NULL);
    MS_CHECK(bytes != NULL || n == 0);
    if (n == 0) return ms_errorf(err, MS_ERR_INVALID, "image: empty (0 bytes)");
    if (n > lim->max_bytes)
        return ms_errorf(err, MS_ERR_LIMIT, "image: %zu bytes is over the limit of %zu bytes",
                         n, lim->max_bytes);
    if (n > (size_t)INT32_MAX) /* stb takes an int length */
        return ms_errorf(err, MS_ERR_LIMIT, "image: %zu bytes is too large to decode", n);

    bool is_png = bytes_start_with(bytes, n, 0, "\x89PNG\r\n\x1a\n", 8);
    bool is_jpeg = bytes_start_with(bytes, n, 0, "\xff\xd8\xff", 3);
    if (!is_png && !is_jpeg) {
        const char *what = ms_image_format_name(bytes, n);
        if (what)
            return ms_errorf(err, MS_ERR_UNSUPPORTED,
                             "image: %s is not supported (only PNG and JPEG)", what);
        return ms_errorf(err, MS_ERR_INVALID,
                         "image: unknown format (first bytes %02x %02x %02x %02x); only PNG and JPEG",
                         bytes[0], n > 1 ? bytes[1] : 0, n > 2 ? bytes[2] : 0, n > 3 ? bytes[3] : 0);
    }
    const char *fmt = is_png ? "PNG" : "JPEG";

    int w = 0, h = 0, comp = 0;
    /* PNG: read IHDR's size ourselves, because stb's own header check refuses huge
     * claims as an unspecific "unknown image type" */
    if (is_png && n >= 24 && memcmp(bytes + 12, "IHDR", 4) == 0) {
        uint32_t pw = (uint32_t)bytes[16] << 24 | (uint32_t)bytes[17] << 16 | (uint32_t)bytes[18] << 8 | bytes[19];
        uint32_t ph = (uint32_t)bytes[20] << 24 | (uint32_t)bytes[21] << 16 | (uint32_t)bytes[22] << 8 | bytes[23];
        if (pw > (uint32_t)lim->max_width || ph > (uint32_t)lim->max_height ||
            (int64_t)pw * ph > lim->max_pixels)
            return ms_errorf(err, MS_ERR_LIMIT,
                             "image: PNG of %ux%u is over the limits (width <= %d, height <= %d, "
                             "pixels <= %lld)", pw, ph, lim->max_width, lim->max_height,
                             (long long)lim->max_pixels);
    }
    if (is_jpeg) { /* JPEG is libjpeg-turbo's (image_jpeg.c), PNG stb_image's */
        int32_t jw = 0, jh = 0;
        ms_status st = ms_image_jpeg_info(bytes, n, &jw, &jh, err);
        if (st != MS_OK) return st;
        w = jw;
        h = jh;
    } else if (!stbi_info_from_memory(bytes, (int)n, &w, &h, &comp)) {
        return ms_errorf(err, MS_ERR_INVALID, "image: corrupt %s header (%s)", fmt, stb_reason());
    }
    if (w <= 0 || h <= 0)
        return ms_errorf(err, MS_ERR_INVALID, "image: %s has no pixels (%dx%d)", fmt, w, h);
    if (w > lim->max_width || h > lim->max_height || (int64_t)w * h > lim->max_pixels)
        return ms_errorf(err, MS_ERR_LIMIT,
                         "image: %s of %dx%d is over the limits (width <= %d, height <= %d, "
                         "pixels <= %lld)", fmt, w, h, lim->max_width, lim->max_height,
                         (long long)lim->max_pixels);
    if (is_png) {
        ms_status st = ms_image_png_guard(bytes, n, w, h, err);
        if (st != MS_OK) return st;
    }
    if (out_w) *out_w = w;
    if (out_h) *out_h = h;
    return MS_OK;
}

/* stb's pixels (gray 16-bit [n] or RGB 8-bit [n, 3]) into a malloc'd RGB buffer, so
 * ms_image_free never needs to know who decoded. PIL's I;16 -> RGB (Convert.c I16_RGB):
 * a value over 255 becomes 255, the rest stays; gray replicated. */
static uint8_t *rgb_copy(const void *px, bool gray16, size_t n) {
    uint8_t *rgb = malloc(n * 3);
    if (!rgb) return NULL;
    if (!gray16) return memcpy(rgb, px, n * 3);
    const uint16_t *g = px;
    for (size_t i = 0; i < n; i++) {
        const uint8_t v = g[i] > 255 ? 255 : (uint8_t)g[i];
        rgb[i * 3] = rgb[i * 3 + 1] = rgb[i * 3 + 2] = v;
    }
    return rgb;
}

ms_status ms_image_decode(const uint8_t *bytes, size_t n, const ms_image_limits *lim,
                          ms_image_u8 *out, ms_error *err) {
    MS_CHECK(out != NULL && lim != NULL);
    memset(out, 0, sizeof *out);
    int32_t w = 0, h = 0;
    ms_status pst = ms_image_probe(bytes, n, lim, &w, &h, err);
    if (pst != MS_OK) return pst;
    if (bytes[0] == 0xff) return ms_image_jpeg_decode(bytes, n, lim, out, err);
    const char *fmt = "PNG";

    /* desired_channels 3: gray, gray+alpha, palette and RGBA all come out RGB, like PIL's
     * convert("RGB") (alpha dropped, not blended); 16-bit samples keep their high byte,
     * as PIL's ";16B" unpackers do. One exception, 16-bit gray without alpha: PIL opens it
     * as mode "I;16", whose convert("RGB") clips the whole value to 255 instead, so it is
     * decoded at 16 bits and clipped the same way. */
    const bool gray16 = n >= 26 && memcmp(bytes + 12, "IHDR", 4) == 0 && bytes[24] == 16 && bytes[25] == 0;
    size_t clean_n = 0;
    uint8_t *clean = ms_image_png_drop_empty_idat(bytes, n, &clean_n);
    const uint8_t *src = clean ? clean : bytes;
    const int src_n = (int)(clean ? clean_n : n);
    int dw = 0, dh = 0, dc = 0;
    void *px = gray16 ? (void *)stbi_load_16_from_memory(src, src_n, &dw, &dh, &dc, 1)
                      : (void *)stbi_load_from_memory(src, src_n, &dw, &dh, &dc, 3);
    free(clean);
    if (!px) return ms_errorf(err, MS_ERR_INVALID, "image: corrupt %s data (%s)", fmt, stb_reason());
    if (dw != w || dh != h) { /* header and decoder disagree: refuse rather than guess */
        stbi_image_free(px);
        return ms_errorf(err, MS_ERR_INVALID, "image: %s header says %dx%d but decodes to %dx%d",
                         fmt, w, h, dw, dh);
    }
    out->rgb = rgb_copy(px, gray16, (size_t)w * (size_t)h);
    stbi_image_free(px);
    if (!out->rgb) return ms_errorf(err, MS_ERR_NOMEM, "image: no memory for %dx%d pixels", w, h);
    out->width = w;
    out->height = h;
    return MS_OK;
}

void ms_image_free(ms_image_u8 *img) {
    if (!img) return;
    free(img->rgb);
    img->rgb = NULL;
    img->width = img->height = 0;
}

/* transformers rescales in float64 by the Python float 1/255 and then casts to float32.
 * Our config keeps rescale_factor as a float, which is not 1/255 in double; recover the
 * exact double when the float is the rounding of 1/255 (the value every CLIP config has). */
static double rescale_as_double(float f) {
    if (f == (float)(1.0 / 255.0)) return 1.0 / 255.0;
    return (double)f;
}

ms_status ms_image_preprocess_f32(const ms_image_u8 *in, const ms_image_proc_config *cfg,
                                  float *out, ms_error *err) {
    MS_CHECK(in && cfg && out);
    ms_image_u8 crop = {0};
    ms_status st = ms_image_resize_crop(in, cfg, &crop, err);
    if (st != MS_OK) return st;
    if (crop.width != cfg->crop_width || crop.height != cfg->crop_height) {
        st = ms_errorf(err, MS_ERR_UNSUPPORTED,
                       "image: preprocessing gives %dx%d, the model needs %dx%d (enable "
                       "do_center_crop)", crop.width, crop.height, cfg->crop_width, cfg->crop_height);
        ms_image_free(&crop);
        return st;
    }
    double scale = rescale_as_double(cfg->rescale_factor);
    int64_t plane = (int64_t)crop.width * crop.height;
    for (int c = 0; c < 3; c++) {
        /* numpy normalises with mean/std cast to the image's float32 dtype, in float32 */
        float mean = cfg->do_normalize ? cfg->image_mean[c] : 0.0f;
        float stdv = cfg->do_normalize ? cfg->image_std[c] : 1.0f;
        for (int64_t i = 0; i < plane; i++) {
            uint8_t u = crop.rgb[i * 3 + c];
            float x = cfg->do_rescale ? (float)((double)u * scale) : (float)u;
            if (cfg->do_normalize) x = (x - mean) / stdv;
            out[c * plane + i] = x; /* [3, H, W] */
        }
    }
    ms_image_free(&crop);
    return MS_OK;
}
