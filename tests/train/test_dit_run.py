"""train_dit_run: the DiT stage's loop on a tiny latent cache. A run stopped mid-way and resumed
ends with the same weights, EMA and optimizer moments as an uninterrupted one, bit for bit,
with stream-start steps (clips cut to their first chunk) between whole-clip steps; the cache
is built once and reused; the validation figure is logged; --motion-check and --heldout-check
read the result."""
import dataclasses
import os
import shutil

import torch

from common import StopAfter, check, finish, tmpdir

from train import config as C
from train import dit, state
from train import tokenizer as tok_stage
from train.ae import build_model


def tiny(tc):
    tc.tokenizer.sentences = 200
    d = tc.dit
    d.steps, d.batch, d.warmup = 4, 1, 1
    d.clip_latents, d.dataset_clips, d.shard_clips = 4, 2, 2
    d.start_every, d.start_batch, d.start_latents = 2, 2, 2
    return tc


def same(a, b):
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


def prepare(root, tc, vae_state):
    """The tokenizer stage for real, the autoencoder as a finished stage of fixed weights."""
    tok_stage.run(root, tc, state.Budget())
    state.atomic_torch_save({"model": vae_state, "step": 7}, os.path.join(state.stage_dir(root, "ae"), "ckpt.pt"))
    open(os.path.join(root, "ae", "done"), "w").close()


def main():
    C.DIT_LAYERS = 2                            # the loop is the subject, not the depth
    tc = tiny(C.TrainConfig())
    torch.manual_seed(3)
    vae_state = build_model(1).state_dict()
    with tmpdir() as a, tmpdir() as b:
        prepare(a, tc, vae_state)
        # The tokenizer is deterministic: the second folder gets the same bytes.
        prepare(b, tc, vae_state)
        check(dit.run(a, tc, state.Budget(None), val_every=2, log_every=1, threads=1), "uninterrupted run finishes")
        # Two shards' budget checks come first (one shard here), then the steps.
        check(not dit.run(b, tc, StopAfter(1 + 3), val_every=2, log_every=1, threads=1), "interrupted run reports not done")
        ck = state.load_ckpt(os.path.join(b, "dit", "ckpt.pt"))
        check(ck is not None and ck["step"] == 3, "checkpoint written at the stop (step %s)"
              % (ck and ck["step"]))
        shard = os.path.join(b, "dit", "latents")
        def stamps():                           # the shards and the held-out clips
            return {f: os.path.getmtime(os.path.join(shard, f)) for f in os.listdir(shard)
                    if f.endswith(".pt")}
        before = stamps()
        check(dit.run(b, tc, state.Budget(None), val_every=2, log_every=1, threads=1), "resumed run finishes")
        check(len(before) >= 2 and before == stamps(), "the latent cache is reused, not rebuilt")
        ca = state.load_ckpt(os.path.join(a, "dit", "ckpt.pt"))
        cb = state.load_ckpt(os.path.join(b, "dit", "ckpt.pt"))
        check(ca["step"] == cb["step"] == 4, "both at the last step")
        check(all(same(ca[k][n], cb[k][n]) for k in ("model", "ema") for n in ("t5", "dit")),
              "weights and EMA are bit-identical")
        sa, sb = ca["opt"]["state"], cb["opt"]["state"]
        check(all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) and
                  torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa),
              "optimizer moments are bit-identical")
        rows = open(os.path.join(a, "dit", "log.tsv")).read().splitlines()
        head = rows[0].split("\t")
        vals = [r.split("\t")[head.index("val_loss")] for r in rows[1:]]
        check(len(rows) == 5 and all(v not in ("", "nan") for v in vals[1:]),
              "log.tsv: one row per step, val_loss from step 2 on (%s)" % vals)
        # --motion-check on the finished run: one figure per pair of neighbouring latent
        # frames; the first chunk has no context, so teacher-forced and free-running draw it
        # alike (same noise), and a later one differs once its context is the model's own.
        from train import motion
        m = motion.run(a, tc, clips=2)
        F_ = tc.dit.clip_latents
        check(m["step"] == 4 and all(len(m[k]) == F_ - 1 for k in ("true", "teacher", "free")),
              "motion check: one change per neighbouring pair (%s)" % m)
        check(abs(m["teacher"][0] - m["free"][0]) < 1e-5 and m["teacher"][2] != m["free"][2],
              "motion check: first chunk alike, the next one not (%s, %s)" % (m["teacher"], m["free"]))
        # --heldout-check: the unseen clips are stream starts the cache does not hold; a clip's
        # figure depends on the clip, not on the set or batch it is scored in (same noise per
        # clip), so the seen/unseen ratio compares like with like.
        from train import heldout
        h = heldout.run(a, tc, clips=2)
        check(h["clips"] >= 1 and set(h["seen"]) == set(h["unseen"]) == set(h["seen_last"])
              and len(h["seen"]) == 3,
              "held-out check: figures at the sampler's first three levels (%s)" % h)
        check(all(x == x and x > 0 for s in h["seen"]
                  for x in h["seen"][s] + h["seen_last"][s] + h["unseen"][s]),
              "held-out check: finite, positive losses (%s)" % h)
        # The first / last seen sets: stream starts only, read from the first or the last
        # shards in order, missing shards skipped (a synthetic cache of three shards).
        import json
        syn = os.path.join(b, "syn")
        os.makedirs(syn)
        for k, starts in enumerate([[0, 5], [0, 0], [7, 0]]):
            torch.save({"latents": torch.full((2, 1, 1, 1, 1), float(k), dtype=torch.float16),
                        "objects": torch.zeros(2, 1, 1, 1, 1, dtype=torch.bool),
                        "captions": json.dumps([{"start": x, "k": k} for x in starts])},
                       os.path.join(syn, "shard_%04d.pt" % k))
        st3 = dataclasses.replace(tc.dit, shard_clips=2, dataset_clips=6)
        first = heldout.cached_starts(syn, st3, range(4), 2)
        last = heldout.cached_starts(syn, st3, range(3, -1, -1), 2)
        check([c["k"] for c in first[2]] == [0, 1] and first[0].flatten().tolist() == [0, 1]
              and [c["k"] for c in last[2]] == [2, 1] and last[0].flatten().tolist() == [2, 1]
              and all(c["start"] == 0 for c in first[2] + last[2]),
              "held-out check: first and last seen sets (%s, %s)" % (first[2], last[2]))
        short = heldout.cached_starts(syn, dataclasses.replace(st3, dataset_clips=5),
                                      range(3, -1, -1), 2)
        check([c["k"] for c in short[2]] == [1, 1],
              "held-out check: clips past dataset_clips are not seen ones (%s)" % short[2])
        check(heldout.cached_starts(os.path.join(b, "none"), st3, range(2), 2) is None,
              "held-out check: no cache, no set")
        got = heldout.stream_starts(tc.seed, tc.dit, tc.dit.dataset_clips, 2, 16)
        check(got and all(i >= tc.dit.dataset_clips and cp["start"] == 0 for i, _, cp in got),
              "held-out check: unseen clips are stream starts past the cache (%s)"
              % [(i, cp["start"]) for i, _, cp in got])
        t5, net, mcfg, _ = dit.load_trained(a)
        u_lat, u_obj, u_caps = heldout.render_unseen(a, tc, mcfg, 2)
        tok = tok_stage.load(a)[0]
        both = heldout.first_chunk_loss(t5, net, mcfg, tok, tc.dit, tc.seed, u_lat, u_obj, u_caps, batch=2)
        one = heldout.first_chunk_loss(t5, net, mcfg, tok, tc.dit, tc.seed, u_lat, u_obj, u_caps, batch=1)
        check(all(abs(both[s][j] - one[s][j]) <= 1e-3 * one[s][j] for s in one for j in (0, 1)),
              "held-out check: a clip's figure does not depend on its batch (%s, %s)" % (both, one))
        swapped = heldout.first_chunk_loss(t5, net, mcfg, tok, tc.dit, tc.seed, u_lat[[1, 0]],
                                           u_obj[[1, 0]], u_caps[::-1], batch=1)
        check(any(abs(swapped[s][0] - one[s][0]) > 1e-6 * one[s][0] for s in one)
              or torch.equal(u_lat[0], u_lat[1]),
              "held-out check: the noise follows the clip's place in the set, so reordering "
              "changes the pairing (%s, %s)" % (swapped, one))
        # Without stream-start steps the same seed gives other weights: the setting is used.
        shutil.rmtree(os.path.join(a, "dit"))
        tc.dit.start_every = 0
        dit.run(a, tc, state.Budget(None), val_every=2, log_every=1, threads=1)
        c0 = state.load_ckpt(os.path.join(a, "dit", "ckpt.pt"))
        check(not same(c0["model"]["dit"], ca["model"]["dit"]), "stream-start steps change the run")
    finish()


if __name__ == "__main__":
    main()
