/*
 * An invalid Content-Length on a connection's first request, answered before MHD sees it.
 *
 * libmicrohttpd up to 0.9.77 answers an unparsable Content-Length itself, and in doing so
 * writes its response header block twice (its state machine builds the headers again
 * after its own error path; fixed in 1.0.0). The access handler is never called for such
 * a request, so it cannot answer instead. The listen socket therefore uses
 * TCP_DEFER_ACCEPT (a connection is accepted once its first bytes are in), and when MHD
 * reports a new connection we peek at those bytes: if they hold the whole header block
 * and a Content-Length is not a plain decimal number, we consume what is there, send one
 * 400 with a JSON error and close our sending side; MHD then only sees the end of the
 * stream. Headers that arrive in pieces, and later requests on a keep-alive connection,
 * still reach MHD's own handling (this is a workaround for the library, not a parser).
 */
#include <ctype.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "server/http_server.h"

enum { PEEK_BYTES = 8192 };

void ms_http_defer_accept(ms_http_server *s) {
    const union MHD_DaemonInfo *li = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_LISTEN_FD);
    const int secs = (int)s->cfg.limits.request_read_timeout_s;
    if (li && li->listen_fd != MHD_INVALID_SOCKET)
        setsockopt(li->listen_fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof secs);
}

/* The first bad Content-Length value in the header block buf[0..n) (copied to bad), or
 * false when all are plain decimal numbers. */
static bool find_bad_content_length(const char *buf, size_t n, char *bad, size_t bad_cap) {
    static const char k_name[] = "content-length:";
    const char *line = memchr(buf, '\n', n); /* skip the request line */
    while (line && (size_t)(line + 1 - buf) < n) {
        line++;
        const char *end = memchr(line, '\n', n - (size_t)(line - buf));
        if (!end) break;
        size_t len = (size_t)(end - line);
        if (len && line[len - 1] == '\r') len--;
        if (!len) break; /* end of the header block */
        if (len >= sizeof k_name - 1 && !strncasecmp(line, k_name, sizeof k_name - 1)) {
            const char *v = line + sizeof k_name - 1, *ve = line + len;
            while (v < ve && (*v == ' ' || *v == '\t')) v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            bool ok = ve > v && ve - v <= 19; /* fits an unsigned 64-bit value */
            for (const char *q = v; ok && q < ve; q++) ok = isdigit((unsigned char)*q);
            if (!ok) {
                const size_t k = (size_t)(ve - v) < bad_cap - 1 ? (size_t)(ve - v) : bad_cap - 1;
                for (size_t i = 0; i < k; i++) bad[i] = isprint((unsigned char)v[i]) ? v[i] : '?';
                bad[k] = 0;
                return true;
            }
        }
        line = end;
    }
    return false;
}

void ms_http_early_check(ms_http_server *s, int fd) {
    (void)s;
    char buf[PEEK_BYTES];
    const ssize_t n = recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
    if (n <= 0) return;
    const char *end = memmem(buf, (size_t)n, "\r\n\r\n", 4);
    if (!end) return; /* not all of the headers yet: MHD's handling */
    char bad[48];
    if (!find_bad_content_length(buf, (size_t)(end - buf) + 2, bad, sizeof bad)) return;
    ms_api_error e;
    ms_api_fail(&e, 400, "Content-Length", "invalid_content_length",
                "the Content-Length header '%s' is not a decimal number of bytes", bad);
    char *body = ms_api_error_json(&e);
    char head[256];
    const int hn = snprintf(head, sizeof head,
                            "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: application/json\r\n"
                            "Content-Length: %zu\r\n\r\n",
                            strlen(body));
    /* Consume what arrived (so closing later sends no reset over the answer), answer, and
     * end our side; MHD then reads only the end of the stream and closes. */
    while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0) {
    }
    send(fd, head, (size_t)hn, MSG_NOSIGNAL | MSG_DONTWAIT | MSG_MORE);
    send(fd, body, strlen(body), MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(fd, SHUT_WR);
    free(body);
}
