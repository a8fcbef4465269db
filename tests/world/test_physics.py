"""Physics: determinism, walls and floor hold, no tunnelling, restitution, friction, rolling,
stacking, no energy gain, and the motion verbs recorded per frame."""

import math

from common import Checker, setup

setup()

import numpy as np  # noqa: E402

from world import Scene, render_clip, vocab  # noqa: E402
from world.physics import GRAVITY, MAX_SPEED, Body, World, collide  # noqa: E402
from world.scene import ObjectSpec  # noqa: E402

c = Checker("world_physics")


def run(bodies, n, floor=0.86, fps=16):
    w = World(1.0, 1.0, floor, fps)
    w.bodies = bodies
    states = []
    for _ in range(n):
        w.step()
        states.append([(b.x, b.y, b.vx, b.vy, b.angle, b.supported, b.impact) for b in w.bodies])
    return w, states


# Same seed, same clip, bit for bit.
for seed in (1, 2, 3):
    rng = np.random.default_rng(seed)
    scene = Scene.sample(rng)
    sw = scene.sample_switch(rng, 40)
    f1, r1 = render_clip(scene, 40, switch=sw)
    rng = np.random.default_rng(seed)
    scene = Scene.sample(rng)
    sw = scene.sample_switch(rng, 40)
    f2, r2 = render_clip(scene, 40, switch=sw)
    c.check(np.array_equal(f1, f2) and r1 == r2, "seed %d: two renders differ" % seed)

# Random scenes with switches: walls and floor hold, bodies do not sink into each other.
worst_wall = worst_floor = worst_pen = 0.0
for seed in range(80):
    rng = np.random.default_rng(1000 + seed)
    scene = Scene.sample(rng)
    sw = scene.sample_switch(rng, 48) if seed % 2 else None
    _, recs = render_clip(scene, 48, size=(64, 64), switch=sw)
    for r in recs:
        obs = r["objects"]
        for o in obs:
            worst_wall = max(worst_wall, -(o["x"] - o["h"]), o["x"] + o["h"] - 1.0)
            worst_floor = max(worst_floor, o["y"] + o["h"] - scene.floor)
        bs = [Body(o["id"], o["kind"], o["colour"], o["size"], o["x"], o["y"], o["h"]) for o in obs]
        for i in range(len(bs)):
            for k in range(i + 1, len(bs)):
                hit = collide(bs[i], bs[k])
                if hit:
                    worst_pen = max(worst_pen, hit[2])
print("worst wall overshoot %.4f, floor %.4f, overlap %.4f (world units; 1 px at 128 = 0.0078)"
      % (worst_wall, worst_floor, worst_pen))
c.check(worst_wall < 0.004, "objects pass the walls by %.4f" % worst_wall)
c.check(worst_floor < 0.004, "objects sink into the floor by %.4f" % worst_floor)
c.check(worst_pen < 0.005, "objects overlap by %.4f" % worst_pen)

# No tunnelling: a small ball at the speed cap against a small box on the floor.
ball = Body(0, "ball", "red", "small", 0.1, 0.86 - 0.04, 0.04, vx=MAX_SPEED, restitution=0.9, friction=0.0)
box = Body(1, "box", "blue", "small", 0.5, 0.86 - 0.04, 0.04, restitution=0.9, friction=0.0)
w, states = run([ball, box], 40)
c.check(all(s[0][0] < s[1][0] for s in states), "a ball at %.1f units/s passed through a box" % MAX_SPEED)

# Restitution: a dropped ball comes back up to about e^2 of its drop height.
e = 0.8
ball = Body(0, "ball", "red", "big", 0.5, 0.3, 0.065, restitution=e, friction=0.0)
w, states = run([ball], 48)
ys = [s[0][1] for s in states]
drop = (0.86 - 0.065) - 0.3
first = next(i for i in range(1, len(ys)) if ys[i] < ys[i - 1])  # the bounce
apex = min(ys[first:])
rebound = (0.86 - 0.065) - apex
print("drop %.3f, rebound %.3f, ratio %.3f (e^2 = %.3f)" % (drop, rebound, rebound / drop, e * e))
c.check(abs(rebound / drop - e * e) < 0.12, "rebound ratio %.3f, expected about %.2f" % (rebound / drop, e * e))
c.check(min(ys) >= 0.3 - 1e-6, "a bounce went higher than the drop")

# Friction: a box sliding at v on friction mu stops after about v^2 / (2 mu g).
v, mu = 0.3, 0.6
box = Body(0, "box", "blue", "big", 0.1, 0.86 - 0.065, 0.065, vx=v, restitution=0.0, friction=mu)
w, states = run([box], 40)
dist = states[-1][0][0] - 0.1
want = v * v / (2 * mu * GRAVITY)
print("slide %.3f, expected %.3f" % (dist, want))
c.check(abs(dist - want) < 0.15 * want, "box slid %.3f, expected %.3f" % (dist, want))
c.check(abs(states[-1][0][2]) < 1e-6, "box still moving after sliding to rest")

# Rolling: on the floor the marker angle advances by distance / radius.
ball = Body(0, "ball", "red", "big", 0.2, 0.86 - 0.065, 0.065, vx=0.5, restitution=0.3, friction=0.01)
w, states = run([ball], 20)
x0, a0 = states[4][0][0], states[4][0][4]
x1, a1 = states[12][0][0], states[12][0][4]
turned = math.remainder(a1 - a0, 2 * math.pi)
want = math.remainder((x1 - x0) / 0.065, 2 * math.pi)
c.check(abs(turned - want) < 0.05, "rolling ball turned %.3f rad for %.3f" % (turned, want))

# A box stacked on a box stays put.
b1 = Body(0, "box", "blue", "big", 0.5, 0.86 - 0.065, 0.065, restitution=0.2, friction=0.5)
b2 = Body(1, "box", "red", "small", 0.5, 0.86 - 0.13 - 0.04, 0.04, restitution=0.2, friction=0.5)
w, states = run([b1, b2], 64)
drift = max(abs(states[-1][i][j] - states[8][i][j]) for i in (0, 1) for j in (0, 1))
c.check(drift < 0.003, "stacked boxes drifted by %.4f" % drift)

# No energy gain: total mechanical energy of a bouncy scene never rises.
bs = [Body(i, "ball", "red", "big", 0.2 + 0.25 * i, 0.3 + 0.1 * i, 0.065, vx=0.4 - 0.3 * i,
           restitution=0.9, friction=0.0) for i in range(3)]
w = World(1.0, 1.0, 0.86)
w.bodies = bs


def energy(bodies):
    return sum((0.5 * (b.vx ** 2 + b.vy ** 2) + GRAVITY * (1.0 - b.y)) / b.inv_mass for b in bodies)


e0 = energy(bs)
emax = e0
for _ in range(200):
    w.step()
    emax = max(emax, energy(bs))
c.check(emax <= e0 * 1.02, "energy grew from %.5f to %.5f" % (e0, emax))

# Verbs: a scene built to show each motion says so.
big = vocab.SIZE_HALF["big"]
spec = [ObjectSpec("ball", "red", "big", 0.15, 0.86 - big, 0.6, 0.0, 0.5, 0.015, "rolling"),
        ObjectSpec("box", "blue", "big", 0.85, 0.86 - big, 0.0, 0.0, 0.3, 0.4, "resting"),
        ObjectSpec("triangle", "green", "small", 0.5, 0.05, 0.0, 0.0, 0.2, 0.3, "falling")]
scene = Scene("day", "grass", "none", 0.5, spec)
_, recs = render_clip(scene, 12, size=(64, 64))
verbs = [[o["verb"] for o in r["objects"]] for r in recs]
c.check(all(v[0] == "rolling" for v in verbs), "rolling ball verbs %s" % [v[0] for v in verbs])
c.check(all(v[1] == "resting" for v in verbs), "resting box verbs %s" % [v[1] for v in verbs])
c.check(all(v[2] == "falling" for v in verbs[:6]), "falling triangle verbs %s" % [v[2] for v in verbs])
spec = [ObjectSpec("ball", "red", "big", 0.5, 0.5, 0.0, 0.0, 0.9, 0.0, "bouncing")]
_, recs = render_clip(Scene("day", "grass", "none", 0.5, spec), 48, size=(64, 64))
vs = [r["objects"][0]["verb"] for r in recs]
first = vs.index("bouncing") if "bouncing" in vs else -1
c.check(first > 0 and all(v in ("bouncing", "rolling", "resting") for v in vs[first:first + 20])
        and vs[:first] == ["falling"] * first, "bouncing ball verbs %s" % vs)

c.done()
