"""Writes a random-weight model of the planned default size for fb_bench_batch.

The shape is what the shipped default model is planned to be (tools/train/config.py): video
128x128 at 16 fps, TAEHV latents 8 x 16 x 16 with decoder widths [64, 32, 16, 16], DiT dim 256,
4 heads, 6 layers, ffn 1024, chunks of 2 latent frames, 1 anchor + a window of 4, 4 sampler
steps; umT5 text encoder dim 128, 2 layers. The weights are random (scaled so activations stay
of order 1): only the speed matters. The tokenizer is the golden tiny model's.

usage: /usr/bin/python3 tests/engine/make_bench_model.py TINY_MODEL OUT.safetensors
(the flipbook_bench_model target of tests/engine runs it into the build folder).
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from flipbook_ref import st  # noqa: E402
from flipbook_ref.config import (DiTConfig, ModelConfig, SamplerConfig, StreamConfig,  # noqa: E402
                                 TextEncoderConfig, TokenizerConfig, VAEConfig)
from flipbook_ref.export import Model, save_model  # noqa: E402
from flipbook_ref.tokenizer import Tokenizer  # noqa: E402

TEXT_LEN = 32


def config(vocab):
    return ModelConfig(
        dit=DiTConfig(patch_size=[1, 2, 2], in_dim=8, out_dim=8, dim=256, ffn_dim=1024,
                      freq_dim=256, text_dim=128, text_len=TEXT_LEN, num_heads=4, num_layers=6,
                      qk_norm=True, cross_attn_norm=True, eps=1e-6),
        text_encoder=TextEncoderConfig(arch="umt5", vocab=vocab, dim=128, dim_attn=128,
                                       dim_ffn=512, num_heads=4, num_layers=2, num_buckets=32,
                                       max_distance=128, shared_pos=False, eps=1e-6,
                                       max_tokens=TEXT_LEN),
        vae=VAEConfig(latent_channels=8, image_channels=3, decoder_channels=[64, 32, 16, 16],
                      encoder_channels=32, decoder_time_upscale=[False, True, True],
                      decoder_space_upscale=[True, True, True],
                      encoder_time_downscale=[True, True, False], frames_to_trim=0,
                      patch_size=1),
        sampler=SamplerConfig(num_train_timesteps=1000, shift=1.0, steps=[1000, 750, 500, 250],
                              warp=True, context_t=0),
        stream=StreamConfig(chunk_frames=2, anchor_frames=1, window_frames=4,
                            positions="window", latent_height=16, latent_width=16, fps=16),
        tokenizer=TokenizerConfig(tensor="tokenizer.spm")).validate()


def randomise(model, gen):
    """Weights that keep activations of order 1 (matrices N(0, 1/fan_in), norms near 1)."""
    with torch.no_grad():
        for m in model.modules().values():
            for name, p in m.named_parameters():
                shape = tuple(p.shape)
                if name.endswith("modulation"):
                    w = torch.randn(shape, generator=gen) * 0.1
                elif "norm" in name and p.dim() == 1:
                    w = 1 + torch.randn(shape, generator=gen) * 0.1
                elif name.endswith("bias"):
                    w = torch.randn(shape, generator=gen) * 0.05
                elif p.dim() >= 2:
                    w = torch.randn(shape, generator=gen) / float(np.prod(shape[1:])) ** 0.5
                else:
                    w = torch.randn(shape, generator=gen) * 0.1
                p.copy_(w)


def main():
    if len(sys.argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    tensors, _ = st.load(sys.argv[1])
    tok_bytes = tensors["tokenizer.spm"].numpy().tobytes()
    vocab = Tokenizer(tok_bytes).vocab_size
    model = Model(config(vocab), "bench-default-size", tok_bytes)
    randomise(model, torch.Generator().manual_seed(20240611))
    save_model(sys.argv[2], model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
