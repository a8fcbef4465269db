/* engine/sampler.h - flow-matching few-step sampler: the schedule and the per-chunk loop.
 *
 * Schedule (shared/specs/wan_causal.md 5.1): a table of T = num_train_timesteps shifted
 * sigmas, sigma_i = shift*s_i / (1 + (shift-1)*s_i) with s_i = 1 - i/T, and timesteps
 * T*sigma_i. With `warp`, step t_k of the configured list is fed to the model as
 * timesteps[T - t_k]; without it, t_k is fed as written. The sigma used for a timestep is
 * that of the nearest table entry (argmin), exactly as the reference looks it up.
 *
 * Per chunk (5.2): x = noise(draw 0); for each step k: v = DiT(x, t_k); x0 = x - sigma_k v
 * (in double, stored as float); if k < K-1: x = (1 - sigma_{k+1}) x0 + sigma_{k+1} eps_{k+1}
 * (in float, noise draw k+1); finally one context pass DiT(x0, context_t) whose K/V the cache
 * keeps. The chunk's output is x0.
 *
 * Classifier-free guidance (sampler.guidance g != 1): each denoising step takes two DiT calls
 * on the same x, t and cache (read only): v_c under the stream's prompt (FB_CALL_DENOISE),
 * then v_u under the empty prompt "" (FB_CALL_UNCOND), and v = v_u + g (v_c - v_u) in float
 * before x0 is formed. The context pass stays one conditional call. With g == 1 the UNCOND
 * call is never asked for and the loop is exactly the one above.
 *
 * The loop is written as a small state machine (fb_chunk_sampler) instead of a function that
 * calls the DiT: the caller asks which DiT call comes next, runs it (alone, or batched with
 * the calls of other streams whose shapes match) and feeds the flow back. That keeps the
 * sampler independent of the model and lets one forward pass serve several streams.
 *
 * Thread-safety: a schedule is immutable after init; a chunk sampler belongs to one stream.
 */
#ifndef FLIPBOOK_ENGINE_SAMPLER_H
#define FLIPBOOK_ENGINE_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "engine/config.h"

typedef struct fb_schedule {
    int n_steps;
    float timesteps[FB_CFG_MAX_STEPS]; /* values fed to the model, e.g. 1000 937.5 833.33 625 */
    float sigmas[FB_CFG_MAX_STEPS];    /* noise level of each step's input */
    float context_t;                   /* timestep of the context pass */
    float context_sigma;               /* its sigma (0 for the usual clean pass) */
    float guidance;                    /* classifier-free guidance scale; 1 = off */
} fb_schedule;

/* Builds the schedule. Returns 0, or -1 with a message (only for configs that bypassed
 * fb_config_validate, e.g. guidance outside [1, 20]). */
int fb_schedule_init(fb_schedule *s, const fb_sampler_config *cfg, char *err, size_t err_size);

/* Entry i (0 <= i < T) of the shifted timestep table, and its sigma (float32 as the
 * reference computes them). */
float fb_schedule_table_sigma(const fb_sampler_config *cfg, int i);
float fb_schedule_table_timestep(const fb_sampler_config *cfg, int i);
/* Sigma of the table entry nearest to timestep t (argmin |timestep_i - t|, first on ties). */
float fb_schedule_sigma_of(const fb_sampler_config *cfg, float t);

/* x0 = x - sigma * v, element-wise in double, rounded to float. x0 may alias x or v. */
void fb_flow_to_x0(float *x0, const float *x, const float *v, float sigma, size_t n);
/* x = (1 - sigma) * x0 + sigma * eps, in float with each operation rounded as the reference
 * does. x may alias eps. */
void fb_renoise(float *x, const float *x0, const float *eps, float sigma, size_t n);

/* Classifier-free guidance: out = v_u + g * (v_c - v_u), element-wise in float with each
 * operation rounded as the reference's tensor arithmetic does. out may alias v_c or v_u. */
void fb_cfg_combine(float *out, const float *v_c, const float *v_u, float g, size_t n);

/* Where the noise comes from: by default the counter RNG of engine/rng.h keyed by (seed,
 * chunk, draw); tests inject recorded noise instead. */
typedef void (*fb_noise_fn)(void *ctx, uint64_t seed, uint64_t chunk, unsigned draw, float *out,
                            size_t n);
void fb_noise_counter(void *ctx, uint64_t seed, uint64_t chunk, unsigned draw, float *out,
                      size_t n);

typedef enum {
    FB_CALL_DENOISE = 0, /* DiT at timesteps[step] on x; self-attention reads the cache only */
    FB_CALL_CONTEXT = 1, /* DiT at context_t on x0; its K/V are committed to the cache */
    FB_CALL_DONE = 2,    /* x0 holds the chunk's clean latents */
    FB_CALL_UNCOND = 3,  /* guidance only: DiT at timesteps[step] on x under the empty prompt,
                          * right after that step's FB_CALL_DENOISE; flow into v_u */
} fb_call_kind;

/* One chunk in flight. The buffers are owned by the caller (the stream's arena) and hold n
 * floats each, layout [F, C, H, W]. */
typedef struct fb_chunk_sampler {
    const fb_schedule *sched;
    fb_noise_fn noise;
    void *noise_ctx;
    uint64_t seed, chunk;
    size_t n;
    float *x;    /* input of the current call */
    float *x0;   /* latest clean estimate */
    float *v;    /* where the caller writes the DiT output (flow); after a guided step's
                  * advance it holds the combined flow */
    float *v_u;  /* where the caller writes the flow of an FB_CALL_UNCOND call (NULL when the
                  * schedule's guidance is 1) */
    int step;    /* 0..n_steps-1: denoising step; n_steps: context pass; n_steps+1: done */
    int uncond;  /* guidance: the current step's conditional call is done, UNCOND is next */
} fb_chunk_sampler;

/* Starts a chunk: x = noise draw 0. v_u is needed (n floats) when sched->guidance != 1 and
 * ignored otherwise. */
void fb_chunk_sampler_begin(fb_chunk_sampler *cs, const fb_schedule *sched, uint64_t seed,
                            uint64_t chunk, float *x, float *x0, float *v, float *v_u, size_t n,
                            fb_noise_fn noise, void *noise_ctx);

/* The next DiT call: its kind, timestep and input (x for denoising and uncond calls, x0 for
 * the context pass). The caller writes the flow into cs->v for denoising calls and into
 * cs->v_u for uncond calls (context passes may skip the output), then calls
 * fb_chunk_sampler_advance(). */
fb_call_kind fb_chunk_sampler_next(const fb_chunk_sampler *cs, float *t, const float **input);
void fb_chunk_sampler_advance(fb_chunk_sampler *cs);

#endif
