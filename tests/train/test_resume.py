"""train_resume: a stage stopped mid-way and resumed ends exactly where an uninterrupted run
ends (weights and optimizer moments bit for bit), because every batch and every noise draw is
a function of (seed, step) and the checkpoint holds the full state."""
import os

import torch

from common import StopAfter, check, finish, tmpdir

from train import ae, data, state
from train import config as C


def small(tc):
    tc.ae.steps, tc.ae.batch, tc.ae.frames, tc.ae.warmup = 4, 1, 4, 2
    return tc


def same_state(a, b):
    return all(torch.equal(a[k], b[k]) for k in a) and list(a) == list(b)


def main():
    x1 = data.ae_batch(5, 7, 2, 4, 0.5)
    x2 = data.ae_batch(5, 7, 2, 4, 0.5)
    check(torch.equal(x1, x2) and x1.shape == (2, 4, 3, C.HEIGHT, C.WIDTH), "batches depend on (seed, step) only")
    check(not torch.equal(x1, data.ae_batch(5, 8, 2, 4, 0.5)), "the next step's batch differs")
    tc = small(C.TrainConfig())
    with tmpdir() as a, tmpdir() as b:
        check(ae.run(a, tc, state.Budget(None), threads=1), "uninterrupted run finishes")
        check(not ae.run(b, tc, StopAfter(2), threads=1), "interrupted run reports not done")
        ck = state.load_ckpt(os.path.join(b, "ae", "ckpt.pt"))
        check(ck is not None and ck["step"] == 2, "checkpoint written at the stop (step %s)"
              % (ck and ck["step"]))
        check(not ae.is_done(b), "no done marker yet")
        check(ae.run(b, tc, state.Budget(None), threads=1), "resumed run finishes")
        ca = state.load_ckpt(os.path.join(a, "ae", "ckpt.pt"))
        cb = state.load_ckpt(os.path.join(b, "ae", "ckpt.pt"))
        check(ca["step"] == cb["step"] == 4, "both at the last step")
        check(same_state(ca["model"], cb["model"]), "weights are bit-identical")
        sa, sb = ca["opt"]["state"], cb["opt"]["state"]
        check(all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) and
                  torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa),
              "optimizer moments are bit-identical")
        rows = open(os.path.join(b, "ae", "log.tsv")).read().splitlines()
        check(rows[0].startswith("step\ttime\tloss") and len(rows) >= 2, "log.tsv has a header and rows")
        check(ae.is_done(a) and ae.is_done(b), "done markers written")
        tc.ae.lr *= 2
        try:
            ae.run(b, tc, state.Budget(None), threads=1)
            check(False, "a checkpoint of other settings is refused")
        except SystemExit as e:
            check("lr" in str(e), "a checkpoint of other settings is refused (%s)" % e)
        # The length may change: the run goes on from its checkpoint to the new last step.
        tc.ae.lr /= 2
        tc.ae.steps += 2
        os.unlink(os.path.join(b, "ae", "done"))
        ae.run(b, tc, state.Budget(None), threads=1)
        cb = state.load_ckpt(os.path.join(b, "ae", "ckpt.pt"))
        check(cb["step"] == 6 and cb["settings"]["steps"] == 6, "an extended run resumes to its new length")
    finish()


if __name__ == "__main__":
    main()
