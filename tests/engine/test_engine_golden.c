/* End to end against the reference's dumps (tests/data/golden/README.md), through the public
 * API plus the engine's test hooks (observer, latents, cache slots):
 *   stream     5 chunks of prompt A: the counter noise bit for bit, every step's input and
 *              flow, attended frames and positions, final latents, the cache, and the decoded
 *              RGB frames (decoder.safetensors);
 *   recache    prompt B with recache before chunk 3: the recache pass, the cache after it,
 *              chunks 3-4;
 *   blend      blend to B over 2 chunks from chunk 2: the conditioning of chunks 2-4, latents;
 *   controls   pin after chunk 2, seed 77 from chunk 3, reset after chunk 4;
 *   text       the engine's prompt rules (clean, tokenize, EOS, truncation) and the encoder
 *              output the stream conditions on.
 *
 * usage: test_engine_golden GOLDEN_DIR
 */
#include <cjson/cJSON.h>
#include <stdint.h>

#include "engine/engine.h"
#include "engine/engine_internal.h"
#include "tests/engine/golden_util.h"

#define TOL_STEP 1e-4     /* one DiT forward, per element, absolute (+ relative below) */
#define TOL_CHAIN 2e-4    /* across chunks */

static const char *gdir;
static fb_model *model;
static fb_model_info info;
static size_t LAT;   /* floats per latent frame */
static int F;        /* latent frames per chunk */

static fb_safetensors *open_golden(const char *name)
{
    char path[2048], err[512];
    snprintf(path, sizeof path, "%s/%s", gdir, name);
    fb_safetensors *st = fb_st_open(path, err, sizeof err);
    if (!st) {
        fprintf(stderr, "%s\n", err);
        t_failures++;
    }
    return st;
}

/* ---- what the observer records -------------------------------------------------------- */

#define MAX_CHUNKS 8
#define MAX_STEPS 8
typedef struct {
    int steps;                                /* denoising steps + context pass */
    float x_in[MAX_CHUNKS][MAX_STEPS][512];   /* F * LAT floats (2 * 256) */
    float flow[MAX_CHUNKS][MAX_STEPS][512];
    float t[MAX_CHUNKS][MAX_STEPS];
    int n_past[MAX_CHUNKS];
    int64_t past_frame[MAX_CHUNKS][16];
    int past_pos[MAX_CHUNKS][16], frame_pos[MAX_CHUNKS][16];
    float ctx[MAX_CHUNKS][24 * 32];
    int seen[MAX_CHUNKS];
    /* recache pass */
    int recache_n;
    int64_t recache_frames[16];
    int recache_pos[16];
    float recache_flow[16 * 256];
    float recache_in[16 * 256];
    /* the cache right before chunk `snap_chunk`'s first call */
    int snap_chunk;
    float snap_k[2][8][16 * 48], snap_v[2][8][16 * 48];
    int64_t snap_frame[8];
    fb_stream *s;
} record;

static void on_step(void *ctx, const fb__step_event *ev)
{
    record *r = ctx;
    size_t n = (size_t)ev->n_frames * LAT;
    if (ev->step < 0) {
        r->recache_n = ev->n_frames;
        for (int i = 0; i < ev->n_frames && i < 16; i++) {
            r->recache_frames[i] = ev->plan->frame_index[i];
            r->recache_pos[i] = ev->plan->frame_pos[i];
        }
        if (n <= sizeof r->recache_flow / sizeof(float)) {
            memcpy(r->recache_flow, ev->flow, n * sizeof(float));
            memcpy(r->recache_in, ev->x_in, n * sizeof(float));
        }
        return;
    }
    int c = (int)ev->chunk;
    if (c >= MAX_CHUNKS || ev->step >= MAX_STEPS || n > 512)
        return;
    if (ev->step == 0) {
        r->seen[c] = 1;
        r->n_past[c] = ev->plan->n_past;
        for (int i = 0; i < ev->plan->n_past && i < 16; i++) {
            r->past_frame[c][i] = ev->plan->past_frame[i];
            r->past_pos[c][i] = ev->plan->past_pos[i];
        }
        for (int i = 0; i < ev->plan->n_frames && i < 16; i++)
            r->frame_pos[c][i] = ev->plan->frame_pos[i];
        memcpy(r->ctx[c], ev->ctx, 24 * 32 * sizeof(float));
        if (c == r->snap_chunk) {
            fb_kvcache *kv = r->s->kv;
            fb_kvcache_info ki;
            fb_kvcache_info_get(kv, &ki);
            for (int sl = 0; sl < ki.n_anchor + ki.n_window && sl < 8; sl++) {
                r->snap_frame[sl] = fb_kvcache_slot_frame(kv, sl);
                for (int l = 0; l < 2; l++) {
                    memcpy(r->snap_k[l][sl], fb_kvcache_slot_k(kv, l, sl), 16 * 48 * 4);
                    memcpy(r->snap_v[l][sl], fb_kvcache_slot_v(kv, l, sl), 16 * 48 * 4);
                }
            }
        }
    }
    memcpy(r->x_in[c][ev->step], ev->x_in, n * sizeof(float));
    memcpy(r->flow[c][ev->step], ev->flow, n * sizeof(float));
    r->t[c][ev->step] = ev->t;
    r->steps = ev->step + 1 > r->steps ? ev->step + 1 : r->steps;
}

/* Runs chunks [from, to) of s; appends latents (and RGB when rgb_all) to the outputs. */
static int run_chunks(fb_stream *s, int from, int to, float *lat_out, uint8_t *rgb_all,
                      int *frames_total)
{
    uint8_t *rgb = malloc(info.chunk_rgb_bytes);
    int ok = 1;
    for (int c = from; c < to; c++) {
        int n = 0;
        fb_chunk_info ci;
        fb_status st = fb_stream_next_chunk(s, rgb, info.chunk_rgb_bytes, &n, &ci);
        CHECK_MSG(st == FB_OK, "chunk %d: %s", c, fb_stream_errmsg(s));
        if (st != FB_OK) {
            ok = 0;
            break;
        }
        if (lat_out)
            memcpy(lat_out + (size_t)c * F * LAT, fb__stream_last_latents(s),
                   (size_t)F * LAT * sizeof(float));
        if (rgb_all) {
            memcpy(rgb_all + (size_t)*frames_total * info.frame_bytes, rgb,
                   (size_t)n * info.frame_bytes);
            *frames_total += n;
        }
    }
    free(rgb);
    return ok;
}

static void compare_ints(const char *what, const int64_t *want, int n_want, const int64_t *got,
                         int n_got)
{
    int same = n_want == n_got;
    for (int i = 0; same && i < n_want; i++)
        same = want[i] == got[i];
    if (!same) {
        fprintf(stderr, "%s: got [", what);
        for (int i = 0; i < n_got; i++)
            fprintf(stderr, "%s%lld", i ? " " : "", (long long)got[i]);
        fprintf(stderr, "], want [");
        for (int i = 0; i < n_want; i++)
            fprintf(stderr, "%s%lld", i ? " " : "", (long long)want[i]);
        fprintf(stderr, "]\n");
        t_failures++;
    }
}

/* Compares attended frames and positions of chunk c with the golden ones. */
static void check_plan(const fb_safetensors *g, const record *r, int c, const char *tag)
{
    char name[128], what[160];
    int n;
    snprintf(name, sizeof name, "inter.c%d.past_frames", c);
    int64_t *pf = g_ints(g, name, &n);
    if (pf) {
        snprintf(what, sizeof what, "%s chunk %d past frames", tag, c);
        compare_ints(what, pf, n, r->past_frame[c], r->n_past[c]);
        free(pf);
    }
    snprintf(name, sizeof name, "inter.c%d.positions", c);
    int64_t *pos = g_ints(g, name, &n);
    if (pos) {
        int64_t got[32];
        int k = 0;
        for (int i = 0; i < r->n_past[c] && k < 32; i++)
            got[k++] = r->past_pos[c][i];
        for (int i = 0; i < F && k < 32; i++)
            got[k++] = r->frame_pos[c][i];
        snprintf(what, sizeof what, "%s chunk %d positions", tag, c);
        compare_ints(what, pos, n, got, k);
        free(pos);
    }
}

/* Compares every step of chunk c (x_in, flow, context-pass flow) when the dump has them. */
static void check_steps(const fb_safetensors *g, const record *r, int c, const char *tag)
{
    char name[128], what[160];
    size_t n = (size_t)F * LAT;
    for (int k = 0; k < info.steps; k++) {
        snprintf(name, sizeof name, "inter.c%d.s%d.x_in", c, k);
        if (!fb_st_find(g, name))
            return;
        float *x = g_floats(g, name, (int64_t)n);
        snprintf(name, sizeof name, "inter.c%d.s%d.flow", c, k);
        float *v = g_floats(g, name, (int64_t)n);
        if (x) {
            snprintf(what, sizeof what, "%s c%d s%d x_in", tag, c, k);
            g_compare(what, r->x_in[c][k], x, n, TOL_CHAIN, 1e-4);
        }
        if (v) {
            snprintf(what, sizeof what, "%s c%d s%d flow", tag, c, k);
            g_compare(what, r->flow[c][k], v, n, TOL_CHAIN, 1e-4);
        }
        free(x);
        free(v);
    }
    snprintf(name, sizeof name, "inter.c%d.ctx.flow", c);
    float *cf = g_floats(g, name, (int64_t)n);
    if (cf) {
        snprintf(what, sizeof what, "%s c%d context-pass flow", tag, c);
        g_compare(what, r->flow[c][info.steps], cf, n, TOL_CHAIN, 1e-4);
        free(cf);
    }
}

/* Compares the golden cache dump <prefix>.l<l>.k/.v (slots in slot order) with the live
 * cache of s, matching slots by frame: anchors first, then the window oldest first. */
static void check_kv(const fb_safetensors *g, fb_stream *s, const char *prefix, int layers)
{
    char name[160];
    int n;
    snprintf(name, sizeof name, "%s.frames", prefix);
    int64_t *frames = g_ints(g, name, &n);
    snprintf(name, sizeof name, "%s.n_anchor", prefix);
    int na_n;
    int64_t *na = g_ints(g, name, &na_n);
    if (!frames || !na) {
        free(frames);
        free(na);
        return;
    }
    fb_kvcache_info ki;
    fb_kvcache_info_get(s->kv, &ki);
    /* live slot order: filled anchors, then window frames by ascending frame index */
    int64_t live[16];
    int slot_of[16], k = 0;
    for (int sl = 0; sl < ki.n_anchor; sl++)
        if (fb_kvcache_slot_frame(s->kv, sl) >= 0 && k < 16) {
            live[k] = fb_kvcache_slot_frame(s->kv, sl);
            slot_of[k++] = sl;
        }
    int first_window = k;
    for (int sl = ki.n_anchor; sl < ki.n_anchor + ki.n_window; sl++)
        if (fb_kvcache_slot_frame(s->kv, sl) >= 0 && k < 16) {
            live[k] = fb_kvcache_slot_frame(s->kv, sl);
            slot_of[k++] = sl;
        }
    for (int i = first_window; i < k; i++)   /* sort the window part by frame */
        for (int j = i + 1; j < k; j++)
            if (live[j] < live[i]) {
                int64_t tf = live[i]; live[i] = live[j]; live[j] = tf;
                int ts = slot_of[i]; slot_of[i] = slot_of[j]; slot_of[j] = ts;
            }
    char what[200];
    snprintf(what, sizeof what, "%s frames (slot order)", prefix);
    compare_ints(what, frames, n, live, k);
    CHECK_MSG(first_window == (int)na[0], "%s: %d anchors live, golden %lld", prefix,
              first_window, (long long)na[0]);
    if (n == k) {
        size_t per = (size_t)16 * 48;
        for (int l = 0; l < layers; l++) {
            for (int kv = 0; kv < 2; kv++) {
                snprintf(name, sizeof name, "%s.l%d.%c", prefix, l, kv ? 'v' : 'k');
                if (!fb_st_find(g, name))
                    continue;
                float *want = g_floats(g, name, (int64_t)(n * per));
                if (!want)
                    continue;
                for (int i = 0; i < n; i++) {
                    const float *got = kv ? fb_kvcache_slot_v(s->kv, l, slot_of[i])
                                          : fb_kvcache_slot_k(s->kv, l, slot_of[i]);
                    snprintf(what, sizeof what, "%s layer %d %c of frame %lld", prefix, l,
                             kv ? 'v' : 'k', (long long)frames[i]);
                    g_compare(what, got, want + (size_t)i * per, per, TOL_CHAIN, 1e-4);
                }
                free(want);
            }
        }
    }
    free(frames);
    free(na);
}

static fb_stream *open_stream(const char *prompt, uint64_t seed, record *r)
{
    fb_stream *s = NULL;
    char err[512];
    fb_status st = fb_stream_open(model, prompt, seed, &s, err, sizeof err);
    CHECK_MSG(st == FB_OK, "open: %s", err);
    if (st != FB_OK)
        return NULL;
    memset(r, 0, sizeof *r);
    r->snap_chunk = -1;
    r->s = s;
    fb__stream_set_observer(s, on_step, r);
    return s;
}

static uint64_t md_u64(const fb_safetensors *g, const char *key)
{
    const char *v = fb_st_metadata(g, key);
    CHECK_MSG(v != NULL, "metadata %s missing", key);
    return v ? strtoull(v, NULL, 10) : 0;
}

/* ---- cases ------------------------------------------------------------------------------ */

static record rec;   /* large: static */

static void case_stream(void)
{
    fb_safetensors *g = open_golden("stream.safetensors");
    fb_safetensors *gd = open_golden("decoder.safetensors");
    if (!g || !gd) {
        fb_st_close(g);
        fb_st_close(gd);
        return;
    }
    const char *prompt = fb_st_metadata(g, "prompt");
    uint64_t seed = md_u64(g, "seed");
    fb_stream *s = open_stream(prompt, seed, &rec);
    if (!s)
        return;
    enum { CH = 5 };
    static float lat[CH * 2 * 256];
    static uint8_t rgb_all[64 * 64 * 3 * 40];
    int frames = 0;
    run_chunks(s, 0, CH, lat, rgb_all, &frames);

    /* the conditioning: encoder output of the prompt, zero rows after its 18 tokens */
    float *ctx = g_floats(g, "input.context", 18 * 32);
    if (ctx) {
        g_compare("stream context (umT5 output)", rec.ctx[0], ctx, 18 * 32, 1e-5, 1e-5);
        int zero = 1;
        for (int i = 18 * 32; i < 24 * 32; i++)
            zero &= rec.ctx[0][i] == 0.0f;
        CHECK_MSG(zero, "context rows past the tokens must be zero");
        free(ctx);
    }
    for (int c = 0; c < CH; c++) {
        char name[64];
        /* the first step's input is the counter noise itself: bit-identical */
        snprintf(name, sizeof name, "input.c%d.noise.d0", c);
        float *d0 = g_floats(g, name, (int64_t)F * LAT);
        if (d0) {
            CHECK_MSG(memcmp(d0, rec.x_in[c][0], (size_t)F * LAT * 4) == 0,
                      "chunk %d: initial noise differs from the reference's counter RNG", c);
            free(d0);
        }
        for (int k = 0; k < info.steps; k++)
            CHECK(rec.t[c][k] == (k == 0 ? 1000.0f : k == 1 ? 937.5f : k == 2 ? 833.33331298828125f : 625.0f));
        CHECK(rec.t[c][info.steps] == 0.0f);
        check_plan(g, &rec, c, "stream");
        check_steps(g, &rec, c, "stream");
    }
    float *want = g_floats(g, "output.latents", CH * 2 * 256);
    if (want) {
        g_compare("stream latents", lat, want, CH * 2 * 256, TOL_CHAIN, 1e-4);
        free(want);
    }
    check_kv(g, s, "output.kv", 2);

    /* decoded frames: 5 + 4 * 8 = 37 */
    CHECK_MSG(frames == 37, "decoded %d frames, want 37", frames);
    const fb_st_tensor *fu = fb_st_find(gd, "output.frames_u8");
    CHECK(fu && fu->dtype == FB_DT_U8 && fu->numel == 37 * 3 * 64 * 64);
    if (fu && fu->numel == 37 * 3 * 64 * 64 && frames == 37) {
        const uint8_t *w = fu->data;
        int worst = 0;
        long off1 = 0;
        for (int f = 0; f < 37; f++)
            for (int ch = 0; ch < 3; ch++)
                for (int p = 0; p < 64 * 64; p++) {
                    int a = rgb_all[(size_t)f * 64 * 64 * 3 + (size_t)p * 3 + ch];
                    int b = w[((size_t)f * 3 + ch) * 64 * 64 + p];
                    int d = abs(a - b);
                    worst = d > worst ? d : worst;
                    off1 += d > 0;
                }
        CHECK_MSG(worst <= 1, "decoded RGB differs by up to %d (want <= 1)", worst);
        printf("stream: 37 decoded frames within %d of the reference (%ld values off by 1)\n",
               worst, off1);
    }
    fb_stream_free(s);
    fb_st_close(g);
    fb_st_close(gd);
}

static void case_recache(void)
{
    fb_safetensors *g = open_golden("switch_recache.safetensors");
    if (!g)
        return;
    fb_stream *s = open_stream(fb_st_metadata(g, "prompt_a"), md_u64(g, "seed"), &rec);
    if (!s)
        return;
    static float lat[5 * 2 * 256];
    int frames = 0;
    run_chunks(s, 0, 3, lat, NULL, &frames);
    check_kv(g, s, "inter.before.kv", 2);
    CHECK(fb_stream_set_prompt(s, fb_st_metadata(g, "prompt_b"), FB_TRANSITION_RECACHE, 0) ==
          FB_OK);
    rec.snap_chunk = 3;
    run_chunks(s, 3, 5, lat, NULL, &frames);
    /* the recache pass */
    CHECK_MSG(rec.recache_n == 3, "recache ran on %d frames, want 3", rec.recache_n);
    int n;
    int64_t *rf = g_ints(g, "inter.recache.frames", &n);
    if (rf) {
        compare_ints("recache frames", rf, n, rec.recache_frames, rec.recache_n);
        free(rf);
    }
    int64_t *rp = g_ints(g, "inter.recache.positions", &n);
    if (rp) {
        int64_t got[16];
        for (int i = 0; i < rec.recache_n; i++)
            got[i] = rec.recache_pos[i];
        compare_ints("recache positions", rp, n, got, rec.recache_n);
        free(rp);
    }
    float *rl = g_floats(g, "inter.recache.latents", 3 * 256);
    if (rl) {
        g_compare("recache input latents", rec.recache_in, rl, 3 * 256, TOL_CHAIN, 1e-4);
        free(rl);
    }
    float *rflow = g_floats(g, "inter.recache.flow", 3 * 256);
    if (rflow) {
        g_compare("recache flow", rec.recache_flow, rflow, 3 * 256, TOL_CHAIN, 1e-4);
        free(rflow);
    }
    /* cache right after the recache (snapshotted before chunk 3's first call) */
    int64_t *af = g_ints(g, "inter.after.kv.frames", &n);
    if (af) {
        /* slots 0..1 anchors, window slots hold frames 3,4,5 in some ring order */
        for (int i = 0; i < n; i++) {
            int sl = -1;
            for (int k = (i < 2 ? 0 : 2); k < (i < 2 ? 2 : 8) && sl < 0; k++)
                if (rec.snap_frame[k] == af[i])
                    sl = k;
            CHECK_MSG(sl >= 0, "frame %lld not in the cache after the recache", (long long)af[i]);
            if (sl < 0)
                continue;
            for (int l = 0; l < 2; l++) {
                char name[64], what[96];
                snprintf(name, sizeof name, "inter.after.kv.l%d.k", l);
                float *k = g_floats(g, name, (int64_t)n * 768);
                snprintf(name, sizeof name, "inter.after.kv.l%d.v", l);
                float *v = g_floats(g, name, (int64_t)n * 768);
                snprintf(what, sizeof what, "after recache: layer %d k of frame %lld", l,
                         (long long)af[i]);
                if (k)
                    g_compare(what, rec.snap_k[l][sl], k + (size_t)i * 768, 768, TOL_CHAIN, 1e-4);
                what[strlen("after recache: layer 0 ")] = 'v';
                if (v)
                    g_compare(what, rec.snap_v[l][sl], v + (size_t)i * 768, 768, TOL_CHAIN, 1e-4);
                free(k);
                free(v);
            }
        }
        free(af);
    }
    for (int c = 3; c < 5; c++) {
        check_plan(g, &rec, c, "recache");
        check_steps(g, &rec, c, "recache");
    }
    float *want = g_floats(g, "output.latents", 5 * 2 * 256);
    if (want) {
        g_compare("recache latents", lat, want, 5 * 2 * 256, TOL_CHAIN, 1e-4);
        free(want);
    }
    float *cb = g_floats(g, "input.context_b", 18 * 32);
    if (cb) {
        g_compare("context after the switch", rec.ctx[3], cb, 18 * 32, 1e-5, 1e-5);
        free(cb);
    }
    fb_stream_free(s);
    fb_st_close(g);
}

static void case_blend(void)
{
    fb_safetensors *g = open_golden("switch_blend.safetensors");
    if (!g)
        return;
    fb_stream *s = open_stream(fb_st_metadata(g, "prompt_a"), md_u64(g, "seed"), &rec);
    if (!s)
        return;
    static float lat[5 * 2 * 256];
    int frames = 0;
    run_chunks(s, 0, 2, lat, NULL, &frames);
    int nb = (int)md_u64(g, "blend_chunks");
    CHECK(fb_stream_set_prompt(s, fb_st_metadata(g, "prompt_b"), FB_TRANSITION_BLEND, nb) ==
          FB_OK);
    run_chunks(s, 2, 5, lat, NULL, &frames);
    for (int c = 2; c < 5; c++) {
        char name[64], what[64];
        snprintf(name, sizeof name, "inter.c%d.context", c);
        float *ctx = g_floats(g, name, 24 * 32);
        if (ctx) {
            snprintf(what, sizeof what, "blend chunk %d context", c);
            g_compare(what, rec.ctx[c], ctx, 24 * 32, 1e-5, 1e-5);
            free(ctx);
        }
        check_plan(g, &rec, c, "blend");
        check_steps(g, &rec, c, "blend");
    }
    float *want = g_floats(g, "output.latents", 5 * 2 * 256);
    if (want) {
        g_compare("blend latents", lat, want, 5 * 2 * 256, TOL_CHAIN, 1e-4);
        free(want);
    }
    fb_stream_free(s);
    fb_st_close(g);
}

static void case_controls(void)
{
    fb_safetensors *g = open_golden("controls.safetensors");
    if (!g)
        return;
    fb_stream *s = open_stream(fb_st_metadata(g, "prompt"), md_u64(g, "seed"), &rec);
    if (!s)
        return;
    static float lat[6 * 2 * 256];
    int frames = 0;
    run_chunks(s, 0, 3, lat, NULL, &frames);
    CHECK(fb_stream_pin_anchor(s) == FB_OK);
    fb_kvcache_info ki;
    fb_kvcache_info_get(s->kv, &ki);
    /* pinned frames 4, 5 are copied into the anchors; the window keeps them too */
    CHECK(ki.window_filled == 3 && ki.anchors_locked);
    check_kv(g, s, "inter.pinned.kv", 1);
    CHECK(fb_stream_set_seed(s, md_u64(g, "seed_after_chunk2")) == FB_OK);
    run_chunks(s, 3, 5, lat, NULL, &frames);
    for (int c = 3; c < 5; c++) {
        int n_pf;
        char name[64], what[64];
        snprintf(name, sizeof name, "inter.c%d.past_frames", c);
        int64_t *pf = g_ints(g, name, &n_pf);
        if (pf) {
            snprintf(what, sizeof what, "controls chunk %d past frames", c);
            compare_ints(what, pf, n_pf, rec.past_frame[c], rec.n_past[c]);
            free(pf);
        }
    }
    CHECK(fb_stream_reset(s) == FB_OK);
    CHECK(fb_stream_chunk_index(s) == 0);
    /* after the reset the chunk index restarts: store it as the 6th chunk */
    memset(&rec.seen, 0, sizeof rec.seen);
    uint8_t *rgb = malloc(info.chunk_rgb_bytes);
    int n = 0;
    fb_chunk_info ci;
    CHECK(fb_stream_next_chunk(s, rgb, info.chunk_rgb_bytes, &n, &ci) == FB_OK);
    CHECK(ci.chunk == 0 && ci.first_frame == 0 && ci.first_latent == 0 && ci.seed == 77);
    CHECK(n == info.first_chunk_frames);
    memcpy(lat + 5 * 2 * 256, fb__stream_last_latents(s), 2 * 256 * sizeof(float));
    free(rgb);
    float *want = g_floats(g, "output.latents", 6 * 2 * 256);
    if (want) {
        g_compare("controls chunks 0-2 (before the pin)", lat, want, 3 * 2 * 256, TOL_CHAIN,
                  1e-4);
        g_compare("controls chunk after the reset (seed 77)", lat + 5 * 512, want + 5 * 512,
                  512, TOL_CHAIN, 1e-4);
        g_compare("controls chunks 3-4 (pinned anchors, seed 77)", lat + 3 * 512,
                  want + 3 * 512, 2 * 512, TOL_CHAIN, 1e-4);
        free(want);
    }
    fb_stream_free(s);
    fb_st_close(g);
}

static void case_text(void)
{
    fb_safetensors *g = open_golden("text_encoder.safetensors");
    if (!g)
        return;
    const char *pj = fb_st_metadata(g, "prompts");
    cJSON *arr = pj ? cJSON_Parse(pj) : NULL;
    CHECK_MSG(cJSON_IsArray(arr) && cJSON_GetArraySize(arr) == 4, "metadata prompts");
    for (int p = 0; arr && p < cJSON_GetArraySize(arr) && p < 4; p++) {
        const char *prompt = cJSON_GetArrayItem(arr, p)->valuestring;
        char name[64];
        snprintf(name, sizeof name, "input.p%d.ids", p);
        int n_want;
        int64_t *want = g_ints(g, name, &n_want);
        int32_t *ids = NULL;
        int n = 0;
        char err[512];
        fb_status st = fb__tokenize(model, prompt, &ids, &n, err, sizeof err);
        CHECK_MSG(st == FB_OK, "tokenize prompt %d: %s", p, err);
        if (want && st == FB_OK) {
            int64_t got[64];
            for (int i = 0; i < n && i < 64; i++)
                got[i] = ids[i];
            snprintf(name, sizeof name, "prompt %d token ids", p);
            compare_ints(name, want, n_want, got, n);
        }
        free(ids);
        free(want);
        int nt = 0, nd = 0;
        CHECK(fb_model_prompt_tokens(model, prompt, &nt, &nd) == FB_OK);
        CHECK_MSG(nt == n_want && (p == 3 ? nd > 0 : nd == 0), "prompt %d: %d tokens, %d cut", p,
                  nt, nd);
        char words[256];
        int nu = -1;
        CHECK(fb_model_unknown_words(model, prompt, words, sizeof words, &nu) == FB_OK);
        if (p == 2)
            CHECK_MSG(nu > 0 && words[0], "prompt 2 has characters the vocabulary lacks");
        if (p == 0)
            CHECK_MSG(nu == 0 && words[0] == '\0', "prompt 0: unexpected unknown words '%s'",
                      words);
    }
    /* the truncated prompt through a stream: its conditioning is the encoder's output */
    if (arr && cJSON_GetArraySize(arr) == 4) {
        fb_stream *s = open_stream(cJSON_GetArrayItem(arr, 3)->valuestring, 1, &rec);
        float *want = g_floats(g, "output.p3.hidden", 24 * 32);
        if (s && want) {
            int frames = 0;
            run_chunks(s, 0, 1, NULL, NULL, &frames);
            g_compare("stream conditioning of a truncated prompt", rec.ctx[0], want, 24 * 32,
                      1e-5, 1e-5);
        }
        free(want);
        fb_stream_free(s);
    }
    cJSON_Delete(arr);
    fb_st_close(g);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s GOLDEN_DIR\n", argv[0]);
        return 2;
    }
    gdir = argv[1];
    char path[2048], err[1024];
    snprintf(path, sizeof path, "%s/tiny_model.safetensors", gdir);
    fb_model_params mp = fb_model_default_params();
    mp.n_threads = 2;
    mp.max_streams = 2;
    fb_status st = fb_model_load(path, &mp, &model, err, sizeof err);
    CHECK_MSG(st == FB_OK, "load: %s", err);
    if (st != FB_OK)
        TEST_EXIT();
    fb_model_get_info(model, &info);
    CHECK(info.width == 64 && info.height == 64 && info.fps == 16.0);
    CHECK(info.latent_frames_per_chunk == 2 && info.anchor_frames == 2 && info.window_frames == 3);
    CHECK(info.frames_per_chunk == 8 && info.first_chunk_frames == 5);
    CHECK(info.steps == 4 && !info.absolute_positions && info.max_chunks == 0);
    CHECK(info.chunk_rgb_bytes == 8 * 64 * 64 * 3);
    CHECK(strcmp(info.name, "golden-tiny") == 0);
    F = info.latent_frames_per_chunk;
    LAT = (size_t)info.latent_channels * info.latent_height * info.latent_width;

    case_stream();
    case_recache();
    case_blend();
    case_controls();
    case_text();
    fb_model_free(model);
    TEST_EXIT();
}
