/*
 * Chat templates without a Jinja engine: the formats modserve knows (LLaVA-1.5,
 * Llama-2 chat, ChatML and Qwen2's ChatML with its default system prompt and vision
 * markers) are rendered in C, exactly as transformers' apply_chat_template renders the
 * models' own Jinja sources. A model folder's chat_template is matched against the
 * known sources; an unknown one is an error unless the caller names a format.
 *
 * Input is plain structs (the server converts OpenAI JSON into them): messages, each a
 * role and an array of parts (text or image). Output is the prompt text, with the
 * template's image marker ("<image>" for LLaVA) where the template places each image.
 */
#ifndef MS_LLM_CHAT_TEMPLATE_H
#define MS_LLM_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/ms_common.h"

typedef enum ms_chat_format {
    MS_CHAT_FORMAT_LLAVA15, /* "llava-1.5": USER: <image>\n... ASSISTANT: */
    MS_CHAT_FORMAT_LLAMA2,  /* "llama-2": <s>[INST] <<SYS>>...<</SYS>> ... [/INST] */
    MS_CHAT_FORMAT_CHATML,  /* "chatml": <|im_start|>role\n...<|im_end|>\n */
    MS_CHAT_FORMAT_QWEN2,   /* "qwen2": ChatML + default system prompt, vision markers */
} ms_chat_format;

typedef enum ms_chat_part_kind {
    MS_CHAT_PART_TEXT,
    MS_CHAT_PART_IMAGE,
} ms_chat_part_kind;

typedef struct ms_chat_part {
    ms_chat_part_kind kind;
    const char *text; /* MS_CHAT_PART_TEXT: UTF-8, NUL-terminated; unused for images */
} ms_chat_part;

typedef struct ms_chat_message {
    const char *role; /* "system", "user" or "assistant" */
    const ms_chat_part *parts; /* (n_parts) */
    int n_parts;
} ms_chat_message;

/* Format by name ("llava-1.5", "llama-2", "chatml", "qwen2"); MS_ERR_NOT_FOUND lists them. */
ms_status ms_chat_format_by_name(const char *name, ms_chat_format *out, ms_error *err);
const char *ms_chat_format_name(ms_chat_format f);
/* Matches a Jinja chat_template source against the known ones. source NULL or unknown:
 * MS_ERR_UNSUPPORTED (the message says to pass a name). */
ms_status ms_chat_format_match(const char *source, ms_chat_format *out, ms_error *err);
/* The text one image becomes in the prompt for this format (e.g. "<image>"). */
const char *ms_chat_format_image_marker(ms_chat_format f);

/* Renders messages to prompt text (malloc'd, caller frees). bos/eos: the tokenizer's
 * bos_token/eos_token strings (Llama-2 chat writes them into the text). Invalid input
 * (unknown role, roles out of order where the template raises) is MS_ERR_INVALID. */
ms_status ms_chat_render(ms_chat_format f, const ms_chat_message *msgs, int n_msgs, bool add_generation_prompt,
                         const char *bos, const char *eos, char **out, ms_error *err);

/* The format for a model: by name when name is non-NULL (--chat-template), else by
 * matching the folder's tokenizer_config.json chat_template. */
struct ms_tokenizer;
ms_status ms_chat_format_for(const struct ms_tokenizer *tok, const char *name, ms_chat_format *out, ms_error *err);

/* Renders and tokenizes in one step, as the server does for a chat request: the
 * post-processor's special tokens (BOS) are added unless the rendered text already
 * starts with bos_token (llama-2 writes "<s>" itself), the rule of transformers'
 * ProcessorMixin.apply_chat_template(tokenize=True). Each image becomes the image
 * token (ms_tokenizer_image_id) at its place. ids: malloc'd. */
ms_status ms_chat_tokenize(const struct ms_tokenizer *tok, ms_chat_format f, const ms_chat_message *msgs, int n_msgs,
                           bool add_generation_prompt, int32_t **ids, int32_t *n_ids, ms_error *err);

/* The Jinja source of llava-hf/llava-1.5-7b-hf's chat template (the tiny preset writes it). */
const char *ms_chat_template_llava15_source(void);

#endif
