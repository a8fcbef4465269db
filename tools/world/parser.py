"""The scene parser: recover background, occluder and objects from the pixels of one frame.

Used to judge generated video, so it assumes nothing beyond what the world's vocabulary defines:

1. background: the frame, averaged in blocks, is compared with every (sky, ground) background of
   the renderer at that size; the median difference decides, so objects and occluders (well
   under half the frame) do not sway it. The sky is decided on the upper rows, then the ground on
   the strip below the floor line.
2. occluder: each occluder's interior pixels are slid along x and compared with the frame
   (median difference again); the best one is accepted when it explains those pixels much better
   than the background does.
3. objects: pixels that differ from the background (after a 3x3 blur of both, so blur and small
   misalignments are tolerated) and are not the occluder are classified to the nearest palette
   colour, if within a tolerance and clearly nearer than the second nearest; the dark rim every
   object is drawn with keeps touching objects apart. Same-colour 4-connected components that
   have a solid core are objects; pieces of one object split by the occluder are joined again.
   Three rules keep a decoder's artefacts from changing the count: a small piece next to a whole
   object is part of it (joined if of its colour, dropped if a fringe of another); a small
   white or yellow piece centred on the day's sun or the moon is the disc itself; a component
   much wider than tall is that many same-colour objects side by side.
4. shape from the component's row spans (all shapes are convex): fill ratio of the bounding box
   (box ~1, ball ~0.78, triangle ~0.5) and how wide its top and bottom rows are; size from its
   extent; position from its bounding box centre, in world units (frame 1.0 wide, y down).

parse_frame(rgb) keeps one Parser per frame size. A Parser is not thread-safe (it caches
templates); use one per thread.

Accuracy report on rendered frames (held-out seeds, clean and degraded):
    /usr/bin/python3 tools/world/parser.py [--clips 60] [--size 128] [--modes clean,blur,...]
"""

import math
import os
import sys

if __name__ == "__main__" and __package__ in (None, ""):
    # Run as a script (the accuracy report): make the package importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import world  # noqa: F401
    __package__ = "world"

import numpy as np

from . import vocab
from .render import GROUND_FRAC, OUTLINE, SKY_DISCS, Renderer, floor_y

_PAL_NAMES = vocab.COLOURS
_PAL = np.array([vocab.PALETTE[c] for c in _PAL_NAMES], np.float32)
_RIM = np.array(vocab.OUTLINE_RGB, np.float32)
_DIR = _PAL - _RIM                      # from the rim colour to each palette colour
_DIR_N2 = (_DIR ** 2).sum(-1)
_BLOCK = 4          # background classification works on 4x4 block means (at 128 wide)


def _blur3(a):
    """3x3 box blur of [H,W,C] (edges replicated)."""
    p = np.pad(a, ((1, 1), (1, 1), (0, 0)), mode="edge")
    v = p[:-2] + p[1:-1] + p[2:]
    return (v[:, :-2] + v[:, 1:-1] + v[:, 2:]) * (1.0 / 9.0)


def _blocks(a, n):
    """Mean over n x n blocks (cropping the remainder)."""
    H, W = a.shape[0] // n * n, a.shape[1] // n * n
    return a[:H, :W].reshape(H // n, n, W // n, n, -1).mean(axis=(1, 3))


def label_components(cls):
    """4-connected components of equal non-negative values of an int array [H,W].

    Returns an int32 array: -1 where cls < 0, else the flat index of some pixel of the component
    (the smallest one). Min-label propagation with pointer jumping: a few dozen vector passes.
    """
    H, W = cls.shape
    valid = cls >= 0
    big = np.int32(H * W)
    lab = np.where(valid, np.arange(H * W, dtype=np.int32).reshape(H, W), big)
    eq_h = valid[:, 1:] & valid[:, :-1] & (cls[:, 1:] == cls[:, :-1])
    eq_v = valid[1:] & valid[:-1] & (cls[1:] == cls[:-1])
    vflat = valid.ravel()
    for _ in range(H * W):
        new = lab.copy()
        m = np.where(eq_h, np.minimum(lab[:, 1:], lab[:, :-1]), big)
        np.minimum(new[:, 1:], m, out=new[:, 1:])
        np.minimum(new[:, :-1], m, out=new[:, :-1])
        m = np.where(eq_v, np.minimum(lab[1:], lab[:-1]), big)
        np.minimum(new[1:], m, out=new[1:])
        np.minimum(new[:-1], m, out=new[:-1])
        flat = new.ravel()
        flat[vflat] = flat[flat[vflat]]  # jump: take the label of my label
        if np.array_equal(new, lab):
            break
        lab = new
    lab[~valid] = -1
    return lab


class Parser:
    """Parses frames of one size (H, W)."""

    def __init__(self, height, width, colour_tol=80.0, fg_threshold=32.0):
        self.H, self.W = int(height), int(width)
        self.ren = Renderer(self.H, self.W)
        self.px = float(self.W)
        self.colour_tol = float(colour_tol)
        self.fg_threshold = float(fg_threshold)
        self.block = max(1, int(round(_BLOCK * self.W / 128.0)))
        self._coarse = {}
        self._blurred = {}
        self._occ_tpl = {}
        s = (self.W / 128.0) ** 2
        self.min_area = 8.0 * s
        self.min_core = max(2, int(round(2 * s)))
        self.solid_alpha = 0.75
        # A piece under 30% of a small ball's interior that lies within fragment_gap pixels of
        # a whole object is part of it, not an object of its own: a ball split by its dark spot,
        # or the colour fringe a decoder leaves along a moving object's edge. (Pieces alone,
        # such as an object showing at a frame edge or beside the occluder, still count.)
        r_small = (vocab.SIZE_HALF["small"] - OUTLINE) * self.px
        self.fragment_area = 0.3 * math.pi * r_small * r_small
        self.fragment_gap = 3.0 * self.W / 128.0
        # No object is wider than tall: a component this many times wider is several (_split_wide).
        self.split_aspect = 1.6
        # Two big objects side by side still fit; an unsubtracted tree canopy does not.
        self.max_extent = 2.6 * 2.0 * vocab.SIZE_HALF["big"] * self.px

    # --- background ---------------------------------------------------------------------

    def _coarse_bg(self, sky, ground):
        key = (sky, ground)
        c = self._coarse.get(key)
        if c is None:
            c = _blocks(self.ren.background(sky, ground).astype(np.float32), self.block)
            self._coarse[key] = c
        return c

    def _blur_bg(self, sky, ground):
        key = (sky, ground)
        b = self._blurred.get(key)
        if b is None:
            b = _blur3(self.ren.background(sky, ground).astype(np.float32))
            self._blurred[key] = b
        return b

    def classify_background(self, f):
        """(sky, ground, scores) for a float32 frame."""
        coarse = _blocks(f, self.block)
        ch = coarse.shape[0]
        sky_rows = int(ch * (1.0 - GROUND_FRAC) * 0.9)
        sky_scores = {}
        for sky in vocab.SKIES:
            best = None
            for ground in vocab.GROUNDS:
                d = np.abs(coarse[:sky_rows] - self._coarse_bg(sky, ground)[:sky_rows]).sum(-1)
                s = float(np.median(d))
                best = s if best is None else min(best, s)
            sky_scores[sky] = best
        sky = min(sky_scores, key=sky_scores.get)
        # Ground: the strip below the floor line (objects stand above it).
        g0 = int(math.ceil(floor_y("grass", self.H / self.px) * self.px / self.block)) + 1
        ground_scores = {}
        for ground in vocab.GROUNDS:
            d = np.abs(coarse[g0:] - self._coarse_bg(sky, ground)[g0:]).sum(-1)
            ground_scores[ground] = float(np.median(d)) if d.size else 0.0
        ground = min(ground_scores, key=ground_scores.get)
        return sky, ground, {"sky": sky_scores, "ground": ground_scores}

    def calibrate(self, f, bg, max_gain=0.15, max_offset=25.0):
        """Per-channel (gain, offset) with f ~ gain * bg + offset, fitted on block means over
        the pixels the background explains (objects and occluders drop out after a first fit).
        A channel whose background barely varies gets an offset only."""
        cf = _blocks(f, self.block).reshape(-1, 3)
        cb = _blocks(bg, self.block).reshape(-1, 3)
        gain = np.ones(3, np.float32)
        offset = np.zeros(3, np.float32)
        for c in range(3):
            x, y = cb[:, c], cf[:, c]
            keep = np.ones(len(x), bool)
            for _ in range(3):
                xs, ys = x[keep], y[keep]
                if len(xs) < 8:
                    break
                if xs.std() > 20.0:
                    g = float(np.clip(np.polyfit(xs, ys, 1)[0], 1.0 - max_gain, 1.0 + max_gain))
                else:
                    g = 1.0
                o = float(np.clip(np.median(ys - g * xs), -max_offset, max_offset))
                r = np.abs(y - (g * x + o))
                keep = r <= max(2.0 * float(np.median(r)), 4.0)
            gain[c], offset[c] = g, o
        return gain, offset

    # --- occluder -----------------------------------------------------------------------

    def _occ_template(self, kind, ground):
        key = (kind, ground)
        t = self._occ_tpl.get(key)
        if t is None:
            lay = self.ren._build_occluder(kind, 0.5, floor_y(ground, self.H / self.px))
            y0, y1, x0, x1, rgbp, alpha = lay
            a = alpha[..., 0]
            # Interior pixels only (all 4 neighbours opaque too), a few hundred of them.
            core = a > 0.99
            core[1:] &= a[:-1] > 0.99
            core[:-1] &= a[1:] > 0.99
            core[:, 1:] &= a[:, :-1] > 0.99
            core[:, :-1] &= a[:, 1:] > 0.99
            ys, xs = np.nonzero(core)
            # A fixed random sample, in random order, so that any prefix of it (the coarse
            # search uses a quarter) spreads over the whole shape; a strided sample would
            # keep one column of a narrow pillar.
            pick = np.random.default_rng(5).permutation(len(ys))[:500]
            ys, xs = ys[pick] + y0, xs[pick] + x0
            rgb = (rgbp / np.maximum(alpha, 1e-6))[ys - y0, xs - x0]
            t = (ys, xs, rgb.astype(np.float32))
            self._occ_tpl[key] = t
        return t

    def find_occluder(self, f, bg, ground):
        """(kind, x, score) of the best occluder, or ("none", None, score)."""
        best = ("none", None, None)
        centre = int(round(0.5 * self.px))
        lo = int(round(0.15 * self.px)) - centre
        hi = int(round(0.85 * self.px)) - centre
        dxs = np.arange(lo, hi + 1)
        for kind in vocab.OCCLUDERS[1:]:
            ys, xs, rgb = self._occ_template(kind, ground)

            def scores(shifts, n, median):
                X = xs[None, :n] + shifts[:, None]
                ok = (X >= 0) & (X < self.W)
                Xc = np.clip(X, 0, self.W - 1)
                pix = f[ys[None, :n], Xc]                                # [M,N,3]
                d = np.where(ok, np.abs(pix - rgb[None, :n]).mean(-1), 255.0)
                if median:
                    return np.median(d, axis=1), pix, Xc
                # The mean of clipped differences: objects in front cost at most the clip,
                # and a shift of a pixel or two (which moves edge pixels) still shows.
                return np.minimum(d, 60.0).mean(axis=1), pix, Xc

            # Every shift on a quarter of the pixels, then the best one's neighbours on all.
            # (Not every other shift: the pillar's flutes repeat every two pixels.)
            coarse, _, _ = scores(dxs, len(ys) // 4, median=False)
            c = int(dxs[int(np.argmin(coarse))])
            near = np.arange(max(c - 3, lo), min(c + 3, hi) + 1)
            fine, pix, Xc = scores(near, len(ys), median=False)
            i = int(np.argmin(fine))
            occ_s = float(np.median(np.abs(pix[i] - rgb).mean(-1)))
            bg_s = float(np.median(np.abs(pix[i] - bg[ys, Xc[i]]).mean(-1)))
            dx = int(near[i])
            if occ_s < 28.0 and occ_s < 0.5 * bg_s and (best[2] is None or occ_s < best[2]):
                best = (kind, 0.5 + float(dx) / self.px, occ_s)
        return best

    # --- objects ------------------------------------------------------------------------

    def parse(self, rgb):
        a = np.asarray(rgb)
        if a.ndim != 3 or a.shape[2] != 3:
            raise ValueError("parse_frame expects an RGB image [H,W,3], got shape %s" % (a.shape,))
        if a.shape[0] != self.H or a.shape[1] != self.W:
            raise ValueError("frame is %dx%d, parser was built for %dx%d"
                             % (a.shape[1], a.shape[0], self.W, self.H))
        f = a.astype(np.float32)
        if a.dtype != np.uint8 and f.max() <= 1.0:
            f = f * 255.0  # float frames in [0, 1]
        sky, ground, bg_scores = self.classify_background(f)
        bg = self.ren.background(sky, ground).astype(np.float32)
        # Undo a slight global colour shift (gain and offset per channel) against the
        # background just found, then decide again on the corrected frame.
        gain, offset = self.calibrate(f, bg)
        if np.any(np.abs(gain - 1.0) > 1e-3) or np.any(np.abs(offset) > 0.5):
            f = (f - offset) / gain
            sky2, ground2, bg_scores = self.classify_background(f)
            if (sky2, ground2) != (sky, ground):
                sky, ground = sky2, ground2
                bg = self.ren.background(sky, ground).astype(np.float32)
        kind, occ_x, occ_score = self.find_occluder(f, bg, ground)
        fb = _blur3(f)
        diff = np.sqrt(((fb - self._blur_bg(sky, ground)) ** 2).sum(-1))
        # The blur spreads every object a pixel into the background around it: keep only
        # pixels that also differ on their own.
        raw = np.sqrt(((f - bg) ** 2).sum(-1))
        fg = (diff > self.fg_threshold) & (raw > 0.75 * self.fg_threshold)
        occ_mask = np.zeros((self.H, self.W), bool)
        if kind != "none":
            y0, y1, x0, x1, _, alpha = self.ren.occluder(kind, occ_x, ground)
            m = alpha[..., 0] > 0.02
            occ_mask[y0:y1, x0:x1] = m
            # One more pixel all round, for edges that are off by a pixel.
            grown = occ_mask.copy()
            grown[1:] |= occ_mask[:-1]
            grown[:-1] |= occ_mask[1:]
            grown[:, 1:] |= occ_mask[:, :-1]
            grown[:, :-1] |= occ_mask[:, 1:]
            occ_mask = grown
            fg &= ~occ_mask
        objects = self._objects(f, fg, occ_mask, SKY_DISCS.get(sky))
        return {"background": sky, "sky": sky, "ground": ground, "occluder": kind,
                "occluder_x": occ_x, "objects": objects,
                "scores": {"background": bg_scores, "occluder": occ_score}}

    def _classify_colours(self, f, fg):
        """(loose, strict) palette index maps, -1 where unclassified.

        strict: the nearest palette colour, within colour_tol and clearly nearer than the
        second nearest. loose: the palette colour that best explains the pixel as a mix of that
        colour (at least half) and the dark rim colour; this keeps the blurred edge of a small
        object, whose interior blur has darkened, attached to its strict core.
        """
        loose = np.full(fg.shape, -1, np.int32)
        strict = np.full(fg.shape, -1, np.int32)
        ys, xs = np.nonzero(fg)
        if len(ys) == 0:
            return loose, strict
        p = f[ys, xs]                                                # [N,3]
        rows = np.arange(len(p))
        d = np.sqrt(((p[:, None, :] - _PAL[None]) ** 2).sum(-1))    # [N,7]
        order = np.argsort(d, axis=1)
        d1 = d[rows, order[:, 0]]
        d2 = d[rows, order[:, 1]]
        ok = (d1 < self.colour_tol) & (d1 < 0.8 * d2)
        strict[ys[ok], xs[ok]] = order[ok, 0]
        rel = p - _RIM                                               # [N,3]
        alpha = (rel @ _DIR.T) / _DIR_N2[None]                       # [N,7]
        res = np.sqrt(((rel[:, None, :] - np.minimum(alpha, 1.05)[..., None] * _DIR[None]) ** 2).sum(-1))
        res = np.where(alpha >= 0.5, res, np.inf)  # mostly the colour, not mostly the rim
        order = np.argsort(res, axis=1)
        r1 = res[rows, order[:, 0]]
        r2 = res[rows, order[:, 1]]
        ok = (r1 < 0.6 * self.colour_tol) & (r1 < 0.8 * r2)
        loose[ys[ok], xs[ok]] = order[ok, 0]
        return loose, strict

    def _objects(self, f, fg, occ_mask, disc=None):
        """disc: the sky's sun or moon ((x, y, r) in world units, its colour names), or None."""
        cls, strict = self._classify_colours(f, fg)
        lab = label_components(cls)
        flat = lab.ravel()
        sel = np.nonzero(flat >= 0)[0]
        if len(sel) == 0:
            return []
        labels, inverse, counts = np.unique(flat[sel], return_inverse=True, return_counts=True)
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate(([0], np.cumsum(counts)))
        # Core pixels: all four neighbours in the same component (thin halos have none).
        core = np.zeros_like(lab, dtype=bool)
        core[1:-1, 1:-1] = ((lab[1:-1, 1:-1] >= 0) & (lab[1:-1, 1:-1] == lab[:-2, 1:-1]) &
                            (lab[1:-1, 1:-1] == lab[2:, 1:-1]) & (lab[1:-1, 1:-1] == lab[1:-1, :-2]) &
                            (lab[1:-1, 1:-1] == lab[1:-1, 2:]))
        core_flat = core.ravel()
        comps = []
        for k, lbl in enumerate(labels):
            if counts[k] < self.min_area:
                continue
            idx = sel[order[starts[k]:starts[k + 1]]]
            if core_flat[idx].sum() < self.min_core:
                continue
            colour = int(cls.flat[lbl])
            if int((strict.flat[idx] == colour).sum()) < self.min_core:
                continue  # no pixel is plainly that colour: a shadow or a dark texture
            ys, xs = np.divmod(idx, self.W)
            if ys.max() - ys.min() + 1 > self.max_extent or xs.max() - xs.min() + 1 > self.max_extent:
                continue  # bigger than any object: part of a background we did not subtract
            comps.append({"colour_idx": colour, "ys": ys, "xs": xs})
        comps = self._join_split(comps, occ_mask)
        comps = self._absorb_fragments(comps)
        comps = self._split_wide(comps, occ_mask)
        if disc is not None:
            xyr, colours = disc
            comps = [c for c in comps if _PAL_NAMES[c["colour_idx"]] not in colours
                     or not self._on_disc(c, xyr)]
        out = []
        for c in comps:
            ys, xs = c["ys"], c["xs"]
            alpha = np.clip(((f[ys, xs] - _RIM) @ _DIR[c["colour_idx"]]) / _DIR_N2[c["colour_idx"]],
                            0.0, 1.0)
            # Where the colour's weight sits: a triangle's is two thirds of the way down its
            # bounding box, a ball's or a box's in the middle. Blur moves neither.
            cy = float((alpha * ys).sum() / max(alpha.sum(), 1e-6))
            skew = (cy - 0.5 * (ys.min() + ys.max())) / float(ys.max() - ys.min() + 1)
            # Outline from the pixels that are mostly the object's colour: the rim-blended ones
            # that joined the component would square off a small ball. A blurred small object
            # has few pure pixels: then take its brighter half (a level set of the blurred
            # shape keeps the shape).
            solid = alpha >= min(self.solid_alpha, float(np.median(alpha)))
            sy, sx = (ys[solid], xs[solid]) if solid.sum() >= self.min_area else (ys, xs)
            obj = self._describe(sy, sx, ys, xs, skew, _PAL_NAMES[c["colour_idx"]])
            if obj is not None:
                out.append(obj)
        out.sort(key=lambda o: (o["position"][0], o["position"][1]))
        return out

    def _join_split(self, comps, occ_mask):
        """Join same-colour pieces whose gap is covered by the occluder (one object seen on both
        sides of a pillar)."""
        if not occ_mask.any() or len(comps) < 2:
            return comps
        joined = True
        while joined:
            joined = False
            for i in range(len(comps)):
                for j in range(i + 1, len(comps)):
                    a, b = comps[i], comps[j]
                    if a["colour_idx"] != b["colour_idx"]:
                        continue
                    ay0, ay1, by0, by1 = a["ys"].min(), a["ys"].max(), b["ys"].min(), b["ys"].max()
                    ax0, ax1, bx0, bx1 = a["xs"].min(), a["xs"].max(), b["xs"].min(), b["xs"].max()
                    oy0, oy1 = max(ay0, by0), min(ay1, by1)
                    ox0, ox1 = max(ax0, bx0), min(ax1, bx1)
                    if oy1 - oy0 + 1 >= 0.3 * min(ay1 - ay0 + 1, by1 - by0 + 1):
                        gap = occ_mask[oy0:oy1 + 1, min(ax1, bx1) + 1:max(ax0, bx0)]
                    elif ox1 - ox0 + 1 >= 0.3 * min(ax1 - ax0 + 1, bx1 - bx0 + 1):
                        gap = occ_mask[min(ay1, by1) + 1:max(ay0, by0), ox0:ox1 + 1]
                    else:
                        continue
                    # One object at most: the joined box must fit the biggest object.
                    span = 2.0 * vocab.SIZE_HALF["big"] * self.px + 3
                    if max(ax1, bx1) - min(ax0, bx0) + 1 > span or \
                            max(ay1, by1) - min(ay0, by0) + 1 > span:
                        continue
                    if gap.size and gap.mean() > 0.8:
                        comps[i] = {"colour_idx": a["colour_idx"],
                                    "ys": np.concatenate((a["ys"], b["ys"])),
                                    "xs": np.concatenate((a["xs"], b["xs"]))}
                        del comps[j]
                        joined = True
                        break
                if joined:
                    break
        return comps

    def _split_wide(self, comps, occ_mask):
        """No object is much wider than tall (balls, boxes and triangles all fit a square), so a
        component at least split_aspect times as wide as tall is k = round(width / height)
        same-colour objects side by side whose dark rims were lost (a decoder blurs them away):
        cut it into k equal-width parts. Not where it touches the frame's sides or the
        occluder: there a part of an object may show."""
        out = []
        for c in comps:
            ys, xs = c["ys"], c["xs"]
            x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
            w, h = x1 - x0 + 1, y1 - y0 + 1
            k = int(round(w / float(h)))
            if w < self.split_aspect * h or k < 2 or x0 == 0 or x1 == self.W - 1 or y0 == 0:
                out.append(c)
                continue
            oy0, oy1 = max(y0 - 2, 0), min(y1 + 3, self.H)
            ox0, ox1 = max(x0 - 2, 0), min(x1 + 3, self.W)
            if occ_mask[oy0:oy1, ox0:ox1].any():
                out.append(c)
                continue
            part = np.minimum(((xs - x0) * k) // w, k - 1)
            for i in range(k):
                m = part == i
                if m.sum() >= self.min_area:
                    out.append({"colour_idx": c["colour_idx"], "ys": ys[m], "xs": xs[m]})
        return out

    def _on_disc(self, comp, disc):
        """True for a piece smaller than three quarters of a small ball's interior centred on
        the sun or moon (its centroid within the disc's radius of the disc's centre): the disc
        drawn a little off its colour, not an object. Whole objects in front of it still count."""
        if len(comp["xs"]) >= 2.5 * self.fragment_area:
            return False
        x, y, r = disc
        cx, cy = comp["xs"].mean() + 0.5, comp["ys"].mean() + 0.5
        return (cx - x * self.px) ** 2 + (cy - y * self.px) ** 2 <= (r * self.px) ** 2

    def _absorb_fragments(self, comps):
        """Pieces smaller than fragment_area next to a whole object: joined to it when of its
        colour, dropped when not (a fringe). The nearest whole object by bounding-box gap."""
        if len(comps) < 2:
            return comps
        box = [(c["ys"].min(), c["ys"].max(), c["xs"].min(), c["xs"].max()) for c in comps]
        whole = [i for i, c in enumerate(comps) if len(c["ys"]) >= self.fragment_area]
        keep = [True] * len(comps)
        for i, c in enumerate(comps):
            if len(c["ys"]) >= self.fragment_area:
                continue
            y0, y1, x0, x1 = box[i]
            best, best_gap = None, None
            for j in whole:
                by0, by1, bx0, bx1 = box[j]
                gap = max(by0 - y1, y0 - by1, bx0 - x1, x0 - bx1, 0) - 1
                if gap <= self.fragment_gap and (best is None or gap < best_gap):
                    best, best_gap = j, gap
            if best is None:
                continue
            keep[i] = False
            w = comps[best]
            if w["colour_idx"] == c["colour_idx"]:
                comps[best] = {"colour_idx": w["colour_idx"],
                               "ys": np.concatenate((w["ys"], c["ys"])),
                               "xs": np.concatenate((w["xs"], c["xs"]))}
        return [c for i, c in enumerate(comps) if keep[i]]

    def _describe(self, ys, xs, iys, ixs, skew, colour):
        """Object from its solid pixels (ys, xs), its whole coloured component (iys, ixs) and
        where the colour's weight sits in it (skew: 0 centred, > 0 low)."""
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())
        h, w = y1 - y0 + 1, x1 - x0 + 1
        lo = np.full(h, x1 + 1, np.int64)
        hi = np.full(h, x0 - 1, np.int64)
        np.minimum.at(lo, ys - y0, xs)
        np.maximum.at(hi, ys - y0, xs)
        # Every shape is convex: take the convex hull of the pixels (their corners), which
        # also closes the dent a ball's rotation marker makes near its rim.
        pts = []
        for r in range(h):
            if hi[r] >= lo[r]:
                a, b = float(lo[r] - x0), float(hi[r] - x0 + 1)
                pts += [(a, r), (b, r), (a, r + 1.0), (b, r + 1.0)]
        hull = _convex_hull(pts)
        area = _polygon_area(hull)
        width = np.array([_hull_width(hull, r + 0.5) for r in range(h)])
        fill = area / float(h * w)
        q = max(1, int(round(h / 4.0)))
        wmax = max(float(width.max()), 1.0)
        top = float(width[:q].mean()) / wmax
        bottom = float(width[-q:].mean()) / wmax
        if (top < 0.6 * bottom and fill < 0.8) or (skew > 0.055 and fill < 0.95):
            kind = "triangle"
        elif fill > 0.9 and top > 0.85 and bottom > 0.85:
            kind = "box"
        else:
            kind = "ball"
        # Size and position from the whole coloured component: its half extent plus the rim (a triangle's base corners lose ~1.6 rim
        # widths), plus a little for what blur eats away.
        y0, y1, x0, x1 = int(iys.min()), int(iys.max()), int(ixs.min()), int(ixs.max())
        h, w = y1 - y0 + 1, x1 - x0 + 1
        rim = OUTLINE * (1.6 if kind == "triangle" else 1.0)
        half = (max(h, w) / 2.0 + 0.4) / self.px + rim
        size = "big" if half > 0.5 * (vocab.SIZE_HALF["small"] + vocab.SIZE_HALF["big"]) else "small"
        cx = (x0 + x1 + 1) / (2.0 * self.px)
        cy = (y0 + y1 + 1) / (2.0 * self.px)
        if kind == "triangle":
            # The thin apex loses the most to the rim and to blur: place the triangle by its
            # base, one rim width below the interior's lowest row.
            cy = (y1 + 1) / self.px + OUTLINE - half
        return {"kind": kind, "colour": colour, "position": (cx, cy), "size": size,
                "half": half, "area": int(len(iys)), "fill": fill, "skew": skew,
                "bbox": (x0 / self.px, y0 / self.px, (x1 + 1) / self.px, (y1 + 1) / self.px)}


def _convex_hull(pts):
    """Monotone-chain convex hull of (x, y) points, counter-clockwise, no repeats."""
    pts = sorted(set(pts))
    if len(pts) <= 2:
        return pts

    def half(seq):
        out = []
        for p in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1]) -
                                     (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(reversed(pts))
    return lower[:-1] + upper[:-1]


def _polygon_area(poly):
    n = len(poly)
    if n < 3:
        return 0.0
    s = 0.0
    for i in range(n):
        x0, y0 = poly[i]
        x1, y1 = poly[(i + 1) % n]
        s += x0 * y1 - x1 * y0
    return abs(s) / 2.0


def _hull_width(poly, y):
    """Width of a convex polygon along the horizontal line at y."""
    xs = []
    n = len(poly)
    for i in range(n):
        (ax, ay), (bx, by) = poly[i], poly[(i + 1) % n]
        if (ay <= y < by) or (by <= y < ay):
            xs.append(ax + (y - ay) * (bx - ax) / (by - ay))
    return max(xs) - min(xs) if len(xs) >= 2 else 0.0


_parsers = {}


def get_parser(height, width):
    p = _parsers.get((height, width))
    if p is None:
        p = Parser(height, width)
        _parsers[(height, width)] = p
    return p


def parse_frame(rgb):
    """Parse one RGB frame [H,W,3] (uint8, or float in [0,1]).

    Returns {"background" (= "sky"), "sky", "ground", "occluder", "occluder_x",
             "objects": [{"kind", "colour", "position": (x, y), "size", "half", "area", "fill",
                          "bbox"}], "scores"} with positions in world units.
    """
    a = np.asarray(rgb)
    if a.ndim != 3:
        raise ValueError("parse_frame expects an RGB image [H,W,3], got shape %s" % (a.shape,))
    return get_parser(a.shape[0], a.shape[1]).parse(a)


# --- scoring against ground truth ---------------------------------------------------------

def compare(parsed, record, min_visible=0.5, max_dist=0.05):
    """Compare a parse with the frame's ground-truth record.

    Objects showing at least min_visible are expected; those showing less than 0.1 must not be
    found; those in between may or may not be. Returns a dict of booleans (background, ground,
    occluder, count, colours: the multiset of colours of found objects equals the expected one)
    and per-object counts (matched, kind_ok, colour_ok, size_ok, expected).
    """
    exp = [o for o in record["objects"] if o["visible"] >= min_visible]
    opt = [o for o in record["objects"] if 0.1 <= o["visible"] < min_visible]
    found = list(parsed["objects"])
    n = len(found)
    count_ok = len(exp) <= n <= len(exp) + len(opt)
    pairs = []
    for i, o in enumerate(exp):
        for j, p in enumerate(found):
            d = math.hypot(o["x"] - p["position"][0], o["y"] - p["position"][1])
            if d <= max_dist:
                pairs.append((d, i, j))
    pairs.sort()
    used_i, used_j, matches = set(), set(), []
    for d, i, j in pairs:
        if i in used_i or j in used_j:
            continue
        used_i.add(i)
        used_j.add(j)
        matches.append((exp[i], found[j]))
    if not opt:
        colours_ok = sorted(o["colour"] for o in exp) == sorted(p["colour"] for p in found)
    else:
        colours_ok = count_ok and all(any(p["colour"] == o["colour"] for p in found) for o in exp)
    return {
        "background": parsed["sky"] == record["sky"],
        "ground": parsed["ground"] == record["ground"],
        "occluder": parsed["occluder"] == record["occluder"],
        "count": count_ok,
        "colours": colours_ok,
        "expected": len(exp),
        "matched": len(matches),
        "kind_ok": sum(o["kind"] == p["kind"] for o, p in matches),
        "colour_ok": sum(o["colour"] == p["colour"] for o, p in matches),
        "size_ok": sum(o["size"] == p["size"] for o, p in matches),
        "pairs": [(o, p) for o, p in matches],
    }


# --- measuring the parser -----------------------------------------------------------------

PERTURBATIONS = ("clean", "blur", "shift", "noise", "all")


def perturb(frame, mode, rng):
    """A frame degraded the way generated video may be: "blur" (3x3 binomial, sigma ~0.7 px),
    "shift" (per-frame gain 0.9-1.1 and per-channel offset +-12), "noise" (Gaussian, sigma 6),
    "all" (the three in that order), "clean" (unchanged)."""
    if mode not in PERTURBATIONS:
        raise ValueError("unknown perturbation %r (known: %s)" % (mode, ", ".join(PERTURBATIONS)))
    if mode == "clean":
        return frame
    f = frame.astype(np.float32)
    if mode in ("blur", "all"):
        p = np.pad(f, ((1, 1), (1, 1), (0, 0)), mode="edge")
        v = 0.25 * p[:-2] + 0.5 * p[1:-1] + 0.25 * p[2:]
        f = 0.25 * v[:, :-2] + 0.5 * v[:, 1:-1] + 0.25 * v[:, 2:]
    if mode in ("shift", "all"):
        f = f * rng.uniform(0.9, 1.1) + rng.uniform(-12.0, 12.0, 3).astype(np.float32)
    if mode in ("noise", "all"):
        f = f + rng.normal(0.0, 6.0, f.shape).astype(np.float32)
    return np.clip(f + 0.5, 0, 255).astype(np.uint8)


def measure(n_clips=60, size=(128, 128), mode="clean", seed=10000, n_frames=24, every=4):
    """Parser accuracy on rendered frames of n_clips random scenes.

    Returns {"unoccluded": stats, "all": stats, "ms_per_frame"}; stats hold the frame count
    and the share of frames with the right background (sky), ground, occluder, object count
    and colour multiset, and among matched objects the share with the right kind, colour and
    size ("unoccluded": every object shows at least 97% of itself).
    """
    import time
    from .scene import Scene, render_clip

    prng = np.random.default_rng(seed + 7)
    keys = ("background", "ground", "occluder", "count", "colours")
    acc = {k: {"frames": 0, "expected": 0, "matched": 0, "kind_ok": 0, "colour_ok": 0,
               "size_ok": 0, **{x: 0 for x in keys}} for k in ("unoccluded", "all")}
    spent = 0.0
    n = 0
    for i in range(n_clips):
        rng = np.random.default_rng(seed + i)
        frames, records = render_clip(Scene.sample(rng, aspect=size[0] / size[1]), n_frames, size=size)
        for t in range(0, n_frames, every):
            img = perturb(frames[t], mode, prng)
            t0 = time.perf_counter()
            parsed = parse_frame(img)
            spent += time.perf_counter() - t0
            n += 1
            c = compare(parsed, records[t])
            groups = ["all"]
            if all(o["visible"] >= 0.97 for o in records[t]["objects"]):
                groups.append("unoccluded")
            for g in groups:
                a = acc[g]
                a["frames"] += 1
                for k in keys:
                    a[k] += int(c[k])
                for k in ("expected", "matched", "kind_ok", "colour_ok", "size_ok"):
                    a[k] += c[k]
    out = {"ms_per_frame": 1000.0 * spent / max(n, 1)}
    for g, a in acc.items():
        f = max(a["frames"], 1)
        m = max(a["matched"], 1)
        out[g] = {"frames": a["frames"], "objects": a["expected"],
                  **{k: a[k] / f for k in keys},
                  "matched": a["matched"] / max(a["expected"], 1),
                  "kind": a["kind_ok"] / m, "colour": a["colour_ok"] / m, "size": a["size_ok"] / m}
    return out


def format_measure(mode, m):
    lines = []
    for g in ("unoccluded", "all"):
        s = m[g]
        lines.append("%-6s %-10s frames %4d  background %.3f ground %.3f occluder %.3f count %.3f "
                     "colours %.3f | objects %4d matched %.3f kind %.3f colour %.3f size %.3f"
                     % (mode, g, s["frames"], s["background"], s["ground"], s["occluder"],
                        s["count"], s["colours"], s["objects"], s["matched"], s["kind"],
                        s["colour"], s["size"]))
    return "\n".join(lines)


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="Measure the scene parser on rendered frames.")
    ap.add_argument("--clips", type=int, default=60, help="random scenes per perturbation")
    ap.add_argument("--size", type=int, default=128, help="frame width and height")
    ap.add_argument("--seed", type=int, default=50000, help="first scene seed")
    ap.add_argument("--modes", default=",".join(PERTURBATIONS),
                    help="comma-separated perturbations: " + ", ".join(PERTURBATIONS))
    a = ap.parse_args(argv)
    modes = [m for m in a.modes.split(",") if m]
    bad = [m for m in modes if m not in PERTURBATIONS]
    if bad or a.clips < 1 or a.size < 16:
        ap.error("unknown perturbation %s" % bad if bad else "--clips >= 1 and --size >= 16")
    for mode in modes:
        m = measure(a.clips, size=(a.size, a.size), mode=mode, seed=a.seed)
        print(format_measure(mode, m))
        print("%-6s parse time %.1f ms per frame" % (mode, m["ms_per_frame"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
