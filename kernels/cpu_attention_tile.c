/*
 * One attention tile against key blocks, flash-style: for each block of keys, scores
 * S = scale * Q K^T with one sgemm, then per row the running max, the rescale of what
 * was accumulated under the old max, P = exp(S - max) (masked keys get 0), and
 * acc += P V with a second sgemm. The result equals the plain max-subtracted softmax
 * (exp(s - m_old) * exp(m_old - m_new) instead of exp(s - m_new): a rounding or two);
 * the softmax sum stays in double. OpenBLAS is single-threaded here (cpu_matmul.c):
 * the caller runs tiles on the backend's pool.
 */
#include "kernels/cpu_attention_tile.h"

#include "kernels/ms_common.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void ms_attn_tile_init(ms_attn_tile *t, int64_t max_rows, int64_t D) {
    const size_t R = (size_t)(max_rows > 0 ? max_rows : 1), d = (size_t)(D > 0 ? D : 1);
    const size_t KB = MS_ATTN_KEY_BLOCK;
    *t = (ms_attn_tile){.D = D};
    t->q = ms_xmalloc(R * d * sizeof(float));
    t->n_keys = ms_xmalloc(R * sizeof(int64_t));
    t->acc = ms_xmalloc(R * d * sizeof(float));
    t->row_max = ms_xmalloc(R * sizeof(float));
    t->row_sum = ms_xmalloc(R * sizeof(double));
    t->p = ms_xmalloc(R * KB * sizeof(float));
    t->k = ms_xmalloc(KB * d * sizeof(float));
    t->v = ms_xmalloc(KB * d * sizeof(float));
}

void ms_attn_tile_free(ms_attn_tile *t) {
    free(t->q);
    free(t->n_keys);
    free(t->acc);
    free(t->row_max);
    free(t->row_sum);
    free(t->p);
    free(t->k);
    free(t->v);
    *t = (ms_attn_tile){0};
}

void ms_attn_tile_begin(ms_attn_tile *t) {
    memset(t->acc, 0, (size_t)(t->rows * t->D) * sizeof(float));
    for (int64_t r = 0; r < t->rows; r++) {
        t->row_max[r] = -INFINITY;
        t->row_sum[r] = 0.0;
    }
}

/* Four floats as one value (GCC/Clang vector extensions: one SSE register on x86-64,
 * NEON on arm64), so the per-score loops below run 4 wide in any build. */
typedef float f32x4 __attribute__((vector_size(16)));
typedef int32_t i32x4 __attribute__((vector_size(16)));
typedef double f64x4 __attribute__((vector_size(32)));

static inline f32x4 splat4(float x) {
    return (f32x4){x, x, x, x};
}
static inline f32x4 load4(const float *p) {
    f32x4 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline f32x4 select4(i32x4 mask, f32x4 a, f32x4 b) { /* mask ? a : b */
    return (f32x4)(((i32x4)a & mask) | ((i32x4)b & ~mask));
}

/* exp(x) for x <= 0 (scores minus their running max), 4 at once: x = n ln2 + r with
 * |r| <= ln2/2, e^r by the Taylor polynomial to r^7/7! (truncation under 2.2e-8
 * relative, below f32 rounding), then 2^n built in the exponent bits. Within 1 ulp of
 * glibc's expf on every float in [-87.3, 0] (bench/results/cpu-attention-2026-12-08.md
 * says how it was checked). Below -87.3, where
 * expf goes subnormal, it returns 0 (such a term is under 1e-37 of a row sum that holds
 * at least 1). NaN stays NaN. */
static inline f32x4 exp4_nonpos(f32x4 x) {
    const f32x4 t = x * 1.44269504f - 0.5f; /* x log2(e), shifted so truncation rounds */
    const f32x4 tc = select4(t < -126.0f, splat4(-126.0f), t);
    const i32x4 n = __builtin_convertvector(tc, i32x4);
    const f32x4 nf = __builtin_convertvector(n, f32x4);
    const f32x4 r = (x - nf * 0.693359375f) + nf * 2.12194440e-4f; /* x - n ln2, two parts */
    f32x4 e = splat4(1.0f / 5040.0f);
    e = e * r + 1.0f / 720.0f;
    e = e * r + 1.0f / 120.0f;
    e = e * r + 1.0f / 24.0f;
    e = e * r + 1.0f / 6.0f;
    e = e * r + 0.5f;
    e = e * r + 1.0f;
    e = e * r + 1.0f;
    const f32x4 two_n = (f32x4)((n + 127) << 23);
    return select4(x < -87.3f, splat4(0.0f), e * two_n);
}

static inline float exp_nonpos(float x) {
    return exp4_nonpos(splat4(x))[0];
}

/* Row r's part of one key block: p[0..nk) holds its scaled scores; keys from `lim` on
 * are masked. Turns the scores into exp(s - new max) and rescales acc and the sum. */
static void softmax_block_row(ms_attn_tile *t, int64_t r, float *p, int64_t nk, int64_t lim) {
    f32x4 mx4 = splat4(t->row_max[r]);
    int64_t j = 0;
    for (; j + 4 <= lim; j += 4) {
        const f32x4 v = load4(p + j);
        mx4 = select4(v > mx4, v, mx4);
    }
    float mx = mx4[0];
    for (int l = 1; l < 4; l++) mx = mx4[l] > mx ? mx4[l] : mx;
    for (; j < lim; j++) mx = p[j] > mx ? p[j] : mx;
    /* the first block a row sees has nothing to rescale (and -inf - -inf is NaN) */
    const float corr = t->row_max[r] == -INFINITY ? 0.0f : exp_nonpos(t->row_max[r] - mx);
    f64x4 sum4 = {0};
    for (j = 0; j + 4 <= lim; j += 4) {
        const f32x4 e = exp4_nonpos(load4(p + j) - mx);
        memcpy(p + j, &e, sizeof e);
        sum4 += __builtin_convertvector(e, f64x4);
    }
    double sum = 0.0;
    for (; j < lim; j++) {
        p[j] = exp_nonpos(p[j] - mx);
        sum += p[j];
    }
    for (int l = 0; l < 4; l++) sum += sum4[l];
    for (j = lim; j < nk; j++) p[j] = 0.0f;
    if (corr != 1.0f) {
        float *a = t->acc + r * t->D;
        for (int64_t d = 0; d < t->D; d++) a[d] *= corr;
    }
    t->row_sum[r] = t->row_sum[r] * corr + sum;
    t->row_max[r] = mx;
}

void ms_attn_tile_keys(ms_attn_tile *t, int64_t key0, int64_t nk, const float *k, int64_t ldk,
                       const float *v, int64_t ldv, float scale) {
    MS_CHECK(nk > 0 && nk <= MS_ATTN_KEY_BLOCK);
    /* Rows that see at least one of these keys: with rows ordered by position (as both
     * callers do) they are a suffix, so the products skip the rows before it. */
    int64_t r0 = t->rows, r1 = 0;
    for (int64_t r = 0; r < t->rows; r++)
        if (t->n_keys[r] > key0) {
            r0 = r < r0 ? r : r0;
            r1 = r + 1;
        }
    if (r0 >= r1) return;
    const int64_t M = r1 - r0, D = t->D, KB = MS_ATTN_KEY_BLOCK;
    float *p = t->p + r0 * KB; /* [M, KB] */
    /* p = scale * q k^T   ([M, D] x [nk, D]^T) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)nk, (int)D, scale,
                t->q + r0 * D, (int)D, k, (int)ldk, 0.0f, p, (int)KB);
    for (int64_t r = r0; r < r1; r++) {
        int64_t lim = t->n_keys[r] - key0;
        lim = lim < 0 ? 0 : lim > nk ? nk : lim;
        softmax_block_row(t, r, p + (r - r0) * KB, nk, lim);
    }
    /* acc += p v   ([M, nk] x [nk, D]) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)D, (int)nk, 1.0f, p,
                (int)KB, v, (int)ldv, 1.0f, t->acc + r0 * D, (int)D);
}

void ms_attn_tile_row_out(const ms_attn_tile *t, int64_t r, float *out) {
    const float inv = t->row_sum[r] > 0.0 ? (float)(1.0 / t->row_sum[r]) : 0.0f;
    const float *a = t->acc + r * t->D;
    for (int64_t d = 0; d < t->D; d++) out[d] = a[d] * inv;
}
