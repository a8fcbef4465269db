/* daemon/source_testpattern.c - the test-pattern frame source (stream/testpattern.h).
 *
 * Needs no model. Prompt and seed changes are accepted and kept (so clients can exercise the
 * whole protocol), `reset` restarts the pattern's clock, and anchor controls are unsupported.
 *
 * For tests of the failure path, the environment variable FLIPBOOK_TESTPATTERN_FAIL_AT=N makes
 * the source fail when asked for frame N, as a broken model would; the session must end with
 * the reason while the daemon carries on. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/source.h"
#include "stream/testpattern.h"

typedef struct testpattern_source {
    int width, height, fps;
    uint32_t base;           /* frame number at the last reset: the pattern counts from there */
    uint32_t last;           /* the last frame number drawn */
    int drawn;               /* any frame drawn yet */
    long long fail_at;       /* frame number that fails (test hook), -1 = never */
    uint64_t seed;
    char prompt[FB_PROTO_MAX_PROMPT + 1];
} testpattern_source;

static fb_source *tp_open(const fb_source_params *p, char *err, size_t n) {
    testpattern_source *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, n, "out of memory");
        return NULL;
    }
    s->width = p->width;
    s->height = p->height;
    s->fps = p->fps;
    s->seed = p->seed;
    snprintf(s->prompt, sizeof s->prompt, "%s", p->prompt ? p->prompt : "");
    const char *fail = getenv("FLIPBOOK_TESTPATTERN_FAIL_AT");
    s->fail_at = fail && *fail ? strtoll(fail, NULL, 10) : -1;
    return (fb_source *)s;
}

static fb_source_status tp_next(fb_source *src, uint8_t *rgb, uint32_t frame_no, char *err,
                                size_t n) {
    testpattern_source *s = (testpattern_source *)src;
    if (s->fail_at >= 0 && (long long)frame_no >= s->fail_at) {
        snprintf(err, n, "test pattern told to fail at frame %lld (FLIPBOOK_TESTPATTERN_FAIL_AT)",
                 s->fail_at);
        return FB_SOURCE_ERROR;
    }
    s->last = frame_no;
    s->drawn = 1;
    fb_testpattern_status st =
        fb_testpattern_draw(rgb, s->width, s->height, frame_no - s->base, s->fps);
    if (st != FB_TESTPATTERN_OK) {
        snprintf(err, n, "test pattern: %s", fb_testpattern_status_str(st));
        return FB_SOURCE_ERROR;
    }
    return FB_SOURCE_OK;
}

static fb_source_status tp_control(fb_source *src, const fb_source_control *c, char *err,
                                   size_t n) {
    testpattern_source *s = (testpattern_source *)src;
    switch (c->kind) {
    case FB_SOURCE_CTL_PROMPT:
        snprintf(s->prompt, sizeof s->prompt, "%s", c->text ? c->text : "");
        return FB_SOURCE_OK;
    case FB_SOURCE_CTL_SEED:
        s->seed = c->seed;
        return FB_SOURCE_OK;
    case FB_SOURCE_CTL_RESET:
        s->base = s->drawn ? s->last + 1 : 0;  /* the next frame drawn is pattern frame 0 */
        return FB_SOURCE_OK;
    default:
        snprintf(err, n, "anchor controls need an engine source; the test pattern has none");
        return FB_SOURCE_UNSUPPORTED;
    }
}

static void tp_close(fb_source *src) { free(src); }

const fb_source_ops fb_source_testpattern = {
    .name = "testpattern",
    .min_size = FB_TESTPATTERN_MIN_SIZE,
    .max_size = 4096,
    .max_fps = 60,
    .open = tp_open,
    .next_frame = tp_next,
    .control = tp_control,
    .close = tp_close,
};

const fb_source_ops *fb_source_find(const char *name) {
    if (strcmp(name, "testpattern") == 0) return &fb_source_testpattern;
    if (strcmp(name, "engine") == 0) return &fb_source_engine;
    return NULL;
}
