/* engine/engine_stream.c - streams: open/free, the chunk loop, prompt transitions, anchors.
 *
 * One chunk (fb_stream_next_chunk):
 *   1. apply a pending prompt (cut / recache / start a blend) or advance a running blend: the
 *      text-encoder output (from the model's prompt cache, or a fresh encode) becomes the
 *      stream's conditioning and the DiT prepares its cross-attention K/V;
 *      recache re-runs the window's clean latents at t = context_t under the new prompt;
 *   2. plan the chunk against the KV cache (kvcache/kvcache.h: past frames, positions, slots);
 *   3. the sampler's state machine drives K denoising DiT calls and the context pass, which
 *      writes the chunk's K/V; commit makes them visible (fb_streams_next_chunk advances the
 *      samplers of several streams in lockstep and runs each round of calls as one batched
 *      DiT pass); with classifier-free guidance every denoising step is two calls, the second
 *      under the empty prompt's conditioning, which the stream prepared once at open;
 *   4. the clean latents go into a small ring (the input of a later recache);
 *   5. the decoder turns each latent frame into RGB frames.
 * Every buffer of that path was carved from the stream's arena at open, the DiT's prepared
 * prompt included; a chunk allocates nothing (a new prompt's encoder output goes into the
 * model's LRU). The compute runs on a context checked out from the model for the call (or the
 * stream's own, engine.h "Compute"); s->kc names it while the call runs.
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
    int guided = c->sampler.guidance != 1.0f;
    s->v_u = guided ? carve(&cv, chunk) : NULL;
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
    /* the DiT scratch also holds the temporaries of a prompt preparation (never at once) */
    s->dit_scratch_bytes = fb_dit_scratch_bytes(&c->dit, m->recache_frames, m->A + m->Wn, m->tpf);
    if (fb_dit_text_scratch_bytes(&c->dit) > s->dit_scratch_bytes)
        s->dit_scratch_bytes = fb_dit_text_scratch_bytes(&c->dit);
    s->dit_scratch = carve(&cv, s->dit_scratch_bytes);
    s->text_mem = carve(&cv, fb_dit_text_bytes(&c->dit));
    s->text_u_mem = guided ? carve(&cv, fb_dit_text_bytes(&c->dit)) : NULL;
    s->t5_scratch_bytes = fb_t5_scratch_bytes(m->t5, c->text.max_tokens);
    s->t5_scratch = carve(&cv, s->t5_scratch_bytes);
    s->dec_scratch_bytes = fb_taehv_decode_scratch_bytes(m->vae, m->H, m->W);
    s->dec_scratch = carve(&cv, s->dec_scratch_bytes);
    return cv.off;
}

size_t fb__stream_arena_bytes(const fb_model *m)
{
    fb_stream *s = calloc(1, sizeof *s);   /* large (two plans): not on the stack */
    if (!s)
        return 0;
    s->m = (fb_model *)m;
    size_t b = stream_layout(s, NULL, 0);
    free(s);
    return b;
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
    fb_kvcache_close(s->kv);
    fb_kctx_free(s->own_kc);
    free(s->arena);
    free(s->ids);
    free(s->pending_ids);
    free(s);
}

fb_stream_params fb_stream_default_params(void)
{
    fb_stream_params p;
    memset(&p, 0, sizeof p);
    return p;
}

static fb_status prepare_uncond(fb_stream *s);

fb_status fb_stream_open(fb_model *m, const char *prompt, uint64_t seed, fb_stream **out,
                         char *err, size_t err_size)
{
    return fb_stream_open_ex(m, prompt, seed, NULL, out, err, err_size);
}

fb_status fb_stream_open_ex(fb_model *m, const char *prompt, uint64_t seed,
                            const fb_stream_params *params, fb_stream **out, char *err,
                            size_t err_size)
{
    char tmp[FB_ERR_MAX];
    fb_stream_params sp = params ? *params : fb_stream_default_params();
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
    if (sp.own_threads < 0)
        OPEN_FAIL(FB_E_INVALID, "fb_stream_open: own_threads must be >= 0, got %d",
                  sp.own_threads);
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

    if (sp.own_threads > 0 && fb_kctx_init(&s->own_kc, sp.own_threads, tmp, sizeof tmp) != 0)
        OPEN_FAIL(FB_E_NO_MEMORY, "compute threads: %s", tmp);

    s->arena_bytes = stream_layout(s, NULL, 0);
    s->arena = aligned_alloc(64, s->arena_bytes);
    if (!s->arena)
        OPEN_FAIL(FB_E_NO_MEMORY, "out of memory: a stream needs %.1f MiB of working memory",
                  (double)s->arena_bytes / 1048576.0);
    memset(s->arena, 0, s->arena_bytes);   /* commit the pages now, not mid-chunk */
    stream_layout(s, s->arena, s->arena_bytes);
    ring_clear(s);
    s->text = fb_dit_text_init(s->text_mem, fb_dit_text_bytes(&c->dit), &c->dit);
    if (!s->text)
        OPEN_FAIL(FB_E_INTERNAL, "prompt memory misplaced in the arena");
    if (c->sampler.guidance != 1.0f) {
        s->text_u = fb_dit_text_init(s->text_u_mem, fb_dit_text_bytes(&c->dit), &c->dit);
        if (!s->text_u)
            OPEN_FAIL(FB_E_INTERNAL, "prompt memory misplaced in the arena");
        st = prepare_uncond(s);
        if (st != FB_OK)
            OPEN_FAIL(st, "guidance: %s", s->err);
    }

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

/* Prepares the DiT's view of ctx (text embedding + cross K/V) into dst. Its checks run before
 * it writes anything, so a refusal leaves the prompt in effect prepared as it was. */
static fb_status prepare_text_into(fb_stream *s, const float *ctx, fb_dit_text *dst)
{
    char tmp[FB_ERR_MAX];
    int rc = fb_dit_text_prepare_into(s->m->dit, s->kc, ctx, s->m->cfg.dit.text_len, NULL,
                                      dst, s->dit_scratch, s->dit_scratch_bytes, tmp,
                                      sizeof tmp);
    if (rc != 0)
        return fb__stream_fail(s, FB_E_INTERNAL, "preparing the prompt: %s", tmp);
    return FB_OK;
}

static fb_status prepare_text(fb_stream *s, const float *ctx)
{
    return prepare_text_into(s, ctx, s->text);
}

static fb__exec *take_context(fb_stream *s);
static void put_context(fb_stream *s, fb__exec *e);

/* Classifier-free guidance: the empty prompt "" as the reference conditions on it (the
 * tokenizer gives just EOS, then the text encoder and the DiT's preparation, as for any
 * prompt), made once into text_u. It goes straight to the tokenizer: the public API refuses
 * blank prompts, which stays right for what users send. ctx_tmp is free at open. */
static fb_status prepare_uncond(fb_stream *s)
{
    const fb_model *m = s->m;
    fb_tok_options opt = {.add_eos = 1, .max_tokens = m->cfg.text.max_tokens};
    fb_tok_result r;
    char tmp[FB_ERR_MAX];
    if (fb_tok_encode(m->tok, "", 0, &opt, &r, tmp, sizeof tmp) != 0)
        return fb__stream_fail(s, FB_E_INVALID, "cannot tokenize the empty prompt: %s", tmp);
    double ms = 0;
    fb__exec *e = take_context(s);
    fb_status st = encode_ids(s, r.ids, r.n_ids, s->ctx_tmp, &ms);
    if (st == FB_OK)
        st = prepare_text_into(s, s->ctx_tmp, s->text_u);
    put_context(s, e);
    fb_tok_result_free(&r);
    return st;
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
                    const float *x0, int n, const fb_kv_plan *plan, const float *flow_c,
                    const float *flow_u);

/* ---- DiT calls -------------------------------------------------------------------------- */

/* Fills a DiT call for n frames given in [F, C, H, W] order (x), staged into Wan's
 * channel-first layout in x_dit; the flow comes back in y_dit. */
static void stage_call(fb_stream *s, const float *x, int n, float t, const fb_kv_plan *plan,
                       int write_kv, const fb_dit_text *text, fb_dit_call *call)
{
    const fb_model *m = s->m;
    fchw_to_cfhw(x, s->x_dit, n, m->C, (size_t)m->H * m->W);
    fb_dit_call c = {
        .x = s->x_dit, .n_frames = n, .height = m->H, .width = m->W, .t = t,
        .text = text, .cache = s->kv, .plan = plan, .write_kv = write_kv, .out = s->y_dit,
        .dump = NULL,
    };
    *call = c;
}

/* Copies the flow of a finished call from y_dit into y ([F, C, H, W]; NULL: discarded). */
static void unstage_flow(fb_stream *s, int n, float *y)
{
    if (y)
        cfhw_to_fchw(s->y_dit, y, n, s->m->C, (size_t)s->m->H * s->m->W);
}

/* Runs one staged call alone, on the stream's own scratch. */
static fb_status run_call(fb_stream *s, const fb_dit_call *call)
{
    char tmp[FB_ERR_MAX];
    int rc = fb_dit_forward(s->m->dit, s->kc, s->dit_scratch, s->dit_scratch_bytes, call, tmp,
                            sizeof tmp);
    if (rc != 0) {
        /* The DiT checks everything before computing: a failure wrote nothing. Still, it is
         * an engine bug (shapes are planned), not a caller error. */
        return fb__stream_fail(s, FB_E_INTERNAL, "DiT: %s", tmp);
    }
    return FB_OK;
}

/* Runs the DiT on n frames given in [F, C, H, W] order (x), writing the flow in the same order
 * into y (may be NULL for a context pass whose flow is discarded). */
static fb_status dit_call(fb_stream *s, const float *x, int n, float t, const fb_kv_plan *plan,
                          int write_kv, float *y)
{
    fb_dit_call call;
    stage_call(s, x, n, t, plan, write_kv, s->text, &call);
    fb_status st = run_call(s, &call);
    if (st == FB_OK)
        unstage_flow(s, n, y);
    return st;
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
    observe(s, -1, m->sched.context_t, s->lat_gather, flow, s->lat_gather, n, &s->aux, NULL,
            NULL);
    info->ms_recache += now_ms() - t0;
    info->recached = 1;
    info->gflop_dit += fb_dit_flops(&m->cfg.dit, n, s->aux.n_past, m->tpf) / 1e9;
    return FB_OK;
}

/* ---- the chunk -------------------------------------------------------------------------- */

static void observe(fb_stream *s, int step, float t, const float *x_in, const float *flow,
                    const float *x0, int n, const fb_kv_plan *plan, const float *flow_c,
                    const float *flow_u)
{
    if (!s->observer)
        return;
    fb__step_event ev = {s->chunk, step, t, x_in, flow, x0, n, plan, s->ctx, flow_c, flow_u};
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

/* Checks a next_chunk call's arguments for one stream; on success ci is zeroed for the chunk. */
static fb_status chunk_args(fb_stream *s, uint8_t *out_rgb, size_t out_size, int *n_frames,
                            fb_chunk_info *ci)
{
    memset(ci, 0, sizeof *ci);
    ci->blend = 1.0f;
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
    return FB_OK;
}

/* Steps 1-2 of a chunk (conditioning, a pending recache, the plan) and the sampler's start. A
 * failure before the recache leaves the stream as it was; from the recache on it is failed. */
static fb_status chunk_begin(fb_stream *s, fb_chunk_info *ci)
{
    const fb_model *m = s->m;
    s->chunk_t0 = now_ms();
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
    fb_chunk_sampler_begin(&s->cs, &m->sched, s->seed, (uint64_t)s->chunk, s->x, s->x0, s->v,
                           s->v_u, (size_t)m->F * m->lat_floats, s->noise, s->noise_ctx);
    s->chunk_flops = fb_dit_flops(&m->cfg.dit, m->F, s->plan.n_past, m->tpf);
    return FB_OK;
}

/* The chunk's next DiT call, staged (FB_CALL_DONE when the sampler is finished). An uncond
 * call reads the same cache under the empty prompt's conditioning. */
static fb_call_kind chunk_next_call(fb_stream *s, fb_dit_call *call, float *t, const float **in)
{
    fb_call_kind kind = fb_chunk_sampler_next(&s->cs, t, in);
    if (kind != FB_CALL_DONE)
        stage_call(s, *in, s->m->F, *t, &s->plan, kind == FB_CALL_CONTEXT,
                   kind == FB_CALL_UNCOND ? s->text_u : s->text, call);
    return kind;
}

/* Takes the result of the call chunk_next_call staged (its flow in y_dit) and advances the
 * sampler; ms is the time the call took, batch the calls that ran with it (itself included). */
static void chunk_after_call(fb_stream *s, fb_call_kind kind, float t, const float *in,
                             double ms, int batch, fb_chunk_info *ci)
{
    const fb_model *m = s->m;
    if (batch > ci->batch_size)
        ci->batch_size = batch;
    size_t n = (size_t)m->F * m->lat_floats;
    if (kind == FB_CALL_DENOISE) {
        unstage_flow(s, m->F, s->v);
        ci->ms_dit_steps += ms;
        if (!s->v_u)
            observe(s, s->cs.step, t, in, s->v, NULL, m->F, &s->plan, NULL, NULL);
    } else if (kind == FB_CALL_UNCOND) {
        unstage_flow(s, m->F, s->v_u);
        ci->ms_dit_steps += ms;
        if (s->observer) {
            /* advance() combines in place and then overwrites x: the observer gets the
             * combined flow now, computed the same way into x_dit (free after the call). */
            fb_cfg_combine(s->x_dit, s->v, s->v_u, m->sched.guidance, n);
            observe(s, s->cs.step, t, in, s->x_dit, NULL, m->F, &s->plan, s->v, s->v_u);
        }
    } else {
        unstage_flow(s, m->F, s->observer ? s->v : NULL);
        fb_kvcache_commit(s->kv, &s->plan);
        ci->ms_context += ms;
        observe(s, m->sched.n_steps, t, in, s->v, in, m->F, &s->plan, NULL, NULL);
    }
    fb_chunk_sampler_advance(&s->cs);
    ci->gflop_dit += s->chunk_flops / 1e9;
}

/* Steps 4-5: the latent ring and the decoder; the chunk counts. */
static fb_status chunk_finish(fb_stream *s, uint8_t *out_rgb, int *n_frames, fb_chunk_info *ci)
{
    const fb_model *m = s->m;
    for (int f = 0; f < m->F; f++)
        ring_put(s, s->plan.frame_index[f], s->x0 + (size_t)f * m->lat_floats);
    double t0 = now_ms();
    *n_frames = 0;
    fb_status st = decode_latents(s, s->x0, m->F, out_rgb, n_frames);
    if (st != FB_OK)
        return mark_failed(s, st);
    ci->ms_decode = now_ms() - t0;
    ci->gflop_decode = fb_taehv_decode_flops(m->vae, m->H, m->W) * m->F / 1e9;
    ci->first_frame = s->frames_out;
    ci->n_frames = *n_frames;
    s->frames_out += *n_frames;
    s->chunk++;
    ci->ms_total = now_ms() - s->chunk_t0;
    return FB_OK;
}

/* One stream's chunk, every DiT call alone, on s->kc. */
static fb_status run_chunk(fb_stream *s, uint8_t *out_rgb, int *n_frames, fb_chunk_info *ci)
{
    fb_status st = chunk_begin(s, ci);
    if (st != FB_OK)
        return st;
    for (;;) {
        fb_dit_call call;
        float t;
        const float *in;
        double t0 = now_ms();
        fb_call_kind kind = chunk_next_call(s, &call, &t, &in);
        if (kind == FB_CALL_DONE)
            break;
        st = run_call(s, &call);
        if (st != FB_OK)
            return mark_failed(s, st);
        chunk_after_call(s, kind, t, in, now_ms() - t0, 1, ci);
    }
    return chunk_finish(s, out_rgb, n_frames, ci);
}

/* The context a single-stream call computes on: the stream's own, or one of the model's
 * (checked out until put_context). */
static fb__exec *take_context(fb_stream *s)
{
    if (s->own_kc) {
        s->kc = s->own_kc;
        return NULL;
    }
    fb__exec *e = fb__exec_acquire(s->m);
    s->kc = e->kc;
    return e;
}

static void put_context(fb_stream *s, fb__exec *e)
{
    s->kc = NULL;
    if (e)
        fb__exec_release(s->m, e);
}

fb_status fb_stream_next_chunk(fb_stream *s, uint8_t *out_rgb, size_t out_size, int *n_frames,
                               fb_chunk_info *info)
{
    if (!s)
        return FB_E_INVALID;
    if (n_frames)
        *n_frames = 0;
    fb_chunk_info ci;
    fb_status st = chunk_args(s, out_rgb, out_size, n_frames, &ci);
    if (info)
        *info = ci;
    if (st != FB_OK)
        return st;
    int n = 0;
    fb__exec *e = take_context(s);
    st = run_chunk(s, out_rgb, &n, &ci);
    put_context(s, e);
    if (st != FB_OK)
        return st;
    *n_frames = n;
    if (info)
        *info = ci;
    return FB_OK;
}

/* ---- several streams -------------------------------------------------------------------- */

/* The streams of one group in lockstep: every round takes the next DiT call of each stream
 * still sampling and runs them as one batch. Calls line up because every stream of a model
 * has the same schedule; a stream that is done (or failed) simply drops out of later rounds.
 * If the batched pass is refused (it checks everything before computing and then has written
 * nothing), each call runs alone, so that only a stream whose own call is bad fails. */
static void run_lockstep(fb_stream *const *ss, int n, fb__exec *e, fb_chunk_info *ci,
                         fb_status *status)
{
    fb_dit_call calls[FB_DIT_MAX_BATCH];
    int idx[FB_DIT_MAX_BATCH];
    fb_call_kind kinds[FB_DIT_MAX_BATCH];
    float ts[FB_DIT_MAX_BATCH];
    const float *ins[FB_DIT_MAX_BATCH];
    const fb_model *m = ss[0]->m;
    for (;;) {
        int k = 0;
        double t0 = now_ms();
        for (int i = 0; i < n; i++) {
            if (status[i] != FB_OK)
                continue;
            kinds[k] = chunk_next_call(ss[i], &calls[k], &ts[k], &ins[k]);
            if (kinds[k] == FB_CALL_DONE)
                continue;
            idx[k++] = i;
        }
        if (k == 0)
            return;
        char tmp[FB_ERR_MAX];
        /* a lone call runs as a single call: same numbers, no batch scratch needed */
        int rc = k > 1 && e->batch_scratch
                     ? fb_dit_forward_batch(m->dit, e->kc, e->batch_scratch,
                                            e->batch_scratch_bytes, calls, k, tmp, sizeof tmp)
                     : -1;
        int together = rc == 0 ? k : 1;
        for (int j = 0; j < k && rc != 0; j++) {
            fb_stream *s = ss[idx[j]];
            fb_status st = run_call(s, &calls[j]);
            if (st != FB_OK)
                status[idx[j]] = mark_failed(s, st);
        }
        double ms = now_ms() - t0;
        for (int j = 0; j < k; j++)
            if (status[idx[j]] == FB_OK)
                chunk_after_call(ss[idx[j]], kinds[j], ts[j], ins[j], ms, together,
                                 &ci[idx[j]]);
    }
}

fb_status fb_streams_next_chunk(fb_stream *const *streams, int n, uint8_t *const *out_rgb,
                                size_t out_size, int *n_frames, fb_chunk_info *info,
                                fb_status *status)
{
    if (!streams || n < 0 || !out_rgb || !n_frames || !status)
        return FB_E_INVALID;
    for (int i = 0; i < n; i++) {
        if (!streams[i] || streams[i]->m != streams[0]->m)
            return FB_E_INVALID;
        for (int j = i + 1; j < n; j++)
            if (streams[i] == streams[j])
                return FB_E_INVALID;
    }
    if (n == 0)
        return FB_OK;
    fb_model *m = streams[0]->m;
    fb__exec *e = fb__exec_acquire(m);
    fb_chunk_info cis[FB_DIT_MAX_BATCH];
    int group = m->max_batch < FB_DIT_MAX_BATCH ? m->max_batch : FB_DIT_MAX_BATCH;
    for (int g0 = 0; g0 < n; g0 += group) {
        int gn = n - g0 < group ? n - g0 : group;
        fb_stream *const *ss = streams + g0;
        fb_status *sts = status + g0;
        /* each stream's conditioning, recache and plan, alone */
        for (int i = 0; i < gn; i++) {
            fb_stream *s = ss[i];
            n_frames[g0 + i] = 0;
            sts[i] = chunk_args(s, out_rgb[g0 + i], out_size, &n_frames[g0 + i], &cis[i]);
            if (info)
                info[g0 + i] = cis[i];
            if (sts[i] != FB_OK)
                continue;
            s->kc = e->kc;
            sts[i] = chunk_begin(s, &cis[i]);
        }
        /* the DiT passes, batched */
        run_lockstep(ss, gn, e, cis, sts);
        /* decoding, alone */
        for (int i = 0; i < gn; i++) {
            fb_stream *s = ss[i];
            if (sts[i] == FB_OK) {
                int nf = 0;
                sts[i] = chunk_finish(s, out_rgb[g0 + i], &nf, &cis[i]);
                if (sts[i] == FB_OK) {
                    n_frames[g0 + i] = nf;
                    if (info)
                        info[g0 + i] = cis[i];
                }
            }
            s->kc = NULL;
        }
    }
    fb__exec_release(m, e);
    fb_status first = FB_OK;
    for (int i = 0; i < n && first == FB_OK; i++)
        first = status[i];
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

static fb_status anchor_image(fb_stream *s, const uint8_t *rgb, int width, int height,
                              size_t stride);

fb_status fb_stream_set_anchor_image(fb_stream *s, const uint8_t *rgb, int width, int height,
                                     size_t stride)
{
    if (!s)
        return FB_E_INVALID;
    fb__exec *e = take_context(s);
    fb_status st = anchor_image(s, rgb, width, height, stride);
    put_context(s, e);
    return st;
}

static fb_status anchor_image(fb_stream *s, const uint8_t *rgb, int width, int height,
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
