"""Prompt switches: each kind changes the scene at its frame and nowhere else, the records say
so, and the captions before and after differ by exactly that change."""

from common import Checker, setup

setup()

import numpy as np  # noqa: E402

from world import Scene, Switch, clip_captions, parse_caption, render_clip  # noqa: E402
from world.caption import object_counts  # noqa: E402
from world.scene import SWITCH_KINDS  # noqa: E402

c = Checker("world_switch")
T = 32
for kind in SWITCH_KINDS:
    for seed in range(6):
        rng = np.random.default_rng(300 + seed)
        scene = Scene.sample(rng, n_objects=3, occluder="none")
        sw = scene.sample_switch(rng, T, kind=kind)
        s = sw.frame
        c.check(T // 4 <= s <= 3 * T // 4, "%s: switch frame %d outside the middle half" % (kind, s))
        frames, recs = render_clip(scene, T, switch=sw)
        marks = [r["t"] for r in recs if r["switch"] is not None]
        c.check(marks == [s] and recs[s]["switch"]["kind"] == kind,
                "%s: switch recorded at frames %s, expected [%d]" % (kind, marks, s))
        ids_before = [sorted(o["id"] for o in r["objects"]) for r in recs[:s]]
        ids_after = [sorted(o["id"] for o in r["objects"]) for r in recs[s:]]
        caps = clip_captions(recs, s, rng, 3)
        before, after = parse_caption(caps["before"][0]), parse_caption(caps["after"][0])
        c.check(caps["before"][0] != caps["after"][0], "%s: the caption did not change" % kind)
        if kind == "recolour":
            oid, colour = sw.params["id"], sw.params["colour"]
            col = [[o["colour"] for o in r["objects"] if o["id"] == oid][0] for r in recs]
            c.check(col[s - 1] != colour and all(x == col[0] for x in col[:s])
                    and all(x == colour for x in col[s:]),
                    "recolour: colours of object %d over time %s" % (oid, col))
            n_b, n_a = object_counts(before), object_counts(after)
            c.check(sum(n_b.values()) == sum(n_a.values()) and n_b != n_a,
                    "recolour: objects %s -> %s" % (n_b, n_a))
        elif kind == "add":
            new = recs[s]["switch"]["params"]["object"]["id"]
            c.check(all(new not in ids for ids in ids_before) and all(new in ids for ids in ids_after),
                    "add: object %d present at the wrong frames" % new)
            o = [o for o in recs[-1]["objects"] if o["id"] == new][0]
            c.check(o["y"] > recs[s]["objects"][-1]["y"], "add: the new object did not fall in")
            c.check(sum(object_counts(after).values()) == sum(object_counts(before).values()) + 1,
                    "add: %r -> %r" % (caps["before"][0], caps["after"][0]))
        elif kind == "remove":
            gone = sw.params["id"]
            c.check(all(gone in ids for ids in ids_before) and all(gone not in ids for ids in ids_after),
                    "remove: object %d present at the wrong frames" % gone)
            c.check(sum(object_counts(after).values()) == sum(object_counts(before).values()) - 1,
                    "remove: %r -> %r" % (caps["before"][0], caps["after"][0]))
        else:
            skies = [r["sky"] for r in recs]
            new = sw.params["sky"]
            c.check(all(x == scene.sky for x in skies[:s]) and all(x == new for x in skies[s:])
                    and new != scene.sky, "sky: skies over time %s" % skies)
            c.check(before["sky"] == scene.sky and after["sky"] == new,
                    "sky: captions say %s -> %s" % (before["sky"], after["sky"]))
            d = float(np.abs(frames[s].astype(int) - frames[s - 1]).mean())
            c.check(d > 5.0, "sky: frames %d and %d differ by only %.2f" % (s - 1, s, d))
        # Everything that is not the switch carries on: the background stays put.
        if kind != "sky":
            c.check(before["sky"] == after["sky"], "%s: sky changed with the switch" % kind)

# Switches the scene cannot take, and bad switches, are clear errors.
rng = np.random.default_rng(1)
one = Scene.sample(rng, n_objects=1)
for bad in (lambda: one.sample_switch(rng, T, kind="remove"),
            lambda: Scene.sample(rng, n_objects=5).sample_switch(rng, T, kind="add"),
            lambda: one.sample_switch(rng, T, kind="explode"),
            lambda: render_clip(one, 8, switch=Switch("sky", 8, {"sky": "night"})),
            lambda: render_clip(one, 8, switch=Switch("melt", 2, {})),
            lambda: Scene.sample(rng, n_objects=6),
            lambda: Scene.sample(rng, sky="mars")):
    try:
        bad()
        c.check(False, "an impossible switch or scene was accepted")
    except ValueError:
        pass

# "The sky turns to night" is the most common sky switch.
nights = sum(Scene.sample(np.random.default_rng(900 + i), sky="day").sample_switch(
    np.random.default_rng(i), T, kind="sky").params["sky"] == "night" for i in range(60))
c.check(nights >= 25, "only %d of 60 sky switches go to night" % nights)

c.done()
