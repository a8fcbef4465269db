# CPU kernels: execution context (thread pool), GEMM through OpenBLAS, the fixed-order linear,
# norms, activations, RoPE, tiled attention, and the plain-C references the tests compare
# against.
list(APPEND FB_KERNEL_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/cpu/kctx.c
  ${CMAKE_CURRENT_LIST_DIR}/cpu/gemm.c
  ${CMAKE_CURRENT_LIST_DIR}/cpu/linear.c
  ${CMAKE_CURRENT_LIST_DIR}/cpu/norm.c
  ${CMAKE_CURRENT_LIST_DIR}/cpu/act.c
  ${CMAKE_CURRENT_LIST_DIR}/cpu/rope.c
  ${CMAKE_CURRENT_LIST_DIR}/cpu/attention.c
  ${CMAKE_CURRENT_LIST_DIR}/cpu/ref.c)
# The fast kernels are plain C loops written for the auto-vectoriser; -O3 lets it unroll and
# vectorise them even in RelWithDebInfo builds (-O2 leaves several loops scalar on GCC 12).
# -fno-trapping-math lets it if-convert the clamps in front of the branch-free exp (we never
# trap on FP exceptions); it changes no result, unlike -ffast-math, which is not used.
set_source_files_properties(
  ${CMAKE_CURRENT_LIST_DIR}/cpu/linear.c
  ${CMAKE_CURRENT_LIST_DIR}/cpu/norm.c
  ${CMAKE_CURRENT_LIST_DIR}/cpu/act.c
  ${CMAKE_CURRENT_LIST_DIR}/cpu/rope.c
  ${CMAKE_CURRENT_LIST_DIR}/cpu/attention.c
  PROPERTIES COMPILE_OPTIONS "-O3;-fno-trapping-math")
