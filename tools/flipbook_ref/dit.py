"""The Wan2.1 DiT as flipbook runs it: one definition for inference (chunk by chunk over a KV
cache) and for training (a whole clip at once with the same attention pattern).

Parameter names are exactly Wan2.1 WanModel's, so a Wan / Self-Forcing / LongLive state dict
loads unchanged. The maths follows the upstream code (shared/specs/wan_causal.md, section 2):

    tokens  = patch_embedding(latent)                       f-major, then h, then w
    e       = time_embedding(sinusoid(t))                    per frame, raw e feeds the head
    e0      = time_projection(e) -> [6, dim]                 per frame
    ctx     = text_embedding(context zero-padded to text_len)
    block:  a = LN(x)(1+s1)+s0;  x += SelfAttn(a) s2;  x += CrossAttn(norm3(x), ctx);
            x += FFN(LN(x)(1+s4)+s3) s5                      (s = modulation + e0)
    head:   head(LN(x)(1+scale)+shift), (shift, scale) = head.modulation + e
    unpatchify: out[c, f, ph*h+q, pw*w+r] = y[token, (q*pw+r)*out_dim + c]

Self-attention is delegated to an "attender" so the three uses share every other line:
  FullAttender    all frames see all frames (upstream WanModel; frame positions given)
  CachedAttender  one call of the chunk loop: past frames from a KVCache + the call's frames
  GroupAttender   training: each chunk sees its anchors + window + itself, exactly the frames
                  and positions the cache gives it at inference (kvcache.clip_plan)
Queries and keys are rotated by RoPE at attention time; caches hold keys before RoPE.

Layouts: latents [B, C, F, H, W]; tokens [B, F, S, dim] with S = (H/ph)(W/pw); timesteps
[B, F] (one per frame; diffusion forcing gives each chunk its own).
"""
import torch
import torch.nn as nn

from . import ops
from .config import DiTConfig


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return ops.rms_norm(x, self.weight, self.eps)


class AffineLayerNorm(nn.Module):
    """Wan's norm3: LayerNorm with weight and bias."""

    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        return ops.layer_norm(x, self.eps, self.weight, self.bias)


class SelfAttention(nn.Module):
    def __init__(self, dim, num_heads, qk_norm, eps):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if qk_norm else nn.Identity()

    def split(self, x):
        return x.reshape(*x.shape[:-1], self.num_heads, x.shape[-1] // self.num_heads)


class CrossAttention(SelfAttention):
    def kv(self, ctx):
        """Per-prompt keys/values [B, Lc, H, D] (cacheable: they depend on the prompt only)."""
        return self.split(self.norm_k(self.k(ctx))), self.split(self.v(ctx))

    def forward(self, x, kv, cap=None):
        q = self.split(self.norm_q(self.q(x)))
        k, v = kv
        out = ops.attention(q, k, v).flatten(-2)
        return self.o(out)


class GELUTanh(nn.GELU):
    """nn.GELU(approximate="tanh") evaluated in float32: under bf16 autocast PyTorch 1.13's CPU
    GELU runs in bf16, unvectorised, and its forward + backward took 2.2x as long as through
    float32 (a training step ~8% longer). No parameters, so the module names stay upstream's
    (ffn.0, ffn.2); float32 inputs compute exactly as before."""

    def __init__(self):
        super().__init__(approximate="tanh")

    def forward(self, x):
        return super().forward(x.float()).to(x.dtype)


class Block(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        dim, eps = cfg.dim, cfg.eps
        self.eps = eps
        self.self_attn = SelfAttention(dim, cfg.num_heads, cfg.qk_norm, eps)
        self.norm3 = AffineLayerNorm(dim, eps) if cfg.cross_attn_norm else nn.Identity()
        self.cross_attn = CrossAttention(dim, cfg.num_heads, cfg.qk_norm, eps)
        self.ffn = nn.Sequential(nn.Linear(dim, cfg.ffn_dim), GELUTanh(),
                                 nn.Linear(cfg.ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim ** 0.5)

    def forward(self, x, e0, cross_kv, attend, layer, cap=None):
        """x [B, F, S, dim]; e0 [B, F, 6, dim]; returns the new residual stream."""
        B, Fr, S, dim = x.shape
        m = self.modulation.unsqueeze(1) + e0                  # [B, F, 6, dim]
        s0, s1, s2, s3, s4, s5 = [m[:, :, i].unsqueeze(2) for i in range(6)]
        a = ops.layer_norm(x, self.eps) * (1 + s1) + s0
        sa = self.self_attn
        q = sa.norm_q(sa.q(a))
        k = sa.norm_k(sa.k(a))
        v = sa.v(a)
        att = attend(layer, sa.split(q), sa.split(k), sa.split(v), cap)   # [B, F, S, H, D]
        y = sa.o(att.flatten(-2))
        x = x + y * s2
        n3 = self.norm3(x)
        c = self.cross_attn(n3.reshape(B, Fr * S, dim), cross_kv).reshape(B, Fr, S, dim)
        x = x + c
        f_in = ops.layer_norm(x, self.eps) * (1 + s4) + s3
        f = self.ffn(f_in)
        x = x + f * s5
        if cap is not None:
            cap.update({"self_attn_in": a, "q_normed": q, "k_normed": k, "v": v,
                        "self_attn_out": y, "norm3_out": n3, "cross_attn_out": c,
                        "ffn_in": f_in, "ffn_out": f, "out": x})
        return x


class Head(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.eps = cfg.eps
        out = cfg.out_dim * cfg.patch_size[0] * cfg.patch_size[1] * cfg.patch_size[2]
        self.head = nn.Linear(cfg.dim, out)
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim ** 0.5)

    def forward(self, x, e):
        """x [B, F, S, dim], e [B, F, dim] (the raw time embedding)."""
        m = self.modulation.unsqueeze(1) + e.unsqueeze(2)      # [B, F, 2, dim]
        shift, scale = m[:, :, 0].unsqueeze(2), m[:, :, 1].unsqueeze(2)
        return self.head(ops.layer_norm(x, self.eps) * (1 + scale) + shift)


class WanDiT(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        dim = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_dim, dim, kernel_size=tuple(cfg.patch_size),
                                         stride=tuple(cfg.patch_size))
        self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, dim), nn.GELU(approximate="tanh"),
                                            nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim * 6))
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.num_layers)])
        self.head = Head(cfg)
        # RoPE in float64 as upstream; training may set torch.float32 for speed.
        self.rope_dtype = torch.float64

    def init_weights(self):
        """Wan2.1's initialisation (for training from scratch): xavier-uniform linears with zero
        bias, xavier patch embedding, N(0, 0.02) text/time embeddings, zero head."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.xavier_uniform_(self.patch_embedding.weight.flatten(1))
        nn.init.zeros_(self.patch_embedding.bias)
        for m in list(self.text_embedding) + list(self.time_embedding):
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
        nn.init.zeros_(self.head.head.weight)
        nn.init.zeros_(self.head.head.bias)
        return self

    # ---- pieces shared by every forward -------------------------------------------------

    def embed_text(self, context):
        """context [B, Lc, text_dim] (Lc <= text_len) -> [B, text_len, dim]; zero rows are
        appended up to text_len and embedded too (they are attended, never masked)."""
        B, Lc, _ = context.shape
        if Lc > self.cfg.text_len:
            raise ValueError("context has %d rows, text_len is %d" % (Lc, self.cfg.text_len))
        if Lc < self.cfg.text_len:
            context = torch.cat([context, context.new_zeros(B, self.cfg.text_len - Lc, context.shape[2])], 1)
        return self.text_embedding(context)

    def cross_kv(self, ctx_emb):
        """Per-layer cross-attention (k, v) of an embedded context: the per-prompt cache."""
        return [b.cross_attn.kv(ctx_emb) for b in self.blocks]

    def prepare_context(self, context):
        """Raw encoder output [B, Lc, text_dim] -> per-layer cross K/V (what a prompt costs)."""
        return self.cross_kv(self.embed_text(context))

    def time_embed(self, t):
        """t [B, F] -> e [B, F, dim], e0 [B, F, 6, dim]."""
        sin = ops.sinusoid(t, self.cfg.freq_dim)
        e = self.time_embedding(sin)
        e0 = self.time_projection(e).unflatten(-1, (6, self.cfg.dim))
        return e, e0, sin

    def patchify(self, x):
        """[B, C, F, H, W] -> tokens [B, F, S, dim]."""
        y = self.patch_embedding(x)                          # [B, dim, F, gh, gw]
        return y.flatten(3).permute(0, 2, 3, 1)

    def unpatchify(self, y, gh, gw):
        """[B, F, S, ph*pw*out] -> [B, out, F, gh*ph, gw*pw]."""
        B, Fr, S, _ = y.shape
        _, ph, pw = self.cfg.patch_size
        c = self.cfg.out_dim
        y = y.reshape(B, Fr, gh, gw, ph, pw, c)
        y = y.permute(0, 6, 1, 2, 4, 3, 5)                    # b c f h q w r
        return y.reshape(B, c, Fr, gh * ph, gw * pw)

    def grid(self, H, W):
        _, ph, pw = self.cfg.patch_size
        if H % ph or W % pw:
            raise ValueError("latent %dx%d is not a multiple of the patch %dx%d" % (H, W, ph, pw))
        return H // ph, W // pw

    def _run(self, x, t, cross, attend, cap=None):
        """The whole network on latents x [B, C, F, H, W] with timesteps t [B, F]."""
        B, C, Fr, H, W = x.shape
        gh, gw = self.grid(H, W)
        if t.dim() == 1:
            t = t[:, None].expand(B, Fr)
        e, e0, sin = self.time_embed(t)
        h = self.patchify(x)
        if cap is not None:
            cap.update({"sinusoid": sin, "e": e, "e0": e0, "patch_tokens": h})
        for i, blk in enumerate(self.blocks):
            bcap = {} if cap is not None else None
            h = blk(h, e0, cross[i], attend, i, bcap)
            if cap is not None:
                for k, v in bcap.items():
                    cap["block%d.%s" % (i, k)] = v
        y = self.head(h, e)
        if cap is not None:
            cap.update({"head_in": h, "head_out": y})
        return self.unpatchify(y, gh, gw)

    # ---- the three forwards ---------------------------------------------------------------

    def forward(self, x, t, context, frame_pos=None, cap=None):
        """Bidirectional forward over all frames (upstream WanModel). x [B, C, F, H, W];
        t [B] or [B, F]; context [B, Lc, text_dim] raw encoder output; frame_pos [F]."""
        Fr = x.shape[2]
        if frame_pos is None:
            frame_pos = torch.arange(Fr)
        ctx = self.embed_text(context)
        if cap is not None:
            cap["context_emb"] = ctx
        gh, gw = self.grid(x.shape[3], x.shape[4])
        attend = FullAttender(self, gh, gw, frame_pos)
        return self._run(x, t, self.cross_kv(ctx), attend, cap)

    def forward_cached(self, x, t, cross, cache, frame_index, commit=False, recache=False, cap=None):
        """One call of the chunk loop. x [B, C, n, H, W] are latent frames frame_index ..
        frame_index+n-1 of the stream at timestep t (scalar, [B] or [B, n]); cross from
        prepare_context(). The call attends to the cache's anchors + window + itself.

        commit: stage this call's keys/values; the caller then runs cache.commit(...).
        recache: x are the window frames re-run at t=0 under a new prompt: they attend to the
        anchors + themselves and their keys/values replace the window (cache.replace_window)."""
        B, C, n, H, W = x.shape
        gh, gw = self.grid(H, W)
        t = _as_frame_t(t, B, n, x)
        attend = CachedAttender(self, gh, gw, cache, frame_index, n, stage=commit or recache,
                                anchors_only=recache)
        return self._run(x, t, cross, attend, cap)

    def forward_train(self, x, t, context, plan, clean=None, t_clean=None, cross=None):
        """Training forward over a whole clip (differentiable, batched).

        x [B, C, F, H, W] noisy latents, t [B, F] per-frame timesteps (each chunk's frames share
        one value for diffusion forcing). plan from kvcache.clip_plan(): which frames every
        chunk attends to and at which positions. With clean [B, C, F, H, W] (teacher forcing)
        the sequence is [clean clip at t_clean | noisy clip] and each noisy chunk attends to the
        CLEAN anchors and window plus its own noisy frames, which is exactly what inference
        does with a cache filled by t=0 context passes. Returns the flow of the noisy frames."""
        B, C, Fr, H, W = x.shape
        gh, gw = self.grid(H, W)
        if cross is None:
            cross = self.prepare_context(context)
        t = _as_frame_t(t, B, Fr, x)
        if clean is not None:
            if t_clean is None:
                t_clean = 0.0
            tc = _as_frame_t(t_clean, B, Fr, x)
            seq = torch.cat([clean, x], dim=2)
            tt = torch.cat([tc, t], dim=1)
        else:
            seq, tt = x, t
        attend = GroupAttender(self, gh, gw, plan, teacher=clean is not None)
        out = self._run(seq, tt, cross, attend)
        return out[:, :, -Fr:] if clean is not None else out


def _as_frame_t(t, B, n, like):
    """Timesteps as [B, n] float32: a scalar, one per batch row [B], or one per frame [B, n]."""
    t = torch.as_tensor(t, dtype=torch.float32)
    if t.dim() == 0:
        t = t.expand(B, n)
    elif t.dim() == 1:
        if t.shape[0] != B:
            raise ValueError("1-D timesteps must have one value per batch row")
        t = t[:, None].expand(B, n)
    elif tuple(t.shape) != (B, n):
        raise ValueError("timesteps must be [B, F] = [%d, %d], got %s" % (B, n, list(t.shape)))
    return t.to(like.device)


def token_angles(head_dim, frame_pos, gh, gw):
    """RoPE angles [nF, S, head_dim/2] for frames at positions frame_pos [nF] on a gh x gw grid."""
    frame_pos = torch.as_tensor(frame_pos)
    S = gh * gw
    ph = torch.arange(gh).repeat_interleave(gw)
    pw = torch.arange(gw).repeat(gh)
    nF = frame_pos.shape[0]
    return ops.rope_angles(head_dim, frame_pos[:, None].expand(nF, S), ph[None].expand(nF, S),
                           pw[None].expand(nF, S))


class FullAttender:
    def __init__(self, dit, gh, gw, frame_pos):
        self.dit = dit
        self.ang = token_angles(dit.cfg.head_dim, frame_pos, gh, gw)

    def __call__(self, layer, q, k, v, cap=None):
        B, Fr, S, H, D = q.shape
        qr = ops.rope_apply(q, self.ang, self.dit.rope_dtype)
        kr = ops.rope_apply(k, self.ang, self.dit.rope_dtype)
        if cap is not None:
            cap.update({"q_roped": qr, "k_roped": kr})
        out = ops.attention(qr.reshape(B, Fr * S, H, D), kr.reshape(B, Fr * S, H, D),
                            v.reshape(B, Fr * S, H, D))
        return out.reshape(B, Fr, S, H, D)


class CachedAttender:
    def __init__(self, dit, gh, gw, cache, frame_index, n, stage, anchors_only):
        self.dit, self.cache, self.stage = dit, cache, stage
        self.anchors_only = anchors_only
        past_pos, new_pos = cache.positions(frame_index, n, anchors_only)
        self.past_ang = token_angles(dit.cfg.head_dim, past_pos, gh, gw) if past_pos else None
        self.new_ang = token_angles(dit.cfg.head_dim, new_pos, gh, gw)
        self.past_pos, self.new_pos = past_pos, new_pos

    def __call__(self, layer, q, k, v, cap=None):
        B, n, S, H, D = q.shape
        rd = self.dit.rope_dtype
        qr = ops.rope_apply(q, self.new_ang, rd)
        kr = ops.rope_apply(k, self.new_ang, rd)
        pk, pv = self.cache.past(layer, self.anchors_only)
        if pk is not None:
            kr = torch.cat([ops.rope_apply(pk, self.past_ang, rd), kr], dim=1)
            v_all = torch.cat([pv, v], dim=1)
        else:
            v_all = v
        if cap is not None:
            cap.update({"q_roped": qr, "k_roped": kr, "v_all": v_all})
        if self.stage:
            self.cache.stage(layer, k, v)
        L = kr.shape[1]
        out = ops.attention(qr.reshape(B, n * S, H, D), kr.reshape(B, L * S, H, D),
                            v_all.reshape(B, L * S, H, D))
        return out.reshape(B, n, S, H, D)


class GroupAttender:
    """Attention of a clip split into query groups (chunks), each with its own key frames."""

    def __init__(self, dit, gh, gw, plan, teacher):
        self.dit = dit
        g = plan.teacher_groups() if teacher else plan.groups()
        self.q_frames, self.k_frames, self.k_valid, self.q_pos, self.k_pos = g
        hd = dit.cfg.head_dim
        G, Fq = self.q_frames.shape
        Lk = self.k_frames.shape[1]
        self.q_ang = token_angles(hd, self.q_pos.reshape(-1), gh, gw).reshape(G, Fq, gh * gw, -1)
        self.k_ang = token_angles(hd, self.k_pos.reshape(-1), gh, gw).reshape(G, Lk, gh * gw, -1)
        # Each frame is the query of exactly one group: inverse permutation back to frame order.
        order = self.q_frames.reshape(-1)
        self.inverse = torch.empty_like(order)
        self.inverse[order] = torch.arange(order.numel())

    def __call__(self, layer, q, k, v, cap=None):
        B, Ftot, S, H, D = q.shape
        G, Fq = self.q_frames.shape
        Lk = self.k_frames.shape[1]
        rd = self.dit.rope_dtype
        qg = ops.rope_apply(q[:, self.q_frames], self.q_ang, rd)      # [B, G, Fq, S, H, D]
        kg = ops.rope_apply(k[:, self.k_frames], self.k_ang, rd)      # [B, G, Lk, S, H, D]
        vg = v[:, self.k_frames]
        mask = self.k_valid[:, None, :, None].expand(G, 1, Lk, S).reshape(G, 1, Lk * S)
        mask = mask.unsqueeze(0).expand(B, G, 1, Lk * S).reshape(B * G, 1, Lk * S)
        out = ops.attention(qg.reshape(B * G, Fq * S, H, D), kg.reshape(B * G, Lk * S, H, D),
                            vg.reshape(B * G, Lk * S, H, D), mask)
        out = out.reshape(B, G * Fq, S, H, D)
        return out.index_select(1, self.inverse)
