"""Sampler and stream settings per checkpoint family (shared/specs/wan_causal.md sec. 4-5).

Each preset reproduces what the family's own inference code does, mapped onto flipbook's
anchor + window cache (docs/model-format.md): upstream's sink_size S and local_attn_size L
become anchor_frames = S and window_frames = L - S - chunk_frames.
"""

PRESETS = {
    "self-forcing": dict(
        name="wan2.1-t2v-1.3b-self-forcing",
        about="Self-Forcing (gdhe17/Self-Forcing checkpoints/self_forcing_*.pt)",
        dit_keys=("generator_ema", "generator"),
        # 4 warped steps at shift 5: the model sees t = 1000, 937.5, 833.3, 625.
        sampler=dict(shift=5.0, steps=[1000, 750, 500, 250], warp=True),
        # Upstream attends to every past frame of its 21-frame video (local_attn_size -1):
        # 18 past frames + the 3-frame chunk, rolling beyond that.
        stream=dict(chunk_frames=3, anchor_frames=0, window_frames=18, positions="absolute"),
        causal=True),
    "causvid": dict(
        name="wan2.1-t2v-1.3b-causvid",
        about="CausVid (tianweiy/CausVid autoregressive_checkpoint/model.pt)",
        dit_keys=("generator",),
        # wan_causal_dmd.yaml: 3 steps 1000, 757, 522 fed as they are (no warp), shift 8.
        sampler=dict(shift=8.0, steps=[1000, 757, 522], warp=False),
        stream=dict(chunk_frames=3, anchor_frames=0, window_frames=18, positions="absolute"),
        causal=True),
    "longlive": dict(
        name="wan2.1-t2v-1.3b-longlive",
        about="LongLive (Efficient-Large-Model/LongLive-1.3B models/longlive_base.pt + lora.pt)",
        dit_keys=("generator", "generator_ema"),
        lora_key="generator_lora",
        sampler=dict(shift=5.0, steps=[1000, 750, 500, 250], warp=True),
        # local_attn_size 12 with a 3-frame sink: 3 anchor frames + 6 past frames + the chunk.
        stream=dict(chunk_frames=3, anchor_frames=3, window_frames=6, positions="absolute"),
        causal=True),
    "wan-t2v": dict(
        name="wan2.1-t2v-1.3b",
        about="Wan2.1-T2V-1.3B base model (bidirectional, not causal-distilled)",
        dit_keys=(),
        # Wan's flow schedule at shift 5 (sigmas linspace(1, 0, n + 1) shifted; Wan samples 50
        # steps) cut to the engine's limit of 16 steps per chunk: warped integer steps
        # 1000, 938, ..., 62 give those noise levels.
        sampler=dict(shift=5.0, steps=[round(1000 - 1000 * k / 16) for k in range(16)],
                     warp=True),
        stream=dict(chunk_frames=3, anchor_frames=0, window_frames=18, positions="absolute"),
        causal=False),
}

WAN_T2V_WARNING = (
    "the wan-t2v preset converts the bidirectional Wan2.1 base model, which is not "
    "causal-distilled: it was never trained to generate chunk by chunk from a causal cache, "
    "flipbook runs it without classifier-free guidance, and it takes 16 steps per chunk "
    "(upstream samples 50): expect blurry, drifting video, slowly. Use it "
    "to test weights and tooling; for live video convert a causal-distilled checkpoint "
    "(self-forcing, causvid, longlive).")


# Limits of the C engine (engine/config.h, engine/config.c fb_config_validate) that the
# reference config accepts: checked here so that no file is written that the engine refuses.
MAX_STEPS = 16          # FB_CFG_MAX_STEPS
ROPE_MAX_POS = 1024     # FB_ROPE_MAX_POS


def engine_limits(cfg):
    """Returns the first reason the engine would refuse this config, or None."""
    s, st, d = cfg.sampler, cfg.stream, cfg.dit
    if not 1 <= len(s.steps) <= MAX_STEPS:
        return "the engine runs 1 to %d steps per chunk, got %d" % (MAX_STEPS, len(s.steps))
    for i, t in enumerate(s.steps):
        if not 0 < t <= s.num_train_timesteps:
            return "steps must lie in (0, %d], got %g" % (s.num_train_timesteps, t)
        if i and not t < s.steps[i - 1]:
            return "steps must decrease, got %g after %g" % (t, s.steps[i - 1])
    if not s.context_t < s.steps[-1]:
        return "context_t %g must be below the last step %g" % (s.context_t, s.steps[-1])
    if not 1e-3 <= s.shift <= 1e3:
        return "shift must lie in [0.001, 1000], got %g" % s.shift
    if not 1 <= st.chunk_frames <= 64 or not 0 <= st.anchor_frames <= 256 or \
            not -1 <= st.window_frames <= 1024:
        return "chunk must be 1-64, anchor 0-256 and window -1-1024 frames"
    if st.window_frames == -1 and st.positions != "absolute":
        return "window -1 (keep every frame) needs absolute positions: an endless stream in " \
               "window positions must bound its window"
    if st.window_frames != -1 and \
            st.anchor_frames + st.window_frames + st.chunk_frames > ROPE_MAX_POS:
        return "anchor + window + chunk frames exceed the %d RoPE positions" % ROPE_MAX_POS
    if not (1 <= st.latent_height <= 4096 and 1 <= st.latent_width <= 4096):
        return "latent sizes must lie in 1-4096"
    if not 1 <= st.fps <= 1000:
        return "fps must lie in 1-1000"
    hd = d.dim // d.num_heads
    if hd % 2 or hd < 6:
        return "DiT head dim %d must be even and at least 6" % hd
    if cfg.text_encoder.shared_pos:
        return "the text encoder has one shared position bias (T5 style); the engine runs " \
               "umT5 (a bias per layer)"
    if cfg.vae.t_upscale * st.chunk_frames <= cfg.vae.frames_to_trim:
        return "a chunk of %d latent frames decodes to no frame after trimming %d" % (
            st.chunk_frames, cfg.vae.frames_to_trim)
    return None
