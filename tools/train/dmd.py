"""Stage "dmd" (optional, run by name): a stream's first chunk distilled for the 4-step sampler
with distribution matching (DMD, the loss Self-Forcing trains its causal generators with).

Why: the DiT trained with flow matching predicts, at sigma 1, the mean of every scene the
prompt allows: an object's colour smeared along the floor. The sampler re-noises that mean and
asks again at sigma 0.75, where the smear reads as evidence of objects everywhere, and the
chunk comes out with two or three blobs for one object (docs/training.md, "What comes next").
A distilled generator is trained on its own samples instead, so its 4 steps land on one scene.

Three copies of the DiT, all started from the dit stage's EMA weights (the teacher):
  real  the teacher, frozen: its flow with classifier-free guidance is the data's score;
  fake  trained with flow matching on the generator's samples: their score;
  gen   the generator, run through the engine's own sampler loop (sampler.steps, fresh noise
        at every step), with gradients through one step chosen at random per update.
The generator's sample x is noised to a random level and moved along
(x0_fake - x0_real) / mean|x - x0_real|: towards what the teacher calls data, away from what
the generator already makes. The text encoder is the teacher's, frozen.

With `gan_weight` > 0 (DMD2's second term), a small classifier head on the fake score's last
hidden states tells noised real first chunks (the latent cache's, under their own captions)
from noised generator samples under the same captions, trained with the fake score
(`disc_weight`); after `disc_warmup` steps of the classifier alone, the generator is also
pushed to be classified real. Why: the teacher says,
one noise level and one place at a time, whether an object is plausible there, and little
about how many the caption allows; matched to it alone, the generator draws crisp objects of
the right colour, two or three times over (docs/training.md, stage 4). A classifier sees the
whole chunk at once.

Only the first chunk is distilled: the one drawn from the prompt alone (later chunks continue a
context that already fixes the layout). It runs as the engine runs it: two latent frames at
positions 0 and 1, attending to themselves (first_chunk_flow; tests/train checks it against
the reference sampler's first chunk).

Thread-safety: none (a training process).
"""
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from flipbook_ref.dit import FullAttender, _as_frame_t
from flipbook_ref.sampler import FlowMatchSchedule

from . import config as C
from . import data, state
from . import dit as dit_stage

STAGE_ID = 4


def first_chunk_flow(dit, x, t, cross, cap=None):
    """The flow of a stream's first chunk x [B, C, F, h, w] at timestep t (scalar or [B]),
    cross from dit.cross_kv(dit.embed_text(context)): full attention over its own frames at
    positions 0..F-1, which is what the KV-cached first call attends to. cap: a dict that
    receives the network's internals (the reference's capture; "head_in" [B, L, dim])."""
    B, _, Fr, H, W = x.shape
    gh, gw = dit.grid(H, W)
    if torch.is_tensor(t) and t.dim() == 1:
        t = t[:, None].expand(B, Fr)
    attend = FullAttender(dit, gh, gw, torch.arange(Fr))
    return dit._run(x, _as_frame_t(t, B, Fr, x), cross, attend, cap)


class Discriminator(torch.nn.Module):
    """DMD2's classifier head: a logit per token of the fake score's last hidden states
    [B, L, dim] (after every block, before the output head), averaged over the tokens. The
    tokens have attended to the whole chunk and the caption, so the average can weigh what
    the chunk holds against what the caption asks."""

    def __init__(self, dim):
        super().__init__()
        self.norm = torch.nn.LayerNorm(dim)
        self.fc1 = torch.nn.Linear(dim, dim)
        self.fc2 = torch.nn.Linear(dim, 1)

    def forward(self, h):                                  # h [B, ..., dim]
        h = h.flatten(1, -2)                               # [B, L, dim]
        y = self.fc2(F.silu(self.fc1(self.norm(h))))       # [B, L, 1]
        return y.float().mean(dim=(1, 2))                  # [B]


def disc_logits(fake, disc, xt, t, cross):
    """Real-vs-generated logits [B] of noised first chunks xt [B, C, F, h, w] at timesteps t
    [B], read from the fake score's hidden states under cross."""
    cap = {}
    first_chunk_flow(fake, xt, t, cross, cap)
    return disc(cap["head_in"])                            # [B]


def disc_loss(fake, disc, real, x, cross, sched, gen, st, acc=None):
    """The classifier's loss: the real first chunks real and the generator's samples x (both
    [B, C, F, h, w], detached) noised to one random level per pair. acc: a dict that receives
    the share of the 2B chunks classified right ("acc"); the batch is new to the classifier, so
    this is its held-out accuracy (0.5: chance)."""
    t, s = _levels(sched, gen, x.shape[0], st, st.disc_t_min)
    xr = (1 - s) * real + s * torch.randn(real.shape, generator=gen)    # [B, C, F, h, w]
    xf = (1 - s) * x + s * torch.randn(x.shape, generator=gen)          # [B, C, F, h, w]
    l_real = disc_logits(fake, disc, xr, t, cross)                     # [B]
    l_fake = disc_logits(fake, disc, xf, t, cross)                     # [B]
    if acc is not None:
        acc["acc"] = ((l_real > 0).float().mean() + (l_fake < 0).float().mean()).item() / 2
    return F.softplus(-l_real).mean() + F.softplus(l_fake).mean()


def gan_gen_loss(fake, disc, x, cross, sched, gen, st):
    """The generator's side (non-saturating): its samples x [B, C, F, h, w], with gradients,
    noised to a random level and classified real."""
    t, s = _levels(sched, gen, x.shape[0], st, st.disc_t_min)
    xt = (1 - s) * x + s * torch.randn(x.shape, generator=gen)          # [B, C, F, h, w]
    return F.softplus(-disc_logits(fake, disc, xt, t, cross)).mean()


def cross_of(dit, context):
    return dit.cross_kv(dit.embed_text(context))


def rollout(gen, cross, noises, sched, exit_step):
    """The sampler's loop on the first chunk: noises [K] tensors [B, C, F, h, w] (the start
    and the fresh noise of each later step). Returns x0 of step exit_step, with gradients
    through that step only (earlier steps run without them, as in Self-Forcing)."""
    x = noises[0]
    for k in range(exit_step + 1):
        with torch.set_grad_enabled(k == exit_step and torch.is_grad_enabled()):
            flow = first_chunk_flow(gen, x, sched.steps[k], cross)
            x0 = sched.to_x0(x, flow, sched.step_sigmas[k])
        if k < exit_step:
            x = sched.add_noise(x0, noises[k + 1], sched.step_sigmas[k + 1])
    return x0


def _levels(sched, gen, B, st, t_min=None):
    """B random noise levels (timesteps [B], sigmas [B, 1, 1, 1, 1]) from table indices
    t_min..st.t_max (index 0 is sigma 1)."""
    idx = torch.randint(st.t_min if t_min is None else t_min, st.t_max + 1, (B,), generator=gen)
    return sched.timesteps[idx], sched.sigmas[idx][:, None, None, None, None]


def dmd_direction(real, fake, x, cross_r, cross_u, cross_f, sched, gen, st):
    """(x0_fake - x0_real) / mean|x - x0_real| per sample at one random noise level: the
    gradient of the distribution-matching loss with respect to the sample x."""
    with torch.no_grad():
        t, s = _levels(sched, gen, x.shape[0], st)
        eps = torch.randn(x.shape, generator=gen)
        xt = (1 - s) * x + s * eps
        fc = first_chunk_flow(real, xt, t, cross_r).float()
        if st.guidance != 1.0:
            fu = first_chunk_flow(real, xt, t, cross_u).float()
            fc = fu + st.guidance * (fc - fu)
        x0_real = xt - s * fc
        x0_fake = xt - s * first_chunk_flow(fake, xt, t, cross_f).float()
        norm = (x - x0_real).abs().mean(dim=(1, 2, 3, 4), keepdim=True).clamp_min(1e-4)
        return (x0_fake - x0_real) / norm


def fake_loss(fake, x, cross_f, sched, gen, st):
    """Flow matching of the fake score on the generator's samples x (detached)."""
    t, s = _levels(sched, gen, x.shape[0], st)
    eps = torch.randn(x.shape, generator=gen)
    xt = (1 - s) * x + s * eps
    pred = first_chunk_flow(fake, xt, t, cross_f)
    return (pred.float() - (eps - x)).pow(2).mean()


def load_generator(root):
    """(t5, generator EMA dit, cfg, dmd step, teacher step) or None."""
    ck = state.load_ckpt(os.path.join(root, "dmd", "ckpt.pt"))
    if ck is None:
        return None
    _, cfg = dit_stage.model_cfg(root)
    t5, dit = dit_stage.build_models(cfg, 0)
    t5.load_state_dict(ck["t5"])
    dit.load_state_dict(ck["ema"])
    return t5.eval(), dit.eval(), cfg, ck["step"], ck["teacher_step"]


def is_done(root):
    return os.path.exists(os.path.join(root, "dmd", "done"))


def run(root, tc, budget, log_every=10, threads=2):
    st = tc.dmd
    tok, cfg = dit_stage.model_cfg(root)
    sdir = state.stage_dir(root, "dmd")
    ck_path = os.path.join(sdir, "ckpt.pt")
    cur = dit_stage.settings(tc, cfg, "dmd")
    ck = state.load_ckpt(ck_path)
    if ck is not None:
        state.check_settings(ck["settings"], cur, "dmd")
    t5, real = dit_stage.build_models(cfg, tc.seed)
    _, fake = dit_stage.build_models(cfg, tc.seed)
    _, gen = dit_stage.build_models(cfg, tc.seed)
    _, ema = dit_stage.build_models(cfg, tc.seed)
    if ck is None:
        teacher = dit_stage.load_trained(root, ema=True)
        if teacher is None:
            raise SystemExit("train: the dmd stage needs a dit checkpoint (tools/train.sh --stage dit)")
        t5_t, dit_t, _, teacher_step = teacher
        t5.load_state_dict(t5_t.state_dict())
        for m in (real, fake, gen, ema):
            m.load_state_dict(dit_t.state_dict())
        del t5_t, dit_t
    else:
        t5.load_state_dict(ck["t5"])
        real.load_state_dict(ck["real"])
        fake.load_state_dict(ck["fake"])
        gen.load_state_dict(ck["gen"])
        ema.load_state_dict(ck["ema"])
        teacher_step = ck["teacher_step"]
    for m in (t5, real, ema):
        m.eval().requires_grad_(False)
    gen.train()
    fake.train()
    opt_g = torch.optim.AdamW(gen.parameters(), lr=st.gen_lr, weight_decay=0.0, betas=(0.0, 0.999))
    opt_f = torch.optim.AdamW(fake.parameters(), lr=st.fake_lr, weight_decay=0.0, betas=(0.0, 0.999))
    disc = opt_d = None
    if st.gan_weight > 0:
        with torch.random.fork_rng():                  # its own seed, the run's stream untouched
            torch.manual_seed(tc.seed + STAGE_ID)
            disc = Discriminator(cfg.dit.dim)
        disc.train()
        # With momentum, unlike the generator's and fake score's optimizers: without it the
        # head's loss stayed at chance in two runs, and offline it learnt with it.
        opt_d = torch.optim.AdamW(disc.parameters(), lr=st.disc_lr, weight_decay=0.0,
                                  betas=(0.9, 0.999))
    step = 0
    if ck is not None:
        opt_g.load_state_dict(ck["opt_g"])
        opt_f.load_state_dict(ck["opt_f"])
        if disc is not None:
            disc.load_state_dict(ck["disc"])
            opt_d.load_state_dict(ck["opt_d"])
        step = ck["step"]
        state.set_rng_state(ck["rng"])
        print("train[dmd]: resuming at step %d of %d (teacher: dit step %d)"
              % (step, st.steps, teacher_step), flush=True)
    else:
        print("train[dmd]: starting from dit step %d (teacher, fake score and generator)"
              % teacher_step, flush=True)
    if step >= st.steps:
        open(os.path.join(sdir, "done"), "w").close()
        return True
    # Prompts: the captions of the latent cache's clips (their first caption: a stream start);
    # with the classifier also the clips' first chunks, the real samples of those captions.
    n_clips = min(st.clips, tc.dit.dataset_clips)
    if not dit_stage.build_cache(root, tc, cfg, budget, clips=n_clips):
        print("train[dmd]: stopped while building the latent cache", flush=True)
        return False
    lat, objs, caps = data.load_cache(dit_stage.cache_dir(root), -(-n_clips // tc.dit.shard_clips))
    batches = dit_stage.Batches(lat[:n_clips, :C.CHUNK_LATENTS], caps[:n_clips], tok,
                                cfg.dit.text_len, tc.dit, tc.seed)
    del lat, objs
    sched = FlowMatchSchedule(cfg.sampler)
    K = len(sched.steps)
    shape = (st.batch, cfg.dit.in_dim, C.CHUNK_LATENTS, cfg.stream.latent_height,
             cfg.stream.latent_width)
    cols = ["dmd_grad", "fake_loss"] + (["gan_gen", "disc_loss", "disc_acc"]
                                        if disc is not None else [])
    logger = state.Logger(sdir, "dmd", st.steps, cols + ["lr", "threads"])
    acc, n_acc = {}, 0

    def save():
        ck = {"t5": t5.state_dict(), "real": real.state_dict(), "fake": fake.state_dict(),
              "gen": gen.state_dict(), "ema": ema.state_dict(), "opt_g": opt_g.state_dict(),
              "opt_f": opt_f.state_dict(), "step": step, "teacher_step": teacher_step,
              "settings": cur, "rng": state.rng_state()}
        if disc is not None:
            ck["disc"], ck["opt_d"] = disc.state_dict(), opt_d.state_dict()
        state.atomic_torch_save(ck, ck_path)
        budget.saved()

    tuner = state.ThreadTuner(threads)
    while step < st.steps:
        t_step = time.time()
        if state.stopped(budget, save, "dmd", step):
            return False
        lr_scale = min(1.0, (step + 1) / max(st.warmup, 1))
        for g in opt_g.param_groups:
            g["lr"] = st.gen_lr * lr_scale
        seed = state.step_seed(tc.seed, STAGE_ID, step)
        rng = np.random.default_rng(seed)
        gen_t = torch.Generator().manual_seed(seed)
        real_x0, ids, mask = batches.get(rng, st.batch, latents=C.CHUNK_LATENTS)[:3]   # [B, C, F, h, w]
        with torch.no_grad():
            ctx = dit_stage.encode_text(t5, ids, mask).unflatten(0, (st.batch, 3))
        ctx_c, ctx_u = ctx[:, 0], ctx[:, 2]
        noises = [torch.randn(shape, generator=gen_t) for _ in range(K)]
        exit_step = int(torch.randint(0, K, (1,), generator=gen_t))
        gen_update = step % st.fake_updates == 0
        with state.autocast(st.bf16):
            with torch.no_grad():
                cross_r, cross_u = cross_of(real, ctx_c), cross_of(real, ctx_u)
            with torch.set_grad_enabled(gen_update):
                x = rollout(gen, cross_of(gen, ctx_c), noises, sched, exit_step).float()
            if gen_update:
                with torch.no_grad():
                    cross_f = cross_of(fake, ctx_c)
                d = dmd_direction(real, fake, x.detach(), cross_r, cross_u, cross_f, sched, gen_t, st)
                loss_g = 0.5 * (x - (x - d).detach()).pow(2).mean()
                if disc is not None and step >= st.disc_warmup:
                    lg = gan_gen_loss(fake, disc, x, cross_f, sched, gen_t, st)
                    loss_g = loss_g + st.gan_weight * lg
                    acc["gan_gen"] = acc.get("gan_gen", 0.0) + lg.item()
                    acc["n_gan"] = acc.get("n_gan", 0) + 1
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                torch.nn.utils.clip_grad_norm_(gen.parameters(), st.grad_clip)
                opt_g.step()
                state.ema_update(ema.parameters(), gen.parameters(), st.ema)
                acc["dmd_grad"] = acc.get("dmd_grad", 0.0) + float(d.abs().mean())
                acc["n_g"] = acc.get("n_g", 0) + 1
            cross_ff = cross_of(fake, ctx_c)
            lf = fake_loss(fake, x.detach(), cross_ff, sched, gen_t, st)
            if disc is not None:
                d_acc = {}
                ld = disc_loss(fake, disc, real_x0, x.detach(), cross_ff, sched, gen_t, st, d_acc)
        opt_f.zero_grad(set_to_none=True)     # also drops what the generator's losses left there
        if disc is not None:
            opt_d.zero_grad(set_to_none=True)
            (lf + st.disc_weight * ld).backward()
            torch.nn.utils.clip_grad_norm_(disc.parameters(), st.grad_clip)
            opt_d.step()
            acc["disc_loss"] = acc.get("disc_loss", 0.0) + ld.item()
            acc["disc_acc"] = acc.get("disc_acc", 0.0) + d_acc["acc"]
        else:
            lf.backward()
        torch.nn.utils.clip_grad_norm_(fake.parameters(), st.grad_clip)
        opt_f.step()
        acc["fake_loss"] = acc.get("fake_loss", 0.0) + lf.item()
        n_acc += 1
        step += 1
        tuner.step_done(time.time() - t_step)
        if step % log_every == 0 or step == st.steps:
            m = {"fake_loss": acc.get("fake_loss", 0.0) / n_acc,
                 "dmd_grad": acc["dmd_grad"] / acc["n_g"] if acc.get("n_g") else float("nan"),
                 "gan_gen": acc["gan_gen"] / acc["n_gan"] if "gan_gen" in acc else float("nan"),
                 "disc_loss": acc.get("disc_loss", 0.0) / n_acc,
                 "disc_acc": acc.get("disc_acc", 0.0) / n_acc,
                 "lr": st.gen_lr * lr_scale, "threads": tuner.n}
            logger.log(step, m)
            acc, n_acc = {}, 0
        if budget.ckpt_due() or step == st.steps:
            save()
    open(os.path.join(sdir, "done"), "w").close()
    return True
