/* tests/taehv/test_conv.c - the fast 2-D convolution against its plain-loop reference.
 *
 * Table of cases covering every feature of fb_conv2d (3x3 and 1x1, stride 2, fused x2
 * upsampling, a second concatenated input, bias, residual separate or in place, ReLU, a
 * column buffer split into several row tiles, odd sizes, channel counts off the direct
 * path's blocks of 8), each run through every lowering (auto, im2col, direct, direct
 * portable) with 1 and 3 threads and compared element-wise with fb_conv2d_ref; the direct
 * path must give the same bits on every thread count. Then the speed of
 * decoder-sized convs on both lowerings (the figures behind FB_CONV_DIRECT_MAX_K). */
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
    {5, 3, 13, 37, 2, 3, 1, 13, 1, 1, 1},     /* concat + upsample, odd sizes, 8 + 4 + 1 */
    {7, 0, 19, 45, 2, 3, 1, 3, 1, 2, 1},      /* upsample, in-place residual, RGB-like 3 */
    {16, 16, 17, 33, 1, 3, 1, 16, 1, 0, 1},   /* MemBlock conv.0, odd, several strips */
    {9, 0, 16, 35, 1, 3, 2, 11, 1, 0, 1},     /* stride 2, odd width */
    {5, 0, 15, 15, 2, 3, 2, 6, 1, 1, 0},      /* stride 2 of an upsampled input */
    {6, 4, 9, 23, 1, 1, 2, 9, 1, 0, 1},       /* 1x1 stride 2 with concat */
    {8, 0, 11, 19, 1, 1, 1, 10, 1, 1, 1},     /* plain 1x1, odd width */
    {70, 0, 33, 34, 1, 3, 1, 20, 1, 0, 1},    /* direct path above one register strip */
    {2, 0, 1, 40, 1, 3, 1, 2, 0, 0, 0},       /* one row */
    {2, 0, 40, 1, 2, 3, 2, 5, 1, 0, 1},       /* one column, upsampled, stride 2 */
};

static const struct {
    fb_conv_path path;
    const char *name;
} paths[] = {{FB_CONV_AUTO, "auto"},
             {FB_CONV_IM2COL, "im2col"},
             {FB_CONV_DIRECT, "direct"},
             {FB_CONV_DIRECT_PORTABLE, "direct-portable"}};

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

/* Runs one case through every lowering on every context; the direct path's results must be
 * identical across contexts (same summation order by construction). */
static void run_case(fb_kctx **kcs, int n_kc, const conv_case *t, int idx) {
    fb_conv2d c = {.c_in0 = t->c0, .c_in1 = t->c1, .h = t->h, .w = t->w, .up = t->up,
                   .k = t->k, .stride = t->stride, .c_out = t->c_out, .relu = t->relu};
    int ho, wo;
    fb_conv2d_out_size(&c, &ho, &wo);
    size_t in_n = (size_t)t->h * t->w, out_n = (size_t)t->c_out * ho * wo;
    float *x = rand_buf(t->c0 * in_n, 1.0f), *x1 = rand_buf(t->c1 * in_n, 1.0f);
    float *wgt = rand_buf((size_t)t->c_out * (t->c0 + t->c1) * t->k * t->k, 0.2f);
    float *bias = rand_buf(t->c_out, 0.5f), *res = rand_buf(out_n, 1.0f);
    float *y = malloc(out_n * sizeof *y), *y_ref = malloc(out_n * sizeof *y_ref);
    float *y_direct = malloc(out_n * sizeof *y_direct);
    c.x = x;
    c.x1 = t->c1 ? x1 : NULL;
    c.weight = wgt;
    c.bias = t->bias ? bias : NULL;
    if (t->residual == 1) c.residual = res;
    if (t->residual == 2) {
        memcpy(y_ref, res, out_n * sizeof *y);
        c.residual = y_ref;
    }
    c.y = y_ref;
    fb_conv2d_ref(&c);
    size_t sf = fb_conv2d_scratch_floats(&c);
    float *scratch = sf ? malloc(sf * sizeof *scratch) : NULL;
    int have_direct = 0;
    for (int k = 0; k < n_kc; k++)
        for (size_t p = 0; p < sizeof paths / sizeof paths[0]; p++) {
            if (t->residual == 2) memcpy(y, res, out_n * sizeof *y);
            else for (size_t i = 0; i < out_n; i++) y[i] = 12345.0f; /* must be overwritten */
            c.y = y;
            if (t->residual == 2) c.residual = y;
            fb_conv2d_run_path(kcs[k], &c, paths[p].path, scratch, sf);
            char what[128];
            snprintf(what, sizeof what, "case %d (%dx%d k%d s%d up%d) %s %dt", idx, t->h, t->w,
                     t->k, t->stride, t->up, paths[p].name, fb_kctx_n_threads(kcs[k]));
            compare_f32(what, y, y_ref, out_n, 1e-5, 1e-5);
            if (paths[p].path == FB_CONV_DIRECT) {
                if (!have_direct) {
                    memcpy(y_direct, y, out_n * sizeof *y);
                    have_direct = 1;
                } else {
                    CHECK_MSG(memcmp(y, y_direct, out_n * sizeof *y) == 0,
                              "%s: direct results depend on the thread count", what);
                }
            }
        }
    free(x); free(x1); free(wgt); free(bias); free(res); free(y); free(y_ref); free(y_direct);
    free(scratch);
}

static double time_path(fb_kctx *kc, const fb_conv2d *c, fb_conv_path path, float *scratch,
                        size_t sf, int reps) {
    fb_conv2d_run_path(kc, c, path, scratch, sf); /* warm-up */
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_ms();
        fb_conv2d_run_path(kc, c, path, scratch, sf);
        double ms = now_ms() - t0;
        if (ms < best) best = ms;
    }
    return best;
}

/* Best of `reps` runs of each lowering (the machine may be shared: the best is the steadiest). */
static void bench(fb_kctx *kc, int c_in, int c_out, int h, int w, int up, int k, int reps) {
    fb_conv2d c = {.c_in0 = c_in, .h = h, .w = w, .up = up, .k = k, .stride = 1,
                   .c_out = c_out, .relu = 1};
    int ho, wo;
    fb_conv2d_out_size(&c, &ho, &wo);
    float *x = rand_buf((size_t)c_in * h * w, 1.0f);
    float *wgt = rand_buf((size_t)c_out * c_in * k * k, 0.05f);
    float *bias = rand_buf(c_out, 0.1f);
    float *y = malloc((size_t)c_out * ho * wo * sizeof *y);
    c.x = x; c.weight = wgt; c.bias = bias; c.y = y;
    size_t sf = fb_conv2d_scratch_floats(&c);
    float *scratch = sf ? malloc(sf * sizeof *scratch) : NULL;
    double ms_col = time_path(kc, &c, FB_CONV_IM2COL, scratch, sf, reps);
    double ms_dir = time_path(kc, &c, FB_CONV_DIRECT, scratch, sf, reps);
    double gflop = 2.0 * c_out * c_in * k * k * (double)ho * wo / 1e9;
    printf("conv%dx%d up%d %4d->%-4d %4dx%-4d im2col %6.3f ms %6.1f GFLOP/s   direct %6.3f ms "
           "%6.1f GFLOP/s\n", k, k, up, c_in, c_out, h, w, ms_col, gflop / (ms_col / 1e3),
           ms_dir, gflop / (ms_dir / 1e3));
    free(x); free(wgt); free(bias); free(y); free(scratch);
}

int main(void) {
    char err[256];
    fb_kctx *kcs[2] = {NULL, NULL};
    if (fb_kctx_init(&kcs[0], 1, err, sizeof err) || fb_kctx_init(&kcs[1], 3, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(kcs, 2, &cases[i], (int)i);
    fb_kctx *kc = NULL;
    if (fb_kctx_init(&kc, 0, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("%d threads, best of several runs:\n", fb_kctx_n_threads(kc));
    bench(kc, 512, 256, 8, 8, 1, 3, 10);
    bench(kc, 256, 256, 16, 16, 1, 3, 10);
    bench(kc, 128, 128, 32, 32, 1, 3, 10);
    bench(kc, 64, 64, 64, 64, 1, 3, 10);
    bench(kc, 64, 64, 16, 16, 1, 3, 20);
    bench(kc, 128, 64, 16, 16, 1, 3, 20);
    bench(kc, 64, 32, 16, 16, 2, 3, 20);
    bench(kc, 32, 16, 32, 32, 2, 3, 20);
    bench(kc, 128, 64, 16, 16, 2, 3, 20);
    bench(kc, 32, 32, 64, 64, 1, 3, 10);
    bench(kc, 16, 16, 128, 128, 1, 3, 10);
    bench(kc, 16, 3, 128, 128, 1, 3, 10);
    fb_kctx_free(kc);
    fb_kctx_free(kcs[0]);
    fb_kctx_free(kcs[1]);
    TEST_EXIT();
}
