/*
 * Streaming decode (ms_tokenizer_stream_*) on the tiny tokenizer, over id sequences full
 * of byte-fallback pieces (<0xNN> = id 3 + NN): random bytes, well-formed and ill-formed
 * UTF-8, 4-byte emoji split over pieces, long runs, special and unknown ids between.
 * For every sequence:
 *   - exact: the pieces joined equal ms_tokenizer_decode of all ids;
 *   - flow: after each push the text sent covers every id but a held byte-fallback run
 *     that is well-formed UTF-8 so far (its text depends on how it ends); such a run is
 *     never held past MS_TOKENIZER_STREAM_MAX_HOLD ids;
 *   - bounded work: the stream's counters, no decode of more than MAX_HOLD + 1 ids and
 *     each id decoded once, over 5,000-id streams.
 * And a byte-level tokenizer (GPT-2's byte alphabet, one token per byte, decoder
 * ByteLevel: lossy UTF-8 over all bytes): exact, and nothing held but the bytes of one
 * incomplete character.
 */
#include <stdlib.h>
#include <string.h>

#include "llm/tokenizer.h"
#include "test_util.h"

#define BYTE_ID(b) (3 + (int32_t)(b))
#define FFFD "\xEF\xBF\xBD"

static ms_tokenizer *g_tok;

static bool dropped(int32_t id, bool skip) {
    return !ms_tokenizer_piece(g_tok, id) || (skip && ms_tokenizer_is_special(g_tok, id));
}

static int byte_of(int32_t id) { return id >= 3 && id < 259 ? id - 3 : -1; }

/* Whether bytes are well-formed UTF-8 save an incomplete last character: the test's own
 * check, written apart from the stream's (Unicode table 3-7). */
static bool wellformed_so_far(const unsigned char *b, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = b[i];
        size_t len;
        unsigned lo = 0x80, hi = 0xBF;
        if (c < 0x80) len = 1;
        else if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c >= 0xE0 && c <= 0xEF) len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        else if (c >= 0xF0 && c <= 0xF4) len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        else return false;
        for (size_t k = 1; k < len; k++) {
            if (i + k >= n) return true; /* incomplete at the end */
            unsigned d = b[i + k];
            if (k == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xBF)) return false;
        }
        i += len;
    }
    return true;
}

static char *decode(const int32_t *ids, int32_t n, bool skip) {
    char *t = NULL;
    ms_error err = {0};
    EXPECTF(ms_tokenizer_decode(g_tok, ids, n, skip, &t, &err) == MS_OK, "%s", err.msg);
    return t ? t : strdup("");
}

/* The first id whose text may still be held after ids[0 .. i]: the start of a trailing
 * byte run that is well-formed so far, else i + 1. (A run longer than the hold limit
 * is sent a character at a time; test_bounded checks that flow.) */
static int32_t may_hold_from(const int32_t *ids, int32_t i, bool skip) {
    static unsigned char run[1 << 16];
    int32_t start = i + 1, n_run = 0;
    for (int32_t j = i; j >= 0 && n_run < (int32_t)sizeof run; j--) {
        if (dropped(ids[j], skip)) continue;
        if (byte_of(ids[j]) < 0) break;
        start = j;
        run[n_run++] = (unsigned char)byte_of(ids[j]);
    }
    if (n_run == 0) return i + 1;
    if (n_run > MS_TOKENIZER_STREAM_MAX_HOLD) return start;
    for (int32_t a = 0, b = n_run - 1; a < b; a++, b--) { /* collected backwards */
        unsigned char t = run[a];
        run[a] = run[b], run[b] = t;
    }
    return wellformed_so_far(run, (size_t)n_run) ? start : i + 1;
}

typedef struct stream_check {
    int late_steps;      /* steps that held more than may_hold_from allows */
    int longest_silence; /* most steps in a row with nothing sent */
    int deltas;          /* non-empty pieces */
    ms_tokenizer_stream_stats stats;
} stream_check;

/* Streams ids; checks the joined text against decode and the flow after every step. */
static stream_check check_stream(const char *label, const int32_t *ids, int32_t n, bool skip) {
    stream_check c = {0};
    char *full = decode(ids, n, skip);
    size_t full_len = strlen(full), sent = 0;
    char *joined = calloc(1, full_len + 1);
    ms_tokenizer_stream *s = ms_tokenizer_stream_new(g_tok, skip);
    ms_error err = {0};
    bool ok = true;
    int silence = 0;
    for (int32_t i = 0; i <= n && ok; i++) {
        char *piece = NULL;
        ms_status st = i < n ? ms_tokenizer_stream_push(s, ids[i], &piece, &err) : ms_tokenizer_stream_finish(s, &piece, &err);
        EXPECTF(st == MS_OK, "%s: step %d: %s", label, i, err.msg);
        size_t l = piece ? strlen(piece) : 0;
        if (sent + l > full_len || (l && memcmp(full + sent, piece, l))) {
            EXPECTF(false, "%s: step %d sends '%s', not what the full decode has at byte %zu", label, i,
                    piece ? piece : "", sent);
            ok = false;
        } else if (l) {
            memcpy(joined + sent, piece, l);
            sent += l;
            c.deltas++;
        }
        silence = l ? 0 : silence + 1;
        if (silence > c.longest_silence) c.longest_silence = silence;
        free(piece);
        if (i == n || !ok) break;
        /* flow: everything before may_hold_from is sent */
        int32_t from = may_hold_from(ids, i, skip);
        char *final_part = decode(ids, from, skip);
        if (sent < strlen(final_part)) c.late_steps++;
        free(final_part);
    }
    EXPECTF(ok && sent == full_len, "%s: joined %zu bytes '%s' vs decode %zu bytes '%s'", label, sent, joined,
            full_len, full);
    EXPECTF(c.late_steps == 0, "%s: %d steps held text that was final", label, c.late_steps);
    ms_tokenizer_stream_get_stats(s, &c.stats);
    ms_tokenizer_stream_free(s);
    free(joined);
    free(full);
    return c;
}

/* ---- sequences ---- */

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(uint32_t n) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng % n);
}

static int32_t put_char(int32_t *ids, int32_t m, uint32_t cp) {
    unsigned char b[4];
    int n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (n == 1) b[0] = (unsigned char)cp;
    else {
        for (int k = n - 1; k > 0; k--, cp >>= 6) b[k] = (unsigned char)(0x80 | (cp & 0x3F));
        b[0] = (unsigned char)((n == 2 ? 0xC0 : n == 3 ? 0xE0 : 0xF0) | cp);
    }
    for (int k = 0; k < n; k++) ids[m++] = BYTE_ID(b[k]);
    return m;
}

/* A random sequence of kind: 0 uniform random bytes with text tokens between, 1 well-
 * formed characters (emoji, CJK, accents) with now and then a corrupted byte, 2 only
 * byte pieces with special and unknown ids between. */
static int32_t random_ids(int kind, int32_t *ids, int32_t cap) {
    int32_t m = 0;
    while (m < cap - 8) {
        uint32_t r = rnd(100);
        if (kind == 0) ids[m++] = r < 70 ? BYTE_ID(rnd(256)) : r < 92 ? 259 + (int32_t)rnd(741) : r < 96 ? 1000 : 7777;
        else if (kind == 1) {
            if (r < 60) {
                static const uint32_t cps[] = {0x1F600, 0x1F44D, 0x65E5, 0x672C, 0xE9, 0x20AC, 0x41, 0x10FFFF, 0xD7FF};
                m = put_char(ids, m, cps[rnd(sizeof cps / sizeof cps[0])]);
            } else if (r < 85)
                ids[m++] = 259 + (int32_t)rnd(741);
            else if (r < 95)
                ids[m++] = BYTE_ID(0x80 + rnd(0x80)); /* a stray continuation or lead byte */
            else
                ids[m++] = r < 98 ? 1 : 1001;
        } else
            ids[m++] = r < 90 ? BYTE_ID(rnd(256)) : r < 95 ? 2 : -5;
    }
    return m;
}

static void test_cases(void) {
    struct {
        const char *label;
        int32_t ids[16];
        int32_t n;
        const char *want;
    } cases[] = {
        /* valid at its start, ill-formed at its end: the whole run is U+FFFD per byte */
        {"euro A then half an emoji", {BYTE_ID(0xE2), BYTE_ID(0x82), BYTE_ID(0xAC), BYTE_ID(0x41), BYTE_ID(0xF0), BYTE_ID(0x9F)}, 6,
         FFFD FFFD FFFD FFFD FFFD FFFD},
        /* the same run closed by a text token before it goes bad */
        {"euro then text", {BYTE_ID(0xE2), BYTE_ID(0x82), BYTE_ID(0xAC), 300, BYTE_ID(0x80)}, 5, NULL},
        /* a 4-byte emoji over four pieces, a special and an unknown id inside the run */
        {"emoji split", {BYTE_ID(0xF0), 1000, BYTE_ID(0x9F), 99999, BYTE_ID(0x98), BYTE_ID(0x80), 300}, 7, NULL},
        {"lone continuation", {300, BYTE_ID(0x80), BYTE_ID(0x41), 301}, 4, NULL},
        {"surrogate", {BYTE_ID(0xED), BYTE_ID(0xA0), BYTE_ID(0x80)}, 3, FFFD FFFD FFFD},
        {"only specials", {1, 2, 1000}, 3, ""},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int skip = 0; skip < 2; skip++) {
            check_stream(cases[c].label, cases[c].ids, cases[c].n, skip);
            if (cases[c].want && skip) {
                char *full = decode(cases[c].ids, cases[c].n, true);
                EXPECTF(!strcmp(full, cases[c].want), "%s: decode '%s'", cases[c].label, full);
                free(full);
            }
        }
    }
    /* An ill-formed run flows: after the byte that makes it ill-formed every byte so
     * far is sent, then each later byte of the run at once. */
    const int32_t bad[] = {BYTE_ID(0x41), BYTE_ID(0xFF), BYTE_ID(0x42), BYTE_ID(0x43)};
    ms_tokenizer_stream *s = ms_tokenizer_stream_new(g_tok, true);
    ms_error err = {0};
    const char *want[] = {"", FFFD FFFD, FFFD, FFFD};
    for (int i = 0; i < 4; i++) {
        char *piece = NULL;
        EXPECT(ms_tokenizer_stream_push(s, bad[i], &piece, &err) == MS_OK);
        EXPECTF(piece && !strcmp(piece, want[i]), "ill-formed run step %d: '%s'", i, piece ? piece : "");
        free(piece);
    }
    ms_tokenizer_stream_free(s);
}

static void test_random(void) {
    enum { LEN = 200, PER_KIND = 30 };
    int32_t ids[LEN];
    int worst_held[3] = {0}, deltas[3] = {0}, pushed[3] = {0};
    for (int kind = 0; kind < 3; kind++) {
        for (int t = 0; t < PER_KIND; t++) {
            int32_t n = random_ids(kind, ids, LEN);
            char label[64];
            snprintf(label, sizeof label, "random kind %d #%d", kind, t);
            stream_check c = check_stream(label, ids, n, t % 2);
            if (c.longest_silence > worst_held[kind]) worst_held[kind] = c.longest_silence;
            deltas[kind] += c.deltas;
            pushed[kind] += n;
        }
        printf("random kind %d: %d sequences, %d ids, %d non-empty deltas, at most %d steps in a row without text\n", kind, PER_KIND,
               pushed[kind], deltas[kind], worst_held[kind]);
        EXPECTF(worst_held[kind] <= MS_TOKENIZER_STREAM_MAX_HOLD + 1, "kind %d: %d steps without text", kind,
                worst_held[kind]);
    }
}

/* 5,000 ids of byte pieces (random bytes; well-formed 4-byte characters, one endless
 * run; ASCII bytes): each push decodes at most MAX_HOLD + 1 ids, each id is decoded
 * once, and text keeps coming. */
static void test_bounded(void) {
    enum { N = 5000 };
    int32_t *ids = malloc(N * sizeof *ids);
    for (int kind = 0; kind < 3; kind++) {
        int32_t m = 0;
        while (m < N - 4) {
            if (kind == 0) ids[m++] = BYTE_ID(rnd(256));
            else if (kind == 1) m = put_char(ids, m, 0x1F600 + rnd(64));
            else ids[m++] = BYTE_ID(0x20 + rnd(0x5F));
        }
        ms_tokenizer_stream *s = ms_tokenizer_stream_new(g_tok, true);
        ms_error err = {0};
        int longest_silence = 0, silence = 0, deltas = 0;
        size_t sent = 0;
        for (int32_t i = 0; i < m; i++) {
            char *piece = NULL;
            EXPECT(ms_tokenizer_stream_push(s, ids[i], &piece, &err) == MS_OK);
            size_t l = piece ? strlen(piece) : 0;
            sent += l;
            deltas += l > 0;
            silence = l ? 0 : silence + 1;
            if (silence > longest_silence) longest_silence = silence;
            free(piece);
        }
        char *rest = NULL;
        EXPECT(ms_tokenizer_stream_finish(s, &rest, &err) == MS_OK);
        sent += rest ? strlen(rest) : 0;
        free(rest);
        ms_tokenizer_stream_stats st;
        ms_tokenizer_stream_get_stats(s, &st);
        ms_tokenizer_stream_free(s);
        char *full = decode(ids, m, true);
        printf("bounded kind %d: %d ids pushed, %lld decoded in all, at most %d in one decode, %d deltas, "
               "longest silence %d ids, %zu bytes sent (decode %zu)\n",
               kind, m, (long long)st.ids_decoded, st.peak_window, deltas, longest_silence, sent, strlen(full));
        EXPECT(st.pushed == m);
        EXPECTF(st.peak_window <= MS_TOKENIZER_STREAM_MAX_HOLD + 1, "kind %d: a decode of %d ids", kind, st.peak_window);
        EXPECTF(st.ids_decoded <= m, "kind %d: %lld ids decoded for %d pushed", kind, (long long)st.ids_decoded, m);
        EXPECTF(longest_silence <= MS_TOKENIZER_STREAM_MAX_HOLD + 1, "kind %d: %d ids without text", kind, longest_silence);
        /* a well-formed run (kinds 1, 2) joins exactly; random bytes are ill-formed */
        EXPECTF(sent == strlen(full), "kind %d: %zu bytes sent, decode %zu", kind, sent, strlen(full));
        free(full);
    }
    free(ids);
}

/* A byte-level tokenizer with one token per byte: id b spells byte b in GPT-2's map. */
static ms_tokenizer *byte_level_tokenizer(void) {
    int cps[256], n_extra = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        cps[b] = printable ? b : 256 + n_extra++;
    }
    ms_test_system("mkdir -p testdata/tok_stream_bytelevel");
    FILE *f = fopen("testdata/tok_stream_bytelevel/tokenizer.json", "w");
    if (!f) return NULL;
    fputs("{\"model\": {\"type\": \"BPE\", \"merges\": [], \"vocab\": {", f);
    for (int b = 0; b < 256; b++) {
        unsigned cp = (unsigned)cps[b];
        char u[4];
        int n = cp < 0x80 ? (u[0] = (char)cp, 1) : (u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3F)), 2);
        fprintf(f, "%s\"%s%.*s\": %d", b ? ", " : "", cp == '"' || cp == '\\' ? "\\" : "", n, u, b);
    }
    fputs("}}, \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, "
          "\"use_regex\": true}, \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
          "\"trim_offsets\": true, \"use_regex\": true}, \"added_tokens\": []}\n", f);
    fclose(f);
    ms_tokenizer *t = NULL;
    ms_error err = {0};
    EXPECTF(ms_tokenizer_load("testdata/tok_stream_bytelevel", &t, &err) == MS_OK, "%s", err.msg);
    return t;
}

/* 5,000 one-byte tokens (random bytes; well-formed characters now and then cut short):
 * the joined text equals decode, no more than 3 pushes in a row send nothing (the
 * bytes of one incomplete character), no decode takes more than 4 ids. */
static void test_byte_level(void) {
    ms_tokenizer *t = byte_level_tokenizer();
    if (!t) return;
    enum { N = 5000 };
    int32_t *ids = malloc(N * sizeof *ids);
    for (int kind = 0; kind < 2; kind++) {
        int32_t m = 0;
        while (m < N - 8) {
            if (kind == 0) ids[m++] = (int32_t)rnd(256);
            else {
                int32_t at = m;
                m = put_char(ids, m, (const uint32_t[]){0x1F600, 0x65E5, 0xE9, 0x41}[rnd(4)]);
                for (int32_t k = at; k < m; k++) ids[k] -= 3; /* put_char writes tiny's byte ids */
                if (rnd(8) == 0) m--;                         /* cut short */
            }
        }
        ms_tokenizer_stream *s = ms_tokenizer_stream_new(t, true);
        ms_error err = {0};
        size_t cap = 16 * N, sent = 0;
        char *joined = calloc(1, cap);
        int silence = 0, longest_silence = 0;
        for (int32_t i = 0; i <= m; i++) {
            char *piece = NULL;
            EXPECT((i < m ? ms_tokenizer_stream_push(s, ids[i], &piece, &err) : ms_tokenizer_stream_finish(s, &piece, &err)) ==
                   MS_OK);
            size_t l = piece ? strlen(piece) : 0;
            if (sent + l < cap) memcpy(joined + sent, piece, l), sent += l;
            silence = l ? 0 : silence + 1;
            if (i < m && silence > longest_silence) longest_silence = silence;
            free(piece);
        }
        ms_tokenizer_stream_stats st;
        ms_tokenizer_stream_get_stats(s, &st);
        ms_tokenizer_stream_free(s);
        char *full = NULL;
        EXPECT(ms_tokenizer_decode(t, ids, m, true, &full, &err) == MS_OK);
        printf("byte-level kind %d: %d ids, %lld ids decoded or scanned, at most %d at once, longest silence %d, "
               "%zu bytes sent (decode %zu)\n",
               kind, m, (long long)st.ids_decoded, st.peak_window, longest_silence, sent, full ? strlen(full) : 0);
        EXPECTF(full && sent == strlen(full) && !memcmp(joined, full, sent), "byte-level kind %d: joined differs", kind);
        EXPECTF(longest_silence <= 3, "byte-level kind %d: %d pushes without text", kind, longest_silence);
        EXPECTF(st.peak_window <= 4, "byte-level kind %d: a decode of %d ids", kind, st.peak_window);
        free(full);
        free(joined);
    }
    free(ids);
    ms_tokenizer_free(t);
}

int main(void) {
    ms_error err = {0};
    if (ms_tokenizer_write_tiny("testdata/tok_stream_flow", &err) != MS_OK ||
        ms_tokenizer_load("testdata/tok_stream_flow", &g_tok, &err) != MS_OK) {
        fprintf(stderr, "FAIL: the tiny tokenizer: %s\n", err.msg);
        return 1;
    }
    test_cases();
    test_random();
    test_bounded();
    test_byte_level();
    ms_tokenizer_free(g_tok);
    return ms_test_finish("test_tokenizer_stream");
}
