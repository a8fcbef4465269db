/* stream/recorder.h - records a stream's packets to a WebM file without ever stalling the stream.
 *
 * Each recorder owns one writer thread. fb_recorder_push() only takes a reference to the packet
 * and queues it; the writer thread muxes it (webm.c) and writes the bytes at offsets it tracks
 * itself, through an io_uring (liburing) or, where io_uring is refused (containers block it),
 * with pwrite(). Data is fdatasync()ed every few seconds; close finalizes the file (Cues,
 * Duration, sizes) and fsync()s it.
 *
 * One thread per recorder (rather than one shared writer) keeps a slow or failing disk behind
 * one recording from delaying another, and an io_uring must stay with one thread anyway.
 * Recordings are few, so the cost is small.
 *
 * The file is written under its final name from the first byte: it plays while it is being
 * recorded, and after a crash or SIGKILL it still plays up to the last frame written (see webm.h).
 *
 * Failure never blocks or crashes the stream. When the disk is full, the file cannot be written
 * or the writer falls more than `queue_frames` behind, the recording fails: push returns the
 * error from then on, fb_recorder_failed() turns true, and `on_fail` is called once from the
 * writer thread, so the daemon can tell the owner while the stream goes on. The file keeps
 * everything written before the failure and stays playable; close still finalizes it when the
 * disk itself is not the problem.
 *
 * The first frame in the file must be a keyframe: packets pushed before the first keyframe are
 * skipped (counted in `frames_skipped`). Ask the encoder for a keyframe when starting a recording.
 *
 * The daemon should ignore SIGXFSZ, so that a file-size limit is reported as an error rather than
 * ending the process.
 *
 * Usage:
 *   fb_recorder_params rp = fb_recorder_default_params();
 *   rp.on_fail = tell_owner; rp.user = session;
 *   fb_recorder *rec;
 *   char err[256];
 *   if (fb_recorder_open("rec/abc.webm", 832, 480, 30, &rp, &rec, err, sizeof err) != FB_RECORDER_OK)
 *       reply_error("record_failed", err);
 *   fb_vp9enc_request_keyframe(enc);
 *   ... for each packet: fb_recorder_push(rec, pkt);    // from the encoder thread
 *   uint64_t bytes;
 *   fb_recorder_close(rec, &bytes, err, sizeof err);
 *
 * Thread-safety: push, failed, get_status and get_stats may be called from any thread; open and
 * close from one owner thread (close must not race with push). on_fail runs on the writer thread
 * and must not call close.
 */
#ifndef FLIPBOOK_STREAM_RECORDER_H
#define FLIPBOOK_STREAM_RECORDER_H

#include <stddef.h>
#include <stdint.h>

#include "stream/packet.h"

/* Status codes. Negative values are errors. After any error other than ERR_ARG from push, the
 * recording has stopped: later pushes return the same code and close returns it too. */
typedef enum fb_recorder_status {
    FB_RECORDER_OK = 0,
    FB_RECORDER_ERR_ARG = -1,            /* NULL pointer or bad size/params; nothing changed */
    FB_RECORDER_ERR_CANNOT_WRITE = -2,   /* the file cannot be created or written: permissions,
                                          * read-only file system, missing directory */
    FB_RECORDER_ERR_DISK_FULL = -3,      /* ENOSPC or EDQUOT */
    FB_RECORDER_ERR_FILE_TOO_LARGE = -4, /* EFBIG: the file size limit (RLIMIT_FSIZE) */
    FB_RECORDER_ERR_IO = -5,             /* any other write or sync error */
    FB_RECORDER_ERR_QUEUE_FULL = -6,     /* the writer fell queue_frames packets behind */
    FB_RECORDER_ERR_FRAME = -7,          /* the muxer refused a frame (time went backwards) */
    FB_RECORDER_ERR_NOMEM = -8,          /* out of memory */
} fb_recorder_status;

/* Called once when the recording fails, on the writer thread. `message` is a short human
 * sentence without the file path ("disk full (No space left on device)"). */
typedef void (*fb_recorder_fail_fn)(void *user, fb_recorder_status status, const char *message);

typedef struct fb_recorder_params {
    int queue_frames;        /* packets that may wait for the writer, 1..65536; default 256 */
    int sync_interval_ms;    /* fdatasync at most this long after data was written, 0 = only at
                              * close; default 2000 */
    int force_pwrite;        /* 1: use pwrite() even if io_uring works (the environment variable
                              * FLIPBOOK_RECORDER_PWRITE=1 does the same) */
    fb_recorder_fail_fn on_fail;  /* optional */
    void *user;                   /* passed to on_fail */
} fb_recorder_params;

typedef struct fb_recorder_stats {
    uint64_t frames_written;  /* frames handed to the muxer */
    uint64_t frames_skipped;  /* packets before the first keyframe */
    uint64_t bytes;           /* length of the file so far */
} fb_recorder_stats;

typedef struct fb_recorder fb_recorder;

fb_recorder_params fb_recorder_default_params(void);

/* Creates (or truncates) `path`, writes the WebM header synchronously (so a full disk or an
 * unwritable directory is reported here) and starts the writer thread. `params` may be NULL for
 * the defaults. On failure *out is NULL and err (if not NULL) gets a message. */
fb_recorder_status fb_recorder_open(const char *path, int width, int height, int fps,
                                    const fb_recorder_params *params, fb_recorder **out,
                                    char *err, size_t err_size);

/* Queues a packet (takes its own reference; the caller keeps its own). Never blocks on I/O.
 * Returns FB_RECORDER_OK, or the failure status once the recording has failed. */
fb_recorder_status fb_recorder_push(fb_recorder *r, fb_packet *p);

/* Writes what is queued, finalizes the file, fsyncs it, stops the thread and frees the recorder.
 * *bytes (if not NULL) gets the file's size. Returns OK or the status of the failure (with its
 * message in err). */
fb_recorder_status fb_recorder_close(fb_recorder *r, uint64_t *bytes, char *err, size_t err_size);

/* 1 once the recording has failed (cheap; a pollable flag for the daemon's loop). */
int fb_recorder_failed(const fb_recorder *r);

/* The current status; when it is an error and msg is not NULL, copies its message into msg. */
fb_recorder_status fb_recorder_get_status(fb_recorder *r, char *msg, size_t msg_size);

void fb_recorder_get_stats(const fb_recorder *r, fb_recorder_stats *out);

/* "io_uring" or "pwrite": the write path in use. */
const char *fb_recorder_backend(const fb_recorder *r);

const char *fb_recorder_status_str(fb_recorder_status s);

#endif
