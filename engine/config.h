/* engine/config.h - the model configuration carried in a model file's metadata.
 *
 * A flipbook model file (docs/model-format.md) stores its configuration as the JSON string
 * `flipbook.config` in the safetensors `__metadata__`. fb_config_parse() reads that JSON into
 * an fb_config and validates it field by field: every missing, mistyped, out-of-range or
 * inconsistent field is reported with its dotted path ("dit.num_heads: ..."), and unknown keys
 * are refused so that a typo never silently falls back to a default. The derived helpers at
 * the end compute the sizes the engine plans its memory with (frame size, frames per chunk,
 * tokens per latent frame).
 *
 * Thread-safety: fb_config is plain data; parsing touches only the caller's objects.
 */
#ifndef FLIPBOOK_ENGINE_CONFIG_H
#define FLIPBOOK_ENGINE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define FB_CFG_MAX_STEPS 16     /* denoising steps per chunk */
#define FB_CFG_MAX_STAGES 8     /* TAEHV decoder channel stages */
#define FB_CFG_NAME_MAX 64

/* Positions given to the keys of the self-attention cache (docs/model-format.md). */
typedef enum {
    FB_POS_WINDOW = 0,   /* slot order: anchors, window in time order, new chunk; bounded */
    FB_POS_ABSOLUTE = 1, /* absolute latent-frame index (upstream Self-Forcing); bounded by
                          * the RoPE table, so a stream ends after FB_ROPE_MAX_POS frames */
} fb_positions;

/* Largest absolute latent-frame position (exclusive) in "absolute" mode: the upstream RoPE
 * table covers positions 0..1023. */
#define FB_ROPE_MAX_POS 1024

typedef struct fb_dit_config {
    int patch_size[3];    /* (t, h, w); t must be 1 */
    int in_dim, out_dim;  /* latent channels in and out */
    int dim, ffn_dim, freq_dim, text_dim, text_len, num_heads, num_layers;
    int qk_norm, cross_attn_norm; /* booleans */
    float eps;
} fb_dit_config;

typedef struct fb_text_config {
    char arch[16];        /* "umt5" (T5 encoder with a relative bias per layer) */
    int vocab, dim, dim_attn, dim_ffn, num_heads, num_layers, num_buckets, max_distance;
    int shared_pos;       /* boolean */
    float eps;
    int max_tokens;       /* longest token sequence, EOS included */
} fb_text_config;

typedef struct fb_vae_config {
    char arch[16];        /* "taehv" */
    int latent_channels, image_channels;
    int n_stages;         /* number of decoder_channels entries */
    int decoder_channels[FB_CFG_MAX_STAGES];
    int encoder_channels;
    /* n_stages - 1 entries each: whether the step after stage i doubles time / space */
    int decoder_time_upscale[FB_CFG_MAX_STAGES];
    int decoder_space_upscale[FB_CFG_MAX_STAGES];
    int n_encoder_time;   /* entries of encoder_time_downscale */
    int encoder_time_downscale[FB_CFG_MAX_STAGES];
    int frames_to_trim;   /* decoded frames dropped at the start of a stream */
    int patch_size;       /* pixel-shuffle factor of the output (1 for TAEW2.1) */
    int warm_start;       /* boolean (absent = false): a stream's first latent is made and read
                           * as if one latent of its first frame came before it. The encoder
                           * first takes the first frame (frames per encoded latent) extra times
                           * and drops that latent; the decoder decodes the first latent twice
                           * and drops the first pass's frames. Without it that latent is made
                           * with empty memory and looks unlike every later one. Frame and
                           * latent counts do not change. */
} fb_vae_config;

typedef struct fb_sampler_config {
    int num_train_timesteps;
    float shift;
    int n_steps;
    float steps[FB_CFG_MAX_STEPS]; /* the step list as written, e.g. 1000 750 500 250 */
    int warp;             /* boolean: map steps through the shifted timestep table */
    float context_t;      /* timestep of the context pass (0) */
    float guidance;       /* classifier-free guidance scale in [1, 20]; 1 (the default when
                           * the file has none) = off, one DiT pass per denoising step */
} fb_sampler_config;

typedef struct fb_stream_config {
    int chunk_frames;     /* latent frames generated per chunk */
    int anchor_frames;    /* permanent anchor (sink) slots */
    int window_frames;    /* past frames kept besides the anchors; -1 in the file (only with
                           * absolute positions) means all that the RoPE table allows */
    fb_positions positions;
    int latent_height, latent_width;
    double fps;           /* pixel frames per second */
} fb_stream_config;

typedef struct fb_config {
    char name[FB_CFG_NAME_MAX];   /* flipbook.name, "" when absent */
    fb_dit_config dit;
    fb_text_config text;
    fb_vae_config vae;
    fb_sampler_config sampler;
    fb_stream_config stream;
    char tokenizer_tensor[FB_CFG_NAME_MAX]; /* tensor holding the SentencePiece model */
} fb_config;

/* Parses and validates the `flipbook.config` JSON. Returns 0, or -1 with a message naming the
 * first bad field ("flipbook.config: dit.num_heads: must divide dit.dim (1536), got 7"). */
int fb_config_parse(const char *json, fb_config *cfg, char *err, size_t err_size);

/* Validates an already-filled config (fb_config_parse calls it; tests and tools that build a
 * config in C call it too). Same message convention. */
int fb_config_validate(const fb_config *cfg, char *err, size_t err_size);

/* Derived sizes. All are exact for a validated config. */
int fb_config_head_dim(const fb_config *cfg);
int fb_config_tokens_per_frame(const fb_config *cfg);   /* (H/ph) * (W/pw) */
int fb_config_latent_frame_floats(const fb_config *cfg); /* C * H * W */
int fb_config_frame_width(const fb_config *cfg);        /* decoded pixels */
int fb_config_frame_height(const fb_config *cfg);
int fb_config_frames_per_latent(const fb_config *cfg);  /* 2^(time upscales), 4 for TAEHV */
/* Pixel frames produced by chunk `chunk` (the first chunk loses frames_to_trim). */
int fb_config_frames_in_chunk(const fb_config *cfg, int64_t chunk);
int fb_config_max_frames_per_chunk(const fb_config *cfg);
/* Latent frames a chunk attends to at most: anchors + window + the chunk itself. */
int fb_config_attended_frames(const fb_config *cfg);

#endif
