"""Render the world into a dataset of npz shards: clips, captions and per-frame ground truth.

    /usr/bin/python3 tools/world/dataset.py --out data/world --clips 2000 --frames 32 --size 128

Clip i depends only on (seed, i): the same seed gives byte-identical shards however the work
is split (--jobs) and whether a run was interrupted: shards already complete are kept, so
running the command again resumes. A fraction of the clips (--switch-fraction) carry a prompt
switch: the scene changes mid-clip and the caption changes with it.

Layout of DIR:
  index.json          what the shards hold (see FORMAT below), the names behind every index,
                      the vocabulary, and the list of shards
  shard_00000.npz     clips [first, first + n)
  captions.txt        every caption of every clip, one per line (for training the tokenizer)

Arrays in a shard (n clips, T frames, K = 5 object slots; -1 marks an empty slot):
  frames        uint8   [n,T,H,W,3]
  clip_index    int64   [n]        global clip number
  switch_frame  int16   [n]        first frame after the switch, -1 without one
  sky           int8    [n,T]      index into names.skies (a sky switch changes it mid-clip)
  ground        int8    [n]        index into names.grounds
  occluder      int8    [n]        index into names.occluders
  occluder_x    float32 [n]        occluder centre, world units
  obj_id        int8    [n,T,K]    object id within the clip (stable across frames)
  obj_kind, obj_colour, obj_size, obj_verb   int8 [n,T,K]  indices into names.*
  obj_state     float32 [n,T,K,6]  x, y, vx, vy, angle, visible (world units, per second)
  captions      uint8   [bytes]    UTF-8 JSON: per clip {"before": [...], "after": [...] or
                                   null, "switch": {...} or null}; the first caption of each
                                   list is the canonical one
Positions are in world units: the frame is 1.0 wide, y grows downwards.
"""

import argparse
import json
import os
import sys
import time
import zipfile

if __name__ == "__main__" and __package__ in (None, ""):
    # Run as a script: make the package importable and use it as our package.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import world  # noqa: F401
    __package__ = "world"

import numpy as np

from . import vocab
from .caption import clip_captions
from .scene import FPS, MAX_OBJECTS, Scene, render_clip

FORMAT = "flipbook-world"
VERSION = 1
STATE_FIELDS = ("x", "y", "vx", "vy", "angle", "visible")


def clip_rng(seed, index):
    """The generator for clip `index` of a dataset with `seed`."""
    return np.random.default_rng([int(seed), int(index)])


def make_clip(seed, index, n_frames, size, switch_fraction, n_phrasings):
    """Render clip `index`: (frames, records, captions dict, switch or None)."""
    rng = clip_rng(seed, index)
    scene = Scene.sample(rng, aspect=size[0] / size[1])
    switch = None
    if n_frames >= 4 and rng.random() < switch_fraction:
        switch = scene.sample_switch(rng, n_frames)
    frames, records = render_clip(scene, n_frames, size=size, switch=switch)
    caps = clip_captions(records, switch.frame if switch else -1, rng, n_phrasings)
    caps["switch"] = records[switch.frame]["switch"] if switch else None
    return frames, records, caps


def _pack(records, n_frames):
    """Per-frame ground truth of one clip as fixed-size arrays."""
    K = MAX_OBJECTS
    out = {
        "sky": np.zeros(n_frames, np.int8),
        "obj_id": np.full((n_frames, K), -1, np.int8),
        "obj_kind": np.full((n_frames, K), -1, np.int8),
        "obj_colour": np.full((n_frames, K), -1, np.int8),
        "obj_size": np.full((n_frames, K), -1, np.int8),
        "obj_verb": np.full((n_frames, K), -1, np.int8),
        "obj_state": np.zeros((n_frames, K, len(STATE_FIELDS)), np.float32),
    }
    for t, r in enumerate(records):
        out["sky"][t] = vocab.SKIES.index(r["sky"])
        for k, o in enumerate(r["objects"][:K]):
            out["obj_id"][t, k] = o["id"]
            out["obj_kind"][t, k] = vocab.KINDS.index(o["kind"])
            out["obj_colour"][t, k] = vocab.COLOURS.index(o["colour"])
            out["obj_size"][t, k] = vocab.SIZES.index(o["size"])
            out["obj_verb"][t, k] = vocab.VERBS.index(o["verb"])
            out["obj_state"][t, k] = [o[f] for f in STATE_FIELDS]
    return out


def write_shard(path, seed, first, n, n_frames, size, switch_fraction, n_phrasings, compress=True,
                progress=None):
    """Render clips [first, first+n) into one npz file (written to a temporary name, then
    renamed, so a file that exists is complete). Returns the list of caption dicts."""
    H, W = size
    frames = np.empty((n, n_frames, H, W, 3), np.uint8)
    cols = {k: [] for k in ("sky", "obj_id", "obj_kind", "obj_colour", "obj_size", "obj_verb", "obj_state")}
    switch_frame = np.full(n, -1, np.int16)
    ground = np.zeros(n, np.int8)
    occluder = np.zeros(n, np.int8)
    occluder_x = np.zeros(n, np.float32)
    captions = []
    for j in range(n):
        fr, recs, caps = make_clip(seed, first + j, n_frames, size, switch_fraction, n_phrasings)
        frames[j] = fr
        packed = _pack(recs, n_frames)
        for k in cols:
            cols[k].append(packed[k])
        switch_frame[j] = caps["switch_frame"]
        ground[j] = vocab.GROUNDS.index(recs[0]["ground"])
        occluder[j] = vocab.OCCLUDERS.index(recs[0]["occluder"])
        occluder_x[j] = recs[0]["occluder_x"]
        captions.append({"before": caps["before"], "after": caps["after"], "switch": caps["switch"]})
        if progress is not None:
            progress(1)
    arrays = {k: np.stack(v) for k, v in cols.items()}
    arrays.update(frames=frames, clip_index=np.arange(first, first + n, dtype=np.int64),
                  switch_frame=switch_frame, ground=ground, occluder=occluder, occluder_x=occluder_x,
                  captions=np.frombuffer(json.dumps(captions).encode("utf-8"), np.uint8))
    tmp = path + ".tmp"
    _savez(tmp, arrays, compress)
    os.replace(tmp, path)
    return captions


def _savez(path, arrays, compress):
    """np.savez with fixed member timestamps, so that equal arrays give equal bytes."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method, allowZip64=True) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arrays[name]), allow_pickle=False)


def load_shard(path):
    """A shard as a dict of arrays, with "captions" decoded to a list of dicts."""
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    out["captions"] = json.loads(out["captions"].tobytes().decode("utf-8"))
    return out


def load_index(root):
    with open(os.path.join(root, "index.json"), encoding="utf-8") as f:
        idx = json.load(f)
    if idx.get("format") != FORMAT or idx.get("version") != VERSION:
        raise ValueError("%s is not a %s v%d dataset" % (root, FORMAT, VERSION))
    return idx


def iter_clips(root):
    """Yield one dict per clip: frames [T,H,W,3], captions, switch_frame and ground truth."""
    idx = load_index(root)
    for sh in idx["shards"]:
        d = load_shard(os.path.join(root, sh["file"]))
        for j in range(len(d["clip_index"])):
            yield {k: v[j] for k, v in d.items()}


def _shard_ok(path, n):
    try:
        with np.load(path, allow_pickle=False) as z:
            return len(z["clip_index"]) == n
    except (OSError, ValueError, KeyError):
        return False


def _shard_job(args):
    path, seed, first, n, n_frames, size, switch_fraction, n_phrasings, compress = args
    write_shard(path, seed, first, n, n_frames, size, switch_fraction, n_phrasings, compress)
    return first, n


def build(out, clips, n_frames=32, size=(128, 128), seed=0, shard_clips=256, switch_fraction=0.5,
          n_phrasings=4, compress=True, jobs=1, log=sys.stderr):
    """Write (or complete) a dataset in `out`. Returns the index dict."""
    if clips < 1:
        raise ValueError("clips must be at least 1")
    if n_frames < 1:
        raise ValueError("frames must be at least 1")
    if shard_clips < 1:
        raise ValueError("shard size must be at least 1")
    if not 0.0 <= switch_fraction <= 1.0:
        raise ValueError("switch fraction must be within [0, 1]")
    os.makedirs(out, exist_ok=True)
    shards = []
    for first in range(0, clips, shard_clips):
        n = min(shard_clips, clips - first)
        shards.append({"file": "shard_%05d.npz" % (first // shard_clips), "first": first, "clips": n})
    config = {"seed": int(seed), "clips": int(clips), "frames": int(n_frames),
              "size": [int(size[0]), int(size[1])], "fps": FPS, "shard_clips": int(shard_clips),
              "switch_fraction": float(switch_fraction), "phrasings": int(n_phrasings)}
    index_path = os.path.join(out, "index.json")
    if os.path.exists(index_path):
        with open(index_path, encoding="utf-8") as f:
            old = json.load(f)
        if old.get("config") != config:
            raise ValueError("%s holds a dataset made with other settings (%s); use another "
                             "folder or remove it" % (out, old.get("config")))
    todo = [s for s in shards if not _shard_ok(os.path.join(out, s["file"]), s["clips"])]
    done_clips = clips - sum(s["clips"] for s in todo)
    t0 = time.time()
    state = {"done": done_clips, "last": 0.0}

    def progress(k):
        state["done"] += k
        now = time.time()
        if now - state["last"] >= 2.0 or state["done"] == clips:
            state["last"] = now
            made = state["done"] - done_clips
            rate = made / max(now - t0, 1e-9)
            eta = (clips - state["done"]) / rate if rate > 0 else 0.0
            print("world-dataset: %d/%d clips (%.1f%%), %.1f clips/s, eta %.0f s"
                  % (state["done"], clips, 100.0 * state["done"] / clips, rate, eta), file=log, flush=True)

    if done_clips == clips:
        print("world-dataset: all %d clips are already written" % clips, file=log, flush=True)
    elif done_clips:
        print("world-dataset: %d clips already written, resuming" % done_clips, file=log, flush=True)
    args = [(os.path.join(out, s["file"]), seed, s["first"], s["clips"], n_frames, tuple(size),
             switch_fraction, n_phrasings, compress) for s in todo]
    if jobs > 1 and len(args) > 1:
        import multiprocessing
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for _, n in pool.imap_unordered(_shard_job, args):
                progress(n)
    else:
        for a in args:
            write_shard(*a, progress=progress)
    # Captions of every clip, in clip order, for the tokenizer.
    with open(os.path.join(out, "captions.txt.tmp"), "w", encoding="utf-8") as f:
        for s in shards:
            for c in load_shard(os.path.join(out, s["file"]))["captions"]:
                for line in c["before"] + (c["after"] or []):
                    f.write(line + "\n")
    os.replace(os.path.join(out, "captions.txt.tmp"), os.path.join(out, "captions.txt"))
    index = {
        "format": FORMAT, "version": VERSION, "config": config,
        "names": {"skies": list(vocab.SKIES), "grounds": list(vocab.GROUNDS),
                  "occluders": list(vocab.OCCLUDERS), "kinds": list(vocab.KINDS),
                  "colours": list(vocab.COLOURS), "sizes": list(vocab.SIZES),
                  "verbs": list(vocab.VERBS)},
        "palette": {k: list(v) for k, v in vocab.PALETTE.items()},
        "state_fields": list(STATE_FIELDS),
        "max_objects": MAX_OBJECTS,
        "vocabulary": vocab.vocabulary(),
        "shards": shards,
    }
    with open(index_path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(index, f, indent=1)
    os.replace(index_path + ".tmp", index_path)
    print("world-dataset: %d clips in %d shards in %s (%.1f s)"
          % (clips, len(shards), out, time.time() - t0), file=log, flush=True)
    return index


def main(argv=None):
    ap = argparse.ArgumentParser(description="Render the synthetic world into npz shards.")
    ap.add_argument("--out", required=True, help="output folder (created; resumed if it exists)")
    ap.add_argument("--clips", type=int, required=True, help="number of clips")
    ap.add_argument("--frames", type=int, default=32, help="frames per clip (16 fps)")
    ap.add_argument("--size", default="128", help="frame size: N or HxW (default 128)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shard-clips", type=int, default=256, help="clips per shard")
    ap.add_argument("--switch-fraction", type=float, default=0.5,
                    help="share of clips with a prompt switch (default 0.5)")
    ap.add_argument("--phrasings", type=int, default=4, help="captions per clip and side of a switch")
    ap.add_argument("--no-compress", action="store_true", help="write plain npz (bigger, faster to read)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes")
    a = ap.parse_args(argv)
    try:
        if "x" in a.size:
            h, w = (int(v) for v in a.size.split("x"))
        else:
            h = w = int(a.size)
    except ValueError:
        ap.error("--size must be N or HxW, got %r" % a.size)
    try:
        build(a.out, a.clips, a.frames, (h, w), a.seed, a.shard_clips, a.switch_fraction,
              a.phrasings, not a.no_compress, max(1, a.jobs))
    except ValueError as e:
        print("world-dataset: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
