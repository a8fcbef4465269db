# The Wan2.1 causal DiT (engine/dit.h).
list(APPEND FB_ENGINE_SOURCES ${CMAKE_CURRENT_LIST_DIR}/dit.c)
