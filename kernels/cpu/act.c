/* kernels/cpu/act.c - SiLU, tanh-GELU and softmax.
 *
 * GELU runs on the FFN hidden layer (tokens x ffn_dim, the largest elementwise tensor of the
 * model), so it computes tanh from the branch-free fb__exp_fast, which the compiler
 * vectorises; libm's tanhf would be a scalar call per element. SiLU and softmax are small or
 * dominated by other costs and use libm's expf.
 */
#include "kernels/cpu/cpu_internal.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const float *x;
    float *y;
    int n;   /* softmax columns */
    float *xm;
} act_job;

static void silu_range(void *p, size_t b, size_t e)
{
    const act_job *j = p;
    for (size_t i = b; i < e; i++) {
        float v = j->x[i];
        j->y[i] = v / (1.0f + expf(-v));
    }
}

void fb_silu(fb_kctx *k, const float *x, float *y, size_t n)
{
    act_job j = {.x = x, .y = y};
    fb__parallel_range(k, n, 32768, silu_range, &j);
}

FB_SIMD static void gelu_range(void *p, size_t b, size_t e)
{
    const act_job *j = p;
    const float *restrict x = j->x;
    float *restrict y = j->y;
    const float c = 0.7978845608028654f;   /* sqrt(2/pi) */
    if (x == y) {
        /* restrict does not hold in place; the same loop without it */
        float *xy = j->y;
        for (size_t i = b; i < e; i++) {
            float v = xy[i];
            float u = c * (v + 0.044715f * v * v * v);
            /* tanh(u) = 1 - 2 / (e^{2u} + 1); clamp keeps e^{2u} finite (tanh is +-1 there) */
            float a = 2.0f * u;
            a = a < -80.0f ? -80.0f : a;
            a = a > 80.0f ? 80.0f : a;
            float t = 1.0f - 2.0f / (fb__exp_fast(a) + 1.0f);
            xy[i] = 0.5f * v * (1.0f + t);
        }
        return;
    }
    for (size_t i = b; i < e; i++) {
        float v = x[i];
        float u = c * (v + 0.044715f * v * v * v);
        /* two unconditional comparisons, not fminf/fmaxf or a nested ?: (NaN rules and a
         * conditionally evaluated compare keep those loops scalar) */
        float a = 2.0f * u;
        a = a < -80.0f ? -80.0f : a;
        a = a > 80.0f ? 80.0f : a;
        float t = 1.0f - 2.0f / (fb__exp_fast(a) + 1.0f);
        y[i] = 0.5f * v * (1.0f + t);
    }
}

void fb_gelu_tanh(fb_kctx *k, const float *x, float *y, size_t n)
{
    act_job j = {.x = x, .y = y};
    fb__parallel_range(k, n, 32768, gelu_range, &j);
}

static void softmax_rows(void *p, size_t r0, size_t r1)
{
    const act_job *j = p;
    int n = j->n;
    for (size_t r = r0; r < r1; r++) {
        float *x = j->xm + r * (size_t)n;
        float m = x[0];
        for (int i = 1; i < n; i++)
            m = x[i] > m ? x[i] : m;
        double s = 0.0;
        for (int i = 0; i < n; i++) {
            x[i] = expf(x[i] - m);
            s += x[i];
        }
        float inv = (float)(1.0 / s);
        for (int i = 0; i < n; i++)
            x[i] *= inv;
    }
}

void fb_softmax(fb_kctx *k, float *x, int rows, int n)
{
    FB_KASSERT(rows >= 0 && n > 0);
    act_job j = {.xm = x, .n = n};
    size_t g = 16384 / (size_t)n;
    fb__parallel_range(k, (size_t)rows, g ? g : 1, softmax_rows, &j);
}
