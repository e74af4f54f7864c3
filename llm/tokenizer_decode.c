/*
 * Decoding: ids -> pieces (special added tokens dropped on request) -> the decoder
 * chain of tokenizer.json, each step over the list of token strings as HF tokenizers'
 * decode_chain does, joined at the end. A window of ids can be decoded as the part of
 * a longer sequence that follows text already decoded (tok_window: the decoders' rules
 * for the first token, a byte-fallback run begun before the window); incremental
 * decoding for streaming (tokenizer_stream.c) is built on that.
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

int tok_byte_piece(const char *s, size_t n) {
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

/* A byte-fallback run: its bytes when they are valid UTF-8 as a whole, else one U+FFFD
 * per byte (HF's ByteFallback: String::from_utf8 of the run, or U+FFFD x len).
 * force_invalid: the run began before a decoded window and is known ill-formed. */
static void flush_bytes(toks *out, tok_buf *bytes, bool force_invalid) {
    if (!bytes->n) return;
    tok_buf check = {0};
    if (!force_invalid && !tok_utf8_sanitize(bytes->p, bytes->n, &check)) toks_add(out, bytes->p, bytes->n);
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

/* Where a decoded window's first entry stands in the whole sequence's list of entries
 * at the current decoder step: `head` it is (part of) the list's first entry (the
 * first-token rules apply), `cont` it continues an entry begun before the window (its
 * start is not an entry's start). A whole sequence: head, not cont. */
typedef struct dec_pos {
    bool head, cont;
} dec_pos;

static void apply_decoder(const tok_dec *d, const tok_window *w, dec_pos *pos, toks *in, toks *out) {
    tok_buf b = {0};
    switch (d->kind) {
    case TOK_DEC_REPLACE:
        for (size_t i = 0; i < in->n; i++) {
            b.n = 0;
            replace_into(&b, in->s[i], in->len[i], d->a, d->b);
            toks_add(out, b.p ? b.p : "", b.n);
        }
        break;
    case TOK_DEC_BYTEFALLBACK: {
        /* The window's first run may have begun before it (w->lead_run). */
        const bool lead = w->lead_run != TOK_LEAD_NONE && in->n && tok_byte_piece(in->s[0], in->len[0]) >= 0;
        bool first_run = lead;
        for (size_t i = 0; i < in->n; i++) {
            int v = tok_byte_piece(in->s[i], in->len[i]);
            if (v >= 0) {
                char c = (char)v;
                tok_buf_add(&b, &c, 1);
            } else {
                flush_bytes(out, &b, first_run && w->lead_run == TOK_LEAD_INVALID);
                first_run = false;
                toks_add(out, in->s[i], in->len[i]);
            }
        }
        flush_bytes(out, &b, first_run && w->lead_run == TOK_LEAD_INVALID);
        if (lead) {
            /* an ill-formed run: one entry per byte, the window's first is not the
             * list's first; a well-formed one: the window's first entry goes on the
             * run's entry */
            pos->cont = w->lead_run == TOK_LEAD_VALID;
            pos->head = pos->head && pos->cont;
        }
        break;
    }
    case TOK_DEC_FUSE:
        tok_buf_add(&b, NULL, 0);
        for (size_t i = 0; i < in->n; i++) tok_buf_add(&b, in->s[i], in->len[i]);
        toks_add(out, b.p, b.n);
        pos->cont = w->has_before; /* one entry: the window's text goes on it */
        pos->head = true;
        break;
    case TOK_DEC_STRIP: {
        size_t lc = strlen(d->a);
        for (size_t i = 0; i < in->n; i++) {
            const char *s = in->s[i];
            size_t n = in->len[i];
            /* the start of an entry begun before the window was stripped already */
            for (int k = 0; k < d->start && !(i == 0 && pos->cont) && n >= lc && !memcmp(s, d->a, lc); k++)
                s += lc, n -= lc;
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
        pos->cont = w->has_before;
        pos->head = true;
        break;
    }
    case TOK_DEC_METASPACE:
        for (size_t i = 0; i < in->n; i++) {
            b.n = 0;
            tok_buf_add(&b, NULL, 0);
            /* As HF: in the first token every replacement character is dropped (not
             * only a leading one) unless the prepend scheme is "never". */
            replace_into(&b, in->s[i], in->len[i], d->a, i == 0 && pos->head && d->prefix_space ? "" : " ");
            toks_add(out, b.p, b.n);
        }
        break;
    }
    free(b.p);
}

ms_status tok_decode_window(const ms_tokenizer *t, const int32_t *ids, int32_t n_ids, bool skip_special,
                            const tok_window *w, char **text) {
    *text = NULL;
    toks cur = {0};
    for (int32_t i = 0; i < n_ids; i++) {
        int32_t id = ids[i];
        if (tok_id_dropped(t, id, skip_special)) continue;
        toks_add(&cur, t->pieces[id], t->piece_lens[id]);
    }
    tok_buf out = {0};
    tok_buf_add(&out, NULL, 0);
    if (t->n_decs == 0) { /* HF without a decoder joins the pieces with spaces */
        for (size_t i = 0; i < cur.n; i++) {
            if (i || w->has_before) tok_buf_addc(&out, ' ');
            tok_buf_add(&out, cur.s[i], cur.len[i]);
        }
    } else {
        dec_pos pos = {.head = !w->has_before, .cont = false};
        for (int k = 0; k < t->n_decs; k++) {
            toks next = {0};
            apply_decoder(&t->decs[k], w, &pos, &cur, &next);
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

bool tok_id_dropped(const ms_tokenizer *t, int32_t id, bool skip_special) {
    /* As HF tokenizers: an id with no token (a model's embedding rows beyond the
     * tokenizer, e.g. 32002..32063 in llava-1.5) decodes to nothing. */
    if (id < 0 || id >= t->n_ids || !t->pieces[id]) return true;
    return skip_special && t->is_special[id];
}

ms_status ms_tokenizer_decode(const ms_tokenizer *t, const int32_t *ids, int32_t n_ids, bool skip_special, char **text,
                              ms_error *err) {
    (void)err;
    const tok_window whole = {.has_before = false, .lead_run = TOK_LEAD_NONE};
    return tok_decode_window(t, ids, n_ids, skip_special, &whole, text);
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
