/*
 * POST /admin/workers {"encode": 4, "decode": 2, ...}: resizes pools while serving
 * (ms_engine_resize). Needs the API key when one is set (checked by the router).
 *
 * A body is applied whole or not at all. Every field is checked first: a known pool, an
 * integer count from 1 to the pool's cap (ms_admin_worker_cap: what the machine can run,
 * so a request cannot grow the server to a thousand threads), and a pool this engine
 * mode runs (monolithic mode has no encode or prefill pool). Only then are the pools
 * resized, one by one; should the engine still refuse one (more live workers than its
 * 1,024 slots per pool, or a device that cannot take another context), the pools
 * already resized are put back to their sizes from before the call. One mutex keeps
 * two admin calls from interleaving their resizes and put-backs.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "server/http_server.h"

static bool stage_in_mode(ms_engine_mode mode, ms_stage st) {
    return mode != MS_MODE_MONOLITHIC || st == MS_STAGE_PREPROCESS || st == MS_STAGE_DECODE;
}

/* Distinct device indices in a list like "0,1,0" (NULL or empty: the default "0"). */
static int32_t distinct_devices(const char *list) {
    bool seen[1024] = {false};
    int32_t n = 0;
    for (const char *p = list ? list : ""; *p;) {
        char *end;
        const long d = strtol(p, &end, 10);
        if (end == p) break;
        if (d >= 0 && d < 1024 && !seen[d]) {
            seen[d] = true;
            n++;
        }
        p = *end == ',' ? end + 1 : end;
        if (*end != ',') break;
    }
    return n > 0 ? n : 1;
}

int32_t ms_admin_worker_cap(const ms_http_server *s, ms_stage st, int32_t current) {
    int32_t cap = s->cfg.admin_max_workers;
    if (cap <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        if (cores < 1) cores = 1;
        const char *backend = s->engine ? ms_engine_backend_name(s->engine) : "cpu";
        if (st == MS_STAGE_PREPROCESS) cap = (int32_t)(2 * cores); /* image decode threads */
        else if (backend && !strcmp(backend, "cuda")) cap = 8 * distinct_devices(s->cfg.pool_devices[st]);
        else cap = (int32_t)cores; /* CPU model workers: more than one per core only contend */
        if (cap < 4) cap = 4;
        if (cap > 256) cap = 256;
    }
    return current > cap ? current : cap; /* a pool started above the cap may stay there */
}

/* Body -> want[stage] (-1: not named). False with e naming the first bad field. */
static bool parse_workers_body(const ms_conn *c, ms_engine_mode mode, int32_t want[MS_STAGE_COUNT],
                               ms_api_error *e) {
    for (int i = 0; i < MS_STAGE_COUNT; i++) want[i] = -1;
    if (ms_json_depth(c->body.p ? c->body.p : "", c->body.n, 4) > 4)
        return ms_api_fail(e, 400, NULL, "invalid_json", "body must be a flat JSON object");
    cJSON *o = NULL;
    if (c->body.n && !(o = ms_json_parse_strict(c->body.p, c->body.n, e))) return false;
    ms_engine_stats now;
    ms_engine_stats_get(c->srv->engine, &now);
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
        if (!cJSON_IsNumber(f) || f->valuedouble != floor(f->valuedouble) || f->valuedouble < 1) {
            ok = ms_api_fail(e, 400, f->string, "invalid_value", "worker counts must be positive integers");
            break;
        }
        const int32_t cap = ms_admin_worker_cap(c->srv, st, now.stage[st].workers);
        if (f->valuedouble > cap) {
            ok = ms_api_fail(e, 400, f->string, "max_workers",
                             "the %s pool may have at most %d workers on this machine (docs/server.md: "
                             "/admin/workers; --admin-max-workers sets the cap)",
                             ms_stage_name(st), cap);
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

/* Resizes every named pool, or none: on a refusal the pools already resized go back.
 * Also the autoscale controller's path (server/autoscale_ctl.c). */
bool ms_admin_apply_workers(ms_engine *engine, const int32_t want[MS_STAGE_COUNT], ms_api_error *e) {
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
    if (!parse_workers_body(c, ms_engine_mode_of(s->engine), want, &e) || !ms_admin_apply_workers(s->engine, want, &e))
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
