/* engine/engine_internal.h - the model and stream structures behind engine.h, shared by
 * engine.c (model: loading, queries) and engine_stream.c (streams: the chunk loop and the
 * transitions). Not a public header.
 *
 * Thread-safety: as engine.h: fb_model is read-only after load except for its internally
 * locked parts (prompt cache, KV pool); a stream is touched by one thread at a time.
 */
#ifndef FLIPBOOK_ENGINE_ENGINE_INTERNAL_H
#define FLIPBOOK_ENGINE_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/config.h"
#include "engine/dit.h"
#include "engine/engine.h"
#include "engine/prompt_cache.h"
#include "engine/safetensors.h"
#include "engine/sampler.h"
#include "engine/taehv.h"
#include "engine/t5.h"
#include "engine/tokenizer.h"
#include "kernels/kernels.h"
#include "kvcache/kvcache.h"

#define FB_ERR_MAX 512
/* Prompts longer than this (in bytes) are refused before tokenizing. */
#define FB_PROMPT_MAX_BYTES 16384
/* Defaults and bounds of the execution contexts (fb_model_params). */
#define FB_DEFAULT_MAX_BATCH 8
#define FB_MAX_PARALLEL_CALLS 256

/* One of the model's shared execution contexts: kernel threads and the scratch of a batched
 * DiT pass. Checked out by one call at a time (fb__exec_acquire). */
typedef struct fb__exec {
    fb_kctx *kc;
    void *batch_scratch;        /* NULL when max_batch is 1 */
    size_t batch_scratch_bytes;
    int busy;                   /* guarded by fb_model.exec_mu */
} fb__exec;

struct fb_model {
    fb_config cfg;
    char path[4096];
    fb_model_params params;
    fb_safetensors *st;         /* kept mapped: the modules may point into it */
    const char *prompts_json;   /* flipbook.prompts metadata when it is a string array */
    fb_dit *dit;
    fb_t5 *t5;
    fb_tokenizer *tok;
    fb_taehv *vae;
    fb_schedule sched;
    fb_kvpool *pool;
    fb_prompt_cache *prompts;
    int n_threads;

    /* shared execution contexts (engine.h "Compute") */
    fb__exec *exec;
    int n_exec;
    int exec_threads;           /* threads of each (n_threads resolved) */
    int max_batch;
    int exec_sync;              /* exec_mu and exec_cv are initialised */
    pthread_mutex_t exec_mu;
    pthread_cond_t exec_cv;     /* signalled when a context is returned */

    /* derived sizes */
    int tpf;                    /* tokens per latent frame */
    int C, H, W;                /* latent channels and size */
    size_t lat_floats;          /* C * H * W: one latent frame */
    int F;                      /* latent frames per chunk */
    int A, Wn;                  /* anchor and window frames */
    int width, height;          /* decoded frame size */
    size_t frame_bytes;
    int max_chunk_frames;       /* pixel frames of a full chunk */
    int recache_frames;         /* most frames a recache or anchor pass runs at once */
    size_t kv_bytes_per_stream;
    size_t stream_bytes;        /* arena bytes of one stream (computed at load) */
    size_t weight_bytes;
};

/* For tests and debugging: called after every DiT call of a chunk with what went in and out.
 * step: 0..K-1 denoising, K the context pass, -1 a recache pass (before the chunk). Latents
 * are [n_frames, C, H, W]. x0 is NULL for denoising calls (it is x_in - sigma * flow, see
 * sampler.h); the context pass's input is x0. With guidance a denoising step is reported once,
 * after its second (unconditional) call: flow is the combined flow, flow_c and flow_u the two
 * calls' outputs (both NULL without guidance and for other calls). */
typedef struct fb__step_event {
    int64_t chunk;
    int step;
    float t;
    const float *x_in, *flow, *x0;
    int n_frames;
    const fb_kv_plan *plan;
    const float *ctx;           /* the conditioning in effect [text_len, text_dim] */
    const float *flow_c, *flow_u;
} fb__step_event;
typedef void (*fb__observer_fn)(void *ctx, const fb__step_event *ev);
/* The state of an interpolation between two conditionings (FB_TRANSITION_BLEND). */
typedef struct blend_state {
    int active;
    int done, total;            /* chunks blended so far / over how many */
} blend_state;

struct fb_stream {
    fb_model *m;
    fb_kctx *kc;                /* the context of the call in progress (NULL between calls) */
    fb_kctx *own_kc;            /* fb_stream_params.own_threads: the stream's own threads */
    fb_kvcache *kv;
    fb_kv_plan plan;            /* the current chunk's plan (32 KB: kept here, not on stacks) */
    fb_kv_plan aux;             /* recache / anchor plan */
    fb_taehv_stream *dec;       /* streaming decoder memory */
    fb_taehv_enc *enc;          /* image encoder memory (made on first use) */
    void *enc_scratch;
    size_t enc_scratch_bytes;

    /* One arena for everything a chunk touches, carved at open. */
    void *arena;
    size_t arena_bytes;
    float *x, *x0, *v;          /* chunk latents [F, C, H, W] */
    float *v_u;                 /* guidance: the unconditional flow [F, C, H, W] (else NULL) */
    float *x_dit, *y_dit;       /* DiT input/output staging [C, n, H, W], n <= recache_frames */
    float *lat_gather;          /* latents of a recache or anchor pass [n, C, H, W] */
    float *lat_ring;            /* clean latents of the newest frames [ring, C, H, W] */
    int64_t *lat_tag;           /* absolute frame index held by each ring slot (-1 empty) */
    int ring;                   /* ring slots */
    float *ctx;                 /* conditioning in effect [text_len, text_dim] */
    float *ctx_from, *ctx_to;   /* endpoints of a running blend */
    float *ctx_new;             /* encoder output of a prompt being applied */
    float *ctx_tmp;             /* the candidate conditioning of the next chunk */
    float *rgbf;                /* decoded frames [max_chunk_frames, 3, height, width] */
    void *dit_scratch;
    size_t dit_scratch_bytes;
    void *t5_scratch;
    size_t t5_scratch_bytes;
    void *dec_scratch;
    size_t dec_scratch_bytes;

    fb_dit_text *text;          /* prepared conditioning for ctx, placed in the arena */
    void *text_mem;
    fb_dit_text *text_u;        /* guidance: the empty prompt's, prepared once at open (else
                                 * NULL); transitions never touch it */
    void *text_u_mem;

    /* the chunk in progress (between chunk_begin and chunk_finish) */
    fb_chunk_sampler cs;
    double chunk_t0;            /* its start (ms) */
    double chunk_flops;         /* FLOPs of one of its DiT passes */

    /* prompt */
    int32_t *ids;               /* tokens of the prompt in effect (or pending) */
    int n_ids;
    int32_t *pending_ids;       /* tokens of a prompt set but not yet applied */
    int n_pending_ids;
    int has_pending;
    fb_transition pending_tr;
    int pending_blend;
    int need_text;              /* ctx must be encoded from ids before the next chunk */
    int text_stale;             /* the DiT's prepared prompt does not reflect ctx yet */
    blend_state blend;

    uint64_t seed;
    int64_t chunk;              /* chunks since open/reset (the RNG counter) */
    int64_t frames_out;         /* pixel frames emitted since open/reset */
    int failed;                 /* a backend failure left the cache undefined */
    fb_noise_fn noise;          /* tests may inject recorded noise */
    void *noise_ctx;
    fb__observer_fn observer;
    void *observer_ctx;
    char fail_reason[FB_ERR_MAX];
    char err[FB_ERR_MAX];
};

/* Writes the stream's message and returns st. */
fb_status fb__stream_fail(fb_stream *s, fb_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Checks out a free shared execution context, waiting while all are busy; returns it to the
 * pool (and wakes a waiter). */
fb__exec *fb__exec_acquire(fb_model *m);
void fb__exec_release(fb_model *m, fb__exec *e);

/* Bytes of one stream's arena (engine_stream.c lays it out; the model reports it). */
size_t fb__stream_arena_bytes(const fb_model *m);

/* Tokenizes a prompt with the model's rules (clean text, EOS, cut at max_tokens). On success
 * *ids is a malloc'd array of *n ids. Errors: FB_E_INVALID (NULL, blank, too many bytes),
 * FB_E_NO_MEMORY. */
fb_status fb__tokenize(const fb_model *m, const char *prompt, int32_t **ids, int *n, char *err,
                       size_t err_size);

/* For tests: replace the noise source of a stream (NULL restores the counter RNG). */
void fb__stream_set_noise(fb_stream *s, fb_noise_fn fn, void *ctx);

void fb__stream_set_observer(fb_stream *s, fb__observer_fn fn, void *ctx);
/* The clean latents of the last chunk [F, C, H, W]. */
const float *fb__stream_last_latents(const fb_stream *s);

#endif
