# kernels/conv.cmake - 2-D convolutions (3x3 / 1x1, stride 2, fused upsample, concat input)
# for the TAEHV decoder and encoder: im2col tiles times fb_sgemm.
list(APPEND FB_KERNEL_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/cpu/conv.c)
# The column fill and epilogue are plain loops for the auto-vectoriser (as cpu.cmake does).
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/cpu/conv.c PROPERTIES COMPILE_OPTIONS "-O3")
