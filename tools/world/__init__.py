"""The synthetic physical world flipbook's default model is trained on.

    import numpy as np
    from world import Scene, render_clip, clip_captions, parse_frame
    rng = np.random.default_rng(7)
    scene = Scene.sample(rng)
    frames, records = render_clip(scene, 32, size=(128, 128))
    print(clip_captions(records, rng=rng)["before"][0])
    print(parse_frame(frames[10]))

Modules: vocab (the closed vocabulary), physics, render, scene, caption, parser (pixels back
to attributes), dataset (npz shards), png. numpy and the standard library only.
"""

from . import vocab
from .caption import (caption, clip_captions, describe, matches, parse_caption, phrasings)
from .scene import ObjectSpec, Scene, Switch, render_clip
from .parser import parse_frame
from .png import write_png

__all__ = ["vocab", "caption", "clip_captions", "describe", "matches", "parse_caption",
           "phrasings", "ObjectSpec", "Scene", "Switch", "render_clip", "parse_frame", "write_png"]
