/* kernels/cpu/conv.c - 2-D convolution: im2col tiles times fb_sgemm for wide convs, a direct
 * convolution for thin ones (see kernels/conv.h).
 *
 * Why im2col + GEMM: with many input channels K = 9 * c_in is large and OpenBLAS's blocked
 * SGEMM runs near peak on the [c_out, K] x [K, pixels] product;
 * the column fill is a cheap, memory-bound copy done in parallel over input channels. Tiles
 * are bands of whole output rows so that each tile's output is a contiguous column range of
 * every output channel (one GEMM with ldc = ho * wo).
 */
#include "kernels/conv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONV_ASSERT(cond)                                                                 \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: %s: assertion failed: %s\n", __FILE__, __LINE__,      \
                    __func__, #cond);                                                     \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

static void check_desc(const fb_conv2d *c) {
    CONV_ASSERT(c && c->x && c->weight && c->y);
    CONV_ASSERT(c->c_in0 > 0 && c->c_in1 >= 0 && (c->c_in1 == 0 || c->x1));
    CONV_ASSERT(c->h > 0 && c->w > 0 && c->c_out > 0);
    CONV_ASSERT(c->up == 1 || c->up == 2);
    CONV_ASSERT(c->k == 1 || c->k == 3);
    CONV_ASSERT(c->stride == 1 || c->stride == 2);
}

void fb_conv2d_out_size(const fb_conv2d *c, int *ho, int *wo) {
    int pad = c->k / 2;
    *ho = (c->h * c->up + 2 * pad - c->k) / c->stride + 1;
    *wo = (c->w * c->up + 2 * pad - c->k) / c->stride + 1;
}

static int is_direct(const fb_conv2d *c) { return c->k == 1 && c->stride == 1 && c->up == 1; }

static int tile_rows(const fb_conv2d *c, int ho, int wo) {
    size_t K = (size_t)(c->c_in0 + c->c_in1) * c->k * c->k;
    size_t rows = FB_CONV_TILE_FLOATS / (K * (size_t)wo);
    if (rows < 1) rows = 1;
    if (rows > (size_t)ho) rows = (size_t)ho;
    return (int)rows;
}

static size_t col_scratch_floats(const fb_conv2d *c) {
    if (is_direct(c)) return 0;
    int ho, wo;
    fb_conv2d_out_size(c, &ho, &wo);
    size_t K = (size_t)(c->c_in0 + c->c_in1) * c->k * c->k;
    return K * (size_t)tile_rows(c, ho, wo) * (size_t)wo;
}

static size_t dir_scratch_floats(const fb_conv2d *c);

/* Enough for either lowering, so a forced path (tests, benchmarks) works with it too. Both
 * are bounded by FB_CONV_TILE_FLOATS per band, so this stays small at any image size. */
size_t fb_conv2d_scratch_floats(const fb_conv2d *c) {
    size_t a = col_scratch_floats(c), b = dir_scratch_floats(c);
    return a > b ? a : b;
}

/* ---- im2col ------------------------------------------------------------------------------ */

typedef struct {
    const fb_conv2d *c;
    int ho, wo, r0, r1; /* output rows of this tile */
    float *col;         /* [K, (r1 - r0) * wo] */
} col_job;

/* Fills the k*k rows of the column buffer that come from input channel `ci`. */
static void col_task(void *arg, int ci, int thread) {
    (void)thread;
    const col_job *j = arg;
    const fb_conv2d *c = j->c;
    const int k = c->k, pad = k / 2, s = c->stride, up = c->up;
    const int H = c->h * up, W = c->w * up; /* size of the (virtually upsampled) input */
    const float *src = ci < c->c_in0 ? c->x + (size_t)ci * c->h * c->w
                                     : c->x1 + (size_t)(ci - c->c_in0) * c->h * c->w;
    const size_t n_px = (size_t)(j->r1 - j->r0) * j->wo;
    for (int ky = 0; ky < k; ky++) {
        for (int kx = 0; kx < k; kx++) {
            float *dst = j->col + ((size_t)(ci * k + ky) * k + kx) * n_px;
            for (int oy = j->r0; oy < j->r1; oy++, dst += j->wo) {
                int iy = oy * s + ky - pad;
                if (iy < 0 || iy >= H) {
                    memset(dst, 0, (size_t)j->wo * sizeof(float));
                    continue;
                }
                const float *row = src + (size_t)(iy / up) * c->w;
                int off = kx - pad;
                if (s == 1 && up == 1) {
                    /* dst[ox] = row[ox + off], zero outside [0, W) */
                    int lo = off < 0 ? -off : 0;
                    int hi = j->wo - (off > 0 ? off : 0);
                    if (hi > j->wo) hi = j->wo;
                    for (int ox = 0; ox < lo; ox++) dst[ox] = 0.0f;
                    if (hi > lo) memcpy(dst + lo, row + lo + off, (size_t)(hi - lo) * sizeof(float));
                    for (int ox = hi > lo ? hi : lo; ox < j->wo; ox++) dst[ox] = 0.0f;
                } else {
                    for (int ox = 0; ox < j->wo; ox++) {
                        int ix = ox * s + off;
                        dst[ox] = ix >= 0 && ix < W ? row[ix / up] : 0.0f;
                    }
                }
            }
        }
    }
}

/* ---- epilogue ------------------------------------------------------------------------------ */

typedef struct {
    const fb_conv2d *c;
    size_t plane;       /* ho * wo */
    size_t p0, p1;      /* pixel range of this tile */
} epi_job;

static void epi_task(void *arg, int co, int thread) {
    (void)thread;
    const epi_job *j = arg;
    const fb_conv2d *c = j->c;
    float *y = c->y + (size_t)co * j->plane;
    const float b = c->bias ? c->bias[co] : 0.0f;
    /* In-place residual (residual == y) was already accumulated by the GEMM (beta = 1). */
    const float *res = c->residual && c->residual != c->y ? c->residual + (size_t)co * j->plane
                                                          : NULL;
    if (res) {
        for (size_t p = j->p0; p < j->p1; p++) y[p] = (y[p] + b) + res[p];
    } else if (c->bias) {
        for (size_t p = j->p0; p < j->p1; p++) y[p] += b;
    }
    if (c->relu)
        for (size_t p = j->p0; p < j->p1; p++) y[p] = y[p] > 0.0f ? y[p] : 0.0f;
}

/* ---- direct convolution ------------------------------------------------------------------ */

/* At 16..64 channels im2col + GEMM is memory-bound: the column buffer is 9x the input and
 * the GEMM's K is too short to amortise packing it. The direct path instead copies the input
 * once into a zero-padded buffer (upsampling applied, each row split into its `stride` column
 * phases so every tap of every output row is a contiguous run), then, for one output row and a
 * block of output channels, keeps the block's sums for a strip of output pixels in vector
 * registers while it walks the input channels and the k x k taps: one load per tap feeds
 * CB multiply-adds. No borders in the hot loop: the padding is in the buffer.
 *
 * The kernels use GCC vector types, compiled for AVX-512 and AVX2 (fused multiply-add, which
 * doubles the arithmetic rate) and for baseline x86-64 (multiply, then add), picked with
 * __builtin_cpu_supports. Each output is summed in one fixed order (input channels, then taps)
 * whatever the thread count, so results do not depend on it; AVX-512 and AVX2 give the same
 * bits, the baseline build differs from them by float rounding only. */

#define DIR_CB 8 /* output channels per block */
/* Floats after the padded buffer that a strip past a row's end may load (widest strip). */
#define DIR_SLACK 32

typedef struct {
    const fb_conv2d *c;
    int ho, wo;
    int r0, r1;       /* output rows of this band */
    int n_rows;       /* padded input rows the band reads */
    int pl;           /* floats per column phase of a padded row */
    int rl;           /* floats per padded row: stride * pl */
    size_t cs;        /* floats per channel in the padded buffer */
    float *pad;       /* padded band, or NULL: read x / x1 directly (1x1, stride 1, no up) */
    int n_cob;        /* output channel blocks */
} dir_job;

/* Band geometry: output rows [r0, r0 + rows) read padded rows [r0 * s, (r0 + rows - 1) * s + k).
 * Padded row/column P holds the (virtually upsampled) input at P - pad, zero outside. */
static int dir_pad_rows(const fb_conv2d *c, int rows) { return (rows - 1) * c->stride + c->k; }

static void dir_row_geom(const fb_conv2d *c, int *pl, int *rl) {
    const int wp = c->w * c->up + 2 * (c->k / 2);
    *pl = (wp + c->stride - 1) / c->stride;
    *rl = *pl * c->stride;
}

static int dir_needs_pad(const fb_conv2d *c) { return !is_direct(c); }

static int dir_band_rows(const fb_conv2d *c, int ho) {
    if (!dir_needs_pad(c)) return ho;
    int pl, rl;
    dir_row_geom(c, &pl, &rl);
    const size_t per_row = (size_t)(c->c_in0 + c->c_in1) * rl;
    int rows = ho;
    while (rows > 1 && per_row * dir_pad_rows(c, rows) > FB_CONV_TILE_FLOATS) rows = (rows + 1) / 2;
    return rows;
}

static size_t dir_scratch_floats(const fb_conv2d *c) {
    if (!dir_needs_pad(c)) return 0;
    int ho, wo, pl, rl;
    fb_conv2d_out_size(c, &ho, &wo);
    dir_row_geom(c, &pl, &rl);
    return (size_t)(c->c_in0 + c->c_in1) * rl * dir_pad_rows(c, dir_band_rows(c, ho)) +
           DIR_SLACK;
}

/* Fills the padded rows of input channel ci for the band. */
static void dir_pad_task(void *arg, int ci, int thread) {
    (void)thread;
    const dir_job *j = arg;
    const fb_conv2d *c = j->c;
    const int s = c->stride, up = c->up, pad = c->k / 2;
    const int H = c->h * up, W = c->w * up, wp = W + 2 * pad;
    const float *src = ci < c->c_in0 ? c->x + (size_t)ci * c->h * c->w
                                     : c->x1 + (size_t)(ci - c->c_in0) * c->h * c->w;
    float *dst = j->pad + (size_t)ci * j->cs;
    for (int r = 0; r < j->n_rows; r++, dst += j->rl) {
        const int iy = j->r0 * s + r - pad; /* virtual input row */
        if (iy < 0 || iy >= H) {
            memset(dst, 0, (size_t)j->rl * sizeof(float));
            continue;
        }
        const float *row = src + (size_t)(iy / up) * c->w;
        if (s == 1 && up == 1) {
            for (int p = 0; p < pad; p++) dst[p] = dst[pad + W + p] = 0.0f;
            memcpy(dst + pad, row, (size_t)W * sizeof(float));
        } else if (s == 1) { /* up == 2 */
            for (int p = 0; p < pad; p++) dst[p] = dst[pad + W + p] = 0.0f;
            for (int x = 0; x < c->w; x++) dst[pad + 2 * x] = dst[pad + 2 * x + 1] = row[x];
        } else {
            /* padded column P goes to phase P % s at P / s; the phases' tails are zero */
            for (int p = wp; p < j->rl; p++) dst[(p % s) * j->pl + p / s] = 0.0f;
            for (int p = 0; p < wp; p++) {
                const int x = p - pad;
                dst[(p % s) * j->pl + p / s] = x >= 0 && x < W ? row[x / up] : 0.0f;
            }
        }
    }
}

/* Where the k x k taps of output row oy start, and the per-tap column offsets. */
typedef struct {
    const float *base0, *base1; /* channel 0 and channel c_in0 at the row of tap ky = 0 */
    size_t cs;                  /* floats per channel */
    int rl;                     /* floats per padded row */
    int koff[3];                /* column offset of tap kx (phase start + kx / s) */
} dir_row;

static void dir_row_setup(const dir_job *j, int oy, dir_row *r) {
    const fb_conv2d *c = j->c;
    if (j->pad) {
        const size_t off = (size_t)(oy - j->r0) * c->stride * j->rl;
        r->base0 = j->pad + off;
        r->base1 = j->pad + (size_t)c->c_in0 * j->cs + off;
        r->cs = j->cs;
        r->rl = j->rl;
        for (int kx = 0; kx < c->k; kx++)
            r->koff[kx] = (kx % c->stride) * j->pl + kx / c->stride;
    } else { /* 1x1, stride 1, no upsampling: the input itself */
        r->base0 = c->x + (size_t)oy * c->w;
        r->base1 = c->x1 ? c->x1 + (size_t)oy * c->w : NULL;
        r->cs = (size_t)c->h * c->w;
        r->rl = c->w;
        r->koff[0] = 0;
    }
}

/* Epilogue of one strip: y = relu(acc + bias + residual), n lanes. Same order as the im2col
 * path's: (conv + bias) + residual, then ReLU. */
static inline void dir_store(const fb_conv2d *c, const float *acc, int co, size_t o, int n) {
    const float b = c->bias ? c->bias[co] : 0.0f;
    float *y = c->y + o;
    const float *res = c->residual ? c->residual + o : NULL;
    for (int i = 0; i < n; i++) {
        float v = acc[i] + b;
        if (res) v += res[i];
        if (c->relu) v = v > 0.0f ? v : 0.0f;
        y[i] = v;
    }
}

/* One kernel: CB output channels x NV vectors of VW floats per strip, k x k taps, for the
 * strips of output row oy starting at ox0, ox0 + VW * NV, ... below ox1. A strip past the
 * row's end still loads whole vectors from the padded buffer (its slack keeps the last row in
 * bounds; the extra lanes are not stored); reading x directly (no buffer), the last strip
 * copies only its valid lanes. */
#define DIR_KERNEL(NAME, TARGET, VW, NV, CB, KK, MADD)                                              \
    TARGET static void NAME(const dir_job *j, const dir_row *r, int oy, int co0, int ox0,       \
                            int ox1) {                                                          \
        typedef float vt __attribute__((vector_size(VW * 4)));                                  \
        const fb_conv2d *c = j->c;                                                              \
        const int c_in = c->c_in0 + c->c_in1, K = c_in * KK * KK;                               \
        const float *wt = c->weight + (size_t)co0 * K;                                          \
        for (int ox = ox0; ox < ox1; ox += VW * NV) {                                           \
            const int n = ox1 - ox < VW * NV ? ox1 - ox : VW * NV;                              \
            const int safe = n < VW * NV && !j->pad;                                            \
            vt acc[CB][NV];                                                                     \
            for (int cb = 0; cb < CB; cb++)                                                     \
                for (int v = 0; v < NV; v++) acc[cb][v] = (vt){0};                              \
            for (int ci = 0; ci < c_in; ci++) {                                                 \
                const float *pc = (ci < c->c_in0 ? r->base0 + (size_t)ci * r->cs                \
                                                 : r->base1 + (size_t)(ci - c->c_in0) * r->cs) + \
                                  ox;                                                           \
                for (int ky = 0; ky < KK; ky++)                                                 \
                    for (int kx = 0; kx < KK; kx++) {                                           \
                        const float *p = pc + (size_t)ky * r->rl + r->koff[kx];                 \
                        vt in[NV];                                                              \
                        if (!safe) {                                                            \
                            for (int v = 0; v < NV; v++) memcpy(&in[v], p + v * VW, VW * 4);    \
                        } else {                                                                \
                            float tmp[VW * NV] = {0};                                           \
                            memcpy(tmp, p, (size_t)n * 4);                                      \
                            for (int v = 0; v < NV; v++) memcpy(&in[v], tmp + v * VW, VW * 4);  \
                        }                                                                       \
                        const int t = (ci * KK + ky) * KK + kx;                                 \
                        for (int cb = 0; cb < CB; cb++) {                                       \
                            const float wv = wt[(size_t)cb * K + t];                            \
                            for (int v = 0; v < NV; v++) acc[cb][v] = MADD(in[v], wv, acc[cb][v]); \
                        }                                                                       \
                    }                                                                           \
            }                                                                                   \
            for (int cb = 0; cb < CB; cb++) {                                                   \
                float out[VW * NV];                                                             \
                memcpy(out, acc[cb], sizeof out);                                               \
                dir_store(c, out, co0 + cb, ((size_t)(co0 + cb) * j->ho + oy) * j->wo + ox, n); \
            }                                                                                   \
        }                                                                                       \
    }

typedef void (*dir_kernel_fn)(const dir_job *, const dir_row *, int, int, int, int);

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DIR_T512 __attribute__((target("avx512f")))
#define DIR_T256 __attribute__((target("avx2,fma")))
#define DIR_HAVE_X86 1
#define DIR_MADD512(a, w, acc) _mm512_fmadd_ps(a, _mm512_set1_ps(w), acc)
#define DIR_MADD256(a, w, acc) _mm256_fmadd_ps(a, _mm256_set1_ps(w), acc)
#else
#define DIR_HAVE_X86 0
#endif
/* Baseline: multiply then add (the file is compiled without contraction). */
#define DIR_MADD(a, w, acc) ((acc) + (a) * (w))
#define DIR_TBASE

/* One vector set: strips of NV vectors, and of one vector for a row's remainder. */
typedef struct {
    int strip;                    /* VW * NV */
    int vw;                       /* VW */
    dir_kernel_fn wide[2][4];     /* [k == 3][block 8/4/2/1] */
    dir_kernel_fn one[2][4];
} dir_isa_set;

#define DIR_BLOCKS(P, TARGET, VW, NV, KK, MADD)                                                 \
    DIR_KERNEL(P##_8, TARGET, VW, NV, 8, KK, MADD)                                              \
    DIR_KERNEL(P##_4, TARGET, VW, NV, 4, KK, MADD)                                              \
    DIR_KERNEL(P##_2, TARGET, VW, NV, 2, KK, MADD)                                              \
    DIR_KERNEL(P##_1, TARGET, VW, NV, 1, KK, MADD)
#define DIR_FNS(P) {P##_8, P##_4, P##_2, P##_1}

/* Register budgets: AVX-512 keeps 8 x 2 zmm sums (of 32 registers), AVX2 8 x 1 ymm (of 16),
 * baseline 8 x 1 xmm (of 16). */
#define DIR_SET(ISA, TARGET, VW, NV, MADD)                                                      \
    DIR_BLOCKS(dir_##ISA##_w1, TARGET, VW, NV, 1, MADD)                                         \
    DIR_BLOCKS(dir_##ISA##_w3, TARGET, VW, NV, 3, MADD)                                         \
    DIR_BLOCKS(dir_##ISA##_o1, TARGET, VW, 1, 1, MADD)                                          \
    DIR_BLOCKS(dir_##ISA##_o3, TARGET, VW, 1, 3, MADD)                                          \
    static const dir_isa_set dir_##ISA = {                                                      \
        VW * NV, VW,                                                                            \
        {DIR_FNS(dir_##ISA##_w1), DIR_FNS(dir_##ISA##_w3)},                                     \
        {DIR_FNS(dir_##ISA##_o1), DIR_FNS(dir_##ISA##_o3)}};

DIR_SET(base, DIR_TBASE, 4, 1, DIR_MADD)
#if DIR_HAVE_X86
DIR_SET(avx2, DIR_T256, 8, 1, DIR_MADD256)
DIR_SET(avx512, DIR_T512, 16, 2, DIR_MADD512)
#endif

typedef enum { DIR_ISA_BASE, DIR_ISA_AVX2, DIR_ISA_AVX512 } dir_isa;

static dir_isa dir_best_isa(void) {
#if DIR_HAVE_X86
    if (__builtin_cpu_supports("avx512f")) return DIR_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return DIR_ISA_AVX2;
#endif
    return DIR_ISA_BASE;
}

typedef struct {
    dir_job j;
    const dir_isa_set *set;
} dir_run;

static void dir_task(void *arg, int task, int thread) {
    (void)thread;
    const dir_run *d = arg;
    const dir_job *j = &d->j;
    const fb_conv2d *c = j->c;
    const int oy = j->r0 + task / j->n_cob, cob = task % j->n_cob;
    dir_row r;
    dir_row_setup(j, oy, &r);
    const dir_isa_set *s = d->set;
    const int kk = c->k == 3;
    const int wide_end = j->wo / s->strip * s->strip; /* whole wide strips, then single vectors */
    int co = cob * DIR_CB;
    const int co_end = co + DIR_CB < c->c_out ? co + DIR_CB : c->c_out;
    /* a full block of 8, or the remainder as 4 + 2 + 1 */
    static const int sizes[4] = {8, 4, 2, 1};
    for (int i = 0; i < 4 && co < co_end; i++)
        while (co_end - co >= sizes[i]) {
            if (wide_end > 0) s->wide[kk][i](j, &r, oy, co, 0, wide_end);
            if (wide_end < j->wo) s->one[kk][i](j, &r, oy, co, wide_end, j->wo);
            co += sizes[i];
        }
}

static void dir_conv(fb_kctx *kc, const fb_conv2d *c, dir_isa isa, float *scratch) {
    int ho, wo;
    fb_conv2d_out_size(c, &ho, &wo);
    dir_run d = {.j = {.c = c, .ho = ho, .wo = wo, .n_cob = (c->c_out + DIR_CB - 1) / DIR_CB}};
#if DIR_HAVE_X86
    d.set = isa == DIR_ISA_AVX512 ? &dir_avx512 : isa == DIR_ISA_AVX2 ? &dir_avx2 : &dir_base;
#else
    (void)isa;
    d.set = &dir_base;
#endif
    const int need_pad = dir_needs_pad(c);
    const int rows = dir_band_rows(c, ho);
    if (need_pad) {
        dir_row_geom(c, &d.j.pl, &d.j.rl);
        d.j.pad = scratch;
        const size_t used = (size_t)(c->c_in0 + c->c_in1) * d.j.rl * dir_pad_rows(c, rows);
        memset(scratch + used, 0, DIR_SLACK * sizeof(float)); /* loaded, never stored */
    }
    for (int r0 = 0; r0 < ho; r0 += rows) {
        d.j.r0 = r0;
        d.j.r1 = r0 + rows < ho ? r0 + rows : ho;
        if (need_pad) {
            d.j.n_rows = dir_pad_rows(c, d.j.r1 - r0);
            d.j.cs = (size_t)d.j.n_rows * d.j.rl;
            fb_kctx_parallel(kc, c->c_in0 + c->c_in1, dir_pad_task, &d.j);
        }
        fb_kctx_parallel(kc, (d.j.r1 - r0) * d.j.n_cob, dir_task, &d);
    }
}

/* ---- driver ------------------------------------------------------------------------------- */

static void col_conv(fb_kctx *kc, const fb_conv2d *c, float *scratch, size_t scratch_floats) {
    int ho, wo;
    fb_conv2d_out_size(c, &ho, &wo);
    CONV_ASSERT(ho > 0 && wo > 0);
    const int c_in = c->c_in0 + c->c_in1;
    const int K = c_in * c->k * c->k;
    const size_t plane = (size_t)ho * wo;
    const int need_epi = c->bias || (c->residual && c->residual != c->y) || c->relu;
    const float beta = c->residual == c->y ? 1.0f : 0.0f; /* in-place residual */

    if (is_direct(c)) {
        /* y = W[:, :c_in0] x (+ W[:, c_in0:] x1) */
        fb_sgemm(kc, 0, 0, c->c_out, (int)plane, c->c_in0, 1.0f, c->weight, c_in, c->x,
                 (int)plane, beta, c->y, (int)plane);
        if (c->c_in1)
            fb_sgemm(kc, 0, 0, c->c_out, (int)plane, c->c_in1, 1.0f, c->weight + c->c_in0,
                     c_in, c->x1, (int)plane, 1.0f, c->y, (int)plane);
        if (need_epi) {
            epi_job e = {c, plane, 0, plane};
            fb_kctx_parallel(kc, c->c_out, epi_task, &e);
        }
        return;
    }

    const int rows = tile_rows(c, ho, wo);
    CONV_ASSERT(scratch && scratch_floats >= (size_t)K * rows * wo);
    for (int r0 = 0; r0 < ho; r0 += rows) {
        int r1 = r0 + rows < ho ? r0 + rows : ho;
        int n_px = (r1 - r0) * wo;
        col_job j = {c, ho, wo, r0, r1, scratch};
        fb_kctx_parallel(kc, c_in, col_task, &j);
        /* y[:, r0*wo : r1*wo] = W [c_out, K] x col [K, n_px] */
        fb_sgemm(kc, 0, 0, c->c_out, n_px, K, 1.0f, c->weight, K, scratch, n_px, beta,
                 c->y + (size_t)r0 * wo, (int)plane);
        if (need_epi) {
            epi_job e = {c, plane, (size_t)r0 * wo, (size_t)r1 * wo};
            fb_kctx_parallel(kc, c->c_out, epi_task, &e);
        }
    }
}

/* Which lowering AUTO picks: the direct one where the product is too thin for the GEMM to
 * amortise the column buffer (see FB_CONV_DIRECT_MAX_K in conv.h), and only with vector units (the
 * baseline build of the direct kernels is a correctness fallback, not a fast path). A plain
 * 1x1 stays on the GEMM, which reads the input in place. */
static int auto_direct(const fb_conv2d *c, dir_isa isa) {
    if (isa == DIR_ISA_BASE || is_direct(c)) return 0;
    const int K = (c->c_in0 + c->c_in1) * c->k * c->k;
    return K <= (c->up > 1 || c->stride > 1 ? FB_CONV_DIRECT_MAX_K_RESAMPLED : FB_CONV_DIRECT_MAX_K);
}

void fb_conv2d_run_path(fb_kctx *kc, const fb_conv2d *c, fb_conv_path path, float *scratch,
                        size_t scratch_floats) {
    check_desc(c);
    CONV_ASSERT(path >= FB_CONV_AUTO && path <= FB_CONV_DIRECT_PORTABLE);
    int ho, wo;
    fb_conv2d_out_size(c, &ho, &wo);
    CONV_ASSERT(ho > 0 && wo > 0);
    const dir_isa isa = dir_best_isa();
    if (path == FB_CONV_AUTO) path = auto_direct(c, isa) ? FB_CONV_DIRECT : FB_CONV_IM2COL;
    if (path == FB_CONV_IM2COL) {
        col_conv(kc, c, scratch, scratch_floats);
        return;
    }
    CONV_ASSERT(scratch_floats >= dir_scratch_floats(c) && (scratch || !dir_needs_pad(c)));
    dir_conv(kc, c, path == FB_CONV_DIRECT ? isa : DIR_ISA_BASE, scratch);
}

void fb_conv2d_run(fb_kctx *kc, const fb_conv2d *c, float *scratch, size_t scratch_floats) {
    fb_conv2d_run_path(kc, c, FB_CONV_AUTO, scratch, scratch_floats);
}

void fb_conv2d_ref(const fb_conv2d *c) {
    check_desc(c);
    int ho, wo;
    fb_conv2d_out_size(c, &ho, &wo);
    const int k = c->k, pad = k / 2, up = c->up, c_in = c->c_in0 + c->c_in1;
    const int H = c->h * up, W = c->w * up;
    for (int co = 0; co < c->c_out; co++)
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++) {
                double acc = c->bias ? c->bias[co] : 0.0;
                for (int ci = 0; ci < c_in; ci++) {
                    const float *src = ci < c->c_in0
                                           ? c->x + (size_t)ci * c->h * c->w
                                           : c->x1 + (size_t)(ci - c->c_in0) * c->h * c->w;
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            int iy = oy * c->stride + ky - pad, ix = ox * c->stride + kx - pad;
                            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                            acc += (double)c->weight[((size_t)(co * c_in + ci) * k + ky) * k + kx] *
                                   src[(size_t)(iy / up) * c->w + ix / up];
                        }
                }
                size_t o = ((size_t)co * ho + oy) * wo + ox;
                if (c->residual) acc += c->residual[o]; /* read before the write below */
                if (c->relu && acc < 0) acc = 0;
                c->y[o] = (float)acc;
            }
}
