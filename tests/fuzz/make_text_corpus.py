#!/usr/bin/python3
"""Writes the seed corpora of the tokenizer and safetensors fuzz targets.

tests/fuzz/corpus/tokenizer/: inputs for fuzz_tokenizer.c, each = 2-byte little-endian model
length, the model bytes, then a text. Models: the small identity and byte-fallback models of
tests/data/tokenizer/ and a tiny unigram model trained here with a custom normalisation rule
table (so the precompiled character map and its double-array trie are exercised by a seed a
few kilobytes long).
tests/fuzz/corpus/safetensors/: small safetensors files (several dtypes, metadata, an empty
tensor, a U8 tensor carrying a tokenizer model as model files do).

Usage: /usr/bin/python3 tests/fuzz/make_text_corpus.py
"""
import io
import json
import os
import random
import struct
import tempfile

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data", "tokenizer")
TOK_OUT = os.path.join(HERE, "corpus", "tokenizer")
ST_OUT = os.path.join(HERE, "corpus", "safetensors")

RULES = "\n".join([
    "FF21\t41",        # full-width A -> A
    "FF22\t42",
    "FB01\t66 69",     # fi ligature -> f i
    "2460\t31",        # circled one -> 1
    "9\t20",           # tab -> space
    "3000\t20",        # ideographic space -> space
    "200B\t",          # zero width space -> nothing
]) + "\n"


def tiny_model():
    rng = random.Random(3)
    words = ["fire", "fly", "fox", "forest", "river", "stone", "light", "night", "snow", "tree"]
    sents = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 6))) for _ in range(400)]
    with tempfile.TemporaryDirectory() as d:
        tsv = os.path.join(d, "rules.tsv")
        with open(tsv, "w") as f:
            f.write(RULES)
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(sentence_iterator=iter(sents), model_writer=buf,
                                       model_type="unigram", vocab_size=40, minloglevel=2,
                                       normalization_rule_tsv=tsv, hard_vocab_limit=False,
                                       user_defined_symbols=["<x>"], num_threads=1)
        return buf.getvalue()


def tokenizer_corpus():
    os.makedirs(TOK_OUT, exist_ok=True)
    models = {"tiny": tiny_model()}
    for name in ("identity", "bytes"):
        with open(os.path.join(DATA, name + ".model"), "rb") as f:
            models[name] = f.read()
    texts = ["a red fox walks", "  Ａ\tﬁre ①\u3000x\u200by  ", "<x>fire<x> 🦄 é", "", "\xff"]
    n = 0
    for name, blob in models.items():
        assert len(blob) < 65536
        for t in (texts if name == "tiny" else texts[1:3]):
            raw = t.encode("utf-8", "surrogatepass") if t != "\xff" else b"\xff\xfe ok"
            with open(os.path.join(TOK_OUT, f"{name}_{n}"), "wb") as f:
                f.write(struct.pack("<H", len(blob)) + blob + raw)
            n += 1


def safetensors_file(tensors, metadata=None):
    header, data = {}, b""
    for name, (dtype, shape, payload) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(payload)]}
        data += payload
    if metadata is not None:
        header["__metadata__"] = metadata
    js = json.dumps(header).encode()
    js += b" " * (-len(js) % 8)
    return struct.pack("<Q", len(js)) + js + data


def safetensors_corpus():
    os.makedirs(ST_OUT, exist_ok=True)
    f32 = struct.pack("<6f", 1, -2, 3.5, 0, 1e-3, -7)
    files = {
        "basic": safetensors_file({"a.weight": ("F32", [2, 3], f32),
                                   "a.bias": ("F16", [2], struct.pack("<2H", 0x3c00, 0xc000))},
                                  {"flipbook.format": "1", "flipbook.config": "{}"}),
        "dtypes": safetensors_file({"bf": ("BF16", [2, 1], struct.pack("<2H", 0x3f80, 0x4000)),
                                    "d": ("F64", [1], struct.pack("<d", 2.5)),
                                    "i": ("I64", [2], struct.pack("<2q", 1, -1)),
                                    "u": ("U8", [3], b"abc"), "b": ("BOOL", [1], b"\x01"),
                                    "e": ("F32", [0, 4], b"")}),
        "scalar": safetensors_file({"s": ("I32", [], struct.pack("<i", 7))}, {}),
        "empty": safetensors_file({}),
    }
    with open(os.path.join(DATA, "identity.model"), "rb") as f:
        blob = f.read()
    files["tokenizer"] = safetensors_file({"tokenizer.spm": ("U8", [len(blob)], blob)},
                                          {"flipbook.name": "seed"})
    # Regression seeds: a repeated __metadata__ key (once overflowed the metadata arrays) and
    # a long tensor overlapping a later one across an empty tensor (once passed unnoticed).
    js = b'{"__metadata__":{"a":"1","b":"2"},"__metadata__":{"c":"3"}}'
    files["dup_metadata"] = struct.pack("<Q", len(js)) + js
    files["overlap"] = safetensors_file({"A": ("U8", [12], bytes(12)), "B": ("U8", [0], b""),
                                         "C": ("U8", [4], bytes(4))})
    files["overlap"] = files["overlap"].replace(b'"data_offsets": [12, 12]',
                                                b'"data_offsets": [2, 2]  ')
    files["overlap"] = files["overlap"].replace(b'"data_offsets": [12, 16]',
                                                b'"data_offsets": [4, 8]  ')
    for name, content in files.items():
        with open(os.path.join(ST_OUT, name), "wb") as f:
            f.write(content)


if __name__ == "__main__":
    tokenizer_corpus()
    safetensors_corpus()
