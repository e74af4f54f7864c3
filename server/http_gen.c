/*
 * One generation (chat or completions) over its connection's life.
 *
 * The HTTP thread parses, builds the prompt and submits; the engine's callbacks (on its
 * worker threads) detokenize incrementally, look for stop strings, append SSE bytes to
 * the request's output queue and resume the suspended connection. MHD's content reader
 * drains the queue, and when it is empty suspends the connection instead of returning 0
 * to a busy poll. Suspend and resume both happen under the request's mutex, so a resume
 * can never overtake the suspend it answers.
 *
 * Lifetime: refs = connection + engine (until on_done); whichever lets go last frees.
 * A connection that closes before the request is done cancels it in the engine. While
 * the connection is suspended MHD does not watch its socket: the connection watcher
 * (http_conn.c) does, and on a hangup marks the generation client_gone and resumes it;
 * the resumed handler or content reader then fails the connection, MHD closes it, and
 * the close cancels the request as above.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "server/http_server.h"

struct ms_gen {
    pthread_mutex_t mu;
    int refs;
    ms_http_server *srv;
    struct MHD_Connection *conn;
    bool conn_alive, suspended;
    bool client_gone;            /* the watcher saw the client hang up */
    bool chat, stream, include_usage, timings, want_ids;
    uint64_t id;
    bool have_id, cancel_wanted;
    char rid[48];
    long long created;
    int32_t min_tokens;
    ms_tokenizer_stream *ts;
    ms_sbuf text;                /* everything generated (stop strings trimmed) */
    size_t emitted;              /* bytes of text already sent as chunks */
    char **stop;
    int32_t n_stop;
    size_t max_stop;
    bool stopped;                /* a stop string ended it */
    int32_t n_tokens;
    ms_sbuf ids_json;            /* "1,2,3" when want_ids */
    ms_sbuf out;                 /* SSE bytes not yet read by MHD */
    size_t out_pos;
    bool started;                /* stream response queued */
    bool done;
    ms_request_result res;
};

static void gen_free(ms_gen *g) {
    pthread_mutex_destroy(&g->mu);
    if (g->ts) ms_tokenizer_stream_free(g->ts);
    for (int32_t i = 0; i < g->n_stop; i++) free(g->stop[i]);
    free(g->stop);
    ms_sbuf_free(&g->text);
    ms_sbuf_free(&g->ids_json);
    ms_sbuf_free(&g->out);
    free(g);
}

/* Drops one reference; the caller holds g->mu, which this releases. */
static void gen_unref_unlock(ms_gen *g) {
    const bool last = --g->refs == 0;
    pthread_mutex_unlock(&g->mu);
    if (last) gen_free(g);
}

static void gen_wake(ms_gen *g) {
    if (g->suspended && g->conn_alive) {
        g->suspended = false;
        MHD_resume_connection(g->conn);
    }
}

void ms_gen_client_gone(ms_gen *g) {
    pthread_mutex_lock(&g->mu);
    if (g->conn_alive && !g->client_gone) {
        g->client_gone = true;
        gen_wake(g);
    }
    pthread_mutex_unlock(&g->mu);
}

static bool result_ok(const ms_gen *g) {
    return g->res.status == MS_OK || (g->stopped && g->res.finish == MS_FINISH_CANCELLED);
}

static const char *finish_name(const ms_gen *g) {
    if (g->stopped) return "stop";
    switch (g->res.finish) {
    case MS_FINISH_STOP: return "stop";
    case MS_FINISH_LENGTH: return "length";
    default: return "abort";
    }
}

static int32_t completion_tokens(const ms_gen *g) { return g->stopped ? g->n_tokens : g->res.completion_tokens; }

/* ---- output pieces ---- */
static void add_head(ms_gen *g, ms_sbuf *b, bool chunk) {
    const char *obj = g->chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
    ms_sbuf_addf(b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":", g->rid, obj, g->created);
    ms_sbuf_add_json_str(b, g->srv->cfg.model_name, strlen(g->srv->cfg.model_name));
}

static void add_usage(ms_gen *g, ms_sbuf *b) {
    const int32_t p = g->res.prompt_tokens, c = completion_tokens(g);
    ms_sbuf_addf(b, ",\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d,"
                 "\"prompt_tokens_details\":{\"cached_tokens\":%d}}", p, c, p + c, g->res.cached_tokens);
}

static void add_extension(ms_gen *g, ms_sbuf *b) {
    if (!g->timings && !g->want_ids) return;
    ms_sbuf_adds(b, ",\"modserve\":{");
    if (g->timings) {
        const ms_request_times *t = &g->res.times;
        ms_sbuf_addf(b,
                     "\"timings\":{\"arrival\":%.6f,\"preprocess_queued\":%.6f,\"preprocess_start\":%.6f,"
                     "\"preprocess_end\":%.6f,\"encode_queued\":%.6f,\"encode_start\":%.6f,\"encode_end\":%.6f,"
                     "\"prefill_queued\":%.6f,\"prefill_start\":%.6f,\"prefill_end\":%.6f,\"decode_queued\":%.6f,"
                     "\"decode_start\":%.6f,\"first_token\":%.6f,\"last_token\":%.6f,\"finished\":%.6f,"
                     "\"preemptions\":%d}",
                     t->arrival, t->preprocess_queued, t->preprocess_start, t->preprocess_end, t->encode_queued,
                     t->encode_start, t->encode_end, t->prefill_queued, t->prefill_start, t->prefill_end,
                     t->decode_queued, t->decode_start, t->first_token, t->last_token, t->finished,
                     g->res.n_preemptions);
    }
    if (g->want_ids) ms_sbuf_addf(b, "%s\"token_ids\":[%s]", g->timings ? "," : "", g->ids_json.p ? g->ids_json.p : "");
    ms_sbuf_adds(b, "}");
}

/* One SSE event: a choice with text (content NULL: the role delta / an empty final
 * delta), finish reason or null. */
static void sse_chunk(ms_gen *g, const char *text, size_t n, bool role, const char *finish, bool last) {
    ms_sbuf *b = &g->out;
    ms_sbuf_adds(b, "data: ");
    add_head(g, b, true);
    ms_sbuf_adds(b, ",\"choices\":[{\"index\":0,");
    if (g->chat) {
        ms_sbuf_adds(b, "\"delta\":{");
        if (role) ms_sbuf_adds(b, "\"role\":\"assistant\",\"content\":\"\"");
        else if (text) {
            ms_sbuf_adds(b, "\"content\":");
            ms_sbuf_add_json_str(b, text, n);
        }
        ms_sbuf_adds(b, "}");
    } else {
        ms_sbuf_adds(b, "\"text\":");
        ms_sbuf_add_json_str(b, text ? text : "", text ? n : 0);
    }
    ms_sbuf_addf(b, ",\"logprobs\":null,\"finish_reason\":%s%s%s}]", finish ? "\"" : "", finish ? finish : "null",
                 finish ? "\"" : "");
    if (g->include_usage) ms_sbuf_adds(b, ",\"usage\":null");
    if (last) add_extension(g, b);
    ms_sbuf_adds(b, "}\n\n");
}

/* Sends new text, holding back what could still be the start of a stop string and
 * never splitting a UTF-8 character. */
static void emit_text(ms_gen *g, bool final) {
    size_t end = g->text.n;
    if (!final && g->max_stop > 1) end = end > g->max_stop - 1 ? end - (g->max_stop - 1) : 0;
    while (end > g->emitted && end < g->text.n && ((unsigned char)g->text.p[end] & 0xC0) == 0x80) end--;
    if (end <= g->emitted) return;
    sse_chunk(g, g->text.p + g->emitted, end - g->emitted, false, NULL, false);
    g->emitted = end;
}

/* Looks for a stop string in the text added since from; trims the text there. */
static void check_stop(ms_gen *g, size_t from) {
    if (!g->n_stop || g->n_tokens < g->min_tokens || !g->text.n) return;
    size_t start = from > g->max_stop ? from - g->max_stop : 0;
    const char *best = NULL;
    for (int32_t i = 0; i < g->n_stop; i++) {
        const char *hit = memmem(g->text.p + start, g->text.n - start, g->stop[i], strlen(g->stop[i]));
        if (hit && (!best || hit < best)) best = hit;
    }
    if (!best) return;
    g->text.n = (size_t)(best - g->text.p);
    g->text.p[g->text.n] = 0;
    if (g->emitted > g->text.n) g->emitted = g->text.n; /* cannot happen: held back */
    g->stopped = true;
}

/* ---- engine callbacks (engine threads) ---- */
static void on_token(void *user, int32_t token, int32_t index) {
    (void)index;
    ms_gen *g = user;
    pthread_mutex_lock(&g->mu);
    if (g->stopped) {
        pthread_mutex_unlock(&g->mu);
        return;
    }
    g->n_tokens++;
    if (g->want_ids) ms_sbuf_addf(&g->ids_json, "%s%d", g->ids_json.n ? "," : "", token);
    char *piece = NULL;
    ms_error err;
    const size_t before = g->text.n;
    if (ms_tokenizer_stream_push(g->ts, token, &piece, &err) == MS_OK && piece) ms_sbuf_adds(&g->text, piece);
    free(piece);
    check_stop(g, before);
    if (g->stream) emit_text(g, g->stopped);
    bool cancel = false;
    if (g->stopped) {
        cancel = g->have_id;
        g->cancel_wanted = !g->have_id;
    }
    if (g->stream) gen_wake(g);
    const uint64_t id = g->id;
    pthread_mutex_unlock(&g->mu);
    if (cancel) ms_engine_cancel(g->srv->engine, id);
}

static void on_done(void *user, const ms_request_result *res) {
    ms_gen *g = user;
    pthread_mutex_lock(&g->mu);
    g->res = *res;
    if (!g->stopped) {
        char *rest = NULL;
        ms_error err;
        const size_t before = g->text.n;
        if (ms_tokenizer_stream_finish(g->ts, &rest, &err) == MS_OK && rest) ms_sbuf_adds(&g->text, rest);
        free(rest);
        check_stop(g, before);
    }
    g->done = true;
    if (result_ok(g)) ms_metrics_observe(&g->srv->metrics, &g->res);
    if (g->stream) {
        /* Cancelled by the drain at shutdown: end the stream as vLLM does, "abort". */
        if (result_ok(g) || g->res.finish == MS_FINISH_CANCELLED) {
            emit_text(g, true);
            sse_chunk(g, NULL, 0, false, finish_name(g), !g->include_usage);
            if (g->include_usage) {
                ms_sbuf_adds(&g->out, "data: ");
                add_head(g, &g->out, true);
                ms_sbuf_adds(&g->out, ",\"choices\":[]");
                add_usage(g, &g->out);
                add_extension(g, &g->out);
                ms_sbuf_adds(&g->out, "}\n\n");
            }
        } else {
            ms_api_error e;
            ms_api_fail(&e, 500, NULL, "generation_failed", "the request failed during generation");
            char *j = ms_api_error_json(&e);
            ms_sbuf_addf(&g->out, "data: %s\n\n", j);
            free(j);
        }
        ms_sbuf_adds(&g->out, "data: [DONE]\n\n");
    }
    gen_wake(g);
    gen_unref_unlock(g);
}

/* ---- responses ---- */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    ms_gen *g = cls;
    pthread_mutex_lock(&g->mu);
    if (g->client_gone) { /* nobody to send to: MHD closes the connection */
        pthread_mutex_unlock(&g->mu);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (g->out_pos < g->out.n) {
        size_t k = g->out.n - g->out_pos;
        if (k > max) k = max;
        memcpy(buf, g->out.p + g->out_pos, k);
        g->out_pos += k;
        if (g->out_pos == g->out.n) g->out_pos = g->out.n = 0;
        pthread_mutex_unlock(&g->mu);
        return (ssize_t)k;
    }
    if (g->done) {
        pthread_mutex_unlock(&g->mu);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    g->suspended = true;
    MHD_suspend_connection(g->conn);
    pthread_mutex_unlock(&g->mu);
    return 0;
}

/* The error for a request that ended badly before anything was sent. */
static void failure_error(const ms_gen *g, ms_api_error *e) {
    switch (g->res.status) {
    case MS_ERR_INVALID:
    case MS_ERR_UNSUPPORTED: ms_api_fail(e, 400, "messages", "invalid_image", "an image could not be decoded"); break;
    case MS_ERR_LIMIT: ms_api_fail(e, 422, "messages", "image_limit", "an image is over a size limit"); break;
    case MS_ERR_CANCELLED: ms_api_fail(e, 503, NULL, "cancelled", "the request was cancelled (server shutting down)"); break;
    default: ms_api_fail(e, 500, NULL, "generation_failed", "the request failed during generation"); break;
    }
}

/* Called with g->mu held once there is something to answer with; releases it. */
static enum MHD_Result respond_unlock(ms_conn *c, ms_gen *g) {
    if (g->done && !result_ok(g) && !(g->stream && (g->n_tokens > 0 || g->res.finish == MS_FINISH_CANCELLED))) {
        ms_api_error e;
        failure_error(g, &e);
        pthread_mutex_unlock(&g->mu);
        return ms_http_reply_error(c, &e);
    }
    if (!g->stream) {
        ms_sbuf b = {0};
        add_head(g, &b, false);
        ms_sbuf_adds(&b, ",\"choices\":[{\"index\":0,");
        if (g->chat) {
            ms_sbuf_adds(&b, "\"message\":{\"role\":\"assistant\",\"content\":");
            ms_sbuf_add_json_str(&b, g->text.p ? g->text.p : "", g->text.n);
            ms_sbuf_adds(&b, "}");
        } else {
            ms_sbuf_adds(&b, "\"text\":");
            ms_sbuf_add_json_str(&b, g->text.p ? g->text.p : "", g->text.n);
        }
        ms_sbuf_addf(&b, ",\"logprobs\":null,\"finish_reason\":\"%s\"}]", finish_name(g));
        add_usage(g, &b);
        add_extension(g, &b);
        ms_sbuf_adds(&b, "}");
        pthread_mutex_unlock(&g->mu);
        return ms_http_reply(c, 200, "application/json", b.p);
    }
    g->started = true;
    pthread_mutex_unlock(&g->mu);
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, g, NULL);
    ms_http_add_cors_headers(c, r);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    c->status = 200;
    const enum MHD_Result ret = MHD_queue_response(c->conn, 200, r);
    MHD_destroy_response(r);
    return ret;
}

/* Suspends until the first token (stream) or the end (non-stream). */
static enum MHD_Result wait_or_respond(ms_conn *c, ms_gen *g) {
    pthread_mutex_lock(&g->mu);
    if (g->client_gone) { /* MHD_NO: MHD closes the connection, which cancels the request */
        pthread_mutex_unlock(&g->mu);
        return MHD_NO;
    }
    if (g->done || (g->stream && g->n_tokens > 0)) return respond_unlock(c, g);
    g->suspended = true;
    MHD_suspend_connection(c->conn);
    pthread_mutex_unlock(&g->mu);
    return MHD_YES;
}

enum MHD_Result ms_api_generation_resume(ms_conn *c) {
    ms_gen *g = c->gen;
    pthread_mutex_lock(&g->mu);
    const bool started = g->started;
    pthread_mutex_unlock(&g->mu);
    if (started) return MHD_YES; /* the response is queued; MHD is streaming it */
    return wait_or_respond(c, g);
}

void ms_api_generation_closed(ms_conn *c, bool completed_ok) {
    ms_gen *g = c->gen;
    c->gen = NULL;
    ms_conn_set_gen(c, NULL); /* before the connection's reference goes (the watcher holds none) */
    pthread_mutex_lock(&g->mu);
    g->conn_alive = false;
    g->suspended = false;
    const bool cancel = !g->done && g->have_id;
    const uint64_t id = g->id;
    ms_engine *engine = g->srv->engine;
    if (!g->done && !completed_ok) ms_metrics_count_disconnect(&g->srv->metrics);
    gen_unref_unlock(g);
    if (cancel) ms_engine_cancel(engine, id); /* the engine's reference keeps g until on_done */
}

/* ---- submission ---- */
static bool submit_error(ms_status st, const ms_error *err, ms_api_error *e) {
    (void)err;
    switch (st) {
    case MS_ERR_BUSY: return ms_api_fail(e, 503, NULL, "server_overloaded", "the server is at capacity; retry later");
    case MS_ERR_LIMIT:
        return ms_api_fail(e, 422, NULL, "engine_limit",
                           "the request is over a model limit (images, image bytes or context length)");
    case MS_ERR_INVALID: return ms_api_fail(e, 400, NULL, "invalid_request", "the request was refused as invalid");
    default: return ms_api_fail(e, 500, NULL, "internal_error", "the request could not be queued");
    }
}

static uint64_t next_id(void) {
    static atomic_uint_fast64_t counter;
    return atomic_fetch_add(&counter, 1) + 1;
}

enum MHD_Result ms_api_generate(ms_conn *c) {
    ms_http_server *s = c->srv;
    const bool chat = c->endpoint == MS_EP_CHAT;
    const ms_parse_options po = {.limits = &s->cfg.limits, .model_name = s->cfg.model_name,
                                 .allowed_media_path = s->cfg.allowed_media_path};
    ms_api_request r;
    ms_api_error e;
    if (!ms_api_parse(chat ? MS_API_CHAT : MS_API_COMPLETIONS, c->body.p, c->body.n, &po, &r, &e))
        return ms_http_reply_error(c, &e);
    ms_sbuf_free(&c->body);
    int32_t *ids = NULL, n_ids = 0;
    const bool ok = chat ? ms_api_chat_prompt(s, &r, &ids, &n_ids, &e) : ms_api_completions_prompt(s, &r, &ids, &n_ids, &e);
    if (!ok) {
        ms_api_request_free(&r);
        return ms_http_reply_error(c, &e);
    }
    /* Context: the expanded prompt plus the output must fit max_model_len. */
    const int64_t expanded = n_ids + (int64_t)r.n_images * (s->mcfg->image_seq_length - 1);
    int64_t max_tokens = r.max_tokens ? r.max_tokens : s->max_model_len - expanded;
    if (max_tokens < 1 || expanded + max_tokens > s->max_model_len) {
        /* The message is built before r is freed: freeing zeroes it (max_tokens too). */
        if (r.max_tokens)
            ms_api_fail(&e, 400, "max_tokens", "context_length_exceeded",
                        "this model's maximum context length is %d tokens; the request has %lld prompt tokens and "
                        "asks for %d more (max_tokens)",
                        s->max_model_len, (long long)expanded, r.max_tokens);
        else
            ms_api_fail(&e, 400, chat ? "messages" : "prompt", "context_length_exceeded",
                        "this model's maximum context length is %d tokens; the prompt alone has %lld tokens (images "
                        "expanded), leaving no room for output",
                        s->max_model_len, (long long)expanded);
        free(ids);
        ms_api_request_free(&r);
        return ms_http_reply_error(c, &e);
    }
    ms_gen *g = ms_xcalloc(1, sizeof *g);
    pthread_mutex_init(&g->mu, NULL);
    g->refs = 2; /* connection + engine (dropped below if submit fails) */
    g->srv = s;
    g->conn = c->conn;
    g->conn_alive = true;
    g->chat = chat;
    g->stream = r.stream;
    g->include_usage = r.stream && r.include_usage;
    const char *th = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "X-Modserve-Timings");
    g->timings = r.return_timings || (th && (!strcmp(th, "1") || !strcasecmp(th, "true")));
    g->want_ids = r.return_token_ids;
    g->min_tokens = r.min_tokens;
    snprintf(g->rid, sizeof g->rid, "%s%016llx%08x", chat ? "chatcmpl-" : "cmpl-", (unsigned long long)next_id(),
             (unsigned)(ms_time_now() * 1e6));
    g->created = (long long)time(NULL);
    g->ts = ms_tokenizer_stream_new(s->tok, true);
    g->stop = r.stop;
    g->n_stop = r.n_stop;
    r.stop = NULL;
    r.n_stop = 0;
    for (int32_t i = 0; i < g->n_stop; i++)
        if (strlen(g->stop[i]) > g->max_stop) g->max_stop = strlen(g->stop[i]);
    if (g->stream && chat) sse_chunk(g, NULL, 0, true, NULL, false);

    ms_image_input *imgs = ms_xcalloc((size_t)r.n_images + 1, sizeof *imgs);
    for (int32_t i = 0; i < r.n_images; i++) imgs[i] = (ms_image_input){r.images[i].bytes, r.images[i].n_bytes};
    ms_request_desc d = {.prompt = ids, .n_prompt = n_ids, .images = imgs, .n_images = r.n_images,
                         .on_token = on_token, .on_done = on_done, .user = g};
    ms_request_params_default(&d.params);
    d.params.max_tokens = (int32_t)max_tokens;
    d.params.min_tokens = r.min_tokens < max_tokens ? r.min_tokens : (int32_t)max_tokens;
    d.params.ignore_eos = r.ignore_eos;
    d.params.temperature = r.temperature;
    d.params.top_p = r.top_p;
    d.params.top_k = r.top_k;
    d.params.seed = r.seed;
    d.params.has_seed = r.has_seed;
    d.params.priority = r.priority;
    c->gen = g;
    uint64_t id = 0;
    ms_error err = {0};
    const ms_status st = ms_engine_submit(s->engine, &d, &id, &err); /* copies prompt and images */
    free(imgs);
    free(ids);
    ms_api_request_free(&r);
    if (st != MS_OK) {
        c->gen = NULL;
        gen_free(g);
        if (st != MS_ERR_BUSY) ms_log(MS_LOG_WARN, "server", "submit refused: %s", err.msg);
        submit_error(st, &err, &e);
        return ms_http_reply_error(c, &e);
    }
    pthread_mutex_lock(&g->mu);
    g->id = id;
    g->have_id = true;
    const bool cancel = g->cancel_wanted;
    pthread_mutex_unlock(&g->mu);
    if (cancel) ms_engine_cancel(s->engine, id);
    ms_conn_set_gen(c, g);
    return wait_or_respond(c, g);
}
