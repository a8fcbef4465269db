# fb_media: the media half of stream/ - refcounted packets, RGB->I420 (BT.709 limited), the VP9
# realtime encoder (libvpx), the WebM muxer, the recorder (liburing with a pwrite fallback) and
# the diagnostic test pattern. Tests: tests/stream (ctest -R stream_), fuzz: tests/fuzz/webm.cmake.
add_library(fb_media STATIC
  ${CMAKE_CURRENT_SOURCE_DIR}/packet.c
  ${CMAKE_CURRENT_SOURCE_DIR}/colour.c
  ${CMAKE_CURRENT_SOURCE_DIR}/testpattern.c
  ${CMAKE_CURRENT_SOURCE_DIR}/vp9enc.c
  ${CMAKE_CURRENT_SOURCE_DIR}/webm.c
  ${CMAKE_CURRENT_SOURCE_DIR}/recorder.c)
target_link_libraries(fb_media PUBLIC Threads::Threads PkgConfig::VPX PkgConfig::URING m)
