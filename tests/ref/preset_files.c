/*
 * preset_files PRESET DIR: the files `modserve model init --preset PRESET` writes, less
 * the weights (config.json, preprocessor_config.json, processor_config.json,
 * generation_config.json, the tokenizer), plus DIR/tensors.json listing the tensors
 * init would write ([{"name": published name, "shape": [...]}, ...], from the same
 * ms_llava_tensor_list init uses). test_model_init_loads.py checks a full-size preset
 * against transformers with it, without writing 14 GB of weights.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "llm/model_init.h"
#include "llm/tokenizer.h"

static int write_tensor_list(const ms_llava_config *cfg, const char *dir) {
    ms_model_tensor *ts;
    const int32_t n = ms_llava_tensor_list(cfg, &ts);
    cJSON *list = cJSON_CreateArray();
    for (int32_t i = 0; i < n; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "name", ts[i].name);
        cJSON *shape = cJSON_AddArrayToObject(t, "shape");
        for (int32_t d = 0; d < ts[i].ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)ts[i].shape[d]));
        cJSON_AddItemToArray(list, t);
    }
    free(ts);
    char path[4096];
    snprintf(path, sizeof path, "%s/tensors.json", dir);
    char *text = cJSON_Print(list);
    cJSON_Delete(list);
    FILE *f = fopen(path, "w");
    bool ok = f && fputs(text, f) >= 0;
    if (f) ok = fclose(f) == 0 && ok;
    free(text);
    if (!ok) fprintf(stderr, "preset_files: cannot write %s\n", path);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: preset_files PRESET DIR\n");
        return 2;
    }
    ms_error err = {0};
    ms_llava_config cfg;
    if (ms_llava_preset(argv[1], &cfg, &err) || ms_model_write_configs(&cfg, MS_DTYPE_BF16, argv[2], &err) ||
        ms_tokenizer_write_tiny(argv[2], &err)) {
        fprintf(stderr, "preset_files: %s\n", err.msg);
        return 1;
    }
    return write_tensor_list(&cfg, argv[2]);
}
