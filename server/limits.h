/*
 * The server's input limits: every size, count and depth a request can push on the
 * server has a configurable ceiling with a sane default. Checked on the HTTP thread
 * before anything is decoded or queued; a request over one gets a 4xx JSON error
 * naming the limit (docs/server.md has the table).
 */
#ifndef MS_SERVER_LIMITS_H
#define MS_SERVER_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ms_server_limits {
    size_t max_body_bytes;          /* request body, default 64 MiB (images are base64) */
    int32_t max_images;             /* images per request, default 16 */
    size_t max_image_bytes;         /* one encoded image, default 20 MiB */
    int32_t max_image_width;        /* default 8192 */
    int32_t max_image_height;       /* default 8192 */
    int64_t max_image_pixels;       /* default 33,554,432 (32 MP) */
    int32_t max_json_depth;         /* nesting of objects/arrays, default 32 */
    int32_t max_stop_strings;       /* default 16 */
    int32_t max_stop_bytes;         /* one stop string, default 256 */
    int32_t max_messages;           /* chat messages per request, default 1024 */
    uint32_t max_connections;       /* MHD connection limit, default 1024 */
    size_t connection_memory;       /* MHD per-connection memory (headers), default 64 KiB */
    uint32_t idle_timeout_s;        /* idle connection timeout, default 60 s */
    uint32_t request_read_timeout_s; /* a whole request (headers + body) must arrive within
                                        this many seconds of accept or of the previous
                                        response, default 30 s */
    uint32_t max_connections_per_ip; /* open connections from one address, 0 = no limit
                                        (the default: local use and proxies share one) */
} ms_server_limits;

void ms_server_limits_default(ms_server_limits *l);

/* Applies one "--max-..." flag (name without the value). Returns false when name is not
 * a limit flag; *ok false when the value is not a positive integer in range. */
bool ms_server_limits_flag(ms_server_limits *l, const char *name, const char *value, bool *ok);

/* The limit flags' help lines. */
const char *ms_server_limits_help(void);

#endif
