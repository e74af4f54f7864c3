/*
 * The replayer's stream parser: server-sent events of a streamed chat completion in,
 * the request's measurements out (first-token time, inter-token gaps, usage, the
 * server's stage timestamps, error events). Separate and public so the fuzzer can feed
 * it arbitrary bytes (tests/fuzz/fuzz_sse.c).
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "bench/replay.h"

void ms_run_request_fail(ms_run_request *r, const char *msg) {
    if (!r->error) r->error = ms_xstrdup(msg);
}

void ms_run_request_itl_push(ms_run_request *r, double v) {
    if (r->m.n_itl == r->itl_cap) {
        r->itl_cap = r->itl_cap ? r->itl_cap * 2 : 64;
        r->itl_buf = ms_xrealloc(r->itl_buf, (size_t)r->itl_cap * sizeof *r->itl_buf);
    }
    r->itl_buf[r->m.n_itl++] = v;
}

/* The per-stage timestamps of the extension field: ms_request_times names in seconds
 * on the server's clock; kept relative to the server's arrival. */
static void parse_timings(ms_run_request *r, const cJSON *t) {
    const cJSON *arrival = cJSON_GetObjectItemCaseSensitive(t, "arrival");
    if (!cJSON_IsNumber(arrival)) return;
    const double a = arrival->valuedouble;
    for (int s = 0; s < MS_RUN_STAGES; s++) {
        char k[64];
        const cJSON *q, *b, *e;
        snprintf(k, sizeof k, "%s_queued", ms_run_stage_names[s]);
        q = cJSON_GetObjectItemCaseSensitive(t, k);
        snprintf(k, sizeof k, "%s_start", ms_run_stage_names[s]);
        b = cJSON_GetObjectItemCaseSensitive(t, k);
        snprintf(k, sizeof k, "%s_end", ms_run_stage_names[s]);
        e = cJSON_GetObjectItemCaseSensitive(t, k);
        if (s == 3) e = cJSON_GetObjectItemCaseSensitive(t, "last_token"); /* decode ends at the last token */
        /* 0 means "did not happen" (ms_request_times). */
        r->stage_queued[s] = cJSON_IsNumber(q) && q->valuedouble > 0 ? q->valuedouble - a : -1;
        r->stage_start[s] = cJSON_IsNumber(b) && b->valuedouble > 0 ? b->valuedouble - a : -1;
        r->stage_end[s] = cJSON_IsNumber(e) && e->valuedouble > 0 ? e->valuedouble - a : -1;
    }
    r->has_stages = true;
}

static void handle_event(ms_sse_stream *f, const char *data, double now) {
    ms_run_request *r = f->r;
    if (!strcmp(data, "[DONE]")) {
        f->done_seen = true;
        return;
    }
    cJSON *j = cJSON_Parse(data);
    if (!j) {
        ms_run_request_fail(r, "malformed stream event");
        f->error_event = true;
        return;
    }
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (err) {
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(err, "message");
        ms_run_request_fail(r, cJSON_IsString(msg) ? msg->valuestring : "error event");
        f->error_event = true;
    }
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ch, "delta"), "content");
    if (cJSON_IsString(content) && content->valuestring[0]) {
        if (r->chunks == 0) r->m.ttft_s = now - f->t0;
        else ms_run_request_itl_push(r, now - f->last_chunk);
        f->last_chunk = now;
        r->chunks++;
    }
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(j, "usage");
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(usage, "prompt_tokens");
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens");
    /* Token counts from a server: only sane values (a float outside int32 would be
     * undefined to convert; found by fuzzing); anything else counts as not reported. */
    if (cJSON_IsNumber(pt) && pt->valuedouble >= 0 && pt->valuedouble <= INT32_MAX)
        r->actual_prompt = (int32_t)pt->valuedouble;
    if (cJSON_IsNumber(ct) && ct->valuedouble >= 0 && ct->valuedouble <= INT32_MAX)
        f->usage_completion = (int32_t)ct->valuedouble;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "timings");
    if (!t) t = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "modserve"), "timings");
    if (cJSON_IsObject(t)) parse_timings(r, t);
    cJSON_Delete(j);
}

/* Splits complete events ("...\n\n") off the buffer; data lines carry the payload. */
static void sse_drain(ms_sse_stream *f, double now) {
    size_t start = 0;
    for (;;) {
        char *base = f->sse + start;
        char *end = NULL;
        size_t sep = 0;
        for (size_t i = 0; start + i + 1 < f->sse_n; i++) {
            if (base[i] == '\n' && base[i + 1] == '\n') { end = base + i; sep = 2; break; }
            if (base[i] == '\n' && base[i + 1] == '\r' && start + i + 2 < f->sse_n && base[i + 2] == '\n') {
                end = base + i; sep = 3; break;
            }
        }
        if (!end) break;
        *end = 0;
        /* One event: join its data: lines (SSE allows several). */
        char *save = NULL;
        for (char *line = strtok_r(base, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            size_t l = strlen(line);
            if (l && line[l - 1] == '\r') line[--l] = 0;
            if (!strncmp(line, "data:", 5)) handle_event(f, line + 5 + (line[5] == ' '), now);
        }
        start += (size_t)(end - base) + sep;
    }
    memmove(f->sse, f->sse + start, f->sse_n - start);
    f->sse_n -= start;
}

bool ms_sse_feed(ms_sse_stream *s, const char *bytes, size_t n, double now) {
    if (s->sse_n + n + 1 > s->sse_cap) {
        s->sse_cap = (s->sse_n + n + 1) * 2;
        s->sse = ms_xrealloc(s->sse, s->sse_cap);
    }
    memcpy(s->sse + s->sse_n, bytes, n);
    s->sse_n += n;
    s->sse[s->sse_n] = 0;
    if (s->sse_n > (16u << 20)) return false; /* an event larger than 16 MiB: give up on it */
    sse_drain(s, now);
    return true;
}
