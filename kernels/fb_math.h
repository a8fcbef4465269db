/* kernels/fb_math.h - scalar maths shared by the CPU and CUDA backends.
 *
 * The CUDA kernels in kernels/cuda/ compute every element through these functions, and
 * tests/kernels/test_shared_math.c checks them against the CPU `*_ref` kernels of kernels.h,
 * so the arithmetic a GPU runs is exercised on machines that have no GPU. Only the data
 * movement (grids, shared memory, reductions across threads) differs between backends.
 *
 * Header-only, no state: safe from any thread.
 */
#ifndef FLIPBOOK_KERNELS_FB_MATH_H
#define FLIPBOOK_KERNELS_FB_MATH_H

#include <math.h>

#ifdef __CUDACC__
#define FB_HD __host__ __device__ __forceinline__
#else
#define FB_HD static inline
#endif

/* y = x * sigmoid(x) */
FB_HD float fb_math_silu(float x) { return x / (1.0f + expf(-x)); }

/* tanh-approximated GELU (Wan's FFN and text embedding, T5's gated FFN) */
FB_HD float fb_math_gelu_tanh(float x) {
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

/* LayerNorm of one value given the row's mean and 1/sqrt(var + eps), with optional affine. */
FB_HD float fb_math_layernorm(float x, float mean, float rstd, float w, float b) {
    return (x - mean) * rstd * w + b;
}

/* Wan's modulation: LN(x) * (1 + scale) + shift. */
FB_HD float fb_math_modulate(float x, float mean, float rstd, float shift, float scale) {
    return (x - mean) * rstd * (1.0f + scale) + shift;
}

/* 1/sqrt(mean + eps) from a row's sum of squares (double accumulation on both backends). */
FB_HD float fb_math_rms_scale(double sum_sq, int dim, float eps) {
    return (float)(1.0 / sqrt(sum_sq / (double)dim + (double)eps));
}

/* One complex pair (re, im) rotated by an angle given as (cos, sin) in double; the result is
 * rounded to float as the upstream complex128 multiply is. */
FB_HD void fb_math_rope_pair(float *re, float *im, double c, double s) {
    double a = (double)*re, b = (double)*im;
    *re = (float)(a * c - b * s);
    *im = (float)(a * s + b * c);
}

/* Online softmax: folds one score into a running (max, sum) and returns the factor by which
 * the running accumulator must be rescaled; *p receives exp(score - new max). */
FB_HD float fb_math_online_softmax(float score, float *run_max, float *run_sum, float *p) {
    float m_new = score > *run_max ? score : *run_max;
    float rescale = expf(*run_max - m_new);
    *p = expf(score - m_new);
    *run_sum = *run_sum * rescale + *p;
    *run_max = m_new;
    return rescale;
}

#endif
