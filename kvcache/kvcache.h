/* kvcache/kvcache.h - the rolling self-attention KV cache: anchor slots + a window ring per
 * stream, stored in a paged pool shared by all streams.
 *
 * What it holds. Per stream and DiT layer, latent-frame slots, each holding the keys and values
 * of one latent frame (tokens_per_frame x dim floats each). Keys are stored BEFORE RoPE; the
 * DiT rotates them when it attends, at the positions the plan gives. Slots 0..A-1 are anchors
 * (the "sink"): never evicted. Slots A..A+W-1 form a ring holding the W most recent frames.
 *
 * Plan / commit. Nothing changes the cache's metadata except the mutators below. The engine
 * asks for a plan (fb_kvcache_plan*: may fail, mutates nothing): it lists the past frames the
 * next call attends to, in attention order, with their RoPE temporal positions, and the slot
 * each frame of the call will be written to. The DiT reads the past slots and, on the pass that
 * stores (the t = 0 context pass), writes the chunk's K/V into the planned slots. Then
 * fb_kvcache_commit() makes the written frames visible (and evicts). Denoising calls use the
 * same plan and never write, so the chunk always attends to itself plus the committed past.
 *
 * Positions. FB_KV_POS_ABSOLUTE: each frame keeps its absolute latent-frame index (upstream
 * Self-Forcing; bounded by FB_KV_MAX_POS, after which plan fails with FB_KV_ERR_RANGE).
 * FB_KV_POS_WINDOW: slot order: filled anchors 0..a-1, window frames in time order, then the
 * call's frames; bounded by A + W + chunk forever.
 *
 * Filling. While anchors are not full, the first committed frames become the anchors (the first
 * chunk is the anchor by default); then frames go into the ring, evicting the oldest. A chunk
 * longer than the free space keeps only its newest frames. After a pin or an anchor plan the
 * anchors are locked: generated frames never fill anchor slots again (until reset). The rules
 * are those of the Python reference (tools/flipbook_ref/kvcache.py); the two must agree.
 *
 * Storage. A fb_kvpool has a byte budget split into pages of page_bytes (normally one layer's
 * K+V of one frame: fb_kv_frame_bytes()). fb_kvcache_open() takes all pages it will ever need
 * (layers x (A + W)) at once, so admission is decided there: FB_KV_ERR_BUDGET when the pool
 * cannot hold the stream. Pages come back on close. A cache may also keep each slot's clean
 * latents (fb_kvcache_set_latent_floats; plain memory outside the pool, small next to K/V):
 * the DiT's storing pass writes them with the K/V, and a re-cache reads them back.
 *
 * Thread-safety: the pool is thread-safe (a mutex guards its page accounting; caches of
 * different streams may be opened, used and closed concurrently). One cache belongs to one
 * stream: its functions must not be called concurrently on the same cache, and the DiT reading
 * or writing slots counts as a use.
 *
 * Usage (one chunk):
 *     fb_kv_plan p;
 *     fb_kvcache_plan(cache, F, FB_KV_POS_WINDOW, &p, err, sizeof err);
 *     for each denoising step: DiT(x, t_k, cache, &p, write = 0)
 *     DiT(x0, 0, cache, &p, write = 1);      context pass: stores clean K/V in p.write_slot
 *     fb_kvcache_commit(cache, &p);
 *
 * Status codes: 0 success; negative fb_kv_status on failure (cache and pool unchanged).
 * Broken preconditions (stale plan, wrong plan kind, pool freed with caches open) abort with
 * the expression, file and line: they are programming errors.
 */
#ifndef FLIPBOOK_KVCACHE_KVCACHE_H
#define FLIPBOOK_KVCACHE_KVCACHE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    FB_KV_OK = 0,
    FB_KV_ERR_ARG = -1,     /* invalid argument (sizes, counts, mode) */
    FB_KV_ERR_BUDGET = -2,  /* the pool cannot hold this cache (admission refused) */
    FB_KV_ERR_NOMEM = -3,   /* the system refused memory */
    FB_KV_ERR_STATE = -4,   /* the cache is not in a state that allows this (e.g. pin with
                             * fewer than A frames in the window) */
    FB_KV_ERR_RANGE = -5,   /* absolute positions would pass FB_KV_MAX_POS */
} fb_kv_status;

const char *fb_kv_status_str(int status);

/* Positions given to past and new frames (same values as engine/config.h fb_positions). */
typedef enum {
    FB_KV_POS_WINDOW = 0,
    FB_KV_POS_ABSOLUTE = 1,
} fb_kv_positions;

#define FB_KV_MAX_POS 1024      /* absolute positions are < this (the RoPE table's extent) */
#define FB_KV_MAX_FRAMES 1024   /* frames (past or new) in one plan; A + W <= this */

/* ---- pool ------------------------------------------------------------------------------------ */

typedef struct fb_kvpool fb_kvpool;

typedef struct fb_kvpool_stats {
    size_t budget_bytes;   /* as given to init */
    size_t page_bytes;
    int64_t pages_total;   /* floor(budget / page_bytes) */
    int64_t pages_used;
    size_t bytes_used;     /* pages_used * page_bytes, exactly */
    size_t bytes_free;     /* (pages_total - pages_used) * page_bytes */
    int caches_open;
} fb_kvpool_stats;

/* Bytes of one slot of one layer: K and V of tokens_per_frame x dim floats. */
size_t fb_kv_frame_bytes(int tokens_per_frame, int dim);

/* Creates a pool of floor(budget_bytes / page_bytes) pages. The address space is reserved at
 * once but memory is only committed when a page is first written. Returns 0 or a status with a
 * message in err. */
int fb_kvpool_init(fb_kvpool **out, size_t budget_bytes, size_t page_bytes, char *err,
                   size_t err_size);
/* Frees the pool. Precondition (asserted): no cache is open. NULL is accepted. */
void fb_kvpool_free(fb_kvpool *pool);
void fb_kvpool_stats_get(fb_kvpool *pool, fb_kvpool_stats *st);
/* Pages a cache of this shape takes (layers x (anchor + window)), for admission planning; the
 * bytes are that times page_bytes. Returns -1 if a frame does not fit in one page. */
int64_t fb_kvpool_pages_for(const fb_kvpool *pool, int n_layers, int n_anchor, int n_window,
                            int tokens_per_frame, int dim);

/* ---- cache ----------------------------------------------------------------------------------- */

typedef struct fb_kvcache fb_kvcache;

/* Opens a cache of n_layers x (n_anchor + n_window) slots, each one frame of tokens_per_frame
 * x dim keys and as many values. n_anchor >= 0, n_window >= 0, n_anchor + n_window in
 * [1, FB_KV_MAX_FRAMES]. FB_KV_ERR_BUDGET (with the numbers in err) when the pool lacks pages;
 * FB_KV_ERR_ARG when a frame is larger than a page. */
int fb_kvcache_open(fb_kvpool *pool, int n_layers, int n_anchor, int n_window,
                    int tokens_per_frame, int dim, fb_kvcache **out, char *err,
                    size_t err_size);
/* Returns the pages to the pool. NULL is accepted. */
void fb_kvcache_close(fb_kvcache *c);

typedef struct fb_kvcache_info {
    int n_layers, n_anchor, n_window, tokens_per_frame, dim;
    int anchors_filled;     /* anchor slots holding a frame (0..n_anchor) */
    int anchors_locked;     /* pinned or set by an anchor plan: not filled by new frames */
    int window_filled;      /* ring slots holding a frame (0..n_window) */
    int64_t next_frame;     /* absolute latent-frame index of the next chunk's first frame */
    uint64_t epoch;         /* increments on every mutation; plans carry the epoch they saw */
    size_t latent_floats;   /* clean latents kept per slot (0: none) */
} fb_kvcache_info;

void fb_kvcache_info_get(const fb_kvcache *c, fb_kvcache_info *info);

/* The K and V storage of one slot of one layer: [tokens_per_frame, dim] floats each,
 * keys before RoPE. slot in [0, n_anchor + n_window) (anchors first), layer in [0, n_layers).
 * Pointers stay valid until close. */
float *fb_kvcache_slot_k(fb_kvcache *c, int layer, int slot);
float *fb_kvcache_slot_v(fb_kvcache *c, int layer, int slot);
/* Absolute latent-frame index a slot holds, or -1 when empty. */
int64_t fb_kvcache_slot_frame(const fb_kvcache *c, int slot);

/* Keeps floats_per_frame floats of clean latents per slot (C x H x W of one latent frame;
 * 0 stops keeping them). Only on an empty cache (after open or reset): FB_KV_ERR_STATE
 * otherwise. The DiT stores the call's latents into the written slots on its storing pass
 * when this matches its frame size. */
int fb_kvcache_set_latent_floats(fb_kvcache *c, size_t floats_per_frame, char *err,
                                 size_t err_size);
/* A slot's latents [floats_per_frame], or NULL when latents are not kept. */
float *fb_kvcache_slot_latent(fb_kvcache *c, int slot);

/* ---- plans ----------------------------------------------------------------------------------- */

typedef enum {
    FB_KV_PLAN_CHUNK = 1,    /* the next chunk of the stream */
    FB_KV_PLAN_ANCHOR = 2,   /* frames (e.g. an encoded image) that become the anchors */
    FB_KV_PLAN_RECACHE = 3,  /* re-run frames already in the cache, rewriting their slots */
} fb_kv_plan_kind;

/* What one DiT call sees and writes. Plain data (about 32 KB: keep it off small stacks, or
 * embed it in per-stream state); it may be built by hand for tests (kind 0 = custom: commit
 * refuses it, the DiT accepts it). */
typedef struct fb_kv_plan {
    int kind;                              /* fb_kv_plan_kind, or 0 for a hand-made plan */
    int positions;                         /* fb_kv_positions used to fill the positions */
    uint64_t epoch;                        /* cache epoch the plan was made against */
    int n_past;                            /* past frames attended to, in attention order */
    int past_slot[FB_KV_MAX_FRAMES];       /* their slots */
    int past_pos[FB_KV_MAX_FRAMES];        /* their RoPE temporal positions */
    int64_t past_frame[FB_KV_MAX_FRAMES];  /* their absolute frame indices */
    int n_frames;                          /* frames of the call (the "chunk") */
    int frame_pos[FB_KV_MAX_FRAMES];       /* RoPE temporal position of each */
    int64_t frame_index[FB_KV_MAX_FRAMES]; /* absolute index of each (for RECACHE: which
                                            * latents to feed, in this order) */
    int write_slot[FB_KV_MAX_FRAMES];      /* slot each frame's K/V goes to, -1 = not kept */
} fb_kv_plan;

/* Plan for the next chunk of chunk_frames frames: past = filled anchors then the window in
 * time order; write slots follow the filling rule above. Mutates nothing. */
int fb_kvcache_plan(const fb_kvcache *c, int chunk_frames, fb_kv_positions positions,
                    fb_kv_plan *plan, char *err, size_t err_size);

/* Plan for n_frames externally supplied frames (an image anchor: run the DiT context pass on
 * the encoded latents with this plan) that become the anchors. The frames attend only to
 * themselves, at positions 0..n_frames-1 in both modes (frame indices 0..n_frames-1); the
 * first min(n_frames, n_anchor) are kept, in anchor slots 0... On commit the anchors become
 * exactly those frames, the window is emptied, the anchors are locked, and the stream's frame
 * counter does not move. FB_KV_ERR_STATE when the cache has no anchor slots. */
int fb_kvcache_plan_anchor(const fb_kvcache *c, int n_frames, fb_kv_positions positions,
                           fb_kv_plan *plan, char *err, size_t err_size);

/* Plan that re-runs the frames already cached (LongLive re-cache on a prompt switch): the
 * call's frames are the window frames in time order (plus, first, the anchors when
 * include_anchors), attending to the anchors (when not included) and to themselves; each
 * frame's K/V is written back into its own slot. The caller feeds the clean latents of
 * plan->frame_index[]. Commit changes no frames (it only bumps the epoch).
 * FB_KV_ERR_STATE when there is nothing to re-run. */
int fb_kvcache_plan_recache(const fb_kvcache *c, int include_anchors,
                            fb_kv_positions positions, fb_kv_plan *plan, char *err,
                            size_t err_size);

/* Whether plan was made against the cache's current state (same epoch). */
int fb_kvcache_plan_valid(const fb_kvcache *c, const fb_kv_plan *plan);

/* Makes a plan's written frames visible. Preconditions (asserted): plan made by this cache's
 * plan functions (kind != 0) against the current epoch. */
void fb_kvcache_commit(fb_kvcache *c, const fb_kv_plan *plan);

/* ---- other mutators ------------------------------------------------------------------------ */

/* Pins the newest frames as the anchors (the user's "pin this"): the newest min(A, held)
 * frames of the visible order (anchors, then window) are copied into anchor slots 0.., the
 * window keeps them too (until they roll out), and the anchors are locked. The old anchors
 * not among them are dropped. FB_KV_ERR_STATE when the cache has no anchor slots, or while
 * the window is empty (the anchors already are the newest frames; the reference treats that
 * as a no-op). */
int fb_kvcache_pin(fb_kvcache *c, char *err, size_t err_size);

/* Empties every slot and unlocks the anchors; the next chunk is frame 0 again and becomes the
 * anchor. Pages (and the latent setting) are kept. */
void fb_kvcache_reset(fb_kvcache *c);

#ifdef __cplusplus
}
#endif

#endif
