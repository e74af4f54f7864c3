/*
 * Deflate-bomb guard for PNG: a small PNG can carry an IDAT stream that inflates a
 * thousand times over (20 MiB -> 20 GiB). stb_image inflates it into a buffer that keeps
 * doubling until 4 GiB. Before stb sees the file we inflate the IDAT stream once with
 * zlib into a small window, counting bytes and stopping as soon as the count passes what
 * the header's size can need. Only excess is refused here; a corrupt stream or chunk
 * layout is left for stb to report with its own message.
 */
#include <string.h>
#include <zlib.h>

#include "encoder/image_internal.h"

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Bytes of filtered scanlines a PNG of this header can need, interlaced or not: Adam7
 * adds at most one filter byte and one partial byte per row of each pass. */
static uint64_t png_raw_bound(uint64_t w, uint64_t h, int bit_depth, int color_type) {
    int channels = color_type == 2 ? 3 : color_type == 4 ? 2 : color_type == 6 ? 4 : 1;
    uint64_t bits = (uint64_t)(bit_depth > 0 && bit_depth <= 16 ? bit_depth : 16) * channels;
    uint64_t rowbytes = (w * bits + 7) / 8;
    return h * (1 + rowbytes) + 2 * (2 * h + 7);
}

ms_status ms_image_png_guard(const uint8_t *bytes, size_t n, int32_t w, int32_t h, ms_error *err) {
    size_t off = 8; /* after the signature */
    uint64_t bound = 0;
    bool raw_deflate = false; /* Apple's CgBI PNGs store headerless deflate */
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    bool started = false;
    uint64_t produced = 0;
    uint8_t window[16384];
    ms_status st = MS_OK;

    bool inflated_all = false; /* the stream ended: later chunks are only length-checked */
    /* Every chunk whose 8-byte header is in the file is checked, after the compressed
     * stream's end too: stb reads the length from the header alone. */
    while (off + 8 <= n) {
        uint32_t len = be32(bytes + off);
        const uint8_t *type = bytes + off + 4;
        const uint8_t *data = bytes + off + 8;
        /* A chunk longer than the file: stb_image would allocate the declared length (up
         * to 2 GiB) before finding the data missing (found by fuzzing, twice). */
        if (len > n - off - 8) {
            st = ms_errorf(err, MS_ERR_INVALID,
                           "image: corrupt PNG: chunk '%.4s' at byte %zu declares %u bytes, "
                           "past the end of the file", (const char *)type, off, len);
            goto done;
        }
        if (memcmp(type, "CgBI", 4) == 0) raw_deflate = true;
        if (memcmp(type, "IHDR", 4) == 0 && len >= 13)
            bound = png_raw_bound((uint64_t)w, (uint64_t)h, data[8], data[9]);
        if (off + 12 + (size_t)len > n) break; /* only the CRC is missing: stb reports it */
        if (memcmp(type, "IDAT", 4) == 0 && bound > 0 && !inflated_all) {
            if (!started) {
                if (inflateInit2(&zs, raw_deflate ? -15 : 15) != Z_OK)
                    return ms_errorf(err, MS_ERR_NOMEM, "image: no memory to check the PNG stream");
                started = true;
            }
            zs.next_in = (Bytef *)data;
            zs.avail_in = len;
            int zr = Z_OK;
            while (zs.avail_in > 0 && zr == Z_OK) {
                zs.next_out = window;
                zs.avail_out = sizeof window;
                zr = inflate(&zs, Z_NO_FLUSH);
                produced += sizeof window - zs.avail_out;
                if (produced > 2 * bound + 65536) {
                    st = ms_errorf(err, MS_ERR_LIMIT,
                                   "image: PNG pixel data inflates to more than %llu bytes, far past "
                                   "what %dx%d needs (compression bomb)",
                                   (unsigned long long)produced, w, h);
                    goto done;
                }
                if (zr == Z_BUF_ERROR && zs.avail_out > 0) break; /* needs the next chunk */
                if (zr == Z_BUF_ERROR) zr = Z_OK;                 /* window full: go on */
            }
            if (zr != Z_OK && zr != Z_BUF_ERROR) inflated_all = true; /* stream end or corrupt */
        }
        if (memcmp(type, "IEND", 4) == 0) break;
        off += 12 + (size_t)len;
    }
done:
    if (started) inflateEnd(&zs);
    return st;
}

/* stb_image computes `idata + 0` with idata still NULL when the first IDAT chunk is
 * empty (undefined behaviour in C, found by fuzzing). An empty IDAT carries nothing, so
 * a copy without those chunks decodes to the same pixels. Chunk lengths were checked
 * against the file by ms_image_png_guard before this runs. */
uint8_t *ms_image_png_drop_empty_idat(const uint8_t *bytes, size_t n, size_t *out_n) {
    /* stb acts on a chunk as soon as its 8-byte header is read, before the CRC (found by
     * fuzzing: an empty IDAT whose CRC the file cuts short), so look at every header. */
    bool any = false;
    for (size_t off = 8; off + 8 <= n && !any; off += 12 + (size_t)be32(bytes + off)) {
        any = be32(bytes + off) == 0 && memcmp(bytes + off + 4, "IDAT", 4) == 0;
        if (be32(bytes + off) > n - off - 8) break;
    }
    if (!any) return NULL;
    uint8_t *copy = ms_xmalloc(n);
    memcpy(copy, bytes, 8);
    size_t off = 8, w = 8;
    while (off + 8 <= n) {
        const size_t len = be32(bytes + off), left = n - off;
        if (len > left - 8) break;
        const size_t chunk = 12 + len;
        if (len == 0 && memcmp(bytes + off + 4, "IDAT", 4) == 0) {
            off += chunk < left ? chunk : left; /* with what the file has of its CRC */
            continue;
        }
        if (chunk > left) break;
        memcpy(copy + w, bytes + off, chunk);
        w += chunk;
        off += chunk;
    }
    memcpy(copy + w, bytes + off, n - off); /* a truncated tail stays for stb to report */
    *out_n = w + (n - off);
    return copy;
}
