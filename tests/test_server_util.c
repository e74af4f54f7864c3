/* Server test helpers (see test_server_util.h). */
#include "tests/test_server_util.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <stb_image_write.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

bool srv_start(srv_proc *p, const char *model_dir, const char *extra) {
    memset(p, 0, sizeof *p);
    int fds[2];
    if (pipe(fds)) return false;
    char args[2048];
    snprintf(args, sizeof args, "serve --model %s --port 0 --device cpu --threads 2 %s", model_dir, extra ? extra : "");
    char *argv[64];
    int argc = 0;
    argv[argc++] = "./modserve";
    for (char *t = strtok(args, " "); t && argc < 63; t = strtok(NULL, " ")) argv[argc++] = t;
    argv[argc] = NULL;
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv("./modserve", argv);
        _exit(127);
    }
    close(fds[1]);
    p->pid = pid;
    char line[256];
    size_t n = 0;
    const double until = now_s() + 300;
    while (now_s() < until && n + 1 < sizeof line) {
        struct pollfd pf = {.fd = fds[0], .events = POLLIN};
        if (poll(&pf, 1, 200) <= 0) continue;
        ssize_t k = read(fds[0], line + n, 1);
        if (k <= 0) break;
        if (line[n] == '\n') {
            line[n] = 0;
            const char *at = strstr(line, "listening on http://");
            if (at) {
                const char *colon = strrchr(at, ':');
                p->port = atoi(colon + 1);
                snprintf(p->base, sizeof p->base, "http://127.0.0.1:%d", p->port);
                /* Keep reading the pipe so the server never blocks on stdout. */
                close(fds[0]);
                return p->port > 0;
            }
            n = 0;
            continue;
        }
        n++;
    }
    close(fds[0]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    p->pid = 0;
    return false;
}

int srv_stop(srv_proc *p, int sig, double timeout_s) {
    if (!p->pid) return -1;
    kill(p->pid, sig);
    const double until = now_s() + timeout_s;
    int st = 0;
    for (;;) {
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) break;
        if (now_s() > until) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &st, 0);
            p->pid = 0;
            return -1;
        }
        usleep(20000);
    }
    p->pid = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx) {
    http_resp *r = ctx;
    const size_t k = size * nmemb;
    r->body = realloc(r->body, r->n + k + 1);
    memcpy(r->body + r->n, data, k);
    r->n += k;
    r->body[r->n] = 0;
    return k;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ctx) {
    http_resp *r = ctx;
    const size_t k = size * nmemb;
    if (k > 13 && !strncasecmp(data, "Retry-After:", 12)) {
        snprintf(r->retry_after, sizeof r->retry_after, "%.*s", (int)(k - 12 > 15 ? 15 : k - 12), data + 12);
    }
    return k;
}

bool http_call(const srv_proc *p, const char *method, const char *path, const char *body, size_t body_len,
               const char *auth, http_resp *out) {
    memset(out, 0, sizeof *out);
    out->body = calloc(1, 1);
    CURL *c = curl_easy_init();
    char url[512];
    snprintf(url, sizeof url, "%s%s", p->base, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    char ah[256];
    if (auth) {
        snprintf(ah, sizeof ah, "Authorization: Bearer %s", auth);
        h = curl_slist_append(h, ah);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    const CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rc == CURLE_OK;
}

void http_resp_free(http_resp *r) {
    free(r->body);
    memset(r, 0, sizeof *r);
}

bool sse_collect(const char *body, char **text, char **finish, int *n_events) {
    size_t cap = 256, n = 0;
    char *t = calloc(1, cap);
    *finish = NULL;
    *n_events = 0;
    bool done = false, ok = true;
    const char *p = body;
    while (p && *p) {
        const char *end = strstr(p, "\n\n");
        if (!end) {
            ok = false;
            break;
        }
        if (strncmp(p, "data: ", 6)) {
            ok = false;
            break;
        }
        char *data = strndup(p + 6, (size_t)(end - p - 6));
        (*n_events)++;
        if (!strcmp(data, "[DONE]")) done = true;
        else {
            cJSON *j = cJSON_Parse(data);
            const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
            const cJSON *delta = cJSON_GetObjectItemCaseSensitive(ch, "delta");
            const cJSON *s = delta ? cJSON_GetObjectItemCaseSensitive(delta, "content")
                                   : cJSON_GetObjectItemCaseSensitive(ch, "text");
            const cJSON *fr = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
            if (!j || done) ok = false;
            if (cJSON_IsString(s)) {
                const size_t k = strlen(s->valuestring);
                while (n + k + 1 > cap) t = realloc(t, cap *= 2);
                memcpy(t + n, s->valuestring, k + 1);
                n += k;
            }
            if (cJSON_IsString(fr)) {
                free(*finish);
                *finish = strdup(fr->valuestring);
            }
            cJSON_Delete(j);
        }
        free(data);
        p = end + 2;
    }
    *text = t;
    return ok && done;
}

typedef struct png_buf {
    unsigned char *p;
    size_t n;
} png_buf;

static void png_write(void *ctx, void *data, int size) {
    png_buf *b = ctx;
    b->p = realloc(b->p, b->n + (size_t)size);
    memcpy(b->p + b->n, data, (size_t)size);
    b->n += (size_t)size;
}

unsigned char *png_bytes(int w, int h, int k, size_t *n) {
    unsigned char *px = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h * 3; i++) px[i] = (unsigned char)((i * (k + 3) * 31) ^ (i >> 5));
    png_buf b = {0};
    stbi_write_png_to_func(png_write, &b, w, h, 3, px, w * 3);
    free(px);
    *n = b.n;
    return b.p;
}

char *png_data_url(int w, int h, int k) {
    size_t n;
    unsigned char *b = png_bytes(w, h, k, &n);
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *pre = "data:image/png;base64,";
    char *out = malloc(strlen(pre) + (n + 2) / 3 * 4 + 1);
    char *o = out + strlen(pre);
    strcpy(out, pre);
    for (size_t i = 0; i < n; i += 3) {
        const unsigned v = (unsigned)b[i] << 16 | (i + 1 < n ? (unsigned)b[i + 1] << 8 : 0) | (i + 2 < n ? b[i + 2] : 0);
        *o++ = tab[v >> 18 & 63];
        *o++ = tab[v >> 12 & 63];
        *o++ = i + 1 < n ? tab[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? tab[v & 63] : '=';
    }
    *o = 0;
    free(b);
    return out;
}
