/* daemon/source.h - where a session's frames come from: the frame-source interface.
 *
 * A session pulls RGB24 frames from one fb_source, encodes them and fans them out. Two sources
 * exist: the test pattern (draws any frame on demand) and the engine (daemon/source_engine.c:
 * frames generated chunk by chunk by the scheduler's workers into a playback buffer).
 *
 *   open        build the source for one session (runs on the session's thread)
 *   next_frame  the next frame into an RGB24 buffer (width * height * 3 bytes), numbered N on
 *               the wire; FB_SOURCE_AGAIN when none is ready yet (the source then calls the
 *               notify callback with FB_SOURCE_NOTE_FRAMES once one is)
 *   control     a steering change (prompt, seed, anchor, reset): applied now (FB_SOURCE_OK:
 *               the session acknowledges it), queued (FB_SOURCE_PENDING: an ACK or ERROR note
 *               answers it later), refused (FB_SOURCE_BAD_VALUE / FB_SOURCE_UNSUPPORTED with a
 *               message), or failed (FB_SOURCE_ERROR)
 *   close       free everything
 *   set_paused, pace, get_stats   optional (NULL for the test pattern), see below
 *
 *   const fb_source_ops *ops = fb_source_find("testpattern");
 *   fb_source *src = ops->open(&params, err, sizeof err);
 *   ops->next_frame(src, rgb, n, err, sizeof err);
 *   ops->close(src);
 *
 * Thread-safety: a source instance is used by one thread at a time (its session's thread),
 * except get_stats, which any thread may call while the source is open. Notify callbacks may
 * run on any thread (the engine's workers). The ops tables are immutable.
 */
#ifndef FLIPBOOK_DAEMON_SOURCE_H
#define FLIPBOOK_DAEMON_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "stream/protocol.h"

typedef enum fb_source_status {
    FB_SOURCE_OK = 0,
    FB_SOURCE_UNSUPPORTED = 1,   /* the control does not apply to this source; nothing changed */
    FB_SOURCE_AGAIN = 2,         /* next_frame: no frame ready yet */
    FB_SOURCE_PENDING = 3,       /* control: queued; a note answers it */
    FB_SOURCE_BAD_VALUE = 4,     /* control: refused (bad prompt, image size ...); message says */
    FB_SOURCE_ERROR = -1,        /* failed; the message says why; next_frame: the session ends */
} fb_source_status;

/* Where the answer to a control goes: copied from the request, handed back in its note. */
typedef struct fb_source_reply_to {
    uint64_t conn_id;
    int has_id;
    int64_t id;
    fb_msg_type type;
} fb_source_reply_to;

typedef enum fb_source_note_kind {
    FB_SOURCE_NOTE_FRAMES = 0,   /* a frame is ready after next_frame said FB_SOURCE_AGAIN */
    FB_SOURCE_NOTE_ACK,          /* a queued control took effect */
    FB_SOURCE_NOTE_ERROR,        /* a queued control was refused; the stream goes on */
    FB_SOURCE_NOTE_FAILED,       /* the source failed: the session must end with `message` */
} fb_source_note_kind;

typedef struct fb_source_note {
    fb_source_note_kind kind;
    fb_source_reply_to to;       /* ACK, ERROR */
    int64_t chunk;               /* ACK: the chunk from which the change applies */
    int64_t frame;               /* ACK: the wire frame number from which it applies */
    fb_msg_transition transition;    /* ACK of a prompt */
    int has_seed;
    uint64_t seed;               /* ACK of a seed */
    const char *unknown_words;   /* ACK of a prompt: space-separated, NULL when not a prompt */
    int n_unknown;
    fb_err code;                 /* ERROR */
    const char *message;         /* ERROR, FAILED */
} fb_source_note;

typedef void (*fb_source_notify_fn)(void *ctx, const fb_source_note *note);

typedef struct fb_source_params {
    int width, height, fps;
    uint64_t seed;
    const char *prompt;          /* UTF-8, may be "" */
    const char *model;           /* weights for model-backed sources; NULL otherwise */
    void *engine;                /* the engine source: its fbd_gen (daemon/scheduler.h), which
                                  * the source owns from open on (and closes) */
    fb_source_notify_fn notify;  /* answers and wake-ups from other threads */
    void *notify_ctx;
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
    fb_source_reply_to to;
    int64_t t_us;                /* CLOCK_MONOTONIC time the request arrived */
    const char *text;            /* PROMPT */
    fb_msg_transition transition;    /* PROMPT */
    int chunks;                  /* PROMPT, blend length */
    uint64_t seed;               /* SEED */
    const char *data;            /* ANCHOR_IMAGE: base64 as received */
    size_t data_len;
    int width, height;           /* ANCHOR_IMAGE: as the client declared them (0: not given) */
    const char *format;          /* ANCHOR_IMAGE: "rgb24" | "rgba32" (NULL: not given) */
} fb_source_control;

/* Figures an engine-backed source reports for the session's stats. */
typedef struct fb_source_stats {
    int64_t chunk;               /* chunk of the last frame handed out (-1 before any) */
    int64_t next_chunk;          /* chunk of the next frame */
    uint64_t frames_generated;
    double chunk_ms;             /* time to generate the last chunk */
    int buffer, buffer_capacity; /* playback buffer depth, frames */
    int kv_used, kv_total;       /* this stream's KV frame slots */
    int kv_streams, kv_streams_max;
    double prompt_latency_ms;    /* -1 before any prompt change */
    double slowdown;
} fb_source_stats;

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
    /* Optional. A paused source gets no compute. */
    void (*set_paused)(fb_source *s, int paused);
    /* Optional: the factor (>= 1) by which the session stretches its frame period now. */
    double (*pace)(fb_source *s);
    /* Optional: figures for stats; any thread while the source is open. */
    void (*get_stats)(fb_source *s, fb_source_stats *out);
} fb_source_ops;

extern const fb_source_ops fb_source_testpattern;
extern const fb_source_ops fb_source_engine;

/* "testpattern" | "engine" -> its ops; NULL for a source this build does not have. */
const fb_source_ops *fb_source_find(const char *name);

#endif
