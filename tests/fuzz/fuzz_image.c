/*
 * Fuzz target: the image path of a request, bytes to model input geometry.
 * ms_image_decode under small limits (1024 x 1024, 1 MP, 1 MiB encoded), then
 * ms_image_resize_crop with one of a few processor configs.
 *
 * Allocation bound (why -malloc_limit_mb=64 in CMakeLists.txt): a 1 MP image decodes
 * into at most 8 bytes a pixel inside stb_image (16-bit RGBA PNG, 8 MiB), progressive
 * JPEG keeps 2-byte coefficients per component (3 components: 6 MiB), our copy is 3 MiB,
 * and the compressed stream is at most the 1 MiB input. Anything asking for 64 MiB got
 * past the limits: a finding.
 */
#include <stdint.h>
#include <string.h>

#include "encoder/image.h"
#include "tests/fuzz/fuzz_util.h"

/* Known finding (regressions/fuzz_image/stb_dht_counts_over_256.jpg): Debian's stb_image
 * (2.27, git 2022-09-08) does not check that a JPEG DHT table's 16 code counts sum to at
 * most 256; stbi__build_huffman and the value copy then write up to 4080 bytes into a
 * 257/256-byte array inside its decoder struct (a heap overwrite ASan cannot see, UBSan
 * reports the index). True for such a JPEG anywhere in the file (progressive JPEGs put
 * DHT between scans). */
static bool jpeg_has_oversized_dht(const uint8_t *b, size_t n) {
    if (n < 2 || b[0] != 0xff || b[1] != 0xd8) return false;
    size_t i = 2;
    while (i + 4 <= n) {
        if (b[i] != 0xff) { i++; continue; }           /* entropy-coded data: scan on */
        uint8_t m = b[i + 1];
        if (m == 0xff) { i++; continue; }               /* fill byte */
        if (m == 0x00 || m == 0x01 || (m >= 0xd0 && m <= 0xd8)) { i += 2; continue; } /* no length */
        size_t len = (size_t)b[i + 2] << 8 | b[i + 3];
        if (m == 0xc4) {
            /* as stb reads it: tables until the segment length is used up, reading a
             * table's header and values even where they run past the segment */
            long left = (long)len - 2;
            size_t p = i + 4;
            while (left > 0 && p < n) {
                size_t sum = 0; /* stb reads bytes past the end of the file as 0 */
                for (size_t k = p + 1; k < p + 17 && k < n; k++) sum += b[k];
                if (sum > 256) return true;
                p += 17 + sum;
                left -= 17 + (long)sum;
            }
        }
        i += 2 + len;
    }
    return false;
}

/* Processor configs picked by input length, so no input byte is spent on them: CLIP's
 * own (336, bicubic, crop), tiny ones with other filters, and one without crop (the
 * resized image itself is the output). */
static void pick_config(size_t n, ms_image_proc_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->do_resize = true;
    cfg->do_center_crop = true;
    cfg->do_convert_rgb = true;
    switch (n % 4) {
    case 0: cfg->shortest_edge = 336; cfg->resample = 3; cfg->crop_width = cfg->crop_height = 336; break;
    case 1: cfg->shortest_edge = 24; cfg->resample = 1; cfg->crop_width = 20; cfg->crop_height = 28; break;
    case 2: cfg->shortest_edge = 7; cfg->resample = (int32_t)(2 + n / 4 % 4); cfg->crop_width = cfg->crop_height = 32; break;
    default: cfg->shortest_edge = 16; cfg->resample = 3; cfg->do_center_crop = false; break;
    }
}

/* Known finding (regressions/fuzz_image/png_idat_length_past_end_64mib.png): stb_image
 * grows its IDAT buffer to a chunk's declared length before reading the chunk, so a
 * 1 KiB PNG whose IDAT claims 64 MiB (up to 2 GiB) makes it allocate that much;
 * ms_image_png_guard stops at a truncated chunk and lets stb go on. */
static bool png_has_chunk_past_end(const uint8_t *b, size_t n) {
    if (n < 8 || memcmp(b, "\x89PNG\r\n\x1a\n", 8) != 0) return false;
    for (size_t off = 8; off + 8 <= n;) {
        size_t len = (size_t)b[off] << 24 | (size_t)b[off + 1] << 16 | (size_t)b[off + 2] << 8 | b[off + 3];
        if (len > n - off - 8) return true;
        if (memcmp(b + off + 4, "IEND", 4) == 0) return false;
        off += 12 + len;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (ms_fuzz_skip_known() && (jpeg_has_oversized_dht(data, size) || png_has_chunk_past_end(data, size)))
        return 0;
    ms_image_limits lim = {.max_width = 1024, .max_height = 1024, .max_pixels = 1 << 20,
                           .max_bytes = 1u << 20};
    ms_image_u8 img;
    ms_error err = {0};
    if (ms_image_decode(data, size, &lim, &img, &err) != MS_OK) {
        if (img.rgb != NULL || err.msg[0] == 0) __builtin_trap(); /* failure must be clean and say why */
        return 0;
    }
    /* The limits held. */
    if (img.width <= 0 || img.height <= 0 || img.width > lim.max_width ||
        img.height > lim.max_height || (int64_t)img.width * img.height > lim.max_pixels)
        __builtin_trap();
    /* Touch every byte so ASan checks the buffer really is w * h * 3. */
    volatile uint8_t sink = img.rgb[(size_t)img.width * img.height * 3 - 1];
    (void)sink;

    ms_image_proc_config cfg;
    pick_config(size, &cfg);
    ms_image_u8 out;
    if (ms_image_resize_crop(&img, &cfg, &out, &err) == MS_OK) {
        if (cfg.do_center_crop && (out.width != cfg.crop_width || out.height != cfg.crop_height))
            __builtin_trap();
        sink = out.rgb[(size_t)out.width * out.height * 3 - 1];
        ms_image_free(&out);
    }
    ms_image_free(&img);
    return 0;
}
