/*
 * Chat and completions bodies -> ms_api_request (see request_parse.h). Follows OpenAI's
 * field names and vLLM's extensions (ignore_eos, min_tokens, top_k, priority); unknown
 * fields are ignored as vLLM does, fields modserve cannot honour (n > 1, echo, several
 * prompts, tools, response_format, logprobs) are refused rather than silently dropped,
 * unless they carry their "off" value ("tools": [], "echo": false, ...). The JSON
 * itself is parsed strictly (request_parse_json.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "kernels/ms_common.h"
#include "server/request_parse.h"

int32_t ms_json_depth(const char *s, size_t n, int32_t limit) {
    int32_t depth = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        const char c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
        } else if (c == '"') in_str = true;
        else if (c == '{' || c == '[') {
            if (++depth > max) max = depth;
            if (max > limit) return limit + 1;
        } else if (c == '}' || c == ']') depth--;
    }
    return max;
}

static const cJSON *field(const cJSON *o, const char *name) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    return f && !cJSON_IsNull(f) ? f : NULL; /* null = absent, as OpenAI's clients send it */
}

static bool get_bool(const cJSON *o, const char *name, bool *out, ms_api_error *err) {
    const cJSON *f = field(o, name);
    if (!f) return true;
    if (!cJSON_IsBool(f)) return ms_api_fail(err, 400, name, "invalid_type", "'%s' must be a boolean", name);
    *out = cJSON_IsTrue(f);
    return true;
}

static bool get_int(const cJSON *o, const char *name, double lo, double hi, int64_t *out, bool *present,
                    ms_api_error *err) {
    const cJSON *f = field(o, name);
    if (present) *present = f != NULL;
    if (!f) return true;
    if (!cJSON_IsNumber(f)) return ms_api_fail(err, 400, name, "invalid_type", "'%s' must be an integer", name);
    const double v = f->valuedouble;
    if (!isfinite(v) || v != floor(v)) return ms_api_fail(err, 400, name, "invalid_type", "'%s' must be an integer", name);
    if (v < lo || v > hi)
        return ms_api_fail(err, 400, name, "invalid_value", "'%s' must be in [%.0f, %.0f]", name, lo, hi);
    *out = (int64_t)v;
    return true;
}

static bool get_float(const cJSON *o, const char *name, double lo, double hi, bool lo_open, float *out,
                      ms_api_error *err) {
    const cJSON *f = field(o, name);
    if (!f) return true;
    if (!cJSON_IsNumber(f) || !isfinite(f->valuedouble))
        return ms_api_fail(err, 400, name, "invalid_type", "'%s' must be a number", name);
    const double v = f->valuedouble;
    if (v < lo || v > hi || (lo_open && v == lo))
        return ms_api_fail(err, 400, name, "invalid_value", "'%s' must be in %s%g, %g]", name, lo_open ? "(" : "[",
                           lo, hi);
    *out = (float)v;
    return true;
}

static bool parse_stop(const cJSON *o, const ms_server_limits *lim, ms_api_request *r, ms_api_error *err) {
    const cJSON *f = field(o, "stop");
    if (!f) return true;
    const bool one = cJSON_IsString(f);
    if (!one && !cJSON_IsArray(f))
        return ms_api_fail(err, 400, "stop", "invalid_type", "'stop' must be a string or an array of strings");
    const int n = one ? 1 : cJSON_GetArraySize(f);
    if (n > lim->max_stop_strings)
        return ms_api_fail(err, 422, "stop", "max_stop_strings", "%d stop strings, over the max_stop_strings limit of %d",
                           n, lim->max_stop_strings);
    r->stop = ms_xcalloc((size_t)n + 1, sizeof *r->stop);
    for (int i = 0; i < n; i++) {
        const cJSON *s = one ? f : cJSON_GetArrayItem(f, i);
        if (!cJSON_IsString(s))
            return ms_api_fail(err, 400, "stop", "invalid_type", "'stop' must be a string or an array of strings");
        const size_t len = strlen(s->valuestring);
        if (len == 0) return ms_api_fail(err, 400, "stop", "invalid_value", "stop strings must not be empty");
        if (len > (size_t)lim->max_stop_bytes)
            return ms_api_fail(err, 422, "stop", "max_stop_bytes", "a stop string is over the max_stop_bytes limit of %d",
                               lim->max_stop_bytes);
        r->stop[r->n_stop++] = ms_xstrdup(s->valuestring);
    }
    return true;
}

/* The "modserve" object: the documented home of the extensions. Unknown keys are
 * refused (the namespace is modserve's own, so a typo should not pass silently). */
static bool parse_extensions(const cJSON *o, ms_api_request *r, ms_api_error *err) {
    const cJSON *ext = field(o, "modserve");
    if (!ext) return true;
    if (!cJSON_IsObject(ext))
        return ms_api_fail(err, 400, "modserve", "invalid_type", "'modserve' must be an object");
    const cJSON *f;
    cJSON_ArrayForEach(f, ext) {
        bool *dst = !strcmp(f->string, "return_token_ids")                                  ? &r->return_token_ids
                  : !strcmp(f->string, "return_timings") || !strcmp(f->string, "timings") ? &r->return_timings
                                                                                             : NULL;
        char param[64];
        snprintf(param, sizeof param, "modserve.%.40s", f->string);
        if (!dst)
            return ms_api_fail(err, 400, param, "unknown_field",
                               "unknown field '%s' in 'modserve' (return_timings, return_token_ids)", param);
        if (cJSON_IsNull(f)) continue;
        if (!cJSON_IsBool(f)) return ms_api_fail(err, 400, param, "invalid_type", "'%s' must be a boolean", param);
        *dst |= cJSON_IsTrue(f);
    }
    return true;
}

/* OpenAI fields modserve does not implement: refused with 400 naming the field, unless
 * absent, null or their "off" value, which changes nothing. */
static bool refuse_unimplemented(const cJSON *o, ms_api_error *err) {
    static const struct { const char *name, *off; } k_fields[] = {
        {"tools", "[] (no tool calling)"},
        {"functions", "[] (no function calling)"},
        {"tool_choice", "\"none\""},
        {"function_call", "\"none\""},
        {"response_format", "{\"type\": \"text\"} (no JSON mode or schemas)"},
        {"echo", "false"},
        {"logprobs", "false"},
        {"top_logprobs", "0"},
    };
    for (size_t i = 0; i < sizeof k_fields / sizeof k_fields[0]; i++) {
        const char *name = k_fields[i].name;
        const cJSON *f = field(o, name);
        if (!f) continue;
        bool off;
        if (!strcmp(name, "tools") || !strcmp(name, "functions")) off = cJSON_IsArray(f) && !f->child;
        else if (!strcmp(name, "tool_choice") || !strcmp(name, "function_call"))
            off = cJSON_IsString(f) && !strcmp(f->valuestring, "none");
        else if (!strcmp(name, "response_format")) {
            const cJSON *t = cJSON_IsObject(f) ? field(f, "type") : NULL;
            off = cJSON_IsString(t) && !strcmp(t->valuestring, "text");
        } else if (!strcmp(name, "top_logprobs")) off = cJSON_IsNumber(f) && f->valuedouble == 0;
        else off = cJSON_IsFalse(f); /* echo; logprobs (a number on /v1/completions: even 0
                                        asks for the sampled token's logprob) */
        if (!off)
            return ms_api_fail(err, 400, name, "unsupported", "'%s' is not supported by modserve (accepted only as %s)",
                               name, k_fields[i].off);
    }
    return true;
}

static bool parse_common(const cJSON *o, const ms_parse_options *opt, ms_api_request *r, ms_api_error *err) {
    const cJSON *model = field(o, "model");
    if (model && !cJSON_IsString(model))
        return ms_api_fail(err, 400, "model", "invalid_type", "'model' must be a string");
    if (model && opt->model_name && strcmp(model->valuestring, opt->model_name))
        return ms_api_fail(err, 404, "model", "model_not_found", "the model '%.64s' does not exist",
                           model->valuestring);
    int64_t v = 0;
    bool has = false;
    const double big = 1 << 30;
    if (!get_int(o, "max_tokens", 1, big, &v, &has, err)) return false;
    if (has) r->max_tokens = (int32_t)v;
    if (r->kind == MS_API_CHAT) {
        if (!get_int(o, "max_completion_tokens", 1, big, &v, &has, err)) return false;
        if (has) r->max_tokens = (int32_t)v;
    }
    if (!get_int(o, "min_tokens", 0, big, &v, &has, err)) return false;
    if (has) r->min_tokens = (int32_t)v;
    if (r->max_tokens && r->min_tokens > r->max_tokens)
        return ms_api_fail(err, 400, "min_tokens", "invalid_value", "'min_tokens' is more than 'max_tokens'");
    if (!get_int(o, "n", 1, 1, &v, NULL, err)) {
        snprintf(err->message, sizeof err->message, "only n = 1 is supported");
        return false;
    }
    if (!get_float(o, "temperature", 0, 2, false, &r->temperature, err)) return false;
    if (!get_float(o, "top_p", 0, 1, true, &r->top_p, err)) return false;
    if (!get_int(o, "top_k", -1, big, &v, &has, err)) return false;
    if (has) r->top_k = v < 0 ? 0 : (int32_t)v;
    if (!get_int(o, "seed", -9e18, 9e18, &v, &r->has_seed, err)) return false;
    if (r->has_seed) r->seed = (uint64_t)v; /* a negative seed wraps to its two's complement */
    if (!get_int(o, "priority", 0, 1000000, &v, &has, err)) return false;
    if (has) r->priority = (int32_t)v;
    if (!get_bool(o, "ignore_eos", &r->ignore_eos, err)) return false;
    if (!get_bool(o, "stream", &r->stream, err)) return false;
    const cJSON *so = field(o, "stream_options");
    if (so) {
        if (!cJSON_IsObject(so))
            return ms_api_fail(err, 400, "stream_options", "invalid_type", "'stream_options' must be an object");
        if (!get_bool(so, "include_usage", &r->include_usage, err)) return false;
    }
    if (!get_bool(o, "return_timings", &r->return_timings, err)) return false;
    bool t = false;
    if (!get_bool(o, "timings", &t, err)) return false;
    r->return_timings |= t;
    if (!get_bool(o, "return_token_ids", &r->return_token_ids, err)) return false;
    if (!parse_extensions(o, r, err) || !refuse_unimplemented(o, err)) return false;
    return parse_stop(o, opt->limits, r, err);
}

/* One content part: {"type":"text","text":...} or {"type":"image_url","image_url":{"url":...}}. */
static bool parse_part(const cJSON *p, const ms_parse_options *opt, ms_api_request *r, ms_api_part *out,
                       ms_api_error *err) {
    const cJSON *type = field(p, "type");
    if (!cJSON_IsObject(p) || !cJSON_IsString(type))
        return ms_api_fail(err, 400, "messages.content", "invalid_type", "each content part needs a string 'type'");
    if (!strcmp(type->valuestring, "text")) {
        const cJSON *text = field(p, "text");
        if (!cJSON_IsString(text))
            return ms_api_fail(err, 400, "messages.content.text", "invalid_type", "a text part needs a string 'text'");
        out->text = ms_xstrdup(text->valuestring);
        return true;
    }
    if (strcmp(type->valuestring, "image_url"))
        return ms_api_fail(err, 400, "messages.content.type", "unsupported_content_type",
                           "content part type must be 'text' or 'image_url'");
    const cJSON *iu = field(p, "image_url");
    const cJSON *url = cJSON_IsObject(iu) ? field(iu, "url") : iu; /* vLLM also takes a bare string */
    if (!cJSON_IsString(url))
        return ms_api_fail(err, 400, "messages.content.image_url", "invalid_type",
                           "an image_url part needs 'image_url': {\"url\": string}");
    if (r->n_images >= opt->limits->max_images)
        return ms_api_fail(err, 422, "messages.content.image_url", "max_images",
                           "more than %d images, over the max_images limit", opt->limits->max_images);
    ms_api_image img;
    if (!ms_api_load_image_url(url->valuestring, "messages.content.image_url", opt, &img, err)) return false;
    r->images = ms_xrealloc(r->images, (size_t)(r->n_images + 1) * sizeof *r->images);
    r->images[r->n_images] = img;
    out->is_image = true;
    out->image = r->n_images++;
    return true;
}

static bool parse_messages(const cJSON *o, const ms_parse_options *opt, ms_api_request *r, ms_api_error *err) {
    const cJSON *msgs = field(o, "messages");
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0)
        return ms_api_fail(err, 400, "messages", "invalid_type", "'messages' must be a non-empty array");
    const int n = cJSON_GetArraySize(msgs);
    if (n > opt->limits->max_messages)
        return ms_api_fail(err, 422, "messages", "max_messages", "%d messages, over the max_messages limit of %d", n,
                           opt->limits->max_messages);
    r->messages = ms_xcalloc((size_t)n, sizeof *r->messages);
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        ms_api_message *dst = &r->messages[r->n_messages++];
        const cJSON *role = field(m, "role");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role))
            return ms_api_fail(err, 400, "messages.role", "invalid_type", "each message needs a string 'role'");
        const char *rs = role->valuestring;
        if (!strcmp(rs, "developer")) rs = "system";
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant"))
            return ms_api_fail(err, 400, "messages.role", "invalid_value",
                               "message role must be 'system', 'user' or 'assistant'");
        dst->role = ms_xstrdup(rs);
        const cJSON *content = field(m, "content");
        if (!content) {
            if (strcmp(rs, "assistant"))
                return ms_api_fail(err, 400, "messages.content", "invalid_type", "message content is missing");
            continue;
        }
        if (cJSON_IsString(content)) {
            dst->parts = ms_xcalloc(1, sizeof *dst->parts);
            dst->parts[0].text = ms_xstrdup(content->valuestring);
            dst->n_parts = 1;
            continue;
        }
        if (!cJSON_IsArray(content))
            return ms_api_fail(err, 400, "messages.content", "invalid_type",
                               "message content must be a string or an array of parts");
        const int np = cJSON_GetArraySize(content);
        dst->parts = ms_xcalloc((size_t)np + 1, sizeof *dst->parts);
        const cJSON *p;
        cJSON_ArrayForEach(p, content) {
            if (!parse_part(p, opt, r, &dst->parts[dst->n_parts], err)) return false;
            dst->n_parts++;
        }
    }
    return true;
}

static bool parse_prompt(const cJSON *o, ms_api_request *r, ms_api_error *err) {
    const cJSON *p = field(o, "prompt");
    /* A batch of one (["text"] or [[1,2,3]]) is the same request; more is refused (n = 1). */
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) >= 1 &&
        (cJSON_IsString(cJSON_GetArrayItem(p, 0)) || cJSON_IsArray(cJSON_GetArrayItem(p, 0)))) {
        if (cJSON_GetArraySize(p) > 1)
            return ms_api_fail(err, 400, "prompt", "unsupported", "only one prompt per request is supported");
        p = cJSON_GetArrayItem(p, 0);
    }
    if (cJSON_IsString(p)) {
        if (!p->valuestring[0]) return ms_api_fail(err, 400, "prompt", "invalid_value", "'prompt' must not be empty");
        r->prompt_text = ms_xstrdup(p->valuestring);
        return true;
    }
    if (!cJSON_IsArray(p) || cJSON_GetArraySize(p) == 0)
        return ms_api_fail(err, 400, "prompt", "invalid_type", "'prompt' must be a string or a non-empty array of token ids");
    const int n = cJSON_GetArraySize(p);
    r->prompt_ids = ms_xmalloc((size_t)n * sizeof *r->prompt_ids);
    r->has_prompt_ids = true;
    const cJSON *t;
    cJSON_ArrayForEach(t, p) {
        if (!cJSON_IsNumber(t) || t->valuedouble != floor(t->valuedouble) || t->valuedouble < 0 ||
            t->valuedouble > INT32_MAX)
            return ms_api_fail(err, 400, "prompt", "invalid_type", "token ids must be non-negative integers");
        r->prompt_ids[r->n_prompt_ids++] = (int32_t)t->valuedouble;
    }
    return true;
}

bool ms_api_parse(ms_api_kind kind, const char *body, size_t n, const ms_parse_options *opt, ms_api_request *r,
                  ms_api_error *err) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->temperature = 1.0f;
    r->top_p = 1.0f;
    if (n == 0) return ms_api_fail(err, 400, NULL, "invalid_json", "request body is empty");
    if (ms_json_depth(body, n, opt->limits->max_json_depth) > opt->limits->max_json_depth)
        return ms_api_fail(err, 422, NULL, "max_json_depth", "JSON nesting is over the max_json_depth limit of %d",
                           opt->limits->max_json_depth);
    cJSON *o = ms_json_parse_strict(body, n, err);
    if (!o) return false;
    bool ok;
    if (!cJSON_IsObject(o)) ok = ms_api_fail(err, 400, NULL, "invalid_json", "request body must be a JSON object");
    else {
        ok = parse_common(o, opt, r, err);
        if (ok && kind == MS_API_CHAT) ok = parse_messages(o, opt, r, err);
        if (ok && kind == MS_API_COMPLETIONS) ok = parse_prompt(o, r, err);
    }
    cJSON_Delete(o);
    if (!ok) ms_api_request_free(r);
    return ok;
}

void ms_api_request_free(ms_api_request *r) {
    for (int32_t i = 0; i < r->n_messages; i++) {
        for (int32_t j = 0; j < r->messages[i].n_parts; j++) free(r->messages[i].parts[j].text);
        free(r->messages[i].parts);
        free(r->messages[i].role);
    }
    free(r->messages);
    for (int32_t i = 0; i < r->n_images; i++) free(r->images[i].bytes);
    free(r->images);
    free(r->prompt_text);
    free(r->prompt_ids);
    for (int32_t i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop);
    const ms_api_kind k = r->kind;
    memset(r, 0, sizeof *r);
    r->kind = k;
}
