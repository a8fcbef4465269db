// kernels/cuda/probe.cu - is there a usable GPU? Kept apart from the kernels so that a program
// that only needs the answer (the daemon at start-up) links the CUDA runtime alone, not cuBLAS,
// whose libraries cost over 100 MiB of resident memory once loaded.
#include <cstdio>

#include <cuda_runtime.h>

#include "kernels/cuda/kernels_cuda.h"

extern "C" int fb_cuda_probe(char *desc, size_t desc_size) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        if (desc && desc_size)
            snprintf(desc, desc_size, "no CUDA device (%s)",
                     e != cudaSuccess ? cudaGetErrorString(e) : "none found");
        cudaGetLastError();  // clear the sticky "no device" error
        return 0;
    }
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) == cudaSuccess && desc && desc_size)
        snprintf(desc, desc_size, "%d CUDA device(s); device 0: %s, %.1f GiB, sm_%d%d", n, p.name,
                 (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), p.major, p.minor);
    return n;
}
