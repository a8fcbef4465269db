/* tests/bench/encode_bench.c - VP9 encoder speed on the test pattern (target fb_bench_encode).
 *
 * For each size: frames are drawn first (not timed), then each is converted RGB24 -> I420 and
 * encoded with the default realtime settings, and the wall time of that call is recorded.
 * Prints mean/median/worst ms per frame, frames per second, the keyframe cost and the bitrate
 * actually produced at the nominal frame rate.
 *
 *   fb_bench_encode [frames]        (default 300 per size)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stream/testpattern.h"
#include "stream/vp9enc.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int bench(int w, int h, int fps, int frames) {
    fb_vp9enc_params p = fb_vp9enc_default_params(w, h, fps);
    fb_vp9enc *enc;
    char err[256];
    if (fb_vp9enc_new(&p, &enc, err, sizeof err) != FB_VP9ENC_OK) {
        fprintf(stderr, "%dx%d: %s\n", w, h, err);
        return 1;
    }
    /* A few distinct frames are enough to keep the encoder busy; cycling through them keeps the
     * pattern generation out of the timing without holding hundreds of frames in memory. */
    enum { DISTINCT = 60 };
    size_t fsize = (size_t)w * h * 3;
    uint8_t *rgb = malloc(fsize * DISTINCT);
    double *ms = malloc(sizeof(double) * (size_t)frames);
    if (!rgb || !ms) return 1;
    for (int i = 0; i < DISTINCT; i++)
        fb_testpattern_draw(rgb + fsize * (size_t)i, w, h, (uint32_t)i, fps);
    size_t bytes = 0, key_bytes = 0;
    int keys = 0;
    double key_ms = 0, total = 0;
    for (int i = 0; i < frames; i++) {
        fb_packet *pkt = NULL;
        double t0 = now_ms();
        fb_vp9enc_status st = fb_vp9enc_encode_rgb(enc, rgb + fsize * (size_t)(i % DISTINCT),
                                                   3 * w, FB_VP9ENC_PTS_AUTO, &pkt);
        ms[i] = now_ms() - t0;
        if (st != FB_VP9ENC_OK) {
            fprintf(stderr, "%dx%d: %s\n", w, h, fb_vp9enc_error(enc));
            return 1;
        }
        total += ms[i];
        if (pkt) {
            bytes += pkt->payload_size;
            if (pkt->is_key) {
                keys++;
                key_ms += ms[i];
                key_bytes += pkt->payload_size;
            }
            fb_packet_unref(pkt);
        }
    }
    qsort(ms, (size_t)frames, sizeof *ms, cmp_double);
    double seconds = (double)frames / fps;
    printf("%4dx%-4d cpu-used %d, %d thread(s), target %5d kbps: %6.2f ms/frame mean, "
           "%6.2f median, %6.2f worst, %7.1f frames/s; keyframes %.2f ms, %zu bytes; "
           "%.0f bytes/s (%.0f kbps) at %d fps\n",
           w, h, p.cpu_used, p.threads, p.bitrate_kbps, total / frames, ms[frames / 2],
           ms[frames - 1], 1000.0 * frames / total, keys ? key_ms / keys : 0,
           keys ? key_bytes / (size_t)keys : 0, bytes / seconds, bytes * 8 / seconds / 1000, fps);
    free(rgb);
    free(ms);
    fb_vp9enc_free(enc);
    return 0;
}

int main(int argc, char **argv) {
    int frames = argc > 1 ? atoi(argv[1]) : 300;
    if (frames < 1) {
        fprintf(stderr, "usage: %s [frames]\n", argv[0]);
        return 2;
    }
    int rc = bench(256, 256, 30, frames);
    rc |= bench(832, 480, 30, frames);
    return rc;
}
