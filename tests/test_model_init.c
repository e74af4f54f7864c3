/*
 * Random-weight model folders: the same seed gives byte-identical files, another seed
 * other files; every tensor LlavaForConditionalGeneration needs is there with its
 * shape and the seeded values, in every dtype, both layouts, sharded or not; file-less
 * dummy weights load the same values; `modserve model init` writes the same bytes.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench/trace.h"
#include "kernels/backend.h"
#include "llm/model_init.h"
#include "llm/weights.h"
#include "tests/test_util.h"

static ms_llava_config g_tiny;

static void write_model(const char *dir, uint64_t seed, ms_dtype dt, bool new_layout, int shards) {
    ms_test_system("rm -rf %s", dir);
    ms_model_init_opts o = {.seed = seed, .dtype = dt, .new_layout = new_layout, .shards = shards};
    ms_error err = {0};
    ms_status s = ms_model_init_write(&g_tiny, &o, dir, &err);
    EXPECTF(s == MS_OK, "%s: %s", dir, err.msg);
}

static bool same_file(const char *a, const char *b) {
    size_t la, lb;
    char *x = ms_test_read_file(a, &la), *y = ms_test_read_file(b, &lb);
    bool same = x && y && la == lb && !memcmp(x, y, la);
    free(x);
    free(y);
    return same;
}

/* The tensor list has what transformers' modules have. */
static void test_tensor_list(void) {
    ms_model_tensor *ts;
    int32_t n = ms_llava_tensor_list(&g_tiny, &ts);
    /* vision: 3 embeddings + pre/post norms (4) + 16 per layer; projector 4; text: embed,
     * 9 per layer, norm, lm_head */
    EXPECT(n == 3 + 4 + 16 * 3 + 4 + 1 + 9 * 3 + 1 + 1);
    bool seen_pre = false, seen_lm = false, seen_pos = false, seen_k = false;
    for (int32_t i = 0; i < n; i++) {
        if (!strcmp(ts[i].name, "vision_tower.vision_model.pre_layrnorm.weight")) seen_pre = true;
        if (!strcmp(ts[i].name, "language_model.lm_head.weight"))
            seen_lm = ts[i].shape[0] == 1024 && ts[i].shape[1] == 96;
        if (!strcmp(ts[i].name, "vision_tower.vision_model.embeddings.position_embedding.weight"))
            seen_pos = ts[i].shape[0] == 65 && ts[i].shape[1] == 64;
        if (!strcmp(ts[i].name, "language_model.model.layers.2.self_attn.k_proj.weight"))
            seen_k = ts[i].shape[0] == 32 && ts[i].shape[1] == 96;
    }
    EXPECT(seen_pre && seen_lm && seen_pos && seen_k);
    free(ts);
    ms_llava_config tied = g_tiny;
    tied.text.tie_word_embeddings = true;
    EXPECT(ms_llava_tensor_list(&tied, &ts) == n - 1);
    free(ts);
}

/* Seeded values: chunk-independent, seed-dependent, with the intended spread. */
static void test_fill(void) {
    ms_model_tensor t = {.name = "x", .ndim = 1, .shape = {200000}, .mean = 0, .std = 0.5f};
    float *all = malloc(200000 * sizeof(float)), part[1000];
    ms_model_tensor_fill(&t, 7, 0, 200000, all);
    ms_model_tensor_fill(&t, 7, 65000, 1000, part); /* straddles a block edge */
    EXPECT(!memcmp(part, all + 65000, sizeof part));
    double sum = 0, sq = 0;
    for (int i = 0; i < 200000; i++) {
        sum += all[i];
        sq += (double)all[i] * all[i];
    }
    EXPECT_NEAR(sum / 200000, 0.0, 0.01);
    EXPECT_NEAR(sqrt(sq / 200000), 0.5, 0.01);
    ms_model_tensor_fill(&t, 8, 65000, 1000, part);
    EXPECT(memcmp(part, all + 65000, sizeof part) != 0);
    free(all);
}

/* Every tensor of the folder has the seeded values (rounded to the file dtype). */
static void check_values(const char *dir, uint64_t seed, ms_dtype dt) {
    ms_weights *w;
    ms_error err = {0};
    if (ms_weights_open(dir, &w, &err) != MS_OK) {
        EXPECTF(false, "%s: %s", dir, err.msg);
        return;
    }
    ms_model_tensor *ts;
    int32_t n = ms_llava_tensor_list(&g_tiny, &ts);
    EXPECT(ms_weights_count(w) == n);
    for (int32_t i = 0; i < n; i++) {
        const ms_st_tensor *t = ms_weights_find(w, ts[i].name);
        EXPECTF(t != NULL, "%s: %s missing", dir, ts[i].name);
        if (!t) continue;
        EXPECT(t->dtype == dt && t->ndim == ts[i].ndim && !memcmp(t->shape, ts[i].shape, sizeof t->shape));
        int64_t numel = ms_model_tensor_numel(&ts[i]);
        float *want = malloc((size_t)numel * sizeof(float)), *got = malloc((size_t)numel * sizeof(float));
        uint8_t *raw = malloc(t->nbytes);
        memcpy(raw, t->data, t->nbytes); /* the mapping gives no alignment */
        ms_model_tensor_fill(&ts[i], seed, 0, numel, want);
        ms_convert_host(got, MS_DTYPE_F32, raw, dt, numel);
        int bad = 0;
        for (int64_t k = 0; k < numel; k++) {
            float r = want[k];
            if (dt != MS_DTYPE_F32) {
                uint16_t h;
                ms_convert_host(&h, dt, &want[k], MS_DTYPE_F32, 1);
                ms_convert_host(&r, MS_DTYPE_F32, &h, dt, 1);
            }
            bad += got[k] != r;
        }
        EXPECTF(bad == 0, "%s: %s: %d values differ", dir, ts[i].name, bad);
        free(want);
        free(got);
        free(raw);
    }
    free(ts);
    ms_weights_close(w);
}

static void test_files(void) {
    write_model("testdata/mf_init_a", 5, MS_DTYPE_BF16, false, 1);
    write_model("testdata/mf_init_b", 5, MS_DTYPE_BF16, false, 1);
    write_model("testdata/mf_init_c", 6, MS_DTYPE_BF16, false, 1);
    EXPECT(same_file("testdata/mf_init_a/model.safetensors", "testdata/mf_init_b/model.safetensors"));
    EXPECT(same_file("testdata/mf_init_a/config.json", "testdata/mf_init_b/config.json"));
    EXPECT(!same_file("testdata/mf_init_a/model.safetensors", "testdata/mf_init_c/model.safetensors"));
    check_values("testdata/mf_init_a", 5, MS_DTYPE_BF16);
    check_values("testdata/mf_init_c", 6, MS_DTYPE_BF16);

    write_model("testdata/mf_init_f32", 5, MS_DTYPE_F32, false, 1);
    check_values("testdata/mf_init_f32", 5, MS_DTYPE_F32);
    write_model("testdata/mf_init_f16", 5, MS_DTYPE_F16, true, 1);
    check_values("testdata/mf_init_f16", 5, MS_DTYPE_F16);
    write_model("testdata/mf_init_shard", 5, MS_DTYPE_F32, true, 3);
    check_values("testdata/mf_init_shard", 5, MS_DTYPE_F32);
    EXPECT(ms_test_system("test -f testdata/mf_init_shard/model-00003-of-00003.safetensors") == 0);
    EXPECT(ms_test_system("grep -q model.language_model.layers.0.mlp.up_proj.weight "
                          "testdata/mf_init_shard/model.safetensors.index.json") == 0);

    ms_model_init_opts o = {.seed = 1, .dtype = MS_DTYPE_F32, .shards = 9999};
    ms_error err = {0};
    EXPECT(ms_model_init_write(&g_tiny, &o, "testdata/mf_init_bad", &err) == MS_ERR_INVALID);
    ms_test_system("rm -rf testdata/mf_init_bad");
}

/* Dummy weights load exactly what the f32 files hold; a loaded bf16 tensor converts. */
static void test_dummy(void) {
    ms_backend *be = ms_backend_cpu_create(1);
    ms_ctx *ctx = ms_ctx_create(be);
    ms_weights *dummy, *files;
    ms_error err = {0};
    EXPECT(ms_weights_open_dummy(&g_tiny, 5, &dummy, &err) == MS_OK);
    EXPECT(ms_weights_open("testdata/mf_init_f32", &files, &err) == MS_OK);
    EXPECT(ms_weights_count(dummy) == ms_weights_count(files));
    for (int32_t i = 0; i < ms_weights_count(files); i++) {
        const ms_st_tensor *t = ms_weights_at(files, i);
        const ms_st_tensor *d = ms_weights_find(dummy, t->name);
        EXPECTF(d && d->data == NULL && d->ndim == t->ndim && !memcmp(d->shape, t->shape, sizeof d->shape), "%s",
                t->name);
        if (!d) continue;
        ms_tensor a, b;
        EXPECT(ms_weights_load(dummy, ctx, t->name, t->ndim, t->shape, &a, &err) == MS_OK);
        EXPECT(ms_weights_load(files, ctx, t->name, t->ndim, t->shape, &b, &err) == MS_OK);
        EXPECTF(!memcmp(a.data, b.data, ms_tensor_nbytes(&a)), "%s", t->name);
        ms_backend_tensor_free(be, &a);
        ms_backend_tensor_free(be, &b);
    }
    int64_t shape[2] = {1024, 96};
    ms_tensor t;
    EXPECT(ms_weights_load(dummy, ctx, "language_model.model.nope", 2, shape, &t, &err) == MS_ERR_NOT_FOUND);
    EXPECTF(strstr(err.msg, "language_model.model.nope"), "%s", err.msg);
    ms_weights_close(dummy);
    ms_weights_close(files);
    ms_ctx_destroy(ctx);
    ms_backend_destroy(be);
}

/* The command writes the same bytes as the library, plus the tokenizer. */
static void test_cli(void) {
    int rc = ms_test_system("./modserve model init --preset tiny --seed 5 --dtype f32 --out testdata/mf_cli >/dev/null");
    EXPECT(rc == 0);
    EXPECT(same_file("testdata/mf_cli/model.safetensors", "testdata/mf_init_f32/model.safetensors"));
    EXPECT(ms_test_system("test -f testdata/mf_cli/tokenizer.json") == 0);
    EXPECT(ms_test_system("./modserve model check --model testdata/mf_cli >/dev/null") == 0);
    EXPECT(ms_test_system("./modserve model init --preset nope --out testdata/mf_cli2 2>/dev/null") == 1);
    EXPECT(ms_test_system("./modserve model init --preset tiny --dtype int8 --out testdata/mf_cli2 2>/dev/null") == 2);
    ms_test_system("rm -rf testdata/mf_cli testdata/mf_cli2");
}

/* The tiny preset is what the main job (scripts/demo.sh) serves the shipped synthetic
 * sample with: its context must hold every request of the sample (prompt + output),
 * or the first report a user sees counts refusals as failures. */
static void test_tiny_context_holds_sample(void) {
    ms_trace_reader *r;
    ms_error err = {0};
    EXPECTF(ms_trace_open(MS_SOURCE_DIR "/bench/data/synthetic-sample.csv.gz", MS_TRACE_BAD_FAIL, &r, &err) == MS_OK,
            "%s", err.msg);
    if (err.status != MS_OK) return;
    int64_t rows = 0, longest = 0;
    for (;;) {
        ms_trace_row row;
        bool eof;
        if (ms_trace_next(r, &row, &eof, &err) != MS_OK || eof) break;
        rows++;
        const int64_t need = (int64_t)row.context_tokens + row.generated_tokens;
        if (need > longest) longest = need;
    }
    ms_trace_close(r);
    EXPECTF(err.status == MS_OK, "%s", err.msg);
    EXPECTF(rows > 1000, "%lld rows read", (long long)rows);
    EXPECTF(longest <= g_tiny.text.max_position_embeddings, "the sample's longest request needs %lld tokens, the tiny "
            "context is %d", (long long)longest, g_tiny.text.max_position_embeddings);
}

int main(void) {
    ms_error err = {0};
    if (ms_llava_preset("tiny", &g_tiny, &err) != MS_OK) return 1;
    test_tensor_list();
    test_tiny_context_holds_sample();
    test_fill();
    test_files();
    test_dummy();
    test_cli();
    ms_test_system("rm -rf testdata/mf_init_a testdata/mf_init_b testdata/mf_init_c testdata/mf_init_f32 "
                   "testdata/mf_init_f16 testdata/mf_init_shard");
    return ms_test_finish("test_model_init");
}
