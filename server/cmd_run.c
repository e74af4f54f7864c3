/*
 * `modserve run`: one request in this process, no HTTP. Checks the prompt and images
 * first (so bad input fails before any weight loads), then drives the serving engine
 * (scheduler/engine.h) with that one request: the engine preprocesses and encodes the
 * images, prefills, decodes, samples and applies the EOS and stop rules, exactly as for
 * a served request. Prints the generated ids on one line (and the text when the folder
 * has a tokenizer); progress and timings go to stderr so stdout stays machine-readable.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "encoder/image.h"
#include "llm/config.h"
#include "llm/prompt.h"
#include "llm/sampler.h"
#include "llm/tokenizer.h"
#include "scheduler/engine.h"
#include "server/commands.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "--dump-logits writes host floats as little-endian"
#endif

enum { RUN_MAX_IMAGES = 64 };

typedef struct run_opts {
    const char *model_dir;
    const char *images[RUN_MAX_IMAGES];
    int32_t n_images;
    const char *prompt_ids;    /* "1,2,3" */
    const char *prompt_text;
    int32_t max_tokens;
    int32_t min_tokens;
    ms_sample_params sample;
    uint64_t seed;
    bool ignore_eos;
    const char *dump_logits;
    const char *device;
    int32_t threads;
    int32_t block_size;
} run_opts;

static void run_usage(FILE *out) {
    fprintf(out,
        "usage: modserve run --model DIR [--image FILE]... (--prompt-ids LIST | --prompt TEXT)\n"
        "                    [--max-tokens N] [--min-tokens N] [--temperature T] [--top-p P]\n"
        "                    [--top-k K] [--seed S] [--ignore-eos] [--dump-logits PATH]\n"
        "                    [--device cpu|cuda|auto] [--threads N] [--block-size N]\n"
        "\n"
        "Generates from one prompt (and images) in this process, through the serving engine\n"
        "(one request, no HTTP). stdout: the generated token ids on one line, comma separated\n"
        "(EOS included when it ends the run), then the text when the model folder has a\n"
        "tokenizer. Timings go to stderr. Any eos_token_id of generation_config.json (or\n"
        "config.json), the tokenizer's eos_token and ChatML's <|im_end|> end the run.\n"
        "\n"
        "  --model DIR         Hugging Face LLaVA folder (config.json, *.safetensors)\n"
        "  --image FILE        PNG or JPEG; repeat for several images, in prompt order\n"
        "  --prompt-ids LIST   token ids, comma separated; the image token id\n"
        "                      (config image_token_index) appears once per image\n"
        "  --prompt TEXT       text, tokenized with the folder's tokenizer (BOS added);\n"
        "                      write <image> where each image goes\n"
        "  --max-tokens N      tokens to generate at most (default 16)\n"
        "  --min-tokens N      EOS is masked out until N tokens are generated (default 0)\n"
        "  --temperature T     0 = greedy (default 0)\n"
        "  --top-p P           nucleus sampling, 0 < P <= 1 (default 1 = off)\n"
        "  --top-k K           keep the K most likely tokens (default 0 = off)\n"
        "  --seed S            sampling seed, unsigned 64-bit (default 0)\n"
        "  --ignore-eos        keep generating after an EOS id\n"
        "  --dump-logits PATH  write the last prompt position's logits as raw\n"
        "                      little-endian float32 (vocab_size values)\n"
        "  --device D          cpu, cuda or auto (default auto: cuda when a GPU is present)\n"
        "  --threads N         CPU backend threads (default 0 = all cores)\n"
        "  --block-size N      KV cache block size in tokens (default 16)\n"
        "\n"
        "Exit status: 0 on success, 1 on any error (the message names the problem),\n"
        "2 on a usage error.\n");
}

/* ---- flag values ---- */

static bool parse_i32(const char *flag, const char *s, int32_t lo, int32_t hi, int32_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "modserve run: %s '%s' is not an integer in [%d, %d]\n", flag, s, lo, hi);
        return false;
    }
    *out = (int32_t)v;
    return true;
}

static bool parse_f32(const char *flag, const char *s, float lo, float hi, bool lo_open,
                      float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi || (lo_open && v == lo)) {
        fprintf(stderr, "modserve run: %s '%s' is not a number in %s%g, %g]\n", flag, s,
                lo_open ? "(" : "[", (double)lo, (double)hi);
        return false;
    }
    *out = (float)v;
    return true;
}

static bool parse_u64(const char *flag, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') {
        fprintf(stderr, "modserve run: %s '%s' is not an unsigned 64-bit integer\n", flag, s);
        return false;
    }
    *out = v;
    return true;
}

/* Returns 0 on success, else the exit code (2 usage, 0 after --help). */
static int parse_args(int argc, char **argv, run_opts *o, bool *help) {
    memset(o, 0, sizeof *o);
    o->max_tokens = 16;
    o->sample = (ms_sample_params){.temperature = 0.0f, .top_k = 0, .top_p = 1.0f};
    o->device = "auto";
    o->block_size = 16;
    *help = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            *help = true;
            return 0;
        }
        if (!strcmp(a, "--ignore-eos")) {
            o->ignore_eos = true;
            continue;
        }
        static const char *const with_value[] = {
            "--model", "--image", "--prompt-ids", "--prompt", "--max-tokens", "--min-tokens",
            "--temperature", "--top-p", "--top-k", "--seed", "--dump-logits", "--device",
            "--threads", "--block-size"};
        bool known = false;
        for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++)
            known |= !strcmp(a, with_value[k]);
        if (!known) {
            fprintf(stderr, "modserve run: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "modserve run: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        bool ok = true;
        if (!strcmp(a, "--model")) o->model_dir = v;
        else if (!strcmp(a, "--image")) {
            if (o->n_images == RUN_MAX_IMAGES) {
                fprintf(stderr, "modserve run: more than %d images\n", RUN_MAX_IMAGES);
                return 1;
            }
            o->images[o->n_images++] = v;
        } else if (!strcmp(a, "--prompt-ids")) o->prompt_ids = v;
        else if (!strcmp(a, "--prompt")) o->prompt_text = v;
        else if (!strcmp(a, "--max-tokens")) ok = parse_i32(a, v, 1, INT32_MAX / 2, &o->max_tokens);
        else if (!strcmp(a, "--min-tokens")) ok = parse_i32(a, v, 0, INT32_MAX / 2, &o->min_tokens);
        else if (!strcmp(a, "--temperature")) ok = parse_f32(a, v, 0.0f, 100.0f, false, &o->sample.temperature);
        else if (!strcmp(a, "--top-p")) ok = parse_f32(a, v, 0.0f, 1.0f, true, &o->sample.top_p);
        else if (!strcmp(a, "--top-k")) ok = parse_i32(a, v, 0, INT32_MAX, &o->sample.top_k);
        else if (!strcmp(a, "--seed")) ok = parse_u64(a, v, &o->seed);
        else if (!strcmp(a, "--dump-logits")) o->dump_logits = v;
        else if (!strcmp(a, "--device")) {
            o->device = v;
            if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto")) {
                fprintf(stderr, "modserve run: --device '%s' is not cpu, cuda or auto\n", v);
                ok = false;
            }
        } else if (!strcmp(a, "--threads")) ok = parse_i32(a, v, 0, 4096, &o->threads);
        else if (!strcmp(a, "--block-size")) ok = parse_i32(a, v, 1, 4096, &o->block_size);
        if (!ok) return 1;
    }
    if (!o->model_dir) {
        fprintf(stderr, "modserve run: --model DIR is required (see --help)\n");
        return 2;
    }
    if (!o->prompt_ids == !o->prompt_text) {
        fprintf(stderr, "modserve run: give exactly one of --prompt-ids and --prompt\n");
        return 2;
    }
    if (o->min_tokens > o->max_tokens) {
        fprintf(stderr, "modserve run: --min-tokens %d is more than --max-tokens %d\n",
                o->min_tokens, o->max_tokens);
        return 1;
    }
    return 0;
}

/* "1, 2,3" -> ids (malloc'd). */
static ms_status parse_id_list(const char *s, int32_t **ids, int32_t *n, ms_error *err) {
    *ids = NULL;
    *n = 0;
    int32_t cap = 16, len = 0;
    int32_t *v = ms_xmalloc((size_t)cap * sizeof *v);
    const char *p = s;
    for (;;) {
        while (*p == ' ') p++;
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (errno || end == p || x < INT32_MIN || x > INT32_MAX) {
            free(v);
            return ms_errorf(err, MS_ERR_INVALID, "--prompt-ids: item %d ('%.16s') is not an integer",
                             len + 1, p);
        }
        if (len == cap) v = ms_xrealloc(v, (size_t)(cap *= 2) * sizeof *v);
        v[len++] = (int32_t)x;
        p = end;
        while (*p == ' ') p++;
        if (*p == 0) break;
        if (*p != ',') {
            free(v);
            return ms_errorf(err, MS_ERR_INVALID, "--prompt-ids: unexpected '%c' after item %d", *p,
                             len);
        }
        p++;
    }
    *ids = v;
    *n = len;
    return MS_OK;
}

static ms_status read_file_limited(const char *path, size_t limit, uint8_t **buf, size_t *n,
                                   ms_error *err) {
    *buf = NULL;
    struct stat st;
    if (stat(path, &st) != 0)
        return ms_errorf(err, MS_ERR_NOT_FOUND, "image '%s': %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return ms_errorf(err, MS_ERR_INVALID, "image '%s' is not a regular file", path);
    if ((uint64_t)st.st_size > limit)
        return ms_errorf(err, MS_ERR_LIMIT, "image '%s' is %lld bytes, over the limit of %zu", path,
                         (long long)st.st_size, limit);
    FILE *f = fopen(path, "rb");
    if (!f) return ms_errorf(err, MS_ERR_IO, "image '%s': %s", path, strerror(errno));
    *n = (size_t)st.st_size;
    *buf = ms_xmalloc(*n ? *n : 1);
    size_t got = fread(*buf, 1, *n, f);
    fclose(f);
    if (got != *n) {
        free(*buf);
        *buf = NULL;
        return ms_errorf(err, MS_ERR_IO, "image '%s': short read", path);
    }
    return MS_OK;
}

static bool file_exists(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- one request through the engine ---- */

typedef struct run_state {
    ms_llava_config cfg;
    ms_tokenizer *tok;
    int32_t *ids;              /* (n_ids) prompt as given, one image token per image */
    int32_t n_ids;
    int32_t n_prompt;          /* after image expansion */
    uint8_t *img_bytes[RUN_MAX_IMAGES]; /* encoded files, as a client would send them */
    size_t img_len[RUN_MAX_IMAGES];
    int32_t n_img;
    float *logits;             /* (vocab_size) the last prompt position, --dump-logits */
    ms_engine *engine;
    /* written by the engine's threads under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int32_t *gen;              /* (max_tokens) generated ids */
    int32_t n_gen;
    bool done;
    ms_request_result result;
} run_state;

static void run_state_free(run_state *r) {
    ms_engine_destroy(r->engine);
    if (r->tok) ms_tokenizer_free(r->tok);
    for (int32_t i = 0; i < r->n_img; i++) free(r->img_bytes[i]);
    free(r->ids);
    free(r->logits);
    free(r->gen);
}

/* Prompt ids from --prompt-ids or the tokenizer, then the expansion and context checks
 * (before the engine loads any weight: bad input fails fast, with run's messages). */
static ms_status build_prompt(const run_opts *o, run_state *r, ms_error *err) {
    const bool has_tok = file_exists(o->model_dir, "tokenizer.json");
    if (o->prompt_text && !has_tok)
        return ms_errorf(err, MS_ERR_NOT_FOUND,
                         "--prompt needs a tokenizer but '%s' has no tokenizer.json (use --prompt-ids)",
                         o->model_dir);
    if (has_tok && ms_tokenizer_load(o->model_dir, &r->tok, err) != MS_OK)
        return ms_error_wrap(err, "loading the tokenizer of '%s'", o->model_dir);
    ms_status st;
    if (o->prompt_text)
        st = ms_tokenizer_encode(r->tok, o->prompt_text, strlen(o->prompt_text), true, &r->ids,
                                 &r->n_ids, err);
    else
        st = parse_id_list(o->prompt_ids, &r->ids, &r->n_ids, err);
    if (st != MS_OK) return st;
    int32_t *expanded = NULL;
    st = ms_prompt_expand(&r->cfg, r->ids, r->n_ids, o->n_images, &expanded, &r->n_prompt, NULL,
                          err);
    free(expanded); /* the engine expands again from the ids */
    if (st != MS_OK) return st;
    return ms_prompt_check_context(&r->cfg, r->n_prompt, o->max_tokens, err);
}

/* Reads every image and checks that it decodes, so a bad file is named before the
 * weights load; the engine decodes, resizes and crops the bytes itself. */
static ms_status load_images(const run_opts *o, run_state *r, ms_error *err) {
    ms_image_limits lim;
    ms_image_limits_default(&lim);
    for (int32_t i = 0; i < o->n_images; i++) {
        ms_status st = read_file_limited(o->images[i], lim.max_bytes, &r->img_bytes[i],
                                         &r->img_len[i], err);
        if (st != MS_OK) return st;
        r->n_img++;
        ms_image_u8 img = {0};
        st = ms_image_decode(r->img_bytes[i], r->img_len[i], &lim, &img, err);
        ms_image_free(&img);
        if (st != MS_OK) return ms_error_wrap(err, "image '%s'", o->images[i]);
    }
    return MS_OK;
}

static ms_status dump_logits(const char *path, const float *logits, int32_t vocab, ms_error *err) {
    FILE *f = fopen(path, "wb");
    if (!f) return ms_errorf(err, MS_ERR_IO, "--dump-logits '%s': %s", path, strerror(errno));
    size_t put = fwrite(logits, sizeof *logits, (size_t)vocab, f);
    if (fclose(f) != 0 || put != (size_t)vocab)
        return ms_errorf(err, MS_ERR_IO, "--dump-logits '%s': write failed", path);
    return MS_OK;
}

/* One sequence on one device, in one process: monolithic mode with one LLM worker runs
 * encode, prefill and decode of the request on one context, as the old single-request
 * loop did, through the code every served request takes. The KV pool holds exactly
 * this request (prompt + max_tokens). */
static ms_status start_engine(const run_opts *o, run_state *r, ms_error *err) {
    ms_engine_options eo;
    ms_engine_options_default(&eo);
    eo.model_dir = o->model_dir;
    eo.device = o->device;
    eo.cpu_threads = o->threads;
    eo.mode = MS_MODE_MONOLITHIC;
    eo.decode_workers = 1;
    eo.preprocess_threads = 1;
    eo.max_num_seqs = 1;
    eo.block_size = o->block_size;
    eo.max_model_len = r->n_prompt + o->max_tokens;
    eo.kv_blocks = (int32_t)(((int64_t)eo.max_model_len + o->block_size - 1) / o->block_size);
    eo.max_queued_requests = 1;
    eo.max_images_per_request = RUN_MAX_IMAGES;
    ms_status st = ms_engine_create(&eo, &r->engine, err);
    if (st != MS_OK) return ms_error_wrap(err, "model '%s' on --device %s", o->model_dir, o->device);
    return MS_OK;
}

static void on_token(void *user, int32_t token, int32_t index) {
    run_state *r = user;
    pthread_mutex_lock(&r->mu);
    r->gen[index] = token; /* index < max_tokens: the engine stops there */
    r->n_gen = index + 1;
    pthread_mutex_unlock(&r->mu);
}

static void on_done(void *user, const ms_request_result *res) {
    run_state *r = user;
    pthread_mutex_lock(&r->mu);
    r->result = *res;
    r->done = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static ms_status submit_and_wait(const run_opts *o, run_state *r, ms_error *err) {
    ms_image_input imgs[RUN_MAX_IMAGES];
    for (int32_t i = 0; i < r->n_img; i++) imgs[i] = (ms_image_input){r->img_bytes[i], r->img_len[i]};
    ms_request_desc d = {.prompt = r->ids, .n_prompt = r->n_ids, .images = imgs,
                         .n_images = r->n_img, .on_token = on_token, .on_done = on_done, .user = r};
    ms_request_params_default(&d.params);
    d.params.max_tokens = o->max_tokens;
    d.params.min_tokens = o->min_tokens;
    d.params.ignore_eos = o->ignore_eos;
    d.params.temperature = o->sample.temperature;
    d.params.top_p = o->sample.top_p;
    d.params.top_k = o->sample.top_k;
    d.params.seed = o->seed;
    d.params.has_seed = true;
    if (o->dump_logits) {
        r->logits = ms_xcalloc((size_t)r->cfg.text.vocab_size, sizeof *r->logits);
        d.params.prompt_logits = r->logits;
    }
    r->gen = ms_xcalloc((size_t)o->max_tokens, sizeof *r->gen);
    ms_status st = ms_engine_submit(r->engine, &d, NULL, err);
    if (st != MS_OK) return st;
    pthread_mutex_lock(&r->mu);
    while (!r->done) pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
    if (r->result.status != MS_OK)
        return ms_errorf(err, r->result.status, "%s", r->result.error);
    return MS_OK;
}

static void print_result(const run_state *r) {
    for (int32_t i = 0; i < r->n_gen; i++) printf(i ? ",%d" : "%d", r->gen[i]);
    printf("\n");
    if (r->tok) {
        char *text = NULL;
        ms_error err = {0};
        if (ms_tokenizer_decode(r->tok, r->gen, r->n_gen, true, &text, &err) == MS_OK)
            printf("%s\n", text);
        else
            fprintf(stderr, "modserve run: decoding the text: %s\n", err.msg);
        free(text);
    }
    fflush(stdout);
}

static double span_ms(double a, double b) { return a > 0 && b > a ? (b - a) * 1e3 : 0.0; }

static void print_summary(const run_opts *o, const run_state *r) {
    const ms_request_times *t = &r->result.times;
    const double decode_ms = span_ms(t->first_token, t->last_token);
    fprintf(stderr,
            "run: %s backend, prompt %d tokens (%d image%s), encode %.1f ms, prefill %.1f ms, "
            "decode %d tokens %.1f ms (%.1f tok/s), finish: %s\n",
            ms_engine_backend_name(r->engine), r->n_prompt, o->n_images,
            o->n_images == 1 ? "" : "s", span_ms(t->encode_start, t->encode_end),
            span_ms(t->prefill_start, t->prefill_end), r->n_gen - 1, decode_ms,
            r->n_gen > 1 && decode_ms > 0 ? (r->n_gen - 1) / (decode_ms * 1e-3) : 0.0,
            r->result.finish == MS_FINISH_STOP ? "stop (eos)" : "length");
}

static ms_status run_generate(const run_opts *o, run_state *r, ms_error *err) {
    ms_status st = ms_llava_config_load(o->model_dir, &r->cfg, err);
    if (st != MS_OK) return st;
    if ((st = build_prompt(o, r, err)) != MS_OK) return st;
    if ((st = load_images(o, r, err)) != MS_OK) return st;
    if ((st = start_engine(o, r, err)) != MS_OK) return st;
    if ((st = submit_and_wait(o, r, err)) != MS_OK) return st;
    if (o->dump_logits && (st = dump_logits(o->dump_logits, r->logits, r->cfg.text.vocab_size, err)))
        return st;
    print_result(r);
    print_summary(o, r);
    return MS_OK;
}

int ms_cmd_run(int argc, char **argv) {
    run_opts o;
    bool help;
    int rc = parse_args(argc, argv, &o, &help);
    if (help) {
        run_usage(stdout);
        return 0;
    }
    if (rc) return rc;
    run_state r;
    memset(&r, 0, sizeof r);
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    ms_error err = {0};
    ms_status st = run_generate(&o, &r, &err);
    run_state_free(&r);
    pthread_cond_destroy(&r.cv);
    pthread_mutex_destroy(&r.mu);
    if (st != MS_OK) {
        fprintf(stderr, "modserve run: %s\n", err.msg[0] ? err.msg : ms_status_name(st));
        return 1;
    }
    return 0;
}
