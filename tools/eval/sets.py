"""Held-out evaluation sets: prompts, noise seeds and the world's own clips of the same scenes.

Every item is a scene of the synthetic world (tools/world) drawn from a random stream that no
training stage uses, its caption(s) as the prompt, a noise seed for the generator, and the
rendered clip of that scene (the "world" column of the report: what the parser and captions
allow at best).

Streams. Training draws clip `i` of stage purpose `p` (1 autoencoder, 2 tokenizer, 3 DiT, 4 the
training's quick evaluation) from numpy's SeedSequence([20240611, p, i]), and the dataset
command from SeedSequence([seed, i]). The held-out scenes here come from
SeedSequence([HELDOUT_SEED, EVAL_PURPOSE, set_code, i]): four words of entropy (training's are
two or three) with purpose 9, which no stage uses, so no held-out scene is a training scene.
Noise seeds are NOISE_BASE + 100000 * set_code + 10 * i + k (k < seeds per prompt, at most 10;
i < 10000): numbers the training never passes to the engine's counter RNG (it draws its noise
from torch generators).

Sets (set_code):
    adherence (1)   no prompt switch; the canonical caption for even items, another phrasing
                    of the grammar (sizes or verbs dropped, other phrases) for odd ones
    steering (2)    one switch at a chunk boundary (chunk 2 or 3); switch kinds in turn
                    recolour, add, remove, sky; canonical captions before and after; scenes
                    where an object of a changed colour is hidden (occluder, above the frame)
                    in the chunk before or after the switch are drawn again
    permanence (3)  scenes with an occluder in which, in the world's clip, a moving object
                    passes fully behind it and comes out again (rejection sampling)
Drift streams reuse the first adherence prompts. The Frechet floor renders the same three sets
a second time from HELDOUT_SEED + 1 (another stream no training stage uses).

Thread-safety: plain functions; the world's renderer cache is per process.
"""
import dataclasses
from dataclasses import dataclass, field

import numpy as np

from world import Scene, clip_captions, render_clip

HELDOUT_SEED = 7310
EVAL_PURPOSE = 9
NOISE_BASE = 5_000_000
SET_CODES = {"adherence": 1, "steering": 2, "permanence": 3}
SWITCH_ORDER = ("recolour", "add", "remove", "sky")


@dataclass
class Geometry:
    """Frame size and chunk layout of the model under test (the world renders to match)."""
    height: int = 128
    width: int = 128
    fps: float = 16.0
    chunk_frames: int = 8          # video frames per chunk
    first_chunk_frames: int = 8    # of chunk 0 (the decoder may trim its warm-up frames)

    def boundary(self, k):
        """First frame of chunk k (k >= 0)."""
        return 0 if k == 0 else self.first_chunk_frames + (k - 1) * self.chunk_frames

    def chunks(self, n_frames):
        """[(start, end), ...] of the chunks covering frames [0, n_frames)."""
        out, k = [], 0
        while self.boundary(k) < n_frames:
            out.append((self.boundary(k), min(self.boundary(k + 1), n_frames)))
            k += 1
        return out

    def chunk_of(self, frame):
        if frame < self.first_chunk_frames:
            return 0
        return 1 + (frame - self.first_chunk_frames) // self.chunk_frames


@dataclass
class Item:
    set: str
    index: int
    prompts: list                 # [prompt] or [before, after]
    switch_frame: int             # first frame under prompts[1] (a chunk boundary), -1 if none
    n_frames: int
    seed: int                     # generator noise seed
    scene: Scene = field(repr=False)
    switch: object = field(default=None, repr=False)   # the world's Switch, or None
    switch_kind: str = ""
    note: str = ""

    @property
    def name(self):
        return "%s%03d%s" % (self.set, self.index, "" if self.seed % 10 == 0 else "s%d" % (self.seed % 10))

    def frame_prompts(self):
        """The prompt in effect at every frame."""
        return [self.prompts[1] if 0 <= self.switch_frame <= t else self.prompts[0]
                for t in range(self.n_frames)]

    def world_clip(self, geom):
        """(frames uint8 [T,H,W,3], records) of the scene as the world renders it."""
        return render_clip(self.scene, self.n_frames, size=(geom.height, geom.width),
                           switch=self.switch)


def scene_rng(set_name, index, master=HELDOUT_SEED):
    return np.random.default_rng([int(master), EVAL_PURPOSE, SET_CODES[set_name], int(index)])


def noise_seed(set_name, index, k=0):
    return NOISE_BASE + 100000 * SET_CODES[set_name] + 10 * int(index) + int(k)


def _aspect(geom):
    return geom.height / geom.width


def adherence_set(n, geom, n_frames=48, seeds=1, master=HELDOUT_SEED):
    out = []
    for i in range(n):
        rng = scene_rng("adherence", i, master)
        scene = Scene.sample(rng, aspect=_aspect(geom))
        _, records = render_clip(scene, n_frames, size=(geom.height, geom.width))
        caps = clip_captions(records, -1, rng, n=4)["before"]
        if i % 2 == 1 and len(caps) > 1:
            prompt, note = caps[1 + int(rng.integers(len(caps) - 1))], "phrasing"
        else:
            prompt, note = caps[0], "canonical"
        for k in range(seeds):
            out.append(Item("adherence", i, [prompt], -1, n_frames,
                            noise_seed("adherence", i, k), scene, note=note))
    return out


def _change_visible(records, change, frame, span, min_visible=0.6):
    """True when every object of a colour the switch changes shows at least min_visible in
    most frames of the chunk before the switch and of the chunk after it, so that the change
    can be seen (and not seen early) by anyone looking at the video."""
    colours = set(change.get("colours", {}))
    if not colours:
        return True
    for a, b in ((frame - span, frame), (frame, frame + span)):
        recs = records[max(a, 0):b]
        ok = sum(all(o["visible"] >= min_visible for o in r["objects"] if o["colour"] in colours)
                 for r in recs)
        if 2 * ok < len(recs):
            return False
    return True


def steering_set(n, geom, n_frames=48, seeds=1, master=HELDOUT_SEED, max_tries=60):
    """Switch pairs: the world's switch moved to a chunk boundary (chunk 2 or 3, or the middle
    chunk of a shorter clip), captions of the frames before and after it. A scene is drawn
    again while its switch would change something the video cannot show then (an object of a
    changed colour behind the occluder, or still above the frame, around the switch)."""
    from .metrics import switch_change
    n_chunks = len(geom.chunks(n_frames))
    if n_chunks < 4:
        raise ValueError("steering clips need at least 4 chunks (got %d frames)" % n_frames)
    out = []
    for i in range(n):
        rng = scene_rng("steering", i, master)
        want = SWITCH_ORDER[i % len(SWITCH_ORDER)]
        for _ in range(max_tries):
            scene = Scene.sample(rng, aspect=_aspect(geom))
            try:
                sw = scene.sample_switch(rng, n_frames, kind=want)   # "remove" needs 2 objects
            except ValueError:
                continue
            chunk = 2 + int(rng.integers(2)) if n_chunks >= 6 else n_chunks // 2
            sw = dataclasses.replace(sw, frame=geom.boundary(chunk))
            _, records = render_clip(scene, n_frames, size=(geom.height, geom.width), switch=sw)
            caps = clip_captions(records, sw.frame, None, n=1)
            prompts = [caps["before"][0], caps["after"][0]]
            change = switch_change(*prompts)
            if change and _change_visible(records, change, sw.frame, geom.chunk_frames):
                break
        else:
            raise RuntimeError("no visible %s switch in %d scenes" % (want, max_tries))
        for k in range(seeds):
            out.append(Item("steering", i, prompts, sw.frame, n_frames,
                            noise_seed("steering", i, k), scene, sw, want))
    return out


def _passes_behind(records, min_moving=0.15):
    """True when some object goes from mostly visible to hidden (< 10% showing) and back to
    mostly visible within the clip while moving sideways: a pass behind the occluder; and no
    object that was mostly visible hides for good (one that stops behind the occluder would be
    an event that the world's own clip fails: "vanished")."""
    by_id = {}
    for r in records:
        for o in r["objects"]:
            by_id.setdefault(o["id"], []).append(o)
    passes = False
    for obs in by_id.values():
        state = 0
        for o in obs:
            if state == 0 and o["visible"] >= 0.9:
                state = 1
            elif state == 1 and o["visible"] < 0.1:
                state = 2 if abs(o["vx"]) >= min_moving else 3
            elif state in (2, 3) and o["visible"] >= 0.9:
                passes = passes or state == 2
                state = 1
        if state in (2, 3):
            return False
    return passes


def permanence_set(n, geom, n_frames=64, seeds=1, master=HELDOUT_SEED, max_tries=400):
    out = []
    j = 0
    i = 0
    while len(out) < n * seeds:
        if j >= max_tries * max(n, 1):
            raise RuntimeError("found only %d permanence scenes in %d draws" % (i, j))
        rng = scene_rng("permanence", j, master)
        j += 1
        scene = Scene.sample(rng, occluder=["pillar", "tree", "wall"][j % 3],
                             objects=[(None, None, None, ("rolling", "sliding")[j % 2])] +
                             [(None, None, None, None)] * int(rng.integers(0, 3)),
                             aspect=_aspect(geom))
        _, records = render_clip(scene, n_frames, size=(geom.height, geom.width))
        if not _passes_behind(records):
            continue
        prompt = clip_captions(records, -1, None, n=1)["before"][0]
        for k in range(seeds):
            out.append(Item("permanence", i, [prompt], -1, n_frames,
                            noise_seed("permanence", i, k), scene, note="draw %d" % (j - 1)))
        i += 1
    return out


__all__ = ["Geometry", "Item", "adherence_set", "steering_set", "permanence_set",
           "noise_seed", "scene_rng", "HELDOUT_SEED", "NOISE_BASE"]
