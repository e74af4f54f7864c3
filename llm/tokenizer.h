/*
 * Hugging Face tokenizer.json in C (owned by the tokenizer work; see its issue).
 * Only the declarations other modules rely on are fixed here; the tokenizer module may
 * add more.
 */
#ifndef MS_LLM_TOKENIZER_H
#define MS_LLM_TOKENIZER_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/ms_common.h"

typedef struct ms_tokenizer ms_tokenizer;

/* Loads DIR/tokenizer.json and DIR/tokenizer_config.json. */
ms_status ms_tokenizer_load(const char *model_dir, ms_tokenizer **out, ms_error *err);
void ms_tokenizer_free(ms_tokenizer *tok);
/* ids: malloc'd array the caller frees. add_special: BOS etc. as the model's post-processor says. */
ms_status ms_tokenizer_encode(const ms_tokenizer *tok, const char *text, size_t len, bool add_special,
                              int32_t **ids, int32_t *n_ids, ms_error *err);
/* text: malloc'd NUL-terminated string. skip_special drops special tokens. */
ms_status ms_tokenizer_decode(const ms_tokenizer *tok, const int32_t *ids, int32_t n_ids,
                              bool skip_special, char **text, ms_error *err);
/* Writes the tiny preset's tokenizer.json + tokenizer_config.json into dir
 * (SentencePiece-style BPE with byte fallback, as Llama-2/LLaVA-1.5: <unk>=0, <s>=1,
 * </s>=2, <0x00>..<0xFF> = 3..258, merged pieces after that, all below 1000; added
 * special tokens <image>=1000 and <pad>=1001). */
ms_status ms_tokenizer_write_tiny(const char *dir, ms_error *err);

#endif
