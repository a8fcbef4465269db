# engine/text.cmake - text encoder (umT5), SentencePiece tokenizer and the TAEHV streaming
# decoder/encoder.
list(APPEND FB_ENGINE_SOURCES
  ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer.c
  ${CMAKE_CURRENT_SOURCE_DIR}/t5.c
  ${CMAKE_CURRENT_SOURCE_DIR}/taehv.c)
