"""Rasteriser for the world: backgrounds, objects and occluders, as RGB uint8 frames.

Every shape is drawn from its signed distance in pixels with a one-pixel linear ramp (coverage =
clamp(0.5 - d, 0, 1)): the analytic form of box-filtered supersampling, so edges are smooth at
128x128 without rendering a larger frame. Backgrounds (sky + ground) and occluder layers are
built once per size and cached, so a frame costs one uint8 copy plus a few small blends inside
each object's bounding box (about 0.1-0.3 ms at 128x128).

Backgrounds are fixed images (the sun, moon, stars and textures sit in the same place in every
scene) so that the scene parser can subtract them. A Renderer is not thread-safe (its caches are
plain dicts); use one per thread or process.
"""

import math

import numpy as np

from . import vocab

GROUND_FRAC = 0.14      # the ground strip's share of the frame height
OUTLINE = 0.008         # object rim width in world units (1 px at 128 wide)
MARKER_OFFSET = 0.5     # ball rotation marker: distance from the centre, in radii
MARKER_RADIUS = 0.3     # ... and its radius, in radii
MARKER_DARKEN = 0.4     # ... and its colour, as a fraction of the ball's colour

# The bright discs high in the sky, (x, y, radius) in world units: the sun by day, the moon at
# night. The parser (parser.py) sets aside objects of the disc's own colours found on them: a
# decoder's slightly whiter sun reads as a white or yellow object. (The sunset's sun sits on the
# floor, where objects rest, and is left out.)
SUN_DAY = (0.8, 0.17, 0.07)
MOON = (0.22, 0.18, 0.055)
SKY_DISCS = {"day": (SUN_DAY, ("white", "yellow")), "night": (MOON, ("white",))}

_PAL = {k: np.array(v, np.float32) for k, v in vocab.PALETTE.items()}
_OUTLINE_RGB = np.array(vocab.OUTLINE_RGB, np.float32)


def floor_y(ground, height):
    """World y of the floor the objects stand on."""
    return height * (1.0 - GROUND_FRAC) if ground != "none" else height


def _cov(d):
    """Coverage of a pixel from its signed distance in pixels (negative inside)."""
    return np.clip(0.5 - d, 0.0, 1.0)


def _box_sdf(X, Y, cx, cy, hx, hy):
    qx = np.abs(X - cx) - hx
    qy = np.abs(Y - cy) - hy
    out = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
    return out + np.minimum(np.maximum(qx, qy), 0.0)


def _tri_sdf(X, Y, cx, cy, h):
    """Upright triangle with apex (cx, cy-h) and base corners (cx+-h, cy+h): the largest of the
    three edge distances (exact inside and along edges, slightly rounded past the corners)."""
    dx = X - cx
    dy = Y - cy
    base = dy - h
    s = 1.0 / math.sqrt(5.0)
    left = (-2.0 * dx - (dy + h)) * s
    right = (2.0 * dx - (dy + h)) * s
    return np.maximum(np.maximum(base, left), right)


def _mix(a, b, t):
    return a + (b - a) * t


def _lerp_stops(t, stops):
    """Piecewise-linear colour ramp over stops [(t, rgb), ...] for t shaped [H,1]."""
    ts = np.array([s[0] for s in stops], np.float32)
    out = np.empty(t.shape[:1] + (3,), np.float32)
    flat = t[:, 0]
    for c in range(3):
        out[:, c] = np.interp(flat, ts, np.array([s[1][c] for s in stops], np.float32))
    return out


class Renderer:
    """Draws frames of one size. `width`/`height` are pixels; the world is 1.0 unit wide."""

    def __init__(self, height=128, width=128):
        if height < 16 or width < 16:
            raise ValueError("frame size must be at least 16x16, got %dx%d" % (width, height))
        self.H = int(height)
        self.W = int(width)
        self.px = float(width)            # pixels per world unit
        self.world_h = self.H / self.px   # world height in units
        # Pixel centres in world units.
        self.X = ((np.arange(self.W, dtype=np.float32) + 0.5) / self.px)[None, :]
        self.Y = ((np.arange(self.H, dtype=np.float32) + 0.5) / self.px)[:, None]
        self._bg = {}
        self._occ = {}

    # --- backgrounds --------------------------------------------------------------------

    def background(self, sky, ground):
        """The cached uint8 [H,W,3] image behind everything."""
        key = (sky, ground)
        img = self._bg.get(key)
        if img is None:
            if sky not in vocab.SKIES:
                raise ValueError("unknown sky %r (known: %s)" % (sky, ", ".join(vocab.SKIES)))
            if ground not in vocab.GROUNDS:
                raise ValueError("unknown ground %r (known: %s)" % (ground, ", ".join(vocab.GROUNDS)))
            f = self._sky(sky, floor_y(ground, self.world_h))
            self._ground(f, ground)
            img = np.clip(f + 0.5, 0, 255).astype(np.uint8)
            img.setflags(write=False)
            self._bg[key] = img
        return img

    def _sky(self, sky, floor):
        H, W = self.H, self.W
        X, Y = self.X, self.Y
        t = np.clip(Y / max(floor, 1e-6), 0.0, 1.0)
        px = self.px
        if sky == "day":
            f = np.broadcast_to(_lerp_stops(t, [(0.0, (120, 175, 235)), (1.0, (185, 215, 240))])[:, None, :],
                                (H, W, 3)).copy()
            sx, sy, sr = SUN_DAY
            d = np.sqrt((X - sx) ** 2 + (Y - sy) ** 2)
            glow = np.exp(-((np.maximum(d - sr, 0.0) / 0.05) ** 2))[..., None] * 0.35
            f = _mix(f, np.array((255, 250, 225), np.float32), glow)
            f = _mix(f, np.array((255, 238, 150), np.float32), _cov((d - sr) * px)[..., None])
        elif sky == "sunset":
            f = np.broadcast_to(_lerp_stops(t, [(0.0, (60, 45, 110)), (0.55, (200, 100, 120)),
                                                (1.0, (250, 175, 100))])[:, None, :], (H, W, 3)).copy()
            sy = floor if floor < self.world_h else floor - 0.05
            d = np.sqrt((X - 0.3) ** 2 + (Y - sy) ** 2)
            glow = np.exp(-((np.maximum(d - 0.1, 0.0) / 0.08) ** 2))[..., None] * 0.3
            f = _mix(f, np.array((255, 215, 140), np.float32), glow)
            f = _mix(f, np.array((255, 205, 120), np.float32), _cov((d - 0.1) * px)[..., None])
        elif sky == "night":
            f = np.broadcast_to(_lerp_stops(t, [(0.0, (8, 12, 35)), (1.0, (30, 40, 85))])[:, None, :],
                                (H, W, 3)).copy()
            rng = np.random.default_rng(20240611)  # fixed: the same stars in every scene
            n = 70
            sx = rng.uniform(0.0, 1.0, n)
            sy = rng.uniform(0.0, 1.0, n) * floor * 0.95
            sr = rng.uniform(0.0035, 0.006, n)
            sb = rng.uniform(0.55, 1.0, n)
            star = np.array((240, 240, 255), np.float32)
            for i in range(n):
                x0, x1 = self._span(sx[i] - 0.01, sx[i] + 0.01, W)
                y0, y1 = self._span(sy[i] - 0.01, sy[i] + 0.01, H)
                if x0 >= x1 or y0 >= y1:
                    continue
                d = np.sqrt((X[:, x0:x1] - sx[i]) ** 2 + (Y[y0:y1] - sy[i]) ** 2) - sr[i]
                c = _cov(d * px) * sb[i]
                f[y0:y1, x0:x1] = _mix(f[y0:y1, x0:x1], star, c[..., None])
            mx, my, mr = MOON
            d = np.sqrt((X - mx) ** 2 + (Y - my) ** 2) - mr
            moon = _cov(d * px)
            d2 = np.sqrt((X - 0.245) ** 2 + (Y - 0.163) ** 2) - 0.05
            moon = moon * (1.0 - _cov(d2 * px) * 0.85)
            f = _mix(f, np.array((232, 230, 200), np.float32), moon[..., None])
        elif sky == "grid":
            f = np.empty((H, W, 3), np.float32)
            f[:] = (35, 40, 60)
            s = 0.125
            dx = np.abs(X - np.round(X / s) * s)
            dy = np.abs(Y - np.round(Y / s) * s)
            line = np.maximum(_cov((dx - 0.003) * px), _cov((dy - 0.003) * px))
            f = _mix(f, np.array((80, 95, 140), np.float32), line[..., None])
        else:
            f = np.empty((H, W, 3), np.float32)
            f[:] = vocab.PLAIN_RGB[sky]
        return f

    def _ground(self, f, ground):
        if ground == "none":
            return
        floor = floor_y(ground, self.world_h)
        y0 = int(math.floor(floor * self.px))
        Y = self.Y[y0:]
        X = self.X
        inside = _cov((floor - Y) * self.px)[..., None]  # 1 below the floor line
        rng = np.random.default_rng({"grass": 11, "sand": 12, "road": 13}[ground])
        hh, W = f.shape[0] - y0, self.W
        noise = rng.random((hh, W)).astype(np.float32)
        if ground == "grass":
            # Vertical blades: noise smeared downwards, a lighter band at the top edge.
            blades = (noise + np.roll(noise, 1, 0) + np.roll(noise, 2, 0)) / 3.0
            g = np.array((45, 120, 45), np.float32) + ((blades - 0.5) * 40.0)[..., None] * \
                np.array((0.6, 1.0, 0.5), np.float32)
            top = _cov((Y - floor - 0.012) * self.px)[..., None]
            g = _mix(np.broadcast_to(np.array((70, 150, 60), np.float32), g.shape), g, top)
        elif ground == "sand":
            ripple = 0.5 + 0.5 * np.sin((Y - floor) * 160.0 + np.sin(X * 20.0) * 1.5)
            g = np.array((215, 190, 130), np.float32) + ((noise - 0.5) * 22.0 + ripple * 10.0 - 5.0)[..., None]
        else:  # road
            g = np.array((70, 70, 78), np.float32) + ((noise - 0.5) * 16.0)[..., None]
            kerb = _cov((Y - floor - 0.014) * self.px)[..., None]
            g = _mix(np.broadcast_to(np.array((150, 150, 150), np.float32), g.shape), g, kerb)
        f[y0:] = _mix(f[y0:], g, inside)

    # --- occluders ----------------------------------------------------------------------

    def occluder(self, kind, x, ground):
        """Cached layer (y0, y1, x0, x1, premultiplied rgb [h,w,3], alpha [h,w,1]) or None."""
        if kind == "none" or kind is None:
            return None
        if kind not in vocab.OCCLUDERS:
            raise ValueError("unknown occluder %r (known: %s)" % (kind, ", ".join(vocab.OCCLUDERS)))
        key = (kind, round(float(x), 5), ground)
        lay = self._occ.get(key)
        if lay is None:
            if len(self._occ) > 64:
                self._occ.clear()
            lay = self._build_occluder(kind, float(x), floor_y(ground, self.world_h))
            self._occ[key] = lay
        return lay

    @staticmethod
    def _span(a, b, n):
        return max(int(math.floor(a)), 0), min(int(math.ceil(b)), n)

    def occluder_extent(self, kind, x, floor):
        """World bounding box (x0, y0, x1, y1) of an occluder standing on the floor at x."""
        if kind == "pillar":
            return (x - 0.131, 0.0, x + 0.131, floor)
        if kind == "tree":
            return (x - 0.175, floor - 0.53, x + 0.175, floor)
        return (x - 0.165, floor - 0.245, x + 0.165, floor)  # wall

    def _build_occluder(self, kind, cx, floor):
        px = self.px
        ex0, ey0, ex1, ey1 = self.occluder_extent(kind, cx, floor)
        x0, x1 = self._span(ex0 * px - 1, ex1 * px + 1, self.W)
        y0, y1 = self._span(ey0 * px - 1, ey1 * px + 1, self.H)
        if x0 >= x1 or y0 >= y1:
            return None
        X = self.X[:, x0:x1]
        Y = self.Y[y0:y1]
        ow = OUTLINE
        if kind == "pillar":
            cap = _box_sdf(X, Y, cx, 0.025, 0.13, 0.025)
            base = _box_sdf(X, Y, cx, floor - 0.0225, 0.13, 0.0225)
            shaft = _box_sdf(X, Y, cx, floor / 2.0, 0.11, floor / 2.0)   # hides a big object
            d = np.minimum(np.minimum(cap, base), shaft)
            u = np.clip((X - cx) / 0.13, -1.0, 1.0)
            shade = 0.72 + 0.28 * np.cos(u * 1.3)               # round column
            flute = np.zeros_like(X)
            for fx in (-0.075, -0.05, -0.025, 0.0, 0.025, 0.05, 0.075):
                flute = np.maximum(flute, _cov((np.abs(X - cx - fx) - 0.002) * px))
            flute = flute * (shaft <= cap) * (shaft <= base)
            body = np.array((200, 192, 172), np.float32) * (shade * (1.0 - 0.18 * flute))[..., None]
            body = np.broadcast_to(body, d.shape + (3,))
            edge = np.array((70, 66, 60), np.float32)
        elif kind == "tree":
            trunk = _box_sdf(X, Y, cx, floor - 0.16, 0.09, 0.16)      # hides a small object
            blobs = ((0.0, 0.40, 0.12), (-0.085, 0.33, 0.085), (0.085, 0.33, 0.085), (0.0, 0.29, 0.09))
            canopy = None
            for bx, by, br in blobs:
                dd = np.sqrt((X - cx - bx) ** 2 + (Y - floor + by) ** 2) - br
                canopy = dd if canopy is None else np.minimum(canopy, dd)
            d = np.minimum(trunk, canopy)
            rng = np.random.default_rng(31)
            leaves = rng.random(d.shape).astype(np.float32)
            leaves = (leaves + np.roll(leaves, 1, 0) + np.roll(leaves, 1, 1)) / 3.0
            light = np.clip(0.85 + 0.5 * ((cx - X) + (floor - 0.4 - Y)), 0.7, 1.15)
            green = np.array((35, 105, 45), np.float32) * (light * (0.85 + 0.3 * leaves))[..., None]
            bark = 0.85 + 0.15 * np.sin((X - cx) * 160.0)   # stripes 0.04 apart: finer ones alias
            brown = np.broadcast_to(np.array((110, 75, 45), np.float32) * bark[..., None], green.shape)
            body = np.where((canopy < trunk)[..., None], green, brown)
            edge = np.array((20, 45, 22), np.float32)
        else:  # wall
            hx, hy = 0.16, 0.12
            d = _box_sdf(X, Y, cx, floor - hy, hx, hy)
            row_h, brick_w = 0.04, 0.08
            rows = np.floor((floor - Y) / row_h)
            shift = (rows % 2) * (brick_w / 2.0)
            bx = X - (cx - hx) + shift
            cols = np.floor(bx / brick_w)
            my = np.abs((floor - Y) - (rows + 0.5) * row_h) - (row_h / 2.0 - 0.003)
            mx = np.abs(bx - (cols + 0.5) * brick_w) - (brick_w / 2.0 - 0.003)
            brick = 1.0 - np.maximum(_cov(-my * px), _cov(-mx * px))  # 0 on mortar
            h = np.sin(rows * 12.9898 + cols * 78.233) * 43758.5453
            tint = 0.9 + 0.2 * (h - np.floor(h))
            red = np.array((150, 80, 60), np.float32) * tint[..., None]
            mortar = np.array((205, 195, 180), np.float32)
            body = _mix(np.broadcast_to(mortar, red.shape), red, brick[..., None])
            edge = np.array((60, 35, 30), np.float32)
        alpha = _cov(d * px)[..., None]
        rim = _cov((d + ow) * px)[..., None]
        rgb = _mix(edge, body, rim) if kind != "tree" else _mix(edge, body, np.maximum(rim, 0.35))
        return (y0, y1, x0, x1, (rgb * alpha).astype(np.float32), alpha.astype(np.float32))

    # --- objects ------------------------------------------------------------------------

    def _object_layer(self, kind, colour, cx, cy, h, angle):
        """(y0, y1, x0, x1, rgb [h,w,3], coverage [h,w]) for one object, or None if off-frame."""
        px = self.px
        x0, x1 = self._span((cx - h) * px - 1, (cx + h) * px + 1, self.W)
        y0, y1 = self._span((cy - h) * px - 1, (cy + h) * px + 1, self.H)
        if x0 >= x1 or y0 >= y1:
            return None
        X = self.X[:, x0:x1]
        Y = self.Y[y0:y1]
        if kind == "ball":
            d = np.sqrt((X - cx) ** 2 + (Y - cy) ** 2) - h
        elif kind == "box":
            d = _box_sdf(X, Y, cx, cy, h, h)
        else:
            d = _tri_sdf(X, Y, cx, cy, h)
        d = d * px
        cov = _cov(d)
        fill = _PAL[colour]
        inner = _cov(d + OUTLINE * px)[..., None]
        rgb = _OUTLINE_RGB + (fill - _OUTLINE_RGB) * inner
        if kind == "ball":
            mx = cx + MARKER_OFFSET * h * math.cos(angle)
            my = cy + MARKER_OFFSET * h * math.sin(angle)
            dm = (np.sqrt((X - mx) ** 2 + (Y - my) ** 2) - MARKER_RADIUS * h) * px
            m = _cov(dm)[..., None] * inner
            rgb = rgb + (fill * MARKER_DARKEN - rgb) * m
        return (y0, y1, x0, x1, rgb, cov)

    def render(self, sky, ground, objects, occluder=None):
        """Draw one frame.

        objects: iterable of (kind, colour, x, y, h, angle) in drawing order (later on top).
        occluder: (kind, x) or None.
        Returns (frame uint8 [H,W,3], visible fractions list): visible fraction is the share of
        each object's area that shows (not covered by later objects, the occluder, or the frame
        edge).
        """
        objects = list(objects)
        frame = self.background(sky, ground).copy()
        layers = []
        for kind, colour, x, y, h, angle in objects:
            if colour not in _PAL:
                raise ValueError("unknown colour %r" % (colour,))
            lay = self._object_layer(kind, colour, x, y, h, angle)
            layers.append(lay)
            if lay is None:
                continue
            y0, y1, x0, x1, rgb, cov = lay
            reg = frame[y0:y1, x0:x1].astype(np.float32)
            reg += (rgb - reg) * cov[..., None]
            frame[y0:y1, x0:x1] = (reg + 0.5).astype(np.uint8)
        occ = None
        if occluder is not None and occluder[0] not in (None, "none"):
            occ = self.occluder(occluder[0], occluder[1], ground)
        if occ is not None:
            y0, y1, x0, x1, rgbp, alpha = occ
            reg = frame[y0:y1, x0:x1].astype(np.float32)
            reg = reg * (1.0 - alpha) + rgbp
            frame[y0:y1, x0:x1] = (reg + 0.5).astype(np.uint8)
        visible = self._visible(objects, layers, occ)
        return frame, visible

    def _visible(self, objects, layers, occ):
        area_unit = {"ball": math.pi, "box": 4.0, "triangle": 2.0}
        out = []
        for i, lay in enumerate(layers):
            if lay is None:
                out.append(0.0)
                continue
            y0, y1, x0, x1, _, cov = lay
            vis = cov.copy()
            for lay2 in layers[i + 1:]:
                if lay2 is None:
                    continue
                b0, b1, a0, a1, _, cov2 = lay2
                iy0, iy1, ix0, ix1 = max(y0, b0), min(y1, b1), max(x0, a0), min(x1, a1)
                if iy0 < iy1 and ix0 < ix1:
                    vis[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] *= 1.0 - cov2[iy0 - b0:iy1 - b0, ix0 - a0:ix1 - a0]
            if occ is not None:
                b0, b1, a0, a1, _, alpha = occ
                iy0, iy1, ix0, ix1 = max(y0, b0), min(y1, b1), max(x0, a0), min(x1, a1)
                if iy0 < iy1 and ix0 < ix1:
                    vis[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] *= 1.0 - alpha[iy0 - b0:iy1 - b0, ix0 - a0:ix1 - a0, 0]
            kind, h = objects[i][0], objects[i][4]
            full = area_unit[kind] * (h * self.px) ** 2
            out.append(float(min(1.0, vis.sum() / full)))
        return out
