/* daemon/source.h - where a session's frames come from: the frame-source interface.
 *
 * A session pulls RGB24 frames from one fb_source, encodes them and fans them out. The test
 * pattern is the first source; the engine (the video diffusion model) plugs in as a second one
 * with the same four operations:
 *
 *   open        build the source for one session (may be slow: runs on the session's thread)
 *   next_frame  draw frame number N into an RGB24 buffer (width * height * 3 bytes)
 *   control     apply a steering change (prompt, seed, anchor, reset) from the next frame on;
 *               FB_SOURCE_UNSUPPORTED when the source has no such control
 *   close       free everything
 *
 *   const fb_source_ops *ops = fb_source_find("testpattern");
 *   fb_source *src = ops->open(&params, err, sizeof err);
 *   ops->next_frame(src, rgb, n, err, sizeof err);
 *   ops->close(src);
 *
 * Thread-safety: a source instance is used by one thread at a time (its session's thread). The
 * ops tables are immutable.
 */
#ifndef FLIPBOOK_DAEMON_SOURCE_H
#define FLIPBOOK_DAEMON_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "stream/protocol.h"

typedef enum fb_source_status {
    FB_SOURCE_OK = 0,
    FB_SOURCE_UNSUPPORTED = 1,   /* the control does not apply to this source; nothing changed */
    FB_SOURCE_ERROR = -1,        /* failed; the message says why; the session ends */
} fb_source_status;

typedef struct fb_source_params {
    int width, height, fps;
    uint64_t seed;
    const char *prompt;          /* UTF-8, may be "" */
    const char *model;           /* weights for model-backed sources; NULL otherwise */
} fb_source_params;

typedef enum fb_source_control_kind {
    FB_SOURCE_CTL_PROMPT = 0,
    FB_SOURCE_CTL_SEED,
    FB_SOURCE_CTL_RESET,
    FB_SOURCE_CTL_ANCHOR_PIN,
    FB_SOURCE_CTL_ANCHOR_CLEAR,
    FB_SOURCE_CTL_ANCHOR_IMAGE,
} fb_source_control_kind;

typedef struct fb_source_control {
    fb_source_control_kind kind;
    const char *text;            /* PROMPT */
    fb_transition transition;    /* PROMPT */
    int chunks;                  /* PROMPT, blend length */
    uint64_t seed;               /* SEED */
    const char *data;            /* ANCHOR_IMAGE: base64 as received */
    size_t data_len;
} fb_source_control;

typedef struct fb_source fb_source;

typedef struct fb_source_ops {
    const char *name;
    int min_size, max_size;      /* width/height bounds (even values) */
    int max_fps;
    fb_source *(*open)(const fb_source_params *p, char *err, size_t err_size);
    fb_source_status (*next_frame)(fb_source *s, uint8_t *rgb, uint32_t frame_no, char *err,
                                   size_t err_size);
    fb_source_status (*control)(fb_source *s, const fb_source_control *c, char *err,
                                size_t err_size);
    void (*close)(fb_source *s);
} fb_source_ops;

extern const fb_source_ops fb_source_testpattern;

/* "testpattern" -> its ops; NULL for a source this build does not have. */
const fb_source_ops *fb_source_find(const char *name);

#endif
