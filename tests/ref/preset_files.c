/*
 * preset_files PRESET DIR: the files `modserve model init --preset PRESET` writes, less
 * the weights (config.json, preprocessor_config.json, processor_config.json,
 * generation_config.json, the tokenizer), plus DIR/tensors.json listing the tensors
 * init would write ([{"name": published name, "shape": [...]}, ...], from the same
 * ms_llava_tensor_list init uses) and DIR/parsed.json, the values modserve reads back
 * from those files (ms_llava_config_load). test_model_init_loads.py checks a full-size
 * preset against transformers with them, without writing 14 GB of weights.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "llm/config.h"
#include "llm/model_init.h"
#include "llm/tokenizer.h"

static int write_json(const char *dir, const char *file, cJSON *root) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    FILE *f = fopen(path, "w");
    bool ok = f && fputs(text, f) >= 0;
    if (f) ok = fclose(f) == 0 && ok;
    free(text);
    if (!ok) fprintf(stderr, "preset_files: cannot write %s\n", path);
    return ok ? 0 : 1;
}

static int write_tensor_list(const ms_llava_config *cfg, const char *dir) {
    ms_model_tensor *ts;
    const int32_t n = ms_llava_tensor_list(cfg, &ts);
    cJSON *list = cJSON_CreateArray();
    for (int32_t i = 0; i < n; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "name", ts[i].name);
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        for (int32_t d = 0; d < ts[i].ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)ts[i].shape[d]));
        cJSON_AddItemToArray(list, t);
    }
    free(ts);
    return write_json(dir, "tensors.json", list);
}

/* What modserve reads from the folder, under transformers' attribute names. */
static int write_parsed(const ms_llava_config *c, const char *dir) {
    cJSON *root = cJSON_CreateObject(), *v = cJSON_AddObjectToObject(root, "vision_config"),
          *t = cJSON_AddObjectToObject(root, "text_config"), *p = cJSON_AddObjectToObject(root, "image_processor");
    cJSON_AddNumberToObject(root, "image_token_index", c->image_token_index);
    cJSON_AddNumberToObject(root, "vision_feature_layer", c->vision_feature_layer);
    cJSON_AddStringToObject(root, "vision_feature_select_strategy", c->vision_feature_select_strategy);
    cJSON_AddStringToObject(root, "projector_hidden_act", c->projector_hidden_act);
    cJSON_AddBoolToObject(root, "multimodal_projector_bias", c->multimodal_projector_bias);
    cJSON_AddNumberToObject(root, "image_seq_length", c->image_seq_length);
    const ms_clip_config *vc = &c->vision;
    cJSON_AddNumberToObject(v, "hidden_size", vc->hidden_size);
    cJSON_AddNumberToObject(v, "intermediate_size", vc->intermediate_size);
    cJSON_AddNumberToObject(v, "num_hidden_layers", vc->num_hidden_layers);
    cJSON_AddNumberToObject(v, "num_attention_heads", vc->num_attention_heads);
    cJSON_AddNumberToObject(v, "num_channels", vc->num_channels);
    cJSON_AddNumberToObject(v, "image_size", vc->image_size);
    cJSON_AddNumberToObject(v, "patch_size", vc->patch_size);
    cJSON_AddNumberToObject(v, "layer_norm_eps", vc->layer_norm_eps);
    cJSON_AddStringToObject(v, "hidden_act", vc->hidden_act);
    const ms_llama_config *tc = &c->text;
    cJSON_AddNumberToObject(t, "vocab_size", tc->vocab_size);
    cJSON_AddNumberToObject(t, "hidden_size", tc->hidden_size);
    cJSON_AddNumberToObject(t, "intermediate_size", tc->intermediate_size);
    cJSON_AddNumberToObject(t, "num_hidden_layers", tc->num_hidden_layers);
    cJSON_AddNumberToObject(t, "num_attention_heads", tc->num_attention_heads);
    cJSON_AddNumberToObject(t, "num_key_value_heads", tc->num_key_value_heads);
    cJSON_AddNumberToObject(t, "head_dim", tc->head_dim);
    cJSON_AddNumberToObject(t, "max_position_embeddings", tc->max_position_embeddings);
    cJSON_AddNumberToObject(t, "rms_norm_eps", tc->rms_norm_eps);
    cJSON_AddNumberToObject(t, "rope_theta", tc->rope_theta);
    cJSON_AddBoolToObject(t, "tie_word_embeddings", tc->tie_word_embeddings);
    cJSON_AddBoolToObject(t, "attention_bias", tc->attention_bias);
    cJSON_AddBoolToObject(t, "mlp_bias", tc->mlp_bias);
    cJSON_AddStringToObject(t, "hidden_act", tc->hidden_act);
    cJSON_AddNumberToObject(t, "bos_token_id", tc->bos_token_id);
    cJSON_AddNumberToObject(t, "eos_token_id", tc->eos_token_id);
    cJSON_AddNumberToObject(t, "pad_token_id", tc->pad_token_id);
    const ms_image_proc_config *ic = &c->image;
    cJSON_AddBoolToObject(p, "do_resize", ic->do_resize);
    cJSON_AddNumberToObject(p, "shortest_edge", ic->shortest_edge);
    cJSON_AddNumberToObject(p, "resample", ic->resample);
    cJSON_AddBoolToObject(p, "do_center_crop", ic->do_center_crop);
    cJSON_AddNumberToObject(p, "crop_height", ic->crop_height);
    cJSON_AddNumberToObject(p, "crop_width", ic->crop_width);
    cJSON_AddBoolToObject(p, "do_rescale", ic->do_rescale);
    cJSON_AddNumberToObject(p, "rescale_factor", ic->rescale_factor);
    cJSON_AddBoolToObject(p, "do_normalize", ic->do_normalize);
    cJSON_AddItemToObject(p, "image_mean", cJSON_CreateFloatArray(ic->image_mean, 3));
    cJSON_AddItemToObject(p, "image_std", cJSON_CreateFloatArray(ic->image_std, 3));
    cJSON_AddBoolToObject(p, "do_convert_rgb", ic->do_convert_rgb);
    return write_json(dir, "parsed.json", root);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: preset_files PRESET DIR\n");
        return 2;
    }
    ms_error err = {0};
    ms_llava_config cfg, back;
    if (ms_llava_preset(argv[1], &cfg, &err) || ms_model_write_configs(&cfg, MS_DTYPE_BF16, argv[2], &err) ||
        ms_tokenizer_write_tiny(argv[2], &err) || ms_llava_config_load(argv[2], &back, &err)) {
        fprintf(stderr, "preset_files: %s\n", err.msg);
        return 1;
    }
    return write_tensor_list(&cfg, argv[2]) || write_parsed(&back, argv[2]);
}
