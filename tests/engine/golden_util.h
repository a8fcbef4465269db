/* tests/engine/golden_util.h - reading golden tensors and comparing arrays for the engine
 * tests (header-only: each test is one executable). */
#ifndef FLIPBOOK_TESTS_ENGINE_GOLDEN_UTIL_H
#define FLIPBOOK_TESTS_ENGINE_GOLDEN_UTIL_H

#include <stdint.h>

#include "engine/safetensors.h"
#include "tests/engine/test_util.h"

/* A float32 copy of a golden tensor (any float dtype), or NULL with a failure counted. */
static float *g_floats(const fb_safetensors *st, const char *name, int64_t expect_numel)
{
    const fb_st_tensor *t = fb_st_find(st, name);
    if (!t) {
        fprintf(stderr, "golden tensor %s is missing\n", name);
        t_failures++;
        return NULL;
    }
    if (expect_numel >= 0 && t->numel != expect_numel) {
        fprintf(stderr, "golden tensor %s has %lld elements, expected %lld\n", name,
                (long long)t->numel, (long long)expect_numel);
        t_failures++;
        return NULL;
    }
    float *d = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *d);
    if (!d || fb_st_to_f32(t, d) != 0) {
        fprintf(stderr, "golden tensor %s is not a float tensor\n", name);
        free(d);
        t_failures++;
        return NULL;
    }
    return d;
}

/* An int64 golden tensor's values (count in *n), or NULL. */
static int64_t *g_ints(const fb_safetensors *st, const char *name, int *n)
{
    const fb_st_tensor *t = fb_st_find(st, name);
    *n = 0;
    if (!t || t->dtype != FB_DT_I64) {
        fprintf(stderr, "golden tensor %s is missing or not I64\n", name);
        t_failures++;
        return NULL;
    }
    int64_t *d = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *d);
    if (!d) {
        t_failures++;
        return NULL;
    }
    memcpy(d, t->data, (size_t)t->numel * sizeof *d);
    *n = (int)t->numel;
    return d;
}

/* Compares n floats: |a - b| <= atol + rtol * |b|. Prints the worst element; returns the
 * max abs difference (counting a failure when over tolerance). */
static double g_compare(const char *what, const float *got, const float *want, size_t n,
                        double atol, double rtol)
{
    double worst = 0, worst_excess = -1;
    size_t wi = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double lim = atol + rtol * fabs((double)want[i]);
        if (!(d <= lim))
            bad = 1;
        if (d > worst || d != d)
            worst = d;
        if (d - lim > worst_excess || d != d) {
            worst_excess = d - lim;
            wi = i;
        }
    }
    if (bad) {
        fprintf(stderr, "%s: max |diff| %.3g exceeds tolerance (element %zu: got %.9g, want "
                "%.9g)\n", what, worst, wi, (double)got[wi], (double)want[wi]);
        t_failures++;
    }
    return worst;
}

#endif
