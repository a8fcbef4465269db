/* kernels/conv.h - 2-D convolutions over planar [C, H, W] float32 images (the TAEHV decoder
 * and encoder: 3x3 pad-1 convs, stride-2 convs, 1x1 convs).
 *
 * One descriptor covers the variants the decoder needs, fused so that no intermediate is
 * materialised:
 *   - a second input concatenated on the channel axis (MemBlock's cat([x, past], 1));
 *   - nearest x2 upsampling of the input, applied on the fly (TAEHV's Upsample + conv);
 *   - epilogue: bias, residual add, ReLU, in that order.
 * The CPU version has two lowerings, picked per call from the shape:
 *   - im2col tiles (a band of output rows at a time, so the column buffer stays bounded at
 *     any image size) multiplied with fb_sgemm, which splits the work over the context's
 *     threads; for wide convs (see FB_CONV_DIRECT_MAX_K). A 1x1, stride-1 conv
 *     without upsampling multiplies the input directly (no scratch);
 *   - a direct convolution for thin ones, where im2col + GEMM is memory-bound: the input is
 *     copied once into a zero-padded buffer and each thread sums a block of output channels
 *     for a strip of one output row in vector registers (split over rows x channel blocks).
 * Both give the same results up to float rounding; the direct one gives the same bits at any
 * thread count.
 *
 * Conventions as kernels/kernels.h: float32, row-major, weights in PyTorch layout
 * [c_out, c_in, k, k]; shapes are the caller's contract (checked with assertions).
 *
 * Threading: like every op, one call at a time per fb_kctx; the scratch belongs to the call.
 */
#ifndef FLIPBOOK_KERNELS_CONV_H
#define FLIPBOOK_KERNELS_CONV_H

#include <stddef.h>

#include "kernels/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Floats of column buffer one im2col tile may use (8 MB). */
#define FB_CONV_TILE_FLOATS ((size_t)2 << 20)

typedef struct fb_conv2d {
    const float *x;        /* input [c_in0, h, w] */
    int c_in0;
    const float *x1;       /* NULL, or a second input [c_in1, h, w] after x on the channels */
    int c_in1;
    int h, w;              /* input height and width (before upsampling) */
    int up;                /* 1, or 2: the conv reads x upsampled x2 (nearest) */
    int k;                 /* kernel size: 1 or 3; zero padding k / 2 */
    int stride;            /* 1 or 2 */
    const float *weight;   /* [c_out, c_in0 + c_in1, k, k] */
    const float *bias;     /* [c_out] or NULL */
    int c_out;
    const float *residual; /* NULL, or [c_out, ho, wo] added to the conv; may equal y, which
                            * then accumulates in place (y = relu(y + conv(x) + bias)) */
    int relu;              /* apply max(0, .) last */
    float *y;              /* [c_out, ho, wo]; must not overlap x or x1 (nor residual unless
                            * residual == y) */
} fb_conv2d;

/* Widest convs the direct path takes: (c_in0 + c_in1) * k * k at most FB_CONV_DIRECT_MAX_K,
 * or FB_CONV_DIRECT_MAX_K_RESAMPLED when the conv upsamples or strides (im2col's column fill
 * is a per-pixel gather there). Measured with tests/taehv/test_conv, which prints both paths
 * (2 threads, AVX-512): stride-1 3x3 at 16 channels direct 1.3x faster, at 32 even, at 64
 * and above im2col 1.3..3x faster; upsampled 3x3 at 32..128 channels direct 1.5..4.8x. */
#define FB_CONV_DIRECT_MAX_K 288
#define FB_CONV_DIRECT_MAX_K_RESAMPLED 1152

/* Lowerings, for fb_conv2d_run_path. */
typedef enum fb_conv_path {
    FB_CONV_AUTO = 0,         /* what fb_conv2d_run does */
    FB_CONV_IM2COL,           /* im2col + fb_sgemm (or the GEMM alone for a plain 1x1) */
    FB_CONV_DIRECT,           /* direct, widest vector unit of this CPU */
    FB_CONV_DIRECT_PORTABLE   /* direct, baseline x86-64 / plain C build of the same kernels */
} fb_conv_path;

/* Output size: ho = (h * up + 2 * (k / 2) - k) / stride + 1 (likewise wo). */
void fb_conv2d_out_size(const fb_conv2d *c, int *ho, int *wo);

/* Scratch floats fb_conv2d_run (any path) needs for this descriptor (0 for a plain 1x1). */
size_t fb_conv2d_scratch_floats(const fb_conv2d *c);

/* Runs the conv; scratch holds at least fb_conv2d_scratch_floats(c) floats. */
void fb_conv2d_run(fb_kctx *k, const fb_conv2d *c, float *scratch, size_t scratch_floats);

/* fb_conv2d_run with the lowering forced (tests and benchmarks); same scratch. */
void fb_conv2d_run_path(fb_kctx *k, const fb_conv2d *c, fb_conv_path path, float *scratch,
                        size_t scratch_floats);

/* Straightforward loops (double accumulation), for tests. */
void fb_conv2d_ref(const fb_conv2d *c);

#ifdef __cplusplus
}
#endif

#endif
