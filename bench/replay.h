/*
 * The open-loop replayer: requests go out at their (scaled) trace times whether or not
 * earlier ones have finished, as streaming chat completions with ignore_eos and
 * max_tokens = min_tokens = GeneratedTokens, over libcurl's multi interface on one
 * thread. Prompt sizing (docs/bench.md): NumImages generated images plus filler text of
 * repeated short words, sized so the server counts ContextTokens prompt tokens; the
 * template overhead, tokens per word and tokens per image are measured first with
 * small calibration requests (unless given), and the report compares target and actual
 * prompt tokens from the server's usage.
 */
#ifndef MS_BENCH_REPLAY_H
#define MS_BENCH_REPLAY_H

#include <stdbool.h>
#include <stdint.h>

#include "bench/images.h"
#include "bench/report.h"

typedef enum ms_image_policy {
    MS_IMAGE_POLICY_KEEP = 0, /* send every image (up to max_images); the prompt may grow */
    MS_IMAGE_POLICY_FIT,      /* send only the images whose tokens fit ContextTokens (at least 1) */
} ms_image_policy;

typedef struct ms_replay_options {
    const char *trace;
    const char *url;          /* base URL, e.g. http://127.0.0.1:8000 */
    const char *model;        /* NULL: the first id of /v1/models, else "default" */
    const char *api_key;
    const char *out_dir;
    ms_trace_select sel;
    ms_slo slo;
    int32_t max_concurrency;  /* 0 = unlimited */
    ms_image_policy policy;
    int32_t image_tokens;     /* 0 = calibrate / ask the server / 576 */
    int32_t max_images;       /* per request cap on images sent */
    int32_t image_pool;       /* distinct generated images */
    bool calibrate;
    double request_timeout_s;
    int progress;             /* -1 auto (stderr is a TTY), 0 off, 1 on */
    bool plots;
    /* Multi-turn sessions (bench/replay_session.c): 0 = open loop, one request per
     * trace row. Else `sessions` conversations of `turns` turns from the first
     * sessions * turns selected rows; each turn re-sends the history (earlier turns'
     * images and text, placeholder answers) and goes out think_time_s after the
     * previous turn's answer ended. */
    int32_t sessions, turns;
    double think_time_s;
} ms_replay_options;

void ms_replay_options_default(ms_replay_options *o);

/* Prompt sizing parameters. */
typedef struct ms_prompt_plan {
    double overhead;          /* tokens of an empty prompt (template, BOS) */
    double per_word;          /* tokens per filler word */
    int32_t image_tokens;
    const char *image_tokens_source;
    bool calibrated;
} ms_prompt_plan;

/* Images to send and filler words for one request under a policy. */
void ms_prompt_size(const ms_prompt_plan *plan, ms_image_policy policy, int32_t max_images, int32_t n_images,
                    int32_t context_tokens, int32_t *images_sent, int32_t *words, int32_t *expected_prompt);
/* The JSON body of one request (malloc'd). */
char *ms_replay_body(const char *model, const ms_image_pool *pool, int64_t index, int32_t images, int32_t words,
                     int32_t max_tokens, bool stream);
/* One user message of the replay (images picked by request index, filler words),
 * and a body around a message array (takes messages). */
struct cJSON *ms_replay_user_message(const ms_image_pool *pool, int64_t index, int32_t images, int32_t words);
char *ms_replay_body_messages(const char *model, struct cJSON *messages, int32_t max_tokens, bool stream);
/* Filler text of n words (malloc'd). */
char *ms_filler_text(int32_t words);

/* Asks /v1/models for the model id and image tokens; measures prompt overhead, tokens
 * per word and (if not given) tokens per image with small non-streaming requests. */
ms_status ms_replay_prepare(const ms_replay_options *o, const ms_image_pool *pool, char *model, size_t model_size,
                            ms_prompt_plan *plan, ms_error *err);

/* Sessions (bench/replay_session.c). Lays out run->reqs (already sized one per trace
 * row) as o->sessions conversations of o->turns turns: run->n becomes sessions * turns,
 * turn t > 1 carries the history in its prompt sizes. MS_ERR_INVALID when the
 * selection has too few rows. */
ms_status ms_sessions_layout(const ms_replay_options *o, const ms_prompt_plan *plan, ms_bench_run *run,
                             ms_error *err);
/* The body of session request i: every turn of its session up to i. */
char *ms_replay_session_body(const char *model, const ms_image_pool *pool, const ms_bench_run *run, int64_t i);
/* TTFT statistics of first turns and of turns 2+ (n = 0 when there are none). */
void ms_session_ttft(const ms_bench_run *run, ms_latency_stats *first, ms_latency_stats *later);

/* Runs the replay and fills run (the caller frees it with ms_bench_run_free). */
ms_status ms_replay_run(const ms_replay_options *o, const ms_trace_set *set, ms_bench_run *run, ms_error *err);

/* The same replay against the engine in this process (bench/replay_engine.c). The
 * engine options come from the caller; `o` gives the selection, images and policy. */
struct ms_engine_options;
ms_status ms_replay_engine_run(const struct ms_engine_options *eo, const ms_replay_options *o, const ms_trace_set *set,
                               ms_bench_run *run, ms_error *err);

/* One streamed response as the replayer parses it (bench/replay_sse.c): bytes in,
 * measurements into r out. Zero it, set r and t0 (the send time), feed what arrives. */
typedef struct ms_sse_stream {
    ms_run_request *r;
    char *sse;                /* unparsed stream bytes */
    size_t sse_n, sse_cap;
    double t0;                /* monotonic send time */
    double last_chunk;
    bool done_seen;           /* "data: [DONE]" arrived */
    bool error_event;         /* an error event or a malformed event arrived */
    int32_t usage_completion; /* usage.completion_tokens, 0 until seen */
} ms_sse_stream;
/* Appends n bytes received at `now` and handles every complete event; false when one
 * pending event outgrows 16 MiB (the caller abandons the transfer). The caller frees
 * s->sse. */
bool ms_sse_feed(ms_sse_stream *s, const char *bytes, size_t n, double now);
/* Marks r failed with msg (the first failure wins). */
void ms_run_request_fail(ms_run_request *r, const char *msg);
/* Appends one inter-token gap (seconds) to r's ITL list (grown as needed). */
void ms_run_request_itl_push(ms_run_request *r, double v);

int ms_bench_replay_main(int argc, char **argv);

#endif
