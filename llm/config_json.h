/*
 * Typed reads of optional keys from a cJSON object, for config files. An absent key
 * leaves the value as it was (the caller's default); a present key of the wrong type
 * or out of range is MS_ERR_INVALID naming "<prefix><key>" and the value found.
 */
#ifndef MS_LLM_CONFIG_JSON_H
#define MS_LLM_CONFIG_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/ms_common.h"

struct cJSON;

ms_status ms_json_int(const struct cJSON *obj, const char *prefix, const char *key, int32_t *out,
                      ms_error *err);
/* As ms_json_int; null counts as absent. */
ms_status ms_json_int_or_null(const struct cJSON *obj, const char *prefix, const char *key,
                              int32_t *out, ms_error *err);
/* Token ids: null sets -1, a list takes its first element (eos_token_id may be a list). */
ms_status ms_json_token_id(const struct cJSON *obj, const char *prefix, const char *key,
                           int32_t *out, ms_error *err);
ms_status ms_json_float(const struct cJSON *obj, const char *prefix, const char *key, float *out,
                        ms_error *err);
ms_status ms_json_bool(const struct cJSON *obj, const char *prefix, const char *key, bool *out,
                       ms_error *err);
ms_status ms_json_string(const struct cJSON *obj, const char *prefix, const char *key, char *out,
                         size_t cap, ms_error *err);
/* A list of exactly 3 numbers (image_mean / image_std); a single number fills all 3. */
ms_status ms_json_float3(const struct cJSON *obj, const char *key, float out[3], ms_error *err);

#endif
