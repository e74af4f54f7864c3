/*
 * The Llama decoder of LLaVA (transformers' LlamaModel + lm_head): embeddings with
 * image features spliced in at image-token positions, RMSNorm, attention with
 * rotate-half RoPE and grouped-query heads over the paged KV cache, SwiGLU MLP,
 * final norm, LM head. One forward call runs a batch of sequence chunks: whole
 * prompts (prefill), prompt chunks (chunked prefill) and single tokens (decode) mix.
 */
#ifndef MS_LLM_LLAMA_H
#define MS_LLM_LLAMA_H

#include "kernels/backend.h"
#include "llm/config.h"
#include "llm/kv_cache.h"
#include "llm/weights.h"

typedef struct ms_llama ms_llama; /* weights on one backend, shared by its workers */

ms_status ms_llama_load(const ms_llava_config *cfg, const ms_weights *w, ms_ctx *ctx,
                        ms_llama **out, ms_error *err);
void ms_llama_free(ms_llama *m);
const ms_llama_config *ms_llama_config_of(const ms_llama *m);

typedef struct ms_llama_seq {
    const int32_t *tokens;          /* (n_tokens) ids of this chunk, expanded prompt */
    int32_t n_tokens;
    int32_t pos0;                   /* position of tokens[0]; [0, pos0) already cached */
    const ms_tensor *image_embeds;  /* [n_image_rows, hidden] act, or NULL; row r feeds
                                       the r-th image token counted from the prompt start.
                                       NULL: image token ids embed as text (transformers
                                       without pixel_values; e.g. a generated one) */
    int32_t image_row0;             /* image tokens in positions [0, pos0) */
    const int32_t *block_table;     /* (n_blocks) covering positions [0, pos0 + n_tokens) */
    int32_t n_blocks;
} ms_llama_seq;

/* Writes the chunks' K/V into the cache and the logits of each sequence's last token
 * into *logits = scratch f32[nseq, vocab] on ctx (valid until ms_ctx_reset).
 * Errors: an image token with no embedding row left, a position past
 * max_position_embeddings, a token id out of range. */
ms_status ms_llama_forward(ms_ctx *ctx, const ms_llama *m, ms_kv_cache *kv,
                           const ms_llama_seq *seqs, int32_t nseq, ms_tensor *logits,
                           ms_error *err);

#endif
