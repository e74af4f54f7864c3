/* Helpers shared by the safetensors reader, writer and the weight set (llm/ only). */
#ifndef MS_LLM_SAFETENSORS_INTERNAL_H
#define MS_LLM_SAFETENSORS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/tensor.h"

/* "F32" / "BF16" / "F16" <-> dtype; false / NULL for anything else. */
bool ms_st_dtype_from_name(const char *s, ms_dtype *dt);
const char *ms_st_dtype_name(ms_dtype dt);
/* "[3,4]" into buf. */
const char *ms_st_shape_str(int32_t ndim, const int64_t *shape, char *buf, size_t n);

#endif
