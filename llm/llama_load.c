/*
 * Loading the Llama decoder's weights from a LLaVA folder (published tensor names; the
 * weights module also resolves the newer "model.language_model..." layout).
 */
#include <string.h>

#include "llm/llama_internal.h"

/* Loads name (printf-style, one int) with the given 1-D or 2-D shape. */
static ms_status load_tensor(const ms_weights *w, ms_ctx *ctx, ms_tensor *out, int64_t d0,
                             int64_t d1, ms_error *err, const char *fmt, int layer) {
    char name[256];
    snprintf(name, sizeof name, fmt, layer);
    const int64_t shape[2] = {d0, d1};
    return ms_weights_load(w, ctx, name, d1 > 0 ? 2 : 1, shape, out, err);
}

#define LOAD(dst, d0, d1, fmt, layer)                                                   \
    do {                                                                                \
        if (load_tensor(w, ctx, (dst), (d0), (d1), err, (fmt), (layer)) != MS_OK) {     \
            ms_llama_free(m);                                                           \
            return ms_error_wrap(err, "loading the language model");                    \
        }                                                                               \
    } while (0)

static ms_status check_config(const ms_llama_config *c, ms_error *err) {
    if (strcmp(c->hidden_act, "silu") != 0)
        return ms_errorf(err, MS_ERR_UNSUPPORTED, "text_config.hidden_act '%s' is not supported (only silu)",
                         c->hidden_act);
    if (c->vocab_size <= 0 || c->hidden_size <= 0 || c->intermediate_size <= 0 ||
        c->num_hidden_layers <= 0 || c->num_attention_heads <= 0 || c->num_key_value_heads <= 0 ||
        c->head_dim <= 0 || c->max_position_embeddings <= 0)
        return ms_errorf(err, MS_ERR_INVALID, "text_config has a non-positive size");
    if (c->num_attention_heads % c->num_key_value_heads != 0)
        return ms_errorf(err, MS_ERR_INVALID,
                         "text_config: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                         c->num_attention_heads, c->num_key_value_heads);
    if (c->head_dim % 2 != 0)
        return ms_errorf(err, MS_ERR_INVALID, "text_config: head_dim %d is odd (RoPE needs pairs)",
                         c->head_dim);
    return MS_OK;
}

ms_status ms_llama_load(const ms_llava_config *cfg, const ms_weights *w, ms_ctx *ctx,
                        ms_llama **out, ms_error *err) {
    *out = NULL;
    const ms_llama_config *c = &cfg->text;
    if (check_config(c, err) != MS_OK) return ms_error_wrap(err, "loading the language model");
    ms_llama *m = ms_xcalloc(1, sizeof *m);
    m->cfg = *c;
    m->image_token_index = cfg->image_token_index;
    m->backend = ctx->backend;
    m->layers = ms_xcalloc((size_t)c->num_hidden_layers, sizeof *m->layers);

    const int64_t H = c->hidden_size, I = c->intermediate_size, V = c->vocab_size;
    const int64_t QD = (int64_t)c->num_attention_heads * c->head_dim;
    const int64_t KD = (int64_t)c->num_key_value_heads * c->head_dim;
    LOAD(&m->embed, V, H, "language_model.model.embed_tokens.weight", 0);
    LOAD(&m->norm, H, 0, "language_model.model.norm.weight", 0);
    if (c->tie_word_embeddings) {
        m->lm_head = m->embed;
        m->lm_head_tied = true;
    } else {
        LOAD(&m->lm_head, V, H, "language_model.lm_head.weight", 0);
    }
    for (int l = 0; l < c->num_hidden_layers; l++) {
        ms_llama_layer *L = &m->layers[l];
        LOAD(&L->input_norm, H, 0, "language_model.model.layers.%d.input_layernorm.weight", l);
        LOAD(&L->post_norm, H, 0, "language_model.model.layers.%d.post_attention_layernorm.weight", l);
        LOAD(&L->wq, QD, H, "language_model.model.layers.%d.self_attn.q_proj.weight", l);
        LOAD(&L->wk, KD, H, "language_model.model.layers.%d.self_attn.k_proj.weight", l);
        LOAD(&L->wv, KD, H, "language_model.model.layers.%d.self_attn.v_proj.weight", l);
        LOAD(&L->wo, H, QD, "language_model.model.layers.%d.self_attn.o_proj.weight", l);
        if (c->attention_bias) {
            LOAD(&L->bq, QD, 0, "language_model.model.layers.%d.self_attn.q_proj.bias", l);
            LOAD(&L->bk, KD, 0, "language_model.model.layers.%d.self_attn.k_proj.bias", l);
            LOAD(&L->bv, KD, 0, "language_model.model.layers.%d.self_attn.v_proj.bias", l);
            LOAD(&L->bo, H, 0, "language_model.model.layers.%d.self_attn.o_proj.bias", l);
        }
        LOAD(&L->w_gate, I, H, "language_model.model.layers.%d.mlp.gate_proj.weight", l);
        LOAD(&L->w_up, I, H, "language_model.model.layers.%d.mlp.up_proj.weight", l);
        LOAD(&L->w_down, H, I, "language_model.model.layers.%d.mlp.down_proj.weight", l);
        if (c->mlp_bias) {
            LOAD(&L->b_gate, I, 0, "language_model.model.layers.%d.mlp.gate_proj.bias", l);
            LOAD(&L->b_up, I, 0, "language_model.model.layers.%d.mlp.up_proj.bias", l);
            LOAD(&L->b_down, H, 0, "language_model.model.layers.%d.mlp.down_proj.bias", l);
        }
    }
    *out = m;
    return MS_OK;
}

static void free_tensor(ms_backend *be, ms_tensor *t) {
    if (t->data) ms_backend_tensor_free(be, t);
    t->data = NULL;
}

void ms_llama_free(ms_llama *m) {
    if (!m) return;
    ms_backend *be = m->backend;
    if (m->layers) {
        for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
            ms_llama_layer *L = &m->layers[l];
            ms_tensor *all[] = {&L->input_norm, &L->post_norm, &L->wq, &L->wk, &L->wv, &L->wo,
                                &L->bq, &L->bk, &L->bv, &L->bo, &L->w_gate, &L->w_up,
                                &L->w_down, &L->b_gate, &L->b_up, &L->b_down};
            for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free_tensor(be, all[i]);
        }
        free(m->layers);
    }
    if (!m->lm_head_tied) free_tensor(be, &m->lm_head);
    free_tensor(be, &m->embed);
    free_tensor(be, &m->norm);
    free(m);
}

const ms_llama_config *ms_llama_config_of(const ms_llama *m) { return &m->cfg; }
