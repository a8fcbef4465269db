"""Tests of the checkpoint converter (tools/convert.py).

    test_convert.py CASE GOLDEN_DIR [FLIPBOOK_BINARY]

GOLDEN_DIR is the upstream golden folder (shared/golden/upstream beside the checkout). Each
case builds tiny fake checkpoints in an upstream layout (fakes.py), runs the converter as a
user would, loads the result with the reference model (tools/flipbook_ref) and reproduces the
upstream golden outputs from the converted file. Exit 0 pass, 1 fail, 77 skipped (no PyTorch,
numpy or sentencepiece, or no golden folder).
"""
import collections
import io
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.normpath(os.path.join(HERE, "..", "..", "tools"))
CONVERT = os.path.join(TOOLS, "convert.py")
sys.path.insert(0, TOOLS)
sys.path.insert(0, HERE)

try:
    import numpy as np
    import sentencepiece  # noqa: F401
    import torch
except ImportError as e:
    print("SKIP: %s (run with Debian's /usr/bin/python3 and python3-torch)" % e)
    sys.exit(77)

import fakes  # noqa: E402
from flipbook_ref import export, st  # noqa: E402
from flipbook_ref.config import DiTConfig, TextEncoderConfig, VAEConfig  # noqa: E402
from flipbook_ref.dit import WanDiT  # noqa: E402
from flipbook_ref.t5 import T5Encoder  # noqa: E402
from flipbook_ref.taehv import TAEHV, StreamDecoder  # noqa: E402

torch.set_num_threads(1)


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)
    return cond


def convert(args, ok=True):
    p = subprocess.run([sys.executable, CONVERT] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=300)
    if ok and p.returncode != 0:
        raise Fail("convert %s failed (exit %d):\n%s%s" % (" ".join(map(str, args)), p.returncode,
                                                         p.stdout, p.stderr))
    return p


def expect_error(tmp, args, *needles):
    """The converter must refuse with exit 1, name the problem, print no traceback and leave
    neither an output nor a temporary file behind."""
    out = os.path.join(tmp, "refused.safetensors")
    before = set(os.listdir(tmp))
    p = convert(list(args) + ["-o", out], ok=False)
    err = p.stderr
    check(p.returncode == 1, "expected exit 1, got %d for %s:\n%s" % (p.returncode, needles, err))
    check("Traceback" not in err, "traceback printed:\n%s" % err)
    for n in needles:
        check(n in err, "error message lacks %r:\n%s" % (n, err))
    left = set(os.listdir(tmp)) - before
    check(not left, "files left behind: %s" % sorted(left))
    print("  refused as expected: %s" % err.strip().splitlines()[-1][:160])


def maxerr(a, b):
    return (a.double() - b.double()).abs().max().item()


def cmp(name, got, ref, tol):
    e = maxerr(got, ref.reshape(got.shape) if got.numel() == ref.numel() else ref)
    print("  %-40s max|err| %.3e (tol %.0e)" % (name, e, tol))
    check(e <= tol, "%s: error %.3e > %.1e" % (name, e, tol))


# ---- fixtures ---------------------------------------------------------------------------------

class World:
    """The golden DiT (4 channels) + umT5 + a small 4-channel TAEHV, in a fake Wan folder."""

    def __init__(self, golden_dir, tmp, t5_dtype=torch.float32):
        self.golden_dir, self.tmp = golden_dir, tmp
        self.dit_t, self.dit_meta, self.dit_w = fakes.golden(golden_dir, "wan_dit")
        self.t5_t, self.t5_meta, self.t5_w = fakes.golden(golden_dir, "umt5")
        self.tok = fakes.tokenizer_bytes()
        self.wan = os.path.join(tmp, "Wan2.1-T2V-1.3B")
        fakes.write_wan_folder(self.wan, self.dit_w, self.dit_meta, self.t5_w, t5_dtype, self.tok)
        self.vae_cfg = fakes.small_vae_cfg(4)
        self.vae_w = fakes.hash_vae(self.vae_cfg)
        self.vae = os.path.join(tmp, "taew2_1.pth")
        torch.save(self.vae_w, self.vae)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def common(self):
        return ["--wan", self.wan, "--vae", self.vae, "--latent-size", "8x8", "--quiet"]


@torch.no_grad()
def check_dit_flow(model, w, tol):
    t = w.dit_t
    flow = model.dit(t["input.x"][None], t["input.t"], t["input.context"][None])
    cmp("wan_dit output.flow from the file", flow[0], t["output.flow"], tol)


@torch.no_grad()
def check_t5_hidden(model, w, tol):
    t = w.t5_t
    out = model.text_encoder(t["input.ids"], t["input.mask"])
    cmp("umt5 output.hidden from the file", out, t["output.hidden"], tol)


def check_state(model_sd, ref, prefix, exact=True, tol=0.0):
    for k, v in ref.items():
        got = model_sd.get(prefix + k)
        check(got is not None, "converted file lacks %s%s" % (prefix, k))
        check(tuple(got.shape) == tuple(v.shape), "%s%s: shape %s vs %s"
              % (prefix, k, tuple(got.shape), tuple(v.shape)))
        e = maxerr(got, v)
        check(e <= tol, "%s%s differs from the source by %.3e" % (prefix, k, e))
    n = sum(1 for k in model_sd if k.startswith(prefix))
    check(n == len(ref), "%s: %d tensors in the file, %d expected" % (prefix, n, len(ref)))


def load(path):
    tensors, meta = st.load(path)
    return tensors, meta, json.loads(meta["flipbook.config"]), export.load_model(path)


def check_same_bytes_as_st(path, tmp):
    """The streamed file equals what the reference writer makes of the same tensors."""
    tensors, meta = st.load(path)
    again = os.path.join(tmp, "resaved.safetensors")
    st.save(again, tensors, meta)
    with open(path, "rb") as a, open(again, "rb") as b:
        check(a.read() == b.read(), "converted file differs from st.save of its own tensors")
    os.unlink(again)
    print("  layout byte-identical to flipbook_ref.st.save")


# ---- cases ------------------------------------------------------------------------------------

def case_names(golden_dir, tmp):
    """Expected tensor lists equal the reference modules' state dicts; real-size counts."""
    from convert import families as fam
    for dc in [DiTConfig(dim=64, ffn_dim=128, text_dim=32, num_heads=4, num_layers=3, in_dim=4,
                         out_dim=4), DiTConfig(dim=48, ffn_dim=96, text_dim=32, num_heads=4,
                                               num_layers=1, qk_norm=False,
                                               cross_attn_norm=False)]:
        ref = collections.OrderedDict((k, tuple(v.shape)) for k, v in WanDiT(dc).state_dict().items())
        check(dict(fam.dit_expected(dc)) == dict(ref), "DiT names differ from the reference "
              "for %s" % dc)
    for tc in [TextEncoderConfig(vocab=128, dim=32, dim_attn=32, dim_ffn=64, num_heads=4,
                                 num_layers=2),
               TextEncoderConfig(vocab=64, dim=16, dim_attn=32, dim_ffn=24, num_heads=2,
                                 num_layers=3, shared_pos=True)]:
        ref = {k: tuple(v.shape) for k, v in T5Encoder(tc).state_dict().items()}
        check(dict(fam.t5_expected(tc)) == ref, "T5 names differ from the reference for %s" % tc)
    for vc in [VAEConfig(), fakes.small_vae_cfg(4),
               VAEConfig(latent_channels=48, patch_size=2, decoder_channels=[32, 16, 16, 8],
                         encoder_channels=8, encoder_time_downscale=[True, False, True])]:
        ref = {k: tuple(v.shape) for k, v in TAEHV(vc).state_dict().items()}
        check(dict(fam.vae_expected(vc)) == ref, "TAEHV names differ from the reference for %s" % vc)
    real = fam.dit_expected(DiTConfig())
    params = sum(int(np.prod(s)) for s in real.values())
    print("  Wan2.1-T2V-1.3B: %d DiT tensors, %d parameters" % (len(real), params))
    check(len(real) == 825 and params == 1418996800, "1.3B DiT: expected 825 tensors, 1418996800 "
          "parameters")
    t5 = fam.t5_expected(TextEncoderConfig())
    params = sum(int(np.prod(s)) for s in t5.values())
    print("  umT5-XXL encoder: %d tensors, %d parameters" % (len(t5), params))
    check(params == 5680910336, "umT5-XXL: expected 5680910336 parameters")
    print("  TAEW2.1: %d tensors" % len(fam.vae_expected(VAEConfig())))


def case_reader(golden_dir, tmp):
    """The torch-free archive reader and the casts agree with torch itself."""
    from convert import sources as src
    from convert.writer import Progress
    import argparse
    g = torch.Generator().manual_seed(1)
    base = torch.randn(6, 10, generator=g)
    obj = {
        "sd": collections.OrderedDict([
            ("f32", torch.randn(3, 4, generator=g)),
            ("bf16", torch.randn(5, 7, generator=g).bfloat16()),
            ("f16", torch.randn(9, generator=g).half()),
            ("f64", torch.randn(2, 2, generator=g).double()),
            ("i64", torch.arange(5)),
            ("u8", torch.arange(7, dtype=torch.uint8)),
            ("bool", torch.tensor([True, False, True])),
            ("scalar", torch.tensor(3.5)),
            ("empty", torch.zeros(0, 4)),
            ("param", torch.nn.Parameter(torch.randn(4, 4, generator=g))),
            ("view_rows", base[2:5]),                 # offset into a shared storage
            ("view_t", base.t()),                      # strided
            ("view_cols", base[:, 3:7]),               # strided with offset
            ("big", torch.randn(300, 70, generator=g)),
        ]),
        "step": 12, "args": argparse.Namespace(lr=0.1), "names": {"a", "b"},
        "np": np.float32(2.0), "nested": {"x": [1, 2.5, "s", None, (1, 2)]},
    }
    path = os.path.join(tmp, "mixed.pt")
    torch.save(obj, path)
    s = src.open_file(path)
    ref = torch.load(path)
    for k, v in ref["sd"].items():
        lt = s.obj["sd"][k]
        check(tuple(lt.shape) == tuple(v.shape), "%s: shape %s vs %s" % (k, lt.shape, v.shape))
        # small slabs exercise the row-by-row path
        parts = [a for _, a in lt.slabs(64)]
        raw = np.concatenate(parts, 0) if lt.shape else parts[0]
        v = v.detach()
        if v.dtype == torch.bfloat16:
            want = v.view(torch.int16).numpy().view(np.uint16)
        elif v.dtype == torch.bool:
            want = v.numpy().astype(np.uint8)
        else:
            want = v.numpy()
        check(raw.shape == want.shape and np.array_equal(raw, want), "%s: values differ" % k)
    check(s.obj["step"] == 12, "non-tensor int lost")
    check(s.obj["nested"]["x"][4] == (1, 2), "nested data lost")
    s.close()
    print("  torch archive reader: %d tensors equal torch.load (views, strides, dtypes)"
          % len(ref["sd"]))
    # casts: bit-exact with torch's rounding, special values included
    x = torch.cat([torch.randn(100000, generator=g) * 10,
                   torch.tensor([0.0, -0.0, 1e-40, -1e-40, 3.4e38, -3.4e38, float("inf"),
                                 float("-inf"), 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, 65504.0,
                                 65520.0, 1e-8])])
    got = src.f32_to_bf16(x.numpy())
    want = x.bfloat16().view(torch.int16).numpy().view(np.uint16)
    check(np.array_equal(got, want), "f32 -> bf16 differs from torch")
    nan = src.f32_to_bf16(np.array([np.nan], np.float32))
    check(np.isnan(src.to_f32(nan, "BF16")).all(), "NaN did not stay NaN")
    back = src.to_f32(want, "BF16")
    check(np.array_equal(back, x.bfloat16().float().numpy()), "bf16 -> f32 differs from torch")
    check(np.array_equal(src.cast(x.numpy(), "F32", "F16"), x.half().numpy()),
          "f32 -> f16 differs from torch")
    print("  casts bf16/f16 bit-exact with torch (ties, subnormals, inf, NaN)")
    # safetensors reader
    sp = os.path.join(tmp, "t.safetensors")
    st.save(sp, {"a": torch.randn(3, 5, generator=g).bfloat16(), "b": torch.randn(7, generator=g)})
    s = src.open_file(sp)
    r, _ = st.load(sp, as_torch=False)
    for k in r:
        check(np.array_equal(s.obj[k].read(), r[k]), "safetensors %s differs" % k)
    s.close()
    # progress line
    buf = io.StringIO()
    p = Progress(10, 2000, out=buf, every=0.0)
    p.bytes(500, "dit.blocks.0.x")
    p.tensor("dit.blocks.0.x")
    line = buf.getvalue()
    print("  progress: %s" % line.strip().splitlines()[-1])
    check("ETA" in line and "/10]" in line and "B/s" in line, "progress line lacks count, "
          "rate or ETA")


def _convert_sf(w, out, extra=(), dit=None):
    dit = dit or w.path("self_forcing_dmd.pt")
    convert(["self-forcing", "--dit", dit] + w.common() + ["-o", out] + list(extra))


def case_self_forcing(golden_dir, tmp):
    w = World(golden_dir, tmp)
    sf = w.path("self_forcing_dmd.pt")
    fakes.self_forcing_pt(sf, w.dit_w)
    out = w.path("sf32.safetensors")
    _convert_sf(w, out, ["--dtype", "f32"])
    tensors, meta, cfg, model = load(out)
    check(meta["flipbook.format"] == "1" and meta["flipbook.name"] == "wan2.1-t2v-1.3b-self-forcing",
          "metadata %s" % meta)
    sd = {k: v for k, v in tensors.items()}
    check_state(sd, w.dit_w, "dit.")            # generator_ema, not the decoy generator
    check_state(sd, w.t5_w, "text_encoder.")
    check_state(sd, w.vae_w, "vae.")
    check(tensors["tokenizer.spm"].numpy().tobytes() == w.tok, "tokenizer bytes differ")
    print("  every tensor equals its source (generator_ema chosen, 'model.' stripped)")
    check_dit_flow(model, w, 2e-5)
    check_t5_hidden(model, w, 2e-5)
    s, sm = cfg["sampler"], cfg["stream"]
    check(s["shift"] == 5.0 and s["steps"] == [1000, 750, 500, 250] and s["warp"] is True,
          "sampler %s" % s)
    check(sm["chunk_frames"] == 3 and sm["anchor_frames"] == 0 and sm["window_frames"] == 18 and
          sm["positions"] == "absolute" and (sm["latent_height"], sm["latent_width"]) == (8, 8)
          and sm["fps"] == 16, "stream %s" % sm)
    check(cfg["dit"]["num_heads"] == 4 and cfg["dit"]["text_len"] == 16 and
          cfg["text_encoder"]["max_tokens"] == 16 and cfg["text_encoder"]["vocab"] == 128,
          "dit/text config %s %s" % (cfg["dit"], cfg["text_encoder"]))
    print("  config: preset self-forcing, dims read from config.json and shapes")
    ids, ctx = model.encode_prompt("a red ball rolls over the green hill")
    check(len(ids) > 2 and ids[-1] == 1 and ctx.shape[-1] == 32, "prompt encoding through the "
          "converted tokenizer and encoder failed")
    check_same_bytes_as_st(out, tmp)

    # default dtype bf16: DiT rounded as torch rounds; flow within bf16 tolerance
    out16 = w.path("sf16.safetensors")
    _convert_sf(w, out16, ["--anchor", "3", "--window", "6", "--positions", "window",
                           "--steps", "1000,500", "--shift", "3", "--fps", "24", "--name", "x"])
    t16, meta16, cfg16, m16 = load(out16)
    for k, v in w.dit_w.items():
        got = t16["dit." + k]
        check(got.dtype == torch.bfloat16, "dit.%s is %s, expected bf16" % (k, got.dtype))
        check(torch.equal(got.view(torch.int16), v.bfloat16().view(torch.int16)),
              "dit.%s: bf16 rounding differs from torch" % k)
    check(all(t16["vae." + k].dtype == torch.float32 for k in w.vae_w), "vae not f32 by default")
    check(cfg16["stream"]["anchor_frames"] == 3 and cfg16["stream"]["window_frames"] == 6 and
          cfg16["stream"]["positions"] == "window" and cfg16["sampler"]["steps"] == [1000, 500]
          and cfg16["sampler"]["shift"] == 3.0 and cfg16["stream"]["fps"] == 24 and
          meta16["flipbook.name"] == "x", "overrides not applied: %s" % cfg16)
    check_dit_flow(m16, w, 0.1)
    print("  bf16 output: bit-exact torch rounding; overrides --anchor/--window/--positions/"
          "--steps/--shift/--fps/--name applied")

    # --dry-run checks everything and writes nothing
    dry = w.path("dry.safetensors")
    p = convert(["self-forcing", "--dit", sf, "--dry-run"] + w.common()[:-1] + ["-o", dry])
    # (the 1.3B count must not leak into the tiny model's plan; the temp folder's random
    # name may contain any digits, so match the phrase, not the number)
    check("dry run" in p.stdout and "825 tensors" not in p.stderr and "69 tensors" in p.stderr and
          not os.path.exists(dry), "dry run wrote a file or printed no plan:\n%s%s"
          % (p.stdout, p.stderr))
    print("  --dry-run: plan printed, nothing written")

    # refuse to overwrite, then --force
    p = convert(["self-forcing", "--dit", sf] + w.common() + ["-o", out], ok=False)
    check(p.returncode == 1 and "already exists" in p.stderr and "Traceback" not in p.stderr,
          "overwrite not refused: %s" % p.stderr)
    convert(["self-forcing", "--dit", sf] + w.common() + ["-o", out, "--force", "--dtype", "f32"])
    print("  existing output refused without --force, replaced with it")


def case_fsdp(golden_dir, tmp):
    """FSDP/checkpoint/compile-wrapped names convert to the same file as clean ones."""
    w = World(golden_dir, tmp)
    plain, wrapped = w.path("plain.pt"), w.path("wrapped.pt")
    fakes.self_forcing_pt(plain, w.dit_w)
    fakes.self_forcing_pt(wrapped, w.dit_w, fsdp=True)
    a, b = w.path("a.safetensors"), w.path("b.safetensors")
    _convert_sf(w, a, ["--dtype", "f32"], dit=plain)
    _convert_sf(w, b, ["--dtype", "f32"], dit=wrapped)
    with open(a, "rb") as fa, open(b, "rb") as fb:
        check(fa.read() == fb.read(), "wrapped checkpoint converts differently")
    print("  _fsdp_wrapped_module./_checkpoint_wrapped_module./_orig_mod. stripped: identical file")
    _, _, _, model = load(b)
    check_dit_flow(model, w, 2e-5)
    # a bare state dict without the "model." prefix, and the DiT as safetensors
    bare = w.path("bare.safetensors")
    st.save(bare, dict(w.dit_w))
    c = w.path("c.safetensors")
    _convert_sf(w, c, ["--dtype", "f32"], dit=bare)
    with open(a, "rb") as fa, open(c, "rb") as fc:
        check(fa.read() == fc.read(), "bare safetensors DiT converts differently")
    print("  bare safetensors DiT: identical file")


def case_causvid(golden_dir, tmp):
    w = World(golden_dir, tmp)
    pt = w.path("model.pt")
    fakes.causvid_pt(pt, w.dit_w)
    out = w.path("causvid.safetensors")
    convert(["causvid", "--dit", pt, "--dtype", "f32"] + w.common() + ["-o", out])
    tensors, meta, cfg, model = load(out)
    check_state(tensors, w.dit_w, "dit.")
    check_dit_flow(model, w, 2e-5)
    s = cfg["sampler"]
    check(s["shift"] == 8.0 and s["steps"] == [1000, 757, 522] and s["warp"] is False and
          cfg["stream"]["positions"] == "absolute" and cfg["stream"]["chunk_frames"] == 3,
          "causvid config %s" % cfg)
    check(meta["flipbook.name"] == "wan2.1-t2v-1.3b-causvid", "name %s" % meta)
    print("  generator used, critic untouched; shift 8, steps 1000/757/522 unwarped")


def case_longlive(golden_dir, tmp):
    w = World(golden_dir, tmp)
    base_pt, lora_pt = w.path("longlive_base.pt"), w.path("lora.pt")
    base, fac = fakes.longlive_files(base_pt, lora_pt, w.dit_w, rank=8)
    out = w.path("ll.safetensors")
    convert(["longlive", "--dit", base_pt, "--lora", lora_pt, "--dtype", "f32"] + w.common() +
            ["-o", out])
    tensors, meta, cfg, model = load(out)
    worst = 0.0
    for k, v in base.items():
        got = tensors["dit." + k]
        mod = k[:-len(".weight")] if k.endswith(".weight") else None
        if mod in fac:
            a, b = fac[mod]
            want = v + b @ a
            e = maxerr(got, want)
            worst = max(worst, e / max(1.0, want.abs().max().item()))
        else:
            check(torch.equal(got, v), "dit.%s changed though no LoRA targets it" % k)
    print("  merged W == W + B@A for %d weights: max rel err %.2e" % (len(fac), worst))
    check(worst <= 1e-6, "LoRA merge error %.3e" % worst)
    check_dit_flow(model, w, 1e-4)        # base + B@A = golden weights
    sm = cfg["stream"]
    check(sm["anchor_frames"] == 3 and sm["window_frames"] == 6 and sm["chunk_frames"] == 3 and
          sm["positions"] == "absolute" and cfg["sampler"]["warp"] is True and
          cfg["sampler"]["shift"] == 5.0, "longlive config %s" % cfg)
    print("  config: anchor 3 (sink), window 6, chunk 3, absolute positions")

    # ".default" adapter names, --lora-scale and --positions window
    lora2 = w.path("lora_default.pt")
    fakes.longlive_files(w.path("base2.pt"), lora2, w.dit_w, rank=8, adapter_suffix=".default")
    out2 = w.path("ll2.safetensors")
    convert(["longlive", "--dit", base_pt, "--lora", lora2, "--lora-scale", "0.5",
             "--positions", "window", "--dtype", "f32"] + w.common() + ["-o", out2])
    t2, _, cfg2, _ = load(out2)
    a, b = fac["blocks.1.ffn.2"]
    want = base["blocks.1.ffn.2.weight"] + 0.5 * (b @ a)
    cmp("scale 0.5 merge (blocks.1.ffn.2)", t2["dit.blocks.1.ffn.2.weight"], want, 1e-6)
    check(cfg2["stream"]["positions"] == "window", "--positions window not applied")
    # alpha recorded in the file: alpha 4 / rank 8 = 0.5
    obj = torch.load(lora2)
    obj["lora_config"] = {"r": 8, "lora_alpha": 4}
    lora3 = w.path("lora_alpha.pt")
    torch.save(obj, lora3)
    out3 = w.path("ll3.safetensors")
    p = convert(["longlive", "--dit", base_pt, "--lora", lora3, "--dtype", "f32"] + w.common()[:-1]
                + ["-o", out3])
    check("scale alpha/r = 0.5" in p.stderr, "alpha/r from the file not reported:\n%s" % p.stderr)
    t3, _, _, _ = load(out3)
    check(torch.equal(t3["dit.blocks.1.ffn.2.weight"], t2["dit.blocks.1.ffn.2.weight"]),
          "alpha/r from the file not applied")
    print("  '.default' adapter keys, --lora-scale, alpha/r from the file, --positions window")


def case_taehv(golden_dir, tmp):
    """The real-shape TAEHV golden, converted from taew2_1.pth with a 512-row TGrow."""
    t, meta, vae_w = fakes.taehv_golden_weights(golden_dir)
    _, umeta, t5_w = fakes.golden(golden_dir, "umt5")
    dit_w, dit_meta = fakes.random_dit(channels=16, text_dim=32)
    wan = os.path.join(tmp, "wan")
    fakes.write_wan_folder(wan, dit_w, dit_meta, t5_w)
    pth = os.path.join(tmp, "taew2_1.pth")
    torch.save(fakes.taehv_golden_weights(golden_dir)[2] | {
        "decoder.7.conv.weight": torch.cat([torch.full((256, 256, 1, 1), 9.0),
                                            vae_w["decoder.7.conv.weight"]], 0)}, pth)
    out = os.path.join(tmp, "base.safetensors")
    p = convert(["wan-t2v", "--wan", wan, "--vae", pth, "-o", out])
    check("not causal-distilled" in p.stderr, "wan-t2v warning missing:\n%s" % p.stderr)
    check("keeping the last 256" in p.stderr, "TGrow truncation not reported:\n%s" % p.stderr)
    tensors, _, cfg, model = load(out)
    check_state(tensors, vae_w, "vae.")
    check(cfg["vae"]["decoder_channels"] == [256, 128, 64, 64] and cfg["vae"]["latent_channels"]
          == 16 and cfg["sampler"]["steps"][:3] == [1000, 938, 875] and
          len(cfg["sampler"]["steps"]) == 16, "wan-t2v/vae config %s" % cfg)
    with torch.no_grad():
        lat = t["input.latents"]
        cmp("taehv output.decoded from the file", model.vae.decode(lat), t["output.decoded"], 1e-4)
        cmp("taehv output.decoded_stream", StreamDecoder(model.vae).decode(lat),
            t["output.decoded_stream"], 1e-4)
        cmp("taehv output.encoded", model.vae.encode(t["input.frames"]), t["output.encoded"], 1e-4)
    # the same decoder as safetensors (256 rows): same vae tensors; f16 output
    sfile = os.path.join(tmp, "taew2_1.safetensors")
    st.save(sfile, {k: v.half() for k, v in vae_w.items()})
    out2 = os.path.join(tmp, "base2.safetensors")
    convert(["wan-t2v", "--wan", wan, "--vae", sfile, "--vae-dtype", "f16", "-o", out2, "--quiet"])
    t2, _ = st.load(out2)
    for k, v in vae_w.items():
        check(t2["vae." + k].dtype == torch.float16 and torch.equal(t2["vae." + k], v.half()),
              "vae.%s from safetensors differs" % k)
    print("  taew2_1.safetensors (f16) -> f16 vae tensors unchanged")


def case_dtypes(golden_dir, tmp):
    """A bf16 text encoder passes through bit for bit; f16 output works."""
    w = World(golden_dir, tmp, t5_dtype=torch.bfloat16)
    sf = w.path("sf.pt")
    fakes.self_forcing_pt(sf, w.dit_w)
    out = w.path("o.safetensors")
    _convert_sf(w, out, dit=sf)
    tensors, _ = st.load(out)
    for k, v in w.t5_w.items():
        check(torch.equal(tensors["text_encoder." + k].view(torch.int16),
                          v.bfloat16().view(torch.int16)), "text_encoder.%s not passed through" % k)
    print("  bf16 text encoder copied bit for bit")
    out16 = w.path("o16.safetensors")
    _convert_sf(w, out16, ["--dtype", "f16"], dit=sf)
    t16, _, _, m16 = load(out16)
    check(all(torch.equal(t16["dit." + k], v.half()) for k, v in w.dit_w.items()),
          "f16 DiT differs from torch's rounding")
    check_dit_flow(m16, w, 2e-2)


def case_errors(golden_dir, tmp):
    w = World(golden_dir, tmp)
    sd = fakes.prefixed(w.dit_w)
    ok_pt = w.path("ok.pt")
    torch.save({"generator_ema": sd}, ok_pt)

    def pt(name, mutate):
        d = collections.OrderedDict((k, v.clone()) for k, v in sd.items())
        mutate(d)
        p = w.path(name)
        torch.save({"generator_ema": d}, p)
        return p

    c = w.common()
    expect_error(tmp, ["self-forcing", "--dit", pt("missing.pt", lambda d: d.pop(
        "model.blocks.1.ffn.2.bias"))] + c, "missing tensor", "blocks.1.ffn.2.bias")
    expect_error(tmp, ["self-forcing", "--dit", pt("shape.pt", lambda d: d.__setitem__(
        "model.blocks.0.self_attn.q.weight", torch.zeros(64, 32)))] + c,
        "blocks.0.self_attn.q.weight: expected [64, 64], file has [64, 32]")
    extra = pt("extra.pt", lambda d: d.__setitem__("model.blocks.0.adapter.weight",
                                                   torch.zeros(2)))
    expect_error(tmp, ["self-forcing", "--dit", extra] + c, "unknown extra", "blocks.0.adapter.weight",
                 "--ignore-extra")
    ok_out = w.path("ignored.safetensors")
    p = convert(["self-forcing", "--dit", extra, "--ignore-extra"] + c + ["-o", ok_out])
    check("dropping 1 unknown" in p.stderr, "extra tensor not reported with --ignore-extra")
    os.unlink(ok_out)
    print("  --ignore-extra drops and reports the unknown tensor")
    # LoRA for a module the DiT does not have, and a lone factor
    lora = w.path("badlora.pt")
    a, b = torch.zeros(4, 64), torch.zeros(64, 4)
    torch.save({"generator_lora": {"base_model.model.blocks.7.self_attn.q.lora_A.weight": a,
                                   "base_model.model.blocks.7.self_attn.q.lora_B.weight": b}}, lora)
    expect_error(tmp, ["longlive", "--dit", ok_pt, "--dit-key", "generator_ema", "--lora", lora] + c,
                 "does not have", "blocks.7.self_attn.q")
    lone = w.path("lone.pt")
    torch.save({"generator_lora": {"base_model.model.blocks.0.ffn.0.lora_A.weight": a}}, lone)
    expect_error(tmp, ["longlive", "--dit", ok_pt, "--dit-key", "generator_ema", "--lora", lone] + c,
                 "lora_A without lora_B")
    badshape = w.path("badshape.pt")
    torch.save({"generator_lora": {"base_model.model.blocks.0.ffn.0.lora_A.weight": a,
                                   "base_model.model.blocks.0.ffn.0.lora_B.weight": b}}, badshape)
    expect_error(tmp, ["longlive", "--dit", ok_pt, "--dit-key", "generator_ema", "--lora",
                       badshape] + c, "do not factor a [128, 64] weight")
    # truncated / corrupt inputs
    with open(ok_pt, "rb") as f:
        data = f.read()
    trunc = w.path("truncated.pt")
    with open(trunc, "wb") as f:
        f.write(data[:len(data) // 2])
    expect_error(tmp, ["self-forcing", "--dit", trunc] + c, "truncated or corrupt")
    corrupt = w.path("corrupt.pt")
    i = data.index(b"data/0") + 400             # inside the first storage member's bytes
    with open(corrupt, "wb") as f:
        f.write(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
    expect_error(tmp, ["self-forcing", "--dit", corrupt] + c, "corrupt")
    vae_st = w.path("vae.safetensors")
    st.save(vae_st, dict(w.vae_w))
    with open(vae_st, "rb") as f:
        vdata = f.read()
    vtrunc = w.path("vae_trunc.safetensors")
    with open(vtrunc, "wb") as f:
        f.write(vdata[:len(vdata) - 100])
    cv = ["--wan", w.wan, "--latent-size", "8x8", "--vae", vtrunc]
    expect_error(tmp, ["self-forcing", "--dit", ok_pt] + cv, "truncated")
    text = w.path("notes.txt")
    with open(text, "w") as f:
        f.write("not a checkpoint\n")
    expect_error(tmp, ["self-forcing", "--dit", text] + c, "neither a torch checkpoint")
    # missing inputs, mismatched parts, wrong key
    expect_error(tmp, ["self-forcing", "--dit", ok_pt, "--wan", w.wan], "no TAEW2.1 decoder given")
    expect_error(tmp, ["self-forcing"] + c, "needs --dit")
    expect_error(tmp, ["self-forcing", "--dit", w.path("nope.pt")] + c, "no such file")
    expect_error(tmp, ["self-forcing", "--dit", ok_pt, "--dit-key", "ema"] + c, "no entry 'ema'",
                 "generator_ema")
    big_vae = w.path("taew2_1_16.pth")
    torch.save(fakes.hash_vae(VAEConfig()), big_vae)
    expect_error(tmp, ["self-forcing", "--dit", ok_pt, "--wan", w.wan, "--vae", big_vae],
                 "decoder takes 16 latent channels but the DiT makes 4")
    diffusers = w.path("diffusers.safetensors")
    st.save(diffusers, {"condition_embedder.text_embedder.linear_1.weight": torch.zeros(2, 2),
                        "scale_shift_table": torch.zeros(1, 2, 2)})
    expect_error(tmp, ["self-forcing", "--dit", diffusers] + c, "Diffusers-format")
    expect_error(tmp, ["self-forcing", "--dit", ok_pt] + c + ["--latent-size", "7x8"],
                 "not a multiple of the patch size")
    expect_error(tmp, ["self-forcing", "--dit", ok_pt] + c + ["--steps", "1000,937.5"],
                 "integers")
    # limits of the C engine: nothing is written that flipbookd would refuse
    expect_error(tmp, ["self-forcing", "--dit", ok_pt] + c +
                 ["--steps", ",".join(str(1000 - 50 * i) for i in range(17))], "1 to 16 steps")
    expect_error(tmp, ["self-forcing", "--dit", ok_pt] + c + ["--steps", "500,750"],
                 "steps must decrease")
    expect_error(tmp, ["longlive", "--dit", ok_pt, "--dit-key", "generator_ema"] + c +
                 ["--window", "-1", "--positions", "window"], "needs absolute positions")
    expect_error(tmp, ["self-forcing", "--dit", ok_pt] + c + ["--window", "1024"],
                 "exceed the 1024 RoPE positions")
    with open(os.path.join(w.wan, "config.json")) as f:
        j = json.load(f)
    j["dim"] = 96
    bad_cfg = w.path("config.json")
    with open(bad_cfg, "w") as f:
        json.dump(j, f)
    expect_error(tmp, ["self-forcing", "--dit", ok_pt, "--dit-config", bad_cfg] + c,
                 "config.json says dim = 96 but the weights have 64")


def case_memory(golden_dir, tmp):
    """A 400 MB fp32 generator converts with peak memory far below its size (streamed)."""
    w = World(golden_dir, tmp)
    dim, layers = 1024, 8
    cfg = DiTConfig(in_dim=4, out_dim=4, dim=dim, ffn_dim=2 * dim, text_dim=32, text_len=16,
                    num_heads=8, num_layers=layers)
    from convert import families as fam
    shapes = fam.dit_expected(cfg)
    g = torch.Generator().manual_seed(5)
    sd = collections.OrderedDict(("model." + k, torch.randn(*s, generator=g) * 0.02)
                                 for k, s in shapes.items())
    pt = w.path("big.pt")
    torch.save({"generator_ema": sd}, pt)
    size = os.path.getsize(pt)
    del sd
    out = w.path("big.safetensors")
    cfgjson = w.path("big_config.json")
    with open(cfgjson, "w") as f:
        json.dump({"_class_name": "WanModel", "model_type": "t2v", "dim": dim, "num_heads": 8,
                   "num_layers": layers, "text_len": 16, "ffn_dim": 2 * dim, "in_dim": 4,
                   "out_dim": 4, "freq_dim": 256, "eps": 1e-6}, f)
    # The converter reports its own high-water mark (VmHWM belongs to the process image, so
    # the forked copy of this torch-laden test process does not count).
    hwm = ("import runpy, sys\n"
           "sys.argv = sys.argv[1:]\n"
           "rc = 0\n"
           "try:\n"
           "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
           "except SystemExit as e:\n"
           "    rc = e.code\n"
           "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
           "print('HWM', hwm[0].split()[1] if hwm else 0, file=sys.stderr)\n"
           "sys.exit(rc)\n")
    p = subprocess.run([sys.executable, "-c", hwm, CONVERT, "self-forcing", "--dit", pt,
                        "--wan", w.wan, "--vae", w.vae, "--latent-size", "8x8",
                        "--dit-config", cfgjson, "-o", out], capture_output=True, text=True,
                       timeout=300)
    check(p.returncode == 0, "convert failed:\n%s" % p.stderr)
    peak = [int(l.split()[1]) * 1024 for l in p.stderr.splitlines() if l.startswith("HWM ")]
    check(peak and peak[0] > 0, "no VmHWM reported (needs /proc):\n%s" % p.stderr)
    peak = peak[0]
    print("  source %.0f MB fp32 -> %.0f MB bf16; converter peak memory (VmHWM) %.0f MB (%s)"
          % (size / 1e6, os.path.getsize(out) / 1e6, peak / 1e6,
             p.stdout.strip().splitlines()[-1]))
    check(peak < 0.5 * size, "peak memory %.0f MB is not well below the checkpoint's %.0f MB"
          % (peak / 1e6, size / 1e6))
    tensors, _ = st.load(out)
    check(len([k for k in tensors if k.startswith("dit.")]) == len(shapes), "tensor count")


def case_engine(golden_dir, tmp, flipbook=None):
    """The C engine loads converted files and generates from them (flipbook generate)."""
    check(flipbook and os.access(flipbook, os.X_OK), "usage: engine GOLDEN_DIR FLIPBOOK_BINARY")
    w = World(golden_dir, tmp)
    sf, base_pt, lora_pt = w.path("sf.pt"), w.path("base.pt"), w.path("lora.pt")
    fakes.self_forcing_pt(sf, w.dit_w)
    fakes.longlive_files(base_pt, lora_pt, w.dit_w)
    # the real-shape TAEW2.1 decoder (512-row TGrow) behind a random 16-channel DiT
    _, _, vae_w = fakes.taehv_golden_weights(golden_dir)
    vae_w["decoder.7.conv.weight"] = torch.cat([torch.zeros(256, 256, 1, 1),
                                                vae_w["decoder.7.conv.weight"]], 0)
    taew = w.path("taew2_1_real.pth")
    torch.save(vae_w, taew)
    dit16, meta16 = fakes.random_dit(channels=16, text_dim=32)
    wan16 = w.path("wan16")
    fakes.write_wan_folder(wan16, dit16, meta16, w.t5_w)
    runs = [("self-forcing", ["--dit", sf] + w.common()),
            ("longlive", ["--dit", base_pt, "--lora", lora_pt] + w.common()),
            ("longlive", ["--dit", base_pt, "--lora", lora_pt, "--positions", "window",
                          "--dtype", "f16", "--vae-dtype", "f16"] + w.common()),
            ("wan-t2v", ["--wan", wan16, "--vae", taew, "--latent-size", "8x8", "--quiet"])]
    for i, (family, args) in enumerate(runs):
        model = w.path("m%d.safetensors" % i)
        convert([family] + args + ["-o", model])
        rgb = w.path("m%d.rgb" % i)
        frames = 13
        p = subprocess.run([flipbook, "generate", "--model", model, "--prompt", "a red ball rolls",
                            "--seed", "3", "--frames", str(frames), "-o", rgb, "-t", "1", "-q"],
                           capture_output=True, text=True, timeout=120)
        check(p.returncode == 0, "flipbook generate on the converted %s file failed:\n%s"
              % (family, p.stderr))
        data = np.fromfile(rgb, dtype=np.uint8)
        check(data.size == frames * 64 * 64 * 3, "%d bytes of video, expected %d"
              % (data.size, frames * 64 * 64 * 3))
        check(data.std() > 1.0, "the generated video is flat")
        flags = [a for a in args if a.startswith("--") and a not in
                 ("--dit", "--wan", "--vae", "--lora", "--latent-size", "--quiet")]
        print("  %-12s %-36s flipbook generate: %d frames 64x64, pixel std %.1f"
              % (family, " ".join(flags) or "-", frames, data.std()))


CASES = {"names": case_names, "reader": case_reader, "self_forcing": case_self_forcing,
         "fsdp": case_fsdp, "causvid": case_causvid, "longlive": case_longlive,
         "taehv": case_taehv, "dtypes": case_dtypes, "errors": case_errors,
         "memory": case_memory, "engine": case_engine}


def main():
    if len(sys.argv) not in (3, 4) or sys.argv[1] not in CASES:
        print("usage: test_convert.py {%s} GOLDEN_DIR [FLIPBOOK_BINARY]" % ",".join(CASES))
        return 2
    case, golden_dir = sys.argv[1], sys.argv[2]
    extra = sys.argv[3:]
    if not os.path.isfile(os.path.join(golden_dir, "wan_dit.safetensors")):
        print("SKIP: no upstream golden files in %s" % golden_dir)
        return 77
    print("convert_%s" % case)
    with tempfile.TemporaryDirectory(prefix="flipbook-convert-") as tmp:
        try:
            CASES[case](golden_dir, tmp, *extra)
        except Fail as e:
            print("FAIL: %s" % e)
            return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
