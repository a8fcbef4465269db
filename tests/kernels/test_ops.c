/* tests/kernels/test_ops.c - every fast kernel against its plain-C reference.
 *
 * One table row per case: the op, its shape (odd sizes included, and sizes large enough to be
 * split over threads), and the error bound. Each case fills random inputs, runs the fast op
 * in a context of 1 and of 3 threads and the _ref op, and prints max abs / max rel error.
 * Exit status 1 when any case exceeds its bound. Then fb_linear's fixed summation order: each
 * of its kernels against fb_linear_fma_ref, bit for bit.
 * Usage: test_ops [name-filter]
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"
#include "kernels/kernels.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static float frand(void)   /* uniform in [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 16777216.0) * 2.0 - 1.0);
}

static float *rnd(size_t n, float scale)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = frand() * scale;
    return p;
}

static float *dup(const float *a, size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    memcpy(p, a, n * sizeof(float));
    return p;
}

typedef struct {
    double abs, rel;
} err2;

/* error of got vs ref: max |d| and max |d| / max(|ref|, floor) */
static err2 compare(const float *got, const float *ref, size_t n)
{
    err2 e = {0, 0};
    double peak = 0;
    for (size_t i = 0; i < n; i++)
        peak = fmax(peak, fabs(ref[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d == d))
            d = INFINITY;
        e.abs = fmax(e.abs, d);
        /* relative to the tensor's scale, so near-zero entries do not dominate */
        e.rel = fmax(e.rel, d / fmax(peak, 1e-30));
    }
    return e;
}

typedef struct test_case test_case;
typedef err2 (*case_fn)(const test_case *tc, fb_kctx *k);

struct test_case {
    const char *name;
    case_fn fn;
    int a, b, c, d, e;   /* shape parameters, meaning per op */
    double tol;          /* bound on the scale-relative error */
};

/* a = M, b = N, c = K, d = trans_a | trans_b << 1, e = extra padding of the leading dims */
static err2 case_sgemm(const test_case *tc, fb_kctx *k)
{
    int M = tc->a, N = tc->b, K = tc->c, ta = tc->d & 1, tb = (tc->d >> 1) & 1, pad = tc->e;
    int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb;
    size_t nc = (size_t)M * ldc;
    float *A = rnd(na, 1), *B = rnd(nb, 1), *C0 = rnd(nc, 1);
    float *C1 = dup(C0, nc), *C2 = dup(C0, nc);
    float alpha = 0.75f, beta = pad ? 0.5f : 0.0f;
    fb_sgemm(k, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C1, ldc);
    fb_sgemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C2, ldc);
    err2 e = compare(C1, C2, nc);
    free(A), free(B), free(C0), free(C1), free(C2);
    return e;
}

/* a = M, b = N, c = K, d = with bias */
static err2 case_linear(const test_case *tc, fb_kctx *k)
{
    int M = tc->a, N = tc->b, K = tc->c;
    float *x = rnd((size_t)M * K, 1), *W = rnd((size_t)N * K, 1), *bias = rnd((size_t)N, 1);
    float *y1 = rnd((size_t)M * N, 1), *y2 = rnd((size_t)M * N, 1);
    fb_linear(k, x, W, tc->d ? bias : NULL, y1, M, N, K);
    fb_linear_ref(x, W, tc->d ? bias : NULL, y2, M, N, K);
    err2 e = compare(y1, y2, (size_t)M * N);
    free(x), free(W), free(bias), free(y1), free(y2);
    return e;
}

/* a = rows, b = dim, c = op (0 LN, 1 LN affine, 2 RMS, 3 RMS no weight, 4 modulate),
 * d = in place, e = offset added to inputs (checks the two-pass statistics) */
static err2 case_norm(const test_case *tc, fb_kctx *k)
{
    int R = tc->a, D = tc->b, op = tc->c, inplace = tc->d;
    size_t n = (size_t)R * D;
    float *x = rnd(n, 2);
    for (size_t i = 0; i < n; i++)
        x[i] += (float)tc->e;
    float *w = rnd((size_t)D, 1), *b = rnd((size_t)D, 1);
    float *y1 = inplace ? dup(x, n) : malloc(n * sizeof(float)), *y2 = malloc(n * sizeof(float));
    const float *src = inplace ? y1 : x;
    switch (op) {
    case 0: fb_layernorm(k, src, y1, R, D, 1e-6f, NULL, NULL);
            fb_layernorm_ref(x, y2, R, D, 1e-6f, NULL, NULL); break;
    case 1: fb_layernorm(k, src, y1, R, D, 1e-6f, w, b);
            fb_layernorm_ref(x, y2, R, D, 1e-6f, w, b); break;
    case 2: fb_rmsnorm(k, src, y1, R, D, 1e-6f, w);
            fb_rmsnorm_ref(x, y2, R, D, 1e-6f, w); break;
    case 3: fb_rmsnorm(k, src, y1, R, D, 1e-6f, NULL);
            fb_rmsnorm_ref(x, y2, R, D, 1e-6f, NULL); break;
    default: fb_modulate(k, src, y1, R, D, 1e-6f, b, w);
             fb_modulate_ref(x, y2, R, D, 1e-6f, b, w); break;
    }
    err2 e = compare(y1, y2, n);
    free(x), free(w), free(b), free(y1), free(y2);
    return e;
}

/* a = rows, b = dim, c = with gate */
static err2 case_gated_add(const test_case *tc, fb_kctx *k)
{
    size_t n = (size_t)tc->a * tc->b;
    float *x1 = rnd(n, 1), *y = rnd(n, 1), *g = rnd((size_t)tc->b, 1);
    float *x2 = dup(x1, n);
    fb_gated_add(k, x1, y, tc->c ? g : NULL, tc->a, tc->b);
    fb_gated_add_ref(x2, y, tc->c ? g : NULL, tc->a, tc->b);
    err2 e = compare(x1, x2, n);
    free(x1), free(x2), free(y), free(g);
    return e;
}

/* a = n, b = op (0 silu, 1 gelu, 2 softmax rows of c), d = in place, e = input scale */
static err2 case_act(const test_case *tc, fb_kctx *k)
{
    size_t n = (size_t)tc->a;
    float *x = rnd(n, (float)tc->e);
    float *y1 = tc->d || tc->b == 2 ? dup(x, n) : malloc(n * sizeof(float));
    float *y2 = dup(x, n);
    if (tc->b == 0) {
        fb_silu(k, tc->d ? y1 : x, y1, n);
        fb_silu_ref(x, y2, n);
    } else if (tc->b == 1) {
        fb_gelu_tanh(k, tc->d ? y1 : x, y1, n);
        fb_gelu_tanh_ref(x, y2, n);
    } else {
        fb_softmax(k, y1, (int)(n / tc->c), tc->c);
        fb_softmax_ref(y2, (int)(n / tc->c), tc->c);
    }
    err2 e = compare(y1, y2, n);
    free(x), free(y1), free(y2);
    return e;
}

/* a = tokens, b = heads, c = head_dim, d = max position used */
static err2 case_rope(const test_case *tc, fb_kctx *k)
{
    int L = tc->a, H = tc->b, Dh = tc->c;
    fb_rope r;
    if (fb_rope_init(&r, Dh, 1024))
        return (err2){INFINITY, INFINITY};
    size_t n = (size_t)L * H * Dh;
    float *x1 = rnd(n, 1), *x2 = dup(x1, n);
    int *pos = malloc((size_t)L * 3 * sizeof(int));
    for (int i = 0; i < 3 * L; i++)
        pos[i] = (int)((uint32_t)(frand() * 1e6f + 1e6f) % (uint32_t)(tc->d + 1));
    fb_rope_apply(k, &r, x1, L, H, pos);
    fb_rope_apply_ref(&r, x2, L, H, pos);
    err2 e = compare(x1, x2, n);
    /* and the rotation itself is right: pair 0 at position p turns by p radians */
    float v[6] = {1, 0, 1, 0, 1, 0};
    int p3[3] = {3, 0, 0};
    fb_rope r6;
    fb_rope_init(&r6, 6, 8);
    fb_rope_apply_ref(&r6, v, 1, 1, p3);
    if (fabs(v[0] - cos(3.0)) > 1e-7 || fabs(v[1] - sin(3.0)) > 1e-7 || v[2] != 1.0f)
        e.abs = e.rel = INFINITY;
    fb_rope_free(&r6);
    fb_rope_free(&r);
    free(x1), free(x2), free(pos);
    return e;
}

/* a = Lq, b = Lk, c = heads, d = head_dim, e = score scale multiplier (peaky softmax) */
static err2 case_attention(const test_case *tc, fb_kctx *k)
{
    int Lq = tc->a, Lk = tc->b, H = tc->c, Dh = tc->d;
    float *q = rnd((size_t)Lq * H * Dh, 1), *kk = rnd((size_t)Lk * H * Dh, 1);
    float *v = rnd((size_t)Lk * H * Dh, 1);
    float *o1 = malloc((size_t)Lq * H * Dh * sizeof(float));
    float *o2 = malloc((size_t)Lq * H * Dh * sizeof(float));
    float scale = (float)tc->e / sqrtf((float)Dh);
    fb_attention(k, q, kk, v, o1, Lq, Lk, H, Dh, scale);
    fb_attention_ref(q, kk, v, o2, Lq, Lk, H, Dh, scale);
    err2 e = compare(o1, o2, (size_t)Lq * H * Dh);
    free(q), free(kk), free(v), free(o1), free(o2);
    return e;
}

/* a = dim; checks cos-first layout and the float64 formula at a fractional t */
static err2 case_sinusoid(const test_case *tc, fb_kctx *k)
{
    (void)k;
    int dim = tc->a, half = dim / 2;
    float *o = malloc((size_t)dim * sizeof(float)), *r = malloc((size_t)dim * sizeof(float));
    double t = 833.3333129882812;
    fb_time_sinusoid(t, dim, o);
    for (int j = 0; j < half; j++) {
        double a = t * exp(-log(10000.0) * j / half);
        r[j] = (float)cos(a);
        r[half + j] = (float)sin(a);
    }
    err2 e = compare(o, r, (size_t)dim);
    free(o), free(r);
    return e;
}

static const test_case cases[] = {
    {"sgemm NN 1x1x1", case_sgemm, 1, 1, 1, 0, 0, 1e-6},
    {"sgemm NN 7x5x3", case_sgemm, 7, 5, 3, 0, 0, 1e-6},
    {"sgemm NT 33x17x65 pad", case_sgemm, 33, 17, 65, 2, 3, 1e-6},
    {"sgemm TN 19x41x23 pad", case_sgemm, 19, 41, 23, 1, 1, 1e-6},
    {"sgemm TT 64x48x31", case_sgemm, 64, 48, 31, 3, 0, 1e-6},
    {"sgemm NN 301x257x129 (split M)", case_sgemm, 301, 257, 129, 0, 0, 1e-6},
    {"sgemm NT 97x515x200 (split N)", case_sgemm, 97, 515, 200, 2, 5, 1e-6},
    {"sgemm NN K=0 beta=0", case_sgemm, 5, 7, 0, 0, 0, 0.0},
    {"linear 1x64x256 bias", case_linear, 1, 64, 256, 1, 0, 1e-6},
    {"linear 48x64x64 bias", case_linear, 48, 64, 64, 1, 0, 1e-6},
    {"linear 333x190x77 nobias", case_linear, 333, 190, 77, 0, 0, 1e-6},
    {"linear 600x384x256 bias (threads)", case_linear, 600, 384, 256, 1, 0, 1e-6},
    {"layernorm 1x1", case_norm, 1, 1, 0, 0, 0, 1e-6},
    {"layernorm 37x1536", case_norm, 37, 1536, 0, 0, 0, 1e-6},
    {"layernorm 500x67 offset 100", case_norm, 500, 67, 0, 1, 100, 1e-6},
    {"layernorm affine 129x64", case_norm, 129, 64, 1, 0, 0, 1e-6},
    {"layernorm affine in place 40x4096", case_norm, 40, 4096, 1, 1, 0, 1e-6},
    {"rmsnorm 301x64", case_norm, 301, 64, 2, 0, 0, 1e-6},
    {"rmsnorm no weight in place 3x1537", case_norm, 3, 1537, 3, 1, 0, 1e-6},
    {"modulate 48x64", case_norm, 48, 64, 4, 0, 0, 1e-6},
    {"modulate in place 1000x257 offset 3", case_norm, 1000, 257, 4, 1, 3, 1e-6},
    {"gated_add 48x64", case_gated_add, 48, 64, 1, 0, 0, 1e-6},
    {"gated_add 1001x33 no gate", case_gated_add, 1001, 33, 0, 0, 0, 1e-6},
    {"silu 1", case_act, 1, 0, 0, 0, 4, 1e-6},
    {"silu 100003 in place", case_act, 100003, 0, 0, 1, 12, 1e-6},
    {"gelu 77 x8", case_act, 77, 1, 0, 0, 8, 2e-6},
    {"gelu 300001 x4", case_act, 300001, 1, 0, 0, 4, 2e-6},
    {"gelu 65537 x100 in place", case_act, 65537, 1, 0, 1, 100, 2e-6},
    {"softmax 13x1", case_act, 13, 2, 1, 0, 3, 1e-6},
    {"softmax 37x129", case_act, 37 * 129, 2, 129, 0, 30, 1e-6},
    {"rope 48x4x16 pos<32", case_rope, 48, 4, 16, 31, 0, 1e-7},
    {"rope 301x12x128 pos<1024", case_rope, 301, 12, 128, 1023, 0, 1e-7},
    {"rope 17x3x22 pos<200", case_rope, 17, 3, 22, 199, 0, 1e-7},
    {"attention 1x1x1x16", case_attention, 1, 1, 1, 16, 1, 2e-6},
    {"attention 48x48x4x16", case_attention, 48, 48, 4, 16, 1, 2e-6},
    {"attention 65x129x3x24", case_attention, 65, 129, 3, 24, 1, 2e-6},
    {"attention 130x300x2x64 peaky", case_attention, 130, 300, 2, 64, 8, 2e-6},
    {"attention 7x517x1x128", case_attention, 7, 517, 1, 128, 1, 2e-6},
    {"attention 200x16x4x256", case_attention, 200, 16, 4, 256, 2, 2e-6},
    /* several query and key tiles (256 x 512): the online rescaling across key tiles */
    {"attention 530x1300x2x32 multi-tile peaky", case_attention, 530, 1300, 2, 32, 6, 2e-6},
    {"attention 257x1025x3x16 multi-tile", case_attention, 257, 1025, 3, 16, 1, 2e-6},
    {"sinusoid 256", case_sinusoid, 256, 0, 0, 0, 0, 1e-7},
};

/* fb_linear's promise: every kernel it has for this CPU (portable, AVX2, AVX-512) gives the
 * bits of fb_linear_fma_ref on any shape and thread count (panel and row tails, depths past
 * one packed block), so a row never depends on the rows computed with it. */
static int linear_exact(fb_kctx **ctx)
{
    static const int shapes[][3] = {{1, 1, 1},     {1, 64, 256},  {5, 17, 3},   {6, 32, 16},
                                    {7, 33, 1100}, {97, 190, 77}, {128, 256, 256},
                                    {200, 1024, 64}, {131, 40, 1536}, {600, 384, 256}};
    static const int kernels[] = {FB_LINEAR_BEST, FB_LINEAR_PORTABLE, FB_LINEAR_AVX2,
                                  FB_LINEAR_AVX512};
    int fails = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *x = rnd((size_t)M * K, 1), *W = rnd((size_t)N * K, 1), *b = rnd((size_t)N, 1);
        float *want = malloc((size_t)M * N * sizeof(float));
        float *got = malloc((size_t)M * N * sizeof(float));
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            const float *bias = with_bias ? b : NULL;
            fb_linear_fma_ref(x, W, bias, want, M, N, K);
            for (size_t q = 0; q < sizeof kernels / sizeof kernels[0]; q++)
                for (int t = 0; t < 2; t++) {
                    const char *name = NULL;
                    memset(got, 0xff, (size_t)M * N * sizeof(float));
                    if (fb__linear_isa(ctx[t], kernels[q], x, W, bias, got, M, N, K, &name))
                        continue;   /* this CPU lacks that kernel */
                    if (memcmp(got, want, (size_t)M * N * sizeof(float))) {
                        printf("linear exact %dx%dx%d%s: kernel %s, %d threads: differs from "
                               "fb_linear_fma_ref FAIL\n", M, N, K, with_bias ? " bias" : "",
                               name, fb_kctx_n_threads(ctx[t]));
                        fails++;
                    }
                }
            /* rows computed alone equal the same rows in the whole product */
            for (int r0 = 0; r0 < M; r0 += 37) {
                int rows = M - r0 < 5 ? M - r0 : 5;
                fb_linear(ctx[1], x + (size_t)r0 * K, W, bias, got, rows, N, K);
                if (memcmp(got, want + (size_t)r0 * N, (size_t)rows * N * sizeof(float))) {
                    printf("linear exact %dx%dx%d: rows %d.. alone differ FAIL\n", M, N, K, r0);
                    fails++;
                }
            }
        }
        free(x), free(W), free(b), free(want), free(got);
    }
    const char *best = NULL;
    fb__linear_isa(ctx[0], FB_LINEAR_BEST, NULL, NULL, NULL, NULL, 0, 1, 1, &best);
    printf("linear exact: every kernel equals fb_linear_fma_ref bit for bit (best here: %s)%s\n",
           best, fails ? " FAIL" : " ok");
    return fails;
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    char err[256];
    fb_kctx *ctx[2];
    if (fb_kctx_init(&ctx[0], 1, err, sizeof err) || fb_kctx_init(&ctx[1], 3, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int fails = 0, run = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const test_case *tc = &cases[i];
        if (filter && !strstr(tc->name, filter))
            continue;
        for (int t = 0; t < 2; t++) {
            err2 e = tc->fn(tc, ctx[t]);
            int ok = e.rel <= tc->tol;
            printf("%-40s threads=%d max_abs=%.3e max_rel=%.3e (bound %.0e) %s\n", tc->name,
                   fb_kctx_n_threads(ctx[t]), e.abs, e.rel, tc->tol, ok ? "ok" : "FAIL");
            fails += !ok;
            run++;
        }
    }
    if (!filter || strstr("linear exact", filter)) {
        fails += linear_exact(ctx);
        run++;
    }
    fb_kctx_free(ctx[0]);
    fb_kctx_free(ctx[1]);
    printf("%d runs, %d failures\n", run, fails);
    return fails ? 1 : 0;
}
