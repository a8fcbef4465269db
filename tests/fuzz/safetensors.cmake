# The safetensors header parser over arbitrary bytes (fb_st_open_memory), see
# fuzz_safetensors.c.
flipbook_add_fuzzer(safetensors SOURCES engine/safetensors.c LIBS cjson)
