"""Scenes from a seed, prompt switches, and clip rendering with a ground-truth record per frame.

A Scene is the initial condition of a clip: sky, ground, occluder and objects with their
starting positions, velocities and materials. `Scene.sample(rng)` draws one; `render_clip` runs
the physics and the renderer for n frames and returns the frames plus, per frame, every object's
kind, colour, size, position, velocity, visible fraction and motion verb. A `Switch` changes the
scene mid-clip (recolour, add, remove an object, or change the sky) the way a user's new prompt
would, and is recorded in the frame it happens.

Everything is deterministic given the numpy Generator passed in. Units are world units: the frame
is 1.0 wide and `aspect` (= H/W) tall, y down. Not thread-safe: the renderer cache is per process.
"""

import math
from dataclasses import dataclass, field, replace

import numpy as np

from . import vocab
from .physics import Body, World
from .render import Renderer, floor_y

FPS = 16
MAX_OBJECTS = 5          # a scene starts with 1-4 objects; an "add" switch may make it 5
BOUNCE_MEMORY = 56       # frames after a bounce during which an airborne object is "bouncing"
                         # (3.5 s: a bounce under gravity 0.3 stays in the air about that long)
MOVING_SPEED = 0.06      # units/s: slower than this on a support is "resting"

# Motions a scene asks an object to make, per kind, with sampling weights.
_INTENTS = {
    "ball": (("bouncing", 0.35), ("rolling", 0.3), ("falling", 0.2), ("resting", 0.15)),
    "box": (("sliding", 0.4), ("falling", 0.3), ("resting", 0.15), ("bouncing", 0.15)),
    "triangle": (("sliding", 0.4), ("falling", 0.3), ("resting", 0.15), ("bouncing", 0.15)),
}


@dataclass
class ObjectSpec:
    """One object's initial state and material."""
    kind: str
    colour: str
    size: str
    x: float
    y: float
    vx: float = 0.0
    vy: float = 0.0
    restitution: float = 0.5
    friction: float = 0.2
    intent: str = "resting"
    angle: float = 0.0

    @property
    def h(self):
        return vocab.SIZE_HALF[self.size]


@dataclass
class Switch:
    """A change applied at the start of `frame`.

    kind "recolour": params {"id", "colour"}; "add": {"object": ObjectSpec};
    "remove": {"id"}; "sky": {"sky"}.
    """
    kind: str
    frame: int
    params: dict = field(default_factory=dict)

    def to_json(self):
        p = dict(self.params)
        if "object" in p:
            o = p["object"]
            p["object"] = {"kind": o.kind, "colour": o.colour, "size": o.size, "x": o.x, "y": o.y}
        return {"kind": self.kind, "frame": self.frame, "params": p}


SWITCH_KINDS = ("recolour", "add", "remove", "sky")


def _choice(rng, items, weights=None):
    if weights is None:
        return items[int(rng.integers(len(items)))]
    w = np.asarray(weights, np.float64)
    return items[int(rng.choice(len(items), p=w / w.sum()))]


def _check(name, value, allowed):
    if value not in allowed:
        raise ValueError("unknown %s %r (known: %s)" % (name, value, ", ".join(allowed)))


@dataclass
class Scene:
    sky: str
    ground: str
    occluder: str
    occluder_x: float
    objects: list
    aspect: float = 1.0

    @property
    def floor(self):
        return floor_y(self.ground, self.aspect)

    # --- sampling -----------------------------------------------------------------------

    @staticmethod
    def sample_object(rng, kind, colour, size, floor, taken, intent=None, aspect=1.0):
        """Place one object of a given kind/colour/size, avoiding the boxes in `taken`
        (list of (x0, y0, x1, y1)); appends its box to `taken`."""
        h = vocab.SIZE_HALF[size]
        if intent is None:
            names, weights = zip(*_INTENTS[kind])
            intent = _choice(rng, names, weights)
        if intent == "rolling" and kind != "ball":
            intent = "sliding"
        if intent == "sliding" and kind == "ball":
            intent = "rolling"
        sign = 1.0 if rng.random() < 0.5 else -1.0
        for attempt in range(60):
            x = float(rng.uniform(h + 0.01, 1.0 - h - 0.01))
            vx = vy = 0.0
            if intent == "bouncing":
                # Launched upwards from just above the floor, as if it had just bounced: under
                # the slow gravity a ball dropped from mid-air spends its first ~2 s falling,
                # longer than most clips.
                y = floor - h - float(rng.uniform(0.0, 0.12))
                vx = sign * float(rng.uniform(0.05, 0.25))
                vy = -float(rng.uniform(0.35, 0.6))
                e = float(rng.uniform(0.82, 0.93) if kind == "ball" else rng.uniform(0.65, 0.8))
                mu = 0.02 if kind == "ball" else 0.1
            elif intent == "falling":
                y = float(rng.uniform(-0.12, 0.2) * aspect)
                vx = sign * float(rng.uniform(0.0, 0.08))
                e = 0.35 if kind == "ball" else 0.2
                mu = 0.05 if kind == "ball" else 0.3
            elif intent in ("rolling", "sliding"):
                y = floor - h
                # At most ~4 pixels per frame: the autoencoder packs 4 frames into one latent
                # frame, and faster objects came back smeared.
                vx = sign * float(rng.uniform(0.15, 0.4) if kind == "ball" else rng.uniform(0.25, 0.5))
                e = 0.5 if kind == "ball" else 0.3
                mu = 0.015 if kind == "ball" else float(rng.uniform(0.04, 0.12))
            else:  # resting
                y = floor - h
                e, mu = 0.3, 0.4
            box = (x - h - 0.01, y - h - 0.01, x + h + 0.01, y + h + 0.01)
            if all(box[2] <= t[0] or t[2] <= box[0] or box[3] <= t[1] or t[3] <= box[1] for t in taken):
                break
        else:
            # Crowded: drop it in from above the frame instead (it will find room).
            intent, y, vy = "falling", -h - 0.05 - 0.15 * len(taken), 0.0
            box = (x - h, y - h, x + h, y + h)
            e, mu = 0.3, 0.2
        taken.append(box)
        angle = float(rng.uniform(0.0, 2.0 * math.pi))
        return ObjectSpec(kind, colour, size, x, y, vx, vy, e, mu, intent, angle)

    @classmethod
    def sample(cls, rng, n_objects=None, sky=None, ground=None, occluder=None, objects=None,
               aspect=1.0):
        """Draw a scene. Any argument left None is sampled.

        objects: optional list of (kind, colour, size, intent) with any field None to sample it.
        """
        if sky is None:
            sky = _choice(rng, vocab.SKIES)
        _check("sky", sky, vocab.SKIES)
        if ground is None:
            outdoor = sky in ("day", "sunset", "night")
            p_none = 0.15 if outdoor else 0.6
            ground = "none" if rng.random() < p_none else _choice(rng, vocab.GROUNDS[1:])
        _check("ground", ground, vocab.GROUNDS)
        if occluder is None:
            occluder = _choice(rng, vocab.OCCLUDERS, (0.3, 0.24, 0.23, 0.23))
        _check("occluder", occluder, vocab.OCCLUDERS)
        occluder_x = float(rng.uniform(0.25, 0.75))
        floor = floor_y(ground, aspect)
        if objects is None:
            if n_objects is None:
                n_objects = int(rng.integers(1, 5))
            if not 1 <= n_objects <= MAX_OBJECTS:
                raise ValueError("n_objects must be 1..%d, got %d" % (MAX_OBJECTS, n_objects))
            # Repeat an earlier object's look now and then, so that captions say "two red
            # balls"; sometimes every object looks the same ("three yellow triangles").
            same = n_objects > 1 and rng.random() < 0.2
            objects = []
            for i in range(n_objects):
                if objects and (same or rng.random() < 0.35):
                    k, c, s, _ = objects[int(rng.integers(len(objects)))]
                    objects.append((k, c, s, None))
                else:
                    objects.append((_choice(rng, vocab.KINDS), _choice(rng, vocab.COLOURS),
                                    _choice(rng, vocab.SIZES), None))
        specs, taken, counts = [], [], {}
        for k, c, s, intent in objects:
            k = k if k is not None else _choice(rng, vocab.KINDS)
            c = c if c is not None else _choice(rng, vocab.COLOURS)
            s = s if s is not None else _choice(rng, vocab.SIZES)
            _check("kind", k, vocab.KINDS)
            _check("colour", c, vocab.COLOURS)
            _check("size", s, vocab.SIZES)
            if counts.get((k, c), 0) >= vocab.MAX_PER_GROUP:
                c = _choice(rng, [x for x in vocab.COLOURS if x != c])
            counts[(k, c)] = counts.get((k, c), 0) + 1
            specs.append(cls.sample_object(rng, k, c, s, floor, taken, intent, aspect))
        return cls(sky, ground, occluder, occluder_x, specs, aspect)

    def sample_switch(self, rng, n_frames, kind=None):
        """A prompt switch somewhere in the middle half of an n-frame clip."""
        kinds = [k for k in SWITCH_KINDS
                 if not (k == "add" and len(self.objects) >= MAX_OBJECTS)
                 and not (k == "remove" and len(self.objects) < 2)]
        if kind is None:
            kind = _choice(rng, kinds)
        elif kind not in kinds:
            raise ValueError("switch %r is not possible in this scene (possible: %s)"
                             % (kind, ", ".join(kinds)))
        frame = int(rng.integers(max(1, n_frames // 4), max(2, (3 * n_frames) // 4 + 1)))
        if kind == "recolour":
            i = int(rng.integers(len(self.objects)))
            old = self.objects[i]
            used = {o.colour for o in self.objects if o.kind == old.kind}
            choices = [c for c in vocab.COLOURS if c != old.colour and c not in used] or \
                      [c for c in vocab.COLOURS if c != old.colour]
            return Switch(kind, frame, {"id": i, "colour": _choice(rng, choices)})
        if kind == "remove":
            return Switch(kind, frame, {"id": int(rng.integers(len(self.objects)))})
        if kind == "sky":
            others = [s for s in vocab.SKIES if s != self.sky]
            sky = "night" if self.sky != "night" and rng.random() < 0.5 else _choice(rng, others)
            return Switch(kind, frame, {"sky": sky})
        # add: drop a new object in from above the frame.
        counts = {}
        for o in self.objects:
            counts[(o.kind, o.colour)] = counts.get((o.kind, o.colour), 0) + 1
        while True:
            k = _choice(rng, vocab.KINDS)
            c = _choice(rng, vocab.COLOURS)
            if counts.get((k, c), 0) < vocab.MAX_PER_GROUP:
                break
        s = _choice(rng, vocab.SIZES)
        h = vocab.SIZE_HALF[s]
        spec = ObjectSpec(k, c, s, float(rng.uniform(h + 0.02, 1.0 - h - 0.02)), -h - 0.01,
                          float(rng.uniform(-0.2, 0.2)), 0.3,
                          0.85 if k == "ball" and rng.random() < 0.5 else 0.3,
                          0.05 if k == "ball" else 0.2, "falling",
                          float(rng.uniform(0.0, 2.0 * math.pi)))
        return Switch(kind, frame, {"object": spec})


def _verb(b, frame):
    if b.impact:
        return "bouncing"
    if b.supported:
        if abs(b.vx) > MOVING_SPEED:
            return "rolling" if b.kind == "ball" else "sliding"
        return "resting"
    return "bouncing" if frame - b.last_bounce <= BOUNCE_MEMORY else "falling"


_renderers = {}


def get_renderer(height, width):
    """A per-process shared Renderer for a size (backgrounds are built once)."""
    r = _renderers.get((height, width))
    if r is None:
        r = Renderer(height, width)
        _renderers[(height, width)] = r
    return r


def render_clip(scene, n_frames, size=(128, 128), switch=None):
    """Simulate and draw n_frames at 16 fps.

    size: (H, W) in pixels; H/W must equal scene.aspect.
    switch: optional Switch applied at the start of switch.frame.
    Returns (frames uint8 [T,H,W,3], records: list of one dict per frame):
      {"t", "sky", "ground", "occluder", "occluder_x", "switch" (None or Switch.to_json()),
       "objects": [{"id", "kind", "colour", "size", "x", "y", "vx", "vy", "h", "angle",
                    "visible", "verb"}, ...] in drawing order}
    """
    H, W = int(size[0]), int(size[1])
    if n_frames < 1:
        raise ValueError("n_frames must be at least 1, got %d" % n_frames)
    if abs(H / W - scene.aspect) > 1e-6:
        raise ValueError("size %dx%d does not match the scene's aspect %.4f" % (W, H, scene.aspect))
    if switch is not None:
        if switch.kind not in SWITCH_KINDS:
            raise ValueError("unknown switch kind %r" % (switch.kind,))
        if not 0 <= switch.frame < n_frames:
            raise ValueError("switch frame %d outside the clip (0..%d)" % (switch.frame, n_frames - 1))
    ren = get_renderer(H, W)
    world = World(1.0, scene.aspect, scene.floor, FPS)
    for i, o in enumerate(scene.objects):
        world.bodies.append(Body(i, o.kind, o.colour, o.size, o.x, o.y, o.h, o.vx, o.vy,
                                 o.restitution, o.friction, o.angle))
        if o.intent == "bouncing" and o.vy < 0:
            world.bodies[-1].last_bounce = 0     # it starts on the way up from a bounce
    next_id = len(scene.objects)
    sky = scene.sky
    occ = (scene.occluder, scene.occluder_x)
    frames = np.empty((n_frames, H, W, 3), np.uint8)
    records = []
    for t in range(n_frames):
        sw = None
        if switch is not None and t == switch.frame:
            sw = switch.to_json()
            p = switch.params
            if switch.kind == "recolour":
                for b in world.bodies:
                    if b.id == p["id"]:
                        b.colour = p["colour"]
            elif switch.kind == "remove":
                world.bodies = [b for b in world.bodies if b.id != p["id"]]
            elif switch.kind == "sky":
                sky = p["sky"]
            else:
                o = p["object"]
                world.bodies.append(Body(next_id, o.kind, o.colour, o.size, o.x, o.y, o.h, o.vx,
                                         o.vy, o.restitution, o.friction, o.angle))
                sw["params"]["object"]["id"] = next_id
                next_id += 1
        world.step()
        draw = [(b.kind, b.colour, b.x, b.y, b.h, b.angle) for b in world.bodies]
        frame, visible = ren.render(sky, scene.ground, draw, occ)
        frames[t] = frame
        objs = []
        for b, v in zip(world.bodies, visible):
            objs.append({"id": b.id, "kind": b.kind, "colour": b.colour, "size": b.size,
                         "x": b.x, "y": b.y, "vx": b.vx, "vy": b.vy, "h": b.h,
                         "angle": b.angle, "visible": v, "verb": _verb(b, world.frame - 1)})
        records.append({"t": t, "sky": sky, "ground": scene.ground, "occluder": scene.occluder,
                        "occluder_x": scene.occluder_x, "switch": sw, "objects": objs})
    return frames, records


def scene_with(scene, **changes):
    """A copy of a scene with some fields replaced (objects list copied too)."""
    s = replace(scene, **changes)
    if "objects" not in changes:
        s.objects = [replace(o) for o in scene.objects]
    return s
