/*
 * LLaVA prompt expansion: a prompt names each image with one image token
 * (cfg->image_token_index); the model sees image_seq_length copies of it, whose
 * embeddings the vision tower's features replace in order (as transformers'
 * LlavaProcessor expands "<image>" before LlavaForConditionalGeneration runs).
 */
#ifndef MS_LLM_PROMPT_H
#define MS_LLM_PROMPT_H

#include <stdint.h>

#include "kernels/ms_common.h"
#include "llm/config.h"

/* Image tokens in ids (unexpanded prompt: one per image). */
int32_t ms_prompt_count_images(const ms_llava_config *cfg, const int32_t *ids, int32_t n);

/* Validates ids (non-empty; every id in [0, vocab) or the image token), checks that the
 * prompt names exactly n_images images (n_images < 0: any number), and writes the
 * expanded prompt into *out (malloc'd, caller frees). The expanded length must fit in
 * max_position_embeddings. *n_images_out (may be NULL) gets the image count. */
ms_status ms_prompt_expand(const ms_llava_config *cfg, const int32_t *ids, int32_t n,
                           int32_t n_images, int32_t **out, int32_t *n_out,
                           int32_t *n_images_out, ms_error *err);

/* n_prompt (expanded) + max_new_tokens must fit in max_position_embeddings. */
ms_status ms_prompt_check_context(const ms_llava_config *cfg, int32_t n_prompt,
                                  int32_t max_new_tokens, ms_error *err);

#endif
