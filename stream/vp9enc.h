/* stream/vp9enc.h - VP9 realtime encoder (libvpx), configured the way WebRTC configures it.
 *
 * One encoder per stream. Frames go in as RGB24 (converted to I420 BT.709 limited range by
 * colour.c) or as I420; each call returns one refcounted fb_packet (stream/packet.h) that the
 * fan-out and the recorder share. The settings follow shared/specs/streaming.md 2.1-2.2: profile
 * 0, no lag (one packet per input frame, no hidden frames), CBR, VPX_DL_REALTIME, cpu-used 8,
 * row-mt, tile columns from the thread count, AQ mode 3, no denoiser, frame dropping off. The
 * bitstream declares BT.709 studio range.
 *
 * Keyframes: libvpx's automatic placement is off; this wrapper forces one at frame 0, then every
 * `keyframe_interval` frames counted from the last keyframe, and when fb_vp9enc_request_keyframe()
 * was called (a viewer joined, or a client's decoder failed). Requested keyframes are
 * rate-limited: one comes at the first frame whose timestamp is at least
 * `keyframe_min_spacing_ms` after the previous keyframe, so a burst of joins costs one keyframe.
 *
 * Usage:
 *   fb_vp9enc_params p = fb_vp9enc_default_params(832, 480, 30);
 *   fb_vp9enc *enc;
 *   char err[256];
 *   if (fb_vp9enc_new(&p, &enc, err, sizeof err) != FB_VP9ENC_OK) { log(err); return; }
 *   for (;;) {
 *       fb_packet *pkt;
 *       if (fb_vp9enc_encode_rgb(enc, rgb, 3 * 832, FB_VP9ENC_PTS_AUTO, &pkt) != FB_VP9ENC_OK)
 *           log(fb_vp9enc_error(enc));
 *       else if (pkt) { hand_to_fanout(pkt); fb_packet_unref(pkt); }
 *   }
 *   fb_vp9enc_free(enc);
 *
 * Thread-safety: an encoder is used by one thread at a time, except fb_vp9enc_request_keyframe(),
 * which any thread may call at any time (it sets an atomic flag). Different encoders are
 * independent. The per-frame path allocates nothing but the output packet.
 */
#ifndef FLIPBOOK_STREAM_VP9ENC_H
#define FLIPBOOK_STREAM_VP9ENC_H

#include <stddef.h>
#include <stdint.h>

#include "stream/colour.h"
#include "stream/packet.h"

/* Status codes. Negative values are errors; the comment says what state survives. */
typedef enum fb_vp9enc_status {
    FB_VP9ENC_OK = 0,
    FB_VP9ENC_ERR_PARAM = -1,  /* fb_vp9enc_new: a parameter is out of range; nothing created */
    FB_VP9ENC_ERR_ARG = -2,    /* NULL pointer or short stride; the frame is ignored, encoder ok */
    FB_VP9ENC_ERR_PTS = -3,    /* timestamp not after the previous one; frame ignored, encoder ok */
    FB_VP9ENC_ERR_NOMEM = -4,  /* out of memory; at open nothing is created, later the frame is
                                * lost and the next frame should be a keyframe (request one) */
    FB_VP9ENC_ERR_CODEC = -5,  /* libvpx failed (message from libvpx); free the encoder */
} fb_vp9enc_status;

/* Pass as pts_us to number frames 0, 1/fps, 2/fps, ... from the frame count. */
#define FB_VP9ENC_PTS_AUTO (-1)

typedef struct fb_vp9enc_params {
    int width, height;           /* even, 16..8192 */
    int fps;                     /* nominal frame rate, 1..240 (rate control and durations) */
    int bitrate_kbps;            /* CBR target, 50..100000; default grows with sqrt(pixels * fps):
                                  * 1000 at 256x256@30, ~2500 at 832x480@30 */
    int keyframe_interval;       /* frames between periodic keyframes, 1..100000; default 2 s */
    int keyframe_min_spacing_ms; /* requested keyframes at most this often, 0..60000; default 1000 */
    int cpu_used;                /* libvpx speed, 5..9 (8 default, 7 if the CPU allows) */
    int threads;                 /* encoder threads, 1..16; default from size and cores as WebRTC */
} fb_vp9enc_params;

typedef struct fb_vp9enc fb_vp9enc;

/* Defaults for a stream of this size and rate (see the field comments). */
fb_vp9enc_params fb_vp9enc_default_params(int width, int height, int fps);

/* Creates an encoder. On failure *out is NULL and, when err is not NULL, err receives a message
 * (err_size bytes at most, NUL-terminated). */
fb_vp9enc_status fb_vp9enc_new(const fb_vp9enc_params *p, fb_vp9enc **out, char *err,
                               size_t err_size);
void fb_vp9enc_free(fb_vp9enc *e); /* NULL is ignored */

/* Encodes one RGB24 frame (params width x height, `stride` bytes per row, >= 3 * width).
 * pts_us: presentation time in microseconds, strictly increasing, or FB_VP9ENC_PTS_AUTO.
 * On success *out is a new packet (refcount 1, the caller owns it) with frame_no, pts_us, is_key
 * and duration_us filled in, or NULL if libvpx produced no data for this frame (it does not
 * with these settings, but callers must not crash on it). On failure *out is NULL. */
fb_vp9enc_status fb_vp9enc_encode_rgb(fb_vp9enc *e, const uint8_t *rgb, int stride, int64_t pts_us,
                                      fb_packet **out);

/* The same for an I420 frame already in BT.709 limited range. */
fb_vp9enc_status fb_vp9enc_encode_i420(fb_vp9enc *e, const fb_i420 *img, int64_t pts_us,
                                       fb_packet **out);

/* Asks for a keyframe as soon as the rate limit allows (at the next frame if the last keyframe
 * is at least keyframe_min_spacing_ms old). Any thread. */
void fb_vp9enc_request_keyframe(fb_vp9enc *e);

/* Changes the CBR target from the next frame (e.g. when the daemon sheds load). */
fb_vp9enc_status fb_vp9enc_set_bitrate(fb_vp9enc *e, int bitrate_kbps);

/* The parameters in force (defaults resolved). */
const fb_vp9enc_params *fb_vp9enc_get_params(const fb_vp9enc *e);

/* A message describing the last failure of this encoder ("" if none). */
const char *fb_vp9enc_error(const fb_vp9enc *e);

const char *fb_vp9enc_status_str(fb_vp9enc_status s);

#endif
