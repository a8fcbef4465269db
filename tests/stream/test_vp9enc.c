/* tests/stream/test_vp9enc.c - the VP9 encoder, checked by decoding its packets with libvpx.
 *
 * Quality (PSNR of the decoded luma against the converted source), frame order (the test
 * pattern's counter read back from every decoded frame), keyframe placement (periodic, forced,
 * rate-limited), packet fields, and the errors a caller can provoke. */
#include <math.h>

#include <vpx/vp8dx.h>
#include <vpx/vpx_decoder.h>

#include "stream/colour.h"
#include "stream/testpattern.h"
#include "stream/vp9enc.h"
#include "tests/stream/media_test.h"

enum { W = 256, H = 256, FPS = 30 };

typedef struct decoder {
    vpx_codec_ctx_t ctx;
    uint8_t rgb[W * H * 3];
} decoder;

static int decoder_init(decoder *d) {
    return vpx_codec_dec_init(&d->ctx, vpx_codec_vp9_dx(), NULL, 0) == VPX_CODEC_OK ? 0 : -1;
}

/* Decodes one packet; returns the decoded image (valid until the next call) or NULL. */
static vpx_image_t *decode(decoder *d, const fb_packet *p) {
    if (vpx_codec_decode(&d->ctx, p->payload, (unsigned)p->payload_size, NULL, 0) != VPX_CODEC_OK)
        return NULL;
    vpx_codec_iter_t it = NULL;
    return vpx_codec_get_frame(&d->ctx, &it);
}

static double psnr_y(const vpx_image_t *img, const uint8_t *ref, int ref_stride) {
    double se = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int e = img->planes[0][y * img->stride[0] + x] - ref[y * ref_stride + x];
            se += e * e;
        }
    double mse = se / (W * H);
    return mse > 0 ? 10 * log10(255.0 * 255.0 / mse) : 99;
}

static int32_t read_counter(decoder *d, const vpx_image_t *img) {
    fb_i420 planes = {img->planes[0], img->planes[1], img->planes[2], img->stride[0],
                      img->stride[1]};
    if (fb_i420_to_rgb24(&planes, W, H, d->rgb, 3 * W) != FB_COLOUR_OK) return -1;
    return fb_testpattern_read_counter(d->rgb, W, H);
}

/* 60 frames: quality, order, periodic keyframes, packet fields, bitstream agrees on key. */
static void test_encode_decode(void) {
    fb_vp9enc_params p = fb_vp9enc_default_params(W, H, FPS);
    CHECK(p.bitrate_kbps >= 900 && p.bitrate_kbps <= 1100);
    CHECK(p.cpu_used == 8 && p.keyframe_interval == 2 * FPS && p.threads >= 1);
    p.keyframe_interval = 20;
    fb_vp9enc *enc;
    char err[256];
    CHECKF(fb_vp9enc_new(&p, &enc, err, sizeof err) == FB_VP9ENC_OK, "%s", err);
    if (!enc) return;
    decoder *d = calloc(1, sizeof *d);
    static uint8_t rgb[W * H * 3], y[W * H], u[W * H / 4], v[W * H / 4];
    CHECK(d && decoder_init(d) == 0);
    double min_psnr = 99, sum_psnr = 0;
    size_t bytes = 0;
    int decoded = 0;
    for (uint32_t i = 0; i < 60; i++) {
        fb_testpattern_draw(rgb, W, H, i, FPS);
        fb_packet *pkt = NULL;
        CHECKF(fb_vp9enc_encode_rgb(enc, rgb, 3 * W, FB_VP9ENC_PTS_AUTO, &pkt) == FB_VP9ENC_OK,
               "%s", fb_vp9enc_error(enc));
        CHECK(pkt != NULL);
        if (!pkt) continue;
        CHECK(pkt->frame_no == i);
        CHECK(pkt->pts_us == (int64_t)i * 1000000 / FPS);
        CHECK(pkt->duration_us == 1000000 / FPS);
        CHECK(pkt->produced_us > 0);
        CHECKF(pkt->is_key == (i % 20 == 0), "frame %u is_key %d", i, pkt->is_key);
        /* The wire header carries the same fields. */
        int k;
        uint32_t n;
        int64_t t;
        CHECK(fb_frame_header_parse(pkt->wire, pkt->wire_size, &k, &n, &t) == 0);
        CHECK(k == pkt->is_key && n == i && t == pkt->pts_us);
        vpx_codec_stream_info_t si = {.sz = sizeof si};
        CHECK(vpx_codec_peek_stream_info(vpx_codec_vp9_dx(), pkt->payload,
                                         (unsigned)pkt->payload_size, &si) == VPX_CODEC_OK);
        CHECKF(si.is_kf == (unsigned)pkt->is_key, "frame %u: bitstream key %u", i, si.is_kf);
        bytes += pkt->payload_size;
        vpx_image_t *img = decode(d, pkt);
        CHECK(img != NULL);
        if (img) {
            decoded++;
            CHECK((int)img->d_w == W && (int)img->d_h == H);
            CHECK(img->cs == VPX_CS_BT_709 && img->range == VPX_CR_STUDIO_RANGE);
            fb_i420 src = {y, u, v, W, W / 2};
            fb_rgb24_to_i420(rgb, 3 * W, W, H, &src);
            double q = psnr_y(img, y, W);
            if (q < min_psnr) min_psnr = q;
            sum_psnr += q;
            int32_t c = read_counter(d, img);
            CHECKF(c == (int32_t)i, "decoded frame %u reads counter %d", i, c);
        }
        fb_packet_unref(pkt);
    }
    CHECK(decoded == 60);
    double kbps = bytes * 8.0 / 2.0 / 1000.0;
    printf("256x256: mean PSNR-Y %.2f dB, min %.2f dB, %.0f kbps (target %d)\n",
           sum_psnr / 60, min_psnr, kbps, p.bitrate_kbps);
    CHECKF(min_psnr > 30.0, "min PSNR %.2f dB", min_psnr);
    /* CBR on a simple synthetic picture may undershoot, but never by orders of magnitude. */
    CHECKF(kbps > 0.1 * p.bitrate_kbps && kbps < 2.0 * p.bitrate_kbps, "%.0f kbps", kbps);
    if (d) vpx_codec_destroy(&d->ctx);
    free(d);
    fb_vp9enc_free(enc);
}

/* Encodes frames [from, to) and records which were keyframes. */
static void encode_range(fb_vp9enc *enc, uint8_t *rgb, int from, int to, int *is_key) {
    for (int i = from; i < to; i++) {
        fb_testpattern_draw(rgb, W, H, (uint32_t)i, FPS);
        fb_packet *pkt = NULL;
        CHECK(fb_vp9enc_encode_rgb(enc, rgb, 3 * W, FB_VP9ENC_PTS_AUTO, &pkt) == FB_VP9ENC_OK);
        is_key[i] = pkt ? pkt->is_key : -1;
        fb_packet_unref(pkt);
    }
}

/* Requests give a keyframe at the first frame at least 1 s after the previous keyframe; many
 * requests give one keyframe; the periodic interval restarts from a forced keyframe. */
static void test_forced_keyframes(void) {
    fb_vp9enc_params p = fb_vp9enc_default_params(W, H, FPS);
    p.keyframe_interval = 90;
    fb_vp9enc *enc;
    CHECK(fb_vp9enc_new(&p, &enc, NULL, 0) == FB_VP9ENC_OK);
    if (!enc) return;
    static uint8_t rgb[W * H * 3];
    int key[200];
    encode_range(enc, rgb, 0, 5, key);
    fb_vp9enc_request_keyframe(enc);          /* at 0.167 s: too soon after frame 0 */
    encode_range(enc, rgb, 5, 31, key);
    fb_vp9enc_request_keyframe(enc);          /* at 1.033 s: too soon after frame 30 */
    encode_range(enc, rgb, 31, 61, key);
    for (int i = 61; i < 66; i++) {           /* a burst of requests */
        fb_vp9enc_request_keyframe(enc);
        encode_range(enc, rgb, i, i + 1, key);
    }
    encode_range(enc, rgb, 66, 200, key);
    for (int i = 0; i < 200; i++) {
        /* 0: first; 30: first frame >= 1 s after 0; 60: >= 1 s after 30; 90: the burst at
         * 61..65, served 1 s after 60; 180: periodic, 90 frames after 90. */
        int want = i == 0 || i == 30 || i == 60 || i == 90 || i == 180;
        CHECKF(key[i] == want, "frame %d: key %d, expected %d", i, key[i], want);
    }
    fb_vp9enc_free(enc);

    /* Without spacing, a request is served at the very next frame. */
    p.keyframe_min_spacing_ms = 0;
    CHECK(fb_vp9enc_new(&p, &enc, NULL, 0) == FB_VP9ENC_OK);
    if (!enc) return;
    encode_range(enc, rgb, 0, 3, key);
    fb_vp9enc_request_keyframe(enc);
    encode_range(enc, rgb, 3, 5, key);
    CHECK(key[0] == 1 && key[1] == 0 && key[2] == 0 && key[3] == 1 && key[4] == 0);
    fb_vp9enc_free(enc);
}

/* The I420 entry point wraps the caller's planes: same input, same bitstream as via RGB. */
static void test_i420_matches_rgb(void) {
    fb_vp9enc_params p = fb_vp9enc_default_params(W, H, FPS);
    p.threads = 1; /* one thread: bit-exact repeatable */
    fb_vp9enc *a, *b;
    CHECK(fb_vp9enc_new(&p, &a, NULL, 0) == FB_VP9ENC_OK);
    CHECK(fb_vp9enc_new(&p, &b, NULL, 0) == FB_VP9ENC_OK);
    if (!a || !b) return;
    enum { YS = W + 32, CS = W / 2 + 16 };
    static uint8_t rgb[W * H * 3], y[YS * H], u[CS * H / 2], v[CS * H / 2];
    fb_i420 img = {y, u, v, YS, CS};
    for (uint32_t i = 0; i < 10; i++) {
        fb_testpattern_draw(rgb, W, H, i, FPS);
        fb_rgb24_to_i420(rgb, 3 * W, W, H, &img);
        fb_packet *pa = NULL, *pb = NULL;
        CHECK(fb_vp9enc_encode_rgb(a, rgb, 3 * W, FB_VP9ENC_PTS_AUTO, &pa) == FB_VP9ENC_OK);
        CHECK(fb_vp9enc_encode_i420(b, &img, FB_VP9ENC_PTS_AUTO, &pb) == FB_VP9ENC_OK);
        CHECK(pa && pb && pa->payload_size == pb->payload_size &&
              memcmp(pa->payload, pb->payload, pa->payload_size) == 0);
        fb_packet_unref(pa);
        fb_packet_unref(pb);
    }
    fb_vp9enc_free(a);
    fb_vp9enc_free(b);
}

static void test_errors(void) {
    fb_vp9enc_params p = fb_vp9enc_default_params(W, H, FPS);
    fb_vp9enc *enc = (fb_vp9enc *)1;
    char err[256] = "";
    fb_vp9enc_params bad = p;
    bad.width = 255;
    CHECK(fb_vp9enc_new(&bad, &enc, err, sizeof err) == FB_VP9ENC_ERR_PARAM && !enc);
    CHECKF(strstr(err, "even") != NULL, "message: %s", err);
    bad = p;
    bad.fps = 0;
    CHECK(fb_vp9enc_new(&bad, &enc, err, sizeof err) == FB_VP9ENC_ERR_PARAM);
    bad = p;
    bad.cpu_used = 3;
    CHECK(fb_vp9enc_new(&bad, &enc, err, sizeof err) == FB_VP9ENC_ERR_PARAM);
    CHECKF(strstr(err, "cpu_used") != NULL, "message: %s", err);
    CHECK(fb_vp9enc_new(NULL, &enc, err, sizeof err) == FB_VP9ENC_ERR_ARG);

    CHECK(fb_vp9enc_new(&p, &enc, err, sizeof err) == FB_VP9ENC_OK);
    if (!enc) return;
    static uint8_t rgb[W * H * 3];
    fb_packet *pkt = (fb_packet *)1;
    CHECK(fb_vp9enc_encode_rgb(enc, NULL, 3 * W, 0, &pkt) == FB_VP9ENC_ERR_ARG && !pkt);
    CHECK(fb_vp9enc_encode_rgb(enc, rgb, 3 * W - 1, 0, &pkt) == FB_VP9ENC_ERR_ARG);
    CHECK(fb_vp9enc_encode_rgb(enc, rgb, 3 * W, 5000, &pkt) == FB_VP9ENC_OK && pkt);
    CHECK(pkt && pkt->pts_us == 5000 && pkt->frame_no == 0 && pkt->is_key);
    fb_packet_unref(pkt);
    CHECK(fb_vp9enc_encode_rgb(enc, rgb, 3 * W, 5000, &pkt) == FB_VP9ENC_ERR_PTS && !pkt);
    CHECK(strstr(fb_vp9enc_error(enc), "timestamp") != NULL);
    CHECK(fb_vp9enc_encode_rgb(enc, rgb, 3 * W, 4000, &pkt) == FB_VP9ENC_ERR_PTS);
    CHECK(fb_vp9enc_encode_rgb(enc, rgb, 3 * W, 40000, &pkt) == FB_VP9ENC_OK && pkt);
    CHECK(pkt && pkt->frame_no == 1); /* refused frames do not take a number */
    fb_packet_unref(pkt);
    CHECK(fb_vp9enc_set_bitrate(enc, 10) == FB_VP9ENC_ERR_PARAM);
    CHECK(fb_vp9enc_set_bitrate(enc, 500) == FB_VP9ENC_OK);
    CHECK(fb_vp9enc_get_params(enc)->bitrate_kbps == 500);
    CHECK(fb_vp9enc_encode_rgb(enc, rgb, 3 * W, 80000, &pkt) == FB_VP9ENC_OK && pkt);
    fb_packet_unref(pkt);
    fb_vp9enc_free(enc);
    fb_vp9enc_free(NULL);

    /* Defaults scale with the picture. */
    fb_vp9enc_params big = fb_vp9enc_default_params(832, 480, 30);
    CHECK(big.bitrate_kbps > p.bitrate_kbps && big.bitrate_kbps < 4000);
}

int main(void) {
    test_encode_decode();
    test_forced_keyframes();
    test_i420_matches_rgb();
    test_errors();
    return test_result("stream_vp9enc");
}
