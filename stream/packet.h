/* stream/packet.h - one encoded video frame, shared by reference between threads.
 *
 * The encoder thread creates a packet, the WebSocket thread sends the same bytes to every client
 * and the recorder writes them to disk; each holder takes a reference and drops it when done.
 * The buffer is laid out so that lws_write() can send it with no copy:
 *
 *   [ FB_PACKET_PRE bytes headroom for libwebsockets ][ 16-byte frame header ][ VP9 payload ]
 *                                                     ^ wire                  ^ payload
 *
 * The 16-byte header is the binary message header of docs/protocol.md (version, type, flags,
 * frame number, timestamp), filled in by fb_packet_new().
 *
 * Thread-safety: the refcount is atomic; the contents are immutable after fb_packet_new()
 * returns, so any thread may read a packet it holds a reference to.
 */
#ifndef FLIPBOOK_STREAM_PACKET_H
#define FLIPBOOK_STREAM_PACKET_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Headroom in front of the wire bytes; >= LWS_PRE on every platform lws supports (16 on
 * x86_64), kept a multiple of 16 so the payload stays aligned. */
#define FB_PACKET_PRE 32
#define FB_FRAME_HEADER_SIZE 16
#define FB_FRAME_VERSION 1
#define FB_FRAME_TYPE_VIDEO 1
#define FB_FRAME_FLAG_KEY 0x01

typedef struct fb_packet {
    atomic_int refs;
    int is_key;             /* a VP9 keyframe: a decoder may start here */
    uint32_t frame_no;      /* 0, 1, 2, ... per stream */
    int64_t pts_us;         /* presentation time in microseconds since the stream started */
    int64_t duration_us;    /* nominal frame duration */
    int64_t produced_us;    /* CLOCK_MONOTONIC time the frame left the encoder (latency stats) */
    size_t payload_size;    /* VP9 bytes */
    uint8_t *wire;          /* header + payload: what goes out as one binary WS message */
    size_t wire_size;       /* FB_FRAME_HEADER_SIZE + payload_size */
    uint8_t *payload;       /* = wire + FB_FRAME_HEADER_SIZE */
    uint8_t storage[];      /* FB_PACKET_PRE + wire_size bytes */
} fb_packet;

/* Copies `size` bytes of VP9 data into a new packet with refcount 1 and writes its header.
 * Returns NULL when out of memory. */
fb_packet *fb_packet_new(const void *vp9, size_t size, int is_key, uint32_t frame_no,
                         int64_t pts_us, int64_t duration_us);
fb_packet *fb_packet_ref(fb_packet *p);   /* returns p */
void fb_packet_unref(fb_packet *p);       /* frees at zero; NULL is ignored */

/* Parses a 16-byte frame header (as sent on the wire). Returns 0, or -1 when `size` is short or
 * the version/type is unknown. */
int fb_frame_header_parse(const uint8_t *buf, size_t size, int *is_key, uint32_t *frame_no,
                          int64_t *pts_us);

#endif
