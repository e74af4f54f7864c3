/* The synthetic trace generator (model in synth.h; figures from TRACE.md). */
#include "bench/synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

enum { WEEK_MIN = 7 * 24 * 60, MAX_IMAGES = 10000 };

/* ---- images per image request: TRACE.md's CDF, clustered on perfect squares ---- */
/* Ranges (lo, hi] of the count with their probability mass; inside a range perfect
 * squares take `square_share` of the mass, and every value is weighted by v^-slope. */
typedef struct img_range {
    int32_t lo, hi;
    double mass, square_share, slope;
} img_range;

static const img_range k_img_ranges[] = {
    {0, 1, 0.66, 1.0, 0},          /* 1 image: 66% */
    {1, 4, 0.05, 0.70, 1},         /* <= 4: 71% */
    {4, 9, 0.15, 0.65, 1},         /* <= 9: 86% */
    {9, 16, 0.02, 0.60, 1},        /* <= 16: 88% */
    {16, 25, 0.04, 0.60, 1},       /* <= 25: 92% */
    {25, 100, 0.025, 0.55, 1},     /* <= 100: 94.5% */
    {100, 500, 0.05, 0.50, 1},     /* <= 500: 99.5% */
    {500, MAX_IMAGES, 0.005, 0.50, 2.0}, /* the rest up to the maximum, ~10,000 */
};

static double g_img_cdf[MAX_IMAGES + 1]; /* P(count <= v), filled once */
static bool g_img_ready;

static bool is_square(int32_t v) {
    const int32_t r = (int32_t)lround(sqrt((double)v));
    return r * r == v;
}

static void img_table_build(void) {
    double *pmf = ms_xcalloc(MAX_IMAGES + 1, sizeof *pmf);
    for (size_t k = 0; k < sizeof k_img_ranges / sizeof k_img_ranges[0]; k++) {
        const img_range *r = &k_img_ranges[k];
        double w_sq = 0, w_other = 0;
        for (int32_t v = r->lo + 1; v <= r->hi; v++) {
            const double w = pow((double)v, -r->slope);
            if (is_square(v)) w_sq += w;
            else w_other += w;
        }
        const double sq_share = w_other > 0 ? r->square_share : 1.0;
        for (int32_t v = r->lo + 1; v <= r->hi; v++) {
            const double w = pow((double)v, -r->slope);
            pmf[v] = is_square(v) ? r->mass * sq_share * w / w_sq : r->mass * (1 - sq_share) * w / w_other;
        }
    }
    double c = 0;
    for (int32_t v = 0; v <= MAX_IMAGES; v++) g_img_cdf[v] = (c += pmf[v]);
    g_img_cdf[MAX_IMAGES] = 1.0;
    free(pmf);
    g_img_ready = true;
}

int32_t ms_synth_images_for_u(double u) {
    if (!g_img_ready) img_table_build(); /* deterministic; a second racing build writes the same values */
    int32_t lo = 1, hi = MAX_IMAGES; /* smallest v with cdf[v] > u */
    while (lo < hi) {
        const int32_t mid = lo + (hi - lo) / 2;
        if (g_img_cdf[mid] > u) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* ---- tokens: quantile knots interpolated in log space, Pareto tail above the last ---- */
typedef struct knot {
    double u, v;
} knot;

typedef struct token_dist {
    double ones;              /* P(value == 1) */
    const knot *knots;
    int n;
    double tail_alpha, max;
} token_dist;

static const knot k_ctx_text[] = {{0, 8}, {0.01, 100}, {0.10, 176}, {0.25, 370}, {0.50, 792}, {0.75, 1471}, {0.90, 3151}};
static const knot k_ctx_image[] = {{0, 250}, {0.10, 435}, {0.25, 882}, {0.50, 1422}, {0.75, 4049}, {0.90, 9703}};
static const knot k_gen_text[] = {{0.05, 2}, {0.15, 20}, {0.30, 70}, {0.50, 180}, {0.52, 200}, {0.72, 230}, {0.90, 500}};
static const knot k_gen_image[] = {{0.015, 2}, {0.10, 12}, {0.50, 80}, {0.80, 200}, {0.97, 500}};

static const token_dist k_dist_ctx_text = {0, k_ctx_text, 7, 2.9, 150000};
static const token_dist k_dist_ctx_image = {0, k_ctx_image, 6, 4.4, 40000};
static const token_dist k_dist_gen_text = {0.05, k_gen_text, 7, 3.1, 16000};
static const token_dist k_dist_gen_image = {0.015, k_gen_image, 5, 3.2, 10000};

static int32_t token_quantile(const token_dist *d, double u) {
    if (u < d->ones) return 1;
    const knot *k = d->knots;
    double v;
    if (u <= k[0].u) {
        v = k[0].v;
    } else if (u >= k[d->n - 1].u) {
        /* Pareto: survival ~ x^-alpha beyond the last knot. */
        const double s0 = 1 - k[d->n - 1].u, s = fmax(1 - u, 1e-12);
        v = fmin(k[d->n - 1].v * pow(s0 / s, 1.0 / d->tail_alpha), d->max);
    } else {
        int i = 1;
        while (k[i].u < u) i++;
        const double f = (u - k[i - 1].u) / (k[i].u - k[i - 1].u);
        v = exp(log(k[i - 1].v) + f * (log(k[i].v) - log(k[i - 1].v)));
    }
    const double r = floor(v + 0.5);
    return r < 1 ? 1 : (int32_t)r;
}

int32_t ms_synth_context_tokens(bool image, double u) {
    return token_quantile(image ? &k_dist_ctx_image : &k_dist_ctx_text, u);
}

int32_t ms_synth_generated_tokens(bool image, double u) {
    return token_quantile(image ? &k_dist_gen_image : &k_dist_gen_text, u);
}

/* Standard normal CDF and its inverse (bisection: exact enough, cheap at our rates). */
static double norm_cdf(double z) { return 0.5 * erfc(-z / M_SQRT2); }
static double norm_inv(double u) {
    double lo = -9, hi = 9;
    for (int i = 0; i < 48; i++) {
        const double mid = 0.5 * (lo + hi);
        if (norm_cdf(mid) < u) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* ---- arrival rates: one week of per-minute rates from the epoch ---- */
/* TRACE.md's image bursts, in hours from the epoch (Oct 15 12:00 UTC). */
static const double k_bursts[][2] = {{6, 12}, {68, 78}, {125, 132}, {141, 153}};
static const double k_burst_factor = 1.7;   /* image request rate inside a burst */
static const double k_image_corr = 0.6;     /* images vs prompt length (Gaussian copula) */

struct ms_synth {
    ms_synth_options o;
    ms_rng rng;
    double *text_rate, *image_rate; /* [WEEK_MIN] requests per minute */
    uint8_t *burst;                 /* [WEEK_MIN] inside a burst window */
    double burst_share;             /* w: share of the week's image requests in bursts */
    int64_t minute;                 /* next minute to generate */
    int64_t emitted;
    ms_trace_row *buf;              /* the current minute's rows */
    int64_t buf_n, buf_cap, buf_pos;
    bool done;
};

static double bump(double h, double center, double width) {
    double d = fabs(h - center);
    if (d > 12) d = 24 - d; /* wrap around midnight */
    return exp(-0.5 * (d / width) * (d / width));
}

static void rates_build(ms_synth *s) {
    ms_rng r;
    ms_rng_seed(&r, s->o.seed ^ 0x5eedA2u);
    double ar_text = 0, ar_image = 0;
    double text_sum = 0, image_sum = 0, burst_sum = 0;
    double peak_until = -1, peak_factor = 1, spike_until = -1, spike_factor = 1;
    for (int m = 0; m < WEEK_MIN; m++) {
        const int64_t t_ms = MS_SYNTH_EPOCH_MS + (int64_t)m * 60000;
        const int64_t days = t_ms / 86400000;
        const int dow = (int)((days + 4) % 7); /* 0 = Sunday (1970-01-01 was a Thursday) */
        const bool weekend = dow == 0 || dow == 6;
        const double h = (double)(t_ms % 86400000) / 3600000.0;
        const double hours = m / 60.0;
        if (m % 60 == 0) { /* hourly log-noise, independent for text and images */
            ar_text = 0.6 * ar_text + 0.18 * ms_rng_normal(&r);
            ar_image = 0.75 * ar_image + 0.2 * ms_rng_normal(&r);
            if (hours > peak_until && ms_rng_uniform(&r) < 1.0 / 30) { /* ~one text peak a day */
                peak_until = hours + 0.5 + 1.5 * ms_rng_uniform(&r);
                peak_factor = 1.5 + 0.8 * ms_rng_uniform(&r);
            }
        }
        if (m > spike_until && ms_rng_uniform(&r) < 3.0 / 1440) { /* ~3 image spikes a day */
            spike_until = m + 2 + 6 * ms_rng_uniform(&r);
            spike_factor = 2.5 + 2.5 * ms_rng_uniform(&r);
        }
        double text = (0.45 + 0.9 * bump(h, 15.5, 4.0) + 0.25 * bump(h, 3, 3)) * (weekend ? 0.55 : 1.0);
        text *= exp(ar_text) * (hours <= peak_until ? peak_factor : 1.0);
        double image = (0.6 + 0.5 * bump(h, 7, 4.5)) * (weekend ? 0.8 : 1.0) * exp(ar_image);
        bool in_burst = false;
        for (size_t b = 0; b < sizeof k_bursts / sizeof k_bursts[0]; b++)
            if (hours >= k_bursts[b][0] && hours < k_bursts[b][1]) in_burst = true;
        if (in_burst) image *= k_burst_factor;
        if (m <= spike_until) image *= spike_factor;
        s->text_rate[m] = text;
        s->image_rate[m] = image;
        s->burst[m] = in_burst;
        text_sum += text;
        image_sum += image;
        if (in_burst) burst_sum += image;
    }
    const double half = 0.5 * s->o.requests_per_week;
    for (int m = 0; m < WEEK_MIN; m++) {
        s->text_rate[m] *= half / text_sum;
        s->image_rate[m] *= half / image_sum;
    }
    /* The compensation below needs w <= 1/2 (max of two uniforms inside bursts). */
    s->burst_share = fmin(burst_sum / image_sum, 0.5);
}

void ms_synth_options_default(ms_synth_options *o) {
    memset(o, 0, sizeof *o);
    o->start_ms = MS_SYNTH_EPOCH_MS;
    o->requests_per_week = 1e6;
}

ms_status ms_synth_create(const ms_synth_options *o, ms_synth **out, ms_error *err) {
    if (o->requests <= 0 && !(o->duration_s > 0))
        return ms_errorf(err, MS_ERR_INVALID, "synth: give --requests N or --duration D");
    if (!(o->requests_per_week > 0)) return ms_errorf(err, MS_ERR_INVALID, "synth: requests per week must be positive");
    ms_synth *s = ms_xcalloc(1, sizeof *s);
    s->o = *o;
    s->text_rate = ms_xmalloc(WEEK_MIN * sizeof *s->text_rate);
    s->image_rate = ms_xmalloc(WEEK_MIN * sizeof *s->image_rate);
    s->burst = ms_xmalloc(WEEK_MIN);
    rates_build(s);
    ms_rng_seed(&s->rng, o->seed);
    *out = s;
    return MS_OK;
}

void ms_synth_destroy(ms_synth *s) {
    if (!s) return;
    free(s->text_rate);
    free(s->image_rate);
    free(s->burst);
    free(s->buf);
    free(s);
}

static int cmp_row(const void *a, const void *b) {
    const int64_t x = ((const ms_trace_row *)a)->t_ms, y = ((const ms_trace_row *)b)->t_ms;
    return (x > y) - (x < y);
}

/* u for an image count: inside bursts max(u1, u2) (CDF u^2); outside the inverse of
 * G(u) = (u - w u^2) / (1 - w), so the week's mixture w u^2 + (1 - w) G(u) = u. */
static double image_u(ms_synth *s, bool in_burst) {
    const double w = s->burst_share;
    if (in_burst) return fmax(ms_rng_uniform(&s->rng), ms_rng_uniform(&s->rng));
    const double v = ms_rng_uniform(&s->rng);
    if (w <= 1e-9) return v;
    return (1 - sqrt(fmax(0.0, 1 - 4 * w * (1 - w) * v))) / (2 * w);
}

static void minute_fill(ms_synth *s) {
    const int64_t t0 = s->o.start_ms + s->minute * 60000;
    int64_t idx = ((t0 - MS_SYNTH_EPOCH_MS) / 60000) % WEEK_MIN;
    if (idx < 0) idx += WEEK_MIN;
    const int64_t n_text = ms_rng_poisson(&s->rng, s->text_rate[idx]);
    const int64_t n_image = ms_rng_poisson(&s->rng, s->image_rate[idx]);
    const int64_t n = n_text + n_image;
    if (n > s->buf_cap) {
        s->buf_cap = n;
        s->buf = ms_xrealloc(s->buf, (size_t)n * sizeof *s->buf);
    }
    for (int64_t i = 0; i < n; i++) {
        ms_trace_row *r = &s->buf[i];
        r->t_ms = t0 + (int64_t)(ms_rng_uniform(&s->rng) * 60000.0);
        const bool image = i >= n_text;
        if (image) {
            const double u = image_u(s, s->burst[idx]);
            r->n_images = ms_synth_images_for_u(u);
            const double z = k_image_corr * norm_inv(u) + sqrt(1 - k_image_corr * k_image_corr) * ms_rng_normal(&s->rng);
            r->context_tokens = ms_synth_context_tokens(true, norm_cdf(z));
        } else {
            r->n_images = 0;
            r->context_tokens = ms_synth_context_tokens(false, ms_rng_uniform(&s->rng));
        }
        r->generated_tokens = ms_synth_generated_tokens(image, ms_rng_uniform(&s->rng));
    }
    qsort(s->buf, (size_t)n, sizeof *s->buf, cmp_row);
    s->buf_n = n;
    s->buf_pos = 0;
    s->minute++;
}

bool ms_synth_next(ms_synth *s, ms_trace_row *row) {
    const int64_t end = s->o.duration_s > 0 ? s->o.start_ms + (int64_t)llround(s->o.duration_s * 1000) : INT64_MAX;
    while (!s->done) {
        if (s->o.requests > 0 && s->emitted >= s->o.requests) break;
        if (s->buf_pos < s->buf_n) {
            const ms_trace_row *r = &s->buf[s->buf_pos++];
            if (r->t_ms >= end) break;
            *row = *r;
            s->emitted++;
            return true;
        }
        if (s->o.start_ms + s->minute * 60000 >= end) break;
        minute_fill(s);
    }
    s->done = true;
    return false;
}

ms_status ms_synth_write(const ms_synth_options *o, const char *path, int64_t *rows, ms_error *err) {
    ms_synth *s;
    ms_status st = ms_synth_create(o, &s, err);
    if (st != MS_OK) return st;
    const size_t len = strlen(path);
    const bool gz = len > 3 && !strcmp(path + len - 3, ".gz");
    gzFile f = gzopen(path, gz ? "wb6" : "wbT");
    if (!f) {
        ms_synth_destroy(s);
        return ms_errorf(err, MS_ERR_IO, "synth: cannot write %s", path);
    }
    gzbuffer(f, 1 << 17);
    bool ok = gzprintf(f, "%s\n", MS_TRACE_HEADER) > 0;
    int64_t n = 0;
    ms_trace_row r;
    char ts[32];
    while (ok && ms_synth_next(s, &r)) {
        ms_trace_time_format(r.t_ms, ts, sizeof ts);
        ok = gzprintf(f, "%s,%d,%d,%d\n", ts, r.n_images, r.context_tokens, r.generated_tokens) > 0;
        n++;
    }
    ok = gzclose(f) == Z_OK && ok;
    ms_synth_destroy(s);
    if (!ok) return ms_errorf(err, MS_ERR_IO, "synth: writing %s failed", path);
    if (rows) *rows = n;
    return MS_OK;
}
