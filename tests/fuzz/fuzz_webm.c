/* tests/fuzz/fuzz_webm.c - the WebM muxer (stream/webm.c) under arbitrary call sequences.
 *
 * The input is a small program for the muxer:
 *
 *   byte 0, 1   width, height = 1 + 64 * byte
 *   byte 2      fps (0 is invalid and must be refused at open)
 *   then ops:
 *     0x00-0xEF  write a frame: bit 0 = keyframe; 2 bytes size (LE, mod 4096, 0 allowed);
 *                2 bytes signed time step (LE) in units of 100 us, or of 100 ms when bit 7 is
 *                set; `size` payload bytes taken from the input (zero-padded when it runs out)
 *     0xF0       finalize (the program ends there)
 *     0xF1       the sink fails from its Nth call on (N = next byte), with ENOSPC
 *     0xF2       a frame with a negative timestamp
 *     0xF3-0xFF  a frame larger than FB_WEBM_MAX_FRAME (must be refused without reading it)
 *
 * Invariants, checked after every call and at the end (abort() on violation):
 *   - each call returns exactly the status a model of webm.h's rules predicts;
 *   - the muxer never writes past the end of what it wrote before (no holes);
 *   - the output parses with tests/stream/ebml_check.c: finalized when finalize succeeded,
 *     cut-off allowed only after a sink failure; every accepted frame is in it, in order, with
 *     its bytes, keyframe flag and millisecond time.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream/webm.h"
#include "tests/stream/ebml_check.h"
#include "tests/stream/media_test.h"

typedef struct accepted {
    const uint8_t *data; /* points into the fuzz input or the zero page */
    size_t size;
    int64_t pts_us;
    int is_key;
} accepted;

static const uint8_t zeros[4096];

#define REQUIRE(cond, ...)                                                                     \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "fuzz_webm: %s: ", #cond);                                         \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fputc('\n', stderr);                                                               \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

typedef struct model {
    int open;         /* neither finalized nor failed */
    int dead;         /* a sink write failed */
    int finalized;
    uint64_t frames;
    int64_t last_pts;
} model;

static fb_webm_status predict(const model *m, size_t size, int64_t pts, int key) {
    if (!m->open) return FB_WEBM_ERR_STATE;
    if (size == 0 || size > FB_WEBM_MAX_FRAME) return FB_WEBM_ERR_FRAME_SIZE;
    if (m->frames == 0 && !key) return FB_WEBM_ERR_NO_KEYFRAME;
    if (pts < 0 || (m->frames && pts < m->last_pts)) return FB_WEBM_ERR_TIMESTAMP;
    return FB_WEBM_OK;
}

static void check_output(const mem_sink *ms, const model *md, const accepted *acc, size_t n_acc) {
    REQUIRE(!ms->hole, "the muxer wrote past the end of its output");
    webm_summary s;
    char err[256];
    int rc = webm_check(ms->data, ms->len, md->dead, &s, err, sizeof err);
    REQUIRE(rc == 0, "output does not parse: %s", err);
    REQUIRE(s.finalized == md->finalized, "finalized %d, expected %d", s.finalized, md->finalized);
    if (!md->dead) REQUIRE(s.n_frames == n_acc, "%zu frames parsed, %zu accepted", s.n_frames, n_acc);
    REQUIRE(s.n_frames <= n_acc, "%zu frames parsed, only %zu accepted", s.n_frames, n_acc);
    for (size_t i = 0; i < s.n_frames; i++) {
        const webm_frame_info *f = &s.frames[i];
        uint64_t ms_want = (uint64_t)(acc[i].pts_us - acc[0].pts_us + 500) / 1000;
        REQUIRE(f->time_ms == ms_want, "frame %zu at %llu ms, want %llu", i,
                (unsigned long long)f->time_ms, (unsigned long long)ms_want);
        REQUIRE(f->is_key == acc[i].is_key, "frame %zu key flag", i);
        REQUIRE(f->size == acc[i].size && memcmp(ms->data + f->data_at, acc[i].data, f->size) == 0,
                "frame %zu bytes differ", i);
    }
    webm_summary_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    fb_webm_params p = {1 + 64 * data[0], 1 + 64 * data[1], data[2]};
    mem_sink ms = {0};
    fb_webm_sink sink = mem_sink_make(&ms);
    fb_webm *m = NULL;
    fb_webm_status st = fb_webm_open(&sink, &p, &m);
    if (p.fps < 1 || p.fps > 1000 || p.width > 16384 || p.height > 16384) {
        REQUIRE(st == FB_WEBM_ERR_ARG && !m, "bad params accepted");
        mem_sink_free(&ms);
        return 0;
    }
    REQUIRE(st == FB_WEBM_OK && m, "open failed: %s", fb_webm_status_str(st));

    accepted *acc = malloc(sizeof *acc * (size / 5 + 1));
    size_t n_acc = 0;
    model md = {.open = 1};
    int64_t pts = 0;
    size_t at = 3;
    while (at < size && md.open) {
        uint8_t op = data[at++];
        if (op == 0xF0) {
            st = fb_webm_finalize(m);
            int failing = ms.fail_at_call > 0;
            REQUIRE(st == FB_WEBM_OK || (st == FB_WEBM_ERR_IO && failing), "finalize: %s",
                    fb_webm_status_str(st));
            md.open = 0;
            md.finalized = st == FB_WEBM_OK;
            md.dead = st == FB_WEBM_ERR_IO;
            break;
        }
        if (op == 0xF1) {
            ms.fail_at_call = ms.calls + 1 + (at < size ? data[at++] : 0);
            ms.fail_errno = ENOSPC;
            continue;
        }
        size_t fsize;
        int64_t fpts = pts;
        int key = op & 1;
        const uint8_t *payload = zeros;
        if (op == 0xF2) {
            fsize = 10;
            fpts = -1 - (int64_t)(at % 1000);
        } else if (op > 0xF2) {
            fsize = (size_t)FB_WEBM_MAX_FRAME + 1 + op; /* never read: refused first */
        } else {
            if (at + 4 > size) break;
            fsize = (size_t)(data[at] | data[at + 1] << 8) % 4096;
            int16_t step = (int16_t)(data[at + 2] | data[at + 3] << 8);
            at += 4;
            fpts = pts + (int64_t)step * ((op & 0x80) ? 100000 : 100);
            if (at + fsize <= size) payload = data + at;
            at += fsize < size - at ? fsize : size - at;
        }
        fb_webm_status want = predict(&md, fsize, fpts, key);
        st = fb_webm_write_frame(m, payload, fsize, fpts, key);
        if (want == FB_WEBM_OK && st == FB_WEBM_ERR_IO) {
            REQUIRE(ms.fail_at_call > 0 && ms.calls >= ms.fail_at_call, "I/O error from a good sink");
            REQUIRE(fb_webm_io_errno(m) == ENOSPC, "errno %d", fb_webm_io_errno(m));
            md.open = 0;
            md.dead = 1;
            break;
        }
        REQUIRE(st == want, "frame (size %zu, pts %lld, key %d): got %s, expected %s", fsize,
                (long long)fpts, key, fb_webm_status_str(st), fb_webm_status_str(want));
        if (st == FB_WEBM_OK) {
            acc[n_acc++] = (accepted){payload, fsize, fpts, key};
            md.frames++;
            md.last_pts = fpts;
            pts = fpts;
            REQUIRE(fb_webm_frame_count(m) == md.frames, "frame count");
        }
    }
    if (!md.open)
        REQUIRE(fb_webm_write_frame(m, zeros, 1, pts, 1) == FB_WEBM_ERR_STATE,
                "a finalized or failed muxer accepted a frame");
    REQUIRE(fb_webm_size(m) == ms.len || md.dead, "size %llu, sink holds %zu",
            (unsigned long long)fb_webm_size(m), ms.len);
    check_output(&ms, &md, acc, n_acc);
    free(acc);
    fb_webm_free(m);
    mem_sink_free(&ms);
    return 0;
}
