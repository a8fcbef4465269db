/* stream/webm.h - a WebM (Matroska) muxer for one VP9 video track, written for live recording.
 *
 * The file is playable at every moment: the muxer appends each frame as soon as it gets it, and a
 * file cut off anywhere after the first frame (crash, SIGKILL, full disk) still plays in ffmpeg
 * and browsers as a "live" WebM. Closing it properly adds what players need to seek.
 *
 *   at open   EBML header (DocType webm), Segment of unknown size, a Void reserving room for the
 *             SeekHead, Info (1 ms ticks, "flipbook", a Void where Duration will go), Tracks (one
 *             V_VP9 track with size, frame duration and a BT.709 limited-range Colour element)
 *   per frame a SimpleBlock; a new Cluster (unknown size) before every keyframe, and when the
 *             block's time relative to its cluster would pass 5 s or int16 range. Starting a
 *             cluster patches the previous cluster's size in place.
 *   finalize  patches the last cluster's size, appends Cues (one CuePoint per keyframe cluster),
 *             writes Duration and the SeekHead (Info, Tracks, Cues) into their reserved space,
 *             then patches the Segment size. The file is then an ordinary seekable WebM.
 *
 * Timestamps: the first frame is at 0; later ones are (pts_us - first pts_us) rounded to ms.
 *
 * All output goes through a sink that writes bytes at explicit offsets. The muxer keeps track of
 * the end of the file itself, so a sink never appends blindly (the recorder's io_uring writes can
 * complete out of order) and patches are plain writes at known offsets.
 *
 * Usage:
 *   fb_webm_sink sink = fb_webm_fd_sink(fd);
 *   fb_webm_params wp = {832, 480, 30};
 *   fb_webm *m;
 *   if (fb_webm_open(&sink, &wp, &m) != FB_WEBM_OK) ...
 *   for each packet: fb_webm_write_packet(m, pkt);     // first one must be a keyframe
 *   fb_webm_finalize(m);
 *   fb_webm_free(m);
 *
 * Thread-safety: a muxer is used by one thread at a time. It calls its sink only from inside
 * its own functions, on the calling thread.
 */
#ifndef FLIPBOOK_STREAM_WEBM_H
#define FLIPBOOK_STREAM_WEBM_H

#include <stddef.h>
#include <stdint.h>

#include "stream/packet.h"

#define FB_WEBM_MAX_FRAME (64u << 20) /* larger frames are refused */
#define FB_WEBM_CLUSTER_MAX_MS 5000   /* a cluster spans at most this much time */

/* Where the bytes go. write_at() must write all `len` bytes at `offset` (retrying short writes
 * itself) and return 0, or return a negative errno value. `buf` is only valid during the call:
 * a sink that writes asynchronously must copy it. Offsets of successive calls are not
 * increasing: patches go back to earlier offsets. */
typedef struct fb_webm_sink {
    void *ctx;
    int (*write_at)(void *ctx, uint64_t offset, const void *buf, size_t len);
} fb_webm_sink;

/* Status codes. Negative values are errors; the comment says what state survives. */
typedef enum fb_webm_status {
    FB_WEBM_OK = 0,
    FB_WEBM_ERR_ARG = -1,         /* NULL pointer or bad params; nothing changed */
    FB_WEBM_ERR_NO_KEYFRAME = -2, /* the first frame must be a keyframe; frame refused */
    FB_WEBM_ERR_TIMESTAMP = -3,   /* negative, or before the previous frame; frame refused */
    FB_WEBM_ERR_FRAME_SIZE = -4,  /* empty frame or larger than FB_WEBM_MAX_FRAME; refused */
    FB_WEBM_ERR_IO = -5,          /* the sink failed (fb_webm_io_errno()); the muxer refuses all
                                   * further calls; the file holds what was written (live form) */
    FB_WEBM_ERR_NOMEM = -6,       /* out of memory; frame refused, or open failed */
    FB_WEBM_ERR_STATE = -7,       /* called after finalize or after an I/O error */
} fb_webm_status;

typedef struct fb_webm_params {
    int width, height;  /* pixels, 1..16384 */
    int fps;            /* nominal rate, 1..1000: frame duration in Tracks and for Duration */
} fb_webm_params;

typedef struct fb_webm fb_webm;

/* Writes the file header through `sink` (copied) and returns a muxer in *out. On failure *out
 * is NULL; for FB_WEBM_ERR_IO the sink's errno was returned to it by the sink itself. */
fb_webm_status fb_webm_open(const fb_webm_sink *sink, const fb_webm_params *p, fb_webm **out);

/* Appends one VP9 frame. pts_us must not go backwards; is_key starts a new cluster. */
fb_webm_status fb_webm_write_frame(fb_webm *m, const void *data, size_t size, int64_t pts_us,
                                   int is_key);

/* fb_webm_write_frame() with the packet's payload, pts and keyframe flag. */
fb_webm_status fb_webm_write_packet(fb_webm *m, const fb_packet *p);

/* Writes the index and patches sizes and Duration (see the top of this file). After it only
 * fb_webm_free() and the getters are allowed. */
fb_webm_status fb_webm_finalize(fb_webm *m);

void fb_webm_free(fb_webm *m); /* NULL is ignored; does not finalize */

uint64_t fb_webm_size(const fb_webm *m);          /* bytes written so far = the file's length */
uint64_t fb_webm_frame_count(const fb_webm *m);   /* frames accepted */
int fb_webm_io_errno(const fb_webm *m);           /* errno of the sink failure, or 0 */

/* A sink that pwrite()s to an open file descriptor (plain files; the CLI's `-o`). */
fb_webm_sink fb_webm_fd_sink(int fd);

const char *fb_webm_status_str(fb_webm_status s);

#endif
