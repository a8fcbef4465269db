"""`python3 -m eval`: generate the held-out sets with one or more backends, score them, and
write the scorecard (report.txt, report.json, PNG strips) to --out. docs/eval.md has the
details; `--help` the options.

Thread-safety: a command, one thread.
"""
import argparse
import os
import sys
import time

import numpy as np

from flipbook_ref import memory
from world import write_png

from . import metrics as M
from .backends import (AEBackend, CBackend, RefBackend, WorldBackend, find_flipbook, model_info,
                       parse_transition, resolve_model)
from .report import Scorecard
from .sets import (HELDOUT_SEED, Geometry, adherence_set, permanence_set, steering_set)
from .track import build_tracks, parse_clip

QUICK = {"prompts": 6, "switches": 4, "permanence": 4, "seeds": 1, "drift_streams": 1,
         "drift_at": 2000, "drift_frames": 240}
FULL = {"prompts": 32, "switches": 24, "permanence": 16, "seeds": 1, "drift_streams": 2,
        "drift_at": 10000, "drift_frames": 500}


class Progress:
    """One line per step on stderr, with the elapsed time and an estimate of what is left."""

    def __init__(self, total, quiet=False):
        self.total, self.done, self.quiet = max(total, 1), 0, quiet
        self.t0 = time.time()

    def step(self, text, weight=1):
        self.done += weight
        if self.quiet:
            return
        el = time.time() - self.t0
        eta = el / self.done * (self.total - self.done) if self.done else 0
        print("[eval %3d%%] %s | %s elapsed, ~%s left" % (
            min(100, 100 * self.done // self.total), text, _dur(el), _dur(eta)),
            file=sys.stderr, flush=True)

    def say(self, text):
        if not self.quiet:
            print("[eval] " + text, file=sys.stderr, flush=True)


def _dur(s):
    s = int(round(s))
    return "%dm%02ds" % (s // 60, s % 60) if s >= 60 else "%ds" % s


def strip(gen, real, per_row):
    """PNG strip: rows of per_row frames, the generated ones left, the world's right."""
    T, H, W, _ = gen.shape
    rows = []
    gap = np.full((H, 8, 3), 255, np.uint8)
    for r in range(0, T, per_row):
        g = list(gen[r:r + per_row])
        w = list(real[r:r + per_row])
        while len(g) < per_row:
            g.append(np.zeros_like(gen[0]))
            w.append(np.zeros_like(gen[0]))
        rows.append(np.concatenate([np.concatenate(g, 1), gap, np.concatenate(w, 1)], 1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(rows[:-1], 0)


def build_parser():
    ap = argparse.ArgumentParser(
        prog="python3 -m eval",
        description="Score generated video on held-out prompts and seeds: prompt adherence, "
                    "steering, object permanence, temporal consistency, drift and a Frechet "
                    "distance, next to the same figures on the world's rendered clips.")
    ap.add_argument("--model", default="default",
                    help="model file, or 'default' (models/default/model.safetensors)")
    ap.add_argument("--backend", default="c",
                    help="c (the engine via `flipbook generate`), ref (the PyTorch reference), "
                         "world (score the rendered clips themselves), ae (the rendered clips "
                         "through the model's autoencoder: its ceiling), or a comma list, e.g. "
                         "ref,c (default c)")
    ap.add_argument("--out", required=True, help="folder for report.txt, report.json, strips/")
    ap.add_argument("--flipbook", help="the flipbook binary (default: build/bin/flipbook or "
                                       "the newest build*/bin/flipbook)")
    ap.add_argument("--quick", action="store_true",
                    help="small sets and a short drift run (%s)" % ", ".join(
                        "%s %s" % (k, v) for k, v in QUICK.items()))
    ap.add_argument("--prompts", type=int, help="adherence prompts (default %d)" % FULL["prompts"])
    ap.add_argument("--switches", type=int, help="steering switch pairs (default %d)" % FULL["switches"])
    ap.add_argument("--permanence", type=int,
                    help="permanence prompts (default %d)" % FULL["permanence"])
    ap.add_argument("--seeds", type=int, help="noise seeds per prompt (default 1)")
    ap.add_argument("--frames", type=int, default=48,
                    help="frames per adherence/steering clip (default 48)")
    ap.add_argument("--permanence-frames", type=int, default=112,
                    help="frames per permanence clip (default 64)")
    ap.add_argument("--drift-streams", type=int,
                    help="drift streams (C backend; default %d, 0 = none)" % FULL["drift_streams"])
    ap.add_argument("--drift-at", type=int,
                    help="first frame of the late window (default %d)" % FULL["drift_at"])
    ap.add_argument("--drift-frames", type=int,
                    help="frames per drift window (default %d)" % FULL["drift_frames"])
    ap.add_argument("--no-fd", action="store_true", help="skip the Frechet distance")
    ap.add_argument("--transition", default="cut", help="cut, recache, blend or blend:N")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads and flipbook --threads (default 1: on a machine "
                         "shared with another busy process one thread is the fastest)")
    ap.add_argument("--strips", type=int, default=2,
                    help="PNG strips of the first N clips of each set (default 2)")
    ap.add_argument("--save-frames", action="store_true",
                    help="also save every generated clip as frames/NAME_BACKEND.npy")
    ap.add_argument("--heldout-seed", type=int, default=HELDOUT_SEED,
                    help="master of the held-out scene streams (default %d)" % HELDOUT_SEED)
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    return ap


def _settings(a):
    base = QUICK if a.quick else FULL
    for k, v in base.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    return a


WORLD = "_world"   # results of the world column (a backend may be called "world" too)


class Runner:
    def __init__(self, a, geom, backends, encoder, prog):
        self.a, self.geom, self.backends, self.encoder, self.prog = a, geom, backends, encoder, prog
        self.res = {b: {} for b in list(backends) + [WORLD]}
        self.feats = {b: [] for b in list(backends) + [WORLD]}
        self.clips = []
        self.world_cache = {}

    def _world(self, item):
        """The world clip of an item, parsed; kept while the next items are its other seeds."""
        key = (item.set, item.index)
        w = self.world_cache.get(key)
        if w is None:
            frames, _ = item.world_clip(self.geom)
            cp = parse_clip(frames)
            self.world_cache = {key: (frames, cp, build_tracks(cp))}
            w = self.world_cache[key]
        return w

    def _score(self, item, frames, cp, tracks):
        chunks = self.geom.chunks(item.n_frames)
        out = {}
        # Adherence on the adherence set only: the permanence scenes hide objects behind the
        # occluder on purpose, which no frame-level check of the prompt can tell from a miss.
        if item.set == "adherence":
            out["adh"] = M.adherence(cp, item.frame_prompts(), chunks)
        if item.set in ("adherence", "permanence"):
            out["temp"] = M.temporal(cp, tracks, self.geom.fps)
        if item.set == "steering":
            st = M.steering(cp, item.prompts, item.switch_frame, chunks)
            out["steer"] = {k: st[k] for k in ("switches", "shown", "early", "no_change")}
            out["steer"]["latency"] = [st["latency"]] if st["shown"] else []
            out["steer_detail"] = st
        if item.set == "permanence":
            out["perm"] = M.permanence(cp, tracks, self.geom.fps)
        return out

    def run_item(self, item, strip_it):
        detail = {"name": item.name, "set": item.set, "prompts": item.prompts,
                  "switch_frame": item.switch_frame, "seed": item.seed, "frames": item.n_frames}
        if item.switch_kind:
            detail["switch_kind"] = item.switch_kind
        t0 = time.time()
        wf, wcp, wtr = self._world(item)
        summaries = []
        for name, be in [(WORLD, None)] + list(self.backends.items()):
            if name == WORLD:
                frames, cp, tracks = wf, wcp, wtr
                gen_s = 0.0
            else:
                tg = time.time()
                frames = be.generate_item(item)
                gen_s = time.time() - tg
                cp = parse_clip(frames)
                tracks = build_tracks(cp)
                if self.a.save_frames:
                    os.makedirs(os.path.join(self.a.out, "frames"), exist_ok=True)
                    np.save(os.path.join(self.a.out, "frames", "%s_%s.npy" % (item.name, name)),
                            frames)
                if strip_it:
                    os.makedirs(os.path.join(self.a.out, "strips"), exist_ok=True)
                    write_png(os.path.join(self.a.out, "strips", "%s_%s.png" % (item.name, name)),
                              strip(frames, wf, self.geom.chunk_frames))
            sc = self._score(item, frames, cp, tracks)
            detail["world" if name == WORLD else name] = {k: v for k, v in sc.items()
                                                          if k != "steer"}
            # The world clip of a scene counts once, however many noise seeds it is run with
            # (k = seed % 10, sets.noise_seed).
            if name != WORLD or item.seed % 10 == 0:
                M.merge(self.res[name], {k: v for k, v in sc.items() if k != "steer_detail"})
                if self.encoder is not None:
                    self.feats[name].append(self.encoder.features(frames))
            if name != WORLD:
                detail[name]["generate_s"] = round(gen_s, 2)
                summaries.append(self._brief(name, sc))
        self.clips.append(detail)
        self.prog.step("%s %s%s: %s (%.1f s)" % (
            item.set, item.name, " [%s]" % item.switch_kind if item.switch_kind else "",
            "; ".join(summaries), time.time() - t0), item.n_frames * len(self.backends))

    @staticmethod
    def _brief(name, sc):
        parts = []
        if "adh" in sc:
            a = M.adherence_summary(sc["adh"])
            parts.append("bg %.2f col %.2f cnt %.2f" % tuple(
                a[k]["chunks"] if a[k]["chunks"] is not None else float("nan")
                for k in ("background", "colours", "count")))
        if "steer_detail" in sc:
            s = sc["steer_detail"]
            parts.append("switch %s (latency %s)" % ("shown" if s["shown"] else "missed",
                                                     s["latency"]))
        if "perm" in sc:
            p = sc["perm"]
            parts.append("occlusions %d, same %d" % (p["events"], p["same"]))
        return "%s: %s" % (name, ", ".join(parts))


def drift_figures(cp, tracks, prompt, n, geom, feats, world_feats, frechet):
    """Figures of one drift window (adherence shares on chunks, temporal, FD to the world)."""
    adh = M.adherence_summary(M.adherence(cp, [prompt] * n, geom.chunks(n)))
    tmp = M.temporal_summary(M.temporal(cp, tracks, geom.fps))
    out = {k: adh[k]["chunks"] for k in ("background", "colours", "count", "shapes")}
    out.update({k: tmp[k] for k in ("colour_std", "speed")})
    out["accel"] = None if tmp["accel"] is None else tmp["accel"] * geom.width
    if feats is not None and world_feats is not None and len(feats) >= 2:
        out["fd"] = frechet(feats, world_feats)
    return out


def main(argv=None):
    a = _settings(build_parser().parse_args(argv))
    memory.keep_freed_memory()       # the reference backend's activations (flipbook_ref/memory.py)
    names = [b.strip() for b in a.backend.split(",") if b.strip()]
    bad = [b for b in names if b not in ("c", "ref", "world", "ae")]
    if bad or not names or len(set(names)) != len(names):
        print("eval: --backend wants c, ref, world, ae or a comma list of them, got %r" % a.backend,
              file=sys.stderr)
        return 2
    try:
        parse_transition(a.transition)
    except ValueError as e:
        print("eval: %s" % e, file=sys.stderr)
        return 2
    for k in ("prompts", "switches", "permanence", "seeds", "drift_streams", "drift_at",
              "drift_frames", "frames", "permanence_frames", "threads", "strips"):
        if getattr(a, k) < 0:
            print("eval: --%s must not be negative" % k.replace("_", "-"), file=sys.stderr)
            return 2
    if a.seeds < 1 or a.seeds > 10:
        print("eval: --seeds must be 1..10", file=sys.stderr)
        return 2
    if max(a.prompts, a.switches, a.permanence) > 10000:
        print("eval: at most 10000 items per set", file=sys.stderr)
        return 2
    model_path = resolve_model(a.model)
    have_model = os.path.exists(model_path)
    if not have_model and names != ["world"]:
        print("eval: no model file at %s%s" % (
            model_path, " (the default model is not trained yet: see docs/training.md)"
            if a.model == "default" else ""), file=sys.stderr)
        return 1
    if have_model:
        try:
            geom, _, model_name = model_info(model_path)
        except (ValueError, OSError) as e:
            print("eval: %s" % e, file=sys.stderr)
            return 1
    else:
        geom, model_name = Geometry(), "(none)"
    os.makedirs(a.out, exist_ok=True)
    quiet = a.quiet
    backends = {}
    try:
        for b in names:
            if b == "c":
                backends["c"] = CBackend(model_path, a.flipbook or find_flipbook(), a.threads,
                                         a.transition, workdir=a.out)
            elif b == "ref":
                backends["ref"] = RefBackend(model_path, a.threads, a.transition)
            elif b == "ae":
                backends["ae"] = AEBackend(model_path, a.threads)
            else:
                backends["world"] = WorldBackend(geom)
    except (FileNotFoundError, ValueError, OSError) as e:
        print("eval: %s" % e, file=sys.stderr)
        return 1
    # "world" as a backend scores the rendered clips in a column of their own (a self-check:
    # it must equal the world column).
    gen_backends = dict(backends)
    encoder = None
    frechet = None
    if not a.no_fd and have_model:
        from .fid import Encoder, frechet
        encoder = Encoder(model_path, a.threads)

    sets = {}
    try:
        sets["adherence"] = adherence_set(a.prompts, geom, a.frames, a.seeds, a.heldout_seed)
        sets["steering"] = steering_set(a.switches, geom, a.frames, a.seeds, a.heldout_seed) \
            if a.switches else []
        sets["permanence"] = permanence_set(a.permanence, geom, a.permanence_frames, a.seeds,
                                            a.heldout_seed) if a.permanence else []
    except (ValueError, RuntimeError) as e:
        print("eval: %s" % e, file=sys.stderr)
        return 2
    n_items = sum(len(v) for v in sets.values())
    do_drift = "c" in backends and a.drift_streams > 0 and a.drift_frames > 0
    # Progress in frame units: a clip frame is generated and parsed (with its world frame), a
    # skipped drift frame only generated, about a third of the work.
    work = {"items": sum(i.n_frames for v in sets.values() for i in v) * len(backends),
            "A": a.drift_frames, "B": a.drift_at // 3 + a.drift_frames, "fd": n_items * 8}
    prog = Progress(work["items"] + work["fd"] +
                    (a.drift_streams * (work["A"] + work["B"]) if do_drift else 0), quiet)
    prog.say("model %s (%s), %dx%d, chunks of %d frames (first %d); backends %s; %d clips%s"
             % (model_name, a.model if have_model else "none", geom.width, geom.height,
                geom.chunk_frames, geom.first_chunk_frames, ",".join(names), n_items,
                "; drift: %d stream(s), frames %d-%d" % (a.drift_streams, a.drift_at,
                                                          a.drift_at + a.drift_frames)
                if do_drift else ""))
    if "c" in backends:
        prog.say("flipbook binary: %s" % backends["c"].binary)
    run = Runner(a, geom, gen_backends, encoder, prog)
    t_start = time.time()
    for set_name in ("adherence", "steering", "permanence"):
        shown = set()
        for item in sets[set_name]:
            strip_it = item.index < a.strips and item.index not in shown
            shown.add(item.index)
            try:
                run.run_item(item, strip_it)
            except RuntimeError as e:
                print("eval: %s: %s" % (item.name, e), file=sys.stderr)
                return 1

    # Frechet floor: the same sets drawn again from the next held-out stream.
    fd = {}
    if encoder is not None and sum(len(f) for f in run.feats[WORLD]) < 2:
        prog.say("Frechet distance skipped: the clips are shorter than one encoder segment")
        encoder = None
    if encoder is not None:
        prog.say("Frechet floor: rendering and encoding the second world draw")
        ref_items = adherence_set(a.prompts, geom, a.frames, 1, a.heldout_seed + 1)
        if a.switches:
            ref_items += steering_set(a.switches, geom, a.frames, 1, a.heldout_seed + 1)
        if a.permanence:
            ref_items += permanence_set(a.permanence, geom, a.permanence_frames, 1,
                                        a.heldout_seed + 1)
        floor_feats = np.concatenate([encoder.features(i.world_clip(geom)[0]) for i in ref_items])
        world_feats = np.concatenate(run.feats[WORLD])
        fd["floor"] = frechet(floor_feats, world_feats)
        for b in gen_backends:
            fd[b] = frechet(np.concatenate(run.feats[b]), world_feats)
        prog.step("Frechet distance: %s" % ", ".join("%s %.4g" % kv for kv in fd.items()),
                  work["fd"])
    else:
        prog.step("Frechet distance skipped", work["fd"])
        world_feats = None

    # Drift: the early and the late window of long C-engine streams.
    drift = []
    if do_drift:
        be = backends["c"]
        for i, item in enumerate(sets["adherence"][:a.drift_streams]):
            win = {}
            for wname, skip in (("A", 0), ("B", a.drift_at)):
                t0 = time.time()
                frames = be.generate(item.prompts, -1, a.drift_frames, item.seed, skip=skip,
                                     progress=None if quiet else
                                     (lambda line, w=wname: prog.say("drift %d %s: %s" % (i, w, line))))
                cp = parse_clip(frames)
                tracks = build_tracks(cp)
                feats = encoder.features(frames) if encoder is not None else None
                win[wname] = {"frames": [skip, skip + a.drift_frames],
                              "figures": drift_figures(cp, tracks, item.prompts[0],
                                                       a.drift_frames, geom, feats, world_feats,
                                                       frechet),
                              "generate_s": round(be.last_seconds, 1),
                              "cp": cp, "tracks": tracks}
                if a.strips:
                    os.makedirs(os.path.join(a.out, "strips"), exist_ok=True)
                    sel = frames[:4 * geom.chunk_frames]
                    write_png(os.path.join(a.out, "strips", "drift%d_%s_c.png" % (i, wname)),
                              strip(sel, sel, geom.chunk_frames))
                prog.step("drift stream %d window %s (frames %d-%d): %.0f s" % (
                    i, wname, skip, skip + a.drift_frames, time.time() - t0), work[wname])
            drift.append({"prompt": item.prompts[0], "seed": item.seed,
                          "A": {k: v for k, v in win["A"].items() if k not in ("cp", "tracks")},
                          "B": {k: v for k, v in win["B"].items() if k not in ("cp", "tracks")}})

    # --- the scorecard ----------------------------------------------------------------------
    cols = list(gen_backends)
    card = Scorecard(cols)
    W = WORLD
    adh = {b: M.adherence_summary(run.res[b].get("adh", {})) for b in cols + [W]}
    labels = {"background": "background (share of chunks)",
              "colours": "object colours (share of chunks)",
              "count": "object count (share of chunks)",
              "shapes": "colours and shapes (share of chunks)",
              "ground": "ground (share of chunks)", "occluder": "occluder (share of chunks)"}
    for k in M.ADHERENCE_KEYS:
        card.add("adherence", k, labels[k], {b: adh[b].get(k, {}).get("chunks") for b in cols},
                 adh[W].get(k, {}).get("chunks"))
    st = {b: run.res[b].get("steer", {}) for b in cols + [W]}

    def share(d, k, n="switches"):
        return d[k] / d[n] if d.get(n) else None

    def mean(v):
        return float(np.mean(v)) if v else None
    card.add("steering", "shown", "switches shown within 2 chunks",
             {b: share(st[b], "shown") for b in cols}, share(st[W], "shown"),
             note="switches: " + ", ".join("%s %d" % (b, st[b].get("switches", 0)) for b in cols) +
             ", world %d" % st[W].get("switches", 0))
    card.add("steering", "latency", "mean latency when shown (chunks)",
             {b: mean(st[b].get("latency")) for b in cols}, mean(st[W].get("latency")),
             fmt="%.2f")
    card.add("steering", "early", "change already there before (share)",
             {b: share(st[b], "early") for b in cols}, share(st[W], "early"))
    pm = {b: M.permanence_summary(run.res[b].get("perm", {})) for b in cols + [W]}
    card.add("permanence", "reappear", "occluded objects back, same colour",
             {b: pm[b]["reappear"] for b in cols}, pm[W]["reappear"],
             note="events: " + ", ".join("%s %d" % (b, pm[b]["events"]) for b in cols) +
             ", world %d" % pm[W]["events"])
    card.add("permanence", "vanished", "occluded objects never back (share)",
             {b: pm[b]["vanished"] / pm[b]["events"] if pm[b]["events"] else None for b in cols},
             pm[W]["vanished"] / pm[W]["events"] if pm[W]["events"] else None)
    tp = {b: M.temporal_summary(run.res[b].get("temp", {})) for b in cols + [W]}
    card.add("temporal", "colour_std", "object colour spread (RGB levels)",
             {b: tp[b]["colour_std"] for b in cols}, tp[W]["colour_std"], fmt="%.2f")
    card.add("temporal", "accel", "motion roughness |d2p| (px/frame^2)",
             {b: None if tp[b]["accel"] is None else tp[b]["accel"] * geom.width for b in cols},
             None if tp[W]["accel"] is None else tp[W]["accel"] * geom.width)
    card.add("temporal", "speed", "object speed (units/s)",
             {b: tp[b]["speed"] for b in cols}, tp[W]["speed"])
    card.add("temporal", "flips", "colour flips along tracks (share)",
             {b: tp[b]["flips"] for b in cols}, tp[W]["flips"], fmt="%.4f")
    if fd:
        card.add("frechet", "fd", "Frechet distance to the world clips",
                 {b: fd.get(b) for b in cols}, fd.get("floor"), fmt="%.4g",
                 note="world column: the floor, two world draws")
    if drift:
        spec = (("background", "background (share of chunks)", "higher"),
                ("colours", "object colours (share of chunks)", "higher"),
                ("count", "object count (share of chunks)", "higher"),
                ("colour_std", "object colour spread (RGB levels)", "lower"),
                ("accel", "motion roughness |d2p| (px/frame^2)", "lower"),
                ("speed", "object speed (units/s)", "same"),
                ("fd", "Frechet distance to the world clips", "lower"))
        for key, label, better in spec:
            va = [d["A"]["figures"].get(key) for d in drift]
            vb = [d["B"]["figures"].get(key) for d in drift]
            va = [v for v in va if v is not None]
            vb = [v for v in vb if v is not None]
            if key != "fd" or (va and vb):
                card.add_drift(key, label, float(np.mean(va)) if va else None,
                               float(np.mean(vb)) if vb else None, better,
                               fmt="%.4g" if key in ("accel", "fd") else "%.3f")
    header = ("flipbook eval: model %s (%s), backends %s, %d adherence prompts x %d seed(s), "
              "%d switches, %d permanence clips%s; %.0f s"
              % (model_name, a.model if have_model else "none",
                 ",".join(cols), a.prompts, a.seeds, a.switches, a.permanence,
                 ", drift: %d stream(s), frames 0-%d vs %d-%d" % (
                     a.drift_streams, a.drift_frames, a.drift_at, a.drift_at + a.drift_frames)
                 if drift else "", time.time() - t_start))
    text = card.text(header)
    with open(os.path.join(a.out, "report.txt"), "w") as f:
        f.write(text)
    settings = {k: getattr(a, k) for k in ("model", "backend", "quick", "prompts", "switches",
                                           "permanence", "seeds", "frames", "permanence_frames",
                                           "drift_streams", "drift_at", "drift_frames",
                                           "transition", "threads", "heldout_seed")}
    settings["geometry"] = geom.__dict__
    with open(os.path.join(a.out, "report.json"), "w") as f:
        f.write(card.dumps({"settings": settings, "model_name": model_name,
                            "clips": run.clips, "drift": drift, "frechet": fd,
                            "seconds": round(time.time() - t_start, 1)}))
    sys.stdout.write(text)
    prog.say("wrote %s and %s" % (os.path.join(a.out, "report.txt"),
                                  os.path.join(a.out, "report.json")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
