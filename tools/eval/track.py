"""Per-frame parses of a clip and object tracks through it.

parse_clip(frames) runs the world's scene parser on every frame; ClipParse keeps the parses,
the clip's occluder (the one the parser finds in most frames, where it stands) and its pixel
mask, and each detected object's colour sample (the mean RGB of its inner pixels that are
plainly its palette colour, so a ball's dark marker and the rim stay out).

build_tracks links detections frame to frame by position (objects of this world collide and
never pass through each other, so the nearest object at the predicted place is the same one);
a colour change costs a little but does not break a track, so colour flicker is measurable.
A track whose object disappears while touching the occluder is closed at once: what comes out
of the occluder later starts a new track, and the permanence metric pairs the two.

Thread-safety: plain functions over their arguments (the parser caches per process).
"""
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from world import vocab
from world.parser import get_parser, parse_frame

_PAL = {c: np.array(vocab.PALETTE[c], np.float32) for c in vocab.COLOURS}
_PAL_ARR = np.array([vocab.PALETTE[c] for c in vocab.COLOURS], np.float32)

OCC_MARGIN_PX = 3        # a detection this close to the occluder's pixels "touches" it
BRIDGE_GAP = 2           # frames a track may miss away from the occluder (parser flicker)


@dataclass
class Detection:
    t: int
    colour: str
    kind: str
    x: float
    y: float
    half: float
    bbox: tuple              # world units (x0, y0, x1, y1)
    rgb: object              # mean RGB of the inner palette pixels, or None
    near_occ: bool = False


@dataclass
class ClipParse:
    parses: list
    dets: list                    # per frame: [Detection]
    occluder: str = "none"
    occluder_x: float = None
    occ_mask: object = None       # bool [H, W] or None
    occ_frames: int = 0           # frames in which the parser found that occluder
    height: int = 0
    width: int = 0


def _colour_sample(frame, bbox, colour, W, H):
    """Mean RGB of the pixels in the middle half of the bbox whose nearest palette colour is
    the object's and within 80 of it; None when there are none."""
    x0, y0, x1, y1 = bbox
    cx0, cx1 = x0 + 0.25 * (x1 - x0), x1 - 0.25 * (x1 - x0)
    cy0, cy1 = y0 + 0.25 * (y1 - y0), y1 - 0.25 * (y1 - y0)
    px0, px1 = int(np.floor(cx0 * W)), int(np.ceil(cx1 * W))
    py0, py1 = int(np.floor(cy0 * W)), int(np.ceil(cy1 * W))
    px0, py0 = max(px0, 0), max(py0, 0)
    px1, py1 = min(px1, W), min(py1, H)
    if px1 <= px0 or py1 <= py0:
        return None
    p = frame[py0:py1, px0:px1].reshape(-1, 3).astype(np.float32)
    d = np.sqrt(((p[:, None, :] - _PAL_ARR[None]) ** 2).sum(-1))
    ci = vocab.COLOURS.index(colour)
    ok = (d.argmin(1) == ci) & (d[:, ci] < 80.0)
    if not ok.any():
        return None
    return p[ok].mean(0)


def _occluder_mask(kind, x, ground, H, W):
    ren = get_parser(H, W).ren
    lay = ren.occluder(kind, x, ground)
    m = np.zeros((H, W), bool)
    if lay is None:
        return m
    y0, y1, x0, x1, _, alpha = lay
    m[y0:y1, x0:x1] = alpha[..., 0] > 0.02
    return m


def _touches(mask, bbox, W, H, margin):
    x0 = max(int(np.floor(bbox[0] * W)) - margin, 0)
    x1 = min(int(np.ceil(bbox[2] * W)) + margin, W)
    y0 = max(int(np.floor(bbox[1] * W)) - margin, 0)
    y1 = min(int(np.ceil(bbox[3] * W)) + margin, H)
    return x1 > x0 and y1 > y0 and bool(mask[y0:y1, x0:x1].any())


def parse_clip(frames, parses=None):
    """Parses every frame (or takes the parses given) and finds the clip's occluder."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError("frames must be [T,H,W,3], got shape %s" % (frames.shape,))
    T, H, W, _ = frames.shape
    if parses is None:
        parses = [parse_frame(f) for f in frames]
    occs = Counter(p["occluder"] for p in parses)
    occ, n_occ = max(occs.items(), key=lambda kv: (kv[1], kv[0] != "none"))
    cp = ClipParse(parses, [], height=H, width=W)
    if occ != "none" and n_occ * 2 >= T:
        xs = [p["occluder_x"] for p in parses if p["occluder"] == occ]
        grounds = Counter(p["ground"] for p in parses)
        cp.occluder, cp.occluder_x, cp.occ_frames = occ, float(np.median(xs)), n_occ
        cp.occ_mask = _occluder_mask(occ, cp.occluder_x, grounds.most_common(1)[0][0], H, W)
    else:
        cp.occ_frames = occs.get("none", 0) if occ == "none" else n_occ
    for t, (f, p) in enumerate(zip(frames, parses)):
        row = []
        for o in p["objects"]:
            d = Detection(t, o["colour"], o["kind"], float(o["position"][0]),
                          float(o["position"][1]), float(o["half"]), tuple(o["bbox"]),
                          _colour_sample(f, o["bbox"], o["colour"], W, H))
            if cp.occ_mask is not None:
                d.near_occ = _touches(cp.occ_mask, d.bbox, W, H, OCC_MARGIN_PX)
            row.append(d)
        cp.dets.append(row)
    return cp


@dataclass
class Track:
    dets: list = field(default_factory=list)
    closed_at_occ: bool = False    # lost while touching the occluder

    @property
    def first(self):
        return self.dets[0]

    @property
    def last(self):
        return self.dets[-1]

    def colour(self, n=3, end=False):
        """Majority palette colour of the first (or last) n detections."""
        ds = self.dets[-n:] if end else self.dets[:n]
        return Counter(d.colour for d in ds).most_common(1)[0][0]

    def velocity(self):
        """World units per frame from the last two detections (0 with one)."""
        if len(self.dets) < 2:
            return 0.0, 0.0
        a, b = self.dets[-2], self.dets[-1]
        dt = max(b.t - a.t, 1)
        return (b.x - a.x) / dt, (b.y - a.y) / dt


def build_tracks(cp, bridge=BRIDGE_GAP):
    """Tracks through a ClipParse (see the module doc)."""
    active, done = [], []
    for t, dets in enumerate(cp.dets):
        # Tracks that missed too many frames, or lost their object at the occluder, end.
        keep = []
        for tr in active:
            gap = t - tr.last.t - 1
            if gap >= 1 and tr.last.near_occ:
                tr.closed_at_occ = True
                done.append(tr)
            elif gap > bridge:
                done.append(tr)
            else:
                keep.append(tr)
        active = keep
        pairs = []
        for i, tr in enumerate(active):
            dt = t - tr.last.t
            vx, vy = tr.velocity()
            px, py = tr.last.x + vx * dt, tr.last.y + vy * dt
            gate = 0.04 + 0.16 * dt
            for j, d in enumerate(dets):
                dist = float(np.hypot(d.x - px, d.y - py))
                if dist <= gate:
                    pairs.append((dist + (0.08 if d.colour != tr.last.colour else 0.0), i, j))
        pairs.sort()
        used_t, used_d = set(), set()
        for _, i, j in pairs:
            if i in used_t or j in used_d:
                continue
            used_t.add(i)
            used_d.add(j)
            active[i].dets.append(dets[j])
        for j, d in enumerate(dets):
            if j not in used_d:
                active.append(Track([d]))
    done.extend(active)
    done.sort(key=lambda tr: (tr.first.t, tr.first.x))
    return done
