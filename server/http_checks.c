/*
 * What a web page must not make the server do. Without --api-key any page a local user
 * opens can send requests to 127.0.0.1: a text/plain "simple" POST needs no CORS
 * preflight, and a DNS-rebound name reaches the loopback port as if same-origin. So,
 * from a request's headers, before its body is read:
 *
 *   Host     when bound to loopback (or when --allowed-hosts is given): an IP literal
 *            (127.0.0.1, [::1], ...) or "localhost" (loopback only), with the bound
 *            port or none, or a name listed in --allowed-hosts (any port); else 421.
 *   Origin   absent (curl, SDKs) or the server's own ("http://" + Host): fine. Another
 *            origin: 403, unless --allowed-origins lists it (then CORS headers on the
 *            answer, and OPTIONS preflights answered); /admin/workers: always 403.
 *   Content-Type  a POST with a JSON body (chat, completions, admin) must say
 *            application/json (parameters such as charset allowed); else 415.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "server/http_server.h"

static bool is_json_body_endpoint(int ep) { return ep == MS_EP_CHAT || ep == MS_EP_COMPLETIONS || ep == MS_EP_ADMIN; }

/* Does the comma-separated list name s (the first n bytes, case-insensitive; "*": all)? */
static bool list_has(const char *list, const char *s, size_t n) {
    for (const char *p = list ? list : ""; *p;) {
        while (*p == ' ' || *p == ',') p++;
        const char *end = p;
        while (*end && *end != ',') end++;
        size_t len = (size_t)(end - p);
        while (len && p[len - 1] == ' ') len--;
        if (len && ((len == 1 && *p == '*') || (len == n && !strncasecmp(p, s, n)))) return true;
        p = end;
    }
    return false;
}

bool ms_http_origin_list_ok(const char *list, char *bad, size_t bad_cap) {
    for (const char *p = list ? list : ""; *p;) {
        while (*p == ' ' || *p == ',') p++;
        const char *end = p;
        while (*end && *end != ',') end++;
        size_t len = (size_t)(end - p);
        while (len && p[len - 1] == ' ') len--;
        if (len && !(len == 1 && *p == '*')) {
            const size_t scheme = !strncasecmp(p, "http://", 7) ? 7 : !strncasecmp(p, "https://", 8) ? 8 : 0;
            const char *slash = scheme ? memchr(p + scheme, '/', len - scheme) : NULL;
            if (!scheme || len == scheme || slash) {
                snprintf(bad, bad_cap, "%.*s", (int)len, p);
                return false;
            }
        }
        p = end;
    }
    return true;
}

static bool bound_to_loopback(const ms_http_server *s) { return !strncmp(s->cfg.host, "127.", 4); }

/* Host: name[:port] or [v6][:port]. */
static bool host_ok(const ms_http_server *s, const char *host) {
    const bool loopback = bound_to_loopback(s);
    if (!loopback && !s->cfg.allowed_hosts) return true; /* reachable from the network anyway */
    const char *name = host, *port = NULL;
    size_t n;
    if (host[0] == '[') {
        const char *close = strchr(host, ']');
        if (!close) return false;
        n = (size_t)(close - host) + 1;
        if (close[1] == ':') port = close + 2;
        else if (close[1]) return false;
    } else {
        const char *colon = strchr(host, ':');
        n = colon ? (size_t)(colon - host) : strlen(host);
        if (colon) port = colon + 1;
    }
    if (list_has(s->cfg.allowed_hosts, name, n)) return true; /* listed names: any port */
    if (port) {
        char want[8];
        snprintf(want, sizeof want, "%u", (unsigned)s->port);
        if (strcmp(port, want)) return false;
    }
    char lit[64];
    if (n >= sizeof lit) return false;
    memcpy(lit, name, n);
    lit[n] = 0;
    unsigned char addr[16];
    /* An IP literal cannot be a rebound name: the page's own origin would be that address. */
    if (inet_pton(AF_INET, lit, addr) == 1) return true;
    if (lit[0] == '[' && n > 2) {
        lit[n - 1] = 0;
        if (inet_pton(AF_INET6, lit + 1, addr) == 1) return true;
    }
    return loopback && !strcasecmp(lit, "localhost");
}

bool ms_http_check_headers(ms_conn *c, const char *method, ms_api_error *e) {
    ms_http_server *s = c->srv;
    struct MHD_Connection *conn = c->conn;
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
    if (host && !host_ok(s, host))
        return ms_api_fail(e, 421, NULL, "host_not_allowed",
                           "Host '%.100s' is not this server's address (start the server with --allowed-hosts NAME "
                           "to accept a name)",
                           host);
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ORIGIN);
    if (origin) {
        char own[320];
        if (host) snprintf(own, sizeof own, "http://%s", host);
        else snprintf(own, sizeof own, "http://%s:%u", s->cfg.host, (unsigned)s->port);
        if (strcasecmp(origin, own)) {
            if (c->endpoint == MS_EP_ADMIN)
                return ms_api_fail(e, 403, NULL, "origin_not_allowed",
                                   "cross-origin requests to /admin/workers are refused (Origin '%.100s')", origin);
            if (!list_has(s->cfg.allowed_origins, origin, strlen(origin)))
                return ms_api_fail(e, 403, NULL, "origin_not_allowed",
                                   "Origin '%.100s' is not allowed (start the server with --allowed-origins ORIGIN "
                                   "to allow a web page there)",
                                   origin);
            c->cors_origin = origin; /* MHD keeps header values until the request completes */
        }
    }
    if (!strcmp(method, "POST") && is_json_body_endpoint(c->endpoint)) {
        const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (!ct)
            return ms_api_fail(e, 415, NULL, "unsupported_media_type",
                               "the request has no Content-Type; send the JSON body as application/json");
        const char *p = ct + strspn(ct, " \t");
        bool json = !strncasecmp(p, "application/json", 16); /* then only parameters may follow */
        if (json) {
            const char next = p[16 + strspn(p + 16, " \t")];
            json = next == 0 || next == ';';
        }
        if (!json)
            return ms_api_fail(e, 415, NULL, "unsupported_media_type",
                               "Content-Type '%.100s' is not supported; send the JSON body as application/json", ct);
    }
    return true;
}

void ms_http_add_cors_headers(const ms_conn *c, struct MHD_Response *r) {
    if (!c->cors_origin) return;
    MHD_add_response_header(r, MHD_HTTP_HEADER_ACCESS_CONTROL_ALLOW_ORIGIN, c->cors_origin);
    MHD_add_response_header(r, MHD_HTTP_HEADER_VARY, "Origin");
    MHD_add_response_header(r, "Access-Control-Expose-Headers", "Retry-After");
}

enum MHD_Result ms_http_preflight(ms_conn *c) {
    struct MHD_Response *r = MHD_create_response_from_buffer(0, (char *)"", MHD_RESPMEM_PERSISTENT);
    ms_http_add_cors_headers(c, r);
    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, POST, OPTIONS");
    if (c->cors_origin) {
        MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        MHD_add_response_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type, X-Modserve-Timings");
        MHD_add_response_header(r, "Access-Control-Max-Age", "600");
    }
    c->status = 204;
    const enum MHD_Result ret = MHD_queue_response(c->conn, 204, r);
    MHD_destroy_response(r);
    return ret;
}
