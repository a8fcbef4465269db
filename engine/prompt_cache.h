/* engine/prompt_cache.h - LRU cache of prompt embeddings (text-encoder outputs).
 *
 * Encoding a prompt is the most expensive thing a prompt change does (the text encoder is
 * larger than the DiT), and viewers of a daemon tend to reuse prompts, so the model keeps the
 * most recently used embeddings. An entry is keyed by the prompt's token ids (so prompts that
 * differ only in spacing share an entry) and holds the encoder output rows for those tokens.
 * The cache is bounded both in entries and in bytes; the least recently used entries go first.
 * Entries are allocated when inserted (a prompt change, never per chunk) and copied out on a
 * hit, so no caller ever holds a pointer that an eviction could free.
 *
 * Thread-safety: all functions may be called concurrently on one cache (an internal mutex);
 * the model shares one cache among all its streams.
 */
#ifndef FLIPBOOK_ENGINE_PROMPT_CACHE_H
#define FLIPBOOK_ENGINE_PROMPT_CACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct fb_prompt_cache fb_prompt_cache;

typedef struct fb_prompt_cache_stats {
    uint64_t hits, misses, evictions;
    int entries;
    size_t bytes;
} fb_prompt_cache_stats;

/* max_entries 0 makes a cache that never stores anything (every get misses). Returns NULL
 * when out of memory. */
fb_prompt_cache *fb_prompt_cache_new(int max_entries, size_t max_bytes);
void fb_prompt_cache_free(fb_prompt_cache *c);

/* On a hit copies the rows into dst (at most dst_floats floats), stores the row count in
 * *n_rows, marks the entry most recently used and returns 1; returns 0 on a miss or when the
 * entry does not fit dst. */
int fb_prompt_cache_get(fb_prompt_cache *c, const int32_t *ids, int n_ids, float *dst,
                        size_t dst_floats, int *n_rows);

/* Stores n_rows * row_floats floats under the ids (replacing an entry with the same ids),
 * evicting least recently used entries until both bounds hold. An embedding larger than
 * max_bytes is not stored. Returns 0, or -1 when out of memory (the cache stays valid). */
int fb_prompt_cache_put(fb_prompt_cache *c, const int32_t *ids, int n_ids, const float *rows,
                        int n_rows, int row_floats);

void fb_prompt_cache_get_stats(fb_prompt_cache *c, fb_prompt_cache_stats *out);

#endif
