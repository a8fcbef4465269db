/* engine/t5.h - the umT5 / T5 text encoder (Wan2.1's T5Encoder), CPU float32.
 *
 * Turns token ids (engine/tokenizer.h) into the text conditioning of the DiT: a
 * [out_rows, dim] matrix whose first n rows are the encoder's output for the n tokens and
 * whose remaining rows are zero (shared/specs/wan_causal.md sec. 6).
 *
 * Structure: token embedding; per block x += o(Attn(RMS1(x))), x += fc2(fc1(h) * gelu_tanh(
 * gate(h))) with h = RMS2(x); final RMSNorm. Attention has no 1/sqrt(d) scaling and adds a
 * relative position bias (bidirectional buckets) per head: one table per block for umT5
 * (shared_pos false), one table for the whole encoder for T5 (shared_pos true). No biases.
 *
 * Only the real tokens are run. Upstream runs the padded sequence with padded keys masked;
 * since the bias depends only on key - query distances and masked keys get zero weight, the
 * real rows are identical either way (checked against the upstream dump), and the encoder
 * costs O(n) instead of O(text_len).
 *
 * Weights: tensors named prefix + the upstream names ("text_encoder.blocks.0.attn.q.weight";
 * prefix "weight." for the golden dumps). F32 tensors are used in place from the mapping
 * (st must then stay open while the encoder lives); F16/BF16 matrices are converted to
 * float32 at load while the converted total stays under FB_T5_RESIDENT_MAX, otherwise each
 * matrix is converted when it is used (so umT5-XXL in bf16 runs in bounded memory). The
 * token embedding is never converted as a whole: only the rows of the prompt's tokens are.
 *
 * Usage:
 *     fb_t5 *t5; fb_t5_load(st, "text_encoder.", &cfg.text, &t5, err, sizeof err);
 *     size_t sb = fb_t5_scratch_bytes(t5, max_tokens);  void *scratch = malloc(sb);
 *     fb_t5_call c = {.ids = ids, .n_ids = n, .out = ctx, .out_rows = text_len};
 *     fb_t5_encode(t5, kc, scratch, sb, &c, err, sizeof err);
 *
 * Thread-safety: an fb_t5 is immutable after load; any number of threads may encode at once,
 * each with its own scratch and fb_kctx.
 *
 * Status codes: 0 on success, -1 with a message in err (bad ids or sizes, a missing or
 * misshapen tensor, scratch too small, no memory). A failed encode writes nothing to out.
 */
#ifndef FLIPBOOK_ENGINE_T5_H
#define FLIPBOOK_ENGINE_T5_H

#include <stddef.h>
#include <stdint.h>

#include "engine/config.h"
#include "engine/safetensors.h"
#include "kernels/kernels.h"

/* Above this many bytes of converted (non-F32) matrices, matrices are converted per use. */
#define FB_T5_RESIDENT_MAX ((size_t)1 << 30)

typedef struct fb_t5 fb_t5;

/* Loads and checks every tensor (presence, shape, dtype F32/F16/BF16; errors name it).
 * cfg needs vocab, dim, dim_attn (a multiple of num_heads), dim_ffn, num_heads, num_layers,
 * num_buckets (>= 2), max_distance, shared_pos, eps and max_tokens; it is copied. */
int fb_t5_load(const fb_safetensors *st, const char *prefix, const fb_text_config *cfg,
               fb_t5 **out, char *err, size_t err_size);
void fb_t5_free(fb_t5 *t5);

const fb_text_config *fb_t5_get_config(const fb_t5 *t5);
size_t fb_t5_weight_bytes(const fb_t5 *t5);   /* float32 bytes converted and held */

/* Scratch for encoding up to max_tokens tokens. */
size_t fb_t5_scratch_bytes(const fb_t5 *t5, int max_tokens);

/* Debug hook: named intermediates of the real rows, [n, dim] each, as in the upstream dump
 * without "inter.": "block<i>.attn_out" (after o, before the residual add), "block<i>.ffn_out"
 * (fc2 output), "block<i>.out", and "hidden" (after the final norm). Data is valid only
 * during the callback. */
typedef void (*fb_t5_dump_fn)(void *user, const char *name, const float *data, int rows,
                              int cols);

typedef struct fb_t5_call {
    const int32_t *ids;      /* n_ids token ids, each in [0, vocab) */
    int n_ids;               /* 1 <= n_ids <= max_tokens of the scratch */
    float *out;              /* [out_rows, dim]: rows >= n_ids are zeroed */
    int out_rows;            /* >= n_ids */
    fb_t5_dump_fn dump;      /* NULL, or the debug hook */
    void *dump_user;
} fb_t5_call;

int fb_t5_encode(const fb_t5 *t5, fb_kctx *kc, void *scratch, size_t scratch_bytes,
                 const fb_t5_call *call, char *err, size_t err_size);

/* The relative position bucket of rel = key_pos - query_pos (upstream
 * T5RelativeEmbedding._relative_position_bucket, float32 arithmetic as upstream). */
int fb_t5_bucket(int rel, int num_buckets, int max_distance, int bidirectional);

/* The position bias of block `layer` (any layer when shared) for lq queries and lk keys:
 * out[h][i][j] = embedding[bucket(j - i)][h], [num_heads, lq, lk]. Returns 0, or -1 for a bad
 * layer. */
int fb_t5_pos_bias(const fb_t5 *t5, int layer, int lq, int lk, float *out);

/* Multiply-add FLOPs (x2) of encoding n tokens, for benchmarks. */
double fb_t5_flops(const fb_text_config *cfg, int n);

#endif
