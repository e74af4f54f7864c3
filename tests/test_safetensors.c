/*
 * Safetensors and model-folder tensor sets: good files round-trip in every dtype and
 * both name layouts; every kind of malformed header is an error naming the problem.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/backend.h"
#include "llm/weights.h"
#include "tests/test_util.h"

/* A safetensors buffer from header text and data_size zero bytes (malloc'd). */
static uint8_t *make_st(const char *header, size_t data_size, size_t *size) {
    size_t h = strlen(header);
    *size = 8 + h + data_size;
    uint8_t *b = calloc(1, *size);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    return b;
}

/* Parses header + data; returns the status, err gets the message. */
static ms_status parse_hdr(const char *header, size_t data_size, ms_error *err) {
    size_t size;
    uint8_t *b = make_st(header, data_size, &size);
    ms_safetensors st;
    ms_status s = ms_safetensors_parse(b, size, &st, err);
    if (s == MS_OK) ms_safetensors_clear(&st);
    free(b);
    return s;
}

static void expect_bad(const char *header, size_t data_size, ms_status want, const char *needle) {
    ms_error err = {0};
    ms_status s = parse_hdr(header, data_size, &err);
    EXPECTF(s == want, "header %s: status %s, want %s (%s)", header, ms_status_name(s), ms_status_name(want), err.msg);
    EXPECTF(strstr(err.msg, needle) != NULL, "header %s: message '%s' lacks '%s'", header, err.msg, needle);
}

static void test_malformed(void) {
    ms_error err = {0};
    /* shorter than the length field */
    uint8_t tiny[5] = {0};
    ms_safetensors st;
    EXPECT(ms_safetensors_parse(tiny, sizeof tiny, &st, &err) == MS_ERR_INVALID && strstr(err.msg, "too short"));
    /* header length past the end of the file */
    size_t size;
    uint8_t *b = make_st("{}", 0, &size);
    b[0] = 200;
    EXPECT(ms_safetensors_parse(b, size, &st, &err) == MS_ERR_INVALID && strstr(err.msg, "past the end"));
    b[0] = 0;
    b[7] = 0x80; /* 2^63: overflow-safe comparison */
    EXPECT(ms_safetensors_parse(b, size, &st, &err) == MS_ERR_INVALID && strstr(err.msg, "past the end"));
    free(b);
    /* an empty header is a valid file with no tensors */
    EXPECT(parse_hdr("{}", 0, &err) == MS_OK);
    EXPECT(parse_hdr("{\"__metadata__\":{\"format\":\"pt\"}}  ", 0, &err) == MS_OK);

    expect_bad("{\"a\": ", 0, MS_ERR_INVALID, "not valid JSON");
    expect_bad("[1,2]", 0, MS_ERR_INVALID, "not a JSON object");
    expect_bad("{} trailing", 0, MS_ERR_INVALID, "after its JSON");
    expect_bad("{\"__metadata__\":3}", 0, MS_ERR_INVALID, "__metadata__");
    expect_bad("{\"w\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16, MS_ERR_UNSUPPORTED, "'I64'");
    expect_bad("{\"w\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16, MS_ERR_UNSUPPORTED, "'w'");
    expect_bad("{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, MS_ERR_INVALID, "dtype missing");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1,2],\"data_offsets\":[0,8]}}", 8, MS_ERR_INVALID, "shape[0]");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, MS_ERR_INVALID, "shape[0]");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
               MS_ERR_INVALID, "too many elements");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,8]}}", 8, MS_ERR_INVALID, "shape[0]");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, MS_ERR_UNSUPPORTED,
               "dimensions");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, MS_ERR_INVALID, "past the data");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, MS_ERR_INVALID, "end 0 < begin 8");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, MS_ERR_INVALID, "data_offsets");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 12, MS_ERR_INVALID, "needs 12");
    expect_bad("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16, MS_ERR_INVALID, "[2,2]");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
               12, MS_ERR_INVALID, "overlap");
    expect_bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
               16, MS_ERR_INVALID, "twice");
    /* zero-size tensors and gaps are fine */
    EXPECT(parse_hdr("{\"a\":{\"dtype\":\"F16\",\"shape\":[0,3],\"data_offsets\":[0,0]},"
                     "\"b\":{\"dtype\":\"F16\",\"shape\":[],\"data_offsets\":[4,6]}}",
                     6, &err) == MS_OK);

    /* a truncated file on disk: the message names the path */
    const char *path = "testdata/mf_truncated.safetensors";
    float v[4] = {1, 2, 3, 4};
    ms_st_write_entry e = {.name = "t", .dtype = MS_DTYPE_F32, .ndim = 1, .shape = {4}, .data = v};
    EXPECT(ms_safetensors_write(path, &e, 1, &err) == MS_OK);
    size_t len;
    char *bytes = ms_test_read_file(path, &len);
    FILE *f = fopen(path, "wb");
    fwrite(bytes, 1, len - 3, f);
    fclose(f);
    free(bytes);
    ms_safetensors *stp = NULL;
    EXPECT(ms_safetensors_open(path, &stp, &err) == MS_ERR_INVALID);
    EXPECTF(strstr(err.msg, path) && strstr(err.msg, "'t'"), "%s", err.msg);
    EXPECT(stp == NULL);
    EXPECT(ms_safetensors_open("testdata/mf_no_such.safetensors", &stp, &err) == MS_ERR_NOT_FOUND);
    unlink(path);
}

/* Values exactly representable in every dtype, so the round trip is exact. */
static float value_at(int i) { return (float)(i % 17 - 8) * 0.25f; }

static void test_roundtrip_dtypes(void) {
    const ms_dtype dts[3] = {MS_DTYPE_F32, MS_DTYPE_BF16, MS_DTYPE_F16};
    float src[3 * 5];
    for (int i = 0; i < 15; i++) src[i] = value_at(i);
    uint16_t half[2][15];
    ms_st_write_entry es[4];
    for (int d = 0; d < 3; d++) {
        const void *data = src;
        if (d) {
            ms_convert_host(half[d - 1], dts[d], src, MS_DTYPE_F32, 15);
            data = half[d - 1];
        }
        static const char *names[3] = {"language_model.model.a", "vision_tower.b", "multi_modal_projector.c"};
        es[d] = (ms_st_write_entry){.name = names[d], .dtype = dts[d], .ndim = 2, .shape = {3, 5}, .data = data};
    }
    es[3] = (ms_st_write_entry){.name = "language_model.lm_head.weight", .dtype = MS_DTYPE_BF16, .ndim = 1,
                                .shape = {15}, .data = half[0]};
    ms_error err = {0};
    const char *dir = "testdata/mf_roundtrip";
    ms_test_system("rm -rf %s && mkdir -p %s", dir, dir);
    EXPECT(ms_safetensors_write("testdata/mf_roundtrip/model.safetensors", es, 4, &err) == MS_OK);

    ms_safetensors *st;
    EXPECT(ms_safetensors_open("testdata/mf_roundtrip/model.safetensors", &st, &err) == MS_OK);
    EXPECT(st->n_tensors == 4);
    for (int d = 0; d < 3; d++) {
        const ms_st_tensor *t = ms_safetensors_find(st, es[d].name);
        EXPECT(t && t->dtype == dts[d] && t->ndim == 2 && t->shape[0] == 3 && t->shape[1] == 5);
        EXPECT(t && t->nbytes == 15 * ms_dtype_size(dts[d]) && !memcmp(t->data, es[d].data, t->nbytes));
    }
    ms_safetensors_close(st);

    /* through the tensor set and the CPU backend (act f32), by published names */
    ms_weights *w;
    EXPECT(ms_weights_open(dir, &w, &err) == MS_OK);
    ms_backend *be = ms_backend_cpu_create(1);
    ms_ctx *ctx = ms_ctx_create(be);
    for (int d = 0; d < 4; d++) {
        ms_tensor t;
        int64_t shape2[2] = {3, 5}, shape1[1] = {15};
        EXPECT(ms_weights_load(w, ctx, es[d].name, d < 3 ? 2 : 1, d < 3 ? shape2 : shape1, &t, &err) == MS_OK);
        EXPECT(t.dtype == be->act_dtype);
        float got[15];
        ms_convert_host(got, MS_DTYPE_F32, t.data, t.dtype, 15);
        for (int i = 0; i < 15; i++) EXPECTF(got[i] == value_at(i), "%s[%d] = %g", es[d].name, i, (double)got[i]);
        ms_backend_tensor_free(be, &t);
    }
    /* missing and misshapen tensors name themselves */
    ms_tensor t;
    int64_t bad[2] = {5, 3};
    EXPECT(ms_weights_load(w, ctx, "vision_tower.nope", 2, bad, &t, &err) == MS_ERR_NOT_FOUND);
    EXPECTF(strstr(err.msg, "'vision_tower.nope'") && strstr(err.msg, dir), "%s", err.msg);
    EXPECT(ms_weights_load(w, ctx, "vision_tower.b", 2, bad, &t, &err) == MS_ERR_INVALID);
    EXPECTF(strstr(err.msg, "[3,5]") && strstr(err.msg, "[5,3]") && strstr(err.msg, "vision_tower.b"), "%s", err.msg);
    int64_t flat[1] = {15}; /* same numel, other rank: still a mismatch */
    EXPECT(ms_weights_load(w, ctx, "vision_tower.b", 1, flat, &t, &err) == MS_ERR_INVALID);
    ms_weights_close(w);

    /* the same tensors under the newer layout's names are found by published names */
    static const char *newer[4] = {"model.language_model.a", "model.vision_tower.b", "model.multi_modal_projector.c",
                                   "lm_head.weight"};
    for (int d = 0; d < 4; d++) es[d].name = newer[d];
    EXPECT(ms_safetensors_write("testdata/mf_roundtrip/model.safetensors", es, 4, &err) == MS_OK);
    EXPECT(ms_weights_open(dir, &w, &err) == MS_OK);
    static const char *published[4] = {"language_model.model.a", "vision_tower.b", "multi_modal_projector.c",
                                       "language_model.lm_head.weight"};
    for (int d = 0; d < 4; d++) {
        const ms_st_tensor *ft = ms_weights_find(w, published[d]);
        EXPECTF(ft && !strcmp(ft->name, newer[d]), "%s", published[d]);
        EXPECT(ms_weights_find(w, newer[d]) == ft);
    }
    EXPECT(ms_weights_find(w, "language_model.model.b") == NULL);
    ms_weights_close(w);
    ms_ctx_destroy(ctx);
    ms_backend_destroy(be);
    ms_test_system("rm -rf %s", dir);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void test_sharded(void) {
    const char *dir = "testdata/mf_sharded";
    ms_test_system("rm -rf %s && mkdir -p %s", dir, dir);
    float a[4] = {1, 2, 3, 4}, b[2] = {5, 6};
    ms_st_write_entry ea = {.name = "vision_tower.a", .dtype = MS_DTYPE_F32, .ndim = 1, .shape = {4}, .data = a};
    ms_st_write_entry eb = {.name = "vision_tower.b", .dtype = MS_DTYPE_F32, .ndim = 1, .shape = {2}, .data = b};
    ms_error err = {0};
    EXPECT(ms_safetensors_write("testdata/mf_sharded/model-00001-of-00002.safetensors", &ea, 1, &err) == MS_OK);
    EXPECT(ms_safetensors_write("testdata/mf_sharded/model-00002-of-00002.safetensors", &eb, 1, &err) == MS_OK);
    write_text("testdata/mf_sharded/model.safetensors.index.json",
               "{\"metadata\":{\"total_size\":24},\"weight_map\":{"
               "\"vision_tower.a\":\"model-00001-of-00002.safetensors\","
               "\"vision_tower.b\":\"model-00002-of-00002.safetensors\"}}");
    ms_weights *w;
    EXPECT(ms_weights_open(dir, &w, &err) == MS_OK);
    EXPECT(ms_weights_count(w) == 2);
    const ms_st_tensor *t = ms_weights_find(w, "vision_tower.b");
    EXPECT(t && t->shape[0] == 2 && !memcmp(t->data, b, sizeof b));
    ms_weights_close(w);

    /* the index names a tensor its shard lacks */
    write_text("testdata/mf_sharded/model.safetensors.index.json",
               "{\"weight_map\":{\"vision_tower.a\":\"model-00002-of-00002.safetensors\"}}");
    EXPECT(ms_weights_open(dir, &w, &err) == MS_ERR_INVALID);
    EXPECTF(strstr(err.msg, "vision_tower.a"), "%s", err.msg);
    /* paths outside the folder are refused */
    write_text("testdata/mf_sharded/model.safetensors.index.json",
               "{\"weight_map\":{\"vision_tower.a\":\"../x.safetensors\"}}");
    EXPECT(ms_weights_open(dir, &w, &err) == MS_ERR_INVALID);
    /* a missing shard */
    write_text("testdata/mf_sharded/model.safetensors.index.json",
               "{\"weight_map\":{\"vision_tower.a\":\"model-00009.safetensors\"}}");
    EXPECT(ms_weights_open(dir, &w, &err) == MS_ERR_NOT_FOUND);
    EXPECTF(strstr(err.msg, "model-00009.safetensors"), "%s", err.msg);
    write_text("testdata/mf_sharded/model.safetensors.index.json", "[]");
    EXPECT(ms_weights_open(dir, &w, &err) == MS_ERR_INVALID);
    /* the same tensor in two shards */
    write_text("testdata/mf_sharded/model.safetensors.index.json",
               "{\"weight_map\":{\"vision_tower.a\":\"model-00001-of-00002.safetensors\","
               "\"vision_tower.b\":\"model-00002-of-00002.safetensors\"}}");
    EXPECT(ms_safetensors_write("testdata/mf_sharded/model-00002-of-00002.safetensors", (ms_st_write_entry[]){eb, ea},
                                2, &err) == MS_OK);
    EXPECT(ms_weights_open(dir, &w, &err) == MS_ERR_INVALID);
    EXPECTF(strstr(err.msg, "two files"), "%s", err.msg);
    ms_test_system("rm -rf %s", dir);
    EXPECT(ms_weights_open(dir, &w, &err) == MS_ERR_NOT_FOUND);
}

int main(void) {
    test_malformed();
    test_roundtrip_dtypes();
    test_sharded();
    return ms_test_finish("test_safetensors");
}
