/* Counter RNG: bit-exact values (computed independently with Python integers and doubles),
 * slicing, independence of (seed, chunk, draw) and rough normality. */
#include <stdint.h>

#include "engine/rng.h"
#include "tests/engine/test_util.h"

static int same_bits(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

int main(void)
{
    /* splitmix64 of 0 is the well-known first output of splitmix64 seeded with 0. */
    CHECK(fb_splitmix64(0) == 0xe220a8397b1dcdafull);
    CHECK(fb_splitmix64(1) == 0x910a2dec89025cc1ull);
    CHECK(fb_splitmix64(42) == 0xbdd732262feb6e95ull);
    CHECK(fb_rng_key(0, 0, 0) == 0);
    CHECK(fb_rng_key(42, 0, 0) == 0x5ff79a1f54f6a33aull);
    CHECK(fb_rng_key(42, 7, 3) == 0x44dfd29f9485716dull);
    CHECK(fb_rng_key(UINT64_MAX, 123456789, 255) == 0x50517b2e47be644dull);

    static const struct {
        uint64_t seed, chunk;
        unsigned draw;
        int n;
        float v[5];
    } cases[] = {
        {0, 0, 0, 5, {0.0793660432100296f, 0.4917898178100586f, 0.9466403722763062f,
                      -0.4901132583618164f, 0.6906279921531677f}},
        {42, 0, 0, 4, {-0.5403767824172974f, 0.39069119095802307f, -0.052801232784986496f,
                       -0.44898155331611633f}},
        {42, 7, 3, 3, {0.8276787400245667f, 0.7293919324874878f, 0.22691231966018677f}},
        {UINT64_MAX, 123456789, 255, 2, {-0.41006287932395935f, 0.2975630462169647f}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        float out[5];
        fb_rng_normal(cases[c].seed, cases[c].chunk, cases[c].draw, out, (size_t)cases[c].n);
        for (int i = 0; i < cases[c].n; i++)
            CHECK_MSG(same_bits(out[i], cases[c].v[i]), "case %zu element %d: %.9g vs %.9g", c,
                      i, (double)out[i], (double)cases[c].v[i]);
    }

    /* Any slice equals the same elements of the whole tensor, odd starts included. */
    enum { N = 1001 };
    static float all[N], part[N];
    fb_rng_normal(7, 3, 1, all, N);
    uint64_t key = fb_rng_key(7, 3, 1);
    for (size_t first = 0; first < 9; first++) {
        for (size_t len = 0; len + first <= 40; len += 3) {
            fb_rng_normal_range(key, first, part, len);
            CHECK(memcmp(part, all + first, len * sizeof(float)) == 0);
        }
    }
    fb_rng_normal_range(key, N - 1, part, 1);   /* odd last element: cosine half only */
    CHECK(same_bits(part[0], all[N - 1]));

    /* Different seed / chunk / draw give different tensors. */
    float a[16], b[16];
    fb_rng_normal(7, 3, 1, a, 16);
    fb_rng_normal(7, 3, 2, b, 16);
    CHECK(memcmp(a, b, sizeof a) != 0);
    fb_rng_normal(7, 4, 1, b, 16);
    CHECK(memcmp(a, b, sizeof a) != 0);
    fb_rng_normal(8, 3, 1, b, 16);
    CHECK(memcmp(a, b, sizeof a) != 0);

    /* Moments of 200k draws: mean ~ 0, variance ~ 1, no NaN or infinity. */
    enum { M = 200000 };
    static float big[M];
    fb_rng_normal(1, 2, 3, big, M);
    double s1 = 0, s2 = 0;
    int finite = 1;
    for (int i = 0; i < M; i++) {
        s1 += big[i];
        s2 += (double)big[i] * big[i];
        finite &= isfinite(big[i]) != 0;
    }
    CHECK(finite);
    CHECK_NEAR(s1 / M, 0.0, 0.01);
    CHECK_NEAR(s2 / M, 1.0, 0.02);
    TEST_EXIT();
}
