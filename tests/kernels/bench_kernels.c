/* tests/kernels/bench_kernels.c - fb_bench_kernels: kernel throughput on this machine.
 *
 * Prints fb_linear GFLOP/s at the DiT's shapes (Wan2.1-1.3B linears for one 3-frame chunk, the
 * default model's for one chunk, and smaller ones) next to OpenBLAS's SGEMM on its own threads
 * (the alternative kernels.h rejected), the best of them as the measured peak, and attention
 * throughput. Not a test: numbers only.
 * Usage: fb_bench_kernels [--threads N] [--quick]
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float *buf(size_t n)
{
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    return p;
}

/* best-of timing: repeat until min_time has passed (at least twice) */
typedef void (*bench_fn)(void *);
static double time_best(bench_fn fn, void *arg, double min_time)
{
    double best = 1e30, start = now();
    int reps = 0;
    while (reps < 2 || now() - start < min_time) {
        double t0 = now();
        fn(arg);
        double t = now() - t0;
        best = t < best ? t : best;
        reps++;
        if (reps >= 50)
            break;
    }
    return best;
}

typedef struct {
    fb_kctx *k;
    int M, N, K;
    float *x, *W, *b, *y;
    int native;   /* 1: cblas_sgemm with OpenBLAS's threads */
} gemm_arg;

static void run_gemm(void *p)
{
    gemm_arg *a = p;
    if (a->native)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, a->M, a->N, a->K, 1.0f, a->x, a->K,
                    a->W, a->K, 0.0f, a->y, a->N);
    else
        fb_linear(a->k, a->x, a->W, NULL, a->y, a->M, a->N, a->K);
}

typedef struct {
    fb_kctx *k;
    int Lq, Lk, H, D;
    float *q, *kk, *v, *o;
} attn_arg;

static void run_attn(void *p)
{
    attn_arg *a = p;
    fb_attention(a->k, a->q, a->kk, a->v, a->o, a->Lq, a->Lk, a->H, a->D, 0.088f);
}

int main(int argc, char **argv)
{
    int threads = 0, quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else {
            fprintf(stderr, "usage: %s [--threads N] [--quick]\n", argv[0]);
            return 2;
        }
    }
    char err[256];
    fb_kctx *k;
    if (fb_kctx_init(&k, threads, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int nt = fb_kctx_n_threads(k);
    double min_time = quick ? 0.2 : 1.0;
    printf("fb_bench_kernels: %d threads%s\n\n", nt, quick ? " (quick)" : "");

    struct {
        const char *name;
        int M, N, K;
    } shapes[] = {
        {"square 2048 (peak)", 2048, 2048, 2048},
        {"wan1.3b q/k/v/o  4680x1536x1536", 4680, 1536, 1536},
        {"wan1.3b ffn.0    4680x8960x1536", 4680, 8960, 1536},
        {"wan1.3b ffn.2    4680x1536x8960", 4680, 1536, 8960},
        {"wan1.3b cross kv  512x1536x1536", 512, 1536, 1536},
        {"small  q/k/v/o    1560x512x512", 1560, 512, 512},
        {"small  ffn.0      1560x2048x512", 1560, 2048, 512},
        {"default q/k/v/o    128x256x256", 128, 256, 256},
        {"default ffn.0     128x1024x256", 128, 1024, 256},
        {"default ffn.2     128x256x1024", 128, 256, 1024},
        {"golden linear       48x64x64", 48, 64, 64},
    };
    int n_shapes = sizeof shapes / sizeof shapes[0];
    printf("%-34s %12s %14s %14s\n", "sgemm  y = x W^T  (MxNxK)", "GFLOP", "ours GFLOP/s",
           "openblas-mt");
    double peak = 0;
    for (int s = 0; s < n_shapes; s++) {
        int M = shapes[s].M, N = shapes[s].N, K = shapes[s].K;
        if (quick && (size_t)M * N * K > (size_t)2048 * 2048 * 2048)
            continue;
        gemm_arg a = {k, M, N, K, buf((size_t)M * K), buf((size_t)N * K), NULL,
                      buf((size_t)M * N), 0};
        double fl = 2.0 * M * N * (double)K;
        double t_ours = time_best(run_gemm, &a, min_time);
        /* the alternative: OpenBLAS's own pool from one thread */
        openblas_set_num_threads(nt);
        a.native = 1;
        double t_native = time_best(run_gemm, &a, min_time);
        openblas_set_num_threads(1);
        printf("%-34s %12.3f %14.1f %14.1f\n", shapes[s].name, fl * 1e-9, fl / t_ours * 1e-9,
               fl / t_native * 1e-9);
        if (fl / t_ours > peak)
            peak = fl / t_ours;
        free(a.x), free(a.W), free(a.y);
    }
    {
        /* single-thread peak for scale */
        fb_kctx *k1;
        fb_kctx_init(&k1, 1, err, sizeof err);
        gemm_arg a = {k1, 1024, 1024, 1024, buf(1024 * 1024), buf(1024 * 1024), NULL,
                      buf(1024 * 1024), 0};
        double t = time_best(run_gemm, &a, min_time);
        printf("%-34s %12.3f %14.1f\n", "square 1024, 1 thread", 2.147, 2.0 * 1024 * 1024 * 1024 / t * 1e-9);
        free(a.x), free(a.W), free(a.y);
        fb_kctx_free(k1);
    }
    printf("\nmeasured sgemm peak: %.1f GFLOP/s (%d threads)\n\n", peak * 1e-9, nt);

    struct {
        const char *name;
        int Lq, Lk, H, D;
    } att[] = {
        {"1 frame vs 4 (1560x6240, 12x128)", 1560, 6240, 12, 128},
        {"chunk vs 12 frames/4 (1170x4680, 12x128)", 1170, 4680, 12, 128},
        {"small (1560x4680, 8x64)", 1560, 4680, 8, 64},
        {"cross (4680x512, 12x128)", 4680, 512, 12, 128},
        {"golden (48x48, 4x16)", 48, 48, 4, 16},
    };
    printf("%-44s %10s %12s %10s\n", "attention (Lq x Lk, H x Dh)", "GFLOP", "GFLOP/s", "ms");
    for (size_t s = 0; s < sizeof att / sizeof att[0]; s++) {
        attn_arg a = {k, att[s].Lq, att[s].Lk, att[s].H, att[s].D, NULL, NULL, NULL, NULL};
        size_t nq = (size_t)a.Lq * a.H * a.D, nk = (size_t)a.Lk * a.H * a.D;
        if (quick && nq * a.Lk > (size_t)2e10)
            continue;
        a.q = buf(nq), a.kk = buf(nk), a.v = buf(nk), a.o = buf(nq);
        double fl = 4.0 * a.Lq * (double)a.Lk * a.H * a.D;
        double t = time_best(run_attn, &a, min_time);
        printf("%-44s %10.3f %12.1f %10.2f\n", att[s].name, fl * 1e-9, fl / t * 1e-9, t * 1e3);
        free(a.q), free(a.kk), free(a.v), free(a.o);
    }
    fb_kctx_free(k);
    return 0;
}
