/*
 * Tensors: a dtype, a row-major contiguous shape, a pointer and the device it lives on.
 * A tensor does not own its memory; whoever allocated it (a backend, a context arena,
 * a weight loader) frees it. Views share the pointer.
 */
#ifndef MS_TENSOR_H
#define MS_TENSOR_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

typedef enum ms_dtype {
    MS_DTYPE_F32 = 0,
    MS_DTYPE_BF16,
    MS_DTYPE_F16,
    MS_DTYPE_I32,
} ms_dtype;

typedef enum ms_device_kind {
    MS_DEVICE_CPU = 0,
    MS_DEVICE_CUDA,
} ms_device_kind;

enum { MS_MAX_DIMS = 4 };

typedef struct ms_tensor {
    ms_dtype dtype;
    int32_t ndim;
    int64_t shape[MS_MAX_DIMS]; /* outermost first; contiguous, row-major */
    void *data;
    ms_device_kind device;
    int32_t device_index;
} ms_tensor;

size_t ms_dtype_size(ms_dtype dt);
const char *ms_dtype_name(ms_dtype dt);

int64_t ms_tensor_numel(const ms_tensor *t);
size_t ms_tensor_nbytes(const ms_tensor *t);
/* Rows = product of all dims but the last; cols = last dim. */
int64_t ms_tensor_rows(const ms_tensor *t);
int64_t ms_tensor_cols(const ms_tensor *t);
bool ms_tensor_same_shape(const ms_tensor *a, const ms_tensor *b);
/* "f32[3,4]" into buf, for messages. */
const char *ms_tensor_describe(const ms_tensor *t, char *buf, size_t n);

/* A tensor header over existing memory. */
ms_tensor ms_tensor_make(ms_dtype dt, int ndim, const int64_t *shape, void *data,
                         ms_device_kind dev, int device_index);
ms_tensor ms_tensor_2d(ms_dtype dt, int64_t rows, int64_t cols, void *data,
                       ms_device_kind dev, int device_index);
/* Same memory, new shape (numel must match; aborts otherwise). */
ms_tensor ms_tensor_reshape(const ms_tensor *t, int ndim, const int64_t *shape);
/* Rows [row0, row0 + nrows) of the tensor seen as 2-D (rows x cols). */
ms_tensor ms_tensor_row_view(const ms_tensor *t, int64_t row0, int64_t nrows);

/* Scalar conversions. bf16: round to nearest even, NaN kept NaN. f16: IEEE half. */
uint16_t ms_f32_to_bf16(float f);
float ms_bf16_to_f32(uint16_t h);
uint16_t ms_f32_to_f16(float f);
float ms_f16_to_f32(uint16_t h);
/* Bulk host conversions between f32/bf16/f16 (i32 only to i32). */
void ms_convert_host(void *dst, ms_dtype dst_dt, const void *src, ms_dtype src_dt, int64_t n);

#endif
