/*
 * Completions prompt: a string (tokenized with BOS added, as vLLM's /v1/completions and
 * `modserve run --prompt` do) or a list of token ids used as given. No images here: an
 * image token in the ids has no image to stand for and is refused.
 */
#include <string.h>

#include "server/http_server.h"

bool ms_api_check_ids(ms_http_server *s, const int32_t *ids, int32_t n, int32_t n_images, const char *param,
                      ms_api_error *e);

bool ms_api_completions_prompt(ms_http_server *s, const ms_api_request *r, int32_t **ids, int32_t *n,
                               ms_api_error *e) {
    *ids = NULL;
    *n = 0;
    if (r->has_prompt_ids) {
        *ids = ms_xmalloc((size_t)r->n_prompt_ids * sizeof **ids);
        memcpy(*ids, r->prompt_ids, (size_t)r->n_prompt_ids * sizeof **ids);
        *n = r->n_prompt_ids;
    } else {
        ms_error err = {0};
        if (ms_tokenizer_encode(s->tok, r->prompt_text, strlen(r->prompt_text), true, ids, n, &err) != MS_OK)
            return ms_api_fail(e, 400, "prompt", "tokenization_failed", "the prompt could not be tokenized");
    }
    if (!ms_api_check_ids(s, *ids, *n, 0, "prompt", e)) {
        free(*ids);
        *ids = NULL;
        return false;
    }
    return true;
}
