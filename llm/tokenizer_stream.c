/*
 * Incremental decoding for streaming: the ids pushed one at a time, the text sent as
 * soon as it is final, so that the pieces sent join to exactly ms_tokenizer_decode of
 * all ids (llm/tokenizer.h).
 *
 * The stream keeps only the pending ids: those whose text is not final yet. Text is
 * final when later ids cannot change it:
 *   - a byte-fallback run (consecutive <0xNN> pieces; dropped ids do not break it)
 *     decodes, as in HF's ByteFallback, to its bytes when it is well-formed UTF-8 as a
 *     whole, else to one U+FFFD per byte. So a run that is well-formed so far (an
 *     incomplete last character included) is held until it ends (a text token) or turns
 *     ill-formed (then every byte, before and after, is U+FFFD: sent at once, byte by
 *     byte);
 *   - ByteLevel (the first decoder) joins the bytes of all tokens and decodes them as
 *     lossy UTF-8 (a maximal ill-formed subpart -> one U+FFFD): text is final up to the
 *     last token boundary that is a character boundary before a character whose end is
 *     still to come;
 *   - with other decoders text that ends in U+FFFD is held until the next id, as HF's
 *     DecodeStream and vLLM's detokenizer do (pieces there are plain text).
 * Final ids are decoded as a window that follows the text already sent (tok_window:
 * first-token rules off, a run begun before the window), sent, and dropped from the
 * stream. Nothing else is kept, so the work per id is bounded: at most
 * MS_TOKENIZER_STREAM_MAX_HOLD ids are held. A well-formed run longer than that has its
 * complete characters sent (the one case where the joined text can differ from the
 * full decode: such a run ill-formed at its end; docs/tokenizer.md).
 * Not followed exactly: Strip decoders with stop > 0 or start > 1 (not in any supported
 * family).
 */
#include "llm/tokenizer_internal.h"

#include <string.h>

typedef enum run_state { RUN_NONE, RUN_VALID, RUN_INVALID } run_state;
/* How the decoders join bytes across tokens. */
typedef enum stream_mode { MODE_BYTE_RUNS, MODE_BYTE_LEVEL, MODE_TEXT } stream_mode;

struct ms_tokenizer_stream {
    const ms_tokenizer *tok;
    bool skip_special;
    stream_mode mode;    /* BYTE_RUNS: the decoders include ByteFallback (<0xNN> runs);
                          * BYTE_LEVEL: the first decoder is ByteLevel; TEXT: neither */
    int32_t *ids;        /* (cap) the pending ids (none dropped) */
    int32_t n, cap;
    tok_window win;      /* how ids[0] follows the text sent */
    /* the byte-fallback run at the end of the pending ids */
    run_state run;
    int32_t run_start;     /* index in ids of its first byte here */
    int32_t run_boundary;  /* index in ids after its last complete character */
    int need;              /* continuation bytes the last character still needs */
    unsigned lo, hi;       /* the range of the next continuation byte */
    ms_tokenizer_stream_stats stats;
};

ms_tokenizer_stream *ms_tokenizer_stream_new(const ms_tokenizer *tok, bool skip_special) {
    ms_tokenizer_stream *s = ms_xcalloc(1, sizeof *s);
    s->tok = tok;
    s->skip_special = skip_special;
    s->mode = tok->n_decs && tok->decs[0].kind == TOK_DEC_BYTELEVEL ? MODE_BYTE_LEVEL : MODE_TEXT;
    for (int k = 0; k < tok->n_decs; k++)
        if (tok->decs[k].kind == TOK_DEC_BYTEFALLBACK) s->mode = MODE_BYTE_RUNS;
    s->cap = 16;
    s->ids = ms_xmalloc((size_t)s->cap * sizeof *s->ids);
    return s;
}

void ms_tokenizer_stream_free(ms_tokenizer_stream *s) {
    if (!s) return;
    free(s->ids);
    free(s);
}

void ms_tokenizer_stream_get_stats(const ms_tokenizer_stream *s, ms_tokenizer_stream_stats *out) { *out = s->stats; }

/* One byte of the run through a UTF-8 validator (Unicode table 3-7, as Rust's
 * String::from_utf8 that HF's ByteFallback uses); false when the run is ill-formed. */
static bool utf8_feed(ms_tokenizer_stream *s, unsigned b) {
    if (s->need) {
        if (b < s->lo || b > s->hi) return false;
        s->need--;
        s->lo = 0x80, s->hi = 0xBF;
        return true;
    }
    s->lo = 0x80, s->hi = 0xBF;
    if (b < 0x80) return true;
    if (b >= 0xC2 && b <= 0xDF) s->need = 1;
    else if (b >= 0xE0 && b <= 0xEF) {
        s->need = 2;
        if (b == 0xE0) s->lo = 0xA0;      /* no overlong form */
        else if (b == 0xED) s->hi = 0x9F; /* no surrogate */
    } else if (b >= 0xF0 && b <= 0xF4) {
        s->need = 3;
        if (b == 0xF0) s->lo = 0x90;      /* no overlong form */
        else if (b == 0xF4) s->hi = 0x8F; /* nothing past U+10FFFF */
    } else
        return false;
    return true;
}

/* Sends ids[0 .. k): decoded as the window after the text sent, then dropped. */
static ms_status send_first(ms_tokenizer_stream *s, int32_t k, char **text) {
    ms_status st = tok_decode_window(s->tok, s->ids, k, s->skip_special, &s->win, text);
    if (st != MS_OK) return st;
    s->stats.ids_decoded += k;
    if (k > s->stats.peak_window) s->stats.peak_window = k;
    if (k == 0) return MS_OK;
    s->win.has_before = true;
    /* A cut inside the run: the rest of it goes on from the window's start. */
    if (s->run != RUN_NONE && s->run_start < k) {
        s->win.lead_run = s->run == RUN_INVALID ? TOK_LEAD_INVALID : TOK_LEAD_VALID;
        s->run_start = k;
    } else
        s->win.lead_run = TOK_LEAD_NONE;
    s->run_start -= k;
    s->run_boundary = s->run_boundary > k ? s->run_boundary - k : 0;
    memmove(s->ids, s->ids + k, (size_t)(s->n - k) * sizeof *s->ids);
    s->n -= k;
    return MS_OK;
}

/* ByteLevel: how many pending ids have final text. Their bytes (GPT-2's map undone)
 * are scanned unit by unit (tok_utf8_unit); a token boundary reached exactly is final,
 * the scan stops at a character whose end is still to come. */
static int32_t byte_level_final(ms_tokenizer_stream *s) {
    tok_buf b = {0};
    size_t *off = ms_xmalloc((size_t)(s->n + 1) * sizeof *off); /* (n + 1) token starts in b */
    for (int32_t i = 0; i < s->n; i++) {
        off[i] = b.n;
        tok_bytelevel_decode(s->tok->pieces[s->ids[i]], s->tok->piece_lens[s->ids[i]], &b);
    }
    off[s->n] = b.n;
    s->stats.ids_decoded += s->n;
    if (s->n > s->stats.peak_window) s->stats.peak_window = s->n;
    const unsigned char *u = (const unsigned char *)b.p;
    size_t p = 0;
    int32_t k = 0;
    for (int32_t i = 1; i <= s->n; i++) {
        bool incomplete = false;
        while (p < off[i]) {
            size_t l = tok_utf8_unit(u + p, b.n - p);
            if (l == 0) {
                incomplete = true;
                break;
            }
            p += l;
        }
        if (incomplete) break;
        if (p == off[i]) k = i;
    }
    free(off);
    free(b.p);
    return k;
}

static bool ends_with_fffd(const char *t) {
    size_t n = strlen(t);
    return n >= 3 && !memcmp(t + n - 3, "\xEF\xBF\xBD", 3);
}

ms_status ms_tokenizer_stream_push(ms_tokenizer_stream *s, int32_t id, char **text, ms_error *err) {
    (void)err;
    *text = NULL;
    s->stats.pushed++;
    /* A dropped id (no such token, or special under skip_special) has no text and does
     * not end a byte run: nothing changes. */
    if (tok_id_dropped(s->tok, id, s->skip_special)) {
        *text = ms_xstrdup("");
        return MS_OK;
    }
    if (s->n == s->cap) {
        s->cap *= 2;
        s->ids = ms_xrealloc(s->ids, (size_t)s->cap * sizeof *s->ids);
    }
    s->ids[s->n++] = id;
    const int byte = s->mode == MODE_BYTE_RUNS ? tok_byte_piece(s->tok->pieces[id], s->tok->piece_lens[id]) : -1;
    if (byte < 0)
        s->run = RUN_NONE; /* a text token ends the run: its text is final */
    else {
        if (s->run == RUN_NONE) {
            s->run = RUN_VALID;
            s->run_start = s->run_boundary = s->n - 1;
            s->need = 0;
        }
        if (s->run == RUN_VALID) {
            if (!utf8_feed(s, (unsigned)byte)) s->run = RUN_INVALID; /* for good */
            else if (s->need == 0) s->run_boundary = s->n;
        }
    }
    /* k: how many pending ids have final text */
    int32_t k = s->n;
    if (s->run == RUN_VALID) {
        k = s->run_start;
        if (s->n - s->run_start > MS_TOKENIZER_STREAM_MAX_HOLD) k = s->run_boundary;
    } else if (s->mode == MODE_BYTE_LEVEL) {
        k = byte_level_final(s); /* holds at most the tokens of one character */
        if (s->n - k > MS_TOKENIZER_STREAM_MAX_HOLD) k = s->n;
    }
    if (k == 0) {
        *text = ms_xstrdup("");
        return MS_OK;
    }
    if (s->mode == MODE_TEXT && s->n <= MS_TOKENIZER_STREAM_MAX_HOLD) {
        /* Other decoders: text ending in U+FFFD may be a character whose last bytes are
         * still to come (as HF's DecodeStream holds it). */
        char *all;
        ms_status st = tok_decode_window(s->tok, s->ids, s->n, s->skip_special, &s->win, &all);
        if (st != MS_OK) return st;
        s->stats.ids_decoded += s->n;
        if (s->n > s->stats.peak_window) s->stats.peak_window = s->n;
        bool hold = ends_with_fffd(all);
        free(all);
        if (hold) {
            *text = ms_xstrdup("");
            return MS_OK;
        }
    }
    return send_first(s, k, text);
}

ms_status ms_tokenizer_stream_finish(ms_tokenizer_stream *s, char **text, ms_error *err) {
    (void)err;
    ms_status st = send_first(s, s->n, text);
    if (st != MS_OK) return st;
    /* ready for a new sequence */
    s->n = 0;
    s->win = (tok_window){.has_before = false, .lead_run = TOK_LEAD_NONE};
    s->run = RUN_NONE;
    s->run_start = s->run_boundary = 0;
    s->need = 0;
    return MS_OK;
}
