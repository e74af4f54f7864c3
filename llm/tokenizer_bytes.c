/*
 * GPT-2's byte-level alphabet: every byte maps to a printable code point (printable
 * Latin-1 bytes to themselves, the other 68 to U+0100.. in byte order), so BPE over
 * bytes can use string pieces. Byte-level tokenizers (GPT-2, Llama-3, Qwen2) map the
 * text's bytes before the model and map back when decoding.
 */
#include "llm/tokenizer_internal.h"

#include <pthread.h>
#include <string.h>

typedef struct byte_tables {
    char enc[256][3];   /* byte -> UTF-8 of its code point */
    uint8_t enc_len[256];
    int16_t dec[324];   /* code point (< 324) -> byte, -1 when not in the alphabet */
} byte_tables;

static byte_tables g_bytes;
static pthread_once_t g_bytes_once = PTHREAD_ONCE_INIT;

static bool printable(int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255); }

static void bytes_init(void) {
    int next = 256;
    for (int i = 0; i < 324; i++) g_bytes.dec[i] = -1;
    for (int b = 0; b < 256; b++) {
        uint32_t cp = printable(b) ? (uint32_t)b : (uint32_t)next++;
        g_bytes.enc_len[b] = (uint8_t)tok_utf8_encode(cp, g_bytes.enc[b]);
        g_bytes.dec[cp] = (int16_t)b;
    }
}

void tok_bytelevel_encode(const char *s, size_t n, tok_buf *out) {
    pthread_once(&g_bytes_once, bytes_init);
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        tok_buf_add(out, g_bytes.enc[b], g_bytes.enc_len[b]);
    }
}

/* HF's ByteLevel decoder: a token whose every char is in the alphabet becomes its
 * bytes, any other token is kept as its UTF-8 (added tokens such as "<|im_end|>" are
 * plain ASCII, which maps to itself anyway). */
void tok_bytelevel_decode(const char *s, size_t n, tok_buf *out) {
    pthread_once(&g_bytes_once, bytes_init);
    size_t start = out->n;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t l;
        uint32_t cp = tok_utf8_decode(u + i, n - i, &l);
        if (cp >= 324 || g_bytes.dec[cp] < 0) {
            out->n = start;
            if (out->p) out->p[start] = 0;
            tok_buf_add(out, s, n);
            return;
        }
        tok_buf_addc(out, (char)g_bytes.dec[cp]);
        i += l;
    }
}
