/* The batched DiT forward and the kernel it stands on, against the same work done one call at
 * a time:
 *   linear_rows  fb_linear_rows gives every row segment bit for bit what fb_linear gives that
 *                segment alone, for heights (around the kernels' 6-row tiles and 96-row
 *                blocks), widths (around their 16- and 32-column panels) and depths, on 1, 2
 *                and 3 threads; fb_linear gives the same bits on 1 to 16 threads;
 *   batch        fb_dit_forward_batch over calls that differ in everything a call owns (t,
 *                prompt, cache, past length, frame count, latent size, storing or not, no
 *                plan) gives each call's flow and each stored K/V and latent bit for bit as the
 *                calls one by one; two model sizes (one whose GEMMs merge, one whose small
 *                products run per call), 1 and 2 threads;
 *   refusals     a batch whose scratch is short, or with one bad call, names the problem (and
 *                the call) and has written nothing: no output, no cache slot;
 *   text         fb_dit_text_prepare_into in caller memory equals fb_dit_text_prepare, and a
 *                refused preparation leaves the prompt as it was.
 * Self-contained: random models built in memory (tests/dit/tiny_model.h).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/dit.h"
#include "tests/dit/tiny_model.h"
#include "tests/engine/test_util.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float urand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static void fill(float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = urand();
}

/* ---- fb_linear_rows ----------------------------------------------------------------------- */

static void test_linear_rows(fb_kctx *const *ctx, int n_ctx)
{
    static const int Ns[] = {16, 24, 32, 48, 64, 96, 256};
    static const int Ks[] = {16, 31, 32, 48, 96, 256, 1024};
    static const int hs[] = {1, 2, 3, 7, 8, 15, 16, 17, 25, 32, 37, 64, 75, 76, 128, 200};
    const int nh = (int)(sizeof hs / sizeof hs[0]);
    int max_rows = 6 * 200;
    float *x = malloc(sizeof(float) * (size_t)max_rows * 1024);
    float *W = malloc(sizeof(float) * 256 * 1024), *b = malloc(sizeof(float) * 256);
    float *y = malloc(sizeof(float) * (size_t)max_rows * 256);
    float *r = malloc(sizeof(float) * (size_t)max_rows * 256);
    int cases = 0, bad = 0;
    for (int ni = 0; ni < (int)(sizeof Ns / sizeof Ns[0]); ni++)
        for (int ki = 0; ki < (int)(sizeof Ks / sizeof Ks[0]); ki++) {
            int N = Ns[ni], K = Ks[ki];
            fill(W, (size_t)N * K);
            fill(b, (size_t)N);
            for (int trial = 0; trial < 6; trial++) {
                int seg[6], n_seg = 2 + trial % 5, M = 0;
                for (int s = 0; s < n_seg; s++) {
                    /* equal heights (a batch of one model's chunks) and mixed ones */
                    seg[s] = trial < 3 ? hs[(ni * 7 + ki * 3 + trial * 5) % nh]
                                       : hs[(int)((urand() + 1.0f) * 0.5f * (nh - 1))];
                    M += seg[s];
                }
                fill(x, (size_t)M * K);
                for (int c = 0; c < n_ctx; c++) {
                    fb_linear_rows(ctx[c], x, W, trial & 1 ? b : NULL, y, seg, n_seg, N, K);
                    size_t off = 0;
                    for (int s = 0; s < n_seg; s++) {
                        fb_linear(ctx[c], x + off * K, W, trial & 1 ? b : NULL, r + off * N,
                                  seg[s], N, K);
                        off += (size_t)seg[s];
                    }
                    cases++;
                    if (memcmp(y, r, (size_t)M * N * sizeof(float)) != 0) {
                        if (bad++ < 5)
                            fprintf(stderr, "linear_rows: N %d K %d segments of %d.. rows "
                                    "(%d of them), %d threads: rows differ from fb_linear\n",
                                    N, K, seg[0], n_seg, fb_kctx_n_threads(ctx[c]));
                    }
                }
            }
        }
    CHECK_MSG(bad == 0, "%d of %d segment stacks differ", bad, cases);
    /* no segments, and empty ones among others */
    int empty[3] = {0, 5, 0};
    fill(x, 5 * 48);
    fb_linear_rows(ctx[0], x, W, b, y, empty, 0, 48, 48);
    fb_linear_rows(ctx[0], x, W, b, y, empty, 3, 48, 48);
    fb_linear(ctx[0], x, W, b, r, 5, 48, 48);
    CHECK(memcmp(y, r, 5 * 48 * sizeof(float)) == 0);
    printf("linear_rows: %d stacks compared\n", cases);
    free(x);
    free(W);
    free(b);
    free(y);
    free(r);
}

/* fb_linear gives the same bits on any number of threads, however its tasks cut the product
 * (on 14-16 threads these shapes cut into the smallest blocks). */
static void test_linear_threads(void)
{
    static const int shapes[][3] = {{32, 256, 256}, {16, 1024, 64}, {32, 2048, 32},
                                    {48, 512, 64},  {128, 256, 256}, {1, 1536, 256},
                                    {128, 1024, 256}, {512, 256, 1024}};
    int bad = 0;
    fb_kctx *one = NULL;
    char err[256];
    if (fb_kctx_init(&one, 1, err, sizeof err))
        return;
    for (int t = 2; t <= 16; t += t < 8 ? 1 : 4) {
        fb_kctx *k = NULL;
        if (fb_kctx_init(&k, t, err, sizeof err))
            break;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            float *x = malloc(sizeof(float) * (size_t)M * K), *W = malloc(sizeof(float) * N * K);
            float *y1 = malloc(sizeof(float) * (size_t)M * N);
            float *y2 = malloc(sizeof(float) * (size_t)M * N);
            fill(x, (size_t)M * K);
            fill(W, (size_t)N * K);
            fb_linear(one, x, W, NULL, y1, M, N, K);
            fb_linear(k, x, W, NULL, y2, M, N, K);
            if (memcmp(y1, y2, sizeof(float) * (size_t)M * N)) {
                bad++;
                fprintf(stderr, "fb_linear %dx%dx%d: %d threads differ from one\n", M, N, K, t);
            }
            free(x);
            free(W);
            free(y1);
            free(y2);
        }
        fb_kctx_free(k);
    }
    fb_kctx_free(one);
    CHECK(bad == 0);
}

/* ---- the batched forward ------------------------------------------------------------------ */

typedef struct {
    fb_dit_config cfg;
    void *img;
    fb_dit *d;
} model;

static void model_make(model *m, int dim, int heads, int ffn, uint64_t seed)
{
    m->cfg = tm_config(2);
    m->cfg.dim = dim;
    m->cfg.num_heads = heads;
    m->cfg.ffn_dim = ffn;
    size_t sz;
    m->img = tm_build(&m->cfg, "dit.", seed, &sz);
    char err[256];
    fb_safetensors *st = fb_st_open_memory(m->img, sz, err, sizeof err);
    if (!st || fb_dit_load(st, "dit.", &m->cfg, &m->d, err, sizeof err)) {
        fprintf(stderr, "model: %s\n", err);
        exit(1);
    }
    fb_st_close(st);
}

static void model_free(model *m)
{
    fb_dit_free(m->d);
    free(m->img);
}

static fb_dit_text *make_text(const model *m, fb_kctx *kc, int rows, float bias)
{
    float *ctx = malloc(sizeof(float) * (size_t)rows * m->cfg.text_dim);
    fill(ctx, (size_t)rows * m->cfg.text_dim);
    ctx[0] += bias;
    fb_dit_text *t = NULL;
    char err[256];
    if (fb_dit_text_prepare(m->d, kc, ctx, rows, NULL, &t, err, sizeof err)) {
        fprintf(stderr, "text: %s\n", err);
        exit(1);
    }
    free(ctx);
    return t;
}

#define HL 8
#define WL 8
#define NSTREAM 3
#define NCALL 6

/* Three streams' caches (anchors 1, window 3, latents kept), filled with different numbers of
 * committed frames by context passes, and the plans of the calls the batch makes. Built twice
 * from the same seed: once for the batch, once for the calls alone. */
typedef struct {
    fb_kvpool *pool;
    fb_kvcache *kv[NSTREAM];
    fb_kv_plan *plan;           /* [NCALL] (a plan is 32 KB: heap) */
    float *x[NCALL], *out[NCALL];
    fb_dit_call calls[NCALL];
} world;

static const int call_frames[NCALL] = {2, 2, 3, 1, 2, 2};

static void world_make(world *w, const model *m, fb_kctx *kc, fb_dit_text *const *texts,
                       uint64_t seed)
{
    const fb_dit_config *c = &m->cfg;
    int tpf = (HL / 2) * (WL / 2);
    size_t page = fb_kv_frame_bytes(tpf, c->dim), fl = (size_t)c->in_dim * HL * WL;
    char err[256];
    memset(w, 0, sizeof *w);
    w->plan = calloc(NCALL, sizeof *w->plan);
    if (fb_kvpool_init(&w->pool, page * 2 * 4 * NSTREAM, page, err, sizeof err)) {
        fprintf(stderr, "pool: %s\n", err);
        exit(1);
    }
    size_t sb = fb_dit_scratch_bytes(c, 3, 4, tpf);
    void *scr = malloc(sb);
    float *x = malloc(sizeof(float) * 2 * fl), *o = malloc(sizeof(float) * 2 * fl);
    rng_state = seed;
    for (int s = 0; s < NSTREAM; s++) {
        if (fb_kvcache_open(w->pool, c->num_layers, 1, 3, tpf, c->dim, &w->kv[s], err,
                            sizeof err) ||
            fb_kvcache_set_latent_floats(w->kv[s], fl, err, sizeof err)) {
            fprintf(stderr, "cache: %s\n", err);
            exit(1);
        }
        /* stream s has committed s + 1 chunks of 2 frames: past lengths 2, 4 (rolled), 4 */
        for (int ch = 0; ch <= s; ch++) {
            fb_kv_plan p;
            fb_kvcache_plan(w->kv[s], 2, FB_KV_POS_WINDOW, &p, err, sizeof err);
            fill(x, 2 * fl);
            fb_dit_call call = {.x = x, .n_frames = 2, .height = HL, .width = WL, .t = 0.0f,
                                .text = texts[s], .cache = w->kv[s], .plan = &p, .write_kv = 1,
                                .out = o};
            if (fb_dit_forward(m->d, kc, scr, sb, &call, err, sizeof err)) {
                fprintf(stderr, "fill: %s\n", err);
                exit(1);
            }
            fb_kvcache_commit(w->kv[s], &p);
        }
    }
    /* the calls: 0 denoise on stream 0; 1 the storing pass of stream 1; 2 no plan, 3 frames,
     * another prompt; 3 one frame on stream 2; 4 another latent size (4 x 6), no plan; 5 a
     * second reader of stream 0's cache at another t */
    static const float ts[NCALL] = {937.5f, 0.0f, 500.0f, 833.3f, 250.0f, 625.0f};
    for (int i = 0; i < NCALL; i++) {
        int F = call_frames[i], h = i == 4 ? 4 : HL, wd = i == 4 ? 6 : WL;
        size_t n = (size_t)c->in_dim * F * h * wd;
        w->x[i] = malloc(sizeof(float) * n);
        w->out[i] = malloc(sizeof(float) * n);
        fill(w->x[i], n);
        memset(w->out[i], 0xff, sizeof(float) * n);   /* NaN: a refused call must leave it */
        fb_kvcache *kv = i == 0 || i == 5 ? w->kv[0] : i == 1 ? w->kv[1] : i == 3 ? w->kv[2]
                                                                               : NULL;
        if (kv)
            fb_kvcache_plan(kv, F, FB_KV_POS_WINDOW, &w->plan[i], err, sizeof err);
        fb_dit_call call = {.x = w->x[i], .n_frames = F, .height = h, .width = wd, .t = ts[i],
                            .text = texts[i % NSTREAM], .cache = kv,
                            .plan = kv ? &w->plan[i] : NULL, .write_kv = i == 1,
                            .out = w->out[i]};
        w->calls[i] = call;
    }
    free(scr);
    free(x);
    free(o);
}

static void world_free(world *w)
{
    for (int s = 0; s < NSTREAM; s++)
        fb_kvcache_close(w->kv[s]);
    fb_kvpool_free(w->pool);
    for (int i = 0; i < NCALL; i++) {
        free(w->x[i]);
        free(w->out[i]);
    }
    free(w->plan);
}

static size_t out_floats(const model *m, int i)
{
    return (size_t)m->cfg.out_dim * call_frames[i] * (i == 4 ? 4 * 6 : HL * WL);
}

/* Every slot of every layer of two worlds' caches agree (K, V, latents). */
static int caches_equal(const model *m, world *a, world *b)
{
    int tpf = (HL / 2) * (WL / 2);
    size_t kvf = (size_t)tpf * m->cfg.dim, fl = (size_t)m->cfg.in_dim * HL * WL;
    for (int s = 0; s < NSTREAM; s++)
        for (int slot = 0; slot < 4; slot++) {
            if (memcmp(fb_kvcache_slot_latent(a->kv[s], slot),
                       fb_kvcache_slot_latent(b->kv[s], slot), fl * sizeof(float)))
                return 0;
            for (int l = 0; l < m->cfg.num_layers; l++)
                if (memcmp(fb_kvcache_slot_k(a->kv[s], l, slot),
                           fb_kvcache_slot_k(b->kv[s], l, slot), kvf * sizeof(float)) ||
                    memcmp(fb_kvcache_slot_v(a->kv[s], l, slot),
                           fb_kvcache_slot_v(b->kv[s], l, slot), kvf * sizeof(float)))
                    return 0;
        }
    return 1;
}

static void test_batch(int dim, int heads, int ffn, fb_kctx *kc)
{
    model m;
    model_make(&m, dim, heads, ffn, 7 + (uint64_t)dim);
    fb_dit_text *texts[NSTREAM];
    for (int s = 0; s < NSTREAM; s++)
        texts[s] = make_text(&m, kc, 3 + s, (float)s);
    int tpf = (HL / 2) * (WL / 2);
    char err[512];

    /* the calls one by one */
    world one, bat;
    world_make(&one, &m, kc, texts, 1234);
    size_t sb1 = fb_dit_scratch_bytes(&m.cfg, 3, 4, tpf);
    void *scr1 = malloc(sb1);
    for (int i = 0; i < NCALL; i++) {
        int rc = fb_dit_forward(m.d, kc, scr1, sb1, &one.calls[i], err, sizeof err);
        CHECK_MSG(rc == 0, "call %d alone: %s", i, err);
    }
    fb_kvcache_commit(one.kv[1], &one.plan[1]);

    /* the same calls as one batch, on a world built from the same seed */
    world_make(&bat, &m, kc, texts, 1234);
    size_t sb = fb_dit_scratch_bytes_batch(&m.cfg, NCALL, 3, 4, tpf);
    CHECK(sb > sb1 && fb_dit_scratch_bytes_batch(&m.cfg, 1, 3, 4, tpf) == sb1);
    CHECK(fb_dit_scratch_bytes_batch(&m.cfg, FB_DIT_MAX_BATCH + 1, 3, 4, tpf) == 0);
    void *scr = malloc(sb);

    /* refusals first: nothing may be written */
    int rc = fb_dit_forward_batch(m.d, kc, scr, sb / 2, bat.calls, NCALL, err, sizeof err);
    CHECK_MSG(rc == FB_DIT_ERR_SCRATCH && strstr(err, "batch"), "short scratch: %d %s", rc, err);
    bat.calls[2].n_frames = 0;
    rc = fb_dit_forward_batch(m.d, kc, scr, sb, bat.calls, NCALL, err, sizeof err);
    CHECK_MSG(rc == FB_DIT_ERR_ARG && strstr(err, "call 2 of the batch"), "bad call: %d %s", rc,
              err);
    bat.calls[2].n_frames = call_frames[2];
    CHECK(fb_dit_forward_batch(m.d, kc, scr, sb, bat.calls, 0, err, sizeof err) ==
          FB_DIT_ERR_ARG);
    CHECK(fb_dit_forward_batch(m.d, kc, scr, sb, bat.calls, FB_DIT_MAX_BATCH + 1, err,
                               sizeof err) == FB_DIT_ERR_ARG);
    CHECK(fb_dit_forward_batch(m.d, kc, scr, sb, NULL, 1, err, sizeof err) == FB_DIT_ERR_ARG);
    int untouched = 1;
    for (int i = 0; i < NCALL; i++)
        for (size_t k = 0; k < out_floats(&m, i); k++)
            untouched &= isnan(bat.out[i][k]);
    CHECK_MSG(untouched, "a refused batch wrote an output");
    world ref;
    world_make(&ref, &m, kc, texts, 1234);
    CHECK_MSG(caches_equal(&m, &bat, &ref), "a refused batch wrote a cache slot");
    world_free(&ref);

    rc = fb_dit_forward_batch(m.d, kc, scr, sb, bat.calls, NCALL, err, sizeof err);
    CHECK_MSG(rc == 0, "batch: %s", err);
    fb_kvcache_commit(bat.kv[1], &bat.plan[1]);
    for (int i = 0; i < NCALL; i++) {
        size_t n = out_floats(&m, i);
        double maxd = 0;
        for (size_t k = 0; k < n; k++) {
            double dd = fabs((double)one.out[i][k] - (double)bat.out[i][k]);
            if (!(dd <= maxd))
                maxd = dd;
        }
        CHECK_MSG(memcmp(one.out[i], bat.out[i], n * sizeof(float)) == 0,
                  "dim %d, %d threads, call %d: batched flow differs from the call alone (max "
                  "abs diff %g)", dim, fb_kctx_n_threads(kc), i, maxd);
    }
    CHECK_MSG(caches_equal(&m, &one, &bat), "dim %d: the batch stored other K/V or latents",
              dim);

    /* a batch of one is the single call */
    world w1;
    world_make(&w1, &m, kc, texts, 1234);
    CHECK(fb_dit_forward_batch(m.d, kc, scr, sb, &w1.calls[2], 1, err, sizeof err) == 0);
    CHECK(memcmp(w1.out[2], one.out[2], out_floats(&m, 2) * sizeof(float)) == 0);
    world_free(&w1);

    printf("batch: dim %d, %d threads: %d calls agree bit for bit\n", dim, fb_kctx_n_threads(kc),
           NCALL);
    free(scr);
    free(scr1);
    world_free(&one);
    world_free(&bat);
    for (int s = 0; s < NSTREAM; s++)
        fb_dit_text_free(texts[s]);
    model_free(&m);
}

/* ---- prompt preparation into caller memory ------------------------------------------------ */

static void test_text(fb_kctx *kc)
{
    model m;
    model_make(&m, 64, 4, 128, 5);
    const fb_dit_config *c = &m.cfg;
    float ctx[8 * 16];
    fill(ctx, sizeof ctx / sizeof ctx[0]);
    char err[256];
    fb_dit_text *heap = NULL;
    CHECK(fb_dit_text_prepare(m.d, kc, ctx, 5, NULL, &heap, err, sizeof err) == 0);

    size_t bytes = fb_dit_text_bytes(c), sb = fb_dit_text_scratch_bytes(c);
    void *mem = aligned_alloc(64, (bytes + 63) / 64 * 64);
    void *scr = malloc(sb);
    CHECK(fb_dit_text_init(mem, bytes - 1, c) == NULL);
    CHECK(fb_dit_text_init((char *)mem + 4, bytes - 4, c) == NULL);   /* misaligned */
    fb_dit_text *t = fb_dit_text_init(mem, bytes, c);
    CHECK(t != NULL);
    CHECK(fb_dit_text_prepare_into(m.d, kc, ctx, 5, NULL, t, scr, sb, err, sizeof err) == 0);

    /* the two prompts give the same flow */
    int tpf = 16;
    size_t n = (size_t)c->in_dim * 2 * HL * WL, fsb = fb_dit_scratch_bytes(c, 2, 0, tpf);
    float *x = malloc(n * sizeof(float)), *o1 = malloc(n * sizeof(float)),
          *o2 = malloc(n * sizeof(float));
    void *fs = malloc(fsb);
    fill(x, n);
    fb_dit_call call = {.x = x, .n_frames = 2, .height = HL, .width = WL, .t = 750.0f,
                        .text = heap, .out = o1};
    CHECK(fb_dit_forward(m.d, kc, fs, fsb, &call, err, sizeof err) == 0);
    call.text = t;
    call.out = o2;
    CHECK(fb_dit_forward(m.d, kc, fs, fsb, &call, err, sizeof err) == 0);
    CHECK_MSG(memcmp(o1, o2, n * sizeof(float)) == 0, "placed prompt gives another flow");

    /* refusals leave it as it was: too many rows, short scratch, no context */
    float *before = malloc(bytes);
    memcpy(before, mem, bytes);
    CHECK(fb_dit_text_prepare_into(m.d, kc, ctx, c->text_len + 1, NULL, t, scr, sb, err,
                                   sizeof err) == FB_DIT_ERR_ARG);
    CHECK(fb_dit_text_prepare_into(m.d, kc, ctx, 3, NULL, t, scr, sb - 65, err, sizeof err) ==
          FB_DIT_ERR_SCRATCH);
    CHECK(fb_dit_text_prepare_into(m.d, kc, NULL, 3, NULL, t, scr, sb, err, sizeof err) ==
          FB_DIT_ERR_ARG);
    CHECK(memcmp(before, mem, bytes) == 0);
    /* another model's prompt memory is refused */
    model m2;
    model_make(&m2, 32, 2, 64, 6);
    CHECK(fb_dit_text_prepare_into(m2.d, kc, ctx, 3, NULL, t, scr, sb, err, sizeof err) ==
          FB_DIT_ERR_ARG);
    model_free(&m2);
    fb_dit_text_free(t);   /* placed: ignored */
    CHECK(memcmp(before, mem, bytes) == 0);

    /* re-preparing with fewer rows clears the old rows (they are zeros, not leftovers) */
    CHECK(fb_dit_text_prepare_into(m.d, kc, ctx, 2, NULL, t, scr, sb, err, sizeof err) == 0);
    fb_dit_text *heap2 = NULL;
    CHECK(fb_dit_text_prepare(m.d, kc, ctx, 2, NULL, &heap2, err, sizeof err) == 0);
    call.text = heap2;
    call.out = o1;
    CHECK(fb_dit_forward(m.d, kc, fs, fsb, &call, err, sizeof err) == 0);
    call.text = t;
    call.out = o2;
    CHECK(fb_dit_forward(m.d, kc, fs, fsb, &call, err, sizeof err) == 0);
    CHECK(memcmp(o1, o2, n * sizeof(float)) == 0);
    printf("text: prepared in place equals prepared on the heap\n");
    fb_dit_text_free(heap);
    fb_dit_text_free(heap2);
    free(before);
    free(mem);
    free(scr);
    free(x);
    free(o1);
    free(o2);
    free(fs);
    model_free(&m);
}

int main(void)
{
    fb_kctx *ctx[3] = {NULL, NULL, NULL};
    char err[256];
    for (int i = 0; i < 3; i++)
        if (fb_kctx_init(&ctx[i], i + 1, err, sizeof err)) {
            fprintf(stderr, "context: %s\n", err);
            return 1;
        }
    test_linear_rows(ctx, 3);
    test_linear_threads();
    /* dim 64: the q/k/v/o, FFN and patch GEMMs merge; dim 32: most run per call */
    test_batch(64, 4, 128, ctx[0]);
    test_batch(64, 4, 128, ctx[1]);
    test_batch(32, 2, 64, ctx[1]);
    test_text(ctx[1]);
    for (int i = 0; i < 3; i++)
        fb_kctx_free(ctx[i]);
    TEST_EXIT();
}
