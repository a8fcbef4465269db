/* stream/testpattern.h - a diagnostic frame source, in the spirit of ffmpeg's testsrc.
 *
 * Draws an RGB24 frame that is a pure function of (width, height, frame number, fps):
 *   - scrolling colour bars (white, yellow, cyan, green, magenta, red, blue, black) and a
 *     bouncing square, so motion and colour errors are visible;
 *   - a moving grey ramp along the bottom quarter;
 *   - the frame number in large 7-segment digits and the stream clock HH:MM:SS.mmm below it;
 *   - in the top-left corner, a machine-readable copy of the frame number: 16 square cells, most
 *     significant bit first, white = 1, and under them a second row with the complement of each
 *     bit. The cells are big (16 px at 256 px wide and up) so that fb_testpattern_read_counter()
 *     can read the number back from a decoded frame after lossy VP9 compression; the complement
 *     row lets it tell a real counter from any other picture.
 *
 * The daemon uses it as a source that needs no model, tests use it to check frame order end to
 * end (encode -> mux -> ffmpeg decode -> read counter).
 *
 * Usage:
 *   uint8_t *rgb = malloc((size_t)w * h * 3);
 *   for (uint32_t n = 0;; n++) { fb_testpattern_draw(rgb, w, h, n, 30); encode(rgb); }
 *
 * Thread-safety: pure functions; no allocation, no state.
 */
#ifndef FLIPBOOK_STREAM_TESTPATTERN_H
#define FLIPBOOK_STREAM_TESTPATTERN_H

#include <stdint.h>

#define FB_TESTPATTERN_MIN_SIZE 32     /* smallest width/height (cells are then 2 px) */
#define FB_TESTPATTERN_MAX_SIZE 8192
#define FB_TESTPATTERN_COUNTER_BITS 16 /* the block code carries frame_no mod 65536 */

typedef enum fb_testpattern_status {
    FB_TESTPATTERN_OK = 0,
    FB_TESTPATTERN_ERR_ARG = -1,   /* NULL buffer or fps outside 1..1000 */
    FB_TESTPATTERN_ERR_SIZE = -2,  /* width/height odd or outside MIN_SIZE..MAX_SIZE */
} fb_testpattern_status;

/* Draws frame `frame_no` of a stream running at `fps` into `rgb`, which holds width * height
 * packed RGB24 pixels (rows of 3 * width bytes). Every byte is written. */
fb_testpattern_status fb_testpattern_draw(uint8_t *rgb, int width, int height, uint32_t frame_no,
                                          int fps);

/* Reads the block code back from an RGB24 frame drawn by fb_testpattern_draw() (possibly after
 * lossy compression). Returns frame_no mod 65536, or -1 when the corner does not hold a counter
 * (a cell and its complement are not clearly one light and one dark) or the size is invalid. */
int32_t fb_testpattern_read_counter(const uint8_t *rgb, int width, int height);

/* Side of one counter cell in pixels for a frame of this size (tests use it to reason about
 * how readable the code is). */
int fb_testpattern_cell_size(int width, int height);

const char *fb_testpattern_status_str(fb_testpattern_status s);

#endif
