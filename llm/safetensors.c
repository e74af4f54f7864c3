/*
 * Safetensors reading (see weights.h): the file is mmapped and every tensor's data
 * points into the mapping. The header is untrusted input, so every number in it is
 * checked before it is used: header length inside the file, offsets inside the data
 * area, byte size = numel * dtype size without overflow, no two tensors overlapping,
 * no duplicate names.
 */
#include "llm/weights.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "llm/safetensors_internal.h"

enum { MS_ST_MAX_HEADER = 100 << 20 }; /* as the reference implementation */

/* Integer-valued JSON number in [0, 2^53]: exact in a double. */
static bool json_u53(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    if (!isfinite(d) || d < 0 || d != floor(d) || d > 9007199254740992.0) return false;
    *out = (uint64_t)d;
    return true;
}

bool ms_st_dtype_from_name(const char *s, ms_dtype *dt) {
    if (!strcmp(s, "F32")) *dt = MS_DTYPE_F32;
    else if (!strcmp(s, "BF16")) *dt = MS_DTYPE_BF16;
    else if (!strcmp(s, "F16")) *dt = MS_DTYPE_F16;
    else return false;
    return true;
}

const char *ms_st_dtype_name(ms_dtype dt) {
    switch (dt) {
    case MS_DTYPE_F32: return "F32";
    case MS_DTYPE_BF16: return "BF16";
    case MS_DTYPE_F16: return "F16";
    default: return NULL;
    }
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const ms_st_tensor *)a)->name, ((const ms_st_tensor *)b)->name);
}

typedef struct span {
    uint64_t begin, end;
    int32_t idx;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* One header entry into t (name already set); byte range into *sp. */
static ms_status parse_entry(const cJSON *e, uint64_t data_size, ms_st_tensor *t, span *sp, ms_error *err) {
    const char *nm = t->name;
    if (!cJSON_IsObject(e)) return ms_errorf(err, MS_ERR_INVALID, "tensor '%.200s': entry is not an object", nm);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return ms_errorf(err, MS_ERR_INVALID, "tensor '%.200s': dtype missing or not a string", nm);
    if (!ms_st_dtype_from_name(dt->valuestring, &t->dtype))
        return ms_errorf(err, MS_ERR_UNSUPPORTED, "tensor '%.200s': dtype '%.32s' is not supported (F32, BF16, F16)",
                         nm, dt->valuestring);
    if (!cJSON_IsArray(sh)) return ms_errorf(err, MS_ERR_INVALID, "tensor '%.200s': shape missing or not a list", nm);
    int nd = cJSON_GetArraySize(sh);
    if (nd > MS_MAX_DIMS)
        return ms_errorf(err, MS_ERR_UNSUPPORTED, "tensor '%.200s': %d dimensions (at most %d supported)", nm, nd,
                         MS_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    bool overflow = false;
    for (int i = 0; i < nd; i++) {
        uint64_t d;
        if (!json_u53(cJSON_GetArrayItem(sh, i), &d) || d > INT64_MAX)
            return ms_errorf(err, MS_ERR_INVALID, "tensor '%.200s': shape[%d] is not a non-negative integer", nm, i);
        t->shape[i] = (int64_t)d;
        if (d != 0 && numel > UINT64_MAX / d) overflow = true;
        else numel *= d;
    }
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return ms_errorf(err, MS_ERR_INVALID, "tensor '%.200s': data_offsets missing or not [begin, end]", nm);
    uint64_t b, en;
    if (!json_u53(cJSON_GetArrayItem(off, 0), &b) || !json_u53(cJSON_GetArrayItem(off, 1), &en))
        return ms_errorf(err, MS_ERR_INVALID, "tensor '%.200s': data_offsets are not non-negative integers", nm);
    if (en < b)
        return ms_errorf(err, MS_ERR_INVALID, "tensor '%.200s': data_offsets end %llu < begin %llu", nm,
                         (unsigned long long)en, (unsigned long long)b);
    if (en > data_size)
        return ms_errorf(err, MS_ERR_INVALID,
                         "tensor '%.200s': data_offsets [%llu, %llu] run past the data area (%llu bytes)", nm,
                         (unsigned long long)b, (unsigned long long)en, (unsigned long long)data_size);
    uint64_t esize = ms_dtype_size(t->dtype);
    if (overflow || numel > UINT64_MAX / esize)
        return ms_errorf(err, MS_ERR_INVALID, "tensor '%.200s': shape has too many elements", nm);
    if (numel * esize != en - b) {
        char shp[128];
        return ms_errorf(err, MS_ERR_INVALID,
                         "tensor '%.200s': data_offsets hold %llu bytes, but shape %s of %s needs %llu", nm,
                         (unsigned long long)(en - b), ms_st_shape_str(t->ndim, t->shape, shp, sizeof shp),
                         dt->valuestring, (unsigned long long)(numel * esize));
    }
    t->nbytes = (size_t)(en - b);
    sp->begin = b;
    sp->end = en;
    return MS_OK;
}

void ms_safetensors_clear(ms_safetensors *st) {
    if (!st) return;
    for (int32_t i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    free(st->tensors);
    st->tensors = NULL;
    st->n_tensors = 0;
}

ms_status ms_safetensors_parse(const uint8_t *buf, size_t size, ms_safetensors *out, ms_error *err) {
    memset(out, 0, sizeof *out);
    if (size < 8)
        return ms_errorf(err, MS_ERR_INVALID, "file too short (%zu bytes) for the 8-byte header length", size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > size - 8)
        return ms_errorf(err, MS_ERR_INVALID, "header length %llu runs past the end of the file (%zu bytes)",
                         (unsigned long long)hlen, size);
    if (hlen > MS_ST_MAX_HEADER)
        return ms_errorf(err, MS_ERR_LIMIT, "header length %llu is over the %d-byte limit", (unsigned long long)hlen,
                         MS_ST_MAX_HEADER);
    const char *hdr = (const char *)buf + 8;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, 0);
    if (!root) return ms_errorf(err, MS_ERR_INVALID, "header is not valid JSON");
    for (const char *p = end; p && p < hdr + hlen; p++) {
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t' && *p != 0) {
            cJSON_Delete(root);
            return ms_errorf(err, MS_ERR_INVALID, "header has bytes after its JSON object");
        }
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ms_errorf(err, MS_ERR_INVALID, "header is not a JSON object");
    }
    const uint8_t *data = buf + 8 + hlen;
    uint64_t data_size = size - 8 - hlen;

    int n = 0;
    for (const cJSON *e = root->child; e; e = e->next) n++;
    ms_st_tensor *ts = ms_xcalloc((size_t)n + 1, sizeof *ts);
    span *spans = ms_xcalloc((size_t)n + 1, sizeof *spans);
    int32_t nt = 0;
    ms_status s = MS_OK;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            if (!cJSON_IsObject(e)) {
                s = ms_errorf(err, MS_ERR_INVALID, "__metadata__ is not an object");
                break;
            }
            continue;
        }
        ms_st_tensor *t = &ts[nt];
        t->name = ms_xstrdup(e->string);
        nt++;
        if ((s = parse_entry(e, data_size, t, &spans[nt - 1], err))) break;
        spans[nt - 1].idx = nt - 1;
        t->data = data + spans[nt - 1].begin;
    }
    cJSON_Delete(root);
    if (!s) {
        qsort(spans, (size_t)nt, sizeof *spans, cmp_span);
        for (int32_t i = 1; i < nt; i++) {
            if (spans[i].begin < spans[i - 1].end) {
                s = ms_errorf(err, MS_ERR_INVALID, "tensors '%.200s' and '%.200s' overlap in the data area",
                              ts[spans[i - 1].idx].name, ts[spans[i].idx].name);
                break;
            }
        }
    }
    free(spans);
    if (!s) {
        qsort(ts, (size_t)nt, sizeof *ts, cmp_name);
        for (int32_t i = 1; i < nt; i++) {
            if (!strcmp(ts[i].name, ts[i - 1].name)) {
                s = ms_errorf(err, MS_ERR_INVALID, "tensor '%.200s' appears twice in the header", ts[i].name);
                break;
            }
        }
    }
    out->tensors = ts;
    out->n_tensors = nt;
    if (s) ms_safetensors_clear(out);
    return s;
}

const ms_st_tensor *ms_safetensors_find(const ms_safetensors *st, const char *name) {
    ms_st_tensor key = {.name = (char *)name};
    return bsearch(&key, st->tensors, (size_t)st->n_tensors, sizeof key, cmp_name);
}

ms_status ms_safetensors_open(const char *path, ms_safetensors **out, ms_error *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return ms_errorf(err, MS_ERR_NOT_FOUND, "%s: no such file", path);
        return ms_errorf(err, MS_ERR_IO, "%s: %s", path, strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return ms_errorf(err, MS_ERR_IO, "%s: %s", path, strerror(e));
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        close(fd);
        return ms_errorf(err, MS_ERR_INVALID, "%s: file too short (%zu bytes) for the 8-byte header length", path,
                         size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return ms_errorf(err, MS_ERR_IO, "%s: mmap failed: %s", path, strerror(e));
    ms_safetensors *st = ms_xcalloc(1, sizeof *st);
    ms_status s = ms_safetensors_parse(map, size, st, err);
    if (s) {
        munmap(map, size);
        free(st);
        return ms_error_wrap(err, "%s", path);
    }
    st->path = ms_xstrdup(path);
    st->map = map;
    st->map_size = size;
    *out = st;
    return MS_OK;
}

void ms_safetensors_close(ms_safetensors *st) {
    if (!st) return;
    ms_safetensors_clear(st);
    if (st->map) munmap(st->map, st->map_size);
    free(st->path);
    free(st);
}

const char *ms_st_shape_str(int32_t ndim, const int64_t *shape, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int32_t i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}
