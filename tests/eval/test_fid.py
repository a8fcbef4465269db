"""Frechet distance: exact on known Gaussians, 0 for a set with itself, symmetric, and
growing with corruption on features from a model file's TAEHV encoder (the golden tiny model:
random weights, 64x64 world clips)."""
from common import TINY, check, finish, need

need("numpy", "torch")
import numpy as np  # noqa: E402

from eval.fid import SEGMENT, Encoder, frechet  # noqa: E402
from eval.sets import Geometry, adherence_set  # noqa: E402

rng = np.random.default_rng(0)
a = rng.normal(size=(4000, 6))
b = rng.normal(size=(4000, 6)) + np.array([2.0, 0, 0, 0, 0, 0])
check(abs(frechet(a, a)) < 1e-9, "a set with itself: 0")
check(abs(frechet(a, b) - 4.0) < 0.3, "unit Gaussians 2 apart: about 4 (%.3f)" % frechet(a, b))
check(abs(frechet(a, b) - frechet(b, a)) < 1e-6, "symmetric")
c = rng.normal(size=(4000, 6)) * 2.0
# Equal means, covariances I and 4I: tr(I + 4I - 2*2I) = 6 * 1 = 6.
check(abs(frechet(a, c) - 6.0) < 0.5, "variances 1 and 4 in 6 dims: about 6 (%.3f)" % frechet(a, c))
try:
    frechet(a[:, :3], b)
    check(False, "mismatched dimensions are refused")
except ValueError:
    check(True, "mismatched dimensions are refused")

enc = Encoder(TINY, threads=1)
G = Geometry(64, 64, 16.0, 8, 5)
clips = [it.world_clip(G)[0] for it in adherence_set(6, G, 48)]
f = enc.features(clips[0])
check(f.shape == (48 // SEGMENT * SEGMENT // enc.t_down, enc.dim) and enc.dim == 5 * 4,
      "features: one vector of 5C numbers per latent frame %s" % (f.shape,))
check(enc.features(clips[0][:SEGMENT - 1]).shape == (0, enc.dim), "a clip under one segment: none")
feats = np.concatenate([enc.features(c) for c in clips])
check(frechet(feats, feats) < 1e-9, "encoder features: a set with itself ~0")
prev = 0.0
ok = True
vals = []
for sigma in (4, 16, 48):
    noisy = [np.clip(c + rng.normal(0, sigma, c.shape), 0, 255).astype(np.uint8) for c in clips]
    d = frechet(feats, np.concatenate([enc.features(x) for x in noisy]))
    vals.append(d)
    ok = ok and d > prev
    prev = d
check(ok, "grows with noise sigma 4, 16, 48: %s" % ", ".join("%.4g" % v for v in vals))
dark = [(c * 0.5).astype(np.uint8) for c in clips]
check(frechet(feats, np.concatenate([enc.features(x) for x in dark])) > vals[0],
      "darkened clips are farther than lightly noised ones")
finish()
