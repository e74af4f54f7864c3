/*
 * config.json / preprocessor_config.json of a LLaVA-1.5 folder (see config.h).
 *
 * Defaults follow transformers exactly: LlavaConfig's own keys; a vision_config dict
 * is CLIPVisionConfig(**dict) (CLIP's defaults for absent keys), an absent one is the
 * ViT-L/14-336 LlavaConfig builds; a text_config dict is LlamaConfig(**dict), an
 * absent one LlamaConfig(). Every value is then validated, so the model code can rely
 * on sizes that divide and activations it implements.
 */
#include "llm/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "llm/config_eos.h"
#include "llm/config_json.h"

enum { DERIVE = INT32_MIN }; /* num_key_value_heads / head_dim not given */

/* CLIPVisionConfig() */
static void clip_defaults(ms_clip_config *v) {
    v->hidden_size = 768;
    v->intermediate_size = 3072;
    v->num_hidden_layers = 12;
    v->num_attention_heads = 12;
    v->num_channels = 3;
    v->image_size = 224;
    v->patch_size = 32;
    v->projection_dim = 512;
    v->layer_norm_eps = 1e-5f;
    snprintf(v->hidden_act, sizeof v->hidden_act, "quick_gelu");
}

/* The vision tower LlavaConfig builds when vision_config is absent (CLIP ViT-L/14-336). */
static void clip_llava_defaults(ms_clip_config *v) {
    clip_defaults(v);
    v->intermediate_size = 4096;
    v->hidden_size = 1024;
    v->patch_size = 14;
    v->image_size = 336;
    v->num_hidden_layers = 24;
    v->num_attention_heads = 16;
    v->projection_dim = 768;
}

/* LlamaConfig(); num_key_value_heads and head_dim are derived after parsing. */
static void llama_defaults(ms_llama_config *t) {
    t->vocab_size = 32000;
    t->hidden_size = 4096;
    t->intermediate_size = 11008;
    t->num_hidden_layers = 32;
    t->num_attention_heads = 32;
    t->num_key_value_heads = 0;
    t->head_dim = 0;
    t->max_position_embeddings = 2048;
    t->rms_norm_eps = 1e-6f;
    t->rope_theta = 10000.0f;
    t->tie_word_embeddings = false;
    t->attention_bias = false;
    t->mlp_bias = false;
    snprintf(t->hidden_act, sizeof t->hidden_act, "silu");
    t->bos_token_id = 1;
    t->eos_token_id = 2;
    t->eos_token_ids[0] = 2;
    t->n_eos_token_ids = 1;
    t->pad_token_id = -1;
}

/* CLIPImageProcessor() */
static void image_defaults(ms_image_proc_config *p, int32_t edge) {
    p->do_resize = true;
    p->shortest_edge = edge;
    p->resample = 3;
    p->do_center_crop = true;
    p->crop_height = edge;
    p->crop_width = edge;
    p->do_rescale = true;
    p->rescale_factor = 1.0f / 255.0f;
    p->do_normalize = true;
    static const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    static const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    memcpy(p->image_mean, mean, sizeof mean);
    memcpy(p->image_std, std, sizeof std);
    p->do_convert_rgb = true;
}

void ms_llava_config_defaults(ms_llava_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    clip_llava_defaults(&cfg->vision);
    llama_defaults(&cfg->text);
    cfg->text.num_key_value_heads = cfg->text.num_attention_heads;
    cfg->text.head_dim = cfg->text.hidden_size / cfg->text.num_attention_heads;
    cfg->image_token_index = 32000;
    cfg->vision_feature_layer = -2;
    snprintf(cfg->vision_feature_select_strategy, sizeof cfg->vision_feature_select_strategy,
             "default");
    snprintf(cfg->projector_hidden_act, sizeof cfg->projector_hidden_act, "gelu");
    cfg->multimodal_projector_bias = true;
    image_defaults(&cfg->image, cfg->vision.image_size);
    cfg->image_seq_length = ms_llava_image_tokens(cfg);
}

int32_t ms_llava_image_tokens(const ms_llava_config *cfg) {
    int32_t side = cfg->vision.patch_size > 0 ? cfg->vision.image_size / cfg->vision.patch_size : 0;
    int32_t n = side * side;
    if (!strcmp(cfg->vision_feature_select_strategy, "full")) n += 1;
    return n;
}

/* ---- reading the sub-configs ---- */

static ms_status read_clip(const cJSON *o, ms_clip_config *v, ms_error *err) {
    const char *p = "vision_config.";
    ms_status s;
    char type[64] = "clip_vision_model";
    if ((s = ms_json_string(o, p, "model_type", type, sizeof type, err))) return s;
    if (strcmp(type, "clip_vision_model") != 0)
        return ms_errorf(err, MS_ERR_UNSUPPORTED,
                         "vision_config.model_type '%s' is not supported (only clip_vision_model)", type);
    if ((s = ms_json_int(o, p, "hidden_size", &v->hidden_size, err)) ||
        (s = ms_json_int(o, p, "intermediate_size", &v->intermediate_size, err)) ||
        (s = ms_json_int(o, p, "num_hidden_layers", &v->num_hidden_layers, err)) ||
        (s = ms_json_int(o, p, "num_attention_heads", &v->num_attention_heads, err)) ||
        (s = ms_json_int(o, p, "num_channels", &v->num_channels, err)) ||
        (s = ms_json_int(o, p, "image_size", &v->image_size, err)) ||
        (s = ms_json_int(o, p, "patch_size", &v->patch_size, err)) ||
        (s = ms_json_int(o, p, "projection_dim", &v->projection_dim, err)) ||
        (s = ms_json_float(o, p, "layer_norm_eps", &v->layer_norm_eps, err)) ||
        (s = ms_json_string(o, p, "hidden_act", v->hidden_act, sizeof v->hidden_act, err)))
        return s;
    return MS_OK;
}

static ms_status read_llama(const cJSON *o, ms_llama_config *t, ms_error *err) {
    const char *p = "text_config.";
    ms_status s;
    char type[64] = "llama";
    if ((s = ms_json_string(o, p, "model_type", type, sizeof type, err))) return s;
    if (strcmp(type, "llama") != 0)
        return ms_errorf(err, MS_ERR_UNSUPPORTED,
                         "text_config.model_type '%s' is not supported (only llama)", type);
    if ((s = ms_json_int(o, p, "vocab_size", &t->vocab_size, err)) ||
        (s = ms_json_int(o, p, "hidden_size", &t->hidden_size, err)) ||
        (s = ms_json_int(o, p, "intermediate_size", &t->intermediate_size, err)) ||
        (s = ms_json_int(o, p, "num_hidden_layers", &t->num_hidden_layers, err)) ||
        (s = ms_json_int(o, p, "num_attention_heads", &t->num_attention_heads, err)) ||
        (s = ms_json_int(o, p, "max_position_embeddings", &t->max_position_embeddings, err)) ||
        (s = ms_json_float(o, p, "rms_norm_eps", &t->rms_norm_eps, err)) ||
        (s = ms_json_float(o, p, "rope_theta", &t->rope_theta, err)) ||
        (s = ms_json_bool(o, p, "tie_word_embeddings", &t->tie_word_embeddings, err)) ||
        (s = ms_json_bool(o, p, "attention_bias", &t->attention_bias, err)) ||
        (s = ms_json_bool(o, p, "mlp_bias", &t->mlp_bias, err)) ||
        (s = ms_json_string(o, p, "hidden_act", t->hidden_act, sizeof t->hidden_act, err)) ||
        (s = ms_json_token_id(o, p, "bos_token_id", &t->bos_token_id, err)) ||
        (s = ms_config_eos_read(o, p, t, err)) ||
        (s = ms_json_token_id(o, p, "pad_token_id", &t->pad_token_id, err)))
        return s;
    /* null (or absent) means "derive", as in LlamaConfig */
    t->num_key_value_heads = DERIVE;
    t->head_dim = DERIVE;
    if ((s = ms_json_int_or_null(o, p, "num_key_value_heads", &t->num_key_value_heads, err)) ||
        (s = ms_json_int_or_null(o, p, "head_dim", &t->head_dim, err)))
        return s;
    /* Newer transformers keeps rope_theta inside rope_parameters. */
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(o, "rope_parameters");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(o, "rope_scaling");
    const cJSON *rope = (rp && cJSON_IsObject(rp)) ? rp : (rs && cJSON_IsObject(rs)) ? rs : NULL;
    if (rope) {
        const char *rp_prefix = rope == rp ? "text_config.rope_parameters." : "text_config.rope_scaling.";
        char kind[32] = "default";
        if ((s = ms_json_string(rope, rp_prefix, "rope_type", kind, sizeof kind, err)) ||
            (s = ms_json_string(rope, rp_prefix, "type", kind, sizeof kind, err)))
            return s;
        if (strcmp(kind, "default") != 0)
            return ms_errorf(err, MS_ERR_UNSUPPORTED, "%srope_type '%s' is not supported (only default)",
                             rp_prefix, kind);
        if ((s = ms_json_float(rope, rp_prefix, "rope_theta", &t->rope_theta, err))) return s;
    } else if (rs && !cJSON_IsNull(rs)) {
        return ms_errorf(err, MS_ERR_INVALID, "text_config.rope_scaling must be an object or null");
    }
    return MS_OK;
}

/* ---- validation ---- */

/* Sizes must be positive and below generous caps: a config is outside input, and the
 * loader allocates per layer and multiplies sizes, so an absurd value (num_hidden_layers
 * 2147483647, found by fuzzing) must be an error here, not an overflow later. */
#define POSITIVE_MAX(prefix, field, value, max)                                              \
    do {                                                                                     \
        if ((value) <= 0 || (int64_t)(value) > (int64_t)(max))                               \
            return ms_errorf(err, MS_ERR_INVALID, "%s%s must be in [1, %lld], got %d", prefix, \
                             field, (long long)(max), (int)(value));                         \
    } while (0)
enum {
    CFG_MAX_LAYERS = 1024,
    CFG_MAX_HEADS = 4096,
    CFG_MAX_WIDTH = 1 << 20,       /* hidden, intermediate, head_dim, projection */
    CFG_MAX_IMAGE = 16384,         /* image and patch side */
    CFG_MAX_TOKENS = 1 << 24,      /* vocabulary, positions */
};

static ms_status check_eps(const char *key, float eps, ms_error *err) {
    if (!(eps > 0.0f) || !isfinite(eps))
        return ms_errorf(err, MS_ERR_INVALID, "%s must be a positive number, got %g", key, (double)eps);
    return MS_OK;
}

static ms_status validate_clip(const ms_clip_config *v, ms_error *err) {
    const char *p = "vision_config.";
    POSITIVE_MAX(p, "hidden_size", v->hidden_size, CFG_MAX_WIDTH);
    POSITIVE_MAX(p, "intermediate_size", v->intermediate_size, CFG_MAX_WIDTH);
    POSITIVE_MAX(p, "num_hidden_layers", v->num_hidden_layers, CFG_MAX_LAYERS);
    POSITIVE_MAX(p, "num_attention_heads", v->num_attention_heads, CFG_MAX_HEADS);
    POSITIVE_MAX(p, "num_channels", v->num_channels, 16);
    POSITIVE_MAX(p, "image_size", v->image_size, CFG_MAX_IMAGE);
    POSITIVE_MAX(p, "patch_size", v->patch_size, CFG_MAX_IMAGE);
    POSITIVE_MAX(p, "projection_dim", v->projection_dim, CFG_MAX_WIDTH);
    if (v->hidden_size % v->num_attention_heads)
        return ms_errorf(err, MS_ERR_INVALID,
                         "vision_config.num_attention_heads %d does not divide hidden_size %d",
                         v->num_attention_heads, v->hidden_size);
    if (v->image_size % v->patch_size)
        return ms_errorf(err, MS_ERR_INVALID,
                         "vision_config.image_size %d is not divisible by patch_size %d",
                         v->image_size, v->patch_size);
    if (v->num_channels != 3)
        return ms_errorf(err, MS_ERR_UNSUPPORTED, "vision_config.num_channels %d is not supported (only 3)",
                         v->num_channels);
    if (strcmp(v->hidden_act, "quick_gelu") && strcmp(v->hidden_act, "gelu"))
        return ms_errorf(err, MS_ERR_UNSUPPORTED,
                         "vision_config.hidden_act '%s' is not supported (quick_gelu or gelu)", v->hidden_act);
    return check_eps("vision_config.layer_norm_eps", v->layer_norm_eps, err);
}

static ms_status validate_llama(const ms_llama_config *t, ms_error *err) {
    const char *p = "text_config.";
    POSITIVE_MAX(p, "vocab_size", t->vocab_size, CFG_MAX_TOKENS);
    POSITIVE_MAX(p, "hidden_size", t->hidden_size, CFG_MAX_WIDTH);
    POSITIVE_MAX(p, "intermediate_size", t->intermediate_size, CFG_MAX_WIDTH);
    POSITIVE_MAX(p, "num_hidden_layers", t->num_hidden_layers, CFG_MAX_LAYERS);
    POSITIVE_MAX(p, "num_attention_heads", t->num_attention_heads, CFG_MAX_HEADS);
    POSITIVE_MAX(p, "num_key_value_heads", t->num_key_value_heads, CFG_MAX_HEADS);
    POSITIVE_MAX(p, "head_dim", t->head_dim, CFG_MAX_WIDTH);
    POSITIVE_MAX(p, "max_position_embeddings", t->max_position_embeddings, CFG_MAX_TOKENS);
    if (t->num_attention_heads % t->num_key_value_heads)
        return ms_errorf(err, MS_ERR_INVALID,
                         "text_config.num_key_value_heads %d does not divide num_attention_heads %d",
                         t->num_key_value_heads, t->num_attention_heads);
    if (t->head_dim % 2)
        return ms_errorf(err, MS_ERR_INVALID, "text_config.head_dim must be even for RoPE, got %d",
                         t->head_dim);
    if (strcmp(t->hidden_act, "silu"))
        return ms_errorf(err, MS_ERR_UNSUPPORTED, "text_config.hidden_act '%s' is not supported (only silu)",
                         t->hidden_act);
    if (!(t->rope_theta > 0.0f) || !isfinite(t->rope_theta))
        return ms_errorf(err, MS_ERR_INVALID, "text_config.rope_theta must be positive, got %g",
                         (double)t->rope_theta);
    const struct { const char *key; int32_t id; } ids[] = {
        {"bos_token_id", t->bos_token_id}, {"eos_token_id", t->eos_token_id}, {"pad_token_id", t->pad_token_id}};
    for (size_t i = 0; i < 3; i++)
        if (ids[i].id < -1 || ids[i].id >= t->vocab_size)
            return ms_errorf(err, MS_ERR_INVALID, "text_config.%s %d is outside the vocabulary (vocab_size %d)",
                             ids[i].key, ids[i].id, t->vocab_size);
    for (int32_t i = 0; i < t->n_eos_token_ids; i++)
        if (t->eos_token_ids[i] >= t->vocab_size)
            return ms_errorf(err, MS_ERR_INVALID, "eos_token_id %d is outside the vocabulary (vocab_size %d)",
                             t->eos_token_ids[i], t->vocab_size);
    return check_eps("text_config.rms_norm_eps", t->rms_norm_eps, err);
}

static ms_status validate_llava(const ms_llava_config *c, ms_error *err) {
    ms_status s;
    if ((s = validate_clip(&c->vision, err)) || (s = validate_llama(&c->text, err))) return s;
    int32_t n_states = c->vision.num_hidden_layers + 1; /* hidden_states: embeddings + each layer */
    if (c->vision_feature_layer < -n_states || c->vision_feature_layer >= n_states)
        return ms_errorf(err, MS_ERR_INVALID,
                         "vision_feature_layer %d is out of range for %d vision layers (valid %d..%d)",
                         c->vision_feature_layer, c->vision.num_hidden_layers, -n_states, n_states - 1);
    if (strcmp(c->vision_feature_select_strategy, "default") &&
        strcmp(c->vision_feature_select_strategy, "full"))
        return ms_errorf(err, MS_ERR_INVALID,
                         "vision_feature_select_strategy '%s' is unknown (default or full)",
                         c->vision_feature_select_strategy);
    if (strcmp(c->projector_hidden_act, "gelu"))
        return ms_errorf(err, MS_ERR_UNSUPPORTED, "projector_hidden_act '%s' is not supported (only gelu)",
                         c->projector_hidden_act);
    if (c->image_token_index < 0 || c->image_token_index >= c->text.vocab_size)
        return ms_errorf(err, MS_ERR_INVALID, "image_token_index %d is outside the vocabulary (vocab_size %d)",
                         c->image_token_index, c->text.vocab_size);
    return MS_OK;
}

/* ---- config.json ---- */

ms_status ms_llava_config_parse(const char *json, size_t len, ms_llava_config *cfg, ms_error *err) {
    ms_llava_config_defaults(cfg);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return ms_errorf(err, MS_ERR_INVALID, "config.json is not valid JSON");
    ms_status s = MS_OK;
    if (!cJSON_IsObject(root)) {
        s = ms_errorf(err, MS_ERR_INVALID, "config.json is not a JSON object");
        goto done;
    }
    char type[64] = "llava";
    if ((s = ms_json_string(root, "", "model_type", type, sizeof type, err))) goto done;
    if (strcmp(type, "llava")) {
        s = ms_errorf(err, MS_ERR_UNSUPPORTED, "model_type '%s' is not supported (only llava)", type);
        goto done;
    }
    const cJSON *vc = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
    if (vc && !cJSON_IsNull(vc)) {
        if (!cJSON_IsObject(vc)) {
            s = ms_errorf(err, MS_ERR_INVALID, "vision_config must be an object");
            goto done;
        }
        clip_defaults(&cfg->vision);
        if ((s = read_clip(vc, &cfg->vision, err))) goto done;
    }
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    if (tc && !cJSON_IsNull(tc)) {
        if (!cJSON_IsObject(tc)) {
            s = ms_errorf(err, MS_ERR_INVALID, "text_config must be an object");
            goto done;
        }
        if ((s = read_llama(tc, &cfg->text, err))) goto done;
    } else {
        cfg->text.num_key_value_heads = DERIVE;
        cfg->text.head_dim = DERIVE;
    }
    ms_llama_config *t = &cfg->text;
    if (t->num_key_value_heads == DERIVE) t->num_key_value_heads = t->num_attention_heads;
    if (t->head_dim == DERIVE && t->num_attention_heads > 0) {
        /* only a derived head_dim needs the heads to divide the width */
        if (t->hidden_size % t->num_attention_heads) {
            s = ms_errorf(err, MS_ERR_INVALID, "text_config.num_attention_heads %d does not divide hidden_size %d",
                          t->num_attention_heads, t->hidden_size);
            goto done;
        }
        t->head_dim = t->hidden_size / t->num_attention_heads;
    }

    /* LLaVA's own keys; pad_token_id sits at the top level in llava-hf checkpoints. A
     * top-level tie_word_embeddings is not read: transformers ties the LM head by
     * text_config.tie_word_embeddings alone (get_text_config(decoder=True)). */
    int32_t top_pad = -2;
    const cJSON *fl = cJSON_GetObjectItemCaseSensitive(root, "vision_feature_layer");
    if (fl && cJSON_IsArray(fl)) {
        s = ms_errorf(err, MS_ERR_UNSUPPORTED, "vision_feature_layer as a list is not supported");
        goto done;
    }
    if ((s = ms_json_int(root, "", "image_token_index", &cfg->image_token_index, err)) ||
        (s = ms_json_int(root, "", "image_token_id", &cfg->image_token_index, err)) ||
        (s = ms_json_int(root, "", "vision_feature_layer", &cfg->vision_feature_layer, err)) ||
        (s = ms_json_string(root, "", "vision_feature_select_strategy", cfg->vision_feature_select_strategy,
                            sizeof cfg->vision_feature_select_strategy, err)) ||
        (s = ms_json_string(root, "", "projector_hidden_act", cfg->projector_hidden_act,
                            sizeof cfg->projector_hidden_act, err)) ||
        (s = ms_json_bool(root, "", "multimodal_projector_bias", &cfg->multimodal_projector_bias, err)) ||
        (s = ms_json_token_id(root, "", "pad_token_id", &top_pad, err)) ||
        (s = ms_config_eos_read(root, "", &cfg->text, err))) /* top level wins, as in GenerationConfig */
        goto done;
    if (top_pad != -2 && cfg->text.pad_token_id < 0) cfg->text.pad_token_id = top_pad;

    if ((s = validate_llava(cfg, err))) goto done;
    cfg->image_seq_length = ms_llava_image_tokens(cfg);
    image_defaults(&cfg->image, cfg->vision.image_size);
done:
    cJSON_Delete(root);
    return s;
}

/* ---- preprocessor_config.json ---- */

static ms_status read_size(const cJSON *root, const char *key, bool crop, ms_image_proc_config *p,
                           ms_error *err) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!o || cJSON_IsNull(o)) return MS_OK;
    int32_t v;
    ms_status s;
    if (cJSON_IsNumber(o)) {
        if ((s = ms_json_int(root, "", key, &v, err))) return s;
        if (crop) p->crop_height = p->crop_width = v;
        else p->shortest_edge = v;
        return MS_OK;
    }
    if (!cJSON_IsObject(o)) return ms_errorf(err, MS_ERR_INVALID, "%s must be an integer or an object", key);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s.", key);
    if (crop) {
        if ((s = ms_json_int(o, prefix, "height", &p->crop_height, err)) ||
            (s = ms_json_int(o, prefix, "width", &p->crop_width, err)))
            return s;
        return MS_OK;
    }
    if (cJSON_GetObjectItemCaseSensitive(o, "shortest_edge"))
        return ms_json_int(o, prefix, "shortest_edge", &p->shortest_edge, err);
    return ms_errorf(err, MS_ERR_UNSUPPORTED, "%s without shortest_edge is not supported", key);
}

ms_status ms_image_proc_config_parse(const char *json, size_t len, ms_image_proc_config *p, ms_error *err) {
    image_defaults(p, 224);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return ms_errorf(err, MS_ERR_INVALID, "preprocessor_config.json is not valid JSON");
    ms_status s = MS_OK;
    if (!cJSON_IsObject(root)) {
        s = ms_errorf(err, MS_ERR_INVALID, "preprocessor_config.json is not a JSON object");
        goto done;
    }
    if ((s = ms_json_bool(root, "", "do_resize", &p->do_resize, err)) ||
        (s = read_size(root, "size", false, p, err)) ||
        (s = ms_json_int(root, "", "resample", &p->resample, err)) ||
        (s = ms_json_bool(root, "", "do_center_crop", &p->do_center_crop, err)) ||
        (s = read_size(root, "crop_size", true, p, err)) ||
        (s = ms_json_bool(root, "", "do_rescale", &p->do_rescale, err)) ||
        (s = ms_json_float(root, "", "rescale_factor", &p->rescale_factor, err)) ||
        (s = ms_json_bool(root, "", "do_normalize", &p->do_normalize, err)) ||
        (s = ms_json_float3(root, "image_mean", p->image_mean, err)) ||
        (s = ms_json_float3(root, "image_std", p->image_std, err)) ||
        (s = ms_json_bool(root, "", "do_convert_rgb", &p->do_convert_rgb, err)))
        goto done;
    if (p->do_resize && p->shortest_edge <= 0) {
        s = ms_errorf(err, MS_ERR_INVALID, "size.shortest_edge must be positive, got %d", p->shortest_edge);
        goto done;
    }
    if (p->do_center_crop && (p->crop_height <= 0 || p->crop_width <= 0)) {
        s = ms_errorf(err, MS_ERR_INVALID, "crop_size must be positive, got %dx%d", p->crop_height,
                      p->crop_width);
        goto done;
    }
    if (p->resample < 0 || p->resample > 5) {
        s = ms_errorf(err, MS_ERR_INVALID, "resample %d is not a PIL resampling filter (0..5)", p->resample);
        goto done;
    }
    if (!isfinite(p->rescale_factor) || p->rescale_factor <= 0.0f) {
        s = ms_errorf(err, MS_ERR_INVALID, "rescale_factor must be positive, got %g", (double)p->rescale_factor);
        goto done;
    }
    for (int c = 0; c < 3; c++) {
        if (!(p->image_std[c] > 0.0f) || !isfinite(p->image_std[c]) || !isfinite(p->image_mean[c])) {
            s = ms_errorf(err, MS_ERR_INVALID, "image_std[%d] must be positive and image_mean finite, got %g, %g", c,
                          (double)p->image_std[c], (double)p->image_mean[c]);
            goto done;
        }
    }
done:
    cJSON_Delete(root);
    return s;
}

/* ---- the folder ---- */

static ms_status read_text_file(const char *path, char **out, size_t *len, ms_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return ms_errorf(err, MS_ERR_NOT_FOUND, "%s: no such file", path);
        return ms_errorf(err, MS_ERR_IO, "%s: %s", path, strerror(errno));
    }
    enum { MAX_JSON = 16 << 20 };
    char *buf = ms_xmalloc(MAX_JSON + 1);
    size_t n = fread(buf, 1, MAX_JSON + 1, f);
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return ms_errorf(err, MS_ERR_IO, "%s: read error", path);
    }
    if (n > MAX_JSON) {
        free(buf);
        return ms_errorf(err, MS_ERR_LIMIT, "%s: larger than %d bytes", path, MAX_JSON);
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return MS_OK;
}

ms_status ms_llava_config_load(const char *model_dir, ms_llava_config *cfg, ms_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    char *text;
    size_t len;
    ms_status s = read_text_file(path, &text, &len, err);
    if (s) return s;
    s = ms_llava_config_parse(text, len, cfg, err);
    free(text);
    if (s) return ms_error_wrap(err, "%s", path);
    if ((s = ms_config_eos_load_generation(model_dir, &cfg->text, err))) return s;

    snprintf(path, sizeof path, "%s/preprocessor_config.json", model_dir);
    s = read_text_file(path, &text, &len, err);
    if (s == MS_ERR_NOT_FOUND) return MS_OK; /* CLIP defaults at the vision image size */
    if (s) return s;
    s = ms_image_proc_config_parse(text, len, &cfg->image, err);
    free(text);
    if (s) return ms_error_wrap(err, "%s", path);
    return MS_OK;
}
