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

/* One accepted socket (MHD's socket context), from accept to close: when the request
 * read deadline runs out, and which generation (if any) waits on it. */
typedef struct ms_gen ms_gen;
typedef struct ms_conn_rec {
    struct ms_conn_rec *prev, *next;
    int fd;
    bool reading;                   /* waiting for or reading a request's headers and body */
    bool timed_out;                 /* the watcher closed it: the read deadline passed */
    double deadline;                /* ms_time_now() seconds */
    ms_gen *gen;                    /* a generation suspended on this socket, or NULL */
} ms_conn_rec;

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
    /* Open sockets (http_conn.c) and the watcher thread that enforces the request read
     * deadline and notices clients that leave while their generation is suspended. */
    pthread_mutex_t conn_mu;
    pthread_cond_t conn_cv;         /* wakes the watcher to stop */
    ms_conn_rec *conns;
    atomic_int n_conns;
    bool watcher_running, watcher_stop;
    pthread_t watcher;
} ms_http_server;

/* Per-request connection state (MHD's req_cls). */
typedef struct ms_conn {
    ms_http_server *srv;
    struct MHD_Connection *conn;
    ms_conn_rec *rec;               /* its socket's record (NULL only if MHD gave none) */
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

/* Socket registry and watcher (http_conn.c). The MHD options that feed it are added by
 * ms_http_server_start: */
void ms_conn_registry_init(ms_http_server *s);
void ms_conn_registry_destroy(ms_http_server *s);
bool ms_conn_watcher_start(ms_http_server *s);
void ms_conn_watcher_stop(ms_http_server *s);
void ms_conn_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                    enum MHD_ConnectionNotificationCode code);
enum MHD_Result ms_conn_accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen);
/* The whole request has arrived: stops its read deadline. False when the watcher already
 * timed the socket out (the caller then drops the connection). */
bool ms_conn_request_read(ms_conn *c);
/* A response is done: the next request on this socket gets a fresh read deadline. */
void ms_conn_request_done(ms_http_server *s, ms_conn_rec *rec);
/* http_early.c: TCP_DEFER_ACCEPT on the listen socket, and the answer to an invalid
 * Content-Length in a new connection's first bytes (libmicrohttpd 0.9.x would send its
 * own response header block twice). */
void ms_http_defer_accept(ms_http_server *s);
void ms_http_early_check(ms_http_server *s, int fd);
/* Attach (g) or detach (NULL) the generation the watcher checks for a client hangup. */
void ms_conn_set_gen(ms_conn *c, ms_gen *g);
/* The watcher saw the client's socket hang up (http_gen.c): end the generation. Called
 * with conn_mu held. */
void ms_gen_client_gone(ms_gen *g);

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
/* Resizes the pools with want[stage] >= 0 (-1: leave it), all or none (admin.c); false
 * with e filled when the engine refused one (the others are put back). */
bool ms_admin_apply_workers(ms_engine *engine, const int32_t want[MS_STAGE_COUNT], ms_api_error *e);

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
