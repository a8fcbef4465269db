"""The dataset writer: deterministic shards (the same bytes for the same seed, however the work
is split), resuming, the index and array layout, captions, bad settings; and world_demo.py."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from common import TOOLS, Checker, setup

setup()

import numpy as np  # noqa: E402

from world import vocab  # noqa: E402
from world.dataset import build, iter_clips, load_index, load_shard, main  # noqa: E402
from world.png import decode_png  # noqa: E402

c = Checker("world_dataset")
tmp = tempfile.mkdtemp(prefix="world-dataset-")
log = open(os.devnull, "w")
try:
    a, b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
    kw = dict(clips=11, n_frames=12, size=(64, 64), seed=7, shard_clips=4, switch_fraction=0.5,
              n_phrasings=3)
    idx = build(a, jobs=1, log=log, **kw)
    build(b, jobs=2, log=log, **kw)
    files = [s["file"] for s in idx["shards"]]
    c.check(files == ["shard_00000.npz", "shard_00001.npz", "shard_00002.npz"], "shards %s" % files)
    for f in files + ["captions.txt", "index.json"]:
        same = open(os.path.join(a, f), "rb").read() == open(os.path.join(b, f), "rb").read()
        c.check(same, "%s differs between a 1-process and a 2-process build" % f)

    # Resume: a lost shard comes back identical; a finished dataset is left alone.
    ref = open(os.path.join(a, files[1]), "rb").read()
    os.remove(os.path.join(a, files[1]))
    with open(os.path.join(a, files[2]), "wb") as f:
        f.write(b"truncated")
    build(a, jobs=1, log=log, **kw)
    c.check(open(os.path.join(a, files[1]), "rb").read() == ref, "a rebuilt shard differs")
    c.check(load_shard(os.path.join(a, files[2]))["frames"].shape[0] == 3, "a broken shard was kept")
    try:
        build(a, jobs=1, log=log, **dict(kw, seed=8))
        c.check(False, "building over a dataset with other settings was accepted")
    except ValueError:
        pass

    # Layout and contents.
    idx = load_index(a)
    c.check(idx["config"]["clips"] == 11 and idx["names"]["colours"] == list(vocab.COLOURS)
            and idx["vocabulary"] == vocab.vocabulary(), "index.json content")
    n_switch = 0
    clips = list(iter_clips(a))
    c.check(len(clips) == 11 and [int(x["clip_index"]) for x in clips] == list(range(11)), "clip order")
    words = set(vocab.vocabulary())
    for x in clips:
        T, K = 12, 5
        c.check(x["frames"].shape == (T, 64, 64, 3) and x["frames"].dtype == np.uint8, "frames shape")
        c.check(x["obj_state"].shape == (T, K, 6) and x["obj_kind"].shape == (T, K), "object arrays")
        present = x["obj_id"] >= 0
        c.check(present.any(axis=1).all(), "a frame without objects")
        c.check(np.isfinite(x["obj_state"]).all(), "non-finite state")
        vis = x["obj_state"][..., 5][present]
        c.check(((vis >= 0) & (vis <= 1)).all(), "visible fraction outside [0, 1]")
        for arr, names in ((x["obj_kind"], vocab.KINDS), (x["obj_colour"], vocab.COLOURS),
                           (x["obj_size"], vocab.SIZES), (x["obj_verb"], vocab.VERBS)):
            c.check(((arr[present] >= 0) & (arr[present] < len(names))).all() and (arr[~present] == -1).all(),
                    "index out of range")
        caps = x["captions"]
        s = int(x["switch_frame"])
        c.check((s >= 0) == (caps["after"] is not None) == (caps["switch"] is not None),
                "switch frame %d but captions %s" % (s, caps))
        if s >= 0:
            n_switch += 1
            c.check(caps["switch"]["frame"] == s, "switch frame disagrees")
            if caps["switch"]["kind"] == "sky":
                c.check(x["sky"][s - 1] != x["sky"][s], "sky switch not in the sky column")
        for t in caps["before"] + (caps["after"] or []):
            c.check(set(t.split()) <= words, "caption outside the vocabulary: %r" % t)
    c.check(0 < n_switch < 11, "%d of 11 clips have a switch (fraction 0.5)" % n_switch)
    lines = open(os.path.join(a, "captions.txt"), encoding="utf-8").read().splitlines()
    want = sum(len(x["captions"]["before"]) + len(x["captions"]["after"] or []) for x in clips)
    c.check(len(lines) == want, "captions.txt has %d lines, expected %d" % (len(lines), want))
    json.load(open(os.path.join(a, "index.json")))

    # Bad settings are a clear error (exit status 2), not a traceback.
    for argv in (["--out", os.path.join(tmp, "c"), "--clips", "0"],
                 ["--out", os.path.join(tmp, "c"), "--clips", "2", "--size", "8"],
                 ["--out", os.path.join(tmp, "c"), "--clips", "2", "--switch-fraction", "2"]):
        sys.stderr = log
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
        finally:
            sys.stderr = sys.__stderr__
        c.check(rc == 2, "dataset %s exited %s" % (" ".join(argv[2:]), rc))

    # The command line, as documented, and the demo.
    py = sys.executable
    r = subprocess.run([py, os.path.join(TOOLS, "world", "dataset.py"), "--out", os.path.join(tmp, "cli"),
                        "--clips", "3", "--frames", "6", "--size", "48x64", "--shard-clips", "2"],
                       capture_output=True, text=True)
    c.check(r.returncode == 0 and "3/3 clips" in r.stderr, "dataset.py: %s %s" % (r.returncode, r.stderr))
    if r.returncode == 0:
        sh = load_shard(os.path.join(tmp, "cli", "shard_00000.npz"))
        c.check(sh["frames"].shape == (2, 6, 48, 64, 3), "48x64 frames %s" % (sh["frames"].shape,))
    demo = os.path.join(tmp, "demo")
    r = subprocess.run([py, os.path.join(TOOLS, "world_demo.py"), "--out", demo, "--clips", "3",
                        "--frames", "12", "--size", "64"], capture_output=True, text=True)
    c.check(r.returncode == 0, "world_demo.py: %s %s" % (r.returncode, r.stderr))
    if r.returncode == 0:
        pngs = sorted(f for f in os.listdir(demo) if f.endswith(".png"))
        c.check(pngs == ["clip_000.png", "clip_001.png", "clip_002.png"], "demo files %s" % pngs)
        img = decode_png(open(os.path.join(demo, pngs[0]), "rb").read())
        c.check(img.ndim == 3 and img.shape[0] >= 128 and img.shape[1] >= 3 * 128, "demo strip %s" % (img.shape,))
        text = open(os.path.join(demo, "captions.txt"), encoding="utf-8").read()
        c.check(text.count("caption: ") == 3, "demo captions:\n%s" % text)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
    log.close()

c.done()
