"""The rolling KV cache of one stream (mirrors kvcache/ of the C engine), and the clip plan
that makes training see exactly what the cache shows at inference.

Per layer the cache holds latent-frame slots: up to A anchor slots, never evicted (by default
the first A frames of the stream; or a pinned chunk, or frames encoded from an image) and a
window of up to W slots with the most recent other frames, in time order (W = -1: unbounded).
Keys are stored BEFORE RoPE; every call rotates them at attention time with positions

    "window":   slot order: anchors 0..a-1, window frames a..a+w-1, the call's frames after
    "absolute": each frame's absolute latent-frame index (Self-Forcing; reproduces upstream)

A chunk c of C frames (stream frames s = cC .. s+C-1) therefore attends to
    anchors  = frames 0 .. min(A, s)-1
    window   = frames max(A, s-W) .. s-1           (only frames >= A; W = -1: from A)
    itself   = frames s .. s+C-1
which equals upstream's sink + local window with sink_size = A, local_attn_size = A + W + C.

The denoising calls of a chunk only read the cache; its final t=0 call stages its keys and
values and commit() appends them: frames fill the free anchor slots first, the rest enters the
window, and the window drops its oldest frames beyond W.
"""
import torch


class KVCache:
    def __init__(self, num_layers, anchor_frames, window_frames, positions="window"):
        if positions not in ("window", "absolute"):
            raise ValueError("positions must be 'window' or 'absolute'")
        self.L, self.A, self.W, self.mode = num_layers, anchor_frames, window_frames, positions
        self.reset()

    def reset(self):
        L = self.L
        self.ak = [None] * L          # anchor keys   [B, a, S, H, D] (pre-RoPE)
        self.av = [None] * L
        self.wk = [None] * L          # window keys   [B, w, S, H, D], oldest first
        self.wv = [None] * L
        self.a_idx = []               # absolute frame index of every anchor slot
        self.w_idx = []
        self.a_lat = None             # clean latents of the slots [B, C, a, H, W] (recache input)
        self.w_lat = None
        self.anchors_locked = False   # pinned / set from an image: generated frames never fill them
        self.staged = [None] * L

    @property
    def n_anchor(self):
        return len(self.a_idx)

    @property
    def n_window(self):
        return len(self.w_idx)

    def positions(self, frame_index, n, anchors_only=False):
        """(positions of the attended past frames, positions of the call's n frames)."""
        past_idx = self.a_idx if anchors_only else self.a_idx + self.w_idx
        new_idx = list(range(frame_index, frame_index + n))
        if self.mode == "absolute":
            return list(past_idx), new_idx
        p = len(past_idx)
        return list(range(p)), list(range(p, p + n))

    def past(self, layer, anchors_only=False):
        """Pre-RoPE (k, v) of the attended past frames, anchors first; (None, None) if empty."""
        parts_k = [t for t in (self.ak[layer], None if anchors_only else self.wk[layer]) if t is not None]
        parts_v = [t for t in (self.av[layer], None if anchors_only else self.wv[layer]) if t is not None]
        if not parts_k:
            return None, None
        return torch.cat(parts_k, 1), torch.cat(parts_v, 1)

    def stage(self, layer, k, v):
        self.staged[layer] = (k.detach(), v.detach())

    def commit(self, frame_index, latents):
        """Appends the staged frames (stream frames frame_index.., clean latents [B, C, n, H, W])."""
        n = latents.shape[2]
        room = 0 if self.anchors_locked else max(0, self.A - self.n_anchor)
        na = min(room, n)
        for l in range(self.L):
            k, v = self.staged[l]
            if na:
                self.ak[l] = _cat(self.ak[l], k[:, :na])
                self.av[l] = _cat(self.av[l], v[:, :na])
            if n > na:
                self.wk[l] = _cat(self.wk[l], k[:, na:])
                self.wv[l] = _cat(self.wv[l], v[:, na:])
            self.staged[l] = None
        idx = list(range(frame_index, frame_index + n))
        if na:
            self.a_idx += idx[:na]
            self.a_lat = _cat(self.a_lat, latents[:, :, :na], 2)
        if n > na:
            self.w_idx += idx[na:]
            self.w_lat = _cat(self.w_lat, latents[:, :, na:], 2)
        self._evict()

    def _evict(self):
        if self.W < 0:
            return
        drop = self.n_window - self.W
        if drop <= 0:
            return
        for l in range(self.L):
            self.wk[l] = _keep_last(self.wk[l], self.W)
            self.wv[l] = _keep_last(self.wv[l], self.W)
        self.w_idx = self.w_idx[drop:]
        self.w_lat = self.w_lat[:, :, drop:] if self.W > 0 else None

    def replace_window(self):
        """Staged keys/values of a recache pass (one per window frame) replace the window."""
        for l in range(self.L):
            k, v = self.staged[l]
            if k.shape[1] != self.n_window:
                raise RuntimeError("recache staged %d frames for a window of %d" % (k.shape[1], self.n_window))
            self.wk[l], self.wv[l] = k, v
            self.staged[l] = None

    def pin(self):
        """The most recent A committed frames become the anchors (copied; the window keeps
        them too). Generated frames no longer fill anchor slots afterwards."""
        if self.A == 0:
            return
        for l in range(self.L):
            k, v = self.past(l)
            if k is None:
                return
            self.ak[l] = k[:, -self.A:]
            self.av[l] = v[:, -self.A:]
        idx = self.a_idx + self.w_idx
        lat = _cat(self.a_lat, self.w_lat, 2)
        self.a_idx = idx[-self.A:]
        self.a_lat = lat[:, :, -self.A:]
        self.anchors_locked = True

    def set_anchors_from_staged(self, frame_indices, latents):
        """Anchors := the staged frames (an anchor pass over image latents); window cleared."""
        for l in range(self.L):
            k, v = self.staged[l]
            self.ak[l], self.av[l] = k[:, :self.A], v[:, :self.A]
            self.wk[l] = self.wv[l] = None
            self.staged[l] = None
        self.a_idx = list(frame_indices)[:self.A]
        self.a_lat = latents[:, :, :self.A]
        self.w_idx, self.w_lat = [], None
        self.anchors_locked = True

    def snapshot(self, layer):
        """(k, v, frame indices) of all slots of a layer in slot order (anchors, window)."""
        k, v = self.past(layer)
        return k, v, self.a_idx + self.w_idx


def _cat(a, b, dim=1):
    if a is None:
        return b
    if b is None:
        return a
    return torch.cat([a, b], dim)


def _keep_last(t, n):
    if t is None:
        return None
    return t[:, t.shape[1] - n:] if n > 0 else None


def chunk_frames(c, C, A, W):
    """(anchor frames, window frames, own frames) chunk c attends to in a stream started at 0."""
    s = c * C
    anchors = list(range(min(A, s)))
    lo = A if W < 0 else max(A, s - W)
    window = list(range(lo, s)) if lo < s else []
    return anchors, window, list(range(s, s + C))


class ClipPlan:
    """Attention groups of a training clip of F = n_chunks * C frames: for every chunk, the
    frames it attends to and their RoPE positions, identical to what KVCache gives at inference
    for a stream whose first frame is the clip's first frame."""

    def __init__(self, num_frames, chunk, anchor, window, positions="window"):
        if num_frames % chunk:
            raise ValueError("clip of %d frames is not a whole number of %d-frame chunks" % (num_frames, chunk))
        self.F, self.C, self.A, self.W, self.mode = num_frames, chunk, anchor, window, positions
        self.chunks = [chunk_frames(c, chunk, anchor, window) for c in range(num_frames // chunk)]

    def _positions(self, frames):
        return list(range(len(frames))) if self.mode == "window" else list(frames)

    def _pack(self, groups):
        Lk = max(len(k) for _, k, _ in groups)
        qf, kf, kv, qp, kp = [], [], [], [], []
        for q, k, pos in groups:
            pad = Lk - len(k)
            qf.append(q)
            kf.append(k + [0] * pad)
            kv.append([True] * len(k) + [False] * pad)
            qp.append(pos[len(pos) - len(q):])
            kp.append(pos + [0] * pad)
        T = torch.tensor
        return T(qf), T(kf), T(kv), T(qp), T(kp)

    def groups(self):
        """Diffusion forcing: chunk c's (noisy) frames attend to the anchor/window frames of the
        same clip at their own noise levels, and to themselves."""
        out = []
        for a, w, own in self.chunks:
            keys = a + w + own
            out.append((own, keys, self._positions(keys)))
        return self._pack(out)

    def teacher_groups(self):
        """Teacher forcing over the sequence [clean clip | noisy clip] (2F frames): clean chunks
        attend like the t=0 context pass, noisy chunk c attends to the clean anchors + window
        and to its own noisy frames."""
        out = []
        for a, w, own in self.chunks:
            keys = a + w + own
            pos = self._positions(keys)
            out.append((own, keys, pos))
            out.append(([f + self.F for f in own], a + w + [f + self.F for f in own], pos))
        return self._pack(out)
