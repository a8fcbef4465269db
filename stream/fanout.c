/* stream/fanout.c - per-client packet queue with skip-to-keyframe and hard limits (fanout.h). */
#include "stream/fanout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fb_fanout {
    fb_fanout_limits lim;
    fb_fanout_keyframe_fn want_key;
    void *arg;

    fb_packet **ring;       /* circular buffer of `cap` slots */
    size_t cap, head, count;
    size_t bytes;

    int needs_key;          /* no delta may be queued until a keyframe arrives */
    int joining;            /* waiting for the first keyframe: skips are not "dropped" */
    int64_t behind_since;   /* 0 = caught up; else when the current lag began (+1 so 0 is free) */
    int64_t last_key_request;
    int key_requested;      /* a request was made at last_key_request */
    uint64_t dropped, skips;
    uint64_t delivered_since_skip;  /* pops since the last skip */
    int closing;
    char reason[96];
};

void fb_fanout_limits_default(fb_fanout_limits *l) {
    l->soft_frames = 15;
    l->soft_bytes = 2u << 20;
    l->hard_bytes = 16u << 20;
    l->hard_behind_us = 10 * 1000000LL;
    l->keyframe_interval_us = 1000000LL;
}

fb_fanout *fb_fanout_new(const fb_fanout_limits *limits, fb_fanout_keyframe_fn fn, void *arg) {
    fb_fanout *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    fb_fanout_limits d;
    fb_fanout_limits_default(&d);
    q->lim = limits ? *limits : d;
    if (!q->lim.soft_frames) q->lim.soft_frames = d.soft_frames;
    if (!q->lim.soft_bytes) q->lim.soft_bytes = d.soft_bytes;
    if (!q->lim.hard_bytes) q->lim.hard_bytes = d.hard_bytes;
    if (q->lim.hard_bytes < q->lim.soft_bytes) q->lim.hard_bytes = q->lim.soft_bytes;
    if (!q->lim.hard_behind_us) q->lim.hard_behind_us = d.hard_behind_us;
    if (q->lim.keyframe_interval_us <= 0) q->lim.keyframe_interval_us = d.keyframe_interval_us;
    /* One slot more than the soft limit: push appends, then trims back under it. */
    q->cap = q->lim.soft_frames + 1;
    q->ring = calloc(q->cap, sizeof *q->ring);
    if (!q->ring) { free(q); return NULL; }
    q->want_key = fn;
    q->arg = arg;
    q->needs_key = 1;
    q->joining = 1;
    return q;
}

static fb_packet *take_head(fb_fanout *q) {
    fb_packet *p = q->ring[q->head];
    q->ring[q->head] = NULL;
    q->head = (q->head + 1) % q->cap;
    q->count--;
    q->bytes -= p->wire_size;
    return p;
}

static void drop_all(fb_fanout *q) {
    while (q->count) fb_packet_unref(take_head(q));
}

void fb_fanout_free(fb_fanout *q) {
    if (!q) return;
    drop_all(q);
    free(q->ring);
    free(q);
}

static void request_key(fb_fanout *q, int64_t now) {
    if (q->key_requested && now - q->last_key_request < q->lim.keyframe_interval_us) return;
    q->key_requested = 1;
    q->last_key_request = now;
    if (q->want_key) q->want_key(q->arg);
}

static void mark_close(fb_fanout *q, const char *reason) {
    q->closing = 1;
    snprintf(q->reason, sizeof q->reason, "%s", reason);
    drop_all(q);
}

static void start_behind(fb_fanout *q, int64_t now) {
    if (!q->behind_since) q->behind_since = now + 1;  /* +1: a clock at 0 is legal */
}

/* The soft limit counts bytes only while more than one packet is queued, so a single keyframe
 * larger than soft_bytes is still delivered instead of being skipped for ever. */
static int over_soft(const fb_fanout *q) {
    return q->count > q->lim.soft_frames || (q->count > 1 && q->bytes > q->lim.soft_bytes);
}

/* Over the soft limit: keep from the newest queued keyframe after the head, else drop all. */
static void skip_to_key(fb_fanout *q, int64_t now) {
    size_t last_key = 0;
    for (size_t i = 1; i < q->count; i++) {
        if (q->ring[(q->head + i) % q->cap]->is_key) last_key = i;
    }
    q->skips++;
    q->delivered_since_skip = 0;
    start_behind(q, now);
    if (last_key) {
        for (size_t i = 0; i < last_key; i++) fb_packet_unref(take_head(q));
        q->dropped += last_key;
        if (!over_soft(q)) return;
    }
    q->dropped += q->count;
    drop_all(q);
    q->needs_key = 1;
    request_key(q, now);
}

fb_fanout_result fb_fanout_push(fb_fanout *q, fb_packet *p, int64_t now_us) {
    if (q->closing) return FB_FANOUT_CLOSE;
    if (q->behind_since && now_us - (q->behind_since - 1) > q->lim.hard_behind_us) {
        char why[96];
        snprintf(why, sizeof why, "client too slow: behind for more than %lld s",
                 (long long)(q->lim.hard_behind_us / 1000000));
        mark_close(q, why);
        return FB_FANOUT_CLOSE;
    }
    if (q->needs_key) {
        if (!p->is_key) {
            if (!q->joining) q->dropped++;
            request_key(q, now_us);
            return q->joining ? FB_FANOUT_WAITING : FB_FANOUT_SKIPPED;
        }
        q->needs_key = 0;
        q->joining = 0;
        q->key_requested = 0;
    }
    if (p->wire_size > q->lim.hard_bytes) {
        mark_close(q, "client too slow: send queue over its byte limit");
        return FB_FANOUT_CLOSE;
    }
    q->ring[(q->head + q->count) % q->cap] = fb_packet_ref(p);
    q->count++;
    q->bytes += p->wire_size;
    if (over_soft(q)) {
        skip_to_key(q, now_us);
        return FB_FANOUT_SKIPPED;
    }
    return FB_FANOUT_QUEUED;
}

fb_packet *fb_fanout_pop(fb_fanout *q, int64_t now_us) {
    (void)now_us;
    if (!q->count) return NULL;
    fb_packet *p = take_head(q);
    q->delivered_since_skip++;
    /* Caught up: drained, and a real run of frames went out since the last skip (a client
     * that only ever manages the keyframe after each skip is still behind). */
    if (!q->count && !q->needs_key && q->delivered_since_skip >= q->lim.soft_frames)
        q->behind_since = 0;
    return p;
}

void fb_fanout_reset(fb_fanout *q) {
    drop_all(q);
    q->needs_key = 1;
    q->joining = 1;
    q->behind_since = 0;
    q->key_requested = 0;
    q->delivered_since_skip = 0;
    q->closing = 0;
    q->reason[0] = '\0';
}

size_t fb_fanout_frames(const fb_fanout *q) { return q->count; }
size_t fb_fanout_bytes(const fb_fanout *q) { return q->bytes; }
uint64_t fb_fanout_dropped(const fb_fanout *q) { return q->dropped; }
uint64_t fb_fanout_skips(const fb_fanout *q) { return q->skips; }
int fb_fanout_needs_key(const fb_fanout *q) { return q->needs_key; }
int fb_fanout_closing(const fb_fanout *q) { return q->closing; }
const char *fb_fanout_close_reason(const fb_fanout *q) { return q->closing ? q->reason : ""; }
