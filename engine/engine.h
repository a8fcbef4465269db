/* engine/engine.h - flipbook's engine: a prompt in, an endless sequence of RGB frames out.
 *
 * A model (fb_model) is loaded once from a flipbook model file (docs/model-format.md): the
 * causal video DiT, the text encoder with its tokenizer, and the streaming TAEHV decoder. A
 * stream (fb_stream) is one endless video: its text conditioning, its KV cache (anchor slots
 * plus a rolling window, drawn from the model's shared KV pool), its decoder memory, its seed
 * and chunk counter. Each fb_stream_next_chunk() call generates one chunk of latent frames
 * (a few flow-matching steps and one context pass that commits the chunk to the cache) and
 * decodes it to RGB24 frames. Prompts, seed and anchors can change between any two chunks.
 *
 * Thread-safety: a model is immutable after fb_model_load() and shared by all streams and
 * threads (its prompt-embedding cache, KV pool and execution contexts lock internally). A
 * stream is used by one thread at a time; different streams may be called concurrently on
 * different threads. fb_model_free() must come after every stream of the model is freed.
 *
 * Compute: the model owns max_parallel_calls execution contexts (kernel worker threads plus
 * the scratch of a batched forward pass), each of n_threads threads. A next_chunk call (or an
 * anchor image) checks one out for its duration and waits while all are busy, so the machine
 * runs at most max_parallel_calls x n_threads kernel threads however many streams are open.
 * A stream opened with fb_stream_params.own_threads keeps its own threads instead (the old
 * per-stream behaviour). Frames never depend on which context ran them, on thread counts or
 * on batching.
 *
 * Memory: the KV pool is sized once at load (fb_model_params.kv_budget_bytes); each stream
 * takes a fixed share at open, so opening a stream that does not fit fails with FB_E_NO_KV
 * and says how many fit. Everything a chunk needs (latents, activations, the prepared prompt,
 * decoder state, output staging) is planned and allocated when the stream opens, and the
 * scratch of batched passes when the model loads; generating chunks allocates nothing, however
 * long the stream runs (a prompt the model's prompt cache does not hold allocates its entry).
 *
 * Usage:
 *
 *     fb_model *m;  fb_stream *s;  char err[256];
 *     fb_model_params mp = fb_model_default_params();
 *     if (fb_model_load("default", &mp, &m, err, sizeof err) != FB_OK) { puts(err); return 1; }
 *     fb_model_info info;  fb_model_get_info(m, &info);
 *     if (fb_stream_open(m, "a red kite over the sea", 42, &s, err, sizeof err) != FB_OK) ...
 *     uint8_t *rgb = malloc(info.chunk_rgb_bytes);
 *     for (;;) {
 *         int n;  fb_chunk_info ci;
 *         if (fb_stream_next_chunk(s, rgb, info.chunk_rgb_bytes, &n, &ci) != FB_OK) {
 *             puts(fb_stream_errmsg(s)); break;
 *         }
 *         // n frames of info.width x info.height x 3 bytes, row-major, top row first
 *         if (user_typed_a_prompt)
 *             fb_stream_set_prompt(s, new_prompt, FB_TRANSITION_RECACHE, 0);
 *     }
 *     fb_stream_free(s);  fb_model_free(m);  free(rgb);
 *
 * Status codes and what survives them:
 *
 *   code             | returned by                      | state afterwards
 *   -----------------+----------------------------------+------------------------------------
 *   FB_OK            | all                              | the call took effect
 *   FB_E_INVALID     | any call given bad arguments     | unchanged: the call did nothing
 *                    | (NULL, empty prompt, wrong image |
 *                    | size, buffer too small)          |
 *   FB_E_NOT_FOUND   | fb_model_load                    | no model; the message says where it
 *                    |                                  | looked ("default" not installed yet)
 *   FB_E_IO          | fb_model_load                    | no model
 *   FB_E_FORMAT      | fb_model_load                    | no model; message names the field or
 *                    |                                  | tensor
 *   FB_E_NO_MEMORY   | load, open; next_chunk on a new  | load/open: nothing created.
 *                    | prompt (prompt cache)            | next_chunk: no chunk, stream intact,
 *                    |                                  | the same call may be retried
 *   FB_E_NO_KV       | fb_stream_open                   | no stream; message says how many fit
 *   FB_E_LIMIT       | next_chunk ("absolute" positions | the stream has ended; reset or free
 *                    | past the RoPE table)             |
 *   FB_E_STATE       | pin before any chunk; any call   | unchanged
 *                    | on a stream that failed (below)  |
 *   FB_E_BACKEND     | next_chunk, set_anchor_image     | the stream is failed: its cache may
 *                    | (a compute kernel failed)        | be half written; every call but
 *                    |                                  | reset/free returns FB_E_STATE until
 *                    |                                  | fb_stream_reset()
 *   FB_E_INTERNAL    | any                              | as FB_E_BACKEND (a bug: please report)
 *
 * Pause/resume is not engine state: a paused stream simply is not asked for chunks.
 */
#ifndef FLIPBOOK_ENGINE_ENGINE_H
#define FLIPBOOK_ENGINE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fb_model fb_model;
typedef struct fb_stream fb_stream;

typedef enum fb_status {
    FB_OK = 0,
    FB_E_INVALID = -1,   /* bad argument */
    FB_E_NOT_FOUND = -2, /* model file missing */
    FB_E_IO = -3,        /* model file unreadable */
    FB_E_FORMAT = -4,    /* model file malformed: config, tensor names, shapes, dtypes */
    FB_E_NO_MEMORY = -5, /* host or device allocation failed */
    FB_E_NO_KV = -6,     /* the KV pool has no room for another stream */
    FB_E_LIMIT = -7,     /* a model limit was reached (absolute positions exhausted) */
    FB_E_STATE = -8,     /* not possible in the stream's current state */
    FB_E_BACKEND = -9,   /* a compute backend failed */
    FB_E_INTERNAL = -10, /* a broken invariant */
} fb_status;

/* A short constant English name for a status ("invalid argument", ...). */
const char *fb_status_str(fb_status st);

typedef enum fb_backend {
    FB_BACKEND_AUTO = 0, /* CUDA when built with it and a GPU is present, else CPU */
    FB_BACKEND_CPU = 1,
    FB_BACKEND_CUDA = 2,
} fb_backend;

typedef struct fb_model_params {
    fb_backend backend;       /* where the kernels run (AUTO) */
    int n_threads;            /* CPU kernel threads of each execution context (below);
                               * 0 = one per online core */
    size_t kv_budget_bytes;   /* KV pool shared by all streams; 0 = room for max_streams */
    int max_streams;          /* streams the pool holds when kv_budget_bytes is 0 (1) */
    int prompt_cache_entries; /* prompt embeddings kept across prompt changes (16) */
    size_t prompt_cache_bytes;/* and their byte bound (256 MiB) */
    int max_parallel_calls;   /* execution contexts: next_chunk calls that compute at once;
                               * further calls wait for a free one (0 = 1) */
    int max_batch;            /* most streams one batched DiT pass takes (fb_streams_next_chunk
                               * runs larger sets in groups); 1..64, 0 = as many streams as
                               * the KV pool holds, at most 8 */
} fb_model_params;

fb_model_params fb_model_default_params(void);

/* Loads a model: `path` is a model file, or "default" for models/default/model.safetensors
 * found through the FLIPBOOK_MODELS environment variable (a folder holding default/) or next
 * to the executable's install or build location. The file is memory-mapped; its config is
 * validated field by field and every tensor is checked by the module loaders. On failure
 * *out is NULL and err holds a message naming the problem. */
fb_status fb_model_load(const char *path, const fb_model_params *params, fb_model **out,
                        char *err, size_t err_size);
void fb_model_free(fb_model *m);   /* NULL is ignored */

typedef struct fb_model_info {
    const char *name;          /* flipbook.name; valid while the model lives */
    const char *prompts_json;  /* flipbook.prompts: a JSON array of example prompts (the
                                * model card's), or NULL when the file has none or it is not
                                * an array of strings; valid while the model lives */
    const char *backend;       /* "cpu" or "cuda" */
    int width, height;         /* decoded frame size in pixels */
    double fps;
    int frames_per_chunk;      /* pixel frames of every chunk but the first */
    int first_chunk_frames;    /* pixel frames of chunk 0 (the decoder trims its warm-up) */
    size_t frame_bytes;        /* width * height * 3 */
    size_t chunk_rgb_bytes;    /* the output buffer fb_stream_next_chunk needs */
    int latent_channels, latent_height, latent_width;
    int latent_frames_per_chunk;
    int anchor_frames, window_frames;
    int steps;                 /* denoising steps per chunk (plus one context pass) */
    float guidance;            /* classifier-free guidance scale; 1 = off, else every step
                                * is two DiT passes (prompt and empty prompt) */
    int absolute_positions;    /* 1: streams end after max_chunks; 0: endless */
    int64_t max_chunks;        /* 0 when endless */
    size_t kv_bytes_per_stream;/* KV cache taken from the pool by each stream */
    size_t kv_pool_bytes;      /* the whole pool */
    int max_streams;           /* streams the pool holds when empty */
    size_t stream_bytes;       /* other per-stream memory (activations, decoder, latents) */
    size_t weight_bytes;       /* bytes of weights as mapped from the file */
    double dit_gflop_per_chunk;/* analytic FLOPs of one chunk's DiT passes (steady state) */
    double decode_gflop_per_chunk;
    int threads_per_call;      /* kernel threads of each shared execution context */
    int max_parallel_calls;    /* shared execution contexts */
    int max_batch;             /* streams per batched DiT pass */
    size_t exec_bytes;         /* memory of the shared contexts' batch scratch (all of them;
                                * committed on first use) */
} fb_model_info;

void fb_model_get_info(const fb_model *m, fb_model_info *out);

/* Streams that can still be opened now (pool free space / bytes per stream). */
int fb_model_streams_available(const fb_model *m);

/* Words of `prompt` the tokenizer cannot represent (they would become <unk>), written to out
 * separated by single spaces (truncated to out_size). *n_unknown gets their count. */
fb_status fb_model_unknown_words(const fb_model *m, const char *prompt, char *out,
                                 size_t out_size, int *n_unknown);

/* Tokens the prompt becomes (EOS included) and how many were cut because the model reads at
 * most max_tokens (a prompt that long is truncated, as upstream does, not refused). */
fb_status fb_model_prompt_tokens(const fb_model *m, const char *prompt, int *n_tokens,
                                 int *n_dropped);

/* ---- streams ---------------------------------------------------------------------------- */

/* Opens a stream on `prompt` with `seed`. The prompt is tokenized now (errors: NULL, empty or
 * blank, longer than 16 KiB) and encoded with the first chunk. */
fb_status fb_stream_open(fb_model *m, const char *prompt, uint64_t seed, fb_stream **out,
                         char *err, size_t err_size);

typedef struct fb_stream_params {
    int own_threads;          /* 0 (default): compute on the model's shared execution
                               * contexts. N > 0: the stream starts N kernel threads of its
                               * own and runs its single-stream calls on them, never waiting
                               * for a shared context (in fb_streams_next_chunk it runs on a
                               * shared one like every other stream) */
} fb_stream_params;

fb_stream_params fb_stream_default_params(void);

/* fb_stream_open with parameters (NULL = defaults). FB_E_INVALID for a negative own_threads. */
fb_status fb_stream_open_ex(fb_model *m, const char *prompt, uint64_t seed,
                            const fb_stream_params *params, fb_stream **out, char *err,
                            size_t err_size);
void fb_stream_free(fb_stream *s);  /* returns its KV share to the pool; NULL is ignored */

/* The message of the last failed call on this stream ("" when none). */
const char *fb_stream_errmsg(const fb_stream *s);

typedef struct fb_chunk_info {
    int64_t chunk;            /* index of this chunk since open/reset: 0, 1, 2, ... */
    int64_t first_frame;      /* pixel frame number of the first frame written */
    int n_frames;
    int64_t first_latent;     /* latent frame index of the chunk's first latent frame */
    uint64_t seed;            /* the seed its noise came from */
    int prompt_changed;       /* a new prompt (or a blend step) took effect with this chunk */
    float blend;              /* progress of a blend in (0, 1]; 1 when none is running */
    int recached;             /* the window was re-cached under a new prompt first */
    int n_anchor_frames;      /* anchor frames the chunk attended to */
    int n_window_frames;      /* past window frames the chunk attended to */
    double ms_text;           /* text encoder (skipped on a prompt-cache hit) and the DiT's
                               * preparation of the prompt (cross-attention K/V) */
    double ms_recache;        /* recache pass */
    double ms_dit_steps;      /* the denoising DiT passes */
    double ms_context;        /* the context pass that commits the chunk's K/V */
    double ms_decode;         /* TAEHV decode to RGB */
    double ms_total;
    double gflop_dit;         /* analytic FLOPs of this chunk's DiT passes (recache included) */
    double gflop_decode;      /* analytic FLOPs of its decode */
    int batch_size;           /* streams whose DiT passes ran together with this chunk's in one
                               * batched forward (the largest over its passes; 1 = alone) */
} fb_chunk_info;

/* Generates the next chunk and decodes it into `out_rgb` (n_frames * frame_bytes bytes,
 * frames one after another; out_size must be at least info.chunk_rgb_bytes). */
fb_status fb_stream_next_chunk(fb_stream *s, uint8_t *out_rgb, size_t out_size, int *n_frames,
                               fb_chunk_info *info);

/* Generates the next chunk of several streams. Their samplers advance in lockstep, so that each
 * DiT pass of the chunk (every denoising step, then the context pass) runs as one batched
 * forward over all the streams (up to max_batch at a time; larger sets run in groups); the
 * prompt preparation, a pending recache and the decoding run per stream. Every stream's frames,
 * noise and cache are exactly those fb_stream_next_chunk would give it. The ms_* timings of a
 * shared pass are its wall time, reported to each stream in it. out_rgb[i] receives stream i's
 * frames (out_size bytes each), n_frames[i] their count, info[i] (info may be NULL) its chunk
 * info and status[i] its own result; one stream's failure (a bad buffer, a failed stream)
 * leaves the others to finish. The return value is FB_OK when all succeeded, else the first
 * error; FB_E_INVALID without touching any stream when the arrays are NULL, n < 0, or the
 * streams are not distinct streams of one model. One shared execution context runs the whole
 * call. */
fb_status fb_streams_next_chunk(fb_stream *const *streams, int n, uint8_t *const *out_rgb,
                                size_t out_size, int *n_frames, fb_chunk_info *info,
                                fb_status *status);

typedef enum fb_transition {
    FB_TRANSITION_CUT = 0,     /* the new conditioning applies from the next chunk */
    FB_TRANSITION_RECACHE = 1, /* also re-run the window frames at t=0 under the new prompt so
                                * the self-attention cache agrees with it (LongLive) */
    FB_TRANSITION_BLEND = 2,   /* interpolate the text-encoder output over blend_chunks chunks */
} fb_transition;

/* Changes the prompt from the next chunk on. The prompt is tokenized now (errors are
 * returned here and leave the stream unchanged); the encoder runs with the next chunk. A
 * second call before that chunk replaces the first. blend_chunks is used by
 * FB_TRANSITION_BLEND (1..1000): chunk j = 1..N-1 after the switch is conditioned on
 * old + (j/N) (new - old) of the encoder outputs, chunk N and later on new. */
fb_status fb_stream_set_prompt(fb_stream *s, const char *prompt, fb_transition transition,
                               int blend_chunks);

/* New noise seed from the next chunk on (the chunk counter continues). */
fb_status fb_stream_set_seed(fb_stream *s, uint64_t seed);

/* Makes the newest frames the anchor: the newest anchor_frames cached frames are copied into
 * the anchor slots (the window keeps them until they roll out) and generated frames no longer
 * fill anchor slots until a reset. FB_E_STATE before the first chunk, while the window is
 * still empty (the anchors are the newest frames already), or for a model without anchors. */
fb_status fb_stream_pin_anchor(fb_stream *s);

/* Encodes an RGB24 image (exactly width x height of the model's frames, rows `stride` bytes
 * apart) with the TAEHV encoder (as a still clip: one anchor latent per group of frames the
 * encoder folds into a latent) and writes the latents' K/V into the anchor slots with a context
 * pass under the prompt in effect. The window is emptied, the anchors are locked, and the
 * chunk and frame counters do not move. Takes effect for the next chunk. FB_E_INVALID for a
 * wrong size or stride; FB_E_STATE when the model has no anchor slots or no encoder. */
fb_status fb_stream_set_anchor_image(fb_stream *s, const uint8_t *rgb, int width, int height,
                                     size_t stride);

/* Starts the stream over: empty cache, fresh decoder, chunk 0, frame numbers from 0. The
 * seed is kept, and the latest prompt: a pending one applies as a cut, a running blend jumps to
 * its target. Also clears a failed state. */
fb_status fb_stream_reset(fb_stream *s);

/* Latent frames generated since open/reset, and the chunk index the next call produces. */
int64_t fb_stream_chunk_index(const fb_stream *s);

#ifdef __cplusplus
}
#endif

#endif
