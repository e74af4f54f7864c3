/*
 * Tensor helpers: shapes, views, and the bit-exact bf16/f16 conversions (rounding to
 * nearest even, NaN, inf, subnormals, overflow), plus the scratch arena's promises.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/arena.h"
#include "kernels/backend.h"
#include "tests/test_util.h"

static float f32_of(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_shapes(void) {
    const int64_t shape[3] = {2, 3, 5};
    float buf[30];
    ms_tensor t = ms_tensor_make(MS_DTYPE_F32, 3, shape, buf, MS_DEVICE_CPU, 0);
    EXPECT(ms_tensor_numel(&t) == 30);
    EXPECT(ms_tensor_nbytes(&t) == 120);
    EXPECT(ms_tensor_rows(&t) == 6 && ms_tensor_cols(&t) == 5);
    char d[64];
    EXPECT(strcmp(ms_tensor_describe(&t, d, sizeof d), "f32[2,3,5]") == 0);
    const int64_t flat[2] = {6, 5};
    ms_tensor r = ms_tensor_reshape(&t, 2, flat);
    EXPECT(r.data == buf && r.ndim == 2 && r.shape[0] == 6);
    ms_tensor v = ms_tensor_row_view(&t, 2, 3);
    EXPECT(v.data == buf + 10 && v.shape[0] == 3 && v.shape[1] == 5);
    EXPECT(!ms_tensor_same_shape(&t, &r));
    EXPECT(ms_dtype_size(MS_DTYPE_BF16) == 2 && ms_dtype_size(MS_DTYPE_I32) == 4);
    EXPECT(strcmp(ms_dtype_name(MS_DTYPE_F16), "f16") == 0);
}

static void test_bf16(void) {
    EXPECT(ms_f32_to_bf16(1.0f) == 0x3f80);
    EXPECT(ms_bf16_to_f32(0x3f80) == 1.0f);
    /* 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0). */
    EXPECT(ms_f32_to_bf16(f32_of(0x3f808000u)) == 0x3f80);
    /* 1 + 3*2^-8 is halfway between 1+2^-7 (odd) and 1+2^-6: rounds up to even. */
    EXPECT(ms_f32_to_bf16(f32_of(0x3f818000u)) == 0x3f82);
    EXPECT(ms_f32_to_bf16(f32_of(0x3f808001u)) == 0x3f81); /* just above half: up */
    EXPECT(ms_f32_to_bf16(f32_of(0x3f807fffu)) == 0x3f80); /* just below: down */
    EXPECT(ms_f32_to_bf16(-2.5f) == 0xc020);
    EXPECT(ms_f32_to_bf16(INFINITY) == 0x7f80 && ms_f32_to_bf16(-INFINITY) == 0xff80);
    EXPECT(isinf(ms_bf16_to_f32(0x7f80)));
    /* Largest finite f32 rounds up past bf16's largest finite: inf. */
    EXPECT(ms_f32_to_bf16(f32_of(0x7f7fffffu)) == 0x7f80);
    /* NaN stays NaN, even one whose payload sits in the low bits only. */
    EXPECT(isnan(ms_bf16_to_f32(ms_f32_to_bf16(NAN))));
    EXPECT(isnan(ms_bf16_to_f32(ms_f32_to_bf16(f32_of(0x7f800001u)))));
    /* Subnormals keep their top bits. */
    EXPECT(ms_f32_to_bf16(f32_of(0x00010000u)) == 0x0001);
    EXPECT(ms_bf16_to_f32(0x0001) == f32_of(0x00010000u));
    /* Every bf16 value survives a round trip through f32. */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        const float f = ms_bf16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        bad += ms_f32_to_bf16(f) != h;
    }
    EXPECT(bad == 0);
}

/* Reference f16 rounding: pick the nearer of the two neighbouring halves in double,
 * the even one on ties. */
static uint16_t f16_ref(float f) {
    if (isnan(f)) return 0x7e00;
    uint16_t best = 0;
    double best_err = INFINITY;
    const uint16_t sign = signbit(f) ? 0x8000 : 0;
    const double a = fabs((double)f);
    if (a >= 65520.0) return sign | 0x7c00; /* halfway between 65504 and 2^16 rounds up */
    for (uint32_t h = 0; h < 0x7c00u; h++) {
        const double v = ms_f16_to_f32((uint16_t)h);
        const double e = fabs(v - a);
        if (e < best_err || (e == best_err && (h & 1u) == 0)) {
            best_err = e;
            best = (uint16_t)h;
        }
    }
    return sign | best;
}

static void test_f16(void) {
    EXPECT(ms_f32_to_f16(1.0f) == 0x3c00);
    EXPECT(ms_f16_to_f32(0x3c00) == 1.0f);
    EXPECT(ms_f32_to_f16(-2.0f) == 0xc000);
    EXPECT(ms_f32_to_f16(65504.0f) == 0x7bff);
    EXPECT(ms_f32_to_f16(65519.0f) == 0x7bff);
    EXPECT(ms_f32_to_f16(65520.0f) == 0x7c00); /* halfway: even is inf */
    EXPECT(ms_f32_to_f16(1e6f) == 0x7c00 && ms_f32_to_f16(-INFINITY) == 0xfc00);
    EXPECT(isnan(ms_f16_to_f32(ms_f32_to_f16(NAN))));
    EXPECT(isinf(ms_f16_to_f32(0x7c00)));
    /* Subnormals: smallest is 2^-24; 2^-25 is halfway to 0 and ties to even (0). */
    EXPECT(ms_f32_to_f16(ldexpf(1.0f, -24)) == 0x0001);
    EXPECT(ms_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    EXPECT(ms_f32_to_f16(ldexpf(1.0f, -25)) == 0x0000);
    EXPECT(ms_f32_to_f16(ldexpf(1.5f, -25)) == 0x0001);
    EXPECT(ms_f32_to_f16(ldexpf(3.0f, -25)) == 0x0002); /* 1.5 units: tie, to even 2 */
    EXPECT(ms_f32_to_f16(ldexpf(1.0f, -14)) == 0x0400); /* smallest normal */
    EXPECT(ms_f32_to_f16(ldexpf(1023.5f, -24)) == 0x0400); /* rounds up into normals */
    EXPECT(ms_f32_to_f16(-0.0f) == 0x8000);
    /* 1 + 2^-11 is a tie between 1 and 1 + 2^-10: even (1). */
    EXPECT(ms_f32_to_f16(1.0f + ldexpf(1.0f, -11)) == 0x3c00);
    EXPECT(ms_f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)) == 0x3c02);
    /* Every finite half round-trips. */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        const float f = ms_f16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        bad += ms_f32_to_f16(f) != h;
    }
    EXPECT(bad == 0);
    /* Against the brute-force nearest-even reference on awkward values. */
    uint32_t s = 12345;
    int mism = 0;
    for (int i = 0; i < 300; i++) {
        s = s * 1664525u + 1013904223u;
        /* exponents spread over the half range and below it */
        const float f = ldexpf((float)(s >> 8) / (float)(1u << 24) + 0.5f, (int)(s % 44) - 28);
        const float g = (s & 1) ? -f : f;
        mism += ms_f32_to_f16(g) != f16_ref(g);
    }
    EXPECTF(mism == 0, "%d of 300 random values rounded differently", mism);
}

static void test_convert_host(void) {
    const float src[5] = {1.0f, -0.5f, 3.140625f, 1e-3f, 65504.0f};
    uint16_t bf[5], hf[5];
    float back[5];
    ms_convert_host(bf, MS_DTYPE_BF16, src, MS_DTYPE_F32, 5);
    ms_convert_host(hf, MS_DTYPE_F16, bf, MS_DTYPE_BF16, 5);
    ms_convert_host(back, MS_DTYPE_F32, hf, MS_DTYPE_F16, 5);
    for (int i = 0; i < 5; i++) {
        EXPECT(bf[i] == ms_f32_to_bf16(src[i]));
        EXPECT(hf[i] == ms_f32_to_f16(ms_bf16_to_f32(bf[i])));
        EXPECT(back[i] == ms_f16_to_f32(hf[i]));
    }
    EXPECT(back[0] == 1.0f && back[1] == -0.5f);
}

/* The arena: aligned, never moves what it handed out, steady state allocates nothing. */
static void test_arena(void) {
    ms_backend *be = ms_backend_cpu_create(1);
    ms_arena *a = ms_arena_create(be, 4096);
    void *ptrs[40];
    for (int pass = 0; pass < 3; pass++) {
        for (int i = 0; i < 40; i++) {
            ptrs[i] = ms_arena_alloc(a, 1000 + 37 * (size_t)i);
            EXPECT(ptrs[i] && (uintptr_t)ptrs[i] % MS_ARENA_ALIGN == 0);
            memset(ptrs[i], i, 1000 + 37 * (size_t)i);
        }
        /* earlier blocks still hold their bytes after the arena grew */
        int bad = 0;
        for (int i = 0; i < 40; i++) bad += ((unsigned char *)ptrs[i])[999] != (unsigned char)i;
        EXPECT(bad == 0);
        ms_arena_reset(a);
        EXPECT(ms_arena_used(a) == 0);
    }
    const size_t allocs = ms_arena_backend_allocs(a);
    for (int pass = 0; pass < 3; pass++) {
        for (int i = 0; i < 40; i++) ms_arena_alloc(a, 1000 + 37 * (size_t)i);
        ms_arena_reset(a);
    }
    EXPECT(ms_arena_backend_allocs(a) == allocs); /* steady state: nothing new */
    EXPECT(ms_arena_chunk_count(a) == 1);
    ms_arena_destroy(a);
    ms_backend_destroy(be);
}

int main(void) {
    test_shapes();
    test_bf16();
    test_f16();
    test_convert_host();
    test_arena();
    return ms_test_finish("test_tensor");
}
