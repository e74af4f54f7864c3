/*
 * The known chat formats rendered in C. Each renderer follows its model's Jinja source
 * (quoted in the comments) statement by statement, so the output is byte-identical to
 * transformers' apply_chat_template for the same messages.
 */
#include "llm/chat_template.h"

#include <string.h>

#include "llm/tokenizer.h"

/* llava-hf/llava-1.5-7b-hf chat_template (the Jinja string literal '<image>\n' holds a newline). */
static const char k_llava15_source[] =
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
    "{% endif %}{# Render all images first #}{% for content in message['content'] | selectattr('type', "
    "'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != "
    "'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ "
    "content['text'] + ' '}}{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', "
    "'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif "
    "%}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}";

const char *ms_chat_template_llava15_source(void) { return k_llava15_source; }

static const struct {
    const char *name;
    ms_chat_format format;
} k_formats[] = {
    {"llava-1.5", MS_CHAT_FORMAT_LLAVA15},
    {"llama-2", MS_CHAT_FORMAT_LLAMA2},
    {"chatml", MS_CHAT_FORMAT_CHATML},
    {"qwen2", MS_CHAT_FORMAT_QWEN2},
};
enum { N_FORMATS = sizeof k_formats / sizeof k_formats[0] };

ms_status ms_chat_format_by_name(const char *name, ms_chat_format *out, ms_error *err) {
    for (int i = 0; i < N_FORMATS; i++)
        if (!strcmp(name, k_formats[i].name)) {
            *out = k_formats[i].format;
            return MS_OK;
        }
    return ms_errorf(err, MS_ERR_NOT_FOUND, "unknown chat template '%s' (known: llava-1.5, llama-2, chatml, qwen2)",
                     name);
}

const char *ms_chat_format_name(ms_chat_format f) {
    for (int i = 0; i < N_FORMATS; i++)
        if (k_formats[i].format == f) return k_formats[i].name;
    MS_CHECKF(0, "bad chat format %d", (int)f);
    return NULL; /* not reached: MS_CHECKF aborts */
}

const char *ms_chat_format_image_marker(ms_chat_format f) {
    return f == MS_CHAT_FORMAT_QWEN2 ? "<|vision_start|><|image_pad|><|vision_end|>" : "<image>";
}

static bool has(const char *s, const char *frag) { return strstr(s, frag) != NULL; }

/* Exact sources differ in whitespace and escapes between uploads, so each format is
 * recognised by the statements that decide its output. */
ms_status ms_chat_format_match(const char *src, ms_chat_format *out, ms_error *err) {
    if (!src)
        return ms_errorf(err, MS_ERR_UNSUPPORTED,
                         "the model folder has no chat_template; name one with --chat-template "
                         "(llava-1.5, llama-2, chatml, qwen2)");
    if (!strcmp(src, k_llava15_source) ||
        (has(src, "message['role'].upper() + ': '") && has(src, "'ASSISTANT:'") && has(src, "<image>") &&
         has(src, "content['text'] + ' '"))) {
        *out = MS_CHAT_FORMAT_LLAVA15;
        return MS_OK;
    }
    if (has(src, "'[INST] ' + content.strip() + ' [/INST]'") && has(src, "<<SYS>>")) {
        *out = MS_CHAT_FORMAT_LLAMA2;
        return MS_OK;
    }
    if (has(src, "<|im_start|>") && has(src, "<|im_end|>")) {
        bool qwen = has(src, "You are a helpful assistant.") && !has(src, "enable_thinking") && !has(src, "tools");
        if (qwen || !has(src, "tools")) {
            *out = qwen ? MS_CHAT_FORMAT_QWEN2 : MS_CHAT_FORMAT_CHATML;
            return MS_OK;
        }
    }
    return ms_errorf(err, MS_ERR_UNSUPPORTED,
                     "the model's chat_template is not one modserve knows; name a format with "
                     "--chat-template (llava-1.5, llama-2, chatml, qwen2)");
}

/* ---- a growing string ---- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_addn(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = ms_xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_add(sbuf *b, const char *s) { sb_addn(b, s, strlen(s)); }

/* Python's str.isspace() (what Jinja's .strip() strips): ASCII whitespace, U+001C..U+001F,
 * U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000. */
static bool is_py_space_cp(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* The code point of the UTF-8 sequence at s (len bytes; ill-formed: 0xFFFFFFFF). */
static uint32_t utf8_cp(const unsigned char *s, size_t len) {
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0xFFFFFFFF;
    if (len == 1 && s[0] < 0x80) return s[0];
    if (len == 2 && (s[0] & 0xE0) == 0xC0) return (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F);
    if (len == 3 && (s[0] & 0xF0) == 0xE0) return (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
    return 0xFFFFFFFF; /* 4-byte sequences hold no whitespace */
}

static size_t utf8_seq_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

/* Python's str.strip() (Unicode whitespace, as Jinja's .strip() in Llama-2's template),
 * appended to b. */
static void sb_add_stripped(sbuf *b, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t start = 0, end = n;
    while (start < end) {
        size_t l = utf8_seq_len(u[start]);
        if (start + l > end || !is_py_space_cp(utf8_cp(u + start, l))) break;
        start += l;
    }
    while (end > start) {
        size_t k = end - 1; /* back to the lead byte of the last character */
        while (k > start && (u[k] & 0xC0) == 0x80 && end - k < 4) k--;
        if (!is_py_space_cp(utf8_cp(u + k, end - k))) break;
        end = k;
    }
    sb_addn(b, s + start, end - start);
}

/* A message's parts as one string: text as is, each image as the format's marker
 * (formats that take string content place images where the parts are). */
static void sb_add_content(sbuf *b, const ms_chat_message *m, const char *marker) {
    for (int i = 0; i < m->n_parts; i++) sb_add(b, m->parts[i].kind == MS_CHAT_PART_IMAGE ? marker : m->parts[i].text);
}

static ms_status check_roles(const ms_chat_message *msgs, int n, ms_error *err) {
    for (int i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r || (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant")))
            return ms_errorf(err, MS_ERR_INVALID, "message %d: role '%s' is not system, user or assistant", i,
                             r ? r : "(none)");
        for (int k = 0; k < msgs[i].n_parts; k++)
            if (msgs[i].parts[k].kind == MS_CHAT_PART_TEXT && !msgs[i].parts[k].text)
                return ms_errorf(err, MS_ERR_INVALID, "message %d part %d: text part without text", i, k);
    }
    return MS_OK;
}

/* llava-1.5: ROLE + ': ' (not for system), every image as '<image>\n' first, then each
 * text + ' '; the generation prompt is 'ASSISTANT:'. */
static void render_llava15(sbuf *b, const ms_chat_message *msgs, int n, bool gen) {
    for (int i = 0; i < n; i++) {
        const ms_chat_message *m = &msgs[i];
        if (strcmp(m->role, "system")) {
            for (const char *c = m->role; *c; c++) {
                char up = (*c >= 'a' && *c <= 'z') ? (char)(*c - 32) : *c;
                sb_addn(b, &up, 1);
            }
            sb_add(b, ": ");
        }
        for (int k = 0; k < m->n_parts; k++)
            if (m->parts[k].kind == MS_CHAT_PART_IMAGE) sb_add(b, "<image>\n");
        for (int k = 0; k < m->n_parts; k++)
            if (m->parts[k].kind == MS_CHAT_PART_TEXT) {
                sb_add(b, m->parts[k].text);
                sb_add(b, " ");
            }
    }
    if (gen) sb_add(b, "ASSISTANT:");
}

/* Llama-2 chat: an optional leading system message folds into the first user turn as
 * '<<SYS>>\n' + system + '\n<</SYS>>\n\n'; roles must alternate user/assistant; user
 * turns are bos + '[INST] ' + strip(content) + ' [/INST]', assistant turns
 * ' ' + strip(content) + ' ' + eos. add_generation_prompt changes nothing. */
static ms_status render_llama2(sbuf *b, const ms_chat_message *msgs, int n, const char *bos, const char *eos,
                               ms_error *err) {
    int first = 0;
    sbuf sys = {0};
    if (n > 0 && !strcmp(msgs[0].role, "system")) {
        sb_add_content(&sys, &msgs[0], "<image>");
        first = 1;
    }
    ms_status st = MS_OK;
    for (int i = first; i < n && st == MS_OK; i++) {
        const ms_chat_message *m = &msgs[i];
        bool user = !strcmp(m->role, "user");
        if (user != ((i - first) % 2 == 0)) {
            st = ms_errorf(err, MS_ERR_INVALID, "Conversation roles must alternate user/assistant/user/assistant/... "
                                                "(message %d is '%s')", i, m->role);
            break;
        }
        sbuf content = {0};
        if (i == first && sys.p) {
            sb_add(&content, "<<SYS>>\n");
            sb_add(&content, sys.p);
            sb_add(&content, "\n<</SYS>>\n\n");
        }
        sb_add_content(&content, m, "<image>");
        sb_add(&content, ""); /* never NULL below */
        if (user) {
            sb_add(b, bos);
            sb_add(b, "[INST] ");
            sb_add_stripped(b, content.p, content.n);
            sb_add(b, " [/INST]");
        } else if (!strcmp(m->role, "assistant")) {
            sb_add(b, " ");
            sb_add_stripped(b, content.p, content.n);
            sb_add(b, " ");
            sb_add(b, eos);
        }
        free(content.p);
    }
    free(sys.p);
    return st;
}

/* ChatML: '<|im_start|>' + role + '\n' + content + '<|im_end|>\n' per message, the
 * generation prompt '<|im_start|>assistant\n'. Qwen2(-VL) adds a default system
 * message when the first is not one, and writes images as vision markers in place. */
static void render_chatml(sbuf *b, const ms_chat_message *msgs, int n, bool gen, bool qwen) {
    for (int i = 0; i < n; i++) {
        if (qwen && i == 0 && strcmp(msgs[0].role, "system"))
            sb_add(b, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n");
        sb_add(b, "<|im_start|>");
        sb_add(b, msgs[i].role);
        sb_add(b, "\n");
        sb_add_content(b, &msgs[i], ms_chat_format_image_marker(qwen ? MS_CHAT_FORMAT_QWEN2 : MS_CHAT_FORMAT_CHATML));
        sb_add(b, "<|im_end|>\n");
    }
    if (gen) sb_add(b, "<|im_start|>assistant\n");
}

ms_status ms_chat_render(ms_chat_format f, const ms_chat_message *msgs, int n_msgs, bool add_generation_prompt,
                         const char *bos, const char *eos, char **out, ms_error *err) {
    *out = NULL;
    ms_status st = check_roles(msgs, n_msgs, err);
    if (st != MS_OK) return st;
    sbuf b = {0};
    sb_add(&b, "");
    switch (f) {
    case MS_CHAT_FORMAT_LLAVA15: render_llava15(&b, msgs, n_msgs, add_generation_prompt); break;
    case MS_CHAT_FORMAT_LLAMA2: st = render_llama2(&b, msgs, n_msgs, bos ? bos : "", eos ? eos : "", err); break;
    case MS_CHAT_FORMAT_CHATML: render_chatml(&b, msgs, n_msgs, add_generation_prompt, false); break;
    case MS_CHAT_FORMAT_QWEN2: render_chatml(&b, msgs, n_msgs, add_generation_prompt, true); break;
    }
    if (st != MS_OK) {
        free(b.p);
        return st;
    }
    *out = b.p;
    return MS_OK;
}

ms_status ms_chat_format_for(const ms_tokenizer *tok, const char *name, ms_chat_format *out, ms_error *err) {
    if (name) return ms_chat_format_by_name(name, out, err);
    return ms_chat_format_match(ms_tokenizer_chat_template(tok), out, err);
}

ms_status ms_chat_tokenize(const ms_tokenizer *tok, ms_chat_format f, const ms_chat_message *msgs, int n_msgs,
                           bool add_generation_prompt, int32_t **ids, int32_t *n_ids, ms_error *err) {
    *ids = NULL;
    *n_ids = 0;
    char *text;
    ms_status st = ms_chat_render(f, msgs, n_msgs, add_generation_prompt, ms_tokenizer_bos_token(tok),
                                  ms_tokenizer_eos_token(tok), &text, err);
    if (st != MS_OK) return st;
    /* transformers' ProcessorMixin.apply_chat_template: no special tokens when the
     * rendered text already starts with bos_token (llama-2 writes "<s>" itself). */
    const char *bos = ms_tokenizer_bos_token(tok);
    const bool add_special = !(bos && bos[0] && !strncmp(text, bos, strlen(bos)));
    st = ms_tokenizer_encode(tok, text, strlen(text), add_special, ids, n_ids, err);
    free(text);
    return st;
}
