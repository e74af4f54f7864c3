/*
 * POST /admin/workers {"encode": 4, "decode": 2, ...}: resizes pools while serving
 * (ms_engine_resize). All names and values are checked before any pool changes, so a
 * bad body changes nothing. Needs the API key when one is set (checked by the router).
 */
#include <math.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "server/http_server.h"

enum MHD_Result ms_api_admin_workers(ms_conn *c) {
    ms_http_server *s = c->srv;
    ms_api_error e;
    if (ms_json_depth(c->body.p ? c->body.p : "", c->body.n, 4) > 4) {
        ms_api_fail(&e, 400, NULL, "invalid_json", "body must be a flat JSON object");
        return ms_http_reply_error(c, &e);
    }
    cJSON *o = c->body.n ? cJSON_ParseWithLength(c->body.p, c->body.n) : NULL;
    if (!cJSON_IsObject(o) || !o->child) {
        cJSON_Delete(o);
        ms_api_fail(&e, 400, NULL, "invalid_json",
                    "body must be a JSON object like {\"encode\": 4} (preprocess, encode, prefill, decode)");
        return ms_http_reply_error(c, &e);
    }
    int32_t want[MS_STAGE_COUNT];
    for (int i = 0; i < MS_STAGE_COUNT; i++) want[i] = -1;
    const cJSON *f;
    bool ok = true;
    cJSON_ArrayForEach(f, o) {
        ms_stage st;
        if (!ms_stage_parse(f->string, &st)) {
            ok = ms_api_fail(&e, 400, f->string, "unknown_pool", "unknown pool (preprocess, encode, prefill, decode)");
            break;
        }
        if (!cJSON_IsNumber(f) || f->valuedouble != floor(f->valuedouble) || f->valuedouble < 1 ||
            f->valuedouble > 256) {
            ok = ms_api_fail(&e, 400, f->string, "invalid_value", "worker counts must be integers in [1, 256]");
            break;
        }
        want[st] = (int32_t)f->valuedouble;
    }
    cJSON_Delete(o);
    if (!ok) return ms_http_reply_error(c, &e);
    for (int i = 0; i < MS_STAGE_COUNT; i++) {
        if (want[i] < 0) continue;
        ms_error err = {0};
        if (ms_engine_resize(s->engine, (ms_stage)i, want[i], &err) != MS_OK) {
            ms_log(MS_LOG_WARN, "server", "resize refused: %s", err.msg);
            ms_api_fail(&e, 400, ms_stage_name((ms_stage)i), "resize_refused",
                        "the pool cannot be resized to that size in this mode");
            return ms_http_reply_error(c, &e);
        }
    }
    ms_engine_stats st;
    ms_engine_stats_get(s->engine, &st);
    ms_sbuf b = {0};
    ms_sbuf_adds(&b, "{\"workers\":{");
    for (int i = 0; i < MS_STAGE_COUNT; i++)
        ms_sbuf_addf(&b, "%s\"%s\":%d", i ? "," : "", ms_stage_name((ms_stage)i), st.stage[i].workers);
    ms_sbuf_adds(&b, "}}");
    return ms_http_reply(c, 200, "application/json", b.p);
}
