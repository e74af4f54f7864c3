/*
 * Backend selection, device tensors, execution contexts, and the ms_op_* wrappers.
 *
 * The wrappers are where model code meets the op table: they check devices, dtypes and
 * shapes (a mismatch is a bug in the caller, so it aborts with the op and the shapes in
 * the message) and then dispatch to backend->ops. Backends may assume checked inputs.
 */
#include "kernels/backend.h"

#include <string.h>

#include "kernels/arena.h"

/* ---- CUDA glue when the CUDA backend is not built in ---- */
#ifndef MODSERVE_HAVE_CUDA
ms_backend *ms_backend_cuda_create(int device_index, ms_error *err) {
    ms_errorf(err, MS_ERR_UNSUPPORTED, "modserve was built without CUDA");
    return NULL;
}

bool ms_cuda_available(void) {
    return false;
}
#endif

/* ---- backends ---- */

ms_backend *ms_backend_create(const char *name, int device_index, int cpu_threads, ms_error *err) {
    if (!name || strcmp(name, "auto") == 0) {
        if (ms_cuda_available()) {
            ms_backend *be = ms_backend_cuda_create(device_index, err);
            if (be) return be;
            ms_log(MS_LOG_WARN, "kernels", "CUDA backend unavailable (%s); using the CPU",
                   err ? err->msg : "no detail");
        }
        return ms_backend_cpu_create(cpu_threads);
    }
    if (strcmp(name, "cpu") == 0) return ms_backend_cpu_create(cpu_threads);
    if (strcmp(name, "cuda") == 0) {
        ms_backend *be = ms_backend_cuda_create(device_index, err);
        if (!be && err && err->status == MS_OK)
            ms_errorf(err, MS_ERR_UNSUPPORTED, "backend cuda: no usable GPU %d", device_index);
        return be;
    }
    ms_errorf(err, MS_ERR_INVALID, "unknown backend '%s' (expected cpu, cuda or auto)", name);
    return NULL;
}

void ms_backend_destroy(ms_backend *be) {
    if (be) be->destroy(be);
}

ms_status ms_backend_tensor(ms_backend *be, ms_dtype dt, int ndim, const int64_t *shape,
                            ms_tensor *out, ms_error *err) {
    *out = ms_tensor_make(dt, ndim, shape, NULL, be->device, be->device_index);
    const size_t bytes = ms_tensor_nbytes(out);
    out->data = be->ops->alloc(be, bytes ? bytes : 1);
    if (!out->data) {
        char d[96];
        size_t fr = 0, tot = 0;
        be->ops->mem_info(be, &fr, &tot);
        return ms_errorf(err, MS_ERR_NOMEM,
                         "%s backend out of memory allocating %s (%zu bytes; %zu of %zu free)",
                         be->name, ms_tensor_describe(out, d, sizeof d), bytes, fr, tot);
    }
    return MS_OK;
}

void ms_backend_tensor_free(ms_backend *be, ms_tensor *t) {
    if (t && t->data) be->ops->free(be, t->data);
    if (t) t->data = NULL;
}

/* ---- contexts ---- */

ms_ctx *ms_ctx_create(ms_backend *be) {
    ms_ctx *ctx = ms_xcalloc(1, sizeof *ctx);
    ctx->backend = be;
    ctx->stream = be->ops->stream_create(be);
    ctx->arena = ms_arena_create(be, 0);
    return ctx;
}

void ms_ctx_destroy(ms_ctx *ctx) {
    if (!ctx) return;
    ms_ctx_sync(ctx);
    ms_arena_destroy(ctx->arena);
    ctx->backend->ops->stream_destroy(ctx->backend, ctx->stream);
    free(ctx);
}

ms_tensor ms_ctx_tensor(ms_ctx *ctx, ms_dtype dt, int ndim, const int64_t *shape) {
    ms_backend *be = ctx->backend;
    ms_tensor t = ms_tensor_make(dt, ndim, shape, NULL, be->device, be->device_index);
    t.data = ms_arena_alloc(ctx->arena, ms_tensor_nbytes(&t));
    char d[96];
    MS_CHECKF(t.data, "%s backend: scratch arena out of memory for %s (%zu bytes in use)",
              be->name, ms_tensor_describe(&t, d, sizeof d), ms_arena_used(ctx->arena));
    return t;
}

ms_tensor ms_ctx_tensor_2d(ms_ctx *ctx, ms_dtype dt, int64_t rows, int64_t cols) {
    const int64_t shape[2] = {rows, cols};
    return ms_ctx_tensor(ctx, dt, 2, shape);
}

ms_tensor ms_ctx_upload_i32(ms_ctx *ctx, const int32_t *host, int ndim, const int64_t *shape) {
    ms_tensor t = ms_ctx_tensor(ctx, MS_DTYPE_I32, ndim, shape);
    if (ms_tensor_numel(&t) > 0) ctx->backend->ops->upload(ctx, &t, host);
    return t;
}

void ms_ctx_reset(ms_ctx *ctx) {
    /* Coalescing frees chunks that queued work may still use: wait for it first. */
    if (ms_arena_chunk_count(ctx->arena) > 1) ms_ctx_sync(ctx);
    ms_arena_reset(ctx->arena);
}

void ms_ctx_sync(ms_ctx *ctx) {
    ctx->backend->ops->sync(ctx);
}

/* ---- op wrappers: checks, then dispatch ---- */

/* "f32[3,4]" of a tensor, in a buffer that lives until the end of the full expression's
 * block (a compound literal), for check messages. */
#define DESC(t) ms_tensor_describe((t), (char[96]){0}, 96)

static bool is_float(ms_dtype dt) {
    return dt == MS_DTYPE_F32 || dt == MS_DTYPE_BF16 || dt == MS_DTYPE_F16;
}

/* The tensor lives on the context's device and has memory when it has elements. */
static void check_on(const ms_ctx *ctx, const char *op, const char *name, const ms_tensor *t) {
    const ms_backend *be = ctx->backend;
    MS_CHECKF(t, "%s: %s is NULL", op, name);
    MS_CHECKF(t->device == be->device && t->device_index == be->device_index,
              "%s: %s %s is on device %d:%d, the context is on %s:%d", op, name, DESC(t),
              (int)t->device, t->device_index, be->name, be->device_index);
    MS_CHECKF(t->data || ms_tensor_numel(t) == 0, "%s: %s %s has no memory", op, name, DESC(t));
}

static void check_dt(const char *op, const char *name, const ms_tensor *t, ms_dtype dt) {
    MS_CHECKF(t->dtype == dt, "%s: %s %s must be %s", op, name, DESC(t), ms_dtype_name(dt));
}

/* on the device, in the act dtype */
static void check_act(const ms_ctx *ctx, const char *op, const char *name, const ms_tensor *t) {
    check_on(ctx, op, name, t);
    check_dt(op, name, t, ctx->backend->act_dtype);
}

static void check_i32(const ms_ctx *ctx, const char *op, const char *name, const ms_tensor *t) {
    check_on(ctx, op, name, t);
    check_dt(op, name, t, MS_DTYPE_I32);
}

static void check_same_shape(const char *op, const char *na, const ms_tensor *a, const char *nb,
                             const ms_tensor *b) {
    MS_CHECKF(ms_tensor_same_shape(a, b), "%s: %s %s and %s %s differ in shape", op, na,
              DESC(a), nb, DESC(b));
}

static void check_ndim(const char *op, const char *name, const ms_tensor *t, int ndim) {
    MS_CHECKF(t->ndim == ndim, "%s: %s %s must have %d dims", op, name, DESC(t), ndim);
}

/* A 1-D-like vector of n elements (gamma, bias). */
static void check_vec(const ms_ctx *ctx, const char *op, const char *name, const ms_tensor *t,
                      int64_t n) {
    check_act(ctx, op, name, t);
    MS_CHECKF(ms_tensor_numel(t) == n, "%s: %s %s must have %lld elements", op, name, DESC(t),
              (long long)n);
}

static void check_no_alias(const char *op, const ms_tensor *out, const char *name,
                           const ms_tensor *in) {
    MS_CHECKF(!in || ms_tensor_numel(out) == 0 || out->data != in->data,
              "%s: output %s aliases %s %s", op, DESC(out), name, DESC(in));
}

void ms_op_upload(ms_ctx *ctx, ms_tensor *dst, const void *host_src) {
    check_on(ctx, "upload", "dst", dst);
    MS_CHECKF(host_src || ms_tensor_numel(dst) == 0, "upload: NULL host source for %s", DESC(dst));
    if (ms_tensor_numel(dst) > 0) ctx->backend->ops->upload(ctx, dst, host_src);
}

void ms_op_download(ms_ctx *ctx, void *host_dst, const ms_tensor *src) {
    check_on(ctx, "download", "src", src);
    MS_CHECKF(host_dst || ms_tensor_numel(src) == 0, "download: NULL host destination for %s",
              DESC(src));
    if (ms_tensor_numel(src) > 0) ctx->backend->ops->download(ctx, host_dst, src);
}

void ms_op_copy(ms_ctx *ctx, ms_tensor *dst, const ms_tensor *src) {
    check_on(ctx, "copy", "dst", dst);
    check_on(ctx, "copy", "src", src);
    MS_CHECKF(dst->dtype == src->dtype && ms_tensor_numel(dst) == ms_tensor_numel(src),
              "copy: dst %s and src %s differ in dtype or size", DESC(dst), DESC(src));
    if (ms_tensor_numel(src) > 0 && dst->data != src->data) ctx->backend->ops->copy(ctx, dst, src);
}

void ms_op_convert(ms_ctx *ctx, ms_tensor *dst, const ms_tensor *src) {
    check_on(ctx, "convert", "dst", dst);
    check_on(ctx, "convert", "src", src);
    MS_CHECKF(ms_tensor_numel(dst) == ms_tensor_numel(src),
              "convert: dst %s and src %s differ in size", DESC(dst), DESC(src));
    MS_CHECKF((is_float(dst->dtype) && is_float(src->dtype)) || dst->dtype == src->dtype,
              "convert: %s -> %s is not a float conversion", DESC(src), DESC(dst));
    check_no_alias("convert", dst, "src", src);
    if (ms_tensor_numel(src) > 0) ctx->backend->ops->convert(ctx, dst, src);
}

void ms_op_fill(ms_ctx *ctx, ms_tensor *dst, float value) {
    check_on(ctx, "fill", "dst", dst);
    if (ms_tensor_numel(dst) > 0) ctx->backend->ops->fill(ctx, dst, value);
}

void ms_op_matmul(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x, const ms_tensor *w,
                  const ms_tensor *bias) {
    const char *op = "matmul";
    check_act(ctx, op, "x", x);
    check_act(ctx, op, "w", w);
    check_on(ctx, op, "y", y);
    MS_CHECKF(y->dtype == ctx->backend->act_dtype || y->dtype == MS_DTYPE_F32,
              "matmul: y %s must be %s or f32", DESC(y), ms_dtype_name(ctx->backend->act_dtype));
    check_ndim(op, "w", w, 2);
    const int64_t M = ms_tensor_rows(x), K = ms_tensor_cols(x), N = w->shape[0];
    MS_CHECKF(x->ndim >= 1 && w->shape[1] == K && ms_tensor_rows(y) == M && ms_tensor_cols(y) == N,
              "matmul: y %s = x %s @ w %s^T: shapes do not agree", DESC(y), DESC(x), DESC(w));
    if (bias) check_vec(ctx, op, "bias", bias, N);
    check_no_alias(op, y, "x", x);
    check_no_alias(op, y, "w", w);
    if (M > 0 && N > 0) ctx->backend->ops->matmul(ctx, y, x, w, bias);
}

static void check_rowwise(const ms_ctx *ctx, const char *op, const ms_tensor *y,
                          const ms_tensor *x) {
    check_act(ctx, op, "x", x);
    check_act(ctx, op, "y", y);
    check_same_shape(op, "y", y, "x", x);
}

void ms_op_layernorm(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x, const ms_tensor *gamma,
                     const ms_tensor *beta, float eps) {
    check_rowwise(ctx, "layernorm", y, x);
    check_vec(ctx, "layernorm", "gamma", gamma, ms_tensor_cols(x));
    if (beta) check_vec(ctx, "layernorm", "beta", beta, ms_tensor_cols(x));
    if (ms_tensor_numel(x) > 0) ctx->backend->ops->layernorm(ctx, y, x, gamma, beta, eps);
}

void ms_op_rmsnorm(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x, const ms_tensor *gamma,
                   float eps) {
    check_rowwise(ctx, "rmsnorm", y, x);
    check_vec(ctx, "rmsnorm", "gamma", gamma, ms_tensor_cols(x));
    if (ms_tensor_numel(x) > 0) ctx->backend->ops->rmsnorm(ctx, y, x, gamma, eps);
}

void ms_op_add_rmsnorm(ms_ctx *ctx, ms_tensor *residual, const ms_tensor *x, ms_tensor *y,
                       const ms_tensor *gamma, float eps) {
    check_rowwise(ctx, "add_rmsnorm", y, x);
    check_act(ctx, "add_rmsnorm", "residual", residual);
    check_same_shape("add_rmsnorm", "residual", residual, "x", x);
    check_vec(ctx, "add_rmsnorm", "gamma", gamma, ms_tensor_cols(x));
    check_no_alias("add_rmsnorm", y, "residual", residual);
    if (ms_tensor_numel(x) > 0) ctx->backend->ops->add_rmsnorm(ctx, residual, x, y, gamma, eps);
}

void ms_op_rope(ms_ctx *ctx, ms_tensor *x, const ms_tensor *positions, float theta) {
    check_act(ctx, "rope", "x", x);
    check_i32(ctx, "rope", "positions", positions);
    check_ndim("rope", "x", x, 3);
    MS_CHECKF(x->shape[2] % 2 == 0, "rope: head dim of x %s must be even", DESC(x));
    MS_CHECKF(ms_tensor_numel(positions) == x->shape[0],
              "rope: positions %s must have one entry per row of x %s", DESC(positions), DESC(x));
    MS_CHECKF(theta > 0, "rope: theta %g must be positive", (double)theta);
    if (ms_tensor_numel(x) > 0) ctx->backend->ops->rope(ctx, x, positions, theta);
}

/* q[T,Hq,D] and out alike; k, v [Tk,Hkv,D] with Hkv dividing Hq. */
static void check_heads(const ms_ctx *ctx, const char *op, const ms_tensor *out,
                        const ms_tensor *q, const ms_tensor *k, const ms_tensor *v) {
    check_act(ctx, op, "q", q);
    check_act(ctx, op, "out", out);
    check_act(ctx, op, "k", k);
    check_act(ctx, op, "v", v);
    check_ndim(op, "q", q, 3);
    check_same_shape(op, "out", out, "q", q);
    check_same_shape(op, "k", k, "v", v);
    const int64_t Hkv = k->shape[k->ndim - 2], D = k->shape[k->ndim - 1];
    MS_CHECKF(Hkv > 0 && q->shape[1] % Hkv == 0 && q->shape[2] == D,
              "%s: q %s and k %s: head dims differ or kv heads do not divide query heads", op,
              DESC(q), DESC(k));
    check_no_alias(op, out, "q", q);
    check_no_alias(op, out, "k", k);
    check_no_alias(op, out, "v", v);
}

void ms_op_attention(ms_ctx *ctx, ms_tensor *out, const ms_tensor *q, const ms_tensor *k,
                     const ms_tensor *v, const ms_tensor *cu_seqlens, int32_t max_seqlen,
                     bool causal, float scale) {
    const char *op = "attention";
    check_heads(ctx, op, out, q, k, v);
    check_ndim(op, "k", k, 3);
    MS_CHECKF(k->shape[0] == q->shape[0], "attention: q %s and k %s differ in rows", DESC(q),
              DESC(k));
    check_i32(ctx, op, "cu_seqlens", cu_seqlens);
    check_ndim(op, "cu_seqlens", cu_seqlens, 1);
    MS_CHECKF(cu_seqlens->shape[0] >= 2, "attention: cu_seqlens %s needs nseq + 1 >= 2 entries",
              DESC(cu_seqlens));
    MS_CHECKF(max_seqlen >= 0 && max_seqlen <= q->shape[0] &&
                  (max_seqlen > 0 || q->shape[0] == 0),
              "attention: max_seqlen %d for q %s", max_seqlen, DESC(q));
    if (ms_tensor_numel(q) > 0)
        ctx->backend->ops->attention(ctx, out, q, k, v, cu_seqlens, max_seqlen, causal, scale);
}

void ms_op_kv_write(ms_ctx *ctx, ms_tensor *k_cache, ms_tensor *v_cache, const ms_tensor *k,
                    const ms_tensor *v, const ms_tensor *slots) {
    const char *op = "kv_write";
    check_act(ctx, op, "k_cache", k_cache);
    check_act(ctx, op, "v_cache", v_cache);
    check_act(ctx, op, "k", k);
    check_act(ctx, op, "v", v);
    check_i32(ctx, op, "slots", slots);
    check_ndim(op, "k_cache", k_cache, 4);
    check_ndim(op, "k", k, 3);
    check_same_shape(op, "k_cache", k_cache, "v_cache", v_cache);
    check_same_shape(op, "k", k, "v", v);
    MS_CHECKF(k->shape[1] == k_cache->shape[2] && k->shape[2] == k_cache->shape[3],
              "kv_write: k %s rows do not match cache %s", DESC(k), DESC(k_cache));
    MS_CHECKF(ms_tensor_numel(slots) == k->shape[0], "kv_write: slots %s for k %s", DESC(slots),
              DESC(k));
    if (k->shape[0] > 0) ctx->backend->ops->kv_write(ctx, k_cache, v_cache, k, v, slots);
}

void ms_op_attention_paged(ms_ctx *ctx, ms_tensor *out, const ms_tensor *q,
                           const ms_tensor *k_cache, const ms_tensor *v_cache,
                           const ms_tensor *block_tables, const ms_tensor *cu_q,
                           const ms_tensor *ctx_lens, int32_t max_q, int32_t max_ctx,
                           float scale) {
    const char *op = "attention_paged";
    check_heads(ctx, op, out, q, k_cache, v_cache);
    check_ndim(op, "k_cache", k_cache, 4);
    check_i32(ctx, op, "block_tables", block_tables);
    check_i32(ctx, op, "cu_q", cu_q);
    check_i32(ctx, op, "ctx_lens", ctx_lens);
    check_ndim(op, "block_tables", block_tables, 2);
    const int64_t nseq = block_tables->shape[0];
    MS_CHECKF(ms_tensor_numel(ctx_lens) == nseq && ms_tensor_numel(cu_q) == nseq + 1,
              "attention_paged: block_tables %s, cu_q %s and ctx_lens %s disagree on sequences",
              DESC(block_tables), DESC(cu_q), DESC(ctx_lens));
    MS_CHECKF(max_q >= 0 && max_q <= q->shape[0] && max_ctx >= max_q &&
                  (int64_t)max_ctx <= block_tables->shape[1] * k_cache->shape[1],
              "attention_paged: max_q %d, max_ctx %d for q %s, block_tables %s, cache %s",
              max_q, max_ctx, DESC(q), DESC(block_tables), DESC(k_cache));
    if (ms_tensor_numel(q) > 0)
        ctx->backend->ops->attention_paged(ctx, out, q, k_cache, v_cache, block_tables, cu_q,
                                           ctx_lens, max_q, max_ctx, scale);
}

void ms_op_softmax(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x) {
    check_rowwise(ctx, "softmax", y, x);
    if (ms_tensor_numel(x) > 0) ctx->backend->ops->softmax(ctx, y, x);
}

void ms_op_gelu(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x) {
    check_rowwise(ctx, "gelu", y, x);
    if (ms_tensor_numel(x) > 0) ctx->backend->ops->gelu(ctx, y, x);
}

void ms_op_quick_gelu(ms_ctx *ctx, ms_tensor *y, const ms_tensor *x) {
    check_rowwise(ctx, "quick_gelu", y, x);
    if (ms_tensor_numel(x) > 0) ctx->backend->ops->quick_gelu(ctx, y, x);
}

void ms_op_silu_mul(ms_ctx *ctx, ms_tensor *y, const ms_tensor *gate, const ms_tensor *up) {
    check_rowwise(ctx, "silu_mul", y, gate);
    check_act(ctx, "silu_mul", "up", up);
    check_same_shape("silu_mul", "up", up, "gate", gate);
    if (ms_tensor_numel(y) > 0) ctx->backend->ops->silu_mul(ctx, y, gate, up);
}

void ms_op_add(ms_ctx *ctx, ms_tensor *y, const ms_tensor *a, const ms_tensor *b) {
    check_rowwise(ctx, "add", y, a);
    check_act(ctx, "add", "b", b);
    const int64_t M = ms_tensor_rows(a), R = ms_tensor_rows(b);
    MS_CHECKF(ms_tensor_cols(b) == ms_tensor_cols(a) && R > 0 && M % R == 0,
              "add: b %s must have a's columns and a row count dividing a %s", DESC(b), DESC(a));
    if (ms_tensor_numel(y) > 0) ctx->backend->ops->add(ctx, y, a, b);
}

void ms_op_get_rows(ms_ctx *ctx, ms_tensor *out, const ms_tensor *table, const ms_tensor *ids) {
    check_act(ctx, "get_rows", "table", table);
    check_act(ctx, "get_rows", "out", out);
    check_i32(ctx, "get_rows", "ids", ids);
    check_ndim("get_rows", "table", table, 2);
    MS_CHECKF(ms_tensor_rows(out) == ms_tensor_numel(ids) &&
                  ms_tensor_cols(out) == table->shape[1],
              "get_rows: out %s for table %s and ids %s", DESC(out), DESC(table), DESC(ids));
    check_no_alias("get_rows", out, "table", table);
    if (ms_tensor_numel(out) > 0) ctx->backend->ops->get_rows(ctx, out, table, ids);
}

void ms_op_scatter_rows(ms_ctx *ctx, ms_tensor *dst, const ms_tensor *src, const ms_tensor *idx) {
    check_act(ctx, "scatter_rows", "dst", dst);
    check_act(ctx, "scatter_rows", "src", src);
    check_i32(ctx, "scatter_rows", "idx", idx);
    MS_CHECKF(ms_tensor_cols(dst) == ms_tensor_cols(src) &&
                  ms_tensor_numel(idx) == ms_tensor_rows(src),
              "scatter_rows: dst %s, src %s, idx %s", DESC(dst), DESC(src), DESC(idx));
    check_no_alias("scatter_rows", dst, "src", src);
    if (ms_tensor_numel(src) > 0) ctx->backend->ops->scatter_rows(ctx, dst, src, idx);
}

void ms_op_patch_embed(ms_ctx *ctx, ms_tensor *out, const ms_tensor *pixels,
                       const ms_tensor *weight, int32_t patch) {
    const char *op = "patch_embed";
    check_act(ctx, op, "pixels", pixels);
    check_act(ctx, op, "weight", weight);
    check_act(ctx, op, "out", out);
    check_ndim(op, "pixels", pixels, 4);
    check_ndim(op, "weight", weight, 2);
    MS_CHECKF(patch > 0 && pixels->shape[2] >= patch && pixels->shape[3] >= patch,
              "patch_embed: patch %d for pixels %s", patch, DESC(pixels));
    const int64_t P = pixels->shape[0] * (pixels->shape[2] / patch) * (pixels->shape[3] / patch);
    MS_CHECKF(weight->shape[1] == pixels->shape[1] * patch * patch &&
                  ms_tensor_rows(out) == P && ms_tensor_cols(out) == weight->shape[0],
              "patch_embed: out %s, pixels %s, weight %s, patch %d do not agree", DESC(out),
              DESC(pixels), DESC(weight), patch);
    check_no_alias(op, out, "pixels", pixels);
    if (ms_tensor_numel(out) > 0) ctx->backend->ops->patch_embed(ctx, out, pixels, weight, patch);
}

void ms_op_image_normalize(ms_ctx *ctx, ms_tensor *out, const ms_tensor *rgb,
                           const float mean[3], const float std[3], float rescale) {
    check_i32(ctx, "image_normalize", "rgb", rgb);
    check_act(ctx, "image_normalize", "out", out);
    check_ndim("image_normalize", "rgb", rgb, 4);
    check_ndim("image_normalize", "out", out, 4);
    MS_CHECKF(rgb->shape[3] == 3 && out->shape[0] == rgb->shape[0] && out->shape[1] == 3 &&
                  out->shape[2] == rgb->shape[1] && out->shape[3] == rgb->shape[2],
              "image_normalize: out %s must be [N,3,H,W] for rgb %s [N,H,W,3]", DESC(out),
              DESC(rgb));
    MS_CHECKF(std[0] != 0 && std[1] != 0 && std[2] != 0, "image_normalize: zero std");
    if (ms_tensor_numel(out) > 0)
        ctx->backend->ops->image_normalize(ctx, out, rgb, mean, std, rescale);
}

void ms_op_sample(ms_ctx *ctx, ms_tensor *out_ids, const ms_tensor *logits,
                  const ms_sample_params *params, const float *uniforms) {
    check_on(ctx, "sample", "logits", logits);
    check_dt("sample", "logits", logits, MS_DTYPE_F32);
    check_i32(ctx, "sample", "out_ids", out_ids);
    MS_CHECKF(ms_tensor_numel(out_ids) == ms_tensor_rows(logits) && ms_tensor_cols(logits) > 0,
              "sample: out_ids %s for logits %s", DESC(out_ids), DESC(logits));
    MS_CHECKF(params && uniforms, "sample: params and uniforms are required");
    if (ms_tensor_numel(out_ids) > 0)
        ctx->backend->ops->sample(ctx, out_ids, logits, params, uniforms);
}
