"""Reading and writing flipbook model files (docs/model-format.md).

One safetensors file: metadata flipbook.format = "1", flipbook.config = the JSON config,
flipbook.name; tensors "dit." + WanModel names, "text_encoder." + T5Encoder names, "vae." +
taehv.py names, and "tokenizer.spm", a U8 tensor holding the SentencePiece model bytes.
"""
import json
import numpy as np
import torch

from . import st
from .config import ModelConfig
from .dit import WanDiT
from .t5 import T5Encoder
from .taehv import TAEHV
from .tokenizer import Tokenizer

FORMAT = "1"
PREFIXES = ("dit.", "text_encoder.", "vae.")


class Model:
    """The whole model family instance: DiT, text encoder, decoder/encoder and tokenizer."""

    def __init__(self, cfg: ModelConfig, name="model", tokenizer_bytes=None):
        cfg.validate()
        self.cfg, self.name = cfg, name
        self.dit = WanDiT(cfg.dit)
        self.text_encoder = T5Encoder(cfg.text_encoder)
        self.vae = TAEHV(cfg.vae)
        self.tokenizer = Tokenizer(tokenizer_bytes) if tokenizer_bytes is not None else None

    def modules(self):
        return {"dit.": self.dit, "text_encoder.": self.text_encoder, "vae.": self.vae}

    def eval(self):
        for m in self.modules().values():
            m.eval()
        return self

    def tokenize(self, text):
        if self.tokenizer is None:
            raise RuntimeError("model has no tokenizer")
        return self.tokenizer.encode(text, self.cfg.text_encoder.max_tokens)

    @torch.no_grad()
    def encode_prompt(self, text):
        """Prompt -> (ids, DiT context [1, n_ids, text_dim]); the encoder runs on the real
        tokens only, so padding rows (added by the DiT) are zero."""
        ids = self.tokenize(text)
        return ids, self.text_encoder.encode([ids])

    def uncond_context(self):
        """The empty prompt's encoder output: what classifier-free guidance sets the prompt
        against (None when the config's sampler.guidance is 1)."""
        if self.cfg.sampler.guidance == 1.0:
            return None
        return self.encode_prompt("")[1]

    def stream(self, context, seeds, record=False):
        """A sampler Stream of this model (with the empty prompt's context when it guides)."""
        from .sampler import Stream
        return Stream(self.dit, self.cfg, context, seeds, record=record,
                      uncond=self.uncond_context())

    def state_dict(self):
        sd = {}
        for prefix, m in self.modules().items():
            for k, v in m.state_dict().items():
                sd[prefix + k] = v
        return sd


def save_model(path, model: Model, dtype=torch.float32, prompts=None, training=None):
    """prompts: example prompts for the web page (docs/model-format.md, flipbook.prompts);
    training: a JSON-able dict of where training stood (flipbook.training)."""
    tensors = {k: v.detach().to(dtype) for k, v in model.state_dict().items()}
    if model.tokenizer is not None:
        tensors["tokenizer.spm"] = np.frombuffer(model.tokenizer.model_bytes, dtype=np.uint8).copy()
    meta = {"flipbook.format": FORMAT, "flipbook.config": model.cfg.to_json(),
            "flipbook.name": model.name}
    if prompts:
        meta["flipbook.prompts"] = json.dumps(list(prompts))
    if training:
        meta["flipbook.training"] = json.dumps(training, sort_keys=True)
    st.save(path, tensors, meta)


def load_model(path):
    tensors, meta = st.load(path)
    if meta.get("flipbook.format") != FORMAT:
        raise ValueError("%s: not a flipbook model file (flipbook.format = %r)"
                         % (path, meta.get("flipbook.format")))
    cfg = ModelConfig.from_json(meta["flipbook.config"])
    tok = tensors.pop(cfg.tokenizer.tensor, None)
    model = Model(cfg, meta.get("flipbook.name", "model"),
                  tok.numpy().tobytes() if tok is not None else None)
    for prefix, m in model.modules().items():
        sd = {k[len(prefix):]: v.float() for k, v in tensors.items() if k.startswith(prefix)}
        missing, unexpected = m.load_state_dict(sd, strict=False)
        if missing or unexpected:
            raise ValueError("%s: %s tensors missing %s, unexpected %s"
                             % (path, prefix, missing[:5], unexpected[:5]))
    extra = [k for k in tensors if not k.startswith(PREFIXES)]
    if extra:
        raise ValueError("%s: tensors outside the known prefixes: %s" % (path, extra[:5]))
    return model.eval()
