/* stream/protocol.h - the flipbook.v1 control messages of docs/protocol.md as C data.
 *
 * fb_msg_parse() turns one client text message into a tagged struct, checking every field the
 * protocol defines; when it refuses a message it fills an fb_msg_error with the protocol's error
 * code and a fixed, human-readable message (so tests and clients can rely on both). The
 * fb_proto_*() builders produce the server's text messages (hello, config, ack, stats,
 * recording, error, end) as NUL-terminated JSON strings.
 *
 * Also here: a strict UTF-8 validator and the per-connection token bucket used for the message
 * rate limit, because both are protocol rules and want unit tests without sockets.
 *
 *   fb_msg m; fb_msg_error e;
 *   if (fb_msg_parse(text, len, &m, &e) != 0) {
 *       char *err = fb_proto_error(e.code, e.message, e.has_id, e.id, 0);
 *       ... send err ...; fb_proto_free(err);
 *   } else { ... switch (m.type) ...; fb_msg_clear(&m); }
 *
 * Thread-safety: every function is reentrant and touches no global state; separate messages may
 * be parsed or built on any threads at once.
 */
#ifndef FLIPBOOK_STREAM_PROTOCOL_H
#define FLIPBOOK_STREAM_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#define FB_PROTO_NAME "flipbook.v1"          /* WebSocket subprotocol */
#define FB_PROTO_PATH "/ws"                  /* WebSocket endpoint */
#define FB_PROTO_CODEC "vp09.00.31.08"       /* WebCodecs codec string for the video */
#define FB_PROTO_MAX_MESSAGE (64 * 1024)     /* bytes of one client text message */
#define FB_PROTO_MAX_PROMPT 2000             /* bytes of UTF-8 in a prompt */
#define FB_PROTO_RATE_PER_SEC 20.0           /* client messages per second ... */
#define FB_PROTO_RATE_BURST 40.0             /* ... with this burst */
#define FB_PROTO_MAX_SEED 9007199254740991.0 /* 2^53 - 1: the largest integer a JSON double holds */
#define FB_PROTO_MAX_ID_LEN 64               /* session ids and tokens longer than this are refused */
#define FB_PROTO_MIN_SIZE 16                 /* width/height bounds the protocol accepts at all; */
#define FB_PROTO_MAX_SIZE 4096               /* a source may narrow them (bad_value from the daemon) */
#define FB_PROTO_MAX_FPS 120
#define FB_PROTO_MIN_CHUNKS 1
#define FB_PROTO_MAX_CHUNKS 64
#define FB_PROTO_DEFAULT_CHUNKS 4

typedef enum fb_msg_type {
    FB_MSG_START = 0,
    FB_MSG_JOIN,
    FB_MSG_PROMPT,
    FB_MSG_SEED,
    FB_MSG_PAUSE,
    FB_MSG_RESUME,
    FB_MSG_RECORD,
    FB_MSG_ANCHOR,
    FB_MSG_RESET,
    FB_MSG_KEYFRAME,
    FB_MSG_STOP,
    FB_MSG_STATS,
    FB_MSG_INFO,                /* what the server offers; needs no session */
    FB_MSG_COUNT
} fb_msg_type;

/* Error codes of docs/protocol.md, in its table order. */
typedef enum fb_err {
    FB_ERR_NONE = 0,
    FB_ERR_BAD_JSON,
    FB_ERR_BAD_MESSAGE,
    FB_ERR_BAD_VALUE,
    FB_ERR_UNKNOWN_TYPE,
    FB_ERR_TOO_LARGE,
    FB_ERR_RATE_LIMITED,
    FB_ERR_BINARY_NOT_ALLOWED,
    FB_ERR_NO_SESSION,
    FB_ERR_ALREADY_IN_SESSION,
    FB_ERR_BAD_TOKEN,
    FB_ERR_NOT_OWNER,
    FB_ERR_SESSION_LIMIT,
    FB_ERR_UNSUPPORTED,
    FB_ERR_RECORD_FAILED,
    FB_ERR_INTERNAL,
    FB_ERR_COUNT
} fb_err;

typedef enum fb_msg_transition { FB_MSG_TRANSITION_CUT = 0, FB_MSG_TRANSITION_RECACHE, FB_MSG_TRANSITION_BLEND } fb_msg_transition;
typedef enum fb_record_action { FB_RECORD_START = 0, FB_RECORD_STOP } fb_record_action;
typedef enum fb_anchor_action { FB_ANCHOR_PIN = 0, FB_ANCHOR_CLEAR, FB_ANCHOR_IMAGE } fb_anchor_action;

/* One parsed client message. Only the fields of its type are meaningful; the rest are zero. */
typedef struct fb_msg {
    fb_msg_type type;
    int has_id;
    int64_t id;                 /* echoed in the ack/error that answers the message */

    /* start: `prompt`; prompt: `text`. Owned, NUL-terminated, valid UTF-8, <= 2000 bytes. */
    char *text;
    size_t text_len;

    /* start (optional) and seed (required) */
    int has_seed;
    uint64_t seed;

    /* start: 0 when not given */
    int width, height, fps;

    /* join */
    char session[FB_PROTO_MAX_ID_LEN + 1];
    int has_token;
    char token[FB_PROTO_MAX_ID_LEN + 1];

    /* prompt */
    fb_msg_transition transition;
    int chunks;

    /* record */
    fb_record_action record;

    /* anchor: data is owned base64 text (only for FB_ANCHOR_IMAGE) */
    fb_anchor_action anchor;
    char *anchor_data;
    size_t anchor_data_len;

    /* stats: client-side figures */
    int has_decode_queue, has_client_fps, has_client_dropped;
    double decode_queue, client_fps, client_dropped;
} fb_msg;

typedef struct fb_msg_error {
    fb_err code;
    int has_id;                 /* the message's id, when it had a valid one */
    int64_t id;
    char message[192];
} fb_msg_error;

/* Parses `len` bytes of a client text message (it need not be NUL-terminated). Returns 0 and
 * fills *out (release it with fb_msg_clear), or -1 and fills *err; *out is then cleared. */
int fb_msg_parse(const char *text, size_t len, fb_msg *out, fb_msg_error *err);
void fb_msg_clear(fb_msg *m);

const char *fb_msg_type_name(fb_msg_type t);  /* "start", "join", ... ; "?" when out of range */
const char *fb_err_code(fb_err e);            /* "bad_json", ... ; "internal" when out of range */
int fb_msg_needs_owner(fb_msg_type t);        /* 1 for the steering messages viewers may not send */
const char *fb_msg_transition_name(fb_msg_transition t);

/* 1 when buf[0..len) is well-formed UTF-8 (no overlongs, surrogates or code points > U+10FFFF). */
int fb_utf8_valid(const void *buf, size_t len);

/* ---- server messages: each returns a malloc'd JSON string (free with fb_proto_free), or NULL
 * when out of memory. String arguments may be NULL where the field is optional. ---- */

void fb_proto_free(char *s);

char *fb_proto_hello(const char *session, int is_owner, const char *token, const char *server);
char *fb_proto_config(int width, int height, int fps);

typedef struct fb_ack {
    const char *of;             /* the message type acknowledged */
    int has_id;
    int64_t id;
    int has_frame;
    int64_t frame;              /* the frame from which the change takes effect */
    int has_seed;
    uint64_t seed;
    const char *transition;     /* for prompt */
    const char *const *unknown_words; /* for prompt on a model; may be NULL */
    int n_unknown_words;
} fb_ack;
char *fb_proto_ack(const fb_ack *a);

typedef struct fb_stats_msg {
    int64_t frame;
    double fps;                 /* generated frames per second */
    double sent_fps;            /* delivered to this client */
    double bitrate_kbps;
    double encode_ms;
    int64_t queue;              /* this client's queued frames */
    int64_t dropped;            /* this client's skipped frames */
    int64_t viewers;
    int recording, paused;
} fb_stats_msg;
char *fb_proto_stats(const fb_stats_msg *s);

/* state: "started" | "stopped" | "failed"; url and message may be NULL. */
char *fb_proto_recording(const char *state, const char *name, const char *url, uint64_t bytes,
                         const char *message);
char *fb_proto_error(fb_err code, const char *message, int has_id, int64_t id, int fatal);
char *fb_proto_end(const char *reason);

/* ---- token bucket: `rate` tokens per second up to `burst`; starts full ---- */
typedef struct fb_rate {
    int64_t tokens_u, burst_u;  /* millionths of a token: exact for whole-microsecond clocks */
    double rate;
    int64_t last_us;
} fb_rate;
void fb_rate_init(fb_rate *r, double rate, double burst, int64_t now_us);
/* Takes one token: 1 when the message may pass, 0 when it is over the limit. */
int fb_rate_take(fb_rate *r, int64_t now_us);

#endif
