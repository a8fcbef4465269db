/* tests/cuda/test_shared_math.c - the CUDA backend's element maths, checked on the CPU.
 *
 * kernels/cuda/ computes every element through kernels/fb_math.h. This test rebuilds each op
 * from those same functions in plain loops (the way the CUDA kernels combine them: row
 * statistics in double, online softmax over keys, one RoPE pair at a time) and compares the
 * result with the CPU reference kernels of kernels.h. A GPU-less machine therefore still
 * verifies the arithmetic the GPU runs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/fb_math.h"
#include "kernels/kernels.h"

static int failures;

static void check(const char *what, const float *got, const float *want, size_t n, float tol) {
    double max_err = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]) / (1.0 + fabs((double)want[i]));
        if (e > max_err) max_err = e;
    }
    int ok = max_err <= tol;
    printf("%-28s max rel err %.3g %s\n", what, max_err, ok ? "ok" : "FAIL");
    if (!ok) failures++;
}

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return ((float)(*s >> 8) / 16777216.0f) * 4.0f - 2.0f;
}

/* Row statistics exactly as the CUDA kernels form them (double sums). */
static void stats(const float *x, int dim, float eps, float *mean, float *rstd) {
    double s = 0, v = 0;
    for (int i = 0; i < dim; i++) s += x[i];
    double m = s / dim;
    for (int i = 0; i < dim; i++) v += (x[i] - m) * (x[i] - m);
    *mean = (float)m;
    *rstd = (float)(1.0 / sqrt(v / dim + (double)eps));
}

int main(void) {
    unsigned seed = 12345;
    enum { ROWS = 7, DIM = 96, N = ROWS * DIM };
    float x[N], w[DIM], b[DIM], shift[DIM], scale[DIM], got[N], want[N];
    for (int i = 0; i < N; i++) x[i] = frand(&seed);
    for (int i = 0; i < DIM; i++) {
        w[i] = 1 + 0.1f * frand(&seed);
        b[i] = 0.1f * frand(&seed);
        shift[i] = 0.2f * frand(&seed);
        scale[i] = 0.2f * frand(&seed);
    }

    for (int i = 0; i < N; i++) got[i] = fb_math_silu(x[i]);
    fb_silu_ref(x, want, N);
    check("silu", got, want, N, 1e-6f);

    for (int i = 0; i < N; i++) got[i] = fb_math_gelu_tanh(x[i]);
    fb_gelu_tanh_ref(x, want, N);
    check("gelu_tanh", got, want, N, 1e-6f);

    for (int r = 0; r < ROWS; r++) {
        float m, rs;
        stats(x + r * DIM, DIM, 1e-6f, &m, &rs);
        for (int i = 0; i < DIM; i++)
            got[r * DIM + i] = fb_math_layernorm(x[r * DIM + i], m, rs, w[i], b[i]);
    }
    fb_layernorm_ref(x, want, ROWS, DIM, 1e-6f, w, b);
    check("layernorm (affine)", got, want, N, 1e-5f);

    for (int r = 0; r < ROWS; r++) {
        float m, rs;
        stats(x + r * DIM, DIM, 1e-6f, &m, &rs);
        for (int i = 0; i < DIM; i++)
            got[r * DIM + i] = fb_math_modulate(x[r * DIM + i], m, rs, shift[i], scale[i]);
    }
    fb_modulate_ref(x, want, ROWS, DIM, 1e-6f, shift, scale);
    check("modulate", got, want, N, 1e-5f);

    for (int r = 0; r < ROWS; r++) {
        double s = 0;
        for (int i = 0; i < DIM; i++) s += (double)x[r * DIM + i] * x[r * DIM + i];
        float rs = fb_math_rms_scale(s, DIM, 1e-6f);
        for (int i = 0; i < DIM; i++) got[r * DIM + i] = x[r * DIM + i] * rs * w[i];
    }
    fb_rmsnorm_ref(x, want, ROWS, DIM, 1e-6f, w);
    check("rmsnorm", got, want, N, 1e-5f);

    /* RoPE: L tokens x H heads x Dh, one pair at a time as rope_kernel does. */
    {
        enum { L = 5, H = 2, DH = 16 };
        fb_rope rope;
        if (fb_rope_init(&rope, DH, 32) != 0) { puts("rope init failed"); return 1; }
        int pos[L * 3];
        for (int t = 0; t < L; t++) { pos[3 * t] = t * 3 % 32; pos[3 * t + 1] = t; pos[3 * t + 2] = 31 - t; }
        float a[L * H * DH], ref[L * H * DH];
        for (int i = 0; i < L * H * DH; i++) a[i] = ref[i] = frand(&seed);
        int half = DH / 2;
        for (int tok = 0; tok < L; tok++)
            for (int h = 0; h < H; h++)
                for (int j = 0; j < half; j++) {
                    int axis = j < rope.pairs[0] ? 0 : (j < rope.pairs[0] + rope.pairs[1] ? 1 : 2);
                    const double *e = rope.cs + ((size_t)pos[tok * 3 + axis] * half + j) * 2;
                    float *p = a + ((size_t)tok * H + h) * DH + 2 * j;
                    fb_math_rope_pair(&p[0], &p[1], e[0], e[1]);
                }
        fb_rope_apply_ref(&rope, ref, L, H, pos);
        check("rope", a, ref, L * H * DH, 1e-6f);
        fb_rope_free(&rope);
    }

    /* Attention with the online softmax, key by key, as attention_kernel folds them. */
    {
        enum { LQ = 4, LK = 37, H = 3, DH = 24 };
        static float q[LQ * H * DH], k[LK * H * DH], v[LK * H * DH], o[LQ * H * DH], r[LQ * H * DH];
        for (int i = 0; i < LQ * H * DH; i++) q[i] = frand(&seed);
        for (int i = 0; i < LK * H * DH; i++) { k[i] = frand(&seed); v[i] = frand(&seed); }
        float sc = 1.0f / sqrtf((float)DH);
        for (int i = 0; i < LQ; i++)
            for (int h = 0; h < H; h++) {
                float mx = -INFINITY, sum = 0, acc[DH] = {0};
                for (int j = 0; j < LK; j++) {
                    float dot = 0, p;
                    for (int d = 0; d < DH; d++) dot += q[(i * H + h) * DH + d] * k[(j * H + h) * DH + d];
                    float rescale = fb_math_online_softmax(dot * sc, &mx, &sum, &p);
                    for (int d = 0; d < DH; d++) acc[d] = acc[d] * rescale + p * v[(j * H + h) * DH + d];
                }
                for (int d = 0; d < DH; d++) o[(i * H + h) * DH + d] = acc[d] / sum;
            }
        fb_attention_ref(q, k, v, r, LQ, LK, H, DH, sc);
        check("attention (online softmax)", o, r, LQ * H * DH, 1e-5f);
    }

    printf("%s\n", failures ? "FAILED" : "all shared maths agree with the CPU references");
    return failures ? 1 : 0;
}
