/* tests/integration/cli_webm_writer.c - drives the CLI's WebM output (clients/cli/webm_out.c)
 * without a daemon: encodes N test-pattern frames with fb_vp9enc and saves them the way
 * `flipbook record` does (first frame a keyframe, timestamps from the packets, relative to the
 * first). test_cli_webm.py then checks the file with ffprobe/ffmpeg.
 *   cli_webm_writer OUT.webm FRAMES WIDTH HEIGHT FPS [SKIP]
 * SKIP drops the first SKIP frames before writing (the CLI starts at the first keyframe after
 * joining; with SKIP>0 the writer waits for the next keyframe the same way). */
#include <stdio.h>
#include <stdlib.h>

#include "clients/cli/webm_out.h"
#include "stream/testpattern.h"
#include "stream/vp9enc.h"

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: cli_webm_writer OUT FRAMES WIDTH HEIGHT FPS [SKIP]\n");
        return 2;
    }
    const char *out = argv[1];
    int n = atoi(argv[2]), w = atoi(argv[3]), h = atoi(argv[4]), fps = atoi(argv[5]);
    int skip = argc > 6 ? atoi(argv[6]) : 0;
    fb_vp9enc_params p = fb_vp9enc_default_params(w, h, fps);
    p.keyframe_interval = fps; /* a keyframe a second, so SKIP has one to wait for */
    fb_vp9enc *enc = NULL;
    char err[256];
    if (fb_vp9enc_new(&p, &enc, err, sizeof err) != FB_VP9ENC_OK) {
        fprintf(stderr, "encoder: %s\n", err);
        return 1;
    }
    uint8_t *rgb = malloc((size_t)w * h * 3);
    fb_webm_out *wo = NULL;
    int64_t first_pts = -1;
    int written = 0, rc = 0;
    for (int i = 0; written < n && i < n + skip + 4 * fps && rc == 0; i++) {
        fb_testpattern_draw(rgb, w, h, (uint32_t)i, fps);
        fb_packet *pkt = NULL;
        if (fb_vp9enc_encode_rgb(enc, rgb, 3 * w, FB_VP9ENC_PTS_AUTO, &pkt) != FB_VP9ENC_OK) {
            fprintf(stderr, "encode: %s\n", fb_vp9enc_error(enc));
            rc = 1;
            break;
        }
        if (!pkt) continue;
        if (i >= skip && (first_pts >= 0 || pkt->is_key) && written < n) {
            if (!wo && fb_webm_out_open(&wo, out, w, h, fps, err, sizeof err)) {
                fprintf(stderr, "open: %s\n", err);
                rc = 1;
            }
            if (first_pts < 0) first_pts = pkt->pts_us;
            if (rc == 0 && fb_webm_out_write(wo, pkt->payload, pkt->payload_size, pkt->is_key,
                                             pkt->pts_us - first_pts, err, sizeof err)) {
                fprintf(stderr, "write: %s\n", err);
                rc = 1;
            }
            written++;
        }
        fb_packet_unref(pkt);
    }
    uint64_t bytes = 0;
    if (wo && fb_webm_out_finish(wo, &bytes, err, sizeof err)) {
        fprintf(stderr, "finish: %s\n", err);
        rc = 1;
    }
    printf("%d frames, %llu bytes\n", written, (unsigned long long)bytes);
    free(rgb);
    fb_vp9enc_free(enc);
    return rc;
}
