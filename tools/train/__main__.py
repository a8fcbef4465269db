"""Command line of the training pipeline: `tools/train.sh --help`."""
import argparse
import os
import sys
import time

import torch

from flipbook_ref import memory

from . import config as C
from . import state

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "models", "default", "model.safetensors")


def parse(argv):
    ap = argparse.ArgumentParser(
        prog="tools/train.sh",
        description="Train flipbook's default model: autoencoder, tokenizer, text encoder + DiT. "
                    "Every stage resumes from its checkpoint in the state folder.")
    ap.add_argument("--stage", default="all", choices=("all",) + C.STAGES + C.OPTIONAL_STAGES,
                    help="run one stage, or all that are not done yet in order (default; "
                         "dmd runs only when named)")
    ap.add_argument("--minutes", type=float, default=None,
                    help="stop cleanly after this many minutes, with a checkpoint")
    ap.add_argument("--dir", default=None,
                    help="state folder (default $FLIPBOOK_TRAIN_DIR or "
                         "${XDG_CACHE_HOME:-~/.cache}/flipbook/train)")
    ap.add_argument("--ckpt-minutes", type=float, default=5.0, help="checkpoint period (default 5)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--init-from", default=None, metavar="FILE",
                    help="seed stages that have no state yet from an exported model file "
                         "(e.g. models/default/model.safetensors) and continue from its steps")
    ap.add_argument("--grow-dit", action="store_true",
                    help="first grow the DiT checkpoint to the depth tools/train/config.py asks for "
                         "(added blocks start as the identity), then go on as usual")
    ap.add_argument("--ae-check", default=None, metavar="PNG",
                    help="encode + decode held-out clips with the autoencoder checkpoint, print "
                         "PSNR per latent frame (whole / object pixels), write a PNG and exit")
    ap.add_argument("--motion-check", action="store_true",
                    help="print how much the DiT checkpoint moves things, teacher-forced and "
                         "free-running, on held-out latent clips (docs/training.md), and exit")
    ap.add_argument("--heldout-check", action="store_true",
                    help="print the DiT checkpoint's first-chunk loss on clips of its latent cache "
                         "against clips it never saw (memorised or learnt, docs/training.md), "
                         "and exit")
    ap.add_argument("--no-train", action="store_true", help="only export/evaluate what is there")
    ap.add_argument("--export", action="store_true",
                    help="write the model file from the latest checkpoints of every stage")
    ap.add_argument("--dmd", action="store_true",
                    help="export the DiT of the dmd stage (its generator) instead of the dit stage's")
    ap.add_argument("--out", default=DEFAULT_OUT, help="model file written by --export "
                    "(default models/default/model.safetensors)")
    ap.add_argument("--dtype", default="f16", choices=("f16", "f32"), help="exported weight dtype")
    ap.add_argument("--eval", action="store_true",
                    help="after export (or on --out), sample clips and score them with the parser")
    ap.add_argument("--eval-clips", type=int, default=4)
    ap.add_argument("--eval-chunks", type=int, default=6)
    ap.add_argument("--status", action="store_true", help="print where every stage stands and exit")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny settings for tests (a few steps per stage; never for real weights)")
    return ap.parse_args(argv)


def smoke_config(tc):
    tc.ae.steps, tc.ae.batch, tc.ae.frames, tc.ae.warmup = 3, 1, 8, 1
    tc.tokenizer.sentences = 400
    tc.dit.steps, tc.dit.batch, tc.dit.warmup = 3, 2, 1
    tc.dit.clip_latents, tc.dit.dataset_clips, tc.dit.shard_clips = 6, 4, 2
    tc.dmd.steps, tc.dmd.batch, tc.dmd.warmup = 4, 2, 1
    return tc


def _short(v):
    try:
        x = float(v)
    except ValueError:
        return v
    if x != x:
        return "-"
    return "%d" % x if x == int(x) and abs(x) < 1e9 else "%.4g" % x


def status(root, tc):
    for name in C.STAGES + C.OPTIONAL_STAGES:
        sdir = os.path.join(root, name)
        if name in C.OPTIONAL_STAGES and not os.path.isdir(sdir):
            continue
        done = os.path.exists(os.path.join(sdir, "done"))
        line = "%-9s %s" % (name, "done" if done else "not done")
        ck = os.path.join(sdir, "ckpt.pt")
        if os.path.exists(ck):
            c = state.load_ckpt(ck)
            line += ", checkpoint at step %d of %d (%s)" % (
                c["step"], getattr(tc, name).steps,
                time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(ck))))
        print(line)
        log = os.path.join(sdir, "log.tsv")
        if os.path.exists(log):
            with open(log) as f:
                rows = [r.split("\t") for r in f.read().splitlines()]
            if len(rows) > 1:
                head, body = rows[0], rows[1:]
                keep = [i for i, h in enumerate(head) if h not in ("time", "threads")]
                pick = sorted({int(round(k * (len(body) - 1) / 9)) for k in range(10)})
                print("   " + " ".join("%10s" % head[i] for i in keep))
                for j in pick:
                    print("   " + " ".join("%10s" % _short(body[j][i] if i < len(body[j]) else "")
                                          for i in keep))


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    memory.keep_freed_memory()       # page faults were half the CPU time (flipbook_ref/memory.py)
    torch.set_num_threads(args.threads)
    try:
        os.nice(max(0, 19 - os.nice(0)))   # stay out of the way of everything else
    except OSError:
        pass
    root = os.path.abspath(args.dir) if args.dir else state.default_dir()
    os.makedirs(root, exist_ok=True)
    tc = C.TrainConfig()
    if args.smoke:
        tc = smoke_config(tc)
    if args.status:
        print("state folder:", root)
        status(root, tc)
        return 0
    if args.ae_check:
        from . import ae
        vae, step = ae.load_trained(root)
        if vae is None:
            raise SystemExit("train: no autoencoder checkpoint in %s yet" % root)
        print("train[ae]: checkpoint at step %d (EMA weights)" % step, flush=True)
        ae.check_png(vae, tc.seed, args.ae_check)
        return 0
    if args.motion_check:
        from . import motion
        motion.run(root, tc)
        return 0
    if args.heldout_check:
        from . import heldout
        heldout.run(root, tc)
        return 0
    budget = state.Budget(args.minutes, args.ckpt_minutes)
    budget.install_signals()
    print("train: state folder %s, %d threads, seed %d" % (root, args.threads, tc.seed), flush=True)
    if args.init_from:
        if not os.path.exists(args.init_from):
            raise SystemExit("train: %s: no such model file" % args.init_from)
        from . import export
        export.init_from(root, tc, args.init_from)
    if args.grow_dit:
        from . import grow
        grow.grow(root, tc)
    if not args.no_train:
        stages = C.STAGES if args.stage == "all" else (args.stage,)
        for name in stages:
            if name == "ae":
                from . import ae as mod
            elif name == "tokenizer":
                from . import tokenizer as mod
            elif name == "dmd":
                from . import dmd as mod
            else:
                from . import dit as mod
            if args.stage == "all" and mod.is_done(root):
                continue
            t0 = time.time()
            print("train: stage %s" % name, flush=True)
            done = mod.run(root, tc, budget, threads=args.threads) if name != "tokenizer" \
                else mod.run(root, tc, budget)
            print("train: stage %s %s after %.1f min" % (name, "finished" if done else "paused",
                                                         (time.time() - t0) / 60), flush=True)
            if not done:
                break
    if args.export:
        from . import export
        export.export(root, tc, args.out, args.dtype, dmd=args.dmd)
    if args.eval:
        from . import evaluate
        evaluate.run(root, args.out, tc, clips=args.eval_clips, chunks=args.eval_chunks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
