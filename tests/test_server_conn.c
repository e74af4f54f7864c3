/*
 * Connection handling end to end, over raw sockets against `modserve serve` on the tiny
 * model (a 4,000-token request takes about a minute there, so a cancelled one shows):
 * - a client that closes its socket while its generation waits (a non-streaming request,
 *   a stream still queued for its first token, a stream mid-way) gets the request
 *   cancelled: /metrics shows it gone, KV blocks back to idle and the disconnect counted,
 *   long before max_tokens could have been generated;
 * - with --max-connections 4 --request-read-timeout 2, four clients that trickle header
 *   bytes neither hold the server: a fifth connection is refused at once (not left in the
 *   listen backlog), and once the deadline drops the tricklers /health is answered;
 * - HTTP framing: duplicate Content-Length, Content-Length with Transfer-Encoding and an
 *   invalid Content-Length each get exactly one 400 response with a JSON error naming
 *   the header.
 * Waits are bounded polls (generous bounds; nothing asserts a duration).
 */
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "tests/test_server_util.h"
#include "tests/test_util.h"

enum { LONG_TOKENS = 4000 }; /* the tiny model's context is 4096 */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms) { usleep((useconds_t)ms * 1000); }

static double metric(const srv_proc *p, const char *name) {
    http_resp r;
    double v = -1;
    const bool ok = http_call(p, "GET", "/metrics", NULL, 0, NULL, &r);
    for (char *l = ok ? r.body : NULL; l && *l;) {
        char *nl = strchr(l, '\n');
        if (!strncmp(l, name, strlen(name)) && l[strlen(name)] == ' ') v = atof(l + strlen(name) + 1);
        l = nl ? nl + 1 : NULL;
    }
    http_resp_free(&r);
    return v;
}

typedef struct engine_state {
    double active, kv_used, disconnects;
} engine_state;

static engine_state state(const srv_proc *p) {
    return (engine_state){metric(p, "modserve_requests_active"), metric(p, "modserve_kv_blocks_used"),
                          metric(p, "modserve_client_disconnects_total")};
}

/* Polls /metrics until it shows want (a field < 0: any), up to timeout_s. */
static bool wait_state(const srv_proc *p, engine_state want, double timeout_s, engine_state *got) {
    const double until = now_s() + timeout_s;
    do {
        *got = state(p);
        if ((want.active < 0 || got->active == want.active) && (want.kv_used < 0 || got->kv_used == want.kv_used) &&
            (want.disconnects < 0 || got->disconnects == want.disconnects))
            return true;
        sleep_ms(50);
    } while (now_s() < until);
    return false;
}

static int tcp_connect(int port) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static bool send_all(int fd, const char *s, size_t n) {
    while (n) {
        const ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
        if (k <= 0) return false;
        s += k;
        n -= (size_t)k;
    }
    return true;
}

/* Reads until the peer closes, an error, or timeout_s; *closed tells which. */
static char *read_all(int fd, double timeout_s, size_t *n, bool *closed) {
    char *buf = malloc(1);
    size_t len = 0;
    *closed = false;
    const double until = now_s() + timeout_s;
    while (now_s() < until) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 50) <= 0) continue;
        char tmp[4096];
        const ssize_t k = recv(fd, tmp, sizeof tmp, 0);
        if (k <= 0) {
            *closed = true; /* end of stream or reset: either way the server let go */
            break;
        }
        buf = realloc(buf, len + (size_t)k + 1);
        memcpy(buf + len, tmp, (size_t)k);
        len += (size_t)k;
    }
    buf[len] = 0;
    if (n) *n = len;
    return buf;
}

/* Opens a connection and sends a POST /v1/completions with body. */
static int post_completion(int port, const char *body) {
    const int fd = tcp_connect(port);
    char head[256];
    snprintf(head, sizeof head,
             "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n",
             strlen(body));
    if (fd < 0 || !send_all(fd, head, strlen(head)) || !send_all(fd, body, strlen(body))) {
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static char g_long_plain[256], g_long_stream[256];

/* --- client hangups while the generation waits (server: --kv-blocks 256) --- */

static void test_disconnect_non_stream(const srv_proc *p) {
    engine_state s0 = state(p), got;
    EXPECTF(s0.active == 0 && s0.kv_used >= 0 && s0.disconnects >= 0, "idle state: active %g kv %g", s0.active,
            s0.kv_used);
    const int fd = post_completion(p->port, g_long_plain);
    EXPECT(fd >= 0);
    EXPECTF(wait_state(p, (engine_state){1, -1, -1}, 60, &got), "the request never became active (%g)", got.active);
    close(fd);
    EXPECTF(wait_state(p, (engine_state){0, s0.kv_used, s0.disconnects + 1}, 5, &got),
            "non-streaming request after its client left: active %g, KV blocks %g (idle %g), disconnects %g (was %g)",
            got.active, got.kv_used, s0.kv_used, got.disconnects, s0.disconnects);
}

/* A stream that cannot get its first token: its prompt needs 255 of the 256 KV blocks
 * while an older request holds at least 2 (a younger request may not preempt an older
 * one). Its prompt shares no block with the older one's (a prefix cache cannot help it),
 * and prefill runs in chunks of 64 tokens (a chunk in flight finishes before a cancel
 * lands; a 2,048-token chunk takes seconds on a sanitizer build). */
static void test_disconnect_before_first_token(const srv_proc *p) {
    engine_state s0 = state(p), got;
    char older[256];
    snprintf(older, sizeof older,
             "{\"prompt\":[1,5,5,5,5,5,5,5,5,5,5,5,5,5,5,5,6],\"max_tokens\":%d,\"ignore_eos\":true,"
             "\"temperature\":0}",
             LONG_TOKENS);
    const int a = post_completion(p->port, older);
    EXPECTF(wait_state(p, (engine_state){1, -1, -1}, 60, &got), "first request never active (%g)", got.active);
    enum { BIG_PROMPT = 255 * 16 - 10 };
    char *big = malloc(BIG_PROMPT * 2 + 128);
    size_t n = (size_t)sprintf(big, "{\"prompt\":[1");
    for (int i = 1; i < BIG_PROMPT; i++) n += (size_t)sprintf(big + n, ",7");
    sprintf(big + n, "],\"max_tokens\":4,\"stream\":true}");
    const int b = post_completion(p->port, big);
    free(big);
    EXPECTF(wait_state(p, (engine_state){2, -1, -1}, 60, &got), "queued stream never active (%g)", got.active);
    /* nothing sent on the stream yet: it has no first token */
    struct pollfd pf = {.fd = b, .events = POLLIN};
    EXPECTF(poll(&pf, 1, 200) == 0, "the queued stream already has output (revents %d)", pf.revents);
    close(b);
    EXPECTF(wait_state(p, (engine_state){1, -1, s0.disconnects + 1}, 5, &got),
            "stream closed before its first token: active %g (want 1), disconnects %g (was %g)", got.active,
            got.disconnects, s0.disconnects);
    close(a);
    EXPECTF(wait_state(p, (engine_state){0, s0.kv_used, s0.disconnects + 2}, 5, &got),
            "after both clients left: active %g, KV blocks %g (idle %g), disconnects %g (was %g)", got.active,
            got.kv_used, s0.kv_used, got.disconnects, s0.disconnects);
}

static void test_disconnect_mid_stream(const srv_proc *p) {
    engine_state s0 = state(p), got;
    const int fd = post_completion(p->port, g_long_stream);
    /* read until two SSE events have arrived */
    char buf[8192];
    size_t len = 0;
    int events = 0;
    const double until = now_s() + 60;
    while (events < 2 && len + 1 < sizeof buf && now_s() < until) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 50) <= 0) continue;
        const ssize_t k = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (k <= 0) break;
        len += (size_t)k;
        buf[len] = 0;
        events = 0;
        for (const char *q = buf; (q = strstr(q, "data: ")); q += 6) events++;
    }
    EXPECTF(events >= 2, "the stream sent %d events", events);
    close(fd);
    EXPECTF(wait_state(p, (engine_state){0, s0.kv_used, s0.disconnects + 1}, 5, &got),
            "stream closed mid-way: active %g, KV blocks %g (idle %g), disconnects %g (was %g)", got.active,
            got.kv_used, s0.kv_used, got.disconnects, s0.disconnects);
}

/* --- HTTP framing: one clean 400 --- */

static int count_status_lines(const char *s) {
    int n = 0;
    for (const char *q = s; (q = strstr(q, "HTTP/1.")); q += 7) n++;
    return n;
}

static void expect_framing_400(const srv_proc *p, const char *what, const char *request) {
    const int fd = tcp_connect(p->port);
    EXPECT(fd >= 0 && send_all(fd, request, strlen(request)));
    bool closed;
    char *resp = read_all(fd, 10, NULL, &closed);
    close(fd);
    const char *body = strstr(resp, "\r\n\r\n");
    cJSON *j = body ? cJSON_Parse(body + 4) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
    const cJSON *param = cJSON_GetObjectItemCaseSensitive(e, "param");
    EXPECTF(!strncmp(resp, "HTTP/1.1 400 ", 13) && count_status_lines(resp) == 1, "%s: %d status lines: %.600s",
            what, count_status_lines(resp), resp);
    EXPECTF(cJSON_IsString(msg) && strstr(msg->valuestring, "Content-Length") && cJSON_IsString(param) &&
                !strcmp(param->valuestring, "Content-Length"),
            "%s: error body %.400s", what, body ? body + 4 : "(none)");
    cJSON_Delete(j);
    free(resp);
}

static void test_framing(const srv_proc *p) {
    const char *body = "{\"prompt\":[1,5,6],\"max_tokens\":2}";
    char req[512];
    snprintf(req, sizeof req,
             "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             "Content-Length: %zu\r\nContent-Length: 5\r\n\r\n%s",
             strlen(body), body);
    expect_framing_400(p, "conflicting Content-Length headers", req);
    snprintf(req, sizeof req,
             "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n%zx\r\n%s\r\n0\r\n\r\n",
             strlen(body), body);
    expect_framing_400(p, "Content-Length with Transfer-Encoding", req);
    snprintf(req, sizeof req,
             "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             "Content-Length: 12abc\r\n\r\n%s",
             body);
    expect_framing_400(p, "invalid Content-Length", req);
    /* a well-formed request on the same server still works */
    http_resp r;
    EXPECT(http_call(p, "POST", "/v1/completions", body, strlen(body), NULL, &r) && r.status == 200);
    http_resp_free(&r);
}

/* --- slow clients (server: --max-connections 4 --request-read-timeout 2) --- */

enum { N_TRICKLERS = 4 };

static void trickle(const int *fds) {
    for (int i = 0; i < N_TRICKLERS; i++)
        if (fds[i] >= 0) send(fds[i], "X", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void test_slow_clients(const srv_proc *p) {
    int fds[N_TRICKLERS];
    const char *start = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    for (int i = 0; i < N_TRICKLERS; i++) {
        fds[i] = tcp_connect(p->port);
        EXPECT(fds[i] >= 0 && send_all(fds[i], start, strlen(start)));
    }
    for (int i = 0; i < 5; i++) { /* the server accepts them */
        trickle(fds);
        sleep_ms(100);
    }
    /* Over the limit: refused at once (closed, or an error status), not left waiting. */
    const char *health = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    int fd = tcp_connect(p->port);
    bool closed = false;
    char *resp = NULL;
    if (fd >= 0) {
        send_all(fd, health, strlen(health));
        resp = read_all(fd, 1.5, NULL, &closed);
        close(fd);
    }
    EXPECTF(fd < 0 || (closed && strncmp(resp, "HTTP/1.1 200", 12)),
            "a connection over --max-connections was %s: %.200s", closed ? "answered" : "left waiting",
            resp ? resp : "");
    free(resp);
    /* The deadline drops the tricklers (still trickling); then /health is answered. */
    bool healthy = false;
    const double until = now_s() + 20;
    while (!healthy && now_s() < until) {
        trickle(fds);
        fd = tcp_connect(p->port);
        if (fd >= 0 && send_all(fd, health, strlen(health))) {
            resp = read_all(fd, 0.3, NULL, &closed);
            healthy = !strncmp(resp, "HTTP/1.1 200", 12);
            free(resp);
        }
        if (fd >= 0) close(fd);
        if (!healthy) sleep_ms(200);
    }
    EXPECTF(healthy, "/health was not answered while %d clients trickled headers", N_TRICKLERS);
    for (int i = 0; i < N_TRICKLERS; i++) {
        trickle(fds);
        resp = read_all(fds[i], 2, NULL, &closed);
        EXPECTF(closed && !resp[0], "trickling client %d: %s, got %.200s", i, closed ? "closed" : "still open", resp);
        free(resp);
        close(fds[i]);
    }
}

int main(void) {
    curl_global_init(CURL_GLOBAL_ALL);
    snprintf(g_long_plain, sizeof g_long_plain,
             "{\"prompt\":[1,5,6],\"max_tokens\":%d,\"ignore_eos\":true,\"temperature\":0}", LONG_TOKENS);
    snprintf(g_long_stream, sizeof g_long_stream,
             "{\"prompt\":[1,5,7],\"max_tokens\":%d,\"ignore_eos\":true,\"temperature\":0,\"stream\":true}",
             LONG_TOKENS);
    const char *model = ms_test_tiny_model(1, "f32");
    srv_proc srv;
    if (!srv_start(&srv, model, "--kv-blocks 256 --max-model-len 4096 --max-num-batched-tokens 64")) {
        fprintf(stderr, "server did not start\n");
        return 1;
    }
    test_disconnect_non_stream(&srv);
    test_disconnect_before_first_token(&srv);
    test_disconnect_mid_stream(&srv);
    test_framing(&srv);
    EXPECT(srv_stop(&srv, SIGTERM, 60) == 0);

    if (!srv_start(&srv, model, "--max-connections 4 --request-read-timeout 2 --http-threads 2")) {
        fprintf(stderr, "server (small limits) did not start\n");
        return 1;
    }
    test_slow_clients(&srv);
    EXPECT(srv_stop(&srv, SIGTERM, 60) == 0);
    curl_global_cleanup();
    return ms_test_finish("test_server_conn");
}
