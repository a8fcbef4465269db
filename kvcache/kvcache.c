/* kvcache/kvcache.c - anchor + window KV cache over a paged pool (see kvcache.h).
 *
 * Metadata and storage are kept apart. Storage: the pool's arena is one anonymous mapping cut
 * into pages; a cache owns n_layers x n_slots pages through a page table. Optional clean
 * latents per slot (the input of a re-cache) live beside it in plain memory. Metadata: which absolute frame each slot holds,
 * how many anchors are filled, and the ring's head and fill count (logical window entry i lives
 * in slot A + (head + i) % W, entry 0 the oldest).
 *
 * The plan functions and commit run the same filling rule (place_frames) on a copy of the
 * metadata and on the live metadata respectively; the epoch check guarantees both start from
 * the same state, so commit lands every frame exactly where the plan told the DiT to write it.
 */
#include "kvcache/kvcache.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define KV_ASSERT(cond)                                                                       \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: %s: precondition failed: %s\n", __FILE__, __LINE__,       \
                    __func__, #cond);                                                         \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

#define PAGE_ALIGN 64

struct fb_kvpool {
    pthread_mutex_t mu;
    size_t budget_bytes, page_bytes;
    int64_t n_pages;
    unsigned char *base;     /* n_pages * page_bytes bytes (NULL when n_pages == 0) */
    size_t map_bytes;
    int32_t *free_stack;     /* free page numbers; top at n_free - 1 */
    int64_t n_free;
    int caches_open;
};

struct fb_kvcache {
    fb_kvpool *pool;
    int n_layers, n_anchor, n_window, tpf, dim;
    int n_slots;             /* n_anchor + n_window */
    size_t frame_floats;     /* tpf * dim: K (or V) of one slot */
    int32_t *pages;          /* [n_layers][n_slots] page numbers */
    int64_t *slot_frame;     /* [n_slots] absolute frame index, -1 = empty */
    int anchors_filled;
    int anchors_locked;      /* pinned / set from frames: generated frames never fill them */
    int ring_head, ring_count;
    int64_t next_frame;
    uint64_t epoch;
    size_t latent_floats;    /* per-slot clean latents (0: not kept) */
    float *latents;          /* [n_slots][latent_floats] */
};

static void set_err(char *err, size_t n, const char *fmt, ...)
{
    if (!err || n == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}

const char *fb_kv_status_str(int status)
{
    switch (status) {
    case FB_KV_OK: return "ok";
    case FB_KV_ERR_ARG: return "invalid argument";
    case FB_KV_ERR_BUDGET: return "KV pool budget exhausted";
    case FB_KV_ERR_NOMEM: return "out of memory";
    case FB_KV_ERR_STATE: return "cache state does not allow this";
    case FB_KV_ERR_RANGE: return "position range exhausted";
    default: return "unknown status";
    }
}

size_t fb_kv_frame_bytes(int tokens_per_frame, int dim)
{
    if (tokens_per_frame <= 0 || dim <= 0)
        return 0;
    size_t b = 2 * (size_t)tokens_per_frame * (size_t)dim * sizeof(float);
    return (b + PAGE_ALIGN - 1) / PAGE_ALIGN * PAGE_ALIGN;
}

/* ---- pool -------------------------------------------------------------------------------- */

int fb_kvpool_init(fb_kvpool **out, size_t budget_bytes, size_t page_bytes, char *err,
                   size_t err_size)
{
    *out = NULL;
    if (page_bytes == 0 || page_bytes % PAGE_ALIGN != 0) {
        set_err(err, err_size, "kv pool: page size %zu must be a positive multiple of %d bytes "
                "(use fb_kv_frame_bytes)", page_bytes, PAGE_ALIGN);
        return FB_KV_ERR_ARG;
    }
    int64_t n_pages = (int64_t)(budget_bytes / page_bytes);
    if (n_pages > INT32_MAX) {
        set_err(err, err_size, "kv pool: %lld pages is more than the page table holds",
                (long long)n_pages);
        return FB_KV_ERR_ARG;
    }
    fb_kvpool *p = calloc(1, sizeof *p);
    if (!p) {
        set_err(err, err_size, "kv pool: out of memory");
        return FB_KV_ERR_NOMEM;
    }
    p->budget_bytes = budget_bytes;
    p->page_bytes = page_bytes;
    p->n_pages = n_pages;
    if (n_pages > 0) {
        p->map_bytes = (size_t)n_pages * page_bytes;
        /* reserve address space only: pages cost memory when first written */
        void *m = mmap(NULL, p->map_bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        p->free_stack = malloc((size_t)n_pages * sizeof(int32_t));
        if (m == MAP_FAILED || !p->free_stack) {
            if (m != MAP_FAILED)
                munmap(m, p->map_bytes);
            free(p->free_stack);
            free(p);
            set_err(err, err_size, "kv pool: cannot reserve %zu bytes", (size_t)n_pages * page_bytes);
            return FB_KV_ERR_NOMEM;
        }
        p->base = m;
        /* hand out low pages first (stack top = page 0) */
        for (int64_t i = 0; i < n_pages; i++)
            p->free_stack[i] = (int32_t)(n_pages - 1 - i);
        p->n_free = n_pages;
    }
    pthread_mutex_init(&p->mu, NULL);
    *out = p;
    return FB_KV_OK;
}

void fb_kvpool_free(fb_kvpool *pool)
{
    if (!pool)
        return;
    KV_ASSERT(pool->caches_open == 0);
    if (pool->base)
        munmap(pool->base, pool->map_bytes);
    pthread_mutex_destroy(&pool->mu);
    free(pool->free_stack);
    free(pool);
}

void fb_kvpool_stats_get(fb_kvpool *pool, fb_kvpool_stats *st)
{
    pthread_mutex_lock(&pool->mu);
    st->budget_bytes = pool->budget_bytes;
    st->page_bytes = pool->page_bytes;
    st->pages_total = pool->n_pages;
    st->pages_used = pool->n_pages - pool->n_free;
    st->bytes_used = (size_t)st->pages_used * pool->page_bytes;
    st->bytes_free = (size_t)pool->n_free * pool->page_bytes;
    st->caches_open = pool->caches_open;
    pthread_mutex_unlock(&pool->mu);
}

int64_t fb_kvpool_pages_for(const fb_kvpool *pool, int n_layers, int n_anchor, int n_window,
                            int tokens_per_frame, int dim)
{
    size_t fb = fb_kv_frame_bytes(tokens_per_frame, dim);
    if (fb == 0 || fb > pool->page_bytes || n_layers <= 0 || n_anchor < 0 || n_window < 0)
        return -1;
    return (int64_t)n_layers * (n_anchor + n_window);
}

/* ---- cache ------------------------------------------------------------------------------- */

int fb_kvcache_open(fb_kvpool *pool, int n_layers, int n_anchor, int n_window,
                    int tokens_per_frame, int dim, fb_kvcache **out, char *err,
                    size_t err_size)
{
    *out = NULL;
    if (!pool || n_layers <= 0 || n_anchor < 0 || n_window < 0 || tokens_per_frame <= 0 ||
        dim <= 0 || n_anchor + n_window < 1 || n_anchor + n_window > FB_KV_MAX_FRAMES) {
        set_err(err, err_size, "kv cache: invalid shape (layers %d, anchor %d, window %d, "
                "tokens/frame %d, dim %d; anchor + window must be 1..%d)", n_layers, n_anchor,
                n_window, tokens_per_frame, dim, FB_KV_MAX_FRAMES);
        return FB_KV_ERR_ARG;
    }
    size_t frame_bytes = fb_kv_frame_bytes(tokens_per_frame, dim);
    if (frame_bytes > pool->page_bytes) {
        set_err(err, err_size, "kv cache: one frame (%zu bytes) does not fit a pool page "
                "(%zu bytes)", frame_bytes, pool->page_bytes);
        return FB_KV_ERR_ARG;
    }
    int n_slots = n_anchor + n_window;
    int64_t need = (int64_t)n_layers * n_slots;
    fb_kvcache *c = calloc(1, sizeof *c);
    int32_t *pages = malloc((size_t)need * sizeof(int32_t));
    int64_t *slot_frame = malloc((size_t)n_slots * sizeof(int64_t));
    if (!c || !pages || !slot_frame) {
        free(c);
        free(pages);
        free(slot_frame);
        set_err(err, err_size, "kv cache: out of memory");
        return FB_KV_ERR_NOMEM;
    }
    pthread_mutex_lock(&pool->mu);
    if (pool->n_free < need) {
        int64_t have = pool->n_free, total = pool->n_pages;
        pthread_mutex_unlock(&pool->mu);
        free(c);
        free(pages);
        free(slot_frame);
        set_err(err, err_size, "kv cache: needs %lld pages of %zu bytes (%.1f MiB) but the pool "
                "has %lld of %lld free (budget %zu bytes)", (long long)need, pool->page_bytes,
                (double)need * (double)pool->page_bytes / 1048576.0, (long long)have,
                (long long)total, pool->budget_bytes);
        return FB_KV_ERR_BUDGET;
    }
    for (int64_t i = 0; i < need; i++)
        pages[i] = pool->free_stack[--pool->n_free];
    pool->caches_open++;
    pthread_mutex_unlock(&pool->mu);

    c->pool = pool;
    c->n_layers = n_layers;
    c->n_anchor = n_anchor;
    c->n_window = n_window;
    c->tpf = tokens_per_frame;
    c->dim = dim;
    c->n_slots = n_slots;
    c->frame_floats = (size_t)tokens_per_frame * dim;
    c->pages = pages;
    c->slot_frame = slot_frame;
    for (int s = 0; s < n_slots; s++)
        slot_frame[s] = -1;
    *out = c;
    return FB_KV_OK;
}

void fb_kvcache_close(fb_kvcache *c)
{
    if (!c)
        return;
    fb_kvpool *p = c->pool;
    int64_t n = (int64_t)c->n_layers * c->n_slots;
    pthread_mutex_lock(&p->mu);
    for (int64_t i = 0; i < n; i++)
        p->free_stack[p->n_free++] = c->pages[i];
    KV_ASSERT(p->n_free <= p->n_pages);
    p->caches_open--;
    pthread_mutex_unlock(&p->mu);
    free(c->pages);
    free(c->slot_frame);
    free(c->latents);
    free(c);
}

void fb_kvcache_info_get(const fb_kvcache *c, fb_kvcache_info *info)
{
    info->n_layers = c->n_layers;
    info->n_anchor = c->n_anchor;
    info->n_window = c->n_window;
    info->tokens_per_frame = c->tpf;
    info->dim = c->dim;
    info->anchors_filled = c->anchors_filled;
    info->anchors_locked = c->anchors_locked;
    info->latent_floats = c->latent_floats;
    info->window_filled = c->ring_count;
    info->next_frame = c->next_frame;
    info->epoch = c->epoch;
}

static float *page_ptr(const fb_kvcache *c, int layer, int slot)
{
    KV_ASSERT(layer >= 0 && layer < c->n_layers && slot >= 0 && slot < c->n_slots);
    int32_t pg = c->pages[(size_t)layer * c->n_slots + slot];
    return (float *)(c->pool->base + (size_t)pg * c->pool->page_bytes);
}

float *fb_kvcache_slot_k(fb_kvcache *c, int layer, int slot)
{
    return page_ptr(c, layer, slot);
}

float *fb_kvcache_slot_v(fb_kvcache *c, int layer, int slot)
{
    return page_ptr(c, layer, slot) + c->frame_floats;
}

int64_t fb_kvcache_slot_frame(const fb_kvcache *c, int slot)
{
    KV_ASSERT(slot >= 0 && slot < c->n_slots);
    return c->slot_frame[slot];
}

int fb_kvcache_set_latent_floats(fb_kvcache *c, size_t floats_per_frame, char *err,
                                 size_t err_size)
{
    if (c->anchors_filled || c->ring_count) {
        set_err(err, err_size, "kv cache: latent storage can only be set on an empty cache");
        return FB_KV_ERR_STATE;
    }
    float *l = NULL;
    if (floats_per_frame) {
        l = calloc((size_t)c->n_slots * floats_per_frame, sizeof(float));
        if (!l) {
            set_err(err, err_size, "kv cache: out of memory for %zu latent floats per slot",
                    floats_per_frame);
            return FB_KV_ERR_NOMEM;
        }
    }
    free(c->latents);
    c->latents = l;
    c->latent_floats = floats_per_frame;
    return FB_KV_OK;
}

float *fb_kvcache_slot_latent(fb_kvcache *c, int slot)
{
    KV_ASSERT(slot >= 0 && slot < c->n_slots);
    return c->latents ? c->latents + (size_t)slot * c->latent_floats : NULL;
}

/* ---- filling rule ------------------------------------------------------------------------- */

typedef struct {
    int anchors_filled, anchors_locked, ring_head, ring_count;
} fill_state;

/* Places n frames by the filling rule, starting from *s: slot[f] receives frame f, or -1 when
 * nothing keeps it. Advances *s. A frame whose slot a later frame of the same call takes is
 * marked -1 too (only the survivor is written). */
static void place_frames(const fb_kvcache *c, fill_state *s, int n, int *slot)
{
    int A = c->n_anchor, W = c->n_window;
    for (int f = 0; f < n; f++) {
        if (!s->anchors_locked && s->anchors_filled < A) {
            slot[f] = s->anchors_filled++;
        } else if (W == 0) {
            slot[f] = -1;
        } else if (s->ring_count < W) {
            slot[f] = A + (s->ring_head + s->ring_count) % W;
            s->ring_count++;
        } else {
            slot[f] = A + s->ring_head;
            s->ring_head = (s->ring_head + 1) % W;
        }
    }
    for (int f = 0; f < n; f++)
        for (int g = f + 1; g < n && slot[f] >= 0; g++)
            if (slot[g] == slot[f])
                slot[f] = -1;
}

static int ring_slot(const fb_kvcache *c, int i)   /* logical window entry i, 0 = oldest */
{
    return c->n_anchor + (c->ring_head + i) % c->n_window;
}

/* past = filled anchors, then the window in time order */
static void fill_past(const fb_kvcache *c, fb_kv_plan *p, int with_ring)
{
    p->n_past = 0;
    for (int a = 0; a < c->anchors_filled; a++) {
        p->past_slot[p->n_past] = a;
        p->past_frame[p->n_past] = c->slot_frame[a];
        p->n_past++;
    }
    if (with_ring)
        for (int i = 0; i < c->ring_count; i++) {
            int s = ring_slot(c, i);
            p->past_slot[p->n_past] = s;
            p->past_frame[p->n_past] = c->slot_frame[s];
            p->n_past++;
        }
}

/* Fills past_pos and frame_pos from frame indices (absolute) or attention order (window). */
static int fill_positions(fb_kv_plan *p, fb_kv_positions mode, char *err, size_t err_size)
{
    p->positions = mode;
    if (mode == FB_KV_POS_WINDOW) {
        if (p->n_past + p->n_frames > FB_KV_MAX_POS) {
            set_err(err, err_size, "kv plan: %d past + %d new frames exceed %d positions",
                    p->n_past, p->n_frames, FB_KV_MAX_POS);
            return FB_KV_ERR_RANGE;
        }
        for (int i = 0; i < p->n_past; i++)
            p->past_pos[i] = i;
        for (int f = 0; f < p->n_frames; f++)
            p->frame_pos[f] = p->n_past + f;
        return FB_KV_OK;
    }
    for (int i = 0; i < p->n_past; i++)
        p->past_pos[i] = (int)p->past_frame[i];
    for (int f = 0; f < p->n_frames; f++) {
        if (p->frame_index[f] >= FB_KV_MAX_POS) {
            set_err(err, err_size, "kv plan: absolute position %lld reaches the RoPE table's "
                    "end (%d latent frames); use window positions for endless streams",
                    (long long)p->frame_index[f], FB_KV_MAX_POS);
            return FB_KV_ERR_RANGE;
        }
        p->frame_pos[f] = (int)p->frame_index[f];
    }
    return FB_KV_OK;
}

static int check_mode(fb_kv_positions mode, char *err, size_t err_size)
{
    if (mode != FB_KV_POS_WINDOW && mode != FB_KV_POS_ABSOLUTE) {
        set_err(err, err_size, "kv plan: unknown positions mode %d", (int)mode);
        return FB_KV_ERR_ARG;
    }
    return FB_KV_OK;
}

int fb_kvcache_plan(const fb_kvcache *c, int chunk_frames, fb_kv_positions positions,
                    fb_kv_plan *plan, char *err, size_t err_size)
{
    if (chunk_frames < 1 || chunk_frames > FB_KV_MAX_FRAMES) {
        set_err(err, err_size, "kv plan: chunk of %d frames (1..%d)", chunk_frames,
                FB_KV_MAX_FRAMES);
        return FB_KV_ERR_ARG;
    }
    int rc = check_mode(positions, err, err_size);
    if (rc)
        return rc;
    fb_kv_plan *p = plan;
    p->kind = FB_KV_PLAN_CHUNK;
    p->epoch = c->epoch;
    fill_past(c, p, 1);
    p->n_frames = chunk_frames;
    for (int f = 0; f < chunk_frames; f++)
        p->frame_index[f] = c->next_frame + f;
    fill_state s = {c->anchors_filled, c->anchors_locked, c->ring_head, c->ring_count};
    place_frames(c, &s, chunk_frames, p->write_slot);
    return fill_positions(p, positions, err, err_size);
}

int fb_kvcache_plan_anchor(const fb_kvcache *c, int n_frames, fb_kv_positions positions,
                           fb_kv_plan *plan, char *err, size_t err_size)
{
    if (c->n_anchor == 0) {
        set_err(err, err_size, "kv plan: the cache has no anchor slots");
        return FB_KV_ERR_STATE;
    }
    if (n_frames < 1 || n_frames > FB_KV_MAX_FRAMES) {
        set_err(err, err_size, "kv plan: %d anchor frames (1..%d)", n_frames, FB_KV_MAX_FRAMES);
        return FB_KV_ERR_ARG;
    }
    int rc = check_mode(positions, err, err_size);
    if (rc)
        return rc;
    fb_kv_plan *p = plan;
    p->kind = FB_KV_PLAN_ANCHOR;
    p->epoch = c->epoch;
    p->n_past = 0;
    p->n_frames = n_frames;
    for (int f = 0; f < n_frames; f++) {
        p->frame_index[f] = f;
        p->write_slot[f] = f < c->n_anchor ? f : -1;   /* the first A frames are kept */
    }
    return fill_positions(p, positions, err, err_size);
}

int fb_kvcache_plan_recache(const fb_kvcache *c, int include_anchors,
                            fb_kv_positions positions, fb_kv_plan *plan, char *err,
                            size_t err_size)
{
    int rc = check_mode(positions, err, err_size);
    if (rc)
        return rc;
    fb_kv_plan *p = plan;
    p->kind = FB_KV_PLAN_RECACHE;
    p->epoch = c->epoch;
    /* the frames to re-run, in time order, and the past they attend to */
    fill_past(c, p, 1);
    int first = include_anchors ? 0 : c->anchors_filled;
    p->n_frames = p->n_past - first;
    if (p->n_frames < 1) {
        set_err(err, err_size, "kv plan: nothing to re-cache (%d anchors, %d window frames%s)",
                c->anchors_filled, c->ring_count,
                include_anchors ? "" : "; anchors excluded");
        return FB_KV_ERR_STATE;
    }
    for (int f = 0; f < p->n_frames; f++) {
        p->write_slot[f] = p->past_slot[first + f];
        p->frame_index[f] = p->past_frame[first + f];
    }
    p->n_past = first;
    return fill_positions(p, positions, err, err_size);
}

int fb_kvcache_plan_valid(const fb_kvcache *c, const fb_kv_plan *plan)
{
    return plan && plan->epoch == c->epoch;
}

void fb_kvcache_commit(fb_kvcache *c, const fb_kv_plan *p)
{
    KV_ASSERT(p != NULL);
    KV_ASSERT(p->kind == FB_KV_PLAN_CHUNK || p->kind == FB_KV_PLAN_ANCHOR ||
              p->kind == FB_KV_PLAN_RECACHE);
    KV_ASSERT(p->epoch == c->epoch);   /* made against the current state */
    if (p->kind == FB_KV_PLAN_CHUNK) {
        fill_state s = {c->anchors_filled, c->anchors_locked, c->ring_head, c->ring_count};
        int slot[FB_KV_MAX_FRAMES];
        KV_ASSERT(p->n_frames >= 1 && p->n_frames <= FB_KV_MAX_FRAMES);
        place_frames(c, &s, p->n_frames, slot);
        for (int f = 0; f < p->n_frames; f++) {
            KV_ASSERT(slot[f] == p->write_slot[f]);
            if (slot[f] >= 0)
                c->slot_frame[slot[f]] = p->frame_index[f];
        }
        /* ring slots that were evicted and not refilled cannot exist: the ring only grows
         * or rotates, so every slot in it holds a frame */
        c->anchors_filled = s.anchors_filled;
        c->ring_head = s.ring_head;
        c->ring_count = s.ring_count;
        c->next_frame += p->n_frames;
    } else if (p->kind == FB_KV_PLAN_ANCHOR) {
        /* the anchors become the kept frames, the window is emptied, the anchors are locked;
         * the stream's frame counter does not move */
        KV_ASSERT(p->n_frames >= 1);
        int kept = p->n_frames < c->n_anchor ? p->n_frames : c->n_anchor;
        for (int s = 0; s < c->n_slots; s++)
            c->slot_frame[s] = s < kept ? p->frame_index[s] : -1;
        c->anchors_filled = kept;
        c->anchors_locked = 1;
        c->ring_head = 0;
        c->ring_count = 0;
    }
    /* FB_KV_PLAN_RECACHE: the same frames stay in the same slots */
    c->epoch++;
}

/* copies slot src's K/V (every layer) and latents into slot dst */
static void copy_slot(fb_kvcache *c, int dst, int src)
{
    if (dst == src)
        return;
    for (int l = 0; l < c->n_layers; l++)
        memcpy(page_ptr(c, l, dst), page_ptr(c, l, src), 2 * c->frame_floats * sizeof(float));
    if (c->latents)
        memcpy(c->latents + (size_t)dst * c->latent_floats,
               c->latents + (size_t)src * c->latent_floats, c->latent_floats * sizeof(float));
    c->slot_frame[dst] = c->slot_frame[src];
}

int fb_kvcache_pin(fb_kvcache *c, char *err, size_t err_size)
{
    int A = c->n_anchor;
    if (A == 0) {
        set_err(err, err_size, "kv pin: the cache has no anchor slots");
        return FB_KV_ERR_STATE;
    }
    if (c->ring_count == 0) {
        /* the anchors already are the newest frames (the reference does nothing here) */
        set_err(err, err_size, "kv pin: the window is empty, so the anchors already are the "
                "newest frames");
        return FB_KV_ERR_STATE;
    }
    int total = c->anchors_filled + c->ring_count;
    /* visible order: anchors, then the window oldest first; the newest n become anchors
     * 0..n-1. Anchor i's source has list index total - n + i >= i, so copying in increasing i
     * never overwrites a source still to be read. */
    int n = total < A ? total : A;
    for (int i = 0; i < n; i++) {
        int j = total - n + i;
        int src = j < c->anchors_filled ? j : ring_slot(c, j - c->anchors_filled);
        copy_slot(c, i, src);
    }
    for (int a = n; a < A; a++)
        c->slot_frame[a] = -1;
    c->anchors_filled = n;
    c->anchors_locked = 1;
    c->epoch++;
    return FB_KV_OK;
}

void fb_kvcache_reset(fb_kvcache *c)
{
    for (int s = 0; s < c->n_slots; s++)
        c->slot_frame[s] = -1;
    c->anchors_filled = 0;
    c->anchors_locked = 0;
    c->ring_head = 0;
    c->ring_count = 0;
    c->next_frame = 0;
    c->epoch++;
}
