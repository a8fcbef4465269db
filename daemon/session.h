/* daemon/session.h - one live stream: its identity, its frame thread and its recording.
 *
 * A session owns a thread that pulls frames from its fb_source (daemon/source.h), paces them at
 * the session's fps on the monotonic clock (never ahead of time; a late frame is not followed by
 * a burst), encodes them to VP9 and hands every packet to the socket thread (and to its recorder
 * while recording). Steering messages reach the thread through a locked mailbox; the thread
 * applies them before its next frame and answers (ack with the frame number from which the
 * change applies, error, recording state) through the same event path as the packets.
 *
 * With the engine source, frames come from a playback buffer that the scheduler's workers fill
 * (daemon/scheduler.h): when it is empty the thread waits for the source's FRAMES note instead
 * of drawing (the slot counts as late: the stream drops to a lower frame rate rather than
 * queueing), it stretches its frame period by the source's pace factor (even slowdown when the
 * machine is overcommitted), and steering is queued for the workers, whose notes carry the
 * ack (with the chunk and frame of the change) back through this session.
 *
 * Events from the thread are posted to the fb_ws_server and run on its service thread, where
 * the daemon's hub (daemon/hub.c) delivers them; the hub never blocks on a session.
 *
 * Ending: fbd_session_stop() asks the thread to finish; it stops producing, finalizes a running
 * recording, frees the encoder and the source, then posts on_exit. Only after on_exit may the
 * hub call fbd_session_join(). A failure inside the thread (source or encoder) ends the session
 * the same way, with the reason in on_exit; it never ends the daemon.
 *
 * Thread-safety: control, request_keyframe, stop, the getters and ref/unref may be called from
 * any thread. start and join belong to one owner thread (the service thread). A session is
 * refcounted: the owner holds one reference, every event in flight holds one.
 */
#ifndef FLIPBOOK_DAEMON_SESSION_H
#define FLIPBOOK_DAEMON_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/source.h"
#include "stream/packet.h"
#include "stream/protocol.h"
#include "stream/vp9enc.h"
#include "stream/ws_server.h"

#define FBD_SESSION_ID_LEN 12      /* hex characters */
#define FBD_SESSION_TOKEN_LEN 32

typedef struct fbd_session fbd_session;

/* Called on the service thread (posted through fb_ws_server_post). `hub_data` is the pointer
 * given in the params. The packet and text belong to the session: copy or ref what you keep. */
typedef struct fbd_session_events {
    void (*on_packet)(void *hub_data, fbd_session *s, fb_packet *p);
    /* conn_id 0: to every owner connection; otherwise to that connection only. */
    void (*on_reply)(void *hub_data, fbd_session *s, uint64_t conn_id, const char *json);
    /* The thread has finished; failure is "" for a normal end. */
    void (*on_exit)(void *hub_data, fbd_session *s, const char *failure);
} fbd_session_events;

typedef struct fbd_session_params {
    const fb_source_ops *source;
    fb_source_params src;          /* strings are copied; src.engine (an fbd_gen) is taken
                                    * over: closed by the session, also when it cannot start;
                                    * notify/notify_ctx are set by the session */
    fb_vp9enc_params enc;
    const char *record_dir;        /* copied */
    fb_ws_server *server;          /* events are posted here */
    fbd_session_events events;
    void *hub_data;
} fbd_session_params;

/* Creates the session (new random id and owner token) and starts its thread. Returns 0, or -1
 * with a message in err. */
int fbd_session_start(const fbd_session_params *p, fbd_session **out, char *err, size_t err_size);

const char *fbd_session_id(const fbd_session *s);
const char *fbd_session_token(const fbd_session *s);
/* Constant-time comparison with the owner token. */
int fbd_session_token_matches(const fbd_session *s, const char *token);

/* Queues a steering message (prompt, seed, pause, resume, reset, record, anchor) for the
 * thread; the answer comes back through on_reply to conn_id. Returns 0, or -1 when out of
 * memory or when the message is not a steering message. */
int fbd_session_control(fbd_session *s, uint64_t conn_id, const fb_msg *m);

/* An anchor image as the hub assembled it from one or more `anchor` messages. */
typedef struct fbd_anchor_image {
    int width, height;             /* as declared by the client (0: not given) */
    const char *format;            /* "rgb24" | "rgba32" | NULL (not given) */
    const char *data;              /* base64, all parts joined */
    size_t data_len;
} fbd_anchor_image;

/* fbd_session_control for an `anchor` `image` message whose data is `img` (copied). */
int fbd_session_control_image(fbd_session *s, uint64_t conn_id, const fb_msg *m,
                              const fbd_anchor_image *img);
/* Asks for a keyframe (joins, decoder errors, fan-out skips); the encoder rate-limits them. */
void fbd_session_request_keyframe(fbd_session *s);
/* Asks the thread to finish (idempotent). */
void fbd_session_stop(fbd_session *s);
/* Waits for the thread; call once, after on_exit has run. */
void fbd_session_join(fbd_session *s);

fbd_session *fbd_session_ref(fbd_session *s);
void fbd_session_unref(fbd_session *s);

typedef struct fbd_session_counters {
    uint64_t frames;               /* frames encoded */
    uint64_t bytes;                /* encoded bytes */
    uint64_t encode_ns;            /* total encode time */
    int64_t last_frame;            /* number of the newest frame, -1 before the first */
    uint64_t late;                 /* frame slots skipped (slow source, empty buffer) */
    int paused, recording;
    int width, height, fps;
    /* the last acknowledged control: type NULL before any; chunk -1 when not known */
    const char *last_type;
    int64_t last_chunk, last_frame_of_control;
    /* engine sources */
    int has_engine;
    fb_source_stats engine;
} fbd_session_counters;
void fbd_session_get_counters(const fbd_session *s, fbd_session_counters *c);

/* Is `name` a recording this process is writing right now? (Not served until finished.) */
int fbd_recording_is_active(const char *name);
/* Does `name` look like a recording name the daemon makes (<id>-<YYYYMMDDTHHMMSSZ>[-N].webm)? */
int fbd_recording_name_valid(const char *name);

#endif
