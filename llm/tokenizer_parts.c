/*
 * Parsing the pipeline components of tokenizer.json: normalizer, pre_tokenizer,
 * decoder, post_processor. Only the kinds the supported model families use are
 * accepted; anything else is refused with its name, so a new tokenizer fails loudly
 * at load instead of producing wrong ids.
 */
#include "llm/tokenizer_internal.h"

#include <cjson/cJSON.h>
#include <string.h>

/* GPT-2's split regex, used by a ByteLevel pre-tokenizer with use_regex true. */
static const char k_gpt2_regex[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool jbool(const cJSON *o, const char *key, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

ms_status tok_compile_regex(const char *pattern, pcre2_code **out, ms_error *err) {
    int code;
    PCRE2_SIZE off;
    *out = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK,
                         &code, &off, NULL);
    if (!*out) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return ms_errorf(err, MS_ERR_UNSUPPORTED, "split regex '%s' does not compile at %zu: %s", pattern,
                         (size_t)off, (char *)msg);
    }
    pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE); /* optional speed-up; the interpreter is the fallback */
    return MS_OK;
}

/* A Replace pattern: only {"String": "..."} (a Regex would need a regex replace). */
static ms_status string_pattern(const cJSON *o, const char *what, const char **out, ms_error *err) {
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    const char *s = jstr(pat, "String");
    if (!s) return ms_errorf(err, MS_ERR_UNSUPPORTED, "%s Replace with a Regex pattern is not supported", what);
    *out = s;
    return MS_OK;
}

/* ---- normalizer ---- */

static ms_status add_norm(ms_tokenizer *t, const cJSON *n, ms_error *err) {
    const char *type = jstr(n, "type");
    if (!type) return ms_errorf(err, MS_ERR_INVALID, "normalizer without a type");
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        for (const cJSON *c = list ? list->child : NULL; c; c = c->next) {
            ms_status st = add_norm(t, c, err);
            if (st != MS_OK) return st;
        }
        return MS_OK;
    }
    tok_norm x = {0};
    if (!strcmp(type, "Prepend")) {
        const char *p = jstr(n, "prepend");
        if (!p) return ms_errorf(err, MS_ERR_INVALID, "Prepend normalizer without 'prepend'");
        x = (tok_norm){TOK_NORM_PREPEND, ms_xstrdup(p), NULL};
    } else if (!strcmp(type, "Replace")) {
        const char *pat = NULL, *content = jstr(n, "content");
        ms_status st = string_pattern(n, "normalizer", &pat, err);
        if (st != MS_OK) return st;
        if (!content || !pat[0]) return ms_errorf(err, MS_ERR_INVALID, "Replace normalizer without content");
        x = (tok_norm){TOK_NORM_REPLACE, ms_xstrdup(pat), ms_xstrdup(content)};
    } else if (!strcmp(type, "NFC")) {
#ifndef MS_HAVE_ICU
        return ms_errorf(err, MS_ERR_UNSUPPORTED,
                         "normalizer 'NFC' needs ICU, and modserve was built without libicu");
#endif
        x.kind = TOK_NORM_NFC;
    } else
        return ms_errorf(err, MS_ERR_UNSUPPORTED, "normalizer '%s' is not supported", type);
    t->norms = ms_xrealloc(t->norms, (size_t)(t->n_norms + 1) * sizeof *t->norms);
    t->norms[t->n_norms++] = x;
    return MS_OK;
}

/* ---- pre-tokenizer ---- */

static int prepend_scheme(const cJSON *o) {
    const char *s = jstr(o, "prepend_scheme");
    if (s) return !strcmp(s, "first") ? 1 : !strcmp(s, "never") ? 2 : 0;
    return jbool(o, "add_prefix_space", true) ? 0 : 2;
}

static ms_status add_pretok(ms_tokenizer *t, const cJSON *p, ms_error *err) {
    const char *type = jstr(p, "type");
    if (!type) return ms_errorf(err, MS_ERR_INVALID, "pre_tokenizer without a type");
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
        for (const cJSON *c = list ? list->child : NULL; c; c = c->next) {
            ms_status st = add_pretok(t, c, err);
            if (st != MS_OK) return st;
        }
        return MS_OK;
    }
    tok_pretok x = {0};
    ms_status st = MS_OK;
    if (!strcmp(type, "Split")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const char *behavior = jstr(p, "behavior");
        if (jbool(p, "invert", false)) return ms_errorf(err, MS_ERR_UNSUPPORTED, "Split with invert true is not supported");
        if (!behavior || (strcmp(behavior, "Isolated") && strcmp(behavior, "Removed")))
            return ms_errorf(err, MS_ERR_UNSUPPORTED, "Split behavior '%s' is not supported (Isolated, Removed)",
                             behavior ? behavior : "(none)");
        x.kind = TOK_PRE_SPLIT;
        x.removed = !strcmp(behavior, "Removed");
        const char *re = jstr(pat, "Regex"), *lit = jstr(pat, "String");
        if (re) st = tok_compile_regex(re, &x.re, err);
        else if (lit) {
            int code;
            PCRE2_SIZE off;
            x.re = pcre2_compile((PCRE2_SPTR)lit, PCRE2_ZERO_TERMINATED, PCRE2_LITERAL | PCRE2_UTF, &code, &off, NULL);
            if (!x.re) st = ms_errorf(err, MS_ERR_INVALID, "Split pattern '%s' does not compile", lit);
        } else
            st = ms_errorf(err, MS_ERR_INVALID, "Split pre-tokenizer without a pattern");
    } else if (!strcmp(type, "ByteLevel")) {
        x.kind = TOK_PRE_BYTELEVEL;
        x.add_prefix_space = jbool(p, "add_prefix_space", true);
        if (jbool(p, "use_regex", true)) st = tok_compile_regex(k_gpt2_regex, &x.re, err);
        t->byte_level = true;
    } else if (!strcmp(type, "Metaspace")) {
        const char *rep = jstr(p, "replacement");
        x.kind = TOK_PRE_METASPACE;
        x.replacement = ms_xstrdup(rep ? rep : "\xE2\x96\x81");
        x.prepend_scheme = prepend_scheme(p);
        x.split = jbool(p, "split", true);
    } else
        return ms_errorf(err, MS_ERR_UNSUPPORTED, "pre_tokenizer '%s' is not supported", type);
    if (st != MS_OK) {
        if (x.re) pcre2_code_free(x.re);
        free(x.replacement);
        return st;
    }
    t->pretoks = ms_xrealloc(t->pretoks, (size_t)(t->n_pretoks + 1) * sizeof *t->pretoks);
    t->pretoks[t->n_pretoks++] = x;
    return MS_OK;
}

/* ---- decoder ---- */

static ms_status add_dec(ms_tokenizer *t, const cJSON *d, ms_error *err) {
    const char *type = jstr(d, "type");
    if (!type) return ms_errorf(err, MS_ERR_INVALID, "decoder without a type");
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(d, "decoders");
        for (const cJSON *c = list ? list->child : NULL; c; c = c->next) {
            ms_status st = add_dec(t, c, err);
            if (st != MS_OK) return st;
        }
        return MS_OK;
    }
    tok_dec x = {0};
    if (!strcmp(type, "Replace")) {
        const char *pat = NULL, *content = jstr(d, "content");
        ms_status st = string_pattern(d, "decoder", &pat, err);
        if (st != MS_OK) return st;
        if (!content || !pat[0]) return ms_errorf(err, MS_ERR_INVALID, "Replace decoder without content");
        x = (tok_dec){.kind = TOK_DEC_REPLACE, .a = ms_xstrdup(pat), .b = ms_xstrdup(content)};
    } else if (!strcmp(type, "ByteFallback")) {
        x.kind = TOK_DEC_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        x.kind = TOK_DEC_FUSE;
    } else if (!strcmp(type, "Strip")) {
        const char *content = jstr(d, "content");
        const cJSON *start = cJSON_GetObjectItemCaseSensitive(d, "start");
        const cJSON *stop = cJSON_GetObjectItemCaseSensitive(d, "stop");
        if (!content || tok_utf8_len((const unsigned char *)content, strlen(content)) != strlen(content))
            return ms_errorf(err, MS_ERR_INVALID, "Strip decoder content must be one character");
        x = (tok_dec){.kind = TOK_DEC_STRIP, .a = ms_xstrdup(content), .start = cJSON_IsNumber(start) ? start->valueint : 0,
                      .stop = cJSON_IsNumber(stop) ? stop->valueint : 0};
    } else if (!strcmp(type, "ByteLevel")) {
        x.kind = TOK_DEC_BYTELEVEL;
    } else if (!strcmp(type, "Metaspace")) {
        const char *rep = jstr(d, "replacement");
        x = (tok_dec){.kind = TOK_DEC_METASPACE, .a = ms_xstrdup(rep ? rep : "\xE2\x96\x81"),
                      .prefix_space = prepend_scheme(d) != 2};
    } else
        return ms_errorf(err, MS_ERR_UNSUPPORTED, "decoder '%s' is not supported", type);
    t->decs = ms_xrealloc(t->decs, (size_t)(t->n_decs + 1) * sizeof *t->decs);
    t->decs[t->n_decs++] = x;
    return MS_OK;
}

/* ---- post-processor: only what add_special adds to a single sequence ---- */

static ms_status add_post(ms_tokenizer *t, const cJSON *p, ms_error *err) {
    const char *type = jstr(p, "type");
    if (!type) return ms_errorf(err, MS_ERR_INVALID, "post_processor without a type");
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "processors");
        for (const cJSON *c = list ? list->child : NULL; c; c = c->next) {
            ms_status st = add_post(t, c, err);
            if (st != MS_OK) return st;
        }
        return MS_OK;
    }
    if (!strcmp(type, "ByteLevel")) return MS_OK; /* changes offsets only */
    if (strcmp(type, "TemplateProcessing"))
        return ms_errorf(err, MS_ERR_UNSUPPORTED, "post_processor '%s' is not supported", type);
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(p, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(p, "special_tokens");
    t->n_post_single = 0;
    for (const cJSON *item = single ? single->child : NULL; item; item = item->next) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(item, "SpecialToken");
        if (cJSON_GetObjectItemCaseSensitive(item, "Sequence")) {
            if (t->n_post_single == TOK_MAX_POST) return ms_errorf(err, MS_ERR_LIMIT, "post_processor template too long");
            t->post_single[t->n_post_single++] = -1;
            continue;
        }
        const char *name = jstr(sp, "id");
        const cJSON *tok = name ? cJSON_GetObjectItemCaseSensitive(specials, name) : NULL;
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(tok, "ids");
        if (!cJSON_IsArray(ids)) return ms_errorf(err, MS_ERR_INVALID, "post_processor special token without ids");
        for (const cJSON *id = ids->child; id; id = id->next) {
            if (t->n_post_single == TOK_MAX_POST) return ms_errorf(err, MS_ERR_LIMIT, "post_processor template too long");
            t->post_single[t->n_post_single++] = id->valueint;
        }
    }
    return MS_OK;
}

ms_status tok_parse_parts(ms_tokenizer *t, const cJSON *root, ms_error *err) {
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    ms_status st = MS_OK;
    if (n && !cJSON_IsNull(n)) st = add_norm(t, n, err);
    if (st == MS_OK && p && !cJSON_IsNull(p)) st = add_pretok(t, p, err);
    if (st == MS_OK && d && !cJSON_IsNull(d)) st = add_dec(t, d, err);
    if (st == MS_OK && pp && !cJSON_IsNull(pp)) st = add_post(t, pp, err);
    if (st == MS_OK && t->n_post_single == 0) { /* none, or ByteLevel only: the sequence alone */
        t->post_single[0] = -1;
        t->n_post_single = 1;
    }
    return st;
}
