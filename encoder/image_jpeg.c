/*
 * JPEG input through libjpeg-turbo (Debian's libjpeg62-turbo), the decoder PIL uses, so
 * pixels match transformers' preprocessing. stb_image's JPEG decoder is not used: the
 * fuzzer found three bugs in Debian's copy (a Huffman-table overflow, an undefined table
 * read, a negative bit count) on hostile files.
 *
 * Hostile-input rules: dimensions are checked against the limits after the header and
 * before any pixel; the library may use at most a memory budget derived from the pixel
 * limit; a progressive file may have at most JPEG_MAX_SCANS scans (each scan costs a
 * pass over the image: a scan bomb is a CPU bomb); a truncated file is an error, as
 * in PIL (which refuses truncated images by default).
 *
 * CMYK and YCCK files decode to CMYK and convert to RGB as PIL does (cmyk_row_to_rgb).
 */
#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE and size_t without including them */
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#include "encoder/image_internal.h"

enum { JPEG_MAX_SCANS = 256 };

typedef struct jpeg_guard {
    struct jpeg_error_mgr pub; /* first: libjpeg casts cinfo->err to this */
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
    bool truncated;
    bool too_many_scans;
} jpeg_guard;

static void on_error(j_common_ptr c) {
    jpeg_guard *g = (jpeg_guard *)c->err;
    (*c->err->format_message)(c, g->msg);
    longjmp(g->jump, 1);
}

static void on_message(j_common_ptr c, int level) {
    jpeg_guard *g = (jpeg_guard *)c->err;
    if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF) g->truncated = true; /* other warnings: decode on, as PIL */
}

static void on_progress(j_common_ptr c) {
    j_decompress_ptr d = (j_decompress_ptr)c;
    jpeg_guard *g = (jpeg_guard *)c->err;
    if (d->input_scan_number > JPEG_MAX_SCANS) {
        g->too_many_scans = true;
        snprintf(g->msg, sizeof g->msg, "more than %d scans", JPEG_MAX_SCANS);
        longjmp(g->jump, 1);
    }
}

static void guard_init(struct jpeg_decompress_struct *d, jpeg_guard *g) {
    memset(g, 0, sizeof *g);
    d->err = jpeg_std_error(&g->pub);
    g->pub.error_exit = on_error;
    g->pub.emit_message = on_message;
}

/* One row of the library's CMYK output to RGB, as PIL: its JPEG plugin always reads CMYK
 * with Adobe's inverted polarity (rawmode "CMYK;I", whether or not the file has an Adobe
 * marker), and convert("RGB") is Convert.c's cmyk2rgb on the inverted values:
 * nk = 255 - K, R = nk - round(C * nk / 255) in its integer division by 255. With
 * C = 255 - c and K = 255 - k (c, k the library's bytes): nk = k. */
static void cmyk_row_to_rgb(uint8_t *rgb, const uint8_t *cmyk, size_t w) {
    for (size_t x = 0; x < w; x++) {
        const int nk = cmyk[x * 4 + 3];
        for (int c = 0; c < 3; c++) {
            const int inv = 255 - cmyk[x * 4 + c];
            const int t = inv * nk + 128;
            const int v = nk - (((t >> 8) + t) >> 8); /* Pillow's MULDIV255 */
            rgb[x * 3 + c] = (uint8_t)(v <= 0 ? 0 : v < 256 ? v : 255);
        }
    }
}

/* The frame header's size, read by walking the markers to the first SOFn: enough to
 * hold a size claim against the limits before the library allocates anything. */
ms_status ms_image_jpeg_info(const uint8_t *b, size_t n, int32_t *w, int32_t *h, ms_error *err) {
    size_t i = 2; /* after SOI */
    while (i + 4 <= n) {
        if (b[i] != 0xff) return ms_errorf(err, MS_ERR_INVALID, "image: corrupt JPEG header (no marker at byte %zu)", i);
        const uint8_t m = b[i + 1];
        if (m == 0xff) { /* fill byte */
            i++;
            continue;
        }
        if (m == 0xd8 || m == 0x01 || (m >= 0xd0 && m <= 0xd7)) { /* markers without a length */
            i += 2;
            continue;
        }
        if (m == 0xd9 || m == 0xda) break; /* end of image or start of scan before any frame */
        const size_t len = (size_t)b[i + 2] << 8 | b[i + 3];
        if (len < 2) return ms_errorf(err, MS_ERR_INVALID, "image: corrupt JPEG header (segment length %zu)", len);
        const bool sof = m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc;
        if (sof) {
            if (len < 7 || i + 9 > n) break;
            *h = (int32_t)((uint32_t)b[i + 5] << 8 | b[i + 6]);
            *w = (int32_t)((uint32_t)b[i + 7] << 8 | b[i + 8]);
            return MS_OK;
        }
        i += 2 + len;
    }
    return ms_errorf(err, MS_ERR_INVALID, "image: corrupt JPEG header (no frame header)");
}

ms_status ms_image_jpeg_decode(const uint8_t *bytes, size_t n, const ms_image_limits *lim, ms_image_u8 *out,
                               ms_error *err) {
    struct jpeg_decompress_struct d;
    jpeg_guard g;
    guard_init(&d, &g);
    uint8_t *volatile rgb = NULL; /* volatile: read after longjmp */
    if (setjmp(g.jump)) {
        jpeg_destroy_decompress(&d);
        free(rgb);
        return ms_errorf(err, g.too_many_scans ? MS_ERR_LIMIT : MS_ERR_INVALID, "image: corrupt JPEG data (%s)",
                         g.msg);
    }
    jpeg_create_decompress(&d);
    /* Whole-image buffers of a progressive file: coefficients (2 bytes a sample, 3
     * components) plus the output, for the largest image the limits allow. */
    d.mem->max_memory_to_use = (long)(lim->max_pixels * 3 * 4 + (64l << 20));
    g.progress.progress_monitor = on_progress;
    d.progress = &g.progress;
    jpeg_mem_src(&d, bytes, (unsigned long)n);
    jpeg_read_header(&d, TRUE);
    const int64_t w = d.image_width, h = d.image_height;
    if (w <= 0 || h <= 0 || w > lim->max_width || h > lim->max_height || w * h > lim->max_pixels) {
        jpeg_destroy_decompress(&d);
        return ms_errorf(err, MS_ERR_LIMIT,
                         "image: JPEG of %lldx%lld is over the limits (width <= %d, height <= %d, pixels <= %lld)",
                         (long long)w, (long long)h, lim->max_width, lim->max_height, (long long)lim->max_pixels);
    }
    /* Gray and YCbCr/RGB come out RGB from the library, as PIL's L and RGB modes after
     * convert("RGB"). Four components (CMYK, or YCCK which the library turns into CMYK)
     * come out CMYK and are converted below as PIL does. */
    const bool cmyk = d.num_components == 4;
    d.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&d);
    const int comps = cmyk ? 4 : 3;
    if (d.output_width != (JDIMENSION)w || d.output_height != (JDIMENSION)h || d.output_components != comps)
        ms_panic(__FILE__, __LINE__, "libjpeg output %ux%u x%d differs from its header", d.output_width,
                 d.output_height, d.output_components);
    rgb = malloc((size_t)w * (size_t)h * 3 + (cmyk ? (size_t)w * 4 : 0)); /* + one CMYK row */
    if (!rgb) {
        jpeg_destroy_decompress(&d);
        return ms_errorf(err, MS_ERR_NOMEM, "image: no memory for %lldx%lld pixels", (long long)w, (long long)h);
    }
    uint8_t *cmyk_row = cmyk ? rgb + (size_t)w * (size_t)h * 3 : NULL;
    while (d.output_scanline < d.output_height) {
        uint8_t *dst = rgb + (size_t)d.output_scanline * (size_t)w * 3;
        JSAMPROW row = cmyk ? cmyk_row : dst;
        if (jpeg_read_scanlines(&d, &row, 1) == 1 && cmyk) cmyk_row_to_rgb(dst, cmyk_row, (size_t)w);
    }
    if (!g.truncated) jpeg_finish_decompress(&d);
    jpeg_destroy_decompress(&d);
    if (g.truncated) {
        free(rgb);
        return ms_errorf(err, MS_ERR_INVALID, "image: truncated JPEG (the file ends before the image data)");
    }
    out->width = (int32_t)w;
    out->height = (int32_t)h;
    out->rgb = rgb;
    return MS_OK;
}
