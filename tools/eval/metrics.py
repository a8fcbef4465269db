"""The scorecard's metrics, each a function of uint8 frames [T,H,W,3] (through their parses)
and the prompt in effect at each frame. docs/eval.md says exactly what each one measures.

    adherence(cp, frame_prompts, chunks)             background, colours, count, shapes, ...
    steering(cp, prompts, switch_frame, chunks)      did the change show, and how soon
    permanence(cp, tracks, fps)                      objects that go behind the occluder
    temporal(cp, tracks, fps)                        colour steadiness, motion smoothness, speed

Each returns counts or samples (not shares), so that clips add up with merge(); summary
functions turn the totals into the figures of the report. A chunk "agrees" on a criterion when
at least half of its frames do: prompts act per chunk, and a few frames in which an object is
behind the occluder or the parser misses it should not fail the chunk.

Thread-safety: plain functions.
"""
from collections import Counter

import numpy as np

from world.caption import parse_caption

ADHERENCE_KEYS = ("background", "colours", "count", "shapes", "ground", "occluder")


def expected(prompt):
    """What a prompt asks for: sky (None when it names none), ground, occluder, object count,
    colour multiset and (colour, kind) multiset."""
    d = parse_caption(prompt)
    colours, shapes = Counter(), Counter()
    for g in d["groups"]:
        colours[g["colour"]] += g["count"]
        shapes[(g["colour"], g["kind"])] += g["count"]
    return {"sky": d["sky"], "ground": d["ground"], "occluder": d["occluder"],
            "count": sum(colours.values()), "colours": colours, "shapes": shapes}


def frame_checks(parsed, exp):
    """Per-frame booleans: background (the sky), ground, occluder, colours (the set of object
    colours found equals the prompt's), count, shapes (the multiset of (colour, kind) found
    equals the prompt's). None where the prompt does not say (no sky named)."""
    objs = parsed["objects"]
    found_c = Counter(o["colour"] for o in objs)
    found_s = Counter((o["colour"], o["kind"]) for o in objs)
    return {"background": None if exp["sky"] is None else parsed["sky"] == exp["sky"],
            "ground": parsed["ground"] == exp["ground"],
            "occluder": parsed["occluder"] == exp["occluder"],
            "colours": set(found_c) == set(exp["colours"]),
            "count": len(objs) == exp["count"],
            "shapes": found_s == exp["shapes"]}


def _chunk_votes(values, chunks):
    """Per chunk: True when at least half of its decided frames are True (None: no frame
    decided)."""
    out = []
    for a, b in chunks:
        v = [x for x in values[a:b] if x is not None]
        out.append(None if not v else 2 * sum(v) >= len(v))
    return out


def _new_counts(keys):
    return {k: {"chunks": 0, "chunks_ok": 0, "frames": 0, "frames_ok": 0} for k in keys}


def merge(total, part):
    """Adds part's counts (nested dicts of numbers, lists of samples) into total."""
    for k, v in part.items():
        if isinstance(v, dict):
            merge(total.setdefault(k, {}), v)
        elif isinstance(v, list):
            total.setdefault(k, []).extend(v)
        else:
            total[k] = total.get(k, 0) + v
    return total


def adherence(cp, frame_prompts, chunks):
    """Counts of agreeing chunks and frames per criterion (ADHERENCE_KEYS)."""
    if len(frame_prompts) != len(cp.parses):
        raise ValueError("%d prompts for %d frames" % (len(frame_prompts), len(cp.parses)))
    cache = {}
    checks = []
    for p, text in zip(cp.parses, frame_prompts):
        exp = cache.get(text)
        if exp is None:
            exp = cache[text] = expected(text)
        checks.append(frame_checks(p, exp))
    out = _new_counts(ADHERENCE_KEYS)
    for k in ADHERENCE_KEYS:
        vals = [c[k] for c in checks]
        dec = [v for v in vals if v is not None]
        out[k]["frames"] += len(dec)
        out[k]["frames_ok"] += sum(dec)
        votes = [v for v in _chunk_votes(vals, chunks) if v is not None]
        out[k]["chunks"] += len(votes)
        out[k]["chunks_ok"] += sum(votes)
    return out


def adherence_summary(counts):
    return {k: {"chunks": c["chunks_ok"] / c["chunks"] if c["chunks"] else None,
                "frames": c["frames_ok"] / c["frames"] if c["frames"] else None,
                "n_chunks": c["chunks"]} for k, c in counts.items()}


# --- steering -------------------------------------------------------------------------------

def switch_change(before, after):
    """What a prompt switch asks to change: {"sky": new sky} and/or {"colours": {colour: new
    count}} for every colour whose count differs (recolour, add and remove all show there)."""
    b, a = expected(before), expected(after)
    ch = {}
    if b["sky"] != a["sky"] and a["sky"] is not None:
        ch["sky"] = a["sky"]
    diff = {c: a["colours"].get(c, 0) for c in set(a["colours"]) | set(b["colours"])
            if a["colours"].get(c, 0) != b["colours"].get(c, 0)}
    if diff:
        ch["colours"] = diff
    return ch


def shows_change(parsed, change):
    """True when a frame shows every part of the change (the new sky; each changed colour with
    its new count)."""
    if "sky" in change and parsed["sky"] != change["sky"]:
        return False
    if "colours" in change:
        found = Counter(o["colour"] for o in parsed["objects"])
        if any(found.get(c, 0) != n for c, n in change["colours"].items()):
            return False
    return True


def steering(cp, prompts, switch_frame, chunks, within=2):
    """One switch: {"switches": 1, "shown": 0/1, "latency": chunks after the switch's chunk
    until the first chunk that shows the change (None: never), "early": 1 when the chunk
    before the switch already showed it, "no_change": 1 when the captions differ in nothing
    the parser sees}. The switch counts as shown when the change appears in one of the first
    `within` chunks under the new prompt and was not there in the chunk before."""
    change = switch_change(prompts[0], prompts[1])
    starts = [a for a, _ in chunks]
    if switch_frame not in starts:
        raise ValueError("switch frame %d is not a chunk boundary %s" % (switch_frame, starts))
    k0 = starts.index(switch_frame)
    if not change:
        return {"switches": 1, "shown": 0, "latency": None, "early": 0, "no_change": 1,
                "change": {}}
    votes = _chunk_votes([shows_change(p, change) for p in cp.parses], chunks)
    early = int(k0 > 0 and bool(votes[k0 - 1]))
    latency = next((k - k0 for k in range(k0, len(chunks)) if votes[k]), None)
    shown = int(latency is not None and latency < within and not early)
    return {"switches": 1, "shown": shown, "latency": latency, "early": early, "no_change": 0,
            "change": {k: (v if k == "sky" else dict(v)) for k, v in change.items()}}


# --- permanence -----------------------------------------------------------------------------

def permanence(cp, tracks, fps=16.0, window_s=3.5, min_speed=0.1, min_obs=3):
    """Occlusion events of one clip: an established track (min_obs detections) that is lost
    while touching the occluder, moving sideways at min_speed units/s or more, with window_s
    seconds of clip left after it. It is resolved by the tracks that start within the window
    touching the occluder, near where it went in (|dx| up to the occluder's width + 0.2,
    |dy| up to 0.35: a bouncing object falls while hidden) and seen at least twice: "same"
    when one of them has its colour,
    "changed" when they all have another, "vanished" when there is none."""
    out = {"events": 0, "same": 0, "changed": 0, "vanished": 0, "excluded": 0}
    if cp.occ_mask is None:
        return out
    T = len(cp.dets)
    W = cp.width
    window = int(round(window_s * fps))
    cols = np.nonzero(cp.occ_mask.any(0))[0]
    occ_w = (cols.max() - cols.min() + 1) / W if len(cols) else 0.0
    for tr in tracks:
        if not tr.closed_at_occ:
            continue
        lost = tr.last
        vx, _ = tr.velocity()
        if len(tr.dets) < min_obs or abs(vx) * fps < min_speed or lost.t + window >= T:
            out["excluded"] += 1
            continue
        cands = [c for c in tracks
                 if c is not tr and lost.t < c.first.t <= lost.t + window and c.first.near_occ
                 and len(c.dets) >= 2 and abs(c.first.x - lost.x) <= occ_w + 0.2
                 and abs(c.first.y - lost.y) <= 0.35]
        out["events"] += 1
        colour = tr.colour(end=True)
        if any(c.colour() == colour for c in cands):
            out["same"] += 1
        elif cands:
            out["changed"] += 1
        else:
            out["vanished"] += 1
    return out


def permanence_summary(c):
    return {"reappear": c["same"] / c["events"] if c.get("events") else None,
            "events": c.get("events", 0), "changed": c.get("changed", 0),
            "vanished": c.get("vanished", 0)}


# --- temporal consistency -------------------------------------------------------------------

def temporal(cp, tracks, fps=16.0, min_len=6):
    """Samples from tracks with at least min_len detections: per track the colour spread
    (RGB levels: the root of the per-channel variance of its colour samples, averaged over
    channels), every |second difference| of position over three consecutive frames (world
    units per frame^2: gravity alone gives 0.006, a bounce a spike, jitter a steady excess),
    every speed between consecutive frames (units/s), and colour flips (consecutive
    detections whose palette colour differs)."""
    out = {"colour_std": [], "accel": [], "speed": [], "pairs": 0, "flips": 0, "tracks": 0}
    for tr in tracks:
        if len(tr.dets) < min_len:
            continue
        out["tracks"] += 1
        rgb = np.array([d.rgb for d in tr.dets if d.rgb is not None])
        if len(rgb) >= min_len:
            out["colour_std"].append(float(np.sqrt(rgb.var(0).mean())))
        by_t = {d.t: d for d in tr.dets}
        for d in tr.dets:
            b = by_t.get(d.t + 1)
            if b is not None:
                out["pairs"] += 1
                out["flips"] += int(b.colour != d.colour)
                out["speed"].append(float(np.hypot(b.x - d.x, b.y - d.y)) * fps)
                c = by_t.get(d.t + 2)
                if c is not None:
                    out["accel"].append(float(np.hypot(c.x - 2 * b.x + d.x, c.y - 2 * b.y + d.y)))
    return out


def temporal_summary(s):
    """colour_std: median over tracks; accel and speed: means over all samples (a median
    would be that of the resting objects, 0)."""
    med = lambda v: float(np.median(v)) if v else None
    mean = lambda v: float(np.mean(v)) if v else None
    return {"colour_std": med(s.get("colour_std", [])), "accel": mean(s.get("accel", [])),
            "speed": mean(s.get("speed", [])),
            "flips": s["flips"] / s["pairs"] if s.get("pairs") else None,
            "tracks": s.get("tracks", 0)}
