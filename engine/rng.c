/* engine/rng.c - counter-based Gaussian noise (see rng.h). */
#include "engine/rng.h"

#include <math.h>

uint64_t fb_splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t fb_rng_key(uint64_t seed, uint64_t chunk, unsigned draw)
{
    return fb_splitmix64(seed) ^ fb_splitmix64((chunk << 8) | (uint64_t)(draw & 0xFFu));
}

/* Box-Muller on counter j: both outputs of the pair, computed in double. */
static void pair(uint64_t key, uint64_t j, double *c, double *s)
{
    const double two_pi = 6.283185307179586476925286766559;
    uint64_t r = fb_splitmix64(key + j);
    double u1 = (double)((r >> 40) + 1) / 16777216.0;          /* (0, 1] */
    double u2 = (double)((r >> 16) & 0xFFFFFFu) / 16777216.0;  /* [0, 1) */
    double rad = sqrt(-2.0 * log(u1));
    *c = rad * cos(two_pi * u2);
    *s = rad * sin(two_pi * u2);
}

void fb_rng_normal_range(uint64_t key, size_t first, float *out, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t e = first + i;
        double c, s;
        pair(key, (uint64_t)(e / 2), &c, &s);
        if (e % 2 == 0) {
            out[i++] = (float)c;
            if (i < n)
                out[i++] = (float)s;
        } else {
            out[i++] = (float)s;
        }
    }
}

void fb_rng_normal(uint64_t seed, uint64_t chunk, unsigned draw, float *out, size_t n)
{
    fb_rng_normal_range(fb_rng_key(seed, chunk, draw), 0, out, n);
}
