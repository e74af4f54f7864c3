/*
 * Trace statistics: counts, quantiles by class, per-minute and per-hour rates. Rates
 * are per minute of replay time (after --time-scale); with the default scale that is
 * trace time. Quantiles are numpy's linear interpolation (as the metrics).
 */
#include "bench/stats.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench/metrics.h"

const int32_t ms_stats_img_cdf_at[MS_STATS_IMG_CDF_POINTS] = {1, 4, 9, 16, 25, 100, 500};

/* The report's radix sort: qsort's comparator calls were ~40% of `bench stats` on a
 * 1M-row trace (seven arrays of up to 1M values). */
void ms_quantiles_compute(double *v, int64_t n, ms_quantiles *q) {
    memset(q, 0, sizeof *q);
    q->n = n;
    if (!n) return;
    ms_sort_doubles(v, n);
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += v[i];
    q->mean = sum / (double)n;
    q->p10 = ms_percentile(v, n, 10);
    q->p25 = ms_percentile(v, n, 25);
    q->p50 = ms_percentile(v, n, 50);
    q->p75 = ms_percentile(v, n, 75);
    q->p80 = ms_percentile(v, n, 80);
    q->p90 = ms_percentile(v, n, 90);
    q->p97 = ms_percentile(v, n, 97);
    q->p99 = ms_percentile(v, n, 99);
    q->max = v[n - 1];
}

void ms_trace_stats_compute(const ms_trace_set *set, ms_trace_stats *st) {
    memset(st, 0, sizeof *st);
    const int64_t n = set->n;
    st->requests = n;
    if (!n) return;
    double *ctx[3], *gen[3], *imgs = ms_xmalloc((size_t)n * sizeof *imgs);
    int64_t cn[3] = {0};
    for (int c = 0; c < 3; c++) {
        ctx[c] = ms_xmalloc((size_t)n * sizeof *ctx[c]);
        gen[c] = ms_xmalloc((size_t)n * sizeof *gen[c]);
    }
    int64_t under100 = 0, ones[3] = {0}, step = 0, cdf_hits[MS_STATS_IMG_CDF_POINTS] = {0};
    const double last_s = set->reqs[n - 1].send_s;
    const int64_t n_min = (int64_t)floor(last_s / 60.0) + 1, n_hour = (int64_t)floor(last_s / 3600.0) + 1;
    double *rpm = ms_xcalloc((size_t)n_min, sizeof *rpm), *tpm = ms_xcalloc((size_t)n_min, sizeof *tpm);
    double *ipm = ms_xcalloc((size_t)n_min, sizeof *ipm), *impm = ms_xcalloc((size_t)n_min, sizeof *impm);
    double *h_all = ms_xcalloc((size_t)n_hour, sizeof *h_all), *h_img = ms_xcalloc((size_t)n_hour, sizeof *h_img);
    st->first_ms = set->reqs[0].t_ms;
    st->last_ms = set->reqs[n - 1].t_ms;
    for (int64_t i = 0; i < n; i++) {
        const ms_trace_req *r = &set->reqs[i];
        const bool image = r->n_images > 0;
        const int c = image ? 2 : 1;
        const int64_t m = (int64_t)floor(r->send_s / 60.0), h = (int64_t)floor(r->send_s / 3600.0);
        rpm[m]++;
        h_all[h]++;
        if (image) {
            st->image_requests++;
            st->total_images += r->n_images;
            imgs[cn[2]] = r->n_images;
            for (int k = 0; k < MS_STATS_IMG_CDF_POINTS; k++) cdf_hits[k] += r->n_images <= ms_stats_img_cdf_at[k];
            ipm[m]++;
            impm[m] += r->n_images;
            h_img[h]++;
        } else {
            st->text_requests++;
            tpm[m]++;
            under100 += r->context_tokens < 100;
            step += r->generated_tokens >= 200 && r->generated_tokens <= 230;
        }
        for (int k = 0; k < 2; k++) {
            const int cc = k == 0 ? 0 : c;
            ctx[cc][cn[cc]] = r->context_tokens;
            gen[cc][cn[cc]] = r->generated_tokens;
            ones[cc] += r->generated_tokens == 1;
            cn[cc]++;
        }
    }
    ms_quantiles_compute(imgs, cn[2], &st->images_per_request);
    for (int k = 0; k < MS_STATS_IMG_CDF_POINTS; k++)
        st->img_cdf[k] = cn[2] ? (double)cdf_hits[k] / (double)cn[2] : 0;
    for (int c = 0; c < 3; c++) {
        ms_quantiles_compute(ctx[c], cn[c], &st->context[c]);
        ms_quantiles_compute(gen[c], cn[c], &st->generated[c]);
        st->generated_one[c] = cn[c] ? (double)ones[c] / (double)cn[c] : 0;
        free(ctx[c]);
        free(gen[c]);
    }
    st->text_context_under_100 = cn[1] ? (double)under100 / (double)cn[1] : 0;
    st->text_generated_200_230 = cn[1] ? (double)step / (double)cn[1] : 0;
    st->duration_s = last_s - set->reqs[0].send_s;
    const double minutes = fmax(st->duration_s / 60.0, 1.0);
    st->mean_rpm = (double)n / minutes;
    for (int64_t m = 0; m < n_min; m++) {
        st->peak_rpm = fmax(st->peak_rpm, rpm[m]);
        st->peak_text_rpm = fmax(st->peak_text_rpm, tpm[m]);
        st->peak_image_rpm = fmax(st->peak_image_rpm, ipm[m]);
        st->peak_images_pm = fmax(st->peak_images_pm, impm[m]);
    }
    /* Image share over full hours only (a partial last hour would be noise). */
    const int64_t full = (int64_t)floor(last_s / 3600.0);
    int64_t k = 0;
    for (int64_t h = 0; h < full; h++)
        if (h_all[h] > 0) h_img[k++] = h_img[h] / h_all[h];
    st->full_hours = k;
    if (k) {
        ms_sort_doubles(h_img, k);
        st->image_share_min = h_img[0];
        st->image_share_median = ms_percentile(h_img, k, 50);
        st->image_share_max = h_img[k - 1];
    }
    free(imgs);
    free(rpm);
    free(tpm);
    free(ipm);
    free(impm);
    free(h_all);
    free(h_img);
}

static void print_q(FILE *out, const char *name, const ms_quantiles *q) {
    fprintf(out, "  %-28s n=%-8lld p10 %-7.0f p25 %-7.0f p50 %-7.0f p75 %-7.0f p90 %-7.0f p99 %-7.0f max %.0f\n", name,
            (long long)q->n, q->p10, q->p25, q->p50, q->p75, q->p90, q->p99, q->max);
}

void ms_trace_stats_print(const ms_trace_stats *st, const char *label, FILE *out) {
    char a[32], b[32];
    ms_trace_time_format(st->first_ms, a, sizeof a);
    ms_trace_time_format(st->last_ms, b, sizeof b);
    fprintf(out, "trace %s\n", label);
    fprintf(out, "  requests %lld: text-only %lld (%.1f%%), image %lld (%.1f%%), images %lld\n",
            (long long)st->requests, (long long)st->text_requests,
            st->requests ? 100.0 * (double)st->text_requests / (double)st->requests : 0.0,
            (long long)st->image_requests,
            st->requests ? 100.0 * (double)st->image_requests / (double)st->requests : 0.0, (long long)st->total_images);
    fprintf(out, "  first %s  last %s  duration %.1f s (%.2f h)\n", a, b, st->duration_s, st->duration_s / 3600);
    fprintf(out, "  requests/min: mean %.1f, peak %.0f (text peak %.0f, image peak %.0f); images/min peak %.0f\n",
            st->mean_rpm, st->peak_rpm, st->peak_text_rpm, st->peak_image_rpm, st->peak_images_pm);
    if (st->full_hours)
        fprintf(out, "  hourly image-request share (%lld full hours): min %.1f%%, median %.1f%%, max %.1f%%\n",
                (long long)st->full_hours, 100 * st->image_share_min, 100 * st->image_share_median,
                100 * st->image_share_max);
    else
        fprintf(out, "  hourly image-request share: n/a (less than one full hour)\n");
    const ms_quantiles *q = &st->images_per_request;
    fprintf(out, "  images per image request: p50 %.0f p90 %.0f p99 %.0f max %.0f mean %.2f\n", q->p50, q->p90, q->p99,
            q->max, q->mean);
    fprintf(out, "  images CDF:");
    for (int k = 0; k < MS_STATS_IMG_CDF_POINTS; k++)
        fprintf(out, " <=%d %.1f%%", ms_stats_img_cdf_at[k], 100 * st->img_cdf[k]);
    fprintf(out, "\n");
    static const char *const k_cls[3] = {"all", "text", "image"};
    for (int c = 0; c < 3; c++) {
        char name[64];
        snprintf(name, sizeof name, "ContextTokens (%s)", k_cls[c]);
        print_q(out, name, &st->context[c]);
    }
    for (int c = 0; c < 3; c++) {
        char name[64];
        snprintf(name, sizeof name, "GeneratedTokens (%s)", k_cls[c]);
        print_q(out, name, &st->generated[c]);
    }
    fprintf(out, "  text prompts < 100 tokens %.1f%%; 1 generated token: text %.1f%%, image %.1f%%; "
                 "text generating 200-230: %.1f%%\n",
            100 * st->text_context_under_100, 100 * st->generated_one[1], 100 * st->generated_one[2],
            100 * st->text_generated_200_230);
}

static cJSON *q_json(const ms_quantiles *q) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "n", (double)q->n);
    cJSON_AddNumberToObject(o, "mean", q->mean);
    cJSON_AddNumberToObject(o, "p10", q->p10);
    cJSON_AddNumberToObject(o, "p25", q->p25);
    cJSON_AddNumberToObject(o, "p50", q->p50);
    cJSON_AddNumberToObject(o, "p75", q->p75);
    cJSON_AddNumberToObject(o, "p80", q->p80);
    cJSON_AddNumberToObject(o, "p90", q->p90);
    cJSON_AddNumberToObject(o, "p97", q->p97);
    cJSON_AddNumberToObject(o, "p99", q->p99);
    cJSON_AddNumberToObject(o, "max", q->max);
    return o;
}

char *ms_trace_stats_json(const ms_trace_stats *st, const char *label) {
    cJSON *o = cJSON_CreateObject();
    char a[32], b[32];
    ms_trace_time_format(st->first_ms, a, sizeof a);
    ms_trace_time_format(st->last_ms, b, sizeof b);
    cJSON_AddStringToObject(o, "trace", label);
    cJSON_AddNumberToObject(o, "requests", (double)st->requests);
    cJSON_AddNumberToObject(o, "text_requests", (double)st->text_requests);
    cJSON_AddNumberToObject(o, "image_requests", (double)st->image_requests);
    cJSON_AddNumberToObject(o, "total_images", (double)st->total_images);
    cJSON_AddStringToObject(o, "first_timestamp", a);
    cJSON_AddStringToObject(o, "last_timestamp", b);
    cJSON_AddNumberToObject(o, "duration_s", st->duration_s);
    cJSON_AddNumberToObject(o, "mean_requests_per_min", st->mean_rpm);
    cJSON_AddNumberToObject(o, "peak_requests_per_min", st->peak_rpm);
    cJSON_AddNumberToObject(o, "peak_text_requests_per_min", st->peak_text_rpm);
    cJSON_AddNumberToObject(o, "peak_image_requests_per_min", st->peak_image_rpm);
    cJSON_AddNumberToObject(o, "peak_images_per_min", st->peak_images_pm);
    cJSON_AddNumberToObject(o, "hourly_image_share_min", st->image_share_min);
    cJSON_AddNumberToObject(o, "hourly_image_share_median", st->image_share_median);
    cJSON_AddNumberToObject(o, "hourly_image_share_max", st->image_share_max);
    cJSON_AddItemToObject(o, "images_per_image_request", q_json(&st->images_per_request));
    cJSON *cdf = cJSON_AddObjectToObject(o, "images_cdf");
    for (int k = 0; k < MS_STATS_IMG_CDF_POINTS; k++) {
        char key[16];
        snprintf(key, sizeof key, "le_%d", ms_stats_img_cdf_at[k]);
        cJSON_AddNumberToObject(cdf, key, st->img_cdf[k]);
    }
    static const char *const k_cls[3] = {"all", "text", "image"};
    cJSON *ctx = cJSON_AddObjectToObject(o, "context_tokens"), *gen = cJSON_AddObjectToObject(o, "generated_tokens");
    for (int c = 0; c < 3; c++) {
        cJSON_AddItemToObject(ctx, k_cls[c], q_json(&st->context[c]));
        cJSON_AddItemToObject(gen, k_cls[c], q_json(&st->generated[c]));
    }
    cJSON_AddNumberToObject(o, "text_context_under_100", st->text_context_under_100);
    cJSON_AddNumberToObject(o, "text_generated_one", st->generated_one[1]);
    cJSON_AddNumberToObject(o, "image_generated_one", st->generated_one[2]);
    cJSON_AddNumberToObject(o, "text_generated_200_230", st->text_generated_200_230);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}
