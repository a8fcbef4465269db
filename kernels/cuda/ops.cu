// kernels/cuda/ops.cu - row-wise norms, modulation, activations, RoPE and attention on the
// GPU. Each kernel only moves data; the per-element arithmetic is kernels/fb_math.h, shared
// with (and tested through) the CPU backend.
#include "kernels/cuda/common.cuh"

namespace {

// Sum of a double over the block (blockDim.x == FB_CUDA_ROW_THREADS).
__device__ double block_sum(double v, double *shared) {
    shared[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
        __syncthreads();
    }
    double total = shared[0];
    __syncthreads();
    return total;
}

// Mean and 1/sqrt(var + eps) of one row, accumulated in double as the CPU kernels do.
__device__ void row_stats(const float *x, int dim, float eps, double *shared, float *mean,
                          float *rstd) {
    double s = 0.0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) s += x[i];
    double m = block_sum(s, shared) / dim;
    double v = 0.0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        double d = x[i] - m;
        v += d * d;
    }
    double var = block_sum(v, shared) / dim;
    *mean = (float)m;
    *rstd = (float)(1.0 / sqrt(var + (double)eps));
}

__global__ void layernorm_kernel(const float *x, float *y, int dim, float eps, const float *w,
                                 const float *b) {
    __shared__ double shared[FB_CUDA_ROW_THREADS];
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *yr = y + (size_t)blockIdx.x * dim;
    float mean, rstd;
    row_stats(xr, dim, eps, shared, &mean, &rstd);
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        yr[i] = fb_math_layernorm(xr[i], mean, rstd, w ? w[i] : 1.0f, b ? b[i] : 0.0f);
}

__global__ void modulate_kernel(const float *x, float *y, int dim, float eps,
                                const float *shift, const float *scale) {
    __shared__ double shared[FB_CUDA_ROW_THREADS];
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *yr = y + (size_t)blockIdx.x * dim;
    float mean, rstd;
    row_stats(xr, dim, eps, shared, &mean, &rstd);
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        yr[i] = fb_math_modulate(xr[i], mean, rstd, shift[i], scale[i]);
}

__global__ void rmsnorm_kernel(const float *x, float *y, int dim, float eps, const float *w) {
    __shared__ double shared[FB_CUDA_ROW_THREADS];
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *yr = y + (size_t)blockIdx.x * dim;
    double s = 0.0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) s += (double)xr[i] * xr[i];
    float r = fb_math_rms_scale(block_sum(s, shared), dim, eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = xr[i] * r * (w ? w[i] : 1.0f);
}

__global__ void gated_add_kernel(float *x, const float *y, const float *gate, int rows,
                                 int dim) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows * dim) return;
    x[i] += y[i] * (gate ? gate[i % dim] : 1.0f);
}

__global__ void silu_kernel(const float *x, float *y, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = fb_math_silu(x[i]);
}

__global__ void gelu_kernel(const float *x, float *y, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = fb_math_gelu_tanh(x[i]);
}

// One thread per (token, head, pair). Pair j rotates with the axis it belongs to.
__global__ void rope_kernel(const double *cs, int head_dim, int p_t, int p_h, float *x, int L,
                            int n_heads, const int *pos) {
    int half = head_dim / 2;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)L * n_heads * half) return;
    int j = (int)(i % half);
    size_t th = i / half;
    int tok = (int)(th / n_heads);
    int axis = j < p_t ? 0 : (j < p_t + p_h ? 1 : 2);
    int p = pos[tok * 3 + axis];
    const double *e = cs + ((size_t)p * half + j) * 2;
    float *xp = x + th * head_dim + 2 * j;
    fb_math_rope_pair(&xp[0], &xp[1], e[0], e[1]);
}

// One warp per (query, head): each lane owns head_dim/32 channels of q and of the output
// accumulator; per key the lanes reduce the dot product with shuffles and fold the score into
// a running (max, sum) with fb_math_online_softmax. No score matrix is ever stored.
constexpr int ATTN_MAX_PER_LANE = 8;  // head_dim <= 256

__global__ void attention_kernel(const float *q, const float *k, const float *v, float *out,
                                 int Lq, int Lk, int H, int Dh, float scale) {
    int warp = (int)((blockIdx.x * blockDim.x + threadIdx.x) / 32);
    int lane = threadIdx.x % 32;
    if (warp >= Lq * H) return;
    int i = warp / H, h = warp % H;
    size_t row = (size_t)H * Dh;
    float qv[ATTN_MAX_PER_LANE], acc[ATTN_MAX_PER_LANE];
    int per = (Dh + 31) / 32;
    for (int c = 0; c < per; c++) {
        int d = lane + 32 * c;
        qv[c] = d < Dh ? q[i * row + (size_t)h * Dh + d] : 0.0f;
        acc[c] = 0.0f;
    }
    float run_max = -INFINITY, run_sum = 0.0f;
    for (int j = 0; j < Lk; j++) {
        const float *kj = k + j * row + (size_t)h * Dh;
        float dot = 0.0f;
        for (int c = 0; c < per; c++) {
            int d = lane + 32 * c;
            if (d < Dh) dot += qv[c] * kj[d];
        }
        for (int off = 16; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
        float p;
        float rescale = fb_math_online_softmax(dot * scale, &run_max, &run_sum, &p);
        const float *vj = v + j * row + (size_t)h * Dh;
        for (int c = 0; c < per; c++) {
            int d = lane + 32 * c;
            acc[c] = acc[c] * rescale + (d < Dh ? p * vj[d] : 0.0f);
        }
    }
    for (int c = 0; c < per; c++) {
        int d = lane + 32 * c;
        if (d < Dh) out[i * row + (size_t)h * Dh + d] = acc[c] / run_sum;
    }
}

unsigned blocks_for(size_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

}  // namespace

extern "C" void fb_cuda_layernorm(fb_cuda_ctx *c, const float *x, float *y, int rows, int dim,
                                  float eps, const float *w, const float *b) {
    if (c->failed || rows <= 0) return;
    layernorm_kernel<<<rows, FB_CUDA_ROW_THREADS, 0, c->stream>>>(x, y, dim, eps, w, b);
    FB_CUDA_CHECK(c, cudaGetLastError());
}

extern "C" void fb_cuda_modulate(fb_cuda_ctx *c, const float *x, float *y, int rows, int dim,
                                 float eps, const float *shift, const float *scale) {
    if (c->failed || rows <= 0) return;
    modulate_kernel<<<rows, FB_CUDA_ROW_THREADS, 0, c->stream>>>(x, y, dim, eps, shift, scale);
    FB_CUDA_CHECK(c, cudaGetLastError());
}

extern "C" void fb_cuda_rmsnorm(fb_cuda_ctx *c, const float *x, float *y, int rows, int dim,
                                float eps, const float *w) {
    if (c->failed || rows <= 0) return;
    rmsnorm_kernel<<<rows, FB_CUDA_ROW_THREADS, 0, c->stream>>>(x, y, dim, eps, w);
    FB_CUDA_CHECK(c, cudaGetLastError());
}

extern "C" void fb_cuda_gated_add(fb_cuda_ctx *c, float *x, const float *y, const float *gate,
                                  int rows, int dim) {
    size_t n = (size_t)rows * dim;
    if (c->failed || n == 0) return;
    gated_add_kernel<<<blocks_for(n, 256), 256, 0, c->stream>>>(x, y, gate, rows, dim);
    FB_CUDA_CHECK(c, cudaGetLastError());
}

extern "C" void fb_cuda_silu(fb_cuda_ctx *c, const float *x, float *y, size_t n) {
    if (c->failed || n == 0) return;
    silu_kernel<<<blocks_for(n, 256), 256, 0, c->stream>>>(x, y, n);
    FB_CUDA_CHECK(c, cudaGetLastError());
}

extern "C" void fb_cuda_gelu_tanh(fb_cuda_ctx *c, const float *x, float *y, size_t n) {
    if (c->failed || n == 0) return;
    gelu_kernel<<<blocks_for(n, 256), 256, 0, c->stream>>>(x, y, n);
    FB_CUDA_CHECK(c, cudaGetLastError());
}

extern "C" void fb_cuda_rope_apply(fb_cuda_ctx *c, const double *cs, int head_dim,
                                   const int pairs[3], float *x, int L, int n_heads,
                                   const int *pos) {
    size_t n = (size_t)L * n_heads * (head_dim / 2);
    if (c->failed || n == 0) return;
    rope_kernel<<<blocks_for(n, 256), 256, 0, c->stream>>>(cs, head_dim, pairs[0], pairs[1], x,
                                                            L, n_heads, pos);
    FB_CUDA_CHECK(c, cudaGetLastError());
}

extern "C" void fb_cuda_attention(fb_cuda_ctx *c, const float *q, const float *k,
                                  const float *v, float *out, int Lq, int Lk, int H, int Dh,
                                  float scale) {
    if (c->failed || Lq <= 0) return;
    if (Dh > 32 * ATTN_MAX_PER_LANE || Lk <= 0) {
        fb_cuda_record(c, "fb_cuda_attention", __FILE__, __LINE__,
                       "head_dim above 256 or no keys");
        return;
    }
    size_t threads = (size_t)Lq * H * 32;
    attention_kernel<<<blocks_for(threads, 128), 128, 0, c->stream>>>(q, k, v, out, Lq, Lk, H,
                                                                      Dh, scale);
    FB_CUDA_CHECK(c, cudaGetLastError());
}
