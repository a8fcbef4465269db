/* kernels/cuda/kernels_cuda.h - the CUDA backend of kernels.h, callable from C.
 *
 * Same operations and argument order as the CPU kernels in kernels/kernels.h, but every
 * tensor pointer is device memory and every op is queued on the context's stream (never the
 * default stream). Element maths comes from kernels/fb_math.h, which the CPU tests exercise.
 * GEMMs go through cuBLAS.
 *
 * Errors: ops never abort. The first CUDA or cuBLAS failure is recorded in the context
 * (statement, file, line, message) and later ops on it become no-ops; fb_cuda_sync() returns it.
 * A context with a recorded error should be freed (an illegal address poisons the whole CUDA
 * context; the daemon then ends the sessions that used it).
 *
 * Thread-safety: a context (one stream + one cuBLAS handle) is used by one thread at a time;
 * separate contexts may run concurrently. fb_cuda_probe() may be called from any thread.
 *
 * Built only when nvcc is found (FLIPBOOK_CUDA=AUTO|ON); FLIPBOOK_HAVE_CUDA is then defined
 * for every target that links fb_kernels_cuda.
 */
#ifndef FLIPBOOK_KERNELS_CUDA_H
#define FLIPBOOK_KERNELS_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices (0 when there is no GPU or no driver). `desc` receives one
 * human-readable line: the device name and memory, or why none can be used. */
int fb_cuda_probe(char *desc, size_t desc_size);

typedef struct fb_cuda_ctx fb_cuda_ctx;

int fb_cuda_ctx_init(fb_cuda_ctx **out, int device, char *err, size_t err_size);
void fb_cuda_ctx_free(fb_cuda_ctx *c);
/* Waits for the stream; returns 0, or -1 with the first recorded error in err. */
int fb_cuda_sync(fb_cuda_ctx *c, char *err, size_t err_size);

void *fb_cuda_alloc(fb_cuda_ctx *c, size_t bytes);         /* NULL on failure (recorded) */
void fb_cuda_free(fb_cuda_ctx *c, void *p);
void fb_cuda_upload(fb_cuda_ctx *c, void *dst, const void *src, size_t bytes);
void fb_cuda_download(fb_cuda_ctx *c, void *dst, const void *src, size_t bytes);

/* y[M,N] = x[M,K] W[N,K]^T + b[N] (b may be NULL). */
void fb_cuda_linear(fb_cuda_ctx *c, const float *x, const float *W, const float *b, float *y,
                    int M, int N, int K);
void fb_cuda_layernorm(fb_cuda_ctx *c, const float *x, float *y, int rows, int dim, float eps,
                       const float *w, const float *b);
void fb_cuda_rmsnorm(fb_cuda_ctx *c, const float *x, float *y, int rows, int dim, float eps,
                     const float *w);
void fb_cuda_modulate(fb_cuda_ctx *c, const float *x, float *y, int rows, int dim, float eps,
                      const float *shift, const float *scale);
void fb_cuda_gated_add(fb_cuda_ctx *c, float *x, const float *y, const float *gate, int rows,
                       int dim);
void fb_cuda_silu(fb_cuda_ctx *c, const float *x, float *y, size_t n);
void fb_cuda_gelu_tanh(fb_cuda_ctx *c, const float *x, float *y, size_t n);
/* cs: device copy of fb_rope.cs ([n_pos][head_dim/2][2] doubles); pos: device [L][3] ints. */
void fb_cuda_rope_apply(fb_cuda_ctx *c, const double *cs, int head_dim, const int pairs[3],
                        float *x, int L, int n_heads, const int *pos);
void fb_cuda_attention(fb_cuda_ctx *c, const float *q, const float *k, const float *v,
                       float *out, int Lq, int Lk, int H, int Dh, float scale);

#ifdef __cplusplus
}
#endif

#endif
