/*
 * Host side of sampling: per-request parameters and a seeded random stream. The draw
 * itself is ms_op_sample on the backend, fed one uniform per row from here, so the same
 * seed gives the same tokens whatever the batch it runs in.
 */
#ifndef MS_LLM_SAMPLER_H
#define MS_LLM_SAMPLER_H

#include "kernels/backend.h"
#include "kernels/rng.h"

typedef struct ms_sampler {
    ms_sample_params params;
    ms_rng rng;                /* the request's own stream */
} ms_sampler;

void ms_sampler_init(ms_sampler *s, ms_sample_params params, uint64_t seed);
/* Next uniform in [0, 1) (24-bit resolution). */
float ms_sampler_uniform(ms_sampler *s);
/* Host reference of ms_op_sample for one row of f32 logits. */
int32_t ms_sample_row(const float *logits, int32_t vocab, const ms_sample_params *p, float u);

#endif
