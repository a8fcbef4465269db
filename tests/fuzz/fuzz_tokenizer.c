/* tests/fuzz/fuzz_tokenizer.c - the SentencePiece .model parser and the encoder on hostile
 * input.
 *
 * Input layout: 2 bytes little-endian L, then L bytes of model file, then the text (any
 * bytes). When L is larger than what follows, the whole rest is the model and the text is
 * empty. A model that loads is then used to normalise and encode the text with several
 * option sets, and the results are checked: every id is in range, the length respects
 * max_tokens, EOS is last when asked for, and unknown words are NUL-terminated strings. A
 * crash, a sanitizer report or a failed check (abort) is a bug. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer.h"

#define REQUIRE(c)                                                         \
    do {                                                                   \
        if (!(c)) {                                                        \
            fprintf(stderr, "fuzz_tokenizer: check failed: %s\n", #c);     \
            abort();                                                       \
        }                                                                  \
    } while (0)

static void check_encode(const fb_tokenizer *tok, const char *text, size_t len,
                         int add_eos, int max_tokens) {
    fb_tok_options opt = {.add_eos = add_eos, .max_tokens = max_tokens};
    fb_tok_result r;
    char err[256];
    if (fb_tok_encode(tok, text, len, &opt, &r, err, sizeof err) != 0) {
        REQUIRE(r.ids == NULL && r.n_ids == 0 && err[0]);
        REQUIRE(add_eos && fb_tok_eos_id(tok) < 0); /* the only expected refusal here */
        return;
    }
    const int vocab = fb_tok_vocab_size(tok);
    REQUIRE(r.n_ids >= 0 && r.n_dropped >= 0);
    if (max_tokens) REQUIRE(r.n_ids <= max_tokens);
    for (int i = 0; i < r.n_ids; i++) REQUIRE(r.ids[i] >= 0 && r.ids[i] < vocab);
    if (add_eos) REQUIRE(r.n_ids >= 1 && r.ids[r.n_ids - 1] == fb_tok_eos_id(tok));
    for (int i = 0; i < r.n_unknown; i++) REQUIRE(r.unknown[i] != NULL);
    fb_tok_result_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t model_len = (size_t)data[0] | (size_t)data[1] << 8;
    data += 2;
    size -= 2;
    if (model_len > size) model_len = size;
    const char *text = (const char *)data + model_len;
    size_t text_len = size - model_len;
    char err[256];
    fb_tokenizer *tok = fb_tok_load(data, model_len, err, sizeof err);
    if (!tok) {
        REQUIRE(err[0]);
        return 0;
    }
    REQUIRE(fb_tok_vocab_size(tok) > 0);
    REQUIRE(fb_tok_unk_id(tok) >= 0 && fb_tok_unk_id(tok) < fb_tok_vocab_size(tok));
    for (int id = -1; id <= fb_tok_vocab_size(tok) && id < 64; id++) {
        size_t n;
        const char *p = fb_tok_piece(tok, id, &n);
        REQUIRE((p != NULL) == (id >= 0 && id < fb_tok_vocab_size(tok)));
    }
    size_t nlen;
    char *norm = fb_tok_normalize(tok, text, text_len, &nlen);
    REQUIRE(norm && strlen(norm) <= nlen);
    free(norm);
    check_encode(tok, text, text_len, 0, 0);
    check_encode(tok, text, text_len, fb_tok_eos_id(tok) >= 0, 3);
    check_encode(tok, text, text_len, 0, 1);
    fb_tok_free(tok);
    return 0;
}
