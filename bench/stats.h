/* `modserve bench stats`: the figures TRACE.md describes, computed from a trace. */
#ifndef MS_BENCH_STATS_H
#define MS_BENCH_STATS_H

#include <stdint.h>

#include "bench/trace.h"

enum { MS_STATS_IMG_CDF_POINTS = 7 };          /* P(images <= 1, 4, 9, 16, 25, 100, 500) */
extern const int32_t ms_stats_img_cdf_at[MS_STATS_IMG_CDF_POINTS];

typedef struct ms_quantiles {
    int64_t n;
    double p10, p25, p50, p75, p80, p90, p97, p99, max, mean;
} ms_quantiles;

/* Sorts v[0..n) in place (NaN not allowed) and fills q: numpy-default percentiles,
 * mean, max; all 0 for n == 0. */
void ms_quantiles_compute(double *v, int64_t n, ms_quantiles *q);

typedef struct ms_trace_stats {
    int64_t requests, text_requests, image_requests, total_images;
    ms_quantiles images_per_request;           /* image requests */
    double img_cdf[MS_STATS_IMG_CDF_POINTS];
    ms_quantiles context[3], generated[3];     /* [all, text, image] */
    double text_context_under_100;             /* share of text prompts < 100 tokens */
    double generated_one[3];                   /* share generating exactly 1 token */
    double text_generated_200_230;             /* share of text requests in [200, 230] */
    int64_t first_ms, last_ms;                 /* trace timestamps */
    double duration_s;                         /* replay time after scaling */
    double mean_rpm, peak_rpm, peak_text_rpm, peak_image_rpm, peak_images_pm;
    double image_share_min, image_share_median, image_share_max; /* over full hours */
    int64_t full_hours;
} ms_trace_stats;

void ms_trace_stats_compute(const ms_trace_set *set, ms_trace_stats *st);
void ms_trace_stats_print(const ms_trace_stats *st, const char *label, FILE *out);
/* cJSON text (malloc'd). */
char *ms_trace_stats_json(const ms_trace_stats *st, const char *label);

int ms_bench_stats_main(int argc, char **argv);
int ms_bench_synth_main(int argc, char **argv);

#endif
