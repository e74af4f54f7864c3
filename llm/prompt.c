/* LLaVA prompt expansion and context-length checks (see prompt.h). */
#include "llm/prompt.h"

int32_t ms_prompt_count_images(const ms_llava_config *cfg, const int32_t *ids, int32_t n) {
    int32_t count = 0;
    for (int32_t i = 0; i < n; i++) count += ids[i] == cfg->image_token_index;
    return count;
}

ms_status ms_prompt_expand(const ms_llava_config *cfg, const int32_t *ids, int32_t n,
                           int32_t n_images, int32_t **out, int32_t *n_out,
                           int32_t *n_images_out, ms_error *err) {
    *out = NULL;
    *n_out = 0;
    if (n <= 0) return ms_errorf(err, MS_ERR_INVALID, "prompt is empty");
    const int32_t image_id = cfg->image_token_index;
    const int32_t per_image = cfg->image_seq_length;
    MS_CHECK(per_image > 0);
    for (int32_t i = 0; i < n; i++) {
        if (ids[i] != image_id && (ids[i] < 0 || ids[i] >= cfg->text.vocab_size))
            return ms_errorf(err, MS_ERR_INVALID,
                             "prompt token id %d at index %d is out of range (vocab_size %d)",
                             ids[i], i, cfg->text.vocab_size);
    }
    const int32_t images = ms_prompt_count_images(cfg, ids, n);
    if (n_images >= 0 && images != n_images)
        return ms_errorf(err, MS_ERR_INVALID,
                         "prompt has %d image token%s (id %d) but %d image%s given", images,
                         images == 1 ? "" : "s", image_id, n_images, n_images == 1 ? "" : "s");
    const int64_t total = (int64_t)n - images + (int64_t)images * per_image;
    if (total > cfg->text.max_position_embeddings)
        return ms_errorf(err, MS_ERR_LIMIT,
                         "prompt is %lld tokens (%d text + %d image%s x %d) but the context is %d "
                         "(max_position_embeddings)",
                         (long long)total, n - images, images, images == 1 ? "" : "s", per_image,
                         cfg->text.max_position_embeddings);
    int32_t *ex = ms_xmalloc((size_t)total * sizeof *ex);
    int64_t k = 0;
    for (int32_t i = 0; i < n; i++) {
        if (ids[i] == image_id)
            for (int32_t j = 0; j < per_image; j++) ex[k++] = image_id;
        else
            ex[k++] = ids[i];
    }
    MS_CHECK(k == total);
    *out = ex;
    *n_out = (int32_t)total;
    if (n_images_out) *n_images_out = images;
    return MS_OK;
}

ms_status ms_prompt_check_context(const ms_llava_config *cfg, int32_t n_prompt,
                                  int32_t max_new_tokens, ms_error *err) {
    const int64_t need = (int64_t)n_prompt + max_new_tokens;
    if (need > cfg->text.max_position_embeddings)
        return ms_errorf(err, MS_ERR_LIMIT,
                         "prompt (%d tokens) + max_tokens (%d) = %lld exceeds the context of %d "
                         "tokens (max_position_embeddings)",
                         n_prompt, max_new_tokens, (long long)need,
                         cfg->text.max_position_embeddings);
    return MS_OK;
}
