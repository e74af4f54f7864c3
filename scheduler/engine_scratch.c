/*
 * Scratch estimates: how many arena bytes (ms_ctx scratch) one forward pass takes, as an
 * upper bound, so the engine can split a batch or fail a request before a pass would
 * run out of scratch (ms_ctx_tensor aborts the process when the arena cannot grow).
 * Each term mirrors an allocation of llm/llama.c (ms_llama_forward), encoder/vision.c
 * (ms_vision_pixels + ms_vision_encode), engine_exec.c, or a kernel's workspace on
 * the CUDA backend; every allocation is rounded up to the arena's alignment. If one of
 * those files allocates more scratch, update the matching term here: the engine test
 * checks on the CPU that no pass used more than its estimate.
 */
#include "kernels/arena.h"
#include "scheduler/engine_internal.h"

/* Bytes the arena hands out for one allocation of `bytes`. */
static size_t arena_bytes(int64_t bytes) {
    size_t b = bytes > 0 ? (size_t)bytes : 1;
    return (b + MS_ARENA_ALIGN - 1) / MS_ARENA_ALIGN * MS_ARENA_ALIGN;
}

/* Upper bound of CUDA's decode-attention partials per paged call: the kernel splits
 * keys only while nseq * Hq < 2 * SMs, so base * splits < 2 * SMs + base; 1024 SMs is
 * above any GPU's count. */
enum { SCRATCH_MAX_SMS = 1024 };

size_t eng_scratch_llm(const ms_engine *e, const ms_backend *be, const eng_llm_piece_shape *s) {
    const ms_llama_config *c = &e->cfg.text;
    const int64_t a = (int64_t)ms_dtype_size(be->act_dtype);
    const int64_t T = s->n_tokens, n = s->nseq, H = c->hidden_size, I = c->intermediate_size;
    const int64_t Hq = c->num_attention_heads, Hkv = c->num_key_value_heads, D = c->head_dim;
    const int64_t V = c->vocab_size, L = c->num_hidden_layers;
    size_t b = 0;
    /* index uploads: pos, slots, ids [T]; cu_q [n+1]; ctx_lens, last [n]; tables [n, blocks];
     * per chunk with images an index upload (at most n of them, T rows in all) */
    b += 3 * arena_bytes(T * 4) + arena_bytes((n + 1) * 4) + 2 * arena_bytes(n * 4);
    b += arena_bytes(n * s->max_blocks * 4);
    b += (size_t)n * arena_bytes(1) + arena_bytes(T * 4);
    /* several attention groups: each its own cu_q, ctx_lens and tables (<= n groups) */
    b += (size_t)n * 3 * arena_bytes(1) + arena_bytes((2 * n + 1) * 4) + arena_bytes(n * s->max_blocks * 4);
    /* activations [T, *]: resid, xn, proj [H]; q, att [Hq*D]; k, v [Hkv*D]; gate, up, mlp [I] */
    b += 3 * arena_bytes(T * H * a) + 2 * arena_bytes(T * Hq * D * a) + 2 * arena_bytes(T * Hkv * D * a);
    b += 3 * arena_bytes(T * I * a);
    /* last rows and logits: h_last, n_last [n, H]; f32 logits [n, V]; sampled ids i32[n] */
    b += 2 * arena_bytes(n * H * a) + arena_bytes(n * V * 4) + arena_bytes(n * 4);
    /* the engine's gather of image embeddings, act[rows, H] per chunk with images */
    b += (size_t)n * arena_bytes(1) + arena_bytes(s->image_rows * H * a);
    if (be->device == MS_DEVICE_CUDA) {
        /* paged decode partials f32[base * splits, D + 2], per layer and continuing group */
        const int64_t parts = (2 * SCRATCH_MAX_SMS + n * Hq) * (D + 2) * 4;
        b += (size_t)(L * s->cont_groups) * arena_bytes(parts);
        /* sampling: params, uniforms [n]; keys, ids and their sorted copies [n*V];
         * offsets [n+1]; the radix sort's temp (under twice the keys and values) */
        if (s->samples)
            b += 2 * arena_bytes(n * 64) + 4 * arena_bytes(n * V * 4) + arena_bytes((n + 1) * 4) +
                 arena_bytes(n * V * 16 + ((int64_t)1 << 20));
    }
    return b;
}

size_t eng_scratch_encode(const ms_engine *e, const ms_backend *be, int32_t n_images) {
    const ms_clip_config *v = &e->cfg.vision;
    const int64_t a = (int64_t)ms_dtype_size(be->act_dtype);
    const int64_t n = n_images, side = v->image_size, patch = v->patch_size;
    const int64_t p = (side / patch) * (side / patch), s = p + 1, t = n * s;
    const int64_t E = v->hidden_size, I = v->intermediate_size, Tt = e->cfg.text.hidden_size;
    size_t b = 0;
    /* pixels: u8 values uploaded as i32[n, side, side, 3], then act[n, 3, side, side] */
    b += arena_bytes(n * side * side * 3 * 4) + arena_bytes(n * side * side * 3 * a);
    /* patch -> row map i32[n*p], cu i32[n+1] */
    b += arena_bytes(n * p * 4) + arena_bytes((n + 1) * 4);
    /* patches [n*p, E]; x, h [t, E]; q, k, v, att, o [t, E]; fc1, fc2 [t, I] */
    b += arena_bytes(n * p * E * a) + 7 * arena_bytes(t * E * a) + 2 * arena_bytes(t * I * a);
    /* selected features [n*p (or t), E]; projector y1, y2, out [rows, Tt] */
    b += arena_bytes(t * E * a) + 3 * arena_bytes(t * Tt * a);
    if (be->device == MS_DEVICE_CUDA) /* patch-embed im2col bf16[n*p, 3*patch*patch] */
        b += arena_bytes(n * p * 3 * patch * patch * 2);
    return b;
}
