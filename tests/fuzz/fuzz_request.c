/*
 * Fuzz target: OpenAI-style request bodies through ms_api_parse (server/request_parse.h),
 * the first thing the server does with a stranger's bytes. The first byte picks the API
 * (bit 0: chat or completions) and whether it is a body or one of the parser's pieces
 * (bits 1-2: 0/1 body, 2 base64, 3 JSON depth). Small limits (4 images, 1 MiB each,
 * 1024 x 1024, 1 MP) so an allocation past them is visible under -malloc_limit_mb.
 * Local image paths are refused (no allowed folder): nothing touches the file system.
 * On success the parsed request must respect every limit it was given.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/request_parse.h"

static ms_server_limits lim;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    ms_server_limits_default(&lim);
    lim.max_body_bytes = 4u << 20;
    lim.max_images = 4;
    lim.max_image_bytes = 1u << 20;
    lim.max_image_width = 1024;
    lim.max_image_height = 1024;
    lim.max_image_pixels = 1 << 20;
    lim.max_messages = 64;
    return 0;
}

static void check_request(const ms_api_request *r) {
    if (r->n_images < 0 || r->n_images > lim.max_images) __builtin_trap();
    for (int32_t i = 0; i < r->n_images; i++) {
        const ms_api_image *im = &r->images[i];
        if (im->n_bytes > lim.max_image_bytes || im->width <= 0 || im->height <= 0 ||
            im->width > lim.max_image_width || im->height > lim.max_image_height ||
            (int64_t)im->width * im->height > lim.max_image_pixels)
            __builtin_trap();
        if (im->n_bytes) {
            volatile uint8_t last = im->bytes[im->n_bytes - 1];
            (void)last;
        }
    }
    if (r->n_messages < 0 || r->n_messages > lim.max_messages) __builtin_trap();
    for (int32_t m = 0; m < r->n_messages; m++) {
        const ms_api_message *msg = &r->messages[m];
        if (msg->role == NULL) __builtin_trap();
        for (int32_t p = 0; p < msg->n_parts; p++) {
            const ms_api_part *part = &msg->parts[p];
            if (part->is_image ? (part->image < 0 || part->image >= r->n_images) : part->text == NULL)
                __builtin_trap();
        }
    }
    if (r->n_stop < 0 || r->n_stop > lim.max_stop_strings) __builtin_trap();
    for (int32_t i = 0; i < r->n_stop; i++)
        if (r->stop[i] == NULL || strlen(r->stop[i]) > (size_t)lim.max_stop_bytes) __builtin_trap();
    if (r->max_tokens < 0 || r->min_tokens < 0) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t mode = data[0];
    size_t n = size - 1;
    char *text = malloc(n ? n : 1); /* exactly n bytes: no NUL after the body */
    if (n) memcpy(text, data + 1, n);
    switch ((mode >> 1) & 3) {
    case 2: {
        uint8_t *out = NULL;
        size_t n_out = 0;
        size_t max_out = 1024;
        int rc = ms_base64_decode(text, n, max_out, &out, &n_out);
        if (rc == 0 && (n_out > max_out || n_out > n)) __builtin_trap();
        if (rc != 0 && out != NULL) __builtin_trap();
        free(out);
        break;
    }
    case 3: {
        int32_t d = ms_json_depth(text, n, 32);
        if (d < 0 || d > 33) __builtin_trap();
        break;
    }
    default: {
        ms_parse_options o = {.limits = &lim, .model_name = "modserve-fuzz", .allowed_media_path = NULL};
        ms_api_request r;
        ms_api_error err;
        memset(&err, 0, sizeof err);
        if (ms_api_parse((mode & 1) ? MS_API_COMPLETIONS : MS_API_CHAT, text, n, &o, &r, &err)) {
            check_request(&r);
            ms_api_request_free(&r);
        } else if (err.message[0] == 0 || err.http < 400 || err.http > 599) {
            __builtin_trap();
        }
        break;
    }
    }
    free(text);
    return 0;
}
