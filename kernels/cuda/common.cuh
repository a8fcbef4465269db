// kernels/cuda/common.cuh - what every CUDA kernel file of flipbook shares: the context
// layout and the error-recording check (never abort: record, then later ops become no-ops).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kernels/cuda/kernels_cuda.h"
#include "kernels/fb_math.h"

struct fb_cuda_ctx {
    int device = 0;
    cudaStream_t stream = nullptr;
    cublasHandle_t blas = nullptr;
    int failed = 0;
    char error[256] = {0};
};

void fb_cuda_record(fb_cuda_ctx *c, const char *stmt, const char *file, int line,
                    const char *msg);

#define FB_CUDA_CHECK(ctx, stmt)                                                        \
    do {                                                                                \
        cudaError_t fb_e_ = (stmt);                                                     \
        if (fb_e_ != cudaSuccess)                                                       \
            fb_cuda_record((ctx), #stmt, __FILE__, __LINE__, cudaGetErrorString(fb_e_)); \
    } while (0)

// Launch shape for row-wise ops: one block per row.
constexpr int FB_CUDA_ROW_THREADS = 256;
