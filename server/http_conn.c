/*
 * Connection hygiene around libmicrohttpd: a registry of open sockets (fed by MHD's
 * connection notifications) and one watcher thread that ticks every 100 ms.
 *
 * - Request read deadline. MHD's idle timeout restarts on every byte, so a client that
 *   trickles a header byte every few seconds holds its connection for ever. Each socket
 *   gets a deadline when it is accepted and again when a response is done (for the next
 *   request on a keep-alive connection); if the whole request (headers and body) has not
 *   arrived by then, the watcher shuts the socket down and MHD closes it.
 * - Connection limit. At MHD's own limit MHD stops accepting and new clients wait in the
 *   listen backlog (a /health probe hangs). The accept policy refuses a connection over
 *   --max-connections at once instead (closed right after accept); MHD's limit is set
 *   above ours so MHD never stops accepting.
 * - Client hangup while suspended. A suspended connection is out of MHD's poll set, so a
 *   client that leaves while its generation waits (no first token yet, a non-streaming
 *   request, a stalled stream) would go unnoticed until max_tokens. The watcher polls
 *   those sockets for a hangup (POLLRDHUP/POLLHUP/POLLERR) and ends the generation, which
 *   cancels it in the engine. A client that half-closes (shutdown(SHUT_WR)) while
 *   waiting counts as gone, as in nginx.
 *
 * Lock order: conn_mu, then a generation's mutex. The registry record outlives no
 * socket: MHD reports MHD_CONNECTION_NOTIFY_CLOSED before it closes the fd, and that
 * unlinks the record under conn_mu, so under conn_mu a record's fd is its own socket.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* POLLRDHUP */
#endif
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "server/http_server.h"

enum { WATCH_TICK_MS = 100 };

void ms_conn_registry_init(ms_http_server *s) {
    pthread_mutex_init(&s->conn_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->conn_cv, &ca);
    pthread_condattr_destroy(&ca);
    s->conns = NULL;
    atomic_store(&s->n_conns, 0);
}

void ms_conn_registry_destroy(ms_http_server *s) {
    pthread_cond_destroy(&s->conn_cv);
    pthread_mutex_destroy(&s->conn_mu);
}

static double read_timeout(const ms_http_server *s) { return (double)s->cfg.limits.request_read_timeout_s; }

void ms_conn_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                    enum MHD_ConnectionNotificationCode code) {
    ms_http_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *fd = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        ms_conn_rec *r = ms_xcalloc(1, sizeof *r);
        r->fd = fd ? fd->connect_fd : -1;
        r->reading = true;
        r->deadline = ms_time_now() + read_timeout(s);
        pthread_mutex_lock(&s->conn_mu);
        r->next = s->conns;
        if (s->conns) s->conns->prev = r;
        s->conns = r;
        pthread_mutex_unlock(&s->conn_mu);
        atomic_fetch_add(&s->n_conns, 1);
        *socket_context = r;
        if (r->fd >= 0) ms_http_early_check(s, r->fd);
        return;
    }
    ms_conn_rec *r = *socket_context;
    if (!r) return;
    pthread_mutex_lock(&s->conn_mu);
    if (r->prev) r->prev->next = r->next;
    else s->conns = r->next;
    if (r->next) r->next->prev = r->prev;
    pthread_mutex_unlock(&s->conn_mu);
    *socket_context = NULL;
    free(r);
    atomic_fetch_sub(&s->n_conns, 1);
}

/* Connections are counted by the notifications (MHD can still drop a connection after
 * this policy accepts it, without notifying), so accepts racing on several MHD threads
 * may overshoot the limit by at most --http-threads - 1: never a leaked slot. */
enum MHD_Result ms_conn_accept_policy(void *cls, const struct sockaddr *addr, socklen_t addrlen) {
    (void)addr;
    (void)addrlen;
    const ms_http_server *s = cls;
    return atomic_load(&s->n_conns) < (int)s->cfg.limits.max_connections ? MHD_YES : MHD_NO;
}

bool ms_conn_request_read(ms_conn *c) {
    if (!c->rec) return true;
    pthread_mutex_lock(&c->srv->conn_mu);
    c->rec->reading = false;
    const bool ok = !c->rec->timed_out;
    pthread_mutex_unlock(&c->srv->conn_mu);
    return ok;
}

void ms_conn_request_done(ms_http_server *s, ms_conn_rec *rec) {
    if (!rec) return;
    pthread_mutex_lock(&s->conn_mu);
    rec->reading = true;
    rec->deadline = ms_time_now() + read_timeout(s);
    pthread_mutex_unlock(&s->conn_mu);
}

void ms_conn_set_gen(ms_conn *c, ms_gen *g) {
    if (!c->rec) return;
    pthread_mutex_lock(&c->srv->conn_mu);
    c->rec->gen = g;
    pthread_mutex_unlock(&c->srv->conn_mu);
}

/* One pass over the open sockets (conn_mu held). pfd/recs: scratch of *cap entries. */
static void watch_pass(ms_http_server *s, struct pollfd **pfd, ms_conn_rec ***recs, size_t *cap) {
    const double now = ms_time_now();
    size_t n = 0;
    for (ms_conn_rec *r = s->conns; r; r = r->next) {
        if (r->fd < 0) continue;
        if (r->reading && !r->timed_out && now > r->deadline) {
            /* MHD sees end of stream on its next read and closes the connection. */
            r->timed_out = true;
            shutdown(r->fd, SHUT_RDWR);
            ms_log(MS_LOG_DEBUG, "server", "closed a connection: request not read within %u s",
                   s->cfg.limits.request_read_timeout_s);
            continue;
        }
        if (!r->gen) continue;
        if (n == *cap) {
            *cap = *cap ? *cap * 2 : 64;
            *pfd = ms_xrealloc(*pfd, *cap * sizeof **pfd);
            *recs = ms_xrealloc(*recs, *cap * sizeof **recs);
        }
        (*pfd)[n] = (struct pollfd){.fd = r->fd, .events = POLLRDHUP};
        (*recs)[n++] = r;
    }
    if (!n || poll(*pfd, n, 0) <= 0) return;
    for (size_t i = 0; i < n; i++)
        if ((*pfd)[i].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) ms_gen_client_gone((*recs)[i]->gen);
}

static void *watcher_main(void *arg) {
    ms_http_server *s = arg;
    struct pollfd *pfd = NULL;
    ms_conn_rec **recs = NULL;
    size_t cap = 0;
    pthread_mutex_lock(&s->conn_mu);
    while (!s->watcher_stop) {
        watch_pass(s, &pfd, &recs, &cap);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += WATCH_TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->conn_cv, &s->conn_mu, &ts);
    }
    pthread_mutex_unlock(&s->conn_mu);
    free(pfd);
    free(recs);
    return NULL;
}

bool ms_conn_watcher_start(ms_http_server *s) {
    s->watcher_stop = false;
    s->watcher_running = pthread_create(&s->watcher, NULL, watcher_main, s) == 0;
    return s->watcher_running;
}

void ms_conn_watcher_stop(ms_http_server *s) {
    if (!s->watcher_running) return;
    pthread_mutex_lock(&s->conn_mu);
    s->watcher_stop = true;
    pthread_cond_signal(&s->conn_cv);
    pthread_mutex_unlock(&s->conn_mu);
    pthread_join(s->watcher, NULL);
    s->watcher_running = false;
}
