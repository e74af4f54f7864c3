/*
 * The CLIP vision tower + projector:
 * - on a small hand-made weight set, against a naive double-precision reference of
 *   transformers' CLIPVisionTransformer + LlavaMultiModalProjector written here (every
 *   feature layer / strategy / activation combination that changes the math);
 * - load errors (missing tensor named, bad feature layer, unknown activation);
 * - on the tiny model: shapes, finiteness, determinism, a batch of 3 equal to 3 single
 *   runs, device normalisation equal to the host reference, CUDA close to the CPU.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "encoder/vision.h"
#include "llm/weights.h"
#include "tests/test_util.h"

/* ---- helpers ---- */

static uint32_t rng_state = 2463534242u;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return (float)((rng_state >> 8) * (1.0 / 8388608.0) - 1.0);
}

static float *download_f32(ms_ctx *ctx, const ms_tensor *t) {
    int64_t n = ms_tensor_numel(t);
    float *host = malloc((size_t)n * sizeof *host);
    if (t->dtype == MS_DTYPE_F32) {
        ms_op_download(ctx, host, t);
    } else {
        ms_tensor f = ms_ctx_tensor(ctx, MS_DTYPE_F32, t->ndim, t->shape);
        ms_op_convert(ctx, &f, t);
        ms_op_download(ctx, host, &f);
    }
    ms_ctx_sync(ctx);
    return host;
}

static ms_tensor upload_f32(ms_ctx *ctx, const float *host, int ndim, const int64_t *shape) {
    ms_dtype act = ctx->backend->act_dtype;
    ms_tensor t = ms_ctx_tensor(ctx, act, ndim, shape);
    if (act == MS_DTYPE_F32) {
        ms_op_upload(ctx, &t, host);
    } else {
        ms_tensor f = ms_ctx_tensor(ctx, MS_DTYPE_F32, ndim, shape);
        ms_op_upload(ctx, &f, host);
        ms_op_convert(ctx, &t, &f);
    }
    return t;
}

/* max |a - b| / max(max |b|, 1e-6) */
static double rel_err(const float *a, const double *b, int64_t n) {
    double worst = 0, scale = 1e-6;
    for (int64_t i = 0; i < n; i++) {
        if (fabs(b[i]) > scale) scale = fabs(b[i]);
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= worst)) worst = d; /* NaN sticks */
    }
    return worst / scale;
}

/* ---- a hand-made model ---- */

enum { HM_E = 8, HM_H = 2, HM_I = 12, HM_P = 2, HM_IMG = 4, HM_L = 3, HM_T = 6 };
enum { HM_GRID = HM_IMG / HM_P, HM_NP = HM_GRID * HM_GRID, HM_S = HM_NP + 1 };

typedef struct hm_layer {
    float ln1_w[HM_E], ln1_b[HM_E], ln2_w[HM_E], ln2_b[HM_E];
    float q_w[HM_E * HM_E], k_w[HM_E * HM_E], v_w[HM_E * HM_E], o_w[HM_E * HM_E];
    float q_b[HM_E], k_b[HM_E], v_b[HM_E], o_b[HM_E];
    float fc1_w[HM_I * HM_E], fc1_b[HM_I], fc2_w[HM_E * HM_I], fc2_b[HM_E];
} hm_layer;

typedef struct hm_model {
    float cls[HM_E], conv[HM_E * 3 * HM_P * HM_P], pos[HM_S * HM_E], pre_w[HM_E], pre_b[HM_E];
    hm_layer layers[HM_L];
    float p1_w[HM_T * HM_E], p1_b[HM_T], p2_w[HM_T * HM_T], p2_b[HM_T];
} hm_model;

static void fill(float *x, int n, float base, float spread) {
    for (int i = 0; i < n; i++) x[i] = base + spread * frand();
}

static void hm_init(hm_model *m) {
    fill(m->cls, HM_E, 0, 0.5f);
    fill(m->conv, HM_E * 3 * HM_P * HM_P, 0, 0.4f);
    fill(m->pos, HM_S * HM_E, 0, 0.3f);
    fill(m->pre_w, HM_E, 1, 0.2f);
    fill(m->pre_b, HM_E, 0, 0.1f);
    for (int l = 0; l < HM_L; l++) {
        hm_layer *L = &m->layers[l];
        fill(L->ln1_w, HM_E, 1, 0.2f); fill(L->ln1_b, HM_E, 0, 0.1f);
        fill(L->ln2_w, HM_E, 1, 0.2f); fill(L->ln2_b, HM_E, 0, 0.1f);
        fill(L->q_w, HM_E * HM_E, 0, 0.6f); fill(L->q_b, HM_E, 0, 0.1f);
        fill(L->k_w, HM_E * HM_E, 0, 0.6f); fill(L->k_b, HM_E, 0, 0.1f);
        fill(L->v_w, HM_E * HM_E, 0, 0.4f); fill(L->v_b, HM_E, 0, 0.1f);
        fill(L->o_w, HM_E * HM_E, 0, 0.4f); fill(L->o_b, HM_E, 0, 0.1f);
        fill(L->fc1_w, HM_I * HM_E, 0, 0.5f); fill(L->fc1_b, HM_I, 0, 0.2f);
        fill(L->fc2_w, HM_E * HM_I, 0, 0.4f); fill(L->fc2_b, HM_E, 0, 0.1f);
    }
    fill(m->p1_w, HM_T * HM_E, 0, 0.5f); fill(m->p1_b, HM_T, 0, 0.1f);
    fill(m->p2_w, HM_T * HM_T, 0, 0.5f); fill(m->p2_b, HM_T, 0, 0.1f);
}

/* Writes DIR/model.safetensors, leaving out the tensor named skip (may be NULL). */
static ms_status hm_write(const hm_model *m, const char *dir, const char *skip, ms_error *err) {
    ms_st_write_entry e[16 + 16 * HM_L];
    char names[16 * HM_L][96];
    int n = 0, nn = 0;
#define ENT(nm, arr, nd, ...) \
    e[n++] = (ms_st_write_entry){nm, MS_DTYPE_F32, nd, {__VA_ARGS__}, arr}
    ENT("vision_tower.vision_model.embeddings.class_embedding", m->cls, 1, HM_E);
    ENT("vision_tower.vision_model.embeddings.patch_embedding.weight", m->conv, 4, HM_E, 3, HM_P, HM_P);
    ENT("vision_tower.vision_model.embeddings.position_embedding.weight", m->pos, 2, HM_S, HM_E);
    ENT("vision_tower.vision_model.pre_layrnorm.weight", m->pre_w, 1, HM_E);
    ENT("vision_tower.vision_model.pre_layrnorm.bias", m->pre_b, 1, HM_E);
    for (int l = 0; l < HM_L; l++) {
        const hm_layer *L = &m->layers[l];
        struct { const char *suffix; const float *data; int nd; int64_t d0, d1; } t[16] = {
            {"layer_norm1.weight", L->ln1_w, 1, HM_E, 0}, {"layer_norm1.bias", L->ln1_b, 1, HM_E, 0},
            {"layer_norm2.weight", L->ln2_w, 1, HM_E, 0}, {"layer_norm2.bias", L->ln2_b, 1, HM_E, 0},
            {"self_attn.q_proj.weight", L->q_w, 2, HM_E, HM_E}, {"self_attn.q_proj.bias", L->q_b, 1, HM_E, 0},
            {"self_attn.k_proj.weight", L->k_w, 2, HM_E, HM_E}, {"self_attn.k_proj.bias", L->k_b, 1, HM_E, 0},
            {"self_attn.v_proj.weight", L->v_w, 2, HM_E, HM_E}, {"self_attn.v_proj.bias", L->v_b, 1, HM_E, 0},
            {"self_attn.out_proj.weight", L->o_w, 2, HM_E, HM_E}, {"self_attn.out_proj.bias", L->o_b, 1, HM_E, 0},
            {"mlp.fc1.weight", L->fc1_w, 2, HM_I, HM_E}, {"mlp.fc1.bias", L->fc1_b, 1, HM_I, 0},
            {"mlp.fc2.weight", L->fc2_w, 2, HM_E, HM_I}, {"mlp.fc2.bias", L->fc2_b, 1, HM_E, 0},
        };
        for (int i = 0; i < 16; i++) {
            snprintf(names[nn], sizeof names[nn], "vision_tower.vision_model.encoder.layers.%d.%s", l, t[i].suffix);
            e[n++] = (ms_st_write_entry){names[nn++], MS_DTYPE_F32, t[i].nd, {t[i].d0, t[i].d1}, t[i].data};
        }
    }
    ENT("multi_modal_projector.linear_1.weight", m->p1_w, 2, HM_T, HM_E);
    ENT("multi_modal_projector.linear_1.bias", m->p1_b, 1, HM_T);
    ENT("multi_modal_projector.linear_2.weight", m->p2_w, 2, HM_T, HM_T);
    ENT("multi_modal_projector.linear_2.bias", m->p2_b, 1, HM_T);
#undef ENT
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!skip || strcmp(e[i].name, skip) != 0) e[k++] = e[i];
    mkdir(dir, 0755);
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    return ms_safetensors_write(path, e, k, err);
}

static void hm_config(ms_llava_config *c) {
    ms_llava_config_defaults(c);
    c->vision.hidden_size = HM_E;
    c->vision.intermediate_size = HM_I;
    c->vision.num_hidden_layers = HM_L;
    c->vision.num_attention_heads = HM_H;
    c->vision.num_channels = 3;
    c->vision.image_size = HM_IMG;
    c->vision.patch_size = HM_P;
    c->vision.layer_norm_eps = 1e-5f;
    snprintf(c->vision.hidden_act, sizeof c->vision.hidden_act, "quick_gelu");
    c->text.hidden_size = HM_T;
    c->vision_feature_layer = -2;
    snprintf(c->vision_feature_select_strategy, sizeof c->vision_feature_select_strategy, "default");
    snprintf(c->projector_hidden_act, sizeof c->projector_hidden_act, "gelu");
    c->multimodal_projector_bias = true;
    c->image.do_center_crop = true;
    c->image.crop_width = c->image.crop_height = HM_IMG;
}

/* ---- the double reference, from transformers' modeling_clip.py / modeling_llava.py ---- */

static void ref_layernorm(double *y, const double *x, const float *w, const float *b, int n, double eps) {
    double mean = 0, var = 0;
    for (int i = 0; i < n; i++) mean += x[i];
    mean /= n;
    for (int i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= n;
    for (int i = 0; i < n; i++) y[i] = (x[i] - mean) / sqrt(var + eps) * w[i] + b[i];
}

static void ref_linear(double *y, const double *x, const float *w, const float *b, int out, int in) {
    for (int o = 0; o < out; o++) {
        double s = b ? b[o] : 0;
        for (int i = 0; i < in; i++) s += x[i] * w[o * in + i];
        y[o] = s;
    }
}

static double ref_act(double x, bool quick) {
    return quick ? x / (1 + exp(-1.702 * x)) : 0.5 * x * (1 + erf(x / sqrt(2.0)));
}

/* pixels [N,3,IMG,IMG] -> out [N * tokens, HM_T]; returns tokens per image */
static int ref_encode(const hm_model *m, const ms_llava_config *c, const float *px, int n, double *out) {
    const double eps = c->vision.layer_norm_eps;
    const bool quick = strcmp(c->vision.hidden_act, "quick_gelu") == 0;
    const bool pquick = strcmp(c->projector_hidden_act, "quick_gelu") == 0;
    int L = HM_L, k = c->vision_feature_layer, idx = k < 0 ? L + 1 + k : k;
    bool keep = strcmp(c->vision_feature_select_strategy, "full") == 0;
    int tokens = keep ? HM_S : HM_NP, D = HM_E / HM_H;
    for (int img = 0; img < n; img++) {
        double h[HM_S][HM_E], x[HM_S][HM_E];
        /* embeddings: [class, conv(patches)] + position */
        for (int e = 0; e < HM_E; e++) x[0][e] = m->cls[e];
        for (int py = 0; py < HM_GRID; py++)
            for (int pxi = 0; pxi < HM_GRID; pxi++)
                for (int e = 0; e < HM_E; e++) {
                    double s = 0;
                    for (int ch = 0; ch < 3; ch++)
                        for (int ky = 0; ky < HM_P; ky++)
                            for (int kx = 0; kx < HM_P; kx++)
                                s += m->conv[((e * 3 + ch) * HM_P + ky) * HM_P + kx] *
                                     px[((img * 3 + ch) * HM_IMG + py * HM_P + ky) * HM_IMG + pxi * HM_P + kx];
                    x[1 + py * HM_GRID + pxi][e] = s;
                }
        for (int t = 0; t < HM_S; t++) {
            for (int e = 0; e < HM_E; e++) x[t][e] += m->pos[t * HM_E + e];
            ref_layernorm(h[t], x[t], m->pre_w, m->pre_b, HM_E, eps); /* hidden_states[0] */
        }
        for (int l = 0; l < idx; l++) {
            const hm_layer *Ly = &m->layers[l];
            double nrm[HM_S][HM_E], q[HM_S][HM_E], kk[HM_S][HM_E], v[HM_S][HM_E], a[HM_S][HM_E], o[HM_E];
            for (int t = 0; t < HM_S; t++) {
                ref_layernorm(nrm[t], h[t], Ly->ln1_w, Ly->ln1_b, HM_E, eps);
                ref_linear(q[t], nrm[t], Ly->q_w, Ly->q_b, HM_E, HM_E);
                ref_linear(kk[t], nrm[t], Ly->k_w, Ly->k_b, HM_E, HM_E);
                ref_linear(v[t], nrm[t], Ly->v_w, Ly->v_b, HM_E, HM_E);
            }
            for (int hh = 0; hh < HM_H; hh++)
                for (int i = 0; i < HM_S; i++) { /* bidirectional: every row sees all S rows */
                    double sc[HM_S], mx = -1e300, sum = 0;
                    for (int j = 0; j < HM_S; j++) {
                        double s = 0;
                        for (int d = 0; d < D; d++) s += q[i][hh * D + d] * kk[j][hh * D + d];
                        sc[j] = s / sqrt((double)D);
                        if (sc[j] > mx) mx = sc[j];
                    }
                    for (int j = 0; j < HM_S; j++) sum += (sc[j] = exp(sc[j] - mx));
                    for (int d = 0; d < D; d++) {
                        double s = 0;
                        for (int j = 0; j < HM_S; j++) s += sc[j] / sum * v[j][hh * D + d];
                        a[i][hh * D + d] = s;
                    }
                }
            for (int t = 0; t < HM_S; t++) {
                ref_linear(o, a[t], Ly->o_w, Ly->o_b, HM_E, HM_E);
                for (int e = 0; e < HM_E; e++) h[t][e] += o[e];
                double f[HM_I], m2[HM_E];
                ref_layernorm(nrm[t], h[t], Ly->ln2_w, Ly->ln2_b, HM_E, eps);
                ref_linear(f, nrm[t], Ly->fc1_w, Ly->fc1_b, HM_I, HM_E);
                for (int i = 0; i < HM_I; i++) f[i] = ref_act(f[i], quick);
                ref_linear(m2, f, Ly->fc2_w, Ly->fc2_b, HM_E, HM_I);
                for (int e = 0; e < HM_E; e++) h[t][e] += m2[e];
            }
        }
        /* hidden_states[idx], CLS dropped or kept, no post_layernorm; then the projector */
        for (int r = 0; r < tokens; r++) {
            const double *feat = h[keep ? r : r + 1];
            double y1[HM_T];
            bool bias = c->multimodal_projector_bias;
            ref_linear(y1, feat, m->p1_w, bias ? m->p1_b : NULL, HM_T, HM_E);
            for (int i = 0; i < HM_T; i++) y1[i] = ref_act(y1[i], pquick);
            ref_linear(out + ((int64_t)img * tokens + r) * HM_T, y1, m->p2_w, bias ? m->p2_b : NULL, HM_T, HM_T);
        }
    }
    return tokens;
}

static void test_handmade(ms_backend *be) {
    static hm_model m;
    hm_init(&m);
    char dir[256];
    snprintf(dir, sizeof dir, "testdata/vision-handmade-%d", (int)getpid());
    ms_error err = {0};
    EXPECTF(hm_write(&m, dir, NULL, &err) == MS_OK, "%s", err.msg);
    ms_weights *w = NULL;
    if (ms_weights_open(dir, &w, &err) != MS_OK) {
        EXPECTF(false, "open %s: %s", dir, err.msg);
        return;
    }
    ms_ctx *ctx = ms_ctx_create(be);
    enum { N = 3 };
    float px[N * 3 * HM_IMG * HM_IMG];
    fill(px, N * 3 * HM_IMG * HM_IMG, 0, 2.0f);

    struct { int layer; const char *strategy, *act, *pact; bool bias; } cases[] = {
        {-2, "default", "quick_gelu", "gelu", true},  /* LLaVA-1.5's choice */
        {-1, "full", "quick_gelu", "gelu", true},     /* last layer, CLS kept */
        {0, "default", "quick_gelu", "gelu", true},   /* embeddings after pre_layrnorm only */
        {1, "full", "gelu", "quick_gelu", false},     /* other activations, no projector bias */
        {3, "default", "quick_gelu", "gelu", true},   /* positive index = last layer */
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        ms_llava_config c;
        hm_config(&c);
        c.vision_feature_layer = cases[ci].layer;
        snprintf(c.vision_feature_select_strategy, sizeof c.vision_feature_select_strategy, "%s", cases[ci].strategy);
        snprintf(c.vision.hidden_act, sizeof c.vision.hidden_act, "%s", cases[ci].act);
        snprintf(c.projector_hidden_act, sizeof c.projector_hidden_act, "%s", cases[ci].pact);
        c.multimodal_projector_bias = cases[ci].bias;
        ms_vision *v = NULL;
        if (ms_vision_load(&c, w, ctx, &v, &err) != MS_OK) {
            EXPECTF(false, "case %zu: %s", ci, err.msg);
            continue;
        }
        const int64_t shape[4] = {N, 3, HM_IMG, HM_IMG};
        ms_tensor pix = upload_f32(ctx, px, 4, shape);
        ms_tensor out;
        EXPECT(ms_vision_encode(ctx, v, &pix, &out, &err) == MS_OK);
        static double ref[N * HM_S * HM_T];
        int tokens = ref_encode(&m, &c, px, N, ref);
        EXPECT(ms_vision_tokens_per_image(v) == tokens);
        EXPECTF(out.ndim == 2 && out.shape[0] == N * tokens && out.shape[1] == HM_T,
                "case %zu: shape [%lld, %lld]", ci, (long long)out.shape[0], (long long)out.shape[1]);
        if (out.shape[0] == N * tokens && out.shape[1] == HM_T) {
            float *got = download_f32(ctx, &out);
            double e = rel_err(got, ref, N * tokens * HM_T);
            double tol = be->act_dtype == MS_DTYPE_F32 ? 1e-5 : 5e-2;
            EXPECTF(e <= tol, "case %zu (layer %d, %s, %s): relative error %g", ci,
                    cases[ci].layer, cases[ci].strategy, cases[ci].act, e);
            free(got);
        }
        ms_ctx_reset(ctx);
        ms_vision_free(v);
    }

    /* load errors */
    ms_llava_config c;
    ms_vision *v = NULL;
    hm_config(&c);
    c.vision_feature_layer = -5;
    EXPECT(ms_vision_load(&c, w, ctx, &v, &err) == MS_ERR_INVALID && v == NULL);
    EXPECTF(strstr(err.msg, "vision_feature_layer") != NULL, "%s", err.msg);
    hm_config(&c);
    snprintf(c.vision.hidden_act, sizeof c.vision.hidden_act, "relu");
    EXPECT(ms_vision_load(&c, w, ctx, &v, &err) == MS_ERR_UNSUPPORTED);
    EXPECTF(strstr(err.msg, "relu") != NULL, "%s", err.msg);
    hm_config(&c);
    snprintf(c.vision_feature_select_strategy, sizeof c.vision_feature_select_strategy, "pool");
    EXPECT(ms_vision_load(&c, w, ctx, &v, &err) == MS_ERR_UNSUPPORTED);
    hm_config(&c);
    c.image.crop_width = 5;
    EXPECT(ms_vision_load(&c, w, ctx, &v, &err) == MS_ERR_UNSUPPORTED);
    hm_config(&c);
    c.vision.hidden_size = 9; /* not a multiple of the heads */
    EXPECT(ms_vision_load(&c, w, ctx, &v, &err) == MS_ERR_INVALID);
    hm_config(&c);
    c.vision.intermediate_size = 13; /* the file's fc1 is [12, 8] */
    EXPECT(ms_vision_load(&c, w, ctx, &v, &err) != MS_OK && v == NULL);
    EXPECTF(strstr(err.msg, "fc1") != NULL, "misshapen: %s", err.msg);
    ms_weights_close(w);

    const char *missing = "vision_tower.vision_model.encoder.layers.1.mlp.fc2.bias";
    char dir2[300];
    snprintf(dir2, sizeof dir2, "%s-missing", dir);
    EXPECT(hm_write(&m, dir2, missing, &err) == MS_OK);
    if (ms_weights_open(dir2, &w, &err) == MS_OK) {
        hm_config(&c);
        EXPECT(ms_vision_load(&c, w, ctx, &v, &err) != MS_OK && v == NULL);
        EXPECTF(strstr(err.msg, missing) != NULL, "missing tensor not named: %s", err.msg);
        /* layer 1 is not needed when only hidden_states[1] is used */
        c.vision_feature_layer = 1;
        EXPECTF(ms_vision_load(&c, w, ctx, &v, &err) == MS_OK, "%s", err.msg);
        ms_vision_free(v);
        ms_weights_close(w);
    }
    ms_ctx_destroy(ctx);
    ms_test_system("rm -rf %s %s", dir, dir2);
}

/* ---- the tiny model ---- */

static bool read_image(const char *name, ms_image_u8 *img) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/data/%s", MS_SOURCE_DIR, name);
    size_t n = 0;
    char *bytes = ms_test_read_file(path, &n);
    if (!bytes) return false;
    ms_image_limits lim;
    ms_image_limits_default(&lim);
    ms_error err = {0};
    ms_status st = ms_image_decode((const uint8_t *)bytes, n, &lim, img, &err);
    free(bytes);
    return st == MS_OK;
}

/* Encodes the crops on backend be; returns host f32 [n * tokens, hidden] (malloc'd). */
static float *encode_on(ms_backend *be, const ms_vision *v, const ms_image_u8 *crops, int n) {
    ms_ctx *ctx = ms_ctx_create(be);
    ms_tensor px = ms_vision_pixels(ctx, v, crops, n);
    ms_tensor out;
    ms_error err = {0};
    float *host = NULL;
    if (ms_vision_encode(ctx, v, &px, &out, &err) == MS_OK) host = download_f32(ctx, &out);
    else EXPECTF(false, "%s", err.msg);
    ms_ctx_destroy(ctx);
    return host;
}

static void test_tiny(ms_backend *cpu) {
    const char *dir = ms_test_tiny_model(1, "f32");
    ms_llava_config cfg;
    ms_error err = {0};
    if (ms_llava_config_load(dir, &cfg, &err) != MS_OK) {
        EXPECTF(false, "%s", err.msg);
        return;
    }
    ms_weights *w = NULL;
    if (ms_weights_open(dir, &w, &err) != MS_OK) {
        EXPECTF(false, "%s", err.msg);
        return;
    }
    ms_ctx *ctx = ms_ctx_create(cpu);
    ms_vision *v = NULL;
    if (ms_vision_load(&cfg, w, ctx, &v, &err) != MS_OK) {
        EXPECTF(false, "%s", err.msg);
        ms_ctx_destroy(ctx);
        ms_weights_close(w);
        return;
    }
    const int tokens = ms_vision_tokens_per_image(v), hid = ms_vision_embed_dim(v);
    EXPECT(tokens == ms_llava_image_tokens(&cfg));
    EXPECTF(tokens == 64 && hid == 96 && ms_vision_image_size(v) == 112,
            "tiny preset: %d tokens x %d, image %d", tokens, hid, ms_vision_image_size(v));

    /* three different images through the real preprocessing */
    ms_image_u8 src[3] = {0}, crops[3] = {0};
    EXPECT(read_image("demo.png", &src[0]));
    EXPECT(read_image("demo.jpg", &src[1]));
    src[2] = (ms_image_u8){50, 90, malloc(50 * 90 * 3)}; /* portrait, smaller than the crop side */
    for (int i = 0; i < 50 * 90 * 3; i++) src[2].rgb[i] = (uint8_t)((i * 31) ^ (i / 150));
    for (int i = 0; i < 3; i++) {
        if (!src[i].rgb) return;
        EXPECTF(ms_image_resize_crop(&src[i], ms_vision_image_config(v), &crops[i], &err) == MS_OK, "%s", err.msg);
    }

    /* device normalisation == host reference */
    const int side = ms_vision_image_size(v);
    ms_tensor px = ms_vision_pixels(ctx, v, crops, 3);
    float *dev = download_f32(ctx, &px);
    float *host = malloc((size_t)3 * 3 * side * side * sizeof *host);
    for (int i = 0; i < 3; i++)
        EXPECT(ms_image_preprocess_f32(&src[i], ms_vision_image_config(v), host + (size_t)i * 3 * side * side, &err) == MS_OK);
    double worst = 0;
    for (int64_t i = 0; i < 3LL * 3 * side * side; i++) worst = fmax(worst, fabs(dev[i] - host[i]));
    EXPECTF(worst <= 1e-6, "device pixels differ from the host reference by %g", worst);
    free(dev);
    free(host);
    ms_ctx_reset(ctx);

    float *batch = encode_on(cpu, v, crops, 3);
    float *again = encode_on(cpu, v, crops, 3);
    if (batch && again) {
        const int64_t n = 3LL * tokens * hid;
        int nonfinite = 0;
        double amax = 0;
        for (int64_t i = 0; i < n; i++) {
            nonfinite += !isfinite(batch[i]);
            amax = fmax(amax, fabs(batch[i]));
        }
        EXPECT(nonfinite == 0);
        EXPECT(amax > 0);
        EXPECT(memcmp(batch, again, (size_t)n * sizeof *batch) == 0); /* deterministic */
        /* images differ, so their embeddings must too */
        EXPECT(memcmp(batch, batch + (size_t)tokens * hid, (size_t)tokens * hid * sizeof *batch) != 0);
        for (int i = 0; i < 3; i++) {
            float *one = encode_on(cpu, v, &crops[i], 1);
            if (!one) continue;
            double d = 0;
            for (int64_t j = 0; j < (int64_t)tokens * hid; j++)
                d = fmax(d, fabs(one[j] - batch[(int64_t)i * tokens * hid + j]));
            EXPECTF(d <= 1e-5 * fmax(amax, 1), "image %d alone differs from its batch row by %g", i, d);
            free(one);
        }
    }

    /* CUDA, when present, close to the CPU (bf16 activations) */
    if (ms_cuda_available() && batch) {
        ms_backend *gpu = ms_backend_create("cuda", 0, 0, &err);
        if (gpu) {
            ms_ctx *gctx = ms_ctx_create(gpu);
            ms_vision *gv = NULL;
            if (ms_vision_load(&cfg, w, gctx, &gv, &err) == MS_OK) {
                float *g = encode_on(gpu, gv, crops, 3);
                if (g) {
                    double *ref = malloc((size_t)3 * tokens * hid * sizeof *ref);
                    for (int64_t i = 0; i < 3LL * tokens * hid; i++) ref[i] = batch[i];
                    double e = rel_err(g, ref, 3LL * tokens * hid);
                    EXPECTF(e <= 5e-2, "CUDA vs CPU relative error %g", e);
                    printf("test_vision: CUDA vs CPU relative error %g\n", e);
                    free(ref);
                    free(g);
                }
                ms_vision_free(gv);
            } else {
                EXPECTF(false, "CUDA load: %s", err.msg);
            }
            ms_ctx_destroy(gctx);
            ms_backend_destroy(gpu);
        }
    }
    free(batch);
    free(again);
    for (int i = 0; i < 3; i++) {
        ms_image_free(&src[i]);
        ms_image_free(&crops[i]);
    }
    ms_vision_free(v);
    ms_ctx_destroy(ctx);
    ms_weights_close(w);
}

int main(void) {
    ms_backend *cpu = ms_backend_cpu_create(2);
    test_handmade(cpu);
    test_tiny(cpu);
    ms_backend_destroy(cpu);
    return ms_test_finish("test_vision");
}
