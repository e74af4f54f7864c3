/*
 * A synthetic look-alike of the Azure LMM trace (TRACE.md), for tests, demos and
 * benchmarks where the real file is not available. Everything it produces is labelled
 * synthetic. The model (docs/bench.md has the details):
 * - arrivals: a non-homogeneous Poisson process per minute, text and image requests on
 *   separate rates: text with a daily rhythm, quieter weekend and a few text peaks;
 *   images on their own rhythm and noise (uncorrelated with text), with multi-hour
 *   bursts at TRACE.md's burst windows and short spikes;
 * - images per image request: a table that follows TRACE.md's CDF and clusters on
 *   perfect squares; during bursts a request draws max(u1, u2) (more images), outside
 *   a compensating distribution, so that the week's CDF stays the published one;
 * - tokens: quantile functions through the published percentiles, interpolated in log
 *   space, with Pareto tails of the published exponents above p90 (capped at the
 *   published maxima); the text GeneratedTokens step at 200-230 is part of the table;
 *   image-request prompts are rank-correlated with their image counts.
 * The weekly pattern is anchored at 2024-10-15T12:00:00Z (the trace's start) and
 * repeats for longer windows.
 */
#ifndef MS_BENCH_SYNTH_H
#define MS_BENCH_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "bench/trace.h"

#define MS_SYNTH_EPOCH_MS INT64_C(1728993600000) /* 2024-10-15T12:00:00.000Z */

typedef struct ms_synth_options {
    int64_t requests;         /* stop after this many rows (0: use duration_s) */
    double duration_s;        /* stop at start + duration (0: use requests) */
    uint64_t seed;
    int64_t start_ms;         /* first minute (default MS_SYNTH_EPOCH_MS) */
    double requests_per_week; /* mean volume (default 1,000,000 as the trace) */
} ms_synth_options;

void ms_synth_options_default(ms_synth_options *o);

typedef struct ms_synth ms_synth;
ms_status ms_synth_create(const ms_synth_options *o, ms_synth **out, ms_error *err);
/* Next row in time order; false when the requested size is reached. */
bool ms_synth_next(ms_synth *s, ms_trace_row *row);
void ms_synth_destroy(ms_synth *s);

/* Writes a trace file (gzip when path ends in .gz); *rows gets the count. */
ms_status ms_synth_write(const ms_synth_options *o, const char *path, int64_t *rows, ms_error *err);

/* The samplers, for tests: u in [0, 1). */
int32_t ms_synth_images_for_u(double u);
int32_t ms_synth_context_tokens(bool image, double u);
int32_t ms_synth_generated_tokens(bool image, double u);

#endif
