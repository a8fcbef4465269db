/* kernels/kernels.h - the numeric kernels behind the engine, backend-neutral.
 *
 * Every op takes an fb_kctx, the execution context that owns the worker threads and the small
 * per-thread scratch the ops need (attention tiles). Model code only ever calls the functions
 * below, so a CUDA backend can provide the same entry points (with device pointers and a
 * context that owns a stream and a cuBLAS handle) without touching model code. Each op also
 * has a plain-C reference `*_ref` (single-threaded, straightforward loops, no context) used by
 * tests/kernels to check the fast version.
 *
 * Conventions:
 *   - float32 everywhere on the CPU backend; tensors are dense row-major arrays.
 *   - Dimension letters: M, N, K for GEMM; L tokens (rows), D feature width, H heads,
 *     Dh head dim; "rows x dim" for row-wise ops.
 *   - In-place is allowed where an op says `y may equal x`.
 *   - Sizes are ints (each dimension < 2^31); element counts are size_t.
 *   - Ops never allocate and never fail on valid shapes; shapes are the caller's contract and
 *     are checked with assertions (a bad shape is a programming error, not user input).
 *
 * Threading: an fb_kctx runs one op at a time. Its owner (the engine call that checked it out
 * of the model's pool, or a stream that keeps its own) must not call into the same context
 * from two threads at once.
 * Different contexts are independent. Inside an op the context's workers split the rows (or
 * heads x query tiles) and the calling thread works too.
 *
 * OpenBLAS: the CPU backend runs OpenBLAS single-threaded (openblas_set_num_threads(1), set
 * when a context is created) and splits every GEMM over its own workers along M or N. This
 * keeps one pool of threads on the machine instead of two pools that spin against each other
 * (OpenBLAS's threads busy-wait after each call), and lets several contexts run GEMMs at the
 * same time without OpenBLAS's global lock serialising them. fb_linear (the DiT's and text
 * encoder's linears) does not use OpenBLAS at all: its own kernels fix the summation order
 * (see fb_linear), which OpenBLAS's CPU-specific kernels do not, and match its speed at the
 * DiT's shapes (fb_bench_kernels prints both side by side).
 *
 * SIMD: the CPU loops are plain C; the hot ones are compiled for AVX-512, AVX2 and baseline
 * x86-64 and picked at load time (GCC function multiversioning), so a portable build still
 * uses the machine's vector width. No -ffast-math: results do not depend on the clone.
 */
#ifndef FLIPBOOK_KERNELS_KERNELS_H
#define FLIPBOOK_KERNELS_KERNELS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- execution context ------------------------------------------------------------------ */

typedef struct fb_kctx fb_kctx;

/* Largest head dimension fb_attention supports (sizes the per-thread tiles). */
#define FB_ATTN_MAX_HEAD_DIM 256

/* Creates a context with n_threads threads in all (the caller's thread counts as one; so
 * n_threads - 1 workers are started). n_threads <= 0 uses the number of online CPUs.
 * Returns 0, or -1 with a message in err. */
int fb_kctx_init(fb_kctx **out, int n_threads, char *err, size_t err_size);
/* Stops and joins the workers. NULL is accepted. */
void fb_kctx_free(fb_kctx *k);
int fb_kctx_n_threads(const fb_kctx *k);

/* Runs fn(arg, task, thread) for task = 0..n_tasks-1 on the context's threads and returns
 * when all are done. `thread` is in [0, n_threads) and identifies the executing thread, so a
 * task may use per-thread scratch indexed by it. Tasks are handed out dynamically. Not
 * reentrant: fn must not call fb_kctx_parallel (or any op) on the same context. Other
 * kernel files (conv) use it for their own loops. */
typedef void (*fb_task_fn)(void *arg, int task, int thread);
void fb_kctx_parallel(fb_kctx *k, int n_tasks, fb_task_fn fn, void *arg);

/* ---- GEMM --------------------------------------------------------------------------------- */

/* General row-major SGEMM: C[M,N] = alpha * op(A) * op(B) + beta * C, where op(A) is [M,K]
 * (A stored [K,M] when trans_a) and op(B) is [K,N] (B stored [N,K] when trans_b); lda, ldb,
 * ldc are row strides in floats. beta == 0 ignores the previous content of C (NaNs too). */
void fb_sgemm(fb_kctx *k, int trans_a, int trans_b, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
void fb_sgemm_ref(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* torch.nn.Linear: y[M,N] = x[M,K] * W[N,K]^T + b[N]; b may be NULL. y must not overlap x.
 * On the CPU every element is summed in one fixed order, whatever the shape, the thread count
 * or the CPU's vector width: acc = 0, acc = fma(x[i,k], W[j,k], acc) for k ascending, then
 * acc + b[j]. fb_linear_fma_ref is that loop, and the CPU fb_linear equals it bit for bit (so
 * a row's numbers never depend on the rows computed with it). fb_linear_ref is the textbook
 * double-precision version the error bounds are measured against. */
void fb_linear(fb_kctx *k, const float *x, const float *W, const float *b, float *y, int M,
               int N, int K);
void fb_linear_ref(const float *x, const float *W, const float *b, float *y, int M, int N,
                   int K);
void fb_linear_fma_ref(const float *x, const float *W, const float *b, float *y, int M, int N,
                       int K);

/* fb_linear over a stack of row segments (the token rows of several independent calls, one
 * after another): y[M,N] for M = seg_rows[0] + ... + seg_rows[n_seg-1]. Each segment's rows
 * come out bit for bit as fb_linear on that segment alone computes them, so batching calls
 * never changes their numbers. On the CPU every row is computed alone anyway (fb_linear's
 * fixed order), so the stack is one product; a backend whose GEMM sums in a shape-dependent
 * order would run the segments one by one. */
void fb_linear_rows(fb_kctx *k, const float *x, const float *W, const float *b, float *y,
                    const int *seg_rows, int n_seg, int N, int K);

/* ---- normalisation ------------------------------------------------------------------------ */

/* LayerNorm over the last dim: y = (x - mean) / sqrt(var + eps) [* w + b]. Statistics are
 * accumulated in double. w and b may both be NULL (no affine, as Wan's norm1/norm2/head.norm)
 * or both non-NULL (affine, norm3). y may equal x. */
void fb_layernorm(fb_kctx *k, const float *x, float *y, int rows, int dim, float eps,
                  const float *w, const float *b);
void fb_layernorm_ref(const float *x, float *y, int rows, int dim, float eps, const float *w,
                      const float *b);

/* RMSNorm: y = x * rsqrt(mean(x^2) + eps) * w (w may be NULL). y may equal x. */
void fb_rmsnorm(fb_kctx *k, const float *x, float *y, int rows, int dim, float eps,
                const float *w);
void fb_rmsnorm_ref(const float *x, float *y, int rows, int dim, float eps, const float *w);

/* Wan's adaptive modulation, fused: y = LN(x) * (1 + scale) + shift, LN without affine;
 * shift and scale are [dim] vectors shared by every row. y may equal x. */
void fb_modulate(fb_kctx *k, const float *x, float *y, int rows, int dim, float eps,
                 const float *shift, const float *scale);
void fb_modulate_ref(const float *x, float *y, int rows, int dim, float eps,
                     const float *shift, const float *scale);

/* Gated residual: x[r, :] += y[r, :] * gate[:]; gate NULL is a plain residual add. */
void fb_gated_add(fb_kctx *k, float *x, const float *y, const float *gate, int rows, int dim);
void fb_gated_add_ref(float *x, const float *y, const float *gate, int rows, int dim);

/* ---- activations ---------------------------------------------------------------------------- */

/* y = x * sigmoid(x). y may equal x. */
void fb_silu(fb_kctx *k, const float *x, float *y, size_t n);
void fb_silu_ref(const float *x, float *y, size_t n);

/* tanh-approximated GELU: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). y may equal x. */
void fb_gelu_tanh(fb_kctx *k, const float *x, float *y, size_t n);
void fb_gelu_tanh_ref(const float *x, float *y, size_t n);

/* Row-wise softmax in place over n columns (max-subtracted). */
void fb_softmax(fb_kctx *k, float *x, int rows, int n);
void fb_softmax_ref(float *x, int rows, int n);

/* ---- rotary position embedding (Wan 3D RoPE) ---------------------------------------------- */

/* The head dimension Dh is split into Dh/2 complex pairs (channels 2j, 2j+1, real first);
 * pairs [0, p_t) rotate with the temporal position, [p_t, p_t + p_h) with the height and the
 * rest (p_w) with the width, where p_h = p_w = Dh/6 (integer division) and p_t = Dh/2 - 2 p_h
 * (22/21/21 for Dh = 128; 4/2/2 for Dh = 16). Axis a with d_a = 2 p_a channels uses
 * inv_freq_j = 10000^(-2j / d_a). The table holds cos and sin of pos * inv_freq in double
 * for pos in [0, n_pos); the rotation itself is computed in double and rounded to float, as
 * the upstream code does (complex128 multiply, then .float()). */
typedef struct fb_rope {
    int head_dim;
    int n_pos;          /* positions 0..n_pos-1 on every axis */
    int pairs[3];       /* p_t, p_h, p_w */
    double *cs;         /* [n_pos][head_dim/2][2]: (cos, sin); pair j uses its own axis' freq */
} fb_rope;

/* Computes the table. Returns 0, or -1 (bad head_dim: odd or < 6; n_pos < 1; no memory). */
int fb_rope_init(fb_rope *r, int head_dim, int n_pos);
void fb_rope_free(fb_rope *r);

/* Rotates x [L, n_heads, head_dim] in place. pos [L][3] holds each token's (t, h, w)
 * positions, each in [0, n_pos). */
void fb_rope_apply(fb_kctx *k, const fb_rope *r, float *x, int L, int n_heads, const int *pos);
void fb_rope_apply_ref(const fb_rope *r, float *x, int L, int n_heads, const int *pos);

/* ---- attention ---------------------------------------------------------------------------- */

/* Multi-head attention without mask: for each head h,
 *   out[i, h, :] = sum_j softmax_j(scale * q[i, h, :] . k[j, h, :]) v[j, h, :]
 * q, out: [Lq, H, Dh]; k, v: [Lk, H, Dh]; all dense (row stride H*Dh). Lk >= 1,
 * Dh <= FB_ATTN_MAX_HEAD_DIM. The fast version tiles queries and keys with an online softmax,
 * so no score matrix larger than one tile exists; work is split over heads x query tiles.
 * out must not overlap q, k or v. */
void fb_attention(fb_kctx *k, const float *q, const float *kk, const float *v, float *out,
                  int Lq, int Lk, int H, int Dh, float scale);
void fb_attention_ref(const float *q, const float *kk, const float *v, float *out, int Lq,
                      int Lk, int H, int Dh, float scale);

/* ---- embeddings ----------------------------------------------------------------------------- */

/* Wan's sinusoidal time embedding: half = dim/2, f_j = 10000^(-j/half),
 * out = [cos(t f_0) .. cos(t f_{half-1}), sin(t f_0) .. sin(t f_{half-1})], cos first,
 * computed in double and rounded to float. dim must be even. Tiny: no fast variant. */
void fb_time_sinusoid(double t, int dim, float *out);

#ifdef __cplusplus
}
#endif

#endif
