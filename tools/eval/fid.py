"""Frechet distance between sets of clips, on features from the model file's TAEHV encoder.

Features. A clip is cut into segments of SEGMENT frames (the remainder is dropped); each
segment is encoded on its own by the encoder of the model under test (the `vae.encoder.*`
tensors, through flipbook_ref's TAEHV, float32, fresh encoder memory per segment), giving
SEGMENT / t_down latent frames [C, h, w]. Each latent frame becomes one feature vector of 5C
numbers: the mean of every channel over each quadrant of the latent frame (4C: where things
are, coarsely) and the spatial standard deviation of every channel (C: how much detail). The
default model has C = 8: 40 numbers per latent frame, one latent frame per 4 video frames.

Distance. With means m1, m2 and covariances S1, S2 of two sets of feature vectors,
FD = |m1 - m2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), computed in float64 through symmetric
eigendecompositions (tr (S1 S2)^(1/2) = sum of the square roots of the eigenvalues of
S1^(1/2) S2 S1^(1/2)). A set has FD 0 with itself; the figure grows as the sets' statistics
part. Like every Frechet distance it is biased upwards for small sets, so the report gives
the floor: the distance between two independent sets of world clips of the same size.

Thread-safety: an Encoder is used by one thread at a time.
"""
import numpy as np

SEGMENT = 16


def frechet(a, b):
    """Frechet distance between feature sets a [N, D] and b [M, D] (N, M >= 2)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise ValueError("frechet needs two [N, D] sets of the same D with N >= 2, got %s and %s"
                         % (a.shape, b.shape))
    m1, m2 = a.mean(0), b.mean(0)
    s1 = np.cov(a, rowvar=False).reshape(a.shape[1], a.shape[1])
    s2 = np.cov(b, rowvar=False).reshape(b.shape[1], b.shape[1])
    w, v = np.linalg.eigh(s1)
    r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = r @ s2 @ r
    e = np.linalg.eigvalsh(0.5 * (m + m.T))
    tr_sqrt = float(np.sqrt(np.clip(e, 0, None)).sum())
    d = float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)
    return max(d, 0.0)


class Encoder:
    """The TAEHV encoder of a model file. threads: torch threads (None: leave torch's)."""

    def __init__(self, model_path, threads=None, batch=4):
        import torch
        from flipbook_ref import st
        from flipbook_ref.config import ModelConfig
        from flipbook_ref.taehv import TAEHV
        if threads:
            torch.set_num_threads(int(threads))
        self.torch = torch
        tensors, meta = st.load(model_path)
        if "flipbook.config" not in meta:
            raise ValueError("%s: not a flipbook model file" % model_path)
        cfg = ModelConfig.from_json(meta["flipbook.config"])
        sd = {k[len("vae.encoder."):]: v.float() for k, v in tensors.items()
              if k.startswith("vae.encoder.")}
        if not sd:
            raise ValueError("%s: the model file has no vae.encoder.* tensors" % model_path)
        self.vae = TAEHV(cfg.vae)
        self.vae.encoder.load_state_dict(sd)
        self.vae.eval()
        self.t_down = cfg.vae.t_downscale
        self.channels = cfg.vae.latent_channels
        self.batch = int(batch)
        if SEGMENT % self.t_down:
            raise ValueError("segment of %d frames is not a multiple of t_down %d"
                             % (SEGMENT, self.t_down))

    @property
    def dim(self):
        return 5 * self.channels

    @staticmethod
    def stats(z):
        """latents [N, C, h, w] (numpy) -> features [N, 5C]."""
        N, C, h, w = z.shape
        hh, hw = max(h // 2, 1), max(w // 2, 1)
        quads = [z[:, :, :hh, :hw], z[:, :, :hh, hw:], z[:, :, hh:, :hw], z[:, :, hh:, hw:]]
        means = [q.mean(axis=(2, 3)) for q in quads if q.size]
        return np.concatenate(means + [z.std(axis=(2, 3))], axis=1)

    def features(self, frames):
        """uint8 [T, H, W, 3] -> [floor(T / SEGMENT) * SEGMENT / t_down, 5C] (float64)."""
        torch = self.torch
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError("frames must be [T,H,W,3], got %s" % (frames.shape,))
        n_seg = frames.shape[0] // SEGMENT
        if n_seg == 0:
            return np.zeros((0, self.dim))
        segs = frames[:n_seg * SEGMENT].reshape(n_seg, SEGMENT, *frames.shape[1:])
        out = []
        with torch.no_grad():
            for i in range(0, n_seg, self.batch):
                x = torch.from_numpy(np.ascontiguousarray(segs[i:i + self.batch]))
                x = x.permute(0, 1, 4, 2, 3).float().div_(255.0)      # [B, T, 3, H, W]
                z = self.vae.encode(x)                                 # [B, T', C, h, w]
                out.append(self.stats(z.flatten(0, 1).numpy().astype(np.float64)))
        return np.concatenate(out, 0)
