# The flipbook.v1 control-message parser (stream/protocol.c) over arbitrary bytes, plus the
# builders fed with whatever it accepted, see fuzz_protocol.c.
flipbook_add_fuzzer(protocol SOURCES stream/protocol.c LIBS cjson m)
if(NOT FLIPBOOK_CLANG)
  # the gcc replay build needs cJSON's include folder too
  target_link_libraries(fuzz_protocol PRIVATE PkgConfig::CJSON)
endif()
