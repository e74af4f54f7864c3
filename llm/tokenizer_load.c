/*
 * Loading DIR/tokenizer.json (the BPE model, its vocabulary and merges, added tokens;
 * the pipeline components are parsed in tokenizer_parts.c) and DIR/tokenizer_config.json
 * (bos/eos/pad, add_bos_token, chat_template).
 */
#include "llm/tokenizer_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

ms_status tok_parse_parts(ms_tokenizer *t, const cJSON *root, ms_error *err); /* tokenizer_parts.c */

enum { TOK_FILE_MAX = 256 << 20, TOK_ID_MAX = 1 << 24 };

static ms_status read_file(const char *path, char **out, ms_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return ms_errorf(err, errno == ENOENT ? MS_ERR_NOT_FOUND : MS_ERR_IO, "cannot open '%s': %s", path,
                             strerror(errno));
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (len < 0 || len > TOK_FILE_MAX) {
        fclose(f);
        return ms_errorf(err, MS_ERR_LIMIT, "'%s' is larger than %d MiB", path, TOK_FILE_MAX >> 20);
    }
    char *buf = ms_xmalloc((size_t)len + 1);
    size_t got = fread(buf, 1, (size_t)len, f);
    fclose(f);
    if (got != (size_t)len) {
        free(buf);
        return ms_errorf(err, MS_ERR_IO, "reading '%s' failed", path);
    }
    buf[len] = 0;
    *out = buf;
    return MS_OK;
}

static bool json_bool(const cJSON *o, const char *key, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

/* Grows the id table so that id fits (geometrically: vocabularies arrive one by one). */
static void ids_reserve(ms_tokenizer *t, int32_t id) {
    if (id < t->n_ids) return;
    if (id >= t->id_cap) {
        int32_t cap = t->id_cap ? t->id_cap : 1024;
        while (cap <= id) cap *= 2;
        t->pieces = ms_xrealloc(t->pieces, (size_t)cap * sizeof *t->pieces);
        t->piece_lens = ms_xrealloc(t->piece_lens, (size_t)cap * sizeof *t->piece_lens);
        t->is_special = ms_xrealloc(t->is_special, (size_t)cap * sizeof *t->is_special);
        t->id_cap = cap;
    }
    for (int32_t i = t->n_ids; i <= id; i++) {
        t->pieces[i] = NULL;
        t->piece_lens[i] = 0;
        t->is_special[i] = false;
    }
    t->n_ids = id + 1;
}

static void set_piece(ms_tokenizer *t, int32_t id, const char *s, size_t len) {
    ids_reserve(t, id);
    free(t->pieces[id]);
    t->pieces[id] = ms_xmalloc(len + 1);
    memcpy(t->pieces[id], s, len);
    t->pieces[id][len] = 0;
    t->piece_lens[id] = (uint32_t)len;
}

static ms_status parse_merge(const ms_tokenizer *t, const cJSON *m, int32_t *l, int32_t *r, int32_t *merged,
                             ms_error *err) {
    char buf[1024];
    const char *a, *b;
    size_t la, lb;
    if (cJSON_IsString(m)) { /* "left right" */
        const char *s = m->valuestring, *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' ')) return ms_errorf(err, MS_ERR_INVALID, "merge '%s' is not two pieces", s);
        a = s, la = (size_t)(sp - s), b = sp + 1, lb = strlen(b);
    } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
               cJSON_IsString(m->child->next)) { /* ["left", "right"] */
        a = m->child->valuestring, la = strlen(a), b = m->child->next->valuestring, lb = strlen(b);
    } else
        return ms_errorf(err, MS_ERR_INVALID, "a merge is neither \"a b\" nor [\"a\", \"b\"]");
    if (la + lb >= sizeof buf) return ms_errorf(err, MS_ERR_LIMIT, "merge longer than %zu bytes", sizeof buf);
    memcpy(buf, a, la);
    memcpy(buf + la, b, lb);
    *l = tok_map_get(&t->vocab, a, la);
    *r = tok_map_get(&t->vocab, b, lb);
    *merged = tok_map_get(&t->vocab, buf, la + lb);
    if (*l < 0 || *r < 0 || *merged < 0)
        return ms_errorf(err, MS_ERR_INVALID, "merge '%.*s' + '%.*s': a piece is missing from the vocabulary",
                         (int)la, a, (int)lb, b);
    return MS_OK;
}

static ms_status parse_model(ms_tokenizer *t, const cJSON *model, ms_error *err) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (!cJSON_IsObject(model) || !cJSON_IsString(type))
        return ms_errorf(err, MS_ERR_INVALID, "tokenizer.json has no model.type");
    if (strcmp(type->valuestring, "BPE"))
        return ms_errorf(err, MS_ERR_UNSUPPORTED, "model type '%s' is not supported (BPE only)", type->valuestring);
    const char *strs[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, strs[i]);
        if (cJSON_IsString(v) && v->valuestring[0])
            return ms_errorf(err, MS_ERR_UNSUPPORTED, "BPE %s '%s' is not supported", strs[i], v->valuestring);
    }
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        return ms_errorf(err, MS_ERR_UNSUPPORTED, "BPE dropout is not supported");
    t->byte_fallback = json_bool(model, "byte_fallback", false);
    t->fuse_unk = json_bool(model, "fuse_unk", false);
    t->ignore_merges = json_bool(model, "ignore_merges", false);

    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab)) return ms_errorf(err, MS_ERR_INVALID, "model.vocab is not an object");
    tok_map_init(&t->vocab, (uint32_t)cJSON_GetArraySize(vocab));
    for (const cJSON *v = vocab->child; v; v = v->next) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= TOK_ID_MAX)
            return ms_errorf(err, MS_ERR_INVALID, "vocab entry '%s' has no valid id", v->string);
        size_t len = strlen(v->string);
        tok_map_put(&t->vocab, v->string, len, v->valueint);
        set_piece(t, v->valueint, v->string, len);
    }
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        t->byte_ids[b] = tok_map_get(&t->vocab, s, 6);
    }
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    t->unk_id = -1;
    if (cJSON_IsString(unk)) {
        t->unk_id = tok_map_get(&t->vocab, unk->valuestring, strlen(unk->valuestring));
        if (t->unk_id < 0)
            return ms_errorf(err, MS_ERR_INVALID, "unk_token '%s' is not in the vocabulary", unk->valuestring);
    }

    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsArray(merges)) return ms_errorf(err, MS_ERR_INVALID, "model.merges is not an array");
    tok_merges_init(t, (uint32_t)cJSON_GetArraySize(merges));
    int32_t rank = 0;
    for (const cJSON *m = merges->child; m; m = m->next, rank++) {
        int32_t l = -1, r = -1, merged = -1;
        ms_status st = parse_merge(t, m, &l, &r, &merged, err);
        if (st != MS_OK) return ms_error_wrap(err, "merge %d", rank);
        tok_merges_put(t, l, r, rank, merged);
    }
    return MS_OK;
}

static int cmp_added_len(const void *a, const void *b) {
    const tok_added *x = a, *y = b;
    return x->match_len != y->match_len ? (x->match_len < y->match_len ? 1 : -1) : (x->id > y->id) - (x->id < y->id);
}

static ms_status parse_added(ms_tokenizer *t, const cJSON *added, ms_error *err) {
    if (!added || cJSON_IsNull(added)) return MS_OK;
    if (!cJSON_IsArray(added)) return ms_errorf(err, MS_ERR_INVALID, "added_tokens is not an array");
    int n = cJSON_GetArraySize(added);
    t->added = ms_xcalloc((size_t)(n ? n : 1), sizeof *t->added);
    for (const cJSON *a = added->child; a; a = a->next) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(a, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= TOK_ID_MAX || !cJSON_IsString(content) ||
            !content->valuestring[0])
            return ms_errorf(err, MS_ERR_INVALID, "added token %d has no valid id or content", t->n_added);
        tok_added *x = &t->added[t->n_added++];
        x->content = ms_xstrdup(content->valuestring);
        x->len = (uint32_t)strlen(x->content);
        x->id = id->valueint;
        x->special = json_bool(a, "special", false);
        x->lstrip = json_bool(a, "lstrip", false);
        x->rstrip = json_bool(a, "rstrip", false);
        x->normalized = json_bool(a, "normalized", !x->special);
        x->single_word = json_bool(a, "single_word", false);
        set_piece(t, x->id, x->content, x->len);
        t->is_special[x->id] = x->special;
    }
    return MS_OK;
}

/* After the normalizer is known: what each added token matches, longest first (so
 * the first hit at a position is the leftmost-longest match), the lookup tables. */
static ms_status finish_added(ms_tokenizer *t, ms_error *err) {
    bool flags = false;
    for (int i = 0; i < t->n_added; i++) {
        tok_added *a = &t->added[i];
        flags |= a->single_word || a->lstrip || a->rstrip;
        if (!a->normalized) {
            a->match = ms_xstrdup(a->content);
            a->match_len = a->len;
            continue;
        }
        tok_buf b = {0};
        ms_status st = tok_normalize(t, a->content, a->len, &b, err);
        if (st != MS_OK) return st;
        tok_buf_add(&b, NULL, 0);
        a->match = b.p;
        a->match_len = (uint32_t)b.n;
    }
    qsort(t->added, (size_t)t->n_added, sizeof *t->added, cmp_added_len);
    tok_map_init(&t->added_map, (uint32_t)t->n_added);
    for (int i = 0; i < t->n_added; i++) {
        tok_map_put(&t->added_map, t->added[i].content, t->added[i].len, i);
        if (t->added[i].match_len) t->added_first_byte[t->added[i].normalized][(unsigned char)t->added[i].match[0]] = true;
    }
    if (flags) {
        ms_status st = tok_compile_regex("\\w", &t->word_re, err);
        if (st == MS_OK) st = tok_compile_regex("\\s", &t->space_re, err);
        if (st != MS_OK) return st;
    }
    return MS_OK;
}

/* A token field of tokenizer_config.json: "text" or {"content": "text", ...}. */
static const char *config_token(const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int32_t token_id(const ms_tokenizer *t, const char *s) {
    if (!s) return -1;
    int32_t i = tok_map_get(&t->added_map, s, strlen(s));
    return i >= 0 ? t->added[i].id : tok_map_get(&t->vocab, s, strlen(s));
}

static ms_status parse_config(ms_tokenizer *t, const char *dir, ms_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    char *text = NULL;
    ms_error read_err = {0};
    ms_status st = read_file(path, &text, &read_err);
    t->bos_id = t->eos_id = t->pad_id = -1;
    /* The file is optional: the post-processor alone still encodes. */
    if (st != MS_OK && st != MS_ERR_NOT_FOUND) return ms_errorf(err, st, "%s", read_err.msg);
    cJSON *cfg = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (text && !cfg) return ms_errorf(err, MS_ERR_INVALID, "'%s' is not valid JSON", path);
    if (cfg) {
        const char *bos = config_token(cfg, "bos_token"), *eos = config_token(cfg, "eos_token");
        t->bos_token = bos ? ms_xstrdup(bos) : NULL;
        t->eos_token = eos ? ms_xstrdup(eos) : NULL;
        t->bos_id = token_id(t, bos);
        t->eos_id = token_id(t, eos);
        t->pad_id = token_id(t, config_token(cfg, "pad_token"));
        t->add_bos = json_bool(cfg, "add_bos_token", false);
        t->add_eos = json_bool(cfg, "add_eos_token", false);
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
        if (cJSON_IsString(ct)) t->chat_template = ms_xstrdup(ct->valuestring);
        else if (cJSON_IsArray(ct)) /* [{"name": "default", "template": ...}, ...] */
            for (const cJSON *c = ct->child; c && !t->chat_template; c = c->next) {
                const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "name");
                const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(c, "template");
                if (cJSON_IsString(name) && !strcmp(name->valuestring, "default") && cJSON_IsString(tmpl))
                    t->chat_template = ms_xstrdup(tmpl->valuestring);
            }
        cJSON_Delete(cfg);
    }
    /* The image token of LLaVA-style models, else Qwen2-VL's. */
    t->image_id = token_id(t, "<image>");
    if (t->image_id < 0) t->image_id = token_id(t, "<|image_pad|>");
    return MS_OK;
}

ms_status ms_tokenizer_load(const char *dir, ms_tokenizer **out, ms_error *err) {
    *out = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    char *text;
    ms_status st = read_file(path, &text, err);
    if (st != MS_OK) return st;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) return ms_errorf(err, MS_ERR_INVALID, "'%s' is not valid JSON", path);
    ms_tokenizer *t = ms_xcalloc(1, sizeof *t);
    st = parse_model(t, cJSON_GetObjectItemCaseSensitive(root, "model"), err);
    if (st == MS_OK) st = parse_added(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), err);
    if (st == MS_OK) st = tok_parse_parts(t, root, err);
    cJSON_Delete(root);
    if (st == MS_OK) st = finish_added(t, err);
    if (st == MS_OK) st = parse_config(t, dir, err);
    if (st != MS_OK) {
        ms_tokenizer_free(t);
        return ms_error_wrap(err, "tokenizer '%s'", path);
    }
    t->cache = ms_xcalloc(TOK_CACHE_SLOTS, sizeof *t->cache);
    t->cache_lock = ms_xmalloc(sizeof(pthread_mutex_t));
    pthread_mutex_init(t->cache_lock, NULL);
    *out = t;
    return MS_OK;
}

void ms_tokenizer_free(ms_tokenizer *t) {
    if (!t) return;
    for (int32_t i = 0; i < t->n_ids; i++) free(t->pieces[i]);
    free(t->pieces);
    free(t->piece_lens);
    free(t->is_special);
    tok_map_free(&t->vocab);
    tok_map_free(&t->added_map);
    free(t->merges);
    for (int i = 0; i < t->n_norms; i++) {
        free(t->norms[i].a);
        free(t->norms[i].b);
    }
    free(t->norms);
    for (int i = 0; i < t->n_pretoks; i++) {
        if (t->pretoks[i].re) pcre2_code_free(t->pretoks[i].re);
        free(t->pretoks[i].replacement);
    }
    free(t->pretoks);
    for (int i = 0; i < t->n_decs; i++) {
        free(t->decs[i].a);
        free(t->decs[i].b);
    }
    free(t->decs);
    for (int i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].match);
    }
    if (t->word_re) pcre2_code_free(t->word_re);
    if (t->space_re) pcre2_code_free(t->space_re);
    free(t->added);
    free(t->chat_template);
    free(t->bos_token);
    free(t->eos_token);
    if (t->cache) {
        for (int i = 0; i < TOK_CACHE_SLOTS; i++) {
            free(t->cache[i].word);
            free(t->cache[i].ids);
        }
        free(t->cache);
    }
    if (t->cache_lock) {
        pthread_mutex_destroy(t->cache_lock);
        free(t->cache_lock);
    }
    free(t);
}
