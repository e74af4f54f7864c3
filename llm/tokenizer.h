/*
 * Hugging Face tokenizer.json in C (owned by the tokenizer work; see its issue).
 * Only the declarations other modules rely on are fixed here; the tokenizer module may
 * add more.
 */
#ifndef MS_LLM_TOKENIZER_H
#define MS_LLM_TOKENIZER_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/ms_common.h"

typedef struct ms_tokenizer ms_tokenizer;

/* Loads DIR/tokenizer.json and DIR/tokenizer_config.json. */
ms_status ms_tokenizer_load(const char *model_dir, ms_tokenizer **out, ms_error *err);
void ms_tokenizer_free(ms_tokenizer *tok);
/* ids: malloc'd array the caller frees. add_special: BOS etc. as the model's post-processor says. */
ms_status ms_tokenizer_encode(const ms_tokenizer *tok, const char *text, size_t len, bool add_special,
                              int32_t **ids, int32_t *n_ids, ms_error *err);
/* text: malloc'd NUL-terminated string. skip_special drops special tokens. */
ms_status ms_tokenizer_decode(const ms_tokenizer *tok, const int32_t *ids, int32_t n_ids,
                              bool skip_special, char **text, ms_error *err);
/* Writes the tiny preset's tokenizer.json + tokenizer_config.json into dir
 * (SentencePiece-style BPE with byte fallback, as Llama-2/LLaVA-1.5: <unk>=0, <s>=1,
 * </s>=2, <0x00>..<0xFF> = 3..258, merged pieces after that, all below 1000; added
 * special tokens <image>=1000 and <pad>=1001). */
ms_status ms_tokenizer_write_tiny(const char *dir, ms_error *err);

/* ---- additions by the tokenizer module ---- */

/* Ids from tokenizer_config.json / the vocabulary, -1 when absent. image: "<image>"
 * (LLaVA) or "<|image_pad|>" (Qwen2-VL). */
int32_t ms_tokenizer_bos_id(const ms_tokenizer *tok);
int32_t ms_tokenizer_eos_id(const ms_tokenizer *tok);
int32_t ms_tokenizer_pad_id(const ms_tokenizer *tok);
int32_t ms_tokenizer_image_id(const ms_tokenizer *tok);
/* Number of ids (the largest id + 1, added tokens included). */
int32_t ms_tokenizer_n_ids(const ms_tokenizer *tok);
/* The piece of one id (NULL when the id is not in the vocabulary), and whether it is a
 * special added token (BOS, EOS, <image>, <|im_end|>...). */
const char *ms_tokenizer_piece(const ms_tokenizer *tok, int32_t id);
bool ms_tokenizer_is_special(const ms_tokenizer *tok, int32_t id);
/* tokenizer_config.json's strings (NULL when absent): bos_token, eos_token, chat_template. */
const char *ms_tokenizer_bos_token(const ms_tokenizer *tok);
const char *ms_tokenizer_eos_token(const ms_tokenizer *tok);
const char *ms_tokenizer_chat_template(const ms_tokenizer *tok);

/* Incremental decoding for streaming: push ids one at a time, get the text they add.
 * Text is sent as soon as it is final, i.e. later ids cannot change how the full decode
 * renders it, so the concatenation of everything pushed + finish equals
 * ms_tokenizer_decode of all ids, with the decoders' leading-space rules applied as in
 * a full decode. A byte-fallback run (<0xNN> pieces in a row) decodes as a whole: to
 * its bytes when it is well-formed UTF-8, else to one U+FFFD per byte; so a run that is
 * well-formed so far is held until a text token ends it or it turns ill-formed (then
 * its bytes are sent as U+FFFD at once, each later byte of the run as it comes). With
 * other decoders (ByteLevel) text ending in U+FFFD (maybe an incomplete character) is
 * held until the next id. At most MS_TOKENIZER_STREAM_MAX_HOLD ids are held, so each
 * push does bounded work; a well-formed run held that long has its complete characters
 * sent (then, should the run turn ill-formed later, the joined text differs from the
 * full decode: that run's start is sent already). One stream per sequence; the
 * tokenizer is shared. */
#define MS_TOKENIZER_STREAM_MAX_HOLD 64
typedef struct ms_tokenizer_stream ms_tokenizer_stream;
ms_tokenizer_stream *ms_tokenizer_stream_new(const ms_tokenizer *tok, bool skip_special);
void ms_tokenizer_stream_free(ms_tokenizer_stream *s);
/* *text: malloc'd, possibly "" (caller frees). */
ms_status ms_tokenizer_stream_push(ms_tokenizer_stream *s, int32_t id, char **text, ms_error *err);
/* The text still held back (an incomplete character decodes to U+FFFD, as decode does);
 * the stream is then ready for a new sequence. */
ms_status ms_tokenizer_stream_finish(ms_tokenizer_stream *s, char **text, ms_error *err);
/* Work counters (for tests): ids pushed, ids decoded in all (each push decodes only the
 * pending ids), the most ids one decode took. */
typedef struct ms_tokenizer_stream_stats {
    int64_t pushed, ids_decoded;
    int32_t peak_window;
} ms_tokenizer_stream_stats;
void ms_tokenizer_stream_get_stats(const ms_tokenizer_stream *s, ms_tokenizer_stream_stats *out);

#endif
