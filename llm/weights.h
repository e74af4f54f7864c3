/*
 * Safetensors files (mmapped; header validated) and a model folder's tensor set
 * (model.safetensors, or shards listed by model.safetensors.index.json).
 *
 * Names: callers ask for the layout published LLaVA checkpoints use
 * ("language_model.model.layers.0.self_attn.q_proj.weight",
 *  "language_model.lm_head.weight", "vision_tower.vision_model...",
 *  "multi_modal_projector.linear_1.weight"); ms_weights_find also accepts the layout
 * newer transformers writes ("model.language_model.layers...", "lm_head.weight",
 * "model.vision_tower...", "model.multi_modal_projector...").
 */
#ifndef MS_LLM_WEIGHTS_H
#define MS_LLM_WEIGHTS_H

#include "kernels/backend.h"

typedef struct ms_st_tensor {
    char *name;
    ms_dtype dtype;            /* F32, BF16 or F16 */
    int32_t ndim;
    int64_t shape[MS_MAX_DIMS];
    const uint8_t *data;       /* inside the mapping */
    size_t nbytes;
} ms_st_tensor;

typedef struct ms_safetensors {
    char *path;
    uint8_t *map;              /* whole file */
    size_t map_size;
    ms_st_tensor *tensors;
    int32_t n_tensors;
} ms_safetensors;

/* Validates: 8-byte header length inside the file, JSON object, every entry has a
 * supported dtype, shape and data_offsets with begin <= end inside the data area,
 * byte size = numel * dtype size, no two tensors overlap. */
ms_status ms_safetensors_parse(const uint8_t *buf, size_t size, ms_safetensors *out, ms_error *err);
ms_status ms_safetensors_open(const char *path, ms_safetensors **out, ms_error *err);
void ms_safetensors_close(ms_safetensors *st);

typedef struct ms_weights ms_weights;
ms_status ms_weights_open(const char *model_dir, ms_weights **out, ms_error *err);
void ms_weights_close(ms_weights *w);
/* Finds a tensor by its published-layout name (either layout present in the files). */
const ms_st_tensor *ms_weights_find(const ms_weights *w, const char *name);
/* Loads a tensor into fresh backend memory in the backend's act dtype (converting from
 * the file's dtype), checking the shape. A missing or misshapen tensor is an error that
 * names it and both shapes. */
ms_status ms_weights_load(const ms_weights *w, ms_ctx *ctx, const char *name, int ndim,
                          const int64_t *shape, ms_tensor *out, ms_error *err);

/* Writing (model init, tests): one file with these tensors, data from host memory. */
typedef struct ms_st_write_entry {
    const char *name;
    ms_dtype dtype;
    int32_t ndim;
    int64_t shape[MS_MAX_DIMS];
    const void *data;          /* numel * dtype size bytes */
} ms_st_write_entry;
ms_status ms_safetensors_write(const char *path, const ms_st_write_entry *entries, int32_t n,
                               ms_error *err);

/* ---- additions (model files work) ---- */

/* Frees what ms_safetensors_parse allocated in *st (names, tensor list), not the buffer. */
void ms_safetensors_clear(ms_safetensors *st);
/* Exact-name lookup in one file (tensors are kept sorted by name); NULL if absent. */
const ms_st_tensor *ms_safetensors_find(const ms_safetensors *st, const char *name);

/* Streaming writer, so a 14 GB checkpoint never sits in RAM: open writes the header
 * for all entries (their data pointers are ignored), append takes each entry's bytes
 * in entry order, in as many pieces as convenient; finish checks that every byte came
 * and closes (removing the file on any error). abort closes and removes the file. */
typedef struct ms_st_writer ms_st_writer;
ms_status ms_st_writer_open(const char *path, const ms_st_write_entry *entries, int32_t n,
                            ms_st_writer **out, ms_error *err);
ms_status ms_st_writer_append(ms_st_writer *w, const void *data, size_t nbytes, ms_error *err);
ms_status ms_st_writer_finish(ms_st_writer *w, ms_error *err);
void ms_st_writer_abort(ms_st_writer *w);

/* A tensor set with no files, for full-size benchmarks: ms_weights_find knows every
 * tensor of the model (data NULL, dtype F32), ms_weights_load fills backend memory
 * with the same seeded values `modserve model init --seed` writes (before rounding to
 * the file dtype), generated on the host in chunks, so no host copy of the model. */
struct ms_llava_config;
ms_status ms_weights_open_dummy(const struct ms_llava_config *cfg, uint64_t seed, ms_weights **out,
                                ms_error *err);
/* Number of tensors and the i-th one (sorted by name), for listing and tests. */
int32_t ms_weights_count(const ms_weights *w);
const ms_st_tensor *ms_weights_at(const ms_weights *w, int32_t i);

#endif
