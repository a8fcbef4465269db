/* daemon/scheduler.h - the engine side of flipbookd: one model, the worker threads that generate
 * every engine session's chunks, admission, and each session's playback buffer.
 *
 * The model is loaded once (fbd_sched_start) and shared by every session. Each engine session
 * owns an fbd_gen: an engine stream (opened by a worker on first use, so its KV share comes
 * from the model's pool), a bounded ring of decoded RGB24 frames (the playback buffer), and a
 * queue of controls. The session's pacing thread pops frames at the model's frame rate
 * (fbd_gen_pop); the workers keep every ring about one chunk ahead:
 *
 *   - a gen is *due* when its ring holds fewer frames than cover the time to make the next
 *     chunk (with margin; never more than one chunk's worth) and has room for a whole chunk;
 *   - each round a worker takes the due gens whose rings run dry first (earliest deadline),
 *     up to `batch` of them, and runs their next chunks in one fb_streams_next_chunk() call;
 *   - queued controls (prompt, seed, pin, anchor image, reset) are applied by the worker right
 *     before the gen's next chunk, so the engine stream is only ever touched by one worker;
 *     their acknowledgement (with the chunk and frame at which they take effect) comes back
 *     through the gen's notify callback.
 *
 * Admission (fbd_sched_admit): the KV pool decides how many streams exist at all; the measured
 * chunk time (the median of recent chunks, first measured at start-up) plus the time encoding
 * a chunk's frames takes decides how many sessions fit at full frame rate. Past that a new session is refused with a message saying
 * how many fit, or, with overcommit "slow", admitted: every session then paces its frames
 * slower by the same factor (fbd_gen_slowdown), so the machine keeps up and no backlog builds.
 * A paused gen takes no compute; a closed one frees its engine stream (and KV share) at once.
 *
 * Test hooks (read once at start): FLIPBOOK_ENGINE_SLOW_MS=N adds N ms to every chunk (a slow
 * machine, for admission and slowdown tests); FLIPBOOK_ENGINE_FAIL_ON_PROMPT=WORD makes every
 * engine call of a stream whose prompt contains WORD fail as a backend failure would.
 *
 * This header does not include engine/engine.h (stream/protocol.h defines names that clash
 * with it); only scheduler.c talks to the engine.
 *
 * Thread-safety: every function may be called from any thread, except that a gen belongs to
 * one session: fbd_gen_attach, fbd_gen_pop, fbd_gen_control, fbd_gen_set_paused and
 * fbd_gen_close come from that session's thread (fbd_gen_get_stats, fbd_gen_slowdown from any
 * thread while the gen is open). Notify callbacks run on worker threads, never under the
 * scheduler's lock.
 */
#ifndef FLIPBOOK_DAEMON_SCHEDULER_H
#define FLIPBOOK_DAEMON_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

typedef struct fbd_sched fbd_sched;
typedef struct fbd_gen fbd_gen;

typedef enum fbd_overcommit {
    FBD_OVERCOMMIT_REFUSE = 0,   /* refuse sessions past what runs at full frame rate */
    FBD_OVERCOMMIT_SLOW = 1,     /* admit them; all sessions slow down evenly */
} fbd_overcommit;

typedef struct fbd_sched_params {
    const char *model;           /* a model file, or "default" */
    int max_sessions;            /* the KV pool holds this many streams when kv_budget is 0 */
    size_t kv_budget;            /* KV pool bytes; 0 = room for max_sessions streams */
    int workers;                 /* scheduler threads (>= 1) */
    int threads;                 /* CPU kernel threads per engine call; 0 = one per core */
    int batch;                   /* most streams in one batched call (>= 1) */
    int overcommit;              /* fbd_overcommit */
} fbd_sched_params;

/* fbd_sched_start results. */
enum {
    FBD_SCHED_OK = 0,
    FBD_SCHED_ERR = -1,          /* the model is invalid, or anything else: err says what */
    FBD_SCHED_NOT_INSTALLED = -2,/* "default" asked for and not installed */
    FBD_SCHED_NOT_FOUND = -3,    /* a model path that does not exist */
};

/* Loads the model, measures a chunk on a throw-away stream (so admission has a figure from the
 * start) and starts the workers. */
int fbd_sched_start(const fbd_sched_params *p, fbd_sched **out, char *err, size_t err_size);
/* Stops the workers and frees the model. Every gen must be closed first. NULL is ignored. */
void fbd_sched_stop(fbd_sched *s);

typedef struct fbd_sched_info {
    char model_name[128];
    const char *prompts_json;    /* the model's example prompts (a JSON array of strings), or
                                  * NULL; valid until fbd_sched_stop */
    char backend[16];            /* "cpu" */
    int width, height;           /* frame size */
    double fps;                  /* the model's frame rate */
    int frames_per_chunk;        /* every chunk but the first */
    int first_chunk_frames;
    int anchor_frames, window_frames;
    int kv_streams;              /* streams the KV pool holds */
    double chunk_ms;             /* current estimate of one stream's chunk */
    double encode_ms;            /* machine time encoding one chunk's frames takes (all cores) */
    double period_ms;            /* a session at full rate needs a chunk this often */
    int capacity;                /* sessions at full frame rate (estimate; at least 1) */
    int sessions;                /* gens open now */
    int active;                  /* of them not paused and not failed */
    double slowdown;             /* the factor every session is slowed by now (1 = none) */
    size_t weight_bytes, kv_bytes_per_stream, stream_bytes;
} fbd_sched_info;

void fbd_sched_get_info(fbd_sched *s, fbd_sched_info *out);

/* Checks a prompt with the model's tokenizer (cheap; no engine compute). Returns 0 and lists
 * the words the model does not know (space-separated, truncated to unknown_size) with their
 * count; or -1 with a message in err (empty or blank prompt, ...). */
int fbd_sched_check_prompt(fbd_sched *s, const char *prompt, char *unknown, size_t unknown_size,
                           int *n_unknown, char *err, size_t err_size);

/* fbd_sched_admit refusal kinds. */
enum {
    FBD_ADMIT_REFUSED_KV = 1,    /* the KV pool is full */
    FBD_ADMIT_REFUSED_COMPUTE,   /* no room at full frame rate (overcommit refuse) */
    FBD_ADMIT_BAD_PROMPT,
    FBD_ADMIT_NO_MEMORY,
};

/* Admits a new session: returns its gen (not yet scheduled: see fbd_gen_attach), or NULL with
 * *why set to one of the kinds above and a message for the client in msg. Cheap: the engine
 * stream is opened by a worker later. */
fbd_gen *fbd_sched_admit(fbd_sched *s, const char *prompt, uint64_t seed, int *why, char *msg,
                         size_t msg_size);

/* ---- one session's generation ------------------------------------------------------------ */

typedef enum fbd_gen_ctl_kind {
    FBD_GEN_PROMPT = 0,
    FBD_GEN_SEED,
    FBD_GEN_RESET,
    FBD_GEN_PIN,                 /* the latest generated chunk becomes the anchor */
    FBD_GEN_CLEAR,               /* drop pinned/uploaded anchors: the stream restarts (reset) */
    FBD_GEN_IMAGE,               /* an RGB24 image becomes the anchor */
} fbd_gen_ctl_kind;

/* Where the answer to a control goes; opaque to the scheduler, handed back in the note. */
typedef struct fbd_gen_reply_to {
    uint64_t conn_id;
    int has_id;
    int64_t id;
    int type;
} fbd_gen_reply_to;

typedef struct fbd_gen_ctl {
    fbd_gen_ctl_kind kind;
    fbd_gen_reply_to to;
    int64_t t_us;                /* CLOCK_MONOTONIC arrival (prompt-to-first-frame figure) */
    const char *text;            /* PROMPT: copied */
    int transition;              /* PROMPT: 0 cut, 1 recache, 2 blend */
    int chunks;                  /* PROMPT: blend length */
    uint64_t seed;               /* SEED */
    const uint8_t *rgb;          /* IMAGE: width * height * 3 bytes, rows packed; copied */
    int width, height;           /* IMAGE */
} fbd_gen_ctl;

typedef enum fbd_gen_note_kind {
    FBD_NOTE_FRAMES = 0,         /* frames arrived after fbd_gen_pop found none */
    FBD_NOTE_ACK,                /* a control took effect */
    FBD_NOTE_ERROR,              /* a control was refused; the stream goes on */
    FBD_NOTE_FAILED,             /* the stream failed; the session must end (message) */
} fbd_gen_note_kind;

enum { FBD_GEN_ERR_BAD_VALUE = 1, FBD_GEN_ERR_UNSUPPORTED, FBD_GEN_ERR_INTERNAL };

typedef struct fbd_gen_note {
    fbd_gen_note_kind kind;
    fbd_gen_ctl_kind ctl;        /* ACK, ERROR */
    fbd_gen_reply_to to;         /* ACK, ERROR */
    int64_t chunk;               /* ACK: the first chunk generated under the change */
    int64_t frame;               /* ACK: the session frame number that chunk starts at */
    int transition, chunks;      /* ACK of PROMPT */
    uint64_t seed;               /* ACK of SEED */
    const char *unknown_words;   /* ACK of PROMPT: space-separated ("" when none) */
    int n_unknown;
    int error;                   /* ERROR: FBD_GEN_ERR_* */
    const char *message;         /* ERROR, FAILED */
} fbd_gen_note;

typedef void (*fbd_gen_notify_fn)(void *ctx, const fbd_gen_note *note);

/* Connects the gen to its session and lets the workers start on it. */
void fbd_gen_attach(fbd_gen *g, fbd_gen_notify_fn fn, void *ctx);

/* Copies the next buffered frame (width * height * 3 bytes) into rgb. `frame_no` is the
 * number the session gives it on the wire (acks predict frame numbers from it). Returns 1 with
 * a frame; 0 when none is ready (a FRAMES note follows when one is); -1 when the stream has
 * failed (err says why). */
int fbd_gen_pop(fbd_gen *g, uint8_t *rgb, uint32_t frame_no, char *err, size_t err_size);

/* Queues a control for the worker. Returns 0 (an ACK or ERROR note answers it later), -1 with
 * a message in err when it is refused at once (bad prompt, bad image, out of memory), or -2
 * when the model has no such feature (pin without anchor frames). */
int fbd_gen_control(fbd_gen *g, const fbd_gen_ctl *c, char *err, size_t err_size);

/* A paused gen gets no chunks (its buffer is kept); controls are still applied. */
void fbd_gen_set_paused(fbd_gen *g, int paused);

/* The factor by which the session should stretch its frame period (>= 1). */
double fbd_gen_slowdown(fbd_gen *g);

typedef struct fbd_gen_stats {
    int64_t chunk;               /* chunk of the last frame handed out; -1 before any */
    int64_t next_chunk;          /* chunk of the next frame handed out (or to be generated) */
    uint64_t frames_generated;   /* since the gen was admitted */
    uint64_t chunks_generated;
    double chunk_ms;             /* time to generate the last chunk (0 before any) */
    int buffer;                  /* frames in the playback buffer */
    int buffer_capacity;
    int kv_used, kv_total;       /* this stream's KV frame slots filled / held */
    int kv_streams, kv_streams_max; /* engine streams open / the pool's room */
    double prompt_latency_ms;    /* last prompt change to its first frame handed out; -1 none */
    double slowdown;
    int paused;
} fbd_gen_stats;

void fbd_gen_get_stats(fbd_gen *g, fbd_gen_stats *out);

/* Waits for a worker still busy with the gen, then frees its engine stream (the KV share goes
 * back to the pool), its buffer and queued controls (unanswered). NULL is ignored. */
void fbd_gen_close(fbd_gen *g);

#endif
