/*
 * Inside the tokenizer (llm/tokenizer*.c only). The pipeline is Hugging Face
 * tokenizers': added tokens split the text first, then each remaining span goes
 * through the normalizer, the pre-tokenizer (into words), the BPE model (words into
 * ids), and finally the post-processor adds BOS/EOS.
 */
#ifndef MS_LLM_TOKENIZER_INTERNAL_H
#define MS_LLM_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llm/tokenizer.h"

/* ---- string -> int32 hash map (open addressing; keys are owned copies) ---- */
typedef struct tok_map {
    char **keys;      /* (cap) NULL = empty slot */
    uint32_t *lens;   /* (cap) */
    int32_t *vals;    /* (cap) */
    uint32_t cap, n;  /* cap a power of two */
} tok_map;

void tok_map_init(tok_map *m, uint32_t expected);
void tok_map_free(tok_map *m);
/* Returns false (and keeps the old value) when the key exists already. */
bool tok_map_put(tok_map *m, const char *key, size_t len, int32_t val);
/* -1 when missing. */
int32_t tok_map_get(const tok_map *m, const char *key, size_t len);
uint64_t tok_hash(const void *p, size_t n);

/* ---- a growing byte string ---- */
typedef struct tok_buf {
    char *p;
    size_t n, cap;
} tok_buf;
void tok_buf_add(tok_buf *b, const char *s, size_t n);
void tok_buf_addc(tok_buf *b, char c);

/* ---- pipeline components ---- */
typedef enum tok_norm_kind {
    TOK_NORM_PREPEND,
    TOK_NORM_REPLACE, /* string pattern */
    TOK_NORM_NFC,
} tok_norm_kind;

typedef struct tok_norm {
    tok_norm_kind kind;
    char *a, *b; /* PREPEND: a = prefix; REPLACE: a -> b */
} tok_norm;

typedef enum tok_pretok_kind {
    TOK_PRE_SPLIT,     /* regex split, behavior Isolated (or Removed with invert false) */
    TOK_PRE_BYTELEVEL, /* bytes -> printable unicode; optional GPT-2 regex, prefix space */
    TOK_PRE_METASPACE, /* ' ' -> '▁', prepend scheme always/first/never, split */
} tok_pretok_kind;

typedef struct tok_pretok {
    tok_pretok_kind kind;
    pcre2_code *re;      /* SPLIT, BYTELEVEL with use_regex */
    bool add_prefix_space;
    bool split;          /* METASPACE */
    int prepend_scheme;  /* METASPACE: 0 always, 1 first, 2 never */
    char *replacement;   /* METASPACE */
    bool removed;        /* SPLIT behavior Removed */
} tok_pretok;

typedef enum tok_dec_kind {
    TOK_DEC_REPLACE,
    TOK_DEC_BYTEFALLBACK,
    TOK_DEC_FUSE,
    TOK_DEC_STRIP,
    TOK_DEC_BYTELEVEL,
    TOK_DEC_METASPACE,
} tok_dec_kind;

typedef struct tok_dec {
    tok_dec_kind kind;
    char *a, *b;        /* REPLACE a -> b; STRIP a = content; METASPACE a = replacement */
    int start, stop;    /* STRIP */
    bool prefix_space;  /* METASPACE: strip the first token's leading space */
} tok_dec;

typedef struct tok_added {
    char *content;
    uint32_t len;
    char *match;        /* what is searched for: content, or content normalized when
                         * `normalized` (HF matches those in normalized text) */
    uint32_t match_len;
    int32_t id;
    bool special, lstrip, rstrip, normalized, single_word;
} tok_added;

typedef struct tok_merge_entry {
    uint64_t key;  /* (left id << 32) | right id; 0 with rank -1 = empty */
    int32_t rank, merged;
} tok_merge_entry;

typedef struct tok_cache_entry {
    char *word;    /* owned; NULL = empty */
    uint32_t len;
    int32_t *ids;  /* (n_ids) */
    uint32_t n_ids;
} tok_cache_entry;

enum { TOK_MAX_POST = 8, TOK_CACHE_SLOTS = 1 << 14 };

struct ms_tokenizer {
    /* vocabulary: model pieces and added tokens by id */
    int32_t n_ids;          /* max id + 1 */
    int32_t id_cap;         /* allocated entries of the three arrays below */
    char **pieces;          /* (n_ids) NULL = hole */
    uint32_t *piece_lens;   /* (n_ids) */
    bool *is_special;       /* (n_ids) added token marked special */
    tok_map vocab;          /* model piece -> id */

    /* BPE model */
    tok_merge_entry *merges; /* open-addressed by key, (merge_cap) */
    uint32_t merge_cap;
    int32_t unk_id;
    bool byte_fallback, fuse_unk, ignore_merges;
    int32_t byte_ids[256];   /* <0xNN> pieces, -1 when absent */
    int32_t char_ids[256];   /* byte-level: id of the single-byte symbol, -1 when absent */

    /* pipeline */
    tok_norm *norms;
    int n_norms;
    tok_pretok *pretoks;
    int n_pretoks;
    bool byte_level;         /* ByteLevel pre-tokenizer present: map bytes first */
    tok_dec *decs;
    int n_decs;
    int32_t post_single[TOK_MAX_POST]; /* ids, -1 marks the sequence */
    int n_post_single;

    /* added tokens: matched before the model, longest first at each position */
    tok_added *added;
    int n_added;
    tok_map added_map;       /* content -> index into added */
    bool added_first_byte[2][256]; /* [normalized][first byte of match] */
    pcre2_code *word_re, *space_re; /* \w and \s (Unicode) for single_word / lstrip / rstrip */

    /* tokenizer_config.json */
    int32_t bos_id, eos_id, pad_id, image_id;
    bool add_bos, add_eos;
    char *chat_template;
    char *bos_token, *eos_token;

    /* per-word cache; the tokenizer is shared read-only across threads, so it is
     * guarded by a lock */
    tok_cache_entry *cache;  /* (TOK_CACHE_SLOTS) */
    void *cache_lock;        /* pthread_mutex_t* */
};

/* tokenizer_bytes.c: GPT-2's byte <-> printable code point table. */
void tok_bytelevel_encode(const char *s, size_t n, tok_buf *out);
/* Reverses the map; code points outside it are copied as UTF-8 (as HF does). */
void tok_bytelevel_decode(const char *s, size_t n, tok_buf *out);
/* Length of the UTF-8 sequence starting at s (1 when ill-formed). */
size_t tok_utf8_len(const unsigned char *s, size_t n);
/* Appends s with every ill-formed subsequence replaced by U+FFFD (as a JavaScript or
 * Rust lossy decoder does); returns whether anything was replaced. */
bool tok_utf8_sanitize(const char *s, size_t n, tok_buf *out);
/* The length of a lossy decoder's next unit at s (a character, or a maximal ill-formed
 * subpart that becomes one U+FFFD), 0 when s[0..n) is a proper prefix of a character
 * (how it decodes depends on the bytes after). */
size_t tok_utf8_unit(const unsigned char *s, size_t n);
bool tok_utf8_valid(const char *s, size_t n);
/* Decodes one code point (U+FFFD, length 1 when ill-formed). */
uint32_t tok_utf8_decode(const unsigned char *s, size_t n, size_t *len);
size_t tok_utf8_encode(uint32_t cp, char *out);

/* tokenizer_decode.c: a window of ids decoded as the part of a longer sequence that
 * follows text decoded already (what streaming needs; a whole sequence is
 * {false, TOK_LEAD_NONE}). has_before: a token that decodes (not dropped) comes before
 * ids[0], so the decoders' first-token rules (Metaspace's prefix, Strip's start on the
 * fused text) do not apply and a decoder-less join puts a space before the window.
 * lead_run: ids[0]'s byte-fallback run began before the window, ill-formed (its bytes
 * here become U+FFFD each, as in the whole run) or well-formed so far. */
typedef enum tok_lead_run { TOK_LEAD_NONE, TOK_LEAD_INVALID, TOK_LEAD_VALID } tok_lead_run;
typedef struct tok_window {
    bool has_before;
    tok_lead_run lead_run;
} tok_window;
ms_status tok_decode_window(const ms_tokenizer *t, const int32_t *ids, int32_t n_ids, bool skip_special,
                            const tok_window *w, char **text);
/* Whether decoding drops id: no such token, or a special one under skip_special. */
bool tok_id_dropped(const ms_tokenizer *t, int32_t id, bool skip_special);
/* "<0xNN>" -> NN, else -1. */
int tok_byte_piece(const char *s, size_t n);

/* tokenizer_bpe.c */
void tok_bpe_word(const ms_tokenizer *t, const char *w, size_t n, int32_t **ids, size_t *n_ids, size_t *cap);
void tok_merges_init(ms_tokenizer *t, uint32_t expected);
void tok_merges_put(ms_tokenizer *t, int32_t left, int32_t right, int32_t rank, int32_t merged);

/* tokenizer_encode.c: runs the normalizers over s (as HF does for normalized added
 * tokens' contents). */
ms_status tok_normalize(const ms_tokenizer *t, const char *s, size_t n, tok_buf *out, ms_error *err);

/* tokenizer_parts.c: compiles a split regex with Unicode properties (PCRE2_UCP). */
ms_status tok_compile_regex(const char *pattern, pcre2_code **out, ms_error *err);

#endif
