/* The simulator's cost model (see cost_model.h). */
#include "bench/cost_model.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

double ms_cost_curve_eval(const ms_cost_curve *c, double x) {
    if (c->n == 0) return 0;
    if (c->n == 1) return c->y[0] * (c->x[0] > 0 ? fmax(x, 0) / c->x[0] : 1); /* proportional */
    int i = 1;
    while (i < c->n - 1 && x > c->x[i]) i++;
    const double x0 = c->x[i - 1], x1 = c->x[i], y0 = c->y[i - 1], y1 = c->y[i];
    const double y = x1 > x0 ? y0 + (y1 - y0) * (x - x0) / (x1 - x0) : y1;
    return fmax(y, 0.0);
}

static ms_status curve_read(const cJSON *obj, const char *name, const char *xkey, const cJSON *ys, ms_cost_curve *c,
                            ms_error *err) {
    const cJSON *xs = cJSON_GetObjectItemCaseSensitive(obj, xkey);
    if (!ys) ys = cJSON_GetObjectItemCaseSensitive(obj, "seconds");
    const int n = cJSON_GetArraySize(xs);
    if (!cJSON_IsArray(xs) || !cJSON_IsArray(ys) || n < 1 || n > MS_COST_MAX_POINTS || cJSON_GetArraySize(ys) != n)
        return ms_errorf(err, MS_ERR_INVALID, "profile: %s needs arrays %s and seconds of the same length (1..%d)", name,
                         xkey, MS_COST_MAX_POINTS);
    c->n = n;
    for (int i = 0; i < n; i++) {
        const cJSON *x = cJSON_GetArrayItem(xs, i), *y = cJSON_GetArrayItem(ys, i);
        if (!cJSON_IsNumber(x) || !cJSON_IsNumber(y) || !(y->valuedouble >= 0) || (i && x->valuedouble <= c->x[i - 1]))
            return ms_errorf(err, MS_ERR_INVALID, "profile: %s point %d: numbers with increasing %s and seconds >= 0",
                             name, i, xkey);
        c->x[i] = x->valuedouble;
        c->y[i] = y->valuedouble;
    }
    return MS_OK;
}

ms_status ms_cost_model_parse(const char *json, ms_cost_model *m, ms_error *err) {
    memset(m, 0, sizeof *m);
    cJSON *j = cJSON_Parse(json);
    if (!j) return ms_errorf(err, MS_ERR_INVALID, "profile: not valid JSON");
    ms_status st = MS_OK;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "model");
    snprintf(m->model, sizeof m->model, "%s", cJSON_IsString(v) ? v->valuestring : "?");
    v = cJSON_GetObjectItemCaseSensitive(j, "device");
    snprintf(m->device, sizeof m->device, "%s", cJSON_IsString(v) ? v->valuestring : "?");
    v = cJSON_GetObjectItemCaseSensitive(j, "image_tokens");
    if (!cJSON_IsNumber(v) || v->valuedouble < 1) st = ms_errorf(err, MS_ERR_INVALID, "profile: image_tokens missing");
    else m->image_tokens = (int32_t)v->valuedouble;
    if (st == MS_OK)
        st = curve_read(cJSON_GetObjectItemCaseSensitive(j, "preprocess"), "preprocess", "images", NULL, &m->preprocess, err);
    if (st == MS_OK) st = curve_read(cJSON_GetObjectItemCaseSensitive(j, "encode"), "encode", "images", NULL, &m->encode, err);
    if (st == MS_OK) st = curve_read(cJSON_GetObjectItemCaseSensitive(j, "prefill"), "prefill", "tokens", NULL, &m->prefill, err);
    const cJSON *fe = cJSON_GetObjectItemCaseSensitive(j, "frontend");
    if (st == MS_OK && fe) st = curve_read(fe, "frontend", "images", NULL, &m->frontend, err);
    if (st == MS_OK) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "decode");
        const cJSON *ctx = cJSON_GetObjectItemCaseSensitive(d, "context"), *secs = cJSON_GetObjectItemCaseSensitive(d, "seconds");
        m->n_ctx = cJSON_GetArraySize(ctx);
        if (!cJSON_IsArray(ctx) || m->n_ctx < 1 || m->n_ctx > MS_COST_MAX_POINTS || cJSON_GetArraySize(secs) != m->n_ctx)
            st = ms_errorf(err, MS_ERR_INVALID, "profile: decode needs context and seconds (one row per context)");
        for (int i = 0; st == MS_OK && i < m->n_ctx; i++) {
            const cJSON *c = cJSON_GetArrayItem(ctx, i);
            if (!cJSON_IsNumber(c) || (i && c->valuedouble <= m->ctx[i - 1]))
                st = ms_errorf(err, MS_ERR_INVALID, "profile: decode contexts must increase");
            else m->ctx[i] = c->valuedouble;
            if (st == MS_OK) st = curve_read(d, "decode", "batch", cJSON_GetArrayItem(secs, i), &m->decode[i], err);
        }
    }
    cJSON_Delete(j);
    return st;
}

ms_status ms_cost_model_load(const char *path, ms_cost_model *m, ms_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return ms_errorf(err, MS_ERR_NOT_FOUND, "profile %s: cannot open", path);
    char *buf = ms_xmalloc(1 << 20);
    const size_t n = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    buf[n] = 0;
    ms_status st = ms_cost_model_parse(buf, m, err);
    free(buf);
    if (st != MS_OK) return ms_error_wrap(err, "%s", path);
    return MS_OK;
}

double ms_cost_preprocess(const ms_cost_model *m, int32_t images) { return ms_cost_curve_eval(&m->preprocess, images); }
double ms_cost_frontend(const ms_cost_model *m, int32_t images) {
    if (m->frontend.n == 1) return m->frontend.y[0]; /* one point: the same for every request */
    return ms_cost_curve_eval(&m->frontend, images);
}
double ms_cost_encode(const ms_cost_model *m, int32_t images) { return ms_cost_curve_eval(&m->encode, images); }
double ms_cost_prefill(const ms_cost_model *m, int32_t tokens) { return ms_cost_curve_eval(&m->prefill, tokens); }

double ms_cost_decode(const ms_cost_model *m, int32_t batch, double ctx) {
    if (m->n_ctx == 1 || ctx <= m->ctx[0]) return ms_cost_curve_eval(&m->decode[0], batch);
    int i = 1;
    while (i < m->n_ctx - 1 && ctx > m->ctx[i]) i++;
    const double a = ms_cost_curve_eval(&m->decode[i - 1], batch), b = ms_cost_curve_eval(&m->decode[i], batch);
    const double f = (ctx - m->ctx[i - 1]) / (m->ctx[i] - m->ctx[i - 1]);
    return fmax(0.0, a + (b - a) * f); /* linear in context past the last one too */
}
