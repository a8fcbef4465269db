# CUDA backend (kernels/cuda/): built when nvcc is found; runs only where a GPU exists.
# fb_kernels_cuda is a separate library so CPU-only targets never link the CUDA runtime.
if(FLIPBOOK_HAVE_CUDA)
  # fb_cuda_probe: the device probe alone (CUDA runtime only), for programs that just ask.
  add_library(fb_cuda_probe STATIC ${CMAKE_CURRENT_LIST_DIR}/cuda/probe.cu)
  set_target_properties(fb_cuda_probe PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON)
  target_link_libraries(fb_cuda_probe PUBLIC CUDA::cudart_static)
  target_compile_definitions(fb_cuda_probe PUBLIC FLIPBOOK_HAVE_CUDA=1)

  add_library(fb_kernels_cuda STATIC
    ${CMAKE_CURRENT_LIST_DIR}/cuda/context.cu
    ${CMAKE_CURRENT_LIST_DIR}/cuda/ops.cu)
  set_target_properties(fb_kernels_cuda PROPERTIES CUDA_STANDARD 17 CUDA_STANDARD_REQUIRED ON
                                                   POSITION_INDEPENDENT_CODE ON)
  target_compile_options(fb_kernels_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall>)
  target_link_libraries(fb_kernels_cuda PUBLIC fb_cuda_probe CUDA::cudart_static CUDA::cublas)
  target_compile_definitions(fb_kernels_cuda PUBLIC FLIPBOOK_HAVE_CUDA=1)
endif()
