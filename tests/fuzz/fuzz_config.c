/*
 * Fuzz target: config.json and preprocessor_config.json text, through
 * ms_llava_config_parse and ms_image_proc_config_parse. The first byte picks the parser
 * (even: config.json, odd: preprocessor_config.json) so one corpus holds both. The text
 * is handed over without a terminating NUL, as a length-bounded buffer, so a parser
 * that reads to a NUL is caught by ASan. On success the values the rest of the server
 * divides by or allocates from must have been validated.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llm/config.h"

static void check_image(const ms_image_proc_config *p) {
    if (p->do_resize && p->shortest_edge <= 0) __builtin_trap();
    if (p->do_center_crop && (p->crop_width <= 0 || p->crop_height <= 0)) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    bool llava = (data[0] & 1) == 0;
    size_t n = size - 1;
    char *text = malloc(n ? n : 1); /* exactly n bytes: no NUL after the text */
    if (n) memcpy(text, data + 1, n);
    ms_error err = {0};
    if (llava) {
        ms_llava_config cfg;
        if (ms_llava_config_parse(text, n, &cfg, &err) == MS_OK) {
            const ms_clip_config *v = &cfg.vision;
            const ms_llama_config *t = &cfg.text;
            if (v->patch_size <= 0 || v->image_size <= 0 || v->num_attention_heads <= 0 ||
                v->hidden_size <= 0 || v->hidden_size % v->num_attention_heads != 0)
                __builtin_trap();
            if (t->num_attention_heads <= 0 || t->num_key_value_heads <= 0 || t->head_dim <= 0 ||
                t->num_attention_heads % t->num_key_value_heads != 0 || t->vocab_size <= 0)
                __builtin_trap();
            if (memchr(v->hidden_act, 0, sizeof v->hidden_act) == NULL ||
                memchr(t->hidden_act, 0, sizeof t->hidden_act) == NULL ||
                memchr(cfg.projector_hidden_act, 0, sizeof cfg.projector_hidden_act) == NULL ||
                memchr(cfg.vision_feature_select_strategy, 0, sizeof cfg.vision_feature_select_strategy) == NULL)
                __builtin_trap();
            check_image(&cfg.image);
            (void)ms_llava_image_tokens(&cfg);
        } else if (err.msg[0] == 0) {
            __builtin_trap();
        }
    } else {
        ms_image_proc_config p;
        if (ms_image_proc_config_parse(text, n, &p, &err) == MS_OK) check_image(&p);
        else if (err.msg[0] == 0) __builtin_trap();
    }
    free(text);
    return 0;
}
