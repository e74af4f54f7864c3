/*
 * CLIP vision tower + LLaVA projector on the backend op table (transformers'
 * CLIPVisionTransformer and LlavaMultiModalProjector).
 *
 * What LLaVA feeds the language model, read from modeling_clip.py / modeling_llava.py:
 * - embeddings = concat(class_embedding, patch_embedding(pixels)) + position_embedding
 * - hidden_states[0] = pre_layrnorm(embeddings): the input of encoder layer 0
 * - hidden_states[i] = output of encoder layer i-1 (pre-norm: x + attn(ln1(x)), then
 *   x + mlp(ln2(x)), bidirectional attention with biases, fc1 -> act -> fc2)
 * - the selected state is hidden_states[vision_feature_layer] (negative counts from the
 *   end: -2 = output of layer L-2 counted from 0), with no post_layernorm; so only
 *   the layers up to that one are loaded and run
 * - strategy "default" drops the class row, "full" keeps it
 * - projector: linear_1 -> act (gelu, erf form) -> linear_2
 *
 * A batch of N images runs as one packed sequence set: T = N * (P + 1) rows, attention
 * restricted to each image's rows by cu_seqlens.
 */
#include "encoder/vision.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

typedef enum vision_act {
    VISION_ACT_QUICK_GELU,
    VISION_ACT_GELU,
} vision_act;

typedef struct vision_layer {
    ms_tensor ln1_w, ln1_b;            /* [E] */
    ms_tensor q_w, k_w, v_w, o_w;      /* [E, E] */
    ms_tensor q_b, k_b, v_b, o_b;      /* [E] */
    ms_tensor ln2_w, ln2_b;            /* [E] */
    ms_tensor fc1_w;                   /* [I, E] */
    ms_tensor fc1_b;                   /* [I] */
    ms_tensor fc2_w;                   /* [E, I] */
    ms_tensor fc2_b;                   /* [E] */
} vision_layer;

struct ms_vision {
    ms_backend *be;
    int32_t hidden;        /* E */
    int32_t heads;         /* H, head_dim D = E / H */
    int32_t inter;         /* I */
    int32_t patch;         /* p */
    int32_t image_size;
    int32_t n_patches;     /* P = (image_size / p)^2 */
    int32_t n_layers;      /* layers run: the index of the selected hidden state */
    int32_t text_hidden;   /* projector output width */
    bool keep_cls;
    float eps;
    vision_act act, proj_act;
    ms_image_proc_config proc;

    ms_tensor patch_w;     /* [E, 3*p*p]: conv weight [E, 3, p, p] flattened */
    ms_tensor pos_cls;     /* [P+1, E]: position embeddings, class embedding added to row 0 */
    ms_tensor pre_ln_w, pre_ln_b; /* [E] */
    vision_layer *layers;  /* [n_layers] */
    ms_tensor proj1_w;     /* [Tt, E] */
    ms_tensor proj1_b;     /* [Tt] or no data */
    ms_tensor proj2_w;     /* [Tt, Tt] */
    ms_tensor proj2_b;     /* [Tt] or no data */

    ms_tensor **owned;     /* every loaded tensor, for ms_vision_free */
    int32_t n_owned, cap_owned;
};

static ms_status parse_act(const char *name, const char *what, vision_act *out, ms_error *err) {
    if (strcmp(name, "quick_gelu") == 0) *out = VISION_ACT_QUICK_GELU;
    else if (strcmp(name, "gelu") == 0) *out = VISION_ACT_GELU;
    else
        return ms_errorf(err, MS_ERR_UNSUPPORTED,
                         "%s \"%s\" is not supported (quick_gelu or gelu)", what, name);
    return MS_OK;
}

static ms_status load(ms_vision *v, const ms_weights *w, ms_ctx *ctx, ms_tensor *t,
                      int ndim, const int64_t *shape, ms_error *err, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));

static ms_status load(ms_vision *v, const ms_weights *w, ms_ctx *ctx, ms_tensor *t,
                      int ndim, const int64_t *shape, ms_error *err, const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    MS_CHECK(v->n_owned < v->cap_owned);
    ms_status st = ms_weights_load(w, ctx, name, ndim, shape, t, err);
    if (st == MS_OK) v->owned[v->n_owned++] = t;
    return st;
}

#define VT "vision_tower.vision_model."

static ms_status load_layer(ms_vision *v, const ms_weights *w, ms_ctx *ctx, int l,
                            vision_layer *L, ms_error *err) {
    const int64_t e = v->hidden, i = v->inter;
    const int64_t sq[2] = {e, e}, up[2] = {i, e}, down[2] = {e, i};
    ms_status st = MS_OK;
#define LOAD(t, nd, sh, suffix) \
    if (st == MS_OK) st = load(v, w, ctx, &L->t, nd, sh, err, VT "encoder.layers.%d." suffix, l)
    LOAD(ln1_w, 1, &e, "layer_norm1.weight");
    LOAD(ln1_b, 1, &e, "layer_norm1.bias");
    LOAD(q_w, 2, sq, "self_attn.q_proj.weight");
    LOAD(q_b, 1, &e, "self_attn.q_proj.bias");
    LOAD(k_w, 2, sq, "self_attn.k_proj.weight");
    LOAD(k_b, 1, &e, "self_attn.k_proj.bias");
    LOAD(v_w, 2, sq, "self_attn.v_proj.weight");
    LOAD(v_b, 1, &e, "self_attn.v_proj.bias");
    LOAD(o_w, 2, sq, "self_attn.out_proj.weight");
    LOAD(o_b, 1, &e, "self_attn.out_proj.bias");
    LOAD(ln2_w, 1, &e, "layer_norm2.weight");
    LOAD(ln2_b, 1, &e, "layer_norm2.bias");
    LOAD(fc1_w, 2, up, "mlp.fc1.weight");
    LOAD(fc1_b, 1, &i, "mlp.fc1.bias");
    LOAD(fc2_w, 2, down, "mlp.fc2.weight");
    LOAD(fc2_b, 1, &e, "mlp.fc2.bias");
#undef LOAD
    return st;
}

/* Config checks that depend on nothing loaded: sizes, the selected layer, names. */
static ms_status vision_check_config(const ms_llava_config *cfg, ms_vision *v, ms_error *err) {
    const ms_clip_config *c = &cfg->vision;
    if (c->hidden_size <= 0 || c->num_attention_heads <= 0 || c->intermediate_size <= 0 ||
        c->patch_size <= 0 || c->image_size <= 0 || c->num_hidden_layers <= 0 ||
        cfg->text.hidden_size <= 0)
        return ms_errorf(err, MS_ERR_INVALID, "vision config: sizes must be positive");
    if (c->hidden_size % c->num_attention_heads != 0)
        return ms_errorf(err, MS_ERR_INVALID,
                         "vision config: hidden_size %d is not a multiple of num_attention_heads %d",
                         c->hidden_size, c->num_attention_heads);
    if (c->image_size % c->patch_size != 0)
        return ms_errorf(err, MS_ERR_INVALID,
                         "vision config: image_size %d is not a multiple of patch_size %d",
                         c->image_size, c->patch_size);
    if (c->num_channels != 3)
        return ms_errorf(err, MS_ERR_UNSUPPORTED, "vision config: num_channels %d (only 3 is supported)",
                         c->num_channels);
    int32_t L = c->num_hidden_layers, k = cfg->vision_feature_layer;
    int32_t idx = k < 0 ? L + 1 + k : k; /* index into hidden_states[0..L] */
    if (idx < 0 || idx > L)
        return ms_errorf(err, MS_ERR_INVALID,
                         "vision_feature_layer %d is outside the %d hidden states of a %d-layer tower",
                         k, L + 1, L);
    const char *strat = cfg->vision_feature_select_strategy;
    if (strcmp(strat, "default") != 0 && strcmp(strat, "full") != 0)
        return ms_errorf(err, MS_ERR_UNSUPPORTED,
                         "vision_feature_select_strategy \"%s\" is not supported (default or full)", strat);
    const ms_image_proc_config *p = &cfg->image;
    if (!p->do_center_crop || p->crop_width != c->image_size || p->crop_height != c->image_size)
        return ms_errorf(err, MS_ERR_UNSUPPORTED,
                         "preprocessor config: the center crop must be on and %dx%d (the vision "
                         "image_size), got %s %dx%d", c->image_size, c->image_size,
                         p->do_center_crop ? "crop" : "no crop", p->crop_width, p->crop_height);
    ms_status st = parse_act(c->hidden_act, "vision hidden_act", &v->act, err);
    if (st == MS_OK) st = parse_act(cfg->projector_hidden_act, "projector_hidden_act", &v->proj_act, err);
    if (st != MS_OK) return st;
    int32_t grid = c->image_size / c->patch_size;
    v->hidden = c->hidden_size;
    v->heads = c->num_attention_heads;
    v->inter = c->intermediate_size;
    v->patch = c->patch_size;
    v->image_size = c->image_size;
    v->n_patches = grid * grid;
    v->n_layers = idx;
    v->text_hidden = cfg->text.hidden_size;
    v->keep_cls = strcmp(strat, "full") == 0;
    v->eps = c->layer_norm_eps;
    v->proc = *p;
    return MS_OK;
}

ms_status ms_vision_load(const ms_llava_config *cfg, const ms_weights *w, ms_ctx *ctx,
                         ms_vision **out, ms_error *err) {
    MS_CHECK(cfg && w && ctx && out);
    *out = NULL;
    ms_vision *v = ms_xcalloc(1, sizeof *v);
    v->be = ctx->backend;
    ms_status st = vision_check_config(cfg, v, err);
    if (st != MS_OK) {
        free(v);
        return st;
    }
    const int64_t e = v->hidden, pp3 = 3 * (int64_t)v->patch * v->patch, s = v->n_patches + 1;
    const int64_t tt = v->text_hidden;
    v->cap_owned = 10 + 16 * v->n_layers;
    v->owned = ms_xcalloc((size_t)v->cap_owned, sizeof *v->owned);

    ms_tensor conv = {0}, cls = {0};
    const int64_t conv_shape[4] = {e, 3, v->patch, v->patch}, pos_shape[2] = {s, e};
    st = ms_weights_load(w, ctx, VT "embeddings.patch_embedding.weight", 4, conv_shape, &conv, err);
    if (st == MS_OK) {
        const int64_t flat[2] = {e, pp3};
        v->patch_w = ms_tensor_reshape(&conv, 2, flat); /* same memory, [E, 3*p*p] */
        v->owned[v->n_owned++] = &v->patch_w; /* frees conv's memory */
    }
    if (st == MS_OK) st = load(v, w, ctx, &v->pos_cls, 2, pos_shape, err, VT "embeddings.position_embedding.weight");
    if (st == MS_OK) st = ms_weights_load(w, ctx, VT "embeddings.class_embedding", 1, &e, &cls, err);
    if (st == MS_OK) {
        /* Row 0 of the sequence is the class embedding plus position 0; folding the sum
         * into the table lets encode start from zeros there (the same rounding as
         * transformers' add in the activation dtype). */
        ms_tensor row0 = ms_tensor_row_view(&v->pos_cls, 0, 1);
        const int64_t one_row[2] = {1, e};
        ms_tensor cls_row = ms_tensor_reshape(&cls, 2, one_row);
        ms_op_add(ctx, &row0, &row0, &cls_row);
        ms_ctx_sync(ctx);
        ms_backend_tensor_free(v->be, &cls);
    }
    if (st == MS_OK) st = load(v, w, ctx, &v->pre_ln_w, 1, &e, err, VT "pre_layrnorm.weight");
    if (st == MS_OK) st = load(v, w, ctx, &v->pre_ln_b, 1, &e, err, VT "pre_layrnorm.bias");
    v->layers = ms_xcalloc(v->n_layers > 0 ? (size_t)v->n_layers : 1, sizeof *v->layers);
    for (int l = 0; l < v->n_layers && st == MS_OK; l++) st = load_layer(v, w, ctx, l, &v->layers[l], err);

    const int64_t p1[2] = {tt, e}, p2[2] = {tt, tt};
    if (st == MS_OK) st = load(v, w, ctx, &v->proj1_w, 2, p1, err, "multi_modal_projector.linear_1.weight");
    if (st == MS_OK) st = load(v, w, ctx, &v->proj2_w, 2, p2, err, "multi_modal_projector.linear_2.weight");
    if (st == MS_OK && cfg->multimodal_projector_bias) {
        st = load(v, w, ctx, &v->proj1_b, 1, &tt, err, "multi_modal_projector.linear_1.bias");
        if (st == MS_OK) st = load(v, w, ctx, &v->proj2_b, 1, &tt, err, "multi_modal_projector.linear_2.bias");
    }
    if (st != MS_OK) {
        ms_vision_free(v);
        return ms_error_wrap(err, "loading the vision tower");
    }
    *out = v;
    return MS_OK;
}

void ms_vision_free(ms_vision *v) {
    if (!v) return;
    for (int32_t i = 0; i < v->n_owned; i++) ms_backend_tensor_free(v->be, v->owned[i]);
    free(v->owned);
    free(v->layers);
    free(v);
}

int32_t ms_vision_image_size(const ms_vision *v) { return v->image_size; }
int32_t ms_vision_tokens_per_image(const ms_vision *v) { return v->n_patches + (v->keep_cls ? 1 : 0); }
int32_t ms_vision_embed_dim(const ms_vision *v) { return v->text_hidden; }
const ms_image_proc_config *ms_vision_image_config(const ms_vision *v) { return &v->proc; }

ms_tensor ms_vision_pixels(ms_ctx *ctx, const ms_vision *v, const ms_image_u8 *crops, int32_t n) {
    MS_CHECK(ctx && v && crops && n > 0);
    for (int32_t i = 0; i < n; i++)
        MS_CHECKF(crops[i].width == v->image_size && crops[i].height == v->image_size,
                  "crop %d is %dx%d, the tower takes %dx%d", i, crops[i].width, crops[i].height,
                  (int)v->image_size, (int)v->image_size);
    /* one normalisation for serving and `modserve image preprocess` (encoder/image_pixels.c) */
    return ms_image_pixels(ctx, &v->proc, crops, n); /* [N, 3, side, side] */
}

static void apply_act(ms_ctx *ctx, vision_act act, ms_tensor *y, const ms_tensor *x) {
    if (act == VISION_ACT_GELU) ms_op_gelu(ctx, y, x);
    else ms_op_quick_gelu(ctx, y, x);
}

static const ms_tensor *opt(const ms_tensor *t) { return t->data ? t : NULL; }

ms_status ms_vision_encode(ms_ctx *ctx, const ms_vision *v, const ms_tensor *pixels,
                           ms_tensor *embeds, ms_error *err) {
    MS_CHECK(ctx && v && pixels && embeds);
    const ms_dtype act = ctx->backend->act_dtype;
    MS_CHECK(pixels->ndim == 4 && pixels->dtype == act && pixels->shape[1] == 3 &&
             pixels->shape[2] == v->image_size && pixels->shape[3] == v->image_size);
    const int64_t n = pixels->shape[0], p = v->n_patches, s = p + 1, e = v->hidden;
    MS_CHECK(n > 0);
    if (n * s > INT32_MAX / 2)
        return ms_errorf(err, MS_ERR_LIMIT, "vision: %lld images in one batch is too many", (long long)n);
    const int64_t t = n * s, hd = e / v->heads;

    /* patch rows of image i go to rows i*S+1 .. i*S+P; the same map later drops CLS */
    int32_t *host_idx = ms_xmalloc((size_t)(n * p) * sizeof *host_idx);
    int32_t *host_cu = ms_xmalloc((size_t)(n + 1) * sizeof *host_cu);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < p; j++) host_idx[i * p + j] = (int32_t)(i * s + 1 + j);
    for (int64_t i = 0; i <= n; i++) host_cu[i] = (int32_t)(i * s);
    const int64_t idx_shape[1] = {n * p}, cu_shape[1] = {n + 1};
    ms_tensor idx = ms_ctx_upload_i32(ctx, host_idx, 1, idx_shape); /* i32[N*P] */
    ms_tensor cu = ms_ctx_upload_i32(ctx, host_cu, 1, cu_shape);    /* i32[N+1] */
    free(host_idx);
    free(host_cu);

    /* embeddings: zeros at the class rows (the class embedding is in pos_cls row 0) */
    ms_tensor patches = ms_ctx_tensor_2d(ctx, act, n * p, e); /* [N*P, E] */
    ms_op_patch_embed(ctx, &patches, pixels, &v->patch_w, v->patch);
    ms_tensor x = ms_ctx_tensor_2d(ctx, act, t, e);           /* [T, E] */
    ms_op_fill(ctx, &x, 0.0f);
    ms_op_scatter_rows(ctx, &x, &patches, &idx);
    ms_op_add(ctx, &x, &x, &v->pos_cls);                      /* broadcast [S, E] */
    ms_tensor h = ms_ctx_tensor_2d(ctx, act, t, e);           /* [T, E] residual stream */
    ms_op_layernorm(ctx, &h, &x, &v->pre_ln_w, &v->pre_ln_b, v->eps);

    /* per-layer scratch, reused by every layer */
    ms_tensor norm = x;                                       /* [T, E] */
    ms_tensor q = ms_ctx_tensor_2d(ctx, act, t, e);           /* [T, E] */
    ms_tensor k = ms_ctx_tensor_2d(ctx, act, t, e);
    ms_tensor val = ms_ctx_tensor_2d(ctx, act, t, e);
    ms_tensor att = ms_ctx_tensor_2d(ctx, act, t, e);
    ms_tensor o = ms_ctx_tensor_2d(ctx, act, t, e);
    ms_tensor f1 = ms_ctx_tensor_2d(ctx, act, t, v->inter);   /* [T, I] */
    ms_tensor f2 = ms_ctx_tensor_2d(ctx, act, t, v->inter);
    const int64_t heads_shape[3] = {t, v->heads, hd};
    ms_tensor q3 = ms_tensor_reshape(&q, 3, heads_shape);     /* [T, H, D] views */
    ms_tensor k3 = ms_tensor_reshape(&k, 3, heads_shape);
    ms_tensor v3 = ms_tensor_reshape(&val, 3, heads_shape);
    ms_tensor a3 = ms_tensor_reshape(&att, 3, heads_shape);
    const float scale = 1.0f / sqrtf((float)hd);

    for (int32_t l = 0; l < v->n_layers; l++) {
        const vision_layer *L = &v->layers[l];
        ms_op_layernorm(ctx, &norm, &h, &L->ln1_w, &L->ln1_b, v->eps);
        ms_op_matmul(ctx, &q, &norm, &L->q_w, &L->q_b);
        ms_op_matmul(ctx, &k, &norm, &L->k_w, &L->k_b);
        ms_op_matmul(ctx, &val, &norm, &L->v_w, &L->v_b);
        ms_op_attention(ctx, &a3, &q3, &k3, &v3, &cu, (int32_t)s, false, scale);
        ms_op_matmul(ctx, &o, &att, &L->o_w, &L->o_b);
        ms_op_add(ctx, &h, &h, &o);
        ms_op_layernorm(ctx, &norm, &h, &L->ln2_w, &L->ln2_b, v->eps);
        ms_op_matmul(ctx, &f1, &norm, &L->fc1_w, &L->fc1_b);
        apply_act(ctx, v->act, &f2, &f1);
        ms_op_matmul(ctx, &o, &f2, &L->fc2_w, &L->fc2_b);
        ms_op_add(ctx, &h, &h, &o);
    }

    /* feature selection, then the projector */
    ms_tensor feat = h;                                       /* [M, E], M = N*P or N*S */
    if (!v->keep_cls) {
        feat = ms_ctx_tensor_2d(ctx, act, n * p, e);
        ms_op_get_rows(ctx, &feat, &h, &idx);
    }
    const int64_t m = feat.shape[0], tt = v->text_hidden;
    ms_tensor y1 = ms_ctx_tensor_2d(ctx, act, m, tt);         /* [M, Tt] */
    ms_tensor y2 = ms_ctx_tensor_2d(ctx, act, m, tt);
    ms_tensor out = ms_ctx_tensor_2d(ctx, act, m, tt);
    ms_op_matmul(ctx, &y1, &feat, &v->proj1_w, opt(&v->proj1_b));
    apply_act(ctx, v->proj_act, &y2, &y1);
    ms_op_matmul(ctx, &out, &y2, &v->proj2_w, opt(&v->proj2_b));
    *embeds = out;
    return MS_OK;
}
