"""Prompt adherence and temporal consistency on rendered world clips: the clips of a prompt
agree with it; the same scenes with every object recoloured, or with an object deleted, do
not; per-frame colour flicker and one-pixel position jitter show in the temporal figures."""
from dataclasses import replace

from common import check, finish, need

need("numpy")
import numpy as np  # noqa: E402

from eval import metrics as M  # noqa: E402
from eval.sets import Geometry, adherence_set, permanence_set  # noqa: E402
from eval.track import build_tracks, parse_clip  # noqa: E402
from world import render_clip, vocab  # noqa: E402
from world.parser import perturb  # noqa: E402

G = Geometry()
FRAMES = 32


def score(items, clips):
    tot = {}
    for it, fr in zip(items, clips):
        cp = parse_clip(fr)
        M.merge(tot, M.adherence(cp, it.frame_prompts(), G.chunks(it.n_frames)))
    return {k: v["chunks"] for k, v in M.adherence_summary(tot).items()}


def rerender(item, objects):
    scene = replace(item.scene, objects=objects)
    return render_clip(scene, item.n_frames, size=(G.height, G.width))[0]


def swap(c):
    return vocab.COLOURS[(vocab.COLOURS.index(c) + 3) % len(vocab.COLOURS)]


items = adherence_set(4, G, FRAMES)
clean = [it.world_clip(G)[0] for it in items]
s = score(items, clean)
print("clean", s)
check(s["background"] >= 0.95, "world clips: background agrees (%.2f)" % s["background"])
check(s["colours"] >= 0.85, "world clips: colours agree (%.2f)" % s["colours"])
check(s["count"] >= 0.85, "world clips: count agrees (%.2f)" % s["count"])
check(s["ground"] >= 0.95 and s["occluder"] >= 0.95, "world clips: ground and occluder agree")

swapped = [rerender(it, [replace(o, colour=swap(o.colour)) for o in it.scene.objects])
           for it in items]
s = score(items, swapped)
print("colours swapped", s)
check(s["colours"] <= 0.1, "colours swapped: colours disagree (%.2f)" % s["colours"])
check(s["shapes"] <= 0.1, "colours swapped: colours and shapes disagree (%.2f)" % s["shapes"])
check(s["count"] >= 0.85, "colours swapped: the count still agrees (%.2f)" % s["count"])

deleted = [rerender(it, it.scene.objects[1:]) for it in items]
s = score(items, deleted)
print("one object deleted", s)
check(s["count"] <= 0.1, "object deleted: count disagrees (%.2f)" % s["count"])
check(s["background"] >= 0.95, "object deleted: background still agrees")

# A different sky under the same objects.
other = [render_clip(replace(it.scene, sky="night" if it.scene.sky != "night" else "teal"),
                     it.n_frames, size=(G.height, G.width))[0] for it in items]
s = score(items, other)
check(s["background"] <= 0.05, "other sky: background disagrees (%.2f)" % s["background"])

# Expected attributes of a caption.
e = M.expected("two red balls and a big blue box sliding in front of a pillar at sunset")
check(e["count"] == 3 and e["colours"] == {"red": 2, "blue": 1} and e["sky"] == "sunset"
      and e["occluder"] == "pillar" and e["shapes"] == {("red", "ball"): 2, ("blue", "box"): 1},
      "expected() reads a caption")
try:
    M.adherence(parse_clip(clean[0][:4]), ["x"] * 3, G.chunks(4))
    check(False, "adherence refuses a prompt list of the wrong length")
except ValueError:
    check(True, "adherence refuses a prompt list of the wrong length")

# Temporal consistency: colour flicker and position jitter against the clean clips.
titems = items[:3] + permanence_set(2, G, 48)
tclips = clean[:3] + [it.world_clip(G)[0] for it in titems[3:]]
rng = np.random.default_rng(3)


def temporal(clips):
    tot = {}
    for fr in clips:
        cp = parse_clip(fr)
        M.merge(tot, M.temporal(cp, build_tracks(cp)))
    return M.temporal_summary(tot)


base = temporal(tclips)
print("temporal clean", base)
check(base["tracks"] >= 5 and base["colour_std"] < 2.0 and base["flips"] == 0.0,
      "world clips: steady object colours (%.2f levels)" % base["colour_std"])
flick = temporal([np.stack([perturb(f, "shift", rng) for f in c]) for c in tclips])
check(flick["colour_std"] > base["colour_std"] + 3.0,
      "per-frame colour shift: colour spread grows (%.2f)" % flick["colour_std"])
jit = temporal([np.stack([np.roll(f, (int(rng.integers(-1, 2)), int(rng.integers(-1, 2))), (0, 1))
                          for f in c]) for c in tclips])
check(jit["accel"] > 1.5 * base["accel"],
      "one-pixel jitter: motion roughness grows (%.4f vs %.4f)" % (jit["accel"], base["accel"]))
still = temporal([np.repeat(c[:1], len(c), 0) for c in tclips])
check(still["speed"] < 0.5 * base["speed"], "a frozen clip: speed falls (%.3f vs %.3f)"
      % (still["speed"], base["speed"]))
finish()
