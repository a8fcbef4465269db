"""train_grow: growing the DiT deeper mid-run (tools/train/grow.py). The grown network computes
what the old one did (added blocks are the identity) and still learns in every block; the
checkpoint is rewritten with fresh optimizer moments and the new settings; a network is never
cut, and a checkpoint already at the configured depth is left alone."""
import os

import numpy as np
import torch

from common import check, finish, tmpdir

from flipbook_ref.kvcache import ClipPlan
from train import config as C
from train import dit, grow, state
from train import tokenizer as tok_stage


def flow(net, cfg, x, ctx):
    plan = ClipPlan(x.shape[2], cfg.stream.chunk_frames, cfg.stream.anchor_frames,
                    cfg.stream.window_frames, cfg.stream.positions)
    t = torch.tensor([[900.0, 900.0, 400.0, 400.0]])
    fcap = torch.zeros(1, x.shape[2], dtype=torch.long)
    return dit.forward_train(net, (x, x * 0.5), t, ctx, fcap, plan)


def main():
    maps = {(6, 10): grow.block_map(6, 10), (2, 3): grow.block_map(2, 3), (4, 4): grow.block_map(4, 4)}
    for (old, new), m in maps.items():
        src = [i for i, _ in m]
        firsts = [i for i, added in m if not added]
        check(len(m) == new and firsts == list(range(old)) and src == sorted(src),
              "block map %d -> %d: every old block once, in order, copies after it (%s)" % (old, new, m))

    tc = C.TrainConfig()
    tc.tokenizer.sentences = 200
    layers = C.DIT_LAYERS
    with tmpdir() as root:
        tok_stage.run(root, tc, state.Budget())
        try:
            C.DIT_LAYERS = 2
            _, cfg2 = dit.model_cfg(root)
            torch.manual_seed(0)
            t5, net2 = dit.build_models(cfg2, 1)
            with torch.no_grad():              # trained-looking: no block is the identity yet
                for p in net2.parameters():
                    p.add_(0.02 * torch.randn(p.shape))
            sd2 = {k: v.clone() for k, v in net2.state_dict().items()}
            path = os.path.join(state.stage_dir(root, "dit"), "ckpt.pt")
            state.atomic_torch_save({"model": {"t5": t5.state_dict(), "dit": sd2},
                                     "ema": {"t5": t5.state_dict(), "dit": sd2},
                                     "opt": {"state": {}}, "step": 40,
                                     "settings": dit.settings(tc, cfg2), "rng": state.rng_state()}, path)
            C.DIT_LAYERS = 3
            check(grow.grow(root, tc) == (2, 3), "grown from 2 to 3 blocks")
            ck = state.load_ckpt(path)
            _, cfg3 = dit.model_cfg(root)
            check(ck["opt"] is None and ck["step"] == 40 and ck["settings"] == dit.settings(tc, cfg3),
                  "checkpoint: same step, fresh moments, the new settings")
            _, net3 = dit.build_models(cfg3, 1)
            net3.load_state_dict(ck["ema"]["dit"])
            g = torch.Generator().manual_seed(2)
            x = torch.randn(1, 8, 4, 4, 4, generator=g)
            ctx = dit.encode_text(t5, torch.tensor([[5, 6, 7, 1]]), torch.ones(1, 4, dtype=torch.long))[:, None]
            net2.eval()
            net3.eval()
            with torch.no_grad():
                d = (flow(net2, cfg2, x, ctx) - flow(net3, cfg3, x, ctx)).abs().max().item()
            check(d < 1e-5, "the grown network computes what the old one did (max diff %.2g)" % d)
            net3.train()
            flow(net3, cfg3, x, ctx).pow(2).mean().backward()
            gn = [float(net3.blocks[j].ffn[2].weight.grad.abs().max()) for j in range(3)]
            check(all(v > 0 for v in gn), "every block, the added one too, gets gradients (%s)"
                  % np.round(gn, 6).tolist())
            check(grow.grow(root, tc) == (3, 3), "a checkpoint at the configured depth is left alone")
            C.DIT_LAYERS = 2
            try:
                grow.grow(root, tc)
                check(False, "a network is never cut")
            except SystemExit as e:
                check("never cut" in str(e), "a network is never cut (%s)" % e)
        finally:
            C.DIT_LAYERS = layers
    finish()


if __name__ == "__main__":
    main()
