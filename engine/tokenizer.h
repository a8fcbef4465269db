/* engine/tokenizer.h - SentencePiece unigram tokenizer for the text encoder's prompts.
 *
 * Reads a standard SentencePiece `.model` file (a serialized ModelProto, the bytes stored in
 * the model's `tokenizer.spm` tensor or umT5's spiece.model) and turns prompt text into token
 * ids exactly as SentencePiece's own encoder does:
 *   1. normalise: the model's precompiled character map (longest-match rewrite rules; this is
 *      how "nmt_nfkc", "nfkc", "nmt_nfkc_cf" and custom rule tables are stored, so all of them
 *      are supported; "identity" has an empty map), user-defined symbols kept verbatim,
 *      remove_extra_whitespaces, add_dummy_prefix, escape_whitespaces (space -> U+2581),
 *      treat_whitespace_as_suffix; bytes that are not valid UTF-8 become U+FFFD;
 *   2. Viterbi over a lattice of every vocabulary piece that matches at each character
 *      (scores from the model; user-defined symbols always win; unused pieces never match);
 *      a character no piece starts with becomes the unknown piece, or its UTF-8 bytes as
 *      <0xXX> pieces when the model has byte_fallback;
 *   3. optionally truncate to max_tokens and append EOS (EOS stays last, as T5 does).
 * Only unigram models are accepted (BPE/word/char models are refused with a message).
 * Alongside the ids, fb_tok_encode() reports the prompt words that contained unknown
 * characters, so that the daemon can tell a user which words the model does not know.
 *
 * Usage:
 *   char err[256];
 *   fb_tokenizer *tok = fb_tok_load(bytes, n_bytes, err, sizeof err);
 *   fb_tok_options opt = {.add_eos = 1, .max_tokens = 512};
 *   fb_tok_result r;
 *   if (fb_tok_encode(tok, "a red fox", 9, &opt, &r, err, sizeof err) == 0) {
 *       ... r.ids[0 .. r.n_ids), r.unknown[0 .. r.n_unknown) ...
 *       fb_tok_result_free(&r);
 *   }
 *   fb_tok_free(tok);
 *
 * Thread-safety: a loaded tokenizer is immutable; any number of threads may encode with it
 * at once. fb_tok_free() must not race with encoders.
 */
#ifndef FLIPBOOK_ENGINE_TOKENIZER_H
#define FLIPBOOK_ENGINE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

/* SentencePiece piece types (values as in the .model file). */
typedef enum {
    FB_TOK_NORMAL = 1,
    FB_TOK_UNKNOWN = 2,
    FB_TOK_CONTROL = 3,
    FB_TOK_USER_DEFINED = 4,
    FB_TOK_UNUSED = 5,
    FB_TOK_BYTE = 6,
} fb_tok_type;

/* At most this many unknown words are reported per encode (the rest are still encoded). */
#define FB_TOK_MAX_UNKNOWN 32

/* Largest .model file accepted (umT5's spiece.model is 4.5 MB). */
#define FB_TOK_MAX_MODEL_BYTES (64u << 20)

typedef struct fb_tokenizer fb_tokenizer;

/* Parses and validates a .model file. The tokenizer copies what it needs; `data` may be freed
 * afterwards. Returns NULL with a message in err on any malformed or unsupported input. */
fb_tokenizer *fb_tok_load(const void *data, size_t size, char *err, size_t err_size);
void fb_tok_free(fb_tokenizer *tok);

int fb_tok_vocab_size(const fb_tokenizer *tok);
int fb_tok_unk_id(const fb_tokenizer *tok);
int fb_tok_eos_id(const fb_tokenizer *tok);   /* -1 when the model has none */
int fb_tok_bos_id(const fb_tokenizer *tok);   /* -1 when the model has none */
int fb_tok_pad_id(const fb_tokenizer *tok);   /* -1 when the model has none */
/* The normalizer's name as stored ("nmt_nfkc", "identity", ...). */
const char *fb_tok_normalizer(const fb_tokenizer *tok);
/* Piece text (not NUL-terminated; *len receives its length) and type of `id`; NULL / 0 when
 * id is out of range. */
const char *fb_tok_piece(const fb_tokenizer *tok, int id, size_t *len);
fb_tok_type fb_tok_piece_type(const fb_tokenizer *tok, int id);

typedef struct fb_tok_options {
    int add_eos;      /* append the EOS id (an error if the model has none) */
    int max_tokens;   /* > 0: keep at most this many ids, EOS included; 0: no limit */
} fb_tok_options;

typedef struct fb_tok_result {
    int32_t *ids;     /* n_ids token ids */
    int n_ids;
    int n_dropped;    /* ids cut off by max_tokens */
    /* Distinct words (UTF-8, normalised, whitespace removed) of the kept ids that contained a
     * character the vocabulary has no piece for, in order of first appearance; at most
     * FB_TOK_MAX_UNKNOWN of them. */
    char **unknown;
    int n_unknown;
} fb_tok_result;

/* Encodes `len` bytes of text (any bytes; NUL is an ordinary character). On success fills
 * *out (release it with fb_tok_result_free) and returns 0; on failure returns -1 with a
 * message, and *out is zeroed. */
int fb_tok_encode(const fb_tokenizer *tok, const char *text, size_t len,
                  const fb_tok_options *opt, fb_tok_result *out, char *err, size_t err_size);
void fb_tok_result_free(fb_tok_result *r);

/* The normalised form of `text` (what the lattice runs over), NUL-terminated, in a malloc'd
 * buffer the caller frees; *out_len receives its length. NULL when out of memory. */
char *fb_tok_normalize(const fb_tokenizer *tok, const char *text, size_t len, size_t *out_len);

#endif
