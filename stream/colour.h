/* stream/colour.h - RGB24 <-> I420 conversion, BT.709 limited ("studio") range.
 *
 * The generator produces packed RGB24 (R, G, B bytes, rows top to bottom); VP9 wants planar
 * I420 (full-size Y, quarter-size U and V). flipbook uses BT.709 limited range everywhere:
 * Y in 16..235 and U/V in 16..240, which is what the VP9 bitstream declares, what the WebM
 * Colour element says and what the browser is told in the `config` message, so that every
 * decoder shows the same colours (shared/specs/streaming.md 2.4).
 *
 *   Y  = 16  + 219/255 * (Kr*R + Kg*G + Kb*B)           Kr = 0.2126, Kb = 0.0722, Kg = 1-Kr-Kb
 *   Cb = 128 + 224/255 * (B - Y') / (2 * (1 - Kb))      Y' = Kr*R + Kg*G + Kb*B
 *   Cr = 128 + 224/255 * (R - Y') / (2 * (1 - Kr))
 *
 * Chroma is taken from the mean of each 2x2 block of pixels, so width and height must be even.
 * The conversion is integer fixed point (16 fractional bits), within +-1 of the float formula.
 *
 * Usage:
 *   fb_i420 img = { y, u, v, w, w / 2, w / 2 };          // caller-owned planes
 *   if (fb_rgb24_to_i420(rgb, w * 3, w, h, &img) != FB_COLOUR_OK) ...
 *
 * Thread-safety: the functions are pure; any thread may call them on its own buffers.
 */
#ifndef FLIPBOOK_STREAM_COLOUR_H
#define FLIPBOOK_STREAM_COLOUR_H

#include <stdint.h>

typedef enum fb_colour_status {
    FB_COLOUR_OK = 0,
    FB_COLOUR_ERR_ARG = -1,   /* a NULL pointer, or a stride shorter than a row */
    FB_COLOUR_ERR_SIZE = -2,  /* width or height not positive and even */
} fb_colour_status;

/* Three planes of an I420 picture. The caller owns the memory: y is stride_y * height bytes,
 * u and v are stride_uv * (height / 2) bytes each. */
typedef struct fb_i420 {
    uint8_t *y, *u, *v;
    int stride_y;    /* bytes from one Y row to the next, >= width */
    int stride_uv;   /* bytes from one U (or V) row to the next, >= width / 2 */
} fb_i420;

/* Converts a width x height RGB24 picture (rgb_stride bytes per row, >= 3 * width) into `out`. */
fb_colour_status fb_rgb24_to_i420(const uint8_t *rgb, int rgb_stride, int width, int height,
                                  const fb_i420 *out);

/* The inverse, for tests, thumbnails and diagnostics: each pixel takes the chroma of its 2x2
 * block (no interpolation). Values are clamped to 0..255. */
fb_colour_status fb_i420_to_rgb24(const fb_i420 *in, int width, int height, uint8_t *rgb,
                                  int rgb_stride);

const char *fb_colour_status_str(fb_colour_status s);

#endif
