"""Where training keeps its state, how it checkpoints, logs and stops.

State lives outside the repository, in $FLIPBOOK_TRAIN_DIR, by default
${XDG_CACHE_HOME:-~/.cache}/flipbook/train, one folder per stage:

    <dir>/<stage>/ckpt.pt       the latest full state (model, optimizer moments, step, RNG
                                states, the stage settings); written to a temporary file and
                                renamed, so a kill never leaves a torn checkpoint
    <dir>/<stage>/log.tsv       one line per logged step (step, loss, ..., steps/s)
    <dir>/<stage>/done          written when the stage reached its last step
    <dir>/dit/latents/          the latent cache of the DiT stage
    <dir>/tokenizer/spm.model   the trained tokenizer

A Budget tells the loops when to stop (--minutes, SIGINT/SIGTERM) and when the next periodic
checkpoint is due; loops then save and return, never leaving work half-written.
"""
import functools
import json
import os
import random
import signal
import sys
import time

import numpy as np
import torch


def default_dir():
    d = os.environ.get("FLIPBOOK_TRAIN_DIR")
    if d:
        return os.path.abspath(d)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "flipbook", "train")


@functools.lru_cache(maxsize=None)
def bf16_fast():
    """Whether PyTorch runs bf16 natively on this CPU (its oneDNN test: AVX-512 or newer). On a
    CPU with AVX2 only it emulates bf16, and autocast made convolutions 9x and linear layers 15x
    slower than float32; the stages' `bf16` settings then fall back to float32 (one log line
    says so). The weights a run makes differ between the two in the last bits."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    fast = bool(check()) if check is not None else False
    if not fast:
        print("train: this CPU has no native bf16: autocast off, float32 throughout", flush=True)
    return fast


def autocast(enabled):
    """bf16 autocast on the CPU when `enabled` and the CPU runs bf16 natively (bf16_fast)."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(enabled) and bf16_fast())


def stage_dir(root, stage):
    d = os.path.join(root, stage)
    os.makedirs(d, exist_ok=True)
    return d


def atomic_torch_save(obj, path):
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write(path, data, mode="wb"):
    tmp = path + ".tmp"
    with open(tmp, mode) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def rng_state():
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "python": random.getstate()}


def set_rng_state(s):
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])


def load_ckpt(path):
    if not os.path.exists(path):
        return None
    return torch.load(path, map_location="cpu")


def check_settings(saved, current, stage, resizable=("steps",)):
    """Refuses to resume a stage whose settings changed (that would mix two runs), except for
    the sizes in `resizable`: a run may be shortened or extended (the learning-rate schedule
    follows the new length from the step it resumes at) and a dataset grown, since every item
    is a function of (seed, index). The weights then differ from those of a run made with the
    new sizes from the start; the log says so."""
    if saved is None or saved == current:
        return
    diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    hard = [k for k in diff if k not in resizable]
    if hard:
        raise SystemExit("train: the %s checkpoint was made with other settings (%s); move its "
                         "state folder away to start that stage again" % (stage, ", ".join(hard)))
    for k in diff:
        print("train[%s]: resuming with %s = %s (was %s)" % (stage, k, current.get(k), saved.get(k)),
              flush=True)
        saved[k] = current[k]


def step_seed(seed, stage_id, step):
    """A 63-bit seed for one (stage, step): data and noise of a step never depend on how the
    run was interrupted and resumed."""
    s = np.random.SeedSequence([seed, stage_id, step]).generate_state(2, np.uint64)
    return int(s[0]) & ((1 << 63) - 1)


def stopped(budget, save, stage, step):
    """True, after save() and a line saying so, when the budget says the stage must stop now:
    the first thing every stage's loop asks each step."""
    if not budget.should_stop():
        return False
    save()
    print("train[%s]: stopped at step %d (checkpoint saved)" % (stage, step), flush=True)
    return True


def ema_update(ema_params, params, decay):
    """ema <- decay * ema + (1 - decay) * params, in place (the weights a stage exports)."""
    with torch.no_grad():
        for pe, p in zip(ema_params, params):
            pe.mul_(decay).add_(p.detach(), alpha=1 - decay)


REWARM_STEPS = 200


def cosine_lr(step, total, base, warmup, min_frac, rewarm=None):
    """Linear warm-up, then cosine decay to base * min_frac at the last step. rewarm: the step
    at which a stage seeded from a model file (fresh optimizer moments) resumed; the rate then
    ramps up again over REWARM_STEPS, since Adam's first steps without moments are large."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    import math
    lr = base * (min_frac + (1 - min_frac) * 0.5 * (1 + math.cos(math.pi * p)))
    if rewarm is not None:
        lr *= min(1.0, (step - rewarm + 1) / float(REWARM_STEPS))
    return lr


class Budget:
    """Stop conditions shared by all stages of one run."""

    def __init__(self, minutes=None, ckpt_minutes=5.0):
        self.t0 = time.time()
        self.deadline = None if minutes is None else self.t0 + 60.0 * minutes
        self.ckpt_every = 60.0 * ckpt_minutes
        self.last_ckpt = time.time()
        self.signalled = None

    def install_signals(self):
        def handler(signum, frame):
            if self.signalled is not None:      # second signal: leave now
                raise KeyboardInterrupt
            self.signalled = signum
            print("train: signal %d, stopping after this step with a checkpoint" % signum,
                  file=sys.stderr, flush=True)
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    def should_stop(self):
        return self.signalled is not None or (self.deadline is not None and time.time() >= self.deadline)

    def ckpt_due(self):
        return time.time() - self.last_ckpt >= self.ckpt_every

    def saved(self):
        self.last_ckpt = time.time()

    def left_s(self):
        return None if self.deadline is None else self.deadline - time.time()


class Logger:
    """Progress lines on stderr and a tab-separated log file per stage."""

    def __init__(self, sdir, stage, total, fields):
        self.path = os.path.join(sdir, "log.tsv")
        self.stage, self.total, self.fields = stage, total, list(fields)
        if not os.path.exists(self.path):
            with open(self.path, "w") as f:
                f.write("\t".join(["step", "time"] + self.fields + ["steps_per_s"]) + "\n")
        self.t_last = time.time()
        self.s_last = None

    def log(self, step, values):
        now = time.time()
        rate = 0.0
        if self.s_last is not None and now > self.t_last:
            rate = (step - self.s_last) / (now - self.t_last)
        self.t_last, self.s_last = now, step
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        with open(self.path, "a") as f:
            f.write("\t".join([str(step), "%.0f" % now] + ["%.6g" % values[k] for k in self.fields]
                              + ["%.4f" % rate]) + "\n")
        parts = " ".join("%s %.5g" % (k, values[k]) for k in self.fields)
        print("train[%s] step %d/%d %s | %.3f steps/s, eta %s" % (self.stage, step, self.total, parts,
              rate, _fmt_eta(eta)), file=sys.stderr, flush=True)

    def restart_clock(self, step):
        self.t_last, self.s_last = time.time(), step


def _fmt_eta(s):
    if s != s:
        return "?"
    h, m = divmod(int(s) // 60, 60)
    return "%dh%02dm" % (h, m)


def write_json(path, obj):
    atomic_write(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def read_json(path):
    with open(path) as f:
        return json.load(f)


class ThreadTuner:
    """Chooses between 1 and max_threads torch threads from measured step times.

    At nice 19 a thread that shares its core with a normal-priority process gets about 1.5% of
    that core, and every parallel region of a 2-thread step then waits for it: a step can take
    ten times longer than with one thread on the free core. So the loop runs `period` steps
    with the current choice, then `probe` steps with the other one, and keeps the faster."""

    def __init__(self, max_threads, period=150, probe=8):
        self.choices = sorted({1, max(1, max_threads)})
        self.n = self.choices[-1]
        self.period, self.probe = period, probe
        self.count, self.times, self.base = 0, [], None
        self.probing = False
        torch.set_num_threads(self.n)

    def _other(self):
        return self.choices[0] if self.n == self.choices[-1] else self.choices[-1]

    def step_done(self, dt):
        if len(self.choices) == 1:
            return
        self.count += 1
        if self.count > 1:                     # the first step after a switch warms up
            self.times.append(dt)
        if not self.probing and self.count >= self.period:
            self.base = float(np.median(self.times[-self.probe:]))
            self.n = self._other()
            self.probing, self.count, self.times = True, 0, []
            torch.set_num_threads(self.n)
        elif self.probing and self.count >= self.probe + 1:
            probe = float(np.median(self.times))
            if probe >= self.base:             # the probe lost: go back
                self.n = self._other()
                torch.set_num_threads(self.n)
            self.probing, self.count, self.times = False, 0, []
