"""train_dmd: the first-chunk distillation stage (tools/train/dmd.py).

Its rollout is the engine's first chunk: with gradients through the last step it returns what
the reference sampler's Stream.next_chunk returns for the same noise. The matching direction
is zero when the fake score equals the guided real one and points from the fake's prediction
to the real one's otherwise, and the loss hands exactly that direction to the sample. The
stage runs on a tiny state folder, stops and resumes to the same weights as an uninterrupted
run, keeps the teacher frozen, moves the generator, and exports it with --dmd. With DMD2's
classifier (gan_weight > 0) its head and the fake score learn from it, the generator's side
reaches the sample, and the run still resumes bit for bit."""
import os
import shutil

import torch

from common import StopAfter, check, finish, tmpdir
from test_dit import tiny_cfg
from test_dit_run import prepare, same, tiny

from flipbook_ref.export import load_model
from flipbook_ref.sampler import FlowMatchSchedule, Stream
from train import config as C
from train import dit as dit_stage
from train import dmd, export, state
from train.ae import build_model


def unit():
    torch.manual_seed(0)
    cfg = tiny_cfg()
    _, gen = dit_stage.build_models(cfg, 1)
    with torch.no_grad():                      # the zero-initialised head would hide everything
        for p in gen.head.parameters():
            p.normal_(0, 0.1)
    sched = FlowMatchSchedule(cfg.sampler)
    K = len(sched.steps)
    ctx = torch.randn(2, cfg.dit.text_len, cfg.dit.text_dim)
    noises = [torch.randn(2, 4, 2, 4, 4) for _ in range(K)]
    stream = Stream(gen, cfg, ctx, seeds=[0, 1])
    with torch.no_grad():
        want = stream.next_chunk(noises=noises)
    got = dmd.rollout(gen, dmd.cross_of(gen, ctx), noises, sched, K - 1)
    check((got - want).abs().max().item() < 1e-5, "rollout == the sampler's first chunk (%.2e)"
          % (got - want).abs().max().item())
    check(got.requires_grad, "the rollout's last step carries gradients")
    early = dmd.rollout(gen, dmd.cross_of(gen, ctx), noises, sched, 1)
    check(not torch.allclose(early, got), "an earlier exit step returns that step's x0")

    st = C.DMDStage(guidance=1.0)
    _, fake = dit_stage.build_models(cfg, 1)
    fake.load_state_dict(gen.state_dict())
    x = got.detach()
    cr = dmd.cross_of(gen, ctx)
    d = dmd.dmd_direction(gen, fake, x, cr, cr, dmd.cross_of(fake, ctx), sched,
                          torch.Generator().manual_seed(5), st)
    check(d.abs().max().item() < 1e-5, "fake == real: no direction (%.2e)" % d.abs().max().item())
    with torch.no_grad():
        for p in fake.head.parameters():
            p.add_(0.05 * torch.randn_like(p))
    d = dmd.dmd_direction(gen, fake, x, cr, cr, dmd.cross_of(fake, ctx), sched,
                          torch.Generator().manual_seed(5), st)
    check(d.abs().mean().item() > 1e-3, "fake != real: a direction (%.2e)" % d.abs().mean().item())
    xr = x.clone().requires_grad_(True)
    (0.5 * (xr - (xr - d).detach()).pow(2).mean()).backward()
    check(torch.allclose(xr.grad * xr.numel(), d, atol=1e-6), "the loss hands the direction to x")

    # DMD2's classifier: its logits come from the fake score's last hidden states, its loss
    # trains the head and the fake score, and the generator's side reaches the sample.
    disc = dmd.Discriminator(cfg.dit.dim)
    real = torch.randn_like(x)
    cf = dmd.cross_of(fake, ctx)
    t = torch.tensor([900.0, 300.0])
    logit = dmd.disc_logits(fake, disc, x, t, cf)
    check(logit.shape == (2,), "one logit per sample %s" % (tuple(logit.shape),))
    st_g = C.DMDStage(gan_weight=0.01)
    d_acc = {}
    ld = dmd.disc_loss(fake, disc, real, x, cf, sched, torch.Generator().manual_seed(6), st_g, d_acc)
    check(d_acc["acc"] in (0.0, 0.25, 0.5, 0.75, 1.0), "its accuracy: the share of 4 chunks "
          "classified right (%s)" % d_acc["acc"])
    check(abs(ld.item() - 2 * 0.6931) < 0.5, "an untrained classifier: loss near 2 log 2 (%.3f)"
          % ld.item())
    ld.backward()
    check(all(p.grad is not None for p in disc.parameters()), "the classifier loss trains the head")
    check(any(p.grad is not None and p.grad.abs().sum() > 0 for p in fake.blocks.parameters()),
          "... and the fake score's blocks")
    xg = x.clone().requires_grad_(True)
    with torch.no_grad():                      # as in the run: the generator's side reads it
        cf = dmd.cross_of(fake, ctx)
    dmd.gan_gen_loss(fake, disc, xg, cf, sched, torch.Generator().manual_seed(7), st_g).backward()
    check(xg.grad is not None and xg.grad.abs().sum() > 0, "the generator's side reaches its sample")

    # The classifier's noise levels: disc_t_min..t_max of the table (index 0 is sigma 1), the
    # matching's t_min..t_max.
    st_l = C.DMDStage(t_min=20, t_max=980, disc_t_min=500)
    g = torch.Generator().manual_seed(8)
    _, s_disc = dmd._levels(sched, g, 4000, st_l, st_l.disc_t_min)
    _, s_dmd = dmd._levels(sched, g, 4000, st_l)
    lo, hi = sched.sigmas[980].item(), sched.sigmas[500].item()
    check(s_disc.min().item() >= lo - 1e-6 and s_disc.max().item() <= hi + 1e-6,
          "the classifier's levels lie in sigma [%.3f, %.3f] (%.3f..%.3f)"
          % (lo, hi, s_disc.min().item(), s_disc.max().item()))
    check(s_dmd.max().item() > 0.9 and s_dmd.min().item() < 0.1,
          "the matching's span the table (%.3f..%.3f)" % (s_dmd.min().item(), s_dmd.max().item()))


def stopped_and_whole(a, b, tc):
    """The dmd stage run uninterrupted in a, stopped after 2 steps and resumed in b: their
    checkpoints (each folder's dmd state removed first)."""
    for root in (a, b):
        shutil.rmtree(os.path.join(root, "dmd"), ignore_errors=True)
    check(dmd.run(a, tc, state.Budget(None), log_every=1, threads=1), "uninterrupted run finishes")
    check(not dmd.run(b, tc, StopAfter(2), log_every=1, threads=1), "interrupted run reports not done")
    check(dmd.run(b, tc, state.Budget(None), log_every=1, threads=1), "resumed run finishes")
    return (state.load_ckpt(os.path.join(a, "dmd", "ckpt.pt")),
            state.load_ckpt(os.path.join(b, "dmd", "ckpt.pt")))


def stage():
    C.DIT_LAYERS = 2
    tc = tiny(C.TrainConfig())
    tc.dmd.steps, tc.dmd.batch, tc.dmd.warmup, tc.dmd.gan_weight = 4, 2, 1, 0.0
    torch.manual_seed(3)
    vae_state = build_model(1).state_dict()
    with tmpdir() as a, tmpdir() as b:
        for root in (a, b):
            prepare(root, tc, vae_state)
            dit_stage.run(root, tc, state.Budget(None), threads=1)
        ca, cb = stopped_and_whole(a, b, tc)
        check(ca["step"] == cb["step"] == 4, "both at the last step")
        check(all(same(ca[k], cb[k]) for k in ("gen", "fake", "ema")),
              "stopped + resumed == uninterrupted, bit for bit")
        teacher = state.load_ckpt(os.path.join(a, "dit", "ckpt.pt"))["ema"]["dit"]
        check(same(ca["real"], teacher), "the teacher stays frozen")
        check(not same(ca["gen"], teacher) and not same(ca["fake"], teacher),
              "the generator and the fake score moved")
        plain_gen = ca["gen"]
        out = os.path.join(a, "m.safetensors")
        export.export(a, tc, out, dmd=True)
        m = load_model(out)
        got = m.dit.state_dict()
        check(all(torch.allclose(got[k].float(), ca["ema"][k].float(), atol=1e-2) for k in got),
              "--dmd exports the generator's EMA")

        # With the classifier, from the same dit stage: the run stops and resumes to the same
        # weights (head included), and the classifier changes where the generator goes.
        tg = tc.copy()
        tg.dmd.gan_weight = 0.5
        tg.dmd.disc_warmup = 2                 # the generator takes the term from step 2 on,
                                               # where the interrupted run stops
        ca, cb = stopped_and_whole(a, b, tg)
        check(all(same(ca[k], cb[k]) for k in ("gen", "fake", "ema", "disc")),
              "with the classifier: stopped + resumed == uninterrupted, bit for bit")
        check(not same(ca["gen"], plain_gen), "the classifier moves the generator elsewhere")
        with open(os.path.join(a, "dmd", "log.tsv")) as f:
            head = f.readline().split("\t")
        check(all(c in head for c in ("disc_loss", "gan_gen", "disc_acc")),
              "the log has the classifier's columns")
        with open(os.path.join(a, "dmd", "log.tsv")) as f:
            rows = [dict(zip(head, line.rstrip("\n").split("\t"))) for line in f.readlines()[1:]]
        check(all(0.0 <= float(r["disc_acc"]) <= 1.0 for r in rows), "its accuracy is a share")
        g_rows = [r for r in rows if r["dmd_grad"] != "nan"]     # rows of a generator update
        check(len(g_rows) == 2 and all((int(r["step"]) - 1 < tg.dmd.disc_warmup)
                                       == (r["gan_gen"] == "nan") for r in g_rows),
              "the generator takes the classifier's term only after the warm-up (%s)"
              % [(r["step"], r["gan_gen"]) for r in g_rows])


if __name__ == "__main__":
    unit()
    stage()
    finish()
