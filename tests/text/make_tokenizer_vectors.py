#!/usr/bin/python3
"""Regenerates the tokenizer test vectors in tests/data/tokenizer/.

Trains three small SentencePiece unigram models with Debian's python3-sentencepiece on a
synthetic caption-like corpus (built here from templates, deterministic), then encodes a fixed
list of test strings with the reference implementation and writes the expected ids. The C test
(tests/text/test_tokenizer.c) loads the same .model files and must reproduce every id exactly.

Models:
  identity.model  normalization "identity", vocab 500, default special ids (unk 0, bos 1, eos 2)
  nfkc.model      normalization "nmt_nfkc", vocab 800, T5-style ids (pad 0, eos 1, unk 2, no bos),
                  user-defined symbols (one that NFKC would otherwise rewrite)
  bytes.model     normalization "identity" with byte_fallback, no dummy prefix, extra
                  whitespace kept, vocab 600

cases.txt, one case per line, space separated:
  MODEL MAX_TOKENS ADD_EOS HEX_TEXT ID ID ...
MAX_TOKENS 0 means no limit; with a limit the expected ids are the reference ids cut to the
limit, keeping EOS last when it is added (what a T5 tokenizer with truncation does).

Usage: /usr/bin/python3 tests/text/make_tokenizer_vectors.py [OUT_DIR]
"""
import io
import os
import random
import sys

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "data", "tokenizer")

SUBJECTS = ("a red fox", "an old lighthouse", "two cats", "a paper boat", "the city skyline",
            "a herd of horses", "a small robot", "an astronaut", "a glass teapot", "a hummingbird",
            "a steam train", "the northern lights", "a koi pond", "a windmill", "a jellyfish",
            "a street musician", "a snowy owl", "a hot air balloon", "a lonely tree", "waves")
VERBS = ("walks through", "flies over", "drifts across", "glows above", "runs along",
         "spins around", "floats beneath", "rests beside", "dances in", "climbs up")
PLACES = ("a misty forest", "a neon street at night", "the desert dunes", "a frozen lake",
          "rolling green hills", "a quiet harbour", "the rainy market", "a sunflower field",
          "a canyon at dawn", "the crowded station", "an underwater reef", "a candle-lit room")
STYLES = ("cinematic lighting", "soft focus", "shallow depth of field", "slow motion",
          "golden hour", "watercolor style", "high detail", "35mm film grain", "aerial view",
          "the camera slowly pans left", "handheld camera", "time-lapse", "4k", "vivid colors")
EXTRA = ("crème brûlée", "café au lait", "naïve façade", "Ünïcödé", "東京の夜", "雪が降る",
         "Привет мир", "ＦＵＬＬ　ＷＩＤＴＨ", "ﬁre ﬂies", "①②③", "x² + y²", "…and then",
         "“quoted”", "it's", "rock & roll", "50% off", "#1", "e-mail", "ℌello")


ADJECTIVES = ("ancient", "tiny", "enormous", "glowing", "rusty", "velvet", "translucent",
              "crimson", "emerald", "silver", "golden", "shadowy", "sparkling", "weathered",
              "delicate", "thunderous", "peaceful", "chaotic", "frosty", "humid", "dusty",
              "luminous", "mechanical", "wooden", "marble", "porcelain", "electric", "tangled",
              "smooth", "jagged", "hollow", "towering", "sleepy", "curious", "brave", "gentle")
NOUNS = ("lantern", "bicycle", "umbrella", "castle", "volcano", "glacier", "orchard", "bridge",
         "carousel", "library", "waterfall", "meadow", "cathedral", "submarine", "typewriter",
         "telescope", "butterfly", "dragonfly", "tortoise", "penguin", "octopus", "giraffe",
         "elephant", "squirrel", "raccoon", "flamingo", "chandelier", "spaceship", "caravan",
         "mushroom", "pinecone", "seashell", "fireworks", "thunderstorm", "rainbow", "blossom",
         "accordion", "balcony", "cobblestones", "dandelion", "escalator", "fountain", "gazebo",
         "harbor", "iceberg", "jukebox", "kaleidoscope", "labyrinth", "monastery", "nebula",
         "observatory", "pagoda", "quarry", "riverbank", "scarecrow", "trampoline", "vineyard",
         "wheelbarrow", "xylophone", "yacht", "zeppelin", "greenhouse", "skyscraper", "lagoon",
         "avalanche", "bonfire", "cactus", "driftwood", "eclipse", "fjord", "gondola")


def corpus(n, seed):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        if rng.random() < 0.5:
            s = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(PLACES)}"
        else:
            s = (f"a {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {rng.choice(VERBS)} the "
                 f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}")
        for _ in range(rng.randint(0, 3)):
            s += ", " + rng.choice(STYLES)
        if rng.random() < 0.15:
            s += " " + rng.choice(EXTRA)
        if rng.random() < 0.3:
            s = s[0].upper() + s[1:] + "."
        out.append(s)
    return out


def train(**kw):
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus(6000, 7)), model_writer=buf,
                                   model_type="unigram", minloglevel=2, character_coverage=1.0,
                                   num_threads=1, hard_vocab_limit=False, **kw)
    return buf.getvalue()


MODELS = {
    "identity": dict(vocab_size=500, normalization_rule_name="identity"),
    "nfkc": dict(vocab_size=800, normalization_rule_name="nmt_nfkc", pad_id=0, eos_id=1,
                 unk_id=2, bos_id=-1, user_defined_symbols=["<cam>", "ℌ"]),
    "bytes": dict(vocab_size=600, normalization_rule_name="identity", byte_fallback=True,
                  add_dummy_prefix=False, remove_extra_whitespaces=False),
}

TEXTS = [
    "", " ", "   ", "\t\n", "a", "A red fox walks through a misty forest",
    "  a red fox   walks\tthrough a misty forest  ", "two cats, cinematic lighting, 4k",
    "The camera slowly pans left.", "crème brûlée café au lait", "naïve façade Ünïcödé",
    "東京の夜 雪が降る", "Привет мир", "ＦＵＬＬ　ＷＩＤＴＨ text", "ﬁre ﬂies ①②③",
    "x² + y² = z²", "…and then “quoted” it's", "rock & roll 50% off #1 e-mail",
    "ℌello world", "emoji 🦄🌈 unicorn", "unknown symbols ☃ ♞ ⌘ ∰", "zebra quokka xylophone",
    "a\u00a0non-breaking\u2003em\u3000space", "tabs\tand\nnewlines\r\nmixed",
    "combining e\u0301 and a\u0308", "<cam> zooms in <cam>", "</s> <unk> <pad> <s>",
    "UPPER lower MiXeD", "numbers 0123456789 3.14159", "!!!???...,,,;;;:::",
    "a" * 60, "ab" * 40, " ".join(["forest"] * 30),
    "\u200bzero\u200bwidth\ufeffbom", "\U0001F600\U0001F601 smile", "Ωμέγα ω",
    "ｶﾀｶﾅ half-width katakana", "trailing spaces    ", "    leading spaces",
]
# Byte strings that are not valid UTF-8 (the reference replaces each bad byte with U+FFFD).
BYTE_TEXTS = [b"ab\xffcd", b"\xc3", b"\xe2\x82", b"ok \xf0\x9f\x98 then", b"\xed\xa0\x80x",
              b"\xc0\xaf over", b"nul\x00inside"]
LIMITS = [(0, 0), (0, 1), (8, 1), (1, 1), (5, 0)]


def random_texts(n, seed):
    """Random strings mixing corpus words, punctuation, whitespace of every kind, accents,
    compatibility characters (NFKC rewrites them), CJK, emoji and controls."""
    rng = random.Random(seed)
    words = [w for s in SUBJECTS + PLACES + STYLES + NOUNS + ADJECTIVES for w in s.split()]
    pool = (list(" \t\n\r\u00a0\u2003\u3000\u200b,.;:!?'\"()-_/") +
            list("éèêëàâäôöüùçñßøåæœ") + list("ﬁﬂ①②³½ＡＢＣａｂｃｶﾀ™℃") +
            list("中文字東京雪夜山水") + ["\U0001F984", "\U0001F308", "\u0301", "\u0308",
                                      "\u2581", "\x00", "\x7f", "\ufeff", "<cam>", "ℌ"])
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 12)):
            parts.append(rng.choice(words) if rng.random() < 0.6 else
                         "".join(rng.choice(pool) for _ in range(rng.randint(1, 4))))
        out.append("".join(p + rng.choice(["", " ", "  ", "\t"]) for p in parts))
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    lines = []
    for name, kw in MODELS.items():
        blob = train(**kw)
        with open(os.path.join(OUT, name + ".model"), "wb") as f:
            f.write(blob)
        sp = spm.SentencePieceProcessor(model_proto=blob)
        eos = sp.eos_id()
        randoms = [t.encode("utf-8") for t in random_texts(150, 11)]
        for raw in [t.encode("utf-8") for t in TEXTS] + BYTE_TEXTS + randoms:
            ids = sp.encode(raw)
            for max_tokens, add_eos in (LIMITS if raw not in randoms else [(0, 0)]):
                if add_eos and eos < 0:
                    continue
                want = list(ids)
                if max_tokens:
                    want = want[:max_tokens - 1 if add_eos else max_tokens]
                if add_eos:
                    want.append(eos)
                lines.append(" ".join([name, str(max_tokens), str(add_eos), raw.hex() or "-"] +
                                      [str(i) for i in want]))
    with open(os.path.join(OUT, "cases.txt"), "w") as f:
        f.write("# generated by tests/text/make_tokenizer_vectors.py; "
                "MODEL MAX_TOKENS ADD_EOS HEX_TEXT IDS...\n")
        f.write("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} cases to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
