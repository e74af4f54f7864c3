/*
 * The HTTP server: a libmicrohttpd daemon (internal epoll thread pool) over the engine.
 * HTTP threads parse, validate and tokenize, then hand a plain ms_request_desc to
 * ms_engine_submit; the connection is suspended while the engine works and resumed from
 * the engine's token/done callbacks (no thread waits per stream). Internal to server/.
 */
#ifndef MS_SERVER_HTTP_SERVER_H
#define MS_SERVER_HTTP_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <microhttpd.h>

#include "llm/chat_template.h"
#include "llm/tokenizer.h"
#include "scheduler/engine.h"
#include "server/http_util.h"
#include "server/limits.h"
#include "server/metrics.h"
#include "server/request_parse.h"

typedef struct ms_server_config {
    const char *host;               /* default "127.0.0.1" */
    int port;                       /* 0: any free port */
    int http_threads;               /* MHD thread pool size (default 4) */
    const char *api_key;            /* NULL: no key */
    const char *allowed_media_path; /* realpath'd by cmd_serve, or NULL */
    const char *model_name;         /* id in /v1/models and responses */
    ms_server_limits limits;
    /* Browser and admin hardening (http_checks.c, admin.c; docs/server.md). */
    const char *allowed_origins;    /* comma-separated origins given CORS, "*": any; NULL: none */
    const char *allowed_hosts;      /* comma-separated Host names accepted besides IP literals */
    int32_t admin_max_workers;      /* /admin/workers cap per pool; 0: from the machine */
    const char *pool_devices[MS_STAGE_COUNT]; /* --*-devices lists, for the GPU cap */
} ms_server_config;

typedef struct ms_http_server {
    ms_server_config cfg;
    struct MHD_Daemon *daemon;
    uint16_t port;                  /* the bound port */
    /* Set once the model is loaded (before that: 503 loading). */
    ms_engine *engine;
    ms_tokenizer *tok;
    bool has_chat_format;
    ms_chat_format chat_format;
    const ms_llava_config *mcfg;
    int32_t max_model_len;
    atomic_bool ready;
    atomic_bool draining;
    atomic_int open_requests;       /* connection contexts alive */
    ms_server_metrics metrics;
} ms_http_server;

/* Per-request connection state (MHD's req_cls). */
typedef struct ms_gen ms_gen;
typedef struct ms_conn {
    ms_http_server *srv;
    struct MHD_Connection *conn;
    int endpoint;                   /* MS_EP_* */
    ms_sbuf body;
    bool body_too_big;
    ms_gen *gen;                    /* generation in progress (chat, completions) */
    int status;                     /* HTTP status sent, for the metrics */
    const char *cors_origin;        /* a listed foreign Origin: CORS headers on the answer */
} ms_conn;

ms_status ms_http_server_start(ms_http_server *s, ms_error *err);
/* Stops accepting new connections (existing ones keep going). */
void ms_http_server_quiesce(ms_http_server *s);
void ms_http_server_stop(ms_http_server *s);

/* Queues a JSON (or other) body; takes ownership of body. Records the status. */
enum MHD_Result ms_http_reply(ms_conn *c, int status, const char *content_type, char *body);
enum MHD_Result ms_http_reply_error(ms_conn *c, const ms_api_error *e);

/* Header checks before the body is read (http_checks.c): Host (421), Origin (403) and
 * a JSON body's Content-Type (415). False with e filled; sets c->cors_origin. */
bool ms_http_check_headers(ms_conn *c, const char *method, ms_api_error *e);
/* The answer to OPTIONS (a CORS preflight when c->cors_origin is set). */
enum MHD_Result ms_http_preflight(ms_conn *c);
void ms_http_add_cors_headers(const ms_conn *c, struct MHD_Response *r);
/* False when an --allowed-origins entry is not "*" or scheme://host[:port]; bad gets it. */
bool ms_http_origin_list_ok(const char *list, char *bad, size_t bad_cap);
/* The most workers /admin/workers gives a pool (admin.c; current: its size now). */
int32_t ms_admin_worker_cap(const ms_http_server *s, ms_stage st, int32_t current);

/* Endpoints (api_*.c, metrics.c, admin.c). */
/* Chat and completions (http_gen.c): parse, build the prompt, submit, answer. */
enum MHD_Result ms_api_generate(ms_conn *c);
enum MHD_Result ms_api_generation_resume(ms_conn *c); /* access handler called again after a resume */
void ms_api_generation_closed(ms_conn *c, bool completed_ok);
/* Prompt token ids of a parsed request (api_chat.c: template + tokenizer;
 * api_completions.c: text or ids); ids malloc'd. */
bool ms_api_chat_prompt(ms_http_server *s, const ms_api_request *r, int32_t **ids, int32_t *n, ms_api_error *e);
bool ms_api_completions_prompt(ms_http_server *s, const ms_api_request *r, int32_t **ids, int32_t *n,
                               ms_api_error *e);
enum MHD_Result ms_api_models(ms_conn *c);
enum MHD_Result ms_api_metrics(ms_conn *c);
enum MHD_Result ms_api_admin_workers(ms_conn *c);

#endif
