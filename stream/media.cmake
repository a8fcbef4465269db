add_library(fb_media STATIC ${CMAKE_CURRENT_SOURCE_DIR}/packet.c)
target_link_libraries(fb_media PUBLIC Threads::Threads)
