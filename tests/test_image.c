/*
 * Image input: decoding with limits (good PNG/JPEG of every channel layout, malformed,
 * refused formats, bombs) and CLIPImageProcessor's geometry against values derived by
 * hand from Pillow's and transformers' formulas. Where a comment says "as PIL", that is
 * the formula worked by hand; equality with Pillow and transformers themselves is
 * checked by the reference test tests/ref/test_image_pixels.py.
 */
#include <stdlib.h>
#include <string.h>

#include <stb_image_write.h>
#include <zlib.h>

#include "encoder/image.h"
#include "tests/test_util.h"

/* ---- building test files in memory ---- */

typedef struct membuf {
    uint8_t *data;
    size_t len, cap;
} membuf;

static void mb_put(membuf *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->data = realloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void mb_write_cb(void *ctx, void *data, int size) { mb_put(ctx, data, (size_t)size); }

static membuf encode_png(int w, int h, int comp, const uint8_t *px) {
    membuf b = {0};
    EXPECT(stbi_write_png_to_func(mb_write_cb, &b, w, h, comp, px, w * comp));
    return b;
}

static membuf encode_jpg(int w, int h, int comp, const uint8_t *px, int quality) {
    membuf b = {0};
    EXPECT(stbi_write_jpg_to_func(mb_write_cb, &b, w, h, comp, px, quality));
    return b;
}

static void put_be32(membuf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    mb_put(b, x, 4);
}

static void png_chunk(membuf *b, const char *type, const uint8_t *data, uint32_t len) {
    put_be32(b, len);
    mb_put(b, type, 4);
    if (len) mb_put(b, data, len);
    uLong crc = crc32(0, (const Bytef *)type, 4);
    if (len) crc = crc32(crc, data, len);
    put_be32(b, (uint32_t)crc);
}

/* A PNG from raw pieces: IHDR as given, optional palette, IDAT = zlib(raw). */
static membuf build_png(uint32_t w, uint32_t h, uint8_t depth, uint8_t color_type,
                        const uint8_t *plte, uint32_t plte_len, const uint8_t *raw, size_t raw_len) {
    membuf b = {0};
    mb_put(&b, "\x89PNG\r\n\x1a\n", 8);
    uint8_t ihdr[13] = {(uint8_t)(w >> 24), (uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w,
                        (uint8_t)(h >> 24), (uint8_t)(h >> 16), (uint8_t)(h >> 8), (uint8_t)h,
                        depth, color_type, 0, 0, 0};
    png_chunk(&b, "IHDR", ihdr, 13);
    if (plte) png_chunk(&b, "PLTE", plte, plte_len);
    uLongf zlen = compressBound(raw_len);
    uint8_t *z = malloc(zlen);
    EXPECT(compress2(z, &zlen, raw, raw_len, 9) == Z_OK);
    png_chunk(&b, "IDAT", z, (uint32_t)zlen);
    free(z);
    png_chunk(&b, "IEND", NULL, 0);
    return b;
}

/* A JPEG whose SOF0 claims w x h and nothing else follows. */
static membuf build_jpeg_sof(uint16_t w, uint16_t h) {
    membuf b = {0};
    const uint8_t head[] = {0xff, 0xd8, 0xff, 0xc0, 0x00, 17, 8, (uint8_t)(h >> 8), (uint8_t)h,
                            (uint8_t)(w >> 8), (uint8_t)w, 3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0,
                            0xff, 0xd9};
    mb_put(&b, head, sizeof head);
    return b;
}

static uint8_t pattern(int x, int y, int c) { return (uint8_t)((x * 37 + y * 53 + 11 + c * 101) % 256); }

static ms_image_limits default_limits(void) {
    ms_image_limits lim;
    ms_image_limits_default(&lim);
    return lim;
}

static ms_status decode(const membuf *b, ms_image_u8 *img, ms_error *err) {
    ms_image_limits lim = default_limits();
    return ms_image_decode(b->data, b->len, &lim, img, err);
}

/* ---- decoding ---- */

static void test_decode_png_layouts(void) {
    const int w = 7, h = 5;
    uint8_t px[7 * 5 * 4];
    for (int comp = 1; comp <= 4; comp++) {
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < comp; c++) px[(y * w + x) * comp + c] = pattern(x, y, c);
        membuf b = encode_png(w, h, comp, px);
        ms_image_u8 img;
        ms_error err = {0};
        ms_status st = decode(&b, &img, &err);
        EXPECTF(st == MS_OK, "comp %d: %s", comp, err.msg);
        if (st == MS_OK) {
            EXPECT(img.width == w && img.height == h);
            int bad = 0;
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    for (int c = 0; c < 3; c++) {
                        /* gray (1, 2) is replicated; alpha (2, 4) is dropped, not blended */
                        uint8_t want = comp <= 2 ? pattern(x, y, 0) : pattern(x, y, c);
                        bad += img.rgb[(y * w + x) * 3 + c] != want;
                    }
            EXPECTF(bad == 0, "comp %d: %d wrong bytes", comp, bad);
        }
        ms_image_free(&img);
        free(b.data);
    }
}

static void test_decode_palette_png(void) {
    const uint8_t plte[9] = {255, 0, 0, 0, 255, 0, 10, 20, 30};
    /* 3x2, 8-bit indexes, each row prefixed by filter byte 0 */
    const uint8_t raw[] = {0, 0, 1, 2, 0, 2, 2, 1};
    membuf b = build_png(3, 2, 8, 3, plte, 9, raw, sizeof raw);
    ms_image_u8 img;
    ms_error err = {0};
    ms_status st = decode(&b, &img, &err);
    EXPECTF(st == MS_OK, "%s", err.msg);
    if (st == MS_OK) {
        const int idx[6] = {0, 1, 2, 2, 2, 1};
        int bad = 0;
        for (int i = 0; i < 6; i++)
            for (int c = 0; c < 3; c++) bad += img.rgb[i * 3 + c] != plte[idx[i] * 3 + c];
        EXPECT(bad == 0);
    }
    ms_image_free(&img);
    free(b.data);

    /* 16-bit RGB, 2x1: 8 bits are the high bytes (PIL's RGB;16B unpacking does the same) */
    const uint8_t raw16[] = {0, 0x12, 0x34, 0xab, 0xcd, 0xff, 0x00, 0x01, 0x02, 0x80, 0x7f, 0x00, 0xff};
    b = build_png(2, 1, 16, 2, NULL, 0, raw16, sizeof raw16);
    st = decode(&b, &img, &err);
    EXPECTF(st == MS_OK, "%s", err.msg);
    if (st == MS_OK) {
        const uint8_t want[6] = {0x12, 0xab, 0xff, 0x01, 0x80, 0x00};
        EXPECT(memcmp(img.rgb, want, 6) == 0);
    }
    ms_image_free(&img);
    free(b.data);
}

static void test_decode_jpeg(void) {
    const int w = 32, h = 24;
    uint8_t px[32 * 24 * 3];
    for (int y = 0; y < h; y++) /* smooth content: JPEG keeps it within a few levels */
        for (int x = 0; x < w; x++) {
            px[(y * w + x) * 3 + 0] = (uint8_t)(x * 8);
            px[(y * w + x) * 3 + 1] = (uint8_t)(y * 10);
            px[(y * w + x) * 3 + 2] = 128;
        }
    membuf b = encode_jpg(w, h, 3, px, 100);
    ms_image_u8 img;
    ms_error err = {0};
    ms_status st = decode(&b, &img, &err);
    EXPECTF(st == MS_OK, "%s", err.msg);
    if (st == MS_OK) {
        EXPECT(img.width == w && img.height == h);
        int worst = 0;
        for (int i = 0; i < w * h * 3; i++) {
            int d = abs((int)img.rgb[i] - (int)px[i]);
            if (d > worst) worst = d;
        }
        EXPECTF(worst <= 12, "JPEG differs by %d levels", worst);
    }
    ms_image_free(&img);
    free(b.data);

    /* gray JPEG comes out RGB with equal channels */
    uint8_t g[16 * 8];
    for (int i = 0; i < 16 * 8; i++) g[i] = (uint8_t)(i * 2);
    b = encode_jpg(16, 8, 1, g, 90);
    st = decode(&b, &img, &err);
    EXPECTF(st == MS_OK, "%s", err.msg);
    if (st == MS_OK) {
        int bad = 0;
        for (int i = 0; i < 16 * 8; i++)
            bad += abs(img.rgb[i * 3] - img.rgb[i * 3 + 1]) > 2 || abs(img.rgb[i * 3] - img.rgb[i * 3 + 2]) > 2;
        EXPECT(bad == 0);
    }
    ms_image_free(&img);
    free(b.data);
}

static void expect_refused(const uint8_t *bytes, size_t n, const ms_image_limits *lim,
                           ms_status want, const char *msg_part, const char *what) {
    ms_image_u8 img = {0};
    ms_error err = {0};
    ms_status st = ms_image_decode(bytes, n, lim, &img, &err);
    EXPECTF(st == want, "%s: got %s (%s), want %s", what, ms_status_name(st), err.msg,
            ms_status_name(want));
    EXPECTF(img.rgb == NULL, "%s: pixels returned with an error", what);
    if (msg_part) EXPECTF(strstr(err.msg, msg_part) != NULL, "%s: message \"%s\" lacks \"%s\"", what, err.msg, msg_part);
    ms_image_free(&img);
}

static void test_decode_malformed(void) {
    ms_image_limits lim = default_limits();
    uint8_t px[40 * 30 * 3];
    for (int i = 0; i < 40 * 30 * 3; i++) px[i] = (uint8_t)(i * 7);
    membuf png = encode_png(40, 30, 3, px);
    membuf jpg = encode_jpg(40, 30, 3, px, 90);

    expect_refused(png.data, 0, &lim, MS_ERR_INVALID, "empty", "zero length");
    expect_refused(png.data, png.len / 2, &lim, MS_ERR_INVALID, "PNG", "truncated PNG");
    expect_refused(png.data, 20, &lim, MS_ERR_INVALID, "PNG", "PNG cut in its header");
    expect_refused(jpg.data, 3, &lim, MS_ERR_INVALID, "JPEG", "JPEG of 3 bytes");

    /* JPEG with its quantisation/Huffman segments overwritten by garbage */
    uint8_t *bad = malloc(jpg.len);
    memcpy(bad, jpg.data, jpg.len);
    for (size_t i = 4; i < 200 && i < jpg.len; i++) bad[i] = (uint8_t)(i * 13 + 1);
    expect_refused(bad, jpg.len, &lim, MS_ERR_INVALID, "JPEG", "corrupt JPEG");
    /* PNG with a broken zlib stream: CRCs are not checked by stb, the inflate fails */
    memcpy(bad, png.data, png.len < jpg.len ? png.len : jpg.len);
    size_t n = png.len < jpg.len ? png.len : jpg.len;
    for (size_t i = 41; i < 60 && i < n; i++) bad[i] ^= 0x5a;
    expect_refused(bad, n, &lim, MS_ERR_INVALID, "PNG", "corrupt PNG data");
    free(bad);

    /* random damage anywhere: never a crash (ASan), only OK or an error */
    uint32_t seed = 12345;
    for (int round = 0; round < 300; round++) {
        const membuf *src = round % 2 ? &png : &jpg;
        uint8_t *m = malloc(src->len);
        memcpy(m, src->data, src->len);
        for (int k = 0; k < 1 + round % 5; k++) {
            seed = seed * 1664525u + 1013904223u;
            m[3 + (seed >> 8) % (src->len - 3)] = (uint8_t)(seed >> 24);
        }
        ms_image_u8 img;
        ms_error err = {0};
        ms_status st = ms_image_decode(m, src->len, &lim, &img, &err);
        /* damage to the header may change the size: any size within the limits is fine */
        EXPECT(st == MS_OK || (err.msg[0] != 0 && img.rgb == NULL));
        ms_image_free(&img);
        free(m);
    }

    /* refused formats, named */
    const uint8_t gif[] = "GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04";
    expect_refused(gif, sizeof gif - 1, &lim, MS_ERR_UNSUPPORTED, "GIF", "GIF");
    const uint8_t bmp[] = "BM\x3a\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00\x28\x00";
    expect_refused(bmp, sizeof bmp - 1, &lim, MS_ERR_UNSUPPORTED, "BMP", "BMP");
    const uint8_t webp[] = "RIFF\x24\x00\x00\x00WEBPVP8 ";
    expect_refused(webp, sizeof webp - 1, &lim, MS_ERR_UNSUPPORTED, "WebP", "WebP");
    const uint8_t text[] = "hello, this is not an image";
    expect_refused(text, sizeof text - 1, &lim, MS_ERR_INVALID, "unknown format", "text");

    /* over the encoded-size limit */
    ms_image_limits small = lim;
    small.max_bytes = png.len - 1;
    expect_refused(png.data, png.len, &small, MS_ERR_LIMIT, "bytes", "over max_bytes");
    /* over the dimension limits of a real, decodable image */
    small = lim;
    small.max_width = 39;
    expect_refused(png.data, png.len, &small, MS_ERR_LIMIT, "40x30", "over max_width");
    small = lim;
    small.max_height = 29;
    expect_refused(jpg.data, jpg.len, &small, MS_ERR_LIMIT, "40x30", "over max_height");
    small = lim;
    small.max_pixels = 40 * 30 - 1;
    expect_refused(png.data, png.len, &small, MS_ERR_LIMIT, "pixels", "over max_pixels");
    free(png.data);
    free(jpg.data);
}

static void test_decode_bombs(void) {
    ms_image_limits lim = default_limits();
    const uint8_t raw[4] = {0, 1, 2, 3};
    /* IHDR claims 100000 x 100000: stb would try to allocate 30 GB (and fail with
     * "outofmem", an INVALID); LIMIT proves the header check ran before any decoding */
    membuf b = build_png(100000, 100000, 8, 2, NULL, 0, raw, sizeof raw);
    expect_refused(b.data, b.len, &lim, MS_ERR_LIMIT, "100000x100000", "PNG bomb header");
    free(b.data);
    b = build_png(6000, 6000, 8, 2, NULL, 0, raw, sizeof raw); /* each side fine, 36 MP not */
    expect_refused(b.data, b.len, &lim, MS_ERR_LIMIT, "6000x6000", "PNG pixel-count bomb");
    free(b.data);
    b = build_jpeg_sof(65000, 60000);
    expect_refused(b.data, b.len, &lim, MS_ERR_LIMIT, "65000x60000", "JPEG SOF bomb");
    free(b.data);
    b = build_jpeg_sof(9000, 10);
    expect_refused(b.data, b.len, &lim, MS_ERR_LIMIT, "9000x10", "JPEG too wide");
    free(b.data);

    /* deflate bomb: a 16x16 RGB header with 8 MiB of zeros behind it (8 KiB compressed) */
    size_t zeros = 8u << 20;
    uint8_t *z = calloc(zeros, 1);
    b = build_png(16, 16, 8, 2, NULL, 0, z, zeros);
    EXPECT(b.len < 64 * 1024);
    expect_refused(b.data, b.len, &lim, MS_ERR_LIMIT, "bomb", "PNG deflate bomb");
    free(b.data);
    /* the same header with exactly the data it needs decodes (the guard is not too tight) */
    b = build_png(16, 16, 8, 2, NULL, 0, z, 16 * (1 + 16 * 3));
    ms_image_u8 img;
    ms_error err = {0};
    EXPECTF(decode(&b, &img, &err) == MS_OK, "%s", err.msg);
    ms_image_free(&img);
    free(b.data);
    free(z);
}

/* A file of the source tree (dir relative to it), or NULL with the failure recorded. */
static char *read_source_file(const char *dir, const char *name, size_t *n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/%s", MS_SOURCE_DIR, dir, name);
    char *bytes = ms_test_read_file(path, n);
    EXPECTF(bytes != NULL, "cannot read %s", path);
    return bytes;
}

static void test_decode_committed_files(void) {
    const char *names[2] = {"demo.png", "demo.jpg"};
    for (int i = 0; i < 2; i++) {
        size_t n = 0;
        char *bytes = read_source_file("tests/data", names[i], &n);
        if (!bytes) continue;
        ms_image_u8 img;
        ms_error err = {0};
        ms_image_limits lim = default_limits();
        EXPECTF(ms_image_decode((const uint8_t *)bytes, n, &lim, &img, &err) == MS_OK, "%s: %s", names[i], err.msg);
        EXPECT(img.width == 160 && img.height == 120);
        ms_image_free(&img);
        free(bytes);
    }
}

/* ---- geometry ---- */

static void test_resize_size(void) {
    int64_t w, h;
    ms_image_resize_size(640, 480, 336, &w, &h); /* 336 * 640 / 480 = 448 exactly */
    EXPECT(w == 448 && h == 336);
    ms_image_resize_size(500, 333, 224, &w, &h); /* int(224 * 500 / 333) = int(336.34) */
    EXPECT(w == 336 && h == 224);
    ms_image_resize_size(333, 500, 224, &w, &h);
    EXPECT(w == 224 && h == 336);
    ms_image_resize_size(7, 3, 2, &w, &h);       /* int(4.67) = 4: truncated, not rounded */
    EXPECT(w == 4 && h == 2);
    ms_image_resize_size(5, 5, 3, &w, &h);
    EXPECT(w == 3 && h == 3);
    ms_image_resize_size(4, 6, 2, &w, &h);
    EXPECT(w == 2 && h == 3);
}

static ms_image_u8 pattern_image(int w, int h, bool gray) {
    ms_image_u8 img = {w, h, malloc((size_t)w * h * 3)};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                int f = (x * 37 + y * 53 + 11) % 256;
                int v = gray ? f : c == 0 ? f : c == 1 ? 255 - f : (f * 3) % 256;
                img.rgb[(y * w + x) * 3 + c] = (uint8_t)v;
            }
    return img;
}

static void expect_resize(int w, int h, int ow, int oh, const uint8_t *want, const char *what) {
    ms_image_u8 in = pattern_image(w, h, true), out;
    ms_error err = {0};
    EXPECTF(ms_image_resize_pil(&in, ow, oh, 3, &out, &err) == MS_OK, "%s", err.msg);
    int bad = 0;
    for (int i = 0; i < ow * oh; i++)
        for (int c = 0; c < 3; c++) bad += out.rgb[i * 3 + c] != want[i];
    EXPECTF(bad == 0, "%s: %d bytes differ from PIL's", what, bad);
    ms_image_free(&in);
    ms_image_free(&out);
}

static void test_resize_pil(void) {
    /* One output pixel by hand: 6 -> 3 columns, scale 2, so the bicubic support 2 widens to
     * 4 and output column 0 (center 1.0) reads columns 0..4 at distances (x + 0.5 - 1) / 2 =
     * -0.25, 0.25, 0.75, 1.25, 1.75: weights 0.8671875, 0.8671875, 0.2265625, -0.0703125,
     * -0.0234375 (sum 1.8671875), normalised and scaled by 2^22 with rounding: 1947982,
     * 1947982, 508932, -157945, -52648. For the row 10, 20, ..., 60:
     * (2^21 + 10*1947982 + 20*1947982 + 30*508932 - 40*157945 - 50*52648) >> 22 = 15. */
    const int32_t k[5] = {1947982, 1947982, 508932, -157945, -52648};
    int64_t acc = 1 << 21;
    for (int i = 0; i < 5; i++) acc += (int64_t)(10 * (i + 1)) * k[i];
    EXPECT((acc >> 22) == 15);
    ms_image_u8 row = {6, 1, malloc(18)}, out;
    for (int i = 0; i < 18; i++) row.rgb[i] = (uint8_t)(10 * (i / 3 + 1));
    ms_error err = {0};
    EXPECT(ms_image_resize_pil(&row, 3, 1, 3, &out, &err) == MS_OK);
    EXPECT(out.rgb[0] == 15 && out.rgb[3] == 35 && out.rgb[6] == 55);
    ms_image_free(&row);
    ms_image_free(&out);

    /* Whole images (values derived from Pillow's formulas: horizontal pass first into
     * 8-bit, then vertical), on pattern (x*37 + y*53 + 11) % 256 */
    const uint8_t down_4x6[6] = {63, 137, 163, 162, 87, 80};                 /* 4x6 -> 2x3 */
    expect_resize(4, 6, 2, 3, down_4x6, "4x6 -> 2x3");
    const uint8_t down_7x5[6] = {91, 156, 148, 156, 104, 107};               /* 7x5 -> 3x2 */
    expect_resize(7, 5, 3, 2, down_7x5, "7x5 -> 3x2");
    const uint8_t vert_only[21] = {30, 67, 104, 149, 186, 223, 145, 117, 164, 201, 174, 63, 100,
                                   73, 204, 92, 129, 51, 88, 125, 170};      /* 7x5 -> 7x3 */
    expect_resize(7, 5, 7, 3, vert_only, "7x5 -> 7x3");
    const uint8_t horiz_only[20] = {26, 88, 156, 218, 79, 141, 219, 130, 132, 204,
                                    77, 58, 195, 176, 49, 121, 123, 34, 112, 174}; /* 7x5 -> 4x5 */
    expect_resize(7, 5, 4, 5, horiz_only, "7x5 -> 4x5");

    /* upscale with overshoot clipped at 0 and 255: 3x2 -> 7x5 */
    ms_image_u8 up = {3, 2, malloc(18)};
    const uint8_t up_src[6] = {0, 255, 0, 200, 10, 90};
    for (int i = 0; i < 18; i++) up.rgb[i] = up_src[i / 3];
    const uint8_t up_want[35] = {0, 11, 167, 255, 173, 21, 0, 14, 36, 155, 239, 152, 30, 6,
                                 109, 104, 124, 133, 97, 54, 49, 204, 171, 93, 26, 41, 77, 92,
                                 240, 196, 81, 0, 20, 86, 108};
    EXPECT(ms_image_resize_pil(&up, 7, 5, 3, &out, &err) == MS_OK);
    int bad = 0;
    for (int i = 0; i < 35 * 3; i++) bad += out.rgb[i] != up_want[i / 3];
    EXPECTF(bad == 0, "3x2 -> 7x5: %d bytes differ", bad);
    ms_image_free(&out);
    /* same size: an exact copy */
    EXPECT(ms_image_resize_pil(&up, 3, 2, 3, &out, &err) == MS_OK);
    EXPECT(memcmp(out.rgb, up.rgb, 18) == 0);
    ms_image_free(&out);
    /* a constant image stays constant under every filter (weights sum to one) */
    memset(up.rgb, 77, 18);
    for (int f = 1; f <= 5; f++) {
        EXPECT(ms_image_resize_pil(&up, 5, 9, f, &out, &err) == MS_OK);
        bad = 0;
        for (int i = 0; i < 5 * 9 * 3; i++) bad += out.rgb[i] != 77;
        EXPECTF(bad == 0, "filter %d", f);
        ms_image_free(&out);
    }
    EXPECT(ms_image_resize_pil(&up, 5, 9, 0, &out, &err) == MS_ERR_UNSUPPORTED);
    ms_image_free(&up);
}

static ms_image_proc_config clip_proc(int shortest, int crop_w, int crop_h) {
    ms_image_proc_config c = {0};
    c.do_resize = shortest > 0;
    c.shortest_edge = shortest;
    c.resample = 3;
    c.do_center_crop = true;
    c.crop_width = crop_w;
    c.crop_height = crop_h;
    c.do_rescale = true;
    c.rescale_factor = 1.0f / 255.0f;
    c.do_normalize = true;
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    const float stdv[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    memcpy(c.image_mean, mean, sizeof mean);
    memcpy(c.image_std, stdv, sizeof stdv);
    c.do_convert_rgb = true;
    return c;
}

static void test_center_crop(void) {
    ms_error err = {0};
    ms_image_u8 in = pattern_image(5, 5, false), out;
    /* 5x5 -> 2x2: top = left = (5 - 2) // 2 = 1 */
    ms_image_proc_config c = clip_proc(0, 2, 2);
    EXPECT(ms_image_resize_crop(&in, &c, &out, &err) == MS_OK);
    EXPECT(out.width == 2 && out.height == 2);
    int bad = 0;
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 6; x++) bad += out.rgb[y * 6 + x] != in.rgb[(y + 1) * 15 + 3 + x];
    EXPECT(bad == 0);
    ms_image_free(&out);
    ms_image_free(&in);

    /* smaller than the crop: 2x2 into 5 wide x 3 high. top = (2-3)//2 = -1, left =
     * (2-5)//2 = -2 (floor): one zero row on top, two zero columns left, one right */
    in = pattern_image(2, 2, false);
    c = clip_proc(0, 5, 3);
    EXPECT(ms_image_resize_crop(&in, &c, &out, &err) == MS_OK);
    EXPECT(out.width == 5 && out.height == 3);
    bad = 0;
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 5; x++)
            for (int ch = 0; ch < 3; ch++) {
                int sy = y - 1, sx = x - 2;
                uint8_t want = (sy >= 0 && sy < 2 && sx >= 0 && sx < 2) ? in.rgb[(sy * 2 + sx) * 3 + ch] : 0;
                bad += out.rgb[(y * 5 + x) * 3 + ch] != want;
            }
    EXPECTF(bad == 0, "padding crop: %d bytes wrong", bad);
    ms_image_free(&out);
    ms_image_free(&in);
}

static void test_resize_crop_pipeline(void) {
    /* 4x6, shortest edge 2 -> 2x3 (PIL bicubic), crop 2x2 at top = (3-2)//2 = 0 */
    ms_image_u8 in = pattern_image(4, 6, false), out;
    ms_image_proc_config c = clip_proc(2, 2, 2);
    ms_error err = {0};
    EXPECT(ms_image_resize_crop(&in, &c, &out, &err) == MS_OK);
    const uint8_t want[3][6] = {{63, 137, 163, 162, 87, 80},   /* per channel, 2x3 resized */
                                {192, 118, 92, 93, 168, 175},
                                {118, 129, 156, 130, 104, 128}};
    int bad = 0;
    for (int i = 0; i < 4; i++)
        for (int ch = 0; ch < 3; ch++) bad += out.rgb[i * 3 + ch] != want[ch][i];
    EXPECTF(bad == 0, "resize+crop: %d bytes wrong", bad);
    ms_image_free(&out);

    /* the same through the float pipeline: float32(u8 * (1/255 in float64)), then
     * (x - mean) / std in float32 */
    float pix[3 * 2 * 2];
    EXPECT(ms_image_preprocess_f32(&in, &c, pix, &err) == MS_OK);
    float worst = 0;
    for (int ch = 0; ch < 3; ch++)
        for (int i = 0; i < 4; i++) {
            float x = (float)(want[ch][i] * (1.0 / 255.0));
            float ref = (x - c.image_mean[ch]) / c.image_std[ch];
            float d = fabsf(pix[ch * 4 + i] - ref);
            if (d > worst) worst = d;
        }
    EXPECTF(worst == 0.0f, "normalised values differ by %g", (double)worst);
    /* the corners of the value range, by hand: 255 -> (1 - 0.48145466) / 0.26862954 */
    ms_image_u8 white = {1, 1, (uint8_t[]){255, 255, 255}};
    ms_image_proc_config c1 = clip_proc(0, 1, 1);
    float wpx[3];
    EXPECT(ms_image_preprocess_f32(&white, &c1, wpx, &err) == MS_OK);
    EXPECT_NEAR(wpx[0], 1.9303361, 1e-6);
    EXPECT_NEAR(wpx[1], 2.0748837, 1e-6);
    EXPECT_NEAR(wpx[2], 2.1458972, 1e-6);
    /* a config whose output is not the crop size is an error, not a short buffer */
    ms_image_proc_config nocrop = c;
    nocrop.do_center_crop = false;
    EXPECT(ms_image_preprocess_f32(&in, &nocrop, pix, &err) == MS_ERR_UNSUPPORTED);
    ms_image_free(&in);

    /* extreme aspect ratio: only the crop window is computed (8000x1 -> 336 * 8000 wide) */
    ms_image_u8 thin = pattern_image(8000, 1, false);
    ms_image_proc_config big = clip_proc(336, 336, 336);
    EXPECT(ms_image_resize_crop(&thin, &big, &out, &err) == MS_OK);
    EXPECT(out.width == 336 && out.height == 336);
    ms_image_free(&out);
    ms_image_free(&thin);
}

/* Inputs the fuzzer found (tests/fuzz/regressions/fuzz_image), refused cleanly: the JPEG
 * whose Huffman table overflowed stb_image's (JPEG now goes through libjpeg-turbo, which
 * refuses the table at decode), and the PNG whose chunk claims more bytes than the file
 * has (refused already by the probe, before stb could allocate the claim). */
static void test_fuzz_regressions(void) {
    static const struct {
        const char *file;
        const char *msg;
        bool probe_refuses;
    } cases[] = {
        {"stb_dht_counts_over_256.jpg", "Huffman table", false},
        {"stb_huff_decode_undefined_table_flaky.jpg", "JPEG", false},
        {"stb_grow_buffer_shift32.jpg", "JPEG", false},
        {"png_idat_length_past_end_64mib.png", "past the end of the file", true},
        {"png_second_idat_past_end_1300mib.png", "past the end of the file", true},
    };
    ms_image_limits lim;
    ms_image_limits_default(&lim);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = 0;
        char *bytes = read_source_file("tests/fuzz/regressions/fuzz_image", cases[i].file, &n);
        if (!bytes) continue;
        ms_image_u8 img = {0};
        ms_error err = {0};
        ms_status st = ms_image_decode((const uint8_t *)bytes, n, &lim, &img, &err);
        EXPECTF(st == MS_ERR_INVALID && strstr(err.msg, cases[i].msg), "%s: %s (%s)", cases[i].file,
                err.msg, ms_status_name(st));
        EXPECT(img.rgb == NULL);
        int32_t w = 0, h = 0;
        if (cases[i].probe_refuses) EXPECT(ms_image_probe((const uint8_t *)bytes, n, &lim, &w, &h, &err) == MS_ERR_INVALID);
        free(bytes);
    }
}

/* An empty IDAT chunk carries no data: with one before, between or after the real one a
 * PNG decodes to the same pixels (stb_image itself does undefined pointer arithmetic on an
 * empty first IDAT, so encoder/ hands it a copy without them; fuzz finding 9). */
static void test_empty_idat_chunks(void) {
    const uint8_t raw[] = {0, 10, 20, 30, 40, 50, 60, 1, 70, 80, 90, 100, 110, 120}; /* 2x2 RGB */
    membuf plain = build_png(2, 2, 8, 2, NULL, 0, raw, sizeof raw);
    ms_image_u8 want = {0};
    ms_error err = {0};
    EXPECTF(decode(&plain, &want, &err) == MS_OK, "%s", err.msg);
    const size_t idat = 8 + 25; /* signature + IHDR */
    const size_t idat_end = plain.len - 12; /* before IEND */
    /* where the empty chunks go: before the IDAT, after it, both */
    const bool before[3] = {true, false, true}, after[3] = {false, true, true};
    for (size_t k = 0; k < 3; k++) {
        membuf b = {0}, empty = {0};
        png_chunk(&empty, "IDAT", NULL, 0);
        mb_put(&b, plain.data, idat);
        if (before[k]) mb_put(&b, empty.data, empty.len);
        mb_put(&b, plain.data + idat, idat_end - idat);
        if (after[k]) mb_put(&b, empty.data, empty.len);
        mb_put(&b, plain.data + idat_end, plain.len - idat_end);
        ms_image_u8 got = {0};
        ms_status st = decode(&b, &got, &err);
        EXPECTF(st == MS_OK, "case %zu: %s", k, err.msg);
        if (st == MS_OK && want.rgb)
            EXPECTF(got.width == 2 && got.height == 2 && memcmp(got.rgb, want.rgb, 12) == 0, "case %zu: pixels differ", k);
        ms_image_free(&got);
        free(b.data);
        free(empty.data);
    }
    /* The fuzzer's inputs (an empty first IDAT in an otherwise damaged file, and one whose
     * CRC the file cuts short): whatever stb makes of the rest, the sanitizers of the fuzz
     * build see no undefined behaviour (its regress tests replay them). */
    static const char *const found[] = {"stb_png_empty_idat_null_offset.png", "stb_png_empty_idat_cut_crc.png"};
    for (size_t f = 0; f < 2; f++) {
        size_t n = 0;
        char *bytes = read_source_file("tests/fuzz/regressions/fuzz_image", found[f], &n);
        if (!bytes) continue;
        ms_image_limits lim = default_limits();
        ms_image_u8 img = {0};
        ms_status st = ms_image_decode((const uint8_t *)bytes, n, &lim, &img, &err);
        EXPECTF(st == MS_OK || st == MS_ERR_INVALID, "%s", ms_status_name(st));
        EXPECT(st == MS_OK ? img.rgb != NULL : img.rgb == NULL);
        ms_image_free(&img);
        free(bytes);
    }
    ms_image_free(&want);
    free(plain.data);
}

int main(void) {
    test_decode_png_layouts();
    test_decode_palette_png();
    test_decode_jpeg();
    test_decode_malformed();
    test_decode_bombs();
    test_decode_committed_files();
    test_resize_size();
    test_resize_pil();
    test_center_crop();
    test_resize_crop_pipeline();
    test_fuzz_regressions();
    test_empty_idat_chunks();
    return ms_test_finish("test_image");
}
