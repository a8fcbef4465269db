/* tests/taehv/test_taehv.c - the TAEHV decoder and encoder against the upstream dump.
 *
 * argv[1] is the folder of the upstream golden files (exit 77, skipped, without
 * taehv.safetensors). The dump stores no weights: every TAEW2.1-shaped weight comes from an
 * integer hash of its name (README of the dump). The test regenerates each tensor, checks it
 * against gen.check.<name> (first value, last value, float64 sum), packs them into an
 * in-memory safetensors file under the prefix "vae." and loads the model from it. Then:
 *   - streaming decode, one latent per call: output.decoded_stream and output.decoded;
 *   - the same latents decoded in one call and in a 1+3 split: bit-identical frames
 *     (frame by frame == whole clip); reset gives a fresh stream again;
 *   - streaming encode, frame by frame: output.encoded_stream and output.encoded, flush with
 *     nothing pending; a partial group flushed equals pushing copies of the last frame;
 *   - argument errors; and the decode time per latent frame at this size. */
#include <cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/safetensors.h"
#include "engine/taehv.h"
#include "kernels/kernels.h"
#include "tests/text/text_test_util.h"

#define ATOL 1e-5
#define RTOL 1e-4

static uint32_t fnv1a(const char *s) {
    uint32_t h = 0x811C9DC5u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x01000193u;
    return h;
}

/* The dump's weight generator (README, case 4). */
static float gen_value(uint32_t h, uint32_t i, int e, float off) {
    uint32_t x = h + i;
    x ^= x >> 16;
    x *= 0x7FEB352Du;
    x ^= x >> 15;
    x *= 0x846CA68Bu;
    x ^= x >> 16;
    int32_t k = (int32_t)(x >> 8) - 8388608;
    float w = ldexpf((float)k, -23 - e);
    return w + off;
}

typedef struct {
    char name[96];
    int ndim;
    int64_t shape[4];
    size_t numel;
    float *data;
} gen_tensor;

/* Builds a safetensors image of the generated tensors (names prefixed "vae."). */
static unsigned char *pack_safetensors(const gen_tensor *t, int n, size_t *size) {
    cJSON *hdr = cJSON_CreateObject();
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "dtype", "F32");
        cJSON *sh = cJSON_AddArrayToObject(o, "shape");
        for (int d = 0; d < t[i].ndim; d++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t[i].shape[d]));
        cJSON *offs = cJSON_AddArrayToObject(o, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += t[i].numel * 4;
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        char key[128];
        snprintf(key, sizeof key, "vae.%s", t[i].name);
        cJSON_AddItemToObject(hdr, key, o);
    }
    char *json = cJSON_PrintUnformatted(hdr);
    cJSON_Delete(hdr);
    size_t jn = strlen(json), padded = (jn + 7) / 8 * 8;
    *size = 8 + padded + off;
    unsigned char *buf = malloc(*size);
    uint64_t hl = padded;
    for (int b = 0; b < 8; b++) buf[b] = (unsigned char)(hl >> (8 * b));
    memcpy(buf + 8, json, jn);
    memset(buf + 8 + jn, ' ', padded - jn);
    free(json);
    size_t at = 8 + padded;
    for (int i = 0; i < n; i++) {
        memcpy(buf + at, t[i].data, t[i].numel * 4);
        at += t[i].numel * 4;
    }
    return buf;
}

/* Regenerates every weight listed in the metadata and checks gen.check.<name>. */
static gen_tensor *generate_weights(const fb_safetensors *st, int *count) {
    cJSON *gen = cJSON_Parse(fb_st_metadata(st, "weight_generator"));
    cJSON *shapes = cJSON_Parse(fb_st_metadata(st, "weight_shapes"));
    CHECK(gen && shapes);
    if (!gen || !shapes) return NULL;
    int n = cJSON_GetArraySize(shapes), i = 0, bad = 0;
    gen_tensor *t = calloc((size_t)n, sizeof *t);
    for (cJSON *s = shapes->child; s; s = s->next, i++) {
        gen_tensor *g = &t[i];
        snprintf(g->name, sizeof g->name, "%s", s->string);
        g->ndim = cJSON_GetArraySize(s);
        g->numel = 1;
        for (int d = 0; d < g->ndim; d++) {
            g->shape[d] = (int64_t)cJSON_GetArrayItem(s, d)->valuedouble;
            g->numel *= (size_t)g->shape[d];
        }
        cJSON *p = cJSON_GetObjectItemCaseSensitive(gen, g->name);
        CHECK_MSG(p && cJSON_GetArraySize(p) == 2, "%s: no generator parameters", g->name);
        if (!p) continue;
        int e = (int)cJSON_GetArrayItem(p, 0)->valuedouble;
        float off = (float)cJSON_GetArrayItem(p, 1)->valuedouble;
        uint32_t h = fnv1a(g->name);
        g->data = malloc(g->numel * sizeof(float));
        double sum = 0;
        for (size_t k = 0; k < g->numel; k++) {
            g->data[k] = gen_value(h, (uint32_t)k, e, off);
            sum += g->data[k];
        }
        char ck[160];
        snprintf(ck, sizeof ck, "gen.check.%s", g->name);
        const fb_st_tensor *c = fb_st_find(st, ck);
        CHECK_MSG(c && c->dtype == FB_DT_F64 && c->numel == 3, "%s missing", ck);
        if (!c) continue;
        double want[3];
        memcpy(want, c->data, sizeof want);
        if (g->data[0] != (float)want[0] || g->data[g->numel - 1] != (float)want[1] ||
            fabs(sum - want[2]) > 1e-9 * (1 + fabs(want[2]))) {
            fprintf(stderr, "%s: generated (%.9g, %.9g, %.12g), check (%.9g, %.9g, %.12g)\n",
                    g->name, g->data[0], g->data[g->numel - 1], sum, want[0], want[1], want[2]);
            bad++;
        }
    }
    printf("weight generator: %d tensors, %d mismatching checks\n", n, bad);
    CHECK(bad == 0);
    cJSON_Delete(gen);
    cJSON_Delete(shapes);
    *count = n;
    return t;
}

static float *tensor_f32(const fb_safetensors *st, const char *name, size_t numel) {
    const fb_st_tensor *t = fb_st_find(st, name);
    CHECK_MSG(t && (size_t)t->numel == numel, "%s: missing or wrong size", name);
    if (!t || (size_t)t->numel != numel) return NULL;
    float *p = malloc(numel * sizeof *p);
    fb_st_to_f32(t, p);
    return p;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s UPSTREAM_GOLDEN_DIR\n", argv[0]);
        return 2;
    }
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/taehv.safetensors", argv[1]);
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        printf("SKIP: %s not found\n", path);
        return TEST_SKIP_CODE;
    }
    fclose(probe);
    fb_safetensors *gold = fb_st_open(path, err, sizeof err);
    CHECK_MSG(gold != NULL, "%s", err);
    if (!gold) return 1;

    int n_w = 0;
    gen_tensor *w = generate_weights(gold, &n_w);
    if (!w) return 1;
    size_t img_size;
    unsigned char *img = pack_safetensors(w, n_w, &img_size);
    fb_safetensors *st = fb_st_open_memory(img, img_size, err, sizeof err);
    CHECK_MSG(st != NULL, "%s", err);
    if (!st) return 1;

    fb_vae_config cfg = {.latent_channels = 16, .image_channels = 3, .n_stages = 4,
                         .decoder_channels = {256, 128, 64, 64}, .encoder_channels = 64,
                         .decoder_time_upscale = {0, 1, 1}, .decoder_space_upscale = {1, 1, 1},
                         .n_encoder_time = 3, .encoder_time_downscale = {1, 1, 0},
                         .frames_to_trim = 3, .patch_size = 1};
    snprintf(cfg.arch, sizeof cfg.arch, "taehv");
    fb_taehv *vae = NULL;
    CHECK_MSG(fb_taehv_load(st, "vae.", &cfg, &vae, err, sizeof err) == 0, "%s", err);
    if (!vae) return 1;
    /* Weights are copied: the image can go now. */
    fb_st_close(st);
    free(img);
    for (int i = 0; i < n_w; i++) free(w[i].data);
    free(w);
    CHECK(fb_taehv_has_encoder(vae));
    CHECK(fb_taehv_frames_per_latent(vae) == 4);
    CHECK(fb_taehv_frames_per_encoded_latent(vae) == 4);
    CHECK(fb_taehv_encoder_size_multiple(vae) == 8);
    int H, W;
    fb_taehv_frame_size(vae, 8, 8, &H, &W);
    CHECK(H == 64 && W == 64);

    fb_kctx *kc = NULL;
    CHECK(fb_kctx_init(&kc, 0, err, sizeof err) == 0);
    const int T = 4, C = 16, h = 8, wl = 8, F = 13;
    const size_t lat_n = (size_t)C * h * wl, frame_n = (size_t)3 * H * W;
    float *latents = tensor_f32(gold, "input.latents", T * lat_n);
    float *want_stream = tensor_f32(gold, "output.decoded_stream", F * frame_n);
    float *want_par = tensor_f32(gold, "output.decoded", F * frame_n);
    if (!latents || !want_stream || !want_par) return 1;

    /* ---- decode, one latent per call ---- */
    fb_taehv_stream *ds = NULL;
    CHECK(fb_taehv_stream_init(vae, h, wl, &ds, err, sizeof err) == 0);
    size_t sb = fb_taehv_decode_scratch_bytes(vae, h, wl);
    void *scratch = malloc(sb);
    float *frames = malloc((F + 4) * frame_n * sizeof(float));
    int total = 0;
    double ms_first = 0, ms_rest = 0;
    for (int t = 0; t < T; t++) {
        int n = -1;
        CHECK(fb_taehv_stream_frames_for(ds, 1) == (t == 0 ? 1 : 4));
        double t0 = now_ms();
        CHECK_MSG(fb_taehv_decode(vae, kc, ds, latents + t * lat_n, 1, frames + total * frame_n,
                                  &n, scratch, sb, err, sizeof err) == 0, "%s", err);
        double ms = now_ms() - t0;
        if (t == 0) ms_first = ms;
        else ms_rest += ms;
        CHECK_MSG(n == (t == 0 ? 1 : 4), "latent %d gave %d frames", t, n);
        total += n;
    }
    CHECK(total == F);
    compare_f32("output.decoded_stream", frames, want_stream, F * frame_n, ATOL, RTOL);
    compare_f32("output.decoded", frames, want_par, F * frame_n, ATOL, RTOL);
    printf("decode 8x8 latent -> 4 frames 64x64: %.1f ms per latent (first %.1f ms), "
           "%.2f GFLOP per latent\n", ms_rest / (T - 1), ms_first,
           fb_taehv_decode_flops(vae, h, wl) / 1e9);

    /* ---- whole clip in one call, and a 1 + 3 split, after reset: bit-identical ---- */
    float *frames2 = malloc((F + 4) * frame_n * sizeof(float));
    fb_taehv_stream_reset(ds);
    int n_all = 0;
    CHECK(fb_taehv_stream_frames_for(ds, T) == F);
    CHECK(fb_taehv_decode(vae, kc, ds, latents, T, frames2, &n_all, scratch, sb, err,
                          sizeof err) == 0);
    CHECK(n_all == F && memcmp(frames, frames2, F * frame_n * sizeof(float)) == 0);
    fb_taehv_stream *ds2 = NULL;
    CHECK(fb_taehv_stream_init(vae, h, wl, &ds2, err, sizeof err) == 0);
    int n1 = 0, n2 = 0;
    CHECK(fb_taehv_decode(vae, kc, ds2, latents, 1, frames2, &n1, scratch, sb, err,
                          sizeof err) == 0);
    CHECK(fb_taehv_decode(vae, kc, ds2, latents + lat_n, 3, frames2 + n1 * frame_n, &n2,
                          scratch, sb, err, sizeof err) == 0);
    CHECK(n1 + n2 == F && memcmp(frames, frames2, F * frame_n * sizeof(float)) == 0);
    printf("frame-by-frame == whole clip == 1+3 split: %s\n",
           memcmp(frames, frames2, F * frame_n * sizeof(float)) == 0 ? "bit-identical"
                                                                      : "DIFFERENT");
    /* uint8 conversion */
    uint8_t *rgb = malloc((size_t)H * W * 3);
    fb_taehv_to_rgb24(frames, H, W, rgb, (size_t)W * 3);
    float *back = malloc(frame_n * sizeof(float));
    fb_taehv_from_rgb24(rgb, (size_t)W * 3, H, W, back);
    double worst = 0;
    for (size_t i = 0; i < frame_n; i++) worst = fmax(worst, fabs(back[i] - frames[i]));
    CHECK(worst <= 0.5 / 255 + 1e-6);

    /* ---- errors ---- */
    int n_err = 7;
    CHECK(fb_taehv_decode(vae, kc, ds, latents, 1, frames2, &n_err, scratch, 100, err,
                          sizeof err) == -1 && n_err == 0);
    printf("small scratch: %s\n", err);
    fb_taehv_stream *bad = NULL;
    CHECK(fb_taehv_stream_init(vae, 0, 8, &bad, err, sizeof err) == -1 && bad == NULL);
    fb_taehv_enc *bad_enc = NULL;
    CHECK(fb_taehv_enc_init(vae, 36, 32, &bad_enc, err, sizeof err) == -1 && !bad_enc);
    printf("bad size: %s\n", err);
    fb_taehv *none = NULL;
    fb_vae_config wrong = cfg;
    CHECK(fb_taehv_load(gold, "vae.", &cfg, &none, err, sizeof err) == -1 && none == NULL);
    printf("missing: %s\n", err);
    wrong = cfg;
    wrong.frames_to_trim = 4;
    CHECK(fb_taehv_load(gold, "vae.", &wrong, &none, err, sizeof err) == -1);
    printf("config: %s\n", err);

    /* ---- encode, frame by frame ---- */
    const int NF = 8, IH = 32, IW = 32;
    const size_t in_n = (size_t)3 * IH * IW, enc_lat_n = (size_t)C * 4 * 4;
    float *in = tensor_f32(gold, "input.frames", NF * in_n);
    float *want_enc = tensor_f32(gold, "output.encoded", 2 * enc_lat_n);
    float *want_enc_s = tensor_f32(gold, "output.encoded_stream", 2 * enc_lat_n);
    if (!in || !want_enc || !want_enc_s) return 1;
    fb_taehv_enc *enc = NULL;
    CHECK_MSG(fb_taehv_enc_init(vae, IH, IW, &enc, err, sizeof err) == 0, "%s", err);
    size_t esb = fb_taehv_encode_scratch_bytes(vae, IH, IW);
    void *escratch = malloc(esb);
    float got[2 * 16 * 16], extra[2 * 16 * 16];
    int n_lat = 0;
    for (int f = 0; f < NF; f++) {
        int k = -1;
        CHECK(fb_taehv_encode_push(vae, kc, enc, in + f * in_n, got + n_lat * enc_lat_n, &k,
                                   escratch, esb, err, sizeof err) == 0);
        CHECK_MSG(k == (f % 4 == 3), "frame %d gave %d latents", f, k);
        n_lat += k;
    }
    CHECK(n_lat == 2);
    int k = -1;
    CHECK(fb_taehv_encode_flush(vae, kc, enc, extra, &k, escratch, esb, err, sizeof err) == 0);
    CHECK(k == 0);
    compare_f32("output.encoded_stream", got, want_enc_s, 2 * enc_lat_n, ATOL, RTOL);
    compare_f32("output.encoded", got, want_enc, 2 * enc_lat_n, ATOL, RTOL);

    /* A partial group: 5 frames + flush == frames 0..4 then frame 4 three more times. */
    fb_taehv_enc_reset(enc);
    for (int f = 0; f < 5; f++)
        CHECK(fb_taehv_encode_push(vae, kc, enc, in + f * in_n, got, &k, escratch, esb, err,
                                   sizeof err) == 0);
    CHECK(fb_taehv_encode_flush(vae, kc, enc, got + enc_lat_n, &k, escratch, esb, err,
                                sizeof err) == 0 && k == 1);
    fb_taehv_enc_reset(enc);
    for (int f = 0; f < 8; f++) {
        const float *fr = in + (f < 5 ? f : 4) * in_n;
        CHECK(fb_taehv_encode_push(vae, kc, enc, fr, extra + (f < 4 ? 0 : enc_lat_n), &k,
                                   escratch, esb, err, sizeof err) == 0);
    }
    CHECK(memcmp(got, extra, 2 * enc_lat_n * sizeof(float)) == 0);

    fb_taehv_enc_free(enc);
    fb_taehv_stream_free(ds);
    fb_taehv_stream_free(ds2);
    fb_taehv_free(vae);
    fb_kctx_free(kc);
    fb_st_close(gold);
    free(latents); free(want_stream); free(want_par); free(frames); free(frames2);
    free(scratch); free(escratch); free(rgb); free(back); free(in); free(want_enc);
    free(want_enc_s);
    TEST_EXIT();
}
