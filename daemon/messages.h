/* daemon/messages.h - the flipbook.v1 server messages with the fields the daemon adds for
 * engine sessions (docs/protocol.md): `chunk` in acks, the engine figures and `lastControl` in
 * stats, `source`/`model`/anchor limits in config, `unknownWords` in hello; and the `server`
 * message that answers a client's `info` request (what a page shows before any session).
 *
 * Each builder starts from stream/protocol.h's message (so the base fields stay defined in one
 * place) and adds to it; `server` has no base message there and is built here whole. They return a malloc'd JSON string to free with fb_proto_free(), or
 * NULL when out of memory.
 *
 * Thread-safety: reentrant; no shared state.
 */
#ifndef FLIPBOOK_DAEMON_MESSAGES_H
#define FLIPBOOK_DAEMON_MESSAGES_H

#include <stdint.h>

#include "daemon/source.h"
#include "stream/protocol.h"

/* Anchor images travel base64-encoded in `anchor` messages; an image larger than one message
 * is split into parts, each at most this many characters of base64. */
#define FBD_ANCHOR_PART_CHARS 60000

/* An ack, plus `chunk` when has_chunk. */
char *fbd_msg_ack(const fb_ack *a, int has_chunk, int64_t chunk);

/* An ack of a prompt: unknown_words is space-separated (may be "" or NULL: no field). */
char *fbd_msg_ack_prompt(const fb_ack *a, int has_chunk, int64_t chunk,
                         const char *unknown_words);

typedef struct fbd_stats_ext {
    int64_t late;                /* frame slots this session skipped (slow frames, empty buffer) */
    const char *last_type;       /* NULL: no control yet */
    int64_t last_chunk;          /* -1: none */
    int64_t last_frame;
    int has_engine;
    fb_source_stats engine;
    double gen_fps;              /* frames the engine generated per second, last interval */
} fbd_stats_ext;

char *fbd_msg_stats(const fb_stats_msg *s, const fbd_stats_ext *x);

typedef struct fbd_config_ext {
    const char *source;          /* "testpattern" | "engine" */
    const char *model;           /* engine: the model's name */
    int chunk_frames;            /* engine: frames per chunk */
    int anchor_width, anchor_height; /* engine: anchor image size (0: anchors unsupported) */
} fbd_config_ext;

char *fbd_msg_config(int width, int height, int fps, const fbd_config_ext *x);

/* hello, plus `unknownWords` (space-separated list; NULL or "": no field). */
char *fbd_msg_hello(const char *session, int is_owner, const char *token, const char *server,
                    const char *unknown_words);

/* The `server` message: what this daemon serves, before any session exists. */
typedef struct fbd_server_info {
    int has_id;
    int64_t id;                  /* the `info` request's id, echoed */
    const char *version;         /* "flipbookd/x.y.z" */
    const char *source;          /* "testpattern" | "engine" */
    const char *model;           /* engine: the model's name; NULL for the test pattern */
    int width, height, fps;      /* what a `start` without them gets */
    int chunk_frames;            /* engine: frames per chunk; 0: no field */
    const char *prompts_json;    /* the model's example prompts (JSON array of strings) or NULL */
    int engine;                  /* 1: transitions are real (cut, recache, blend), anchors apply */
    int anchor_width, anchor_height; /* engine with anchor frames; 0: anchors unsupported */
} fbd_server_info;

char *fbd_msg_server(const fbd_server_info *x);

#endif
