/* engine/prompt_cache.c - LRU of prompt embeddings (see prompt_cache.h).
 *
 * A doubly linked list in recency order (head = most recent) is enough: the cache holds tens
 * of entries, and a lookup compares a few hundred token ids, which is nothing next to running
 * the encoder.
 */
#include "engine/prompt_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    struct entry *prev, *next;
    int n_ids;
    int32_t *ids;
    int n_rows, row_floats;
    float *rows;
    size_t bytes;
} entry;

struct fb_prompt_cache {
    pthread_mutex_t mu;
    entry *head, *tail;
    int n_entries, max_entries;
    size_t bytes, max_bytes;
    uint64_t hits, misses, evictions;
};

fb_prompt_cache *fb_prompt_cache_new(int max_entries, size_t max_bytes)
{
    fb_prompt_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (pthread_mutex_init(&c->mu, NULL) != 0) {
        free(c);
        return NULL;
    }
    c->max_entries = max_entries < 0 ? 0 : max_entries;
    c->max_bytes = max_bytes;
    return c;
}

static void unlink_entry(fb_prompt_cache *c, entry *e)
{
    if (e->prev) e->prev->next = e->next; else c->head = e->next;
    if (e->next) e->next->prev = e->prev; else c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(fb_prompt_cache *c, entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head) c->head->prev = e; else c->tail = e;
    c->head = e;
}

static void drop(fb_prompt_cache *c, entry *e)
{
    unlink_entry(c, e);
    c->n_entries--;
    c->bytes -= e->bytes;
    free(e->ids);
    free(e->rows);
    free(e);
}

void fb_prompt_cache_free(fb_prompt_cache *c)
{
    if (!c)
        return;
    while (c->head)
        drop(c, c->head);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static entry *find(fb_prompt_cache *c, const int32_t *ids, int n_ids)
{
    for (entry *e = c->head; e; e = e->next)
        if (e->n_ids == n_ids && memcmp(e->ids, ids, (size_t)n_ids * sizeof *ids) == 0)
            return e;
    return NULL;
}

int fb_prompt_cache_get(fb_prompt_cache *c, const int32_t *ids, int n_ids, float *dst,
                        size_t dst_floats, int *n_rows)
{
    if (!c || !ids || n_ids < 0 || !dst)
        return 0;
    pthread_mutex_lock(&c->mu);
    entry *e = find(c, ids, n_ids);
    int hit = 0;
    if (e && (size_t)e->n_rows * (size_t)e->row_floats <= dst_floats) {
        memcpy(dst, e->rows, (size_t)e->n_rows * (size_t)e->row_floats * sizeof(float));
        if (n_rows)
            *n_rows = e->n_rows;
        unlink_entry(c, e);
        push_front(c, e);
        hit = 1;
        c->hits++;
    } else {
        c->misses++;
    }
    pthread_mutex_unlock(&c->mu);
    return hit;
}

int fb_prompt_cache_put(fb_prompt_cache *c, const int32_t *ids, int n_ids, const float *rows,
                        int n_rows, int row_floats)
{
    if (!c || !ids || n_ids < 0 || !rows || n_rows < 0 || row_floats < 0)
        return -1;
    size_t nf = (size_t)n_rows * (size_t)row_floats;
    size_t bytes = sizeof(entry) + (size_t)n_ids * sizeof(int32_t) + nf * sizeof(float);
    if (c->max_entries == 0 || bytes > c->max_bytes)
        return 0;   /* would never fit: not an error, just not cached */
    entry *e = calloc(1, sizeof *e);
    int32_t *eids = malloc((size_t)(n_ids > 0 ? n_ids : 1) * sizeof *eids);
    float *erows = malloc((nf > 0 ? nf : 1) * sizeof *erows);
    if (!e || !eids || !erows) {
        free(e);
        free(eids);
        free(erows);
        return -1;
    }
    memcpy(eids, ids, (size_t)n_ids * sizeof *ids);
    memcpy(erows, rows, nf * sizeof *rows);
    e->ids = eids;
    e->n_ids = n_ids;
    e->rows = erows;
    e->n_rows = n_rows;
    e->row_floats = row_floats;
    e->bytes = bytes;

    pthread_mutex_lock(&c->mu);
    entry *old = find(c, ids, n_ids);
    if (old)
        drop(c, old);
    while (c->tail && (c->n_entries + 1 > c->max_entries || c->bytes + bytes > c->max_bytes)) {
        drop(c, c->tail);
        c->evictions++;
    }
    push_front(c, e);
    c->n_entries++;
    c->bytes += bytes;
    pthread_mutex_unlock(&c->mu);
    return 0;
}

void fb_prompt_cache_get_stats(fb_prompt_cache *c, fb_prompt_cache_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    out->hits = c->hits;
    out->misses = c->misses;
    out->evictions = c->evictions;
    out->entries = c->n_entries;
    out->bytes = c->bytes;
    pthread_mutex_unlock(&c->mu);
}
