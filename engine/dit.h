/* engine/dit.h - the Wan2.1 diffusion transformer (causal across chunks), CPU float32.
 *
 * One fb_dit holds the weights (converted to float32 at load) and is read-only afterwards: every
 * stream shares it. Everything a call changes lives in memory the caller passes in: a scratch
 * arena (activations), the prepared prompt (fb_dit_text: text embedding and every layer's
 * cross-attention K/V, made once per prompt) and the stream's KV cache (kvcache/kvcache.h).
 *
 * A call runs the model on one chunk of latent frames x [C, F, H, W] at one timestep t and
 * returns the flow prediction [C_out, F, H, W] (shared/specs/wan_causal.md sec. 2.5). Its
 * self-attention sees the past frames the plan lists (their keys are stored before RoPE and
 * rotated at the plan's positions) followed by the chunk itself, with no mask. With write_kv
 * the chunk's own pre-RoPE K/V are stored into plan->write_slot (the t = 0 context pass), and
 * its latents x too when the cache keeps latents; then fb_kvcache_commit() makes them visible. Without a plan the chunk attends only to itself at
 * positions 0..F-1 (Wan2.1's bidirectional WanModel).
 *
 * Batches: fb_dit_forward_batch() runs several independent calls (of one stream or of many;
 * each with its own latents, t, prompt, cache, plan and frame count) as one forward pass: the
 * token rows of all calls are stacked and every linear layer is one GEMM over the stack
 * (fb_linear_rows, which keeps each call's rows bit for bit what they are alone), while the
 * modulation, self-attention (own cache, own positions) and cross-attention (own prompt) stay
 * per call. Every call's output is bit for bit the output of fb_dit_forward on it alone, so
 * batching never changes a stream's frames. Calls run as if one after another in array order
 * (two calls on the same cache see each other's writes as sequential calls would).
 *
 * Usage:
 *     fb_dit *dit; fb_dit_load(st, "dit.", &cfg.dit, &dit, err, sizeof err);
 *     fb_dit_text *txt; fb_dit_text_prepare(dit, kc, t5_out, n_rows, NULL, &txt, err, n);
 *     size_t sb = fb_dit_scratch_bytes(&cfg.dit, F_max, past_max, tokens_per_frame);
 *     void *scratch = malloc(sb);
 *     fb_dit_call c = { .x = x, .n_frames = 3, .height = 60, .width = 104, .t = 937.5f,
 *                       .text = txt, .cache = kv, .plan = &plan, .out = flow };
 *     fb_dit_forward(dit, kc, scratch, sb, &c, err, sizeof err);
 *
 * Thread-safety: fb_dit and fb_dit_text are immutable after creation (a prepared prompt changes
 * only through fb_dit_text_prepare_into, which its owner must not run while a forward reads
 * it) and may be used by any number of threads at once. A forward call uses its scratch, its
 * fb_kctx and (when it writes) its caches exclusively.
 *
 * Status codes: 0 success; negative fb_dit_status with a message in err. Every check of a
 * forward runs before any compute, so a failed call has written nothing (no output, no cache).
 */
#ifndef FLIPBOOK_ENGINE_DIT_H
#define FLIPBOOK_ENGINE_DIT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/config.h"
#include "engine/safetensors.h"
#include "kernels/kernels.h"
#include "kvcache/kvcache.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    FB_DIT_OK = 0,
    FB_DIT_ERR_ARG = -1,      /* bad argument: shapes, counts, NULL pointers, config */
    FB_DIT_ERR_WEIGHTS = -2,  /* a tensor is missing or has the wrong shape / dtype */
    FB_DIT_ERR_NOMEM = -3,
    FB_DIT_ERR_SCRATCH = -4,  /* the scratch arena is smaller than this call needs */
    FB_DIT_ERR_PLAN = -5,     /* plan and cache disagree (stale plan, shape mismatch) */
} fb_dit_status;

const char *fb_dit_status_str(int status);

typedef struct fb_dit fb_dit;

/* Loads every DiT tensor named prefix + <Wan name> (e.g. "dit.blocks.0.self_attn.q.weight";
 * prefix "weight." for the upstream golden files, "" for a bare Wan checkpoint). Each tensor's
 * presence, shape and dtype (F32, F16 or BF16) is checked and the error names it. Weights are
 * copied (converted to float32): st may be closed afterwards. cfg is copied; it must satisfy
 * patch_size[0] == 1, dim % num_heads == 0, an even head_dim >= 6, freq_dim even. */
int fb_dit_load(const fb_safetensors *st, const char *prefix, const fb_dit_config *cfg,
                fb_dit **out, char *err, size_t err_size);
void fb_dit_free(fb_dit *dit);

const fb_dit_config *fb_dit_get_config(const fb_dit *dit);
size_t fb_dit_weight_bytes(const fb_dit *dit);   /* float32 bytes held */

/* ---- debug dump -------------------------------------------------------------------------- */

/* Called with named intermediates while a call runs (names as in the upstream golden files
 * without "inter.": "sinusoid", "e", "e0", "context_emb", "patch_tokens",
 * "block0.self_attn_in", "block0.q_normed", "block0.k_normed", "block0.q_roped",
 * "block0.k_roped", "block0.self_attn_out", "block0.norm3_out", "block0.cross_attn_out",
 * "block0.ffn_in", "block0.ffn_out", "block<i>.out", "head_in", "head_out", "rope_freqs").
 * q/k_roped are the chunk's own tokens [L, H, Dh]; other token tensors are [L, dim]. The
 * data is only valid during the callback. */
typedef void (*fb_dit_dump_fn)(void *user, const char *name, const float *data, int ndim,
                               const int64_t *shape);
typedef struct fb_dit_dump {
    fb_dit_dump_fn fn;
    void *user;
} fb_dit_dump;

/* ---- prompt ------------------------------------------------------------------------------ */

/* A prepared prompt: the text embedding of the context padded with zero rows to text_len
 * (those rows are attended, as upstream does), and every layer's cross-attention keys
 * (after norm_k) and values [text_len, dim]. Immutable once made. */
typedef struct fb_dit_text fb_dit_text;

/* context [n_rows, text_dim] are the encoder's real rows (1 <= n_rows <= text_len); rows
 * n_rows..text_len-1 are taken as zeros. dump may be NULL (else receives "context_emb").
 * Allocates the result (fb_dit_text_free releases it). */
int fb_dit_text_prepare(const fb_dit *dit, fb_kctx *kc, const float *context, int n_rows,
                        const fb_dit_dump *dump, fb_dit_text **out, char *err,
                        size_t err_size);
/* Frees a prompt made by fb_dit_text_prepare; NULL and placed prompts are ignored. */
void fb_dit_text_free(fb_dit_text *text);
/* Bytes one prepared prompt holds: also what fb_dit_text_init needs. */
size_t fb_dit_text_bytes(const fb_dit_config *cfg);

/* The same without allocating, for callers that re-prepare often (a blend re-prepares the
 * prompt every chunk): fb_dit_text_init places an empty prompt for this config in caller
 * memory (64-byte aligned, at least fb_dit_text_bytes; NULL otherwise); it stays valid as
 * long as that memory and needs no free. fb_dit_text_prepare_into overwrites a prompt with
 * `context`, using `scratch` (fb_dit_text_scratch_bytes) for its temporaries. All checks
 * run before anything is written: a refused call leaves `out` as it was, and once the checks
 * pass nothing can fail. */
fb_dit_text *fb_dit_text_init(void *mem, size_t bytes, const fb_dit_config *cfg);
size_t fb_dit_text_scratch_bytes(const fb_dit_config *cfg);
int fb_dit_text_prepare_into(const fb_dit *dit, fb_kctx *kc, const float *context, int n_rows,
                             const fb_dit_dump *dump, fb_dit_text *out, void *scratch,
                             size_t scratch_bytes, char *err, size_t err_size);

/* ---- forward ----------------------------------------------------------------------------- */

/* Scratch bytes for calls of up to max_frames frames attending to up to max_past_frames past
 * frames, tokens_per_frame = (H / patch_h) * (W / patch_w). Plan it once per stream from the
 * worst case (chunk frames, or the re-cache frame count if larger; anchors + window). */
size_t fb_dit_scratch_bytes(const fb_dit_config *cfg, int max_frames, int max_past_frames,
                            int tokens_per_frame);

typedef struct fb_dit_call {
    const float *x;           /* [in_dim, F, H, W] latents (Wan layout) */
    int n_frames;             /* F >= 1 */
    int height, width;        /* latent H, W: multiples of patch_size[1], patch_size[2] */
    float t;                  /* timestep shared by all frames (0..1000, may be fractional) */
    const fb_dit_text *text;  /* the prompt (required) */
    fb_kvcache *cache;        /* the stream's cache; may be NULL when plan is NULL or has
                               * no past frames and write_kv is 0 */
    const fb_kv_plan *plan;   /* NULL: no past, positions 0..F-1. Else plan->n_frames == F */
    int write_kv;             /* store the chunk's pre-RoPE K/V (and latents, if the cache
                               * keeps them) into plan->write_slot */
    float *out;               /* [out_dim, F, H, W] flow prediction; may not alias x */
    const fb_dit_dump *dump;  /* NULL, or the debug hook */
} fb_dit_call;

int fb_dit_forward(const fb_dit *dit, fb_kctx *kc, void *scratch, size_t scratch_bytes,
                   const fb_dit_call *call, char *err, size_t err_size);

/* Most calls in one batch. */
#define FB_DIT_MAX_BATCH 64

/* Scratch bytes for batches of up to n_calls calls, each of up to max_frames frames attending
 * to up to max_past_frames past frames (fb_dit_scratch_bytes is n_calls = 1). A batch of
 * fewer or smaller calls fits in it too. 0 for counts out of range. */
size_t fb_dit_scratch_bytes_batch(const fb_dit_config *cfg, int n_calls, int max_frames,
                                  int max_past_frames, int tokens_per_frame);

/* Runs n calls (1..FB_DIT_MAX_BATCH) as one forward pass (see the top of this file). Every
 * call is checked before any compute; an error names the call ("call 2 of the batch: ...")
 * and nothing was written. Each calls[i].out receives exactly what fb_dit_forward gives for
 * calls[i] alone. */
int fb_dit_forward_batch(const fb_dit *dit, fb_kctx *kc, void *scratch, size_t scratch_bytes,
                         const fb_dit_call *calls, int n, char *err, size_t err_size);

/* Floating-point operations of one forward (multiply-add = 2), for benchmarks: linear layers,
 * self-attention over n_past + n_frames frames, cross-attention over text_len rows. */
double fb_dit_flops(const fb_dit_config *cfg, int n_frames, int n_past, int tokens_per_frame);

#ifdef __cplusplus
}
#endif

#endif
