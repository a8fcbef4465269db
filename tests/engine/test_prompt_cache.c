/* Prompt-embedding LRU: hits copy the rows, least recently used entries go first, both the
 * entry and the byte bound hold, replacing keeps one entry, concurrent use is safe. */
#include <pthread.h>
#include <stdint.h>

#include "engine/prompt_cache.h"
#include "tests/engine/test_util.h"

static fb_prompt_cache *shared;

static void *hammer(void *arg)
{
    int base = (int)(intptr_t)arg;
    float rows[32], out[32];
    for (int i = 0; i < 2000; i++) {
        int32_t ids[2] = {base, i % 13};
        for (int k = 0; k < 32; k++)
            rows[k] = (float)(ids[0] * 100 + ids[1]);
        int n;
        if (fb_prompt_cache_get(shared, ids, 2, out, 32, &n)) {
            if (n != 2 || out[31] != rows[31])
                return (void *)1;
        } else if (fb_prompt_cache_put(shared, ids, 2, rows, 2, 16) != 0) {
            return (void *)1;
        }
    }
    return NULL;
}

int main(void)
{
    fb_prompt_cache *c = fb_prompt_cache_new(3, 1 << 20);
    CHECK(c != NULL);
    float rows[8], out[8];
    int n = -1;
    int32_t a[] = {5, 6, 1}, b[] = {7, 1}, d[] = {8, 1}, e[] = {9, 1};
    for (int i = 0; i < 8; i++)
        rows[i] = (float)i;
    CHECK(fb_prompt_cache_get(c, a, 3, out, 8, &n) == 0);
    CHECK(fb_prompt_cache_put(c, a, 3, rows, 2, 4) == 0);
    CHECK(fb_prompt_cache_get(c, a, 3, out, 8, &n) == 1 && n == 2);
    CHECK(memcmp(out, rows, sizeof rows) == 0);
    CHECK(fb_prompt_cache_get(c, a, 2, out, 8, &n) == 0);   /* a prefix is another prompt */
    CHECK(fb_prompt_cache_get(c, a, 3, out, 4, &n) == 0);   /* does not fit dst */
    rows[0] = 100;
    CHECK(fb_prompt_cache_put(c, b, 2, rows, 1, 4) == 0);
    CHECK(fb_prompt_cache_put(c, d, 2, rows, 1, 4) == 0);
    CHECK(fb_prompt_cache_get(c, a, 3, out, 8, &n) == 1);  /* a is now most recent */
    CHECK(fb_prompt_cache_put(c, e, 2, rows, 1, 4) == 0);  /* evicts b, the least recent */
    CHECK(fb_prompt_cache_get(c, b, 2, out, 8, &n) == 0);
    CHECK(fb_prompt_cache_get(c, d, 2, out, 8, &n) == 1 && out[0] == 100.0f);
    CHECK(fb_prompt_cache_get(c, a, 3, out, 8, &n) == 1 && out[0] == 0.0f);
    fb_prompt_cache_stats s;
    fb_prompt_cache_get_stats(c, &s);
    CHECK(s.entries == 3 && s.evictions == 1 && s.hits == 4 && s.misses == 4);
    /* replacing an entry keeps one copy */
    rows[0] = 42;
    CHECK(fb_prompt_cache_put(c, a, 3, rows, 2, 4) == 0);
    fb_prompt_cache_get_stats(c, &s);
    CHECK(s.entries == 3);
    CHECK(fb_prompt_cache_get(c, a, 3, out, 8, &n) == 1 && out[0] == 42.0f);
    /* bad arguments */
    CHECK(fb_prompt_cache_put(c, NULL, 1, rows, 1, 1) == -1);
    CHECK(fb_prompt_cache_get(NULL, a, 3, out, 8, &n) == 0);
    fb_prompt_cache_free(c);

    /* byte bound: each entry ~ 4 KiB of rows, bound 10 KiB keeps at most 2 */
    c = fb_prompt_cache_new(100, 10 * 1024);
    static float big[1024];
    for (int i = 0; i < 5; i++) {
        int32_t id = i;
        CHECK(fb_prompt_cache_put(c, &id, 1, big, 1, 1024) == 0);
    }
    fb_prompt_cache_get_stats(c, &s);
    CHECK(s.entries == 2 && s.bytes <= 10 * 1024);
    /* larger than the whole bound: not stored, not an error */
    static float huge[4096];
    int32_t hid = 99;
    CHECK(fb_prompt_cache_put(c, &hid, 1, huge, 1, 4096) == 0);
    CHECK(fb_prompt_cache_get(c, &hid, 1, huge, 4096, &n) == 0);
    fb_prompt_cache_free(c);
    fb_prompt_cache_free(NULL);

    /* a zero-entry cache never stores */
    c = fb_prompt_cache_new(0, 1 << 20);
    CHECK(fb_prompt_cache_put(c, a, 3, rows, 2, 4) == 0);
    CHECK(fb_prompt_cache_get(c, a, 3, out, 8, &n) == 0);
    fb_prompt_cache_free(c);

    /* concurrent use */
    shared = fb_prompt_cache_new(8, 1 << 20);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, hammer, (void *)(intptr_t)(i + 1));
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(th[i], &r);
        CHECK(r == NULL);
    }
    fb_prompt_cache_get_stats(shared, &s);
    CHECK(s.entries <= 8);
    fb_prompt_cache_free(shared);
    TEST_EXIT();
}
