"""train_dit: the DiT stage's objective, with a caption per chunk.

FrameCrossAttention must reproduce the reference's teacher-forced forward_train when every
frame has the same caption, keep chunks before a prompt switch independent of the caption after
it (the stream is causal), and keep the parameter names of the reference.
"""
import numpy as np
import torch

from common import check, finish

from flipbook_ref.config import (DiTConfig, ModelConfig, SamplerConfig, StreamConfig,
                                 TextEncoderConfig, VAEConfig)
from flipbook_ref.dit import WanDiT
from flipbook_ref.kvcache import ClipPlan
from flipbook_ref.sampler import FlowMatchSchedule
from flipbook_ref.t5 import T5Encoder
from train import config as C
from train import dit as stage


def tiny_cfg():
    return ModelConfig(
        dit=DiTConfig(in_dim=4, out_dim=4, dim=32, ffn_dim=64, freq_dim=32, text_dim=16,
                      text_len=8, num_heads=2, num_layers=2),
        text_encoder=TextEncoderConfig(vocab=40, dim=16, dim_attn=16, dim_ffn=32, num_heads=2,
                                       num_layers=1, max_tokens=8),
        vae=VAEConfig(latent_channels=4), sampler=SamplerConfig(shift=1.0),
        stream=StreamConfig(chunk_frames=2, anchor_frames=2, window_frames=2, latent_height=4,
                            latent_width=4)).validate()


def main():
    torch.manual_seed(0)
    cfg = tiny_cfg()
    t5, dit = stage.build_models(cfg, 1)
    with torch.no_grad():                      # zero-initialised head would hide everything
        for p in dit.head.parameters():
            p.normal_(0, 0.1)
    dit.rope_dtype = torch.float64
    check(all(type(b.cross_attn) is stage.FrameCrossAttention for b in dit.blocks),
          "cross-attention modules are FrameCrossAttention")
    check(list(dit.state_dict()) == list(WanDiT(cfg.dit).state_dict()),
          "parameter names are the reference's")
    B, Fr = 2, 6
    plan = ClipPlan(Fr, 2, 2, 2, "window")
    clean = torch.randn(B, 4, Fr, 4, 4)
    noisy = torch.randn(B, 4, Fr, 4, 4)
    t = torch.tensor([1000.0, 1000, 500, 500, 250, 250]).expand(B, Fr)
    ca, cb = torch.randn(B, 5, 16), torch.randn(B, 5, 16)
    with torch.no_grad():
        ref_a = dit.forward_train(noisy, t, ca, plan, clean=clean, t_clean=0.0)
        ref_b = dit.forward_train(noisy, t, cb, plan, clean=clean, t_clean=0.0)
        same = torch.zeros(B, Fr, dtype=torch.long)
        got_a = stage.forward_train(dit, (noisy, clean), t, torch.stack([ca, cb], 1), same, plan)
        got_b = stage.forward_train(dit, (noisy, clean), t, torch.stack([ca, cb], 1), same + 1, plan)
        sw = same.clone()
        sw[:, 4:] = 1                          # switch to caption b at chunk 2
        got_sw = stage.forward_train(dit, (noisy, clean), t, torch.stack([ca, cb], 1), sw, plan)
    d = (got_a - ref_a).abs().max().item()
    check(d < 1e-5, "one caption for all chunks == reference forward_train (max diff %.2g)" % d)
    d = (got_b - ref_b).abs().max().item()
    check(d < 1e-5, "the second caption for all chunks == reference with it (max diff %.2g)" % d)
    d = (got_sw[:, :, :4] - ref_a[:, :, :4]).abs().max().item()
    check(d < 1e-5, "chunks before the switch do not see the later caption (max diff %.2g)" % d)
    d = (got_sw[:, :, 4:] - ref_a[:, :, 4:]).abs().max().item()
    check(d > 1e-3, "chunks after the switch follow the new caption (diff %.2g)" % d)

    # Caption dropout: the noisy chunks may see another caption than their clean copies (the
    # cache the engine commits under the real prompt); with the same captions nothing changes.
    with torch.no_grad():
        ctx = torch.stack([ca, cb], 1)
        got_same = stage.forward_train(dit, (noisy, clean), t, ctx, same, plan, noisy_caption=same)
        drop = same.clone()
        drop[:, 2:4] = 1                       # chunk 1's noisy frames see caption b
        got_drop = stage.forward_train(dit, (noisy, clean), t, ctx, same, plan, noisy_caption=drop)
    check(torch.equal(got_same, got_a), "noisy_caption equal to frame_caption changes nothing")
    d = (got_drop[:, :, 2:4] - got_a[:, :, 2:4]).abs().max().item()
    check(d > 1e-3, "a dropped chunk follows its own caption (diff %.2g)" % d)
    d = (got_drop[:, :, 2:4] - ref_b[:, :, 2:4]).abs().max().item()
    check(d > 1e-4, "... while the clean frames it attends to keep theirs (diff %.2g)" % d)
    d = max((got_drop[:, :, k] - got_a[:, :, k]).abs().max().item() for k in (0, 1, 4, 5))
    check(d < 1e-6, "the other chunks are untouched (max diff %.2g)" % d)

    class Tok:
        def encode(self, text, n):
            return [5 + len(text) % 7, 1][:n]
    caps = [{"before": ["a red ball"], "after": None, "switch_chunk": -1}] * 4
    bt = stage.Batches(torch.zeros(4, 12, 4, 2, 2, dtype=torch.float16), caps, Tok(), 8,
                       C.DiTStage(), 0)
    rng = np.random.default_rng(0)
    _, ids, _, fcap, _, ncap, _ = bt.get(rng, 400, dropout=0.1)
    share = (ncap[:, ::C.CHUNK_LATENTS] == 2).float().mean().item()
    check(ids.shape[0] == 3 * 400 and ids[2].tolist()[:2] == [5, 1],
          "three captions per clip, the third the empty one")
    check(0.08 < share < 0.12 and torch.equal(ncap[:, 0::2], ncap[:, 1::2]),
          "about 10%% of the chunks dropped, whole chunks (%.3f)" % share)
    check(torch.equal(fcap, torch.zeros_like(fcap)), "the clean frames keep their caption")
    check(torch.equal(bt.get(np.random.default_rng(0), 400)[5], fcap),
          "no dropout: the noisy captions are the clean ones")
    objs = torch.zeros(4, 12, 1, 2, 2, dtype=torch.bool)
    objs[:, 5, 0, 1, 1] = True
    bw = stage.Batches(torch.zeros(4, 12, 4, 2, 2, dtype=torch.float16), caps, Tok(), 8,
                       C.DiTStage(object_weight=4.0, first_chunk_weight=3.0), 0, objects=objs)
    got = bw.get(np.random.default_rng(0), 2)
    w, plain = got[4], got[6]                                           # [B, 1, F, h, w], [B, 1, F, 1, 1]
    want = torch.ones(2, 1, 12, 2, 2)
    want[:, :, :C.CHUNK_LATENTS] = 3.0
    want[:, 0, 5, 1, 1] = 5.0
    check(torch.equal(w, want), "loss weights: object cells 1 + 4, the first chunk 3x")
    want_plain = torch.ones(2, 1, 12, 2, 2)
    want_plain[:, :, :C.CHUNK_LATENTS] = 3.0
    check(torch.equal(plain.expand_as(w), want_plain), "plain weights: the first chunk 3x, no objects")

    # Stream starts: clips cut to their first 4 latent frames. Latent frame f of clip i holds
    # the value 100 i + f, so the cut shows where it came from.
    lat = (100 * torch.arange(4)[:, None] + torch.arange(12)[None, :]).to(torch.float16)
    lat = lat[:, :, None, None, None].expand(4, 12, 4, 2, 2).contiguous()
    sw_caps = [{"before": ["a red ball"], "after": ["a blue ball!"], "switch_chunk": 1}] * 4
    bs = stage.Batches(lat, sw_caps, Tok(), 8, C.DiTStage(object_weight=4.0,
                       first_chunk_weight=3.0), 0, objects=objs)
    cut, _, _, fcap, w, _, _ = bs.get(np.random.default_rng(1), 64, latents=4)
    f = cut[:, 0, :, 0, 0]                                               # [B, 4]
    check(cut.shape == (64, 4, 4, 2, 2) and torch.equal(f % 100, torch.arange(4.0).expand(64, 4))
          and len(set((f[:, 0] // 100).tolist())) == 4,
          "cut clips: the first 4 latent frames of random clips")
    check(torch.equal(fcap, torch.tensor([0, 0, 1, 1]).expand(64, 4)),
          "cut clips: the caption switches where the clip did")
    objs4 = objs.clone()
    objs4[:, 1, 0, 0, 0] = True
    bo = stage.Batches(lat, sw_caps, Tok(), 8, C.DiTStage(object_weight=4.0,
                       first_chunk_weight=3.0), 0, objects=objs4)
    w = bo.get(np.random.default_rng(1), 3, latents=4)[4]
    want_w = torch.ones(3, 1, 4, 2, 2)
    want_w[:, :, :C.CHUNK_LATENTS] = 3.0
    want_w[:, 0, 1, 0, 0] = 15.0
    check(torch.equal(w, want_w), "cut clips: the first chunk weighs 3x, objects 1 + 4 on top")
    try:
        bs.get(np.random.default_rng(1), 2, latents=5)
        check(False, "a cut that is not whole chunks is refused")
    except ValueError:
        check(True, "a cut that is not whole chunks is refused")

    # Noise levels: the sampler's own steps about half of the time, table-consistent sigmas.
    sched = FlowMatchSchedule(cfg.sampler)
    g = torch.Generator().manual_seed(3)
    tt, ss = stage.chunk_noise_levels(sched, g, 4000, 1, 0.5)
    exact = sum(int((tt == s).sum()) for s in sched.steps) / tt.numel()
    check(0.45 < exact < 0.6, "%.2f of chunk levels are sampler steps" % exact)
    ok = all(abs(float(sched.sigma(a)) - float(b)) < 1e-7 for a, b in zip(tt[:200, 0], ss[:200, 0]))
    check(ok, "every sigma is the schedule's sigma of its timestep")

    # The loss trains both networks: gradients reach the text encoder's embeddings.
    ids = torch.randint(3, 40, (B * 2, 8))
    mask = torch.ones_like(ids)
    mask[:, 6:] = 0
    t_c, s_c = stage.chunk_noise_levels(sched, g, B, Fr // 2, 0.5)
    eps = torch.randn(clean.shape, generator=g)
    loss = stage.loss_of(t5, dit, cfg, plan, (clean, ids, mask, sw, None), t_c, s_c, eps, bf16=False)
    with torch.no_grad():
        ones = torch.ones(B, 1, *clean.shape[2:])
        l1 = stage.loss_of(t5, dit, cfg, plan, (clean, ids, mask, sw, ones), t_c, s_c, eps, bf16=False)
        heavy = ones.clone()
        heavy[:, :, :, :2] = 50.0
        lw = stage.loss_of(t5, dit, cfg, plan, (clean, ids, mask, sw, heavy), t_c, s_c, eps, bf16=False)
    check(abs(l1.item() - loss.item()) < 1e-5 * max(1.0, loss.item()),
          "a weight of ones is the plain loss (%.6f vs %.6f)" % (l1.item(), loss.item()))
    check(abs(lw.item() - loss.item()) > 1e-6, "a non-uniform object weight changes the loss")
    # Above object_max_sigma a chunk takes the plain weight: with every chunk above it the
    # object weight does nothing; with every chunk below it, all of it.
    with torch.no_grad():
        pl = torch.ones(B, 1, Fr, 1, 1)
        hi = torch.full_like(s_c, 0.9)
        lo = torch.full_like(s_c, 0.3)
        l_hi = [stage.loss_of(t5, dit, cfg, plan, (clean, ids, mask, sw, w, None, pl), t_c, hi, eps,
                              bf16=False, object_max_sigma=0.5) for w in (ones, heavy)]
        l_lo = [stage.loss_of(t5, dit, cfg, plan, (clean, ids, mask, sw, w, None, pl), t_c, lo, eps,
                              bf16=False, object_max_sigma=0.5) for w in (ones, heavy)]
    check(abs(l_hi[0].item() - l_hi[1].item()) < 1e-6,
          "no object weight above object_max_sigma (%.6f vs %.6f)" % (l_hi[0].item(), l_hi[1].item()))
    check(abs(l_lo[0].item() - l_lo[1].item()) > 1e-6, "the object weight below object_max_sigma")
    loss.backward()
    check(torch.isfinite(loss).item(), "loss is finite (%.4f)" % loss.item())
    gt = t5.token_embedding.weight.grad
    check(gt is not None and gt.abs().sum().item() > 0, "gradients reach the text encoder")
    gp = dit.blocks[0].self_attn.q.weight.grad
    check(gp is not None and gp.abs().sum().item() > 0, "gradients reach the DiT blocks")

    # Object cells of the latent grid: a red square at a known place marks exactly the cells
    # of the 4-frame x 8x8-pixel blocks it touches; crops centred on objects contain them.
    from train import ae as ae_stage, data as dstage
    fr = np.full((1, 8, 32, 32, 3), (30, 100, 110), np.uint8)
    fr[0, 4:8, 9:14, 17:20] = (220, 45, 45)
    m = dstage.latent_object_mask(fr)
    want = torch.zeros(1, 2, 1, 4, 4, dtype=torch.bool)
    want[0, 1, 0, 0:2, 1:3] = True        # rows 7..15, columns 15..21 with the 2-pixel rim
    check(m.shape == want.shape and torch.equal(m, want),
          "latent object mask marks the blocks the object (and its rim) touches")
    x = torch.from_numpy(np.tile(fr, (1, 3, 1, 1, 1))).permute(0, 1, 4, 2, 3).float() / 255.0
    x = x.expand(6, -1, -1, -1, -1).contiguous()                  # [6, 24, 3, 32, 32]
    xc = ae_stage.crop_on_objects(x, 16, torch.Generator().manual_seed(1), object_share=1.0)
    has = ae_stage.object_mask(xc).flatten(1).amax(dim=1)
    check(tuple(xc.shape) == (6, 24, 3, 16, 16) and bool((has > 0).all()),
          "object-centred crops hold the object")

    # Text encoder: padded batch == the reference's per-prompt encode with zero rows.
    t5.eval()
    with torch.no_grad():
        ref = t5.encode([ids[0, :6].tolist(), ids[1, :6].tolist()])
        got = stage.encode_text(t5, ids[:2], mask[:2])
    d = (got[:, :6] - ref).abs().max().item()
    check(d < 1e-5 and got[:, 6:].abs().max().item() == 0,
          "batched caption encoding == T5Encoder.encode (max diff %.2g), zero padding rows" % d)

    # The default model's config validates and its DiT is the planned size.
    full = C.model_config(155, 56)
    n = sum(p.numel() for p in WanDiT(full.dit).parameters())
    # (1.05M per block: the 50 MB file limit at float16 leaves room for ~20 blocks)
    check(abs(n - (0.642e6 + full.dit.num_layers * 1.055e6)) < 0.01e6 and n < 20e6,
          "default DiT has %.2fM parameters (%d blocks)" % (n / 1e6, full.dit.num_layers))
    n_t5 = sum(p.numel() for p in T5Encoder(full.text_encoder).parameters())
    check(n_t5 < 1e6, "default text encoder has %.2fM parameters" % (n_t5 / 1e6))
    finish()


if __name__ == "__main__":
    main()
