/* kernels/cpu/gemm.c - SGEMM and Linear through OpenBLAS, split over the context's threads.
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
    const float *bias;   /* fb_linear: prefill C rows with it, then accumulate */
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
    if (j->bias) {
        for (int r = 0; r < m; r++)
            memcpy(C + (size_t)r * j->ldc, j->bias + n0, (size_t)n * sizeof(float));
        beta = 1.0f;
    }
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
 * rows (split_m) or columns along the larger side, the last one shorter. Shared with
 * fb_linear_rows, which must know every block shape cblas_sgemm will see. */
typedef struct {
    int serial, split_m, per, tasks;
} gemm_split;

static int blas_blocked(int m, int n, int k);

static gemm_split split_of(int M, int N, int K, int nt, int linear)
{
    gemm_split g = {1, 0, 0, 1};
    double flops = 2.0 * M * (double)N * K;
    if (nt == 1 || flops < SERIAL_FLOPS)
        return g;
    g.serial = 0;
    g.split_m = M >= N;
    int side = g.split_m ? M : N, other = g.split_m ? N : M;
    int per = (side + nt - 1) / nt;
    g.per = (per + SPLIT_ALIGN - 1) / SPLIT_ALIGN * SPLIT_ALIGN;
    g.tasks = (side + g.per - 1) / g.per;
    /* x * W^T (fb_linear's shape): a product large enough to be threaded is in OpenBLAS's
     * blocked regime (see blas_blocked); so must every block be, or its elements would be
     * summed in another order than on one thread. Fewer, larger blocks where a split would
     * leave one in the small-matrix regime: results never depend on the thread count. (A
     * product blas_blocked refuses as a whole, a single row or column, keeps its split.) */
    int enforce = linear && blas_blocked(M, N, K);
    while (enforce && g.tasks > 1) {
        int last = side - g.per * (g.tasks - 1);
        int ok = g.split_m ? blas_blocked(g.per, other, K) && blas_blocked(last, other, K)
                           : blas_blocked(other, g.per, K) && blas_blocked(other, last, K);
        if (ok)
            break;
        g.per += SPLIT_ALIGN;
        g.tasks = (side + g.per - 1) / g.per;
    }
    if (g.tasks <= 1)
        g.serial = 1;
    return g;
}

static void gemm_run(fb_kctx *k, gemm_job *j)
{
    gemm_split g = split_of(j->M, j->N, j->K, k->n_threads, !j->trans_a && j->trans_b);
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
    gemm_job j = {trans_a, trans_b, M, N, K, alpha, beta, A, B, lda, ldb, ldc, C, NULL, 0, 0};
    gemm_run(k, &j);
}

void fb_linear(fb_kctx *k, const float *x, const float *W, const float *b, float *y, int M,
               int N, int K)
{
    FB_KASSERT(M >= 0 && N > 0 && K > 0);
    if (M == 0)
        return;
    gemm_job j = {0, 1, M, N, K, 1.0f, 0.0f, x, W, K, K, N, y, b, 0, 0};
    gemm_run(k, &j);
}

/* ---- row segments ------------------------------------------------------------------------ */

/* Whether OpenBLAS computes an x[m,k] * W[n,k]^T block with its blocked GEMM kernels, whose
 * per-element sums run over k in an order that does not depend on m, n or where the block
 * starts (so a row comes out the same in a product of any height). OpenBLAS 0.3 on x86-64
 * (SkylakeX and later) sends small products to separate "small matrix" kernels that sum in
 * another order; for this row-major x * W^T (its TN case) it does so when m*n <= 1200,
 * k >= 32 and m*n*k <= 1e6. Single rows or columns are excluded as well: later versions
 * forward those to GEMV. tests/engine/test_batch_dit.c checks the rule against the installed
 * library on shapes around these edges. */
static int blas_blocked(int m, int n, int k)
{
    if (m < 2 || n < 2)
        return 0;
    double mn = (double)m * n;
    return k < 32 || mn > 1200.0 || mn * k > 1e6;
}

/* Whether fb_linear computes an [M, N, K] product in the blocked regime: split_of never cuts
 * a blocked product into blocks outside it, so the whole product decides. */
static int linear_blocked(int M, int N, int K)
{
    return blas_blocked(M, N, K);
}

void fb_linear_rows(fb_kctx *k, const float *x, const float *W, const float *b, float *y,
                    const int *seg_rows, int n_seg, int N, int K)
{
    FB_KASSERT(n_seg >= 0 && N > 0 && K > 0 && (n_seg == 0 || seg_rows));
    size_t off = 0;
    int i = 0;
    while (i < n_seg) {
        FB_KASSERT(seg_rows[i] >= 0);
        /* a run of segments merged into one product: each alone and the run together must
         * stay in the blocked regime, else a segment's rows would change with the company */
        int rows = seg_rows[i], j = i + 1;
        if (linear_blocked(rows, N, K))
            while (j < n_seg && seg_rows[j] >= 0 && linear_blocked(seg_rows[j], N, K) &&
                   linear_blocked(rows + seg_rows[j], N, K))
                rows += seg_rows[j++];
        fb_linear(k, x + off * (size_t)K, W, b, y + off * (size_t)N, rows, N, K);
        off += (size_t)rows;
        i = j;
    }
}
