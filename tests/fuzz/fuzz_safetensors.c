/*
 * Fuzz target: a .safetensors file's bytes through ms_safetensors_parse (8-byte length,
 * JSON header, tensor table). On success every promise of weights.h is checked: each
 * tensor's bytes lie inside the data area, nbytes = numel * dtype size, tensors do not
 * overlap, and lookup by name finds each one.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/tensor.h"
#include "llm/weights.h"

static int by_offset(const void *a, const void *b) {
    const ms_st_tensor *x = *(const ms_st_tensor *const *)a, *y = *(const ms_st_tensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A private copy, so reads past the end hit ASan's redzone rather than the fuzzer's
     * larger buffer. */
    uint8_t *buf = malloc(size ? size : 1);
    if (size) memcpy(buf, data, size);
    ms_safetensors st;
    ms_error err = {0};
    if (ms_safetensors_parse(buf, size, &st, &err) != MS_OK) {
        if (st.tensors != NULL || st.n_tensors != 0 || err.msg[0] == 0) __builtin_trap();
        free(buf);
        return 0;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    const uint8_t *lo = buf + 8 + hlen, *hi = buf + size;
    const ms_st_tensor **order = malloc(sizeof *order * (size_t)(st.n_tensors + 1));
    int32_t n_data = 0;
    for (int32_t i = 0; i < st.n_tensors; i++) {
        const ms_st_tensor *t = &st.tensors[i];
        if (t->ndim < 0 || t->ndim > MS_MAX_DIMS || t->name == NULL) __builtin_trap();
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0) __builtin_trap();
            numel *= (uint64_t)t->shape[d];
        }
        if (numel * ms_dtype_size(t->dtype) != t->nbytes) __builtin_trap();
        if (t->data < lo || t->data > hi || t->nbytes > (size_t)(hi - t->data)) __builtin_trap();
        if (t->nbytes) {
            volatile uint8_t first = t->data[0], last = t->data[t->nbytes - 1];
            (void)first, (void)last;
        }
        if (ms_safetensors_find(&st, t->name) == NULL) __builtin_trap();
        if (t->nbytes) order[n_data++] = t; /* empty tensors occupy no bytes */
    }
    qsort(order, (size_t)n_data, sizeof *order, by_offset);
    for (int32_t i = 1; i < n_data; i++)
        if (order[i - 1]->data + order[i - 1]->nbytes > order[i]->data) __builtin_trap();
    free(order);
    ms_safetensors_clear(&st);
    free(buf);
    return 0;
}
