/* stream/fanout.h - one client's bounded queue of video packets and its drop policy.
 *
 * Every WebSocket client of a stream has one fb_fanout. The stream pushes each encoded packet
 * (the queue takes its own reference); the socket side pops them one at a time as the client
 * becomes writable. The policy keeps a slow client from slowing anyone else and from growing
 * without bound:
 *
 *  - soft limit (frames queued, or bytes queued while more than one packet waits): the client
 *    "skips to the next keyframe". If a keyframe other than the head is already queued, everything before the newest one is dropped;
 *    otherwise the whole queue is dropped and the client waits for a keyframe (VP9 deltas cannot
 *    be decoded without their reference), asking the encoder for one through the callback, at
 *    most once per `keyframe_interval_us`. Dropped packets are counted in `dropped`.
 *  - hard limit: a client that has been behind (skipping, or not yet caught up after a skip)
 *    for longer than `hard_behind_us`, or that has more than `hard_bytes` queued, is marked for
 *    closing with a reason; push() then returns FB_FANOUT_CLOSE and keeps nothing.
 *  - "caught up" means the queue drained to empty, no keyframe is awaited, and at least
 *    `soft_frames` packets went out since the last skip (so a client that only ever gets the
 *    keyframe after each skip still counts as behind).
 *
 * A freshly joined client starts out waiting for a keyframe too; frames skipped then are not
 * counted as dropped (they were never the client's to lose).
 *
 * No sockets and no clocks inside: callers pass the current time in microseconds (any monotonic
 * origin), so the policy is unit-testable.
 *
 * Thread-safety: none. One fb_fanout belongs to one thread (the WebSocket service thread); the
 * packets it holds may be shared with other threads through their atomic refcounts.
 */
#ifndef FLIPBOOK_STREAM_FANOUT_H
#define FLIPBOOK_STREAM_FANOUT_H

#include <stddef.h>
#include <stdint.h>

#include "stream/packet.h"

typedef struct fb_fanout_limits {
    unsigned soft_frames;           /* queued frames that trigger a skip (default 15) */
    size_t soft_bytes;              /* queued bytes that trigger a skip (default 2 MiB) */
    size_t hard_bytes;              /* queued bytes that close the client (default 16 MiB) */
    int64_t hard_behind_us;         /* behind this long closes the client (default 10 s) */
    int64_t keyframe_interval_us;   /* least time between two keyframe requests (default 1 s) */
} fb_fanout_limits;

void fb_fanout_limits_default(fb_fanout_limits *l);

typedef enum fb_fanout_result {
    FB_FANOUT_QUEUED = 0,   /* the packet is queued */
    FB_FANOUT_WAITING,      /* not queued: waiting for the first keyframe after a join */
    FB_FANOUT_SKIPPED,      /* frames were dropped (this one or older ones) */
    FB_FANOUT_CLOSE         /* the client is over the hard limit; see fb_fanout_close_reason */
} fb_fanout_result;

typedef struct fb_fanout fb_fanout;

/* Called from push() when the client needs a keyframe; rate-limited as described above. */
typedef void (*fb_fanout_keyframe_fn)(void *arg);

/* Returns NULL when out of memory. `limits` NULL means the defaults; zero fields also take
 * their defaults. The new queue waits for a keyframe (as after a join). */
fb_fanout *fb_fanout_new(const fb_fanout_limits *limits, fb_fanout_keyframe_fn fn, void *arg);
void fb_fanout_free(fb_fanout *q);  /* drops every queued reference; NULL is ignored */

/* Offers a packet (the caller keeps its own reference). */
fb_fanout_result fb_fanout_push(fb_fanout *q, fb_packet *p, int64_t now_us);

/* Takes the oldest queued packet; the caller owns the returned reference. NULL when empty. */
fb_packet *fb_fanout_pop(fb_fanout *q, int64_t now_us);

/* Drops everything and waits for a keyframe as a new joiner would (not counted as dropped);
 * clears a close mark and the behind timer. */
void fb_fanout_reset(fb_fanout *q);

size_t fb_fanout_frames(const fb_fanout *q);     /* packets queued */
size_t fb_fanout_bytes(const fb_fanout *q);      /* wire bytes queued */
uint64_t fb_fanout_dropped(const fb_fanout *q);  /* packets skipped because the client was slow */
uint64_t fb_fanout_skips(const fb_fanout *q);    /* how many times the soft limit triggered */
int fb_fanout_needs_key(const fb_fanout *q);     /* 1 while no delta may be queued */
int fb_fanout_closing(const fb_fanout *q);
const char *fb_fanout_close_reason(const fb_fanout *q);  /* "" unless closing */

#endif
