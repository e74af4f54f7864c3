/*
 * Golden test: `modserve run` on the tiny model (seed 1, f32 files) with a fixed image
 * and prompt must give the logits Hugging Face transformers gives for the same weights
 * and inputs (tests/golden/make_golden.py wrote them with LlavaForConditionalGeneration).
 *
 *   test_golden cpu   f32 reference backend: max |err| <= 1e-5 x logit scale, rel L2 <= 1e-5,
 *                     same top-1 (measured with transformers 4.57.6 / torch 2.5.1: 6e-7 x
 *                     scale, rel L2 6e-7; the margin covers BLAS and thread-count rounding)
 *   test_golden cuda  bf16 activations:      max |err| <= 6e-2 x scale, rel L2 <= 3e-2,
 *                                            top-1 among the golden top-5
 * The golden files are committed, so their absence is a failure; cuda exits 77 (skipped)
 * without a GPU.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "kernels/backend.h"
#include "tests/test_util.h"

#define GOLDEN_DIR MS_SOURCE_DIR "/tests/golden"

/* The comma-separated prompt ids of the JSON's "prompt_ids" array into buf. */
static bool read_prompt(const char *json_path, char *buf, size_t n, int *vocab) {
    char *txt = ms_test_read_file(json_path, NULL);
    if (!txt) return false;
    cJSON *root = cJSON_Parse(txt);
    free(txt);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(root, "prompt_ids");
    const cJSON *voc = cJSON_GetObjectItemCaseSensitive(root, "vocab_size");
    bool ok = cJSON_IsArray(ids) && cJSON_IsNumber(voc);
    size_t used = 0;
    buf[0] = '\0';
    const cJSON *it;
    cJSON_ArrayForEach(it, ids) {
        ok = ok && cJSON_IsNumber(it) && used + 16 < n;
        if (!ok) break;
        used += (size_t)snprintf(buf + used, n - used, "%s%d", used ? "," : "", it->valueint);
    }
    if (ok) *vocab = voc->valueint;
    cJSON_Delete(root);
    return ok && used > 0;
}

static float *read_f32(const char *path, int n) {
    size_t len = 0;
    char *raw = ms_test_read_file(path, &len);
    if (!raw || len != (size_t)n * sizeof(float)) {
        fprintf(stderr, "%s: %zu bytes, expected %zu\n", path, raw ? len : 0,
                (size_t)n * sizeof(float));
        free(raw);
        return NULL;
    }
    float *v = malloc(len);
    memcpy(v, raw, len); /* little-endian hosts only, as modserve's dump */
    free(raw);
    return v;
}

static int argmax(const float *v, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

/* Rank of token t in v (0 = largest). */
static int rank_of(const float *v, int n, int t) {
    int r = 0;
    for (int i = 0; i < n; i++) r += v[i] > v[t];
    return r;
}

/* Through ms_backend_create rather than ms_cuda_available alone: see docs/cuda.md on the
 * link order of ms_kernels and ms_kernels_cuda. */
static bool have_gpu(void) {
    ms_error e = {0};
    ms_backend *be = ms_backend_create("cuda", 0, 1, &e);
    if (!be) return false;
    ms_backend_destroy(be);
    return true;
}

int main(int argc, char **argv) {
    const char *device = argc > 1 ? argv[1] : "cpu";
    const bool cuda = strcmp(device, "cuda") == 0;
    char name[64];
    snprintf(name, sizeof name, "test_golden_%s", device);
    const char *golden = GOLDEN_DIR "/tiny_s1_logits.f32";
    const char *inputs = GOLDEN_DIR "/tiny_s1_inputs.json";
    if (access(golden, R_OK) != 0 || access(inputs, R_OK) != 0) {
        fprintf(stderr, "%s: FAIL: %s or %s is missing (tests/golden/make_golden.py writes them)\n",
                name, golden, inputs);
        return 1;
    }
    if (cuda && !have_gpu()) return ms_test_skip(name, "no CUDA GPU");

    char prompt[4096];
    int vocab = 0;
    if (!read_prompt(inputs, prompt, sizeof prompt, &vocab)) {
        fprintf(stderr, "%s: cannot read prompt_ids and vocab_size\n", inputs);
        return 1;
    }
    const char *model = ms_test_tiny_model(1, "f32");
    char dump[256];
    snprintf(dump, sizeof dump, "testdata/golden_%s_%d.f32", device, (int)getpid());
    const int rc = ms_test_system("./modserve run --model %s --image %s/tests/data/demo.png "
                                  "--prompt-ids %s --max-tokens 1 --dump-logits %s --device %s "
                                  ">/dev/null",
                                  model, MS_SOURCE_DIR, prompt, dump, device);
    EXPECTF(rc == 0, "modserve run exited %d", rc);
    float *want = read_f32(golden, vocab), *got = rc == 0 ? read_f32(dump, vocab) : NULL;
    EXPECT(want && got);
    if (want && got) {
        double scale = 0, worst = 0, num = 0, den = 0;
        int at = 0;
        for (int i = 0; i < vocab; i++) {
            scale = fmax(scale, fabs(want[i]));
            const double d = fabs((double)got[i] - want[i]);
            EXPECTF(!isnan(got[i]), "logit %d is NaN", i);
            if (d > worst) {
                worst = d;
                at = i;
            }
            num += d * d;
            den += (double)want[i] * want[i];
        }
        scale = fmax(scale, 1.0);
        const double rel = sqrt(num / fmax(den, 1e-30));
        const int top_want = argmax(want, vocab), top_got = argmax(got, vocab);
        printf("%s: max |err| %.3g at %d (%g vs %g), logit scale %.3g, rel L2 %.3g, "
               "top-1 %d (golden %d)\n", name, worst, at, got[at], want[at], scale, rel, top_got,
               top_want);
        if (!cuda) {
            EXPECTF(worst <= 1e-5 * scale, "max |err| %g over %g", worst, 1e-5 * scale);
            EXPECTF(rel <= 1e-5, "rel L2 %g", rel);
            EXPECT(top_got == top_want);
        } else {
            EXPECTF(worst <= 6e-2 * scale, "max |err| %g over %g", worst, 6e-2 * scale);
            EXPECTF(rel <= 3e-2, "rel L2 %g", rel);
            EXPECTF(rank_of(want, vocab, top_got) < 5, "cuda top-1 %d is golden rank %d", top_got,
                    rank_of(want, vocab, top_got));
        }
    }
    free(want);
    free(got);
    unlink(dump);
    return ms_test_finish(name);
}
