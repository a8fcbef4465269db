"""The numeric primitives of the model family, one function per kernel of kernels/.

All functions are pure (no in-place updates) so they work under autograd, and take a batch
dimension wherever the C kernels do. Formulas follow the upstream Wan2.1 code exactly, including
where it computes in float64 (sinusoid, RoPE), because the golden tests compare at ~1e-6.
"""
import math

import torch
import torch.nn.functional as F


def rms_norm(x, weight, eps):
    """x * rsqrt(mean(x^2) + eps) * weight over the last dimension (WanRMSNorm)."""
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight


def layer_norm(x, eps, weight=None, bias=None):
    """LayerNorm over the last dimension (biased variance), optional affine (WanLayerNorm)."""
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


def gelu_tanh(x):
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def sinusoid(t, dim):
    """Time sinusoid [cos(t f_j), j < dim/2 | sin(t f_j)], f_j = 10000^(-j/(dim/2)).

    t: any shape of real timesteps; computed in float64, returned as float32 [..., dim]."""
    half = dim // 2
    pos = t.to(torch.float64).reshape(-1)
    freqs = torch.pow(10000, -torch.arange(half, dtype=torch.float64).div(half))
    arg = torch.outer(pos, freqs)
    out = torch.cat([torch.cos(arg), torch.sin(arg)], dim=1).float()
    return out.reshape(*t.shape, dim)


def rope_split(head_dim):
    """Channel split of a head for 3D RoPE: (temporal, height, width) axis dims."""
    d = head_dim
    return d - 4 * (d // 6), 2 * (d // 6), 2 * (d // 6)


def rope_inv_freq(axis_dim):
    """1 / 10000^(2j / axis_dim), j < axis_dim/2, float64 (Wan rope_params)."""
    return 1.0 / torch.pow(10000, torch.arange(0, axis_dim, 2, dtype=torch.float64).div(axis_dim))


def rope_angles(head_dim, pos_f, pos_h, pos_w):
    """Rotation angles [..., head_dim/2] (float64) for tokens at (frame, row, column) positions.

    Pairs 0..dt/2-1 use the frame position, the next dh/2 the row, the last dw/2 the column."""
    dt, dh, dw = rope_split(head_dim)
    a_f = pos_f.to(torch.float64).unsqueeze(-1) * rope_inv_freq(dt)
    a_h = pos_h.to(torch.float64).unsqueeze(-1) * rope_inv_freq(dh)
    a_w = pos_w.to(torch.float64).unsqueeze(-1) * rope_inv_freq(dw)
    return torch.cat([a_f, a_h, a_w], dim=-1)


def rope_apply(x, angles, compute_dtype=torch.float64):
    """Rotates adjacent channel pairs (2j, 2j+1) of x [..., heads, head_dim] by angles [..., head_dim/2].

    angles broadcast against x without the heads axis (one angle set per token). Computed in
    float64 like upstream (then cast back), or in compute_dtype for speed when training."""
    shp = x.shape
    xr = x.to(compute_dtype).reshape(*shp[:-1], shp[-1] // 2, 2)
    a = angles.to(compute_dtype).unsqueeze(-2)          # broadcast over heads
    cos, sin = torch.cos(a), torch.sin(a)
    re, im = xr[..., 0], xr[..., 1]
    out = torch.stack([re * cos - im * sin, re * sin + im * cos], dim=-1)
    return out.reshape(shp).to(x.dtype)


def attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(d)) v per head. q [B, Lq, H, D], k/v [B, Lk, H, D] -> [B, Lq, H, D].

    mask: optional bool [B or 1, Lq, Lk] (True = attend)."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    # Heads first, so that the scores [B, H, Lq, Lk] and their gradient are contiguous for
    # the CPU softmax backward and the dtype casts (the einsum form made a training step ~5%
    # slower). Scores in bf16 under autocast, softmax in float32: float32 matmuls here
    # doubled the step time.
    qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)      # [B, H, L, D]
    s = torch.matmul(qh, kh.transpose(-1, -2)) * scale                       # [B, H, Lq, Lk]
    if mask is not None:
        s = s.masked_fill(~mask.unsqueeze(1), float("-inf"))
    p = torch.softmax(s.float(), dim=-1).to(q.dtype)
    return torch.matmul(p, vh).transpose(1, 2)                               # [B, Lq, H, D]
