"""The default model's dimensions and every training hyperparameter, in one place.

Everything a run depends on is here or derived from the master seed, so that
`tools/train.sh` reproduces the shipped weights (up to floating-point summation order).
Changing a value changes the model: the state directory records the settings each stage
started with and refuses to resume a stage under different ones.

Why these dimensions (the engine must reach >= 16 frames/s at 128x128 on 2 CPU cores):
  video 128x128 at 16 fps; TAEHV autoencoder, spatial /8 and temporal /4 (TAEW2.1 layout)
  -> one 8x16x16 latent frame per 4 video frames, 4 latent frames per second.
  DiT: patch (1, 2, 2) -> 64 tokens per latent frame, dim 256, 4 heads of 64, 6 layers,
  ffn 1024 (~7M parameters). A chunk is 2 latent frames (8 video frames, 0.5 s); 4 sampler
  steps + the t=0 context pass = 5 passes over 128 tokens per chunk, about 7 GFLOP per chunk,
  14 GFLOP/s for real time. Attention spans at most anchors 2 + window 4 + chunk 2 = 8
  latent frames (512 keys), bounded forever because positions come from slot order.
  Decoder widths [64, 32, 16, 16]: ~1.4 GFLOP per latent frame (5.5 GFLOP/s at 16 fps).
"""
import copy
import dataclasses
from dataclasses import dataclass, field

from flipbook_ref.config import (DiTConfig, ModelConfig, SamplerConfig, StreamConfig,
                                 TextEncoderConfig, TokenizerConfig, VAEConfig)

MODEL_NAME = "default"
SEED = 20240611          # master seed; every stage derives its own streams from it

# Offered by the web page (flipbook.prompts in the exported file) and listed in
# docs/model-card.md: canonical captions of the world's grammar, covering every background,
# occluder, shape and colour at least once between them.
EXAMPLE_PROMPTS = (
    "two red balls bouncing in front of a pillar at sunset",
    "a big yellow box falling on the sand on a grid",
    "three small blue balls bouncing on the grass on a sunny day",
    "a green triangle sliding in front of a tree at night",
    "two orange boxes sliding on the road on a grey background",
    "a white ball rolling in front of a wall under the stars",
    "a purple triangle falling and a red ball bouncing on a black background",
    "a big blue box resting on the sand on a teal background",
)

# Video geometry.
HEIGHT = WIDTH = 128
FPS = 16
T_DOWN = 4               # video frames per latent frame
S_DOWN = 8               # pixels per latent pixel
CHUNK_LATENTS = 2        # latent frames per chunk
CHUNK_VIDEO = CHUNK_LATENTS * T_DOWN


def vae_config():
    # frames_to_trim 0: the autoencoder is trained so that latent k decodes to exactly the
    # video frames 4k..4k+3 it encoded (no 1+4k convention as in Wan's causal VAE), so no
    # warm-up frames are thrown away at the start of a stream.
    return VAEConfig(latent_channels=8, image_channels=3, decoder_channels=[64, 32, 16, 16],
                     encoder_channels=32, decoder_time_upscale=[False, True, True],
                     decoder_space_upscale=[True, True, True],
                     encoder_time_downscale=[True, True, False], frames_to_trim=0, patch_size=1)


# DiT depth. A run may grow it (tools/train.sh --grow-dit, tools/train/grow.py).
DIT_LAYERS = 10


def model_config(vocab_size, text_len):
    """The full config once the tokenizer (vocab size) and caption length are known."""
    cfg = ModelConfig(
        dit=DiTConfig(patch_size=[1, 2, 2], in_dim=8, out_dim=8, dim=256, ffn_dim=1024,
                      freq_dim=256, text_dim=128, text_len=text_len, num_heads=4, num_layers=DIT_LAYERS,
                      qk_norm=True, cross_attn_norm=True, eps=1e-6),
        text_encoder=TextEncoderConfig(arch="umt5", vocab=vocab_size, dim=128, dim_attn=128,
                                       dim_ffn=512, num_heads=4, num_layers=2, num_buckets=32,
                                       max_distance=128, shared_pos=False, eps=1e-6,
                                       max_tokens=text_len),
        # warm_start: the DiT's latents (cache and streams) all look like a clip's later
        # latents; the autoencoder itself was trained without it (vae_config()).
        vae=dataclasses.replace(vae_config(), warm_start=True),
        # shift 1 (no warp of the table) and steps down to sigma 0.25: on 16x16 latents a
        # large shift spends every step at high noise and leaves the last prediction blurry.
        sampler=SamplerConfig(num_train_timesteps=1000, shift=1.0, steps=[1000, 750, 500, 250],
                              warp=True, context_t=0),
        stream=StreamConfig(chunk_frames=CHUNK_LATENTS, anchor_frames=2, window_frames=4,
                            positions="window", latent_height=HEIGHT // S_DOWN,
                            latent_width=WIDTH // S_DOWN, fps=FPS),
        tokenizer=TokenizerConfig(tensor="tokenizer.spm"))
    return cfg.validate()


@dataclass
class AEStage:
    steps: int = 8000              # 6,031 on the world of 10/17-pixel objects, then these on
                                   # the world of 18/27-pixel ones (docs/world.md); more steps
                                   # gained ~0.2 dB on object pixels per 500
    batch: int = 10                # clips per step
    frames: int = 24               # 6 latent frames: the decoder's and encoder's memory blocks
                                   # reach the state they stay in for an endless stream only
                                   # from the third latent frame on (runs up to step 3,050 used
                                   # 8 clips of 8 frames and decoded later frames 5 dB worse)
    lr: float = 1e-3
    lr_min_frac: float = 0.1       # cosine decay to lr * this at the last step
    warmup: int = 200
    weight_decay: float = 1e-4
    ema: float = 0.999             # exported weights: averages out the batch-to-batch colour jitter
    edge_weight: float = 0.05      # L1 on image gradients, for crisp object rims
    object_weight: float = 5.0     # extra weight of object pixels in the MSE (a 10-pixel ball
                                   # is ~0.6% of a frame); 0 in runs up to step 3,600, 15 up to
                                   # step 4,350 (whole frames)
    crop: int = 64                 # train on 64x64 windows centred on objects (crop_on_objects):
                                   # 0 (whole frames, batch 3) up to step 4,350
    latent_weight: float = 1e-2    # keeps latents near zero mean, unit std per channel
    latent_noise: float = 0.15     # decoder sees z + U(0, this) * N(0, 1): tolerance of DiT error
    switch_fraction: float = 0.3   # clips with a mid-clip scene change
    bf16: bool = True              # autocast (AMX/AVX-512 bf16 on this CPU; fp32 master weights)


@dataclass
class TokenizerStage:
    sentences: int = 40000         # captions sampled from the grammar for training
    vocab_size: int = 160          # closed vocabulary (~80 words) + characters + specials
    normalization: str = "nmt_nfkc_cf"   # case folding: "Two Red Balls" works too
    text_len_margin: int = 8       # text_len = longest caption seen + this, rounded up to 8


@dataclass
class DiTStage:
    steps: int = 40000             # 30,000 up to step 22,001; lengthened when the world's
                                   # objects grew, so that the learning rate rose again
                                   # (1.0e-4 -> 1.9e-4) for the new latents
    batch: int = 2                 # early on, updates count more than clips per update; a
                                   # later run may raise it (a resizable setting)
    clip_latents: int = 12         # 6 chunks: the window fills up and slides in every clip
    dataset_clips: int = 8000      # latent cache size (rendered + encoded once); may grow
                                   # between runs. 2,000 up to step 27,609: by then the
                                   # first chunk's loss on held-out clips was 11-25% above
                                   # the training clips' (memorised scenes, docs/training.md).
                                   # Shards are a function of their index.
    shard_clips: int = 250
    switch_fraction: float = 0.5   # clips whose caption changes at a chunk boundary
    phrasings: int = 4
    late_start: float = 0.5        # clips that start 1..max_start frames into their scene
    max_start: int = 160           # (10 s): the model also sees scenes long after their start
    lr: float = 4e-4
    lr_min_frac: float = 0.1
    warmup: int = 500
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema: float = 0.999
    object_weight: float = 4.0     # extra loss weight of latent cells holding an object; 0 up
                                   # to step ~4,850 (objects never appeared), 4 up to 11,489
                                   # (objects appeared, of the prompt's colour too rarely), 8 up
                                   # to 32,821 (then too many objects again: a weight that
                                   # depends on the target tilts the learnt flow towards
                                   # scenes with more object cells)
    object_max_sigma: float = 0.75  # ... only on chunks noised to sigma <= this (1: all; all
                                   # up to step 25,301, 0.5 up to 30,105): above it the
                                   # weighted loss's best answer is an object smeared wherever
                                   # it might be, 9x too strong, and one object came out as two
                                   # or three (dit.loss_of); at 0.5 too few objects came out
                                   # more and more often (they faded over the sampler's steps)
    first_chunk_weight: float = 3.0   # loss weight of a clip's first chunk (1 up to step
                                      # ~13,300): the one drawn from the prompt alone
    start_every: int = 2           # every 2nd step is one of stream starts (0: never; since
                                   # step 16,008, from a clip's start only since 16,324):
    start_batch: int = 6           # start_batch clips cut to their first start_latents latent
    start_latents: int = 4         # frames, the tokens of a long step but 3x the first chunks
    caption_dropout: float = 0.1   # noisy chunks trained on the caption "": the unconditional
                                   # flow of classifier-free guidance (0 up to step ~9,700)
    exact_step_prob: float = 0.5   # chunk noise levels: the sampler's own steps this often,
                                   # else any level of the table (diffusion forcing)
    bf16: bool = True


@dataclass
class DMDStage:
    """The optional first-chunk distillation (tools/train/dmd.py), run by name after the dit."""
    steps: int = 1500
    batch: int = 4                 # first chunks (prompts) per step (8 up to the classifier's
                                   # second run: 0.07 steps/s in float32 on 2 AVX2 cores)
    clips: int = 2000              # the latent cache's first clips whose captions (and first
                                   # chunks, for the classifier) the stage draws: 8 of its
                                   # shards (500 steps of 4 prompts), built by the stage if the
                                   # dit stage has not
    gen_lr: float = 2e-5
    fake_lr: float = 2e-5
    fake_updates: int = 2          # fake-score updates per generator update (Self-Forcing: 5)
    guidance: float = 1.0          # the teacher's classifier-free guidance (3 oversaturated
                                   # skies when sampling with it directly; 2 in the first try,
                                   # from DiT step 25,272, made the smeared band more saturated)
    t_min: int = 20                # noise levels of the matching, as indices of the 1000-entry
    t_max: int = 980               # table
    ema: float = 0.99
    warmup: int = 20
    grad_clip: float = 1.0
    gan_weight: float = 0.05       # DMD2's classifier term in the generator's loss (0: off; on,
                                   # the dmd stage also reads the cache's real first chunks);
                                   # 0.05 in its first run, from the sixth weights
    disc_weight: float = 0.01      # the classifier's loss beside the fake score's (DMD2: 1e-2)
    disc_lr: float = 1e-3          # the classifier head's own learning rate (it starts
                                   # untrained; at 1e-4 its loss stayed near chance)
    disc_warmup: int = 100         # steps in which only the classifier learns (the generator
                                   # takes its term after them: a classifier at chance only
                                   # adds noise to the generator's gradient)
    disc_t_min: int = 250          # the classifier's noise levels: disc_t_min..t_max, sigma
                                   # 0.75 and below (at high noise real and generated chunks
                                   # look alike: those draws only add noise to its loss)
    bf16: bool = True


@dataclass
class TrainConfig:
    seed: int = SEED
    ae: AEStage = field(default_factory=AEStage)
    tokenizer: TokenizerStage = field(default_factory=TokenizerStage)
    dit: DiTStage = field(default_factory=DiTStage)
    dmd: DMDStage = field(default_factory=DMDStage)

    def stage_dict(self, name):
        d = dataclasses.asdict(getattr(self, name))
        d["seed"] = self.seed
        return d

    def copy(self):
        return copy.deepcopy(self)


STAGES = ("ae", "tokenizer", "dit")
OPTIONAL_STAGES = ("dmd",)      # run only when named (--stage dmd)
