/*
 * `modserve run` end to end: the real binary on the tiny model. Good runs (text only,
 * with images, sampling, --prompt with the tokenizer, --dump-logits) and every error
 * case exit as documented with a message that names the problem. run drives the
 * serving engine: its tokens and logits equal a request through the engine (in its
 * default, disaggregated layout) in this process.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stb_image_write.h>

#include "llm/config.h"
#include "scheduler/engine.h"
#include "tests/test_util.h"

static char out_path[320], err_path[320], work[200];
static const char *model;

/* Runs `./modserve run ARGS`, returns the exit code; stdout/stderr land in files. */
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...) {
    static char args[8000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return ms_test_system("./modserve run %s >%s 2>%s", args, out_path, err_path);
}

static char *out_text(void) { return ms_test_read_file(out_path, NULL); }

static bool err_has(const char *needle) {
    char *e = ms_test_read_file(err_path, NULL);
    bool ok = e && strstr(e, needle);
    if (!ok) fprintf(stderr, "stderr lacks '%s': %s\n", needle, e ? e : "(none)");
    free(e);
    return ok;
}

/* Comma-separated ids on the first stdout line. */
static int count_ids(const char *s) {
    if (!s || !*s || *s == '\n') return 0;
    int n = 1;
    for (; *s && *s != '\n'; s++) n += *s == ',';
    return n;
}

static void write_png(const char *path, int w, int h, int seed) {
    unsigned char *px = malloc((size_t)w * h * 3);
    for (int i = 0; i < w * h * 3; i++) px[i] = (unsigned char)((i * 7 + seed * 131 + (i / 3) % w) & 255);
    MS_CHECK(stbi_write_png(path, w, h, 3, px, w * 3));
    free(px);
}

static void good_runs(const char *img1, const char *img2) {
    EXPECT(run("--help") == 0);
    char *help = out_text();
    EXPECT(help && strstr(help, "--prompt-ids") && strstr(help, "--dump-logits") && strstr(help, "--min-tokens"));
    free(help);

    /* Greedy, text only: 8 ids, the same in a second process. */
    EXPECT(run("--model %s --prompt-ids 1,5,6,7 --max-tokens 8 --ignore-eos --device cpu", model) == 0);
    char *a = out_text();
    EXPECT(count_ids(a) == 8);
    EXPECT(err_has("finish: length"));
    EXPECT(run("--model %s --prompt-ids 1,5,6,7 --max-tokens 8 --ignore-eos --threads 1", model) == 0);
    char *b = out_text();
    EXPECT(a && b && !strcmp(a, b));
    free(b);

    /* Sampling: the same seed repeats, the flags are accepted. */
    const char *samp = "--temperature 0.8 --top-k 40 --top-p 0.9 --max-tokens 10 --ignore-eos";
    EXPECT(run("--model %s --prompt-ids 1,5,6,7 %s --seed 5", model, samp) == 0);
    b = out_text();
    EXPECT(run("--model %s --prompt-ids 1,5,6,7 %s --seed 5", model, samp) == 0);
    char *c = out_text();
    EXPECT(count_ids(b) == 10 && b && c && !strcmp(b, c));
    free(b);
    free(c);

    /* Images: one and two, with logits dumps; another image, other logits. */
    char d1[300], d2[300];
    snprintf(d1, sizeof d1, "%s/l1.bin", work);
    snprintf(d2, sizeof d2, "%s/l2.bin", work);
    EXPECT(run("--model %s --image %s --prompt-ids 1,1000,5,6 --max-tokens 4 --ignore-eos --dump-logits %s",
               model, img1, d1) == 0);
    EXPECT(err_has("1 image"));
    EXPECT(run("--model %s --image %s --prompt-ids 1,1000,5,6 --max-tokens 4 --ignore-eos --dump-logits %s",
               model, img2, d2) == 0);
    size_t n1 = 0, n2 = 0;
    char *l1 = ms_test_read_file(d1, &n1), *l2 = ms_test_read_file(d2, &n2);
    ms_llava_config cfg;
    ms_error e = {0};
    MS_CHECK(ms_llava_config_load(model, &cfg, &e) == MS_OK);
    EXPECT(n1 == (size_t)cfg.text.vocab_size * 4 && n1 == n2);
    EXPECT(l1 && l2 && memcmp(l1, l2, n1) != 0);
    bool finite = l1 != NULL;
    for (size_t i = 0; l1 && i < n1 / 4; i++) finite &= isfinite(((float *)l1)[i]);
    EXPECT(finite);
    free(l1);
    free(l2);
    EXPECT(run("--model %s --image %s --image %s --prompt-ids 1,1000,5,1000,6 --max-tokens 3", model,
               img1, img2) == 0);
    EXPECT(err_has("2 images"));

    /* --min-tokens holds EOS back. */
    EXPECT(run("--model %s --prompt-ids 1,5 --max-tokens 6 --min-tokens 6", model) == 0);
    c = out_text();
    EXPECT(count_ids(c) == 6);
    bool no_eos = true;
    for (const char *p = c; p && *p && *p != '\n'; p++)
        if ((p == c || p[-1] == ',') && atoi(p) == cfg.text.eos_token_id) no_eos = false;
    EXPECT(no_eos);
    free(c);

    /* --prompt TEXT through the tokenizer, <image> as the image token. */
    char tokpath[300];
    snprintf(tokpath, sizeof tokpath, "%s/tokenizer.json", model);
    if (access(tokpath, R_OK) == 0) {
        EXPECT(run("--model %s --image %s --prompt 'USER: <image>\nWhat is this? ASSISTANT:' "
                   "--max-tokens 5 --ignore-eos", model, img1) == 0);
        c = out_text();
        EXPECT(count_ids(c) == 5 && c && strchr(c, '\n')); /* ids line, then the text */
        free(c);
        EXPECT(run("--model %s --prompt 'no image here <image>' --max-tokens 2", model) == 1);
        EXPECT(err_has("image"));
    } else {
        EXPECTF(false, "%s is missing (`modserve model init` writes one): --prompt cannot be tested", tokpath);
    }
    free(a);
}

/* ---- run == the engine ---- */

enum { SAME_MAX = 16 };
typedef struct eng_out {
    int32_t ids[SAME_MAX];
    int32_t n;
    ms_request_result res;
} eng_out;

static void eng_on_token(void *user, int32_t token, int32_t index) {
    eng_out *o = user;
    if (index < SAME_MAX) o->ids[index] = token;
    o->n = index + 1;
}

static void eng_on_done(void *user, const ms_request_result *res) { ((eng_out *)user)->res = *res; }

/* One request through an engine with serve's defaults (disagg, one worker per pool). */
static bool engine_generate(const int32_t *prompt, int32_t n_prompt, const char *image,
                            const ms_request_params *p, float *logits, eng_out *out) {
    memset(out, 0, sizeof *out);
    ms_engine_options o;
    ms_engine_options_default(&o);
    o.model_dir = model;
    o.device = "cpu";
    o.max_model_len = 512;
    ms_engine *e = NULL;
    ms_error err = {0};
    if (ms_engine_create(&o, &e, &err) != MS_OK) {
        fprintf(stderr, "engine: %s\n", err.msg);
        return false;
    }
    size_t n_bytes = 0;
    char *bytes = image ? ms_test_read_file(image, &n_bytes) : NULL;
    ms_image_input img = {(const uint8_t *)bytes, n_bytes};
    ms_request_desc d = {.prompt = prompt, .n_prompt = n_prompt, .images = &img, .n_images = image ? 1 : 0,
                         .params = *p, .on_token = eng_on_token, .on_done = eng_on_done, .user = out};
    d.params.prompt_logits = logits;
    bool ok = ms_engine_submit(e, &d, NULL, &err) == MS_OK;
    ms_engine_drain(e, 600); /* returns once on_done has run */
    ms_engine_destroy(e);
    free(bytes);
    return ok && out->res.status == MS_OK;
}

/* The ids line of run's stdout equals the engine's tokens. */
static bool same_ids(const char *run_out, const eng_out *e) {
    char buf[400] = "";
    for (int32_t i = 0, used = 0; i < e->n && i < SAME_MAX; i++)
        used += snprintf(buf + used, sizeof buf - (size_t)used, i ? ",%d" : "%d", e->ids[i]);
    size_t n = strlen(buf);
    bool ok = run_out && !strncmp(run_out, buf, n) && run_out[n] == '\n';
    if (!ok) fprintf(stderr, "run printed %.200s, the engine gave %s\n", run_out ? run_out : "(nothing)", buf);
    return ok;
}

static void run_equals_engine(const char *img1) {
    ms_llava_config cfg;
    ms_error err = {0};
    MS_CHECK(ms_llava_config_load(model, &cfg, &err) == MS_OK);
    const int32_t vocab = cfg.text.vocab_size;

    /* greedy with an image: tokens and the last prompt position's logits */
    char dump[300];
    snprintf(dump, sizeof dump, "%s/same.bin", work);
    EXPECT(run("--model %s --image %s --prompt-ids 1,1000,5,6 --max-tokens 8 --ignore-eos --dump-logits %s",
               model, img1, dump) == 0);
    char *out = out_text();
    const int32_t prompt[] = {1, 1000, 5, 6};
    ms_request_params p;
    ms_request_params_default(&p);
    p.max_tokens = 8;
    p.ignore_eos = true;
    float *logits = calloc((size_t)vocab, sizeof *logits);
    eng_out e;
    EXPECT(engine_generate(prompt, 4, img1, &p, logits, &e) && e.n == 8);
    EXPECT(same_ids(out, &e));
    free(out);
    size_t n = 0;
    char *raw = ms_test_read_file(dump, &n);
    double max_err = 0, scale = 0;
    for (int32_t i = 0; raw && n == (size_t)vocab * 4 && i < vocab; i++) {
        float a = ((float *)raw)[i], b = logits[i];
        max_err = fmax(max_err, fabs((double)a - b));
        scale = fmax(scale, fabs((double)b));
    }
    EXPECTF(raw && n == (size_t)vocab * 4 && scale > 0 && max_err <= 1e-5 * scale,
            "dump of %zu bytes, max |run - engine| %g (logit scale %g)", n, max_err, scale);
    printf("test_run: run vs engine: 8 greedy tokens equal, prompt logits max |diff| %g (scale %g)\n",
           max_err, scale);
    free(raw);
    free(logits);

    /* sampled, text only: the same seed gives the same tokens in both */
    EXPECT(run("--model %s --prompt-ids 1,5,6,7 --temperature 0.8 --top-k 40 --top-p 0.9 --seed 5 "
               "--max-tokens 10 --ignore-eos", model) == 0);
    out = out_text();
    p.max_tokens = 10;
    p.temperature = 0.8f;
    p.top_k = 40;
    p.top_p = 0.9f;
    p.seed = 5;
    p.has_seed = true;
    EXPECT(engine_generate((const int32_t[]){1, 5, 6, 7}, 4, NULL, &p, NULL, &e) && e.n == 10);
    EXPECT(same_ids(out, &e));
    free(out);
}

static void error_runs(const char *img1) {
    ms_llava_config cfg;
    ms_error e = {0};
    MS_CHECK(ms_llava_config_load(model, &cfg, &e) == MS_OK);
    const int maxp = cfg.text.max_position_embeddings;

    EXPECT(run("--model %s/nonexistent --prompt-ids 1,2 --max-tokens 2", work) == 1);
    EXPECT(err_has("nonexistent"));
    EXPECT(run("--model %s --image %s/missing.png --prompt-ids 1,1000 --max-tokens 2", model, work) == 1);
    EXPECT(err_has("missing.png"));
    char bad[300];
    snprintf(bad, sizeof bad, "%s/bad.png", work);
    FILE *f = fopen(bad, "wb");
    fputs("\x89PNG\r\n\x1a\n this is not really a png", f);
    fclose(f);
    EXPECT(run("--model %s --image %s --prompt-ids 1,1000 --max-tokens 2", model, bad) == 1);
    EXPECT(err_has("bad.png"));
    /* Image tokens vs --image count, both ways. */
    EXPECT(run("--model %s --prompt-ids 1,1000,5 --max-tokens 2", model) == 1);
    EXPECT(err_has("1 image token") && err_has("0 images given"));
    EXPECT(run("--model %s --image %s --image %s --prompt-ids 1,1000,5 --max-tokens 2", model, img1, img1) == 1);
    EXPECT(err_has("2 images given"));
    /* Prompt longer than the context; prompt + max_tokens past it. */
    /* (the shell builds the maxp + 1 ids: the command line stays short) */
    EXPECT(run("--model %s --prompt-ids \"$(yes 5 | head -n %d | paste -sd, -)\" --max-tokens 1", model,
               maxp + 1) == 1);
    EXPECT(err_has("context"));
    EXPECT(run("--model %s --prompt-ids 1,5,6 --max-tokens %d", model, maxp) == 1);
    EXPECT(err_has("exceeds the context"));
    /* Bad ids and bad flag values. */
    EXPECT(run("--model %s --prompt-ids 1,%d --max-tokens 2", model, cfg.text.vocab_size + 5) == 1);
    EXPECT(err_has("out of range"));
    EXPECT(run("--model %s --prompt-ids 1,x --max-tokens 2", model) == 1);
    EXPECT(err_has("--prompt-ids"));
    EXPECT(run("--model %s --prompt-ids 1,2 --temperature -1", model) == 1);
    EXPECT(err_has("--temperature"));
    EXPECT(run("--model %s --prompt-ids 1,2 --top-p 0", model) == 1);
    EXPECT(err_has("--top-p"));
    EXPECT(run("--model %s --prompt-ids 1,2 --top-k -2", model) == 1);
    EXPECT(err_has("--top-k"));
    EXPECT(run("--model %s --prompt-ids 1,2 --max-tokens 0", model) == 1);
    EXPECT(err_has("--max-tokens"));
    EXPECT(run("--model %s --prompt-ids 1,2 --max-tokens 3x", model) == 1);
    EXPECT(err_has("--max-tokens"));
    EXPECT(run("--model %s --prompt-ids 1,2 --seed -4", model) == 1);
    EXPECT(err_has("--seed"));
    EXPECT(run("--model %s --prompt-ids 1,2 --device tpu", model) == 1);
    EXPECT(err_has("--device"));
    EXPECT(run("--model %s --prompt-ids 1,2 --min-tokens 5 --max-tokens 3", model) == 1);
    EXPECT(err_has("--min-tokens"));
    EXPECT(run("--model %s --prompt-ids 1,2 --dump-logits %s/no/such/dir/x.bin", model, work) == 1);
    EXPECT(err_has("--dump-logits"));
    /* Usage errors: exit 2. */
    EXPECT(run("--model %s --prompt-ids 1,2 --frobnicate", model) == 2);
    EXPECT(err_has("--frobnicate"));
    EXPECT(run("--prompt-ids 1,2") == 2);
    EXPECT(err_has("--model"));
    EXPECT(run("--model %s", model) == 2);
    EXPECT(err_has("--prompt"));
    EXPECT(run("--model %s --prompt-ids 1 --max-tokens", model) == 2);
    /* --prompt with no tokenizer in the folder. */
    ms_test_system("rm -rf %s/notok && cp -r %s %s/notok && rm -f %s/notok/tokenizer.json", work, model, work, work);
    EXPECT(run("--model %s/notok --prompt hello --max-tokens 2", work) == 1);
    EXPECT(err_has("tokenizer"));
}

int main(void) {
    model = ms_test_tiny_model(1, "f32");
    snprintf(work, sizeof work, "testdata/test_run.%d", (int)getpid());
    ms_test_system("mkdir -p %s", work);
    snprintf(out_path, sizeof out_path, "%s/stdout", work);
    snprintf(err_path, sizeof err_path, "%s/stderr", work);
    char img1[320], img2[320];
    snprintf(img1, sizeof img1, "%s/a.png", work);
    snprintf(img2, sizeof img2, "%s/b.png", work);
    write_png(img1, 61, 43, 1); /* odd, non-square sizes: resize + crop do work */
    write_png(img2, 40, 77, 2);
    good_runs(img1, img2);
    run_equals_engine(img1);
    error_runs(img1);
    int rc = ms_test_finish("test_run");
    if (rc == 0) ms_test_system("rm -rf %s", work);
    return rc;
}
