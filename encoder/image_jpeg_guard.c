/*
 * A structural check of a JPEG's Huffman tables before stb_image sees the file.
 *
 * stb_image 2.27 (Debian's libstb) reads each DHT table's 16 code-length counts and
 * copies `sum of counts` value bytes into a 256-byte array without checking that the
 * sum is at most 256, so a hostile file writes up to 4 KiB inside the decoder's state
 * (found by fuzzing; tests/fuzz/regressions/fuzz_image). It does so already in
 * stbi_info, i.e. at request-parse time. We walk the markers as stb does and refuse
 * such a table.
 */
#include "encoder/image_internal.h"

ms_status ms_image_jpeg_guard(const uint8_t *b, size_t n, ms_error *err) {
    if (n < 2 || b[0] != 0xff || b[1] != 0xd8) return MS_OK; /* not a JPEG: not our check */
    size_t i = 2;
    while (i + 4 <= n) {
        if (b[i] != 0xff) { /* entropy-coded data: scan on to the next marker */
            i++;
            continue;
        }
        uint8_t m = b[i + 1];
        if (m == 0xff) { /* fill byte */
            i++;
            continue;
        }
        if (m == 0x00 || m == 0x01 || (m >= 0xd0 && m <= 0xd8)) { /* markers without a length */
            i += 2;
            continue;
        }
        size_t len = (size_t)b[i + 2] << 8 | b[i + 3];
        if (m == 0xc4) {
            /* As stb reads it: tables until the segment length is used up, each a class
             * byte, 16 counts and `sum` values, read even past the segment's end (bytes
             * past the end of the file read as 0). */
            long left = (long)len - 2;
            size_t p = i + 4;
            while (left > 0 && p < n) {
                size_t sum = 0;
                for (size_t k = p + 1; k < p + 17 && k < n; k++) sum += b[k];
                if (sum > 256)
                    return ms_errorf(err, MS_ERR_INVALID,
                                     "image: corrupt JPEG: a Huffman table declares %zu codes "
                                     "(at most 256) at byte %zu", sum, p);
                p += 17 + sum;
                left -= 17 + (long)sum;
            }
        }
        i += 2 + len;
    }
    return MS_OK;
}
