/*
 * Tensor headers and dtype conversions (see tensor.h).
 *
 * The scalar conversions are bit-exact: bf16 is the top half of an f32 rounded to
 * nearest even; f16 is IEEE binary16 with subnormals, rounded to nearest even. They are
 * what the weight loader uses to turn checkpoints into the CPU's f32 and what the tests
 * use to build bf16 inputs for the CUDA backend, so both see the same numbers.
 */
#include "kernels/tensor.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/ms_common.h"

size_t ms_dtype_size(ms_dtype dt) {
    switch (dt) {
    case MS_DTYPE_F32: return 4;
    case MS_DTYPE_BF16: return 2;
    case MS_DTYPE_F16: return 2;
    case MS_DTYPE_I32: return 4;
    }
    ms_panic(__FILE__, __LINE__, "bad dtype %d", (int)dt);
}

const char *ms_dtype_name(ms_dtype dt) {
    switch (dt) {
    case MS_DTYPE_F32: return "f32";
    case MS_DTYPE_BF16: return "bf16";
    case MS_DTYPE_F16: return "f16";
    case MS_DTYPE_I32: return "i32";
    }
    return "?";
}

int64_t ms_tensor_numel(const ms_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t ms_tensor_nbytes(const ms_tensor *t) {
    return (size_t)ms_tensor_numel(t) * ms_dtype_size(t->dtype);
}

int64_t ms_tensor_rows(const ms_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i + 1 < t->ndim; i++) n *= t->shape[i];
    return n;
}

int64_t ms_tensor_cols(const ms_tensor *t) {
    return t->ndim > 0 ? t->shape[t->ndim - 1] : 1;
}

bool ms_tensor_same_shape(const ms_tensor *a, const ms_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

const char *ms_tensor_describe(const ms_tensor *t, char *buf, size_t n) {
    if (n == 0) return buf;
    size_t off = 0;
    int w = snprintf(buf, n, "%s[", ms_dtype_name(t->dtype));
    off = w > 0 ? (size_t)w : 0;
    for (int i = 0; i < t->ndim && off < n; i++) {
        w = snprintf(buf + off, n - off, i ? ",%lld" : "%lld", (long long)t->shape[i]);
        off += w > 0 ? (size_t)w : 0;
    }
    if (off < n) snprintf(buf + off, n - off, "]");
    return buf;
}

ms_tensor ms_tensor_make(ms_dtype dt, int ndim, const int64_t *shape, void *data,
                         ms_device_kind dev, int device_index) {
    MS_CHECKF(ndim >= 0 && ndim <= MS_MAX_DIMS, "tensor with %d dims (max %d)", ndim,
              MS_MAX_DIMS);
    ms_tensor t = {.dtype = dt, .ndim = ndim, .data = data, .device = dev,
                   .device_index = device_index};
    for (int i = 0; i < ndim; i++) {
        MS_CHECKF(shape[i] >= 0, "tensor dim %d is negative (%lld)", i, (long long)shape[i]);
        t.shape[i] = shape[i];
    }
    return t;
}

ms_tensor ms_tensor_2d(ms_dtype dt, int64_t rows, int64_t cols, void *data,
                       ms_device_kind dev, int device_index) {
    const int64_t shape[2] = {rows, cols};
    return ms_tensor_make(dt, 2, shape, data, dev, device_index);
}

ms_tensor ms_tensor_reshape(const ms_tensor *t, int ndim, const int64_t *shape) {
    ms_tensor r = ms_tensor_make(t->dtype, ndim, shape, t->data, t->device, t->device_index);
    char a[96], b[96];
    MS_CHECKF(ms_tensor_numel(&r) == ms_tensor_numel(t), "reshape %s to %s changes numel",
              ms_tensor_describe(t, a, sizeof a), ms_tensor_describe(&r, b, sizeof b));
    return r;
}

ms_tensor ms_tensor_row_view(const ms_tensor *t, int64_t row0, int64_t nrows) {
    const int64_t rows = ms_tensor_rows(t), cols = ms_tensor_cols(t);
    char a[96];
    MS_CHECKF(row0 >= 0 && nrows >= 0 && row0 + nrows <= rows,
              "row view [%lld, %lld) out of %s", (long long)row0, (long long)(row0 + nrows),
              ms_tensor_describe(t, a, sizeof a));
    char *base = (char *)t->data + (size_t)(row0 * cols) * ms_dtype_size(t->dtype);
    return ms_tensor_2d(t->dtype, nrows, cols, base, t->device, t->device_index);
}

/* ---- scalar conversions ---- */

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t ms_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even; overflow carries to inf */
    return (uint16_t)(u >> 16);
}

float ms_bf16_to_f32(uint16_t h) {
    return bits_f32((uint32_t)h << 16);
}

/* Drops `shift` low bits of m, rounding to nearest even. */
static uint32_t round_shift_even(uint32_t m, int shift) {
    if (shift <= 0) return m;
    if (shift >= 32) return 0;
    const uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
    return q + (rem > half || (rem == half && (q & 1u)));
}

uint16_t ms_f32_to_f16(float f) {
    const uint32_t u = f32_bits(f);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const int32_t exp = (int32_t)((u >> 23) & 0xffu);
    uint32_t mant = u & 0x7fffffu;
    if (exp == 0xff) /* inf stays inf; NaN stays a (quiet) NaN */
        return (uint16_t)(sign | 0x7c00u | (mant ? 0x0200u | (mant >> 13) : 0u));
    const int32_t e = exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {
        /* Subnormal half (or zero): value = (1.m) * 2^(e-15), unit 2^-24. f32 subnormals
         * (exp == 0) are far below the half range and round to zero. */
        if (exp == 0 || e < -10) return sign;
        mant |= 0x800000u;
        return (uint16_t)(sign | round_shift_even(mant, 14 - e)); /* may carry to min normal */
    }
    /* Normal: rounding may carry into the exponent, up to inf, which is what IEEE wants. */
    const uint32_t h = ((uint32_t)e << 10) | (mant >> 13);
    const uint32_t rem = mant & 0x1fffu;
    return (uint16_t)(sign | (h + (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))));
}

float ms_f16_to_f32(uint16_t h) {
    const uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (exp == 0) {
        const float v = ldexpf((float)mant, -24); /* zero or subnormal, exact */
        return sign ? -v : v;
    }
    if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13));
    return bits_f32(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

static float load_float(const void *src, ms_dtype dt, int64_t i) {
    switch (dt) {
    case MS_DTYPE_F32: return ((const float *)src)[i];
    case MS_DTYPE_BF16: return ms_bf16_to_f32(((const uint16_t *)src)[i]);
    case MS_DTYPE_F16: return ms_f16_to_f32(((const uint16_t *)src)[i]);
    case MS_DTYPE_I32: break;
    }
    ms_panic(__FILE__, __LINE__, "load_float: bad dtype %s", ms_dtype_name(dt));
}

void ms_convert_host(void *dst, ms_dtype dst_dt, const void *src, ms_dtype src_dt, int64_t n) {
    if (dst_dt == src_dt) {
        memmove(dst, src, (size_t)n * ms_dtype_size(dst_dt));
        return;
    }
    MS_CHECKF(dst_dt != MS_DTYPE_I32 && src_dt != MS_DTYPE_I32,
              "convert %s -> %s: i32 converts only to i32", ms_dtype_name(src_dt),
              ms_dtype_name(dst_dt));
    switch (dst_dt) {
    case MS_DTYPE_F32:
        for (int64_t i = 0; i < n; i++) ((float *)dst)[i] = load_float(src, src_dt, i);
        break;
    case MS_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            ((uint16_t *)dst)[i] = ms_f32_to_bf16(load_float(src, src_dt, i));
        break;
    case MS_DTYPE_F16:
        for (int64_t i = 0; i < n; i++)
            ((uint16_t *)dst)[i] = ms_f32_to_f16(load_float(src, src_dt, i));
        break;
    case MS_DTYPE_I32: break;
    }
}
