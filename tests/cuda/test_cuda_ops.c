/* tests/cuda/test_cuda_ops.c - each CUDA op against the CPU reference (needs a GPU).
 *
 * Skips (exit 77) when no CUDA device exists, printing the probe's reason. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda/kernels_cuda.h"
#include "kernels/kernels.h"

static int failures;

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return ((float)(*s >> 8) / 16777216.0f) * 2.0f - 1.0f;
}

static void compare(const char *what, const float *got, const float *want, size_t n, float tol) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]) / (1.0 + fabs((double)want[i]));
        if (e > m) m = e;
    }
    printf("%-12s max rel err %.3g %s\n", what, m, m <= tol ? "ok" : "FAIL");
    if (m > tol) failures++;
}

static float *dev_copy(fb_cuda_ctx *c, const float *h, size_t n) {
    float *d = fb_cuda_alloc(c, n * sizeof(float));
    if (d) fb_cuda_upload(c, d, h, n * sizeof(float));
    return d;
}

int main(void) {
    char desc[256];
    int n_dev = fb_cuda_probe(desc, sizeof desc);
    printf("%s\n", desc);
    if (n_dev == 0) return 77;
    fb_cuda_ctx *c;
    char err[256];
    if (fb_cuda_ctx_init(&c, 0, err, sizeof err) != 0) { printf("%s\n", err); return 1; }
    unsigned s = 7;
    enum { M = 33, N = 70, K = 48 };
    float *x = malloc(sizeof(float) * M * K), *W = malloc(sizeof(float) * N * K),
          *b = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * M * N),
          *r = malloc(sizeof(float) * M * N);
    for (int i = 0; i < M * K; i++) x[i] = frand(&s);
    for (int i = 0; i < N * K; i++) W[i] = frand(&s);
    for (int i = 0; i < N; i++) b[i] = frand(&s);
    float *dx = dev_copy(c, x, M * K), *dW = dev_copy(c, W, N * K), *db = dev_copy(c, b, N);
    float *dy = fb_cuda_alloc(c, sizeof(float) * M * N);
    fb_cuda_linear(c, dx, dW, db, dy, M, N, K);
    fb_cuda_download(c, y, dy, sizeof(float) * M * N);
    fb_linear_ref(x, W, b, r, M, N, K);
    compare("linear", y, r, M * N, 1e-4f);

    /* row ops over x viewed as [M, K] */
    float *dz = fb_cuda_alloc(c, sizeof(float) * M * K);
    float *z = malloc(sizeof(float) * M * K), *zr = malloc(sizeof(float) * M * K);
    fb_cuda_rmsnorm(c, dx, dz, M, K, 1e-6f, NULL);
    fb_cuda_download(c, z, dz, sizeof(float) * M * K);
    fb_rmsnorm_ref(x, zr, M, K, 1e-6f, NULL);
    compare("rmsnorm", z, zr, M * K, 1e-5f);
    fb_cuda_layernorm(c, dx, dz, M, K, 1e-6f, NULL, NULL);
    fb_cuda_download(c, z, dz, sizeof(float) * M * K);
    fb_layernorm_ref(x, zr, M, K, 1e-6f, NULL, NULL);
    compare("layernorm", z, zr, M * K, 1e-5f);
    fb_cuda_gelu_tanh(c, dx, dz, (size_t)M * K);
    fb_cuda_download(c, z, dz, sizeof(float) * M * K);
    fb_gelu_tanh_ref(x, zr, (size_t)M * K);
    compare("gelu_tanh", z, zr, M * K, 1e-5f);

    /* attention: q = x as [M, 2, 24], k = v = x as [M, 2, 24] */
    fb_cuda_attention(c, dx, dx, dx, dz, M, M, 2, 24, 0.2f);
    fb_cuda_download(c, z, dz, sizeof(float) * M * K);
    fb_attention_ref(x, x, x, zr, M, M, 2, 24, 0.2f);
    compare("attention", z, zr, M * K, 1e-4f);

    if (fb_cuda_sync(c, err, sizeof err) != 0) { printf("%s\n", err); failures++; }
    fb_cuda_free(c, dx); fb_cuda_free(c, dW); fb_cuda_free(c, db); fb_cuda_free(c, dy);
    fb_cuda_free(c, dz);
    fb_cuda_ctx_free(c);
    free(x); free(W); free(b); free(y); free(r); free(z); free(zr);
    return failures ? 1 : 0;
}
