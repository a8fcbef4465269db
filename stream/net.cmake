# fb_net: the flipbook.v1 protocol (cJSON), the per-client fan-out policy and the
# libwebsockets HTTP/WebSocket server. Packets (stream/packet.c) come from fb_media.
add_library(fb_net STATIC
  ${CMAKE_CURRENT_SOURCE_DIR}/protocol.c
  ${CMAKE_CURRENT_SOURCE_DIR}/fanout.c
  ${CMAKE_CURRENT_SOURCE_DIR}/ws_server.c)
target_link_libraries(fb_net PUBLIC fb_media PkgConfig::LWS PkgConfig::CJSON Threads::Threads m)
