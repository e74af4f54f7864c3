/* The simulator's cost model (see cost_model.h). */
#include "bench/cost_model.h"
#include "bench/images.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

/* "images": {"pool": N, "seed": S, "preprocess": [N], "frontend": [N] (optional)}. */
static ms_status images_read(const cJSON *o, ms_cost_images *im, ms_error *err) {
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, "pool"), *seed = cJSON_GetObjectItemCaseSensitive(o, "seed");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(o, "preprocess"), *fe = cJSON_GetObjectItemCaseSensitive(o, "frontend");
    if (!cJSON_IsNumber(n) || n->valuedouble < 1 || n->valuedouble > MS_COST_MAX_POOL || !cJSON_IsNumber(seed) ||
        seed->valuedouble < 0 || !cJSON_IsArray(pre) || cJSON_GetArraySize(pre) != (int)n->valuedouble ||
        (fe && (!cJSON_IsArray(fe) || cJSON_GetArraySize(fe) != (int)n->valuedouble)))
        return ms_errorf(err, MS_ERR_INVALID, "profile: images needs pool (1..%d), seed >= 0, and preprocess (and "
                         "optionally frontend) arrays of pool numbers", MS_COST_MAX_POOL);
    im->n = (int32_t)n->valuedouble;
    im->seed = (uint64_t)seed->valuedouble;
    im->has_frontend = fe != NULL;
    for (int32_t i = 0; i < im->n; i++) {
        const cJSON *p = cJSON_GetArrayItem(pre, i), *f = fe ? cJSON_GetArrayItem(fe, i) : NULL;
        if (!cJSON_IsNumber(p) || !(p->valuedouble >= 0) || (fe && (!cJSON_IsNumber(f) || !(f->valuedouble >= 0))))
            return ms_errorf(err, MS_ERR_INVALID, "profile: images: image %d needs seconds >= 0", i);
        im->preprocess[i] = p->valuedouble;
        im->frontend[i] = f ? f->valuedouble : 0;
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
    v = cJSON_GetObjectItemCaseSensitive(j, "max_model_len"); /* optional: older profiles lack it */
    if (st == MS_OK && v && (!cJSON_IsNumber(v) || v->valuedouble < 2 || v->valuedouble > (1 << 30)))
        st = ms_errorf(err, MS_ERR_INVALID, "profile: max_model_len must be a number >= 2");
    else if (v) m->max_model_len = (int32_t)v->valuedouble;
    if (st == MS_OK)
        st = curve_read(cJSON_GetObjectItemCaseSensitive(j, "preprocess"), "preprocess", "images", NULL, &m->preprocess, err);
    if (st == MS_OK) st = curve_read(cJSON_GetObjectItemCaseSensitive(j, "encode"), "encode", "images", NULL, &m->encode, err);
    if (st == MS_OK) st = curve_read(cJSON_GetObjectItemCaseSensitive(j, "prefill"), "prefill", "tokens", NULL, &m->prefill, err);
    const cJSON *im = cJSON_GetObjectItemCaseSensitive(j, "images");
    if (st == MS_OK && im) st = images_read(im, &m->images, err);
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

bool ms_cost_images_match(const ms_cost_model *m, int32_t pool_n, uint64_t seed) {
    return m->images.n > 0 && m->images.n == pool_n && m->images.seed == seed;
}

double ms_cost_preprocess_request(const ms_cost_model *m, bool per_image, int64_t index, int32_t images) {
    if (!per_image || images <= 0) return ms_cost_preprocess(m, images);
    double t = 0;
    for (int32_t i = 0; i < images; i++) t += m->images.preprocess[ms_image_pool_pick(index, i, m->images.n)];
    return t;
}

double ms_cost_frontend_request(const ms_cost_model *m, bool per_image, int64_t index, int32_t images) {
    if (!per_image || !m->images.has_frontend || images <= 0) return ms_cost_frontend(m, images);
    double t = ms_cost_frontend(m, 0);
    for (int32_t i = 0; i < images; i++) t += m->images.frontend[ms_image_pool_pick(index, i, m->images.n)];
    return t;
}

/* Adds c's points to the sorted set xs[*n]; false when it would pass the limit. */
static bool union_points(double *xs, int *n, const double *add, int n_add) {
    for (int k = 0; k < n_add; k++) {
        int i = 0;
        while (i < *n && xs[i] < add[k]) i++;
        if (i < *n && xs[i] == add[k]) continue;
        if (*n == MS_COST_MAX_POINTS) return false;
        memmove(xs + i + 1, xs + i, (size_t)(*n - i) * sizeof *xs);
        xs[i] = add[k];
        (*n)++;
    }
    return true;
}

typedef double (*curve_at)(const ms_cost_model *m, int32_t x);
static double at_preprocess(const ms_cost_model *m, int32_t x) { return ms_cost_preprocess(m, x); }
static double at_frontend(const ms_cost_model *m, int32_t x) { return ms_cost_frontend(m, x); }
static double at_encode(const ms_cost_model *m, int32_t x) { return ms_cost_encode(m, x); }
static double at_prefill(const ms_cost_model *m, int32_t x) { return ms_cost_prefill(m, x); }

/* out = mean over the models that have the curve (offset: the curve inside ms_cost_model),
 * evaluated as the simulator evaluates it. */
static ms_status mean_curve(const ms_cost_model *const *models, int n, size_t offset, curve_at at, const char *name,
                            ms_cost_curve *out, ms_error *err) {
    memset(out, 0, sizeof *out);
    int have = 0;
    for (int k = 0; k < n; k++) {
        const ms_cost_curve *c = (const ms_cost_curve *)((const char *)models[k] + offset);
        if (c->n == 0) continue;
        have++;
        if (!union_points(out->x, &out->n, c->x, c->n))
            return ms_errorf(err, MS_ERR_INVALID, "profiles: %s has more than %d distinct points together", name,
                             MS_COST_MAX_POINTS);
    }
    for (int i = 0; i < out->n; i++) {
        double sum = 0;
        for (int k = 0; k < n; k++)
            if (((const ms_cost_curve *)((const char *)models[k] + offset))->n)
                sum += at(models[k], (int32_t)out->x[i]);
        out->y[i] = sum / have;
    }
    return MS_OK;
}

ms_status ms_cost_model_mean(const ms_cost_model *const *models, int n, ms_cost_model *out, ms_error *err) {
    MS_CHECK(n >= 1);
    ms_cost_model m = *models[0];
    for (int k = 1; k < n; k++)
        if (models[k]->image_tokens != m.image_tokens)
            return ms_errorf(err, MS_ERR_INVALID, "profiles disagree on image_tokens (%d and %d): not the same model",
                             m.image_tokens, models[k]->image_tokens);
    for (int k = 1; k < n; k++) /* the smallest recorded context holds for all */
        if (models[k]->max_model_len > 0 && (m.max_model_len == 0 || models[k]->max_model_len < m.max_model_len))
            m.max_model_len = models[k]->max_model_len;
    static const struct {
        size_t offset;
        curve_at at;
        const char *name;
    } k_curves[] = {{offsetof(ms_cost_model, preprocess), at_preprocess, "preprocess"},
                    {offsetof(ms_cost_model, frontend), at_frontend, "frontend"},
                    {offsetof(ms_cost_model, encode), at_encode, "encode"},
                    {offsetof(ms_cost_model, prefill), at_prefill, "prefill"}};
    for (size_t c = 0; c < sizeof k_curves / sizeof k_curves[0]; c++) {
        ms_status st = mean_curve(models, n, k_curves[c].offset, k_curves[c].at, k_curves[c].name,
                                  (ms_cost_curve *)((char *)&m + k_curves[c].offset), err);
        if (st != MS_OK) return st;
    }
    /* Decode: every profile at every (context, batch) of the union grid. */
    m.n_ctx = 0;
    double batches[MS_COST_MAX_POINTS];
    int n_b = 0;
    for (int k = 0; k < n; k++) {
        if (!union_points(m.ctx, &m.n_ctx, models[k]->ctx, models[k]->n_ctx))
            return ms_errorf(err, MS_ERR_INVALID, "profiles: decode has more than %d contexts together",
                             MS_COST_MAX_POINTS);
        for (int c = 0; c < models[k]->n_ctx; c++)
            if (!union_points(batches, &n_b, models[k]->decode[c].x, models[k]->decode[c].n))
                return ms_errorf(err, MS_ERR_INVALID, "profiles: decode has more than %d batch sizes together",
                                 MS_COST_MAX_POINTS);
    }
    for (int c = 0; c < m.n_ctx; c++) {
        m.decode[c].n = n_b;
        for (int b = 0; b < n_b; b++) {
            double sum = 0;
            for (int k = 0; k < n; k++) sum += ms_cost_decode(models[k], (int32_t)batches[b], m.ctx[c]);
            m.decode[c].x[b] = batches[b];
            m.decode[c].y[b] = sum / n;
        }
    }
    /* Per-image costs: the mean where every profile measured the same pool, else none. */
    for (int k = 1; k < n && m.images.n; k++)
        if (models[k]->images.n != m.images.n || models[k]->images.seed != m.images.seed) m.images.n = 0;
    for (int32_t i = 0; i < m.images.n; i++) {
        double pre = 0, fe = 0;
        for (int k = 0; k < n; k++) {
            pre += models[k]->images.preprocess[i] / n;
            fe += models[k]->images.frontend[i] / n;
            m.images.has_frontend &= models[k]->images.has_frontend;
        }
        m.images.preprocess[i] = pre;
        m.images.frontend[i] = fe;
    }
    if (n > 1) {
        char dev[sizeof m.device];
        snprintf(dev, sizeof dev, "%.32s, mean of %d profiles", models[0]->device, n);
        memcpy(m.device, dev, sizeof dev);
    }
    *out = m;
    return MS_OK;
}

ms_status ms_cost_model_load_mean(const char *const *paths, int n, ms_cost_model *m, ms_error *err) {
    if (n < 1 || n > MS_COST_MAX_PROFILES)
        return ms_errorf(err, MS_ERR_INVALID, "between 1 and %d profiles, not %d", MS_COST_MAX_PROFILES, n);
    if (n == 1) return ms_cost_model_load(paths[0], m, err);
    ms_cost_model *all = ms_xcalloc((size_t)n, sizeof *all);
    const ms_cost_model *ptrs[MS_COST_MAX_PROFILES];
    ms_status st = MS_OK;
    for (int k = 0; k < n && st == MS_OK; k++) {
        st = ms_cost_model_load(paths[k], &all[k], err);
        ptrs[k] = &all[k];
    }
    if (st == MS_OK) st = ms_cost_model_mean(ptrs, n, m, err);
    free(all);
    return st;
}
