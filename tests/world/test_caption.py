"""Captions: the brief's example sentences, a closed vocabulary, several phrasings per scene,
and parse_caption reading every phrasing back to the scene it describes."""

from common import Checker, setup

setup()

import numpy as np  # noqa: E402

from world import (Scene, caption, clip_captions, describe, matches, parse_caption,  # noqa: E402
                   phrasings, render_clip, vocab)
from world.caption import merge_groups, seen_ids  # noqa: E402

c = Checker("world_caption")


def g(count, colour, kind, size=None, verb=None):
    return {"count": count, "size": size, "colour": colour, "kind": kind, "verb": verb}


examples = [
    ({"sky": "sunset", "ground": "none", "occluder": "pillar",
      "groups": [g(2, "red", "ball", verb="bouncing")]},
     "two red balls bouncing in front of a pillar at sunset"),
    ({"sky": "night", "ground": "grass", "occluder": "none",
      "groups": [g(1, "blue", "box", "small", "sliding")]},
     "a small blue box sliding on the grass at night"),
    ({"sky": "grid", "ground": "none", "occluder": "none",
      "groups": [g(3, "yellow", "triangle", verb="falling")]},
     "three yellow triangles falling on a grid"),
    ({"sky": "day", "ground": "sand", "occluder": "tree",
      "groups": [g(1, "orange", "ball", verb="rolling"), g(4, "white", "box", "big", "resting")]},
     "an orange ball rolling and four big white boxes resting in front of a tree on the sand "
     "on a sunny day"),
]
for desc, want in examples:
    got = caption(desc)
    c.check(got == want, "caption %r, expected %r" % (got, want))
    c.check(matches(desc, parse_caption(want)), "parse_caption(%r) = %r" % (want, parse_caption(want)))

words = set(vocab.vocabulary())
print("vocabulary: %d words" % len(words))
print(" ".join(sorted(words)))
c.check(len(words) < 120, "vocabulary grew to %d words" % len(words))

# Many scenes, with and without switches: every phrasing uses only vocabulary words, names
# every object group, and parses back to the scene.
used = set()
n_caps = 0
bad_vocab = bad_parse = 0
per_scene = []
for seed in range(150):
    rng = np.random.default_rng(500 + seed)
    scene = Scene.sample(rng)
    sw = scene.sample_switch(rng, 24) if seed % 3 == 0 else None
    _, recs = render_clip(scene, 24, size=(32, 32), switch=sw)
    caps = clip_captions(recs, sw.frame if sw else -1, rng, 4)
    if sw:
        seen = seen_ids(recs)
        sides = [(caps["before"], describe(recs, 0, sw.frame, seen)),
                 (caps["after"], describe(recs, sw.frame, None, seen))]
    else:
        sides = [(caps["before"], describe(recs))]
    per_scene += [len(texts) for texts, _ in sides]
    for texts, desc in sides:
        for t in texts:
            n_caps += 1
            ws = t.split()
            used.update(ws)
            if not set(ws) <= words:
                bad_vocab += 1
                print("  outside the vocabulary: %r" % t)
            if not matches(desc, parse_caption(t)):
                bad_parse += 1
                if bad_parse < 5:
                    print("  does not parse back: %r -> %r (scene %r)" % (t, parse_caption(t), desc))
c.check(bad_vocab == 0, "%d captions use words outside the vocabulary" % bad_vocab)
c.check(bad_parse == 0, "%d of %d captions do not parse back to their scene" % (bad_parse, n_caps))
c.check(min(per_scene) >= 3, "a scene got only %d phrasings" % min(per_scene))
unused = words - used
print("%d captions checked; words never used: %s" % (n_caps, sorted(unused) or "none"))
c.check(len(unused) <= 3, "vocabulary words the grammar never produced: %s" % sorted(unused))

# Phrasings of one description differ, the first is canonical, the grammar never counts
# beyond four.
desc = {"sky": "day", "ground": "grass", "occluder": "wall",
        "groups": [g(2, "red", "ball", "big", "bouncing"), g(1, "red", "ball", "small", "rolling")]}
ps = phrasings(desc, np.random.default_rng(1), 6)
c.check(len(set(ps)) == len(ps) >= 4 and ps[0] == caption(desc), "phrasings %r" % ps)
merged = merge_groups(desc["groups"], keep_size=False, keep_verb=False)
c.check(merged == [g(3, "red", "ball")], "merged groups %r" % merged)
for bad in ({"sky": "day", "ground": "none", "occluder": "none", "groups": []},
            {"sky": "day", "ground": "none", "occluder": "none", "groups": [g(5, "red", "ball")]}):
    try:
        caption(bad)
        c.check(False, "caption accepted %r" % bad)
    except ValueError:
        pass

# parse_caption on sentences outside the grammar: what it cannot read is left out.
p = parse_caption("A purple Triangle, resting under the stars!")
c.check(p["sky"] == "night" and p["groups"] == [g(1, "purple", "triangle", verb="resting")],
        "parse of free text %r" % p)
p = parse_caption("hello world")
c.check(p["sky"] is None and p["groups"] == [] and p["occluder"] == "none", "parse of nonsense %r" % p)

c.done()
