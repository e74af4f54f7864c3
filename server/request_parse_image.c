/*
 * Image URLs of a request: data:image/png|jpeg;base64 URLs, or local files under
 * --allowed-media-path (file:// URLs or absolute paths, checked by realpath prefix so
 * "..", symlinks and the like cannot leave the folder). The type comes from the magic
 * bytes and the size from the header (ms_image_probe): an image bomb is refused before any
 * pixel is decoded. Remote URLs are refused: the server fetches nothing.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "kernels/ms_common.h"
#include "encoder/image.h"
#include "server/request_parse.h"

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

static bool b64_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* Characters that count (whitespace skipped) and how many '=' end them (up to 2). */
static void b64_count(const char *s, size_t n, size_t *m, size_t *pad) {
    *m = *pad = 0;
    for (size_t i = 0; i < n; i++) *m += !b64_space((unsigned char)s[i]);
    for (size_t i = n; i-- > 0 && *pad < 2;) {
        if (b64_space((unsigned char)s[i])) continue;
        if (s[i] != '=') break;
        (*pad)++;
    }
}

size_t ms_base64_bad_byte(const char *s, size_t n) {
    size_t m, pad, k = 0;
    b64_count(s, n, &m, &pad);
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (b64_space(c)) continue;
        if (c == '=' ? k < m - pad : b64_value(c) < 0) return i; /* '=' only as the final padding */
        k++;
    }
    return n;
}

int ms_base64_decode(const char *s, size_t n, size_t max_out, uint8_t **out, size_t *n_out) {
    *out = NULL;
    *n_out = 0;
    size_t m, pad;
    b64_count(s, n, &m, &pad);
    if (m == 0 || m % 4 || ms_base64_bad_byte(s, n) < n) return 1;
    const size_t len = m / 4 * 3 - pad;
    if (len > max_out) return 2;
    uint8_t *b = ms_xmalloc(len ? len : 1);
    size_t k = 0;
    uint32_t w = 0;
    int got = 0;
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (b64_space(c)) continue;
        w = w << 6 | (uint32_t)(c == '=' ? 0 : b64_value(c)); /* every byte was checked above */
        if (++got < 4) continue;
        const uint8_t trio[3] = {(uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w};
        for (int j = 0; j < 3 && k < len; j++) b[k++] = trio[j];
        got = 0;
        w = 0;
    }
    *out = b;
    *n_out = len;
    return 0;
}

/* Magic bytes and header dimensions against the limits. */
static bool check_image(ms_api_image *img, const char *param, const ms_server_limits *lim, ms_api_error *err) {
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const bool png = img->n_bytes >= 8 && !memcmp(img->bytes, png_magic, 8);
    const bool jpeg = img->n_bytes >= 3 && img->bytes[0] == 0xff && img->bytes[1] == 0xd8 && img->bytes[2] == 0xff;
    if (!png && !jpeg) {
        const char *what = ms_image_format_name(img->bytes, img->n_bytes); /* "GIF", "WebP", ... */
        if (what)
            return ms_api_fail(err, 400, param, "unsupported_image_type",
                               "image data is %s, which is not supported (only PNG and JPEG)", what);
        return ms_api_fail(err, 400, param, "unsupported_image_type", "image data is not PNG or JPEG");
    }
    if (img->n_bytes > INT_MAX)
        return ms_api_fail(err, 413, param, "max_image_bytes", "image is over the max_image_bytes limit");
    int w = 0, h = 0;
    /* PNG: read IHDR's size first, so a bomb is named as one even where stb_image
     * refuses the header itself as too large. */
    if (png && img->n_bytes >= 24 && !memcmp(img->bytes + 12, "IHDR", 4)) {
        const uint8_t *d = img->bytes + 16;
        const uint32_t pw = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
        const uint32_t ph = (uint32_t)d[4] << 24 | (uint32_t)d[5] << 16 | (uint32_t)d[6] << 8 | d[7];
        if (pw > (uint32_t)lim->max_image_width || ph > (uint32_t)lim->max_image_height)
            return ms_api_fail(err, 422, param, pw > (uint32_t)lim->max_image_width ? "max_image_width" : "max_image_height",
                               "image is %ux%u, over the max_image_width x max_image_height limit of %dx%d", pw, ph,
                               lim->max_image_width, lim->max_image_height);
    }
    /* The encoder's structural checks (stb_image needs them even to read a header: a
     * JPEG Huffman table of over 256 codes overflows it, found by fuzzing); the limits
     * are applied below with the API's own codes, so here they are wide open. */
    const ms_image_limits open_limits = {.max_width = INT32_MAX, .max_height = INT32_MAX,
                                         .max_pixels = INT64_MAX, .max_bytes = SIZE_MAX};
    ms_error ierr = {0};
    int32_t pw = 0, ph = 0;
    if (ms_image_probe(img->bytes, img->n_bytes, &open_limits, &pw, &ph, &ierr) != MS_OK)
        return ms_api_fail(err, 400, param, "invalid_image", "%s", ierr.msg);
    w = pw;
    h = ph;
    if (w > lim->max_image_width || h > lim->max_image_height)
        return ms_api_fail(err, 422, param, w > lim->max_image_width ? "max_image_width" : "max_image_height",
                           "image is %dx%d, over the max_image_width x max_image_height limit of %dx%d", w, h,
                           lim->max_image_width, lim->max_image_height);
    if ((int64_t)w * h > lim->max_image_pixels)
        return ms_api_fail(err, 422, param, "max_image_pixels",
                           "image has %lld pixels, over the max_image_pixels limit of %lld", (long long)w * h,
                           (long long)lim->max_image_pixels);
    img->width = w;
    img->height = h;
    return true;
}

/* Names what makes the data malformed: the byte and its offset, or the length. */
static bool base64_error(const char *data, size_t n, const char *param, ms_api_error *err) {
    const size_t at = ms_base64_bad_byte(data, n);
    if (at == n)
        return ms_api_fail(err, 400, param, "invalid_base64",
                           "image data is not valid base64: its length without whitespace is not a multiple of 4 "
                           "(missing '=' padding?)");
    const unsigned char c = (unsigned char)data[at];
    char what[16];
    if (c > 0x20 && c < 0x7f) snprintf(what, sizeof what, "'%c'", c);
    else snprintf(what, sizeof what, "byte 0x%02x", c);
    if (c == '=')
        return ms_api_fail(err, 400, param, "invalid_base64",
                           "image data is not valid base64: '=' at offset %zu of the data, but padding may only end it",
                           at);
    return ms_api_fail(err, 400, param, "invalid_base64",
                       "image data is not valid base64: %s at offset %zu of the data is not in the base64 alphabet "
                       "(A-Z a-z 0-9 + / and = padding; whitespace is skipped; URL-safe '-' and '_' are not accepted)",
                       what, at);
}

static bool load_data_url(const char *url, const char *param, const ms_parse_options *o, ms_api_image *img,
                          ms_api_error *err) {
    const char *comma = strchr(url, ',');
    if (!comma) return ms_api_fail(err, 400, param, "invalid_image_url", "data URL has no ',' before its data");
    const char *mime = url + 5;
    const size_t head = (size_t)(comma - mime);
    static const char *const ok[] = {"image/png;base64", "image/jpeg;base64", "image/jpg;base64"};
    bool known = false;
    for (size_t i = 0; i < 3; i++) known |= head == strlen(ok[i]) && !strncasecmp(mime, ok[i], head);
    if (!known) {
        if (head < 7 || strncasecmp(mime, "image/", 6) || !memmem(mime, head, ";base64", 7))
            return ms_api_fail(err, 400, param, "invalid_image_url",
                               "data URL must be data:image/png;base64,... or data:image/jpeg;base64,...");
        size_t type_len = 0; /* the media type, named in the message: "image/gif" */
        while (type_len < head && type_len < 64 && mime[type_len] != ';') type_len++;
        return ms_api_fail(err, 400, param, "unsupported_image_type",
                           "image type %.*s is not supported (only image/png or image/jpeg)", (int)type_len, mime);
    }
    const char *data = comma + 1;
    const size_t n = strlen(data);
    const int rc = ms_base64_decode(data, n, o->limits->max_image_bytes, &img->bytes, &img->n_bytes);
    if (rc == 2)
        return ms_api_fail(err, 413, param, "max_image_bytes", "image is over the max_image_bytes limit of %zu bytes",
                           o->limits->max_image_bytes);
    if (rc) return base64_error(data, n, param, err);
    return true;
}

static bool load_local(const char *path, const char *param, const ms_parse_options *o, ms_api_image *img,
                       ms_api_error *err) {
    if (!o->allowed_media_path)
        return ms_api_fail(err, 400, param, "local_path_not_allowed",
                           "local image paths are refused (the server was started without --allowed-media-path)");
    char real[PATH_MAX];
    const size_t base = strlen(o->allowed_media_path);
    if (!realpath(path, real) || strncmp(real, o->allowed_media_path, base) || (real[base] != '/' && base > 1))
        return ms_api_fail(err, 400, param, "local_path_not_allowed",
                           "image path is not a readable file under the allowed media folder");
    struct stat st;
    if (stat(real, &st) || !S_ISREG(st.st_mode))
        return ms_api_fail(err, 400, param, "local_path_not_allowed",
                           "image path is not a readable file under the allowed media folder");
    if ((uint64_t)st.st_size > o->limits->max_image_bytes)
        return ms_api_fail(err, 413, param, "max_image_bytes", "image is over the max_image_bytes limit of %zu bytes",
                           o->limits->max_image_bytes);
    FILE *f = fopen(real, "rb");
    if (!f)
        return ms_api_fail(err, 400, param, "local_path_not_allowed",
                           "image path is not a readable file under the allowed media folder");
    img->n_bytes = (size_t)st.st_size;
    img->bytes = ms_xmalloc(img->n_bytes ? img->n_bytes : 1);
    const bool read_ok = fread(img->bytes, 1, img->n_bytes, f) == img->n_bytes;
    fclose(f);
    if (!read_ok) {
        free(img->bytes);
        img->bytes = NULL;
        return ms_api_fail(err, 400, param, "invalid_image", "image file could not be read");
    }
    return true;
}

bool ms_api_load_image_url(const char *url, const char *param, const ms_parse_options *o, ms_api_image *img,
                           ms_api_error *err) {
    memset(img, 0, sizeof *img);
    bool ok;
    if (!strncasecmp(url, "data:", 5)) ok = load_data_url(url, param, o, img, err);
    else if (!strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8))
        return ms_api_fail(err, 400, param, "remote_url_not_supported",
                           "remote image URLs are not fetched; send the image as a data:image/...;base64 URL");
    else if (!strncasecmp(url, "file://", 7)) ok = load_local(url + 7, param, o, img, err);
    else if (url[0] == '/') ok = load_local(url, param, o, img, err);
    else
        return ms_api_fail(err, 400, param, "invalid_image_url",
                           "image url must be a data:image/png|jpeg;base64 URL or an allowed local path");
    if (ok && !check_image(img, param, o->limits, err)) ok = false;
    if (!ok) {
        free(img->bytes);
        memset(img, 0, sizeof *img);
    }
    return ok;
}
