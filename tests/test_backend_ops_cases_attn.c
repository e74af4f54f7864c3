/*
 * test_backend_ops cases for the attention path: RoPE, packed attention (causal and
 * bidirectional, grouped-query heads, several sequences), the paged KV write and paged
 * attention (decode and chunked prefill, partially filled blocks, scattered blocks).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/test_backend_ops.h"

static const limits LIM_ROPE = {1e-10, 1e-4};
static const limits LIM_ATTN = {1e-10, 5e-4};
static const limits LIM_EXACT = {0.0, 0.0};

static void case_rope(void) {
    if (!tbo_selected("rope") || !tbo_supported("rope", tbo_backend()->ops->rope)) return;
    const struct { int64_t T, H, D; float theta; int32_t max_pos; } cs[] = {
        {5, 6, 16, 10000.0f, 50}, {9, 2, 24, 10000.0f, 3000}, {3, 4, 64, 500000.0f, 8192},
        {1, 32, 128, 10000.0f, 4095},
    };
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        const int64_t T = cs[c].T, H = cs[c].H, D = cs[c].D, s[3] = {T, H, D};
        float *hx;
        dbuf x = tbo_rand(3, s, -2, 2, &hx);
        int32_t *pos = malloc(sizeof(int32_t) * (size_t)T);
        for (int64_t t = 0; t < T; t++) pos[t] = tbo_int(0, cs[c].max_pos);
        if (T > 1) pos[0] = 0; /* position 0 is the identity */
        dbuf dp = tbo_i32_1d(T, pos);
        double *ref = tbo_ref_buf(T * H * D);
        ref_rope(ref, hx, pos, T, H, D, cs[c].theta);
        ms_op_rope(tbo_ctx(), &x.t, &dp.t, cs[c].theta);
        char sh[80];
        snprintf(sh, sizeof sh, "T=%lld H=%lld D=%lld theta=%g pos<=%d", (long long)T,
                 (long long)H, (long long)D, cs[c].theta, cs[c].max_pos);
        tbo_check_out("rope", sh, &x, ref, LIM_ROPE);
        tbo_free(&x);
        tbo_free(&dp);
        free(hx);
        free(pos);
        free(ref);
    }
}

/* One packed-attention case: sequences of lens[nseq] rows. */
void tbo_run_attention(const int32_t *lens, int nseq, int64_t Hq, int64_t Hkv, int64_t D,
                       bool causal) {
    int32_t *cu = calloc((size_t)nseq + 1, sizeof *cu);
    int32_t max_len = 0;
    for (int s = 0; s < nseq; s++) {
        cu[s + 1] = cu[s] + lens[s];
        if (lens[s] > max_len) max_len = lens[s];
    }
    const int64_t T = cu[nseq];
    const int64_t sq[3] = {T, Hq, D}, skv[3] = {T, Hkv, D};
    float *hq, *hk, *hv;
    /* q spans a wider range so the softmax is far from uniform */
    dbuf q = tbo_rand(3, sq, -3, 3, &hq), k = tbo_rand(3, skv, -1, 1, &hk),
         v = tbo_rand(3, skv, -1, 1, &hv);
    dbuf dcu = tbo_i32_1d(nseq + 1, cu), out = tbo_new(tbo_backend()->act_dtype, 3, sq);
    const float scale = 1.0f / sqrtf((float)D);
    ms_op_attention(tbo_ctx(), &out.t, &q.t, &k.t, &v.t, &dcu.t, max_len, causal, scale);
    double *ref = tbo_ref_buf(T * Hq * D);
    ref_attention(ref, hq, hk, hv, cu, nseq, Hq, Hkv, D, causal, scale);
    char sh[128];
    int n = snprintf(sh, sizeof sh, "seqs=");
    for (int s = 0; s < nseq && n < 60; s++)
        n += snprintf(sh + n, sizeof sh - (size_t)n, s ? ",%d" : "%d", lens[s]);
    snprintf(sh + n, sizeof sh - (size_t)n, " Hq=%lld Hkv=%lld D=%lld %s", (long long)Hq,
             (long long)Hkv, (long long)D, causal ? "causal" : "full");
    tbo_check_out("attention", sh, &out, ref, LIM_ATTN);
    tbo_free(&q);
    tbo_free(&k);
    tbo_free(&v);
    tbo_free(&dcu);
    tbo_free(&out);
    free(hq);
    free(hk);
    free(hv);
    free(ref);
    free(cu);
}

static void case_attention(void) {
    if (!tbo_selected("attention") || !tbo_supported("attention", tbo_backend()->ops->attention))
        return;
    const struct { int32_t lens[4]; int nseq; int64_t Hq, Hkv, D; bool causal; } cs[] = {
        {{5}, 1, 4, 4, 16, true},        {{3, 7, 1}, 3, 6, 2, 16, true},
        {{3, 7, 1}, 3, 6, 3, 24, false}, {{16, 9, 30}, 3, 6, 2, 24, true},
        {{50}, 1, 2, 1, 64, false},      {{1, 1, 1}, 3, 6, 3, 16, true},
        {{33, 2}, 2, 8, 8, 128, true},   {{17, 12}, 2, 4, 2, 64, false},
    };
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++)
        tbo_run_attention(cs[c].lens, cs[c].nseq, cs[c].Hq, cs[c].Hkv, cs[c].D, cs[c].causal);
}

static void case_kv_write(void) {
    if (!tbo_selected("kv_write") || !tbo_supported("kv_write", tbo_backend()->ops->kv_write))
        return;
    const int64_t cs[][5] = {{6, 16, 2, 16, 9}, {4, 5, 3, 24, 13}, {3, 16, 1, 64, 1}};
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        const int64_t nb = cs[c][0], bs = cs[c][1], Hkv = cs[c][2], D = cs[c][3], T = cs[c][4];
        const int64_t sc[4] = {nb, bs, Hkv, D}, sr[3] = {T, Hkv, D}, row = Hkv * D;
        float *hkc, *hvc, *hk, *hv;
        dbuf kc = tbo_rand(4, sc, -1, 1, &hkc), vc = tbo_rand(4, sc, -1, 1, &hvc);
        dbuf k = tbo_rand(3, sr, -1, 1, &hk), v = tbo_rand(3, sr, -1, 1, &hv);
        /* distinct random slots, every third row skipped (-1) */
        int32_t *slots = malloc(sizeof(int32_t) * (size_t)T);
        for (int64_t t = 0; t < T; t++) {
            bool again = true;
            while (again) {
                slots[t] = tbo_int(0, (int32_t)(nb * bs - 1));
                again = false;
                for (int64_t u = 0; u < t; u++) again |= slots[u] == slots[t];
            }
            if (t % 3 == 1) slots[t] = -1;
        }
        if (T > 1) slots[T - 1] = (int32_t)(nb * bs - 1); /* the very last slot */
        dbuf ds = tbo_i32_1d(T, slots);
        ms_op_kv_write(tbo_ctx(), &kc.t, &vc.t, &k.t, &v.t, &ds.t);
        double *rk = tbo_to_double(hkc, nb * bs * row), *rv = tbo_to_double(hvc, nb * bs * row);
        for (int64_t t = 0; t < T; t++)
            if (slots[t] >= 0)
                for (int64_t i = 0; i < row; i++) {
                    rk[slots[t] * row + i] = hk[t * row + i];
                    rv[slots[t] * row + i] = hv[t * row + i];
                }
        char sh[96];
        snprintf(sh, sizeof sh, "blocks=%lld bs=%lld Hkv=%lld D=%lld T=%lld k", (long long)nb,
                 (long long)bs, (long long)Hkv, (long long)D, (long long)T);
        tbo_check_out("kv_write", sh, &kc, rk, LIM_EXACT);
        sh[strlen(sh) - 1] = 'v';
        tbo_check_out("kv_write", sh, &vc, rv, LIM_EXACT);
        tbo_free(&kc);
        tbo_free(&vc);
        tbo_free(&k);
        tbo_free(&v);
        tbo_free(&ds);
        free(hkc);
        free(hvc);
        free(hk);
        free(hv);
        free(slots);
        free(rk);
        free(rv);
    }
}

/* One paged-attention case: sequence s has ctx_len len[s] and q[s] new query rows
 * (q 1 everywhere = decode), blocks of bs slots handed out in a shuffled order, a spare
 * table column (-1) the op must not read, and spare cache blocks. */
void tbo_run_paged(int64_t bs, int64_t Hq, int64_t Hkv, int64_t D, int nseq,
                   const int32_t *len, const int32_t *qn) {
    int32_t *cu_q = calloc((size_t)nseq + 1, sizeof *cu_q), max_q = 0, max_ctx = 0;
    int64_t max_blocks = 0, used_blocks = 0;
    for (int s = 0; s < nseq; s++) {
        cu_q[s + 1] = cu_q[s] + qn[s];
        max_q = qn[s] > max_q ? qn[s] : max_q;
        max_ctx = len[s] > max_ctx ? len[s] : max_ctx;
        const int64_t nb = (len[s] + bs - 1) / bs;
        max_blocks = nb > max_blocks ? nb : max_blocks;
        used_blocks += nb;
    }
    max_blocks += 1; /* a spare column the op must not read */
    const int64_t n_blocks = used_blocks + 3, T = cu_q[nseq];
    /* blocks handed out in a shuffled order, so tables are not contiguous */
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)n_blocks);
    for (int64_t i = 0; i < n_blocks; i++) perm[i] = (int32_t)i;
    for (int64_t i = n_blocks - 1; i > 0; i--) {
        const int32_t j = tbo_int(0, (int32_t)i), tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
    int32_t *bt = malloc(sizeof(int32_t) * (size_t)(nseq * max_blocks));
    int64_t next = 0;
    for (int s = 0; s < nseq; s++)
        for (int64_t b = 0; b < max_blocks; b++)
            bt[s * max_blocks + b] = b < (len[s] + bs - 1) / bs ? perm[next++] : -1;
    const int64_t sc[4] = {n_blocks, bs, Hkv, D}, sq[3] = {T, Hq, D}, sbt[2] = {nseq, max_blocks};
    float *hkc, *hvc, *hq;
    dbuf kc = tbo_rand(4, sc, -1, 1, &hkc), vc = tbo_rand(4, sc, -1, 1, &hvc);
    dbuf q = tbo_rand(3, sq, -3, 3, &hq), out = tbo_new(tbo_backend()->act_dtype, 3, sq);
    dbuf dbt = tbo_i32(2, sbt, bt), dcu = tbo_i32_1d(nseq + 1, cu_q), dlen = tbo_i32_1d(nseq, len);
    const float scale = 1.0f / sqrtf((float)D);
    ms_op_attention_paged(tbo_ctx(), &out.t, &q.t, &kc.t, &vc.t, &dbt.t, &dcu.t, &dlen.t, max_q,
                          max_ctx, scale);
    double *ref = tbo_ref_buf(T * Hq * D);
    ref_attention_paged(ref, hq, hkc, hvc, bt, max_blocks, bs, cu_q, len, nseq, Hq, Hkv, D,
                        scale);
    char sh[128];
    int n = snprintf(sh, sizeof sh, "bs=%lld ctx/q=", (long long)bs);
    for (int s = 0; s < nseq && n < 60; s++)
        n += snprintf(sh + n, sizeof sh - (size_t)n, s ? ",%d/%d" : "%d/%d", len[s], qn[s]);
    snprintf(sh + n, sizeof sh - (size_t)n, " Hq=%lld Hkv=%lld D=%lld", (long long)Hq,
             (long long)Hkv, (long long)D);
    tbo_check_out("attention_paged", sh, &out, ref, LIM_ATTN);
    tbo_free(&kc);
    tbo_free(&vc);
    tbo_free(&q);
    tbo_free(&out);
    tbo_free(&dbt);
    tbo_free(&dcu);
    tbo_free(&dlen);
    free(hkc);
    free(hvc);
    free(hq);
    free(perm);
    free(bt);
    free(ref);
    free(cu_q);
}

static void case_attention_paged(void) {
    if (!tbo_selected("attention_paged") ||
        !tbo_supported("attention_paged", tbo_backend()->ops->attention_paged))
        return;
    /* per sequence: (ctx_len, q_len); q_len 1 everywhere = decode */
    const struct { int64_t bs, Hq, Hkv, D; int nseq; int32_t len[4], q[4]; } cs[] = {
        {16, 6, 2, 16, 4, {1, 17, 40, 16}, {1, 1, 1, 1}},
        {16, 6, 3, 24, 4, {3, 25, 33, 16}, {3, 8, 1, 16}},
        {5, 4, 1, 64, 2, {12, 7}, {4, 7}},
        {16, 2, 2, 16, 1, {100}, {2}},
        {16, 8, 8, 128, 3, {31, 1, 64}, {1, 1, 1}},
    };
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++)
        tbo_run_paged(cs[c].bs, cs[c].Hq, cs[c].Hkv, cs[c].D, cs[c].nseq, cs[c].len, cs[c].q);
}

void tbo_cases_attention(void) {
    case_rope();
    case_attention();
    case_kv_write();
    case_attention_paged();
}
