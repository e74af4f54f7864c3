/*
 * Host side of sampling: a per-request random stream (xoshiro256**, seeded through
 * splitmix64 so that nearby seeds give unrelated streams) and the host reference of
 * the draw. The draw itself lives in kernels/sample.c (ms_sample_row_f32), shared with
 * the CPU backend's sample op, so there is one algorithm, not two.
 */
#include "llm/sampler.h"

#include "kernels/sample.h"

void ms_sampler_init(ms_sampler *s, ms_sample_params params, uint64_t seed) {
    s->params = params;
    ms_rng_seed(&s->rng, seed);
}

float ms_sampler_uniform(ms_sampler *s) {
    /* Top 24 bits: every value is exact in a float and strictly below 1. */
    return (float)(ms_rng_next(&s->rng) >> 40) * (1.0f / 16777216.0f);
}

int32_t ms_sample_row(const float *logits, int32_t vocab, const ms_sample_params *p, float u) {
    return ms_sample_row_f32(logits, vocab, p, u);
}
