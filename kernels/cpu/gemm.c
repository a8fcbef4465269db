/* kernels/cpu/gemm.c - SGEMM through OpenBLAS, split over the context's threads (the convolutions'
 * im2col products and the text encoder's attention; fb_linear has its own kernels, linear.c).
 *
 * OpenBLAS runs single-threaded here (kctx.c sets it); each of our threads calls cblas_sgemm
 * on its own block of C. We split along the larger of M and N so that each block stays a
 * healthy GEMM (the packing of the shared operand is repeated per block, which costs
 * O(K * shared side) per thread against O(M N K / threads) of work). Small products run on the
 * calling thread alone: waking workers costs more than it saves below ~2 MFLOP.
 */
#include "kernels/cpu/cpu_internal.h"

#include <cblas.h>
#include <string.h>

#define SPLIT_ALIGN 16              /* block edges on multiples of the microkernel widths */
#define SERIAL_FLOPS (2.0 * 1024 * 1024)

typedef struct {
    int trans_a, trans_b, M, N, K;
    float alpha, beta;
    const float *A, *B;
    int lda, ldb, ldc;
    float *C;
    int split_m;         /* 1: blocks of rows of C; 0: blocks of columns */
    int per;             /* rows or columns per task */
} gemm_job;

static void gemm_block(const gemm_job *j, int m0, int m1, int n0, int n1)
{
    int m = m1 - m0, n = n1 - n0;
    if (m <= 0 || n <= 0)
        return;
    float *C = j->C + (size_t)m0 * j->ldc + n0;
    float beta = j->beta;
    const float *A = j->trans_a ? j->A + m0 : j->A + (size_t)m0 * j->lda;
    const float *B = j->trans_b ? j->B + (size_t)n0 * j->ldb : j->B + n0;
    if (j->K == 0) {
        /* BLAS leaves C * beta; make beta == 0 clear it as documented */
        if (beta == 0.0f)
            for (int r = 0; r < m; r++)
                memset(C + (size_t)r * j->ldc, 0, (size_t)n * sizeof(float));
        return;
    }
    cblas_sgemm(CblasRowMajor, j->trans_a ? CblasTrans : CblasNoTrans,
                j->trans_b ? CblasTrans : CblasNoTrans, m, n, j->K, j->alpha, A, j->lda, B,
                j->ldb, beta, C, j->ldc);
}

static void gemm_task(void *p, int task, int thread)
{
    (void)thread;
    const gemm_job *j = p;
    int b = task * j->per;
    if (j->split_m)
        gemm_block(j, b, b + j->per < j->M ? b + j->per : j->M, 0, j->N);
    else
        gemm_block(j, 0, j->M, b, b + j->per < j->N ? b + j->per : j->N);
}

/* How gemm_run cuts a product over nt threads: one block when serial, else blocks of `per`
 * rows (split_m) or columns along the larger side, the last one shorter. */
typedef struct {
    int serial, split_m, per, tasks;
} gemm_split;

static gemm_split split_of(int M, int N, int K, int nt)
{
    gemm_split g = {1, 0, 0, 1};
    double flops = 2.0 * M * (double)N * K;
    if (nt == 1 || flops < SERIAL_FLOPS)
        return g;
    g.serial = 0;
    g.split_m = M >= N;
    int side = g.split_m ? M : N;
    int per = (side + nt - 1) / nt;
    g.per = (per + SPLIT_ALIGN - 1) / SPLIT_ALIGN * SPLIT_ALIGN;
    g.tasks = (side + g.per - 1) / g.per;
    if (g.tasks <= 1)
        g.serial = 1;
    return g;
}

static void gemm_run(fb_kctx *k, gemm_job *j)
{
    gemm_split g = split_of(j->M, j->N, j->K, k->n_threads);
    if (g.serial) {
        gemm_block(j, 0, j->M, 0, j->N);
        return;
    }
    j->split_m = g.split_m;
    j->per = g.per;
    fb_kctx_parallel(k, g.tasks, gemm_task, j);
}

void fb_sgemm(fb_kctx *k, int trans_a, int trans_b, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    FB_KASSERT(M >= 0 && N >= 0 && K >= 0);
    FB_KASSERT(ldc >= N && lda >= (trans_a ? M : K) && ldb >= (trans_b ? K : N));
    if (M == 0 || N == 0)
        return;
    gemm_job j = {trans_a, trans_b, M, N, K, alpha, beta, A, B, lda, ldb, ldc, C, 0, 0};
    gemm_run(k, &j);
}
