/* kernels/cpu/linear.c - fb_linear (y = x W^T + b) with one summation order for every element.
 *
 * Why not OpenBLAS: its SGEMM kernels sum an element's K products in an order that depends on
 * the product's shape and on where the element sits in it. OpenBLAS 0.3 picks its kernels by
 * CPU: with the SkylakeX ones the order was the same for every blocked product, with the
 * Haswell ones (AVX2 CPUs, and AVX-512 CPUs it does not know, such as AMD Zen 4) a row came out
 * different with another product height, another column split, even another position in the
 * same call. The engine promises more than that: a stream's numbers do not depend on the
 * thread count or on the streams batched with it. So the DiT's linears are computed here.
 *
 * The order, for every element whatever the shape, split or CPU:
 *     acc = 0; for k = 0 .. K-1: acc = fma(x[i,k], W[j,k], acc); y[i,j] = acc + b[j]
 * (one fused multiply-add per product, k ascending, a float accumulator). The AVX-512 and
 * AVX2 kernels compute exactly this in vector lanes (a lane is one column j), the portable
 * one with fmaf; fb_linear_fma_ref is the plain loop the tests hold them to, bit for bit.
 *
 * Layout: W is cut into panels of NR columns, packed k-major ([KC][NR], zero-padded past N)
 * into the thread's scratch in blocks of KC depths; a micro-kernel keeps MR rows x NR
 * columns of accumulators in registers over one depth block, and a longer K continues the
 * chain from the partial sums stored in y (a float stored and reloaded is the same float).
 * Work is cut into (panel group, row block) tasks; any cut gives the same bits.
 */
#include "kernels/cpu/cpu_internal.h"

#include <math.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define FB_LINEAR_X86 1
#endif

#define MR 6                  /* rows per micro-kernel */
#define ROW_BLOCK (MR * 16)   /* rows per task */
#define SERIAL_FLOPS (2.0 * 1024 * 1024)

/* One depth block of a row tile: y[r, 0..nr) (+)= x[r, k0..k0+kc) . wp for r < mr rows.
 * first: start the chain at 0 (else continue from y); last: add the bias and finish.
 * ncols: columns of y to write (<= nr; the panel is zero-padded past them). */
typedef void (*tile_fn)(const float *x, size_t ldx, int mr, const float *wp, int kc, float *y,
                        size_t ldy, int ncols, const float *bias, int first, int last);

/* ---- portable: fmaf, one lane at a time ---------------------------------------------------- */

#define NR_PORTABLE 16

static void tile_portable(const float *x, size_t ldx, int mr, const float *wp, int kc, float *y,
                          size_t ldy, int ncols, const float *bias, int first, int last)
{
    for (int r = 0; r < mr; r++) {
        float acc[NR_PORTABLE];
        for (int j = 0; j < NR_PORTABLE; j++)
            acc[j] = first || j >= ncols ? 0.0f : y[(size_t)r * ldy + j];
        const float *xr = x + (size_t)r * ldx;
        for (int k = 0; k < kc; k++)
            for (int j = 0; j < NR_PORTABLE; j++)
                acc[j] = fmaf(xr[k], wp[(size_t)k * NR_PORTABLE + j], acc[j]);
        for (int j = 0; j < ncols; j++)
            y[(size_t)r * ldy + j] = last && bias ? acc[j] + bias[j] : acc[j];
    }
}

#ifdef FB_LINEAR_X86

/* ---- AVX2 + FMA: panels of 16 columns, 6 x 2 ymm accumulators -------------------------------- */

#define NR_AVX2 16

/* The fma chains of one depth block, rows < MR; inlined into tile_avx2 once with the constant
 * MR (the compiler unrolls the rows into registers) and once with the tail's row count. */
__attribute__((target("avx2,fma"), always_inline)) static inline void
chain_avx2(const float *x, size_t ldx, int mr, const float *wp, int kc, __m256 acc[MR][2])
{
    for (int k = 0; k < kc; k++) {
        __m256 w0 = _mm256_loadu_ps(wp + (size_t)k * NR_AVX2);
        __m256 w1 = _mm256_loadu_ps(wp + (size_t)k * NR_AVX2 + 8);
        for (int r = 0; r < mr; r++) {
            __m256 a = _mm256_broadcast_ss(x + (size_t)r * ldx + k);
            acc[r][0] = _mm256_fmadd_ps(a, w0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(a, w1, acc[r][1]);
        }
    }
}

__attribute__((target("avx2,fma"))) static void tile_avx2(const float *x, size_t ldx, int mr,
                                                          const float *wp, int kc, float *y,
                                                          size_t ldy, int ncols,
                                                          const float *bias, int first, int last)
{
    __m256 acc[MR][2];
    float tmp[NR_AVX2];
    for (int r = 0; r < mr; r++) {
        if (!first) {   /* continue the chain from the partial sums of the previous depths */
            memset(tmp, 0, sizeof tmp);
            memcpy(tmp, y + (size_t)r * ldy, (size_t)ncols * sizeof(float));
        }
        acc[r][0] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(tmp);
        acc[r][1] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(tmp + 8);
    }
    if (mr == MR)
        chain_avx2(x, ldx, MR, wp, kc, acc);   /* a constant row count: fully unrolled */
    else
        chain_avx2(x, ldx, mr, wp, kc, acc);
    float bias_cols[NR_AVX2] = {0};
    int add_bias = last && bias;
    if (add_bias)
        memcpy(bias_cols, bias, (size_t)ncols * sizeof(float));
    __m256 b0 = _mm256_loadu_ps(bias_cols), b1 = _mm256_loadu_ps(bias_cols + 8);
    for (int r = 0; r < mr; r++) {
        _mm256_storeu_ps(tmp, add_bias ? _mm256_add_ps(acc[r][0], b0) : acc[r][0]);
        _mm256_storeu_ps(tmp + 8, add_bias ? _mm256_add_ps(acc[r][1], b1) : acc[r][1]);
        memcpy(y + (size_t)r * ldy, tmp, (size_t)ncols * sizeof(float));
    }
}

/* ---- AVX-512: panels of 32 columns, 6 x 2 zmm accumulators ----------------------------------- */

#define NR_AVX512 32

/* As chain_avx2, on 32-column panels. */
__attribute__((target("avx512f"), always_inline)) static inline void
chain_avx512(const float *x, size_t ldx, int mr, const float *wp, int kc, __m512 acc[MR][2])
{
    for (int k = 0; k < kc; k++) {
        __m512 w0 = _mm512_loadu_ps(wp + (size_t)k * NR_AVX512);
        __m512 w1 = _mm512_loadu_ps(wp + (size_t)k * NR_AVX512 + 16);
        for (int r = 0; r < mr; r++) {
            __m512 a = _mm512_set1_ps(x[(size_t)r * ldx + k]);
            acc[r][0] = _mm512_fmadd_ps(a, w0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(a, w1, acc[r][1]);
        }
    }
}

__attribute__((target("avx512f"))) static void tile_avx512(const float *x, size_t ldx, int mr,
                                                           const float *wp, int kc, float *y,
                                                           size_t ldy, int ncols,
                                                           const float *bias, int first,
                                                           int last)
{
    __m512 acc[MR][2];
    /* column masks of the two halves: the panel's last columns may lie past N */
    __mmask16 m0 = ncols >= 16 ? 0xffff : (__mmask16)((1u << ncols) - 1);
    __mmask16 m1 = ncols >= 32 ? 0xffff : ncols <= 16 ? 0 : (__mmask16)((1u << (ncols - 16)) - 1);
    for (int r = 0; r < mr; r++) {
        if (first) {
            acc[r][0] = _mm512_setzero_ps();
            acc[r][1] = _mm512_setzero_ps();
        } else {
            acc[r][0] = _mm512_maskz_loadu_ps(m0, y + (size_t)r * ldy);
            acc[r][1] = _mm512_maskz_loadu_ps(m1, y + (size_t)r * ldy + 16);
        }
    }
    if (mr == MR)
        chain_avx512(x, ldx, MR, wp, kc, acc);
    else
        chain_avx512(x, ldx, mr, wp, kc, acc);
    __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
    int add_bias = last && bias;
    if (add_bias) {
        b0 = _mm512_maskz_loadu_ps(m0, bias);
        b1 = _mm512_maskz_loadu_ps(m1, bias + 16);
    }
    for (int r = 0; r < mr; r++) {
        __m512 v0 = add_bias ? _mm512_add_ps(acc[r][0], b0) : acc[r][0];
        __m512 v1 = add_bias ? _mm512_add_ps(acc[r][1], b1) : acc[r][1];
        _mm512_mask_storeu_ps(y + (size_t)r * ldy, m0, v0);
        _mm512_mask_storeu_ps(y + (size_t)r * ldy + 16, m1, v1);
    }
}

#endif /* FB_LINEAR_X86 */

/* ---- dispatch ----------------------------------------------------------------------------- */

typedef struct {
    tile_fn tile;
    int nr;
    const char *name;
} linear_isa;

static const linear_isa isa_portable = {tile_portable, NR_PORTABLE, "portable"};
#ifdef FB_LINEAR_X86
static const linear_isa isa_avx2 = {tile_avx2, NR_AVX2, "avx2"};
static const linear_isa isa_avx512 = {tile_avx512, NR_AVX512, "avx512"};
#endif

static const linear_isa *isa_best(void)
{
#ifdef FB_LINEAR_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return &isa_avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return &isa_avx2;
#endif
    return &isa_portable;
}

static const linear_isa *isa_named(int which)
{
    const linear_isa *best = isa_best();
    switch (which) {
    case FB_LINEAR_PORTABLE:
        return &isa_portable;
#ifdef FB_LINEAR_X86
    case FB_LINEAR_AVX2:
        return best == &isa_portable ? NULL : &isa_avx2;
    case FB_LINEAR_AVX512:
        return best == &isa_avx512 ? &isa_avx512 : NULL;
#endif
    case FB_LINEAR_BEST:
        return best;
    default:
        return NULL;
    }
}

/* ---- the product -------------------------------------------------------------------------- */

typedef struct {
    const linear_isa *isa;
    const float *x, *W, *b;
    float *y;
    int M, N, K;
    int panels_per_task, n_row_blocks;
    float *scratch;             /* per thread: FB_LINEAR_KC * FB_LINEAR_NR_MAX floats */
    size_t scratch_stride;
} linear_job;

/* W[n0 .. n0+nr) x [k0 .. k0+kc) -> wp[kc][nr], zero past N */
static void pack_panel(const float *W, int N, int K, int n0, int nr, int k0, int kc, float *wp)
{
    for (int j = 0; j < nr; j++) {
        int n = n0 + j;
        if (n < N) {
            const float *w = W + (size_t)n * K + k0;
            for (int k = 0; k < kc; k++)
                wp[(size_t)k * nr + j] = w[k];
        } else {
            for (int k = 0; k < kc; k++)
                wp[(size_t)k * nr + j] = 0.0f;
        }
    }
}

static void linear_range(const linear_job *j, float *wp, int p0, int p1, int m0, int m1)
{
    int nr = j->isa->nr;
    for (int p = p0; p < p1; p++) {
        int n0 = p * nr;
        int ncols = j->N - n0 < nr ? j->N - n0 : nr;
        for (int k0 = 0; k0 < j->K; k0 += FB_LINEAR_KC) {
            int kc = j->K - k0 < FB_LINEAR_KC ? j->K - k0 : FB_LINEAR_KC;
            int first = k0 == 0, last = k0 + kc == j->K;
            pack_panel(j->W, j->N, j->K, n0, nr, k0, kc, wp);
            for (int m = m0; m < m1; m += MR) {
                int mr = m1 - m < MR ? m1 - m : MR;
                j->isa->tile(j->x + (size_t)m * j->K + k0, (size_t)j->K, mr, wp, kc,
                             j->y + (size_t)m * j->N + n0, (size_t)j->N, ncols,
                             j->b ? j->b + n0 : NULL, first, last);
            }
        }
    }
}

static void linear_task(void *p, int task, int thread)
{
    const linear_job *j = p;
    int n_panels = (j->N + j->isa->nr - 1) / j->isa->nr;
    int pg = task / j->n_row_blocks, rb = task % j->n_row_blocks;
    int p0 = pg * j->panels_per_task;
    int p1 = p0 + j->panels_per_task < n_panels ? p0 + j->panels_per_task : n_panels;
    int m0 = rb * ROW_BLOCK;
    int m1 = m0 + ROW_BLOCK < j->M ? m0 + ROW_BLOCK : j->M;
    linear_range(j, j->scratch + (size_t)thread * j->scratch_stride, p0, p1, m0, m1);
}

static void linear_run(fb_kctx *k, const linear_isa *isa, const float *x, const float *W,
                       const float *b, float *y, int M, int N, int K)
{
    int n_panels = (N + isa->nr - 1) / isa->nr;
    int nt = fb_kctx_n_threads(k);
    linear_job j = {isa, x, W, b, y, M, N, K, n_panels, 1, k->lin_scratch, k->lin_stride};
    if (nt == 1 || 2.0 * M * (double)N * K < SERIAL_FLOPS) {
        linear_range(&j, k->lin_scratch, 0, n_panels, 0, M);
        return;
    }
    /* Panel groups first (each task packs its panels once for all its rows); row blocks too
     * when there are fewer panels than about four tasks per thread. */
    j.n_row_blocks = (M + ROW_BLOCK - 1) / ROW_BLOCK;
    int want = 4 * nt;
    int groups = n_panels < want ? n_panels : want;
    if (groups * j.n_row_blocks > want && groups > 1)
        groups = (want + j.n_row_blocks - 1) / j.n_row_blocks;
    if (groups < 1)
        groups = 1;
    j.panels_per_task = (n_panels + groups - 1) / groups;
    groups = (n_panels + j.panels_per_task - 1) / j.panels_per_task;
    fb_kctx_parallel(k, groups * j.n_row_blocks, linear_task, &j);
}

void fb_linear(fb_kctx *k, const float *x, const float *W, const float *b, float *y, int M,
               int N, int K)
{
    FB_KASSERT(M >= 0 && N > 0 && K > 0);
    if (M == 0)
        return;
    static const linear_isa *best;   /* a pure function of the CPU: racing writers agree */
    const linear_isa *isa = __atomic_load_n(&best, __ATOMIC_RELAXED);
    if (!isa) {
        isa = isa_best();
        __atomic_store_n(&best, isa, __ATOMIC_RELAXED);
    }
    linear_run(k, isa, x, W, b, y, M, N, K);
}

int fb__linear_isa(fb_kctx *k, int which, const float *x, const float *W, const float *b,
                   float *y, int M, int N, int K, const char **name)
{
    const linear_isa *isa = isa_named(which);
    if (name)
        *name = isa ? isa->name : NULL;
    if (!isa)
        return -1;
    if (M > 0)
        linear_run(k, isa, x, W, b, y, M, N, K);
    return 0;
}

void fb_linear_rows(fb_kctx *k, const float *x, const float *W, const float *b, float *y,
                    const int *seg_rows, int n_seg, int N, int K)
{
    FB_KASSERT(n_seg >= 0 && N > 0 && K > 0 && (n_seg == 0 || seg_rows));
    /* every row is computed alone (see the top of this file): the stack is one product */
    long rows = 0;
    for (int i = 0; i < n_seg; i++) {
        FB_KASSERT(seg_rows[i] >= 0);
        rows += seg_rows[i];
    }
    FB_KASSERT(rows <= 0x7fffffff);
    fb_linear(k, x, W, b, y, (int)rows, N, K);
}

void fb_linear_fma_ref(const float *x, const float *W, const float *b, float *y, int M, int N,
                       int K)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float acc = 0.0f;
            for (int p = 0; p < K; p++)
                acc = fmaf(x[(size_t)i * K + p], W[(size_t)j * K + p], acc);
            y[(size_t)i * N + j] = b ? acc + b[j] : acc;
        }
}
