/* test_backend_ops cases: patch embedding, image normalisation, sampling. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "tests/test_backend_ops.h"

static const limits LIM_PATCH = {1e-10, 1e-4};
static const limits LIM_IMAGE = {1e-12, 1e-4};

static void case_patch_embed(void) {
    if (!tbo_selected("patch_embed") ||
        !tbo_supported("patch_embed", tbo_backend()->ops->patch_embed))
        return;
    /* N, C, H, W, p, E; the last has sizes that are not multiples of p (conv floors) */
    const int64_t cs[][6] = {{1, 3, 28, 28, 14, 32}, {2, 3, 15, 10, 5, 7}, {1, 1, 9, 12, 3, 5},
                             {1, 3, 30, 44, 14, 17}};
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        const int64_t N = cs[c][0], C = cs[c][1], H = cs[c][2], W = cs[c][3], p = cs[c][4],
                      E = cs[c][5];
        const int64_t sp[4] = {N, C, H, W}, P = N * (H / p) * (W / p);
        float *hp, *hw;
        dbuf px = tbo_rand(4, sp, -2, 2, &hp), w = tbo_rand2(E, C * p * p, -0.5f, 0.5f, &hw);
        dbuf out = tbo_new2(tbo_backend()->act_dtype, P, E);
        ms_op_patch_embed(tbo_ctx(), &out.t, &px.t, &w.t, (int32_t)p);
        double *ref = tbo_ref_buf(P * E);
        ref_patch_embed(ref, hp, hw, N, C, H, W, E, p);
        char sh[80];
        snprintf(sh, sizeof sh, "N=%lld C=%lld H=%lld W=%lld p=%lld E=%lld", (long long)N,
                 (long long)C, (long long)H, (long long)W, (long long)p, (long long)E);
        tbo_check_out("patch_embed", sh, &out, ref, LIM_PATCH);
        tbo_free(&px);
        tbo_free(&w);
        tbo_free(&out);
        free(hp);
        free(hw);
        free(ref);
    }
}

static void case_image_normalize(void) {
    if (!tbo_selected("image_normalize") ||
        !tbo_supported("image_normalize", tbo_backend()->ops->image_normalize))
        return;
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    const int64_t cs[][3] = {{1, 5, 7}, {2, 13, 9}, {1, 336, 336}};
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        const int64_t N = cs[c][0], H = cs[c][1], W = cs[c][2], n = N * H * W * 3;
        int32_t *rgb = malloc(sizeof(int32_t) * (size_t)n);
        for (int64_t i = 0; i < n; i++) rgb[i] = tbo_int(0, 255);
        rgb[0] = 0;
        rgb[n - 1] = 255;
        const int64_t si[4] = {N, H, W, 3}, so[4] = {N, 3, H, W};
        dbuf in = tbo_i32(4, si, rgb), out = tbo_new(tbo_backend()->act_dtype, 4, so);
        ms_op_image_normalize(tbo_ctx(), &out.t, &in.t, mean, std, 1.0f / 255.0f);
        double *ref = tbo_ref_buf(n);
        ref_image_normalize(ref, rgb, N, H, W, mean, std, 1.0f / 255.0f);
        char sh[64];
        snprintf(sh, sizeof sh, "N=%lld H=%lld W=%lld", (long long)N, (long long)H, (long long)W);
        tbo_check_out("image_normalize", sh, &out, ref, LIM_IMAGE);
        tbo_free(&in);
        tbo_free(&out);
        free(rgb);
        free(ref);
    }
}

static void case_sample(void) {
    if (!tbo_selected("sample") || !tbo_supported("sample", tbo_backend()->ops->sample)) return;
    const ms_sample_params ps[] = {
        {0.0f, 0, 1.0f},  {0.7f, 0, 1.0f},  {1.0f, 20, 1.0f}, {1.0f, 0, 0.8f},
        {0.8f, 40, 0.9f}, {1.5f, 0, 0.95f}, {1.0f, 1, 1.0f},  {1.2f, 5, 0.5f},
        {0.3f, 0, 0.0f},
    };
    const int np = (int)(sizeof ps / sizeof ps[0]);
    const struct { int32_t B, V; float spread; bool ties, masked; } cs[] = {
        {2 * np, 300, 4.0f, false, false}, {np, 1000, 8.0f, false, true},
        {np, 17, 2.0f, true, false},       {64, 32000, 10.0f, false, false},
    };
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        const int32_t B = cs[c].B, V = cs[c].V;
        float *lg = tbo_rand_f32((int64_t)B * V, -cs[c].spread, cs[c].spread);
        if (cs[c].ties) /* quantised logits: many exact ties, greedy must take the lowest */
            for (int64_t i = 0; i < (int64_t)B * V; i++) lg[i] = roundf(lg[i]);
        if (cs[c].masked) /* -inf entries (e.g. a masked EOS) can never be drawn */
            for (int32_t b = 0; b < B; b++)
                for (int32_t i = 0; i < V; i += 7) lg[(int64_t)b * V + i] = -INFINITY;
        ms_sample_params *pp = malloc(sizeof *pp * (size_t)B);
        float *u = malloc(sizeof(float) * (size_t)B);
        int32_t *want = malloc(sizeof(int32_t) * (size_t)B);
        for (int32_t b = 0; b < B; b++) {
            pp[b] = ps[b % np];
            u[b] = tbo_uniform(0.0f, 1.0f);
            if (b == 1) u[b] = 0.0f;
            if (b == 2) u[b] = 0.99999994f;
            want[b] = ref_sample(lg + (int64_t)b * V, V, &pp[b], u[b]);
        }
        dbuf logits = tbo_new2(MS_DTYPE_F32, B, V), ids = tbo_new2(MS_DTYPE_I32, 1, B);
        tbo_set_f32(&logits, lg);
        ms_op_sample(tbo_ctx(), &ids.t, &logits.t, pp, u);
        char sh[64];
        snprintf(sh, sizeof sh, "B=%d V=%d%s%s", B, V, cs[c].ties ? " ties" : "",
                 cs[c].masked ? " masked" : "");
        tbo_check_ids("sample", sh, &ids, want);
        tbo_free(&logits);
        tbo_free(&ids);
        free(lg);
        free(pp);
        free(u);
        free(want);
    }
}

void tbo_cases_misc(void) {
    case_patch_embed();
    case_image_normalize();
    case_sample();
}
