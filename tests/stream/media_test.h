/* tests/stream/media_test.h - small helpers shared by the stream/ media tests.
 *
 * CHECK() reports the failed expression with its file and line and counts failures; each test
 * program returns test_result() from main(), so ctest sees a non-zero exit on any failure. */
#ifndef FLIPBOOK_TESTS_STREAM_MEDIA_TEST_H
#define FLIPBOOK_TESTS_STREAM_MEDIA_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream/webm.h"

static int test_failures;

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);           \
            test_failures++;                                                                   \
        }                                                                                      \
    } while (0)

/* CHECK with a printf-style explanation. */
#define CHECKF(cond, ...)                                                                      \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);           \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
            test_failures++;                                                                   \
        }                                                                                      \
    } while (0)

static inline int test_result(const char *name) {
    if (test_failures) fprintf(stderr, "%s: %d check(s) failed\n", name, test_failures);
    else printf("%s: all checks passed\n", name);
    return test_failures ? 1 : 0;
}

/* A WebM sink into memory. Writes must never leave a hole past the end of the data. */
typedef struct mem_sink {
    uint8_t *data;
    size_t len, cap;
    int fail_at_call;   /* > 0: that write_at() call (1-based) and all later ones fail */
    int fail_errno;
    int calls;
    int hole;           /* set when a write started past the end (a muxer bug) */
} mem_sink;

static inline int mem_sink_write_at(void *ctx, uint64_t off, const void *buf, size_t len) {
    mem_sink *m = ctx;
    m->calls++;
    if (m->fail_at_call > 0 && m->calls >= m->fail_at_call) return -m->fail_errno;
    if (off > m->len) {
        m->hole = 1;
        return -5; /* EIO */
    }
    if (off + len > m->cap) {
        size_t cap = m->cap ? m->cap : 4096;
        while (cap < off + len) cap *= 2;
        uint8_t *d = realloc(m->data, cap);
        if (!d) return -12; /* ENOMEM */
        m->data = d;
        m->cap = cap;
    }
    memcpy(m->data + off, buf, len);
    if (off + len > m->len) m->len = off + len;
    return 0;
}

static inline fb_webm_sink mem_sink_make(mem_sink *m) {
    fb_webm_sink s = {m, mem_sink_write_at};
    return s;
}

static inline void mem_sink_free(mem_sink *m) {
    free(m->data);
    memset(m, 0, sizeof *m);
}

#endif
