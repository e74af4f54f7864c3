/*
 * The end-of-sequence id list of a model folder (llm/config_eos.c): `eos_token_id` may
 * be one id or a list, in config.json (text_config or top level) and in
 * generation_config.json; every id of the list ends generation (vLLM, transformers).
 */
#ifndef MS_LLM_CONFIG_EOS_H
#define MS_LLM_CONFIG_EOS_H

#include "llm/config.h"

struct cJSON;

/* Reads obj's "eos_token_id" (absent: unchanged; null or []: no ids; an id or a list of
 * ids) into t->eos_token_ids, and t->eos_token_id = the first (-1 when none). */
ms_status ms_config_eos_read(const struct cJSON *obj, const char *prefix, ms_llama_config *t,
                             ms_error *err);
/* DIR/generation_config.json's eos_token_id, when the file has one, replaces the list
 * (transformers' generate and vLLM use the generation config's ids over config.json's).
 * A missing file leaves the list. Ids must lie in the vocabulary. */
ms_status ms_config_eos_load_generation(const char *model_dir, ms_llama_config *t, ms_error *err);

#endif
