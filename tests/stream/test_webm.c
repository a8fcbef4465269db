/* tests/stream/test_webm.c - the WebM muxer's bytes, parsed back by an independent reader.
 *
 * Synthetic frames (random bytes; the container does not look inside them) let every case run
 * in milliseconds: clusters per keyframe, the 5 s cluster limit, patched sizes, Cues, SeekHead,
 * Duration, the live (never finalized) form, files cut off at every point, input validation and
 * sink failures. ffmpeg's view of real VP9 files is in test_webm_ffmpeg.c. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "stream/webm.h"
#include "tests/stream/ebml_check.h"
#include "tests/stream/media_test.h"

static uint32_t rng = 99;
static uint32_t rnd(void) {
    rng = rng * 1664525u + 1013904223u;
    return rng >> 8;
}

typedef struct frame_in {
    uint8_t *data;
    size_t size;
    int64_t pts_us;
    int is_key;
} frame_in;

static frame_in *make_frames(int n, int fps, const int *keys, int n_keys, int64_t start_us) {
    frame_in *f = calloc((size_t)n, sizeof *f);
    for (int i = 0; i < n && f; i++) {
        f[i].size = 1 + rnd() % 3000;
        f[i].data = malloc(f[i].size);
        for (size_t k = 0; f[i].data && k < f[i].size; k++) f[i].data[k] = (uint8_t)rnd();
        f[i].pts_us = start_us + (int64_t)i * 1000000 / fps;
        for (int k = 0; k < n_keys; k++) f[i].is_key |= keys[k] == i;
    }
    return f;
}

static void free_frames(frame_in *f, int n) {
    for (int i = 0; f && i < n; i++) free(f[i].data);
    free(f);
}

/* Muxes the frames into memory; finalizes when asked. */
static void mux(mem_sink *ms, const frame_in *f, int n, int fps, int finalize) {
    memset(ms, 0, sizeof *ms);
    fb_webm_sink sink = mem_sink_make(ms);
    fb_webm_params p = {320, 240, fps};
    fb_webm *m = NULL;
    CHECK(fb_webm_open(&sink, &p, &m) == FB_WEBM_OK);
    if (!m) return;
    for (int i = 0; i < n; i++)
        CHECK(fb_webm_write_frame(m, f[i].data, f[i].size, f[i].pts_us, f[i].is_key) == FB_WEBM_OK);
    CHECK(fb_webm_frame_count(m) == (uint64_t)n);
    if (finalize) CHECK(fb_webm_finalize(m) == FB_WEBM_OK);
    CHECK(fb_webm_size(m) == ms->len);
    CHECK(!ms->hole);
    fb_webm_free(m);
}

/* Every frame is in the file, in order, byte for byte, at the muxer's millisecond times. */
static void check_frames(const mem_sink *ms, const webm_summary *s, const frame_in *f, int n) {
    CHECKF(s->n_frames == (size_t)n, "%zu frames parsed, %d written", s->n_frames, n);
    for (int i = 0; i < n && (size_t)i < s->n_frames; i++) {
        const webm_frame_info *fi = &s->frames[i];
        uint64_t want_ms = (uint64_t)(f[i].pts_us - f[0].pts_us + 500) / 1000;
        CHECKF(fi->time_ms == want_ms, "frame %d at %llu ms, want %llu", i,
               (unsigned long long)fi->time_ms, (unsigned long long)want_ms);
        CHECK(fi->is_key == f[i].is_key);
        CHECK(fi->size == f[i].size && memcmp(ms->data + fi->data_at, f[i].data, fi->size) == 0);
    }
}

static void test_finalized(void) {
    const int keys[] = {0, 60, 77, 120};
    const int n = 150, fps = 30;
    frame_in *f = make_frames(n, fps, keys, 4, 0);
    mem_sink ms;
    mux(&ms, f, n, fps, 1);
    webm_summary s;
    char err[256];
    CHECKF(webm_check(ms.data, ms.len, 0, &s, err, sizeof err) == 0, "%s", err);
    CHECK(s.finalized && !s.truncated);
    CHECK(s.width == 320 && s.height == 240);
    CHECK(s.default_duration_ns == 33333333);
    CHECK(s.n_clusters == 4 && s.n_keyframes == 4 && s.n_cues == 4 && s.has_seekhead);
    for (size_t i = 0; i < s.n_frames; i++) CHECK(s.frames[i].first_in_cluster == s.frames[i].is_key);
    CHECK(s.has_duration);
    double want = (double)s.frames[n - 1].time_ms + 1000.0 / fps;
    CHECKF(s.duration_ms > want - 0.001 && s.duration_ms < want + 0.001, "Duration %.3f, want %.3f",
           s.duration_ms, want);
    check_frames(&ms, &s, f, n);

    /* The Segment size counts exactly to the end of the file (checked by webm_check), and
     * the EBML header starts the file. */
    CHECK(ms.len > 4 && ms.data[0] == 0x1A && ms.data[1] == 0x45 && ms.data[2] == 0xDF);
    webm_summary_free(&s);

    /* The same frames through the fd sink give the same bytes. */
    char path[] = "/tmp/fb_webm_test_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) {
        fb_webm_sink sink = fb_webm_fd_sink(fd);
        fb_webm_params p = {320, 240, fps};
        fb_webm *m = NULL;
        CHECK(fb_webm_open(&sink, &p, &m) == FB_WEBM_OK);
        for (int i = 0; m && i < n; i++)
            fb_webm_write_frame(m, f[i].data, f[i].size, f[i].pts_us, f[i].is_key);
        CHECK(fb_webm_finalize(m) == FB_WEBM_OK);
        fb_webm_free(m);
        uint8_t *back = malloc(ms.len + 1);
        ssize_t got = back ? pread(fd, back, ms.len + 1, 0) : -1;
        CHECK(got == (ssize_t)ms.len && memcmp(back, ms.data, ms.len) == 0);
        free(back);
        close(fd);
        unlink(path);
    }
    mem_sink_free(&ms);
    free_frames(f, n);
}

/* Long stretches without keyframes get a new cluster every 5 s (no cue: it starts with a
 * delta), and a jump beyond int16 milliseconds too. Times start at 0 whatever the first pts. */
static void test_cluster_limits(void) {
    const int n = 200, fps = 20;
    const int keys[] = {0};
    frame_in *f = make_frames(n, fps, keys, 1, 65000000);  /* starts 65 s into a stream */
    for (int i = 150; i < n; i++) f[i].pts_us += 40000000; /* a 40 s gap before frame 150 */
    mem_sink ms;
    mux(&ms, f, n, fps, 1);
    webm_summary s;
    char err[256];
    CHECKF(webm_check(ms.data, ms.len, 0, &s, err, sizeof err) == 0, "%s", err);
    check_frames(&ms, &s, f, n);
    CHECK(s.frames[0].time_ms == 0);
    /* 0..149 span 7.45 s: clusters at 0 and 5 s; 150 jumps; 150..199 span 2.45 s. */
    CHECKF(s.n_clusters == 3, "%zu clusters", s.n_clusters);
    CHECK(s.frames[100].first_in_cluster && !s.frames[100].is_key);
    CHECK(s.frames[150].first_in_cluster);
    CHECK(s.n_cues == 1);
    webm_summary_free(&s);
    mem_sink_free(&ms);
    free_frames(f, n);
}

/* The live form (never finalized) parses, and so does every prefix of it from the end of the
 * first frame: a crash anywhere leaves the frames written before it. */
static void test_live_and_cut(void) {
    const int keys[] = {0, 30, 60};
    const int n = 90, fps = 30;
    frame_in *f = make_frames(n, fps, keys, 3, 0);
    mem_sink ms;
    mux(&ms, f, n, fps, 0);
    webm_summary s;
    char err[256];
    CHECKF(webm_check(ms.data, ms.len, 0, &s, err, sizeof err) == 0, "%s", err);
    CHECK(!s.finalized && !s.has_duration && s.n_cues == 0 && s.n_clusters == 3);
    check_frames(&ms, &s, f, n);
    uint64_t first_end = s.frames[0].end_at;
    webm_frame_info *frames = malloc(n * sizeof *frames);
    if (frames) memcpy(frames, s.frames, n * sizeof *frames);
    webm_summary_free(&s);

    int cuts = 0;
    for (uint64_t cut = first_end; frames && cut <= ms.len; cut += 1 + rnd() % 97, cuts++) {
        size_t complete = 0;
        while (complete < (size_t)n && frames[complete].end_at <= cut) complete++;
        webm_summary c;
        int rc = webm_check(ms.data, (size_t)cut, 1, &c, err, sizeof err);
        CHECKF(rc == 0, "cut at %llu: %s", (unsigned long long)cut, err);
        CHECKF(c.n_frames == complete, "cut at %llu: %zu frames, %zu complete",
               (unsigned long long)cut, c.n_frames, complete);
        webm_summary_free(&c);
    }
    CHECK(cuts > 100);
    free(frames);

    /* A finalized file cut short is recognised as cut, not as valid. */
    mem_sink fin;
    mux(&fin, f, n, fps, 1);
    CHECK(webm_check(fin.data, fin.len - 10, 0, &s, err, sizeof err) != 0);
    webm_summary_free(&s);
    CHECK(webm_check(fin.data, fin.len - 10, 1, &s, err, sizeof err) == 0 && s.truncated);
    webm_summary_free(&s);
    mem_sink_free(&fin);
    mem_sink_free(&ms);
    free_frames(f, n);
}

static void test_validation(void) {
    mem_sink ms = {0};
    fb_webm_sink sink = mem_sink_make(&ms);
    fb_webm_params p = {64, 64, 25};
    fb_webm *m = (fb_webm *)1;
    fb_webm_params bad = {0, 64, 25};
    CHECK(fb_webm_open(&sink, &bad, &m) == FB_WEBM_ERR_ARG && !m);
    bad = (fb_webm_params){64, 64, 0};
    CHECK(fb_webm_open(&sink, &bad, &m) == FB_WEBM_ERR_ARG);
    CHECK(fb_webm_open(NULL, &p, &m) == FB_WEBM_ERR_ARG);
    CHECK(fb_webm_open(&sink, &p, &m) == FB_WEBM_OK && m);
    if (!m) return;
    uint8_t data[16] = {1, 2, 3};
    uint64_t size0 = fb_webm_size(m);
    CHECK(fb_webm_write_frame(m, data, 3, 0, 0) == FB_WEBM_ERR_NO_KEYFRAME);
    CHECK(fb_webm_write_frame(m, data, 0, 0, 1) == FB_WEBM_ERR_FRAME_SIZE);
    CHECK(fb_webm_write_frame(m, data, (size_t)FB_WEBM_MAX_FRAME + 1, 0, 1) ==
          FB_WEBM_ERR_FRAME_SIZE);
    CHECK(fb_webm_write_frame(m, NULL, 3, 0, 1) == FB_WEBM_ERR_ARG);
    CHECK(fb_webm_write_frame(m, data, 3, -1, 1) == FB_WEBM_ERR_TIMESTAMP);
    CHECK(fb_webm_size(m) == size0); /* refused frames write nothing */
    CHECK(fb_webm_write_frame(m, data, 3, 1000000, 1) == FB_WEBM_OK);
    CHECK(fb_webm_write_frame(m, data, 3, 999999, 0) == FB_WEBM_ERR_TIMESTAMP);
    CHECK(fb_webm_write_frame(m, data, 3, 1000000, 0) == FB_WEBM_OK); /* equal is fine */
    CHECK(fb_webm_write_packet(m, NULL) == FB_WEBM_ERR_ARG);
    fb_packet *pkt = fb_packet_new(data, 5, 0, 7, 1040000, 40000);
    CHECK(fb_webm_write_packet(m, pkt) == FB_WEBM_OK);
    fb_packet_unref(pkt);
    CHECK(fb_webm_frame_count(m) == 3);
    CHECK(fb_webm_finalize(m) == FB_WEBM_OK);
    CHECK(fb_webm_finalize(m) == FB_WEBM_ERR_STATE);
    CHECK(fb_webm_write_frame(m, data, 3, 2000000, 1) == FB_WEBM_ERR_STATE);
    fb_webm_free(m);
    webm_summary s;
    char err[256];
    CHECKF(webm_check(ms.data, ms.len, 0, &s, err, sizeof err) == 0, "%s", err);
    CHECK(s.n_frames == 3 && s.frames[2].time_ms == 40);
    webm_summary_free(&s);
    mem_sink_free(&ms);

    /* An empty recording finalizes to a valid file without Cues or Duration. */
    sink = mem_sink_make(&ms);
    CHECK(fb_webm_open(&sink, &p, &m) == FB_WEBM_OK);
    CHECK(fb_webm_finalize(m) == FB_WEBM_OK);
    fb_webm_free(m);
    CHECKF(webm_check(ms.data, ms.len, 0, &s, err, sizeof err) == 0, "%s", err);
    CHECK(s.finalized && s.n_frames == 0 && s.n_cues == 0 && !s.has_duration);
    webm_summary_free(&s);
    mem_sink_free(&ms);
}

/* A failing sink: the error comes back once with its errno, then the muxer refuses calls, and
 * what was written before still parses. */
static void test_sink_failure(void) {
    for (int fail_at = 1; fail_at < 12; fail_at++) {
        mem_sink ms = {.fail_at_call = fail_at, .fail_errno = ENOSPC};
        fb_webm_sink sink = mem_sink_make(&ms);
        fb_webm_params p = {64, 64, 25};
        fb_webm *m = NULL;
        fb_webm_status st = fb_webm_open(&sink, &p, &m);
        if (fail_at == 1) {
            CHECK(st == FB_WEBM_ERR_IO && !m);
            mem_sink_free(&ms);
            continue;
        }
        uint8_t data[100] = {0};
        int failed = 0;
        for (int i = 0; m && i < 10; i++) {
            st = fb_webm_write_frame(m, data, sizeof data, i * 40000, i % 4 == 0);
            if (st != FB_WEBM_OK) {
                CHECK(st == (failed ? FB_WEBM_ERR_STATE : FB_WEBM_ERR_IO));
                failed = 1;
            }
        }
        if (m) {
            st = fb_webm_finalize(m);
            CHECK(st == (failed ? FB_WEBM_ERR_STATE : FB_WEBM_ERR_IO));
            CHECK(fb_webm_io_errno(m) == ENOSPC);
        }
        fb_webm_free(m);
        webm_summary s;
        char err[256];
        CHECKF(webm_check(ms.data, ms.len, 1, &s, err, sizeof err) == 0, "fail at %d: %s",
               fail_at, err);
        webm_summary_free(&s);
        mem_sink_free(&ms);
    }
}

int main(void) {
    test_finalized();
    test_cluster_limits();
    test_live_and_cut();
    test_validation();
    test_sink_failure();
    return test_result("stream_webm");
}
