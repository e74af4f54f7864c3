/*
 * `modserve model init`: writes a random-weight LLaVA-1.5 model folder in the Hugging
 * Face layout; `modserve model check`: loads a folder's config and verifies that every
 * tensor the model needs is present with the right shape.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/config.h"
#include "llm/model_init.h"
#include "llm/tokenizer.h"
#include "llm/weights.h"
#include "server/commands.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: modserve model init --preset tiny|llava-1.5-7b --seed S --out DIR\n"
            "                           [--dtype bf16|f32|f16] [--layout published|new] [--shards N]\n"
            "       modserve model check --model DIR\n"
            "\n"
            "init writes config.json, preprocessor_config.json, processor_config.json,\n"
            "generation_config.json, tokenizer files and the weights (model.safetensors, or N\n"
            "shards + model.safetensors.index.json) with random values fixed by the seed,\n"
            "loadable by transformers' LlavaForConditionalGeneration.\n"
            "  --preset   tiny (a few MB, for tests) or llava-1.5-7b (about 14 GB in bf16)\n"
            "  --seed     random seed (default 0); the same seed gives byte-identical files\n"
            "  --dtype    file dtype (default bf16)\n"
            "  --layout   tensor names: published (language_model.model..., default) or new\n"
            "             (model.language_model..., as newer transformers saves)\n"
            "  --shards   split the weights into N files (default 1)\n"
            "check loads DIR's config and looks up every tensor the model needs.\n");
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || s[0] == '-') return -1;
    *out = v;
    return 0;
}

static int cmd_init(int argc, char **argv) {
    const char *preset = NULL, *dir = NULL;
    ms_model_init_opts o = {.seed = 0, .dtype = MS_DTYPE_BF16, .shards = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "modserve model init: %s needs a value (or is unknown)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--preset")) {
            preset = v;
        } else if (!strcmp(a, "--out")) {
            dir = v;
        } else if (!strcmp(a, "--seed")) {
            if (parse_u64(v, &o.seed)) {
                fprintf(stderr, "modserve model init: --seed '%s' is not a non-negative integer\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--dtype")) {
            if (!strcmp(v, "bf16") || !strcmp(v, "bfloat16")) o.dtype = MS_DTYPE_BF16;
            else if (!strcmp(v, "f32") || !strcmp(v, "float32")) o.dtype = MS_DTYPE_F32;
            else if (!strcmp(v, "f16") || !strcmp(v, "float16")) o.dtype = MS_DTYPE_F16;
            else {
                fprintf(stderr, "modserve model init: --dtype '%s' is not bf16, f32 or f16\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--layout")) {
            if (!strcmp(v, "published")) o.new_layout = false;
            else if (!strcmp(v, "new")) o.new_layout = true;
            else {
                fprintf(stderr, "modserve model init: --layout '%s' is not published or new\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--shards")) {
            uint64_t n;
            if (parse_u64(v, &n) || n < 1 || n > 99999) {
                fprintf(stderr, "modserve model init: --shards '%s' is not a count from 1 to 99999\n", v);
                return 2;
            }
            o.shards = (int32_t)n;
        } else {
            fprintf(stderr, "modserve model init: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!preset || !dir) {
        fprintf(stderr, "modserve model init: --preset and --out are required\n");
        usage(stderr);
        return 2;
    }
    ms_error err = {0};
    ms_llava_config cfg;
    if (ms_llava_preset(preset, &cfg, &err) || ms_model_init_write(&cfg, &o, dir, &err) ||
        ms_tokenizer_write_tiny(dir, &err)) {
        fprintf(stderr, "modserve model init: %s\n", err.msg);
        return 1;
    }
    printf("wrote %s model (seed %llu, %s) to %s\n", preset, (unsigned long long)o.seed, ms_dtype_name(o.dtype),
           dir);
    return 0;
}

static int cmd_check(int argc, char **argv) {
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--model") && i + 1 < argc) dir = argv[++i];
        else {
            fprintf(stderr, "modserve model check: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "modserve model check: --model DIR is required\n");
        return 2;
    }
    ms_error err = {0};
    ms_llava_config cfg;
    ms_weights *w = NULL;
    if (ms_llava_config_load(dir, &cfg, &err) || ms_weights_open(dir, &w, &err)) {
        fprintf(stderr, "modserve model check: %s\n", err.msg);
        return 1;
    }
    ms_model_tensor *ts;
    int32_t n = ms_llava_tensor_list(&cfg, &ts), bad = 0;
    uint64_t bytes = 0;
    for (int32_t i = 0; i < n; i++) {
        const ms_st_tensor *t = ms_weights_find(w, ts[i].name);
        bool ok = t && t->ndim == ts[i].ndim && !memcmp(t->shape, ts[i].shape, (size_t)t->ndim * sizeof t->shape[0]);
        if (!ok) {
            fprintf(stderr, "modserve model check: tensor '%s' %s\n", ts[i].name, t ? "has the wrong shape" : "is missing");
            bad++;
        } else {
            bytes += t->nbytes;
        }
    }
    printf("%s: %d tensors, %.1f MB, image tokens %d, vocab %d%s\n", dir, n, (double)bytes / 1e6,
           cfg.image_seq_length, cfg.text.vocab_size, bad ? "" : ", all present");
    free(ts);
    ms_weights_close(w);
    return bad ? 1 : 0;
}

int ms_cmd_model(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "init")) return cmd_init(argc - 1, argv + 1);
    if (!strcmp(argv[1], "check")) return cmd_check(argc - 1, argv + 1);
    fprintf(stderr, "modserve model: unknown subcommand '%s' (init, check)\n", argv[1]);
    usage(stderr);
    return 2;
}
