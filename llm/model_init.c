/*
 * Presets, the tensor list of LlavaForConditionalGeneration, and seeded values
 * (see model_init.h).
 *
 * Names follow transformers' modules: CLIPVisionModel under vision_tower
 * (vision_model.embeddings / pre_layrnorm (sic) / encoder.layers.N / post_layernorm),
 * LlavaMultiModalProjector (linear_1, linear_2), LlamaForCausalLM under language_model
 * (model.embed_tokens / model.layers.N / model.norm, lm_head).
 *
 * Scales: matrices std 1/sqrt(fan_in) (0.016 at 4096, close to the 0.02 transformers
 * initialises with; at the tiny sizes it keeps activations of order one, so attention is
 * far from uniform and the logits are not degenerate), embeddings 0.02, norm weights
 * 1 + 0.1 noise, biases 0.1 (large enough that a dropped gamma or bias changes outputs).
 */
#include "llm/model_init.h"
#include "kernels/rng.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- presets ---- */

static void preset_tiny(ms_llava_config *c) {
    ms_llava_config_defaults(c);
    ms_clip_config *v = &c->vision;
    v->hidden_size = 64;
    v->intermediate_size = 136;
    v->num_hidden_layers = 3;
    v->num_attention_heads = 4;
    v->num_channels = 3;
    v->image_size = 112;
    v->patch_size = 14;
    v->projection_dim = 32;
    v->layer_norm_eps = 1e-5f;
    snprintf(v->hidden_act, sizeof v->hidden_act, "quick_gelu");
    ms_llama_config *t = &c->text;
    t->vocab_size = 1024;
    t->hidden_size = 96;
    t->intermediate_size = 200;
    t->num_hidden_layers = 3;
    t->num_attention_heads = 6;
    t->num_key_value_heads = 2;
    t->head_dim = 16;
    /* Holds every request of the shipped synthetic sample (longest: 40,030 prompt +
     * output tokens), so the main job's replay has no context refusals. KV costs 768
     * bytes a token here (3 layers x K,V x 2 heads x 16 x f32): 30 MiB for a full one. */
    t->max_position_embeddings = 40960;
    t->rms_norm_eps = 1e-5f;
    t->rope_theta = 10000.0f;
    t->tie_word_embeddings = false;
    t->bos_token_id = 1;
    t->eos_token_id = 2;
    t->pad_token_id = 1001;
    c->image_token_index = 1000;
    c->vision_feature_layer = -2;
    c->image.shortest_edge = 112;
    c->image.crop_height = c->image.crop_width = 112;
}

/* llava-hf/llava-1.5-7b-hf: CLIP ViT-L/14-336 + Vicuna-7B (Llama-2-7B shape). */
static void preset_7b(ms_llava_config *c) {
    ms_llava_config_defaults(c); /* vision defaults are already ViT-L/14-336 */
    ms_llama_config *t = &c->text;
    t->vocab_size = 32064;
    t->hidden_size = 4096;
    t->intermediate_size = 11008;
    t->num_hidden_layers = 32;
    t->num_attention_heads = 32;
    t->num_key_value_heads = 32;
    t->head_dim = 128;
    t->max_position_embeddings = 4096;
    t->rms_norm_eps = 1e-5f;
    t->rope_theta = 10000.0f;
    t->pad_token_id = 32001;
    c->image_token_index = 32000;
    c->image.shortest_edge = 336;
    c->image.crop_height = c->image.crop_width = 336;
}

ms_status ms_llava_preset(const char *name, ms_llava_config *cfg, ms_error *err) {
    if (!strcmp(name, "tiny")) preset_tiny(cfg);
    else if (!strcmp(name, "llava-1.5-7b")) preset_7b(cfg);
    else return ms_errorf(err, MS_ERR_NOT_FOUND, "unknown preset '%s' (tiny, llava-1.5-7b)", name);
    cfg->image_seq_length = ms_llava_image_tokens(cfg);
    return MS_OK;
}

/* ---- tensor list ---- */

typedef struct list {
    ms_model_tensor *v;
    int32_t n, cap;
} list;

enum { K_MATRIX, K_EMBED, K_NORM, K_BIAS };

static void add(list *l, int kind, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void add(list *l, int kind, int ndim, const int64_t *shape, const char *fmt, ...) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->v = ms_xrealloc(l->v, (size_t)l->cap * sizeof *l->v);
    }
    ms_model_tensor *t = &l->v[l->n++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    MS_CHECK(len > 0 && len < (int)sizeof t->name);
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    switch (kind) {
    case K_MATRIX: {
        int64_t fan_in = 1;
        for (int i = 1; i < ndim; i++) fan_in *= shape[i];
        t->std = (float)(1.0 / sqrt((double)fan_in));
        break;
    }
    case K_EMBED: t->std = 0.02f; break;
    case K_NORM: t->mean = 1.0f; t->std = 0.1f; break;
    default: t->std = 0.1f; break;
    }
}

#define SHAPE(...) (const int64_t[]){__VA_ARGS__}

static void add_linear(list *l, int64_t out, int64_t in, bool bias, const char *prefix) {
    add(l, K_MATRIX, 2, SHAPE(out, in), "%s.weight", prefix);
    if (bias) add(l, K_BIAS, 1, SHAPE(out), "%s.bias", prefix);
}

static void add_layernorm(list *l, int64_t n, const char *prefix) {
    add(l, K_NORM, 1, SHAPE(n), "%s.weight", prefix);
    add(l, K_BIAS, 1, SHAPE(n), "%s.bias", prefix);
}

int32_t ms_llava_tensor_list(const ms_llava_config *cfg, ms_model_tensor **out) {
    list l = {0};
    char p[MS_TENSOR_NAME_MAX];
    const ms_clip_config *v = &cfg->vision;
    int64_t E = v->hidden_size, I = v->intermediate_size, pt = v->patch_size;
    int64_t side = v->image_size / v->patch_size;
    const char *vm = "vision_tower.vision_model";
    add(&l, K_EMBED, 1, SHAPE(E), "%s.embeddings.class_embedding", vm);
    add(&l, K_MATRIX, 4, SHAPE(E, v->num_channels, pt, pt), "%s.embeddings.patch_embedding.weight", vm);
    add(&l, K_EMBED, 2, SHAPE(side * side + 1, E), "%s.embeddings.position_embedding.weight", vm);
    snprintf(p, sizeof p, "%s.pre_layrnorm", vm);
    add_layernorm(&l, E, p);
    for (int32_t i = 0; i < v->num_hidden_layers; i++) {
        static const char *proj[] = {"k_proj", "v_proj", "q_proj", "out_proj"};
        for (int k = 0; k < 4; k++) {
            snprintf(p, sizeof p, "%s.encoder.layers.%d.self_attn.%s", vm, i, proj[k]);
            add_linear(&l, E, E, true, p);
        }
        snprintf(p, sizeof p, "%s.encoder.layers.%d.layer_norm1", vm, i);
        add_layernorm(&l, E, p);
        snprintf(p, sizeof p, "%s.encoder.layers.%d.mlp.fc1", vm, i);
        add_linear(&l, I, E, true, p);
        snprintf(p, sizeof p, "%s.encoder.layers.%d.mlp.fc2", vm, i);
        add_linear(&l, E, I, true, p);
        snprintf(p, sizeof p, "%s.encoder.layers.%d.layer_norm2", vm, i);
        add_layernorm(&l, E, p);
    }
    snprintf(p, sizeof p, "%s.post_layernorm", vm);
    add_layernorm(&l, E, p);

    const ms_llama_config *t = &cfg->text;
    int64_t H = t->hidden_size, Q = (int64_t)t->num_attention_heads * t->head_dim;
    int64_t KV = (int64_t)t->num_key_value_heads * t->head_dim, F = t->intermediate_size;
    add_linear(&l, H, E, cfg->multimodal_projector_bias, "multi_modal_projector.linear_1");
    add_linear(&l, H, H, cfg->multimodal_projector_bias, "multi_modal_projector.linear_2");

    const char *lm = "language_model.model";
    add(&l, K_EMBED, 2, SHAPE(t->vocab_size, H), "%s.embed_tokens.weight", lm);
    for (int32_t i = 0; i < t->num_hidden_layers; i++) {
        const struct { const char *name; int64_t out, in; bool bias; } lin[] = {
            {"self_attn.q_proj", Q, H, t->attention_bias}, {"self_attn.k_proj", KV, H, t->attention_bias},
            {"self_attn.v_proj", KV, H, t->attention_bias}, {"self_attn.o_proj", H, Q, t->attention_bias},
            {"mlp.gate_proj", F, H, t->mlp_bias},           {"mlp.up_proj", F, H, t->mlp_bias},
            {"mlp.down_proj", H, F, t->mlp_bias}};
        for (size_t k = 0; k < sizeof lin / sizeof lin[0]; k++) {
            snprintf(p, sizeof p, "%s.layers.%d.%s", lm, i, lin[k].name);
            add_linear(&l, lin[k].out, lin[k].in, lin[k].bias, p);
        }
        add(&l, K_NORM, 1, SHAPE(H), "%s.layers.%d.input_layernorm.weight", lm, i);
        add(&l, K_NORM, 1, SHAPE(H), "%s.layers.%d.post_attention_layernorm.weight", lm, i);
    }
    add(&l, K_NORM, 1, SHAPE(H), "%s.norm.weight", lm);
    if (!t->tie_word_embeddings) add(&l, K_MATRIX, 2, SHAPE(t->vocab_size, H), "language_model.lm_head.weight");
    *out = l.v;
    return l.n;
}

int64_t ms_model_tensor_numel(const ms_model_tensor *t) {
    int64_t n = 1;
    for (int32_t i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* ---- seeded values ----
 * Elements come in blocks of 2^16; block b of tensor t draws from its own xoshiro256**
 * stream seeded (via splitmix64) by (seed, FNV-1a of the name, b), so any range of a
 * tensor can be generated on its own, in any order. */

enum { BLOCK_SHIFT = 16 };


static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

void ms_model_tensor_fill(const ms_model_tensor *t, uint64_t seed, int64_t first, int64_t n, float *out) {
    MS_CHECK(first >= 0 && n >= 0 && first + n <= ms_model_tensor_numel(t));
    uint64_t key = seed ^ fnv1a(t->name);
    /* uniform on [-w, w] has std w/sqrt(3); 24-bit draws are plenty for bf16/f16 files
     * and float math keeps a 7B model's 7e9 values cheap */
    const float step = (float)(sqrt(3.0) * t->std) * 0x1.0p-23f, lo = t->mean - (float)(sqrt(3.0) * t->std);
    int64_t i = first, end = first + n;
    while (i < end) {
        int64_t block = i >> BLOCK_SHIFT;
        int64_t block_end = (block + 1) << BLOCK_SHIFT;
        uint64_t sm = key ^ ((uint64_t)block * 0xD1B54A32D192ED03ull);
        ms_rng s;
        for (int k = 0; k < 4; k++) s.s[k] = ms_splitmix64(&sm);
        for (int64_t skip = block << BLOCK_SHIFT; skip < i; skip++) ms_rng_next(&s);
        int64_t stop = end < block_end ? end : block_end;
        for (; i < stop; i++) {
            out[i - first] = lo + step * (float)(ms_rng_next(&s) >> 40); /* [-w, w) around mean */
        }
    }
}

/* ---- the two name layouts ---- */

static const struct { const char *published, *newer; } k_prefixes[] = {
    {"language_model.model.", "model.language_model."},
    {"language_model.lm_head.", "lm_head."},
    {"vision_tower.", "model.vision_tower."},
    {"multi_modal_projector.", "model.multi_modal_projector."},
};

static bool swap_prefix(const char *name, bool to_new, char *out, size_t n) {
    for (size_t i = 0; i < sizeof k_prefixes / sizeof k_prefixes[0]; i++) {
        const char *from = to_new ? k_prefixes[i].published : k_prefixes[i].newer;
        const char *to = to_new ? k_prefixes[i].newer : k_prefixes[i].published;
        size_t fl = strlen(from);
        if (!strncmp(name, from, fl)) {
            int len = snprintf(out, n, "%s%s", to, name + fl);
            return len >= 0 && (size_t)len < n;
        }
    }
    return false;
}

bool ms_weights_name_to_new(const char *published, char *out, size_t n) {
    return swap_prefix(published, true, out, n);
}

bool ms_weights_name_to_published(const char *newer, char *out, size_t n) {
    return swap_prefix(newer, false, out, n);
}
