/*
 * Encoding, in HF tokenizers' order: ill-formed UTF-8 becomes U+FFFD (the library only
 * ever sees valid strings), added tokens split the text (leftmost-longest, lstrip /
 * rstrip / single_word as AddedVocabulary::find_matches), each remaining span is
 * normalized, pre-tokenized into words, each word goes through BPE, and the
 * post-processor's template adds BOS/EOS.
 */
#include "llm/tokenizer_internal.h"

#include <string.h>

#ifdef MS_HAVE_ICU
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#endif

/* ---- pieces: spans of one buffer ---- */

typedef struct pieces {
    tok_buf buf;
    size_t *off, *len; /* (n) */
    size_t n, cap;
} pieces;

static void pieces_add(pieces *p, const char *s, size_t n) {
    if (n == 0) return;
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 16;
        p->off = ms_xrealloc(p->off, p->cap * sizeof *p->off);
        p->len = ms_xrealloc(p->len, p->cap * sizeof *p->len);
    }
    p->off[p->n] = p->buf.n;
    p->len[p->n] = n;
    p->n++;
    tok_buf_add(&p->buf, s, n);
}

static void pieces_reset(pieces *p) {
    p->n = 0;
    p->buf.n = 0;
}

static void pieces_free(pieces *p) {
    free(p->buf.p);
    free(p->off);
    free(p->len);
}

/* ---- normalizers ---- */

static void replace_all(tok_buf *out, const char *s, size_t n, const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    for (size_t i = 0; i < n;) {
        if (i + la <= n && !memcmp(s + i, a, la)) {
            tok_buf_add(out, b, lb);
            i += la;
        } else
            tok_buf_addc(out, s[i++]);
    }
}

static ms_status nfc(const char *s, size_t n, tok_buf *out, ms_error *err) {
    bool simple = true; /* every code point below U+0300 is NFC and composes with nothing before it */
    for (size_t i = 0; i < n && simple; i++) simple = (unsigned char)s[i] < 0xCC;
#ifdef MS_HAVE_ICU
    if (!simple) {
        UErrorCode ue = U_ZERO_ERROR;
        const UNormalizer2 *norm = unorm2_getNFCInstance(&ue);
        int32_t n16 = 0;
        u_strFromUTF8(NULL, 0, &n16, s, (int32_t)n, &ue);
        ue = U_ZERO_ERROR;
        UChar *src = ms_xmalloc(((size_t)n16 + 1) * sizeof *src);
        u_strFromUTF8(src, n16 + 1, NULL, s, (int32_t)n, &ue);
        int32_t cap = n16 * 3 + 16;
        UChar *dst = ms_xmalloc((size_t)cap * sizeof *dst);
        int32_t nd = unorm2_normalize(norm, src, n16, dst, cap, &ue);
        int32_t n8 = 0;
        if (U_SUCCESS(ue)) {
            u_strToUTF8(NULL, 0, &n8, dst, nd, &ue); /* preflight: the UTF-8 length */
            ue = U_ZERO_ERROR;
            char *tmp = ms_xmalloc((size_t)n8 + 1);
            u_strToUTF8(tmp, n8 + 1, NULL, dst, nd, &ue);
            tok_buf_add(out, tmp, (size_t)n8);
            free(tmp);
        }
        free(src);
        free(dst);
        if (U_FAILURE(ue)) return ms_errorf(err, MS_ERR_INTERNAL, "NFC normalization failed: %s", u_errorName(ue));
        return MS_OK;
    }
#endif
    (void)err;
    tok_buf_add(out, s, n); /* text below U+0300 is NFC already (without ICU, NFC is refused at load) */
    return MS_OK;
}

/* Applies the normalizers to one span; the result is in *res (one of the two buffers). */
static ms_status normalize(const ms_tokenizer *t, const char *s, size_t n, tok_buf *a, tok_buf *b, const char **res,
                           size_t *res_n, ms_error *err) {
    const char *cur = s;
    size_t cur_n = n;
    tok_buf *bufs[2] = {a, b};
    int which = 0;
    for (int i = 0; i < t->n_norms; i++) {
        const tok_norm *x = &t->norms[i];
        tok_buf *out = bufs[which];
        out->n = 0;
        switch (x->kind) {
        case TOK_NORM_PREPEND:
            if (cur_n == 0) continue;
            tok_buf_add(out, x->a, strlen(x->a));
            tok_buf_add(out, cur, cur_n);
            break;
        case TOK_NORM_REPLACE: replace_all(out, cur, cur_n, x->a, x->b); break;
        case TOK_NORM_NFC: {
            ms_status st = nfc(cur, cur_n, out, err);
            if (st != MS_OK) return st;
            break;
        }
        }
        tok_buf_add(out, NULL, 0);
        cur = out->p;
        cur_n = out->n;
        which ^= 1;
    }
    *res = cur;
    *res_n = cur_n;
    return MS_OK;
}

ms_status tok_normalize(const ms_tokenizer *t, const char *s, size_t n, tok_buf *out, ms_error *err) {
    tok_buf a = {0}, b = {0};
    const char *res;
    size_t res_n;
    ms_status st = normalize(t, s, n, &a, &b, &res, &res_n, err);
    if (st == MS_OK) tok_buf_add(out, res, res_n);
    free(a.p);
    free(b.p);
    return st;
}

/* ---- pre-tokenizers ---- */

/* Regex split, HF's "Isolated" (matches and the gaps between them are pieces) or
 * "Removed" (gaps only). Returns 0, or the PCRE2 error when even the interpreter
 * (after a JIT stack overflow on a huge input) gives up. */
static int split_regex(const pcre2_code *re, pcre2_match_data *md, const char *s, size_t n, bool removed,
                       pieces *out) {
    size_t pos = 0, last = 0;
    while (pos <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH)
            rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return rc;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { /* empty match: step one character */
            if (ms >= n) break;
            pos = ms + tok_utf8_len((const unsigned char *)s + ms, n - ms);
            continue;
        }
        pieces_add(out, s + last, ms - last);
        if (!removed) pieces_add(out, s + ms, me - ms);
        last = pos = me;
    }
    pieces_add(out, s + last, n - last);
    return 0;
}

static ms_status regex_error(int rc, ms_error *err) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return ms_errorf(err, MS_ERR_LIMIT, "the pre-tokenizer's regex failed on this text: %s", (char *)msg);
}

static void metaspace(const tok_pretok *x, const char *s, size_t n, bool first_span, pieces *out, tok_buf *tmp) {
    size_t lr = strlen(x->replacement);
    tmp->n = 0;
    bool starts = n >= 1 && s[0] == ' ';
    bool starts_rep = n >= lr && !memcmp(s, x->replacement, lr);
    if (!starts && !starts_rep && (x->prepend_scheme == 0 || (x->prepend_scheme == 1 && first_span)))
        tok_buf_add(tmp, x->replacement, lr);
    replace_all(tmp, s, n, " ", x->replacement);
    if (!x->split) {
        pieces_add(out, tmp->p, tmp->n);
        return;
    }
    /* MergedWithNext: each replacement starts a new piece */
    size_t start = 0;
    for (size_t i = 0; i + lr <= tmp->n; i++)
        if (i > start && !memcmp(tmp->p + i, x->replacement, lr)) {
            pieces_add(out, tmp->p + start, i - start);
            start = i;
        }
    pieces_add(out, tmp->p + start, tmp->n - start);
}

typedef struct enc_scratch {
    pieces a, b;
    tok_buf n1, n2, tmp;
    pcre2_match_data *md;       /* for the pre-tokenizer regexes */
    pcre2_match_data *md_flags; /* for \w / \s around added tokens */
} enc_scratch;

/* One normalized span (no added tokens in it) through the pre-tokenizer and BPE. */
static ms_status encode_span(const ms_tokenizer *t, enc_scratch *sc, const char *norm, size_t norm_n, bool first_span,
                             int32_t **ids, size_t *n_ids, size_t *cap, ms_error *err) {
    pieces *cur = &sc->a, *next = &sc->b;
    pieces_reset(cur);
    pieces_add(cur, norm, norm_n);
    int rc = 0;
    for (int i = 0; i < t->n_pretoks && rc == 0; i++) {
        const tok_pretok *x = &t->pretoks[i];
        pieces_reset(next);
        for (size_t k = 0; k < cur->n && rc == 0; k++) {
            const char *p = cur->buf.p + cur->off[k];
            size_t pn = cur->len[k];
            switch (x->kind) {
            case TOK_PRE_SPLIT: rc = split_regex(x->re, sc->md, p, pn, x->removed, next); break;
            case TOK_PRE_METASPACE: metaspace(x, p, pn, first_span && k == 0, next, &sc->tmp); break;
            case TOK_PRE_BYTELEVEL: {
                sc->tmp.n = 0;
                if (x->add_prefix_space && p[0] != ' ') tok_buf_addc(&sc->tmp, ' ');
                tok_buf_add(&sc->tmp, p, pn);
                pieces split = {0};
                if (x->re) rc = split_regex(x->re, sc->md, sc->tmp.p, sc->tmp.n, false, &split);
                else pieces_add(&split, sc->tmp.p, sc->tmp.n);
                tok_buf mapped = {0};
                for (size_t j = 0; j < split.n; j++) {
                    mapped.n = 0;
                    tok_bytelevel_encode(split.buf.p + split.off[j], split.len[j], &mapped);
                    pieces_add(next, mapped.p, mapped.n);
                }
                free(mapped.p);
                pieces_free(&split);
                break;
            }
            }
        }
        pieces *sw = cur;
        cur = next;
        next = sw;
    }
    if (rc) return regex_error(rc, err);
    for (size_t k = 0; k < cur->n; k++) tok_bpe_word(t, cur->buf.p + cur->off[k], cur->len[k], ids, n_ids, cap);
    return MS_OK;
}

/* ---- added tokens ---- */

/* Whether the character starting at byte i matches re (\w or \s, Unicode). */
static bool char_is(const pcre2_code *re, pcre2_match_data *md, const char *s, size_t n, size_t i) {
    if (i >= n) return false;
    return pcre2_match(re, (PCRE2_SPTR)s, n, i, PCRE2_ANCHORED | PCRE2_NO_UTF_CHECK, md, NULL) > 0;
}

/* Start of the character that ends at byte i (i > 0). */
static size_t char_before(const char *s, size_t i) {
    do i--;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80);
    return i;
}

/* Longest added token (of the given normalized kind) starting at s[i], or NULL. */
static const tok_added *added_at(const ms_tokenizer *t, const char *s, size_t n, size_t i, bool normalized) {
    if (!t->added_first_byte[normalized][(unsigned char)s[i]]) return NULL;
    for (int k = 0; k < t->n_added; k++) { /* sorted longest first */
        const tok_added *a = &t->added[k];
        if (a->normalized == normalized && a->match_len && a->match_len <= n - i && !memcmp(s + i, a->match, a->match_len))
            return a;
    }
    return NULL;
}

typedef ms_status (*span_fn)(const ms_tokenizer *t, enc_scratch *sc, const char *s, size_t n, bool first,
                             int32_t **ids, size_t *n_ids, size_t *cap, ms_error *err);

static void ids_add(int32_t **ids, size_t *n, size_t *cap, int32_t id) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *ids = ms_xrealloc(*ids, *cap * sizeof **ids);
    }
    (*ids)[(*n)++] = id;
}

/* Splits s on added tokens of one kind, calling fn on the text between them. */
static ms_status split_added(const ms_tokenizer *t, enc_scratch *sc, const char *s, size_t n, bool normalized,
                             bool first, span_fn fn, int32_t **ids, size_t *n_ids, size_t *cap, ms_error *err) {
    size_t start_offset = 0;
    for (size_t i = 0; i < n;) {
        const tok_added *a = added_at(t, s, n, i, normalized);
        if (!a) {
            i++;
            continue;
        }
        size_t ms = i, me = i + a->match_len;
        /* As HF's find_matches: a discarded match still consumes its text (the match
         * iterator resumes after it); lstrip/rstrip take Unicode whitespace around. */
        if (a->single_word && ((ms > 0 && char_is(t->word_re, sc->md_flags, s, n, char_before(s, ms))) ||
                               char_is(t->word_re, sc->md_flags, s, n, me))) {
            i = me;
            continue;
        }
        if (a->lstrip)
            while (ms > start_offset && char_is(t->space_re, sc->md_flags, s, ms, char_before(s, ms))) ms = char_before(s, ms);
        if (a->rstrip)
            while (me < n && char_is(t->space_re, sc->md_flags, s, n, me)) me += tok_utf8_len((const unsigned char *)s + me, n - me);
        if (ms > start_offset) {
            ms_status st = fn(t, sc, s + start_offset, ms - start_offset, first && start_offset == 0, ids, n_ids, cap, err);
            if (st != MS_OK) return st;
        }
        ids_add(ids, n_ids, cap, a->id);
        start_offset = i = me;
    }
    if (start_offset < n) return fn(t, sc, s + start_offset, n - start_offset, first && start_offset == 0, ids, n_ids, cap, err);
    return MS_OK;
}

static ms_status span_plain(const ms_tokenizer *t, enc_scratch *sc, const char *s, size_t n, bool first,
                            int32_t **ids, size_t *n_ids, size_t *cap, ms_error *err) {
    return encode_span(t, sc, s, n, first, ids, n_ids, cap, err);
}

/* Text between non-normalized added tokens: normalize, then split on normalized ones. */
static ms_status span_normalize(const ms_tokenizer *t, enc_scratch *sc, const char *s, size_t n, bool first,
                                int32_t **ids, size_t *n_ids, size_t *cap, ms_error *err) {
    const char *norm;
    size_t norm_n;
    ms_status st = normalize(t, s, n, &sc->n1, &sc->n2, &norm, &norm_n, err);
    if (st == MS_OK) st = split_added(t, sc, norm, norm_n, true, first, span_plain, ids, n_ids, cap, err);
    return st;
}

ms_status ms_tokenizer_encode(const ms_tokenizer *t, const char *text, size_t len, bool add_special, int32_t **out,
                              int32_t *n_out, ms_error *err) {
    *out = NULL;
    *n_out = 0;
    if (len > (size_t)INT32_MAX / 2) return ms_errorf(err, MS_ERR_LIMIT, "text of %zu bytes is too long to tokenize", len);
    tok_buf clean = {0};
    if (!tok_utf8_valid(text, len)) {
        tok_utf8_sanitize(text, len, &clean);
        text = clean.p;
        len = clean.n;
    }
    enc_scratch sc = {0};
    for (int i = 0; i < t->n_pretoks && !sc.md; i++)
        if (t->pretoks[i].re) sc.md = pcre2_match_data_create_from_pattern(t->pretoks[i].re, NULL);
    if (t->word_re) sc.md_flags = pcre2_match_data_create_from_pattern(t->word_re, NULL);
    int32_t *ids = NULL;
    size_t n_ids = 0, cap = 0;
    ms_status st = MS_OK;
    if (add_special)
        for (int i = 0; i < t->n_post_single && t->post_single[i] >= 0; i++) ids_add(&ids, &n_ids, &cap, t->post_single[i]);
    st = split_added(t, &sc, text, len, false, true, span_normalize, &ids, &n_ids, &cap, err);
    if (add_special) {
        int i = 0;
        while (i < t->n_post_single && t->post_single[i] >= 0) i++;
        for (i++; i < t->n_post_single; i++) ids_add(&ids, &n_ids, &cap, t->post_single[i]);
    }
    if (sc.md) pcre2_match_data_free(sc.md);
    if (sc.md_flags) pcre2_match_data_free(sc.md_flags);
    pieces_free(&sc.a);
    pieces_free(&sc.b);
    free(sc.n1.p);
    free(sc.n2.p);
    free(sc.tmp.p);
    free(clean.p);
    if (st != MS_OK) {
        free(ids);
        return st;
    }
    if (!ids) ids = ms_xmalloc(sizeof *ids);
    *out = ids;
    *n_out = (int32_t)n_ids;
    return MS_OK;
}
