/*
 * Decoding: ids -> pieces (special added tokens dropped on request) -> the decoder
 * chain of tokenizer.json, each step over the list of token strings as HF tokenizers'
 * decode_chain does, joined at the end. Incremental decoding for streaming keeps a
 * small window of ids and emits text only when it grew and does not end in U+FFFD
 * (an incomplete UTF-8 sequence), as HF's DecodeStream does.
 */
#include "llm/tokenizer_internal.h"

#include <string.h>

typedef struct toks {
    char **s;     /* (n) owned, NUL-terminated */
    size_t *len;  /* (n) */
    size_t n, cap;
} toks;

static void toks_add(toks *t, const char *s, size_t n) {
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 32;
        t->s = ms_xrealloc(t->s, t->cap * sizeof *t->s);
        t->len = ms_xrealloc(t->len, t->cap * sizeof *t->len);
    }
    t->s[t->n] = ms_xmalloc(n + 1);
    memcpy(t->s[t->n], s, n);
    t->s[t->n][n] = 0;
    t->len[t->n] = n;
    t->n++;
}

static void toks_free(toks *t) {
    for (size_t i = 0; i < t->n; i++) free(t->s[i]);
    free(t->s);
    free(t->len);
    memset(t, 0, sizeof *t);
}

/* "<0xNN>" -> NN, else -1. */
static int byte_piece(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static void flush_bytes(toks *out, tok_buf *bytes) {
    if (!bytes->n) return;
    tok_buf check = {0};
    if (!tok_utf8_sanitize(bytes->p, bytes->n, &check)) toks_add(out, bytes->p, bytes->n);
    else
        for (size_t i = 0; i < bytes->n; i++) toks_add(out, "\xEF\xBF\xBD", 3); /* one U+FFFD per byte */
    free(check.p);
    bytes->n = 0;
}

static void replace_into(tok_buf *out, const char *s, size_t n, const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    for (size_t i = 0; i < n;) {
        if (la && i + la <= n && !memcmp(s + i, a, la)) {
            tok_buf_add(out, b, lb);
            i += la;
        } else
            tok_buf_addc(out, s[i++]);
    }
}

static void apply_decoder(const tok_dec *d, toks *in, toks *out) {
    tok_buf b = {0};
    switch (d->kind) {
    case TOK_DEC_REPLACE:
        for (size_t i = 0; i < in->n; i++) {
            b.n = 0;
            replace_into(&b, in->s[i], in->len[i], d->a, d->b);
            toks_add(out, b.p ? b.p : "", b.n);
        }
        break;
    case TOK_DEC_BYTEFALLBACK:
        for (size_t i = 0; i < in->n; i++) {
            int v = byte_piece(in->s[i], in->len[i]);
            if (v >= 0) {
                char c = (char)v;
                tok_buf_add(&b, &c, 1);
            } else {
                flush_bytes(out, &b);
                toks_add(out, in->s[i], in->len[i]);
            }
        }
        flush_bytes(out, &b);
        break;
    case TOK_DEC_FUSE:
        tok_buf_add(&b, NULL, 0);
        for (size_t i = 0; i < in->n; i++) tok_buf_add(&b, in->s[i], in->len[i]);
        toks_add(out, b.p, b.n);
        break;
    case TOK_DEC_STRIP: {
        size_t lc = strlen(d->a);
        for (size_t i = 0; i < in->n; i++) {
            const char *s = in->s[i];
            size_t n = in->len[i];
            for (int k = 0; k < d->start && n >= lc && !memcmp(s, d->a, lc); k++) s += lc, n -= lc;
            for (int k = 0; k < d->stop && n >= lc && !memcmp(s + n - lc, d->a, lc); k++) n -= lc;
            toks_add(out, s, n);
        }
        break;
    }
    case TOK_DEC_BYTELEVEL: {
        tok_buf_add(&b, NULL, 0);
        for (size_t i = 0; i < in->n; i++) tok_bytelevel_decode(in->s[i], in->len[i], &b);
        tok_buf lossy = {0};
        tok_buf_add(&lossy, NULL, 0);
        tok_utf8_sanitize(b.p, b.n, &lossy);
        toks_add(out, lossy.p, lossy.n);
        free(lossy.p);
        break;
    }
    case TOK_DEC_METASPACE:
        for (size_t i = 0; i < in->n; i++) {
            b.n = 0;
            tok_buf_add(&b, NULL, 0);
            /* As HF: in the first token every replacement character is dropped (not
             * only a leading one) unless the prepend scheme is "never". */
            replace_into(&b, in->s[i], in->len[i], d->a, i == 0 && d->prefix_space ? "" : " ");
            toks_add(out, b.p, b.n);
        }
        break;
    }
    free(b.p);
}

ms_status ms_tokenizer_decode(const ms_tokenizer *t, const int32_t *ids, int32_t n_ids, bool skip_special, char **text,
                              ms_error *err) {
    *text = NULL;
    toks cur = {0};
    for (int32_t i = 0; i < n_ids; i++) {
        int32_t id = ids[i];
        /* As HF tokenizers: an id with no token (a model's embedding rows beyond the
         * tokenizer, e.g. 32002..32063 in llava-1.5) decodes to nothing. */
        if (id < 0 || id >= t->n_ids || !t->pieces[id]) continue;
        if (skip_special && t->is_special[id]) continue;
        toks_add(&cur, t->pieces[id], t->piece_lens[id]);
    }
    tok_buf out = {0};
    tok_buf_add(&out, NULL, 0);
    if (t->n_decs == 0) { /* HF without a decoder joins the pieces with spaces */
        for (size_t i = 0; i < cur.n; i++) {
            if (i) tok_buf_addc(&out, ' ');
            tok_buf_add(&out, cur.s[i], cur.len[i]);
        }
    } else {
        for (int k = 0; k < t->n_decs; k++) {
            toks next = {0};
            apply_decoder(&t->decs[k], &cur, &next);
            toks_free(&cur);
            cur = next;
        }
        for (size_t i = 0; i < cur.n; i++) tok_buf_add(&out, cur.s[i], cur.len[i]);
    }
    toks_free(&cur);
    /* U+0000 (the piece <0x00>, or byte 0 of a byte-level token) cannot live in the C
     * string every caller gets: it is dropped, so the text after it survives (HF keeps
     * it; docs/tokenizer.md lists this difference). */
    size_t kept = 0;
    for (size_t i = 0; i < out.n; i++)
        if (out.p[i]) out.p[kept++] = out.p[i];
    out.p[kept] = 0;
    *text = out.p;
    return MS_OK;
}

/* ---- incremental decoding ---- */

struct ms_tokenizer_stream {
    const ms_tokenizer *tok;
    bool skip_special;
    int32_t *ids;      /* (n) the window: ids whose text is partly emitted */
    int32_t n, cap;
    int32_t prefix_index; /* ids[0 .. prefix_index) decode to `prefix` */
    char *prefix;
};

ms_tokenizer_stream *ms_tokenizer_stream_new(const ms_tokenizer *tok, bool skip_special) {
    ms_tokenizer_stream *s = ms_xcalloc(1, sizeof *s);
    s->tok = tok;
    s->skip_special = skip_special;
    s->prefix = ms_xstrdup("");
    return s;
}

void ms_tokenizer_stream_free(ms_tokenizer_stream *s) {
    if (!s) return;
    free(s->ids);
    free(s->prefix);
    free(s);
}

static bool ends_with_fffd(const char *s) {
    size_t n = strlen(s);
    return n >= 3 && !memcmp(s + n - 3, "\xEF\xBF\xBD", 3);
}

ms_status ms_tokenizer_stream_push(ms_tokenizer_stream *s, int32_t id, char **text, ms_error *err) {
    *text = NULL;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->ids = ms_xrealloc(s->ids, (size_t)s->cap * sizeof *s->ids);
    }
    s->ids[s->n++] = id;
    char *full;
    ms_status st = ms_tokenizer_decode(s->tok, s->ids, s->n, s->skip_special, &full, err);
    if (st != MS_OK) {
        s->n--;
        return st;
    }
    size_t lp = strlen(s->prefix), lf = strlen(full);
    /* Emit once the text grew past the window's prefix and ends in complete UTF-8; a
     * decoder that rewrote the prefix (it should not) resets the window. */
    if (lf > lp && !ends_with_fffd(full) && !memcmp(full, s->prefix, lp)) {
        *text = ms_xstrdup(full + lp);
        /* Keep the ids from prefix_index on: their text is context for the next step
         * (the leading-space rules of the decoders need one token before). */
        int32_t keep_from = s->prefix_index;
        int32_t new_prefix_index = s->n - keep_from;
        memmove(s->ids, s->ids + keep_from, (size_t)(s->n - keep_from) * sizeof *s->ids);
        s->n -= keep_from;
        free(s->prefix);
        st = ms_tokenizer_decode(s->tok, s->ids, s->n, s->skip_special, &s->prefix, err);
        s->prefix_index = new_prefix_index;
        free(full);
        if (st != MS_OK) {
            free(*text);
            *text = NULL;
            s->prefix = ms_xstrdup("");
        }
        return st;
    }
    free(full);
    *text = ms_xstrdup("");
    return MS_OK;
}

ms_status ms_tokenizer_stream_finish(ms_tokenizer_stream *s, char **text, ms_error *err) {
    *text = NULL;
    char *full;
    ms_status st = ms_tokenizer_decode(s->tok, s->ids, s->n, s->skip_special, &full, err);
    if (st != MS_OK) return st;
    size_t lp = strlen(s->prefix), lf = strlen(full);
    if (lf > lp && !memcmp(full, s->prefix, lp)) {
        *text = ms_xstrdup(full + lp);
    } else if (lf == lp && !memcmp(full, s->prefix, lp)) {
        *text = ms_xstrdup("");
    } else {
        /* The held-back ids turned text already sent into U+FFFD (a byte-fallback run
         * that is invalid UTF-8 only as a whole): what was sent stays sent, and the
         * held-back ids are decoded on their own so nothing is dropped. */
        st = ms_tokenizer_decode(s->tok, s->ids + s->prefix_index, s->n - s->prefix_index,
                                 s->skip_special, text, err);
        if (st != MS_OK) {
            free(full);
            return st;
        }
    }
    free(full);
    s->n = 0;
    s->prefix_index = 0;
    free(s->prefix);
    s->prefix = ms_xstrdup("");
    return MS_OK;
}

/* ---- accessors ---- */

int32_t ms_tokenizer_bos_id(const ms_tokenizer *t) { return t->bos_id; }
int32_t ms_tokenizer_eos_id(const ms_tokenizer *t) { return t->eos_id; }
int32_t ms_tokenizer_pad_id(const ms_tokenizer *t) { return t->pad_id; }
int32_t ms_tokenizer_image_id(const ms_tokenizer *t) { return t->image_id; }
int32_t ms_tokenizer_n_ids(const ms_tokenizer *t) { return t->n_ids; }
const char *ms_tokenizer_piece(const ms_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids ? t->pieces[id] : NULL;
}
bool ms_tokenizer_is_special(const ms_tokenizer *t, int32_t id) { return id >= 0 && id < t->n_ids && t->is_special[id]; }
const char *ms_tokenizer_bos_token(const ms_tokenizer *t) { return t->bos_token; }
const char *ms_tokenizer_eos_token(const ms_tokenizer *t) { return t->eos_token; }
const char *ms_tokenizer_chat_template(const ms_tokenizer *t) { return t->chat_template; }
