/*
 * `modserve bench tokenizer`: encodes every corpus entry (BOS added, as the server
 * does) several rounds on one thread and reports the best round, then optionally runs
 * tests/ref/tokenizer_bench_hf.py (Hugging Face `tokenizers` in the reference Python
 * environment) so the library's numbers come from the same machine and corpus in the
 * same run. The corpus uses the escapes of the comparison test (\n \t \r \\ \xHH).
 */
#include "bench/tokenizer_bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/tokenizer.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: modserve bench tokenizer --model DIR [--corpus FILE] [--rounds N]\n"
            "                                [--hf PYTHON] [--hf-script FILE]\n"
            "Encode throughput of DIR's tokenizer, single thread, best of N rounds (default 5).\n"
            "  --corpus FILE     one entry per line, escapes \\n \\t \\r \\\\ \\xHH\n"
            "                    (default testdata/test_tokenizers/corpus.txt in a build folder,\n"
            "                    written by the reference test test_tokenizers)\n"
            "  --hf PYTHON       python with the `tokenizers` package (scripts/pyref.sh): time\n"
            "                    Hugging Face tokenizers on the same corpus (one encode call per\n"
            "                    entry, and encode_batch, on one thread)\n"
            "  --hf-script FILE  the timing script (default tests/ref/tokenizer_bench_hf.py)\n");
}

static size_t unescape(const char *s, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n) {
            char c = s[i + 1];
            if (c == 'n' || c == 't' || c == 'r' || c == '\\') {
                out[o++] = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : '\\';
                i++;
                continue;
            }
            unsigned v;
            if (c == 'x' && i + 3 < n && sscanf(s + i + 2, "%2x", &v) == 1 &&
                strspn((char[]){s[i + 2], s[i + 3], 0}, "0123456789abcdefABCDEF") == 2) {
                out[o++] = (char)v;
                i += 3;
                continue;
            }
        }
        out[o++] = s[i];
    }
    return o;
}

int ms_bench_tokenizer_main(int argc, char **argv) {
    const char *model = NULL, *corpus = "testdata/test_tokenizers/corpus.txt", *hf = NULL;
    const char *script = "tests/ref/tokenizer_bench_hf.py";
    int rounds = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench tokenizer: %s needs a value (or is unknown)\n", argv[i]);
            return 2;
        }
        const char *a = argv[i], *v = argv[++i];
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--corpus")) corpus = v;
        else if (!strcmp(a, "--hf")) hf = v;
        else if (!strcmp(a, "--hf-script")) script = v;
        else if (!strcmp(a, "--rounds") && atoi(v) > 0) rounds = atoi(v);
        else {
            fprintf(stderr, "bench tokenizer: bad option %s %s\n", a, v);
            usage(stderr);
            return 2;
        }
    }
    if (!model) {
        usage(stderr);
        return 2;
    }
    FILE *f = fopen(corpus, "rb");
    if (!f) {
        fprintf(stderr, "bench tokenizer: cannot open corpus '%s'\n", corpus);
        return 1;
    }
    size_t n = 0, cap = 0, bytes = 0;
    char **entries = NULL;
    size_t *lens = NULL;
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t got;
    while ((got = getline(&line, &line_cap, f)) >= 0) {
        if (got > 0 && line[got - 1] == '\n') got--;
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            entries = realloc(entries, cap * sizeof *entries);
            lens = realloc(lens, cap * sizeof *lens);
        }
        entries[n] = malloc((size_t)got + 1);
        lens[n] = unescape(line, (size_t)got, entries[n]);
        bytes += lens[n];
        n++;
    }
    free(line);
    fclose(f);

    ms_tokenizer *tok;
    ms_error err = {0};
    if (ms_tokenizer_load(model, &tok, &err) != MS_OK) {
        fprintf(stderr, "bench tokenizer: %s\n", err.msg);
        return 1;
    }
    double best = 1e30;
    long tokens = 0;
    for (int r = 0; r < rounds; r++) {
        tokens = 0;
        double t0 = ms_time_now();
        for (size_t i = 0; i < n; i++) {
            int32_t *ids, n_ids;
            if (ms_tokenizer_encode(tok, entries[i], lens[i], true, &ids, &n_ids, &err) != MS_OK) {
                fprintf(stderr, "bench tokenizer: entry %zu: %s\n", i + 1, err.msg);
                return 1;
            }
            tokens += n_ids;
            free(ids);
        }
        double dt = ms_time_now() - t0;
        if (dt < best) best = dt;
    }
    ms_tokenizer_free(tok);
    printf("modserve: %zu entries, %zu bytes, %ld tokens: best of %d rounds %.4f s = %.2f MB/s, %.0f tokens/s\n", n,
           bytes, tokens, rounds, best, bytes / best / 1e6, tokens / best);
    for (size_t i = 0; i < n; i++) free(entries[i]);
    free(entries);
    free(lens);
    if (!hf) return 0;
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "TOKENIZERS_PARALLELISM=false RAYON_NUM_THREADS=1 '%s' '%s' '%s/tokenizer.json' '%s' %d", hf, script,
             model, corpus, rounds);
    FILE *p = popen(cmd, "r");
    if (!p) return 1;
    char buf[1024];
    double per_line = 0, batch = 0;
    while (fgets(buf, sizeof buf, p)) {
        const char *a = strstr(buf, "\"seconds_per_line\":"), *b = strstr(buf, "\"seconds_batch\":");
        if (a) per_line = atof(a + 19);
        if (b) batch = atof(b + 16);
    }
    if (pclose(p) != 0 || per_line <= 0) {
        fprintf(stderr, "bench tokenizer: the Hugging Face run failed (%s)\n", cmd);
        return 1;
    }
    printf("hf tokenizers, encode per entry:          %.4f s = %.2f MB/s\n", per_line, bytes / per_line / 1e6);
    printf("hf tokenizers, encode_batch, 1 thread:    %.4f s = %.2f MB/s\n", batch, bytes / batch / 1e6);
    printf("modserve / hf: %.2fx (per entry), %.2fx (batch)\n", per_line / best, batch / best);
    return 0;
}
