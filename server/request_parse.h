/*
 * JSON request bodies -> plain structs, as pure functions over bytes (the fuzzer and the
 * unit tests call them without a server). Everything a client can get wrong is checked
 * here and answered with an ms_api_error naming the field or limit: types, ranges,
 * n = 1, image URLs (data:image/png|jpeg;base64 only, or a local file under the allowed
 * folder; http(s) is refused: the server fetches nothing), image header dimensions
 * (read with stbi_info before any pixel is decoded), counts, sizes and JSON depth.
 * Tokenizing and the context-length check happen later (they need the model).
 */
#ifndef MS_SERVER_REQUEST_PARSE_H
#define MS_SERVER_REQUEST_PARSE_H

#include <stdbool.h>
#include <stdint.h>

#include "server/http_util.h"
#include "server/limits.h"

typedef enum ms_api_kind {
    MS_API_CHAT,        /* POST /v1/chat/completions */
    MS_API_COMPLETIONS, /* POST /v1/completions */
} ms_api_kind;

typedef struct ms_parse_options {
    const ms_server_limits *limits;
    const char *model_name;         /* the served id; a request naming another is 404 */
    const char *allowed_media_path; /* realpath of the folder local images may come
                                       from; NULL: local paths refused */
} ms_parse_options;

typedef struct ms_api_part {
    bool is_image;
    char *text;                     /* text parts */
    int32_t image;                  /* image parts: index into images */
} ms_api_part;

typedef struct ms_api_message {
    char *role;                     /* "system" | "user" | "assistant" */
    ms_api_part *parts;
    int32_t n_parts;
} ms_api_message;

typedef struct ms_api_image {
    uint8_t *bytes;                 /* encoded PNG/JPEG (decoded base64 or file) */
    size_t n_bytes;
    int32_t width, height;          /* from the header */
} ms_api_image;

typedef struct ms_api_request {
    ms_api_kind kind;
    /* chat */
    ms_api_message *messages;
    int32_t n_messages;
    ms_api_image *images;
    int32_t n_images;
    /* completions: a string or token ids */
    char *prompt_text;
    int32_t *prompt_ids;
    int32_t n_prompt_ids;
    bool has_prompt_ids;
    /* sampling and output */
    int32_t max_tokens;             /* 0: not given (the rest of the context) */
    int32_t min_tokens;
    bool ignore_eos;
    float temperature;              /* default 1.0 as OpenAI */
    float top_p;                    /* default 1 */
    int32_t top_k;                  /* 0 / -1: off */
    uint64_t seed;
    bool has_seed;
    int32_t priority;
    char **stop;                    /* stop strings */
    int32_t n_stop;
    bool stream;
    bool include_usage;
    bool return_timings;            /* "return_timings" or "timings": true */
    bool return_token_ids;          /* extension: the generated ids in "modserve" */
    /* Extensions are read from the "modserve" object ({"return_timings": true,
     * "return_token_ids": true}, as docs/server.md documents) or the top level. */
} ms_api_request;

/* Parses body (n bytes, need not be NUL-terminated). On failure err is set and *out is
 * left empty (nothing to free). */
bool ms_api_parse(ms_api_kind kind, const char *body, size_t n, const ms_parse_options *o,
                  ms_api_request *out, ms_api_error *err);
void ms_api_request_free(ms_api_request *r);

/* Parses a JSON body strictly (request_parse_json.c): invalid UTF-8, raw control
 * characters in strings, \u0000 escapes, data after the value and duplicate keys are
 * refused with a 400 naming them (vLLM's pydantic models refuse them too). NULL with err
 * set on failure; the caller cJSON_Deletes the result. Check the depth first. */
struct cJSON *ms_json_parse_strict(const char *body, size_t n, ms_api_error *err);

/* Deepest nesting of objects/arrays in JSON text (strings skipped); stops counting once
 * over limit (returns limit + 1) so hostile input costs O(n). */
int32_t ms_json_depth(const char *s, size_t n, int32_t limit);

/* Base64 (RFC 4648 alphabet, padding required) -> malloc'd bytes. ASCII whitespace
 * (space, \t, \r, \n) anywhere in the data is skipped, as browsers' atob and Python's
 * decoder do (`base64` wraps its output at 76 columns); any other byte outside the
 * alphabet (URL-safe '-' and '_' included) is refused. max_out: refuse before
 * allocating when the result would be larger. Returns 0 ok, 1 malformed, 2 over max_out. */
int ms_base64_decode(const char *s, size_t n, size_t max_out, uint8_t **out, size_t *n_out);
/* Offset of the first byte that makes s malformed base64 (outside the alphabet and not
 * whitespace, or '=' before the end), or n when every byte is allowed (then only the
 * length can be wrong). */
size_t ms_base64_bad_byte(const char *s, size_t n);

/* Image url -> bytes checked against the limits (type by magic bytes, dims by header). */
bool ms_api_load_image_url(const char *url, const char *param, const ms_parse_options *o,
                           ms_api_image *img, ms_api_error *err);

#endif
