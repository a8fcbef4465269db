# engine/runtime.cmake - the stream runtime: public API (engine.h: engine.c for models,
# engine_stream.c for streams), config parsing, counter RNG, flow-matching sampler,
# prompt-embedding cache.
list(APPEND FB_ENGINE_SOURCES
  ${CMAKE_CURRENT_SOURCE_DIR}/config.c
  ${CMAKE_CURRENT_SOURCE_DIR}/rng.c
  ${CMAKE_CURRENT_SOURCE_DIR}/sampler.c
  ${CMAKE_CURRENT_SOURCE_DIR}/prompt_cache.c
  ${CMAKE_CURRENT_SOURCE_DIR}/engine.c
  ${CMAKE_CURRENT_SOURCE_DIR}/engine_stream.c)
# "default" also resolves against the source tree the build was configured from.
set_source_files_properties(${CMAKE_CURRENT_SOURCE_DIR}/engine.c PROPERTIES
  COMPILE_DEFINITIONS "FLIPBOOK_SOURCE_DIR=\"${CMAKE_SOURCE_DIR}\"")
