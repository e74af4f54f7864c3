/* Limit defaults and their command-line flags. */
#include "server/limits.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void ms_server_limits_default(ms_server_limits *l) {
    memset(l, 0, sizeof *l);
    l->max_body_bytes = 64u << 20;
    l->max_images = 16;
    l->max_image_bytes = 20u << 20;
    l->max_image_width = 8192;
    l->max_image_height = 8192;
    l->max_image_pixels = 32ll << 20;
    l->max_json_depth = 32;
    l->max_stop_strings = 16;
    l->max_stop_bytes = 256;
    l->max_messages = 1024;
    l->max_connections = 1024;
    l->connection_memory = 64u << 10;
    l->idle_timeout_s = 60;
    l->request_read_timeout_s = 30;
    l->max_connections_per_ip = 0;
}

static bool parse_pos(const char *s, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > hi) return false;
    *out = v;
    return true;
}

bool ms_server_limits_flag(ms_server_limits *l, const char *name, const char *value, bool *ok) {
    long long v = 0;
    const long long i32 = INT32_MAX;
    *ok = true;
#define LIMIT_FLAG(flag, field, hi)                                       \
    if (!strcmp(name, flag)) {                                            \
        *ok = parse_pos(value, hi, &v);                                   \
        if (*ok) l->field = (__typeof__(l->field))v;                      \
        return true;                                                      \
    }
    LIMIT_FLAG("--max-body-bytes", max_body_bytes, 1ll << 32)
    LIMIT_FLAG("--max-images", max_images, 1024)
    LIMIT_FLAG("--max-image-bytes", max_image_bytes, 1ll << 31)
    LIMIT_FLAG("--max-image-width", max_image_width, 1 << 16)
    LIMIT_FLAG("--max-image-height", max_image_height, 1 << 16)
    LIMIT_FLAG("--max-image-pixels", max_image_pixels, 1ll << 32)
    LIMIT_FLAG("--max-json-depth", max_json_depth, 1000)
    LIMIT_FLAG("--max-stop-strings", max_stop_strings, 1024)
    LIMIT_FLAG("--max-stop-bytes", max_stop_bytes, 1 << 16)
    LIMIT_FLAG("--max-messages", max_messages, i32)
    LIMIT_FLAG("--max-connections", max_connections, 1 << 20)
    LIMIT_FLAG("--connection-memory", connection_memory, 1ll << 30)
    LIMIT_FLAG("--idle-timeout", idle_timeout_s, 86400)
    LIMIT_FLAG("--request-read-timeout", request_read_timeout_s, 86400)
    LIMIT_FLAG("--max-connections-per-ip", max_connections_per_ip, 1 << 20)
#undef LIMIT_FLAG
    return false;
}

const char *ms_server_limits_help(void) {
    return "  --max-body-bytes N     request body size (default 67108864)\n"
           "  --max-images N         images per request (default 16)\n"
           "  --max-image-bytes N    one encoded image (default 20971520)\n"
           "  --max-image-width N    image width, checked before decoding (default 8192)\n"
           "  --max-image-height N   image height (default 8192)\n"
           "  --max-image-pixels N   width * height (default 33554432)\n"
           "  --max-json-depth N     JSON nesting depth (default 32)\n"
           "  --max-stop-strings N   stop strings per request (default 16)\n"
           "  --max-stop-bytes N     bytes of one stop string (default 256)\n"
           "  --max-messages N       chat messages per request (default 1024)\n"
           "  --max-connections N    open connections; more are refused at once (default 1024)\n"
           "  --connection-memory N  per-connection header memory (default 65536)\n"
           "  --idle-timeout S       idle connection timeout in seconds (default 60)\n"
           "  --request-read-timeout S  seconds for a whole request (headers and body) to\n"
           "                         arrive, from accept or the previous response; a\n"
           "                         slower client is disconnected (default 30)\n"
           "  --max-connections-per-ip N  open connections from one client address\n"
           "                         (default: no limit; loopback and proxies share one)\n";
}
