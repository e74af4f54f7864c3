/*
 * A model folder's tensor set (see weights.h): model.safetensors, or the shards that
 * model.safetensors.index.json lists (each opened once), merged into one index sorted
 * by name; or, for benchmarks, a file-less set whose values are generated on demand.
 *
 * Loading copies in chunks of rows: the file's bytes go to an aligned staging buffer
 * (the mapping gives no alignment guarantee), are converted to the backend's act dtype,
 * and are written straight into the tensor on the CPU or uploaded row block by row
 * block to a device, so host memory stays a few MB whatever the tensor size.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "llm/model_init.h"
#include "llm/safetensors_internal.h"
#include "llm/weights.h"

struct ms_weights {
    char *dir;                    /* for messages */
    ms_safetensors **files;
    int32_t n_files;
    const ms_st_tensor **index;   /* every tensor of every file, sorted by name */
    int32_t n;
    /* file-less (dummy) sets */
    ms_model_tensor *specs;       /* [n] value distributions, parallel to dummy */
    ms_st_tensor *dummy;          /* [n] */
    uint64_t seed;
};

static int cmp_ptr_name(const void *a, const void *b) {
    return strcmp((*(const ms_st_tensor *const *)a)->name, (*(const ms_st_tensor *const *)b)->name);
}

/* Sorts the merged index; MS_ERR_INVALID if a name appears in two files. */
static ms_status build_index(ms_weights *w, ms_error *err) {
    int32_t n = 0;
    for (int32_t f = 0; f < w->n_files; f++) n += w->files[f]->n_tensors;
    w->index = ms_xcalloc((size_t)n + 1, sizeof *w->index);
    for (int32_t f = 0; f < w->n_files; f++)
        for (int32_t i = 0; i < w->files[f]->n_tensors; i++) w->index[w->n++] = &w->files[f]->tensors[i];
    qsort(w->index, (size_t)w->n, sizeof *w->index, cmp_ptr_name);
    for (int32_t i = 1; i < w->n; i++)
        if (!strcmp(w->index[i]->name, w->index[i - 1]->name))
            return ms_errorf(err, MS_ERR_INVALID, "tensor '%.200s' is in two files of %s", w->index[i]->name, w->dir);
    return MS_OK;
}

static bool file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static ms_status open_file(ms_weights *w, const char *file, ms_safetensors **out, ms_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", w->dir, file);
    ms_status s = ms_safetensors_open(path, out, err);
    if (s) return s;
    w->files = ms_xrealloc(w->files, (size_t)(w->n_files + 1) * sizeof *w->files);
    w->files[w->n_files++] = *out;
    return MS_OK;
}

/* model.safetensors.index.json: {"metadata": {...}, "weight_map": {name: file}}. */
static ms_status open_sharded(ms_weights *w, const char *index_path, ms_error *err) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = fopen(index_path, "rb");
    if (!f) return ms_errorf(err, MS_ERR_IO, "%s: %s", index_path, strerror(errno));
    enum { MAX_INDEX = 64 << 20 };
    text = ms_xmalloc(MAX_INDEX + 1);
    len = fread(text, 1, MAX_INDEX + 1, f);
    fclose(f);
    if (len > MAX_INDEX) {
        free(text);
        return ms_errorf(err, MS_ERR_LIMIT, "%s: larger than %d bytes", index_path, MAX_INDEX);
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *map = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(root);
        return ms_errorf(err, MS_ERR_INVALID, "%s: not JSON with a \"weight_map\" object", index_path);
    }
    ms_status s = MS_OK;
    /* Open every distinct shard once (shards are few; a linear search is fine). */
    for (const cJSON *e = map->child; e && !s; e = e->next) {
        if (!cJSON_IsString(e) || !e->valuestring[0] || strchr(e->valuestring, '/') || e->valuestring[0] == '.') {
            s = ms_errorf(err, MS_ERR_INVALID, "%s: weight_map['%.200s'] is not a file name in the folder", index_path,
                          e->string);
            break;
        }
        bool seen = false;
        for (int32_t i = 0; i < w->n_files && !seen; i++) {
            const char *p = strrchr(w->files[i]->path, '/');
            seen = !strcmp(p ? p + 1 : w->files[i]->path, e->valuestring);
        }
        ms_safetensors *st;
        if (!seen) s = open_file(w, e->valuestring, &st, err);
    }
    /* Every listed tensor must be where the index says. */
    for (const cJSON *e = map->child; e && !s; e = e->next) {
        for (int32_t i = 0; i < w->n_files; i++) {
            const char *p = strrchr(w->files[i]->path, '/');
            if (strcmp(p ? p + 1 : w->files[i]->path, e->valuestring)) continue;
            if (!ms_safetensors_find(w->files[i], e->string))
                s = ms_errorf(err, MS_ERR_INVALID, "%s lists tensor '%.200s' in %s, which does not hold it",
                              index_path, e->string, e->valuestring);
        }
    }
    if (!s && w->n_files == 0) s = ms_errorf(err, MS_ERR_INVALID, "%s: weight_map is empty", index_path);
    cJSON_Delete(root);
    return s;
}

ms_status ms_weights_open(const char *model_dir, ms_weights **out, ms_error *err) {
    *out = NULL;
    ms_weights *w = ms_xcalloc(1, sizeof *w);
    w->dir = ms_xstrdup(model_dir);
    char path[4096];
    ms_status s;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", model_dir);
    if (file_exists(path)) {
        s = open_sharded(w, path, err);
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors", model_dir);
        ms_safetensors *st;
        if (file_exists(path)) s = open_file(w, "model.safetensors", &st, err);
        else s = ms_errorf(err, MS_ERR_NOT_FOUND, "no model.safetensors or model.safetensors.index.json in %s",
                           model_dir);
    }
    if (!s) s = build_index(w, err);
    if (s) {
        ms_weights_close(w);
        return s;
    }
    *out = w;
    return MS_OK;
}

void ms_weights_close(ms_weights *w) {
    if (!w) return;
    for (int32_t i = 0; i < w->n_files; i++) ms_safetensors_close(w->files[i]);
    free(w->files);
    free(w->index);
    free(w->specs);
    free(w->dummy);
    free(w->dir);
    free(w);
}

static const ms_st_tensor *lookup(const ms_weights *w, const char *name) {
    ms_st_tensor key = {.name = (char *)name};
    const ms_st_tensor *kp = &key;
    const ms_st_tensor **hit = bsearch(&kp, w->index, (size_t)w->n, sizeof *w->index, cmp_ptr_name);
    return hit ? *hit : NULL;
}

const ms_st_tensor *ms_weights_find(const ms_weights *w, const char *name) {
    const ms_st_tensor *t = lookup(w, name);
    if (t) return t;
    char alt[512];
    if (ms_weights_name_to_new(name, alt, sizeof alt) && (t = lookup(w, alt))) return t;
    if (ms_weights_name_to_published(name, alt, sizeof alt) && (t = lookup(w, alt))) return t;
    return NULL;
}

int32_t ms_weights_count(const ms_weights *w) { return w->n; }

const ms_st_tensor *ms_weights_at(const ms_weights *w, int32_t i) {
    MS_CHECK(i >= 0 && i < w->n);
    return w->index[i];
}

ms_status ms_weights_open_dummy(const ms_llava_config *cfg, uint64_t seed, ms_weights **out, ms_error *err) {
    ms_weights *w = ms_xcalloc(1, sizeof *w);
    w->dir = ms_xstrdup("(dummy weights)");
    w->seed = seed;
    int32_t n = ms_llava_tensor_list(cfg, &w->specs);
    w->dummy = ms_xcalloc((size_t)n, sizeof *w->dummy);
    w->index = ms_xcalloc((size_t)n, sizeof *w->index);
    for (int32_t i = 0; i < n; i++) {
        ms_st_tensor *t = &w->dummy[i];
        t->name = w->specs[i].name;
        t->dtype = MS_DTYPE_F32;
        t->ndim = w->specs[i].ndim;
        memcpy(t->shape, w->specs[i].shape, sizeof t->shape);
        t->nbytes = (size_t)ms_model_tensor_numel(&w->specs[i]) * sizeof(float);
        w->index[i] = t;
    }
    w->n = n;
    qsort(w->index, (size_t)n, sizeof *w->index, cmp_ptr_name);
    *out = w;
    (void)err;
    return MS_OK;
}

enum { LOAD_CHUNK = 1 << 20 }; /* elements staged at a time */

ms_status ms_weights_load(const ms_weights *w, ms_ctx *ctx, const char *name, int ndim, const int64_t *shape,
                          ms_tensor *out, ms_error *err) {
    memset(out, 0, sizeof *out);
    const ms_st_tensor *t = ms_weights_find(w, name);
    if (!t) return ms_errorf(err, MS_ERR_NOT_FOUND, "tensor '%s' missing from %s", name, w->dir);
    bool same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char a[128], b[128];
        return ms_errorf(err, MS_ERR_INVALID, "tensor '%s' in %s has shape %s, expected %s", name, w->dir,
                         ms_st_shape_str(t->ndim, t->shape, a, sizeof a), ms_st_shape_str(ndim, shape, b, sizeof b));
    }
    ms_backend *be = ctx->backend;
    ms_dtype act = be->act_dtype;
    ms_status s = ms_backend_tensor(be, act, ndim, shape, out, err);
    if (s) return ms_error_wrap(err, "loading tensor '%s'", name);

    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= shape[i];
    if (numel == 0) return MS_OK;
    int64_t cols = ndim ? shape[ndim - 1] : 1, rows = numel / cols;
    int64_t step = LOAD_CHUNK / cols > 0 ? LOAD_CHUNK / cols : 1;
    const ms_model_tensor *spec = w->specs ? &w->specs[t - w->dummy] : NULL;
    ms_dtype src_dt = t->dtype;
    size_t src_es = ms_dtype_size(src_dt), dst_es = ms_dtype_size(act);
    bool on_host = be->device == MS_DEVICE_CPU;
    uint8_t *src = ms_xmalloc((size_t)(step * cols) * src_es);
    uint8_t *dst = on_host ? NULL : ms_xmalloc((size_t)(step * cols) * dst_es);
    for (int64_t r0 = 0; r0 < rows; r0 += step) {
        int64_t nr = rows - r0 < step ? rows - r0 : step, n = nr * cols;
        if (spec) ms_model_tensor_fill(spec, w->seed, r0 * cols, n, (float *)src);
        else memcpy(src, t->data + (size_t)(r0 * cols) * src_es, (size_t)n * src_es);
        ms_tensor view = ms_tensor_row_view(out, r0, nr);
        void *target = on_host ? view.data : dst;
        if (src_dt == act) memcpy(target, src, (size_t)n * src_es);
        else ms_convert_host(target, act, src, src_dt, n);
        if (!on_host) {
            ms_op_upload(ctx, &view, dst);
            ms_ctx_sync(ctx); /* dst is reused by the next chunk */
        }
    }
    free(src);
    free(dst);
    return MS_OK;
}
