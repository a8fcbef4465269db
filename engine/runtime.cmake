# engine/runtime.cmake - the stream runtime: public API (engine.h), config parsing, counter
# RNG, flow-matching sampler, prompt-embedding cache.
list(APPEND FB_ENGINE_SOURCES
  ${CMAKE_CURRENT_SOURCE_DIR}/config.c
  ${CMAKE_CURRENT_SOURCE_DIR}/rng.c
  ${CMAKE_CURRENT_SOURCE_DIR}/sampler.c
  ${CMAKE_CURRENT_SOURCE_DIR}/prompt_cache.c)
