/*
 * Fuzz target: the tokenizer on the tiny preset (SentencePiece-style BPE with byte
 * fallback, written once into a temporary folder by ms_tokenizer_write_tiny).
 * The first byte picks the mode:
 *   bit 0 clear: encode the rest as text (bit 1: add_special); every id must be below
 *                ms_tokenizer_n_ids, and decoding those ids must succeed.
 *   bit 0 set:   decode the rest as little-endian int32 ids, any value (bit 1:
 *                skip_special); when it succeeds, the streaming decoder fed the same ids
 *                one by one must give the same text (tokenizer.h's promise).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "llm/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

static ms_tokenizer *tok;
static char tok_dir[] = "/tmp/ms_fuzz_tok_XXXXXX";

static void remove_tok_dir(void) {
    char path[sizeof tok_dir + 32];
    snprintf(path, sizeof path, "%s/tokenizer.json", tok_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", tok_dir);
    unlink(path);
    rmdir(tok_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    ms_log_set_level(MS_LOG_ERROR);
    ms_error err = {0};
    if (!mkdtemp(tok_dir) || ms_tokenizer_write_tiny(tok_dir, &err) != MS_OK ||
        ms_tokenizer_load(tok_dir, &tok, &err) != MS_OK) {
        fprintf(stderr, "fuzz_tokenizer: cannot set up the tiny tokenizer: %s\n", err.msg);
        abort();
    }
    /* The tokenizer lives for the whole process (LeakSanitizer ignores globals); the
     * folder goes at exit. */
    atexit(remove_tok_dir);
    return 0;
}

/* Whether ids hold a byte-fallback run (<0xNN> pieces, dropped ids between) of more
 * than MS_TOKENIZER_STREAM_MAX_HOLD pieces. */
static bool long_byte_run(const int32_t *ids, int32_t n, bool skip_special) {
    int32_t run = 0;
    for (int32_t i = 0; i < n; i++) {
        const char *p = ms_tokenizer_piece(tok, ids[i]);
        if (!p || (skip_special && ms_tokenizer_is_special(tok, ids[i]))) continue;
        bool byte = strlen(p) == 6 && !strncmp(p, "<0x", 3);
        run = byte ? run + 1 : 0;
        if (run > MS_TOKENIZER_STREAM_MAX_HOLD) return true;
    }
    return false;
}

static void fuzz_decode(const uint8_t *data, size_t size, bool skip_special) {
    int32_t n = (int32_t)(size / 4);
    int32_t *ids = malloc(sizeof *ids * (size_t)(n + 1));
    for (int32_t i = 0; i < n; i++)
        ids[i] = (int32_t)((uint32_t)data[4 * i] | (uint32_t)data[4 * i + 1] << 8 |
                           (uint32_t)data[4 * i + 2] << 16 | (uint32_t)data[4 * i + 3] << 24);
    char *text = NULL;
    ms_error err = {0};
    if (ms_tokenizer_decode(tok, ids, n, skip_special, &text, &err) == MS_OK) {
        /* streamed pieces concatenated == the full decode */
        ms_tokenizer_stream *s = ms_tokenizer_stream_new(tok, skip_special);
        size_t cap = strlen(text) + 64, len = 0;
        char *joined = malloc(cap);
        joined[0] = 0;
        for (int32_t i = 0; i <= n; i++) {
            char *piece = NULL;
            ms_status st = i < n ? ms_tokenizer_stream_push(s, ids[i], &piece, &err)
                                 : ms_tokenizer_stream_finish(s, &piece, &err);
            if (st != MS_OK) __builtin_trap(); /* decode took these ids */
            size_t k = strlen(piece);
            if (len + k + 1 > cap) {
                cap = (len + k + 1) * 2;
                joined = realloc(joined, cap);
            }
            memcpy(joined + len, piece, k + 1);
            len += k;
            free(piece);
        }
        /* The stream equals the full decode, except where a well-formed byte run longer
         * than the stream holds turns ill-formed later (llm/tokenizer.h). */
        if (strcmp(joined, text) != 0 && !long_byte_run(ids, n, skip_special)) {
            fprintf(stderr, "fuzz_tokenizer: stream gives \"%s\", decode gives \"%s\"\n", joined, text);
            __builtin_trap();
        }
        free(joined);
        ms_tokenizer_stream_free(s);
        free(text);
    } else if (text != NULL || err.msg[0] == 0) {
        __builtin_trap();
    }
    free(ids);
}

static void fuzz_encode(const uint8_t *data, size_t size, bool add_special) {
    char *text = malloc(size ? size : 1); /* exactly size bytes: no NUL after the text */
    if (size) memcpy(text, data, size);
    int32_t *ids = NULL, n = 0;
    ms_error err = {0};
    if (ms_tokenizer_encode(tok, text, size, add_special, &ids, &n, &err) == MS_OK) {
        int32_t n_ids = ms_tokenizer_n_ids(tok);
        for (int32_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= n_ids) __builtin_trap();
        char *back = NULL;
        if (ms_tokenizer_decode(tok, ids, n, false, &back, &err) != MS_OK) __builtin_trap();
        free(back);
        free(ids);
    } else if (err.msg[0] == 0) {
        __builtin_trap();
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (data[0] & 1) fuzz_decode(data + 1, size - 1, (data[0] & 2) != 0);
    else fuzz_encode(data + 1, size - 1, (data[0] & 2) != 0);
    return 0;
}
