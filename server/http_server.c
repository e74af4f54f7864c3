/*
 * Daemon setup and routing. MHD runs an internal epoll thread pool
 * (MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL) with suspend/resume allowed (and
 * ITC so a resume from an engine thread wakes the pool at once). The access handler
 * checks the headers (http_checks.c), collects the body (refusing it past
 * max_body_bytes), checks the API key and routes;
 * generation endpoints live in api_generate.c.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/http_server.h"

static int route(const char *method, const char *url, bool *method_ok) {
    static const struct { const char *url, *method; int ep; } k_routes[] = {
        {"/v1/chat/completions", "POST", MS_EP_CHAT}, {"/v1/completions", "POST", MS_EP_COMPLETIONS},
        {"/v1/models", "GET", MS_EP_MODELS},          {"/health", "GET", MS_EP_HEALTH},
        {"/metrics", "GET", MS_EP_METRICS},           {"/admin/workers", "POST", MS_EP_ADMIN},
    };
    for (size_t i = 0; i < sizeof k_routes / sizeof k_routes[0]; i++)
        if (!strcmp(url, k_routes[i].url)) {
            *method_ok = !strcmp(method, k_routes[i].method) ||
                         (!strcmp(method, "HEAD") && !strcmp(k_routes[i].method, "GET"));
            return k_routes[i].ep;
        }
    *method_ok = true;
    return MS_EP_OTHER;
}

enum MHD_Result ms_http_reply(ms_conn *c, int status, const char *content_type, char *body) {
    ms_conn_request_read(c); /* answered: no read deadline while the response goes out */
    const size_t n = body ? strlen(body) : 0;
    struct MHD_Response *r = MHD_create_response_from_buffer(n, body ? body : (char *)"", body ? MHD_RESPMEM_MUST_FREE
                                                                                              : MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    ms_http_add_cors_headers(c, r);
    if (status == 503) MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (status == 401) MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (atomic_load(&c->srv->draining)) MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    c->status = status;
    const enum MHD_Result ret = MHD_queue_response(c->conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result ms_http_reply_error(ms_conn *c, const ms_api_error *e) {
    return ms_http_reply(c, e->http, "application/json", ms_api_error_json(e));
}

static bool api_key_ok(ms_conn *c) {
    const char *key = c->srv->cfg.api_key;
    if (!key) return true;
    const char *h = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7)) return false;
    h += 7;
    /* Compare in time independent of where they differ. */
    const size_t n = strlen(key), m = strlen(h);
    unsigned diff = (unsigned)(n != m);
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)key[i] ^ (unsigned char)(i < m ? h[i] : 0);
    return diff == 0;
}

/* Message framing headers, counted: two Content-Length headers (even equal ones), or
 * Content-Length beside Transfer-Encoding, let a proxy in front and this server split
 * the byte stream differently (request smuggling), so both are refused. */
typedef struct framing {
    int n_content_length, n_transfer_encoding;
} framing;

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    (void)kind;
    (void)value;
    framing *f = cls;
    if (!strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH)) f->n_content_length++;
    if (!strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING)) f->n_transfer_encoding++;
    return MHD_YES;
}

static bool framing_ok(struct MHD_Connection *conn, ms_api_error *e) {
    framing f = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, count_framing, &f);
    if (f.n_content_length > 1)
        return ms_api_fail(e, 400, "Content-Length", "invalid_content_length",
                           "the request has %d Content-Length headers; send exactly one", f.n_content_length);
    if (f.n_content_length && f.n_transfer_encoding)
        return ms_api_fail(e, 400, "Content-Length", "invalid_content_length",
                           "the request has both Content-Length and Transfer-Encoding headers; send one");
    return true;
}

static enum MHD_Result dispatch(ms_conn *c) {
    ms_http_server *s = c->srv;
    ms_api_error e;
    switch (c->endpoint) {
    case MS_EP_HEALTH:
        if (!atomic_load(&s->ready) || atomic_load(&s->draining)) {
            ms_api_fail(&e, 503, NULL, atomic_load(&s->ready) ? "draining" : "loading",
                        atomic_load(&s->ready) ? "the server is shutting down" : "the model is loading");
            return ms_http_reply_error(c, &e);
        }
        return ms_http_reply(c, 200, "application/json", ms_xstrdup("{\"status\":\"ok\"}"));
    case MS_EP_METRICS: return ms_api_metrics(c);
    default: break;
    }
    if (!atomic_load(&s->ready)) {
        ms_api_fail(&e, 503, NULL, "loading", "the model is loading; retry shortly");
        return ms_http_reply_error(c, &e);
    }
    switch (c->endpoint) {
    case MS_EP_MODELS: return ms_api_models(c);
    case MS_EP_ADMIN: return ms_api_admin_workers(c);
    case MS_EP_CHAT:
    case MS_EP_COMPLETIONS: return ms_api_generate(c);
    default: break;
    }
    ms_api_fail(&e, 404, NULL, "not_found", "no such endpoint");
    return ms_http_reply_error(c, &e);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_size, void **req_cls) {
    (void)version;
    ms_http_server *s = cls;
    ms_conn *c = *req_cls;
    if (!c) {
        c = ms_xcalloc(1, sizeof *c);
        c->srv = s;
        c->conn = conn;
        bool method_ok;
        c->endpoint = route(method, url, &method_ok);
        const union MHD_ConnectionInfo *sc = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        c->rec = sc ? sc->socket_context : NULL;
        *req_cls = c;
        atomic_fetch_add(&s->open_requests, 1);
        ms_api_error e;
        if (!framing_ok(conn, &e)) return ms_http_reply_error(c, &e);
        /* Host, Origin and Content-Type (http_checks.c), before anything else. */
        if (!ms_http_check_headers(c, method, &e)) return ms_http_reply_error(c, &e);
        if (!strcmp(method, "OPTIONS") && c->endpoint != MS_EP_OTHER) return ms_http_preflight(c);
        if (!method_ok) {
            ms_api_fail(&e, 405, NULL, "method_not_allowed", "method not allowed for this endpoint");
            return ms_http_reply_error(c, &e);
        }
        /* Refuse an announced oversize body before reading it. */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->cfg.limits.max_body_bytes) {
            ms_api_fail(&e, 413, NULL, "max_body_bytes", "request body is over the max_body_bytes limit of %zu bytes",
                        s->cfg.limits.max_body_bytes);
            return ms_http_reply_error(c, &e);
        }
        return MHD_YES;
    }
    if (c->gen) return ms_api_generation_resume(c);
    if (*upload_size) {
        if (!c->body_too_big && c->body.n + *upload_size <= s->cfg.limits.max_body_bytes)
            ms_sbuf_add(&c->body, upload_data, *upload_size);
        else {
            c->body_too_big = true; /* keep reading (discarding) so the 413 can be sent */
            ms_sbuf_free(&c->body);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    /* The whole request is in. */
    if (!ms_conn_request_read(c)) return MHD_NO; /* too late: the watcher closed it */
    ms_api_error e;
    if (c->body_too_big) {
        ms_api_fail(&e, 413, NULL, "max_body_bytes", "request body is over the max_body_bytes limit of %zu bytes",
                    s->cfg.limits.max_body_bytes);
        return ms_http_reply_error(c, &e);
    }
    if (c->endpoint != MS_EP_HEALTH && c->endpoint != MS_EP_METRICS && !api_key_ok(c)) {
        ms_api_fail(&e, 401, NULL, "invalid_api_key", "missing or wrong API key (Authorization: Bearer ...)");
        return ms_http_reply_error(c, &e);
    }
    if (atomic_load(&s->draining) && c->endpoint != MS_EP_HEALTH && c->endpoint != MS_EP_METRICS) {
        ms_api_fail(&e, 503, NULL, "draining", "the server is shutting down");
        return ms_http_reply_error(c, &e);
    }
    return dispatch(c);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)conn;
    ms_http_server *s = cls;
    ms_conn *c = *req_cls;
    if (!c) return;
    *req_cls = NULL;
    if (c->gen) ms_api_generation_closed(c, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);
    if (c->status) ms_metrics_count_request(&s->metrics, c->endpoint, c->status);
    ms_conn_request_done(s, c->rec);
    ms_sbuf_free(&c->body);
    free(c);
    atomic_fetch_sub(&s->open_requests, 1);
}

static void on_mhd_panic(void *cls, const char *file, unsigned line, const char *reason) {
    (void)cls;
    ms_panic(file ? file : "microhttpd", (int)line, "microhttpd: %s", reason ? reason : "panic");
}

ms_status ms_http_server_start(ms_http_server *s, ms_error *err) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->cfg.port)};
    if (inet_pton(AF_INET, s->cfg.host, &addr.sin_addr) != 1)
        return ms_errorf(err, MS_ERR_INVALID, "--host '%s' is not an IPv4 address", s->cfg.host);
    MHD_set_panic_func(on_mhd_panic, NULL);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC;
    if (getenv("MODSERVE_HTTP_DEBUG")) flags |= MHD_USE_ERROR_LOG; /* libmicrohttpd's own messages on stderr */
    const int threads = s->cfg.http_threads > 0 ? s->cfg.http_threads : 4;
    /* max_connections is enforced by ms_conn_accept_policy, which refuses at once. MHD's
     * own limit (split evenly over its threads) stays above it: at that limit MHD stops
     * accepting and clients would wait in the listen backlog instead. */
    const unsigned mhd_limit = 2 * s->cfg.limits.max_connections + 2 * (unsigned)threads;
    ms_conn_registry_init(s);
    s->daemon = MHD_start_daemon(
        flags, 0, ms_conn_accept_policy, s, on_access, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads, MHD_OPTION_CONNECTION_LIMIT, mhd_limit,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, s->cfg.limits.max_connections_per_ip,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, s->cfg.limits.connection_memory, MHD_OPTION_CONNECTION_TIMEOUT,
        s->cfg.limits.idle_timeout_s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION,
        ms_conn_notify, s, MHD_OPTION_END);
    if (!s->daemon) {
        ms_conn_registry_destroy(s);
        return ms_errorf(err, MS_ERR_IO, "cannot listen on %s:%d (address in use or not available)", s->cfg.host,
                         s->cfg.port);
    }
    ms_http_defer_accept(s);
    if (!ms_conn_watcher_start(s)) {
        ms_http_server_stop(s);
        return ms_errorf(err, MS_ERR_IO, "cannot start the connection watcher thread");
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : (uint16_t)s->cfg.port;
    return MS_OK;
}

void ms_http_server_quiesce(ms_http_server *s) {
    const MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

void ms_http_server_stop(ms_http_server *s) {
    if (!s->daemon) return;
    ms_conn_watcher_stop(s); /* first: it resumes connections of the daemon */
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
    ms_conn_registry_destroy(s);
}
