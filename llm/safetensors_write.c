/*
 * Safetensors writing: the header (JSON, space-padded to a multiple of 8 bytes as the
 * reference writer does, with __metadata__ {"format": "pt"} which transformers wants),
 * then each tensor's bytes back to back in entry order. Streaming: the caller appends
 * data piece by piece, so no tensor needs to be whole in memory.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "llm/safetensors_internal.h"
#include "llm/weights.h"

struct ms_st_writer {
    FILE *f;
    char *path;
    uint64_t expected;  /* data bytes the header promised */
    uint64_t written;
};

static cJSON *raw_u64(uint64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return cJSON_CreateRaw(buf);
}

/* Header JSON text for the entries; *total gets the data size. NULL + err on bad entry. */
static char *header_json(const ms_st_write_entry *es, int32_t n, uint64_t *total, ms_error *err) {
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    uint64_t off = 0;
    for (int32_t i = 0; i < n; i++) {
        const ms_st_write_entry *e = &es[i];
        const char *dt = ms_st_dtype_name(e->dtype);
        if (!dt || e->ndim < 0 || e->ndim > MS_MAX_DIMS || !e->name || !strcmp(e->name, "__metadata__")) {
            cJSON_Delete(root);
            ms_errorf(err, MS_ERR_INVALID, "tensor '%s': bad dtype, rank or name for safetensors",
                      e->name ? e->name : "(null)");
            return NULL;
        }
        if (cJSON_GetObjectItemCaseSensitive(root, e->name)) {
            cJSON_Delete(root);
            ms_errorf(err, MS_ERR_INVALID, "tensor '%s' given twice", e->name);
            return NULL;
        }
        uint64_t bytes = ms_dtype_size(e->dtype);
        cJSON *shape = cJSON_CreateArray();
        for (int32_t d = 0; d < e->ndim; d++) {
            MS_CHECK(e->shape[d] >= 0);
            bytes *= (uint64_t)e->shape[d];
            cJSON_AddItemToArray(shape, raw_u64((uint64_t)e->shape[d]));
        }
        cJSON *t = cJSON_AddObjectToObject(root, e->name);
        cJSON_AddStringToObject(t, "dtype", dt);
        cJSON_AddItemToObject(t, "shape", shape);
        cJSON *offs = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(offs, raw_u64(off));
        cJSON_AddItemToArray(offs, raw_u64(off + bytes));
        off += bytes;
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    MS_CHECK(text != NULL);
    *total = off;
    return text;
}

ms_status ms_st_writer_open(const char *path, const ms_st_write_entry *entries, int32_t n, ms_st_writer **out,
                            ms_error *err) {
    *out = NULL;
    uint64_t total = 0;
    char *json = header_json(entries, n, &total, err);
    if (!json) return err ? err->status : MS_ERR_INVALID;
    size_t len = strlen(json);
    size_t padded = (len + 7) / 8 * 8;
    FILE *f = fopen(path, "wb");
    if (!f) {
        int e = errno;
        free(json);
        return ms_errorf(err, MS_ERR_IO, "%s: %s", path, strerror(e));
    }
    setvbuf(f, NULL, _IOFBF, 1 << 22);
    uint8_t lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    bool ok = fwrite(lenbuf, 1, 8, f) == 8 && fwrite(json, 1, len, f) == len;
    for (size_t i = len; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
    free(json);
    if (!ok) {
        fclose(f);
        unlink(path);
        return ms_errorf(err, MS_ERR_IO, "%s: write failed", path);
    }
    ms_st_writer *w = ms_xcalloc(1, sizeof *w);
    w->f = f;
    w->path = ms_xstrdup(path);
    w->expected = total;
    *out = w;
    return MS_OK;
}

ms_status ms_st_writer_append(ms_st_writer *w, const void *data, size_t nbytes, ms_error *err) {
    MS_CHECKF(w->written + nbytes <= w->expected, "%s: appending %zu bytes past the %llu the header holds",
              w->path, nbytes, (unsigned long long)w->expected);
    if (nbytes && fwrite(data, 1, nbytes, w->f) != nbytes)
        return ms_errorf(err, MS_ERR_IO, "%s: write failed: %s", w->path, strerror(errno));
    w->written += nbytes;
    return MS_OK;
}

void ms_st_writer_abort(ms_st_writer *w) {
    if (!w) return;
    fclose(w->f);
    unlink(w->path);
    free(w->path);
    free(w);
}

ms_status ms_st_writer_finish(ms_st_writer *w, ms_error *err) {
    MS_CHECKF(w->written == w->expected, "%s: %llu of %llu data bytes written", w->path,
              (unsigned long long)w->written, (unsigned long long)w->expected);
    bool ok = fflush(w->f) == 0 && !ferror(w->f);
    int e = errno;
    if (fclose(w->f) != 0) ok = false;
    if (!ok) {
        unlink(w->path);
        ms_status s = ms_errorf(err, MS_ERR_IO, "%s: write failed: %s", w->path, strerror(e));
        free(w->path);
        free(w);
        return s;
    }
    free(w->path);
    free(w);
    return MS_OK;
}

ms_status ms_safetensors_write(const char *path, const ms_st_write_entry *entries, int32_t n, ms_error *err) {
    ms_st_writer *w;
    ms_status s = ms_st_writer_open(path, entries, n, &w, err);
    if (s) return s;
    for (int32_t i = 0; i < n; i++) {
        size_t bytes = ms_dtype_size(entries[i].dtype);
        for (int32_t d = 0; d < entries[i].ndim; d++) bytes *= (size_t)entries[i].shape[d];
        if ((s = ms_st_writer_append(w, entries[i].data, bytes, err))) {
            ms_st_writer_abort(w);
            return s;
        }
    }
    return ms_st_writer_finish(w, err);
}
