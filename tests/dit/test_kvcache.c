/* tests/dit/test_kvcache.c - unit tests of kvcache/: slot order, eviction, positions,
 * pool admission and accounting, pin, reset, anchor and re-cache plans, preconditions.
 *
 * The expected visible set is derived independently of the cache's ring arithmetic: anchors
 * are the first A frames ever committed, the window is the newest W committed frames that are
 * not anchors. Usage: test_kvcache [case]   (no argument: all cases)
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvcache/kvcache.h"

static int failures;

#define CHECK(cond, ...)                                                                      \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                            \
            printf(__VA_ARGS__);                                                              \
            printf("\n");                                                                     \
            failures++;                                                                       \
        }                                                                                     \
    } while (0)

static fb_kvpool *make_pool(int64_t pages, int tpf, int dim)
{
    char err[256];
    fb_kvpool *p;
    size_t page = fb_kv_frame_bytes(tpf, dim);
    if (fb_kvpool_init(&p, (size_t)pages * page, page, err, sizeof err)) {
        printf("pool: %s\n", err);
        exit(1);
    }
    return p;
}

static fb_kvcache *make_cache(fb_kvpool *p, int layers, int A, int W, int tpf, int dim)
{
    char err[256];
    fb_kvcache *c;
    int rc = fb_kvcache_open(p, layers, A, W, tpf, dim, &c, err, sizeof err);
    if (rc) {
        printf("open: %s\n", err);
        exit(1);
    }
    return c;
}

/* Stamps every float of the frame's K and V in every layer with a code of (frame, layer). */
static void stamp(fb_kvcache *c, int slot, int64_t frame, int layers, size_t ff)
{
    for (int l = 0; l < layers; l++) {
        float *k = fb_kvcache_slot_k(c, l, slot), *v = fb_kvcache_slot_v(c, l, slot);
        for (size_t i = 0; i < ff; i++) {
            k[i] = (float)(frame * 16 + l);
            v[i] = -(float)(frame * 16 + l);
        }
    }
}

static int stamped(fb_kvcache *c, int slot, int64_t frame, int layers, size_t ff)
{
    for (int l = 0; l < layers; l++) {
        const float *k = fb_kvcache_slot_k(c, l, slot), *v = fb_kvcache_slot_v(c, l, slot);
        for (size_t i = 0; i < ff; i++)
            if (k[i] != (float)(frame * 16 + l) || v[i] != -(float)(frame * 16 + l))
                return 0;
    }
    return 1;
}

static int plan_equal(const fb_kv_plan *a, const fb_kv_plan *b)
{
    if (a->kind != b->kind || a->positions != b->positions || a->epoch != b->epoch ||
        a->n_past != b->n_past || a->n_frames != b->n_frames)
        return 0;
    for (int i = 0; i < a->n_past; i++)
        if (a->past_slot[i] != b->past_slot[i] || a->past_pos[i] != b->past_pos[i] ||
            a->past_frame[i] != b->past_frame[i])
            return 0;
    for (int f = 0; f < a->n_frames; f++)
        if (a->frame_pos[f] != b->frame_pos[f] || a->frame_index[f] != b->frame_index[f] ||
            a->write_slot[f] != b->write_slot[f])
            return 0;
    return 1;
}

/* Runs n chunks through plan / (write) / commit and checks each plan's visible frames,
 * positions and the stored data against the independent model. */
static void run_stream(int A, int W, int F, int chunks, fb_kv_positions mode, int check_data)
{
    const int layers = 2, tpf = 3, dim = 4;
    size_t ff = (size_t)tpf * dim;
    fb_kvpool *p = make_pool((int64_t)layers * (A + W), tpf, dim);
    fb_kvcache *c = make_cache(p, layers, A, W, tpf, dim);
    fb_kv_plan *pl = malloc(sizeof *pl);
    char err[256];
    int64_t next = 0;
    int max_pos = 0;
    for (int ch = 0; ch < chunks && !failures; ch++) {
        int rc = fb_kvcache_plan(c, F, mode, pl, err, sizeof err);
        CHECK(rc == 0, "plan A%d W%d F%d chunk %d: %s", A, W, F, ch, err);
        if (rc)
            break;
        /* expected visible past: frames [0, min(A, next)) then the newest W non-anchor ones */
        int64_t n_anchor = next < A ? next : A;
        int64_t win_lo = next - W > n_anchor ? next - W : n_anchor;
        int exp_n = (int)(n_anchor + (next - win_lo));
        CHECK(pl->n_past == exp_n, "A%d W%d F%d chunk %d: %d past, expected %d", A, W, F, ch,
              pl->n_past, exp_n);
        for (int i = 0; i < pl->n_past && i < exp_n; i++) {
            int64_t want = i < n_anchor ? i : win_lo + (i - n_anchor);
            CHECK(pl->past_frame[i] == want, "chunk %d past %d is frame %lld, expected %lld",
                  ch, i, (long long)pl->past_frame[i], (long long)want);
            CHECK(fb_kvcache_slot_frame(c, pl->past_slot[i]) == want, "slot metadata");
            int want_pos = mode == FB_KV_POS_WINDOW ? i : (int)want;
            CHECK(pl->past_pos[i] == want_pos, "past pos %d, expected %d", pl->past_pos[i],
                  want_pos);
            if (check_data)
                CHECK(stamped(c, pl->past_slot[i], want, layers, ff),
                      "chunk %d: slot %d lost frame %lld's data", ch, pl->past_slot[i],
                      (long long)want);
        }
        for (int f = 0; f < F; f++) {
            int want_pos = mode == FB_KV_POS_WINDOW ? exp_n + f : (int)(next + f);
            CHECK(pl->frame_pos[f] == want_pos, "frame pos %d, expected %d", pl->frame_pos[f],
                  want_pos);
            CHECK(pl->frame_index[f] == next + f, "frame index");
            if (pl->frame_pos[f] > max_pos)
                max_pos = pl->frame_pos[f];
        }
        /* the plan mutates nothing */
        fb_kv_plan *again = malloc(sizeof *again);
        fb_kvcache_plan(c, F, mode, again, err, sizeof err);
        CHECK(plan_equal(again, pl), "a second plan differs");
        free(again);
        /* a frame is kept iff it will be visible to the next chunk */
        for (int f = 0; f < F; f++) {
            int64_t fr = next + f, nn = next + F;
            int64_t na = nn < A ? nn : A, lo = nn - W > na ? nn - W : na;
            int kept = fr < na || fr >= lo;
            CHECK((pl->write_slot[f] >= 0) == kept, "chunk %d frame %lld kept %d, slot %d", ch,
                  (long long)fr, kept, pl->write_slot[f]);
            if (check_data && pl->write_slot[f] >= 0)
                stamp(c, pl->write_slot[f], fr, layers, ff);
        }
        /* distinct write slots */
        for (int f = 0; f < F; f++)
            for (int g = f + 1; g < F; g++)
                CHECK(pl->write_slot[f] < 0 || pl->write_slot[f] != pl->write_slot[g],
                      "two frames write slot %d", pl->write_slot[f]);
        fb_kvcache_commit(c, pl);
        CHECK(!fb_kvcache_plan_valid(c, pl), "a committed plan still counts as valid");
        next += F;
    }
    if (mode == FB_KV_POS_WINDOW)
        CHECK(max_pos < A + W + F, "window positions reached %d (bound %d)", max_pos,
              A + W + F);
    free(pl);
    fb_kvcache_close(c);
    fb_kvpool_free(p);
}

static void test_order(void)
{
    /* the shapes of the golden runs, partial anchor fills, chunks longer than the window */
    int shapes[][3] = {{3, 3, 3}, {0, 3, 3}, {0, 9, 3}, {3, 6, 3}, {2, 4, 3}, {4, 2, 3},
                       {3, 0, 3}, {1, 1, 1}, {0, 1, 2}, {5, 7, 1}, {2, 5, 4}, {0, 2, 5}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        run_stream(shapes[i][0], shapes[i][1], shapes[i][2], 12, FB_KV_POS_WINDOW, 1);
        run_stream(shapes[i][0], shapes[i][1], shapes[i][2], 12, FB_KV_POS_ABSOLUTE, 1);
    }
    printf("kvcache order/eviction: %s\n", failures ? "FAIL" : "ok");
}

static void test_bounded(void)
{
    /* 20,000 chunks in window mode: positions never pass A + W + F */
    run_stream(3, 6, 3, 20000, FB_KV_POS_WINDOW, 0);
    /* absolute mode stops cleanly at the RoPE table's end */
    fb_kvpool *p = make_pool(9, 1, 4);
    fb_kvcache *c = make_cache(p, 1, 3, 6, 1, 4);
    fb_kv_plan *pl = malloc(sizeof *pl);
    char err[256];
    int rc = 0;
    int64_t chunks = 0;
    while ((rc = fb_kvcache_plan(c, 3, FB_KV_POS_ABSOLUTE, pl, err, sizeof err)) == 0) {
        fb_kvcache_commit(c, pl);
        chunks++;
    }
    CHECK(rc == FB_KV_ERR_RANGE, "absolute mode ended with %d", rc);
    CHECK(chunks == FB_KV_MAX_POS / 3, "absolute mode ran %lld chunks", (long long)chunks);
    printf("  absolute mode end: %s\n", err);
    /* the same cache goes on in window mode */
    CHECK(fb_kvcache_plan(c, 3, FB_KV_POS_WINDOW, pl, err, sizeof err) == 0, "window plan");
    free(pl);
    fb_kvcache_close(c);
    fb_kvpool_free(p);
    printf("kvcache bounded positions: %s\n", failures ? "FAIL" : "ok");
}

static void test_pool(void)
{
    const int tpf = 5, dim = 8;
    size_t page = fb_kv_frame_bytes(tpf, dim);
    CHECK(page == 320, "frame bytes %zu", page);
    char err[256];
    fb_kvpool *p;
    /* a budget that is not a whole number of pages: the remainder is unused */
    CHECK(fb_kvpool_init(&p, 100 * page + 17, page, err, sizeof err) == 0, "%s", err);
    fb_kvpool_stats s;
    fb_kvpool_stats_get(p, &s);
    CHECK(s.pages_total == 100 && s.pages_used == 0 && s.bytes_used == 0 &&
              s.bytes_free == 100 * page && s.caches_open == 0, "fresh stats");
    CHECK(fb_kvpool_pages_for(p, 2, 3, 6, tpf, dim) == 18, "pages_for");
    CHECK(fb_kvpool_pages_for(p, 2, 3, 6, tpf, dim * 2) == -1, "pages_for too big a frame");

    /* several caches share it; the accounting is exact */
    fb_kvcache *a = make_cache(p, 2, 3, 6, tpf, dim);    /* 18 pages */
    fb_kvcache *b = make_cache(p, 3, 0, 10, tpf, dim);   /* 30 pages */
    fb_kvcache *c = make_cache(p, 1, 2, 2, 3, dim);      /* 4 pages (smaller frames fit) */
    fb_kvpool_stats_get(p, &s);
    CHECK(s.pages_used == 52 && s.bytes_used == 52 * page && s.bytes_free == 48 * page &&
              s.caches_open == 3, "used %lld pages", (long long)s.pages_used);
    /* no two slots share memory: stamp everything, then check everything */
    fb_kvcache *all[3] = {a, b, c};
    int lay[3] = {2, 3, 1}, slots[3] = {9, 10, 4};
    size_t ffs[3] = {(size_t)tpf * dim, (size_t)tpf * dim, 3 * (size_t)dim};
    for (int i = 0; i < 3; i++)
        for (int sl = 0; sl < slots[i]; sl++)
            stamp(all[i], sl, i * 100 + sl, lay[i], ffs[i]);
    for (int i = 0; i < 3; i++)
        for (int sl = 0; sl < slots[i]; sl++)
            CHECK(stamped(all[i], sl, i * 100 + sl, lay[i], ffs[i]), "overlap at %d/%d", i, sl);

    /* admission: 48 pages left; a 50-page stream is refused with a clear message */
    fb_kvcache *d = NULL;
    int rc = fb_kvcache_open(p, 5, 4, 6, tpf, dim, &d, err, sizeof err);
    CHECK(rc == FB_KV_ERR_BUDGET && d == NULL, "over-budget open returned %d", rc);
    printf("  refusal: %s\n", err);
    fb_kvpool_stats_get(p, &s);
    CHECK(s.pages_used == 52 && s.caches_open == 3, "a refused open changed the pool");
    /* a frame larger than a page is an argument error, not a budget one */
    CHECK(fb_kvcache_open(p, 1, 1, 1, tpf, dim * 2, &d, err, sizeof err) == FB_KV_ERR_ARG,
          "oversized frame");
    CHECK(fb_kvcache_open(p, 1, 0, 0, tpf, dim, &d, err, sizeof err) == FB_KV_ERR_ARG,
          "no slots");
    /* closing one makes room */
    fb_kvcache_close(b);
    CHECK(fb_kvcache_open(p, 5, 4, 6, tpf, dim, &d, err, sizeof err) == 0, "%s", err);
    fb_kvpool_stats_get(p, &s);
    CHECK(s.pages_used == 72 && s.bytes_used == 72 * page, "after reopen %lld",
          (long long)s.pages_used);
    fb_kvcache_close(a);
    fb_kvcache_close(c);
    fb_kvcache_close(d);
    fb_kvpool_stats_get(p, &s);
    CHECK(s.pages_used == 0 && s.caches_open == 0, "all returned");
    fb_kvpool_free(p);
    /* a page size that is not a multiple of 64 is refused */
    CHECK(fb_kvpool_init(&p, 1000, 100, err, sizeof err) == FB_KV_ERR_ARG, "page size 100");
    /* an empty pool admits nothing */
    CHECK(fb_kvpool_init(&p, 0, 64, err, sizeof err) == 0, "empty pool");
    CHECK(fb_kvcache_open(p, 1, 1, 0, 1, 8, &d, err, sizeof err) == FB_KV_ERR_BUDGET,
          "empty pool admitted a cache");
    fb_kvpool_free(p);
    printf("kvcache pool: %s\n", failures ? "FAIL" : "ok");
}

static void commit_chunk(fb_kvcache *c, int F, int layers, size_t ff)
{
    fb_kv_plan *pl = malloc(sizeof *pl);
    char err[256];
    if (fb_kvcache_plan(c, F, FB_KV_POS_WINDOW, pl, err, sizeof err)) {
        printf("plan: %s\n", err);
        exit(1);
    }
    for (int f = 0; f < F; f++)
        if (pl->write_slot[f] >= 0) {
            stamp(c, pl->write_slot[f], pl->frame_index[f], layers, ff);
            float *lat = fb_kvcache_slot_latent(c, pl->write_slot[f]);
            if (lat)
                lat[0] = (float)pl->frame_index[f];   /* what the DiT's storing pass does */
        }
    fb_kvcache_commit(c, pl);
    free(pl);
}

/* The visible frames (next plan's past) equal want[0..n). */
static void expect_past(fb_kvcache *c, const int64_t *want, int n, int layers, size_t ff,
                        const char *what)
{
    fb_kv_plan *pl = malloc(sizeof *pl);
    char err[256];
    fb_kvcache_plan(c, 1, FB_KV_POS_WINDOW, pl, err, sizeof err);
    CHECK(pl->n_past == n, "%s: %d past frames, expected %d", what, pl->n_past, n);
    for (int i = 0; i < n && i < pl->n_past; i++) {
        CHECK(pl->past_frame[i] == want[i], "%s: past %d is frame %lld, expected %lld", what, i,
              (long long)pl->past_frame[i], (long long)want[i]);
        CHECK(stamped(c, pl->past_slot[i], want[i], layers, ff), "%s: slot %d lacks frame %lld",
              what, pl->past_slot[i], (long long)want[i]);
        const float *lat = fb_kvcache_slot_latent(c, pl->past_slot[i]);
        CHECK(!lat || lat[0] == (float)want[i], "%s: latents of frame %lld not carried", what,
              (long long)want[i]);
        CHECK(pl->past_pos[i] == i, "%s: position", what);
    }
    free(pl);
}

static fb_kvcache *cache_with_latents(fb_kvpool *p, int layers, int A, int W, int tpf, int dim)
{
    fb_kvcache *c = make_cache(p, layers, A, W, tpf, dim);
    char err[256];
    CHECK(fb_kvcache_set_latent_floats(c, 4, err, sizeof err) == 0, "%s", err);
    return c;
}

/* The expected states are those of tools/flipbook_ref/kvcache.py (and its selftest). */
static void test_pin_reset(void)
{
    const int layers = 2, tpf = 2, dim = 8;
    size_t ff = (size_t)tpf * dim;
    char err[256];
    fb_kvcache_info info;
    fb_kvpool *p = make_pool(64, tpf, dim);

    /* A=3, W=6, chunks of 3 */
    fb_kvcache *c = cache_with_latents(p, layers, 3, 6, tpf, dim);
    CHECK(fb_kvcache_pin(c, err, sizeof err) == FB_KV_ERR_STATE, "pin on an empty cache");
    for (int i = 0; i < 4; i++)
        commit_chunk(c, 3, layers, ff);   /* anchors 0-2, window 6-11 */
    CHECK(fb_kvcache_set_latent_floats(c, 4, err, sizeof err) == FB_KV_ERR_STATE,
          "latent size changed on a filled cache");
    fb_kvcache_info_get(c, &info);
    uint64_t ep = info.epoch;
    CHECK(fb_kvcache_pin(c, err, sizeof err) == 0, "%s", err);
    fb_kvcache_info_get(c, &info);
    CHECK(info.epoch != ep && info.anchors_filled == 3 && info.anchors_locked &&
              info.window_filled == 6 && info.next_frame == 12, "after pin: %d %d %d",
          info.anchors_filled, info.anchors_locked, info.window_filled);
    /* the pinned frames are anchors and still in the window */
    int64_t w1[] = {9, 10, 11, 6, 7, 8, 9, 10, 11};
    expect_past(c, w1, 9, layers, ff, "after pin");
    commit_chunk(c, 3, layers, ff);
    commit_chunk(c, 3, layers, ff);
    int64_t w2[] = {9, 10, 11, 12, 13, 14, 15, 16, 17};
    expect_past(c, w2, 9, layers, ff, "two chunks after pin");
    /* reset unlocks: the next chunk becomes the anchor again */
    fb_kvcache_reset(c);
    fb_kvcache_info_get(c, &info);
    CHECK(info.anchors_filled == 0 && !info.anchors_locked && info.window_filled == 0 &&
              info.next_frame == 0 && info.latent_floats == 4, "reset");
    fb_kv_plan *pl = malloc(sizeof *pl);
    fb_kvcache_plan(c, 3, FB_KV_POS_WINDOW, pl, err, sizeof err);
    CHECK(pl->n_past == 0 && pl->write_slot[0] == 0 && pl->write_slot[2] == 2 &&
              pl->frame_pos[0] == 0, "first plan after reset");
    free(pl);
    fb_kvcache_close(c);

    /* the reference's selftest: A=2, W=3, chunks of 2; pin after 3 chunks -> anchors 4, 5 */
    c = cache_with_latents(p, layers, 2, 3, tpf, dim);
    for (int i = 0; i < 3; i++)
        commit_chunk(c, 2, layers, ff);
    fb_kvcache_pin(c, err, sizeof err);
    int64_t w3[] = {4, 5, 3, 4, 5};
    expect_past(c, w3, 5, layers, ff, "selftest pin");
    commit_chunk(c, 2, layers, ff);   /* locked: frames 6, 7 go to the window */
    int64_t w4[] = {4, 5, 5, 6, 7};
    expect_past(c, w4, 5, layers, ff, "selftest pin + 1 chunk");
    fb_kvcache_close(c);

    /* an empty window: nothing newer than the anchors, pin refused */
    c = cache_with_latents(p, layers, 4, 2, tpf, dim);
    commit_chunk(c, 3, layers, ff);   /* anchors 0-2 of 4 */
    CHECK(fb_kvcache_pin(c, err, sizeof err) == FB_KV_ERR_STATE, "pin with an empty window");
    printf("  %s\n", err);
    fb_kvcache_close(c);

    /* fewer frames than anchor slots (after a 1-frame anchor): all of them are pinned */
    c = cache_with_latents(p, layers, 3, 2, tpf, dim);
    fb_kv_plan *ap = malloc(sizeof *ap);
    fb_kvcache_plan_anchor(c, 1, FB_KV_POS_WINDOW, ap, err, sizeof err);
    stamp(c, 0, 0, layers, ff);
    fb_kvcache_slot_latent(c, 0)[0] = 0.0f;
    fb_kvcache_commit(c, ap);         /* anchor 0, locked */
    free(ap);
    commit_chunk(c, 1, layers, ff);   /* the stream's frame 0 -> window */
    CHECK(fb_kvcache_pin(c, err, sizeof err) == 0, "%s", err);
    fb_kvcache_info_get(c, &info);
    CHECK(info.anchors_filled == 2 && info.window_filled == 1, "pin of 2 frames: %d %d",
          info.anchors_filled, info.window_filled);
    int64_t w5[] = {0, 0, 0};
    expect_past(c, w5, 3, layers, ff, "pin of 2 frames");
    fb_kvcache_close(c);

    /* the newest frames straddle anchors and a partly filled window */
    c = cache_with_latents(p, layers, 3, 2, tpf, dim);
    commit_chunk(c, 2, layers, ff);   /* anchors 0, 1 */
    commit_chunk(c, 2, layers, ff);   /* anchor 2, window 3 */
    CHECK(fb_kvcache_pin(c, err, sizeof err) == 0, "%s", err);   /* newest 3 of 0..3 */
    commit_chunk(c, 2, layers, ff);   /* locked: 4, 5 -> window 4, 5 */
    int64_t w7[] = {1, 2, 3, 4, 5};
    expect_past(c, w7, 5, layers, ff, "pin across a partly filled window");
    fb_kvcache_close(c);

    /* the newest frames straddle anchors and window: A=3, W=1 */
    c = cache_with_latents(p, layers, 3, 1, tpf, dim);
    commit_chunk(c, 3, layers, ff);   /* anchors 0-2 */
    commit_chunk(c, 3, layers, ff);   /* window keeps 5 */
    fb_kvcache_pin(c, err, sizeof err);
    int64_t w6[] = {1, 2, 5, 5};
    expect_past(c, w6, 4, layers, ff, "pin across anchors and window");
    fb_kvcache_close(c);

    /* no anchor slots: pin is refused, and says why */
    c = make_cache(p, 1, 0, 4, tpf, dim);
    for (int i = 0; i < 3; i++)
        commit_chunk(c, 2, 1, ff);
    CHECK(fb_kvcache_pin(c, err, sizeof err) == FB_KV_ERR_STATE, "pin without anchors");
    printf("  %s\n", err);
    fb_kvcache_close(c);
    fb_kvpool_free(p);
    printf("kvcache pin/reset: %s\n", failures ? "FAIL" : "ok");
}

static void test_anchor_recache(void)
{
    const int layers = 1, tpf = 2, dim = 8;
    size_t ff = (size_t)tpf * dim;
    fb_kvpool *p = make_pool(32, tpf, dim);
    fb_kv_plan *pl = malloc(sizeof *pl);
    char err[256];
    fb_kvcache_info info;

    /* anchor frames on a fresh cache: more frames than slots keep the first A */
    fb_kvcache *c = cache_with_latents(p, layers, 3, 4, tpf, dim);
    CHECK(fb_kvcache_plan_anchor(c, 4, FB_KV_POS_ABSOLUTE, pl, err, sizeof err) == 0, "%s", err);
    CHECK(pl->n_past == 0 && pl->n_frames == 4 && pl->write_slot[0] == 0 &&
              pl->write_slot[2] == 2 && pl->write_slot[3] == -1 && pl->frame_pos[3] == 3,
          "anchor plan of 4 frames");
    for (int f = 0; f < 3; f++)
        stamp(c, f, f, layers, ff);
    fb_kvcache_commit(c, pl);
    fb_kvcache_info_get(c, &info);
    CHECK(info.anchors_filled == 3 && info.anchors_locked && info.window_filled == 0 &&
              info.next_frame == 0, "after anchor: %d, next %lld", info.anchors_filled,
          (long long)info.next_frame);
    fb_kvcache_close(c);

    /* the reference's selftest: A=2, W=3, chunks of 2; 3 chunks, then anchors from 2 frames:
     * anchors 0, 1 locked, window empty, frame counter unchanged; next chunk -> window 6, 7 */
    c = cache_with_latents(p, layers, 2, 3, tpf, dim);
    for (int i = 0; i < 3; i++)
        commit_chunk(c, 2, layers, ff);
    fb_kvcache_plan_anchor(c, 2, FB_KV_POS_WINDOW, pl, err, sizeof err);
    CHECK(pl->n_past == 0 && pl->frame_pos[0] == 0 && pl->frame_pos[1] == 1, "anchor pass");
    for (int f = 0; f < 2; f++) {
        stamp(c, pl->write_slot[f], f, layers, ff);
        fb_kvcache_slot_latent(c, pl->write_slot[f])[0] = (float)f;
    }
    fb_kvcache_commit(c, pl);
    fb_kvcache_info_get(c, &info);
    CHECK(info.anchors_filled == 2 && info.anchors_locked && info.window_filled == 0 &&
              info.next_frame == 6, "mid-stream anchor: %d %d %lld", info.anchors_filled,
          info.window_filled, (long long)info.next_frame);
    commit_chunk(c, 2, layers, ff);
    int64_t w1[] = {0, 1, 6, 7};
    expect_past(c, w1, 4, layers, ff, "after anchor + 1 chunk");
    fb_kvcache_close(c);

    /* re-cache: A=3, W=4, frames 0-8 -> anchors 0-2, window 5-8 */
    c = cache_with_latents(p, layers, 3, 4, tpf, dim);
    for (int i = 0; i < 3; i++)
        commit_chunk(c, 3, layers, ff);
    CHECK(fb_kvcache_plan_recache(c, 0, FB_KV_POS_WINDOW, pl, err, sizeof err) == 0, "%s", err);
    CHECK(pl->kind == FB_KV_PLAN_RECACHE && pl->n_past == 3 && pl->n_frames == 4,
          "recache %d past %d frames", pl->n_past, pl->n_frames);
    for (int f = 0; f < pl->n_frames && f < 4; f++) {
        CHECK(pl->frame_index[f] == 5 + f, "recache frame %d is %lld", f,
              (long long)pl->frame_index[f]);
        CHECK(fb_kvcache_slot_frame(c, pl->write_slot[f]) == pl->frame_index[f],
              "recache writes frame %lld into another frame's slot",
              (long long)pl->frame_index[f]);
        CHECK(fb_kvcache_slot_latent(c, pl->write_slot[f])[0] == (float)(5 + f),
              "recache input latents of frame %d", 5 + f);
        CHECK(pl->frame_pos[f] == 3 + f, "recache pos");
    }
    fb_kvcache_info_get(c, &info);
    fb_kvcache_commit(c, pl);
    fb_kvcache_info tmp;
    fb_kvcache_info_get(c, &tmp);
    CHECK(tmp.next_frame == info.next_frame && tmp.window_filled == info.window_filled &&
              tmp.epoch == info.epoch + 1, "recache commit changed the frames");
    CHECK(fb_kvcache_plan_recache(c, 0, FB_KV_POS_ABSOLUTE, pl, err, sizeof err) == 0 &&
              pl->past_pos[2] == 2 && pl->frame_pos[0] == 5 && pl->frame_pos[3] == 8,
          "recache absolute positions");
    /* with anchors: every slot, no past */
    CHECK(fb_kvcache_plan_recache(c, 1, FB_KV_POS_ABSOLUTE, pl, err, sizeof err) == 0, "%s",
          err);
    CHECK(pl->n_past == 0 && pl->n_frames == 7 && pl->frame_pos[0] == 0 &&
              pl->frame_pos[3] == 5, "recache with anchors");
    /* nothing to re-run */
    fb_kvcache_reset(c);
    CHECK(fb_kvcache_plan_recache(c, 1, FB_KV_POS_WINDOW, pl, err, sizeof err) ==
              FB_KV_ERR_STATE, "recache on an empty cache");
    /* bad arguments */
    CHECK(fb_kvcache_plan(c, 0, FB_KV_POS_WINDOW, pl, err, sizeof err) == FB_KV_ERR_ARG, "F=0");
    CHECK(fb_kvcache_plan(c, 3, (fb_kv_positions)7, pl, err, sizeof err) == FB_KV_ERR_ARG,
          "mode 7");
    CHECK(fb_kvcache_plan_anchor(c, 0, FB_KV_POS_WINDOW, pl, err, sizeof err) == FB_KV_ERR_ARG,
          "0 anchor frames");
    fb_kvcache_close(c);
    c = make_cache(p, 1, 0, 4, tpf, dim);
    CHECK(fb_kvcache_plan_anchor(c, 1, FB_KV_POS_WINDOW, pl, err, sizeof err) ==
              FB_KV_ERR_STATE, "anchor plan without anchor slots");
    CHECK(fb_kvcache_slot_latent(c, 0) == NULL, "latents not kept by default");
    fb_kvcache_close(c);
    free(pl);
    fb_kvpool_free(p);
    printf("kvcache anchor/recache: %s\n", failures ? "FAIL" : "ok");
}

/* Broken preconditions abort (checked in a child process). */
static int aborts(void (*fn)(void))
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        /* keep the expected message out of the test log's way */
        if (!freopen("/dev/null", "w", stderr))
            _exit(3);
        fn();
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
}

static void stale_commit(void)
{
    fb_kvpool *p = make_pool(2, 1, 16);
    fb_kvcache *c = make_cache(p, 1, 1, 1, 1, 16);
    fb_kv_plan *pl = malloc(sizeof *pl);
    char err[64];
    fb_kvcache_plan(c, 1, FB_KV_POS_WINDOW, pl, err, sizeof err);
    fb_kvcache_reset(c);
    fb_kvcache_commit(c, pl);   /* stale: must abort */
}

static void custom_commit(void)
{
    fb_kvpool *p = make_pool(2, 1, 16);
    fb_kvcache *c = make_cache(p, 1, 1, 1, 1, 16);
    fb_kv_plan *pl = calloc(1, sizeof *pl);
    pl->n_frames = 1;
    fb_kvcache_commit(c, pl);   /* kind 0: must abort */
}

static void free_busy_pool(void)
{
    fb_kvpool *p = make_pool(2, 1, 16);
    make_cache(p, 1, 1, 1, 1, 16);
    fb_kvpool_free(p);          /* a cache is open: must abort */
}

static void test_preconditions(void)
{
    CHECK(aborts(stale_commit), "commit of a stale plan did not abort");
    CHECK(aborts(custom_commit), "commit of a hand-made plan did not abort");
    CHECK(aborts(free_busy_pool), "freeing a pool with an open cache did not abort");
    printf("kvcache preconditions: %s\n", failures ? "FAIL" : "ok");
}

int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : NULL;
    struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {{"order", test_order},           {"bounded", test_bounded},
                 {"pool", test_pool},             {"pin", test_pin_reset},
                 {"anchor", test_anchor_recache}, {"preconditions", test_preconditions}};
    int ran = 0;
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!only || strcmp(only, tests[i].name) == 0) {
            tests[i].fn();
            ran++;
        }
    if (!ran) {
        printf("unknown case %s\n", only);
        return 2;
    }
    printf("%d failures\n", failures);
    return failures ? 1 : 0;
}
