/* tests/net/test_fanout.c - the per-client queue policy: joiners wait for a keyframe, a slow
 * client skips to the next keyframe (counted, keyframe requested at a limited rate), a client
 * that stays behind or queues too much is closed, a fast client next to a slow one loses nothing,
 * and every packet reference is returned. */
#include <stdlib.h>
#include <string.h>

#include "stream/fanout.h"
#include "tests/net/check.h"

#define SEC 1000000LL

static int key_requests;
static void want_key(void *arg) {
    (void)arg;
    key_requests++;
}

static fb_packet *pk(int key, uint32_t no, size_t size) {
    static uint8_t data[1 << 20];
    fb_packet *p = fb_packet_new(data, size, key, no, (int64_t)no * 33333, 33333);
    if (!p) abort();
    return p;
}

static fb_fanout_limits limits(void) {
    fb_fanout_limits l;
    fb_fanout_limits_default(&l);
    l.soft_frames = 5;
    l.soft_bytes = 100000;
    l.hard_bytes = 400000;
    l.hard_behind_us = 2 * SEC;
    l.keyframe_interval_us = SEC;
    return l;
}

static void test_join_waits_for_key(void) {
    fb_fanout_limits l = limits();
    key_requests = 0;
    fb_fanout *q = fb_fanout_new(&l, want_key, NULL);
    CHECK(fb_fanout_needs_key(q));
    fb_packet *d1 = pk(0, 1, 100), *k = pk(1, 2, 100), *d3 = pk(0, 3, 100);
    CHECK(fb_fanout_push(q, d1, 0) == FB_FANOUT_WAITING);
    CHECK(fb_fanout_frames(q) == 0 && fb_fanout_dropped(q) == 0);  /* not the client's loss */
    CHECK(key_requests == 1);
    CHECK(fb_fanout_push(q, d1, 100) == FB_FANOUT_WAITING && key_requests == 1);  /* rate-limited */
    CHECK(fb_fanout_push(q, k, 200) == FB_FANOUT_QUEUED && !fb_fanout_needs_key(q));
    CHECK(fb_fanout_push(q, d3, 300) == FB_FANOUT_QUEUED);
    CHECK(fb_fanout_frames(q) == 2 && fb_fanout_bytes(q) == 2 * (100 + FB_FRAME_HEADER_SIZE));
    fb_packet *p = fb_fanout_pop(q, 400);
    CHECK(p == k);
    fb_packet_unref(p);
    p = fb_fanout_pop(q, 400);
    CHECK(p == d3);
    fb_packet_unref(p);
    CHECK(fb_fanout_pop(q, 400) == NULL);
    fb_fanout_free(q);
    CHECK(atomic_load(&d1->refs) == 1 && atomic_load(&k->refs) == 1 && atomic_load(&d3->refs) == 1);
    fb_packet_unref(d1);
    fb_packet_unref(k);
    fb_packet_unref(d3);
}

/* A client that keeps up: one frame in, one frame out, 30 fps for a minute. */
static void test_keeping_up(void) {
    fb_fanout_limits l = limits();
    fb_fanout *q = fb_fanout_new(&l, want_key, NULL);
    int64_t t = 0;
    for (uint32_t i = 0; i < 1800; i++, t += 33333) {
        fb_packet *p = pk(i % 60 == 0, i, 3000);
        CHECK(fb_fanout_push(q, p, t) == FB_FANOUT_QUEUED);
        fb_packet_unref(p);
        fb_packet *o = fb_fanout_pop(q, t + 1000);
        CHECK(o && o->frame_no == i);
        fb_packet_unref(o);
    }
    CHECK(fb_fanout_dropped(q) == 0 && fb_fanout_skips(q) == 0 && !fb_fanout_closing(q));
    fb_fanout_free(q);
}

static void test_skip_without_queued_key(void) {
    fb_fanout_limits l = limits();
    key_requests = 0;
    fb_fanout *q = fb_fanout_new(&l, want_key, NULL);
    fb_packet *k = pk(1, 0, 100);
    fb_fanout_push(q, k, 0);
    fb_packet_unref(fb_fanout_pop(q, 0));
    fb_packet_unref(k);
    key_requests = 0;
    /* five deltas fit; the sixth crosses the soft limit: everything goes, a key is asked for */
    for (uint32_t i = 1; i <= 5; i++) {
        fb_packet *d = pk(0, i, 100);
        CHECK(fb_fanout_push(q, d, i * 1000) == FB_FANOUT_QUEUED);
        fb_packet_unref(d);
    }
    fb_packet *d6 = pk(0, 6, 100);
    CHECK(fb_fanout_push(q, d6, 6000) == FB_FANOUT_SKIPPED);
    fb_packet_unref(d6);
    CHECK(fb_fanout_frames(q) == 0 && fb_fanout_bytes(q) == 0);
    CHECK(fb_fanout_dropped(q) == 6 && fb_fanout_skips(q) == 1);
    CHECK(fb_fanout_needs_key(q) && key_requests == 1);
    /* no delta is queued until a keyframe; the request is repeated at most once a second */
    fb_packet *d7 = pk(0, 7, 100);
    CHECK(fb_fanout_push(q, d7, 7000) == FB_FANOUT_SKIPPED);
    CHECK(fb_fanout_push(q, d7, SEC / 2) == FB_FANOUT_SKIPPED);
    CHECK(key_requests == 1 && fb_fanout_dropped(q) == 8);
    CHECK(fb_fanout_push(q, d7, 6000 + SEC) == FB_FANOUT_SKIPPED);
    CHECK(key_requests == 2);
    fb_packet_unref(d7);
    fb_packet *k8 = pk(1, 8, 100);
    CHECK(fb_fanout_push(q, k8, 6000 + SEC + 1) == FB_FANOUT_QUEUED && !fb_fanout_needs_key(q));
    fb_packet_unref(k8);
    fb_packet *o = fb_fanout_pop(q, 6000 + SEC + 2);
    CHECK(o && o->frame_no == 8 && o->is_key);
    fb_packet_unref(o);
    fb_fanout_free(q);
}

static void test_skip_to_queued_key(void) {
    fb_fanout_limits l = limits();
    key_requests = 0;
    fb_fanout *q = fb_fanout_new(&l, want_key, NULL);
    /* K0 d1 d2 K3 d4 | d5 -> over 5 frames: keep from K3 */
    int keys[] = {1, 0, 0, 1, 0, 0};
    fb_fanout_result r = FB_FANOUT_QUEUED;
    for (uint32_t i = 0; i < 6; i++) {
        fb_packet *p = pk(keys[i], i, 100);
        r = fb_fanout_push(q, p, i);
        fb_packet_unref(p);
    }
    CHECK(r == FB_FANOUT_SKIPPED);
    CHECK(fb_fanout_frames(q) == 3 && fb_fanout_dropped(q) == 3 && !fb_fanout_needs_key(q));
    CHECK(key_requests == 0);  /* the queued key is enough: nothing asked for */
    uint32_t want[] = {3, 4, 5};
    for (int i = 0; i < 3; i++) {
        fb_packet *o = fb_fanout_pop(q, 10);
        CHECK(o && o->frame_no == want[i]);
        fb_packet_unref(o);
    }
    fb_fanout_free(q);
}

static void test_soft_bytes(void) {
    fb_fanout_limits l = limits();
    fb_fanout *q = fb_fanout_new(&l, want_key, NULL);
    /* one keyframe bigger than soft_bytes is still delivered */
    fb_packet *big = pk(1, 0, 150000);
    CHECK(fb_fanout_push(q, big, 0) == FB_FANOUT_QUEUED && fb_fanout_frames(q) == 1);
    fb_packet_unref(big);
    /* but a delta behind it crosses the byte limit: drop all, wait for a key */
    fb_packet *d = pk(0, 1, 1000);
    CHECK(fb_fanout_push(q, d, 1) == FB_FANOUT_SKIPPED);
    fb_packet_unref(d);
    CHECK(fb_fanout_frames(q) == 0 && fb_fanout_needs_key(q) && fb_fanout_dropped(q) == 2);
    /* a 60 KB key fits; a 60 KB delta behind it passes 100 KB: skip again */
    fb_packet *k = pk(1, 2, 60000), *d2 = pk(0, 3, 60000);
    CHECK(fb_fanout_push(q, k, 2) == FB_FANOUT_QUEUED);
    CHECK(fb_fanout_push(q, d2, 3) == FB_FANOUT_SKIPPED);
    CHECK(fb_fanout_frames(q) == 0 && fb_fanout_dropped(q) == 4 && fb_fanout_skips(q) == 2);
    fb_packet_unref(k);
    fb_packet_unref(d2);
    fb_fanout_free(q);
}

static void test_hard_time_limit(void) {
    fb_fanout_limits l = limits();
    fb_fanout *q = fb_fanout_new(&l, want_key, NULL);
    int64_t t = 0;
    fb_fanout_result r = FB_FANOUT_QUEUED;
    /* never popped: skips every few frames; closed once behind for more than 2 s */
    uint32_t i;
    for (i = 0; i < 1000 && r != FB_FANOUT_CLOSE; i++, t += 33333) {
        fb_packet *p = pk(i % 30 == 0, i, 500);
        r = fb_fanout_push(q, p, t);
        fb_packet_unref(p);
    }
    CHECK(r == FB_FANOUT_CLOSE);
    CHECK(fb_fanout_closing(q));
    CHECK(t > 2 * SEC && t < 3 * SEC);
    CHECK_STR(fb_fanout_close_reason(q), "client too slow: behind for more than 2 s");
    CHECK(fb_fanout_frames(q) == 0);  /* references given back at once */
    fb_packet *p = pk(1, 9999, 10);
    CHECK(fb_fanout_push(q, p, t) == FB_FANOUT_CLOSE);
    CHECK(atomic_load(&p->refs) == 1);  /* a closing queue keeps nothing */
    fb_packet_unref(p);
    fb_fanout_free(q);
}

static void test_catching_up_clears_lag(void) {
    fb_fanout_limits l = limits();
    fb_fanout *q = fb_fanout_new(&l, want_key, NULL);
    int64_t t = 0;
    uint32_t n = 0;
    /* fall behind once ... */
    for (int i = 0; i < 7; i++, t += 33333) {
        fb_packet *p = pk(n == 0, n, 100);
        n++;
        fb_fanout_push(q, p, t);
        fb_packet_unref(p);
    }
    CHECK(fb_fanout_skips(q) == 1 && fb_fanout_needs_key(q));
    /* ... then keep up again after the next keyframe, for longer than the hard limit */
    for (int i = 0; i < 200; i++, t += 33333) {
        fb_packet *p = pk(i % 60 == 0, n, 100);
        n++;
        CHECK(fb_fanout_push(q, p, t) != FB_FANOUT_CLOSE);
        fb_packet_unref(p);
        fb_packet *o;
        while ((o = fb_fanout_pop(q, t))) fb_packet_unref(o);
    }
    CHECK(!fb_fanout_closing(q) && fb_fanout_skips(q) == 1);
    fb_fanout_free(q);
}

static void test_hard_bytes(void) {
    fb_fanout_limits l = limits();
    fb_fanout *q = fb_fanout_new(&l, want_key, NULL);
    fb_packet *huge = pk(1, 0, 500000);
    CHECK(fb_fanout_push(q, huge, 0) == FB_FANOUT_CLOSE);
    CHECK_STR(fb_fanout_close_reason(q), "client too slow: send queue over its byte limit");
    CHECK(atomic_load(&huge->refs) == 1);
    fb_packet_unref(huge);
    /* reset (a re-join) clears the mark */
    fb_fanout_reset(q);
    CHECK(!fb_fanout_closing(q) && fb_fanout_needs_key(q));
    CHECK_STR(fb_fanout_close_reason(q), "");
    fb_fanout_free(q);
}

/* One packet stream, two clients: the slow one skips and is closed, the fast one gets every
 * frame in order. References all come back. */
static void test_two_clients(void) {
    fb_fanout_limits l = limits();
    fb_fanout *fast = fb_fanout_new(&l, want_key, NULL), *slow = fb_fanout_new(&l, want_key, NULL);
    fb_packet *all[300];
    int64_t t = 0;
    uint32_t next_fast = 0;
    int slow_closed = 0;
    for (uint32_t i = 0; i < 300; i++, t += 33333) {
        all[i] = pk(i % 60 == 0, i, 2000);
        CHECK(fb_fanout_push(fast, all[i], t) == FB_FANOUT_QUEUED);
        if (fb_fanout_push(slow, all[i], t) == FB_FANOUT_CLOSE) slow_closed = 1;
        if (i % 10 == 0) {  /* the slow one takes a frame now and then */
            fb_packet *o = fb_fanout_pop(slow, t);
            fb_packet_unref(o);
        }
        fb_packet *o;
        while ((o = fb_fanout_pop(fast, t))) {
            CHECK(o->frame_no == next_fast);
            next_fast++;
            fb_packet_unref(o);
        }
    }
    CHECK(next_fast == 300 && fb_fanout_dropped(fast) == 0);
    CHECK(slow_closed && fb_fanout_dropped(slow) > 0);
    fb_fanout_free(fast);
    fb_fanout_free(slow);
    for (int i = 0; i < 300; i++) {
        CHECK(atomic_load(&all[i]->refs) == 1);
        fb_packet_unref(all[i]);
    }
}

int main(void) {
    test_join_waits_for_key();
    test_keeping_up();
    test_skip_without_queued_key();
    test_skip_to_queued_key();
    test_soft_bytes();
    test_hard_time_limit();
    test_catching_up_clears_lag();
    test_hard_bytes();
    test_two_clients();
    return check_exit("net_fanout");
}
