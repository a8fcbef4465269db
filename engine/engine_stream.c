/* engine/engine_stream.c - streams: open/free, the chunk loop, prompt transitions, anchors.
 *
 * One chunk (fb_stream_next_chunk):
 *   1. apply a pending prompt (cut / recache / start a blend) or advance a running blend: the
 *      text-encoder output (from the model's prompt cache, or a fresh encode) becomes the
 *      stream's conditioning and the DiT prepares its cross-attention K/V;
 *      recache re-runs the window's clean latents at t = context_t under the new prompt;
 *   2. plan the chunk against the KV cache (kvcache/kvcache.h: past frames, positions, slots);
 *   3. the sampler's state machine drives K denoising DiT calls and the context pass, which
 *      writes the chunk's K/V; commit makes them visible;
 *   4. the clean latents go into a small ring (the input of a later recache);
 *   5. the decoder turns each latent frame into RGB frames.
 * Every buffer of that path was carved from the stream's arena at open; a chunk allocates
 * nothing (prompt changes do: encoder output into the LRU, the DiT's prepared prompt).
 *
 * Failure discipline: everything that can fail for a caller's reason is checked before any
 * state changes. A DiT or decoder failure in the middle of a chunk leaves the cache undefined,
 * so the stream is marked failed and only reset/free are accepted (engine.h table).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine_internal.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

fb_status fb__stream_fail(fb_stream *s, fb_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
    return st;
}

const char *fb_stream_errmsg(const fb_stream *s)
{
    return s ? s->err : "stream is NULL";
}

int64_t fb_stream_chunk_index(const fb_stream *s)
{
    return s ? s->chunk : 0;
}

void fb__stream_set_noise(fb_stream *s, fb_noise_fn fn, void *ctx)
{
    s->noise = fn ? fn : fb_noise_counter;
    s->noise_ctx = fn ? ctx : NULL;
}

void fb__stream_set_observer(fb_stream *s, fb__observer_fn fn, void *ctx)
{
    s->observer = fn;
    s->observer_ctx = ctx;
}

const float *fb__stream_last_latents(const fb_stream *s)
{
    return s->x0;
}

/* ---- arena ------------------------------------------------------------------------------ */

typedef struct carver {
    char *base;
    size_t off, size;
} carver;

static void *carve(carver *c, size_t bytes)
{
    size_t b = (bytes + 63) & ~(size_t)63;
    if (c->off + b > c->size)
        return NULL;
    void *p = c->base ? c->base + c->off : NULL;
    c->off += b;
    return p;
}

/* Lays out the arena (twice: once to size it, once to carve it). Mirrors the sizes that
 * fb_model_load reports as stream_bytes. */
static size_t stream_layout(fb_stream *s, char *base, size_t size)
{
    const fb_model *m = s->m;
    const fb_config *c = &m->cfg;
    carver cv = {base, 0, base ? size : (size_t)-1};
    size_t chunk = (size_t)m->F * m->lat_floats * sizeof(float);
    size_t big = (size_t)m->recache_frames * m->lat_floats * sizeof(float);
    size_t ctxb = (size_t)c->dit.text_len * c->dit.text_dim * sizeof(float);
    s->ring = m->Wn + m->F + m->A;
    s->x = carve(&cv, chunk);
    s->x0 = carve(&cv, chunk);
    s->v = carve(&cv, chunk);
    s->x_dit = carve(&cv, big);
    s->y_dit = carve(&cv, big);
    s->lat_gather = carve(&cv, big);
    s->lat_ring = carve(&cv, (size_t)s->ring * m->lat_floats * sizeof(float));
    s->lat_tag = carve(&cv, (size_t)s->ring * sizeof(int64_t));
    s->ctx = carve(&cv, ctxb);
    s->ctx_from = carve(&cv, ctxb);
    s->ctx_to = carve(&cv, ctxb);
    s->ctx_new = carve(&cv, ctxb);
    s->ctx_tmp = carve(&cv, ctxb);
    s->rgbf = carve(&cv, (size_t)m->max_chunk_frames * 3 * m->width * m->height * sizeof(float));
    s->dit_scratch_bytes = fb_dit_scratch_bytes(&c->dit, m->recache_frames, m->A + m->Wn, m->tpf);
    s->dit_scratch = carve(&cv, s->dit_scratch_bytes);
    s->t5_scratch_bytes = fb_t5_scratch_bytes(m->t5, c->text.max_tokens);
    s->t5_scratch = carve(&cv, s->t5_scratch_bytes);
    s->dec_scratch_bytes = fb_taehv_decode_scratch_bytes(m->vae, m->H, m->W);
    s->dec_scratch = carve(&cv, s->dec_scratch_bytes);
    return cv.off;
}

static void ring_clear(fb_stream *s)
{
    for (int i = 0; i < s->ring; i++)
        s->lat_tag[i] = -1;
}

static void ring_put(fb_stream *s, int64_t frame, const float *lat)
{
    int slot = (int)(frame % s->ring);
    memcpy(s->lat_ring + (size_t)slot * s->m->lat_floats, lat, s->m->lat_floats * sizeof(float));
    s->lat_tag[slot] = frame;
}

static const float *ring_get(const fb_stream *s, int64_t frame)
{
    if (frame < 0)
        return NULL;
    int slot = (int)(frame % s->ring);
    return s->lat_tag[slot] == frame ? s->lat_ring + (size_t)slot * s->m->lat_floats : NULL;
}

/* [F, C, H, W] <-> [C, F, H, W] (the sampler and decoder work per frame; the DiT takes Wan's
 * channel-first layout). */
static void fchw_to_cfhw(const float *src, float *dst, int F, int C, size_t hw)
{
    for (int f = 0; f < F; f++)
        for (int c = 0; c < C; c++)
            memcpy(dst + ((size_t)c * F + f) * hw, src + ((size_t)f * C + c) * hw,
                   hw * sizeof(float));
}

static void cfhw_to_fchw(const float *src, float *dst, int F, int C, size_t hw)
{
    for (int f = 0; f < F; f++)
        for (int c = 0; c < C; c++)
            memcpy(dst + ((size_t)f * C + c) * hw, src + ((size_t)c * F + f) * hw,
                   hw * sizeof(float));
}

/* ---- open / free ------------------------------------------------------------------------ */

void fb_stream_free(fb_stream *s)
{
    if (!s)
        return;
    fb_taehv_stream_free(s->dec);
    fb_taehv_enc_free(s->enc);
    free(s->enc_scratch);
    fb_dit_text_free(s->text);
    fb_kvcache_close(s->kv);
    fb_kctx_free(s->kc);
    free(s->arena);
    free(s->ids);
    free(s->pending_ids);
    free(s);
}

fb_status fb_stream_open(fb_model *m, const char *prompt, uint64_t seed, fb_stream **out,
                         char *err, size_t err_size)
{
    char tmp[FB_ERR_MAX];
    if (err && err_size)
        err[0] = '\0';
#define OPEN_FAIL(st, ...)                                    \
    do {                                                      \
        if (err && err_size)                                  \
            snprintf(err, err_size, __VA_ARGS__);             \
        fb_stream_free(s);                                    \
        return (st);                                          \
    } while (0)
    fb_stream *s = NULL;
    if (!out)
        OPEN_FAIL(FB_E_INVALID, "fb_stream_open: out is NULL");
    *out = NULL;
    if (!m)
        OPEN_FAIL(FB_E_INVALID, "fb_stream_open: model is NULL");
    s = calloc(1, sizeof *s);
    if (!s)
        OPEN_FAIL(FB_E_NO_MEMORY, "out of memory");
    s->m = m;
    s->seed = seed;
    s->noise = fb_noise_counter;
    fb_status st = fb__tokenize(m, prompt, &s->ids, &s->n_ids, tmp, sizeof tmp);
    if (st != FB_OK)
        OPEN_FAIL(st, "%s", tmp);
    s->need_text = 1;

    const fb_config *c = &m->cfg;
    int rc = fb_kvcache_open(m->pool, c->dit.num_layers, m->A, m->Wn, m->tpf, c->dit.dim,
                             &s->kv, tmp, sizeof tmp);
    if (rc == FB_KV_ERR_BUDGET) {
        fb_model_info info;
        fb_model_get_info(m, &info);
        OPEN_FAIL(FB_E_NO_KV, "no room for another stream: the KV pool (%.1f MiB) holds %d "
                  "stream(s) of %.1f MiB each and all are open; close one or load the model "
                  "with a larger kv_budget_bytes (%s)", (double)info.kv_pool_bytes / 1048576.0,
                  info.max_streams, (double)m->kv_bytes_per_stream / 1048576.0, tmp);
    }
    if (rc != 0)
        OPEN_FAIL(rc == FB_KV_ERR_NOMEM ? FB_E_NO_MEMORY : FB_E_INTERNAL, "KV cache: %s", tmp);

    if (fb_kctx_init(&s->kc, m->n_threads, tmp, sizeof tmp) != 0)
        OPEN_FAIL(FB_E_NO_MEMORY, "compute threads: %s", tmp);

    s->arena_bytes = stream_layout(s, NULL, 0);
    s->arena = aligned_alloc(64, s->arena_bytes);
    if (!s->arena)
        OPEN_FAIL(FB_E_NO_MEMORY, "out of memory: a stream needs %.1f MiB of working memory",
                  (double)s->arena_bytes / 1048576.0);
    memset(s->arena, 0, s->arena_bytes);   /* commit the pages now, not mid-chunk */
    stream_layout(s, s->arena, s->arena_bytes);
    ring_clear(s);

    if (fb_taehv_stream_init(m->vae, m->H, m->W, &s->dec, tmp, sizeof tmp) != 0)
        OPEN_FAIL(FB_E_NO_MEMORY, "decoder state: %s", tmp);
    *out = s;
    return FB_OK;
#undef OPEN_FAIL
}

/* ---- text ------------------------------------------------------------------------------- */

/* Encoder output for ids into dst [text_len, text_dim] (zero rows after the tokens), through
 * the model's LRU. */
static fb_status encode_ids(fb_stream *s, const int32_t *ids, int n, float *dst,
                            double *ms_text)
{
    const fb_model *m = s->m;
    const fb_config *c = &m->cfg;
    size_t row = (size_t)c->dit.text_dim;
    size_t total = (size_t)c->dit.text_len * row;
    int rows = 0;
    if (fb_prompt_cache_get(m->prompts, ids, n, dst, total, &rows) && rows == n) {
        memset(dst + (size_t)rows * row, 0, (total - (size_t)rows * row) * sizeof(float));
        return FB_OK;
    }
    double t0 = now_ms();
    fb_t5_call call = {.ids = ids, .n_ids = n, .out = dst, .out_rows = c->dit.text_len};
    char tmp[FB_ERR_MAX];
    if (fb_t5_encode(m->t5, s->kc, s->t5_scratch, s->t5_scratch_bytes, &call, tmp,
                     sizeof tmp) != 0)
        return fb__stream_fail(s, FB_E_BACKEND, "text encoder: %s", tmp);
    *ms_text += now_ms() - t0;
    /* Not caching is harmless: the next use encodes again. */
    (void)fb_prompt_cache_put(m->prompts, ids, n, dst, n, (int)row);
    return FB_OK;
}

/* Prepares the DiT's view of ctx (text embedding + cross K/V) and swaps it in. */
static fb_status prepare_text(fb_stream *s, const float *ctx)
{
    fb_dit_text *t = NULL;
    char tmp[FB_ERR_MAX];
    int rc = fb_dit_text_prepare(s->m->dit, s->kc, ctx, s->m->cfg.dit.text_len, NULL, &t, tmp,
                                 sizeof tmp);
    if (rc != 0)
        return fb__stream_fail(s, rc == FB_DIT_ERR_NOMEM ? FB_E_NO_MEMORY : FB_E_BACKEND,
                               "preparing the prompt: %s", tmp);
    fb_dit_text_free(s->text);
    s->text = t;
    return FB_OK;
}

static size_t ctx_floats(const fb_stream *s)
{
    return (size_t)s->m->cfg.dit.text_len * s->m->cfg.dit.text_dim;
}

/* ctx = from + a * (to - from) in float32, each operation rounded as the reference's tensor
 * arithmetic does (volatile keeps the compiler from fusing them). */
static void blend_into(float *ctx, const float *from, const float *to, float a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        volatile float d = to[i] - from[i];
        volatile float p = a * d;
        ctx[i] = from[i] + p;
    }
}

/* Step 1 of a chunk: the conditioning this chunk uses. Computes the candidate into ctx_tmp,
 * has the DiT prepare it, and only then commits, so that a failure leaves the prompt state as
 * it was (a pending prompt stays pending, a blend does not skip a step). */
static fb_status apply_text(fb_stream *s, fb_chunk_info *info, int *do_recache)
{
    fb_status st;
    size_t n = ctx_floats(s);
    *do_recache = 0;
    if (s->need_text) {
        /* The stream's own prompt was never encoded (first chunk, or a prompt given before
         * it); encoding it is idempotent, so it may be committed at once. */
        st = encode_ids(s, s->ids, s->n_ids, s->ctx, &info->ms_text);
        if (st != FB_OK)
            return st;
        s->need_text = 0;
        s->text_stale = 1;
    }
    int was_blending = s->blend.active;
    int pend = s->has_pending;
    int start_blend = pend && s->pending_tr == FB_TRANSITION_BLEND;
    if (pend) {
        st = encode_ids(s, s->pending_ids, s->n_pending_ids, s->ctx_new, &info->ms_text);
        if (st != FB_OK)
            return st;
    }
    blend_state nb = s->blend;
    const float *from = s->ctx_from, *to = s->ctx_to;
    int changed = 0;
    if (pend && !start_blend) {
        memcpy(s->ctx_tmp, s->ctx_new, n * sizeof(float));
        nb.active = 0;
        changed = 1;
    } else if (start_blend) {
        from = s->ctx;
        to = s->ctx_new;
        nb.active = 1;
        nb.done = 0;
        nb.total = s->pending_blend;
    }
    float a = 1.0f;
    if (nb.active) {
        nb.done++;
        a = (float)((double)nb.done / (double)nb.total);
        if (nb.done >= nb.total) {
            /* the last step lands exactly on the target, not on from + 1 * (to - from) */
            memcpy(s->ctx_tmp, to, n * sizeof(float));
            nb.active = 0;
        } else {
            blend_into(s->ctx_tmp, from, to, a, n);
        }
        changed = 1;
    }
    if (changed || s->text_stale) {
        double t0 = now_ms();
        st = prepare_text(s, changed ? s->ctx_tmp : s->ctx);
        if (st != FB_OK)
            return st;
        info->ms_text += now_ms() - t0;
    }
    /* commit */
    if (start_blend) {
        memcpy(s->ctx_from, s->ctx, n * sizeof(float));
        memcpy(s->ctx_to, s->ctx_new, n * sizeof(float));
    }
    if (changed)
        memcpy(s->ctx, s->ctx_tmp, n * sizeof(float));
    s->blend = nb;
    s->text_stale = 0;
    if (pend) {
        *do_recache = s->pending_tr == FB_TRANSITION_RECACHE;
        free(s->ids);
        s->ids = s->pending_ids;
        s->n_ids = s->n_pending_ids;
        s->pending_ids = NULL;
        s->n_pending_ids = 0;
        s->has_pending = 0;
    }
    info->prompt_changed = changed;
    info->blend = start_blend || was_blending ? a : 1.0f;
    return FB_OK;
}

static void observe(fb_stream *s, int step, float t, const float *x_in, const float *flow,
                    const float *x0, int n, const fb_kv_plan *plan);

/* ---- DiT calls -------------------------------------------------------------------------- */

/* Runs the DiT on n frames given in [F, C, H, W] order (x), writing the flow in the same order
 * into y (may be NULL for a context pass whose flow is discarded). */
static fb_status dit_call(fb_stream *s, const float *x, int n, float t, const fb_kv_plan *plan,
                          int write_kv, float *y)
{
    const fb_model *m = s->m;
    size_t hw = (size_t)m->H * m->W;
    fchw_to_cfhw(x, s->x_dit, n, m->C, hw);
    fb_dit_call call = {
        .x = s->x_dit, .n_frames = n, .height = m->H, .width = m->W, .t = t,
        .text = s->text, .cache = s->kv, .plan = plan, .write_kv = write_kv, .out = s->y_dit,
        .dump = NULL,
    };
    char tmp[FB_ERR_MAX];
    int rc = fb_dit_forward(m->dit, s->kc, s->dit_scratch, s->dit_scratch_bytes, &call, tmp,
                            sizeof tmp);
    if (rc != 0) {
        /* The DiT checks everything before computing: a failure wrote nothing. Still, it is
         * an engine bug (shapes are planned), not a caller error. */
        return fb__stream_fail(s, FB_E_INTERNAL, "DiT: %s", tmp);
    }
    if (y)
        cfhw_to_fchw(s->y_dit, y, n, m->C, hw);
    return FB_OK;
}

/* LongLive re-cache: the window's clean latents run again at t = context_t under the prompt
 * just applied, rewriting their K/V; the anchors are kept. */
static fb_status recache(fb_stream *s, fb_chunk_info *info)
{
    const fb_model *m = s->m;
    char tmp[FB_ERR_MAX];
    int rc = fb_kvcache_plan_recache(s->kv, 0, (fb_kv_positions)m->cfg.stream.positions,
                                     &s->aux, tmp, sizeof tmp);
    if (rc == FB_KV_ERR_STATE)
        return FB_OK;   /* nothing in the window yet: the new prompt simply applies */
    if (rc != 0)
        return fb__stream_fail(s, FB_E_INTERNAL, "recache plan: %s", tmp);
    int n = s->aux.n_frames;
    if (n > m->recache_frames)
        return fb__stream_fail(s, FB_E_INTERNAL, "recache of %d frames exceeds the planned %d",
                               n, m->recache_frames);
    for (int f = 0; f < n; f++) {
        const float *lat = ring_get(s, s->aux.frame_index[f]);
        if (!lat)
            return fb__stream_fail(s, FB_E_INTERNAL, "recache: latents of frame %lld are gone",
                                   (long long)s->aux.frame_index[f]);
        memcpy(s->lat_gather + (size_t)f * m->lat_floats, lat, m->lat_floats * sizeof(float));
    }
    double t0 = now_ms();
    /* The flow of a context pass is discarded; an observer gets it in x_dit, which is free
     * once the call has read it. */
    float *flow = s->observer ? s->x_dit : NULL;
    fb_status st = dit_call(s, s->lat_gather, n, m->sched.context_t, &s->aux, 1, flow);
    if (st != FB_OK)
        return st;
    fb_kvcache_commit(s->kv, &s->aux);
    observe(s, -1, m->sched.context_t, s->lat_gather, flow, s->lat_gather, n, &s->aux);
    info->ms_recache += now_ms() - t0;
    info->recached = 1;
    info->gflop_dit += fb_dit_flops(&m->cfg.dit, n, s->aux.n_past, m->tpf) / 1e9;
    return FB_OK;
}

/* ---- the chunk -------------------------------------------------------------------------- */

static void observe(fb_stream *s, int step, float t, const float *x_in, const float *flow,
                    const float *x0, int n, const fb_kv_plan *plan)
{
    if (!s->observer)
        return;
    fb__step_event ev = {s->chunk, step, t, x_in, flow, x0, n, plan, s->ctx};
    s->observer(s->observer_ctx, &ev);
}

static fb_status check_usable(fb_stream *s)
{
    if (s->failed)
        return fb__stream_fail(s, FB_E_STATE, "the stream failed earlier and must be reset: %s",
                               s->fail_reason);
    return FB_OK;
}

/* Marks the stream failed (its cache may be half written) and returns st. */
static fb_status mark_failed(fb_stream *s, fb_status st)
{
    s->failed = 1;
    snprintf(s->fail_reason, sizeof s->fail_reason, "%s", s->err);
    return st;
}

static fb_status plan_chunk(fb_stream *s)
{
    const fb_model *m = s->m;
    char tmp[FB_ERR_MAX];
    int rc = fb_kvcache_plan(s->kv, m->F, (fb_kv_positions)m->cfg.stream.positions, &s->plan,
                             tmp, sizeof tmp);
    if (rc == FB_KV_ERR_RANGE)
        return fb__stream_fail(s, FB_E_LIMIT, "this model uses absolute positions, which end at "
                               "latent frame %d (chunk %lld): the stream is over; reset it to "
                               "start again", FB_ROPE_MAX_POS, (long long)s->chunk);
    if (rc != 0)
        return fb__stream_fail(s, FB_E_INTERNAL, "KV plan: %s", tmp);
    return FB_OK;
}

/* Decodes n latent frames ([n, C, H, W]) into RGB24, appended at out; *n_frames grows. */
static fb_status decode_latents(fb_stream *s, const float *lat, int n, uint8_t *out,
                                int *n_frames);

static fb_status run_chunk(fb_stream *s, uint8_t *out_rgb, int *n_frames, fb_chunk_info *ci)
{
    const fb_model *m = s->m;
    double t_start = now_ms();
    fb_status st = plan_chunk(s);   /* first: refuse an ended stream before touching state */
    if (st != FB_OK)
        return st;
    int do_recache = 0;
    st = apply_text(s, ci, &do_recache);
    if (st != FB_OK)
        return st;
    if (do_recache) {
        st = recache(s, ci);
        if (st != FB_OK)
            return mark_failed(s, st);
        st = plan_chunk(s);   /* the recache commit moved the epoch */
        if (st != FB_OK)
            return mark_failed(s, st);
    }
    ci->chunk = s->chunk;
    ci->seed = s->seed;
    ci->first_latent = s->plan.frame_index[0];
    for (int i = 0; i < s->plan.n_past; i++) {
        if (s->plan.past_slot[i] < m->A)
            ci->n_anchor_frames++;
        else
            ci->n_window_frames++;
    }

    size_t n = (size_t)m->F * m->lat_floats;
    fb_chunk_sampler cs;
    fb_chunk_sampler_begin(&cs, &m->sched, s->seed, (uint64_t)s->chunk, s->x, s->x0, s->v, n,
                           s->noise, s->noise_ctx);
    double flops = fb_dit_flops(&m->cfg.dit, m->F, s->plan.n_past, m->tpf);
    for (;;) {
        float t;
        const float *in;
        fb_call_kind kind = fb_chunk_sampler_next(&cs, &t, &in);
        if (kind == FB_CALL_DONE)
            break;
        double t0 = now_ms();
        if (kind == FB_CALL_DENOISE) {
            st = dit_call(s, in, m->F, t, &s->plan, 0, s->v);
            if (st != FB_OK)
                return mark_failed(s, st);
            ci->ms_dit_steps += now_ms() - t0;
            observe(s, cs.step, t, in, s->v, NULL, m->F, &s->plan);
            fb_chunk_sampler_advance(&cs);
        } else {
            st = dit_call(s, in, m->F, t, &s->plan, 1, s->observer ? s->v : NULL);
            if (st != FB_OK)
                return mark_failed(s, st);
            fb_kvcache_commit(s->kv, &s->plan);
            ci->ms_context += now_ms() - t0;
            observe(s, m->sched.n_steps, t, in, s->v, in, m->F, &s->plan);
            fb_chunk_sampler_advance(&cs);
        }
        ci->gflop_dit += flops / 1e9;
    }
    for (int f = 0; f < m->F; f++)
        ring_put(s, s->plan.frame_index[f], s->x0 + (size_t)f * m->lat_floats);

    double t0 = now_ms();
    *n_frames = 0;
    st = decode_latents(s, s->x0, m->F, out_rgb, n_frames);
    if (st != FB_OK)
        return mark_failed(s, st);
    ci->ms_decode = now_ms() - t0;
    ci->gflop_decode = fb_taehv_decode_flops(m->vae, m->H, m->W) * m->F / 1e9;
    ci->first_frame = s->frames_out;
    ci->n_frames = *n_frames;
    s->frames_out += *n_frames;
    s->chunk++;
    ci->ms_total = now_ms() - t_start;
    return FB_OK;
}

fb_status fb_stream_next_chunk(fb_stream *s, uint8_t *out_rgb, size_t out_size, int *n_frames,
                               fb_chunk_info *info)
{
    if (!s)
        return FB_E_INVALID;
    if (n_frames)
        *n_frames = 0;
    fb_chunk_info ci;
    memset(&ci, 0, sizeof ci);
    ci.blend = 1.0f;
    if (info)
        *info = ci;
    if (!out_rgb || !n_frames)
        return fb__stream_fail(s, FB_E_INVALID, "fb_stream_next_chunk: %s is NULL",
                               !out_rgb ? "out_rgb" : "n_frames");
    size_t need = s->m->frame_bytes * (size_t)s->m->max_chunk_frames;
    if (out_size < need)
        return fb__stream_fail(s, FB_E_INVALID, "fb_stream_next_chunk: out_size %zu is below the "
                               "%zu bytes a chunk needs (fb_model_info.chunk_rgb_bytes)",
                               out_size, need);
    fb_status st = check_usable(s);
    if (st != FB_OK)
        return st;
    s->err[0] = '\0';
    int n = 0;
    st = run_chunk(s, out_rgb, &n, &ci);
    if (st != FB_OK)
        return st;
    *n_frames = n;
    if (info)
        *info = ci;
    return FB_OK;
}

fb_status fb_streams_next_chunk(fb_stream *const *streams, int n, uint8_t *const *out_rgb,
                                size_t out_size, int *n_frames, fb_chunk_info *info,
                                fb_status *status)
{
    if (!streams || n < 0 || !out_rgb || !n_frames || !status)
        return FB_E_INVALID;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (!streams[i] || streams[i] == streams[j] || streams[i]->m != streams[j]->m)
                return FB_E_INVALID;
    if (n > 0 && !streams[n - 1])
        return FB_E_INVALID;
    /* The DiT has no batched forward yet, so the streams run one after another; the sampler's
     * call-by-call state machine (sampler.h) is what a batched pass will interleave. Results
     * are those of single calls either way: noise depends only on (seed, chunk). */
    fb_status first = FB_OK;
    for (int i = 0; i < n; i++) {
        status[i] = fb_stream_next_chunk(streams[i], out_rgb[i], out_size, &n_frames[i],
                                         info ? &info[i] : NULL);
        if (status[i] != FB_OK && first == FB_OK)
            first = status[i];
    }
    return first;
}

/* ---- controls --------------------------------------------------------------------------- */

fb_status fb_stream_set_prompt(fb_stream *s, const char *prompt, fb_transition transition,
                               int blend_chunks)
{
    if (!s)
        return FB_E_INVALID;
    fb_status st = check_usable(s);
    if (st != FB_OK)
        return st;
    if (transition != FB_TRANSITION_CUT && transition != FB_TRANSITION_RECACHE &&
        transition != FB_TRANSITION_BLEND)
        return fb__stream_fail(s, FB_E_INVALID, "unknown transition %d", (int)transition);
    if (transition == FB_TRANSITION_BLEND && (blend_chunks < 1 || blend_chunks > 1000))
        return fb__stream_fail(s, FB_E_INVALID, "blend_chunks must be in [1, 1000], got %d",
                               blend_chunks);
    int32_t *ids = NULL;
    int n = 0;
    char tmp[FB_ERR_MAX];
    st = fb__tokenize(s->m, prompt, &ids, &n, tmp, sizeof tmp);
    if (st != FB_OK)
        return fb__stream_fail(s, st, "%s", tmp);
    free(s->pending_ids);
    s->pending_ids = ids;
    s->n_pending_ids = n;
    s->has_pending = 1;
    s->pending_tr = transition;
    s->pending_blend = transition == FB_TRANSITION_BLEND ? blend_chunks : 0;
    return FB_OK;
}

fb_status fb_stream_set_seed(fb_stream *s, uint64_t seed)
{
    if (!s)
        return FB_E_INVALID;
    fb_status st = check_usable(s);
    if (st != FB_OK)
        return st;
    s->seed = seed;
    return FB_OK;
}

fb_status fb_stream_pin_anchor(fb_stream *s)
{
    if (!s)
        return FB_E_INVALID;
    fb_status st = check_usable(s);
    if (st != FB_OK)
        return st;
    if (s->m->A == 0)
        return fb__stream_fail(s, FB_E_STATE, "this model has no anchor slots (anchor_frames 0)");
    if (s->chunk == 0)
        return fb__stream_fail(s, FB_E_STATE, "no chunk to pin yet: generate one first");
    char tmp[FB_ERR_MAX];
    int rc = fb_kvcache_pin(s->kv, tmp, sizeof tmp);
    if (rc == FB_KV_ERR_STATE)
        return fb__stream_fail(s, FB_E_STATE, "cannot pin yet: %s", tmp);
    if (rc != 0)
        return fb__stream_fail(s, FB_E_INTERNAL, "pin: %s", tmp);
    return FB_OK;
}

fb_status fb_stream_reset(fb_stream *s)
{
    if (!s)
        return FB_E_INVALID;
    fb_kvcache_reset(s->kv);
    fb_taehv_stream_reset(s->dec);
    ring_clear(s);
    if (s->has_pending) {
        /* the latest prompt wins, applied as a cut */
        free(s->ids);
        s->ids = s->pending_ids;
        s->n_ids = s->n_pending_ids;
        s->pending_ids = NULL;
        s->n_pending_ids = 0;
        s->has_pending = 0;
        s->need_text = 1;
    } else if (s->blend.active) {
        memcpy(s->ctx, s->ctx_to, ctx_floats(s) * sizeof(float));
        s->text_stale = 1;
    }
    s->blend.active = 0;
    s->chunk = 0;
    s->frames_out = 0;
    s->failed = 0;
    s->err[0] = '\0';
    return FB_OK;
}

/* ---- decode ----------------------------------------------------------------------------- */

static fb_status decode_latents(fb_stream *s, const float *lat, int n, uint8_t *out,
                                int *n_frames)
{
    const fb_model *m = s->m;
    int nf = 0;
    char tmp[FB_ERR_MAX];
    if (fb_taehv_stream_frames_for(s->dec, n) > m->max_chunk_frames)
        return fb__stream_fail(s, FB_E_INTERNAL, "decoder would produce %d frames, planned %d",
                               fb_taehv_stream_frames_for(s->dec, n), m->max_chunk_frames);
    if (fb_taehv_decode(m->vae, s->kc, s->dec, lat, n, s->rgbf, &nf, s->dec_scratch,
                        s->dec_scratch_bytes, tmp, sizeof tmp) != 0)
        return fb__stream_fail(s, FB_E_INTERNAL, "decoder: %s", tmp);
    size_t plane = (size_t)3 * m->width * m->height;
    for (int i = 0; i < nf; i++)
        fb_taehv_to_rgb24(s->rgbf + (size_t)i * plane, m->height, m->width,
                          out + (size_t)(*n_frames + i) * m->frame_bytes, (size_t)m->width * 3);
    *n_frames += nf;
    return FB_OK;
}

/* ---- anchors from an image -------------------------------------------------------------- */

/* Makes sure the DiT's prepared prompt reflects the prompt in effect (not a pending one). */
static fb_status ensure_text(fb_stream *s)
{
    if (s->need_text) {
        double ms = 0;
        fb_status st = encode_ids(s, s->ids, s->n_ids, s->ctx, &ms);
        if (st != FB_OK)
            return st;
        s->need_text = 0;
        s->text_stale = 1;
    }
    if (s->text_stale) {
        fb_status st = prepare_text(s, s->ctx);
        if (st != FB_OK)
            return st;
        s->text_stale = 0;
    }
    return FB_OK;
}

fb_status fb_stream_set_anchor_image(fb_stream *s, const uint8_t *rgb, int width, int height,
                                     size_t stride)
{
    if (!s)
        return FB_E_INVALID;
    fb_status st = check_usable(s);
    if (st != FB_OK)
        return st;
    const fb_model *m = s->m;
    if (!rgb)
        return fb__stream_fail(s, FB_E_INVALID, "anchor image: rgb is NULL");
    if (width != m->width || height != m->height)
        return fb__stream_fail(s, FB_E_INVALID, "anchor image is %dx%d; this model's frames are "
                               "%dx%d RGB24", width, height, m->width, m->height);
    if (stride < (size_t)width * 3)
        return fb__stream_fail(s, FB_E_INVALID, "anchor image: stride %zu is shorter than a row "
                               "(%d bytes)", stride, width * 3);
    if (m->A == 0)
        return fb__stream_fail(s, FB_E_STATE, "this model has no anchor slots (anchor_frames 0)");
    if (!fb_taehv_has_encoder(m->vae))
        return fb__stream_fail(s, FB_E_STATE, "this model file has no image encoder (vae.encoder "
                               "tensors)");
    int mult = fb_taehv_encoder_size_multiple(m->vae);
    if (mult <= 0 || m->width % mult || m->height % mult || m->width / mult != m->W ||
        m->height / mult != m->H)
        return fb__stream_fail(s, FB_E_STATE, "this model's encoder does not map %dx%d frames to "
                               "%dx%d latents", m->width, m->height, m->W, m->H);
    char tmp[FB_ERR_MAX];
    if (!s->enc) {
        /* The encoder is used rarely; its memory is taken on first use, not at open. */
        if (fb_taehv_enc_init(m->vae, m->height, m->width, &s->enc, tmp, sizeof tmp) != 0)
            return fb__stream_fail(s, FB_E_NO_MEMORY, "image encoder: %s", tmp);
        s->enc_scratch_bytes = fb_taehv_encode_scratch_bytes(m->vae, m->height, m->width);
        s->enc_scratch = malloc(s->enc_scratch_bytes ? s->enc_scratch_bytes : 1);
        if (!s->enc_scratch) {
            fb_taehv_enc_free(s->enc);
            s->enc = NULL;
            return fb__stream_fail(s, FB_E_NO_MEMORY, "image encoder: out of memory");
        }
    }
    st = ensure_text(s);
    if (st != FB_OK)
        return st;
    int A = m->A;
    if (A > m->recache_frames)
        return fb__stream_fail(s, FB_E_INTERNAL, "anchor pass larger than planned");
    st = FB_OK;
    /* rgbf is free between chunks: it holds the planar image. A still image becomes a still
     * clip: each anchor latent is encoded from frames_per_encoded_latent copies of it. */
    fb_taehv_from_rgb24(rgb, stride, height, width, s->rgbf);
    fb_taehv_enc_reset(s->enc);
    int per = fb_taehv_frames_per_encoded_latent(m->vae);
    int got = 0;
    for (int i = 0; i < A * per && got < A; i++) {
        int nl = 0;
        if (fb_taehv_encode_push(m->vae, s->kc, s->enc, s->rgbf,
                                 s->lat_gather + (size_t)got * m->lat_floats, &nl,
                                 s->enc_scratch, s->enc_scratch_bytes, tmp, sizeof tmp) != 0)
            return fb__stream_fail(s, FB_E_INTERNAL, "image encoder: %s", tmp);
        got += nl;
    }
    if (got != A)
        return fb__stream_fail(s, FB_E_INTERNAL, "image encoder gave %d latents for %d anchors",
                               got, A);
    int rc = fb_kvcache_plan_anchor(s->kv, A, (fb_kv_positions)m->cfg.stream.positions, &s->aux,
                                    tmp, sizeof tmp);
    if (rc != 0)
        return fb__stream_fail(s, rc == FB_KV_ERR_STATE ? FB_E_STATE : FB_E_INTERNAL,
                               "anchor plan: %s", tmp);
    st = dit_call(s, s->lat_gather, A, m->sched.context_t, &s->aux, 1, NULL);
    if (st != FB_OK)
        return mark_failed(s, st);
    fb_kvcache_commit(s->kv, &s->aux);
    for (int f = 0; f < A; f++)
        ring_put(s, s->aux.frame_index[f], s->lat_gather + (size_t)f * m->lat_floats);
    return FB_OK;
}
