/* tests/stream/test_testpattern.c - the diagnostic pattern: deterministic, counter readable. */
#include "stream/testpattern.h"
#include "tests/stream/media_test.h"

static uint32_t rng = 777;
static int rnd(int n) {
    rng = rng * 1664525u + 1013904223u;
    return (int)((rng >> 8) % (uint32_t)n);
}

static void test_counter_round_trip(void) {
    static const int sizes[][2] = {{32, 32}, {64, 48}, {256, 256}, {832, 480}, {1920, 1080}};
    static const uint32_t frames[] = {0, 1, 2, 255, 256, 12345, 65535, 65536, 70000, 0xFFFFFFFFu};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int w = sizes[s][0], h = sizes[s][1];
        uint8_t *rgb = malloc((size_t)w * h * 3);
        if (!rgb) return;
        for (size_t f = 0; f < sizeof frames / sizeof frames[0]; f++) {
            CHECK(fb_testpattern_draw(rgb, w, h, frames[f], 30) == FB_TESTPATTERN_OK);
            int32_t got = fb_testpattern_read_counter(rgb, w, h);
            CHECKF(got == (int32_t)(frames[f] & 0xFFFF), "%dx%d frame %u: read %d", w, h,
                   frames[f], got);
        }
        free(rgb);
    }
}

/* Same input, same bytes; another frame, other bytes; every byte written. */
static void test_deterministic(void) {
    enum { W = 128, H = 96 };
    static uint8_t a[W * H * 3], b[W * H * 3];
    memset(a, 0x11, sizeof a);
    memset(b, 0xEE, sizeof b);
    CHECK(fb_testpattern_draw(a, W, H, 42, 25) == FB_TESTPATTERN_OK);
    CHECK(fb_testpattern_draw(b, W, H, 42, 25) == FB_TESTPATTERN_OK);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(fb_testpattern_draw(b, W, H, 43, 25) == FB_TESTPATTERN_OK);
    CHECK(memcmp(a, b, sizeof a) != 0);
    /* Motion outside the counter too: the bars and the ramp move. */
    int cell = fb_testpattern_cell_size(W, H);
    CHECK(memcmp(a + (size_t)(2 * cell + 2) * W * 3, b + (size_t)(2 * cell + 2) * W * 3,
                 (size_t)W * 3) != 0);
    CHECK(memcmp(a + (size_t)(H - 1) * W * 3, b + (size_t)(H - 1) * W * 3, (size_t)W * 3) != 0);
}

/* The block code survives noise of +-40 on every byte, as from lossy compression. */
static void test_counter_under_noise(void) {
    enum { W = 256, H = 256 };
    static uint8_t rgb[W * H * 3];
    for (uint32_t f = 0; f < 300; f += 7) {
        fb_testpattern_draw(rgb, W, H, f, 30);
        for (size_t i = 0; i < sizeof rgb; i++) {
            int v = rgb[i] + rnd(81) - 40;
            rgb[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
        CHECKF(fb_testpattern_read_counter(rgb, W, H) == (int32_t)f, "frame %u under noise", f);
    }
}

/* Pictures that are not the pattern read as -1. */
static void test_no_counter(void) {
    enum { W = 256, H = 128 };
    static uint8_t rgb[W * H * 3];
    memset(rgb, 128, sizeof rgb);
    CHECK(fb_testpattern_read_counter(rgb, W, H) == -1);
    memset(rgb, 0, sizeof rgb);
    CHECK(fb_testpattern_read_counter(rgb, W, H) == -1);
    for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (uint8_t)rnd(256);
    CHECK(fb_testpattern_read_counter(rgb, W, H) == -1);
    CHECK(fb_testpattern_read_counter(NULL, W, H) == -1);
    CHECK(fb_testpattern_read_counter(rgb, W - 1, H) == -1);
}

static void test_errors(void) {
    static uint8_t rgb[64 * 64 * 3];
    CHECK(fb_testpattern_draw(rgb, 63, 64, 0, 30) == FB_TESTPATTERN_ERR_SIZE);
    CHECK(fb_testpattern_draw(rgb, 64, 30, 0, 30) == FB_TESTPATTERN_ERR_SIZE);
    CHECK(fb_testpattern_draw(rgb, 10000, 64, 0, 30) == FB_TESTPATTERN_ERR_SIZE);
    CHECK(fb_testpattern_draw(NULL, 64, 64, 0, 30) == FB_TESTPATTERN_ERR_ARG);
    CHECK(fb_testpattern_draw(rgb, 64, 64, 0, 0) == FB_TESTPATTERN_ERR_ARG);
    CHECK(fb_testpattern_draw(rgb, 64, 64, 0, 1001) == FB_TESTPATTERN_ERR_ARG);
    CHECK(fb_testpattern_draw(rgb, 64, 64, 0xFFFFFFFFu, 1) == FB_TESTPATTERN_OK);
    CHECK(strstr(fb_testpattern_status_str(FB_TESTPATTERN_ERR_SIZE), "even") != NULL);
}

int main(void) {
    test_counter_round_trip();
    test_deterministic();
    test_counter_under_noise();
    test_no_counter();
    test_errors();
    return test_result("stream_testpattern");
}
