/* tests/taehv/test_conv.c - the fast 2-D convolution against its plain-loop reference.
 *
 * Table of cases covering every feature of fb_conv2d (3x3 and 1x1, stride 2, fused x2
 * upsampling, a second concatenated input, bias, residual separate or in place, ReLU, a
 * column buffer split into several row tiles, odd sizes), each compared element-wise with
 * fb_conv2d_ref; then the speed of two decoder-sized convs in GFLOP/s. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/conv.h"
#include "kernels/kernels.h"
#include "tests/text/text_test_util.h"

typedef struct {
    int c0, c1, h, w, up, k, stride, c_out, bias, residual, relu;
} conv_case;

static const conv_case cases[] = {
    /* c0  c1   h   w up k s cout bias res relu */
    {16, 0, 8, 8, 1, 3, 1, 32, 1, 0, 1},      /* decoder.1 shape class */
    {8, 8, 7, 9, 1, 3, 1, 8, 1, 0, 1},        /* MemBlock conv.0: cat([x, past]) */
    {8, 0, 7, 9, 1, 3, 1, 8, 1, 1, 1},        /* residual, separate buffer */
    {8, 0, 7, 9, 1, 3, 1, 8, 1, 2, 1},        /* residual in place */
    {12, 0, 5, 6, 2, 3, 1, 10, 0, 0, 0},      /* fused nearest x2 upsample */
    {12, 0, 9, 11, 1, 3, 2, 10, 0, 0, 0},     /* stride 2, odd size */
    {12, 0, 8, 8, 1, 3, 2, 6, 1, 0, 1},       /* stride 2, even size */
    {24, 0, 6, 5, 1, 1, 1, 48, 0, 0, 0},      /* TGrow 1x1 */
    {10, 10, 6, 5, 1, 1, 1, 10, 0, 0, 0},     /* TPool 1x1 over two frames */
    {10, 0, 6, 5, 1, 1, 1, 7, 1, 2, 1},       /* 1x1 with everything */
    {6, 0, 3, 4, 2, 1, 1, 5, 1, 0, 0},        /* 1x1 upsampled (im2col path) */
    {64, 0, 64, 64, 1, 3, 1, 16, 1, 0, 1},    /* several row tiles */
    {3, 0, 1, 1, 1, 3, 1, 4, 1, 0, 0},        /* 1x1 image, all padding */
};

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}
static float *rand_buf(size_t n, float scale) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = frand() * scale;
    return p;
}

static void run_case(fb_kctx *kc, const conv_case *t, int idx) {
    fb_conv2d c = {.c_in0 = t->c0, .c_in1 = t->c1, .h = t->h, .w = t->w, .up = t->up,
                   .k = t->k, .stride = t->stride, .c_out = t->c_out, .relu = t->relu};
    int ho, wo;
    fb_conv2d_out_size(&c, &ho, &wo);
    size_t in_n = (size_t)t->h * t->w, out_n = (size_t)t->c_out * ho * wo;
    float *x = rand_buf(t->c0 * in_n, 1.0f), *x1 = rand_buf(t->c1 * in_n, 1.0f);
    float *wgt = rand_buf((size_t)t->c_out * (t->c0 + t->c1) * t->k * t->k, 0.2f);
    float *bias = rand_buf(t->c_out, 0.5f), *res = rand_buf(out_n, 1.0f);
    float *y = malloc(out_n * sizeof *y), *y_ref = malloc(out_n * sizeof *y_ref);
    c.x = x;
    c.x1 = t->c1 ? x1 : NULL;
    c.weight = wgt;
    c.bias = t->bias ? bias : NULL;
    if (t->residual == 1) c.residual = res;
    if (t->residual == 2) {
        memcpy(y, res, out_n * sizeof *y);
        memcpy(y_ref, res, out_n * sizeof *y);
    } else {
        for (size_t i = 0; i < out_n; i++) y[i] = y_ref[i] = 12345.0f; /* must be overwritten */
    }
    c.y = y_ref;
    if (t->residual == 2) c.residual = y_ref;
    fb_conv2d_ref(&c);
    c.y = y;
    if (t->residual == 2) c.residual = y;
    size_t sf = fb_conv2d_scratch_floats(&c);
    float *scratch = sf ? malloc(sf * sizeof *scratch) : NULL;
    fb_conv2d_run(kc, &c, scratch, sf);
    char what[96];
    snprintf(what, sizeof what, "case %d (%dx%d k%d s%d up%d)", idx, t->h, t->w, t->k,
             t->stride, t->up);
    compare_f32(what, y, y_ref, out_n, 1e-5, 1e-5);
    free(x); free(x1); free(wgt); free(bias); free(res); free(y); free(y_ref); free(scratch);
}

static void bench(fb_kctx *kc, int c_in, int c_out, int h, int w, int reps) {
    fb_conv2d c = {.c_in0 = c_in, .h = h, .w = w, .up = 1, .k = 3, .stride = 1,
                   .c_out = c_out, .relu = 1};
    float *x = rand_buf((size_t)c_in * h * w, 1.0f);
    float *wgt = rand_buf((size_t)c_out * c_in * 9, 0.05f);
    float *bias = rand_buf(c_out, 0.1f);
    float *y = malloc((size_t)c_out * h * w * sizeof *y);
    c.x = x; c.weight = wgt; c.bias = bias; c.y = y;
    size_t sf = fb_conv2d_scratch_floats(&c);
    float *scratch = malloc(sf * sizeof *scratch);
    fb_conv2d_run(kc, &c, scratch, sf); /* warm-up */
    double t0 = now_ms();
    for (int r = 0; r < reps; r++) fb_conv2d_run(kc, &c, scratch, sf);
    double ms = (now_ms() - t0) / reps;
    double gflop = 2.0 * c_out * c_in * 9.0 * h * w / 1e9;
    printf("conv3x3 %4d->%-4d %4dx%-4d %.2f ms  %.1f GFLOP/s\n", c_in, c_out, h, w, ms,
           gflop / (ms / 1e3));
    free(x); free(wgt); free(bias); free(y); free(scratch);
}

int main(void) {
    char err[256];
    fb_kctx *kc = NULL;
    if (fb_kctx_init(&kc, 0, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(kc, &cases[i], (int)i);
    bench(kc, 512, 256, 8, 8, 20);
    bench(kc, 256, 256, 16, 16, 10);
    bench(kc, 64, 64, 64, 64, 10);
    fb_kctx_free(kc);
    TEST_EXIT();
}
