/* tests/taehv/test_taehv_stream.c - TAEHV streaming invariants on a tiny random model (no
 * reference data needed, so it always runs).
 *
 * The model is built in memory with non-default options: patch size 2 (pixel shuffle),
 * a stage without spatial upsampling, a decoder-only variant, and a checkpoint whose
 * stride-1 TGrow weight carries extra rows. Checks:
 *   - decoding latents one per call, all in one call and split 2+3 gives bit-identical
 *     frames, with 1 frame for the first latent and 4 for each later one; reset starts over;
 *   - two independent streams do not share memory;
 *   - encoding frames one by one then flushing equals pushing copies of the last frame;
 *   - a TGrow weight with extra leading rows behaves as the weight made of its last rows;
 *   - a decoder-only file loads, reports no encoder and refuses an encoder state;
 *   - warm start (vae.warm_start), with frames_to_trim 3 and 0: decoding [z0, z1, ...] in any
 *     split, and again after a reset, equals decoding [z0, z0, z1, ...] without warm start
 *     minus its first 4 frames, with the same frame counts as without warm start; encoding
 *     [f0, ..., f6] + flush equals encoding [f0 x 4, f0, ..., f6] + flush without warm start
 *     minus its first latent, latents completing at the same pushes as without warm start;
 *     a still image pushed A x 4 times gives exactly A latents (the engine's image anchors);
 *     and the warm results differ from the cold ones (the option does something). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/safetensors.h"
#include "engine/taehv.h"
#include "kernels/kernels.h"
#include "tests/text/text_test_util.h"

#define MAX_T 160

typedef struct {
    char name[96];
    int64_t shape[4];
    int ndim;
    float *data;
    size_t numel;
} tensor;

static tensor tensors[MAX_T];
static int n_tensors;

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float frand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void add(const char *name, int ndim, int64_t a, int64_t b, int64_t c, int64_t d) {
    tensor *t = &tensors[n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    int64_t s[4] = {a, b, c, d};
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) t->shape[i] = s[i], t->numel *= (size_t)s[i];
    t->data = malloc(t->numel * sizeof(float));
    float scale = ndim == 4 ? 1.5f / sqrtf((float)(b * c * d)) : 0.1f;
    for (size_t i = 0; i < t->numel; i++) t->data[i] = frand() * scale + (ndim == 1 ? 0.05f : 0);
}

static void conv(const char *base, int cin, int cout, int k, int bias) {
    char n[96];
    snprintf(n, sizeof n, "%s.weight", base);
    add(n, 4, cout, cin, k, k);
    if (bias) {
        snprintf(n, sizeof n, "%s.bias", base);
        add(n, 1, cout, 0, 0, 0);
    }
}

static void memblock(const char *part, int idx, int c) {
    char b[64];
    snprintf(b, sizeof b, "%s.%d.conv.0", part, idx);
    conv(b, 2 * c, c, 3, 1);
    snprintf(b, sizeof b, "%s.%d.conv.2", part, idx);
    conv(b, c, c, 3, 1);
    snprintf(b, sizeof b, "%s.%d.conv.4", part, idx);
    conv(b, c, c, 3, 1);
}

/* Safetensors image of the tensors (without encoder.* unless with_encoder); with tgrow_extra,
 * decoder.7's TGrow weight gets that many junk rows in front of the real ones. */
static unsigned char *pack(int with_encoder, int tgrow_extra, size_t *size) {
    char *hdr = malloc(1 << 16);
    size_t hn = 0, off = 0;
    hn += (size_t)sprintf(hdr + hn, "{");
    int first = 1;
    for (int i = 0; i < n_tensors; i++) {
        const tensor *t = &tensors[i];
        if (!with_encoder && strncmp(t->name, "encoder.", 8) == 0) continue;
        int64_t rows = t->shape[0];
        if (tgrow_extra && strcmp(t->name, "decoder.7.conv.weight") == 0) rows += tgrow_extra;
        size_t n = t->numel / (size_t)t->shape[0] * (size_t)rows;
        hn += (size_t)sprintf(hdr + hn, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%lld", first ? "" : ",",
                              t->name, (long long)rows);
        for (int d = 1; d < t->ndim; d++) hn += (size_t)sprintf(hdr + hn, ",%lld", (long long)t->shape[d]);
        hn += (size_t)sprintf(hdr + hn, "],\"data_offsets\":[%zu,%zu]}", off, off + n * 4);
        off += n * 4;
        first = 0;
    }
    hn += (size_t)sprintf(hdr + hn, "}");
    size_t padded = (hn + 7) / 8 * 8;
    *size = 8 + padded + off;
    unsigned char *buf = malloc(*size);
    for (int b = 0; b < 8; b++) buf[b] = (unsigned char)((uint64_t)padded >> (8 * b));
    memcpy(buf + 8, hdr, hn);
    memset(buf + 8 + hn, ' ', padded - hn);
    size_t at = 8 + padded;
    for (int i = 0; i < n_tensors; i++) {
        const tensor *t = &tensors[i];
        if (!with_encoder && strncmp(t->name, "encoder.", 8) == 0) continue;
        if (tgrow_extra && strcmp(t->name, "decoder.7.conv.weight") == 0) {
            size_t junk = t->numel / (size_t)t->shape[0] * (size_t)tgrow_extra;
            for (size_t k = 0; k < junk; k++) {
                float v = 100.0f;
                memcpy(buf + at, &v, 4);
                at += 4;
            }
        }
        memcpy(buf + at, t->data, t->numel * 4);
        at += t->numel * 4;
    }
    free(hdr);
    return buf;
}

static fb_taehv *load(const fb_vae_config *cfg, int with_encoder, int tgrow_extra) {
    size_t size;
    unsigned char *img = pack(with_encoder, tgrow_extra, &size);
    char err[256];
    fb_safetensors *st = fb_st_open_memory(img, size, err, sizeof err);
    CHECK_MSG(st, "%s", err);
    fb_taehv *v = NULL;
    if (st) CHECK_MSG(fb_taehv_load(st, "", cfg, &v, err, sizeof err) == 0, "%s", err);
    fb_st_close(st);
    free(img);
    return v;
}

/* Decodes T latents in the given split; returns the frame count. */
static int decode_split(fb_taehv *v, fb_kctx *kc, fb_taehv_stream *ds, const float *lat,
                        size_t lat_n, const int *split, int n_split, float *out, size_t frame_n) {
    size_t sb = fb_taehv_decode_scratch_bytes(v, 4, 6);
    void *scratch = malloc(sb);
    char err[256];
    int total = 0, at = 0;
    for (int i = 0; i < n_split; i++) {
        int n = 0;
        int expect = fb_taehv_stream_frames_for(ds, split[i]);
        CHECK_MSG(fb_taehv_decode(v, kc, ds, lat + at * lat_n, split[i], out + total * frame_n,
                                  &n, scratch, sb, err, sizeof err) == 0, "%s", err);
        CHECK(n == expect);
        total += n;
        at += split[i];
    }
    free(scratch);
    return total;
}

static double max_diff(const float *a, const float *b, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
    return worst;
}

/* Tolerance of the warm == cold-with-a-repeated-input equivalences (the same computation, so
 * bit-identical is expected; the contract with the Python reference is float rounding). */
#define WARM_TOL 1e-6

/* The model of cfg with frames_to_trim `trim`, without (*vc) and with (*vw) warm start, on
 * the same weights; nonzero (both NULL) when either fails to load. */
static int load_cold_warm(const fb_vae_config *cfg, int trim, fb_taehv **vc, fb_taehv **vw) {
    fb_vae_config cold_cfg = *cfg, warm_cfg = *cfg;
    cold_cfg.frames_to_trim = warm_cfg.frames_to_trim = trim;
    cold_cfg.warm_start = 0;
    warm_cfg.warm_start = 1;
    *vc = load(&cold_cfg, 1, 0);
    *vw = load(&warm_cfg, 1, 0);
    if (*vc && *vw) return 0;
    fb_taehv_free(*vc);
    fb_taehv_free(*vw);
    *vc = *vw = NULL;
    return -1;
}

/* Warm-start decoder equivalence for the model of cfg with frames_to_trim `trim`. */
static void check_warm_decode(fb_kctx *kc, const fb_vae_config *cfg, int trim, const float *lat,
                              int T, size_t lat_n) {
    fb_taehv *vc, *vw;
    if (load_cold_warm(cfg, trim, &vc, &vw)) return;
    char err[256];
    int H, W;
    fb_taehv_frame_size(vw, 4, 6, &H, &W);
    const size_t frame_n = (size_t)3 * H * W;
    const int fpl = fb_taehv_frames_per_latent(vw);
    const int n_warm = fpl * T - trim; /* what a cold stream gives for T latents */

    /* Cold decode of [z0, z0, z1, ..., z_{T-1}]; its first fpl frames are not compared. */
    float *lat2 = malloc((size_t)(T + 1) * lat_n * sizeof(float));
    memcpy(lat2, lat, lat_n * sizeof(float));
    memcpy(lat2 + lat_n, lat, (size_t)T * lat_n * sizeof(float));
    float *ref = calloc((size_t)fpl * (T + 1) * frame_n, sizeof(float));
    float *got = calloc((size_t)fpl * (T + 1) * frame_n, sizeof(float));
    fb_taehv_stream *dc = NULL, *dw = NULL;
    CHECK(fb_taehv_stream_init(vc, 4, 6, &dc, err, sizeof err) == 0);
    CHECK(fb_taehv_stream_init(vw, 4, 6, &dw, err, sizeof err) == 0);
    const int whole_c[1] = {T + 1};
    CHECK(decode_split(vc, kc, dc, lat2, lat_n, whole_c, 1, ref, frame_n) ==
          fpl * (T + 1) - trim);
    const float *want = ref + (size_t)fpl * frame_n;

    /* Frame counts are the cold ones. */
    CHECK(fb_taehv_stream_frames_for(dw, 0) == 0);
    CHECK(fb_taehv_stream_frames_for(dw, 1) == fpl - trim);
    CHECK(fb_taehv_stream_frames_for(dw, T) == n_warm);

    /* One latent per call (as the engine decodes chunk by chunk), all at once and 2 + rest,
     * each after a reset but the first. */
    int ones[16], whole[1] = {T}, split[2] = {2, T - 2};
    for (int i = 0; i < T; i++) ones[i] = 1;
    const int *splits[3] = {ones, whole, split};
    const int n_splits[3] = {T, 1, 2};
    int all_identical = 1;
    for (int k = 0; k < 3; k++) {
        if (k) fb_taehv_stream_reset(dw);
        memset(got, 0, (size_t)fpl * (T + 1) * frame_n * sizeof(float));
        int n = decode_split(vw, kc, dw, lat, lat_n, splits[k], n_splits[k], got, frame_n);
        CHECK_MSG(n == n_warm, "trim %d split %d: %d frames, expected %d", trim, k, n, n_warm);
        double d = max_diff(got, want, (size_t)n_warm * frame_n);
        CHECK_MSG(d <= WARM_TOL, "trim %d split %d: warm decode differs by %g", trim, k, d);
        all_identical &= memcmp(got, want, (size_t)n_warm * frame_n * sizeof(float)) == 0;
        /* After the first latent the stream is no longer warm-pending: 4 frames per latent. */
        CHECK(fb_taehv_stream_frames_for(dw, 1) == fpl);
    }
    printf("warm decode (trim %d) == cold decode of [z0, z0, ...] minus %d frames: %s\n", trim,
           fpl, all_identical ? "bit-identical" : "within tolerance");

    /* Warm start changes the first frames: a cold stream of [z0, ...] gives other frames. */
    fb_taehv_stream_reset(dc);
    CHECK(decode_split(vc, kc, dc, lat, lat_n, whole, 1, ref, frame_n) == n_warm);
    CHECK(max_diff(ref, got, frame_n) > 1e-3);

    fb_taehv_stream_free(dc);
    fb_taehv_stream_free(dw);
    fb_taehv_free(vc);
    fb_taehv_free(vw);
    free(lat2);
    free(ref);
    free(got);
}

/* Pushes n frames (frame i = frames + idx[i] * frame_n) and flushes when `flush`; latents go to
 * out, returns their count. */
static int encode_frames(fb_taehv *v, fb_kctx *kc, fb_taehv_enc *enc, const float *frames,
                         size_t frame_n, const int *idx, int n, int flush, float *out,
                         size_t elat_n, void *es, size_t esb) {
    char err[256];
    int got = 0, k;
    for (int i = 0; i < n; i++) {
        CHECK_MSG(fb_taehv_encode_push(v, kc, enc, frames + (size_t)idx[i] * frame_n,
                                       out + (size_t)got * elat_n, &k, es, esb, err,
                                       sizeof err) == 0, "%s", err);
        got += k;
    }
    if (flush) {
        CHECK_MSG(fb_taehv_encode_flush(v, kc, enc, out + (size_t)got * elat_n, &k, es, esb, err,
                                        sizeof err) == 0, "%s", err);
        got += k;
    }
    return got;
}

/* Warm-start encoder equivalence on NF frames [3, H, W]. */
static void check_warm_encode(fb_kctx *kc, const fb_vae_config *cfg, const float *frames,
                              int NF, int H, int W) {
    fb_taehv *vc, *vw;
    if (load_cold_warm(cfg, cfg->frames_to_trim, &vc, &vw)) return;
    char err[256];
    const int g = fb_taehv_frames_per_encoded_latent(vw), m = fb_taehv_encoder_size_multiple(vw);
    CHECK(g == 4);
    const size_t frame_n = (size_t)3 * H * W;
    const size_t elat_n = (size_t)cfg->latent_channels * (H / m) * (W / m);
    const size_t esb = fb_taehv_encode_scratch_bytes(vw, H, W);
    CHECK(esb == fb_taehv_encode_scratch_bytes(vc, H, W));
    void *es = malloc(esb);
    enum { MAX_F = 32, MAX_L = 8 };
    CHECK(NF + g <= MAX_F && 4 * g <= MAX_F);
    float *ref = calloc((size_t)MAX_L * elat_n, sizeof(float));
    float *got = calloc((size_t)MAX_L * elat_n, sizeof(float));
    fb_taehv_enc *ec = NULL, *ew = NULL;
    CHECK(fb_taehv_enc_init(vc, H, W, &ec, err, sizeof err) == 0);
    CHECK(fb_taehv_enc_init(vw, H, W, &ew, err, sizeof err) == 0);
    if (!ec || !ew) goto out;

    /* Cold: [f0 x g, f0, ..., f_{NF-1}] + flush. */
    int idx[MAX_F], n_idx = 0;
    for (int i = 0; i < g; i++) idx[n_idx++] = 0;
    for (int i = 0; i < NF; i++) idx[n_idx++] = i;
    const int n_lat = (NF + g - 1) / g;
    CHECK(encode_frames(vc, kc, ec, frames, frame_n, idx, n_idx, 1, ref, elat_n, es, esb) ==
          n_lat + 1);

    /* Warm: a flush before any frame neither writes a latent nor uses up the warm start. */
    int k = -1;
    CHECK(fb_taehv_encode_flush(vw, kc, ew, got, &k, es, esb, err, sizeof err) == 0 && k == 0);
    /* [f0, ..., f_{NF-1}], latents completing at the cold pushes (every g-th frame). */
    int total = 0;
    for (int f = 0; f < NF; f++) {
        CHECK(fb_taehv_encode_push(vw, kc, ew, frames + (size_t)f * frame_n,
                                   got + (size_t)total * elat_n, &k, es, esb, err,
                                   sizeof err) == 0);
        CHECK_MSG(k == (f % g == g - 1), "warm push of frame %d gave %d latents", f, k);
        total += k;
    }
    CHECK(fb_taehv_encode_flush(vw, kc, ew, got + (size_t)total * elat_n, &k, es, esb, err,
                                sizeof err) == 0);
    total += k;
    CHECK(total == n_lat);
    double d = max_diff(got, ref + elat_n, (size_t)n_lat * elat_n);
    CHECK_MSG(d <= WARM_TOL, "warm encode differs by %g", d);
    printf("warm encode == cold encode of [f0 x %d, f0, ...] minus its first latent: %s\n", g,
           memcmp(got, ref + elat_n, (size_t)n_lat * elat_n * sizeof(float)) == 0
               ? "bit-identical" : "within tolerance");

    /* After a reset the warm start applies again. */
    fb_taehv_enc_reset(ew);
    float *again = calloc((size_t)MAX_L * elat_n, sizeof(float));
    for (int i = 0; i < NF; i++) idx[i] = i;
    CHECK(encode_frames(vw, kc, ew, frames, frame_n, idx, NF, 1, again, elat_n, es, esb) ==
          n_lat);
    CHECK(memcmp(again, got, (size_t)n_lat * elat_n * sizeof(float)) == 0);

    /* Warm start changes the first latent: a cold encode of the same frames differs. */
    fb_taehv_enc_reset(ec);
    CHECK(encode_frames(vc, kc, ec, frames, frame_n, idx, NF, 1, again, elat_n, es, esb) ==
          n_lat);
    CHECK(max_diff(again, got, elat_n) > 1e-4);

    /* Image anchors (engine_stream.c): a still pushed A x g times gives exactly A latents, the
     * cold encode of (A + 1) x g copies minus its first. */
    const int A = 3;
    for (int i = 0; i < (A + 1) * g; i++) idx[i] = 0;
    fb_taehv_enc_reset(ec);
    fb_taehv_enc_reset(ew);
    CHECK(encode_frames(vc, kc, ec, frames, frame_n, idx, (A + 1) * g, 0, ref, elat_n, es,
                        esb) == A + 1);
    CHECK(encode_frames(vw, kc, ew, frames, frame_n, idx, A * g, 0, again, elat_n, es, esb) ==
          A);
    d = max_diff(again, ref + elat_n, (size_t)A * elat_n);
    CHECK_MSG(d <= WARM_TOL, "warm still-image encode differs by %g", d);
    free(again);
out:
    fb_taehv_enc_free(ec);
    fb_taehv_enc_free(ew);
    fb_taehv_free(vc);
    fb_taehv_free(vw);
    free(es);
    free(ref);
    free(got);
}

int main(void) {
    /* latent 4 ch; decoder 8 -> 6 -> 4 -> 4, time x1 x2 x2, space x2 x1 x2, patch 2;
     * encoder 6 ch, time /2 /2 /1 (size multiple 2^3 * 2 = 16). */
    fb_vae_config cfg = {.latent_channels = 4, .image_channels = 3, .n_stages = 4,
                         .decoder_channels = {8, 6, 4, 4}, .encoder_channels = 6,
                         .decoder_time_upscale = {0, 1, 1}, .decoder_space_upscale = {1, 0, 1},
                         .n_encoder_time = 3, .encoder_time_downscale = {1, 1, 0},
                         .frames_to_trim = 3, .patch_size = 2};
    snprintf(cfg.arch, sizeof cfg.arch, "taehv");
    conv("decoder.1", 4, 8, 3, 1);
    int ch[4] = {8, 6, 4, 4}, tup[3] = {1, 2, 2};
    for (int s = 0; s < 3; s++) {
        for (int j = 0; j < 3; j++) memblock("decoder", 3 + 6 * s + j, ch[s]);
        char b[64];
        snprintf(b, sizeof b, "decoder.%d.conv", 7 + 6 * s);
        conv(b, ch[s], ch[s] * tup[s], 1, 0);
        snprintf(b, sizeof b, "decoder.%d", 8 + 6 * s);
        conv(b, ch[s], ch[s + 1], 3, 0);
    }
    conv("decoder.22", 4, 12, 3, 1);
    conv("encoder.0", 12, 6, 3, 1);
    int eds[3] = {2, 2, 1};
    for (int s = 0; s < 3; s++) {
        char b[64];
        snprintf(b, sizeof b, "encoder.%d.conv", 2 + 5 * s);
        conv(b, 6 * eds[s], 6, 1, 0);
        snprintf(b, sizeof b, "encoder.%d", 3 + 5 * s);
        conv(b, 6, 6, 3, 0);
        for (int j = 0; j < 3; j++) memblock("encoder", 4 + 5 * s + j, 6);
    }
    conv("encoder.17", 6, 4, 3, 1);

    char err[256];
    fb_kctx *kc = NULL;
    CHECK(fb_kctx_init(&kc, 2, err, sizeof err) == 0);
    fb_taehv *v = load(&cfg, 1, 0);
    if (!v) return 1;
    int H, W;
    fb_taehv_frame_size(v, 4, 6, &H, &W);
    CHECK(H == 4 * 2 * 2 * 2 && W == 6 * 2 * 2 * 2); /* space x2 x1 x2, patch 2 */
    CHECK(fb_taehv_encoder_size_multiple(v) == 16);

    const int T = 5;
    const size_t lat_n = 4 * 4 * 6, frame_n = (size_t)3 * H * W;
    float lat[5 * 96];
    for (size_t i = 0; i < T * lat_n; i++) lat[i] = frand() * 2.5f;
    const int max_frames = 1 + 4 * (T - 1);
    float *a = calloc(max_frames * frame_n, sizeof(float));
    float *b = calloc(max_frames * frame_n, sizeof(float));

    fb_taehv_stream *ds = NULL, *ds2 = NULL;
    CHECK(fb_taehv_stream_init(v, 4, 6, &ds, err, sizeof err) == 0);
    CHECK(fb_taehv_stream_init(v, 4, 6, &ds2, err, sizeof err) == 0);
    const int ones[5] = {1, 1, 1, 1, 1}, whole[1] = {5}, split[2] = {2, 3};
    CHECK(decode_split(v, kc, ds, lat, lat_n, ones, 5, a, frame_n) == max_frames);
    /* A second stream interleaved with nothing else: same frames (independent memory). */
    CHECK(decode_split(v, kc, ds2, lat, lat_n, whole, 1, b, frame_n) == max_frames);
    CHECK(memcmp(a, b, max_frames * frame_n * sizeof(float)) == 0);
    fb_taehv_stream_reset(ds);
    memset(b, 0, max_frames * frame_n * sizeof(float));
    CHECK(decode_split(v, kc, ds, lat, lat_n, split, 2, b, frame_n) == max_frames);
    CHECK(memcmp(a, b, max_frames * frame_n * sizeof(float)) == 0);
    /* The output is not trivial: values spread inside [0, 1]. */
    float lo = 1, hi = 0;
    for (size_t i = 0; i < max_frames * frame_n; i++) {
        lo = fminf(lo, a[i]);
        hi = fmaxf(hi, a[i]);
    }
    CHECK(lo >= 0 && hi <= 1 && hi - lo > 0.1f);
    /* The memory matters: a stream that continues differs from a fresh one. */
    float *c = calloc(4 * frame_n, sizeof(float));
    fb_taehv_stream_reset(ds2);
    CHECK(decode_split(v, kc, ds2, lat + lat_n, lat_n, ones, 1, c, frame_n) == 1);
    CHECK(memcmp(c, a + 4 * frame_n, frame_n * sizeof(float)) != 0); /* same raw frame */

    /* TGrow with extra rows in the file == the last rows. */
    fb_taehv *v2 = load(&cfg, 1, 8);
    if (v2) {
        fb_taehv_stream *d3 = NULL;
        CHECK(fb_taehv_stream_init(v2, 4, 6, &d3, err, sizeof err) == 0);
        memset(b, 0, max_frames * frame_n * sizeof(float));
        CHECK(decode_split(v2, kc, d3, lat, lat_n, whole, 1, b, frame_n) == max_frames);
        CHECK(memcmp(a, b, max_frames * frame_n * sizeof(float)) == 0);
        /* A state must be used with its own model. */
        int n = 0;
        size_t sb = fb_taehv_decode_scratch_bytes(v, 4, 6);
        void *scratch = malloc(sb);
        CHECK(fb_taehv_decode(v, kc, d3, lat, 1, b, &n, scratch, sb, err, sizeof err) == -1);
        printf("foreign state: %s\n", err);
        free(scratch);
        fb_taehv_stream_free(d3);
        fb_taehv_free(v2);
    }

    /* Encoder: 7 frames + flush == 8 frames with the 7th repeated. */
    fb_taehv_enc *enc = NULL;
    CHECK(fb_taehv_enc_init(v, H, W, &enc, err, sizeof err) == 0);
    size_t esb = fb_taehv_encode_scratch_bytes(v, H, W);
    void *es = malloc(esb);
    const size_t elat_n = 4 * (size_t)(H / 16) * (W / 16);
    float l1[2 * 64], l2[2 * 64];
    CHECK(elat_n <= 64);
    int got = 0, k;
    for (int f = 0; f < 7; f++) {
        CHECK(fb_taehv_encode_push(v, kc, enc, a + f * frame_n, l1 + got * elat_n, &k, es, esb,
                                   err, sizeof err) == 0);
        got += k;
    }
    CHECK(got == 1);
    CHECK(fb_taehv_encode_flush(v, kc, enc, l1 + elat_n, &k, es, esb, err, sizeof err) == 0);
    CHECK(k == 1);
    CHECK(fb_taehv_encode_flush(v, kc, enc, l1 + elat_n, &k, es, esb, err, sizeof err) == 0);
    CHECK(k == 0);
    fb_taehv_enc_reset(enc);
    got = 0;
    for (int f = 0; f < 8; f++) {
        CHECK(fb_taehv_encode_push(v, kc, enc, a + (f < 7 ? f : 6) * frame_n, l2 + got * elat_n,
                                   &k, es, esb, err, sizeof err) == 0);
        got += k;
    }
    CHECK(got == 2 && memcmp(l1, l2, 2 * elat_n * sizeof(float)) == 0);
    fb_taehv_enc_free(enc);
    free(es);

    /* Warm start. */
    check_warm_decode(kc, &cfg, 3, lat, T, lat_n);
    check_warm_decode(kc, &cfg, 0, lat, T, lat_n);
    check_warm_encode(kc, &cfg, a, 7, H, W);
    {
        /* A C-built config with a non-boolean warm_start is refused, naming the field. */
        fb_vae_config bad = cfg;
        bad.warm_start = 2;
        size_t size;
        unsigned char *img = pack(1, 0, &size);
        fb_safetensors *st = fb_st_open_memory(img, size, err, sizeof err);
        fb_taehv *vb = NULL;
        CHECK(st && fb_taehv_load(st, "", &bad, &vb, err, sizeof err) == -1 && vb == NULL);
        CHECK(strstr(err, "warm_start") != NULL);
        printf("bad warm_start: %s\n", err);
        fb_st_close(st);
        free(img);
    }

    /* Decoder-only file. */
    fb_taehv *v3 = load(&cfg, 0, 0);
    if (v3) {
        CHECK(!fb_taehv_has_encoder(v3));
        fb_taehv_enc *e3 = NULL;
        CHECK(fb_taehv_enc_init(v3, H, W, &e3, err, sizeof err) == -1 && e3 == NULL);
        printf("decoder only: %s\n", err);
        fb_taehv_free(v3);
    }

    fb_taehv_stream_free(ds);
    fb_taehv_stream_free(ds2);
    fb_taehv_free(v);
    fb_kctx_free(kc);
    free(a);
    free(b);
    free(c);
    for (int i = 0; i < n_tensors; i++) free(tensors[i].data);
    TEST_EXIT();
}
