"""Stage "ae": the TAEHV autoencoder (encoder + decoder) on world clips rendered on the fly.

Loss per step on a batch of clips x [B, T, 3, H, W]:
    z   = encode(x)                                   [B, T/4, 8, H/8, W/8]
    y   = decode(z + s * n), s ~ U(0, latent_noise)   raw decoder output, all T frames
    L   = mse_w(y, x) + edge * |grad y - grad x|_1 + latent * (mean_c^2 + (std_c - 1)^2)
where mse_w weighs the pixels of objects (and a 2-pixel margin: their rims) object_weight + 1
times: objects are 1-7% of a frame, and without the weight a small moving ball came back from
the autoencoder as a faint smudge while the backgrounds were sharp.
The loss is taken on the raw output (before the [0, 1] clamp) so saturated pixels still learn;
the latent term keeps every channel near zero mean and unit spread, the scale the DiT's unit
noise expects (the engine feeds DiT latents to the decoder unnormalised); the latent noise
makes the decoder tolerant of the DiT's small errors.
"""
import math
import os
import time

import torch
import torch.nn as nn

from flipbook_ref.taehv import TAEHV, MemBlock

from . import config as C
from . import data, state
from .data import object_mask

STAGE_ID = 1


def settings(tc):
    s = tc.stage_dict("ae")
    s["vae"] = C.vae_config().__dict__
    return s


def init_weights(vae):
    """He-normal convolutions, and the last convolution of every MemBlock at zero.

    PyTorch's default convolution init shrinks the signal layer after layer, and the 20-odd
    convolutions of each half then learn slowly (the colours of a scene were still wrong
    after 700 steps). With the residual branches starting at zero every MemBlock begins as the
    identity, the network starts shallow and grows into its depth: the same trick as a
    zero-initialised last normalisation in residual networks."""
    for m in vae.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for m in vae.modules():
        if isinstance(m, MemBlock):
            nn.init.zeros_(m.conv[4].weight)
            nn.init.zeros_(m.conv[4].bias)
    return vae


def build_model(seed):
    torch.manual_seed(seed)
    return init_weights(TAEHV(C.vae_config()))


def _edge(y, x):
    dxy = (y[..., :, 1:] - y[..., :, :-1]) - (x[..., :, 1:] - x[..., :, :-1])
    dyy = (y[..., 1:, :] - y[..., :-1, :]) - (x[..., 1:, :] - x[..., :-1, :])
    return dxy.abs().mean() + dyy.abs().mean()


def crop_on_objects(x, crop, gen, object_share=0.8):
    """Windows of crop x crop pixels (the same window in every frame of a clip), centred on a
    random object pixel of the clip's middle frame for object_share of the clips (jittered by a
    quarter window), anywhere for the others and for clips without objects.

    x [B, T, 3, H, W] -> [B, T, 3, crop, crop]. The autoencoder is fully convolutional, so it
    trains on windows as well as on whole frames; centred on objects, a window spends ~10x more
    of every step's pixels on the objects than a whole frame does, where its errors were."""
    B, T, _, H, W = x.shape
    mid = object_mask(x[:, T // 2:T // 2 + 1])[:, 0, 0]                 # [B, H, W]
    out = []
    for b in range(B):
        pts = mid[b].nonzero()
        u = torch.rand(4, generator=gen)
        if len(pts) and u[0] < object_share:
            cy, cx = pts[int(u[1] * len(pts))].tolist()
            cy += int((u[2] - 0.5) * crop / 2)
            cx += int((u[3] - 0.5) * crop / 2)
        else:
            cy, cx = int(u[1] * H), int(u[2] * W)
        y0 = min(max(cy - crop // 2, 0), H - crop)
        x0 = min(max(cx - crop // 2, 0), W - crop)
        out.append(x[b, :, :, y0:y0 + crop, x0:x0 + crop])
    return torch.stack(out)


def decode_raw(vae, z):
    """Decoder output before the clamp: [B, 4 T_lat, 3, H, W] (frames_to_trim is 0)."""
    return vae._apply_parallel(vae.decoder, z)


def losses(vae, x, st, gen):
    with state.autocast(st.bf16):
        z = vae.encode(x)
        s = torch.rand(x.shape[0], 1, 1, 1, 1, generator=gen) * st.latent_noise
        zn = z + s * torch.randn(z.shape, generator=gen)
        y = decode_raw(vae, zn)
    y, z = y.float(), z.float()
    err = (y - x).pow(2)                                                  # [B, T, 3, H, W]
    w = 1.0 + st.object_weight * object_mask(x)                           # [B, T, 1, H, W]
    mse = err.mean()
    mse_w = (err * w).mean() / w.mean()
    edge = _edge(y, x)
    mu = z.mean(dim=(0, 1, 3, 4))
    sd = z.std(dim=(0, 1, 3, 4))
    lat = mu.pow(2).mean() + (sd - 1).pow(2).mean()
    loss = mse_w + st.edge_weight * edge + st.latent_weight * lat
    return loss, {"mse": mse.item(), "edge": edge.item(), "lat_mean": mu.abs().mean().item(),
                  "lat_std": sd.mean().item()}


@torch.no_grad()
def heldout_pair(vae, seed):
    """Fixed held-out clips of 6 latent frames (mostly the steady state of a stream) and their
    encode -> decode, float32, no latent noise: (x, y), both [4, 24, 3, H, W]."""
    x = data.ae_batch(seed + 1, 0, 4, 24, 0.3)
    return x, vae.decode(vae.encode(x))


def psnr_whole_and_objects(x, y):
    """PSNR (dB) of y against x on all pixels and on object pixels (object_mask)."""
    err = (y - x).pow(2)
    m = object_mask(x)
    obj = ((err * m).sum() / (3 * m.sum()).clamp(min=1)).item()
    return -10 * math.log10(max(err.mean().item(), 1e-12)), -10 * math.log10(max(obj, 1e-12))


def validate(vae, seed):
    """PSNR (dB) of the held-out clips (the EMA weights: those are the ones exported)."""
    whole, obj = psnr_whole_and_objects(*heldout_pair(vae, seed))
    print("train[ae]: validation PSNR %.2f dB, on object pixels %.2f dB" % (whole, obj), flush=True)
    return whole


@torch.no_grad()
def check_png(vae, seed, out):
    """Encodes and decodes the held-out validation clips, prints PSNR per latent frame on
    whole frames and on object pixels, and writes out: per clip a row of the originals
    (frames 12, 14, 16, 18) over a row of the decoded frames. The quickest way to see what
    the autoencoder does to objects (`tools/train.sh --ae-check FILE.png`)."""
    from world.png import write_png
    x, y = heldout_pair(vae, seed)                                     # [4, 24, 3, H, W]
    for t in range(0, x.shape[1], C.T_DOWN):
        whole, obj = psnr_whole_and_objects(x[:, t:t + C.T_DOWN], y[:, t:t + C.T_DOWN])
        print("latent frame %d: PSNR %.2f dB, on object pixels %.2f dB"
              % (t // C.T_DOWN, whole, obj), flush=True)
    rows = []
    for b in range(x.shape[0]):
        rows.append(torch.cat([x[b, t] for t in range(12, 20, 2)], dim=2))
        rows.append(torch.cat([y[b, t] for t in range(12, 20, 2)], dim=2))
    img = torch.cat(rows, dim=1).permute(1, 2, 0).mul(255).round().to(torch.uint8).numpy()
    write_png(out, img)
    print("train[ae]: wrote %s (originals over decoded, 4 clips)" % out, flush=True)


def load_trained(root, ema=True):
    """The autoencoder of the latest checkpoint (EMA weights by default; eval mode) and its
    step, or (None, 0)."""
    ck = state.load_ckpt(os.path.join(root, "ae", "ckpt.pt"))
    if ck is None:
        return None, 0
    vae = TAEHV(C.vae_config())
    vae.load_state_dict(ck["ema"] if ema and "ema" in ck else ck["model"])
    return vae.eval(), ck["step"]


def is_done(root):
    return os.path.exists(os.path.join(root, "ae", "done"))


def run(root, tc, budget, log_every=25, val_every=500, threads=2):
    """Trains until the last step or until the budget says stop. Returns True when done."""
    st = tc.ae
    sdir = state.stage_dir(root, "ae")
    ck_path = os.path.join(sdir, "ckpt.pt")
    cur = settings(tc)
    ck = state.load_ckpt(ck_path)
    if ck is not None:
        state.check_settings(ck["settings"], cur, "ae", resizable=("steps", "batch", "frames", "object_weight", "crop"))
    vae = build_model(tc.seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=st.lr, weight_decay=st.weight_decay, betas=(0.9, 0.99))
    ema = build_model(tc.seed)
    ema.load_state_dict(vae.state_dict())
    ema.eval()
    step = 0
    rewarm = None          # a seeded stage warms its fresh optimizer up again over 200 steps
    if ck is not None:
        vae.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        if ck["opt"] is not None:          # None: seeded from a model file (--init-from)
            opt.load_state_dict(ck["opt"])
        step = ck["step"]
        rewarm = None if ck["opt"] is not None else step
        state.set_rng_state(ck["rng"])
        print("train[ae]: resuming at step %d of %d%s" % (step, st.steps, "" if ck["opt"] is not None
              else " (from a model file: fresh optimizer moments)"), flush=True)
    if step >= st.steps:
        open(os.path.join(sdir, "done"), "w").close()
        return True
    vae.train()
    logger = state.Logger(sdir, "ae", st.steps, ["loss", "mse", "psnr", "edge", "lat_std", "lr", "val_psnr", "threads"])
    acc, n_acc, val = {}, 0, float("nan")

    def save():
        state.atomic_torch_save({"model": vae.state_dict(), "ema": ema.state_dict(),
                                 "opt": opt.state_dict(), "step": step,
                                 "settings": cur, "rng": state.rng_state()}, ck_path)
        budget.saved()

    tuner = state.ThreadTuner(threads)
    while step < st.steps:
        t_step = time.time()
        if state.stopped(budget, save, "ae", step):
            return False
        lr = state.cosine_lr(step, st.steps, st.lr, st.warmup, st.lr_min_frac, rewarm)
        for g in opt.param_groups:
            g["lr"] = lr
        gen = torch.Generator().manual_seed(state.step_seed(tc.seed, STAGE_ID, step))
        x = data.ae_batch(tc.seed, step, st.batch, st.frames, st.switch_fraction)
        if st.crop:
            x = crop_on_objects(x, st.crop, gen)
        loss, parts = losses(vae, x, st, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        state.ema_update(ema.parameters(), vae.parameters(), min(st.ema, (1 + step) / (10 + step)))
        step += 1
        tuner.step_done(time.time() - t_step)
        parts["loss"] = loss.item()
        for k, v in parts.items():
            acc[k] = acc.get(k, 0.0) + v
        n_acc += 1
        if step % val_every == 0 or step == st.steps:
            val = validate(ema, tc.seed)
        if step % log_every == 0 or step == st.steps:
            m = {k: v / n_acc for k, v in acc.items()}
            m["psnr"] = 10 * math.log10(1.0 / max(m["mse"], 1e-12))
            m["lr"], m["val_psnr"], m["threads"] = lr, val, tuner.n
            logger.log(step, m)
            acc, n_acc = {}, 0
        if budget.ckpt_due() or step == st.steps:
            save()
    open(os.path.join(sdir, "done"), "w").close()
    return True
