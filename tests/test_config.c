/*
 * config.json and preprocessor_config.json: transformers' defaults for absent keys,
 * llava-hf's published config read as published, each bad value rejected by name.
 */
#include <string.h>

#include "llm/config.h"
#include "llm/model_init.h"
#include "tests/test_util.h"

static ms_llava_config parse_ok(const char *json) {
    ms_llava_config c;
    ms_error err = {0};
    ms_status s = ms_llava_config_parse(json, strlen(json), &c, &err);
    EXPECTF(s == MS_OK, "%s: %s", json, err.msg);
    return c;
}

static void test_defaults(void) {
    /* No sub-configs: LlavaConfig's ViT-L/14-336 and LlamaConfig(). (Taken together
     * they are inconsistent: image token 32000 is outside Llama's default vocabulary,
     * which is an error here; real checkpoints have 32064.) */
    ms_llava_config c;
    ms_error err = {0};
    EXPECT(ms_llava_config_parse("{}", 2, &c, &err) == MS_ERR_INVALID && strstr(err.msg, "image_token_index 32000"));
    c = parse_ok("{\"image_token_index\": 7}");
    EXPECT(c.image_token_index == 7);
    EXPECT(c.vision.hidden_size == 1024 && c.vision.intermediate_size == 4096);
    EXPECT(c.vision.num_hidden_layers == 24 && c.vision.num_attention_heads == 16);
    EXPECT(c.vision.image_size == 336 && c.vision.patch_size == 14 && c.vision.projection_dim == 768);
    EXPECT(!strcmp(c.vision.hidden_act, "quick_gelu") && c.vision.layer_norm_eps == 1e-5f);
    EXPECT(c.text.vocab_size == 32000 && c.text.hidden_size == 4096 && c.text.intermediate_size == 11008);
    EXPECT(c.text.num_hidden_layers == 32 && c.text.num_attention_heads == 32);
    EXPECT(c.text.num_key_value_heads == 32 && c.text.head_dim == 128);
    EXPECT(c.text.max_position_embeddings == 2048 && c.text.rms_norm_eps == 1e-6f && c.text.rope_theta == 10000.0f);
    EXPECT(c.text.bos_token_id == 1 && c.text.eos_token_id == 2 && c.text.pad_token_id == -1);
    EXPECT(!c.text.tie_word_embeddings && !c.text.attention_bias && !c.text.mlp_bias);
    c = parse_ok("{\"text_config\": {\"vocab_size\": 32064}}");
    EXPECT(c.image_token_index == 32000 && c.vision_feature_layer == -2);
    EXPECT(!strcmp(c.vision_feature_select_strategy, "default") && !strcmp(c.projector_hidden_act, "gelu"));
    EXPECT(c.multimodal_projector_bias);
    EXPECT(c.image_seq_length == 576);
    EXPECT(c.image.shortest_edge == 336 && c.image.crop_height == 336 && c.image.crop_width == 336);
    EXPECT(c.image.resample == 3 && c.image.do_resize && c.image.do_center_crop && c.image.do_normalize);
    EXPECT_NEAR(c.image.rescale_factor, 1.0 / 255.0, 1e-9);
    EXPECT(c.image.image_mean[0] == 0.48145466f && c.image.image_std[2] == 0.27577711f);

    /* A vision_config dict takes CLIPVisionConfig's defaults, not LLaVA's. */
    c = parse_ok("{\"vision_config\": {}, \"text_config\": {\"hidden_size\": 512, \"num_attention_heads\": 8},"
                 "\"image_token_index\": 3}");
    EXPECT(c.vision.hidden_size == 768 && c.vision.num_hidden_layers == 12 && c.vision.image_size == 224);
    EXPECT(c.vision.patch_size == 32 && c.vision.projection_dim == 512 && c.image_seq_length == 49);
    EXPECT(c.text.num_key_value_heads == 8 && c.text.head_dim == 64);

    /* null means derive; explicit values win; "full" keeps CLS; top-level pad applies to
     * the text model, a top-level tie_word_embeddings does not (transformers ties by
     * text_config's alone) */
    c = parse_ok("{\"text_config\": {\"num_key_value_heads\": null, \"head_dim\": 32, \"eos_token_id\": [7, 8],"
                 "\"num_attention_heads\": 16, \"hidden_size\": 1024}, \"vision_feature_select_strategy\": \"full\","
                 "\"pad_token_id\": 5, \"tie_word_embeddings\": true, \"image_token_id\": 9}");
    EXPECT(c.text.num_key_value_heads == 16 && c.text.head_dim == 32 && c.text.eos_token_id == 7);
    EXPECT(c.image_seq_length == 577 && c.text.pad_token_id == 5 && !c.text.tie_word_embeddings);
    EXPECT(c.image_token_index == 9);
    c = parse_ok("{\"text_config\": {\"tie_word_embeddings\": true, \"vocab_size\": 32064},"
                 "\"tie_word_embeddings\": false}");
    EXPECT(c.text.tie_word_embeddings);
    c = parse_ok("{\"text_config\": {\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 500000},"
                 "\"vocab_size\": 32064}}");
    EXPECT(c.text.rope_theta == 500000.0f);

    /* llava-hf/llava-1.5-7b-hf's config.json, as published */
    c = parse_ok("{\"architectures\": [\"LlavaForConditionalGeneration\"], \"ignore_index\": -100,"
                 "\"image_token_index\": 32000, \"model_type\": \"llava\", \"pad_token_id\": 32001,"
                 "\"projector_hidden_act\": \"gelu\", \"text_config\": {\"_name_or_path\": \"lmsys/vicuna-7b-v1.5\","
                 "\"architectures\": [\"LlamaForCausalLM\"], \"max_position_embeddings\": 4096, \"model_type\": \"llama\","
                 "\"rms_norm_eps\": 1e-05, \"torch_dtype\": \"float16\", \"vocab_size\": 32064},"
                 "\"tie_word_embeddings\": false, \"torch_dtype\": \"float16\", \"transformers_version\": \"4.36.0.dev0\","
                 "\"vision_config\": {\"hidden_act\": \"quick_gelu\", \"hidden_size\": 1024, \"image_size\": 336,"
                 "\"intermediate_size\": 4096, \"model_type\": \"clip_vision_model\", \"num_attention_heads\": 16,"
                 "\"num_hidden_layers\": 24, \"patch_size\": 14, \"projection_dim\": 768, \"vocab_size\": 32000},"
                 "\"vision_feature_layer\": -2, \"vision_feature_select_strategy\": \"default\", \"vocab_size\": 32064}");
    ms_llava_config p;
    EXPECT(ms_llava_preset("llava-1.5-7b", &p, &err) == MS_OK);
    EXPECT(!memcmp(&c.vision, &p.vision, sizeof c.vision));
    EXPECT(!memcmp(&c.text, &p.text, sizeof c.text));
    EXPECT(c.image_token_index == p.image_token_index && c.image_seq_length == 576);
    EXPECT(ms_llava_preset("huge", &p, &err) == MS_ERR_NOT_FOUND);
}

typedef struct bad_case {
    const char *json;
    ms_status status;
    const char *needle; /* the key (and value) the message must name */
} bad_case;

static void test_bad_values(void) {
    static const bad_case cases[] = {
        {"{", MS_ERR_INVALID, "not valid JSON"},
        {"[]", MS_ERR_INVALID, "not a JSON object"},
        {"{\"model_type\": \"mllama\"}", MS_ERR_UNSUPPORTED, "model_type 'mllama'"},
        {"{\"vision_config\": 3}", MS_ERR_INVALID, "vision_config"},
        {"{\"text_config\": \"x\"}", MS_ERR_INVALID, "text_config"},
        {"{\"vision_config\": {\"hidden_size\": 0}}", MS_ERR_INVALID, "vision_config.hidden_size must be in [1, 1048576], got 0"},
        /* found by fuzzing: num_hidden_layers + 1 overflowed */
        {"{\"vision_config\": {\"num_hidden_layers\": 2147483647}}", MS_ERR_INVALID,
         "vision_config.num_hidden_layers must be in [1, 1024], got 2147483647"},
        {"{\"vision_config\": {\"hidden_size\": \"big\"}}", MS_ERR_INVALID, "vision_config.hidden_size must be an integer, got \"big\""},
        {"{\"vision_config\": {\"hidden_size\": 1.5}}", MS_ERR_INVALID, "vision_config.hidden_size"},
        {"{\"vision_config\": {\"num_hidden_layers\": -3}}", MS_ERR_INVALID, "vision_config.num_hidden_layers"},
        {"{\"vision_config\": {\"num_attention_heads\": 7}}", MS_ERR_INVALID, "vision_config.num_attention_heads 7"},
        {"{\"vision_config\": {\"image_size\": 100}}", MS_ERR_INVALID, "vision_config.image_size 100"},
        {"{\"vision_config\": {\"patch_size\": 0}}", MS_ERR_INVALID, "vision_config.patch_size"},
        {"{\"vision_config\": {\"hidden_act\": \"relu\"}}", MS_ERR_UNSUPPORTED, "vision_config.hidden_act 'relu'"},
        {"{\"vision_config\": {\"layer_norm_eps\": 0}}", MS_ERR_INVALID, "vision_config.layer_norm_eps"},
        {"{\"vision_config\": {\"layer_norm_eps\": -1e-5}}", MS_ERR_INVALID, "vision_config.layer_norm_eps"},
        {"{\"vision_config\": {\"num_channels\": 1}}", MS_ERR_UNSUPPORTED, "vision_config.num_channels"},
        {"{\"vision_config\": {\"model_type\": \"siglip_vision_model\"}}", MS_ERR_UNSUPPORTED, "siglip_vision_model"},
        {"{\"text_config\": {\"vocab_size\": 0}}", MS_ERR_INVALID, "text_config.vocab_size must be in [1, "},
        {"{\"text_config\": {\"hidden_size\": 4001}}", MS_ERR_INVALID, "text_config.num_attention_heads 32 does not divide hidden_size 4001"},
        {"{\"text_config\": {\"num_key_value_heads\": 5}}", MS_ERR_INVALID, "text_config.num_key_value_heads 5"},
        {"{\"text_config\": {\"num_key_value_heads\": 0}}", MS_ERR_INVALID, "text_config.num_key_value_heads"},
        {"{\"text_config\": {\"head_dim\": 7}}", MS_ERR_INVALID, "text_config.head_dim"},
        {"{\"text_config\": {\"hidden_act\": \"gelu\"}}", MS_ERR_UNSUPPORTED, "text_config.hidden_act 'gelu'"},
        {"{\"text_config\": {\"rms_norm_eps\": 0}}", MS_ERR_INVALID, "text_config.rms_norm_eps"},
        {"{\"text_config\": {\"rope_theta\": -1}}", MS_ERR_INVALID, "text_config.rope_theta"},
        {"{\"text_config\": {\"rope_scaling\": {\"rope_type\": \"yarn\"}}}", MS_ERR_UNSUPPORTED, "'yarn'"},
        {"{\"text_config\": {\"max_position_embeddings\": 0}}", MS_ERR_INVALID, "text_config.max_position_embeddings"},
        {"{\"text_config\": {\"bos_token_id\": 40000}}", MS_ERR_INVALID, "text_config.bos_token_id 40000"},
        {"{\"text_config\": {\"tie_word_embeddings\": 1}}", MS_ERR_INVALID, "text_config.tie_word_embeddings"},
        {"{\"text_config\": {\"model_type\": \"mistral\"}}", MS_ERR_UNSUPPORTED, "text_config.model_type 'mistral'"},
        {"{\"vision_feature_layer\": 25}", MS_ERR_INVALID, "vision_feature_layer 25"},
        {"{\"vision_feature_layer\": -26}", MS_ERR_INVALID, "vision_feature_layer -26"},
        {"{\"vision_feature_layer\": [-2, -5]}", MS_ERR_UNSUPPORTED, "vision_feature_layer"},
        {"{\"vision_feature_select_strategy\": \"cls\"}", MS_ERR_INVALID, "vision_feature_select_strategy 'cls'"},
        {"{\"projector_hidden_act\": \"relu\"}", MS_ERR_UNSUPPORTED, "projector_hidden_act 'relu'"},
        {"{\"image_token_index\": 99999}", MS_ERR_INVALID, "image_token_index 99999"},
        {"{\"image_token_index\": -1}", MS_ERR_INVALID, "image_token_index -1"},
        {"{\"multimodal_projector_bias\": \"yes\"}", MS_ERR_INVALID, "multimodal_projector_bias"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ms_llava_config c;
        ms_error err = {0};
        ms_status s = ms_llava_config_parse(cases[i].json, strlen(cases[i].json), &c, &err);
        EXPECTF(s == cases[i].status, "%s: status %s, want %s (%s)", cases[i].json, ms_status_name(s),
                ms_status_name(cases[i].status), err.msg);
        EXPECTF(strstr(err.msg, cases[i].needle) != NULL, "%s: message '%s' lacks '%s'", cases[i].json, err.msg,
                cases[i].needle);
    }
    /* the edges of vision_feature_layer are valid (hidden_states has layers + 1 entries) */
    parse_ok("{\"vision_feature_layer\": 24, \"image_token_index\": 0}");
    parse_ok("{\"vision_feature_layer\": -25, \"image_token_index\": 0}");
    /* an explicit head_dim frees the width from dividing by the heads, as in Llama */
    ms_llava_config c = parse_ok("{\"text_config\": {\"hidden_size\": 100, \"num_attention_heads\": 3, \"head_dim\": 8,"
                                 "\"num_key_value_heads\": 1}, \"image_token_index\": 0}");
    EXPECT(c.text.head_dim == 8 && c.text.num_key_value_heads == 1);
}

static void test_preprocessor(void) {
    ms_image_proc_config p;
    ms_error err = {0};
    const char *j = "{}";
    EXPECT(ms_image_proc_config_parse(j, strlen(j), &p, &err) == MS_OK);
    EXPECT(p.shortest_edge == 224 && p.crop_height == 224 && p.crop_width == 224 && p.resample == 3);
    j = "{\"size\": 300, \"crop_size\": 200, \"do_center_crop\": false, \"image_mean\": [0.5, 0.5, 0.5],"
        "\"image_std\": 0.25, \"rescale_factor\": 0.5, \"resample\": 2, \"do_convert_rgb\": false}";
    EXPECT(ms_image_proc_config_parse(j, strlen(j), &p, &err) == MS_OK);
    EXPECT(p.shortest_edge == 300 && p.crop_height == 200 && p.crop_width == 200 && !p.do_center_crop);
    EXPECT(p.image_mean[1] == 0.5f && p.image_std[2] == 0.25f && p.rescale_factor == 0.5f && p.resample == 2);
    EXPECT(!p.do_convert_rgb);
    j = "{\"size\": {\"shortest_edge\": 336}, \"crop_size\": {\"height\": 336, \"width\": 320}}";
    EXPECT(ms_image_proc_config_parse(j, strlen(j), &p, &err) == MS_OK);
    EXPECT(p.shortest_edge == 336 && p.crop_height == 336 && p.crop_width == 320);
    static const bad_case bad[] = {
        {"{\"size\": {\"height\": 3, \"width\": 3}}", MS_ERR_UNSUPPORTED, "size"},
        {"{\"size\": 0}", MS_ERR_INVALID, "shortest_edge"},
        {"{\"crop_size\": {\"height\": -1}}", MS_ERR_INVALID, "crop_size"},
        {"{\"image_std\": [1, 0, 1]}", MS_ERR_INVALID, "image_std[1]"},
        {"{\"image_mean\": [1, 2]}", MS_ERR_INVALID, "image_mean"},
        {"{\"resample\": 9}", MS_ERR_INVALID, "resample 9"},
        {"{\"rescale_factor\": 0}", MS_ERR_INVALID, "rescale_factor"},
        {"{\"do_resize\": \"no\"}", MS_ERR_INVALID, "do_resize"},
        {"nope", MS_ERR_INVALID, "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ms_status s = ms_image_proc_config_parse(bad[i].json, strlen(bad[i].json), &p, &err);
        EXPECTF(s == bad[i].status && strstr(err.msg, bad[i].needle), "%s: %s (%s)", bad[i].json, ms_status_name(s),
                err.msg);
    }
}

/* The folder: the JSON files model init writes read back as the preset; without
 * preprocessor_config.json the crop follows the vision image size. */
static void test_folder(void) {
    const char *dir = "testdata/mf_config";
    ms_test_system("rm -rf %s", dir);
    ms_llava_config tiny, back;
    ms_error err = {0};
    EXPECT(ms_llava_preset("tiny", &tiny, &err) == MS_OK);
    EXPECT(ms_model_write_configs(&tiny, MS_DTYPE_BF16, dir, &err) == MS_OK);
    EXPECTF(ms_llava_config_load(dir, &back, &err) == MS_OK, "%s", err.msg);
    EXPECT(!memcmp(&tiny, &back, sizeof tiny));
    EXPECT(back.image_seq_length == 64 && back.text.num_key_value_heads == 2 && back.image.shortest_edge == 112);
    ms_test_system("rm %s/preprocessor_config.json", dir);
    EXPECT(ms_llava_config_load(dir, &back, &err) == MS_OK);
    EXPECT(back.image.shortest_edge == 112 && back.image.crop_width == 112);
    ms_test_system("echo '{\"vision_config\": {\"image_size\": 99}}' > %s/config.json", dir);
    EXPECT(ms_llava_config_load(dir, &back, &err) == MS_ERR_INVALID);
    EXPECTF(strstr(err.msg, "config.json") && strstr(err.msg, "image_size 99"), "%s", err.msg);
    ms_test_system("rm -rf %s", dir);
    EXPECT(ms_llava_config_load(dir, &back, &err) == MS_ERR_NOT_FOUND);
}

int main(void) {
    test_defaults();
    test_bad_values();
    test_preprocessor();
    test_folder();
    return ms_test_finish("test_config");
}
