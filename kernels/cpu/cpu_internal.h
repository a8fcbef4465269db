/* kernels/cpu/cpu_internal.h - what the CPU kernel files share: the context layout and the
 * helpers that split row ranges over its threads. Not part of the public API.
 */
#ifndef FLIPBOOK_KERNELS_CPU_INTERNAL_H
#define FLIPBOOK_KERNELS_CPU_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

/* Shape contracts of the ops: a violation is a programming error, so it aborts with the place. */
#define FB_KASSERT(cond)                                                                      \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: %s: assertion failed: %s\n", __FILE__, __LINE__,          \
                    __func__, #cond);                                                         \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

/* Hot loops are plain C compiled three times, for AVX-512, AVX2 and baseline x86-64, and the
 * loader picks the widest the CPU has (GCC function multiversioning). The build stays portable
 * (no -march) and the loops need no intrinsics. Results do not depend on the clone: the files
 * are compiled without FP contraction (ISO C), so no clone uses FMA on its own. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(FB_NO_CLONES)
#define FB_SIMD __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FB_SIMD
#endif

/* Attention tiles: queries per task and keys per inner step. The two tile GEMMs go through
 * OpenBLAS, which packs its operands on every call; at 64 x 128 the packing took a third of
 * the time. 256 x 512 (512 KB of scores, 256 KB of accumulator per thread, within L2) measured
 * 1.4x faster single-threaded (1560 x 4680 keys, 12 x 128: 0.51 s -> 0.37 s); larger key
 * tiles gained nothing more. Overridable at build time for experiments. */
#ifndef FB_ATTN_BQ
#define FB_ATTN_BQ 256
#endif
#ifndef FB_ATTN_BK
#define FB_ATTN_BK 512
#endif

/* fb_linear (linear.c): W is packed in blocks of FB_LINEAR_KC depths x at most
 * FB_LINEAR_NR_MAX columns into each thread's scratch (64 KB, within L2 beside the rows). */
#define FB_LINEAR_KC 512
#define FB_LINEAR_NR_MAX 32

/* Tests and the benchmark: run fb_linear with one of its kernels. Returns -1 (and *name NULL)
 * when this CPU cannot run that one; *name is the kernel's name. */
enum { FB_LINEAR_BEST, FB_LINEAR_PORTABLE, FB_LINEAR_AVX2, FB_LINEAR_AVX512 };
int fb__linear_isa(fb_kctx *k, int which, const float *x, const float *W, const float *b,
                   float *y, int M, int N, int K, const char **name);

struct fb_kctx {
    int n_threads;
    pthread_t *workers;          /* n_threads - 1 */
    pthread_mutex_t mu;
    pthread_cond_t cv_work;      /* workers wait for a new generation */
    pthread_cond_t cv_done;      /* the caller waits for the workers to finish */
    uint64_t generation;         /* bumped per job; guarded by mu */
    int workers_busy;            /* workers still inside the current job; guarded by mu */
    int stop;
    /* the current job: written under mu before the generation bump */
    fb_task_fn fn;
    void *arg;
    int n_tasks;
    atomic_int next_task;
    /* per-thread attention scratch: scores [BQ*BK], accumulator [BQ*MAX_DH], m, l [BQ] */
    float *attn_scratch;
    size_t attn_stride;          /* floats per thread */
    /* per-thread packed-weight panels of fb_linear */
    float *lin_scratch;
    size_t lin_stride;           /* floats per thread */
};

/* e^x for x in [-87, 87] (callers clamp), relative error ~2e-7; branch-free so loops over it
 * vectorise: range reduction x = n ln2 + r, the Cephes expf polynomial for e^r on
 * |r| <= ln2/2, and 2^n built in the exponent bits. */
static inline float fb__exp_fast(float x)
{
    const float ln2_hi = 0.693145751953125f, ln2_lo = 1.428606765330187e-06f;
    /* round to nearest by the 1.5 * 2^23 trick: vectorises where floorf would not (SSE2) */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * ln2_hi;
    r = r - n * ln2_lo;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &e, sizeof s);
    return p * s;
}

/* Splits [0, n) into parts of at least `grain` items and runs fn over them in parallel:
 * fn(arg, begin, end). Runs inline when one part suffices. */
typedef void (*fb_range_fn)(void *arg, size_t begin, size_t end);
void fb__parallel_range(fb_kctx *k, size_t n, size_t grain, fb_range_fn fn, void *arg);

#endif
