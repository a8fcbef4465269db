/* tests/dit/test_dit_rolled.c - a chunk computed with a rolled KV cache equals a computation
 * from scratch over the same visible frames.
 *
 * The visible set is modelled independently of the cache (anchors = the first A frames, or the
 * frames pinned; window = the newest W other frames, as plain lists).
 *
 * 1. One-layer model, context pass (t = 0). With one layer a frame's K/V depend only on its own
 *    latents and t, so the cached K/V of past frames are exactly what a fresh pass computes.
 *    The chunk's output through the rolled cache must equal the output rows of ONE uncached
 *    forward over [visible frames' latents + chunk] at the same positions. Both position modes.
 * 2. Two-layer model, denoising call (t = 937.5), with a pin in the middle. Here past K/V depend
 *    on what each frame saw when it was made, so the reference takes them from an archive of
 *    every frame's K/V (copied right after it was committed) and puts the expected frames, in
 *    order, into a separate cache with a hand-made plan: the two calls must agree bit for bit.
 * Self-contained: the model is random and built in memory.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/dit.h"
#include "tests/dit/golden_util.h"
#include "tests/dit/tiny_model.h"

#define HL 4
#define WL 6
#define CH 3
#define MAXF 64

static int failures;

/* the independent model of what is visible */
typedef struct {
    int A, W;
    int64_t anchors[MAXF];
    int n_anchors;
    int64_t window[MAXF];   /* oldest first */
    int n_window;
    int locked;             /* after a pin: new frames never become anchors */
} vis_model;

static void vis_push(vis_model *m, int64_t frame)
{
    if (!m->locked && m->n_anchors < m->A) {
        m->anchors[m->n_anchors++] = frame;
        return;
    }
    if (m->W == 0)
        return;
    if (m->n_window == m->W) {
        memmove(m->window, m->window + 1, (size_t)(m->W - 1) * sizeof(int64_t));
        m->n_window--;
    }
    m->window[m->n_window++] = frame;
}

/* the newest A visible frames become the anchors; the window keeps them */
static void vis_pin(vis_model *m)
{
    int64_t all[2 * MAXF];
    int n = 0;
    for (int i = 0; i < m->n_anchors; i++)
        all[n++] = m->anchors[i];
    for (int i = 0; i < m->n_window; i++)
        all[n++] = m->window[i];
    int k = n < m->A ? n : m->A;
    for (int a = 0; a < k; a++)
        m->anchors[a] = all[n - k + a];
    m->n_anchors = k;
    m->locked = 1;
}

/* visible frames in attention order; returns the count */
static int vis_list(const vis_model *m, int64_t *out)
{
    int n = 0;
    for (int i = 0; i < m->n_anchors; i++)
        out[n++] = m->anchors[i];
    for (int i = 0; i < m->n_window; i++)
        out[n++] = m->window[i];
    return n;
}

static void rnd_fill(float *p, size_t n, uint64_t *s)
{
    for (size_t i = 0; i < n; i++) {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        p[i] = (float)((*s >> 40) * (1.0 / 16777216.0) * 2.0 - 1.0);
    }
}

static fb_dit *make_dit(int layers, fb_dit_config *cfg, void **img)
{
    *cfg = tm_config(layers);
    size_t sz;
    *img = tm_build(cfg, "dit.", 1234 + layers, &sz);
    char err[256];
    fb_safetensors *st = fb_st_open_memory(*img, sz, err, sizeof err);
    if (!st) {
        printf("model image: %s\n", err);
        exit(1);
    }
    fb_dit *d;
    if (fb_dit_load(st, "dit.", cfg, &d, err, sizeof err)) {
        printf("load: %s\n", err);
        exit(1);
    }
    fb_st_close(st);
    return d;
}

static fb_dit_text *make_text(const fb_dit *d, fb_kctx *kc, const fb_dit_config *cfg)
{
    uint64_t s = 99;
    float ctx[5 * 16];
    rnd_fill(ctx, (size_t)5 * cfg->text_dim, &s);
    fb_dit_text *t;
    char err[256];
    if (fb_dit_text_prepare(d, kc, ctx, 5, NULL, &t, err, sizeof err)) {
        printf("text: %s\n", err);
        exit(1);
    }
    return t;
}

/* frames [F] of per-frame latents [C, H, W] -> DiT input [C, F, H, W] */
static void gather_latents(float *dst, float *const *frames, int F, int C)
{
    for (int c = 0; c < C; c++)
        for (int f = 0; f < F; f++)
            memcpy(dst + ((size_t)c * F + f) * HL * WL, frames[f] + (size_t)c * HL * WL,
                   HL * WL * sizeof(float));
}

static void part1(fb_kctx *kc, fb_kv_positions mode)
{
    fb_dit_config cfg;
    void *img;
    fb_dit *d = make_dit(1, &cfg, &img);
    fb_dit_text *txt = make_text(d, kc, &cfg);
    const int A = 2, W = 4, C = cfg.in_dim, tpf = (HL / 2) * (WL / 2), chunks = 9;
    char err[256];
    fb_kvpool *pool;
    size_t page = fb_kv_frame_bytes(tpf, cfg.dim);
    fb_kvpool_init(&pool, page * (A + W), page, err, sizeof err);
    fb_kvcache *kv;
    if (fb_kvcache_open(pool, 1, A, W, tpf, cfg.dim, &kv, err, sizeof err)) {
        printf("%s\n", err);
        exit(1);
    }
    vis_model m = {.A = A, .W = W};
    float *lat[MAXF];          /* clean latents of every frame [C, H, W] */
    size_t fsz = (size_t)C * HL * WL;
    if (fb_kvcache_set_latent_floats(kv, fsz, err, sizeof err)) {
        printf("%s\n", err);
        exit(1);
    }
    size_t sb_c = fb_dit_scratch_bytes(&cfg, CH, A + W, tpf);
    size_t sb_r = fb_dit_scratch_bytes(&cfg, A + W + CH, 0, tpf);
    void *scr = malloc(sb_c > sb_r ? sb_c : sb_r);
    size_t sb = sb_c > sb_r ? sb_c : sb_r;
    float *x = malloc(fsz * CH * sizeof(float)), *o1 = malloc(fsz * CH * sizeof(float));
    float *xr = malloc(fsz * (A + W + CH) * sizeof(float));
    float *o2 = malloc(fsz * (A + W + CH) * sizeof(float));
    fb_kv_plan *pl = malloc(sizeof *pl), *ref = calloc(1, sizeof *ref);
    uint64_t s = 7;
    double worst = 0;
    for (int ch = 0; ch < chunks; ch++) {
        for (int f = 0; f < CH; f++) {
            lat[ch * CH + f] = malloc(fsz * sizeof(float));
            rnd_fill(lat[ch * CH + f], fsz, &s);
        }
        fb_kvcache_plan(kv, CH, mode, pl, err, sizeof err);
        gather_latents(x, &lat[ch * CH], CH, C);
        fb_dit_call call = {.x = x, .n_frames = CH, .height = HL, .width = WL, .t = 0.0f,
                            .text = txt, .cache = kv, .plan = pl, .write_kv = 1, .out = o1};
        if (fb_dit_forward(d, kc, scr, sb, &call, err, sizeof err)) {
            printf("forward: %s\n", err);
            exit(1);
        }
        /* from scratch: one uncached pass over visible + chunk at the same positions */
        int64_t vis[MAXF];
        int nv = vis_list(&m, vis);
        float *frames[MAXF];
        ref->n_past = 0;
        ref->n_frames = nv + CH;
        for (int i = 0; i < nv; i++) {
            frames[i] = lat[vis[i]];
            ref->frame_pos[i] = mode == FB_KV_POS_WINDOW ? i : (int)vis[i];
        }
        for (int f = 0; f < CH; f++) {
            frames[nv + f] = lat[ch * CH + f];
            ref->frame_pos[nv + f] = mode == FB_KV_POS_WINDOW ? nv + f : ch * CH + f;
        }
        gather_latents(xr, frames, nv + CH, C);
        fb_dit_call rc = {.x = xr, .n_frames = nv + CH, .height = HL, .width = WL, .t = 0.0f,
                          .text = txt, .plan = ref, .out = o2};
        if (fb_dit_forward(d, kc, scr, sb, &rc, err, sizeof err)) {
            printf("reference forward: %s\n", err);
            exit(1);
        }
        /* compare the chunk's frames: o1 [C, CH, H, W] vs o2 [C, nv+CH, H, W] tail */
        for (int c = 0; c < C; c++)
            for (int f = 0; f < CH; f++) {
                const float *a = o1 + ((size_t)c * CH + f) * HL * WL;
                const float *b = o2 + ((size_t)c * (nv + CH) + nv + f) * HL * WL;
                for (int i = 0; i < HL * WL; i++) {
                    double e = fabs((double)a[i] - b[i]);
                    worst = e > worst ? e : worst;
                    if (!(e <= 1e-5 + 1e-5 * fabs(b[i]))) {
                        if (failures < 10)
                            printf("FAIL part1 %s chunk %d c%d f%d [%d]: %g vs %g\n",
                                   mode == FB_KV_POS_WINDOW ? "window" : "absolute", ch, c, f,
                                   i, a[i], b[i]);
                        failures++;
                    }
                }
            }
        fb_kvcache_commit(kv, pl);
        for (int f = 0; f < CH; f++) {
            vis_push(&m, ch * CH + f);
            /* the storing pass kept the frame's latents in its slot */
            int sl = pl->write_slot[f];
            if (sl >= 0 && memcmp(fb_kvcache_slot_latent(kv, sl), lat[ch * CH + f],
                                  fsz * sizeof(float)) != 0) {
                printf("FAIL part1 chunk %d frame %d: slot latents differ\n", ch, f);
                failures++;
            }
        }
    }
    printf("part 1 (%s positions, 1 layer, %d chunks, evicts from chunk 2): max diff %.3e %s\n",
           mode == FB_KV_POS_WINDOW ? "window" : "absolute", chunks, worst,
           failures ? "FAIL" : "ok");
    for (int i = 0; i < chunks * CH; i++)
        free(lat[i]);
    free(scr), free(x), free(o1), free(xr), free(o2), free(pl), free(ref);
    fb_kvcache_close(kv);
    fb_kvpool_free(pool);
    fb_dit_text_free(txt);
    fb_dit_free(d);
    free(img);
}

static void part2(fb_kctx *kc, fb_kv_positions mode)
{
    fb_dit_config cfg;
    void *img;
    fb_dit *d = make_dit(2, &cfg, &img);
    fb_dit_text *txt = make_text(d, kc, &cfg);
    const int A = 3, W = 6, C = cfg.in_dim, L = cfg.num_layers, tpf = (HL / 2) * (WL / 2);
    const int chunks = 10, pin_at = 5;
    char err[256];
    size_t page = fb_kv_frame_bytes(tpf, cfg.dim);
    size_t ff = (size_t)tpf * cfg.dim;
    fb_kvpool *pool;
    fb_kvpool_init(&pool, page * (size_t)L * (A + W + A + W), page, err, sizeof err);
    fb_kvcache *kv, *rk;
    if (fb_kvcache_open(pool, L, A, W, tpf, cfg.dim, &kv, err, sizeof err) ||
        fb_kvcache_open(pool, L, 0, A + W, tpf, cfg.dim, &rk, err, sizeof err)) {
        printf("%s\n", err);
        exit(1);
    }
    /* archive[frame][layer] = K then V of that frame as committed */
    float *archive = malloc((size_t)chunks * CH * L * 2 * ff * sizeof(float));
    vis_model m = {.A = A, .W = W};
    size_t fsz = (size_t)C * HL * WL;
    size_t sb = fb_dit_scratch_bytes(&cfg, CH, A + W, tpf);
    void *scr = malloc(sb);
    float *x = malloc(fsz * CH * sizeof(float)), *o1 = malloc(fsz * CH * sizeof(float));
    float *o2 = malloc(fsz * CH * sizeof(float));
    fb_kv_plan *pl = malloc(sizeof *pl), *ref = calloc(1, sizeof *ref);
    uint64_t s = 11;
    int diffs = 0;
    for (int ch = 0; ch < chunks; ch++) {
        if (ch == pin_at) {
            if (fb_kvcache_pin(kv, err, sizeof err)) {
                printf("pin: %s\n", err);
                exit(1);
            }
            vis_pin(&m);
        }
        fb_kvcache_plan(kv, CH, mode, pl, err, sizeof err);
        rnd_fill(x, fsz * CH, &s);
        fb_dit_call call = {.x = x, .n_frames = CH, .height = HL, .width = WL, .t = 937.5f,
                            .text = txt, .cache = kv, .plan = pl, .out = o1};
        if (fb_dit_forward(d, kc, scr, sb, &call, err, sizeof err)) {
            printf("forward: %s\n", err);
            exit(1);
        }
        /* reference: the expected frames from the archive, in order, in a fresh cache */
        int64_t vis[MAXF];
        int nv = vis_list(&m, vis);
        fb_kvcache_reset(rk);
        fb_kvcache_info info;
        fb_kvcache_info_get(rk, &info);
        ref->epoch = info.epoch;
        ref->n_past = nv;
        ref->n_frames = CH;
        for (int i = 0; i < nv; i++) {
            for (int l = 0; l < L; l++) {
                const float *src = archive + ((size_t)vis[i] * L + l) * 2 * ff;
                memcpy(fb_kvcache_slot_k(rk, l, i), src, ff * sizeof(float));
                memcpy(fb_kvcache_slot_v(rk, l, i), src + ff, ff * sizeof(float));
            }
            ref->past_slot[i] = i;
            ref->past_frame[i] = vis[i];
            ref->past_pos[i] = mode == FB_KV_POS_WINDOW ? i : (int)vis[i];
        }
        for (int f = 0; f < CH; f++)
            ref->frame_pos[f] = mode == FB_KV_POS_WINDOW ? nv + f : ch * CH + f;
        call.cache = rk;
        call.plan = ref;
        call.out = o2;
        if (fb_dit_forward(d, kc, scr, sb, &call, err, sizeof err)) {
            printf("reference forward: %s\n", err);
            exit(1);
        }
        if (memcmp(o1, o2, fsz * CH * sizeof(float)) != 0) {
            printf("FAIL part2 %s chunk %d: rolled cache and reference differ\n",
                   mode == FB_KV_POS_WINDOW ? "window" : "absolute", ch);
            diffs++;
        }
        /* context pass, commit, archive the new frames' K/V */
        call.cache = kv;
        call.plan = pl;
        call.out = o1;
        call.t = 0.0f;
        call.write_kv = 1;
        if (fb_dit_forward(d, kc, scr, sb, &call, err, sizeof err)) {
            printf("context forward: %s\n", err);
            exit(1);
        }
        fb_kvcache_commit(kv, pl);
        for (int f = 0; f < CH; f++) {
            if (pl->write_slot[f] < 0)
                continue;
            int64_t fr = pl->frame_index[f];
            for (int l = 0; l < L; l++) {
                float *dst = archive + ((size_t)fr * L + l) * 2 * ff;
                memcpy(dst, fb_kvcache_slot_k(kv, l, pl->write_slot[f]), ff * sizeof(float));
                memcpy(dst + ff, fb_kvcache_slot_v(kv, l, pl->write_slot[f]),
                       ff * sizeof(float));
            }
            vis_push(&m, fr);
        }
    }
    failures += diffs;
    printf("part 2 (%s positions, 2 layers, %d chunks, pin at chunk %d): %s\n",
           mode == FB_KV_POS_WINDOW ? "window" : "absolute", chunks, pin_at,
           diffs ? "FAIL" : "bit-identical");
    free(archive), free(scr), free(x), free(o1), free(o2), free(pl), free(ref);
    fb_kvcache_close(kv);
    fb_kvcache_close(rk);
    fb_kvpool_free(pool);
    fb_dit_text_free(txt);
    fb_dit_free(d);
    free(img);
}

int main(void)
{
    char err[256];
    fb_kctx *kc;
    if (fb_kctx_init(&kc, 2, err, sizeof err)) {
        printf("%s\n", err);
        return 1;
    }
    part1(kc, FB_KV_POS_WINDOW);
    part1(kc, FB_KV_POS_ABSOLUTE);
    part2(kc, FB_KV_POS_WINDOW);
    part2(kc, FB_KV_POS_ABSOLUTE);
    fb_kctx_free(kc);
    printf("%d failures\n", failures);
    return failures ? 1 : 0;
}
