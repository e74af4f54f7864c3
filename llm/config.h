/*
 * Model configuration: a LLaVA-1.5 folder's config.json (vision_config + text_config,
 * with the defaults transformers fills in when a key is absent) and
 * preprocessor_config.json (CLIPImageProcessor's values; CLIP's defaults when absent).
 */
#ifndef MS_LLM_CONFIG_H
#define MS_LLM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/ms_common.h"

enum { MS_MAX_EOS_IDS = 16 }; /* eos_token_id list entries kept (more is an error) */

typedef struct ms_clip_config {
    int32_t hidden_size;          /* 1024 for ViT-L/14 */
    int32_t intermediate_size;    /* 4096 */
    int32_t num_hidden_layers;    /* 24 */
    int32_t num_attention_heads;  /* 16 */
    int32_t num_channels;         /* 3 */
    int32_t image_size;           /* 336 */
    int32_t patch_size;           /* 14 */
    int32_t projection_dim;       /* 768 (unused by LLaVA) */
    float layer_norm_eps;         /* 1e-5 */
    char hidden_act[32];          /* "quick_gelu" */
} ms_clip_config;

typedef struct ms_llama_config {
    int32_t vocab_size;
    int32_t hidden_size;
    int32_t intermediate_size;
    int32_t num_hidden_layers;
    int32_t num_attention_heads;
    int32_t num_key_value_heads;  /* defaults to num_attention_heads */
    int32_t head_dim;             /* defaults to hidden_size / num_attention_heads */
    int32_t max_position_embeddings;
    float rms_norm_eps;
    float rope_theta;
    bool tie_word_embeddings;
    bool attention_bias;          /* q/k/v/o biases (false for Llama) */
    bool mlp_bias;
    char hidden_act[32];          /* "silu" */
    int32_t bos_token_id;         /* -1 when absent */
    int32_t eos_token_id;         /* the first of eos_token_ids, -1 when none */
    /* Every id that ends generation: config.json's eos_token_id (one id or a list),
     * replaced by generation_config.json's when that file gives one (llm/config_eos.c). */
    int32_t eos_token_ids[MS_MAX_EOS_IDS];
    int32_t n_eos_token_ids;
    int32_t pad_token_id;
} ms_llama_config;

typedef struct ms_image_proc_config {
    bool do_resize;
    int32_t shortest_edge;        /* resize so the shorter side is this */
    int32_t resample;             /* PIL code: 3 = bicubic */
    bool do_center_crop;
    int32_t crop_height, crop_width;
    bool do_rescale;
    float rescale_factor;         /* 1/255 */
    bool do_normalize;
    float image_mean[3];
    float image_std[3];
    bool do_convert_rgb;
} ms_image_proc_config;

typedef struct ms_llava_config {
    ms_clip_config vision;
    ms_llama_config text;
    ms_image_proc_config image;
    int32_t image_token_index;               /* 32000 for llava-1.5 */
    int32_t vision_feature_layer;            /* -2: index into hidden_states (0 = embeddings) */
    char vision_feature_select_strategy[16]; /* "default" drops CLS, "full" keeps it */
    char projector_hidden_act[32];           /* "gelu" */
    bool multimodal_projector_bias;          /* true */
    int32_t image_seq_length;                /* tokens one image becomes in the prompt */
} ms_llava_config;

/* Defaults of transformers' LlavaConfig / CLIPVisionConfig / LlamaConfig. */
void ms_llava_config_defaults(ms_llava_config *cfg);
/* Reads DIR/config.json and (if present) DIR/preprocessor_config.json and
 * DIR/generation_config.json (its eos_token_id). */
ms_status ms_llava_config_load(const char *model_dir, ms_llava_config *cfg, ms_error *err);
/* Parses config.json text (entry point for the fuzzer and tests); validates values. */
ms_status ms_llava_config_parse(const char *json, size_t len, ms_llava_config *cfg, ms_error *err);
ms_status ms_image_proc_config_parse(const char *json, size_t len, ms_image_proc_config *cfg,
                                     ms_error *err);
/* Tokens per image after feature selection: (image_size/patch)^2, +1 with "full". */
int32_t ms_llava_image_tokens(const ms_llava_config *cfg);

#endif
