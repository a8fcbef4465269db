/* engine/sampler.c - flow-matching schedule and per-chunk state machine (see sampler.h). */
#include "engine/sampler.h"

#include <math.h>
#include <stdio.h>

#include "engine/rng.h"

/* s_i of linspace(1, 0, T+1) in float32, computed the way torch.linspace's scalar path does
 * (start + step*i on the first half, end - step*(T-i) on the second), so that the table
 * matches the reference's float32 table at least at the warped points. */
static float table_s(int T, int i)
{
    float step = (0.0f - 1.0f) / (float)T;
    int halfway = (T + 1) / 2;
    if (i < halfway)
        return 1.0f + step * (float)i;
    return 0.0f - step * (float)(T - i);
}

float fb_schedule_table_sigma(const fb_sampler_config *cfg, int i)
{
    float s = table_s(cfg->num_train_timesteps, i);
    float shift = cfg->shift;
    float num = shift * s;
    float den = 1.0f + (shift - 1.0f) * s;
    return num / den;
}

float fb_schedule_table_timestep(const fb_sampler_config *cfg, int i)
{
    return fb_schedule_table_sigma(cfg, i) * (float)cfg->num_train_timesteps;
}

float fb_schedule_sigma_of(const fb_sampler_config *cfg, float t)
{
    int T = cfg->num_train_timesteps;
    int best = 0;
    double best_d = INFINITY;
    for (int i = 0; i < T; i++) {
        double d = fabs((double)fb_schedule_table_timestep(cfg, i) - (double)t);
        if (d < best_d) {
            best_d = d;
            best = i;
        }
    }
    /* t = 0 is below the table (whose last entry is T*sigma(1/T) > 0): the clean pass. */
    if (t <= 0.0f)
        return 0.0f;
    return fb_schedule_table_sigma(cfg, best);
}

int fb_schedule_init(fb_schedule *s, const fb_sampler_config *cfg, char *err, size_t err_size)
{
    int T = cfg->num_train_timesteps;
    if (cfg->n_steps < 1 || cfg->n_steps > FB_CFG_MAX_STEPS || T < 2) {
        snprintf(err, err_size, "sampler: need 1 to %d steps and num_train_timesteps >= 2",
                 FB_CFG_MAX_STEPS);
        return -1;
    }
    s->n_steps = cfg->n_steps;
    for (int k = 0; k < cfg->n_steps; k++) {
        float t = cfg->steps[k];
        if (cfg->warp) {
            /* warp_denoising_step: timesteps[T - t_k], with t_k = 0 mapping to 0. */
            int idx = T - (int)t;
            if (idx < 0 || idx > T || (float)(int)t != t) {
                snprintf(err, err_size, "sampler.steps[%d]: %g is not an index of the %d-step "
                         "table", k, (double)t, T);
                return -1;
            }
            t = idx == T ? 0.0f : fb_schedule_table_timestep(cfg, idx);
        }
        s->timesteps[k] = t;
        s->sigmas[k] = fb_schedule_sigma_of(cfg, t);
    }
    s->context_t = cfg->context_t;
    s->context_sigma = fb_schedule_sigma_of(cfg, cfg->context_t);
    if (!(cfg->guidance >= 1.0f && cfg->guidance <= 20.0f)) {
        snprintf(err, err_size, "sampler.guidance: must be in [1, 20] (1 = off), got %g",
                 (double)cfg->guidance);
        return -1;
    }
    s->guidance = cfg->guidance;
    return 0;
}

void fb_flow_to_x0(float *x0, const float *x, const float *v, float sigma, size_t n)
{
    double sg = (double)sigma;
    for (size_t i = 0; i < n; i++)
        x0[i] = (float)((double)x[i] - sg * (double)v[i]);
}

void fb_renoise(float *x, const float *x0, const float *eps, float sigma, size_t n)
{
    /* The reference evaluates (1 - sigma) * x0 + sigma * eps in float32 tensor ops: each
     * product and the sum are rounded separately (no fused multiply-add). */
    const float a = 1.0f - sigma;
    for (size_t i = 0; i < n; i++) {
        volatile float p = a * x0[i];   /* volatile: keep the rounding of each product */
        volatile float q = sigma * eps[i];
        x[i] = p + q;
    }
}

void fb_cfg_combine(float *out, const float *v_c, const float *v_u, float g, size_t n)
{
    /* The reference computes flow_u + g * (flow_c - flow_u) as three float32 tensor ops; the
     * volatiles keep each rounding (no fused multiply-add, no reassociation). */
    for (size_t i = 0; i < n; i++) {
        volatile float d = v_c[i] - v_u[i];
        volatile float p = g * d;
        out[i] = v_u[i] + p;
    }
}

void fb_noise_counter(void *ctx, uint64_t seed, uint64_t chunk, unsigned draw, float *out,
                      size_t n)
{
    (void)ctx;
    fb_rng_normal(seed, chunk, draw, out, n);
}

void fb_chunk_sampler_begin(fb_chunk_sampler *cs, const fb_schedule *sched, uint64_t seed,
                            uint64_t chunk, float *x, float *x0, float *v, float *v_u, size_t n,
                            fb_noise_fn noise, void *noise_ctx)
{
    cs->sched = sched;
    cs->noise = noise ? noise : fb_noise_counter;
    cs->noise_ctx = noise_ctx;
    cs->seed = seed;
    cs->chunk = chunk;
    cs->n = n;
    cs->x = x;
    cs->x0 = x0;
    cs->v = v;
    cs->v_u = sched->guidance != 1.0f ? v_u : NULL;
    cs->step = 0;
    cs->uncond = 0;
    cs->noise(cs->noise_ctx, seed, chunk, 0, x, n);
}

fb_call_kind fb_chunk_sampler_next(const fb_chunk_sampler *cs, float *t, const float **input)
{
    const fb_schedule *s = cs->sched;
    if (cs->step < s->n_steps) {
        *t = s->timesteps[cs->step];
        *input = cs->x;
        return cs->uncond ? FB_CALL_UNCOND : FB_CALL_DENOISE;
    }
    if (cs->step == s->n_steps) {
        *t = s->context_t;
        /* With context_t > 0 the context input was re-noised into x by advance(). */
        *input = s->context_t > 0.0f ? cs->x : cs->x0;
        return FB_CALL_CONTEXT;
    }
    *t = 0.0f;
    *input = NULL;
    return FB_CALL_DONE;
}

void fb_chunk_sampler_advance(fb_chunk_sampler *cs)
{
    const fb_schedule *s = cs->sched;
    int k = cs->step;
    if (k < s->n_steps && s->guidance != 1.0f) {
        if (!cs->uncond) {
            /* the conditional flow is in v; the same step's unconditional call comes next */
            cs->uncond = 1;
            return;
        }
        cs->uncond = 0;
        fb_cfg_combine(cs->v, cs->v, cs->v_u, s->guidance, cs->n);
    }
    if (k < s->n_steps) {
        fb_flow_to_x0(cs->x0, cs->x, cs->v, s->sigmas[k], cs->n);
        if (k + 1 < s->n_steps) {
            /* Fresh noise for step k+1 straight into x, then mix in place. */
            cs->noise(cs->noise_ctx, cs->seed, cs->chunk, (unsigned)(k + 1), cs->x, cs->n);
            fb_renoise(cs->x, cs->x0, cs->x, s->sigmas[k + 1], cs->n);
        } else if (s->context_t > 0.0f) {
            /* Context pass at a small noise level (upstream context_noise > 0). */
            cs->noise(cs->noise_ctx, cs->seed, cs->chunk, (unsigned)s->n_steps, cs->x, cs->n);
            fb_renoise(cs->x, cs->x0, cs->x, s->context_sigma, cs->n);
        }
    }
    if (k <= s->n_steps)
        cs->step = k + 1;
}
