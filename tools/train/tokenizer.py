"""Stage "tokenizer": a SentencePiece unigram model of the caption grammar.

Trained on captions sampled from the world's grammar (every alternative phrasing), with umT5's
special ids (pad 0, eos 1, unk 2, no bos), nmt_nfkc_cf normalisation (so "Two Red Balls" means
"two red balls"; the engine's tokenizer reads the precompiled rule table from the model file),
single-threaded and on every sentence, so the same seed gives the same bytes. The vocabulary is
small enough that every word of the closed vocabulary becomes one piece; the stage checks that.

Writes <dir>/tokenizer/spm.model and meta.json {vocab_size, text_len, max_caption_tokens}:
text_len (the text encoder's max_tokens and the DiT's text_len) is the longest caption seen,
EOS included, plus a margin, rounded up to a multiple of 8.
"""
import io
import os

import sentencepiece as spm

from flipbook_ref.tokenizer import EOS_ID, PAD_ID, Tokenizer
from world import vocab

from . import data, state


def train_model(sentences, vocab_size, normalization):
    out = io.BytesIO()
    spm.SentencePieceTrainer.Train(
        sentence_iterator=iter(sentences), model_writer=out, vocab_size=vocab_size,
        model_type="unigram", pad_id=PAD_ID, eos_id=EOS_ID, unk_id=2, bos_id=-1,
        num_threads=1, hard_vocab_limit=False, character_coverage=1.0,
        input_sentence_size=0, shuffle_input_sentence=False,
        normalization_rule_name=normalization, minloglevel=2)
    return out.getvalue()


def paths(root):
    d = state.stage_dir(root, "tokenizer")
    return os.path.join(d, "spm.model"), os.path.join(d, "meta.json")


def is_done(root):
    m, j = paths(root)
    return os.path.exists(m) and os.path.exists(j)


def load(root):
    """(Tokenizer, meta dict) of a finished stage."""
    m, j = paths(root)
    if not is_done(root):
        raise SystemExit("train: the tokenizer stage has not run yet (tools/train.sh --stage tokenizer)")
    return Tokenizer.from_file(m), state.read_json(j)


def _store(root, tc, model_bytes, sentences, text_len=None):
    """Writes the stage's files (text_len None: measured on the sentences); returns the
    tokenizer, the longest caption in tokens (EOS included), text_len and the grammar words it
    splits into several pieces."""
    tok = Tokenizer(model_bytes)
    split = [w for w in vocab.vocabulary() if len(tok.pieces(w)) != 1]
    longest = max(len(tok.encode(s, 1 << 20)) for s in sentences)
    if text_len is None:
        text_len = -(-(longest + tc.tokenizer.text_len_margin) // 8) * 8
    model_path, meta_path = paths(root)
    os.makedirs(os.path.dirname(model_path), exist_ok=True)
    state.atomic_write(model_path, model_bytes)
    state.write_json(meta_path, {"vocab_size": tok.vocab_size, "text_len": text_len,
                                 "max_caption_tokens": longest, "sentences": len(sentences),
                                 "split_words": split, "settings": tc.stage_dict("tokenizer")})
    return tok, longest, text_len, split


def _sentences(tc):
    # Every word of the closed vocabulary appears at least once, whatever the sample.
    return data.tokenizer_sentences(tc.seed, tc.tokenizer.sentences) + vocab.vocabulary()


def install(root, tc, model_bytes, text_len):
    """Writes a finished stage from a model file's tokenizer bytes and text_len (train
    --init-from): the files run() writes."""
    _store(root, tc, model_bytes, _sentences(tc), text_len)


def run(root, tc, budget):
    st = tc.tokenizer
    model_path, meta_path = paths(root)
    settings = tc.stage_dict("tokenizer")
    if is_done(root):
        state.check_settings(state.read_json(meta_path)["settings"], settings, "tokenizer")
        return True
    sentences = _sentences(tc)
    model = train_model(sentences, st.vocab_size, st.normalization)
    tok, longest, text_len, split = _store(root, tc, model, sentences)
    if split:
        print("train[tokenizer]: note: words split into several pieces: %s" % ", ".join(split), flush=True)
    print("train[tokenizer]: %d pieces, longest caption %d tokens (EOS included), text_len %d"
          % (tok.vocab_size, longest, text_len), flush=True)
    return True
