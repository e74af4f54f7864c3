/*
 * Image formats beyond plain RGB: CMYK and YCCK JPEG (converted as Pillow converts them),
 * 16-bit gray PNG (clipped as Pillow's I;16 -> RGB), and every format modserve refuses
 * named in the error, at the decoder and at the request parser. The expected pixels are
 * derived by hand from Pillow's formulas (Convert.c cmyk2rgb, I16_RGB); equality with
 * Pillow itself is checked by the reference test tests/ref/test_image_pixels.py.
 */
#include <stdio.h> /* before jpeglib.h, which uses FILE without including it */
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <zlib.h>

#include "encoder/image.h"
#include "server/request_parse.h"
#include "tests/test_util.h"

static ms_image_limits limits(void) {
    ms_image_limits lim;
    ms_image_limits_default(&lim);
    return lim;
}

/* ---- CMYK / YCCK JPEG written by libjpeg ---- */

typedef enum { CMYK_ADOBE, CMYK_NO_ADOBE, YCCK } cmyk_kind;

/* w x h JPEG of raw CMYK bytes px[h, w, 4] at quality 100. Returns malloc'd bytes. */
static uint8_t *write_cmyk_jpeg(int w, int h, const uint8_t *px, cmyk_kind kind, size_t *n) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    unsigned char *buf = NULL;
    unsigned long len = 0;
    jpeg_mem_dest(&c, &buf, &len);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 4;
    c.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_colorspace(&c, kind == YCCK ? JCS_YCCK : JCS_CMYK);
    jpeg_set_quality(&c, 100, TRUE);
    if (kind == CMYK_NO_ADOBE) c.write_Adobe_marker = FALSE;
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)c.next_scanline * (size_t)w * 4);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    uint8_t *out = malloc(len);
    memcpy(out, buf, len);
    free(buf);
    *n = len;
    return out;
}

/* Pillow, by hand: CMYK JPEG bytes are read inverted (rawmode CMYK;I), then
 * cmyk2rgb: nk = 255 - K', R = CLIP8(nk - MULDIV255(C', nk)). */
static uint8_t pillow_cmyk_channel(uint8_t raw_c, uint8_t raw_k) {
    const int ci = 255 - raw_c, nk = 255 - (255 - raw_k), t = ci * nk + 128;
    const int v = nk - (((t >> 8) + t) >> 8);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static void test_cmyk_jpeg(void) {
    /* 16 x 8: two flat 8 x 8 blocks, so quality 100 gives the bytes back exactly */
    enum { W = 16, H = 8 };
    const uint8_t left[4] = {30, 100, 200, 60}, right[4] = {250, 10, 128, 240};
    /* Pillow.convert("RGB") of the inverted values (225,155,55,195) and (5,245,127,15) */
    const uint8_t want_left[3] = {7, 24, 47}, want_right[3] = {235, 9, 120};
    uint8_t px[W * H * 4];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) memcpy(px + (y * W + x) * 4, x < 8 ? left : right, 4);
    for (int c = 0; c < 3; c++) {
        EXPECT(pillow_cmyk_channel(left[c], left[3]) == want_left[c]);
        EXPECT(pillow_cmyk_channel(right[c], right[3]) == want_right[c]);
    }
    const ms_image_limits lim = limits();
    for (cmyk_kind kind = CMYK_ADOBE; kind <= CMYK_NO_ADOBE; kind++) {
        size_t n;
        uint8_t *jpg = write_cmyk_jpeg(W, H, px, kind, &n);
        ms_image_u8 img = {0};
        ms_error err = {0};
        ms_status st = ms_image_decode(jpg, n, &lim, &img, &err);
        EXPECTF(st == MS_OK, "CMYK JPEG (%s): %s", kind == CMYK_ADOBE ? "Adobe marker" : "no marker", err.msg);
        if (st == MS_OK) {
            EXPECT(img.width == W && img.height == H);
            int bad = 0;
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    bad += memcmp(img.rgb + (y * W + x) * 3, x < 8 ? want_left : want_right, 3) != 0;
            EXPECTF(bad == 0, "CMYK JPEG: %d pixels differ from Pillow's formula", bad);
        }
        ms_image_free(&img);
        free(jpg);
    }
}

/* YCCK: the library turns it back into CMYK (with its own rounding); the RGB must be
 * the hand formula applied to that CMYK, every pixel. */
static void test_ycck_jpeg(void) {
    enum { W = 24, H = 16 };
    uint8_t px[W * H * 4];
    for (int i = 0; i < W * H; i++)
        for (int c = 0; c < 4; c++) px[i * 4 + c] = (uint8_t)((i * (c + 3) * 7 + c * 50) & 255);
    size_t n;
    uint8_t *jpg = write_cmyk_jpeg(W, H, px, YCCK, &n);
    /* the CMYK the library decodes */
    struct jpeg_decompress_struct d;
    struct jpeg_error_mgr e;
    d.err = jpeg_std_error(&e);
    jpeg_create_decompress(&d);
    jpeg_mem_src(&d, jpg, (unsigned long)n);
    jpeg_read_header(&d, TRUE);
    EXPECT(d.jpeg_color_space == JCS_YCCK);
    d.out_color_space = JCS_CMYK;
    jpeg_start_decompress(&d);
    uint8_t cmyk[W * H * 4];
    while (d.output_scanline < d.output_height) {
        JSAMPROW row = cmyk + (size_t)d.output_scanline * W * 4;
        jpeg_read_scanlines(&d, &row, 1);
    }
    jpeg_finish_decompress(&d);
    jpeg_destroy_decompress(&d);

    const ms_image_limits lim = limits();
    ms_image_u8 img = {0};
    ms_error err = {0};
    ms_status st = ms_image_decode(jpg, n, &lim, &img, &err);
    EXPECTF(st == MS_OK, "YCCK JPEG: %s", err.msg);
    if (st == MS_OK) {
        int bad = 0;
        for (int i = 0; i < W * H; i++)
            for (int c = 0; c < 3; c++)
                bad += img.rgb[i * 3 + c] != pillow_cmyk_channel(cmyk[i * 4 + c], cmyk[i * 4 + 3]);
        EXPECTF(bad == 0, "YCCK JPEG: %d samples differ from Pillow's formula", bad);
    }
    ms_image_free(&img);
    free(jpg);
}

/* ---- 16-bit gray PNG ---- */

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* PNG of one chunk each (IHDR, IDAT, IEND) around rows already filter-prefixed. */
static uint8_t *build_png(uint32_t w, uint32_t h, uint8_t depth, uint8_t color, const uint8_t *raw, size_t raw_n,
                          size_t *n) {
    uLongf zn = compressBound((uLong)raw_n);
    uint8_t *z = malloc(zn);
    compress(z, &zn, raw, (uLong)raw_n);
    uint8_t *png = malloc(8 + 25 + 12 + zn + 12);
    memcpy(png, "\x89PNG\r\n\x1a\n", 8);
    size_t o = 8;
    const struct { const char *type; const uint8_t *data; uint32_t len; } chunks[3] = {
        {"IHDR", NULL, 13}, {"IDAT", z, (uint32_t)zn}, {"IEND", NULL, 0}};
    uint8_t ihdr[13];
    put_be32(ihdr, w);
    put_be32(ihdr + 4, h);
    ihdr[8] = depth, ihdr[9] = color, ihdr[10] = ihdr[11] = ihdr[12] = 0;
    for (int i = 0; i < 3; i++) {
        const uint8_t *data = i == 0 ? ihdr : chunks[i].data;
        put_be32(png + o, chunks[i].len);
        memcpy(png + o + 4, chunks[i].type, 4);
        if (chunks[i].len) memcpy(png + o + 8, data, chunks[i].len);
        put_be32(png + o + 8 + chunks[i].len, (uint32_t)crc32(0, png + o + 4, 4 + chunks[i].len));
        o += 12 + chunks[i].len;
    }
    free(z);
    *n = o;
    return png;
}

static void test_gray16_png(void) {
    /* 5 x 1 big-endian samples 0x0012, 0x00ff, 0x0100, 0xabcd, 0x0000: Pillow opens
     * mode I;16 and convert("RGB") clips to 255 (not the high byte, which would give
     * 0x00, 0x00, 0x01, 0xab, 0x00) */
    const uint8_t raw[] = {0, 0x00, 0x12, 0x00, 0xff, 0x01, 0x00, 0xab, 0xcd, 0x00, 0x00};
    const uint8_t want[5] = {0x12, 0xff, 0xff, 0xff, 0x00};
    size_t n;
    uint8_t *png = build_png(5, 1, 16, 0, raw, sizeof raw, &n);
    const ms_image_limits lim = limits();
    ms_image_u8 img = {0};
    ms_error err = {0};
    ms_status st = ms_image_decode(png, n, &lim, &img, &err);
    EXPECTF(st == MS_OK, "16-bit gray PNG: %s", err.msg);
    if (st == MS_OK)
        for (int i = 0; i < 5; i++)
            EXPECTF(img.rgb[i * 3] == want[i] && img.rgb[i * 3 + 1] == want[i] && img.rgb[i * 3 + 2] == want[i],
                    "16-bit gray pixel %d: got %u, want %u (Pillow's I;16 -> RGB)", i, img.rgb[i * 3], want[i]);
    ms_image_free(&img);
    free(png);
    /* 16-bit gray + alpha keeps the high byte (Pillow's LA;16B unpacking): 0x1234 -> 0x12 */
    const uint8_t raw_la[] = {0, 0x12, 0x34, 0xff, 0xff, 0x00, 0xff, 0x00, 0x00};
    png = build_png(2, 1, 16, 4, raw_la, sizeof raw_la, &n);
    st = ms_image_decode(png, n, &lim, &img, &err);
    EXPECTF(st == MS_OK, "16-bit gray+alpha PNG: %s", err.msg);
    if (st == MS_OK) EXPECT(img.rgb[0] == 0x12 && img.rgb[2] == 0x12 && img.rgb[3] == 0x00 && img.rgb[5] == 0x00);
    ms_image_free(&img);
    free(png);
}

/* ---- refused formats, named ---- */

typedef struct refused_case {
    const char *bytes;
    size_t n;
    const char *name; /* in the error; NULL: no name, "unknown format" */
} refused_case;

#define CASE(lit, name) {lit, sizeof lit - 1, name}
static const refused_case k_refused[] = {
    CASE("GIF89a\x01\x00\x01\x00\x80\x00\x00", "GIF"),
    CASE("GIF87a\x01\x00\x01\x00\x80\x00\x00", "GIF"),
    CASE("BM\x3a\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00", "BMP"),
    CASE("RIFF\x24\x00\x00\x00WEBPVP8 ", "WebP"),
    CASE("II*\x00\x08\x00\x00\x00\x00\x00", "TIFF"),
    CASE("MM\x00*\x00\x00\x00\x08\x00\x00", "TIFF"),
    CASE("\x00\x00\x00\x1c" "ftypavif\x00\x00\x00\x00", "AVIF"),
    CASE("\x00\x00\x00\x18" "ftypheic\x00\x00\x00\x00", "HEIF"),
    CASE("\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    CASE("\xff\x0a\x00\x00", "JPEG XL"),
    CASE("\x00\x00\x01\x00\x01\x00\x10\x10", "ICO"),
    CASE("8BPS\x00\x01\x00\x00", "PSD"),
    CASE("qoif\x00\x00\x00\x10\x00\x00\x00\x10\x03\x00", "QOI"),
    CASE("#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n", "Radiance HDR"),
    CASE("%PDF-1.4\n", "PDF"),
    CASE("<svg xmlns=\"http://www.w3.org/2000/svg\"/>", "SVG/XML"),
    CASE("P6\n1 1\n255\n\x00\x00\x00", "PNM"),
    CASE("DDS \x7c\x00\x00\x00", "DDS"),
    CASE("icns\x00\x00\x01\x00", "ICNS"),
    CASE("\x01\xda\x00\x01\x00\x03\x00\x28", "SGI"),
    CASE("\x0a\x05\x01\x08\x00\x00\x00\x00", "PCX"),
    CASE("BLP1\x00\x00\x00\x00", "BLP"),
    CASE("%!PS-Adobe-3.0 EPSF-3.0\n", "EPS"),
    CASE("\xc5\xd0\xd3\xc6\x20\x00\x00\x00", "EPS"),
    CASE("\x59\xa6\x6a\x95\x00\x00\x00\x01", "Sun raster"),
    CASE("/* XPM */\nstatic char *x[] = {", "XPM"),
    CASE("#define im_width 8\n", "XBM"),
    CASE("SIMPLE  =                    T", "FITS"),
    CASE("DanM\x01\x00\x01\x00", "MSP"),
    CASE("Image type: RGB image\r\n", "IM"),
    CASE("\x00\x00\x02\x00\x00\x00\x00\x00", NULL), /* TGA has no magic bytes */
};

static void test_refused_formats(void) {
    const ms_image_limits lim = limits();
    for (size_t i = 0; i < sizeof k_refused / sizeof k_refused[0]; i++) {
        const refused_case *c = &k_refused[i];
        const uint8_t *b = (const uint8_t *)c->bytes;
        const char *named = ms_image_format_name(b, c->n);
        EXPECTF(c->name ? named && !strcmp(c->name, named) : named == NULL, "case %zu: format name %s, want %s",
                i, named ? named : "(none)", c->name ? c->name : "(none)");
        ms_image_u8 img = {0};
        ms_error err = {0};
        ms_status st = ms_image_decode(b, c->n, &lim, &img, &err);
        EXPECTF(st == (c->name ? MS_ERR_UNSUPPORTED : MS_ERR_INVALID) && img.rgb == NULL, "case %zu: status %s", i,
                ms_status_name(st));
        EXPECTF(strstr(err.msg, c->name ? c->name : "unknown format") != NULL, "case %zu: '%s' does not name %s", i,
                err.msg, c->name ? c->name : "an unknown format");
        ms_image_free(&img);
    }
    EXPECT(ms_image_format_name((const uint8_t *)"\x89PNG\r\n\x1a\n", 8) == NULL);
    EXPECT(ms_image_format_name((const uint8_t *)"\xff\xd8\xff\xe0", 4) == NULL);
    EXPECT(ms_image_format_name(NULL, 0) == NULL);
}

static char *base64(const char *b, size_t n) {
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;
    for (size_t i = 0; i < n; i += 3) {
        const uint32_t v = (uint32_t)(uint8_t)b[i] << 16 | (i + 1 < n ? (uint32_t)(uint8_t)b[i + 1] << 8 : 0) |
                           (i + 2 < n ? (uint8_t)b[i + 2] : 0);
        *o++ = al[v >> 18], *o++ = al[(v >> 12) & 63];
        *o++ = i + 1 < n ? al[(v >> 6) & 63] : '=';
        *o++ = i + 2 < n ? al[v & 63] : '=';
    }
    *o = 0;
    return out;
}

/* The request parser's 400 names the format: by its bytes (whatever the data URL
 * claims), or by the data URL's media type when that is not PNG/JPEG. */
static void test_request_names_format(void) {
    ms_server_limits sl;
    ms_server_limits_default(&sl);
    const ms_parse_options o = {.limits = &sl, .model_name = "m", .allowed_media_path = NULL};
    for (size_t i = 0; i < sizeof k_refused / sizeof k_refused[0]; i++) {
        const refused_case *c = &k_refused[i];
        char *b64 = base64(c->bytes, c->n);
        char *url = malloc(strlen(b64) + 32);
        sprintf(url, "data:image/png;base64,%s", b64);
        ms_api_image img = {0};
        ms_api_error e = {0};
        const bool ok = ms_api_load_image_url(url, "messages[0].content[0].image_url", &o, &img, &e);
        EXPECTF(!ok && e.http == 400 && !strcmp(e.code, "unsupported_image_type"), "case %zu: ok %d http %d code %s",
                i, ok, e.http, e.code);
        if (c->name)
            EXPECTF(strstr(e.message, c->name) != NULL, "case %zu: '%s' does not name %s", i, e.message, c->name);
        free(img.bytes);
        free(url);
        free(b64);
    }
    const char *types[] = {"image/gif", "image/webp", "image/tiff", "image/avif"};
    for (size_t i = 0; i < 4; i++) {
        char url[64];
        snprintf(url, sizeof url, "data:%s;base64,AAAA", types[i]);
        ms_api_image img = {0};
        ms_api_error e = {0};
        const bool ok = ms_api_load_image_url(url, "image_url", &o, &img, &e);
        EXPECTF(!ok && e.http == 400 && !strcmp(e.code, "unsupported_image_type") && strstr(e.message, types[i]),
                "%s: http %d code %s message '%s'", types[i], e.http, e.code, e.message);
        free(img.bytes);
    }
}

int main(void) {
    test_cmyk_jpeg();
    test_ycck_jpeg();
    test_gray16_png();
    test_refused_formats();
    test_request_names_format();
    return ms_test_finish("test_image_formats");
}
