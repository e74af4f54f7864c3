/*
 * Chat prompt: messages -> the model's chat template (llm/chat_template.h renders the
 * known formats in C; "<image>" markers where the template puts each image) -> token
 * ids. BOS is added by the tokenizer unless the template already wrote it (as
 * `processor(text=apply_chat_template(...))` does for LLaVA in transformers, and as
 * `modserve run --prompt` does), so a chat request and `modserve run` on the same
 * rendered text see the same ids.
 */
#include <string.h>

#include "server/http_server.h"

/* Checks every id (in the vocabulary, or the image token) and the image count. */
bool ms_api_check_ids(ms_http_server *s, const int32_t *ids, int32_t n, int32_t n_images, const char *param,
                      ms_api_error *e);

bool ms_api_check_ids(ms_http_server *s, const int32_t *ids, int32_t n, int32_t n_images, const char *param,
                      ms_api_error *e) {
    const int32_t vocab = s->mcfg->text.vocab_size, image = s->mcfg->image_token_index;
    int32_t seen = 0;
    for (int32_t i = 0; i < n; i++) {
        if (ids[i] == image) seen++;
        else if (ids[i] < 0 || ids[i] >= vocab)
            return ms_api_fail(e, 400, param, "invalid_token_id", "token id %d is out of range [0, %d)", ids[i],
                               vocab);
    }
    if (seen != n_images)
        return ms_api_fail(e, 400, param, "image_count_mismatch",
                           "the prompt has %d image placeholders but %d images were given", seen, n_images);
    return true;
}

bool ms_api_chat_prompt(ms_http_server *s, const ms_api_request *r, int32_t **ids, int32_t *n, ms_api_error *e) {
    *ids = NULL;
    *n = 0;
    if (!s->has_chat_format)
        return ms_api_fail(e, 400, "messages", "no_chat_template",
                           "the model has no known chat template (start the server with --chat-template, or use "
                           "/v1/completions)");
    ms_chat_message *msgs = ms_xcalloc((size_t)r->n_messages, sizeof *msgs);
    int32_t total_parts = 0;
    for (int32_t i = 0; i < r->n_messages; i++) total_parts += r->messages[i].n_parts;
    ms_chat_part *parts = ms_xcalloc((size_t)total_parts + 1, sizeof *parts);
    int32_t k = 0;
    for (int32_t i = 0; i < r->n_messages; i++) {
        const ms_api_message *m = &r->messages[i];
        msgs[i] = (ms_chat_message){.role = m->role, .parts = parts + k, .n_parts = m->n_parts};
        for (int32_t j = 0; j < m->n_parts; j++, k++) {
            parts[k].kind = m->parts[j].is_image ? MS_CHAT_PART_IMAGE : MS_CHAT_PART_TEXT;
            parts[k].text = m->parts[j].is_image ? NULL : m->parts[j].text;
        }
    }
    char *text = NULL;
    ms_error err = {0};
    const ms_status st = ms_chat_render(s->chat_format, msgs, r->n_messages, true, ms_tokenizer_bos_token(s->tok),
                                        ms_tokenizer_eos_token(s->tok), &text, &err);
    free(parts);
    free(msgs);
    if (st != MS_OK)
        return ms_api_fail(e, 400, "messages", "invalid_messages", "messages do not fit the chat template: %s",
                           err.msg);
    const char *bos = ms_tokenizer_bos_token(s->tok);
    const bool add_bos = !(bos && bos[0] && !strncmp(text, bos, strlen(bos)));
    const ms_status te = ms_tokenizer_encode(s->tok, text, strlen(text), add_bos, ids, n, &err);
    free(text);
    if (te != MS_OK) return ms_api_fail(e, 400, "messages", "tokenization_failed", "the prompt could not be tokenized");
    if (!ms_api_check_ids(s, *ids, *n, r->n_images, "messages", e)) {
        free(*ids);
        *ids = NULL;
        return false;
    }
    return true;
}
