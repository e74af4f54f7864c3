/*
 * Multi-turn sessions for `bench replay --sessions N --turns T --think-time S`: the
 * first N * T selected trace rows become N conversations of T turns (row s * T + t is
 * turn t + 1 of session s). A turn's own message is sized from its row as an
 * open-loop request would be (its images, filler text for its ContextTokens); its
 * request re-sends the whole history: every earlier turn's user message, with the same
 * images (the same bytes, so the server's image caches and a prefix cache can reuse
 * them), each followed by an assistant message standing in for that turn's answer (as
 * many filler words as its GeneratedTokens; the replayer does not keep the streamed
 * text). Turn 1 goes out at its row's trace time; turn t + 1 think_time seconds after
 * turn t's response ended (closed loop per session, failed turns included).
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench/replay.h"

ms_status ms_sessions_layout(const ms_replay_options *o, const ms_prompt_plan *plan, ms_bench_run *run,
                             ms_error *err) {
    const int64_t need = (int64_t)o->sessions * o->turns;
    if (o->turns < 1 || o->sessions < 1)
        return ms_errorf(err, MS_ERR_INVALID, "--sessions %d --turns %d: both must be >= 1", o->sessions, o->turns);
    if (need > run->n)
        return ms_errorf(err, MS_ERR_INVALID, "--sessions %d --turns %d need %lld trace rows, the selection has %lld "
                         "(widen --duration or lower --sessions/--turns)", o->sessions, o->turns, (long long)need,
                         (long long)run->n);
    run->n = need;
    run->sessions = o->sessions;
    run->turns = o->turns;
    run->think_time_s = o->think_time_s;
    for (int64_t i = 0; i < need; i++) {
        ms_run_request *r = &run->reqs[i];
        r->session = (int32_t)(i / o->turns);
        r->turn = (int32_t)(i % o->turns) + 1;
        if (r->turn == 1) continue;
        /* the history: earlier turns' own parts (without the template overhead, counted
         * once) and their placeholder answers */
        const ms_run_request *p = &run->reqs[i - 1];
        const int32_t answer = p->trace.generated_tokens > 0 ? p->trace.generated_tokens : 1;
        r->target_prompt += p->target_prompt + answer;
        r->expected_prompt += p->expected_prompt - (int32_t)lround(plan->overhead) +
                              (int32_t)lround(answer * plan->per_word);
    }
    return MS_OK;
}

char *ms_replay_session_body(const char *model, const ms_image_pool *pool, const ms_bench_run *run, int64_t i) {
    const ms_run_request *r = &run->reqs[i];
    cJSON *msgs = cJSON_CreateArray();
    for (int64_t j = i - (r->turn - 1); j <= i; j++) {
        const ms_run_request *t = &run->reqs[j];
        cJSON_AddItemToArray(msgs, ms_replay_user_message(pool, j, t->images_sent, t->text_words));
        if (j == i) break;
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "role", "assistant");
        char *text = ms_filler_text(t->trace.generated_tokens > 0 ? t->trace.generated_tokens : 1);
        cJSON_AddStringToObject(a, "content", text);
        free(text);
        cJSON_AddItemToArray(msgs, a);
    }
    const int32_t max_tokens = r->trace.generated_tokens > 0 ? r->trace.generated_tokens : 1;
    return ms_replay_body_messages(model, msgs, max_tokens, true);
}

void ms_session_ttft(const ms_bench_run *run, ms_latency_stats *first, ms_latency_stats *later) {
    double *a = ms_xmalloc((size_t)(run->n + 1) * sizeof *a), *b = ms_xmalloc((size_t)(run->n + 1) * sizeof *b);
    int64_t na = 0, nb = 0;
    for (int64_t i = 0; i < run->n; i++) {
        const ms_run_request *r = &run->reqs[i];
        if (r->turn < 1 || !r->m.ok) continue;
        if (r->turn == 1) a[na++] = r->m.ttft_s;
        else b[nb++] = r->m.ttft_s;
    }
    ms_latency_stats_compute(a, na, first);
    ms_latency_stats_compute(b, nb, later);
    free(a);
    free(b);
}
