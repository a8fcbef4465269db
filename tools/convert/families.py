"""What each component must contain, configs read from shapes, and the LongLive LoRA merge.

The expected tensor lists are generated from the config (825 DiT tensors for Wan2.1-T2V-1.3B's
30 layers; 242 for the 24-layer umT5-XXL encoder; 128 for TAEW2.1), so any size of the family
converts, and a checkpoint that lacks a tensor, has one of the wrong shape or carries unknown
extras is refused with the names listed. Names are the upstream module paths (Wan2.1 WanModel,
Wan2.1 T5Encoder, taehv.py), the same the reference model tools/flipbook_ref uses.
"""
import json
import os
import re
from collections import OrderedDict

from . import ConvertError

import flipbook_ref.config as fbc

# Wrappers that FSDP, activation checkpointing and torch.compile put into parameter names.
WRAPPERS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def unwrap(name):
    for w in WRAPPERS:
        name = name.replace(w, "")
    return name


def listing(names, limit=8):
    names = list(names)
    s = ", ".join(names[:limit])
    if len(names) > limit:
        s += ", ... (%d more)" % (len(names) - limit)
    return s


def strip_prefix(tensors, anchors, what, path):
    """Removes wrapper segments and the common prefix (e.g. "model." of a WanDiffusionWrapper
    state dict) found in front of the first anchor name present. Returns (clean name ->
    tensor, prefix)."""
    clean = OrderedDict()
    for k, v in tensors.items():
        u = unwrap(k)
        if u in clean:
            raise ConvertError("%s: %s: two tensors become %s once the FSDP/compile wrapper names "
                               "are removed" % (path, what, u))
        clean[u] = v
    prefix = None
    for a in anchors:
        hits = [k for k in clean if k == a or k.endswith("." + a)]
        if hits:
            prefix = min(hits, key=len)[:-len(a)]
            break
    if prefix is None:
        return clean, ""
    out = OrderedDict()
    for k, v in clean.items():
        out[k[len(prefix):] if k.startswith(prefix) else k] = v
    return out, prefix


def check_tensors(got, expected, what, path, ignore_extra=False, fixups=None):
    """got: name -> LazyTensor, expected: name -> shape. Raises on missing tensors, wrong
    shapes, non-float dtypes and (unless ignore_extra) unknown names. fixups: name ->
    function(shape) -> bool for shapes that a later step repairs. Returns the extra names."""
    missing = [n for n in expected if n not in got]
    extra = [n for n in got if n not in expected]
    bad = []
    for n, shape in expected.items():
        t = got.get(n)
        if t is None:
            continue
        if tuple(t.shape) != tuple(shape) and not (fixups and n in fixups and fixups[n](t.shape)):
            bad.append("%s: expected %s, file has %s" % (n, list(shape), list(t.shape)))
        elif t.dtype not in ("F32", "F16", "BF16", "F64"):
            bad.append("%s: dtype %s is not a floating-point type" % (n, t.dtype))
    msgs = []
    if missing:
        msgs.append("%d missing tensor(s): %s" % (len(missing), listing(missing)))
    if bad:
        msgs.append("%d tensor(s) with the wrong shape or dtype: %s" % (len(bad), listing(bad, 5)))
    if extra and not ignore_extra:
        msgs.append("%d unknown extra tensor(s): %s (pass --ignore-extra to drop them)"
                    % (len(extra), listing(extra)))
    if msgs:
        raise ConvertError("%s: %s (%d expected): %s" % (path, what, len(expected),
                                                          "; ".join(msgs)))
    return extra


def _block_count(names, pattern):
    idx = [int(m.group(1)) for m in (re.match(pattern, n) for n in names) if m]
    return max(idx) + 1 if idx else 0


def _shape(tensors, name, what, path):
    t = tensors.get(name)
    if t is None:
        raise ConvertError("%s: %s: missing tensor %s (needed to read the model's size); the "
                           "file holds: %s" % (path, what, name, listing(sorted(tensors))))
    return tuple(t.shape)


# ---- DiT (Wan2.1 WanModel) ----------------------------------------------------------------

DIT_ANCHORS = ("patch_embedding.weight", "head.head.weight", "blocks.0.self_attn.q.weight")


def dit_expected(c):
    d, pt = c.dim, c.patch_size
    out = OrderedDict()
    out["patch_embedding.weight"] = (d, c.in_dim) + tuple(pt)
    out["patch_embedding.bias"] = (d,)
    out["text_embedding.0.weight"] = (d, c.text_dim)
    out["text_embedding.0.bias"] = (d,)
    out["text_embedding.2.weight"] = (d, d)
    out["text_embedding.2.bias"] = (d,)
    out["time_embedding.0.weight"] = (d, c.freq_dim)
    out["time_embedding.0.bias"] = (d,)
    out["time_embedding.2.weight"] = (d, d)
    out["time_embedding.2.bias"] = (d,)
    out["time_projection.1.weight"] = (6 * d, d)
    out["time_projection.1.bias"] = (6 * d,)
    for i in range(c.num_layers):
        b = "blocks.%d." % i
        out[b + "modulation"] = (1, 6, d)
        for att in ("self_attn", "cross_attn"):
            if att == "cross_attn" and c.cross_attn_norm:
                out[b + "norm3.weight"] = (d,)
                out[b + "norm3.bias"] = (d,)
            for p in "qkvo":
                out[b + "%s.%s.weight" % (att, p)] = (d, d)
                out[b + "%s.%s.bias" % (att, p)] = (d,)
            if c.qk_norm:
                out[b + att + ".norm_q.weight"] = (d,)
                out[b + att + ".norm_k.weight"] = (d,)
        out[b + "ffn.0.weight"] = (c.ffn_dim, d)
        out[b + "ffn.0.bias"] = (c.ffn_dim,)
        out[b + "ffn.2.weight"] = (d, c.ffn_dim)
        out[b + "ffn.2.bias"] = (d,)
    out["head.modulation"] = (1, 2, d)
    out["head.head.weight"] = (c.out_dim * pt[0] * pt[1] * pt[2], d)
    out["head.head.bias"] = (c.out_dim * pt[0] * pt[1] * pt[2],)
    return out


def refuse_other_namings(names, path):
    if any(n.startswith(("condition_embedder.", "scale_shift_table", "proj_out.")) or ".attn1." in n
           for n in names):
        raise ConvertError("%s: this is a Diffusers-format Wan checkpoint (condition_embedder, "
                           "attn1, ...). Use the original-name files: "
                           "Wan-AI/Wan2.1-T2V-1.3B diffusion_pytorch_model.safetensors, not the "
                           "-Diffusers repository" % path)
    if any(n.startswith("img_emb.") for n in names):
        raise ConvertError("%s: an image-to-video Wan checkpoint (img_emb.*): only text-to-video "
                           "models are supported" % path)


def read_wan_config(path):
    """The Wan config.json (Hugging Face repository) as DiTConfig field values."""
    try:
        with open(path) as f:
            j = json.load(f)
    except OSError as e:
        raise ConvertError("%s: %s" % (path, e.strerror or e))
    except ValueError as e:
        raise ConvertError("%s: not valid JSON (%s)" % (path, e))
    if not isinstance(j, dict):
        raise ConvertError("%s: expected a JSON object" % path)
    if j.get("model_type", "t2v") != "t2v":
        raise ConvertError("%s: model_type %r: only text-to-video (t2v) models are supported"
                           % (path, j.get("model_type")))
    if j.get("window_size", [-1, -1]) not in ([-1, -1], (-1, -1)):
        raise ConvertError("%s: window_size %s: local attention windows are not supported"
                           % (path, j.get("window_size")))
    fields = {f for f in fbc.DiTConfig.__dataclass_fields__}
    out = {k: v for k, v in j.items() if k in fields}
    if "patch_size" in out:
        out["patch_size"] = list(out["patch_size"])
    return out


def dit_config(tensors, path, json_cfg=None, num_heads=None):
    """DiTConfig from the tensor shapes, checked against config.json values when given."""
    what = "DiT"
    pe = _shape(tensors, "patch_embedding.weight", what, path)
    if len(pe) != 5:
        raise ConvertError("%s: patch_embedding.weight has shape %s, expected 5 dimensions "
                           "[dim, in_dim, pt, ph, pw]" % (path, list(pe)))
    dim, in_dim, patch = pe[0], pe[1], list(pe[2:])
    hh = _shape(tensors, "head.head.weight", what, path)
    npatch = patch[0] * patch[1] * patch[2]
    if hh[0] % npatch:
        raise ConvertError("%s: head.head.weight has %d rows, not a multiple of the patch size %s"
                           % (path, hh[0], patch))
    te = _shape(tensors, "text_embedding.0.weight", what, path)
    tm = _shape(tensors, "time_embedding.0.weight", what, path)
    ff = _shape(tensors, "blocks.0.ffn.0.weight", what, path)
    inferred = dict(patch_size=patch, in_dim=in_dim, out_dim=hh[0] // npatch, dim=dim,
                    ffn_dim=ff[0], freq_dim=tm[1], text_dim=te[1],
                    num_layers=_block_count(tensors, r"blocks\.(\d+)\."),
                    qk_norm="blocks.0.self_attn.norm_q.weight" in tensors,
                    cross_attn_norm="blocks.0.norm3.weight" in tensors)
    vals = dict(inferred)
    if json_cfg:
        for k, v in json_cfg.items():
            if k in inferred and inferred[k] != v:
                raise ConvertError("%s: config.json says %s = %s but the weights have %s"
                                   % (path, k, v, inferred[k]))
            vals[k] = v
    if num_heads is not None:
        if json_cfg and "num_heads" in json_cfg and json_cfg["num_heads"] != num_heads:
            raise ConvertError("--num-heads %d disagrees with config.json (%d)"
                               % (num_heads, json_cfg["num_heads"]))
        vals["num_heads"] = num_heads
    elif "num_heads" not in vals:
        # Head count cannot be read from shapes; every Wan2.1 size uses 128-wide heads.
        if dim % 128:
            raise ConvertError("%s: the DiT head count cannot be read from the weights (dim %d); "
                               "pass --num-heads or the model's config.json (--dit-config)"
                               % (path, dim))
        vals["num_heads"] = dim // 128
    try:
        c = fbc.DiTConfig(**vals)
        c.validate()
    except (TypeError, ValueError) as e:
        raise ConvertError("%s: DiT config: %s" % (path, e))
    return c


# ---- text encoder (Wan2.1 umT5 T5Encoder) ---------------------------------------------------

T5_ANCHORS = ("token_embedding.weight", "blocks.0.attn.q.weight")


def t5_expected(c):
    out = OrderedDict()
    out["token_embedding.weight"] = (c.vocab, c.dim)
    if c.shared_pos:
        out["pos_embedding.embedding.weight"] = (c.num_buckets, c.num_heads)
    for i in range(c.num_layers):
        b = "blocks.%d." % i
        out[b + "norm1.weight"] = (c.dim,)
        for p in "qkv":
            out[b + "attn.%s.weight" % p] = (c.dim_attn, c.dim)
        out[b + "attn.o.weight"] = (c.dim, c.dim_attn)
        out[b + "norm2.weight"] = (c.dim,)
        out[b + "ffn.gate.0.weight"] = (c.dim_ffn, c.dim)
        out[b + "ffn.fc1.weight"] = (c.dim_ffn, c.dim)
        out[b + "ffn.fc2.weight"] = (c.dim, c.dim_ffn)
        if not c.shared_pos:
            out[b + "pos_embedding.embedding.weight"] = (c.num_buckets, c.num_heads)
    out["norm.weight"] = (c.dim,)
    return out


def t5_config(tensors, path, max_tokens):
    if any(n.startswith(("encoder.block.", "shared.")) for n in tensors):
        raise ConvertError("%s: a Hugging Face transformers T5/umT5 checkpoint; use Wan2.1's "
                           "models_t5_umt5-xxl-enc-bf16.pth (Wan T5Encoder names)" % path)
    what = "text encoder"
    emb = _shape(tensors, "token_embedding.weight", what, path)
    q = _shape(tensors, "blocks.0.attn.q.weight", what, path)
    fc1 = _shape(tensors, "blocks.0.ffn.fc1.weight", what, path)
    shared = "pos_embedding.embedding.weight" in tensors
    pos = _shape(tensors, "pos_embedding.embedding.weight" if shared else
                 "blocks.0.pos_embedding.embedding.weight", what, path)
    try:
        c = fbc.TextEncoderConfig(vocab=emb[0], dim=emb[1], dim_attn=q[0], dim_ffn=fc1[0],
                                  num_heads=pos[1], num_buckets=pos[0],
                                  num_layers=_block_count(tensors, r"blocks\.(\d+)\."),
                                  shared_pos=shared, max_tokens=max_tokens)
        c.validate()
    except (TypeError, ValueError) as e:
        raise ConvertError("%s: text encoder config: %s" % (path, e))
    return c


# ---- TAEHV / TAEW2.1 ------------------------------------------------------------------------

VAE_ANCHORS = ("decoder.1.weight", "encoder.0.weight")
TGROW = (7, 13, 19)


def vae_expected(c):
    out = OrderedDict()
    p2 = c.patch_size * c.patch_size
    n = c.encoder_channels

    def conv(name, o, i, k=3, bias=True):
        out[name + ".weight"] = (o, i, k, k)
        if bias:
            out[name + ".bias"] = (o,)

    def mem(name, ch):
        conv(name + ".conv.0", ch, 2 * ch)
        conv(name + ".conv.2", ch, ch)
        conv(name + ".conv.4", ch, ch)

    conv("encoder.0", n, c.image_channels * p2)
    i = 2
    for down in c.encoder_time_downscale:
        s = 2 if down else 1
        conv("encoder.%d.conv" % i, n, n * s, 1, bias=False)
        conv("encoder.%d" % (i + 1), n, n, bias=False)
        for j in range(3):
            mem("encoder.%d" % (i + 2 + j), n)
        i += 5
    conv("encoder.%d" % i, c.latent_channels, n)
    nf = c.decoder_channels
    conv("decoder.1", nf[0], c.latent_channels)
    i = 3
    for k in range(3):
        for j in range(3):
            mem("decoder.%d" % (i + j), nf[k])
        s = 2 if c.decoder_time_upscale[k] else 1
        conv("decoder.%d.conv" % (i + 4), nf[k] * s, nf[k], 1, bias=False)
        conv("decoder.%d" % (i + 5), nf[k + 1], nf[k], bias=False)
        i += 6
    conv("decoder.%d" % (i + 1), c.image_channels * p2, nf[3])
    return out


def vae_config(tensors, path, base=None):
    """VAEConfig: widths and channels from the shapes; time/space up- and downscale flags and
    frames_to_trim are TAEW2.1's (they cannot be read from shapes)."""
    what = "decoder (TAEHV)"
    d1 = _shape(tensors, "decoder.1.weight", what, path)
    widths = [d1[0]] + [_shape(tensors, "decoder.%d.weight" % i, what, path)[0]
                        for i in (8, 14, 20)]
    last = _shape(tensors, "decoder.22.weight", what, path)
    e0 = _shape(tensors, "encoder.0.weight", what, path)
    img = 3
    p2 = last[0] // img
    p = int(round(p2 ** 0.5))
    if p * p * img != last[0]:
        raise ConvertError("%s: decoder.22.weight has %d output channels: not 3 x a square patch"
                           % (path, last[0]))
    down = []
    for i in (2, 7, 12):
        s = _shape(tensors, "encoder.%d.conv.weight" % i, what, path)
        down.append(s[1] == 2 * s[0])
    kw = dict(base or {})
    kw.update(latent_channels=d1[1], image_channels=img, decoder_channels=widths,
              encoder_channels=e0[0], encoder_time_downscale=down, patch_size=p)
    try:
        c = fbc.VAEConfig(**kw)
        c.validate()
    except (TypeError, ValueError) as e:
        raise ConvertError("%s: decoder config: %s" % (path, e))
    return c


def tgrow_fixups(c):
    """TAEW2.1 checkpoints may store a TGrow weight with more output rows than the decoder
    uses (a stride-2 layer whose first-frame half the decoder drops); keep the LAST rows, as
    taehv.py does when it loads them."""
    fix = {}
    for k, i in enumerate(TGROW):
        rows = c.decoder_channels[k] * (2 if c.decoder_time_upscale[k] else 1)
        n = c.decoder_channels[k]

        def ok(shape, rows=rows, n=n):
            return len(shape) == 4 and shape[0] > rows and shape[0] % n == 0 and \
                tuple(shape[1:]) == (n, 1, 1)
        fix["decoder.%d.conv.weight" % i] = (rows, ok)
    return fix


# ---- LoRA (PEFT, LongLive) ------------------------------------------------------------------

_LORA_KEY = re.compile(r"^(?P<mod>.+)\.lora_(?P<ab>[AB])(?:\.(?P<ad>[^.]+))?\.weight$")


def lora_scale_from_file(other):
    """alpha / r if the LoRA checkpoint records them (top level or a config dict), else None."""
    cands = [other] + [v for k, v in other.items()
                       if k in ("lora_config", "peft_config", "config") and isinstance(v, dict)]
    for d in cands:
        alpha = d.get("lora_alpha", d.get("alpha"))
        r = d.get("r", d.get("rank"))
        if isinstance(alpha, (int, float)) and isinstance(r, int) and r > 0:
            return float(alpha) / r
    return None


def lora_plan(tensors, dit_shapes, path, adapter=None, ignore_extra=False):
    """Pairs the LoRA factors with the DiT weights they update.

    Returns target weight name -> (A, B). Keys look like
    base_model.model.blocks.3.self_attn.q.lora_A.weight (or with ".default" before .weight);
    A is [r, in], B is [out, r] for a weight [out, in]."""
    found = {}
    unknown = []
    adapters = set()
    for k, t in tensors.items():
        u = unwrap(k)
        m = _LORA_KEY.match(u)
        if not m:
            unknown.append(k)
            continue
        mod = m.group("mod")
        for pre in ("base_model.model.", "model."):
            if mod.startswith(pre) and mod + ".weight" not in dit_shapes:
                mod = mod[len(pre):]
        ad = m.group("ad") or ""
        adapters.add(ad)
        found.setdefault((mod, ad), {})[m.group("ab")] = (k, t)
    if unknown and not ignore_extra:
        raise ConvertError("%s: %d entries that are not LoRA factors (*.lora_A.weight / "
                           "*.lora_B.weight): %s (pass --ignore-extra to drop them)"
                           % (path, len(unknown), listing(unknown)))
    if not found:
        raise ConvertError("%s: no LoRA factors (*.lora_A.weight / *.lora_B.weight) found" % path)
    if adapter is None:
        if len(adapters) > 1:
            raise ConvertError("%s: several LoRA adapters (%s): choose one with --lora-adapter"
                               % (path, ", ".join(sorted(a or "(unnamed)" for a in adapters))))
        adapter = next(iter(adapters))
    elif adapter not in adapters:
        raise ConvertError("%s: no LoRA adapter named %r (the file has %s)" % (
            path, adapter, ", ".join(sorted(a or "(unnamed)" for a in adapters))))
    plan = OrderedDict()
    missing_mod, bad = [], []
    for (mod, ad), ab in sorted(found.items()):
        if ad != adapter:
            continue
        target = mod + ".weight"
        if "A" not in ab or "B" not in ab:
            have = "A" if "A" in ab else "B"
            bad.append("%s: lora_%s without lora_%s" % (mod, have, "B" if have == "A" else "A"))
            continue
        shape = dit_shapes.get(target)
        if shape is None:
            missing_mod.append("%s (from %s)" % (mod, ab["A"][0]))
            continue
        (ka, A), (kb, B) = ab["A"], ab["B"]
        if len(shape) != 2 or len(A.shape) != 2 or len(B.shape) != 2 or \
                A.shape[1] != shape[1] or B.shape[0] != shape[0] or A.shape[0] != B.shape[1]:
            bad.append("%s: A %s and B %s do not factor a %s weight"
                       % (mod, list(A.shape), list(B.shape), list(shape)))
            continue
        for key, t in ((ka, A), (kb, B)):
            if t.dtype not in ("F32", "F16", "BF16", "F64"):
                bad.append("%s: dtype %s" % (key, t.dtype))
        plan[target] = (A, B)
    msgs = []
    if missing_mod:
        msgs.append("%d LoRA module(s) the DiT does not have: %s"
                    % (len(missing_mod), listing(missing_mod, 5)))
    if bad:
        msgs.append("%d malformed LoRA pair(s): %s" % (len(bad), listing(bad, 5)))
    if msgs:
        raise ConvertError("%s: %s" % (path, "; ".join(msgs)))
    return plan


# ---- inputs in a Wan2.1 repository folder ---------------------------------------------------

WAN_FILES = {
    "dit": "diffusion_pytorch_model.safetensors",
    "dit_index": "diffusion_pytorch_model.safetensors.index.json",
    "config": "config.json",
    "t5": "models_t5_umt5-xxl-enc-bf16.pth",
    "tokenizer": os.path.join("google", "umt5-xxl", "spiece.model"),
}
