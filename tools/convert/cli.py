"""The command line of tools/convert.py: gather the inputs of one family, check them, build
the config from the family's preset and the overrides, and stream the model file out."""
import argparse
import os
import sys
import time

import numpy as np

from . import ConvertError
from . import families as fam
from . import sources as src
from . import writer
from .presets import PRESETS, WAN_T2V_WARNING, engine_limits

import flipbook_ref.config as fbc

DTYPES = {"bf16": "BF16", "f16": "F16", "f32": "F32"}
F16_MAX = 65504.0

EPILOG = """examples (one per family; see docs/converting.md):
  convert.py self-forcing --wan Wan2.1-T2V-1.3B --dit self_forcing_dmd.pt --vae taew2_1.pth -o sf.safetensors
  convert.py causvid      --wan Wan2.1-T2V-1.3B --dit model.pt --vae taew2_1.pth -o causvid.safetensors
  convert.py longlive     --wan Wan2.1-T2V-1.3B --dit longlive_base.pt --lora lora.pt --vae taew2_1.pth -o longlive.safetensors
  convert.py wan-t2v      --wan Wan2.1-T2V-1.3B --vae taew2_1.pth -o wan-base.safetensors
"""


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="convert.py", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Convert published Wan2.1-T2V-1.3B causal checkpoints (Self-Forcing, "
                    "CausVid, LongLive) or the base model into one flipbook model file.")
    ap.add_argument("family", choices=sorted(PRESETS), help="checkpoint family (sets the preset)")
    ap.add_argument("-o", "--output", required=True, help="flipbook model file to write")
    g = ap.add_argument_group("inputs")
    g.add_argument("--wan", metavar="DIR", help="the Wan2.1-T2V-1.3B folder (config.json, "
                   "diffusion_pytorch_model.safetensors, models_t5_umt5-xxl-enc-bf16.pth, "
                   "google/umt5-xxl/spiece.model)")
    g.add_argument("--dit", metavar="FILE", help="generator checkpoint (.pt/.pth/.safetensors); "
                   "required except for wan-t2v, which reads the folder's DiT")
    g.add_argument("--dit-key", metavar="NAME", help="entry of the checkpoint dict that holds the "
                   "generator (default: generator_ema then generator for self-forcing, generator "
                   "for the others)")
    g.add_argument("--dit-config", metavar="FILE", help="Wan config.json (default: DIR/config.json)")
    g.add_argument("--num-heads", type=int, help="DiT attention heads when no config.json is given "
                   "(default dim/128)")
    g.add_argument("--lora", metavar="FILE", help="LoRA checkpoint to merge into the DiT (LongLive "
                   "lora.pt)")
    g.add_argument("--lora-key", metavar="NAME", help="entry holding the LoRA (default "
                   "generator_lora)")
    g.add_argument("--lora-scale", type=float, help="alpha/r of the LoRA (default: from the file, "
                   "else 1.0 as LongLive's rank 256 / alpha 256)")
    g.add_argument("--lora-alpha", type=float, help="LoRA alpha; the scale becomes alpha/rank")
    g.add_argument("--lora-adapter", metavar="NAME", help="PEFT adapter name when the file has "
                   "several")
    g.add_argument("--t5", metavar="FILE", help="umT5 encoder (default: "
                   "DIR/models_t5_umt5-xxl-enc-bf16.pth)")
    g.add_argument("--tokenizer", metavar="FILE", help="SentencePiece model (default: "
                   "DIR/google/umt5-xxl/spiece.model)")
    g.add_argument("--vae", metavar="FILE", required=False, help="TAEW2.1 decoder taew2_1.pth "
                   "or taew2_1.safetensors (github.com/madebyollin/taehv); required")
    g = ap.add_argument_group("output")
    g.add_argument("--dtype", choices=sorted(DTYPES), default="bf16",
                   help="DiT and text encoder dtype (default bf16, as upstream runs them)")
    g.add_argument("--vae-dtype", choices=sorted(DTYPES), default="f32",
                   help="decoder dtype (default f32: it is small, ~45 MB)")
    g.add_argument("--name", help="model name stored in the file (default: the preset's)")
    g.add_argument("--force", action="store_true", help="replace an existing output file")
    g.add_argument("--ignore-extra", action="store_true",
                   help="drop unknown extra tensors instead of refusing the checkpoint")
    g.add_argument("--dry-run", action="store_true",
                   help="check every input and print the plan and config; write nothing")
    g.add_argument("--quiet", action="store_true", help="no progress lines")
    g.add_argument("--debug", action="store_true", help="show Python tracebacks")
    g = ap.add_argument_group("config overrides (defaults come from the family preset)")
    g.add_argument("--shift", type=float, help="flow-matching timestep shift")
    g.add_argument("--steps", help="denoising steps, comma-separated, e.g. 1000,750,500,250")
    w = g.add_mutually_exclusive_group()
    w.add_argument("--warp", dest="warp", action="store_true", default=None,
                   help="map the steps through the shifted schedule (Self-Forcing's "
                   "warp_denoising_step)")
    w.add_argument("--no-warp", dest="warp", action="store_false",
                   help="feed the steps to the model as they are (CausVid)")
    g.add_argument("--chunk", type=int, help="latent frames per chunk")
    g.add_argument("--anchor", type=int, help="anchor (sink) frames kept forever")
    g.add_argument("--window", type=int, help="past frames kept besides the anchors (-1 = all)")
    g.add_argument("--positions", choices=("absolute", "window"),
                   help="RoPE positions: absolute frame index (upstream, bounded length) or "
                   "slot order (endless, LongLive's 'infinity' style)")
    g.add_argument("--latent-size", metavar="HxW", help="latent frame size (default 60x104 = "
                   "480x832 pixels)")
    g.add_argument("--fps", type=int, help="video frames per second (default 16)")
    return ap.parse_args(argv)


def note(msg, quiet=False):
    if not quiet:
        print("convert: " + msg, file=sys.stderr)


def warn(msg):
    print("convert: warning: " + msg, file=sys.stderr)


class Inputs:
    """Opened sources, closed together."""

    def __init__(self):
        self.sources = []

    def open(self, path):
        s = src.open_file(path)
        self.sources.append(s)
        return s

    def close(self):
        for s in self.sources:
            s.close()


def need_file(path, what, hint):
    if not path:
        raise ConvertError("no %s given: %s" % (what, hint))
    if not os.path.isfile(path):
        raise ConvertError("%s: %s not found%s" % (path, what,
                                                    "" if os.path.exists(path) else " (no such file)"))
    return path


def select_state(obj, keys, path, what, explicit=False):
    """The state dict inside a checkpoint object: obj[key] for the first key present, or obj
    itself when it is already name -> tensor."""
    if not isinstance(obj, dict):
        raise ConvertError("%s: the checkpoint holds %s, not a dict of tensors"
                           % (path, type(obj).__name__))
    for k in keys:
        if k in obj:
            v = obj[k]
            if not isinstance(v, dict):
                raise ConvertError("%s: entry %r is %s, not a state dict"
                                   % (path, k, type(v).__name__))
            if k != keys[0] and not explicit:
                note("%s: no %r entry, using %r" % (os.path.basename(path), keys[0], k))
            return v, k
    if explicit:
        raise ConvertError("%s: no entry %r; the file holds: %s"
                           % (path, keys[0], fam.listing(sorted(map(str, obj)))))
    if any(src.is_tensor(v) for v in obj.values()):
        return obj, None
    nested = [k for k, v in obj.items() if isinstance(v, dict) and
              any(src.is_tensor(x) for x in v.values())]
    if len(nested) == 1 and not keys:
        return obj[nested[0]], nested[0]
    want = " or ".join(repr(k) for k in keys) if keys else "a state dict"
    raise ConvertError("%s: %s: no %s in the file; it holds: %s%s"
                       % (path, what, want, fam.listing(sorted(map(str, obj))),
                          " (choose one with --dit-key / --lora-key)" if nested else ""))


def tensors_of(state, path, what):
    t, other = src.tensor_dict(state)
    if other:
        note("%s: ignoring %d non-tensor entr%s in the %s state dict: %s"
             % (os.path.basename(path), len(other), "y" if len(other) == 1 else "ies", what,
                fam.listing(sorted(other), 4)))
    return t


def open_wan_dit(inp, wan):
    single = os.path.join(wan, fam.WAN_FILES["dit"])
    index = os.path.join(wan, fam.WAN_FILES["dit_index"])
    if os.path.isfile(single):
        return inp.open(single).obj, single
    if os.path.isfile(index):
        import json
        try:
            with open(index) as f:
                wmap = json.load(f)["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConvertError("%s: cannot read the shard index (%s)" % (index, e))
        merged = {}
        for shard in sorted(set(wmap.values())):
            s = inp.open(os.path.join(wan, shard))
            merged.update(s.obj)
        missing = [k for k in wmap if k not in merged]
        if missing:
            raise ConvertError("%s: tensors listed in the index are in no shard: %s"
                               % (index, fam.listing(missing)))
        return merged, index
    raise ConvertError("%s: no %s in the Wan folder (needed by the wan-t2v preset, or pass --dit)"
                       % (wan, fam.WAN_FILES["dit"]))


def parse_latent_size(s):
    try:
        h, w = s.lower().split("x")
        h, w = int(h), int(w)
    except ValueError:
        raise ConvertError("--latent-size %r: expected HxW, e.g. 60x104" % s)
    if h < 1 or w < 1:
        raise ConvertError("--latent-size %r: sizes must be positive" % s)
    return h, w


def parse_steps(s):
    try:
        steps = [float(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise ConvertError("--steps %r: expected comma-separated numbers, e.g. 1000,750,500,250" % s)
    if not steps:
        raise ConvertError("--steps is empty")
    return [int(x) if x == int(x) else x for x in steps]


def read_tokenizer(path, vocab):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConvertError("%s: %s" % (path, e.strerror or e))
    if not data:
        raise ConvertError("%s: the tokenizer file is empty" % path)
    try:
        import sentencepiece as spm
    except ImportError:
        note("sentencepiece is not installed: the tokenizer is copied unchecked")
        return data
    sp = spm.SentencePieceProcessor()
    try:
        sp.LoadFromSerializedProto(data)
    except Exception as e:    # sentencepiece raises RuntimeError/OSError variants
        raise ConvertError("%s: not a SentencePiece model (%s)" % (path, str(e).strip()[:200]))
    if sp.GetPieceSize() > vocab:
        raise ConvertError("%s: the tokenizer has %d pieces but the text encoder's embedding has "
                           "only %d rows" % (path, sp.GetPieceSize(), vocab))
    if sp.eos_id() < 0:
        raise ConvertError("%s: the tokenizer has no EOS piece (the text encoder expects one)"
                           % path)
    return data


# ---- producers: each yields the output tensor's raw data in pieces ---------------------------

def _checked(name, x, dst):
    bad = src.finite_check(x, "F32")
    if bad:
        raise ConvertError("%s: %d NaN/Inf values: the checkpoint is corrupt" % (name, bad))
    if dst == "F16" and x.size and float(np.abs(x).max()) > F16_MAX:
        raise ConvertError("%s: values up to %.4g do not fit float16; use --dtype bf16 or f32"
                           % (name, float(np.abs(x).max())))
    return src.from_f32(x, dst)


def plain(name, t, dst):
    def produce():
        for _, slab in t.slabs(src.SLAB_BYTES):
            if t.dtype == dst:
                bad = src.finite_check(slab, t.dtype)
                if bad:
                    raise ConvertError("%s: %d NaN/Inf values: the checkpoint is corrupt"
                                       % (name, bad))
                yield slab
            else:
                yield _checked(name, src.to_f32(slab, t.dtype), dst)
    return produce


def lora_merged(name, w, a, b, scale, dst):
    """W + scale * B @ A, computed in float32."""
    def produce():
        x = src.to_f32(w.read(), w.dtype).copy()
        delta = np.matmul(src.to_f32(b.read(), b.dtype), src.to_f32(a.read(), a.dtype))
        x += np.float32(scale) * delta
        yield _checked(name, x, dst)
    return produce


def last_rows(name, t, rows, dst):
    def produce():
        x = src.to_f32(t.read(), t.dtype)[-rows:]
        yield _checked(name, np.ascontiguousarray(x), dst)
    return produce


def raw_bytes(data):
    def produce():
        yield np.frombuffer(data, dtype=np.uint8)
    return produce


# ---- the conversion ---------------------------------------------------------------------------

def build_config(a, preset, dit_c, t5_c, vae_c):
    sampler = dict(preset["sampler"])
    stream = dict(preset["stream"])
    if a.shift is not None:
        sampler["shift"] = a.shift
    if a.steps is not None:
        sampler["steps"] = parse_steps(a.steps)
    if a.warp is not None:
        sampler["warp"] = a.warp
    if a.chunk is not None:
        stream["chunk_frames"] = a.chunk
    if a.anchor is not None:
        stream["anchor_frames"] = a.anchor
    if a.window is not None:
        stream["window_frames"] = a.window
    if a.positions is not None:
        stream["positions"] = a.positions
    if a.latent_size is not None:
        stream["latent_height"], stream["latent_width"] = parse_latent_size(a.latent_size)
    if a.fps is not None:
        if a.fps < 1:
            raise ConvertError("--fps must be positive")
        stream["fps"] = a.fps
    if sampler["shift"] <= 0:
        raise ConvertError("--shift must be positive")
    try:
        cfg = fbc.ModelConfig(dit=dit_c, text_encoder=t5_c, vae=vae_c,
                              sampler=fbc.SamplerConfig(**sampler),
                              stream=fbc.StreamConfig(**stream))
        cfg.validate()
    except ValueError as e:
        raise ConvertError("config: %s" % e)
    why = engine_limits(cfg)
    if why:
        raise ConvertError("config: %s" % why)
    return cfg


def run(a):
    preset = PRESETS[a.family]
    t_start = time.monotonic()
    if not preset["causal"]:
        warn(WAN_T2V_WARNING)
    wan = a.wan
    if wan is not None and not os.path.isdir(wan):
        raise ConvertError("%s: --wan must be the Wan2.1-T2V-1.3B folder" % wan)

    def in_wan(key):
        return os.path.join(wan, fam.WAN_FILES[key]) if wan else None

    if preset["causal"] and not a.dit:
        raise ConvertError("the %s preset needs --dit: the generator checkpoint of %s"
                           % (a.family, preset["about"]))
    if a.family == "longlive" and not a.lora:
        warn("no --lora given: LongLive's published model is longlive_base.pt plus its "
             "lora.pt; the base alone is not what LongLive runs")
    vae_path = need_file(a.vae, "TAEW2.1 decoder",
                         "pass --vae taew2_1.pth (or taew2_1.safetensors) from madebyollin/taehv")
    t5_path = need_file(a.t5 or in_wan("t5"), "umT5 text encoder",
                        "pass --wan DIR (the Wan2.1-T2V-1.3B folder) or --t5 FILE")
    tok_path = need_file(a.tokenizer or in_wan("tokenizer"), "tokenizer",
                         "pass --wan DIR or --tokenizer spiece.model")
    cfg_path = a.dit_config or (in_wan("config") if wan and os.path.isfile(in_wan("config"))
                                else None)
    if a.dit_config:
        need_file(a.dit_config, "DiT config", "")
    if a.lora:
        need_file(a.lora, "LoRA checkpoint", "")
    out_dtype, vae_dtype = DTYPES[a.dtype], DTYPES[a.vae_dtype]
    if os.path.exists(a.output) and not a.force and not a.dry_run:
        raise ConvertError("%s already exists (pass --force to replace it)" % a.output)

    inp = Inputs()
    try:
        entries = []
        # DiT
        if a.dit:
            dit_path = need_file(a.dit, "DiT checkpoint", "")
            keys = (a.dit_key,) if a.dit_key else tuple(preset["dit_keys"])
            state, key = select_state(inp.open(dit_path).obj, keys, dit_path, "DiT",
                                      explicit=bool(a.dit_key))
        else:
            if not wan:
                raise ConvertError("no DiT: pass --wan DIR (base model) or --dit FILE")
            state, dit_path = open_wan_dit(inp, wan)
            key = None
        dit_label = os.path.basename(dit_path) + ("[%s]" % key if key else "")
        dit_t = tensors_of(state, dit_path, "DiT")
        fam.refuse_other_namings(dit_t, dit_path)
        dit_t, prefix = fam.strip_prefix(dit_t, fam.DIT_ANCHORS, "DiT", dit_path)
        json_cfg = fam.read_wan_config(cfg_path) if cfg_path else None
        dit_c = fam.dit_config(dit_t, dit_path, json_cfg, a.num_heads)
        dit_x = fam.dit_expected(dit_c)
        extra = fam.check_tensors(dit_t, dit_x, "DiT (%d layers)" % dit_c.num_layers, dit_path,
                                  a.ignore_extra)
        if extra:
            warn("%s: dropping %d unknown tensor(s): %s" % (dit_label, len(extra),
                                                            fam.listing(extra)))
        if not preset["causal"] and key is not None:
            warn("%s: a generator checkpoint with the wan-t2v preset: if it is causal-distilled, "
                 "use its own family's preset" % dit_label)

        # LoRA
        lora = {}
        scale = None
        if a.lora:
            lkey = a.lora_key or preset.get("lora_key", "generator_lora")
            lobj = inp.open(a.lora).obj
            lstate, _ = select_state(lobj, (lkey,), a.lora, "LoRA", explicit=bool(a.lora_key))
            lora = fam.lora_plan(tensors_of(lstate, a.lora, "LoRA"), dit_x, a.lora,
                                 a.lora_adapter, a.ignore_extra)
            file_scale = fam.lora_scale_from_file(lobj) if isinstance(lobj, dict) else None
            ranks = sorted({ab[0].shape[0] for ab in lora.values()})
            if a.lora_scale is not None and a.lora_alpha is not None:
                raise ConvertError("give --lora-scale or --lora-alpha, not both")
            if a.lora_scale is not None:
                scale = a.lora_scale
            elif a.lora_alpha is not None:
                if len(ranks) != 1:
                    raise ConvertError("--lora-alpha: the LoRA mixes ranks %s; pass --lora-scale"
                                       % ranks)
                scale = a.lora_alpha / ranks[0]
            elif file_scale is not None:
                scale = file_scale
            else:
                scale = 1.0
            note("LoRA %s: %d weights, rank %s, scale alpha/r = %g%s" % (
                os.path.basename(a.lora), len(lora), "/".join(map(str, ranks)), scale,
                "" if (a.lora_scale is not None or a.lora_alpha is not None or file_scale)
                else " (default; the file does not record alpha)"))
        for n, shape in dit_x.items():
            name = "dit." + n
            if n in lora:
                A, B = lora[n]
                entries.append(writer.Entry(name, out_dtype, shape,
                                            lora_merged(name, dit_t[n], A, B, scale, out_dtype),
                                            dit_label + " + LoRA"))
            else:
                entries.append(writer.Entry(name, out_dtype, shape,
                                            plain(name, dit_t[n], out_dtype), dit_label))

        # text encoder
        t5_state, _ = select_state(inp.open(t5_path).obj, (), t5_path, "text encoder")
        t5_t = tensors_of(t5_state, t5_path, "text encoder")
        t5_t, _ = fam.strip_prefix(t5_t, fam.T5_ANCHORS, "text encoder", t5_path)
        t5_c = fam.t5_config(t5_t, t5_path, dit_c.text_len)
        t5_x = fam.t5_expected(t5_c)
        extra = fam.check_tensors(t5_t, t5_x, "text encoder (%d layers)" % t5_c.num_layers,
                                  t5_path, a.ignore_extra)
        if extra:
            warn("%s: dropping %d unknown tensor(s): %s" % (os.path.basename(t5_path), len(extra),
                                                            fam.listing(extra)))
        if t5_c.dim != dit_c.text_dim:
            raise ConvertError("%s: the text encoder's width %d does not match the DiT's text_dim "
                               "%d: these files are not one model" % (t5_path, t5_c.dim,
                                                                      dit_c.text_dim))
        for n, shape in t5_x.items():
            name = "text_encoder." + n
            entries.append(writer.Entry(name, out_dtype, shape, plain(name, t5_t[n], out_dtype),
                                        os.path.basename(t5_path)))

        # tokenizer
        tok = read_tokenizer(tok_path, t5_c.vocab)
        tok_name = fbc.TokenizerConfig().tensor
        entries.append(writer.Entry(tok_name, "U8", (len(tok),), raw_bytes(tok),
                                    os.path.basename(tok_path)))

        # decoder
        vae_state, _ = select_state(inp.open(vae_path).obj, (), vae_path, "decoder")
        vae_t = tensors_of(vae_state, vae_path, "decoder")
        vae_t, _ = fam.strip_prefix(vae_t, fam.VAE_ANCHORS, "decoder", vae_path)
        vae_c = fam.vae_config(vae_t, vae_path)
        vae_x = fam.vae_expected(vae_c)
        fix = fam.tgrow_fixups(vae_c)
        extra = fam.check_tensors(vae_t, vae_x, "decoder (TAEHV)", vae_path, a.ignore_extra,
                                  {n: ok for n, (_, ok) in fix.items()})
        if extra:
            warn("%s: dropping %d unknown tensor(s): %s" % (os.path.basename(vae_path), len(extra),
                                                            fam.listing(extra)))
        if vae_c.latent_channels != dit_c.out_dim or dit_c.in_dim != dit_c.out_dim:
            raise ConvertError("%s: the decoder takes %d latent channels but the DiT makes %d "
                               "(in_dim %d): these files are not one model"
                               % (vae_path, vae_c.latent_channels, dit_c.out_dim, dit_c.in_dim))
        for n, shape in vae_x.items():
            name = "vae." + n
            t = vae_t[n]
            if tuple(t.shape) != tuple(shape):
                note("%s: %s has %d rows; keeping the last %d (as taehv.py loads it)"
                     % (os.path.basename(vae_path), n, t.shape[0], shape[0]))
                entries.append(writer.Entry(name, vae_dtype, shape,
                                            last_rows(name, t, shape[0], vae_dtype),
                                            os.path.basename(vae_path)))
            else:
                entries.append(writer.Entry(name, vae_dtype, shape, plain(name, t, vae_dtype),
                                            os.path.basename(vae_path)))

        cfg = build_config(a, preset, dit_c, t5_c, vae_c)
        name = a.name or preset["name"]
        meta = {"flipbook.format": "1", "flipbook.config": cfg.to_json(), "flipbook.name": name}
        summary(a, preset, cfg, entries, dit_label, dit_c, t5_c, t5_path, vae_path, tok_path,
                prefix)
        if a.dry_run:
            print("convert: dry run: inputs check out; nothing written")
            return 0
        total, secs = writer.write(a.output, entries, meta, force=a.force, quiet=a.quiet)
        print("convert: wrote %s: %d tensors, %s in %s (%s/s); total %s" % (
            a.output, len(entries), writer.human(total), writer.clock(secs),
            writer.human(total / secs if secs > 0 else 0),
            writer.clock(time.monotonic() - t_start)))
        return 0
    finally:
        inp.close()


def summary(a, preset, cfg, entries, dit_label, dit_c, t5_c, t5_path, vae_path, tok_path,
            prefix):
    def part(p):
        es = [e for e in entries if e.name.startswith(p)]
        return len(es), sum(e.nbytes for e in es)

    q = a.quiet
    n, b = part("dit.")
    note("DiT %s: %d tensors (%d layers, dim %d, %d heads%s) -> %s %s"
         % (dit_label, n, dit_c.num_layers, dit_c.dim, dit_c.num_heads,
            ", prefix %r stripped" % prefix if prefix else "", a.dtype, writer.human(b)), q)
    n, b = part("text_encoder.")
    note("text encoder %s: %d tensors (%d layers, dim %d, vocab %d) -> %s %s"
         % (os.path.basename(t5_path), n, t5_c.num_layers, t5_c.dim, t5_c.vocab, a.dtype,
            writer.human(b)), q)
    n, b = part("vae.")
    note("decoder %s: %d tensors (widths %s, latent %d) -> %s %s"
         % (os.path.basename(vae_path), n, cfg.vae.decoder_channels, cfg.vae.latent_channels,
            a.vae_dtype, writer.human(b)), q)
    note("tokenizer %s: %s" % (os.path.basename(tok_path), writer.human(part("tokenizer")[1])), q)
    s, st = cfg.sampler, cfg.stream
    note("preset %s: shift %g, steps %s%s; chunk %d, anchor %d, window %d, positions %s, "
         "latent %dx%d, %d fps" % (a.family, s.shift, ",".join("%g" % x for x in s.steps),
                                   " warped" if s.warp else "", st.chunk_frames, st.anchor_frames,
                                   st.window_frames, st.positions, st.latent_height,
                                   st.latent_width, st.fps), q)
    note("output %s: %d tensors, %s" % (a.output, len(entries),
                                        writer.human(sum(e.nbytes for e in entries))), q)


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(a)
    except ConvertError as e:
        print("convert: error: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("convert: interrupted; nothing written", file=sys.stderr)
        return 130
    except MemoryError:
        print("convert: error: out of memory", file=sys.stderr)
        return 1
    except OSError as e:
        if a.debug:
            raise
        print("convert: error: %s" % e, file=sys.stderr)
        return 1
    except Exception as e:   # a bug, not bad input: say so briefly unless --debug
        if a.debug:
            raise
        print("convert: internal error: %s: %s (run with --debug for the traceback)"
              % (type(e).__name__, e), file=sys.stderr)
        return 3
