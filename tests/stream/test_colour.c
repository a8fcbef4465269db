/* tests/stream/test_colour.c - RGB24 <-> I420 BT.709 limited range against the float formula.
 *
 * The reference below is the textbook BT.709 definition in double precision; the converter is
 * fixed point, so every sample must be within 1 of the rounded reference. */
#include <math.h>
#include <time.h>

#include "stream/colour.h"
#include "tests/stream/media_test.h"

static const double KR = 0.2126, KB = 0.0722;

static void ref_yuv(double r, double g, double b, double *y, double *cb, double *cr) {
    double yp = KR * r + (1 - KR - KB) * g + KB * b;
    *y = 16 + 219 * yp / 255;
    *cb = 128 + 224 * (b - yp) / (2 * (1 - KB)) / 255;
    *cr = 128 + 224 * (r - yp) / (2 * (1 - KR)) / 255;
}

static uint32_t rng = 12345;
static uint8_t rnd8(void) {
    rng = rng * 1664525u + 1013904223u;
    return (uint8_t)(rng >> 24);
}

/* Converts a flat w x h picture of one colour and returns its (Y, U, V). */
static void convert_flat(uint8_t r, uint8_t g, uint8_t b, int yuv[3]) {
    enum { W = 4, H = 2 };
    uint8_t rgb[W * H * 3], y[W * H], u[W * H / 4], v[W * H / 4];
    for (int i = 0; i < W * H; i++) {
        rgb[3 * i] = r;
        rgb[3 * i + 1] = g;
        rgb[3 * i + 2] = b;
    }
    fb_i420 img = {y, u, v, W, W / 2};
    CHECK(fb_rgb24_to_i420(rgb, 3 * W, W, H, &img) == FB_COLOUR_OK);
    for (int i = 1; i < W * H; i++) CHECK(y[i] == y[0]);
    yuv[0] = y[0];
    yuv[1] = u[0];
    yuv[2] = v[0];
}

static void test_known_colours(void) {
    /* BT.709 limited range values, rounded from the formula above. */
    static const struct {
        const char *name;
        uint8_t rgb[3];
        int yuv[3];
    } cases[] = {
        {"white", {255, 255, 255}, {235, 128, 128}},
        {"black", {0, 0, 0}, {16, 128, 128}},
        {"red", {255, 0, 0}, {63, 102, 240}},
        {"green", {0, 255, 0}, {173, 42, 26}},
        {"blue", {0, 0, 255}, {32, 240, 118}},
        {"grey", {128, 128, 128}, {126, 128, 128}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got[3];
        convert_flat(cases[i].rgb[0], cases[i].rgb[1], cases[i].rgb[2], got);
        double ry, rcb, rcr;
        ref_yuv(cases[i].rgb[0], cases[i].rgb[1], cases[i].rgb[2], &ry, &rcb, &rcr);
        CHECKF(got[0] == cases[i].yuv[0] && got[1] == cases[i].yuv[1] &&
                   got[2] == cases[i].yuv[2],
               "%s: got %d %d %d, want %d %d %d (float %.2f %.2f %.2f)", cases[i].name, got[0],
               got[1], got[2], cases[i].yuv[0], cases[i].yuv[1], cases[i].yuv[2], ry, rcb, rcr);
    }
}

/* Random pictures with padded strides: every sample within 1 of the float reference. */
static void test_random_against_reference(void) {
    enum { W = 38, H = 22, RS = W * 3 + 7, YS = W + 5, CS = W / 2 + 3 };
    static uint8_t rgb[RS * H], y[YS * H], u[CS * H / 2], v[CS * H / 2];
    for (int round = 0; round < 20; round++) {
        for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = rnd8();
        if (round == 1) memset(rgb, 255, sizeof rgb);
        fb_i420 img = {y, u, v, YS, CS};
        CHECK(fb_rgb24_to_i420(rgb, RS, W, H, &img) == FB_COLOUR_OK);
        int max_err = 0;
        for (int row = 0; row < H; row++)
            for (int x = 0; x < W; x++) {
                const uint8_t *p = rgb + row * RS + 3 * x;
                double ry, cb, cr;
                ref_yuv(p[0], p[1], p[2], &ry, &cb, &cr);
                int e = abs(y[row * YS + x] - (int)lround(ry));
                if (e > max_err) max_err = e;
            }
        for (int row = 0; row < H / 2; row++)
            for (int x = 0; x < W / 2; x++) {
                double r = 0, g = 0, b = 0;
                for (int k = 0; k < 4; k++) {
                    const uint8_t *p = rgb + (2 * row + k / 2) * RS + 3 * (2 * x + k % 2);
                    r += p[0] / 4.0;
                    g += p[1] / 4.0;
                    b += p[2] / 4.0;
                }
                double ry, cb, cr;
                ref_yuv(r, g, b, &ry, &cb, &cr);
                int eu = abs(u[row * CS + x] - (int)lround(cb));
                int ev = abs(v[row * CS + x] - (int)lround(cr));
                if (eu > max_err) max_err = eu;
                if (ev > max_err) max_err = ev;
            }
        CHECKF(max_err <= 1, "round %d: max error %d against the float formula", round, max_err);
    }
}

/* RGB -> I420 -> RGB on flat 2x2 blocks returns the colour within the 8-bit rounding error. */
static void test_round_trip(void) {
    enum { W = 64, H = 64 };
    static uint8_t rgb[W * H * 3], back[W * H * 3], y[W * H], u[W * H / 4], v[W * H / 4];
    for (int by = 0; by < H; by += 2)
        for (int bx = 0; bx < W; bx += 2) {
            uint8_t c[3] = {rnd8(), rnd8(), rnd8()};
            for (int k = 0; k < 4; k++) memcpy(rgb + ((by + k / 2) * W + bx + k % 2) * 3, c, 3);
        }
    fb_i420 img = {y, u, v, W, W / 2};
    CHECK(fb_rgb24_to_i420(rgb, 3 * W, W, H, &img) == FB_COLOUR_OK);
    CHECK(fb_i420_to_rgb24(&img, W, H, back, 3 * W) == FB_COLOUR_OK);
    int max_err = 0;
    for (size_t i = 0; i < sizeof rgb; i++) {
        int e = abs(rgb[i] - back[i]);
        if (e > max_err) max_err = e;
    }
    /* Limited range has fewer levels than full range: ~1.2 per step in Y, ~2 in chroma. */
    CHECKF(max_err <= 3, "round trip max error %d", max_err);
}

static void test_errors(void) {
    uint8_t rgb[12] = {0}, y[4], u[1], v[1];
    fb_i420 img = {y, u, v, 2, 1};
    CHECK(fb_rgb24_to_i420(rgb, 6, 3, 2, &img) == FB_COLOUR_ERR_SIZE);
    CHECK(fb_rgb24_to_i420(rgb, 6, 2, 1, &img) == FB_COLOUR_ERR_SIZE);
    CHECK(fb_rgb24_to_i420(rgb, 6, 0, 2, &img) == FB_COLOUR_ERR_SIZE);
    CHECK(fb_rgb24_to_i420(NULL, 6, 2, 2, &img) == FB_COLOUR_ERR_ARG);
    CHECK(fb_rgb24_to_i420(rgb, 5, 2, 2, &img) == FB_COLOUR_ERR_ARG);
    fb_i420 short_stride = {y, u, v, 1, 1};
    CHECK(fb_rgb24_to_i420(rgb, 6, 2, 2, &short_stride) == FB_COLOUR_ERR_ARG);
    CHECK(fb_rgb24_to_i420(rgb, 6, 2, 2, &img) == FB_COLOUR_OK);
    CHECK(fb_i420_to_rgb24(&img, 2, 3, rgb, 6) == FB_COLOUR_ERR_SIZE);
    CHECK(fb_i420_to_rgb24(NULL, 2, 2, rgb, 6) == FB_COLOUR_ERR_ARG);
    CHECK(strstr(fb_colour_status_str(FB_COLOUR_ERR_SIZE), "even") != NULL);
}

/* Prints the speed at 832x480 (no assertion: the machine is shared). */
static void report_speed(void) {
    enum { W = 832, H = 480 };
    uint8_t *rgb = malloc(W * H * 3), *y = malloc(W * H), *u = malloc(W * H / 4),
            *v = malloc(W * H / 4);
    if (!rgb || !y || !u || !v) return;
    for (int i = 0; i < W * H * 3; i++) rgb[i] = rnd8();
    fb_i420 img = {y, u, v, W, W / 2};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 50; i++) fb_rgb24_to_i420(rgb, 3 * W, W, H, &img);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = ((t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6) / 50;
    printf("rgb24 -> i420 at %dx%d: %.3f ms/frame\n", W, H, ms);
    free(rgb), free(y), free(u), free(v);
}

int main(void) {
    test_known_colours();
    test_random_against_reference();
    test_round_trip();
    test_errors();
    report_speed();
    return test_result("stream_colour");
}
