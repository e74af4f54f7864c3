/*
 * The Llama decoder's forward pass over a batch of sequence chunks (transformers'
 * LlamaModel + lm_head inside LlavaForConditionalGeneration):
 *
 *   x = embed_tokens[ids]; x[image positions] = image features (in order)
 *   per layer:  h   = x + o_proj(attn(rope(q_proj(n1)), rope(k_proj(n1)), v_proj(n1)))
 *               x'  = h + down(silu(gate(n2)) * up(n2))      n1 = rms(x), n2 = rms(h)
 *   logits = lm_head(rms(x[last row of each sequence]))
 *
 * All chunks are packed into one [T, H] activation. K/V of the new tokens go into the
 * paged cache first; attention then reads them from there. When every chunk starts at
 * position 0 (plain prefill) the causal attention op runs on the fresh q/k/v directly
 * (no gather from cache blocks); chunks that continue a cached sequence (chunked
 * prefill, decode) use the paged attention op. A batch mixing both runs attention per
 * group of consecutive sequences of one kind: a monolithic worker's batch (decode tokens,
 * then fresh prefills) keeps the causal path for its prefills, which on the CPU backend
 * took 100 ms through the paged op beside one decode token vs 70 ms alone (900 tokens).
 */
#include <math.h>
#include <string.h>

#include "llm/llama_internal.h"

/* Consecutive sequences [seq0, seq0 + nseq) that are all fresh or all continuing. */
typedef struct attn_group {
    int32_t seq0, nseq;
    bool fresh;
    int32_t max_q, max_ctx;
    int32_t *cu_q;             /* (nseq + 1) the group's own offsets, from 0 */
} attn_group;

/* Host-side index arrays for one batch. */
typedef struct batch_plan {
    int32_t n_tokens;          /* T */
    int32_t *ids;              /* (T) gather ids (image positions gather row 0) */
    int32_t *pos;              /* (T) positions */
    int32_t *slots;            /* (T) cache slots */
    int32_t *cu_q;             /* (nseq + 1) */
    int32_t *ctx_lens;         /* (nseq) */
    int32_t *last;             /* (nseq) packed row of each sequence's last token */
    int32_t *tables;           /* (nseq, max_blocks) block tables, padded with 0 */
    int32_t *img_idx;          /* (T) packed rows that take image features, grouped per seq */
    int32_t *img_count;        /* (nseq) image rows of each chunk */
    int32_t max_q, max_ctx, max_blocks;
    int32_t n_groups;          /* attention groups: runs of sequences of one kind */
    attn_group *groups;        /* (n_groups) */
} batch_plan;

static void plan_free(batch_plan *p) {
    free(p->ids);
    free(p->pos);
    free(p->slots);
    free(p->cu_q);
    free(p->ctx_lens);
    free(p->last);
    free(p->tables);
    free(p->img_idx);
    free(p->img_count);
    for (int32_t g = 0; g < p->n_groups; g++) free(p->groups[g].cu_q);
    free(p->groups);
}

/* Validates the chunks (bad ids/positions/images are input errors; inconsistent block
 * tables are caller bugs) and fills the host index arrays. */
static ms_status plan_build(const ms_llama *m, const ms_kv_cache *kv, const ms_llama_seq *seqs,
                            int32_t nseq, batch_plan *p, ms_error *err) {
    const ms_llama_config *c = &m->cfg;
    const int32_t bs = kv->block_size;
    memset(p, 0, sizeof *p);
    int64_t T = 0;
    for (int32_t s = 0; s < nseq; s++) {
        const ms_llama_seq *q = &seqs[s];
        MS_CHECKF(q->n_tokens > 0 && q->pos0 >= 0 && q->image_row0 >= 0,
                  "llama: sequence %d: n_tokens %d pos0 %d image_row0 %d", s, q->n_tokens,
                  q->pos0, q->image_row0);
        const int64_t end = (int64_t)q->pos0 + q->n_tokens;
        if (end > c->max_position_embeddings)
            return ms_errorf(err, MS_ERR_LIMIT,
                             "sequence %d: position %lld is past the context of %d tokens "
                             "(max_position_embeddings)",
                             s, (long long)end - 1, c->max_position_embeddings);
        MS_CHECKF((int64_t)q->n_blocks * bs >= end,
                  "llama: sequence %d: %d blocks of %d do not cover %lld positions", s,
                  q->n_blocks, bs, (long long)end);
        T += q->n_tokens;
        if (q->n_tokens > p->max_q) p->max_q = q->n_tokens;
        if (end > p->max_ctx) p->max_ctx = (int32_t)end;
        int32_t need_blocks = (int32_t)((end + bs - 1) / bs);
        if (need_blocks > p->max_blocks) p->max_blocks = need_blocks;
    }
    MS_CHECK(T <= INT32_MAX);
    p->n_tokens = (int32_t)T;
    p->groups = ms_xcalloc((size_t)nseq, sizeof *p->groups);
    for (int32_t s = 0; s < nseq; s++) {
        const bool fresh = seqs[s].pos0 == 0;
        attn_group *g = p->n_groups ? &p->groups[p->n_groups - 1] : NULL;
        if (!g || g->fresh != fresh) {
            g = &p->groups[p->n_groups++];
            *g = (attn_group){.seq0 = s, .fresh = fresh};
        }
        g->nseq++;
        if (seqs[s].n_tokens > g->max_q) g->max_q = seqs[s].n_tokens;
        if (seqs[s].pos0 + seqs[s].n_tokens > g->max_ctx) g->max_ctx = seqs[s].pos0 + seqs[s].n_tokens;
    }
    p->ids = ms_xmalloc((size_t)T * sizeof(int32_t));
    p->pos = ms_xmalloc((size_t)T * sizeof(int32_t));
    p->slots = ms_xmalloc((size_t)T * sizeof(int32_t));
    p->img_idx = ms_xmalloc((size_t)T * sizeof(int32_t));
    p->cu_q = ms_xmalloc((size_t)(nseq + 1) * sizeof(int32_t));
    p->ctx_lens = ms_xmalloc((size_t)nseq * sizeof(int32_t));
    p->last = ms_xmalloc((size_t)nseq * sizeof(int32_t));
    p->img_count = ms_xcalloc((size_t)nseq, sizeof(int32_t));
    p->tables = ms_xcalloc((size_t)nseq * (size_t)p->max_blocks, sizeof(int32_t));

    int32_t t = 0, n_img = 0;
    p->cu_q[0] = 0;
    for (int32_t s = 0; s < nseq; s++) {
        const ms_llama_seq *q = &seqs[s];
        const int32_t end = q->pos0 + q->n_tokens;
        const int32_t used_blocks = (end + bs - 1) / bs;
        for (int32_t b = 0; b < used_blocks; b++) {
            MS_CHECKF(q->block_table[b] >= 0 && q->block_table[b] < kv->n_blocks,
                      "llama: sequence %d: block id %d out of the pool of %d", s,
                      q->block_table[b], kv->n_blocks);
            p->tables[(size_t)s * p->max_blocks + b] = q->block_table[b];
        }
        const int64_t rows = q->image_embeds ? q->image_embeds->shape[0] : 0;
        for (int32_t i = 0; i < q->n_tokens; i++, t++) {
            const int32_t id = q->tokens[i], pos = q->pos0 + i;
            p->pos[t] = pos;
            p->slots[t] = q->block_table[pos / bs] * bs + pos % bs;
            if (id == m->image_token_index && q->image_embeds) {
                const int64_t row = (int64_t)q->image_row0 + p->img_count[s];
                if (row >= rows)
                    return ms_errorf(err, MS_ERR_INVALID,
                                     "sequence %d: image token at position %d has no image "
                                     "embedding row left (%lld rows given)",
                                     s, pos, (long long)rows);
                p->img_idx[n_img++] = t;
                p->img_count[s]++;
                p->ids[t] = 0; /* any valid row: the image feature overwrites it */
            } else if (id < 0 || id >= m->cfg.vocab_size) {
                return ms_errorf(err, MS_ERR_INVALID,
                                 "sequence %d: token id %d at position %d is out of range "
                                 "(vocab_size %d)",
                                 s, id, pos, m->cfg.vocab_size);
            } else {
                p->ids[t] = id;
            }
        }
        p->cu_q[s + 1] = t;
        p->ctx_lens[s] = end;
        p->last[s] = t - 1;
    }
    for (int32_t g = 0; g < p->n_groups; g++) {
        attn_group *G = &p->groups[g];
        G->cu_q = ms_xmalloc((size_t)(G->nseq + 1) * sizeof(int32_t));
        for (int32_t k = 0; k <= G->nseq; k++) G->cu_q[k] = p->cu_q[G->seq0 + k] - p->cu_q[G->seq0];
    }
    return MS_OK;
}

/* Embedding gather, then the image features over the image-token rows. */
static void embed_batch(ms_ctx *ctx, const ms_llama *m, const ms_llama_seq *seqs, int32_t nseq,
                        const batch_plan *p, ms_tensor *x /* [T, H] */) {
    const int64_t T = p->n_tokens;
    ms_tensor ids = ms_ctx_upload_i32(ctx, p->ids, 1, &T); /* i32[T] */
    ms_op_get_rows(ctx, x, &m->embed, &ids);
    int32_t off = 0;
    for (int32_t s = 0; s < nseq; s++) {
        const int64_t n = p->img_count[s];
        if (n == 0) continue;
        const ms_tensor *emb = seqs[s].image_embeds; /* [rows, H] */
        MS_CHECKF(emb->dtype == x->dtype && ms_tensor_cols(emb) == m->cfg.hidden_size,
                  "llama: sequence %d: image embeddings are not act[rows, %d]", s,
                  m->cfg.hidden_size);
        ms_tensor src = ms_tensor_row_view(emb, seqs[s].image_row0, n); /* [n, H] */
        ms_tensor idx = ms_ctx_upload_i32(ctx, p->img_idx + off, 1, &n); /* i32[n] */
        ms_op_scatter_rows(ctx, x, &src, &idx);
        off += (int32_t)n;
    }
}

/* One attention group's device-side indices and its rows in the packed batch. */
typedef struct group_io {
    ms_tensor cu_q, ctx_lens, tables;
    int64_t row0, rows;
} group_io;

/* [rows, heads, D] view of rows [row0, row0 + rows) of a packed [T, heads * D] tensor. */
static ms_tensor rows_3d(const ms_tensor *t, int64_t row0, int64_t rows, int64_t heads, int64_t D) {
    const ms_tensor r = ms_tensor_row_view(t, row0, rows);
    const int64_t shape[3] = {rows, heads, D};
    return ms_tensor_reshape(&r, 3, shape);
}

/* Layer l's attention group by group: fresh groups on their own q/k/v (causal op),
 * continuing ones through the cache (paged op). att, q: [T, Hq*D]; k, v: [T, Hkv*D]. */
static void attention_groups(ms_ctx *ctx, const batch_plan *p, const group_io *gio, ms_kv_cache *kv, int32_t l,
                             ms_tensor *att, const ms_tensor *q, const ms_tensor *k, const ms_tensor *v,
                             int64_t Hq, int64_t Hkv, int64_t D, float scale) {
    for (int32_t g = 0; g < p->n_groups; g++) {
        const attn_group *G = &p->groups[g];
        ms_tensor att_g = rows_3d(att, gio[g].row0, gio[g].rows, Hq, D);  /* [rows, Hq, D] */
        ms_tensor q_g = rows_3d(q, gio[g].row0, gio[g].rows, Hq, D);      /* [rows, Hq, D] */
        if (G->fresh) {
            ms_tensor k_g = rows_3d(k, gio[g].row0, gio[g].rows, Hkv, D); /* [rows, Hkv, D] */
            ms_tensor v_g = rows_3d(v, gio[g].row0, gio[g].rows, Hkv, D); /* [rows, Hkv, D] */
            ms_op_attention(ctx, &att_g, &q_g, &k_g, &v_g, &gio[g].cu_q, G->max_q, true, scale);
        } else {
            ms_op_attention_paged(ctx, &att_g, &q_g, &kv->k[l], &kv->v[l], &gio[g].tables, &gio[g].cu_q,
                                  &gio[g].ctx_lens, G->max_q, G->max_ctx, scale);
        }
    }
}

ms_status ms_llama_forward(ms_ctx *ctx, const ms_llama *m, ms_kv_cache *kv,
                           const ms_llama_seq *seqs, int32_t nseq, ms_tensor *logits,
                           ms_error *err) {
    MS_CHECK(nseq > 0);
    const ms_llama_config *c = &m->cfg;
    MS_CHECK(kv->n_layers == c->num_hidden_layers && kv->n_kv_heads == c->num_key_value_heads &&
             kv->head_dim == c->head_dim);
    batch_plan p;
    ms_status st = plan_build(m, kv, seqs, nseq, &p, err);
    if (st != MS_OK) {
        plan_free(&p);
        return st;
    }
    const ms_dtype act = ctx->backend->act_dtype;
    const int64_t T = p.n_tokens, H = c->hidden_size, I = c->intermediate_size;
    const int64_t Hq = c->num_attention_heads, Hkv = c->num_key_value_heads, D = c->head_dim;
    const float scale = 1.0f / sqrtf((float)D);
    const int64_t nseq64 = nseq, nseq1 = nseq + 1;

    ms_tensor pos = ms_ctx_upload_i32(ctx, p.pos, 1, &T);         /* i32[T] */
    ms_tensor slots = ms_ctx_upload_i32(ctx, p.slots, 1, &T);     /* i32[T] */
    ms_tensor cu_q = ms_ctx_upload_i32(ctx, p.cu_q, 1, &nseq1);   /* i32[nseq+1] */
    ms_tensor ctx_lens = ms_ctx_upload_i32(ctx, p.ctx_lens, 1, &nseq64); /* i32[nseq] */
    const int64_t bt_shape[2] = {nseq, p.max_blocks};
    ms_tensor tables = ms_ctx_upload_i32(ctx, p.tables, 2, bt_shape); /* i32[nseq, max_blocks] */
    ms_tensor last = ms_ctx_upload_i32(ctx, p.last, 1, &nseq64);  /* i32[nseq] */

    /* Activations, reused by every layer so scratch does not grow with depth. */
    ms_tensor resid = ms_ctx_tensor_2d(ctx, act, T, H);         /* [T, H] residual stream */
    ms_tensor xn = ms_ctx_tensor_2d(ctx, act, T, H);            /* [T, H] normed input */
    ms_tensor q = ms_ctx_tensor_2d(ctx, act, T, Hq * D);        /* [T, Hq*D] */
    ms_tensor k = ms_ctx_tensor_2d(ctx, act, T, Hkv * D);       /* [T, Hkv*D] */
    ms_tensor v = ms_ctx_tensor_2d(ctx, act, T, Hkv * D);       /* [T, Hkv*D] */
    ms_tensor att = ms_ctx_tensor_2d(ctx, act, T, Hq * D);      /* [T, Hq*D] */
    ms_tensor proj = ms_ctx_tensor_2d(ctx, act, T, H);          /* [T, H] o_proj / down_proj */
    ms_tensor gate = ms_ctx_tensor_2d(ctx, act, T, I);          /* [T, I] */
    ms_tensor up = ms_ctx_tensor_2d(ctx, act, T, I);            /* [T, I] */
    ms_tensor mlp = ms_ctx_tensor_2d(ctx, act, T, I);           /* [T, I] silu(gate) * up */
    const int64_t q3[3] = {T, Hq, D}, kv3[3] = {T, Hkv, D};
    ms_tensor q_h = ms_tensor_reshape(&q, 3, q3);               /* [T, Hq, D] */
    ms_tensor k_h = ms_tensor_reshape(&k, 3, kv3);              /* [T, Hkv, D] */
    ms_tensor v_h = ms_tensor_reshape(&v, 3, kv3);              /* [T, Hkv, D] */
    ms_tensor att_h = ms_tensor_reshape(&att, 3, q3);           /* [T, Hq, D] */

    /* A batch of fresh and continuing sequences: each group's own index tensors. */
    group_io *gio = p.n_groups > 1 ? ms_xcalloc((size_t)p.n_groups, sizeof *gio) : NULL;
    for (int32_t g = 0; gio && g < p.n_groups; g++) {
        const attn_group *G = &p.groups[g];
        const int64_t n = G->nseq, n1 = G->nseq + 1, tshape[2] = {G->nseq, p.max_blocks};
        gio[g].cu_q = ms_ctx_upload_i32(ctx, G->cu_q, 1, &n1);                       /* i32[n+1] */
        gio[g].ctx_lens = ms_ctx_upload_i32(ctx, p.ctx_lens + G->seq0, 1, &n);        /* i32[n] */
        gio[g].tables = ms_ctx_upload_i32(ctx, p.tables + (size_t)G->seq0 * p.max_blocks, 2, tshape);
        gio[g].row0 = p.cu_q[G->seq0];
        gio[g].rows = p.cu_q[G->seq0 + G->nseq] - p.cu_q[G->seq0];
    }

    embed_batch(ctx, m, seqs, nseq, &p, &resid);
    ms_op_rmsnorm(ctx, &xn, &resid, &m->layers[0].input_norm, c->rms_norm_eps);
    for (int32_t l = 0; l < c->num_hidden_layers; l++) {
        const ms_llama_layer *L = &m->layers[l];
        ms_op_matmul(ctx, &q, &xn, &L->wq, ms_llama_opt(&L->bq));
        ms_op_matmul(ctx, &k, &xn, &L->wk, ms_llama_opt(&L->bk));
        ms_op_matmul(ctx, &v, &xn, &L->wv, ms_llama_opt(&L->bv));
        ms_op_rope(ctx, &q_h, &pos, c->rope_theta);
        ms_op_rope(ctx, &k_h, &pos, c->rope_theta);
        ms_op_kv_write(ctx, &kv->k[l], &kv->v[l], &k_h, &v_h, &slots);
        if (gio)
            attention_groups(ctx, &p, gio, kv, l, &att, &q, &k, &v, Hq, Hkv, D, scale);
        else if (p.groups[0].fresh) /* one group: every chunk fresh, or none */
            ms_op_attention(ctx, &att_h, &q_h, &k_h, &v_h, &cu_q, p.max_q, true, scale);
        else
            ms_op_attention_paged(ctx, &att_h, &q_h, &kv->k[l], &kv->v[l], &tables, &cu_q,
                                  &ctx_lens, p.max_q, p.max_ctx, scale);
        ms_op_matmul(ctx, &proj, &att, &L->wo, ms_llama_opt(&L->bo));
        ms_op_add_rmsnorm(ctx, &resid, &proj, &xn, &L->post_norm, c->rms_norm_eps);
        ms_op_matmul(ctx, &gate, &xn, &L->w_gate, ms_llama_opt(&L->b_gate));
        ms_op_matmul(ctx, &up, &xn, &L->w_up, ms_llama_opt(&L->b_up));
        ms_op_silu_mul(ctx, &mlp, &gate, &up);
        ms_op_matmul(ctx, &proj, &mlp, &L->w_down, ms_llama_opt(&L->b_down));
        if (l + 1 < c->num_hidden_layers)
            ms_op_add_rmsnorm(ctx, &resid, &proj, &xn, &m->layers[l + 1].input_norm,
                              c->rms_norm_eps);
        else
            ms_op_add(ctx, &resid, &resid, &proj);
    }
    /* Only each sequence's last row needs the final norm and the LM head. */
    ms_tensor h_last = ms_ctx_tensor_2d(ctx, act, nseq, H);     /* [nseq, H] */
    ms_tensor n_last = ms_ctx_tensor_2d(ctx, act, nseq, H);     /* [nseq, H] */
    ms_op_get_rows(ctx, &h_last, &resid, &last);
    ms_op_rmsnorm(ctx, &n_last, &h_last, &m->norm, c->rms_norm_eps);
    *logits = ms_ctx_tensor_2d(ctx, MS_DTYPE_F32, nseq, c->vocab_size); /* f32[nseq, V] */
    ms_op_matmul(ctx, logits, &n_last, &m->lm_head, NULL);
    free(gio);
    plan_free(&p);
    return MS_OK;
}
