/* `modserve tokenize` internals shared by its files (server/cmd_tokenize*.c). */
#ifndef MS_SERVER_CMD_TOKENIZE_H
#define MS_SERVER_CMD_TOKENIZE_H

#include <stdbool.h>

#include "llm/tokenizer.h"

/* The file modes (server/cmd_tokenize_batch.c); exactly one of the three paths is set. */
typedef struct tok_batch_opts {
    const char *file;          /* --file: texts, one per line (escapes) */
    const char *decode_file;   /* --decode-file: id lists, one per line */
    const char *messages_file; /* --messages: chat requests, one JSON object per line */
    const char *chat_template; /* --chat-template NAME, or NULL: match the folder's */
    bool jsonl;                /* --jsonl: --file prints JSON objects with decodes */
    bool add_special;          /* not --no-special */
} tok_batch_opts;

/* Runs the file mode; prints one output line per input line. Returns an exit code. */
int ms_tokenize_batch(const ms_tokenizer *tok, const tok_batch_opts *o);

#endif
