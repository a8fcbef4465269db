"""Tiny fake checkpoints in the upstream layouts, built from the upstream golden weights.

No real checkpoint is available to the tests (they are gigabytes), so each layout the converter
reads is reproduced at golden size:

    wan folder       config.json, diffusion_pytorch_model.safetensors (bare Wan names),
                     models_t5_umt5-xxl-enc-bf16.pth (Wan T5Encoder names, a plain dict),
                     google/umt5-xxl/spiece.model (a small trained SentencePiece model)
    Self-Forcing     {"generator_ema": {"model." + name: tensor}, "generator": decoy}
    CausVid          {"generator": ..., "critic": decoy}
    LongLive         {"generator": base} and {"generator_lora": {PEFT keys}, "critic_lora",
                     "step"}
    TAEW2.1          taew2_1.pth / .safetensors, weights from the documented hash generator

The DiT is the wan_dit golden (4 latent channels) and the text encoder the umt5 golden; their
decoder is a small TAEHV with 4 latent channels. The real-shape TAEHV golden (16 channels) is
paired with a random 16-channel DiT.
"""
import collections
import json
import os

import torch

from flipbook_ref import hashweights, st
from flipbook_ref.config import DiTConfig, VAEConfig
from flipbook_ref.dit import WanDiT
from flipbook_ref.taehv import TAEHV
from flipbook_ref.tokenizer import train_tiny

LORA_MODULES = ["self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
                "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2"]


def golden(golden_dir, case):
    t, meta = st.load(os.path.join(golden_dir, case + ".safetensors"))
    w = collections.OrderedDict((k[len("weight."):], v) for k, v in sorted(t.items())
                                if k.startswith("weight."))
    return t, meta, w


def tokenizer_bytes(vocab=60):
    words = ["a", "red", "ball", "rolls", "over", "the", "green", "hill", "blue", "sky", "cat",
             "sits", "on", "mat", "slowly", "fast", "river", "flows", "under", "bridge"]
    sents = [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(6)) for i in range(200)]
    return train_tiny(sents, vocab)


def hash_vae(cfg, e=3, decoy_tgrow_rows=0):
    """A TAEHV state dict from the hash generator; with decoy_tgrow_rows, decoder.7's TGrow
    weight gets that many extra leading rows (the part the decoder must drop)."""
    shapes = {k: tuple(v.shape) for k, v in TAEHV(cfg).state_dict().items()}
    sd = collections.OrderedDict()
    for name, shape in shapes.items():
        sd[name] = torch.from_numpy(hashweights.generate(name, shape, e, 0.0))
    if decoy_tgrow_rows:
        k = "decoder.7.conv.weight"
        decoy = torch.full((decoy_tgrow_rows,) + shapes[k][1:], 7.0)
        sd[k] = torch.cat([decoy, sd[k]], 0)
    return sd


def taehv_golden_weights(golden_dir):
    t, meta = st.load(os.path.join(golden_dir, "taehv.safetensors"))
    gen = json.loads(meta["weight_generator"])
    shapes = json.loads(meta["weight_shapes"])
    sd = collections.OrderedDict()
    for name, shape in shapes.items():
        e, off = gen[name]
        sd[name] = torch.from_numpy(hashweights.generate(name, shape, e, off))
    return t, meta, sd


def small_vae_cfg(latent):
    return VAEConfig(latent_channels=latent, decoder_channels=[16, 8, 8, 8], encoder_channels=8)


def wan_config_json(meta):
    """config.json as the Wan2.1 Hugging Face repository has it, for the golden config."""
    c = json.loads(meta["config"])
    keep = ["dim", "eps", "ffn_dim", "freq_dim", "in_dim", "model_type", "num_heads",
            "num_layers", "out_dim", "text_len"]
    j = {"_class_name": "WanModel", "_diffusers_version": "0.30.0"}
    j.update({k: c[k] for k in keep})
    return j


def write_wan_folder(folder, dit_weights, dit_meta, t5_weights, t5_dtype=torch.float32,
                     tok=None):
    os.makedirs(os.path.join(folder, "google", "umt5-xxl"), exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(wan_config_json(dit_meta), f)
    st.save(os.path.join(folder, "diffusion_pytorch_model.safetensors"), dict(dit_weights))
    torch.save(collections.OrderedDict((k, v.to(t5_dtype)) for k, v in t5_weights.items()),
               os.path.join(folder, "models_t5_umt5-xxl-enc-bf16.pth"))
    with open(os.path.join(folder, "google", "umt5-xxl", "spiece.model"), "wb") as f:
        f.write(tok if tok is not None else tokenizer_bytes())


def prefixed(weights, fsdp=False):
    out = collections.OrderedDict()
    for k, v in weights.items():
        if not fsdp:
            out["model." + k] = v.clone()
        elif k.startswith("blocks."):
            i, rest = k[len("blocks."):].split(".", 1)
            out["model._fsdp_wrapped_module.blocks.%s._fsdp_wrapped_module."
                "_checkpoint_wrapped_module.%s" % (i, rest)] = v.clone()
        else:
            out["model._fsdp_wrapped_module._orig_mod." + k] = v.clone()
    return out


def decoy(weights, value=0.5):
    return collections.OrderedDict((k, torch.full_like(v, value)) for k, v in weights.items())


def self_forcing_pt(path, weights, fsdp=False):
    torch.save({"generator_ema": prefixed(weights, fsdp), "generator": prefixed(decoy(weights))},
               path)


def causvid_pt(path, weights):
    critic = prefixed(decoy(weights, -1.0))
    critic["model.blocks.0.self_attn.q.weight"] = torch.zeros(3, 3)   # would fail if read
    torch.save({"generator": prefixed(weights), "critic": critic}, path)


def lora_factors(weights, rank, seed=7, modules=LORA_MODULES):
    """Random A [r, in], B [out, r] per linear of every block."""
    g = torch.Generator().manual_seed(seed)
    n_layers = 1 + max(int(k.split(".")[1]) for k in weights if k.startswith("blocks."))
    fac = collections.OrderedDict()
    for i in range(n_layers):
        for m in modules:
            w = weights["blocks.%d.%s.weight" % (i, m)]
            a = torch.randn(rank, w.shape[1], generator=g) * 0.1
            b = torch.randn(w.shape[0], rank, generator=g) * 0.1
            fac["blocks.%d.%s" % (i, m)] = (a, b)
    return fac


def longlive_files(base_path, lora_path, weights, rank=8, adapter_suffix=""):
    """Base checkpoint = golden - B@A, so base + B@A reproduces the golden weights.
    Returns (base weights, factors)."""
    fac = lora_factors(weights, rank)
    base = collections.OrderedDict((k, v.clone()) for k, v in weights.items())
    for mod, (a, b) in fac.items():
        base[mod + ".weight"] = weights[mod + ".weight"] - b @ a
    torch.save({"generator": prefixed(base)}, base_path)
    lora = collections.OrderedDict()
    for mod, (a, b) in fac.items():
        lora["base_model.model.%s.lora_A%s.weight" % (mod, adapter_suffix)] = a
        lora["base_model.model.%s.lora_B%s.weight" % (mod, adapter_suffix)] = b
    critic = {"base_model.model.blocks.99.x.lora_A.weight": torch.zeros(2, 2)}  # never read
    torch.save({"generator_lora": lora, "critic_lora": critic, "step": 1200}, lora_path)
    return base, fac


def random_dit(dim=32, layers=2, channels=16, text_dim=32, text_len=16, heads=2, seed=3):
    cfg = DiTConfig(in_dim=channels, out_dim=channels, dim=dim, ffn_dim=2 * dim, text_dim=text_dim,
                    text_len=text_len, num_heads=heads, num_layers=layers)
    torch.manual_seed(seed)
    m = WanDiT(cfg)
    sd = collections.OrderedDict((k, torch.randn_like(v) * 0.1) for k, v in m.state_dict().items())
    meta = {"config": json.dumps({"model_type": "t2v", "patch_size": [1, 2, 2],
                                  "text_len": text_len, "in_dim": channels, "dim": dim,
                                  "ffn_dim": 2 * dim, "freq_dim": 256, "text_dim": text_dim,
                                  "out_dim": channels, "num_heads": heads, "num_layers": layers,
                                  "eps": 1e-6})}
    return sd, meta
