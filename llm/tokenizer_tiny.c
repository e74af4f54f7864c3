/*
 * The tiny preset's tokenizer: a SentencePiece-style BPE with byte fallback in exactly
 * the layout of Llama-2 / llava-1.5's tokenizer.json, so every text path (and Hugging
 * Face's own library) works on the tiny model.
 *
 * The merges are learned here, deterministically, from a small built-in corpus: words
 * get the "▁" prefix as SentencePiece sees them, the most frequent adjacent pair is
 * merged (ties broken by byte order of the two pieces) until the vocabulary has 1000
 * pieces.
 * Ids: <unk>=0, <s>=1, </s>=2, <0x00>..<0xFF> = 3..258, the corpus's characters, then
 * one piece per merge; <image>=1000 and <pad>=1001 are added special tokens.
 */
#include "llm/tokenizer.h"

#include "llm/chat_template.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

enum { TINY_MAX_MERGES = 1000, TINY_MAX_SYMS = 64, TINY_IMAGE_ID = 1000, TINY_PAD_ID = 1001 };

static const char *const k_tiny_corpus =
    "The quick brown fox jumps over the lazy dog. A photo of a cat sitting on the table "
    "next to a cup of coffee. What is shown in this image? The image shows a red stop "
    "sign at the corner of a street, with cars and people walking on the sidewalk. "
    "Describe the picture in detail. There is a man riding a bicycle in the park, and "
    "a woman with a dog is standing near the trees. The sky is blue and the sun is "
    "shining. How many people are in the picture? There are three people in the "
    "picture: two children and one adult. What color is the car? The car is white. "
    "Where is the train going? The train is going to the station in the city. "
    "Please answer the question about the image. The kitchen has a stove, a sink and "
    "a window. On the plate there is a sandwich with cheese, tomato and lettuce. "
    "The children are playing with a ball on the grass while their parents are "
    "watching them from the bench. This is a picture of a beautiful mountain with "
    "snow on the top and a lake in front of it. The boat is floating on the water "
    "near the shore. Is there a person in the image? Yes, there is a person holding "
    "an umbrella in the rain. What time of the day is it? It is evening and the "
    "lights of the buildings are on. The room is full of books, and there is a lamp "
    "on the desk beside the computer. You are a helpful assistant. Answer the "
    "questions of the user in a short and polite way. Thank you for the answer, that "
    "is very helpful. The weather is nice today, so we are going to the beach. "
    "The bird is sitting on the branch of the tree and singing a song. "
    "There are many different kinds of animals in the zoo: lions, tigers, elephants, "
    "monkeys and birds. The number of the house is 42 and the street is long. "
    "Reading, writing and counting are the things that the students learn in school. "
    "The model reads the text and the image and then it writes an answer. "
    "Yesterday afternoon the orchestra performed a wonderful symphony; everybody "
    "applauded enthusiastically. Photographs, paintings and sculptures decorate the "
    "museum's galleries. Scientists measured temperature, pressure and humidity "
    "carefully before publishing their experimental observations. Programming "
    "languages include Python, JavaScript, Rust and C, with variables, functions, "
    "structures, pointers and arrays. Quickly jumping zebras vexed the frightened "
    "knights. Government buildings, hospitals, universities and restaurants line "
    "the boulevard. Approximately seventeen thousand kilometers separate these "
    "continents. Juxtaposed vocabulary: breakfast, lunch, dinner, chocolate, "
    "strawberry, watermelon, avocado, broccoli, spaghetti, yoghurt, pineapple. "
    "USER: What is this? ASSISTANT: USER: Describe it. ASSISTANT: SYSTEM: USER:";

typedef struct tiny_word {
    char *syms[TINY_MAX_SYMS]; /* pieces, each a malloc'd string (merged left to right) */
    int n_syms;
    int count;
} tiny_word;

typedef struct tiny_vocab {
    char **pieces; /* (n) in id order */
    int n, cap;
} tiny_vocab;

static int vocab_find(const tiny_vocab *v, const char *s) {
    for (int i = 0; i < v->n; i++)
        if (!strcmp(v->pieces[i], s)) return i;
    return -1;
}

static void vocab_add(tiny_vocab *v, const char *s) {
    if (vocab_find(v, s) >= 0) return;
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 512;
        v->pieces = ms_xrealloc(v->pieces, (size_t)v->cap * sizeof *v->pieces);
    }
    v->pieces[v->n++] = ms_xstrdup(s);
}

static size_t utf8_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

/* Splits the corpus into "▁word" entries with counts (words are runs of non-spaces). */
static int tiny_words(tiny_word **out) {
    tiny_word *w = NULL;
    int n = 0, cap = 0;
    const char *p = k_tiny_corpus;
    while (*p) {
        while (*p == ' ') p++;
        if (!*p) break;
        const char *s = p;
        while (*p && *p != ' ') p++;
        char buf[128];
        size_t len = (size_t)(p - s);
        MS_CHECK(len + 4 < sizeof buf);
        memcpy(buf, "\xE2\x96\x81", 3);
        memcpy(buf + 3, s, len);
        buf[len + 3] = 0;
        int found = -1;
        for (int i = 0; i < n && found < 0; i++) {
            size_t off = 0;
            char joined[128];
            for (int k = 0; k < w[i].n_syms; k++) off += (size_t)snprintf(joined + off, sizeof joined - off, "%s", w[i].syms[k]);
            if (!strcmp(joined, buf)) found = i;
        }
        if (found >= 0) {
            w[found].count++;
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 128;
            w = ms_xrealloc(w, (size_t)cap * sizeof *w);
        }
        tiny_word *t = &w[n++];
        t->n_syms = 0;
        t->count = 1;
        for (size_t i = 0; buf[i];) {
            size_t l = utf8_len((unsigned char)buf[i]);
            MS_CHECK(t->n_syms < TINY_MAX_SYMS);
            char *sym = ms_xmalloc(l + 1);
            memcpy(sym, buf + i, l);
            sym[l] = 0;
            t->syms[t->n_syms++] = sym;
            i += l;
        }
    }
    *out = w;
    return n;
}

typedef struct tiny_pair {
    const char *l, *r;
    int count;
} tiny_pair;

static int cmp_pair(const void *a, const void *b) {
    const tiny_pair *x = a, *y = b;
    int c = strcmp(x->l, y->l);
    return c ? c : strcmp(x->r, y->r);
}

/* Learns merges: fills merges[i] = "left right" and adds merged pieces to the vocab. */
static int tiny_learn(tiny_word *w, int n_words, tiny_vocab *v, char ***merges_out) {
    char **merges = ms_xmalloc(TINY_MAX_MERGES * sizeof *merges);
    int n_merges = 0;
    /* HF numbers added tokens right after the model's vocabulary, so the vocabulary must
     * fill ids 0..999 exactly for <image> to be 1000. */
    tiny_pair *pairs = NULL;
    int pairs_cap = 0;
    while (n_merges < TINY_MAX_MERGES && v->n < TINY_IMAGE_ID) {
        /* Every adjacent pair once per occurrence, sorted so equal pairs sit together. */
        int n_pairs = 0;
        for (int i = 0; i < n_words; i++)
            for (int k = 0; k + 1 < w[i].n_syms; k++) {
                if (n_pairs == pairs_cap) {
                    pairs_cap = pairs_cap ? pairs_cap * 2 : 1024;
                    pairs = ms_xrealloc(pairs, (size_t)pairs_cap * sizeof *pairs);
                }
                pairs[n_pairs++] = (tiny_pair){w[i].syms[k], w[i].syms[k + 1], w[i].count};
            }
        qsort(pairs, (size_t)n_pairs, sizeof *pairs, cmp_pair);
        const char *bl = NULL, *br = NULL;
        int best = 0; /* any pair that occurs */
        for (int i = 0; i < n_pairs;) {
            int j = i, c = 0;
            while (j < n_pairs && !cmp_pair(&pairs[i], &pairs[j])) c += pairs[j++].count;
            if (c > best) { /* sorted order: the first of equal counts wins the tie */
                best = c;
                bl = pairs[i].l;
                br = pairs[i].r;
            }
            i = j;
        }
        if (!bl) break;
        char merged[128];
        snprintf(merged, sizeof merged, "%s%s", bl, br);
        size_t ml = strlen(bl) + strlen(br) + 2;
        merges[n_merges] = ms_xmalloc(ml);
        snprintf(merges[n_merges], ml, "%s %s", bl, br);
        n_merges++;
        char *left = ms_xstrdup(bl), *right = ms_xstrdup(br);
        vocab_add(v, merged);
        for (int i = 0; i < n_words; i++) {
            tiny_word *t = &w[i];
            for (int k = 0; k + 1 < t->n_syms; k++) {
                if (strcmp(t->syms[k], left) || strcmp(t->syms[k + 1], right)) continue;
                free(t->syms[k]);
                free(t->syms[k + 1]);
                t->syms[k] = ms_xstrdup(merged);
                memmove(&t->syms[k + 1], &t->syms[k + 2], (size_t)(t->n_syms - k - 2) * sizeof t->syms[0]);
                t->n_syms--;
            }
        }
        free(left);
        free(right);
    }
    free(pairs);
    *merges_out = merges;
    return n_merges;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static cJSON *added_token(int id, const char *content) {
    cJSON *t = cJSON_CreateObject();
    cJSON_AddNumberToObject(t, "id", id);
    cJSON_AddStringToObject(t, "content", content);
    cJSON_AddBoolToObject(t, "single_word", 0);
    cJSON_AddBoolToObject(t, "lstrip", 0);
    cJSON_AddBoolToObject(t, "rstrip", 0);
    cJSON_AddBoolToObject(t, "normalized", 0);
    cJSON_AddBoolToObject(t, "special", 1);
    return t;
}

static cJSON *string_pattern(const char *s) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "String", s);
    return p;
}

static cJSON *tiny_tokenizer_json(const tiny_vocab *v, char **merges, int n_merges) {
    static const char *const specials[] = {"<unk>", "<s>", "</s>"};
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int i = 0; i < 3; i++) cJSON_AddItemToArray(added, added_token(i, specials[i]));
    cJSON_AddItemToArray(added, added_token(TINY_IMAGE_ID, "<image>"));
    cJSON_AddItemToArray(added, added_token(TINY_PAD_ID, "<pad>"));

    cJSON *norm = cJSON_AddObjectToObject(root, "normalizer");
    cJSON_AddStringToObject(norm, "type", "Sequence");
    cJSON *nl = cJSON_AddArrayToObject(norm, "normalizers");
    cJSON *prep = cJSON_CreateObject();
    cJSON_AddStringToObject(prep, "type", "Prepend");
    cJSON_AddStringToObject(prep, "prepend", "\xE2\x96\x81");
    cJSON_AddItemToArray(nl, prep);
    cJSON *rep = cJSON_CreateObject();
    cJSON_AddStringToObject(rep, "type", "Replace");
    cJSON_AddItemToObject(rep, "pattern", string_pattern(" "));
    cJSON_AddStringToObject(rep, "content", "\xE2\x96\x81");
    cJSON_AddItemToArray(nl, rep);
    cJSON_AddNullToObject(root, "pre_tokenizer");

    cJSON *post = cJSON_AddObjectToObject(root, "post_processor");
    cJSON_AddStringToObject(post, "type", "TemplateProcessing");
    const char *seqs[2][4] = {{"<s>", "A", NULL, NULL}, {"<s>", "A", "<s>", "B"}};
    const char *names[2] = {"single", "pair"};
    for (int t = 0; t < 2; t++) {
        cJSON *arr = cJSON_AddArrayToObject(post, names[t]);
        for (int i = 0; i < 4 && seqs[t][i]; i++) {
            cJSON *item = cJSON_CreateObject(), *inner = cJSON_CreateObject();
            cJSON_AddStringToObject(inner, "id", seqs[t][i]);
            cJSON_AddNumberToObject(inner, "type_id", i / 2);
            cJSON_AddItemToObject(item, seqs[t][i][0] == '<' ? "SpecialToken" : "Sequence", inner);
            cJSON_AddItemToArray(arr, item);
        }
    }
    cJSON *st = cJSON_AddObjectToObject(post, "special_tokens");
    cJSON *bos = cJSON_AddObjectToObject(st, "<s>");
    cJSON_AddStringToObject(bos, "id", "<s>");
    cJSON_AddItemToObject(bos, "ids", cJSON_CreateIntArray((const int[]){1}, 1));
    const char *bos_s = "<s>";
    cJSON_AddItemToObject(bos, "tokens", cJSON_CreateStringArray(&bos_s, 1));

    cJSON *dec = cJSON_AddObjectToObject(root, "decoder");
    cJSON_AddStringToObject(dec, "type", "Sequence");
    cJSON *dl = cJSON_AddArrayToObject(dec, "decoders");
    cJSON *drep = cJSON_CreateObject();
    cJSON_AddStringToObject(drep, "type", "Replace");
    cJSON_AddItemToObject(drep, "pattern", string_pattern("\xE2\x96\x81"));
    cJSON_AddStringToObject(drep, "content", " ");
    cJSON_AddItemToArray(dl, drep);
    const char *simple[] = {"ByteFallback", "Fuse"};
    for (int i = 0; i < 2; i++) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "type", simple[i]);
        cJSON_AddItemToArray(dl, d);
    }
    cJSON *strip = cJSON_CreateObject();
    cJSON_AddStringToObject(strip, "type", "Strip");
    cJSON_AddStringToObject(strip, "content", " ");
    cJSON_AddNumberToObject(strip, "start", 1);
    cJSON_AddNumberToObject(strip, "stop", 0);
    cJSON_AddItemToArray(dl, strip);

    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddStringToObject(model, "unk_token", "<unk>");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddBoolToObject(model, "fuse_unk", 1);
    cJSON_AddBoolToObject(model, "byte_fallback", 1);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (int i = 0; i < v->n; i++) cJSON_AddNumberToObject(vocab, v->pieces[i], i);
    cJSON_AddItemToObject(model, "merges", cJSON_CreateStringArray((const char *const *)merges, n_merges));
    return root;
}

static cJSON *tiny_config_json(void) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddBoolToObject(root, "add_bos_token", 1);
    cJSON_AddBoolToObject(root, "add_eos_token", 0);
    cJSON *atd = cJSON_AddObjectToObject(root, "added_tokens_decoder");
    const struct { int id; const char *s; } toks[] = {
        {0, "<unk>"}, {1, "<s>"}, {2, "</s>"}, {TINY_IMAGE_ID, "<image>"}, {TINY_PAD_ID, "<pad>"}};
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", toks[i].id);
        cJSON *t = added_token(toks[i].id, toks[i].s);
        cJSON_DeleteItemFromObject(t, "id");
        cJSON_AddItemToObject(atd, key, t);
    }
    cJSON_AddStringToObject(root, "bos_token", "<s>");
    cJSON_AddStringToObject(root, "chat_template", ms_chat_template_llava15_source());
    cJSON_AddBoolToObject(root, "clean_up_tokenization_spaces", 0);
    cJSON_AddStringToObject(root, "eos_token", "</s>");
    cJSON_AddBoolToObject(root, "legacy", 0);
    cJSON_AddNumberToObject(root, "model_max_length", 4096);
    cJSON_AddStringToObject(root, "pad_token", "<pad>");
    cJSON_AddStringToObject(root, "padding_side", "left");
    cJSON_AddStringToObject(root, "processor_class", "LlavaProcessor");
    cJSON_AddStringToObject(root, "tokenizer_class", "LlamaTokenizer");
    cJSON_AddStringToObject(root, "unk_token", "<unk>");
    cJSON_AddBoolToObject(root, "use_default_system_prompt", 0);
    return root;
}

static ms_status write_json(const char *dir, const char *name, cJSON *json, ms_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = cJSON_Print(json);
    cJSON_Delete(json);
    MS_CHECK(text);
    FILE *f = fopen(path, "w");
    if (!f) {
        free(text);
        return ms_errorf(err, MS_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    }
    size_t len = strlen(text);
    bool ok = fwrite(text, 1, len, f) == len && fputc('\n', f) != EOF;
    ok = (fclose(f) == 0) && ok;
    free(text);
    return ok ? MS_OK : ms_errorf(err, MS_ERR_IO, "writing '%s' failed", path);
}

ms_status ms_tokenizer_write_tiny(const char *dir, ms_error *err) {
    tiny_vocab v = {0};
    vocab_add(&v, "<unk>");
    vocab_add(&v, "<s>");
    vocab_add(&v, "</s>");
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        vocab_add(&v, s);
    }
    tiny_word *w;
    int n_words = tiny_words(&w);
    /* Base characters in byte order, so the ids do not depend on corpus order. */
    char **chars = ms_xmalloc(256 * sizeof *chars);
    int n_chars = 0;
    for (int i = 0; i < n_words; i++)
        for (int k = 0; k < w[i].n_syms; k++) {
            bool seen = false;
            for (int c = 0; c < n_chars && !seen; c++) seen = !strcmp(chars[c], w[i].syms[k]);
            if (!seen) {
                MS_CHECK(n_chars < 256);
                chars[n_chars++] = w[i].syms[k];
            }
        }
    qsort(chars, (size_t)n_chars, sizeof *chars, cmp_str);
    for (int c = 0; c < n_chars; c++) vocab_add(&v, chars[c]);
    free(chars);
    char **merges;
    int n_merges = tiny_learn(w, n_words, &v, &merges);
    MS_CHECKF(v.n == TINY_IMAGE_ID, "tiny corpus too small: %d pieces", v.n);

    mkdir(dir, 0755); /* usually exists already (model init writes it first) */
    ms_status st = write_json(dir, "tokenizer.json", tiny_tokenizer_json(&v, merges, n_merges), err);
    if (st == MS_OK) st = write_json(dir, "tokenizer_config.json", tiny_config_json(), err);

    for (int i = 0; i < n_merges; i++) free(merges[i]);
    free(merges);
    for (int i = 0; i < n_words; i++)
        for (int k = 0; k < w[i].n_syms; k++) free(w[i].syms[k]);
    free(w);
    for (int i = 0; i < v.n; i++) free(v.pieces[i]);
    free(v.pieces);
    return st;
}
