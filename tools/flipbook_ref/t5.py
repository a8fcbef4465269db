"""umT5 text encoder (Wan2.1 T5Encoder; shared/specs/wan_causal.md section 6).

    x = token_embedding(ids)
    per block:  x += o(Attn(norm1(x)));  h = norm2(x);  x += fc2(fc1(h) * gelu_tanh(gate.0(h)))
    x = norm(x)
Attention logits are q.k per head with NO 1/sqrt(d) scaling plus a learned relative-position
bias [heads] per bucket of (key_pos - query_pos) (per block, or shared when shared_pos);
padded keys get the float32 minimum added; softmax in float32. RMSNorm: w * x * rsqrt(mean(x^2)
+ eps). No biases anywhere. Names match the upstream state dict.
"""
import math

import torch
import torch.nn as nn

from . import ops
from .config import TextEncoderConfig


def relative_bucket(rel, num_buckets, max_distance):
    """Bidirectional T5 bucket of rel = key_pos - query_pos (int64 tensor).

    Half the buckets for rel > 0; within a half: exact for |rel| < nb/4, then logarithmic up
    to max_distance (the log is evaluated in float32 as upstream)."""
    half = num_buckets // 2
    b = (rel > 0).long() * half
    a = rel.abs()
    exact = half // 2
    large = exact + (torch.log(a.float() / exact) / math.log(max_distance / exact)
                     * (half - exact)).long()
    large = torch.clamp(large, max=half - 1)
    return b + torch.where(a < exact, a, large)


class T5RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + self.eps))


class RelativeEmbedding(nn.Module):
    def __init__(self, num_buckets, num_heads, max_distance):
        super().__init__()
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def forward(self, lq, lk):
        rel = torch.arange(lk).unsqueeze(0) - torch.arange(lq).unsqueeze(1)
        buckets = relative_bucket(rel, self.num_buckets, self.max_distance)
        return self.embedding(buckets).permute(2, 0, 1).unsqueeze(0)   # [1, H, Lq, Lk]


class Attention(nn.Module):
    def __init__(self, dim, dim_attn, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim_attn, bias=False)
        self.k = nn.Linear(dim, dim_attn, bias=False)
        self.v = nn.Linear(dim, dim_attn, bias=False)
        self.o = nn.Linear(dim_attn, dim, bias=False)

    def forward(self, x, mask, pos_bias):
        B, L, _ = x.shape
        H = self.num_heads
        q = self.q(x).view(B, L, H, -1)
        k = self.k(x).view(B, L, H, -1)
        v = self.v(x).view(B, L, H, -1)
        bias = pos_bias.expand(B, H, L, L)
        if mask is not None:
            bias = bias.masked_fill(mask.view(B, 1, 1, L) == 0, torch.finfo(x.dtype).min)
        s = torch.einsum("binc,bjnc->bnij", q, k) + bias
        p = torch.softmax(s.float(), dim=-1).type_as(s)
        out = torch.einsum("bnij,bjnc->binc", p, v).reshape(B, L, -1)
        return self.o(out)


class GateAct(nn.Module):
    def forward(self, x):
        return ops.gelu_tanh(x)


class FeedForward(nn.Module):
    def __init__(self, dim, dim_ffn):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(dim, dim_ffn, bias=False), GateAct())
        self.fc1 = nn.Linear(dim, dim_ffn, bias=False)
        self.fc2 = nn.Linear(dim_ffn, dim, bias=False)

    def forward(self, x):
        return self.fc2(self.fc1(x) * self.gate(x))


class Block(nn.Module):
    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        self.norm1 = T5RMSNorm(cfg.dim, cfg.eps)
        self.attn = Attention(cfg.dim, cfg.dim_attn, cfg.num_heads)
        self.norm2 = T5RMSNorm(cfg.dim, cfg.eps)
        self.ffn = FeedForward(cfg.dim, cfg.dim_ffn)
        self.pos_embedding = None if cfg.shared_pos else \
            RelativeEmbedding(cfg.num_buckets, cfg.num_heads, cfg.max_distance)

    def forward(self, x, mask, pos_bias, cap=None):
        e = pos_bias if self.pos_embedding is None else self.pos_embedding(x.shape[1], x.shape[1])
        a = self.attn(self.norm1(x), mask, e)
        x = x + a
        f = self.ffn(self.norm2(x))
        x = x + f
        if cap is not None:
            cap.update({"attn_out": a, "ffn_out": f, "out": x, "pos_bias": e[0]})
        return x


class T5Encoder(nn.Module):
    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab, cfg.dim)
        self.pos_embedding = RelativeEmbedding(cfg.num_buckets, cfg.num_heads, cfg.max_distance) \
            if cfg.shared_pos else None
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.num_layers)])
        self.norm = T5RMSNorm(cfg.dim, cfg.eps)

    def forward(self, ids, mask=None, cap=None):
        """ids [B, L] int64, mask [B, L] (1 = real token incl. EOS) -> hidden [B, L, dim]."""
        if ids.min() < 0 or ids.max() >= self.cfg.vocab:
            raise ValueError("token id outside the vocabulary of %d" % self.cfg.vocab)
        x = self.token_embedding(ids)
        L = ids.shape[1]
        e = self.pos_embedding(L, L) if self.pos_embedding is not None else None
        for i, blk in enumerate(self.blocks):
            bcap = {} if cap is not None else None
            x = blk(x, mask, e, bcap)
            if cap is not None:
                for k, v in bcap.items():
                    cap["block%d.%s" % (i, k)] = v
        return self.norm(x)

    def encode(self, ids_list):
        """Encodes prompts given as lists of ids (EOS included), each on its real tokens only,
        and returns the DiT context [B, max_len, dim] with zero rows after each prompt."""
        outs = [self.forward(torch.tensor([ids], dtype=torch.long))[0] for ids in ids_list]
        L = max(o.shape[0] for o in outs)
        return torch.stack([torch.cat([o, o.new_zeros(L - o.shape[0], o.shape[1])]) for o in outs])
