/*
 * test_backend_ops cases: memory ops, matmul, norms, softmax, elementwise, rows,
 * image ops and sampling. Each case: random inputs, the op on the backend, the naive
 * reference on the same (rounded) inputs, one report line.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/test_backend_ops.h"

/* f32 on the CPU (vs a double reference): only accumulation order differs. bf16:
 * output rounding (relative 2^-9) plus bf16 intermediates. */
static const limits LIM_EXACT = {0.0, 0.0};
static const limits LIM_MATMUL = {1e-10, 1e-4};
static const limits LIM_NORM = {1e-10, 1e-4};
static const limits LIM_EW = {1e-10, 1e-4};

/* ---- memory ops ---- */

static void case_memory(void) {
    ms_ctx *ctx = tbo_ctx();
    const ms_dtype act = tbo_backend()->act_dtype;
    const int64_t shapes[][2] = {{1, 1}, {7, 33}, {3, 1000}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t M = shapes[s][0], N = shapes[s][1];
        char sh[64];
        snprintf(sh, sizeof sh, "[%lld,%lld] %s", (long long)M, (long long)N, ms_dtype_name(act));
        float *h;
        dbuf a = tbo_rand2(M, N, -3, 3, &h);
        double *ref = tbo_to_double(h, M * N);
        if (tbo_selected("upload")) tbo_check_out("upload", sh, &a, ref, LIM_EXACT);
        if (tbo_selected("copy") && tbo_supported("copy", tbo_backend()->ops->copy)) {
            dbuf c = tbo_new2(act, M, N);
            ms_op_copy(ctx, &c.t, &a.t);
            tbo_check_out("copy", sh, &c, ref, LIM_EXACT);
            tbo_free(&c);
        }
        if (tbo_selected("fill") && tbo_supported("fill", tbo_backend()->ops->fill)) {
            dbuf f = tbo_new2(act, M, N);
            ms_op_fill(ctx, &f.t, -1.75f);
            for (int64_t i = 0; i < M * N; i++) ref[i] = -1.75;
            tbo_check_out("fill", sh, &f, ref, LIM_EXACT);
            tbo_free(&f);
            dbuf fi = tbo_new2(MS_DTYPE_I32, M, N);
            ms_op_fill(ctx, &fi.t, 7.0f);
            int32_t *want = malloc(sizeof(int32_t) * (size_t)(M * N));
            for (int64_t i = 0; i < M * N; i++) want[i] = 7;
            tbo_check_ids("fill", "i32", &fi, want);
            free(want);
            tbo_free(&fi);
        }
        /* convert: f32 -> bf16/f16 -> f32 must equal the host conversions bit for bit */
        const ms_dtype dts[] = {MS_DTYPE_BF16, MS_DTYPE_F16};
        for (int d = 0; d < 2 && tbo_selected("convert") &&
                        tbo_supported("convert", tbo_backend()->ops->convert); d++) {
            /* inside f16's finite range, so both round trips stay finite */
            float *x = tbo_rand_f32(M * N, -60000, 60000);
            x[0] = 1.0f + ldexpf(1.0f, -8); /* a rounding tie for bf16 */
            if (M * N > 1) x[1] = ldexpf(1.5f, -20); /* an f16 subnormal */
            dbuf src = tbo_new2(MS_DTYPE_F32, M, N), mid = tbo_new2(dts[d], M, N),
                 back = tbo_new2(MS_DTYPE_F32, M, N);
            tbo_set_f32(&src, x);
            ms_op_convert(ctx, &mid.t, &src.t);
            ms_op_convert(ctx, &back.t, &mid.t);
            uint16_t *half = malloc(sizeof(uint16_t) * (size_t)(M * N));
            float *round = malloc(sizeof(float) * (size_t)(M * N));
            ms_convert_host(half, dts[d], x, MS_DTYPE_F32, M * N);
            ms_convert_host(round, MS_DTYPE_F32, half, dts[d], M * N);
            double *want = tbo_to_double(round, M * N);
            char sh2[80];
            snprintf(sh2, sizeof sh2, "%s f32->%s->f32", sh, ms_dtype_name(dts[d]));
            tbo_check_out("convert", sh2, &back, want, LIM_EXACT);
            tbo_free(&src);
            tbo_free(&mid);
            tbo_free(&back);
            free(half);
            free(round);
            free(want);
            free(x);
        }
        tbo_free(&a);
        free(h);
        free(ref);
    }
}

/* ---- matmul ---- */

void tbo_run_matmul(int64_t M, int64_t K, int64_t N, bool bias, bool y_f32) {
    float *hx, *hw, *hb = NULL;
    dbuf x = tbo_rand2(M, K, -1, 1, &hx), w = tbo_rand2(N, K, -1, 1, &hw), b = {0};
    if (bias) b = tbo_rand2(1, N, -1, 1, &hb);
    dbuf y = tbo_new2(y_f32 ? MS_DTYPE_F32 : tbo_backend()->act_dtype, M, N);
    ms_op_matmul(tbo_ctx(), &y.t, &x.t, &w.t, bias ? &b.t : NULL);
    double *ref = tbo_ref_buf(M * N);
    ref_matmul(ref, hx, hw, hb, M, K, N);
    char sh[80];
    snprintf(sh, sizeof sh, "M=%lld K=%lld N=%lld%s%s", (long long)M, (long long)K, (long long)N,
             bias ? " bias" : "", y_f32 ? " y=f32" : "");
    tbo_check_out("matmul", sh, &y, ref, LIM_MATMUL);
    tbo_free(&x);
    tbo_free(&w);
    tbo_free(&y);
    if (bias) tbo_free(&b);
    free(hx);
    free(hw);
    free(hb);
    free(ref);
}

static void case_matmul(void) {
    if (!tbo_selected("matmul") || !tbo_supported("matmul", tbo_backend()->ops->matmul)) return;
    const struct { int64_t M, K, N; bool bias, y_f32; } cs[] = {
        {1, 16, 8, false, false}, {7, 33, 45, true, false}, {13, 64, 31, true, false},
        {64, 96, 130, false, false}, {5, 1024, 3, true, false}, {3, 40, 77, true, true},
        {1, 4096, 11, false, true},
    };
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++)
        tbo_run_matmul(cs[c].M, cs[c].K, cs[c].N, cs[c].bias, cs[c].y_f32);
}

/* ---- norms and softmax ---- */

/* layernorm, rmsnorm, add_rmsnorm and softmax on one [M, N]; c varies eps and the
 * softmax's logit range. */
void tbo_run_norms(int64_t M, int64_t N, float lo, float hi, bool beta, int c) {
    ms_ctx *ctx = tbo_ctx();
    const ms_dtype act = tbo_backend()->act_dtype;
    char sh[80];
    snprintf(sh, sizeof sh, "M=%lld N=%lld x in [%g,%g)%s", (long long)M, (long long)N, lo, hi,
             beta ? "" : " no beta");
    float *hx, *hg, *hb, *hr;
    dbuf x = tbo_rand2(M, N, lo, hi, &hx);
    dbuf g = tbo_rand2(1, N, 0.5f, 1.5f, &hg), b = tbo_rand2(1, N, -0.5f, 0.5f, &hb);
    double *ref = tbo_ref_buf(M * N);
    if (tbo_selected("layernorm") && tbo_supported("layernorm", tbo_backend()->ops->layernorm)) {
        dbuf y = tbo_new2(act, M, N);
        ms_op_layernorm(ctx, &y.t, &x.t, &g.t, beta ? &b.t : NULL, 1e-5f);
        ref_layernorm(ref, hx, hg, beta ? hb : NULL, M, N, 1e-5);
        tbo_check_out("layernorm", sh, &y, ref, LIM_NORM);
        tbo_free(&y);
    }
    double *xd = tbo_to_double(hx, M * N);
    const float eps = c % 2 ? 1e-5f : 1e-6f;
    if (tbo_selected("rmsnorm") && tbo_supported("rmsnorm", tbo_backend()->ops->rmsnorm)) {
        dbuf y = tbo_new2(act, M, N);
        ms_op_rmsnorm(ctx, &y.t, &x.t, &g.t, eps);
        ref_rmsnorm(ref, xd, hg, M, N, eps);
        tbo_check_out("rmsnorm", sh, &y, ref, LIM_NORM);
        tbo_free(&y);
    }
    if (tbo_selected("add_rmsnorm") &&
        tbo_supported("add_rmsnorm", tbo_backend()->ops->add_rmsnorm)) {
        dbuf r = tbo_rand2(M, N, -1, 1, &hr), y = tbo_new2(act, M, N);
        ms_op_add_rmsnorm(ctx, &r.t, &x.t, &y.t, &g.t, eps);
        double *res = tbo_ref_buf(M * N);
        for (int64_t i = 0; i < M * N; i++) res[i] = (double)hr[i] + hx[i];
        ref_rmsnorm(ref, res, hg, M, N, eps);
        char sh2[96];
        snprintf(sh2, sizeof sh2, "%s residual", sh);
        tbo_check_out("add_rmsnorm", sh2, &r, res, LIM_NORM);
        snprintf(sh2, sizeof sh2, "%s y", sh);
        tbo_check_out("add_rmsnorm", sh2, &y, ref, LIM_NORM);
        tbo_free(&r);
        tbo_free(&y);
        free(hr);
        free(res);
    }
    if (tbo_selected("softmax") && tbo_supported("softmax", tbo_backend()->ops->softmax)) {
        /* wide logits: exercises the max subtraction */
        float *hs;
        dbuf s = tbo_rand2(M, N, -10.0f * (float)(c + 1), 10.0f * (float)(c + 1), &hs);
        dbuf y = tbo_new2(act, M, N);
        ms_op_softmax(ctx, &y.t, &s.t);
        ref_softmax(ref, hs, M, N);
        char sh2[80];
        snprintf(sh2, sizeof sh2, "M=%lld N=%lld x in +-%d", (long long)M, (long long)N,
                 10 * (int)(c + 1));
        tbo_check_out("softmax", sh2, &y, ref, LIM_NORM);
        tbo_free(&s);
        tbo_free(&y);
        free(hs);
    }
    tbo_free(&x);
    tbo_free(&g);
    tbo_free(&b);
    free(hx);
    free(hg);
    free(hb);
    free(xd);
    free(ref);
}

static void case_norms(void) {
    const struct { int64_t M, N; float lo, hi; bool beta; } cs[] = {
        {1, 8, -1, 1, true}, {7, 33, -2, 2, true}, {5, 768, 2, 4, false}, {3, 1000, -5, 5, true},
    };
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++)
        tbo_run_norms(cs[c].M, cs[c].N, cs[c].lo, cs[c].hi, cs[c].beta, (int)c);
}

/* ---- elementwise ---- */

static void case_elementwise(void) {
    const int64_t shapes[][3] = {{1, 7, 33}, {3, 5, 17}, {1, 1, 1000}, {2, 64, 300}};
    ms_ctx *ctx = tbo_ctx();
    const ms_dtype act = tbo_backend()->act_dtype;
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        const int64_t *s = shapes[c], n = s[0] * s[1] * s[2];
        char sh[64];
        snprintf(sh, sizeof sh, "[%lld,%lld,%lld]", (long long)s[0], (long long)s[1],
                 (long long)s[2]);
        float *hx, *hu;
        dbuf x = tbo_rand(3, s, -5, 5, &hx), u = tbo_rand(3, s, -2, 2, &hu);
        double *ref = tbo_ref_buf(n);
        if (tbo_selected("gelu") && tbo_supported("gelu", tbo_backend()->ops->gelu)) {
            dbuf y = tbo_new(act, 3, s);
            ms_op_gelu(ctx, &y.t, &x.t);
            ref_gelu(ref, hx, n);
            tbo_check_out("gelu", sh, &y, ref, LIM_EW);
            tbo_free(&y);
        }
        if (tbo_selected("quick_gelu") &&
            tbo_supported("quick_gelu", tbo_backend()->ops->quick_gelu)) {
            dbuf y = tbo_new(act, 3, s);
            ms_op_quick_gelu(ctx, &y.t, &x.t);
            ref_quick_gelu(ref, hx, n);
            tbo_check_out("quick_gelu", sh, &y, ref, LIM_EW);
            tbo_free(&y);
        }
        if (tbo_selected("silu_mul") && tbo_supported("silu_mul", tbo_backend()->ops->silu_mul)) {
            dbuf y = tbo_new(act, 3, s);
            ms_op_silu_mul(ctx, &y.t, &x.t, &u.t);
            ref_silu_mul(ref, hx, hu, n);
            tbo_check_out("silu_mul", sh, &y, ref, LIM_EW);
            tbo_free(&y);
        }
        tbo_free(&x);
        tbo_free(&u);
        free(hx);
        free(hu);
        free(ref);
    }
    /* add: plain, broadcast over R rows, and in place (y aliases a) */
    const struct { int64_t M, R, N; bool in_place; } as[] = {
        {7, 7, 33, false}, {12, 4, 24, false}, {7, 1, 45, false}, {9, 3, 16, true}, {5, 5, 1000, true},
    };
    for (size_t c = 0; c < sizeof as / sizeof as[0] && tbo_selected("add") &&
                       tbo_supported("add", tbo_backend()->ops->add); c++) {
        const int64_t M = as[c].M, R = as[c].R, N = as[c].N;
        float *ha, *hb;
        dbuf a = tbo_rand2(M, N, -3, 3, &ha), b = tbo_rand2(R, N, -3, 3, &hb);
        double *ref = tbo_ref_buf(M * N);
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) ref[i * N + j] = (double)ha[i * N + j] + hb[(i % R) * N + j];
        dbuf y = as[c].in_place ? a : tbo_new2(act, M, N);
        ms_op_add(ctx, &y.t, &a.t, &b.t);
        char sh[80];
        snprintf(sh, sizeof sh, "M=%lld R=%lld N=%lld%s", (long long)M, (long long)R,
                 (long long)N, as[c].in_place ? " in place" : "");
        tbo_check_out("add", sh, &y, ref, LIM_EW);
        if (!as[c].in_place) tbo_free(&y);
        tbo_free(&a);
        tbo_free(&b);
        free(ha);
        free(hb);
        free(ref);
    }
}

/* ---- rows ---- */

static void case_rows(void) {
    ms_ctx *ctx = tbo_ctx();
    const ms_dtype act = tbo_backend()->act_dtype;
    const int64_t gs[][3] = {{50, 33, 9}, {7, 16, 1}, {1000, 24, 20}};
    for (size_t c = 0; c < 3 && tbo_selected("get_rows") &&
                       tbo_supported("get_rows", tbo_backend()->ops->get_rows); c++) {
        const int64_t V = gs[c][0], D = gs[c][1], T = gs[c][2];
        float *ht;
        dbuf table = tbo_rand2(V, D, -1, 1, &ht);
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)T);
        for (int64_t t = 0; t < T; t++) ids[t] = tbo_int(0, (int32_t)V - 1);
        ids[0] = (int32_t)V - 1; /* both ends of the table, and a repeat */
        if (T > 2) ids[1] = 0, ids[2] = ids[0];
        dbuf di = tbo_i32_1d(T, ids), out = tbo_new2(act, T, D);
        ms_op_get_rows(ctx, &out.t, &table.t, &di.t);
        double *ref = tbo_ref_buf(T * D);
        for (int64_t t = 0; t < T; t++)
            for (int64_t d = 0; d < D; d++) ref[t * D + d] = ht[(int64_t)ids[t] * D + d];
        char sh[64];
        snprintf(sh, sizeof sh, "V=%lld D=%lld T=%lld", (long long)V, (long long)D, (long long)T);
        tbo_check_out("get_rows", sh, &out, ref, LIM_EXACT);
        tbo_free(&table);
        tbo_free(&di);
        tbo_free(&out);
        free(ids);
        free(ht);
        free(ref);
    }
    const int64_t ss[][3] = {{20, 5, 24}, {9, 9, 33}, {5, 1, 7}};
    for (size_t c = 0; c < 3 && tbo_selected("scatter_rows") &&
                       tbo_supported("scatter_rows", tbo_backend()->ops->scatter_rows); c++) {
        const int64_t M = ss[c][0], R = ss[c][1], D = ss[c][2];
        float *hd, *hs;
        dbuf dst = tbo_rand2(M, D, -1, 1, &hd), src = tbo_rand2(R, D, -1, 1, &hs);
        /* distinct destination rows: a random permutation's prefix */
        int32_t *perm = malloc(sizeof(int32_t) * (size_t)M);
        for (int64_t i = 0; i < M; i++) perm[i] = (int32_t)i;
        for (int64_t i = M - 1; i > 0; i--) {
            const int32_t j = tbo_int(0, (int32_t)i), tmp = perm[i];
            perm[i] = perm[j];
            perm[j] = tmp;
        }
        dbuf di = tbo_i32_1d(R, perm);
        ms_op_scatter_rows(ctx, &dst.t, &src.t, &di.t);
        double *ref = tbo_to_double(hd, M * D);
        for (int64_t r = 0; r < R; r++)
            for (int64_t d = 0; d < D; d++) ref[(int64_t)perm[r] * D + d] = hs[r * D + d];
        char sh[64];
        snprintf(sh, sizeof sh, "M=%lld R=%lld D=%lld", (long long)M, (long long)R, (long long)D);
        tbo_check_out("scatter_rows", sh, &dst, ref, LIM_EXACT);
        tbo_free(&dst);
        tbo_free(&src);
        tbo_free(&di);
        free(perm);
        free(hd);
        free(hs);
        free(ref);
    }
}

void tbo_cases_core(void) {
    case_memory();
    case_matmul();
    case_norms();
    case_elementwise();
    case_rows();
}
