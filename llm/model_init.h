/*
 * Random-weight LLaVA-1.5 models in the Hugging Face layout: presets, the list of
 * tensors LlavaForConditionalGeneration has, seeded values, and writing a whole model
 * folder (`modserve model init`).
 *
 * Values: tensor t's element i depends only on (seed, t's published name, i), so the
 * same seed gives the same values whatever the file dtype, layout, sharding or chunking,
 * and ms_weights_open_dummy produces exactly what the files hold (before rounding).
 */
#ifndef MS_LLM_MODEL_INIT_H
#define MS_LLM_MODEL_INIT_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/tensor.h"
#include "llm/config.h"

enum { MS_TENSOR_NAME_MAX = 128 };

/* One tensor of the model: published-layout name, shape, and the distribution of its
 * random values (uniform with this mean and standard deviation). */
typedef struct ms_model_tensor {
    char name[MS_TENSOR_NAME_MAX];
    int32_t ndim;
    int64_t shape[MS_MAX_DIMS];
    float mean;
    float std;
} ms_model_tensor;

/* "tiny" or "llava-1.5-7b" (see docs/model-files.md); MS_ERR_NOT_FOUND otherwise. */
ms_status ms_llava_preset(const char *name, ms_llava_config *cfg, ms_error *err);
/* Every tensor of the model for cfg, in module order; *out is malloc'd, count returned. */
int32_t ms_llava_tensor_list(const ms_llava_config *cfg, ms_model_tensor **out);
int64_t ms_model_tensor_numel(const ms_model_tensor *t);
/* out[k] = value of element first + k of tensor t, k < n. */
void ms_model_tensor_fill(const ms_model_tensor *t, uint64_t seed, int64_t first, int64_t n, float *out);

/* Published name -> the name newer transformers writes (language_model.model.X ->
 * model.language_model.X, language_model.lm_head.X -> lm_head.X, vision_tower.X ->
 * model.vision_tower.X, multi_modal_projector.X -> model.multi_modal_projector.X), and
 * back. false when the name is in neither prefix family (out untouched). */
bool ms_weights_name_to_new(const char *published, char *out, size_t n);
bool ms_weights_name_to_published(const char *newer, char *out, size_t n);

typedef struct ms_model_init_opts {
    uint64_t seed;
    ms_dtype dtype;        /* file dtype: F32, BF16 or F16 */
    bool new_layout;       /* tensor names as newer transformers writes them */
    int32_t shards;        /* 1: model.safetensors; N > 1: N shards + index */
} ms_model_init_opts;

/* Writes config.json, preprocessor_config.json, processor_config.json,
 * generation_config.json and the weights into dir (created if missing); the tokenizer
 * files are the caller's (`modserve model init` adds the tiny tokenizer). Streams
 * tensor by tensor: memory use is a few MB whatever the model size. */
ms_status ms_model_init_write(const ms_llava_config *cfg, const ms_model_init_opts *o, const char *dir,
                              ms_error *err);
/* The JSON files alone (config.json etc.), for tests that build odd folders. */
ms_status ms_model_write_configs(const ms_llava_config *cfg, ms_dtype dtype, const char *dir, ms_error *err);

#endif
