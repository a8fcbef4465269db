"""Stage "dit": the umT5 text encoder and the causal DiT, trained jointly from scratch with flow
matching on latent clips of the frozen autoencoder.

Data: dataset_clips world clips of clip_latents latent frames (4 video frames each), rendered
and encoded once into a latent cache (<dir>/dit/latents/, shards, resumable). Half of them
switch scene and caption at a chunk boundary.

Objective (flipbook_ref.training, extended with a caption per chunk): a clip of F = n C latent
frames gets one noise level per chunk (diffusion forcing); with teacher forcing the model runs
over [clean clip at t=0 | noisy clip] and every noisy chunk attends to the CLEAN anchors and
window of the clip and to itself, at the slot-order positions the engine's KV cache gives it,
so the training computation is exactly the endless stream's (the reference's selftest checks
that training forward == cached inference). Loss: mean (v_pred - (eps - x0))^2.

Latent cells that hold an object (a palette-coloured pixel in their 4 frames x 8x8 pixels) weigh
1 + object_weight in the loss: objects cover a few percent of the cells, and unweighted the model
learnt the backgrounds long before it drew any object. The first chunk of a clip weighs
first_chunk_weight times more: it is the only chunk that draws a scene from the prompt alone
(later ones mostly continue their context), its loss was 3-4x the others', and a stream's
first chunk decides what every later chunk continues.

Noise levels: with probability exact_step_prob a chunk takes one of the sampler's own steps
(t_k, sigma_k), else any level of the 1000-entry table, so 4-step sampling works without
distillation.

Caption dropout: each noisy chunk sees the empty caption "" instead of its own with probability
caption_dropout (its clean copy, which stands for the KV cache the engine commits under the
real prompt, keeps the caption). The model so also learns the unconditional flow, which the
sampler's classifier-free guidance (sampler.guidance > 1) sets against the conditional one.

Each chunk is conditioned on its own caption: the reference's forward_train takes one context
per clip, so this stage swaps the class of every cross-attention module for FrameCrossAttention,
which accepts per-frame keys/values [B, F, Lc, H, D] (same parameters, same names, same maths
when all frames share a caption; tests/train checks that).
"""
import json
import os
import time

import numpy as np
import torch

from flipbook_ref import ops
from flipbook_ref.dit import CrossAttention, GroupAttender, WanDiT, _as_frame_t
from flipbook_ref.kvcache import ClipPlan
from flipbook_ref.sampler import FlowMatchSchedule
from flipbook_ref.t5 import T5Encoder

from . import ae as ae_stage
from . import config as C
from . import data, state
from . import tokenizer as tok_stage

STAGE_ID = 3


# ---- model pieces ---------------------------------------------------------------------------

class FrameCrossAttention(CrossAttention):
    """Cross-attention whose keys/values may differ per latent frame: kv [B, F, Lc, H, D] with
    queries x [B, F*S, dim] (frame-major), or the reference's per-clip kv [B, Lc, H, D]."""

    def forward(self, x, kv, cap=None):
        k, v = kv
        if k.dim() == 4:
            return super().forward(x, kv, cap)
        B, Fr, Lc, H, D = k.shape
        q = self.split(self.norm_q(self.q(x)))                        # [B, F*S, H, D]
        q = q.reshape(B * Fr, q.shape[1] // Fr, H, D)
        out = ops.attention(q, k.reshape(B * Fr, Lc, H, D), v.reshape(B * Fr, Lc, H, D))
        return self.o(out.reshape(B, -1, H * D))


def per_frame_cross(dit, context, frame_caption):
    """context [B, P, Lc, text_dim] (P captions per clip, raw encoder output), frame_caption
    [B, F] long (which caption each frame of the attended sequence uses) -> per-layer (k, v)
    of shape [B, F, text_len, H, D]."""
    B, P = context.shape[:2]
    emb = dit.embed_text(context.flatten(0, 1))                      # [B*P, L, dim]
    b = torch.arange(B)[:, None]
    out = []
    for blk in dit.blocks:
        k, v = blk.cross_attn.kv(emb)                                # [B*P, L, H, D]
        k = k.unflatten(0, (B, P))[b, frame_caption]
        v = v.unflatten(0, (B, P))[b, frame_caption]
        out.append((k, v))
    return out


def init_t5(t5):
    """T5's initialisation (Mesh TensorFlow): unit-variance embeddings, attention and FFN
    weights scaled by fan-in (the attention has no 1/sqrt(d) so the query carries it)."""
    cfg = t5.cfg
    d, dkv = cfg.dim, cfg.dim_attn // cfg.num_heads
    with torch.no_grad():
        t5.token_embedding.weight.normal_(0, 1.0)
        for blk in t5.blocks:
            a = blk.attn
            a.q.weight.normal_(0, (d * dkv) ** -0.5)
            a.k.weight.normal_(0, d ** -0.5)
            a.v.weight.normal_(0, d ** -0.5)
            a.o.weight.normal_(0, cfg.dim_attn ** -0.5)
            blk.ffn.gate[0].weight.normal_(0, d ** -0.5)
            blk.ffn.fc1.weight.normal_(0, d ** -0.5)
            blk.ffn.fc2.weight.normal_(0, cfg.dim_ffn ** -0.5)
            if blk.pos_embedding is not None:
                blk.pos_embedding.embedding.weight.normal_(0, d ** -0.5)
    return t5


def build_models(cfg, seed):
    torch.manual_seed(seed)
    t5 = init_t5(T5Encoder(cfg.text_encoder))
    dit = WanDiT(cfg.dit).init_weights()
    for blk in dit.blocks:
        blk.cross_attn.__class__ = FrameCrossAttention
    dit.rope_dtype = torch.float32       # float64 RoPE only matters for the golden tests
    return t5, dit


def encode_text(t5, ids, mask):
    """ids/mask [N, Lt] -> raw context [N, Lt, dim] with zero rows past each caption, equal to
    T5Encoder.encode() on the real tokens (padded keys are masked out)."""
    h = t5(ids, mask)
    return h * mask[..., None].to(h.dtype)


def forward_train(dit, x, t, context, frame_caption, plan, t_clean=0.0, noisy_caption=None):
    """The reference's teacher-forced forward_train with a caption per chunk.

    x = (noisy, clean), both [B, C, F, H, W]; t [B, F] timesteps of the noisy frames; context
    [B, P, Lc, text_dim] raw encoder output of P captions per clip; frame_caption [B, F] which
    of them each frame uses; noisy_caption [B, F] the same for the noisy frames when it differs
    (caption dropout), else None. Returns the predicted flow of the noisy frames [B, C, F, H, W]."""
    noisy, clean = x
    B, _, Fr, H, W = noisy.shape
    gh, gw = dit.grid(H, W)
    t = _as_frame_t(t, B, Fr, noisy)
    tc = _as_frame_t(t_clean, B, Fr, noisy)
    seq = torch.cat([clean, noisy], dim=2)
    tt = torch.cat([tc, t], dim=1)
    nc = frame_caption if noisy_caption is None else noisy_caption
    fc = torch.cat([frame_caption, nc], dim=1)                       # [B, 2F]
    cross = per_frame_cross(dit, context, fc)
    attend = GroupAttender(dit, gh, gw, plan, teacher=True)
    out = dit._run(seq, tt, cross, attend)
    return out[:, :, -Fr:]


# ---- data -----------------------------------------------------------------------------------

class Batches:
    """Random batches of the latent cache; batch k is a pure function of (seed, k)."""

    def __init__(self, latents, captions, tok, text_len, st, seed, objects=None):
        self.lat = latents                      # [N, F, C, h, w] float16
        self.obj = objects                      # [N, F, 1, h, w] bool, or None: no weighting
        self.st, self.seed, self.text_len = st, seed, text_len
        self.ids = []                           # per clip: (before id lists, after id lists)
        for c in captions:
            before = [tok.encode(s, text_len) for s in c["before"]]
            after = [tok.encode(s, text_len) for s in c["after"]] if c["after"] else before
            self.ids.append((before, after, c["switch_chunk"]))
        self.null = tok.encode("", text_len)    # the unconditional caption (caption dropout)

    def _pad(self, lists):
        L = self.text_len
        ids = torch.zeros(len(lists), L, dtype=torch.long)
        mask = torch.zeros(len(lists), L, dtype=torch.long)
        for i, s in enumerate(lists):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        return ids, mask

    def get(self, rng, batch, clips=None, dropout=0.0, latents=None):
        """(clean [B, C, F, h, w], ids [B*3, L] (before, after, "" per clip), mask,
        frame_caption [B, F], loss weight [B, 1, F, h, w] or None, noisy_caption [B, F]: the
        noisy chunks' captions, "" (index 2) with probability dropout per chunk, the weight
        without the object cells' part [B, 1, F, 1, 1] or None: see loss_of).

        latents: cut every clip to its first this many latent frames (a short stream), else F
        is the cached clip's length. Only a clip's start stands for a stream's start: its
        first latent is encoded the way a stream's first one is decoded (from empty memory,
        or warm-started from a still first frame with vae.warm_start), never with the memory
        of earlier motion. Without the warm start the first latent differs from the second by
        1.9 standard deviations, later neighbours by 0.2."""
        N = self.lat.shape[0]
        idx = rng.integers(0, N, batch) if clips is None else np.asarray(clips)
        F_ = self.lat.shape[1] if latents is None else latents
        Fc = self.lat.shape[1]
        if F_ > Fc or F_ % C.CHUNK_LATENTS:
            raise ValueError("cannot cut clips of %d latent frames to %d" % (Fc, F_))
        rows = torch.as_tensor(idx)
        lists, fcap = [], torch.zeros(len(idx), F_, dtype=torch.long)
        for j, i in enumerate(idx):
            before, after, sw = self.ids[int(i)]
            lists.append(before[int(rng.integers(len(before)))])
            lists.append(after[int(rng.integers(len(after)))])
            lists.append(self.null)
            if sw >= 0:
                fcap[j, sw * C.CHUNK_LATENTS:] = 1
        ids, mask = self._pad(lists)
        clean = self.lat[rows, :F_].float().permute(0, 2, 1, 3, 4).contiguous()   # [B, C, F, h, w]
        weight = plain = None
        if self.obj is not None and (self.st.object_weight > 0 or self.st.first_chunk_weight != 1):
            o = self.obj[rows, :F_].float().permute(0, 2, 1, 3, 4)              # [B, 1, F, h, w]
            weight = 1.0 + self.st.object_weight * o
            weight[:, :, :C.CHUNK_LATENTS] *= self.st.first_chunk_weight
            plain = torch.ones(len(idx), 1, F_, 1, 1)                          # [B, 1, F, 1, 1]
            plain[:, :, :C.CHUNK_LATENTS] = self.st.first_chunk_weight
        ncap = fcap
        if dropout > 0:
            drop = torch.from_numpy(rng.random((len(idx), F_ // C.CHUNK_LATENTS)) < dropout)
            ncap = torch.where(drop.repeat_interleave(C.CHUNK_LATENTS, dim=1), 2, fcap)
        return clean, ids, mask, fcap, weight, ncap, plain


def chunk_noise_levels(sched, rng_t, B, n, p_exact):
    """Per-chunk (t, sigma) [B, n]: the sampler's steps with probability p_exact, else any
    entry of the table."""
    exact = torch.rand(B, n, generator=rng_t) < p_exact
    ke = torch.randint(0, sched.steps.shape[0], (B, n), generator=rng_t)
    kt = torch.randint(0, sched.timesteps.shape[0], (B, n), generator=rng_t)
    t = torch.where(exact, sched.steps[ke], sched.timesteps[kt])
    s = torch.where(exact, sched.step_sigmas[ke], sched.sigmas[kt])
    return t, s


def loss_of(t5, dit, cfg, plan, batch, t_chunk, s_chunk, eps, bf16, object_max_sigma=1.0):
    """batch: Batches.get's tuple (the noisy chunks' captions and the plain weight optional).

    object_max_sigma: chunks noised above this sigma take the plain weight (no extra weight
    on object cells). The weight depends on the target, so at a level where the input leaves
    open whether a cell holds an object, the best prediction is a mean that counts the object
    1 + object_weight times: an object's colour smeared strongly over every place it might be,
    which the sampler's next steps then read as several objects."""
    clean, ids, mask, fcap, weight = batch[:5]
    ncap = batch[5] if len(batch) > 5 else None
    plain = batch[6] if len(batch) > 6 else None
    if weight is not None and plain is not None and object_max_sigma < 1.0:
        high = (s_chunk > object_max_sigma).repeat_interleave(cfg.stream.chunk_frames, dim=1)
        weight = torch.where(high[:, None, :, None, None], plain, weight)
    B = clean.shape[0]
    Cf = cfg.stream.chunk_frames
    t = t_chunk.repeat_interleave(Cf, dim=1)
    s = s_chunk.repeat_interleave(Cf, dim=1)[:, None, :, None, None]
    x_t = (1 - s) * clean + s * eps
    with state.autocast(bf16):
        ctx = encode_text(t5, ids, mask).unflatten(0, (B, ids.shape[0] // B))
        pred = forward_train(dit, (x_t, clean), t, ctx, fcap, plan, cfg.sampler.context_t, ncap)
    err = (pred.float() - (eps - clean)).pow(2)                           # [B, C, F, h, w]
    if weight is None:
        return err.mean()
    return (err * weight).mean() / weight.mean()


# ---- the latent cache -----------------------------------------------------------------------

def cache_dir(root):
    d = os.path.join(root, "dit", "latents")
    os.makedirs(d, exist_ok=True)
    return d


def build_cache(root, tc, cfg, budget, clips=None):
    """Renders and encodes the dataset shard by shard with the trained autoencoder (and the
    model config cfg's warm start); returns True when complete. With `clips`, only the shards
    that hold the first `clips` clips (the dmd stage's prompts)."""
    st = tc.dit
    d = cache_dir(root)
    vae, ae_step = ae_stage.load_trained(root)
    vae.cfg.warm_start = cfg.vae.warm_start
    n_shards = -(-min(clips or st.dataset_clips, st.dataset_clips) // st.shard_clips)
    meta = os.path.join(d, "meta.json")
    want = {"seed": tc.seed, "clips": st.dataset_clips, "shard_clips": st.shard_clips,
            "clip_latents": st.clip_latents, "switch_fraction": st.switch_fraction,
            "phrasings": st.phrasings, "late_start": st.late_start, "max_start": st.max_start,
            "mirror": True, "objects": True, "ae_step": ae_step}
    if vae.cfg.warm_start:              # (caches made before the key existed had it off)
        want["warm_start"] = True
    if os.path.exists(meta):
        # The cache may grow: clip i is the same clip whatever the cache's size.
        state.check_settings(state.read_json(meta), want, "latent cache", resizable=("clips",))
    state.write_json(meta, want)
    for k in range(n_shards):
        if budget.should_stop():
            return False
        t0 = time.time()
        if data.build_shard(vae, d, k, st, tc.seed):
            print("train[dit]: latent cache shard %d/%d (%d clips) in %.0f s"
                  % (k + 1, n_shards, st.shard_clips, time.time() - t0), flush=True)
    vpath = os.path.join(d, "val.pt")
    if not os.path.exists(vpath):
        n_video = st.clip_latents * C.T_DOWN
        lats, caps = [], []
        for i in range(8):
            fr, _, cp = data.make_dit_clip(tc.seed, i, n_video, 0.5, 1, purpose=data.EVAL_DATA)
            lats.append(data.encode_clips(vae, fr[None], bf16=True)[0])
            caps.append(cp)
        state.atomic_torch_save({"latents": torch.stack(lats), "captions": json.dumps(caps)}, vpath)
    return True


# ---- the stage ------------------------------------------------------------------------------

# Settings a run may change between resumptions (sizes, loss weights, the data's warm start).
RESIZABLE = ("steps", "dataset_clips", "batch", "object_weight", "object_max_sigma",
             "caption_dropout", "first_chunk_weight", "start_every", "start_batch",
             "start_latents", "warm_start")


def networks_dict(cfg):
    """(cfg.to_dict() without vae.warm_start, the warm start). The autoencoder's warm start
    changes the latents, not the networks: a run may go on over it once the cache is rebuilt
    (since step 16,642), and a model file seeds a run whichever way it was set."""
    d = cfg.to_dict()
    return d, d["vae"].pop("warm_start", False)


def settings(tc, cfg, stage="dit"):
    """The settings a stage's checkpoint records: its own (tc.<stage>) and the networks'. The
    dmd stage trains the same networks and records them the same way (without the warm start,
    a property of the dit stage's latents)."""
    s = tc.stage_dict(stage)
    model, warm_start = networks_dict(cfg)
    # The guidance scale is a choice of the sampler at inference, not of training: changing it
    # must not stop a run from resuming.
    model["sampler"].pop("guidance", None)
    s["model"] = model
    if stage == "dit":
        s["warm_start"] = warm_start
    return s


def is_done(root):
    return os.path.exists(os.path.join(root, "dit", "done"))


def model_cfg(root):
    tok, meta = tok_stage.load(root)
    return tok, C.model_config(meta["vocab_size"], meta["text_len"])


def load_trained(root, ema=True):
    """(t5, dit, cfg, step) of the latest checkpoint (EMA weights by default) or None."""
    ck = state.load_ckpt(os.path.join(root, "dit", "ckpt.pt"))
    if ck is None:
        return None
    _, cfg = model_cfg(root)
    t5, dit = build_models(cfg, 0)
    key = "ema" if ema else "model"
    t5.load_state_dict(ck[key]["t5"])
    dit.load_state_dict(ck[key]["dit"])
    return t5.eval(), dit.eval(), cfg, ck["step"]


def require_trained(root):
    """load_trained's (t5, dit, cfg, step), or an exit that says there is no checkpoint yet
    (for the checks that read the DiT's checkpoint)."""
    got = load_trained(root)
    if got is None:
        raise SystemExit("train: no DiT checkpoint in %s yet" % root)
    return got


def run(root, tc, budget, log_every=25, val_every=500, threads=2):
    st = tc.dit
    if not ae_stage.is_done(root):
        raise SystemExit("train: the dit stage needs the finished ae stage (tools/train.sh --stage ae)")
    tok, cfg = model_cfg(root)
    sdir = state.stage_dir(root, "dit")
    ck_path = os.path.join(sdir, "ckpt.pt")
    cur = settings(tc, cfg)
    ck = state.load_ckpt(ck_path)
    if ck is not None:
        state.check_settings(ck["settings"], cur, "dit", resizable=RESIZABLE)
    if not build_cache(root, tc, cfg, budget):
        print("train[dit]: stopped while building the latent cache", flush=True)
        return False
    n_shards = -(-st.dataset_clips // st.shard_clips)
    lat, objs, caps = data.load_cache(cache_dir(root), n_shards)
    batches = Batches(lat[:st.dataset_clips], caps[:st.dataset_clips], tok, cfg.dit.text_len, st,
                      tc.seed, objects=objs[:st.dataset_clips])
    v = torch.load(os.path.join(cache_dir(root), "val.pt"))
    val = Batches(v["latents"], json.loads(v["captions"]), tok, cfg.dit.text_len, st, tc.seed)

    t5, dit = build_models(cfg, tc.seed)
    params = list(t5.parameters()) + list(dit.parameters())
    opt = torch.optim.AdamW(params, lr=st.lr, weight_decay=st.weight_decay, betas=(0.9, 0.99))
    ema_t5, ema_dit = build_models(cfg, tc.seed)
    ema_t5.load_state_dict(t5.state_dict())
    ema_dit.load_state_dict(dit.state_dict())
    ema_params = list(ema_t5.parameters()) + list(ema_dit.parameters())
    step = 0
    rewarm = None          # a seeded stage warms its fresh optimizer up again over 200 steps
    if ck is not None:
        t5.load_state_dict(ck["model"]["t5"])
        dit.load_state_dict(ck["model"]["dit"])
        ema_t5.load_state_dict(ck["ema"]["t5"])
        ema_dit.load_state_dict(ck["ema"]["dit"])
        if ck["opt"] is not None:          # None: seeded from a model file (--init-from)
            opt.load_state_dict(ck["opt"])
        step = ck["step"]
        rewarm = None if ck["opt"] is not None else step
        state.set_rng_state(ck["rng"])
        print("train[dit]: resuming at step %d of %d%s" % (step, st.steps, "" if ck["opt"] is not None
              else " (from a model file: fresh optimizer moments)"), flush=True)
    if step >= st.steps:
        open(os.path.join(sdir, "done"), "w").close()
        return True
    sched = FlowMatchSchedule(cfg.sampler)
    plan = ClipPlan(st.clip_latents, cfg.stream.chunk_frames, cfg.stream.anchor_frames,
                    cfg.stream.window_frames, cfg.stream.positions)
    n_chunks = st.clip_latents // cfg.stream.chunk_frames
    start_plan = None
    if st.start_every:
        start_plan = ClipPlan(st.start_latents, cfg.stream.chunk_frames, cfg.stream.anchor_frames,
                              cfg.stream.window_frames, cfg.stream.positions)
    t5.train()
    dit.train()
    logger = state.Logger(sdir, "dit", st.steps, ["loss", "grad_norm", "lr", "val_loss", "threads"])
    acc, n_acc, vloss = {}, 0, float("nan")

    def save():
        state.atomic_torch_save({
            "model": {"t5": t5.state_dict(), "dit": dit.state_dict()},
            "ema": {"t5": ema_t5.state_dict(), "dit": ema_dit.state_dict()},
            "opt": opt.state_dict(), "step": step, "settings": cur, "rng": state.rng_state()}, ck_path)
        budget.saved()

    tuner = state.ThreadTuner(threads)
    while step < st.steps:
        t_step = time.time()
        if state.stopped(budget, save, "dit", step):
            return False
        lr = state.cosine_lr(step, st.steps, st.lr, st.warmup, st.lr_min_frac, rewarm)
        for g in opt.param_groups:
            g["lr"] = lr
        seed = state.step_seed(tc.seed, STAGE_ID, step)
        rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(seed)
        if st.start_every and step % st.start_every == st.start_every - 1:
            # A step of stream starts: more first chunks (the only ones drawn from the prompt
            # alone) at the cost of a long step's tokens.
            B, n, pl = st.start_batch, len(start_plan.chunks), start_plan
            batch = batches.get(rng, B, dropout=st.caption_dropout, latents=st.start_latents)
        else:
            B, n, pl = st.batch, n_chunks, plan
            batch = batches.get(rng, B, dropout=st.caption_dropout)
        t_c, s_c = chunk_noise_levels(sched, gen, B, n, st.exact_step_prob)
        eps = torch.randn(batch[0].shape, generator=gen)
        loss = loss_of(t5, dit, cfg, pl, batch, t_c, s_c, eps, st.bf16, st.object_max_sigma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(params, st.grad_clip)
        opt.step()
        state.ema_update(ema_params, params, min(st.ema, (1 + step) / (10 + step)))
        step += 1
        tuner.step_done(time.time() - t_step)
        for k, x in (("loss", loss.item()), ("grad_norm", float(gn))):
            acc[k] = acc.get(k, 0.0) + x
        n_acc += 1
        if step % val_every == 0 or step == st.steps:
            vloss = validate(ema_t5, ema_dit, cfg, plan, sched, val, tc.seed, n_chunks, st.bf16)
        if step % log_every == 0 or step == st.steps:
            m = {k: x / n_acc for k, x in acc.items()}
            m["lr"], m["val_loss"], m["threads"] = lr, vloss, tuner.n
            logger.log(step, m)
            acc, n_acc = {}, 0
        if budget.ckpt_due() or step == st.steps:
            save()
    open(os.path.join(sdir, "done"), "w").close()
    return True


@torch.no_grad()
def validate(t5, dit, cfg, plan, sched, val, seed, n_chunks, bf16):
    """Mean loss of held-out clips at each of the sampler's steps (fixed noise)."""
    t5.eval()
    dit.eval()
    rng = np.random.default_rng([seed, 99])
    gen = torch.Generator().manual_seed(seed + 99)
    batch = val.get(rng, 0, clips=range(val.lat.shape[0]))
    B = batch[0].shape[0]
    eps = torch.randn(batch[0].shape, generator=gen)
    total = 0.0
    for k in range(sched.steps.shape[0]):
        t = sched.steps[k].expand(B, n_chunks)
        s = sched.step_sigmas[k].expand(B, n_chunks)
        total += loss_of(t5, dit, cfg, plan, batch, t, s, eps, bf16).item()
    return total / sched.steps.shape[0]
