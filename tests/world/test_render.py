"""Rendering: sizes and aspect ratios, backgrounds, occluders in front, visible fractions,
anti-aliased edges, the ball's rotation marker, speed, the PNG writer, and input errors."""

import math
import time

from common import Checker, setup

setup()

import numpy as np  # noqa: E402

from world import Scene, render_clip, vocab  # noqa: E402
from world.png import decode_png, encode_png  # noqa: E402
from world.render import Renderer, floor_y  # noqa: E402
from world.scene import get_renderer  # noqa: E402

c = Checker("world_render")

# Sizes: the default two, and a wide one.
for H, W in ((128, 128), (256, 256), (128, 192)):
    rng = np.random.default_rng(H + W)
    scene = Scene.sample(rng, aspect=H / W, n_objects=3)
    frames, recs = render_clip(scene, 8, size=(H, W))
    c.check(frames.shape == (8, H, W, 3) and frames.dtype == np.uint8,
            "%dx%d: frames %s %s" % (W, H, frames.shape, frames.dtype))
    c.check(len(recs) == 8 and all(len(r["objects"]) == 3 for r in recs), "%dx%d: records" % (W, H))

# The same scene at 128 and 256 is the same picture: 256 averaged in 2x2 blocks is close to 128.
rng = np.random.default_rng(5)
scene = Scene.sample(rng, n_objects=4, occluder="tree", sky="day", ground="grass")
f128, _ = render_clip(scene, 6, size=(128, 128))
f256, _ = render_clip(scene, 6, size=(256, 256))
down = f256[-1].astype(np.float32).reshape(128, 2, 128, 2, 3).mean(axis=(1, 3))
err = float(np.abs(down - f128[-1]).mean())
c.check(err < 6.0, "128 and 256 renders differ by %.2f per channel on average" % err)

# Every background is its own picture.
ren = Renderer(128, 128)
bgs = {(s, g): ren.background(s, g).astype(np.float32) for s in vocab.SKIES for g in vocab.GROUNDS}
keys = list(bgs)
closest = min(float(np.abs(bgs[a] - bgs[b]).mean()) for i, a in enumerate(keys) for b in keys[i + 1:])
c.check(closest > 3.0, "two backgrounds are nearly the same (mean difference %.2f)" % closest)
skies = [ren.background(s, "none").astype(np.float32) for s in vocab.SKIES]
closest = min(float(np.abs(a - b).mean()) for i, a in enumerate(skies) for b in skies[i + 1:])
c.check(closest > 10.0, "two skies differ by only %.2f" % closest)

# Objects behind the occluder are hidden by it; the record says how much shows.
floor = floor_y("grass", 1.0)
occ = ("pillar", 0.5)
empty, _ = ren.render("day", "grass", [], occ)
frame, vis = ren.render("day", "grass", [("ball", "red", 0.5, 0.5, 0.04, 0.0)], occ)
c.check(vis[0] < 0.01, "ball behind the pillar shows %.3f" % vis[0])
c.check(np.array_equal(frame[40:90, 59:69], empty[40:90, 59:69]), "ball drawn over the pillar")
frame, vis = ren.render("day", "grass", [("ball", "red", 0.15, 0.5, 0.04, 0.0)], occ)
c.check(abs(vis[0] - 1.0) < 0.01, "free ball shows %.3f" % vis[0])
frame, vis = ren.render("day", "grass", [("box", "red", 0.0, 0.5, 0.065, 0.0)], None)
c.check(abs(vis[0] - 0.5) < 0.03, "box half out of the frame shows %.3f" % vis[0])
frame, vis = ren.render("day", "grass", [("box", "red", 0.2, 0.5, 0.065, 0.0),
                                         ("box", "blue", 0.2, 0.5, 0.04, 0.0)], None)
want = 1.0 - (0.04 / 0.065) ** 2
c.check(abs(vis[0] - want) < 0.03 and vis[1] > 0.99, "covered box shows %.3f, expected %.3f" % (vis[0], want))
# Occluders of every kind stand on the floor and cover something.
for kind in vocab.OCCLUDERS[1:]:
    f_occ, _ = ren.render("grey", "grass", [], (kind, 0.5))
    changed = np.abs(f_occ.astype(int) - ren.background("grey", "grass")).sum(-1) > 30
    rows = np.nonzero(changed.any(1))[0]
    c.check(changed.mean() > 0.03 and rows.max() <= math.ceil(floor * 128) + 1,
            "%s covers %.3f of the frame, lowest row %d" % (kind, changed.mean(), rows.max()))

# Anti-aliasing: a ball's edge has pixels between its rim and the background.
frame, _ = ren.render("grey", "none", [("ball", "white", 0.5, 0.5, 0.065, 0.0)], None)
row = frame[64, 40:64, 0].astype(int)
mids = [v for v in row if 30 < v < 115]
c.check(len(mids) >= 1, "no anti-aliased pixels at the ball's edge: %s" % row.tolist())

# The rotation marker turns with the angle.
a, _ = ren.render("grey", "none", [("ball", "yellow", 0.5, 0.5, 0.065, 0.0)], None)
b, _ = ren.render("grey", "none", [("ball", "yellow", 0.5, 0.5, 0.065, math.pi)], None)
c.check(np.abs(a.astype(int) - b).sum() > 1000, "marker does not move with the angle")
c.check(np.array_equal(a[:, ::-1], b) or np.abs(a[:, ::-1].astype(int) - b).mean() < 1.0,
        "marker at angle pi is not the mirror image of angle 0")

# Speed: a 128x128 frame with four objects and an occluder.
objs = [("ball", "red", 0.3, 0.5, 0.065, 0.3), ("box", "blue", 0.6, 0.7, 0.04, 0.0),
        ("triangle", "white", 0.8, 0.3, 0.065, 0.0), ("ball", "green", 0.1, 0.8, 0.04, 1.0)]
for size in (128, 256):
    r = get_renderer(size, size)
    r.render("day", "grass", objs, ("tree", 0.5))
    t0 = time.perf_counter()
    for _ in range(200):
        r.render("day", "grass", objs, ("tree", 0.5))
    ms = (time.perf_counter() - t0) / 200 * 1000
    print("render %dx%d: %.3f ms/frame (4 objects + tree)" % (size, size, ms))
    c.check(ms < 5.0, "rendering %d takes %.2f ms per frame" % (size, ms))
rng = np.random.default_rng(9)
scenes = [Scene.sample(rng) for _ in range(10)]
t0 = time.perf_counter()
for s in scenes:
    render_clip(s, 32)
ms = (time.perf_counter() - t0) / 320 * 1000
print("render_clip 128x128 (physics + drawing + records): %.3f ms/frame" % ms)
c.check(ms < 5.0, "render_clip takes %.2f ms per frame" % ms)

# PNG round trip, and its errors.
img = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
c.check(np.array_equal(decode_png(encode_png(img)), img), "PNG RGB round trip")
grey = img[..., 0].copy()
c.check(np.array_equal(decode_png(encode_png(grey)), grey), "PNG grey round trip")
for bad in (img.astype(np.float32), img[..., :2], np.zeros((0, 4, 3), np.uint8)):
    try:
        encode_png(bad)
        c.check(False, "encode_png accepted %s %s" % (bad.dtype, bad.shape))
    except ValueError:
        pass
try:
    decode_png(b"not a png")
    c.check(False, "decode_png accepted garbage")
except ValueError:
    pass

# Bad input is a clear error.
for args in ((("mars", "grass", [], None)), (("day", "lava", [], None)),
             (("day", "grass", [("ball", "pink", 0.5, 0.5, 0.04, 0.0)], None)),
             (("day", "grass", [], ("castle", 0.5)))):
    try:
        ren.render(*args)
        c.check(False, "render accepted %r" % (args,))
    except ValueError:
        pass
for size in ((8, 8), (128, 100)):
    try:
        render_clip(Scene.sample(np.random.default_rng(0)), 2, size=size)
        c.check(False, "render_clip accepted size %s" % (size,))
    except ValueError:
        pass

c.done()
