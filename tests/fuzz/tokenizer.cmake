# The SentencePiece .model parser and the encoder (engine/tokenizer.c) over arbitrary model
# bytes and text, see fuzz_tokenizer.c.
flipbook_add_fuzzer(tokenizer SOURCES engine/tokenizer.c)
