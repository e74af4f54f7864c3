/*
 * `modserve tokenize`: text to token ids with a model folder's tokenizer (or ids back to
 * text), the way the server and `modserve run` tokenize; --chat renders the text as one
 * user turn through the folder's chat template first. The file modes (--file,
 * --decode-file, --messages: many inputs in one process) are in cmd_tokenize_batch.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/chat_template.h"
#include "llm/tokenizer.h"
#include "server/cmd_tokenize.h"
#include "server/commands.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: modserve tokenize --model DIR [options] TEXT\n"
            "       modserve tokenize --model DIR --decode IDS [--skip-special]\n"
            "       modserve tokenize --model DIR --file F [--jsonl] | --decode-file F | --messages F\n"
            "\n"
            "Prints the token ids of TEXT (comma separated, as `modserve run --prompt-ids`\n"
            "takes them) using DIR/tokenizer.json and DIR/tokenizer_config.json, as the server\n"
            "tokenizes (docs/tokenizer.md says what is compared with Hugging Face's library).\n"
            "TEXT '-' reads standard input.\n"
            "  --model DIR           model folder (required)\n"
            "  --no-special          do not add BOS/EOS (the post-processor's tokens)\n"
            "  --pieces              print one 'id<TAB>piece' line per token instead\n"
            "  --chat                wrap TEXT as one user message in the chat template,\n"
            "                        with the generation prompt (BOS added unless the\n"
            "                        template writes it, as for a chat request)\n"
            "  --images N            with --chat: the message carries N images\n"
            "  --chat-template NAME  llava-1.5, llama-2, chatml or qwen2 instead of matching\n"
            "                        the folder's chat_template\n"
            "  --decode IDS          comma-separated ids to text\n"
            "  --skip-special        with --decode: drop special tokens (BOS, <image>, ...)\n"
            "  --file F              encode every line of F ('-': stdin); a line may hold\n"
            "                        the escapes \\n \\t \\r \\\\ and \\xHH (any byte, so\n"
            "                        ill-formed UTF-8 too); prints the ids of each line\n"
            "  --jsonl               with --file: print {\"ids\": [...], \"text\": decode,\n"
            "                        \"skip\": decode skipping special tokens} per line\n"
            "  --decode-file F       decode every line of F (comma-separated ids); prints\n"
            "                        {\"text\", \"skip\", \"stream\", \"stream_skip\"} per line\n"
            "                        (stream: the pieces of a streaming decode joined)\n"
            "  --messages F          one chat request per line of F: {\"messages\": [...],\n"
            "                        \"add_generation_prompt\": bool (default true)}, content a\n"
            "                        string or OpenAI parts (text, image, image_url); prints\n"
            "                        {\"prompt\": rendered text, \"ids\": [...]} per line, by\n"
            "                        the rules of a chat request to `modserve serve`\n"
            "  -h, --help            this text\n");
}

typedef struct tok_opts {
    const char *model, *text, *decode, *chat_template;
    const char *file, *decode_file, *messages_file;
    int n_images;
    bool no_special, pieces, chat, skip_special, jsonl;
} tok_opts;

static int parse(int argc, char **argv, tok_opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        bool takes_value = !strcmp(a, "--model") || !strcmp(a, "--decode") || !strcmp(a, "--chat-template") ||
                           !strcmp(a, "--images") || !strcmp(a, "--file") ||
                           !strcmp(a, "--decode-file") || !strcmp(a, "--messages");
        if (takes_value && i + 1 >= argc) {
            fprintf(stderr, "modserve tokenize: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--model")) o->model = argv[++i];
        else if (!strcmp(a, "--decode")) o->decode = argv[++i];
        else if (!strcmp(a, "--chat-template")) o->chat_template = argv[++i];
        else if (!strcmp(a, "--file")) o->file = argv[++i];
        else if (!strcmp(a, "--decode-file")) o->decode_file = argv[++i];
        else if (!strcmp(a, "--messages")) o->messages_file = argv[++i];
        else if (!strcmp(a, "--jsonl")) o->jsonl = true;
        else if (!strcmp(a, "--images")) {
            char *end;
            long n = strtol(argv[++i], &end, 10);
            if (*end || n < 0 || n > 64) {
                fprintf(stderr, "modserve tokenize: --images wants 0..64, got '%s'\n", argv[i]);
                return 2;
            }
            o->n_images = (int)n;
        } else if (!strcmp(a, "--no-special")) o->no_special = true;
        else if (!strcmp(a, "--pieces")) o->pieces = true;
        else if (!strcmp(a, "--chat")) o->chat = true;
        else if (!strcmp(a, "--skip-special")) o->skip_special = true;
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "modserve tokenize: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!o->text) o->text = a;
        else {
            fprintf(stderr, "modserve tokenize: one TEXT only (quote it)\n");
            return 2;
        }
    }
    int inputs = !!o->text + !!o->decode + !!o->file + !!o->decode_file + !!o->messages_file;
    if (!o->model || inputs != 1) {
        fprintf(stderr, "modserve tokenize: need --model and exactly one of TEXT, --decode, --file, --decode-file "
                        "and --messages\n");
        usage(stderr);
        return 2;
    }
    return -1;
}

static char *read_stdin(size_t *len) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n - 1, stdin)) > 0) {
        n += got;
        if (cap - n < 2) buf = realloc(buf, cap *= 2);
    }
    if (buf) buf[n] = 0;
    *len = n;
    return buf;
}

static int do_decode(const ms_tokenizer *tok, const tok_opts *o) {
    int32_t *ids = NULL, n = 0;
    for (const char *p = o->decode; *p;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX) {
            fprintf(stderr, "modserve tokenize: --decode: '%s' is not a comma-separated id list\n", o->decode);
            free(ids);
            return 2;
        }
        ids = realloc(ids, (size_t)(n + 1) * sizeof *ids);
        ids[n++] = (int32_t)v;
        p = end;
        while (*p == ',' || *p == ' ') p++;
    }
    char *text = NULL;
    ms_error err = {0};
    if (ms_tokenizer_decode(tok, ids, n, o->skip_special, &text, &err) != MS_OK) {
        fprintf(stderr, "modserve tokenize: %s\n", err.msg);
        free(ids);
        return 1;
    }
    printf("%s\n", text);
    free(text);
    free(ids);
    return 0;
}

static int do_encode(const ms_tokenizer *tok, const tok_opts *o) {
    ms_error err = {0};
    char *owned = NULL;
    const char *text = o->text;
    size_t len = strlen(text);
    if (!strcmp(text, "-")) text = owned = read_stdin(&len);
    bool add_special = !o->no_special;
    if (o->chat) {
        ms_chat_format f;
        if (ms_chat_format_for(tok, o->chat_template, &f, &err) != MS_OK) {
            fprintf(stderr, "modserve tokenize: %s\n", err.msg);
            free(owned);
            return 1;
        }
        ms_chat_part parts[65];
        for (int i = 0; i < o->n_images; i++) parts[i] = (ms_chat_part){MS_CHAT_PART_IMAGE, NULL};
        parts[o->n_images] = (ms_chat_part){MS_CHAT_PART_TEXT, text};
        ms_chat_message m = {"user", parts, o->n_images + 1};
        char *prompt;
        if (ms_chat_render(f, &m, 1, true, ms_tokenizer_bos_token(tok), ms_tokenizer_eos_token(tok), &prompt, &err)) {
            fprintf(stderr, "modserve tokenize: %s\n", err.msg);
            free(owned);
            return 1;
        }
        free(owned);
        text = owned = prompt;
        len = strlen(prompt);
        /* As the server (ms_chat_tokenize): no second BOS when the template wrote one. */
        const char *bos = ms_tokenizer_bos_token(tok);
        if (bos && bos[0] && !strncmp(prompt, bos, strlen(bos))) add_special = false;
    }
    int32_t *ids, n;
    ms_status st = ms_tokenizer_encode(tok, text, len, add_special, &ids, &n, &err);
    free(owned);
    if (st != MS_OK) {
        fprintf(stderr, "modserve tokenize: %s\n", err.msg);
        return 1;
    }
    for (int32_t i = 0; i < n; i++) {
        if (o->pieces) printf("%d\t%s\n", ids[i], ms_tokenizer_piece(tok, ids[i]));
        else printf(i ? ",%d" : "%d", ids[i]);
    }
    if (!o->pieces) printf("\n");
    free(ids);
    return 0;
}

int ms_cmd_tokenize(int argc, char **argv) {
    tok_opts o = {0};
    int rc = parse(argc, argv, &o);
    if (rc >= 0) return rc;
    ms_tokenizer *tok;
    ms_error err = {0};
    if (ms_tokenizer_load(o.model, &tok, &err) != MS_OK) {
        fprintf(stderr, "modserve tokenize: %s\n", err.msg);
        return 1;
    }
    if (o.file || o.decode_file || o.messages_file) {
        tok_batch_opts b = {.file = o.file, .decode_file = o.decode_file, .messages_file = o.messages_file,
                            .chat_template = o.chat_template, .jsonl = o.jsonl, .add_special = !o.no_special};
        rc = ms_tokenize_batch(tok, &b);
    } else {
        rc = o.decode ? do_decode(tok, &o) : do_encode(tok, &o);
    }
    ms_tokenizer_free(tok);
    return rc;
}
