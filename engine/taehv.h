/* engine/taehv.h - TAEHV tiny video autoencoder: the streaming decoder (latent frames -> RGB
 * frames) and the matching encoder (RGB frames or an image -> latents, for image anchors).
 *
 * Structure as upstream taehv.py (shared/specs/wan_causal.md sec. 8), sized by the config:
 *   decoder: tanh(x/3)*3 clamp, conv3x3 latent->c0 + ReLU, then per stage i < n-1: three
 *            MemBlocks(c_i), nearest x2 upsample (if space_upscale[i]), TGrow(c_i, 2 if
 *            time_upscale[i] else 1), conv3x3 c_i->c_{i+1}; ReLU, conv3x3 c_last->3*p*p,
 *            pixel shuffle p; the first frames_to_trim frames of a stream are dropped and
 *            the output is clamped to [0, 1].
 *   encoder: pixel unshuffle p, conv3x3 3*p*p->ce + ReLU, then per stage: TPool(ce, 2 if
 *            time_downscale[i] else 1), conv3x3 stride 2, three MemBlocks(ce); conv3x3
 *            ce->latent.
 *   MemBlock(x, past) = ReLU(conv(ReLU(conv(ReLU(conv(cat[x, past]))))) + x), where past is
 *   the block's input at the previous time step (zeros at the start of a stream).
 * Decoding runs one latent frame at a time through this graph depth-first (a TGrow's output
 * frames in time order), keeping one past tensor per MemBlock in the stream's state: the
 * result equals upstream's whole-clip decode_video(parallel=True) and its StreamingTAEHV, and
 * decoding in any split of calls gives bit-identical frames. Each latent yields 2^(time
 * upscales) frames (4 for TAEW2.1); the first latent of a stream yields 4 - frames_to_trim.
 * The encoder likewise keeps each TPool's pending frames and each MemBlock's past: every
 * 2^(time downscales) frames pushed complete one latent; flush completes a partial group by
 * repeating the last frame (upstream encode_video pads the clip that way).
 *
 * Warm start (cfg.warm_start, off for upstream models): a clip's first latent is made and read
 * as if one latent of its first frame came before it, instead of with empty MemBlock memory.
 * The decoder runs the first latent after init/reset twice and drops the first pass's frames
 * (fpl of them, before frames_to_trim applies): decoding [z0, z1, ...] equals decoding
 * [z0, z0, z1, ...] without warm start minus its first fpl frames. The encoder pushes the
 * first frame after init/reset frames_per_encoded_latent extra times and drops the latent
 * that completes: encoding [f0, f1, ...] equals encoding [f0 x group, f0, f1, ...] without
 * warm start minus its first latent. Frame and latent counts are those without warm start.
 *
 * Layouts: latents are [C, h, w] per frame (one frame of the DiT's [F, C, h, w]); pixel frames
 * are planar RGB float [3, H, W] in [0, 1]; fb_taehv_to_rgb24() / fb_taehv_from_rgb24()
 * convert to and from packed 8-bit RGB.
 *
 * Weights: tensors prefix + taehv.py names ("vae.decoder.3.conv.0.weight"; "" for a bare
 * checkpoint), F32/F16/BF16, converted to float32 at load (st may be closed afterwards). The
 * encoder is optional: a file without encoder.* tensors loads as a decoder only. A TGrow
 * weight with more rows than the config needs (a checkpoint trained with a larger time
 * stride) keeps its last rows, which produce the latest frames, as upstream does.
 *
 * Usage (decoder):
 *     fb_taehv *vae; fb_taehv_load(st, "vae.", &cfg.vae, &vae, err, sizeof err);
 *     fb_taehv_stream *ds; fb_taehv_stream_init(vae, 60, 104, &ds, err, sizeof err);
 *     size_t sb = fb_taehv_decode_scratch_bytes(vae, 60, 104); void *scratch = malloc(sb);
 *     int n; fb_taehv_decode(vae, kc, ds, latent, 1, frames, &n, scratch, sb, err, ...);
 *
 * Thread-safety: fb_taehv is immutable after load and shared by all streams; a decoder or
 * encoder state belongs to one stream and is used by one thread at a time, with its own
 * scratch and fb_kctx.
 *
 * Status codes: 0 on success; -1 with a message in err (bad sizes or arguments, a missing or
 * misshapen tensor, no memory, scratch too small, no encoder). Argument checks run before any
 * compute: a failed call leaves the state unchanged.
 */
#ifndef FLIPBOOK_ENGINE_TAEHV_H
#define FLIPBOOK_ENGINE_TAEHV_H

#include <stddef.h>
#include <stdint.h>

#include "engine/config.h"
#include "engine/safetensors.h"
#include "kernels/kernels.h"

typedef struct fb_taehv fb_taehv;
typedef struct fb_taehv_stream fb_taehv_stream;   /* decoder memory of one stream */
typedef struct fb_taehv_enc fb_taehv_enc;         /* encoder memory */

/* cfg needs latent_channels, image_channels (3), n_stages >= 2 decoder_channels with
 * n_stages - 1 time/space upscale flags, encoder_channels and n_encoder_time flags,
 * frames_to_trim (< frames per latent) and patch_size >= 1; it is copied. */
int fb_taehv_load(const fb_safetensors *st, const char *prefix, const fb_vae_config *cfg,
                  fb_taehv **out, char *err, size_t err_size);
void fb_taehv_free(fb_taehv *vae);

const fb_vae_config *fb_taehv_get_config(const fb_taehv *vae);
int fb_taehv_has_encoder(const fb_taehv *vae);
size_t fb_taehv_weight_bytes(const fb_taehv *vae);
/* Pixel frames per latent frame (2^time upscales) and the frame size of an h x w latent. */
int fb_taehv_frames_per_latent(const fb_taehv *vae);
void fb_taehv_frame_size(const fb_taehv *vae, int latent_h, int latent_w, int *height,
                         int *width);
/* Frames the encoder takes per latent (2^time downscales), and the pixel size multiple it
 * needs (2^encoder stages * patch_size). */
int fb_taehv_frames_per_encoded_latent(const fb_taehv *vae);
int fb_taehv_encoder_size_multiple(const fb_taehv *vae);
/* FLOPs (x2 per multiply-add) of decoding one latent frame, for benchmarks. */
double fb_taehv_decode_flops(const fb_taehv *vae, int latent_h, int latent_w);

/* ---- decoder ------------------------------------------------------------------------------ */

/* A stream's decoder memory for h x w latents (zeroed: a fresh stream). */
int fb_taehv_stream_init(const fb_taehv *vae, int latent_h, int latent_w,
                         fb_taehv_stream **out, char *err, size_t err_size);
void fb_taehv_stream_free(fb_taehv_stream *ds);
/* Forgets the past: the next latent starts a new clip (trimmed, and warm-started, again). */
void fb_taehv_stream_reset(fb_taehv_stream *ds);
size_t fb_taehv_stream_bytes(const fb_taehv *vae, int latent_h, int latent_w);
/* Pixel frames the next n latents will produce (trimming and a warm start included). */
int fb_taehv_stream_frames_for(const fb_taehv_stream *ds, int n_latents);

size_t fb_taehv_decode_scratch_bytes(const fb_taehv *vae, int latent_h, int latent_w);

/* Decodes n_latents frames latents [n_latents, C, h, w] (h, w as at init) into frames
 * [*n_frames, 3, H, W], RGB in [0, 1]; out must hold fb_taehv_stream_frames_for(ds,
 * n_latents) frames. */
int fb_taehv_decode(const fb_taehv *vae, fb_kctx *kc, fb_taehv_stream *ds,
                    const float *latents, int n_latents, float *out, int *n_frames,
                    void *scratch, size_t scratch_bytes, char *err, size_t err_size);

/* ---- encoder ------------------------------------------------------------------------------ */

/* Encoder memory for height x width frames (multiples of fb_taehv_encoder_size_multiple). */
int fb_taehv_enc_init(const fb_taehv *vae, int height, int width, fb_taehv_enc **out,
                      char *err, size_t err_size);
void fb_taehv_enc_free(fb_taehv_enc *enc);
/* Forgets the past: the next frame starts a new clip (warm-started again). */
void fb_taehv_enc_reset(fb_taehv_enc *enc);
size_t fb_taehv_encode_scratch_bytes(const fb_taehv *vae, int height, int width);

/* Pushes one frame [3, H, W] (RGB in [0, 1]). When it completes a group, writes one latent
 * [C, H / s, W / s] to out_latent and sets *n_latents = 1, else 0. With a warm start pending
 * the frame is first pushed a whole group of times (that latent is dropped, not written). */
int fb_taehv_encode_push(const fb_taehv *vae, fb_kctx *kc, fb_taehv_enc *enc,
                         const float *frame, float *out_latent, int *n_latents, void *scratch,
                         size_t scratch_bytes, char *err, size_t err_size);
/* Completes a partial group by repeating the last frame pushed; *n_latents is 1 when a latent
 * was written, 0 when no frame was pending. The state is then ready for a new group. */
int fb_taehv_encode_flush(const fb_taehv *vae, fb_kctx *kc, fb_taehv_enc *enc,
                          float *out_latent, int *n_latents, void *scratch,
                          size_t scratch_bytes, char *err, size_t err_size);

/* ---- pixel helpers ------------------------------------------------------------------------ */

/* Planar float RGB [3, H, W] in [0, 1] -> packed RGB24 (row stride `stride` bytes), rounded
 * to nearest; values outside [0, 1] saturate. */
void fb_taehv_to_rgb24(const float *rgb, int height, int width, uint8_t *dst, size_t stride);
/* Packed RGB24 -> planar float [3, H, W], value / 255. */
void fb_taehv_from_rgb24(const uint8_t *src, size_t stride, int height, int width,
                         float *rgb);

#endif
