/* stream/colour.c - RGB24 <-> I420, BT.709 limited range (see colour.h).
 *
 * Fixed point: every coefficient is scaled by 2^16 and rounded once, at compile time, from the
 * BT.709 constants below, so the numbers in the code can be traced back to the formula. */
#include "stream/colour.h"

#include <stddef.h>

#define KR 0.2126
#define KB 0.0722
#define KG (1.0 - KR - KB)

#define FIX_BITS 16
#define FIX_HALF (1 << (FIX_BITS - 1))
/* Round to nearest, also for negative values (a plain cast truncates towards zero). */
#define FIX(x) ((int32_t)((x) * (1 << FIX_BITS) + ((x) < 0 ? -0.5 : 0.5)))

/* Forward: Y scale 219/255, chroma scale 224/255 / (2 (1 - K)). */
#define Y_SCALE (219.0 / 255.0)
#define CB_SCALE (224.0 / 255.0 / (2.0 * (1.0 - KB)))
#define CR_SCALE (224.0 / 255.0 / (2.0 * (1.0 - KR)))

static const int32_t YR = FIX(Y_SCALE * KR);
static const int32_t YG = FIX(Y_SCALE * KG);
static const int32_t YB = FIX(Y_SCALE * KB);
/* Cb = CB_SCALE * (B - Y'): the R and B terms are rounded, the G term is chosen so the three sum
 * to exactly zero, which keeps every grey at Cb = Cr = 128. */
static const int32_t UR = FIX(-CB_SCALE * KR);
static const int32_t UB = FIX(CB_SCALE * (1.0 - KB));
static const int32_t UG = -(FIX(-CB_SCALE * KR) + FIX(CB_SCALE * (1.0 - KB)));
static const int32_t VR = FIX(CR_SCALE * (1.0 - KR));
static const int32_t VB = FIX(-CR_SCALE * KB);
static const int32_t VG = -(FIX(CR_SCALE * (1.0 - KR)) + FIX(-CR_SCALE * KB));

/* Inverse: R = Ys (Y - 16) + Cs 2(1-Kr) (Cr - 128), B likewise with Kb, G from Y' = Kr R + Kg G
 * + Kb B. Ys = 255/219, Cs = 255/224. */
static const int32_t IY = FIX(255.0 / 219.0);
static const int32_t IRV = FIX(255.0 / 224.0 * 2.0 * (1.0 - KR));
static const int32_t IBU = FIX(255.0 / 224.0 * 2.0 * (1.0 - KB));
static const int32_t IGU = FIX(255.0 / 224.0 * 2.0 * (1.0 - KB) * KB / KG);
static const int32_t IGV = FIX(255.0 / 224.0 * 2.0 * (1.0 - KR) * KR / KG);

static int valid_size(int width, int height) {
    return width > 0 && height > 0 && width % 2 == 0 && height % 2 == 0;
}

static uint8_t clamp_u8(int32_t v) {
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* floor(v / 2^16) without shifting a negative number (implementation-defined in C11): the bias
 * keeps v positive, |v| < 2^26 for any 8-bit input. */
static int32_t fix_floor(int32_t v) {
    return ((v + (1024 << FIX_BITS)) >> FIX_BITS) - 1024;
}

static uint8_t luma(const uint8_t *px) {
    return (uint8_t)((YR * px[0] + YG * px[1] + YB * px[2] + (16 << FIX_BITS) + FIX_HALF) >>
                     FIX_BITS);
}

fb_colour_status fb_rgb24_to_i420(const uint8_t *rgb, int rgb_stride, int width, int height,
                                  const fb_i420 *out) {
    if (!valid_size(width, height)) return FB_COLOUR_ERR_SIZE;
    if (!rgb || !out || !out->y || !out->u || !out->v || rgb_stride < 3 * width ||
        out->stride_y < width || out->stride_uv < width / 2)
        return FB_COLOUR_ERR_ARG;

    for (int row = 0; row < height; row += 2) {
        const uint8_t *s0 = rgb + (size_t)row * rgb_stride;
        const uint8_t *s1 = s0 + rgb_stride;
        uint8_t *y0 = out->y + (size_t)row * out->stride_y;
        uint8_t *y1 = y0 + out->stride_y;
        uint8_t *u = out->u + (size_t)(row / 2) * out->stride_uv;
        uint8_t *v = out->v + (size_t)(row / 2) * out->stride_uv;
        for (int x = 0; x < width; x += 2, s0 += 6, s1 += 6) {
            y0[x] = luma(s0);
            y0[x + 1] = luma(s0 + 3);
            y1[x] = luma(s1);
            y1[x + 1] = luma(s1 + 3);
            /* Sums of four pixels: the shift grows by 2 bits to take the mean. Products stay
             * below 2^31 (4 * 255 * 2^16 * 0.45). */
            int32_t r = s0[0] + s0[3] + s1[0] + s1[3];
            int32_t g = s0[1] + s0[4] + s1[1] + s1[4];
            int32_t b = s0[2] + s0[5] + s1[2] + s1[5];
            const int32_t half = 1 << (FIX_BITS + 1);
            u[x / 2] = clamp_u8((UR * r + UG * g + UB * b + (128 << (FIX_BITS + 2)) + half) >>
                                (FIX_BITS + 2));
            v[x / 2] = clamp_u8((VR * r + VG * g + VB * b + (128 << (FIX_BITS + 2)) + half) >>
                                (FIX_BITS + 2));
        }
    }
    return FB_COLOUR_OK;
}

fb_colour_status fb_i420_to_rgb24(const fb_i420 *in, int width, int height, uint8_t *rgb,
                                  int rgb_stride) {
    if (!valid_size(width, height)) return FB_COLOUR_ERR_SIZE;
    if (!in || !rgb || !in->y || !in->u || !in->v || rgb_stride < 3 * width ||
        in->stride_y < width || in->stride_uv < width / 2)
        return FB_COLOUR_ERR_ARG;

    for (int row = 0; row < height; row++) {
        const uint8_t *y = in->y + (size_t)row * in->stride_y;
        const uint8_t *u = in->u + (size_t)(row / 2) * in->stride_uv;
        const uint8_t *v = in->v + (size_t)(row / 2) * in->stride_uv;
        uint8_t *d = rgb + (size_t)row * rgb_stride;
        for (int x = 0; x < width; x++, d += 3) {
            int32_t yy = IY * (y[x] - 16) + FIX_HALF;
            int32_t cb = u[x / 2] - 128, cr = v[x / 2] - 128;
            d[0] = clamp_u8(fix_floor(yy + IRV * cr));
            d[1] = clamp_u8(fix_floor(yy - IGU * cb - IGV * cr));
            d[2] = clamp_u8(fix_floor(yy + IBU * cb));
        }
    }
    return FB_COLOUR_OK;
}

const char *fb_colour_status_str(fb_colour_status s) {
    switch (s) {
    case FB_COLOUR_OK: return "ok";
    case FB_COLOUR_ERR_ARG: return "invalid argument (NULL buffer or stride shorter than a row)";
    case FB_COLOUR_ERR_SIZE: return "width and height must be positive and even";
    }
    return "unknown colour status";
}
