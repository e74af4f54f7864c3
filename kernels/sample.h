/*
 * The sampling algorithm of ms_op_sample for one row, on the host. The CPU backend's
 * sample op is this function per row; other backends must pick the same token for the
 * same logits and uniform (up to float ties), and llm/ uses it as the host reference.
 *
 * Greedy (temperature <= 0): argmax, lowest index on ties (NaN counts as -inf).
 * Otherwise:
 *   1. weights w_i = exp((l_i - max l) / temperature), in double;
 *   2. candidates in order of decreasing logit, ties by lower index;
 *   3. top_k > 0: keep the first top_k candidates;
 *   4. top_p < 1: keep the shortest prefix whose weight sum >= top_p * (sum of step 3),
 *      at least one token;
 *   5. total = weight sum of the kept prefix; the token is the first kept candidate,
 *      in that same order, whose running sum exceeds u * total (the last kept one if
 *      rounding leaves none).
 */
#ifndef MS_SAMPLE_H
#define MS_SAMPLE_H

#include "kernels/backend.h"

int32_t ms_sample_row_f32(const float *logits, int32_t vocab, const ms_sample_params *p, float u);

#endif
