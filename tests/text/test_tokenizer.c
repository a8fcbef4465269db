/* tests/text/test_tokenizer.c - the SentencePiece unigram tokenizer against the reference.
 *
 * argv[1] is tests/data/tokenizer: three .model files trained by Debian's python3-sentencepiece
 * (identity, nmt_nfkc with T5-style ids and user-defined symbols, byte fallback without dummy
 * prefix or whitespace cleanup) and cases.txt with the reference ids for unicode, odd spacing,
 * unknown symbols, invalid UTF-8, the empty string, with and without EOS and truncation
 * (tests/text/make_tokenizer_vectors.py writes them). Every id must match exactly. Then the
 * unknown-word report, the API accessors and the refusal of bad or unsupported models. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer.h"
#include "tests/text/text_test_util.h"

#define N_MODELS 3
static const char *const model_names[N_MODELS] = {"identity", "nfkc", "bytes"};
static fb_tokenizer *models[N_MODELS];
static unsigned char *model_bytes[N_MODELS];
static size_t model_size[N_MODELS];

static fb_tokenizer *model_by_name(const char *name) {
    for (int i = 0; i < N_MODELS; i++)
        if (strcmp(name, model_names[i]) == 0) return models[i];
    return NULL;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static void run_cases(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/cases.txt", dir);
    FILE *f = fopen(path, "r");
    CHECK_MSG(f != NULL, "cannot open %s", path);
    if (!f) return;
    static char line[1 << 16];
    int n_cases = 0, n_bad = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        char *save = NULL;
        char *name = strtok_r(line, " \n", &save);
        char *max_s = strtok_r(NULL, " \n", &save);
        char *eos_s = strtok_r(NULL, " \n", &save);
        char *hex = strtok_r(NULL, " \n", &save);
        if (!name || !max_s || !eos_s || !hex) {
            CHECK_MSG(0, "malformed case line %d", n_cases + 1);
            continue;
        }
        fb_tokenizer *tok = model_by_name(name);
        CHECK_MSG(tok != NULL, "unknown model %s", name);
        if (!tok) continue;
        char text[4096];
        size_t len = 0;
        if (strcmp(hex, "-") != 0) {
            for (size_t i = 0; hex[i] && hex[i + 1] && len < sizeof text; i += 2)
                text[len++] = (char)(hexval(hex[i]) * 16 + hexval(hex[i + 1]));
        }
        int32_t want[1024];
        int n_want = 0;
        for (char *tk; (tk = strtok_r(NULL, " \n", &save)) && n_want < 1024;)
            want[n_want++] = (int32_t)atoi(tk);
        fb_tok_options opt = {.add_eos = atoi(eos_s), .max_tokens = atoi(max_s)};
        fb_tok_result r;
        char err[256];
        n_cases++;
        if (fb_tok_encode(tok, text, len, &opt, &r, err, sizeof err)) {
            CHECK_MSG(0, "case %d (%s): encode failed: %s", n_cases, name, err);
            continue;
        }
        int same = r.n_ids == n_want;
        for (int i = 0; same && i < n_want; i++) same = r.ids[i] == want[i];
        if (!same) {
            if (n_bad++ < 10) {
                fprintf(stderr, "case %d model %s max %d eos %d text \"%.*s\"\n  got ", n_cases,
                        name, opt.max_tokens, opt.add_eos, (int)len, text);
                for (int i = 0; i < r.n_ids; i++) fprintf(stderr, " %d", r.ids[i]);
                fprintf(stderr, "\n  want");
                for (int i = 0; i < n_want; i++) fprintf(stderr, " %d", want[i]);
                fprintf(stderr, "\n");
            }
            t_failures++;
        }
        fb_tok_result_free(&r);
    }
    fclose(f);
    printf("reference cases: %d, mismatches: %d\n", n_cases, n_bad);
    CHECK(n_cases > 500);
}

static int has_word(const fb_tok_result *r, const char *w) {
    for (int i = 0; i < r->n_unknown; i++)
        if (strcmp(r->unknown[i], w) == 0) return 1;
    return 0;
}

static void test_unknown_words(void) {
    char err[256];
    fb_tok_result r;
    const char *text = "a red fox and a 🦄🌈 unicorn ☃x ☃x";
    for (int m = 0; m < N_MODELS; m++) {
        fb_tokenizer *tok = models[m];
        CHECK(fb_tok_encode(tok, text, strlen(text), NULL, &r, err, sizeof err) == 0);
        CHECK_MSG(r.n_unknown == 2, "%s: %d unknown words", model_names[m], r.n_unknown);
        CHECK(has_word(&r, "🦄🌈"));
        CHECK(has_word(&r, "☃x"));
        if (m == 2) { /* byte fallback: no unk id, the bytes instead */
            for (int i = 0; i < r.n_ids; i++) CHECK(r.ids[i] != fb_tok_unk_id(tok));
        }
        fb_tok_result_free(&r);
        /* Known words only. */
        const char *ok = "a red fox walks through a misty forest";
        CHECK(fb_tok_encode(tok, ok, strlen(ok), NULL, &r, err, sizeof err) == 0);
        CHECK(r.n_unknown == 0 && r.n_ids > 0 && r.n_dropped == 0);
        fb_tok_result_free(&r);
    }
    /* A word with several unknown runs is reported once; the report is capped. */
    {
        fb_tokenizer *t = model_by_name("identity");
        const char *w = "fox ☃a☃b☃ fox";
        CHECK(fb_tok_encode(t, w, strlen(w), NULL, &r, err, sizeof err) == 0);
        CHECK(r.n_unknown == 1 && has_word(&r, "☃a☃b☃"));
        fb_tok_result_free(&r);
        char many[2048] = "";
        for (int i = 0; i < 40; i++) /* 40 distinct words, each with an unknown symbol */
            snprintf(many + strlen(many), sizeof many - strlen(many), "%d☃ ", i);
        CHECK(fb_tok_encode(t, many, strlen(many), NULL, &r, err, sizeof err) == 0);
        CHECK(r.n_unknown == FB_TOK_MAX_UNKNOWN && has_word(&r, "0☃") && has_word(&r, "31☃"));
        fb_tok_result_free(&r);
    }
    /* Truncation drops unknown words that were cut off, and counts what was dropped. */
    fb_tokenizer *tok = model_by_name("nfkc");
    const char *t2 = "a red fox ☃ zebra";
    fb_tok_options opt = {.add_eos = 1, .max_tokens = 3};
    CHECK(fb_tok_encode(tok, t2, strlen(t2), &opt, &r, err, sizeof err) == 0);
    CHECK(r.n_ids == 3 && r.ids[2] == fb_tok_eos_id(tok));
    CHECK(r.n_dropped > 0);
    CHECK(r.n_unknown == 0);
    fb_tok_result_free(&r);
}

static void test_api(void) {
    fb_tokenizer *nf = model_by_name("nfkc"), *id = model_by_name("identity");
    CHECK(fb_tok_vocab_size(id) == 500);
    CHECK(fb_tok_unk_id(id) == 0 && fb_tok_bos_id(id) == 1 && fb_tok_eos_id(id) == 2);
    CHECK(fb_tok_pad_id(id) == -1);
    CHECK(fb_tok_pad_id(nf) == 0 && fb_tok_eos_id(nf) == 1 && fb_tok_unk_id(nf) == 2);
    CHECK(fb_tok_bos_id(nf) == -1);
    CHECK(strcmp(fb_tok_normalizer(nf), "nmt_nfkc") == 0);
    CHECK(strcmp(fb_tok_normalizer(id), "identity") == 0);
    size_t n;
    const char *p = fb_tok_piece(nf, 1, &n);
    CHECK(p && n == 4 && memcmp(p, "</s>", 4) == 0);
    CHECK(fb_tok_piece_type(nf, 1) == FB_TOK_CONTROL);
    CHECK(fb_tok_piece(nf, -1, &n) == NULL && n == 0);
    CHECK(fb_tok_piece(nf, fb_tok_vocab_size(nf), NULL) == NULL);
    /* Normalisation: NFKC folds full-width letters, collapses spaces, escapes them. */
    size_t len;
    char *s = fb_tok_normalize(nf, "  ＡＢ   c ", 12, &len);
    CHECK(s && strcmp(s, "\xe2\x96\x81" "AB" "\xe2\x96\x81" "c") == 0 && len == strlen(s));
    free(s);
    s = fb_tok_normalize(nf, "", 0, &len);
    CHECK(s && len == 0);
    free(s);
    /* EOS requested from NULL options / zero-length text. */
    fb_tok_result r;
    char err[256];
    fb_tok_options eos = {.add_eos = 1};
    CHECK(fb_tok_encode(nf, NULL, 0, &eos, &r, err, sizeof err) == 0);
    CHECK(r.n_ids == 1 && r.ids[0] == 1);
    fb_tok_result_free(&r);
    fb_tok_options bad = {.max_tokens = -1};
    CHECK(fb_tok_encode(nf, "a", 1, &bad, &r, err, sizeof err) == -1 && r.ids == NULL);
}

/* Appends a raw protobuf field to a copy of a model, which (as protobuf merges repeated
 * occurrences of a message field) overrides single trainer_spec fields. */
static fb_tokenizer *load_patched(int m, const unsigned char *extra, size_t n, char *err,
                                  size_t err_size) {
    unsigned char *buf = malloc(model_size[m] + n);
    memcpy(buf, model_bytes[m], model_size[m]);
    memcpy(buf + model_size[m], extra, n);
    fb_tokenizer *t = fb_tok_load(buf, model_size[m] + n, err, err_size);
    free(buf);
    return t;
}

static void test_refusals(void) {
    char err[256] = "";
    CHECK(fb_tok_load(NULL, 0, err, sizeof err) == NULL && err[0]);
    CHECK(fb_tok_load("hello world", 11, err, sizeof err) == NULL);
    printf("garbage: %s\n", err);
    /* trainer_spec { model_type: BPE } */
    const unsigned char bpe[] = {0x12, 0x02, 0x18, 0x02};
    CHECK(load_patched(0, bpe, sizeof bpe, err, sizeof err) == NULL);
    CHECK(strstr(err, "unigram") != NULL);
    printf("bpe: %s\n", err);
    /* trainer_spec { eos_id: -1 }: loads, then EOS requests are refused. */
    const unsigned char no_eos[] = {0x12, 0x0c, 0xd0, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff,
                                    0xff, 0xff, 0xff, 0xff, 0x01};
    fb_tokenizer *t = load_patched(0, no_eos, sizeof no_eos, err, sizeof err);
    CHECK(t != NULL);
    if (t) {
        CHECK(fb_tok_eos_id(t) == -1);
        fb_tok_result r;
        fb_tok_options o = {.add_eos = 1};
        CHECK(fb_tok_encode(t, "a", 1, &o, &r, err, sizeof err) == -1);
        printf("no eos: %s\n", err);
        fb_tok_free(t);
    }
    /* A second unknown piece: pieces { piece: "<u2>" type: UNKNOWN } */
    const unsigned char unk2[] = {0x0a, 0x08, 0x0a, 0x04, '<', 'u', '2', '>', 0x18, 0x02};
    CHECK(load_patched(0, unk2, sizeof unk2, err, sizeof err) == NULL);
    printf("two unk: %s\n", err);
    /* A duplicate normal piece: pieces { piece: "a" } */
    const unsigned char dup[] = {0x0a, 0x03, 0x0a, 0x01, 'a'};
    CHECK(load_patched(0, dup, sizeof dup, err, sizeof err) == NULL);
    printf("duplicate: %s\n", err);
    /* Every truncation of a real model either loads or fails cleanly. */
    for (size_t cut = 0; cut < model_size[0]; cut += 97) {
        fb_tokenizer *tt = fb_tok_load(model_bytes[0], cut, err, sizeof err);
        fb_tok_free(tt);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s TOKENIZER_DATA_DIR\n", argv[0]);
        return 2;
    }
    for (int i = 0; i < N_MODELS; i++) {
        char path[4096], err[256];
        snprintf(path, sizeof path, "%s/%s.model", argv[1], model_names[i]);
        model_bytes[i] = read_file(path, &model_size[i]);
        CHECK_MSG(model_bytes[i] != NULL, "cannot read %s", path);
        if (!model_bytes[i]) return 1;
        models[i] = fb_tok_load(model_bytes[i], model_size[i], err, sizeof err);
        CHECK_MSG(models[i] != NULL, "%s: %s", path, err);
        if (!models[i]) return 1;
    }
    run_cases(argv[1]);
    test_unknown_words();
    test_api();
    test_refusals();
    for (int i = 0; i < N_MODELS; i++) {
        fb_tok_free(models[i]);
        free(model_bytes[i]);
    }
    TEST_EXIT();
}
