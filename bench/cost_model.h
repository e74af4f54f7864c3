/*
 * The simulator's cost model, read from profile.json (written by `bench profile` on the
 * real engine): batch latencies as piecewise-linear functions of the measured points,
 * extended linearly past the last one.
 *
 * profile.json:
 *   {"model": "...", "device": "cpu", "image_tokens": 64,
 *    "preprocess": {"images": [1, 4], "seconds": [..]},        per request, by images
 *    "encode":  {"images": [1, 2, 4, 8], "seconds": [..]},     one batch of images
 *    "prefill": {"tokens": [16, 128, 512], "seconds": [..]},   one batch of prompt tokens
 *    "decode":  {"batch": [1, 4, 16], "context": [128, 1024],
 *                "seconds": [[..per batch at context 128..], [..at 1024..]]},  one step
 *    "frontend": {"images": [0, 1, 8], "seconds": [..]}}      optional, per request
 * frontend: what a request spends outside the engine on its way to the first token (the
 * client's send, HTTP, JSON and base64 parsing, tokenizing, streaming the token back),
 * measured over HTTP by `bench profile --url`; without it the simulator adds nothing.
 */
#ifndef MS_BENCH_COST_MODEL_H
#define MS_BENCH_COST_MODEL_H

#include <stdint.h>

#include "kernels/ms_common.h"

enum { MS_COST_MAX_POINTS = 32 };

typedef struct ms_cost_curve {
    int n;
    double x[MS_COST_MAX_POINTS], y[MS_COST_MAX_POINTS];
} ms_cost_curve;

typedef struct ms_cost_model {
    char model[256], device[64];
    int32_t image_tokens;
    ms_cost_curve preprocess;             /* seconds per request vs images */
    ms_cost_curve frontend;               /* seconds per request vs images (n = 0: none) */
    ms_cost_curve encode;                 /* seconds per batch vs images */
    ms_cost_curve prefill;                /* seconds per batch vs tokens */
    int n_ctx;
    double ctx[MS_COST_MAX_POINTS];       /* decode contexts measured */
    ms_cost_curve decode[MS_COST_MAX_POINTS]; /* per context: seconds per step vs batch */
} ms_cost_model;

ms_status ms_cost_model_load(const char *path, ms_cost_model *m, ms_error *err);
/* Parses the JSON text (for tests). */
ms_status ms_cost_model_parse(const char *json, ms_cost_model *m, ms_error *err);
/* Piecewise-linear interpolation, linear extension at both ends, never below 0. */
double ms_cost_curve_eval(const ms_cost_curve *c, double x);
double ms_cost_preprocess(const ms_cost_model *m, int32_t images);
double ms_cost_frontend(const ms_cost_model *m, int32_t images);
double ms_cost_encode(const ms_cost_model *m, int32_t images);
double ms_cost_prefill(const ms_cost_model *m, int32_t tokens);
/* One decode step of `batch` sequences with mean context `ctx` (interpolated between
 * the measured contexts). */
double ms_cost_decode(const ms_cost_model *m, int32_t batch, double ctx);

#endif
