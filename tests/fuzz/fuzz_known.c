/*
 * The known open findings in stb_image's path (fuzz_util.h): detectors for their inputs,
 * and wrappers (linked with -Wl,--wrap=stbi_info_from_memory,--wrap=stbi_load_from_memory)
 * that refuse such inputs as corrupt when MS_FUZZ_SKIP_KNOWN=1, so that fuzz_image and
 * fuzz_request can look past them. Without the variable the wrappers only pass through.
 * Remove a detector when its bug is fixed.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <stb_image.h>

#include "tests/fuzz/fuzz_util.h"

/* Known finding (regressions/fuzz_image/stb_dht_counts_over_256.jpg): Debian's stb_image
 * (2.27, git 2022-09-08) does not check that a JPEG DHT table's 16 code counts sum to at
 * most 256; stbi__build_huffman and the value copy then write up to 4080 bytes into a
 * 257/256-byte array inside its decoder struct (a heap overwrite ASan cannot see, UBSan
 * reports the index). True for such a JPEG anywhere in the file (progressive JPEGs put
 * DHT between scans). */
bool ms_fuzz_jpeg_has_oversized_dht(const uint8_t *b, size_t n) {
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

/* Known finding (regressions/fuzz_image/png_idat_length_past_end_64mib.png): stb_image
 * grows its IDAT buffer to a chunk's declared length before reading the chunk, so a
 * 1 KiB PNG whose IDAT claims 64 MiB (up to 2 GiB) makes it allocate that much;
 * ms_image_png_guard stops at a truncated chunk and lets stb go on. */
bool ms_fuzz_png_has_chunk_past_end(const uint8_t *b, size_t n) {
    if (n < 8 || memcmp(b, "\x89PNG\r\n\x1a\n", 8) != 0) return false;
    for (size_t off = 8; off + 8 <= n;) {
        size_t len = (size_t)b[off] << 24 | (size_t)b[off + 1] << 16 | (size_t)b[off + 2] << 8 | b[off + 3];
        if (len > n - off - 8) return true;
        if (memcmp(b + off + 4, "IEND", 4) == 0) return false;
        off += 12 + len;
    }
    return false;
}


/* stb_image_impl.c is compiled with recoverable UBSan checks (for ubsan_known.supp):
 * halt on the first report all the same, as the rest of the build does. */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) { return "halt_on_error=1:print_stacktrace=1"; }

static bool known_bad(const stbi_uc *b, int n) {
    return n > 0 && ms_fuzz_skip_known() &&
           (ms_fuzz_jpeg_has_oversized_dht(b, (size_t)n) || ms_fuzz_png_has_chunk_past_end(b, (size_t)n));
}

int __real_stbi_info_from_memory(const stbi_uc *b, int n, int *x, int *y, int *comp);
stbi_uc *__real_stbi_load_from_memory(const stbi_uc *b, int n, int *x, int *y, int *comp, int req);

int __wrap_stbi_info_from_memory(const stbi_uc *b, int n, int *x, int *y, int *comp) {
    if (known_bad(b, n)) return 0;
    return __real_stbi_info_from_memory(b, n, x, y, comp);
}

stbi_uc *__wrap_stbi_load_from_memory(const stbi_uc *b, int n, int *x, int *y, int *comp, int req) {
    if (known_bad(b, n)) return NULL;
    return __real_stbi_load_from_memory(b, n, x, y, comp, req);
}
