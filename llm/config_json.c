/* Typed reads of optional config keys (see config_json.h). */
#include "llm/config_json.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The value as JSON text, shortened, for messages. */
static const char *value_text(const cJSON *v, char *buf, size_t n) {
    char *s = cJSON_PrintUnformatted(v);
    snprintf(buf, n, "%s", s ? s : "?");
    if (s && strlen(s) >= n && n > 4) memcpy(buf + n - 4, "...", 4);
    free(s);
    return buf;
}

static ms_status bad(const cJSON *v, const char *prefix, const char *key, const char *want, ms_error *err) {
    char buf[64];
    return ms_errorf(err, MS_ERR_INVALID, "%s%s must be %s, got %s", prefix, key, want,
                     value_text(v, buf, sizeof buf));
}

static bool as_int32(const cJSON *v, int32_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < -2147483648.0 || d > 2147483647.0) return false;
    *out = (int32_t)d;
    return true;
}

ms_status ms_json_int(const cJSON *obj, const char *prefix, const char *key, int32_t *out, ms_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) return MS_OK;
    if (!as_int32(v, out)) return bad(v, prefix, key, "an integer", err);
    return MS_OK;
}

ms_status ms_json_int_or_null(const cJSON *obj, const char *prefix, const char *key, int32_t *out,
                              ms_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (v && cJSON_IsNull(v)) return MS_OK;
    return ms_json_int(obj, prefix, key, out, err);
}

ms_status ms_json_token_id(const cJSON *obj, const char *prefix, const char *key, int32_t *out,
                           ms_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) return MS_OK;
    if (cJSON_IsNull(v)) {
        *out = -1;
        return MS_OK;
    }
    const cJSON *e = cJSON_IsArray(v) ? cJSON_GetArrayItem(v, 0) : v;
    if (!e || !as_int32(e, out) || *out < -1) return bad(v, prefix, key, "a token id", err);
    return MS_OK;
}

ms_status ms_json_float(const cJSON *obj, const char *prefix, const char *key, float *out, ms_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) return MS_OK;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return bad(v, prefix, key, "a number", err);
    *out = (float)v->valuedouble;
    return MS_OK;
}

ms_status ms_json_bool(const cJSON *obj, const char *prefix, const char *key, bool *out, ms_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) return MS_OK;
    if (!cJSON_IsBool(v)) return bad(v, prefix, key, "true or false", err);
    *out = cJSON_IsTrue(v);
    return MS_OK;
}

ms_status ms_json_string(const cJSON *obj, const char *prefix, const char *key, char *out, size_t cap,
                         ms_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) return MS_OK;
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap) return bad(v, prefix, key, "a short string", err);
    snprintf(out, cap, "%s", v->valuestring);
    return MS_OK;
}

ms_status ms_json_float3(const cJSON *obj, const char *key, float out[3], ms_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return MS_OK;
    if (cJSON_IsNumber(v) && isfinite(v->valuedouble)) {
        out[0] = out[1] = out[2] = (float)v->valuedouble;
        return MS_OK;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 3) return bad(v, "", key, "a list of 3 numbers", err);
    for (int i = 0; i < 3; i++) {
        const cJSON *e = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble)) return bad(v, "", key, "a list of 3 numbers", err);
        out[i] = (float)e->valuedouble;
    }
    return MS_OK;
}
