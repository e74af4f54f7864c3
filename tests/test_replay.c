/*
 * The replayer end to end against a small fake OpenAI-style SSE server (libmicrohttpd on
 * 127.0.0.1, ephemeral port) that counts prompt tokens as 3 + 2 per word + 64 per image,
 * checks every request (images decode, min_tokens = max_tokens, ignore_eos, usage
 * asked), streams max_tokens chunks with stage timestamps, and fails one request with
 * a 503. Checks the report files: counts, failure kept, prompt calibration and
 * deviation, image policies, per-stage numbers.
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stb_image.h>

#include "bench/replay.h"
#include "bench/simulate.h"
#include "llm/model_init.h"
#include "tests/test_util.h"

/* ---- the fake server ---- */
static atomic_int g_images_ok, g_images_bad, g_rule_violations, g_streams, g_probes;
static atomic_int g_messages_hist[16]; /* requests by number of messages */

typedef struct upload {
    char *p;
    size_t n;
} upload;

typedef struct stream_ctx {
    int32_t left, total, prompt;
    int32_t images;
    double arrival;
    int state;                /* 0 tokens, 1 usage, 2 done, 3 end */
} stream_ctx;

static int b64v(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

static bool image_ok(const char *url) {
    const char *comma = strstr(url, ";base64,");
    if (strncmp(url, "data:image/", 11) || !comma) return false;
    const char *s = comma + 8;
    const size_t n = strlen(s);
    uint8_t *d = malloc(n);
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n && s[i] != '='; i++) {
        const int v = b64v(s[i]);
        if (v < 0) { free(d); return false; }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) { bits -= 8; d[k++] = (uint8_t)(acc >> bits); }
    }
    int w, h, c;
    const bool ok = stbi_info_from_memory(d, (int)k, &w, &h, &c) && w >= 64 && h >= 64 && k > (size_t)(w * h) / 8;
    free(d);
    return ok; /* also: not trivially compressible (more than 1 bit per pixel) */
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    stream_ctx *s = cls;
    usleep(1000); /* a token every millisecond or so */
    int n = 0;
    if (s->state == 0) {
        n = snprintf(buf, max, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok\"}}]}\n\n");
        if (--s->left == 0) s->state = 1;
    } else if (s->state == 1) {
        const double a = s->arrival, im = s->images ? 0.004 : 0;
        n = snprintf(buf, max,
                     "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d},"
                     "\"timings\":{\"arrival\":%.6f,\"preprocess_queued\":%.6f,\"preprocess_start\":%.6f,"
                     "\"preprocess_end\":%.6f,\"encode_queued\":%.6f,\"encode_start\":%.6f,\"encode_end\":%.6f,"
                     "\"prefill_queued\":%.6f,\"prefill_start\":%.6f,\"prefill_end\":%.6f,"
                     "\"decode_queued\":%.6f,\"decode_start\":%.6f,\"first_token\":%.6f,\"last_token\":%.6f}}\r\n\r\n",
                     s->prompt, s->total, a, im ? a : 0, im ? a + 0.001 : 0, im ? a + 0.002 : 0, im ? a + 0.002 : 0,
                     im ? a + 0.003 : 0, im ? a + 0.004 : 0, a + im + 0.001, a + im + 0.002, a + im + 0.003,
                     a + im + 0.003, a + im + 0.004, a + im + 0.004, a + im + 0.005);
        s->state = 2;
    } else if (s->state == 2) {
        n = snprintf(buf, max, "data: [DONE]\n\n");
        s->state = 3;
    } else {
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    return n;
}

static enum MHD_Result reply(struct MHD_Connection *c, int status, const char *body, bool sse) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", sse ? "text/event-stream" : "application/json");
    const enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handle_chat(struct MHD_Connection *c, const char *body) {
    cJSON *j = cJSON_Parse(body);
    if (!j) return reply(c, 400, "{\"error\":{\"message\":\"bad json\"}}", false);
    /* every message counts (sessions re-send the history; an assistant's content is a string) */
    int words = 0, images = 0, n_msgs = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItem(j, "messages")) {
        const cJSON *content = cJSON_GetObjectItem(m, "content");
        const bool user = !strcmp(cJSON_GetObjectItem(m, "role")->valuestring, "user");
        if (user != (n_msgs % 2 == 0)) g_rule_violations++; /* user, assistant, user, ... */
        n_msgs++;
        if (cJSON_IsString(content)) {
            for (const char *p = content->valuestring; *p;) {
                while (*p == ' ') p++;
                if (*p) words++;
                while (*p && *p != ' ') p++;
            }
            continue;
        }
        const cJSON *part;
        cJSON_ArrayForEach(part, content) {
            const cJSON *type = cJSON_GetObjectItem(part, "type");
            if (!strcmp(type->valuestring, "text")) {
                const char *t = cJSON_GetObjectItem(part, "text")->valuestring;
                for (const char *p = t; *p;) {
                    while (*p == ' ') p++;
                    if (*p) words++;
                    while (*p && *p != ' ') p++;
                }
            } else {
                images++;
                if (image_ok(cJSON_GetObjectItem(cJSON_GetObjectItem(part, "image_url"), "url")->valuestring)) g_images_ok++;
                else g_images_bad++;
            }
        }
    }
    if (n_msgs < 16) g_messages_hist[n_msgs]++;
    const int max_tokens = cJSON_GetObjectItem(j, "max_tokens")->valueint;
    const cJSON *min_tokens = cJSON_GetObjectItem(j, "min_tokens");
    if (!cJSON_IsNumber(min_tokens) || min_tokens->valueint != max_tokens || !cJSON_IsTrue(cJSON_GetObjectItem(j, "ignore_eos")))
        g_rule_violations++;
    const int prompt = 3 + 2 * words + 64 * images;
    const bool stream = cJSON_IsTrue(cJSON_GetObjectItem(j, "stream"));
    cJSON_Delete(j);
    if (!stream) {
        g_probes++;
        char out[256];
        snprintf(out, sizeof out, "{\"choices\":[{\"message\":{\"content\":\"x\"}}],\"usage\":{\"prompt_tokens\":%d,"
                                  "\"completion_tokens\":1}}", prompt);
        return reply(c, 200, out, false);
    }
    cJSON *again = cJSON_Parse(body);
    if (!cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(again, "stream_options"), "include_usage")))
        g_rule_violations++;
    cJSON_Delete(again);
    g_streams++;
    if (max_tokens == 13) return reply(c, 503, "{\"error\":{\"message\":\"overloaded\"}}", false);
    stream_ctx *s = calloc(1, sizeof *s);
    s->left = s->total = max_tokens;
    s->prompt = prompt;
    s->images = images;
    s->arrival = ms_time_now();
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, s, free);
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    const enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *data, size_t *data_size, void **con_cls) {
    upload *u = *con_cls;
    if (!u) {
        *con_cls = calloc(1, sizeof(upload));
        return MHD_YES;
    }
    if (*data_size) {
        u->p = realloc(u->p, u->n + *data_size + 1);
        memcpy(u->p + u->n, data, *data_size);
        u->n += *data_size;
        u->p[u->n] = 0;
        *data_size = 0;
        return MHD_YES;
    }
    if (!strcmp(method, "GET") && !strcmp(url, "/v1/models"))
        return reply(c, 200, "{\"object\":\"list\",\"data\":[{\"id\":\"fake-model\",\"image_seq_length\":64}]}", false);
    if (!strcmp(method, "POST") && !strcmp(url, "/v1/chat/completions") && u->p) return handle_chat(c, u->p);
    return reply(c, 404, "{\"error\":{\"message\":\"not found\"}}", false);
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t) {
    upload *u = *con_cls;
    if (u) free(u->p);
    free(u);
    *con_cls = NULL;
}

/* ---- the test ---- */
static cJSON *read_json(const char *path) {
    char *s = ms_test_read_file(path, NULL);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    free(s);
    return j;
}

static double jnum(const cJSON *j, const char *a, const char *b, const char *c) {
    const cJSON *x = cJSON_GetObjectItem(j, a);
    if (b) x = cJSON_GetObjectItem(x, b);
    if (c) x = cJSON_GetObjectItem(x, c);
    return cJSON_IsNumber(x) ? x->valuedouble : -12345;
}

static void test_prompt_size(void) {
    const ms_prompt_plan plan = {.overhead = 3, .per_word = 2, .image_tokens = 64};
    int32_t imgs, words, expect;
    ms_prompt_size(&plan, MS_IMAGE_POLICY_KEEP, 100, 2, 500, &imgs, &words, &expect);
    EXPECT(imgs == 2 && words == 185 && expect == 501);
    ms_prompt_size(&plan, MS_IMAGE_POLICY_KEEP, 100, 4, 100, &imgs, &words, &expect);
    EXPECT(imgs == 4 && words == 0 && expect == 259);
    ms_prompt_size(&plan, MS_IMAGE_POLICY_FIT, 100, 4, 100, &imgs, &words, &expect);
    EXPECT(imgs == 1 && words == 17 && expect == 101);
    ms_prompt_size(&plan, MS_IMAGE_POLICY_FIT, 100, 4, 20, &imgs, &words, &expect); /* at least one image */
    EXPECT(imgs == 1 && words == 0);
    ms_prompt_size(&plan, MS_IMAGE_POLICY_KEEP, 3, 9, 10000, &imgs, &words, &expect); /* capped */
    EXPECT(imgs == 3);
    char *t = ms_filler_text(3);
    EXPECT(!strcmp(t, "the the the"));
    free(t);
}

static int run_replay(int port, const char *trace, const char *out, const char *policy, const char *conc) {
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    char *argv[] = {"replay", "--trace", (char *)trace, "--url", url, "--out", (char *)out, "--image-policy",
                    (char *)policy, "--goodput", "ttft:5000,tpot:1000", "--time-scale", "0.5", "--image-pool", "4",
                    "--no-progress", "--max-concurrency", (char *)conc};
    return ms_bench_replay_main(sizeof argv / sizeof argv[0], argv);
}

/* Field k (0-based) of a CSV line as a number (-1 when empty). */
static double csv_field(const char *line, int k) {
    for (int i = 0; i < k && line; i++) {
        line = strchr(line, ',');
        if (line) line++;
    }
    return line && *line != ',' && *line != '\n' ? strtod(line, NULL) : -1;
}

/* --sessions 3 --turns 3: the first 9 rows as 3 conversations; turn t re-sends t - 1
 * earlier turns (2t - 1 messages, user/assistant alternating, the history's images
 * again), goes out after the previous answer plus the think time, and the report has
 * TTFT of turn 1 and of turns 2+ (row 5, session 1's turn 3, gets the 503). */
static void test_sessions(int port, const char *trace, const char *dir) {
    for (int i = 0; i < 16; i++) g_messages_hist[i] = 0;
    g_images_ok = g_images_bad = 0;
    char url[64], out[128], path[160];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    snprintf(out, sizeof out, "%s/sessions", dir);
    char *argv[] = {"replay", "--trace", (char *)trace, "--url", url, "--out", out, "--image-pool", "32",
                    "--no-progress", "--no-plots", "--sessions", "3", "--turns", "3", "--think-time", "0.3"};
    EXPECT(ms_bench_replay_main(sizeof argv / sizeof argv[0], argv) == 0);
    EXPECTF(g_messages_hist[1] == 3 + 3 && g_messages_hist[3] == 3 && g_messages_hist[5] == 3,
            "requests with 1/3/5 messages: %d %d %d (3 probes + 3, 3, 3)", (int)g_messages_hist[1],
            (int)g_messages_hist[3], (int)g_messages_hist[5]);
    /* images: rows 0..8 have 0,2,0,4,1,0,0,9,0; turn t re-sends its session's earlier ones */
    const int imgs[9] = {0, 2, 0, 4, 1, 0, 0, 9, 0};
    int want = 1; /* the calibration probe */
    for (int i = 0; i < 9; i++)
        for (int j = i - i % 3; j <= i; j++) want += imgs[j];
    EXPECTF(g_images_ok == want && g_images_bad == 0, "%d images decoded, want %d", (int)g_images_ok, want);
    EXPECT(g_rule_violations == 0);
    snprintf(path, sizeof path, "%s/summary.json", out);
    cJSON *s = read_json(path);
    EXPECT(jnum(s, "overall", "requests", NULL) == 9 && jnum(s, "overall", "failed", NULL) == 1);
    EXPECT(jnum(s, "sessions", "turns", NULL) == 3 && jnum(s, "sessions", "think_time_s", NULL) == 0.3);
    EXPECT(jnum(s, "sessions", "ttft_turn1", "n") == 3 && jnum(s, "sessions", "ttft_turns2plus", "n") == 5);
    EXPECT(jnum(s, "sessions", "ttft_turns2plus", "p50_ms") > 0);
    cJSON_Delete(s);
    /* each later turn was sent at least think time after the previous one ended */
    snprintf(path, sizeof path, "%s/requests.csv", out);
    char *csv = ms_test_read_file(path, NULL);
    EXPECT(csv != NULL);
    double prev_send = 0, prev_e2e = 0;
    int row = 0, late_ok = 0;
    for (char *line = csv ? strchr(csv, '\n') : NULL; line && line[1]; line = strchr(line + 1, '\n'), row++) {
        const double send = csv_field(line + 1, 15), e2e_ms = csv_field(line + 1, 20);
        if (row % 3 > 0 && send >= prev_send + prev_e2e / 1e3 + 0.3 - 1e-3) late_ok++;
        prev_send = send;
        prev_e2e = e2e_ms;
    }
    EXPECTF(row == 9 && late_ok == 6, "%d rows, %d later turns sent after answer + think time (want 9, 6)", row, late_ok);
    free(csv);
    /* too few rows for the sessions: a clear error */
    argv[12] = "5";
    EXPECT(ms_bench_replay_main(sizeof argv / sizeof argv[0], argv) != 0);
}

/* The same replay against the real engine on the tiny model, in this process. */
static void test_engine_replay(const char *dir) {
    const char *model = ms_test_tiny_model(1, "f32");
    char trace[128], out[128], path[160];
    snprintf(trace, sizeof trace, "%s/engine-trace.csv", dir);
    snprintf(out, sizeof out, "%s/engine", dir);
    FILE *f = fopen(trace, "w");
    MS_CHECK(f);
    fprintf(f, "TIMESTAMP,NumImages,ContextTokens,GeneratedTokens\n");
    static const int k_rows[6][3] = {{0, 40, 4}, {1, 100, 3}, {0, 20, 1}, {2, 200, 5}, {0, 9000, 2}, {0, 64, 6}};
    for (int i = 0; i < 6; i++)
        fprintf(f, "2024-10-15T12:00:00.%03dZ,%d,%d,%d\n", i * 100, k_rows[i][0], k_rows[i][1], k_rows[i][2]);
    fclose(f);
    char *argv[] = {"replay", "--trace", trace, "--engine-model", (char *)model, "--device", "cpu", "--out", out,
                    "--no-plots", "--no-progress", "--image-pool", "2", "--max-model-len", "4096"};
    EXPECT(ms_bench_replay_main(sizeof argv / sizeof argv[0], argv) == 0);
    snprintf(path, sizeof path, "%s/summary.json", out);
    cJSON *s = read_json(path);
    EXPECT(jnum(s, "overall", "requests", NULL) == 6);
    EXPECT(jnum(s, "overall", "failed", NULL) == 1); /* 9000 tokens: over --max-model-len 4096 */
    EXPECT(jnum(s, "overall", "output_tokens", NULL) == 4 + 3 + 1 + 5 + 6);
    /* token ids: every prompt is exactly its target (images x 64 + text) */
    EXPECT(jnum(s, "prompt", "deviated_over_5pct", NULL) == 0);
    EXPECT(jnum(s, "prompt", "actual_tokens", NULL) == 40 + 100 + 20 + 200 + 64);
    EXPECT(jnum(cJSON_GetObjectItem(cJSON_GetObjectItem(s, "stages"), "encode"), "service", "n", NULL) == 2);
    cJSON_Delete(s);
}

/* End to end against the real server (`./modserve serve`, tiny model, CPU, free port). */
static void test_real_server(const char *dir) {
    const char *model = ms_test_tiny_model(1, "f32");
    int fds[2];
    MS_CHECK(pipe(fds) == 0);
    const pid_t pid = fork();
    MS_CHECK(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        /* --max-model-len 4096: the 9000-token row below is refused (the tiny model's own
         * context holds it, and prefilling it under ASan takes minutes). */
        execl("./modserve", "modserve", "serve", "--model", model, "--device", "cpu", "--port", "0", "--threads", "2",
              "--max-model-len", "4096", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *out = fdopen(fds[0], "r");
    char line[512];
    int port = 0;
    while (!port && fgets(line, sizeof line, out)) {
        const char *p = strstr(line, "listening on http://127.0.0.1:");
        if (p) port = atoi(p + strlen("listening on http://127.0.0.1:"));
    }
    EXPECTF(port > 0, "the server did not start");
    if (port > 0) {
        char trace[128], o[128], path[160];
        snprintf(trace, sizeof trace, "%s/server-trace.csv", dir);
        snprintf(o, sizeof o, "%s/server", dir);
        FILE *f = fopen(trace, "w");
        MS_CHECK(f);
        fprintf(f, "TIMESTAMP,NumImages,ContextTokens,GeneratedTokens\n");
        static const int k_rows[5][3] = {{0, 120, 4}, {1, 300, 3}, {0, 60, 1}, {2, 500, 6}, {0, 9000, 2}};
        for (int i = 0; i < 5; i++)
            fprintf(f, "2024-10-15T12:00:00.%03dZ,%d,%d,%d\n", i * 100, k_rows[i][0], k_rows[i][1], k_rows[i][2]);
        fclose(f);
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
        char *argv[] = {"replay", "--trace", trace, "--url", url, "--out", o, "--no-plots", "--no-progress",
                        "--image-pool", "2"};
        EXPECT(ms_bench_replay_main(sizeof argv / sizeof argv[0], argv) == 0);
        snprintf(path, sizeof path, "%s/summary.json", o);
        cJSON *s = read_json(path);
        EXPECT(jnum(s, "overall", "requests", NULL) == 5);
        EXPECT(jnum(s, "overall", "failed", NULL) == 1); /* 9000 tokens: over --max-model-len 4096 */
        EXPECT(jnum(s, "overall", "output_tokens", NULL) == 4 + 3 + 1 + 6); /* ignore_eos + min_tokens */
        EXPECT(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(s, "prompt"), "calibrated")));
        EXPECT(jnum(s, "prompt", "deviated_over_5pct", NULL) == 0);
        EXPECT(jnum(cJSON_GetObjectItem(cJSON_GetObjectItem(s, "stages"), "prefill"), "wait", "n", NULL) == 4);
        cJSON_Delete(s);
        /* `bench profile` on its own engine plus the front end through this server: every
         * point measured, the file loads as the simulator's cost model. */
        snprintf(path, sizeof path, "%s/profile.json", dir);
        char *pargv[] = {"profile", "--model", (char *)model, "--device", "cpu", "--out", path, "--repeats", "1",
                         "--encode-images", "1,2", "--prefill-tokens", "16,64", "--decode-batch", "1,2",
                         "--decode-context", "16,48", "--decode-steps", "4", "--url", url, "--rounds", "2", "--image-pool", "4", "--seed", "3"};
        EXPECT(ms_bench_profile_main(sizeof pargv / sizeof pargv[0], pargv) == 0);
        ms_cost_model cm;
        ms_error err = {0};
        EXPECTF(ms_cost_model_load(path, &cm, &err) == MS_OK, "%s", err.msg);
        EXPECT(cm.frontend.n == 3 && cm.frontend.x[0] == 0 && cm.frontend.x[2] == 2);
        ms_llava_config tiny;
        MS_CHECK(ms_llava_preset("tiny", &tiny, &err) == MS_OK);
        EXPECTF(cm.max_model_len == tiny.text.max_position_embeddings, "profile max_model_len %d", cm.max_model_len);
        EXPECT(cm.preprocess.n == 2 && cm.encode.n == 2 && cm.prefill.n == 2 && cm.n_ctx == 2);
        bool positive = true;
        for (int c = 0; c < cm.n_ctx; c++)
            for (int b = 0; b < cm.decode[c].n; b++) positive = positive && cm.decode[c].y[b] > 0;
        for (int i = 0; i < 2; i++) positive = positive && cm.prefill.y[i] > 0 && cm.encode.y[i] > 0;
        EXPECT(positive);
        /* Two rounds: each point is the mean of the two, with their min and max beside it. */
        cJSON *pj = read_json(path);
        EXPECT(jnum(pj, "rounds", NULL, NULL) == 2);
        const char *curves[] = {"preprocess", "encode", "prefill", "frontend"};
        for (int c = 0; c < 4; c++) {
            const cJSON *cv = cJSON_GetObjectItem(pj, curves[c]);
            const cJSON *mean = cJSON_GetObjectItem(cv, "seconds"), *lo = cJSON_GetObjectItem(cv, "seconds_min"),
                        *hi = cJSON_GetObjectItem(cv, "seconds_max");
            EXPECTF(cJSON_GetArraySize(lo) == cJSON_GetArraySize(mean) && cJSON_GetArraySize(hi) ==
                    cJSON_GetArraySize(mean), "%s", curves[c]);
            for (int i = 0; i < cJSON_GetArraySize(mean); i++) {
                const double m = cJSON_GetArrayItem(mean, i)->valuedouble;
                EXPECTF(cJSON_GetArrayItem(lo, i)->valuedouble <= m + 1e-12 &&
                        m <= cJSON_GetArrayItem(hi, i)->valuedouble + 1e-12, "%s point %d", curves[c], i);
            }
        }
        const cJSON *dlo = cJSON_GetObjectItem(cJSON_GetObjectItem(pj, "decode"), "seconds_min");
        EXPECT(cJSON_GetArraySize(dlo) == 2 && cJSON_GetArraySize(cJSON_GetArrayItem(dlo, 1)) == 2);
        /* Every image of the replayer's pool measured alone (preprocess, front end). */
        const cJSON *pim = cJSON_GetObjectItem(pj, "images");
        EXPECT(jnum(pj, "images", "pool", NULL) == 4 && jnum(pj, "images", "seed", NULL) == 3);
        EXPECT(cJSON_GetArraySize(cJSON_GetObjectItem(pim, "preprocess")) == 4 &&
               cJSON_GetArraySize(cJSON_GetObjectItem(pim, "frontend")) == 4);
        EXPECT(cm.images.n == 4 && cm.images.seed == 3 && cm.images.has_frontend && cm.images.preprocess[3] > 0);
        cJSON_Delete(pj);
    }
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    fclose(out);
}

int main(void) {
    test_prompt_size();
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL,
                                            NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, &addr,
                                            MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL, MHD_OPTION_END);
    if (!d) return ms_test_skip("test_replay", "cannot start a loopback HTTP server here");
    const int port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    char dir[64], trace[96], out[96];
    snprintf(dir, sizeof dir, "testdata/replay-%d", (int)getpid());
    mkdir("testdata", 0755);
    mkdir(dir, 0755);
    snprintf(trace, sizeof trace, "%s/trace.csv", dir);
    FILE *f = fopen(trace, "w");
    MS_CHECK(f);
    /* 12 requests 100 ms apart; row 5 (max_tokens 13) gets a 503 from the fake. */
    fprintf(f, "TIMESTAMP,NumImages,ContextTokens,GeneratedTokens\n");
    static const int k_rows[12][3] = {{0, 301, 5}, {2, 500, 8}, {0, 121, 1}, {4, 100, 6}, {1, 900, 20}, {0, 400, 13},
                                      {0, 51, 3},  {9, 2000, 4}, {0, 301, 7}, {1, 300, 2}, {0, 1001, 9}, {3, 700, 5}};
    int images_keep = 0;
    for (int i = 0; i < 12; i++) {
        fprintf(f, "2024-10-15T12:00:%02d.%03dZ,%d,%d,%d\n", i / 10, (i % 10) * 100, k_rows[i][0], k_rows[i][1],
                k_rows[i][2]);
        images_keep += k_rows[i][0];
    }
    fclose(f);
    snprintf(out, sizeof out, "%s/keep", dir);
    EXPECT(run_replay(port, trace, out, "keep", "1000") == 0);
    char path[160];
    snprintf(path, sizeof path, "%s/summary.json", out);
    cJSON *s = read_json(path);
    EXPECT(s != NULL);
    EXPECT(jnum(s, "overall", "requests", NULL) == 12);
    EXPECT(jnum(s, "overall", "completed", NULL) == 11);
    EXPECT(jnum(s, "overall", "failed", NULL) == 1);
    EXPECT(jnum(s, "text", "failed", NULL) == 1 && jnum(s, "image", "failed", NULL) == 0);
    EXPECT(jnum(s, "image", "requests", NULL) == 6);
    EXPECT(jnum(s, "overall", "good_requests", NULL) == 11);
    EXPECT_NEAR(jnum(s, "overall", "slo_attainment", NULL), 11.0 / 12.0, 1e-9);
    EXPECT(jnum(s, "overall", "output_tokens", NULL) == 5 + 8 + 1 + 6 + 20 + 3 + 4 + 7 + 2 + 9 + 5);
    EXPECT(jnum(s, "overall", "ttft", "p50_ms") > 0);
    EXPECT(jnum(s, "overall", "itl", "n") == (5 - 1) + (8 - 1) + 0 + (6 - 1) + 19 + 2 + 3 + 6 + 1 + 8 + 4);
    EXPECT(jnum(s, "prompt", "overhead_tokens", NULL) == 3 && jnum(s, "prompt", "tokens_per_word", NULL) == 2);
    EXPECT(jnum(s, "prompt", "image_tokens", NULL) == 64);
    EXPECT(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(s, "prompt"), "calibrated")));
    /* keep: rows 3 (4 images in 100 tokens) and 7 (9 images in 2000 is fine: 579 + text)... only row 3 grows. */
    EXPECT(jnum(s, "prompt", "deviated_over_5pct", NULL) == 1);
    EXPECT(jnum(s, "prompt", "requests_with_usage", NULL) == 11);
    EXPECT(jnum(s, "stages", "prefill", "wait") == -12345); /* an object, checked below */
    EXPECT(jnum(cJSON_GetObjectItem(cJSON_GetObjectItem(s, "stages"), "prefill"), "wait", "n", NULL) == 11);
    EXPECT(jnum(cJSON_GetObjectItem(cJSON_GetObjectItem(s, "stages"), "encode"), "service", "n", NULL) == 6);
    EXPECT_NEAR(jnum(cJSON_GetObjectItem(cJSON_GetObjectItem(s, "stages"), "prefill"), "wait", "mean_ms", NULL), 1.0, 1e-3);
    cJSON_Delete(s);
    EXPECT(g_images_bad == 0);
    EXPECTF(g_images_ok == images_keep + 1, "%d images decoded, want %d", (int)g_images_ok, images_keep + 1);
    EXPECT(g_rule_violations == 0);
    EXPECT(g_streams == 12 && g_probes == 3);
    snprintf(path, sizeof path, "%s/requests.csv", out);
    char *csv = ms_test_read_file(path, NULL);
    EXPECT(csv != NULL);
    int lines = 0;
    for (char *p = csv; p && *p; p++) lines += *p == '\n';
    EXPECT(lines == 13);
    EXPECT(csv && strstr(csv, "HTTP 503") != NULL);
    free(csv);
    snprintf(path, sizeof path, "%s/ttft_cdf.png", out);
    struct stat st;
    /* The plot is part of the report: no gnuplot is a failure, not a pass. */
    EXPECTF(ms_test_system("command -v gnuplot >/dev/null") == 0,
            "gnuplot is not installed (Debian's gnuplot-nox): the TTFT plot cannot be checked");
    EXPECTF(stat(path, &st) == 0 && st.st_size > 0, "no plot %s", path);
    /* fit, with a concurrency cap: row 3 sends 1 image and meets its target. */
    g_images_ok = 0;
    snprintf(out, sizeof out, "%s/fit", dir);
    EXPECT(run_replay(port, trace, out, "fit", "2") == 0);
    snprintf(path, sizeof path, "%s/summary.json", out);
    s = read_json(path);
    EXPECT(jnum(s, "overall", "requests", NULL) == 12 && jnum(s, "overall", "failed", NULL) == 1);
    EXPECT(jnum(s, "prompt", "deviated_over_5pct", NULL) == 0);
    EXPECT(jnum(s, "prompt", "requests_with_fewer_images", NULL) >= 1);
    cJSON_Delete(s);
    /* fit: 2 + 1 (row 3) + min(9, (2000-3)/64) + 1 + 1 + 3 images, plus one calibration image */
    EXPECTF(g_images_ok == 2 + 1 + 9 + 1 + 1 + 3 + 1, "%d images", (int)g_images_ok);
    test_sessions(port, trace, dir);
    /* A server that is not there: a clear error, no crash. */
    MHD_stop_daemon(d);
    snprintf(out, sizeof out, "%s/none", dir);
    EXPECT(run_replay(port, trace, out, "keep", "4") != 0);
    test_engine_replay(dir);
    test_real_server(dir);
    if (!getenv("MS_TEST_KEEP")) ms_test_system("rm -rf %s", dir); /* MS_TEST_KEEP=1 keeps the report to look at */
    return ms_test_finish("test_replay");
}
