"""Prompt -> token ids, the way the umT5 tokenizer is used by Wan2.1 (wan_causal.md sec. 6).

Text is cleaned first (HTML entities unescaped twice, surrounding whitespace stripped, runs of
whitespace collapsed to one space; upstream also runs ftfy, which Debian 12 lacks and which
leaves plain ASCII untouched), then encoded by the SentencePiece model, EOS (id 1) appended,
and truncated so that at most max_tokens ids remain with EOS kept last. Pad id is 0.
"""
import html
import re

import sentencepiece as spm

EOS_ID = 1
PAD_ID = 0


def clean(text):
    text = html.unescape(html.unescape(text))
    return re.sub(r"\s+", " ", text.strip())


class Tokenizer:
    def __init__(self, model_bytes):
        self.model_bytes = bytes(model_bytes)
        self.sp = spm.SentencePieceProcessor()
        self.sp.LoadFromSerializedProto(self.model_bytes)

    @classmethod
    def from_file(cls, path):
        with open(path, "rb") as f:
            return cls(f.read())

    @property
    def vocab_size(self):
        return self.sp.GetPieceSize()

    def encode(self, text, max_tokens=512):
        if max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        ids = self.sp.EncodeAsIds(clean(text))
        return ids[:max_tokens - 1] + [EOS_ID]

    def pieces(self, text):
        return self.sp.EncodeAsPieces(clean(text))


def train_tiny(sentences, vocab_size, model_type="unigram"):
    """Trains a small SentencePiece model on sentences (for test models); returns its bytes.

    Ids follow umT5: pad 0, eos 1, unk 2, no bos. Single-threaded so the result is
    reproducible."""
    import io
    out = io.BytesIO()
    spm.SentencePieceTrainer.Train(
        sentence_iterator=iter(sentences), model_writer=out, vocab_size=vocab_size,
        model_type=model_type, pad_id=PAD_ID, eos_id=EOS_ID, unk_id=2, bos_id=-1,
        num_threads=1, hard_vocab_limit=False, character_coverage=1.0,
        normalization_rule_name="nmt_nfkc", minloglevel=2)
    return out.getvalue()
