"""Generators on the golden tiny model (random weights: only plumbing is checked, not scores):
model geometry from the file header; the C engine through `flipbook generate` (switch, skip,
frame shape) against the PyTorch reference; the whole `python3 -m eval` run on both backends
writing its report; clear errors.
usage: test_backends.py FLIPBOOK_BINARY"""
import json
import os
import subprocess
import sys
import tempfile

from common import REPO, TINY, TOOLS, check, finish, need

need("numpy", "torch", "sentencepiece")
import numpy as np  # noqa: E402

from eval.backends import (AEBackend, CBackend, RefBackend, WorldBackend,  # noqa: E402
                           find_flipbook, model_info, parse_transition)
from eval.sets import adherence_set  # noqa: E402

def fake_build(root, name, sanitize, mtime):
    """root/name/bin/flipbook (an executable stub) with a CMakeCache.txt naming sanitize."""
    os.makedirs(os.path.join(root, name, "bin"))
    with open(os.path.join(root, name, "CMakeCache.txt"), "w") as f:
        f.write("CMAKE_BUILD_TYPE:STRING=Debug\nFLIPBOOK_SANITIZE:STRING=%s\n" % sanitize)
    exe = os.path.join(root, name, "bin", "flipbook")
    open(exe, "w").close()
    os.chmod(exe, 0o755)
    os.utime(exe, (mtime, mtime))
    return exe


# The binary the evaluation times: build/ first, else the newest build without sanitizers
# (check.sh builds build-asan last; a check on it ran four times slower), else any.
with tempfile.TemporaryDirectory() as tmp:
    check(find_flipbook(tmp) is None, "find_flipbook: none in an empty tree")
    asan = fake_build(tmp, "build-asan", "address,undefined", 2000)
    check(find_flipbook(tmp) == asan, "find_flipbook: a sanitized build when it is the only one")
    plain = fake_build(tmp, "build-check", "", 1000)
    check(find_flipbook(tmp) == plain, "find_flipbook: a plain build before a newer sanitized one")
    first = fake_build(tmp, "build", "", 500)
    check(find_flipbook(tmp) == first, "find_flipbook: build/ first")

if len(sys.argv) < 2 or not os.access(sys.argv[1], os.X_OK):
    print("SKIP: no flipbook binary given")
    sys.exit(77)
BIN = sys.argv[1]

geom, cfg, name = model_info(TINY)
check((geom.height, geom.width, geom.chunk_frames, geom.first_chunk_frames) == (64, 64, 8, 5),
      "model_info: 64x64, chunks of 8 frames, the first 5 (%s)" % geom)
check(parse_transition("blend:3") == ("blend", 3) and parse_transition("cut") == ("cut", 4),
      "transitions parse")
for bad in ("fade", "blend:0", "cut:2"):
    try:
        parse_transition(bad)
        check(False, "transition %r refused" % bad)
    except ValueError:
        check(True, "transition %r refused" % bad)

# The autoencoder's ceiling column: the world's clip through encode + decode, frame for frame
# (the decoder's trimmed leading frames are padded back) and no copy of the input.
item = adherence_set(1, geom, 21, 1, 7)[0]
world = WorldBackend(geom).generate_item(item)
rt = AEBackend(TINY, threads=1).generate_item(item)
check(rt.shape == world.shape and rt.dtype == np.uint8,
      "ae: the round trip has the world clip's shape %s" % (world.shape,))
check(not np.array_equal(rt, world), "ae: the frames went through the (random) autoencoder")

with tempfile.TemporaryDirectory(prefix="flipbook-eval-test-") as tmp:
    c = CBackend(TINY, BIN, threads=1, workdir=tmp)
    ref = RefBackend(TINY, threads=1)
    prompts = ["a red ball on a grid", "a blue box at night"]
    a = c.generate(prompts, 13, 29, 11)
    check(a.shape == (29, 64, 64, 3) and a.dtype == np.uint8, "C: frames [29,64,64,3] uint8")
    plain = c.generate(prompts[:1], -1, 29, 11)
    same = [bool(np.array_equal(a[t], plain[t])) for t in range(29)]
    check(all(same[:13]) and not any(same[13:]),
          "C: the switch at frame 13 changes frames from 13 on, not before")
    late = c.generate(prompts, 13, 8, 11, skip=21)
    check(np.array_equal(late, a[21:29]), "C: --skip 21 gives frames 21.. of the same stream")
    r = ref.generate(prompts, 13, 29, 11)
    diff = int(np.abs(r.astype(int) - a).max())
    check(diff <= 3, "ref and C agree frame by frame (max difference %d levels)" % diff)
    check(np.array_equal(ref.generate(prompts, 13, 8, 11, skip=21), r[21:29]),
          "ref: skip gives the same stream's frames")
    try:
        CBackend(TINY, os.path.join(tmp, "no-such-binary"))
        check(False, "a missing binary is an error")
    except FileNotFoundError:
        check(True, "a missing binary is an error")
    try:
        c.generate(["a red ball"], -1, 8, 1, skip=-1)
        check(False, "negative skip refused")
    except ValueError:
        check(True, "negative skip refused")

    # The whole evaluation, tiny: one clip per set, a short drift run, both backends.
    out = os.path.join(tmp, "out")
    env = dict(os.environ, PYTHONPATH=TOOLS, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "eval", "--model", TINY, "--backend", "ref,c", "--flipbook",
           BIN, "--out", out, "--prompts", "1", "--switches", "1", "--permanence", "1",
           "--drift-streams", "1", "--drift-at", "64", "--drift-frames", "32", "--threads", "1",
           "--strips", "1"]
    p = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    print(p.stdout)
    check(p.returncode == 0, "python3 -m eval runs (exit %d) %s" % (p.returncode, p.stderr[-800:]))
    check("[eval" in p.stderr, "progress on stderr")
    try:
        rep = json.load(open(os.path.join(out, "report.json")))
        fig = rep["figures"]
        check(all(k in fig for k in ("adherence.background", "adherence.colours",
                                     "adherence.count", "steering.shown", "permanence.reappear",
                                     "temporal.colour_std", "frechet.fd", "drift.background")),
              "report.json holds every figure")
        check(set(fig["adherence.colours"]["values"]) == {"ref", "c"},
              "one column per backend")
        check(len(rep["clips"]) == 3 and rep["drift"][0]["B"]["frames"] == [64, 96],
              "per-clip details and the drift windows")
        check(os.path.exists(os.path.join(out, "report.txt")) and
              any(n.endswith("_c.png") for n in os.listdir(os.path.join(out, "strips"))),
              "report.txt and PNG strips written")
    except (OSError, KeyError, ValueError, IndexError) as e:
        check(False, "report.json readable: %s" % e)
    p = subprocess.run(cmd[:4] + [os.path.join(tmp, "missing.safetensors"), "--out", out],
                       cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    check(p.returncode == 1 and "no model file" in p.stderr, "a missing model: exit 1, says so")
    p = subprocess.run(cmd[:4] + [TINY, "--backend", "gpu", "--out", out], cwd=REPO, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    check(p.returncode == 2 and "--backend" in p.stderr, "a bad backend: exit 2, says so")
finish()
