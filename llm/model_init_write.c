/*
 * Writing a random-weight model folder in the Hugging Face LLaVA layout (see
 * model_init.h): the JSON files transformers reads offline (config.json,
 * preprocessor_config.json, processor_config.json, generation_config.json), then the
 * weights, streamed tensor by tensor in chunks so a 7B model needs a few MB of RAM.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "llm/model_init.h"
#include "llm/weights.h"

/* ---- JSON helpers ---- */

/* Shortest decimal that reads back as the same float: 1e-05, not 9.99999975e-06. */
static cJSON *float_item(float f) {
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    if (!strchr(buf, '.') && !strchr(buf, 'e')) strcat(buf, ".0"); /* keep it a float for Python */
    return cJSON_CreateRaw(buf);
}

static void add_float(cJSON *o, const char *key, float f) { cJSON_AddItemToObject(o, key, float_item(f)); }

static void add_float3(cJSON *o, const char *key, const float v[3]) {
    cJSON *a = cJSON_AddArrayToObject(o, key);
    for (int i = 0; i < 3; i++) cJSON_AddItemToArray(a, float_item(v[i]));
}

static void add_id(cJSON *o, const char *key, int32_t id) {
    if (id < 0) cJSON_AddNullToObject(o, key);
    else cJSON_AddNumberToObject(o, key, id);
}

static ms_status write_json(const char *dir, const char *file, cJSON *root, ms_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    MS_CHECK(text != NULL);
    FILE *f = fopen(path, "w");
    if (!f) {
        int e = errno;
        free(text);
        return ms_errorf(err, MS_ERR_IO, "%s: %s", path, strerror(e));
    }
    bool ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    free(text);
    if (fclose(f) != 0) ok = false;
    if (!ok) return ms_errorf(err, MS_ERR_IO, "%s: write failed", path);
    return MS_OK;
}

static const char *torch_dtype(ms_dtype dt) {
    switch (dt) {
    case MS_DTYPE_F32: return "float32";
    case MS_DTYPE_F16: return "float16";
    default: return "bfloat16";
    }
}

/* ---- the JSON files ---- */

static cJSON *vision_json(const ms_clip_config *v) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model_type", "clip_vision_model");
    cJSON_AddNumberToObject(o, "hidden_size", v->hidden_size);
    cJSON_AddNumberToObject(o, "intermediate_size", v->intermediate_size);
    cJSON_AddNumberToObject(o, "num_hidden_layers", v->num_hidden_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", v->num_attention_heads);
    cJSON_AddNumberToObject(o, "num_channels", v->num_channels);
    cJSON_AddNumberToObject(o, "image_size", v->image_size);
    cJSON_AddNumberToObject(o, "patch_size", v->patch_size);
    cJSON_AddNumberToObject(o, "projection_dim", v->projection_dim);
    add_float(o, "layer_norm_eps", v->layer_norm_eps);
    cJSON_AddStringToObject(o, "hidden_act", v->hidden_act);
    add_float(o, "attention_dropout", 0.0f);
    add_float(o, "initializer_factor", 1.0f);
    add_float(o, "initializer_range", 0.02f);
    return o;
}

static cJSON *text_json(const ms_llama_config *t, ms_dtype dt) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model_type", "llama");
    cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("LlamaForCausalLM"));
    cJSON_AddNumberToObject(o, "vocab_size", t->vocab_size);
    cJSON_AddNumberToObject(o, "hidden_size", t->hidden_size);
    cJSON_AddNumberToObject(o, "intermediate_size", t->intermediate_size);
    cJSON_AddNumberToObject(o, "num_hidden_layers", t->num_hidden_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", t->num_attention_heads);
    cJSON_AddNumberToObject(o, "num_key_value_heads", t->num_key_value_heads);
    cJSON_AddNumberToObject(o, "head_dim", t->head_dim);
    cJSON_AddNumberToObject(o, "max_position_embeddings", t->max_position_embeddings);
    add_float(o, "rms_norm_eps", t->rms_norm_eps);
    add_float(o, "rope_theta", t->rope_theta);
    cJSON_AddNullToObject(o, "rope_scaling");
    cJSON_AddStringToObject(o, "hidden_act", t->hidden_act);
    cJSON_AddBoolToObject(o, "attention_bias", t->attention_bias);
    add_float(o, "attention_dropout", 0.0f);
    cJSON_AddBoolToObject(o, "mlp_bias", t->mlp_bias);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", t->tie_word_embeddings);
    add_id(o, "bos_token_id", t->bos_token_id);
    add_id(o, "eos_token_id", t->eos_token_id);
    add_id(o, "pad_token_id", t->pad_token_id);
    add_float(o, "initializer_range", 0.02f);
    cJSON_AddNumberToObject(o, "pretraining_tp", 1);
    cJSON_AddBoolToObject(o, "use_cache", true);
    cJSON_AddStringToObject(o, "torch_dtype", torch_dtype(dt));
    return o;
}

static cJSON *config_json(const ms_llava_config *c, ms_dtype dt) {
    cJSON *o = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("LlavaForConditionalGeneration"));
    cJSON_AddStringToObject(o, "model_type", "llava");
    cJSON_AddNumberToObject(o, "ignore_index", -100);
    cJSON_AddNumberToObject(o, "image_token_index", c->image_token_index);
    cJSON_AddNumberToObject(o, "image_seq_length", ms_llava_image_tokens(c));
    add_id(o, "pad_token_id", c->text.pad_token_id);
    cJSON_AddStringToObject(o, "projector_hidden_act", c->projector_hidden_act);
    cJSON_AddBoolToObject(o, "multimodal_projector_bias", c->multimodal_projector_bias);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", c->text.tie_word_embeddings);
    cJSON_AddNumberToObject(o, "vision_feature_layer", c->vision_feature_layer);
    cJSON_AddStringToObject(o, "vision_feature_select_strategy", c->vision_feature_select_strategy);
    cJSON_AddStringToObject(o, "torch_dtype", torch_dtype(dt));
    cJSON_AddItemToObject(o, "vision_config", vision_json(&c->vision));
    cJSON_AddItemToObject(o, "text_config", text_json(&c->text, dt));
    return o;
}

static cJSON *preprocessor_json(const ms_image_proc_config *p) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "image_processor_type", "CLIPImageProcessor");
    cJSON_AddStringToObject(o, "processor_class", "LlavaProcessor");
    cJSON_AddBoolToObject(o, "do_resize", p->do_resize);
    cJSON *size = cJSON_AddObjectToObject(o, "size");
    cJSON_AddNumberToObject(size, "shortest_edge", p->shortest_edge);
    cJSON_AddNumberToObject(o, "resample", p->resample);
    cJSON_AddBoolToObject(o, "do_center_crop", p->do_center_crop);
    cJSON *crop = cJSON_AddObjectToObject(o, "crop_size");
    cJSON_AddNumberToObject(crop, "height", p->crop_height);
    cJSON_AddNumberToObject(crop, "width", p->crop_width);
    cJSON_AddBoolToObject(o, "do_rescale", p->do_rescale);
    /* 1/255 exactly as Python writes it (the float would read back as 0.003921569) */
    if (fabsf(p->rescale_factor - 1.0f / 255.0f) < 1e-9f)
        cJSON_AddItemToObject(o, "rescale_factor", cJSON_CreateRaw("0.00392156862745098"));
    else
        add_float(o, "rescale_factor", p->rescale_factor);
    cJSON_AddBoolToObject(o, "do_normalize", p->do_normalize);
    add_float3(o, "image_mean", p->image_mean);
    add_float3(o, "image_std", p->image_std);
    cJSON_AddBoolToObject(o, "do_convert_rgb", p->do_convert_rgb);
    return o;
}

static cJSON *processor_json(const ms_llava_config *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "processor_class", "LlavaProcessor");
    cJSON_AddStringToObject(o, "image_token", "<image>");
    cJSON_AddNumberToObject(o, "patch_size", c->vision.patch_size);
    cJSON_AddStringToObject(o, "vision_feature_select_strategy", c->vision_feature_select_strategy);
    /* the CLS token the vision tower adds; "default" drops it again */
    cJSON_AddNumberToObject(o, "num_additional_image_tokens", 1);
    return o;
}

static cJSON *generation_json(const ms_llama_config *t) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "_from_model_config", true);
    add_id(o, "bos_token_id", t->bos_token_id);
    add_id(o, "eos_token_id", t->eos_token_id);
    add_id(o, "pad_token_id", t->pad_token_id);
    return o;
}

static ms_status make_dir(const char *dir, ms_error *err) {
    char path[4096];
    int len = snprintf(path, sizeof path, "%s", dir);
    if (len <= 0 || len >= (int)sizeof path) return ms_errorf(err, MS_ERR_INVALID, "bad output folder '%s'", dir);
    for (char *p = path + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(path, 0755) != 0 && errno != EEXIST)
                return ms_errorf(err, MS_ERR_IO, "cannot create folder %s: %s", path, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return ms_errorf(err, MS_ERR_IO, "%s is not a folder", dir);
    return MS_OK;
}

ms_status ms_model_write_configs(const ms_llava_config *cfg, ms_dtype dtype, const char *dir, ms_error *err) {
    ms_status s;
    if ((s = make_dir(dir, err)) || (s = write_json(dir, "config.json", config_json(cfg, dtype), err)) ||
        (s = write_json(dir, "preprocessor_config.json", preprocessor_json(&cfg->image), err)) ||
        (s = write_json(dir, "processor_config.json", processor_json(cfg), err)) ||
        (s = write_json(dir, "generation_config.json", generation_json(&cfg->text), err)))
        return s;
    return MS_OK;
}

/* ---- weights ---- */

enum { CHUNK = 1 << 20 }; /* elements generated, converted and written at a time */

static uint64_t tensor_bytes(const ms_model_tensor *t, ms_dtype dt) {
    return (uint64_t)ms_model_tensor_numel(t) * ms_dtype_size(dt);
}

static void file_name(const ms_model_tensor *t, bool new_layout, char *out, size_t n) {
    if (!new_layout || !ms_weights_name_to_new(t->name, out, n)) snprintf(out, n, "%s", t->name);
}

/* Tensors [a, b) of ts into one safetensors file. */
static ms_status write_file(const char *path, const ms_model_tensor *ts, int32_t a, int32_t b,
                            const ms_model_init_opts *o, ms_error *err) {
    int32_t n = b - a;
    ms_st_write_entry *es = ms_xcalloc((size_t)n, sizeof *es);
    char (*names)[MS_TENSOR_NAME_MAX] = ms_xcalloc((size_t)n, sizeof *names);
    for (int32_t i = 0; i < n; i++) {
        const ms_model_tensor *t = &ts[a + i];
        file_name(t, o->new_layout, names[i], sizeof names[i]);
        es[i].name = names[i];
        es[i].dtype = o->dtype;
        es[i].ndim = t->ndim;
        memcpy(es[i].shape, t->shape, sizeof t->shape);
    }
    ms_st_writer *w;
    ms_status s = ms_st_writer_open(path, es, n, &w, err);
    free(es);
    free(names);
    if (s) return s;
    float *f32 = ms_xmalloc(CHUNK * sizeof(float));
    uint16_t *half = ms_xmalloc(CHUNK * sizeof(uint16_t));
    for (int32_t i = a; i < b && !s; i++) {
        int64_t numel = ms_model_tensor_numel(&ts[i]);
        for (int64_t first = 0; first < numel && !s; first += CHUNK) {
            int64_t m = numel - first < CHUNK ? numel - first : CHUNK;
            ms_model_tensor_fill(&ts[i], o->seed, first, m, f32);
            if (o->dtype == MS_DTYPE_F32) {
                s = ms_st_writer_append(w, f32, (size_t)m * sizeof(float), err);
            } else {
                ms_convert_host(half, o->dtype, f32, MS_DTYPE_F32, m);
                s = ms_st_writer_append(w, half, (size_t)m * sizeof(uint16_t), err);
            }
        }
    }
    free(f32);
    free(half);
    if (s) {
        ms_st_writer_abort(w);
        return s;
    }
    return ms_st_writer_finish(w, err);
}

static ms_status write_sharded(const char *dir, const ms_model_tensor *ts, int32_t nt, const ms_model_init_opts *o,
                               ms_error *err) {
    uint64_t total = 0;
    for (int32_t i = 0; i < nt; i++) total += tensor_bytes(&ts[i], o->dtype);
    cJSON *index = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(index, "metadata");
    char num[32];
    snprintf(num, sizeof num, "%llu", (unsigned long long)total);
    cJSON_AddItemToObject(meta, "total_size", cJSON_CreateRaw(num));
    cJSON *map = cJSON_AddObjectToObject(index, "weight_map");
    int32_t a = 0;
    uint64_t done = 0;
    ms_status s = MS_OK;
    for (int32_t k = 0; k < o->shards && !s; k++) {
        /* Shard k ends once it reaches its share of the bytes, leaving one tensor at
         * least for each later shard. */
        int32_t b = a + 1;
        done += tensor_bytes(&ts[a], o->dtype);
        uint64_t target = total / (uint64_t)o->shards * (uint64_t)(k + 1);
        while (b < nt - (o->shards - 1 - k) && (done < target || k == o->shards - 1)) {
            done += tensor_bytes(&ts[b], o->dtype);
            b++;
        }
        char file[64], path[4096];
        snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", k + 1, o->shards);
        snprintf(path, sizeof path, "%s/%s", dir, file);
        for (int32_t i = a; i < b; i++) {
            char name[MS_TENSOR_NAME_MAX];
            file_name(&ts[i], o->new_layout, name, sizeof name);
            cJSON_AddStringToObject(map, name, file);
        }
        s = write_file(path, ts, a, b, o, err);
        a = b;
    }
    if (s) {
        cJSON_Delete(index);
        return s;
    }
    MS_CHECK(a == nt);
    return write_json(dir, "model.safetensors.index.json", index, err);
}

ms_status ms_model_init_write(const ms_llava_config *cfg, const ms_model_init_opts *o, const char *dir,
                              ms_error *err) {
    ms_status s = ms_model_write_configs(cfg, o->dtype, dir, err);
    if (s) return s;
    ms_model_tensor *ts;
    int32_t nt = ms_llava_tensor_list(cfg, &ts);
    if (o->shards < 1 || o->shards > nt) {
        free(ts);
        return ms_errorf(err, MS_ERR_INVALID, "--shards %d must be between 1 and %d (the tensor count)", o->shards,
                         nt);
    }
    if (o->shards == 1) {
        char path[4096];
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        s = write_file(path, ts, 0, nt, o, err);
    } else {
        s = write_sharded(dir, ts, nt, o, err);
    }
    free(ts);
    return s;
}
