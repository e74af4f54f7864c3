/*
 * The harness of the backend op tests (test_backend_ops and test_cuda_kernels): device
 * buffers between guard bytes, seeded random inputs, and the check of an output against
 * a double-precision reference.
 *
 * Every device buffer sits between guard bytes that must come back untouched, outputs
 * start as NaN so an unwritten element shows, and any NaN/inf in an output fails.
 * Inputs are made in f32 on the host, converted to the backend's act dtype, and the
 * reference sees the same rounded values. Two errors must be within the op's limits:
 * - the normalised MSE sum((out - ref)^2) / sum(ref^2) over the whole output, with a
 *   per-op limit for f32 (CPU) and one for bf16 backends;
 * - per row (last dimension), the largest |out - ref| over that row's scale
 *   max|ref| (floored at 1e-3 of the whole output's, so an all-zero row still has
 *   one), at most 4 x sqrt(NMSE limit): a whole wrong row (a dropped sequence, a
 *   head read from the wrong kv head) cannot hide in a small global error.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "tests/test_backend_ops.h"
#include "tests/test_util.h"

enum { GUARD = 256 };             /* bytes of sentinel before and after each buffer */
static const uint8_t GUARD_BYTE = 0xA5;

static ms_backend *g_be;
static ms_ctx *g_ctx;
static bool g_bf16;               /* act dtype is not f32: looser limits */
static const char *g_only;        /* --op filter */
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static int g_cases, g_failed;
static bool g_misalign;           /* new buffers start one element past 16-byte alignment */

void tbo_init(ms_backend *be, ms_ctx *ctx, const char *only_op, uint64_t seed) {
    g_be = be;
    g_ctx = ctx;
    g_bf16 = be->act_dtype != MS_DTYPE_F32;
    g_only = only_op;
    if (seed) g_rng = seed;
}

void tbo_counts(int *cases, int *failed) {
    *cases = g_cases;
    *failed = g_failed;
}

void tbo_misaligned(bool on) {
    g_misalign = on;
}

bool tbo_is_misaligned(void) {
    return g_misalign;
}

/* ---- random numbers ---- */

static uint64_t rng_next(void) {
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float tbo_uniform(float lo, float hi) { /* [lo, hi) */
    return lo + (hi - lo) * (float)(rng_next() >> 40) / (float)(1u << 24);
}

int32_t tbo_int(int32_t lo, int32_t hi) { /* [lo, hi] */
    return lo + (int32_t)(rng_next() % (uint64_t)(hi - lo + 1));
}

float *tbo_rand_f32(int64_t n, float lo, float hi) {
    float *p = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = tbo_uniform(lo, hi);
    return p;
}

/* ---- device buffers with guard bytes ---- */

dbuf tbo_new(ms_dtype dt, int ndim, const int64_t *shape) {
    dbuf b;
    b.t = ms_tensor_make(dt, ndim, shape, NULL, g_be->device, g_be->device_index);
    b.nbytes = ms_tensor_nbytes(&b.t);
    /* a view one element into its buffer: off every 16-byte boundary, still aligned to
     * its own element (as a row view of a [M, odd] tensor is) */
    b.lead = GUARD + (g_misalign ? ms_dtype_size(dt) : 0);
    const int64_t words = (int64_t)((b.lead + b.nbytes + GUARD + 3) / 4);
    ms_error err = {0};
    MS_CHECKF(ms_backend_tensor(g_be, MS_DTYPE_I32, 1, &words, &b.raw, &err) == MS_OK, "%s",
              err.msg);
    /* guards get the sentinel; the data area 0xFF bytes (NaN in every float dtype) */
    uint8_t *host = malloc((size_t)words * 4);
    memset(host, GUARD_BYTE, (size_t)words * 4);
    memset(host + b.lead, 0xFF, b.nbytes);
    ms_op_upload(g_ctx, &b.raw, host);
    free(host);
    b.t.data = (char *)b.raw.data + b.lead;
    return b;
}

dbuf tbo_new2(ms_dtype dt, int64_t a, int64_t c) {
    const int64_t s[2] = {a, c};
    return tbo_new(dt, 2, s);
}

/* Uploads host f32 values in the act dtype; rounds host to what the device holds. */
void tbo_set_f32(dbuf *b, float *host) {
    const int64_t n = ms_tensor_numel(&b->t);
    void *tmp = malloc(b->nbytes + 4);
    ms_convert_host(tmp, b->t.dtype, host, MS_DTYPE_F32, n);
    ms_convert_host(host, MS_DTYPE_F32, tmp, b->t.dtype, n);
    ms_op_upload(g_ctx, &b->t, tmp);
    free(tmp);
}

void tbo_set_i32(dbuf *b, const int32_t *host) {
    ms_op_upload(g_ctx, &b->t, host);
}

void tbo_get_f32(const dbuf *b, float *host) {
    const int64_t n = ms_tensor_numel(&b->t);
    void *tmp = malloc(b->nbytes + 4);
    ms_op_download(g_ctx, tmp, &b->t);
    ms_ctx_sync(g_ctx);
    ms_convert_host(host, MS_DTYPE_F32, tmp, b->t.dtype, n);
    free(tmp);
}

/* Both guard regions still hold the sentinel. */
bool tbo_guards_ok(const dbuf *b) {
    const size_t total = (size_t)ms_tensor_numel(&b->raw) * 4;
    uint8_t *host = malloc(total);
    ms_op_download(g_ctx, host, &b->raw);
    ms_ctx_sync(g_ctx);
    bool ok = true;
    for (size_t i = 0; i < total; i++)
        if ((i < b->lead || i >= b->lead + b->nbytes) && host[i] != GUARD_BYTE) ok = false;
    free(host);
    return ok;
}

void tbo_free(dbuf *b) {
    ms_backend_tensor_free(g_be, &b->raw);
}

/* An f32 input of the given shape with random values in [lo, hi), rounded to act. */
dbuf tbo_rand(int ndim, const int64_t *shape, float lo, float hi, float **host) {
    dbuf b = tbo_new(g_be->act_dtype, ndim, shape);
    *host = tbo_rand_f32(ms_tensor_numel(&b.t), lo, hi);
    tbo_set_f32(&b, *host);
    return b;
}

dbuf tbo_rand2(int64_t a, int64_t c, float lo, float hi, float **host) {
    const int64_t s[2] = {a, c};
    return tbo_rand(2, s, lo, hi, host);
}

dbuf tbo_i32(int ndim, const int64_t *shape, const int32_t *host) {
    dbuf b = tbo_new(MS_DTYPE_I32, ndim, shape);
    tbo_set_i32(&b, host);
    return b;
}

dbuf tbo_i32_1d(int64_t n, const int32_t *host) {
    return tbo_i32(1, &n, host);
}

/* ---- checking and reporting ---- */

bool tbo_selected(const char *op) {
    return !g_only || strcmp(g_only, op) == 0;
}

/* Largest per-row error over the row's scale (see the top of the file); *at gets the
 * element where it is. */
static double worst_row_error(const float *got, const double *ref, int64_t n, int64_t cols,
                              int64_t *at) {
    double global = 0, worst = 0;
    for (int64_t i = 0; i < n; i++) global = fmax(global, fabs(ref[i]));
    *at = -1;
    for (int64_t r0 = 0; r0 < n; r0 += cols) {
        double scale = 1e-3 * global, err = 0;
        int64_t err_at = r0;
        for (int64_t i = r0; i < r0 + cols && i < n; i++) {
            scale = fmax(scale, fabs(ref[i]));
            if (isfinite(got[i]) && fabs(got[i] - ref[i]) > err) {
                err = fabs(got[i] - ref[i]);
                err_at = i;
            }
        }
        const double rel = scale > 0 ? err / scale : err;
        if (rel > worst || *at < 0) {
            worst = rel;
            *at = err_at;
        }
    }
    return worst;
}

/* Compares the output buffer with the reference, checks its guards, prints one line. */
void tbo_check_out(const char *op, const char *shape, const dbuf *out, const double *ref,
                      limits lim) {
    const int64_t n = ms_tensor_numel(&out->t);
    float *got = malloc(sizeof(float) * (size_t)(n ? n : 1));
    tbo_get_f32(out, got);
    double num = 0, den = 0;
    int64_t nonfinite = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) {
            nonfinite++;
            continue;
        }
        const double d = got[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    const double nmse = num / (den > 1e-30 ? den : 1e-30);
    const double limit = g_bf16 ? lim.bf16 : lim.f32, row_limit = 4.0 * sqrt(limit);
    int64_t at = -1;
    const int64_t cols = out->t.ndim > 0 ? out->t.shape[out->t.ndim - 1] : 1;
    const double row_err = n > 0 ? worst_row_error(got, ref, n, cols > 0 ? cols : 1, &at) : 0;
    const bool guards = tbo_guards_ok(out);
    const bool pass = nonfinite == 0 && guards && nmse <= limit && row_err <= row_limit;
    char label[160];
    snprintf(label, sizeof label, "%s%s", shape, g_misalign ? " unaligned" : "");
    shape = label;
    printf("%-16s %-52s nmse=%-9.3g row=%-9.3g limit=%-7.2g/%-7.2g %s%s%s\n", op, shape, nmse,
           row_err, limit, row_limit, pass ? "pass" : "FAIL",
           nonfinite ? " (NaN/inf in output)" : "", guards ? "" : " (guard bytes overwritten)");
    if (!pass && at >= 0)
        printf("    worst row %lld: element %lld is %.6g, reference %.6g\n",
               (long long)(at / (cols > 0 ? cols : 1)), (long long)at, (double)got[at], ref[at]);
    g_cases++;
    g_failed += !pass;
    EXPECTF(pass, "%s %s", op, shape);
    free(got);
}

/* Same, for i32 outputs compared exactly. */
void tbo_check_ids(const char *op, const char *shape, const dbuf *out, const int32_t *ref) {
    const int64_t n = ms_tensor_numel(&out->t);
    int32_t *got = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    ms_op_download(g_ctx, got, &out->t);
    ms_ctx_sync(g_ctx);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += got[i] != ref[i];
    const bool guards = tbo_guards_ok(out);
    const bool pass = bad == 0 && guards;
    printf("%-16s %-52s mismatches=%lld/%lld %s%s\n", op, shape, (long long)bad, (long long)n,
           pass ? "pass" : "FAIL", guards ? "" : " (guard bytes overwritten)");
    g_cases++;
    g_failed += !pass;
    EXPECTF(pass, "%s %s", op, shape);
    free(got);
}

double *tbo_ref_buf(int64_t n) {
    return calloc((size_t)(n ? n : 1), sizeof(double));
}

double *tbo_to_double(const float *x, int64_t n) {
    double *d = tbo_ref_buf(n);
    for (int64_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

/* A backend that leaves an op out of its table fails that op (never "passes"). */
bool tbo_supported(const char *op, bool present) {
    if (present) return true;
    printf("%-16s %-52s NOT SUPPORTED by backend %s: FAIL\n", op, "", g_be->name);
    g_cases++;
    g_failed++;
    EXPECTF(false, "%s not tbo_supported", op);
    return false;
}

ms_backend *tbo_backend(void) {
    return g_be;
}

ms_ctx *tbo_ctx(void) {
    return g_ctx;
}

