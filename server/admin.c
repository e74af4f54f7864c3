/*
 * POST /admin/workers {"encode": 4, "decode": 2, ...}: resizes pools while serving
 * (ms_engine_resize). Needs the API key when one is set (checked by the router).
 *
 * A body is applied whole or not at all. Every field is checked first: a known pool, an
 * integer count in [1, 256], and a pool this engine mode runs (monolithic mode has no
 * encode or prefill pool). Only then are the pools resized, one by one; should the
 * engine still refuse one (its limit on worker slots over the server's life), the pools
 * already resized are put back to their sizes from before the call. One mutex keeps
 * two admin calls from interleaving their resizes and put-backs.
 */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "server/http_server.h"

static bool stage_in_mode(ms_engine_mode mode, ms_stage st) {
    return mode != MS_MODE_MONOLITHIC || st == MS_STAGE_PREPROCESS || st == MS_STAGE_DECODE;
}

/* Body -> want[stage] (-1: not named). False with e naming the first bad field. */
static bool parse_workers_body(const ms_conn *c, ms_engine_mode mode, int32_t want[MS_STAGE_COUNT],
                               ms_api_error *e) {
    for (int i = 0; i < MS_STAGE_COUNT; i++) want[i] = -1;
    if (ms_json_depth(c->body.p ? c->body.p : "", c->body.n, 4) > 4)
        return ms_api_fail(e, 400, NULL, "invalid_json", "body must be a flat JSON object");
    cJSON *o = c->body.n ? cJSON_ParseWithLength(c->body.p, c->body.n) : NULL;
    if (!cJSON_IsObject(o) || !o->child) {
        cJSON_Delete(o);
        return ms_api_fail(e, 400, NULL, "invalid_json",
                           "body must be a JSON object like {\"encode\": 4} (preprocess, encode, prefill, decode)");
    }
    bool ok = true;
    const cJSON *f;
    cJSON_ArrayForEach(f, o) {
        ms_stage st;
        if (!ms_stage_parse(f->string, &st)) {
            ok = ms_api_fail(e, 400, f->string, "unknown_pool", "unknown pool (preprocess, encode, prefill, decode)");
            break;
        }
        if (!cJSON_IsNumber(f) || f->valuedouble != floor(f->valuedouble) || f->valuedouble < 1 ||
            f->valuedouble > 256) {
            ok = ms_api_fail(e, 400, f->string, "invalid_value", "worker counts must be integers in [1, 256]");
            break;
        }
        if (!stage_in_mode(mode, st)) {
            ok = ms_api_fail(e, 400, f->string, "pool_not_used",
                             "the %s pool is not used in %s mode (it has preprocess and decode pools)",
                             ms_stage_name(st), ms_engine_mode_name(mode));
            break;
        }
        want[st] = (int32_t)f->valuedouble;
    }
    cJSON_Delete(o);
    return ok;
}

/* Resizes every named pool, or none: on a refusal the pools already resized go back. */
static bool apply_workers(ms_engine *engine, const int32_t want[MS_STAGE_COUNT], ms_api_error *e) {
    static pthread_mutex_t admin_mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&admin_mu);
    ms_engine_stats before;
    ms_engine_stats_get(engine, &before);
    bool ok = true;
    int failed = MS_STAGE_COUNT;
    for (int i = 0; i < MS_STAGE_COUNT && ok; i++) {
        if (want[i] < 0) continue;
        ms_error err = {0};
        if (ms_engine_resize(engine, (ms_stage)i, want[i], &err) != MS_OK) {
            ms_log(MS_LOG_WARN, "server", "resize refused: %s", err.msg);
            failed = i;
            ok = ms_api_fail(e, 400, ms_stage_name((ms_stage)i), "resize_refused",
                             "the %s pool cannot be resized to %d workers now; no pool was changed",
                             ms_stage_name((ms_stage)i), want[i]);
        }
    }
    for (int i = 0; i < failed && !ok; i++) {
        if (want[i] < 0) continue;
        ms_error err = {0};
        if (ms_engine_resize(engine, (ms_stage)i, before.stage[i].workers, &err) != MS_OK)
            ms_log(MS_LOG_ERROR, "server", "could not put the %s pool back to %d workers: %s",
                   ms_stage_name((ms_stage)i), before.stage[i].workers, err.msg);
    }
    pthread_mutex_unlock(&admin_mu);
    return ok;
}

enum MHD_Result ms_api_admin_workers(ms_conn *c) {
    ms_http_server *s = c->srv;
    ms_api_error e;
    int32_t want[MS_STAGE_COUNT];
    if (!parse_workers_body(c, ms_engine_mode_of(s->engine), want, &e) || !apply_workers(s->engine, want, &e))
        return ms_http_reply_error(c, &e);
    ms_engine_stats st;
    ms_engine_stats_get(s->engine, &st);
    ms_sbuf b = {0};
    ms_sbuf_adds(&b, "{\"workers\":{");
    for (int i = 0; i < MS_STAGE_COUNT; i++)
        ms_sbuf_addf(&b, "%s\"%s\":%d", i ? "," : "", ms_stage_name((ms_stage)i), st.stage[i].workers);
    ms_sbuf_adds(&b, "}}");
    return ms_http_reply(c, 200, "application/json", b.p);
}
