# The WebM muxer driven by arbitrary call sequences; every output must parse with the
# independent reader of tests/stream/ebml_check.c (see fuzz_webm.c).
flipbook_add_fuzzer(webm SOURCES stream/webm.c tests/stream/ebml_check.c)
