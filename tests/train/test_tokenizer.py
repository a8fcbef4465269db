"""train_tokenizer: the tokenizer stage is reproducible and fits the caption grammar."""
import os

from common import check, finish, tmpdir

from train import config as C
from train import state
from train import tokenizer as stage
from world import vocab


def main():
    tc = C.TrainConfig()
    tc.tokenizer.sentences = 300
    with tmpdir() as a, tmpdir() as b:
        budget = state.Budget()
        check(stage.run(a, tc, budget) and stage.run(b, tc, budget), "stage runs and reports done")
        ma = open(os.path.join(a, "tokenizer", "spm.model"), "rb").read()
        mb = open(os.path.join(b, "tokenizer", "spm.model"), "rb").read()
        check(ma == mb and len(ma) > 0, "two runs from one seed give identical model bytes")
        tok, meta = stage.load(a)
        words = vocab.vocabulary()
        split = [w for w in words if len(tok.pieces(w)) != 1]
        check(not split, "every grammar word is one piece (split: %s)" % split)
        ids = tok.encode("two red balls bouncing at sunset", meta["text_len"])
        check(ids[-1] == 1 and len(ids) == 7, "a 6-word caption is 6 pieces + EOS: %s" % ids)
        check(tok.encode("Two RED Balls  bouncing") == tok.encode("two red balls bouncing"),
              "case and extra spaces are normalised away")
        check(meta["text_len"] % 8 == 0 and meta["text_len"] >= meta["max_caption_tokens"] + 8,
              "text_len %d covers the longest caption %d with margin" % (meta["text_len"],
                                                                          meta["max_caption_tokens"]))
        check(tok.vocab_size == meta["vocab_size"] and tok.vocab_size <= tc.tokenizer.vocab_size,
              "vocab size %d recorded" % tok.vocab_size)
        # A finished stage is not redone, and other settings are refused.
        check(stage.run(a, tc, budget), "a finished stage returns done at once")
        tc.tokenizer.vocab_size += 1
        try:
            stage.run(a, tc, budget)
            check(False, "changed settings are refused")
        except SystemExit as e:
            check("other settings" in str(e), "changed settings are refused")
    finish()


if __name__ == "__main__":
    main()
