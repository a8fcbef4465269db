"""TAEHV tiny video autoencoder (TAEW2.1 structure, configurable widths; wan_causal.md sec. 8).

Decoder (module indices = state-dict names decoder.<i>.*), widths n0..n3 = decoder_channels:
    0 Clamp tanh(x/3)*3 | 1 conv3x3 latent->n0 | 2 ReLU | 3-5 MemBlock(n0) | 6 Upsample x2 (or x1)
    7 TGrow(n0, 2 or 1) | 8 conv3x3 n0->n1 (no bias) | 9-11 MemBlock(n1) | 12 Upsample | 13 TGrow(n1)
    14 conv n1->n2 (no bias) | 15-17 MemBlock(n2) | 18 Upsample | 19 TGrow(n2) | 20 conv n2->n3
    (no bias) | 21 ReLU | 22 conv3x3 n3 -> 3 p^2, then pixel shuffle p, clamp [0, 1]
Encoder (encoder.<i>.*), width n = encoder_channels:
    0 conv3x3 3p^2->n | 1 ReLU | 2 TPool(n, 2 or 1) | 3 conv3x3 stride 2 (no bias) | 4-6 MemBlock(n)
    7 TPool | 8 conv s2 | 9-11 MemBlock | 12 TPool | 13 conv s2 | 14-16 MemBlock | 17 conv n->latent
MemBlock(n): ReLU(conv.4(ReLU(conv.2(ReLU(conv.0(cat[x, past]))))) + x), past = the block's
input at the previous time step (zeros at the first). TGrow(n, s): 1x1 conv n -> s n (no bias);
output frame t s + k takes channels [k n, (k+1) n). TPool(n, s): frames t s .. t s+s-1 are
concatenated on channels and mixed by a 1x1 conv s n -> n (no bias).

Decoding T latents gives t_up T raw frames, of which the first frames_to_trim are dropped;
encoding pads the frame count to a multiple of t_down with copies of the last frame.
Layout N, T, C, H, W throughout; decoder input = the DiT's latents directly (no mean/std).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import VAEConfig


def conv3(n_in, n_out, stride=1, bias=True):
    return nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=bias)


class Clamp(nn.Module):
    def forward(self, x):
        return torch.tanh(x / 3) * 3


class MemBlock(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.conv = nn.Sequential(conv3(n_in * 2, n_out), nn.ReLU(), conv3(n_out, n_out), nn.ReLU(),
                                  conv3(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()

    def forward(self, x, past):
        return F.relu(self.conv(torch.cat([x, past], 1)) + self.skip(x))


class TPool(nn.Module):
    def __init__(self, n, stride):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n * stride, n, 1, bias=False)

    def forward(self, x):
        """x [N*T, C, H, W] with T a multiple of stride -> [N*T/stride, C, H, W]."""
        NT, C, H, W = x.shape
        return self.conv(x.reshape(NT // self.stride, self.stride * C, H, W))


class TGrow(nn.Module):
    def __init__(self, n, stride):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n, n * stride, 1, bias=False)

    def forward(self, x):
        NT, C, H, W = x.shape
        return self.conv(x).reshape(NT * self.stride, C, H, W)


class Upsample(nn.Module):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x if self.factor == 1 else F.interpolate(x, scale_factor=self.factor, mode="nearest")


class TAEHV(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        p, lat, img = cfg.patch_size, cfg.latent_channels, cfg.image_channels
        n = cfg.encoder_channels
        td = [2 if b else 1 for b in cfg.encoder_time_downscale]
        enc = [conv3(img * p * p, n), nn.ReLU()]
        for s in td:
            enc += [TPool(n, s), conv3(n, n, stride=2, bias=False), MemBlock(n, n), MemBlock(n, n), MemBlock(n, n)]
        enc += [conv3(n, lat)]
        self.encoder = nn.Sequential(*enc)
        nf = cfg.decoder_channels
        tu = [2 if b else 1 for b in cfg.decoder_time_upscale]
        su = [2 if b else 1 for b in cfg.decoder_space_upscale]
        dec = [Clamp(), conv3(lat, nf[0]), nn.ReLU()]
        for i in range(3):
            dec += [MemBlock(nf[i], nf[i]), MemBlock(nf[i], nf[i]), MemBlock(nf[i], nf[i]),
                    Upsample(su[i]), TGrow(nf[i], tu[i]), conv3(nf[i], nf[i + 1], bias=False)]
        dec += [nn.ReLU(), conv3(nf[3], img * p * p)]
        self.decoder = nn.Sequential(*dec)

    # ---- parallel (whole clip at once; the training path) -------------------------------

    @staticmethod
    def _apply_parallel(seq, x):
        N, T = x.shape[:2]
        x = x.reshape(N * T, *x.shape[2:])
        for b in seq:
            if isinstance(b, MemBlock):
                NT, C, H, W = x.shape
                xt = x.reshape(N, NT // N, C, H, W)
                past = torch.cat([torch.zeros_like(xt[:, :1]), xt[:, :-1]], 1).reshape(NT, C, H, W)
                x = b(x, past)
            else:
                x = b(x)
        return x.reshape(N, x.shape[0] // N, *x.shape[1:])

    def _post(self, x):
        if self.cfg.patch_size > 1:
            x = F.pixel_shuffle(x, self.cfg.patch_size) if x.dim() == 4 else \
                F.pixel_shuffle(x.flatten(0, 1), self.cfg.patch_size).unflatten(0, x.shape[:2])
        return x.clamp(0, 1)

    def decode(self, latents):
        """latents [N, T, C, h, w] -> frames [N, t_up T - trim, 3, H, W] in [0, 1]. With
        warm_start the first latent is decoded twice and the first pass's frames dropped."""
        warm = self.cfg.t_upscale if self.cfg.warm_start else 0
        if warm:
            latents = torch.cat([latents[:, :1], latents], 1)
        x = self._apply_parallel(self.decoder, latents)
        return self._post(x)[:, warm + self.cfg.frames_to_trim:]

    def encode(self, frames):
        """frames [N, T, 3, H, W] in [0, 1] -> latents [N, ceil(T / t_down), C, H/8, W/8]. With
        warm_start the encoder first sees the first frame t_down times and drops that latent."""
        if self.cfg.warm_start:
            td = self.cfg.t_downscale
            frames = torch.cat([frames[:, :1].expand(-1, td, -1, -1, -1), frames], 1)
            return self._encode(frames)[:, 1:]
        return self._encode(frames)

    def _encode(self, frames):
        p = self.cfg.patch_size
        if p > 1:
            frames = F.pixel_unshuffle(frames.flatten(0, 1), p).unflatten(0, frames.shape[:2])
        td = self.cfg.t_downscale
        if frames.shape[1] % td:
            pad = td - frames.shape[1] % td
            frames = torch.cat([frames, frames[:, -1:].expand(-1, pad, -1, -1, -1)], 1)
        return self._apply_parallel(self.encoder, frames)


class _Sequential:
    """Runs a TAEHV half one time step at a time, keeping one past tensor per MemBlock and the
    pending inputs of every TPool. Equal to the parallel form up to summation order."""

    def __init__(self, seq):
        self.seq = seq
        self.reset()

    def reset(self):
        self.mem = [None] * len(self.seq)

    def push(self, x, start=0):
        """Feeds one time step x [N, C, H, W] at block `start`; returns the output time steps."""
        for i in range(start, len(self.seq)):
            b = self.seq[i]
            if isinstance(b, MemBlock):
                past = self.mem[i] if self.mem[i] is not None else torch.zeros_like(x)
                self.mem[i] = x
                x = b(x, past)
            elif isinstance(b, TPool):
                pend = (self.mem[i] or []) + [x]
                if len(pend) < b.stride:
                    self.mem[i] = pend
                    return []
                self.mem[i] = None
                x = b.conv(torch.cat(pend, 1))
            elif isinstance(b, TGrow):
                y = b.conv(x)
                C = x.shape[1]
                out = []
                for k in range(b.stride):
                    out += self.push(y[:, k * C:(k + 1) * C], i + 1)
                return out
            else:
                x = b(x)
        return [x]


class StreamDecoder:
    """Streaming decode: one latent frame in, t_up frames out (the first frames_to_trim raw
    frames of a stream are dropped), as the engine's decoder runs chunk by chunk."""

    def __init__(self, vae: TAEHV):
        self.vae = vae
        self.run = _Sequential(vae.decoder)
        self.reset()

    def reset(self):
        self.run.reset()
        self.produced = 0
        # warm_start: the first latent goes through twice, the first pass's frames dropped
        self.warm = self.vae.cfg.warm_start
        self.skip = self.vae.cfg.frames_to_trim + (self.vae.cfg.t_upscale if self.warm else 0)

    def push(self, latent):
        """latent [N, C, h, w] -> list of frames [N, 3, H, W]."""
        if self.warm:
            self.warm = False
            self.push(latent)
        out = []
        for y in self.run.push(latent):
            self.produced += 1
            if self.produced > self.skip:
                out.append(self.vae._post(y))
        return out

    def decode(self, latents):
        """[N, T, C, h, w] -> [N, frames, 3, H, W], pushing one latent at a time."""
        frames = []
        for t in range(latents.shape[1]):
            frames += self.push(latents[:, t])
        return torch.stack(frames, 1)


class StreamEncoder:
    """Streaming encode: frames in one at a time, a latent out every t_down frames."""

    def __init__(self, vae: TAEHV):
        self.vae = vae
        self.run = _Sequential(vae.encoder)
        self.count = 0
        self.last = None
        self.warm = vae.cfg.warm_start

    def push(self, frame):
        if self.warm:           # warm_start: t_down extra copies of the first frame, latent dropped
            self.warm = False
            for _ in range(self.vae.cfg.t_downscale):
                self._push(frame)
        return self._push(frame)

    def _push(self, frame):
        p = self.vae.cfg.patch_size
        self.last = frame
        self.count += 1
        x = F.pixel_unshuffle(frame, p) if p > 1 else frame
        return self.run.push(x)

    def flush(self):
        out = []
        td = self.vae.cfg.t_downscale
        while self.last is not None and self.count % td:
            out += self.push(self.last)
        return out

    def encode(self, frames):
        lat = []
        for t in range(frames.shape[1]):
            lat += self.push(frames[:, t])
        lat += self.flush()
        return torch.stack(lat, 1)
