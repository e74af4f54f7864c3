/*
 * The simulator's cost model, read from profile.json (written by `bench profile` on the
 * real engine): batch latencies as piecewise-linear functions of the measured points,
 * extended linearly past the last one.
 *
 * profile.json:
 *   {"model": "...", "device": "cpu", "image_tokens": 64, "max_model_len": 40960,
 *    "preprocess": {"images": [1, 4], "seconds": [..]},        per request, by images
 *    "encode":  {"images": [1, 2, 4, 8], "seconds": [..]},     one batch of images
 *    "prefill": {"tokens": [16, 128, 512], "seconds": [..]},   one batch of prompt tokens
 *    "decode":  {"batch": [1, 4, 16], "context": [128, 1024],
 *                "seconds": [[..per batch at context 128..], [..at 1024..]]},  one step
 *    "frontend": {"images": [0, 1, 8], "seconds": [..]},      optional, per request
 *    "images": {"pool": 16, "seed": 7, "preprocess": [..16], "frontend": [..16]}}  optional
 * frontend: what a request spends outside the engine on its way to the first token (the
 * client's send, HTTP, JSON and base64 parsing, tokenizing, streaming the token back),
 * measured over HTTP by `bench profile --url`; without it the simulator adds nothing.
 * images: each image of the replayer's pool (`bench replay --image-pool N --seed S` builds
 * the same images) on its own: preprocess seconds, and (with --url) front-end seconds
 * beyond a text-only request's. Image costs follow their size and format (one large PNG
 * can cost 20x the median), so when a run uses the same pool the simulator charges each
 * request the images the replayer sends it (ms_image_pool_pick) instead of the mean.
 */
#ifndef MS_BENCH_COST_MODEL_H
#define MS_BENCH_COST_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/ms_common.h"

enum { MS_COST_MAX_POINTS = 32, MS_COST_MAX_POOL = 256 };

typedef struct ms_cost_images {
    int32_t n;                            /* pool size; 0: not measured */
    uint64_t seed;
    bool has_frontend;
    double preprocess[MS_COST_MAX_POOL];  /* seconds, image i alone */
    double frontend[MS_COST_MAX_POOL];    /* seconds beyond a text-only request's */
} ms_cost_images;

typedef struct ms_cost_curve {
    int n;
    double x[MS_COST_MAX_POINTS], y[MS_COST_MAX_POINTS];
} ms_cost_curve;

typedef struct ms_cost_model {
    char model[256], device[64];
    int32_t image_tokens;
    int32_t max_model_len;                /* the profiled engine's context (0: not recorded) */
    ms_cost_curve preprocess;             /* seconds per request vs images */
    ms_cost_curve frontend;               /* seconds per request vs images (n = 0: none) */
    ms_cost_curve encode;                 /* seconds per batch vs images */
    ms_cost_curve prefill;                /* seconds per batch vs tokens */
    int n_ctx;
    double ctx[MS_COST_MAX_POINTS];       /* decode contexts measured */
    ms_cost_curve decode[MS_COST_MAX_POINTS]; /* per context: seconds per step vs batch */
    ms_cost_images images;                /* per pool image (optional) */
} ms_cost_model;

ms_status ms_cost_model_load(const char *path, ms_cost_model *m, ms_error *err);
/* The mean of n profiles of the same model (taken at different times, to average out a
 * machine whose speed drifts): each curve on the union of the measured points, which is
 * exact (a mean of piecewise-linear functions is piecewise-linear on the union of their
 * points) except below the first point where a curve's extension is clamped at 0;
 * frontend over the profiles that have one. Fails when image_tokens differ or a
 * union has more than MS_COST_MAX_POINTS points. */
ms_status ms_cost_model_mean(const ms_cost_model *const *models, int n, ms_cost_model *out, ms_error *err);
enum { MS_COST_MAX_PROFILES = 16 };
/* Loads 1..MS_COST_MAX_PROFILES profile files; more than one: their mean. */
ms_status ms_cost_model_load_mean(const char *const *paths, int n, ms_cost_model *m, ms_error *err);
/* Parses the JSON text (for tests). */
ms_status ms_cost_model_parse(const char *json, ms_cost_model *m, ms_error *err);
/* Piecewise-linear interpolation, linear extension at both ends, never below 0. Inline
 * with ms_cost_decode: the simulator evaluates them for every batch (10^8 in a week). */
static inline double ms_cost_curve_eval(const ms_cost_curve *c, double x) {
    if (c->n == 0) return 0;
    if (c->n == 1) return c->y[0] * (c->x[0] > 0 ? (x > 0 ? x : 0) / c->x[0] : 1); /* proportional */
    int i = 1;
    while (i < c->n - 1 && x > c->x[i]) i++;
    const double x0 = c->x[i - 1], x1 = c->x[i], y0 = c->y[i - 1], y1 = c->y[i];
    const double y = x1 > x0 ? y0 + (y1 - y0) * (x - x0) / (x1 - x0) : y1;
    return y > 0 ? y : 0.0; /* not fmax: a libm call */
}
double ms_cost_preprocess(const ms_cost_model *m, int32_t images);
double ms_cost_frontend(const ms_cost_model *m, int32_t images);
double ms_cost_encode(const ms_cost_model *m, int32_t images);
double ms_cost_prefill(const ms_cost_model *m, int32_t tokens);
/* Preprocess and front-end time of request `index` with `images` images when the run
 * sends the profile's image pool (pool_n images of seed `seed`): each image's own cost;
 * otherwise the per-count curves above. */
bool ms_cost_images_match(const ms_cost_model *m, int32_t pool_n, uint64_t seed);
double ms_cost_preprocess_request(const ms_cost_model *m, bool per_image, int64_t index, int32_t images);
double ms_cost_frontend_request(const ms_cost_model *m, bool per_image, int64_t index, int32_t images);
/* One decode step of `batch` sequences with mean context `ctx` (interpolated between
 * the measured contexts). */
static inline double ms_cost_decode(const ms_cost_model *m, int32_t batch, double ctx) {
    if (m->n_ctx == 1 || ctx <= m->ctx[0]) return ms_cost_curve_eval(&m->decode[0], batch);
    int i = 1;
    while (i < m->n_ctx - 1 && ctx > m->ctx[i]) i++;
    const double a = ms_cost_curve_eval(&m->decode[i - 1], batch), b = ms_cost_curve_eval(&m->decode[i], batch);
    const double f = (ctx - m->ctx[i - 1]) / (m->ctx[i] - m->ctx[i - 1]);
    const double y = a + (b - a) * f; /* linear in context past the last one too */
    return y > 0 ? y : 0.0;
}

#endif
