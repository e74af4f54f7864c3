/*
 * CLIP vision tower + LLaVA projector (transformers' CLIPVisionModel and
 * LlavaMultiModalProjector): patch embedding, class token, position embedding,
 * pre-layernorm, encoder layers (pre-norm, quick_gelu MLP), hidden state
 * `vision_feature_layer` selected, CLS dropped ("default") or kept ("full"), then
 * linear -> GELU -> linear into the text model's hidden size.
 */
#ifndef MS_ENCODER_VISION_H
#define MS_ENCODER_VISION_H

#include "encoder/image.h"
#include "kernels/backend.h"
#include "llm/config.h"
#include "llm/weights.h"

typedef struct ms_vision ms_vision; /* weights on one backend, shared by its workers */

ms_status ms_vision_load(const ms_llava_config *cfg, const ms_weights *w, ms_ctx *ctx,
                         ms_vision **out, ms_error *err);
void ms_vision_free(ms_vision *v);

/* Normalises already resized+cropped images on the device: pixels act[N,3,H,W]
 * (scratch on ctx). */
ms_tensor ms_vision_pixels(ms_ctx *ctx, const ms_vision *v, const ms_image_u8 *crops, int32_t n);
/* pixels act[N,3,H,W] -> *embeds = scratch act[N * image_tokens, text_hidden]. */
ms_status ms_vision_encode(ms_ctx *ctx, const ms_vision *v, const ms_tensor *pixels,
                           ms_tensor *embeds, ms_error *err);

/* (encoder additions) Side of the square crop the tower takes (vision image_size). */
int32_t ms_vision_image_size(const ms_vision *v);
/* Rows of *embeds per image (patches, +1 with the "full" strategy). */
int32_t ms_vision_tokens_per_image(const ms_vision *v);
/* Width of *embeds (the text model's hidden size). */
int32_t ms_vision_embed_dim(const ms_vision *v);
/* The preprocessing the model was loaded with (crop size == image size is checked). */
const ms_image_proc_config *ms_vision_image_config(const ms_vision *v);

#endif
