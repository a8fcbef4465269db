/* kernels/cpu/conv.c - 2-D convolution as im2col tiles times fb_sgemm (see kernels/conv.h).
 *
 * Why im2col + GEMM: the decoder's convs have 64..512 input channels, so K = 9 * c_in is
 * large and OpenBLAS's blocked SGEMM runs near peak on the [c_out, K] x [K, pixels] product;
 * the column fill is a cheap, memory-bound copy done in parallel over input channels. Tiles
 * are bands of whole output rows so that each tile's output is a contiguous column range of
 * every output channel (one GEMM with ldc = ho * wo).
 */
#include "kernels/conv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONV_ASSERT(cond)                                                                 \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: %s: assertion failed: %s\n", __FILE__, __LINE__,      \
                    __func__, #cond);                                                     \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

static void check_desc(const fb_conv2d *c) {
    CONV_ASSERT(c && c->x && c->weight && c->y);
    CONV_ASSERT(c->c_in0 > 0 && c->c_in1 >= 0 && (c->c_in1 == 0 || c->x1));
    CONV_ASSERT(c->h > 0 && c->w > 0 && c->c_out > 0);
    CONV_ASSERT(c->up == 1 || c->up == 2);
    CONV_ASSERT(c->k == 1 || c->k == 3);
    CONV_ASSERT(c->stride == 1 || c->stride == 2);
}

void fb_conv2d_out_size(const fb_conv2d *c, int *ho, int *wo) {
    int pad = c->k / 2;
    *ho = (c->h * c->up + 2 * pad - c->k) / c->stride + 1;
    *wo = (c->w * c->up + 2 * pad - c->k) / c->stride + 1;
}

static int is_direct(const fb_conv2d *c) { return c->k == 1 && c->stride == 1 && c->up == 1; }

static int tile_rows(const fb_conv2d *c, int ho, int wo) {
    size_t K = (size_t)(c->c_in0 + c->c_in1) * c->k * c->k;
    size_t rows = FB_CONV_TILE_FLOATS / (K * (size_t)wo);
    if (rows < 1) rows = 1;
    if (rows > (size_t)ho) rows = (size_t)ho;
    return (int)rows;
}

size_t fb_conv2d_scratch_floats(const fb_conv2d *c) {
    if (is_direct(c)) return 0;
    int ho, wo;
    fb_conv2d_out_size(c, &ho, &wo);
    size_t K = (size_t)(c->c_in0 + c->c_in1) * c->k * c->k;
    return K * (size_t)tile_rows(c, ho, wo) * (size_t)wo;
}

/* ---- im2col ------------------------------------------------------------------------------ */

typedef struct {
    const fb_conv2d *c;
    int ho, wo, r0, r1; /* output rows of this tile */
    float *col;         /* [K, (r1 - r0) * wo] */
} col_job;

/* Fills the k*k rows of the column buffer that come from input channel `ci`. */
static void col_task(void *arg, int ci, int thread) {
    (void)thread;
    const col_job *j = arg;
    const fb_conv2d *c = j->c;
    const int k = c->k, pad = k / 2, s = c->stride, up = c->up;
    const int H = c->h * up, W = c->w * up; /* size of the (virtually upsampled) input */
    const float *src = ci < c->c_in0 ? c->x + (size_t)ci * c->h * c->w
                                     : c->x1 + (size_t)(ci - c->c_in0) * c->h * c->w;
    const size_t n_px = (size_t)(j->r1 - j->r0) * j->wo;
    for (int ky = 0; ky < k; ky++) {
        for (int kx = 0; kx < k; kx++) {
            float *dst = j->col + ((size_t)(ci * k + ky) * k + kx) * n_px;
            for (int oy = j->r0; oy < j->r1; oy++, dst += j->wo) {
                int iy = oy * s + ky - pad;
                if (iy < 0 || iy >= H) {
                    memset(dst, 0, (size_t)j->wo * sizeof(float));
                    continue;
                }
                const float *row = src + (size_t)(iy / up) * c->w;
                int off = kx - pad;
                if (s == 1 && up == 1) {
                    /* dst[ox] = row[ox + off], zero outside [0, W) */
                    int lo = off < 0 ? -off : 0;
                    int hi = j->wo - (off > 0 ? off : 0);
                    if (hi > j->wo) hi = j->wo;
                    for (int ox = 0; ox < lo; ox++) dst[ox] = 0.0f;
                    if (hi > lo) memcpy(dst + lo, row + lo + off, (size_t)(hi - lo) * sizeof(float));
                    for (int ox = hi > lo ? hi : lo; ox < j->wo; ox++) dst[ox] = 0.0f;
                } else {
                    for (int ox = 0; ox < j->wo; ox++) {
                        int ix = ox * s + off;
                        dst[ox] = ix >= 0 && ix < W ? row[ix / up] : 0.0f;
                    }
                }
            }
        }
    }
}

/* ---- epilogue ------------------------------------------------------------------------------ */

typedef struct {
    const fb_conv2d *c;
    size_t plane;       /* ho * wo */
    size_t p0, p1;      /* pixel range of this tile */
} epi_job;

static void epi_task(void *arg, int co, int thread) {
    (void)thread;
    const epi_job *j = arg;
    const fb_conv2d *c = j->c;
    float *y = c->y + (size_t)co * j->plane;
    const float b = c->bias ? c->bias[co] : 0.0f;
    /* In-place residual (residual == y) was already accumulated by the GEMM (beta = 1). */
    const float *res = c->residual && c->residual != c->y ? c->residual + (size_t)co * j->plane
                                                          : NULL;
    if (res) {
        for (size_t p = j->p0; p < j->p1; p++) y[p] = (y[p] + b) + res[p];
    } else if (c->bias) {
        for (size_t p = j->p0; p < j->p1; p++) y[p] += b;
    }
    if (c->relu)
        for (size_t p = j->p0; p < j->p1; p++) y[p] = y[p] > 0.0f ? y[p] : 0.0f;
}

/* ---- driver ------------------------------------------------------------------------------- */

void fb_conv2d_run(fb_kctx *kc, const fb_conv2d *c, float *scratch, size_t scratch_floats) {
    check_desc(c);
    int ho, wo;
    fb_conv2d_out_size(c, &ho, &wo);
    CONV_ASSERT(ho > 0 && wo > 0);
    const int c_in = c->c_in0 + c->c_in1;
    const int K = c_in * c->k * c->k;
    const size_t plane = (size_t)ho * wo;
    const int need_epi = c->bias || (c->residual && c->residual != c->y) || c->relu;
    const float beta = c->residual == c->y ? 1.0f : 0.0f; /* in-place residual */

    if (is_direct(c)) {
        /* y = W[:, :c_in0] x (+ W[:, c_in0:] x1) */
        fb_sgemm(kc, 0, 0, c->c_out, (int)plane, c->c_in0, 1.0f, c->weight, c_in, c->x,
                 (int)plane, beta, c->y, (int)plane);
        if (c->c_in1)
            fb_sgemm(kc, 0, 0, c->c_out, (int)plane, c->c_in1, 1.0f, c->weight + c->c_in0,
                     c_in, c->x1, (int)plane, 1.0f, c->y, (int)plane);
        if (need_epi) {
            epi_job e = {c, plane, 0, plane};
            fb_kctx_parallel(kc, c->c_out, epi_task, &e);
        }
        return;
    }

    const int rows = tile_rows(c, ho, wo);
    CONV_ASSERT(scratch && scratch_floats >= (size_t)K * rows * wo);
    for (int r0 = 0; r0 < ho; r0 += rows) {
        int r1 = r0 + rows < ho ? r0 + rows : ho;
        int n_px = (r1 - r0) * wo;
        col_job j = {c, ho, wo, r0, r1, scratch};
        fb_kctx_parallel(kc, c_in, col_task, &j);
        /* y[:, r0*wo : r1*wo] = W [c_out, K] x col [K, n_px] */
        fb_sgemm(kc, 0, 0, c->c_out, n_px, K, 1.0f, c->weight, K, scratch, n_px, beta,
                 c->y + (size_t)r0 * wo, (int)plane);
        if (need_epi) {
            epi_job e = {c, plane, (size_t)r0 * wo, (size_t)r1 * wo};
            fb_kctx_parallel(kc, c->c_out, epi_task, &e);
        }
    }
}

void fb_conv2d_ref(const fb_conv2d *c) {
    check_desc(c);
    int ho, wo;
    fb_conv2d_out_size(c, &ho, &wo);
    const int k = c->k, pad = k / 2, up = c->up, c_in = c->c_in0 + c->c_in1;
    const int H = c->h * up, W = c->w * up;
    for (int co = 0; co < c->c_out; co++)
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++) {
                double acc = c->bias ? c->bias[co] : 0.0;
                for (int ci = 0; ci < c_in; ci++) {
                    const float *src = ci < c->c_in0
                                           ? c->x + (size_t)ci * c->h * c->w
                                           : c->x1 + (size_t)(ci - c->c_in0) * c->h * c->w;
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            int iy = oy * c->stride + ky - pad, ix = ox * c->stride + kx - pad;
                            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                            acc += (double)c->weight[((size_t)(co * c_in + ci) * k + ky) * k + kx] *
                                   src[(size_t)(iy / up) * c->w + ix / up];
                        }
                }
                size_t o = ((size_t)co * ho + oy) * wo + ox;
                if (c->residual) acc += c->residual[o]; /* read before the write below */
                if (c->relu && acc < 0) acc = 0;
                c->y[o] = (float)acc;
            }
}
