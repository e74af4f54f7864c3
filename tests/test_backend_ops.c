/*
 * Table-driven test of every backend op (in the spirit of llama.cpp's
 * test-backend-ops): for each op, several shapes including odd ones, random inputs
 * from a seeded RNG, compared with a naive double-precision reference
 * (test_backend_ops_ref.c). Every device buffer sits between guard bytes that must
 * come back untouched, outputs start as NaN so an unwritten element shows, and any
 * NaN/inf in an output fails.
 *
 * Inputs are made in f32 on the host, converted to the backend's act dtype, and the
 * reference sees the same rounded values. Error is the normalised MSE
 * sum((out - ref)^2) / sum(ref^2), with a per-op limit for f32 (CPU) and one for
 * bf16 backends.
 *
 *   test_backend_ops --backend cpu|cuda [--op NAME] [--seed S]
 * exits 77 (skipped) for cuda when no GPU is present or CUDA was not built in.
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
    const int64_t words = (int64_t)((GUARD * 2 + b.nbytes + 3) / 4);
    ms_error err = {0};
    MS_CHECKF(ms_backend_tensor(g_be, MS_DTYPE_I32, 1, &words, &b.raw, &err) == MS_OK, "%s",
              err.msg);
    /* guards get the sentinel; the data area 0xFF bytes (NaN in every float dtype) */
    uint8_t *host = malloc((size_t)words * 4);
    memset(host, GUARD_BYTE, (size_t)words * 4);
    memset(host + GUARD, 0xFF, b.nbytes);
    ms_op_upload(g_ctx, &b.raw, host);
    free(host);
    b.t.data = (char *)b.raw.data + GUARD;
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
        if ((i < GUARD || i >= GUARD + b->nbytes) && host[i] != GUARD_BYTE) ok = false;
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

/* Compares the output buffer with the reference, checks its guards, prints one line. */
void tbo_check_out(const char *op, const char *shape, const dbuf *out, const double *ref,
                      limits lim) {
    const int64_t n = ms_tensor_numel(&out->t);
    float *got = malloc(sizeof(float) * (size_t)(n ? n : 1));
    tbo_get_f32(out, got);
    double num = 0, den = 0, max_abs = 0;
    int64_t nonfinite = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) {
            nonfinite++;
            continue;
        }
        const double d = got[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
        if (fabs(d) > max_abs) max_abs = fabs(d);
    }
    const double nmse = num / (den > 1e-30 ? den : 1e-30);
    const double limit = g_bf16 ? lim.bf16 : lim.f32;
    const bool guards = tbo_guards_ok(out);
    const bool pass = nonfinite == 0 && guards && nmse <= limit;
    printf("%-16s %-44s nmse=%-10.3g max_abs=%-10.3g limit=%-8.2g %s%s%s\n", op, shape, nmse,
           max_abs, limit, pass ? "pass" : "FAIL", nonfinite ? " (NaN/inf in output)" : "",
           guards ? "" : " (guard bytes overwritten)");
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
    printf("%-16s %-44s mismatches=%lld/%lld %s%s\n", op, shape, (long long)bad, (long long)n,
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
    printf("%-16s %-44s NOT SUPPORTED by backend %s: FAIL\n", op, "", g_be->name);
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

int main(int argc, char **argv) {
    const char *backend = "cpu";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) backend = argv[++i];
        else if (strcmp(argv[i], "--op") == 0 && i + 1 < argc) g_only = argv[++i];
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            g_rng = strtoull(argv[++i], NULL, 0);
        else {
            fprintf(stderr, "usage: test_backend_ops --backend cpu|cuda [--op NAME] [--seed S]\n");
            return 2;
        }
    }
    if (strcmp(backend, "cuda") == 0 && !ms_cuda_available())
        return ms_test_skip("test_backend_ops", "no CUDA GPU here (or built without CUDA)");
    ms_error err = {0};
    g_be = strcmp(backend, "cpu") == 0 ? ms_backend_cpu_create(0)
                                       : ms_backend_create(backend, 0, 0, &err);
    if (!g_be) {
        fprintf(stderr, "test_backend_ops: backend %s: %s\n", backend, err.msg);
        return 1; /* a GPU is present (or cpu was asked): failing to start is an error */
    }
    g_ctx = ms_ctx_create(g_be);
    g_bf16 = g_be->act_dtype != MS_DTYPE_F32;
    printf("backend %s, act dtype %s\n", g_be->name, ms_dtype_name(g_be->act_dtype));
    tbo_cases_core();
    tbo_cases_attention();
    tbo_cases_misc();
    printf("%d cases, %d failed\n", g_cases, g_failed);
    ms_ctx_destroy(g_ctx);
    ms_backend_destroy(g_be);
    return ms_test_finish("test_backend_ops");
}
