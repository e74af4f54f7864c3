/*
 * Host side of sampling: a per-request random stream (xoshiro256**, seeded through
 * splitmix64 so that nearby seeds give unrelated streams) and the host reference of
 * the draw. The draw itself lives in kernels/sample.c (ms_sample_row_f32), shared with
 * the CPU backend's sample op, so there is one algorithm, not two.
 */
#include "llm/sampler.h"

#include "kernels/sample.h"

static uint64_t splitmix64_next(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro256ss_next(uint64_t s[4]) {
    const uint64_t result = rotl64(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

void ms_sampler_init(ms_sampler *s, ms_sample_params params, uint64_t seed) {
    s->params = params;
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) s->state[i] = splitmix64_next(&x);
}

float ms_sampler_uniform(ms_sampler *s) {
    /* Top 24 bits: every value is exact in a float and strictly below 1. */
    return (float)(xoshiro256ss_next(s->state) >> 40) * (1.0f / 16777216.0f);
}

int32_t ms_sample_row(const float *logits, int32_t vocab, const ms_sample_params *p, float u) {
    return ms_sample_row_f32(logits, vocab, p, u);
}
