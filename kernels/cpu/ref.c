/* kernels/cpu/ref.c - plain-C reference versions of every op (and the time sinusoid).
 *
 * Written for obviousness, not speed: one thread, the textbook formula, double accumulators.
 * tests/kernels checks each fast kernel against these on random shapes.
 */
#include "kernels/cpu/cpu_internal.h"

#include <math.h>
#include <string.h>

void fb_sgemm_ref(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int p = 0; p < K; p++) {
                float a = trans_a ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p];
                float b = trans_b ? B[(size_t)j * ldb + p] : B[(size_t)p * ldb + j];
                s += (double)a * b;
            }
            float *c = &C[(size_t)i * ldc + j];
            *c = (float)(alpha * s + (beta == 0.0f ? 0.0 : (double)beta * *c));
        }
}

void fb_linear_ref(const float *x, const float *W, const float *b, float *y, int M, int N,
                   int K)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = b ? b[j] : 0.0;
            for (int p = 0; p < K; p++)
                s += (double)x[(size_t)i * K + p] * W[(size_t)j * K + p];
            y[(size_t)i * N + j] = (float)s;
        }
}

void fb_layernorm_ref(const float *x, float *y, int rows, int dim, float eps, const float *w,
                      const float *b)
{
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim;
        float *yr = y + (size_t)r * dim;
        double mean = 0.0, var = 0.0;
        for (int i = 0; i < dim; i++)
            mean += xr[i];
        mean /= dim;
        for (int i = 0; i < dim; i++)
            var += (xr[i] - mean) * (xr[i] - mean);
        var /= dim;
        double rstd = 1.0 / sqrt(var + eps);
        for (int i = 0; i < dim; i++) {
            double n = (xr[i] - mean) * rstd;
            yr[i] = (float)(w ? n * w[i] + b[i] : n);
        }
    }
}

void fb_rmsnorm_ref(const float *x, float *y, int rows, int dim, float eps, const float *w)
{
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim;
        float *yr = y + (size_t)r * dim;
        double ms = 0.0;
        for (int i = 0; i < dim; i++)
            ms += (double)xr[i] * xr[i];
        ms /= dim;
        double rs = 1.0 / sqrt(ms + eps);
        for (int i = 0; i < dim; i++)
            yr[i] = (float)(xr[i] * rs * (w ? w[i] : 1.0));
    }
}

void fb_modulate_ref(const float *x, float *y, int rows, int dim, float eps,
                     const float *shift, const float *scale)
{
    for (int r = 0; r < rows; r++) {
        fb_layernorm_ref(x + (size_t)r * dim, y + (size_t)r * dim, 1, dim, eps, NULL, NULL);
        float *yr = y + (size_t)r * dim;
        for (int i = 0; i < dim; i++)
            yr[i] = yr[i] * (1.0f + scale[i]) + shift[i];
    }
}

void fb_gated_add_ref(float *x, const float *y, const float *gate, int rows, int dim)
{
    for (size_t i = 0; i < (size_t)rows * dim; i++)
        x[i] += y[i] * (gate ? gate[i % (size_t)dim] : 1.0f);
}

void fb_silu_ref(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = (float)(x[i] / (1.0 + exp(-(double)x[i])));
}

void fb_gelu_tanh_ref(const float *x, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        y[i] = (float)(0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v))));
    }
}

void fb_softmax_ref(float *x, int rows, int n)
{
    for (int r = 0; r < rows; r++) {
        float *xr = x + (size_t)r * n;
        double m = xr[0], s = 0.0;
        for (int i = 1; i < n; i++)
            m = xr[i] > m ? xr[i] : m;
        for (int i = 0; i < n; i++)
            s += exp(xr[i] - m);
        for (int i = 0; i < n; i++)
            xr[i] = (float)(exp(xr[i] - m) / s);
    }
}

void fb_rope_apply_ref(const fb_rope *r, float *x, int L, int n_heads, const int *pos)
{
    int half = r->head_dim / 2;
    for (int l = 0; l < L; l++)
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)l * n_heads + h) * r->head_dim;
            for (int j = 0; j < half; j++) {
                int axis = j < r->pairs[0] ? 0 : (j < r->pairs[0] + r->pairs[1] ? 1 : 2);
                int p = pos[3 * l + axis];
                FB_KASSERT(p >= 0 && p < r->n_pos);
                double c = r->cs[((size_t)p * half + j) * 2];
                double s = r->cs[((size_t)p * half + j) * 2 + 1];
                double a = v[2 * j], b = v[2 * j + 1];
                v[2 * j] = (float)(a * c - b * s);
                v[2 * j + 1] = (float)(a * s + b * c);
            }
        }
}

void fb_attention_ref(const float *q, const float *kk, const float *v, float *out, int Lq,
                      int Lk, int H, int Dh, float scale)
{
    size_t ld = (size_t)H * Dh;
    double *w = malloc((size_t)Lk * sizeof(double));
    FB_KASSERT(w != NULL);
    for (int h = 0; h < H; h++)
        for (int i = 0; i < Lq; i++) {
            const float *qi = q + i * ld + (size_t)h * Dh;
            double m = -HUGE_VAL, s = 0.0;
            for (int jx = 0; jx < Lk; jx++) {
                const float *kj = kk + jx * ld + (size_t)h * Dh;
                double d = 0.0;
                for (int c = 0; c < Dh; c++)
                    d += (double)qi[c] * kj[c];
                w[jx] = d * scale;
                m = w[jx] > m ? w[jx] : m;
            }
            for (int jx = 0; jx < Lk; jx++) {
                w[jx] = exp(w[jx] - m);
                s += w[jx];
            }
            float *o = out + i * ld + (size_t)h * Dh;
            for (int c = 0; c < Dh; c++) {
                double acc = 0.0;
                for (int jx = 0; jx < Lk; jx++)
                    acc += w[jx] * v[jx * ld + (size_t)h * Dh + c];
                o[c] = (float)(acc / s);
            }
        }
    free(w);
}

void fb_time_sinusoid(double t, int dim, float *out)
{
    int half = dim / 2;
    for (int j = 0; j < half; j++) {
        /* upstream: pow(10000, -arange(half) / half) in float64, outer with t */
        double f = pow(10000.0, -(double)j / (double)half);
        double a = t * f;
        out[j] = (float)cos(a);
        out[half + j] = (float)sin(a);
    }
}
