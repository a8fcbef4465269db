/* tests/integration/read_counters.c - reads the test pattern's frame counter back from decoded
 * video: RGB24 frames of WIDTH x HEIGHT on stdin (as `ffmpeg -f rawvideo -pix_fmt rgb24 -`
 * writes them), one counter per line on stdout (-1 where a frame has no readable counter).
 * Exit 0 after a whole number of frames, 1 on a partial frame or a bad argument. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "stream/testpattern.h"

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: read_counters WIDTH HEIGHT < frames.rgb24\n");
        return 1;
    }
    int w = atoi(argv[1]), h = atoi(argv[2]);
    if (w < FB_TESTPATTERN_MIN_SIZE || h < FB_TESTPATTERN_MIN_SIZE || w > FB_TESTPATTERN_MAX_SIZE ||
        h > FB_TESTPATTERN_MAX_SIZE) {
        fprintf(stderr, "read_counters: bad size %sx%s\n", argv[1], argv[2]);
        return 1;
    }
    size_t frame = (size_t)w * (size_t)h * 3;
    uint8_t *rgb = malloc(frame);
    if (!rgb) return 1;
    long frames = 0;
    for (;;) {
        size_t got = fread(rgb, 1, frame, stdin);
        if (got == 0) break;
        if (got != frame) {
            fprintf(stderr, "read_counters: partial frame (%zu of %zu bytes) after %ld frames\n",
                    got, frame, frames);
            free(rgb);
            return 1;
        }
        printf("%d\n", (int)fb_testpattern_read_counter(rgb, w, h));
        frames++;
    }
    free(rgb);
    return 0;
}
