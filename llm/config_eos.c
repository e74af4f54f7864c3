/* eos_token_id lists: config.json and generation_config.json (see config_eos.h). */
#include "llm/config_eos.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool as_token_id(const cJSON *v, int32_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!isfinite(d) || d != floor(d) || d < 0 || d > 2147483647.0) return false;
    *out = (int32_t)d;
    return true;
}

ms_status ms_config_eos_read(const cJSON *obj, const char *prefix, ms_llama_config *t, ms_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "eos_token_id");
    if (!v) return MS_OK;
    int32_t ids[MS_MAX_EOS_IDS], n = 0;
    if (cJSON_IsNumber(v)) {
        if (!as_token_id(v, &ids[n++]))
            return ms_errorf(err, MS_ERR_INVALID, "%seos_token_id must be a token id or a list of them, got %g",
                             prefix, v->valuedouble);
    } else if (cJSON_IsArray(v)) {
        for (const cJSON *e = v->child; e; e = e->next) {
            if (n == MS_MAX_EOS_IDS)
                return ms_errorf(err, MS_ERR_LIMIT, "%seos_token_id lists more than %d ids", prefix,
                                 MS_MAX_EOS_IDS);
            if (!as_token_id(e, &ids[n++]))
                return ms_errorf(err, MS_ERR_INVALID, "%seos_token_id[%d] is not a token id", prefix, n - 1);
        }
    } else if (!cJSON_IsNull(v)) {
        return ms_errorf(err, MS_ERR_INVALID, "%seos_token_id must be a token id, a list of them or null",
                         prefix);
    }
    memcpy(t->eos_token_ids, ids, (size_t)n * sizeof *ids);
    t->n_eos_token_ids = n;
    t->eos_token_id = n > 0 ? ids[0] : -1;
    return MS_OK;
}

ms_status ms_config_eos_load_generation(const char *model_dir, ms_llama_config *t, ms_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/generation_config.json", model_dir);
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return MS_OK;
        return ms_errorf(err, MS_ERR_IO, "%s: %s", path, strerror(errno));
    }
    enum { MAX_JSON = 1 << 20 };
    char *buf = ms_xmalloc(MAX_JSON + 1);
    size_t len = fread(buf, 1, MAX_JSON + 1, f);
    bool bad = ferror(f);
    fclose(f);
    if (bad || len > MAX_JSON) {
        free(buf);
        return ms_errorf(err, bad ? MS_ERR_IO : MS_ERR_LIMIT, "%s: %s", path,
                         bad ? "read error" : "larger than 1 MiB");
    }
    cJSON *root = cJSON_ParseWithLength(buf, len);
    free(buf);
    ms_status st = MS_OK;
    if (!root || !cJSON_IsObject(root))
        st = ms_errorf(err, MS_ERR_INVALID, "not a JSON object");
    if (st == MS_OK) st = ms_config_eos_read(root, "", t, err);
    for (int32_t i = 0; st == MS_OK && i < t->n_eos_token_ids; i++)
        if (t->eos_token_ids[i] >= t->vocab_size)
            st = ms_errorf(err, MS_ERR_INVALID, "eos_token_id %d is outside the vocabulary (vocab_size %d)",
                           t->eos_token_ids[i], t->vocab_size);
    cJSON_Delete(root);
    return st == MS_OK ? MS_OK : ms_error_wrap(err, "%s", path);
}
