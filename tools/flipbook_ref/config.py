"""The flipbook model configuration (docs/model-format.md, metadata key "flipbook.config").

One JSON object with sections dit, text_encoder, vae, sampler, stream and tokenizer. Missing
keys take the Wan2.1-T2V-1.3B / Self-Forcing values; unknown keys are an error so a typo never
silently changes a model. Every section is a plain dataclass so the modules can be built from it.
"""
import copy
import dataclasses
import json
from dataclasses import dataclass, field
from typing import List


@dataclass
class DiTConfig:
    patch_size: List[int] = field(default_factory=lambda: [1, 2, 2])
    in_dim: int = 16
    out_dim: int = 16
    dim: int = 1536
    ffn_dim: int = 8960
    freq_dim: int = 256
    text_dim: int = 4096
    text_len: int = 512
    num_heads: int = 12
    num_layers: int = 30
    qk_norm: bool = True
    cross_attn_norm: bool = True
    eps: float = 1e-6

    def validate(self):
        if len(self.patch_size) != 3 or self.patch_size[0] != 1:
            raise ValueError("dit.patch_size must be [1, ph, pw]: the causal model needs one "
                             "token row per latent frame")
        if self.dim % self.num_heads:
            raise ValueError("dit.dim %d is not a multiple of num_heads %d" % (self.dim, self.num_heads))
        d = self.dim // self.num_heads
        if d % 2 or d // 6 < 1 or (d - 4 * (d // 6)) % 2:
            raise ValueError("dit head_dim %d cannot be split into 3D RoPE pairs" % d)
        if self.freq_dim % 2:
            raise ValueError("dit.freq_dim must be even")

    @property
    def head_dim(self):
        return self.dim // self.num_heads


@dataclass
class TextEncoderConfig:
    arch: str = "umt5"
    vocab: int = 256384
    dim: int = 4096
    dim_attn: int = 4096
    dim_ffn: int = 10240
    num_heads: int = 64
    num_layers: int = 24
    num_buckets: int = 32
    max_distance: int = 128
    shared_pos: bool = False
    eps: float = 1e-6
    max_tokens: int = 512

    def validate(self):
        if self.arch != "umt5":
            raise ValueError("text_encoder.arch %r is not supported (only umt5)" % self.arch)
        if self.dim_attn % self.num_heads:
            raise ValueError("text_encoder.dim_attn is not a multiple of num_heads")


@dataclass
class VAEConfig:
    arch: str = "taehv"
    latent_channels: int = 16
    image_channels: int = 3
    decoder_channels: List[int] = field(default_factory=lambda: [256, 128, 64, 64])
    encoder_channels: int = 64
    decoder_time_upscale: List[bool] = field(default_factory=lambda: [False, True, True])
    decoder_space_upscale: List[bool] = field(default_factory=lambda: [True, True, True])
    encoder_time_downscale: List[bool] = field(default_factory=lambda: [True, True, False])
    frames_to_trim: int = 3
    patch_size: int = 1
    # A stream's first latent is made and read as if one latent of its first frame came before
    # it: the encoder sees the first frame t_down extra times and drops that latent, the
    # decoder decodes the first latent twice and drops the first pass's frames. Without it the
    # first latent is made with empty memory and looks unlike every later one.
    warm_start: bool = False

    def validate(self):
        if not isinstance(self.warm_start, bool):
            raise ValueError("vae.warm_start must be true or false, got %r" % (self.warm_start,))
        if self.arch != "taehv":
            raise ValueError("vae.arch %r is not supported (only taehv)" % self.arch)
        if len(self.decoder_channels) != 4 or len(self.decoder_time_upscale) != 3 \
                or len(self.decoder_space_upscale) != 3 or len(self.encoder_time_downscale) != 3:
            raise ValueError("vae: decoder_channels needs 4 widths and the up/downscale lists 3 flags")

    @property
    def t_upscale(self):
        return 2 ** sum(bool(b) for b in self.decoder_time_upscale)

    @property
    def t_downscale(self):
        return 2 ** sum(bool(b) for b in self.encoder_time_downscale)

    @property
    def s_upscale(self):
        return 2 ** sum(bool(b) for b in self.decoder_space_upscale) * self.patch_size


@dataclass
class SamplerConfig:
    num_train_timesteps: int = 1000
    shift: float = 5.0
    steps: List[float] = field(default_factory=lambda: [1000, 750, 500, 250])
    warp: bool = True
    context_t: float = 0
    guidance: float = 1.0      # classifier-free guidance scale; 1 = one conditional pass

    def validate(self):
        if not self.steps:
            raise ValueError("sampler.steps is empty")
        if not 1.0 <= self.guidance <= 20.0:
            raise ValueError("sampler.guidance must be in [1, 20] (1 = off), got %r" % self.guidance)
        if self.warp:
            for s in self.steps:
                if s != int(s) or not 0 <= s <= self.num_train_timesteps:
                    raise ValueError("sampler.steps must be integers in [0, %d] when warp is on"
                                     % self.num_train_timesteps)


@dataclass
class StreamConfig:
    chunk_frames: int = 3
    anchor_frames: int = 3
    window_frames: int = 9
    positions: str = "window"
    latent_height: int = 60
    latent_width: int = 104
    fps: int = 16

    def validate(self):
        if self.positions not in ("window", "absolute"):
            raise ValueError("stream.positions must be \"window\" or \"absolute\"")
        if self.chunk_frames < 1 or self.anchor_frames < 0 or self.window_frames < -1:
            raise ValueError("stream: chunk_frames >= 1, anchor_frames >= 0, window_frames >= -1 "
                             "(-1 = unbounded)")


@dataclass
class TokenizerConfig:
    tensor: str = "tokenizer.spm"


_SECTIONS = {"dit": DiTConfig, "text_encoder": TextEncoderConfig, "vae": VAEConfig,
             "sampler": SamplerConfig, "stream": StreamConfig, "tokenizer": TokenizerConfig}


@dataclass
class ModelConfig:
    dit: DiTConfig = field(default_factory=DiTConfig)
    text_encoder: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)

    def validate(self):
        for name in _SECTIONS:
            sec = getattr(self, name)
            if hasattr(sec, "validate"):
                sec.validate()
        if self.stream.latent_height % self.dit.patch_size[1] or \
                self.stream.latent_width % self.dit.patch_size[2]:
            raise ValueError("stream latent size is not a multiple of the patch size")
        if self.vae.latent_channels != self.dit.out_dim:
            raise ValueError("vae.latent_channels must equal dit.out_dim")
        if self.text_encoder.dim != self.dit.text_dim:
            raise ValueError("text_encoder.dim must equal dit.text_dim")
        return self

    def to_dict(self):
        d = dataclasses.asdict(self)
        if d["sampler"]["guidance"] == 1.0:
            del d["sampler"]["guidance"]    # off: files read the same as before the key existed
        if not d["vae"]["warm_start"]:
            del d["vae"]["warm_start"]        # the same for the autoencoder's warm start
        return d

    def to_json(self):
        return json.dumps(self.to_dict(), separators=(", ", ": "))

    @classmethod
    def from_dict(cls, d):
        d = copy.deepcopy(d)
        kwargs = {}
        for name, sub in d.items():
            if name not in _SECTIONS:
                raise ValueError("config: unknown section %r" % name)
            kind = _SECTIONS[name]
            known = {f.name for f in dataclasses.fields(kind)}
            bad = set(sub) - known
            if bad:
                raise ValueError("config: unknown keys in %s: %s" % (name, ", ".join(sorted(bad))))
            kwargs[name] = kind(**sub)
        return cls(**kwargs).validate()

    @classmethod
    def from_json(cls, text):
        return cls.from_dict(json.loads(text))
