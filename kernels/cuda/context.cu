// kernels/cuda/context.cu - context (stream + cuBLAS handle), memory, GEMM. The probe is probe.cu.
#include "kernels/cuda/common.cuh"

#include <cstdio>
#include <cstring>
#include <new>

void fb_cuda_record(fb_cuda_ctx *c, const char *stmt, const char *file, int line,
                    const char *msg) {
    if (c->failed) return;
    c->failed = 1;
    snprintf(c->error, sizeof c->error, "%s failed at %s:%d: %s", stmt, file, line, msg);
}

extern "C" int fb_cuda_ctx_init(fb_cuda_ctx **out, int device, char *err, size_t err_size) {
    *out = nullptr;
    fb_cuda_ctx *c = new (std::nothrow) fb_cuda_ctx();
    if (!c) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    c->device = device;
    cudaError_t e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        snprintf(err, err_size, "CUDA device %d: %s", device, cudaGetErrorString(e));
        delete c;
        return -1;
    }
    if (cublasCreate(&c->blas) != CUBLAS_STATUS_SUCCESS ||
        cublasSetStream(c->blas, c->stream) != CUBLAS_STATUS_SUCCESS) {
        snprintf(err, err_size, "cuBLAS could not start on device %d", device);
        cudaStreamDestroy(c->stream);
        delete c;
        return -1;
    }
    *out = c;
    return 0;
}

extern "C" void fb_cuda_ctx_free(fb_cuda_ctx *c) {
    if (!c) return;
    cudaStreamSynchronize(c->stream);
    cublasDestroy(c->blas);
    cudaStreamDestroy(c->stream);
    delete c;
}

extern "C" int fb_cuda_sync(fb_cuda_ctx *c, char *err, size_t err_size) {
    if (!c->failed) FB_CUDA_CHECK(c, cudaStreamSynchronize(c->stream));
    if (c->failed) {
        if (err && err_size) snprintf(err, err_size, "%s", c->error);
        return -1;
    }
    return 0;
}

extern "C" void *fb_cuda_alloc(fb_cuda_ctx *c, size_t bytes) {
    void *p = nullptr;
    if (c->failed) return nullptr;
    FB_CUDA_CHECK(c, cudaMallocAsync(&p, bytes, c->stream));
    return c->failed ? nullptr : p;
}

extern "C" void fb_cuda_free(fb_cuda_ctx *c, void *p) {
    if (p) cudaFreeAsync(p, c->stream);
}

extern "C" void fb_cuda_upload(fb_cuda_ctx *c, void *dst, const void *src, size_t bytes) {
    if (c->failed) return;
    FB_CUDA_CHECK(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
}

extern "C" void fb_cuda_download(fb_cuda_ctx *c, void *dst, const void *src, size_t bytes) {
    if (c->failed) return;
    FB_CUDA_CHECK(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    FB_CUDA_CHECK(c, cudaStreamSynchronize(c->stream));
}

// Broadcasts the bias into every row of y before the GEMM accumulates into it (beta = 1).
static __global__ void bias_rows(float *y, const float *b, int M, int N) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (size_t)M * N) y[i] = b[i % N];
}

extern "C" void fb_cuda_linear(fb_cuda_ctx *c, const float *x, const float *W, const float *b,
                               float *y, int M, int N, int K) {
    if (c->failed) return;
    float beta = 0.0f;
    if (b) {
        size_t n = (size_t)M * N;
        bias_rows<<<(unsigned)((n + 255) / 256), 256, 0, c->stream>>>(y, b, M, N);
        FB_CUDA_CHECK(c, cudaGetLastError());
        beta = 1.0f;
    }
    // Row-major y[M,N] = x[M,K] W[N,K]^T is column-major y^T[N,M] = W^T-as-stored x^T:
    // with cuBLAS's column-major view, W is [K,N] (ld K) and x is [K,M] (ld K).
    const float alpha = 1.0f;
    cublasStatus_t s = cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, W, K, x,
                                   K, &beta, y, N);
    if (s != CUBLAS_STATUS_SUCCESS) fb_cuda_record(c, "cublasSgemm", __FILE__, __LINE__,
                                                   "cuBLAS error");
}
