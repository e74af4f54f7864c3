/*
 * The engine's end-of-sequence set: the ids that finish a request (unless ignore_eos)
 * and that min_tokens holds back. As vLLM: every eos id of the generation config
 * (config.json's eos_token_id, one id or a list, or generation_config.json's, see
 * llm/config_eos.h) and the tokenizer's eos_token (tokenizer_config.json); and, since a
 * chat reply ends with its turn, the end-of-turn token of the folder's chat format
 * (ChatML and Qwen2: <|im_end|>; the LLaVA and Llama-2 formats end with eos itself).
 */
#include <string.h>
#include <sys/stat.h>

#include "llm/chat_template.h"
#include "llm/tokenizer.h"
#include "scheduler/engine_internal.h"

static void add_id(ms_engine *e, int32_t id) {
    if (id < 0) return;
    for (int32_t i = 0; i < e->n_eos_ids; i++)
        if (e->eos_ids[i] == id) return;
    e->eos_ids = ms_xrealloc(e->eos_ids, (size_t)(e->n_eos_ids + 1) * sizeof *e->eos_ids);
    e->eos_ids[e->n_eos_ids++] = id;
}

/* The id of a special token written as text ("<|im_end|>"), -1 when the tokenizer has
 * no such single special token. */
static int32_t special_id(const ms_tokenizer *tok, const char *text) {
    int32_t *ids = NULL, n = 0, id = -1;
    ms_error err = {0};
    if (ms_tokenizer_encode(tok, text, strlen(text), false, &ids, &n, &err) == MS_OK && n == 1 &&
        ms_tokenizer_is_special(tok, ids[0]))
        id = ids[0];
    free(ids);
    return id;
}

ms_status eng_eos_ids_build(ms_engine *e, ms_error *err) {
    const ms_llama_config *t = &e->cfg.text;
    for (int32_t i = 0; i < t->n_eos_token_ids; i++) add_id(e, t->eos_token_ids[i]);
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", e->model_dir);
    struct stat st;
    if (stat(path, &st) != 0) return MS_OK; /* ids only: no tokenizer, no end token */
    ms_tokenizer *tok = NULL;
    if (ms_tokenizer_load(e->model_dir, &tok, err) != MS_OK)
        return ms_error_wrap(err, "engine: loading the tokenizer for its end-of-sequence token");
    add_id(e, ms_tokenizer_eos_id(tok));
    ms_chat_format f;
    ms_error ferr = {0}; /* a folder without a known template has no end-of-turn token */
    if (ms_chat_format_for(tok, NULL, &f, &ferr) == MS_OK &&
        (f == MS_CHAT_FORMAT_CHATML || f == MS_CHAT_FORMAT_QWEN2))
        add_id(e, special_id(tok, "<|im_end|>"));
    ms_tokenizer_free(tok);
    return MS_OK;
}

const int32_t *ms_engine_eos_ids(const ms_engine *e, int32_t *n) {
    *n = e->n_eos_ids;
    return e->eos_ids;
}
