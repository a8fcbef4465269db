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
 *   - a decoder-only file loads, reports no encoder and refuses an encoder state. */
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
