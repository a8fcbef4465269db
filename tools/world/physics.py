"""Rigid-body physics for the world: gravity, walls, floor, restitution, friction, rolling.

Units: the frame is 1.0 world unit wide and `height` units tall; y points down (screen
coordinates), so gravity is +y. Bodies never rotate except balls, whose rotation angle follows
their rolling (spin = vx / r while they touch something below), which the renderer shows with a
marker. Boxes are axis-aligned squares; triangles are upright isosceles triangles whose bounding
box is a square, collided as true triangles (separating axes), so a ball can roll off a slope.

The integrator is semi-implicit Euler with SUBSTEPS substeps per frame and ITERATIONS
passes of sequential impulses per substep. At 16 fps and the speed cap below, a body moves at most ~0.008
units per substep, well under the smallest object (0.07 across), so nothing tunnels.

Pure Python floats on purpose: with at most a handful of bodies, numpy's per-call overhead would
cost more than the arithmetic, and plain floats are bit-reproducible everywhere.
Not thread-safe per World; separate Worlds are independent.
"""

import math

GRAVITY = 0.3          # world units / s^2: a drop across the frame takes about 2.5 s. Slow on
                       # purpose: at 1.6 a falling ball crossed 50 pixels within one latent
                       # frame (4 video frames) and the autoencoder smeared it into a streak
SUBSTEPS = 8           # per frame
ITERATIONS = 6         # contact passes per substep (stacks of a heavy body on a light one
                       # need more than one to settle without sinking)
MAX_SPEED = 1.0        # units / s (8 pixels per frame at 128 wide): keeps every substep's motion
                       # small and a latent frame's motion under 4 latent cells
SLOP = 0.0008          # penetration left alone, so resting contacts do not jitter
CORRECT = 0.8          # fraction of the remaining penetration fixed per substep
REST_SPEED = 0.15      # approach speeds below this do not bounce (resting contact)
BOUNCE_SPEED = 0.25    # an impact from below faster than this counts as a bounce
CEILING = -0.6         # an invisible lid above the frame so nothing flies away for good

_INV_SQRT5 = 1.0 / math.sqrt(5.0)


class Body:
    """One object. `h` is the half extent (ball radius; half side of box; half base of triangle)."""

    __slots__ = ("id", "kind", "colour", "size", "x", "y", "vx", "vy", "h", "angle", "spin",
                 "inv_mass", "restitution", "friction", "supported", "impact", "last_bounce")

    def __init__(self, id, kind, colour, size, x, y, h, vx=0.0, vy=0.0, restitution=0.5,
                 friction=0.2, angle=0.0):
        self.id = id
        self.kind = kind
        self.colour = colour
        self.size = size
        self.x, self.y, self.vx, self.vy = float(x), float(y), float(vx), float(vy)
        self.h = float(h)
        self.angle = float(angle)
        self.spin = 0.0
        area = {"ball": math.pi, "box": 4.0, "triangle": 2.0}[kind] * h * h
        self.inv_mass = 1.0 / area
        self.restitution = float(restitution)
        self.friction = float(friction)
        self.supported = False   # touched something below during the last frame
        self.impact = False      # bounced off something below during the last frame
        self.last_bounce = -1000  # frame index of the last bounce

    def aabb(self):
        return (self.x - self.h, self.y - self.h, self.x + self.h, self.y + self.h)

    def vertices(self):
        x, y, h = self.x, self.y, self.h
        if self.kind == "box":
            return ((x - h, y - h), (x + h, y - h), (x + h, y + h), (x - h, y + h))
        return ((x, y - h), (x + h, y + h), (x - h, y + h))  # apex, base right, base left

    def axes(self):
        """Outward edge normals (one per direction) for the separating-axis test."""
        if self.kind == "box":
            return ((1.0, 0.0), (0.0, 1.0))
        return ((0.0, 1.0), (-2.0 * _INV_SQRT5, -_INV_SQRT5), (2.0 * _INV_SQRT5, -_INV_SQRT5))


def _project(verts, ax, ay):
    lo = hi = verts[0][0] * ax + verts[0][1] * ay
    for vx, vy in verts[1:]:
        p = vx * ax + vy * ay
        if p < lo:
            lo = p
        elif p > hi:
            hi = p
    return lo, hi


def _poly_poly(a, b):
    """Separating axes; returns (nx, ny, depth) with n pointing from a to b, or None."""
    va, vb = a.vertices(), b.vertices()
    best = None
    for ax, ay in a.axes() + b.axes():
        lo_a, hi_a = _project(va, ax, ay)
        lo_b, hi_b = _project(vb, ax, ay)
        overlap = min(hi_a, hi_b) - max(lo_a, lo_b)
        if overlap <= 0.0:
            return None
        if best is None or overlap < best[2]:
            if lo_b + hi_b < lo_a + hi_a:
                best = (-ax, -ay, overlap)
            else:
                best = (ax, ay, overlap)
    return best


def _closest_on_segment(px, py, ax, ay, bx, by):
    ex, ey = bx - ax, by - ay
    t = ((px - ax) * ex + (py - ay) * ey) / (ex * ex + ey * ey)
    t = 0.0 if t < 0.0 else (1.0 if t > 1.0 else t)
    return ax + t * ex, ay + t * ey


def _circle_poly(c, p):
    """Ball c against box/triangle p; returns (nx, ny, depth) pointing from c to p, or None."""
    verts = p.vertices()
    n = len(verts)
    cx, cy, r = c.x, c.y, c.h
    inside = True
    best_d2, qx, qy = None, 0.0, 0.0
    for i in range(n):
        ax, ay = verts[i]
        bx, by = verts[(i + 1) % n]
        # Outward normal of a clockwise-on-screen polygon (y down): (ey, -ex) normalised.
        ex, ey = bx - ax, by - ay
        ln = math.hypot(ex, ey)
        nx, ny = ey / ln, -ex / ln
        if (cx - ax) * nx + (cy - ay) * ny > 0.0:
            inside = False
        sx, sy = _closest_on_segment(cx, cy, ax, ay, bx, by)
        d2 = (sx - cx) ** 2 + (sy - cy) ** 2
        if best_d2 is None or d2 < best_d2:
            best_d2, qx, qy = d2, sx, sy
    d = math.sqrt(best_d2)
    if inside:
        # Centre inside the polygon (a deep hit): push out through the nearest edge.
        if d < 1e-12:
            return (0.0, 1.0, r)
        return ((cx - qx) / d, (cy - qy) / d, r + d)
    if d >= r:
        return None
    if d < 1e-12:
        return (0.0, 1.0, r)
    return ((qx - cx) / d, (qy - cy) / d, r - d)


def collide(a, b):
    """Contact between two bodies: (nx, ny, depth) with the normal from a to b, or None."""
    if a.x - a.h >= b.x + b.h or b.x - b.h >= a.x + a.h:
        return None
    if a.y - a.h >= b.y + b.h or b.y - b.h >= a.y + a.h:
        return None
    if a.kind == "ball" and b.kind == "ball":
        dx, dy = b.x - a.x, b.y - a.y
        d = math.hypot(dx, dy)
        r = a.h + b.h
        if d >= r:
            return None
        if d < 1e-12:
            return (0.0, 1.0, r)
        return (dx / d, dy / d, r - d)
    if a.kind == "ball":
        return _circle_poly(a, b)
    if b.kind == "ball":
        hit = _circle_poly(b, a)
        return None if hit is None else (-hit[0], -hit[1], hit[2])
    return _poly_poly(a, b)


def _impulse(a, b, nx, ny, depth, frame):
    """Resolve one contact; b is None for the static world (walls, floor, lid)."""
    ima = a.inv_mass
    imb = b.inv_mass if b is not None else 0.0
    total = ima + imb
    corr = max(depth - SLOP, 0.0) * CORRECT / total
    a.x -= nx * corr * ima
    a.y -= ny * corr * ima
    bvx = bvy = 0.0
    if b is not None:
        b.x += nx * corr * imb
        b.y += ny * corr * imb
        bvx, bvy = b.vx, b.vy
    rvx, rvy = bvx - a.vx, bvy - a.vy
    vn = rvx * nx + rvy * ny
    if vn >= 0.0:
        return  # separating already
    if b is None:
        e, mu = a.restitution, a.friction
    else:
        e = min(a.restitution, b.restitution)
        mu = math.sqrt(a.friction * b.friction)
    if -vn < REST_SPEED:
        e = 0.0
    j = -(1.0 + e) * vn / total
    a.vx -= j * nx * ima
    a.vy -= j * ny * ima
    if b is not None:
        b.vx += j * nx * imb
        b.vy += j * ny * imb
    # Coulomb friction along the tangent, at most mu times the normal impulse.
    tx, ty = -ny, nx
    vt = rvx * tx + rvy * ty
    jt = -vt / total
    lim = mu * j
    jt = lim if jt > lim else (-lim if jt < -lim else jt)
    a.vx -= jt * tx * ima
    a.vy -= jt * ty * ima
    if b is not None:
        b.vx += jt * tx * imb
        b.vy += jt * ty * imb
    # Who stands on whom: the normal points from a to b, so ny > 0 means b is below a.
    if ny > 0.5:
        a.supported = True
        if -vn > BOUNCE_SPEED and e > 0.0:
            a.impact = True
            a.last_bounce = frame
    elif ny < -0.5 and b is not None:
        b.supported = True
        if -vn > BOUNCE_SPEED and e > 0.0:
            b.impact = True
            b.last_bounce = frame


class World:
    """The simulation: bodies inside walls at x=0 and x=width, above a floor at y=floor."""

    def __init__(self, width=1.0, height=1.0, floor=None, fps=16):
        self.width = float(width)
        self.height = float(height)
        self.floor = float(height if floor is None else floor)
        self.fps = fps
        self.bodies = []
        self.frame = 0

    def _static(self, b, frame):
        h = b.h
        if b.y + h > self.floor:
            _impulse(b, None, 0.0, 1.0, b.y + h - self.floor, frame)
        if b.x - h < 0.0:
            _impulse(b, None, -1.0, 0.0, h - b.x, frame)
        if b.x + h > self.width:
            _impulse(b, None, 1.0, 0.0, b.x + h - self.width, frame)
        if b.y - h < CEILING:
            _impulse(b, None, 0.0, -1.0, CEILING - (b.y - h), frame)

    def step(self):
        """Advance one frame (1/fps s) in SUBSTEPS substeps."""
        dt = 1.0 / (self.fps * SUBSTEPS)
        bodies = self.bodies
        n = len(bodies)
        frame = self.frame
        for b in bodies:
            b.supported = False
            b.impact = False
        for _ in range(SUBSTEPS):
            for b in bodies:
                b.vy += GRAVITY * dt
                s2 = b.vx * b.vx + b.vy * b.vy
                if s2 > MAX_SPEED * MAX_SPEED:
                    k = MAX_SPEED / math.sqrt(s2)
                    b.vx *= k
                    b.vy *= k
                b.x += b.vx * dt
                b.y += b.vy * dt
            for _ in range(ITERATIONS if n > 1 else 1):
                for i in range(n):
                    a = bodies[i]
                    for k in range(i + 1, n):
                        hit = collide(a, bodies[k])
                        if hit is not None:
                            _impulse(a, bodies[k], hit[0], hit[1], hit[2], frame)
                for b in bodies:
                    self._static(b, frame)
            for b in bodies:
                if b.kind == "ball":
                    if b.supported:
                        b.spin = b.vx / b.h  # rolling without slipping
                    b.angle += b.spin * dt
        for b in bodies:
            b.angle = math.fmod(b.angle, 2.0 * math.pi)
        self.frame += 1
