/* stream/vp9enc.c - libvpx VP9 realtime encoder wrapper (see vp9enc.h).
 *
 * The configuration mirrors WebRTC's libvpx_vp9_encoder.cc for a single spatial/temporal layer
 * (shared/specs/streaming.md 2.1), with libvpx 1.12's unsuitable defaults overridden (2.2):
 * lag 25 -> 0, VBR -> CBR, automatic keyframes -> off, cpu-used 0 -> 8, row-mt off -> on. */
#include "stream/vp9enc.h"

#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vpx/vp8cx.h>
#include <vpx/vpx_encoder.h>

/* libvpx timestamps are in units of the timebase; microseconds match fb_packet.pts_us. */
#define TIMEBASE_DEN 1000000

struct fb_vp9enc {
    fb_vp9enc_params p;
    vpx_codec_ctx_t codec;
    vpx_codec_enc_cfg_t cfg;
    vpx_image_t *rgb_img;       /* I420 planes RGB input is converted into, allocated once */
    uint8_t *scratch;           /* joins several output packets of one frame (never expected) */
    size_t scratch_cap;
    uint32_t frame_no;          /* number of the next frame */
    int64_t last_pts_us;        /* pts of the previous frame, INT64_MIN before the first */
    int64_t last_key_pts_us;    /* pts of the last keyframe, INT64_MIN before the first */
    int64_t frame_duration_us;  /* 1e6 / fps, at least 1 (libvpx refuses 0) */
    int frames_since_key;       /* frames encoded since the last keyframe, counting it */
    atomic_int key_requested;   /* set by any thread, cleared by the encoding thread */
    char err[256];
};

static void set_err(fb_vp9enc *e, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->err, sizeof e->err, fmt, ap);
    va_end(ap);
}

static void copy_err(char *dst, size_t size, const char *msg) {
    if (dst && size) snprintf(dst, size, "%s", msg);
}

static int64_t monotonic_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* WebRTC's choice: more threads only for larger frames and when the cores exist. */
static int default_threads(int width, int height) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    long px = (long)width * height;
    if (px >= 1280L * 720 && cores > 4) return 4;
    if (px >= 640L * 360 && cores >= 2) return 2;
    return 1;
}

fb_vp9enc_params fb_vp9enc_default_params(int width, int height, int fps) {
    fb_vp9enc_params p;
    memset(&p, 0, sizeof p);
    p.width = width;
    p.height = height;
    p.fps = fps > 0 ? fps : 30;
    /* Bits per second grow with the square root of the pixel rate: generated video is detailed
     * and changes everywhere, so small frames need more bits per pixel than camera video. */
    double scale = sqrt((double)width * height / (256.0 * 256.0) * p.fps / 30.0);
    int kbps = (int)(1000.0 * scale / 10.0 + 0.5) * 10;
    p.bitrate_kbps = kbps < 100 ? 100 : kbps > 20000 ? 20000 : kbps;
    p.keyframe_interval = 2 * p.fps;
    p.keyframe_min_spacing_ms = 1000;
    p.cpu_used = 8;
    p.threads = default_threads(width, height);
    return p;
}

/* Returns NULL when the parameters are usable, or what is wrong. */
static const char *check_params(const fb_vp9enc_params *p) {
    if (p->width < 16 || p->height < 16 || p->width > 8192 || p->height > 8192)
        return "width and height must be within 16..8192";
    if (p->width % 2 || p->height % 2) return "width and height must be even";
    if (p->fps < 1 || p->fps > 240) return "fps must be within 1..240";
    if (p->bitrate_kbps < 50 || p->bitrate_kbps > 100000)
        return "bitrate_kbps must be within 50..100000";
    if (p->keyframe_interval < 1 || p->keyframe_interval > 100000)
        return "keyframe_interval must be within 1..100000";
    if (p->keyframe_min_spacing_ms < 0 || p->keyframe_min_spacing_ms > 60000)
        return "keyframe_min_spacing_ms must be within 0..60000";
    if (p->cpu_used < 5 || p->cpu_used > 9) return "cpu_used must be within 5..9";
    if (p->threads < 1 || p->threads > 16) return "threads must be within 1..16";
    return NULL;
}

/* log2 of the number of tile columns: one per thread, but VP9 tiles are at least 256 px wide. */
static int tile_columns_log2(int threads, int width) {
    int log2 = 0;
    while ((1 << (log2 + 1)) <= threads && (width >> (log2 + 1)) >= 256) log2++;
    return log2;
}

static fb_vp9enc_status fail_codec(fb_vp9enc *e, const char *what) {
    const char *detail = vpx_codec_error_detail(&e->codec);
    set_err(e, "%s: %s%s%s", what, vpx_codec_error(&e->codec), detail ? ": " : "",
            detail ? detail : "");
    return FB_VP9ENC_ERR_CODEC;
}

fb_vp9enc_status fb_vp9enc_new(const fb_vp9enc_params *p, fb_vp9enc **out, char *err,
                               size_t err_size) {
    if (!out) return FB_VP9ENC_ERR_ARG;
    *out = NULL;
    if (!p) {
        copy_err(err, err_size, "no parameters given");
        return FB_VP9ENC_ERR_ARG;
    }
    const char *bad = check_params(p);
    if (bad) {
        copy_err(err, err_size, bad);
        return FB_VP9ENC_ERR_PARAM;
    }
    fb_vp9enc *e = calloc(1, sizeof *e);
    if (!e) {
        copy_err(err, err_size, "out of memory");
        return FB_VP9ENC_ERR_NOMEM;
    }
    e->p = *p;
    e->last_pts_us = INT64_MIN;
    e->last_key_pts_us = INT64_MIN;
    e->frame_duration_us = TIMEBASE_DEN / p->fps > 0 ? TIMEBASE_DEN / p->fps : 1;
    atomic_init(&e->key_requested, 0);

    vpx_codec_iface_t *iface = vpx_codec_vp9_cx();
    vpx_codec_enc_cfg_t *c = &e->cfg;
    if (vpx_codec_enc_config_default(iface, c, 0) != VPX_CODEC_OK) {
        copy_err(err, err_size, "libvpx has no VP9 encoder configuration");
        free(e);
        return FB_VP9ENC_ERR_CODEC;
    }
    c->g_w = (unsigned)p->width;
    c->g_h = (unsigned)p->height;
    c->g_profile = 0;                   /* 8-bit 4:2:0 */
    c->g_bit_depth = VPX_BITS_8;
    c->g_input_bit_depth = 8;
    c->g_timebase.num = 1;
    c->g_timebase.den = TIMEBASE_DEN;
    c->g_threads = (unsigned)p->threads;
    c->g_pass = VPX_RC_ONE_PASS;
    c->g_lag_in_frames = 0;             /* every input frame comes out at once */
    c->g_error_resilient = 0;           /* single layer: WebRTC leaves it off */
    c->rc_end_usage = VPX_CBR;
    c->rc_target_bitrate = (unsigned)p->bitrate_kbps;
    c->rc_min_quantizer = 2;
    c->rc_max_quantizer = 52;
    c->rc_undershoot_pct = 50;
    c->rc_overshoot_pct = 50;
    c->rc_buf_initial_sz = 500;
    c->rc_buf_optimal_sz = 600;
    c->rc_buf_sz = 1000;
    c->rc_dropframe_thresh = 0;         /* every generated frame must reach viewers and disk */
    c->rc_resize_allowed = 0;
    c->kf_mode = VPX_KF_DISABLED;       /* we force keyframes ourselves */
    c->kf_min_dist = (unsigned)p->keyframe_interval;
    c->kf_max_dist = (unsigned)p->keyframe_interval;

    if (vpx_codec_enc_init(&e->codec, iface, c, 0) != VPX_CODEC_OK) {
        fail_codec(e, "cannot initialise the VP9 encoder");
        copy_err(err, err_size, e->err);
        free(e);
        return FB_VP9ENC_ERR_CODEC;
    }

    unsigned max_intra_pct = (unsigned)(0.5 * c->rc_buf_optimal_sz * p->fps / 10.0);
    if (max_intra_pct < 300) max_intra_pct = 300;
    struct {
        int id;
        int value;
        const char *name;
    } ctrls[] = {
        {VP8E_SET_CPUUSED, p->cpu_used, "cpu-used"},
        {VP9E_SET_ROW_MT, 1, "row-mt"},
        {VP9E_SET_TILE_COLUMNS, tile_columns_log2(p->threads, p->width), "tile columns"},
        {VP9E_SET_AQ_MODE, 3, "aq-mode"},                      /* cyclic refresh */
        {VP9E_SET_NOISE_SENSITIVITY, 0, "noise sensitivity"},  /* denoiser off */
        {VP9E_SET_FRAME_PARALLEL_DECODING, 0, "frame parallel decoding"},
        {VP8E_SET_STATIC_THRESHOLD, 1, "static threshold"},
        {VP8E_SET_MAX_INTRA_BITRATE_PCT, (int)max_intra_pct, "max intra bitrate"},
        {VP9E_SET_COLOR_SPACE, VPX_CS_BT_709, "colour space"},
        {VP9E_SET_COLOR_RANGE, VPX_CR_STUDIO_RANGE, "colour range"},
    };
    for (size_t i = 0; i < sizeof ctrls / sizeof ctrls[0]; i++) {
        if (vpx_codec_control_(&e->codec, ctrls[i].id, ctrls[i].value) != VPX_CODEC_OK) {
            char what[64];
            snprintf(what, sizeof what, "cannot set %s", ctrls[i].name);
            fail_codec(e, what);
            copy_err(err, err_size, e->err);
            vpx_codec_destroy(&e->codec);
            free(e);
            return FB_VP9ENC_ERR_CODEC;
        }
    }

    e->rgb_img = vpx_img_alloc(NULL, VPX_IMG_FMT_I420, (unsigned)p->width, (unsigned)p->height, 32);
    e->scratch_cap = (size_t)p->width * p->height * 2;
    e->scratch = malloc(e->scratch_cap);
    if (!e->rgb_img || !e->scratch) {
        copy_err(err, err_size, "out of memory");
        fb_vp9enc_free(e);
        return FB_VP9ENC_ERR_NOMEM;
    }
    e->rgb_img->cs = VPX_CS_BT_709;
    e->rgb_img->range = VPX_CR_STUDIO_RANGE;
    *out = e;
    return FB_VP9ENC_OK;
}

void fb_vp9enc_free(fb_vp9enc *e) {
    if (!e) return;
    vpx_codec_destroy(&e->codec);
    vpx_img_free(e->rgb_img);
    free(e->scratch);
    free(e);
}

/* Decides whether this frame must be a keyframe, consuming a pending request if it is. */
static int want_keyframe(fb_vp9enc *e, int64_t pts_us) {
    if (e->last_key_pts_us == INT64_MIN) return 1;
    if (e->frames_since_key >= e->p.keyframe_interval) return 1;
    if (atomic_load_explicit(&e->key_requested, memory_order_relaxed) &&
        pts_us - e->last_key_pts_us >= (int64_t)e->p.keyframe_min_spacing_ms * 1000)
        return 1;
    return 0;
}

static fb_vp9enc_status encode_image(fb_vp9enc *e, vpx_image_t *img, int64_t pts_us,
                                     fb_packet **out) {
    if (pts_us == FB_VP9ENC_PTS_AUTO)
        pts_us = (int64_t)((uint64_t)e->frame_no * TIMEBASE_DEN / (uint64_t)e->p.fps);
    if (pts_us < 0 || (e->last_pts_us != INT64_MIN && pts_us <= e->last_pts_us)) {
        set_err(e, "timestamp %lld us is not after the previous frame's %lld us",
                (long long)pts_us, (long long)e->last_pts_us);
        return FB_VP9ENC_ERR_PTS;
    }

    vpx_enc_frame_flags_t flags = 0;
    if (want_keyframe(e, pts_us)) {
        flags |= VPX_EFLAG_FORCE_KF;
        /* A keyframe satisfies every request made so far. */
        atomic_store_explicit(&e->key_requested, 0, memory_order_relaxed);
    }
    if (vpx_codec_encode(&e->codec, img, pts_us, (unsigned long)e->frame_duration_us, flags,
                         VPX_DL_REALTIME) != VPX_CODEC_OK)
        return fail_codec(e, "VP9 encoding failed");

    /* With lag 0 libvpx returns exactly one frame packet per input frame; join them defensively
     * if it ever returns more, so one packet still means one shown frame. */
    const vpx_codec_cx_pkt_t *pkt, *only = NULL;
    vpx_codec_iter_t iter = NULL;
    size_t total = 0;
    int n = 0, is_key = 0;
    while ((pkt = vpx_codec_get_cx_data(&e->codec, &iter))) {
        if (pkt->kind != VPX_CODEC_CX_FRAME_PKT) continue;
        size_t sz = pkt->data.frame.sz;
        if (n == 0) {
            only = pkt;
        } else {
            if (n == 1) { /* a second packet: move the first into the scratch buffer */
                if (total > e->scratch_cap) goto too_big;
                memcpy(e->scratch, only->data.frame.buf, total);
            }
            if (total + sz > e->scratch_cap) goto too_big;
            memcpy(e->scratch + total, pkt->data.frame.buf, sz);
        }
        total += sz;
        is_key |= (pkt->data.frame.flags & VPX_FRAME_IS_KEY) != 0;
        n++;
    }

    uint32_t frame_no = e->frame_no++;
    e->last_pts_us = pts_us;
    if (n == 0) return FB_VP9ENC_OK; /* dropped by the encoder */
    if (is_key) {
        e->last_key_pts_us = pts_us;
        e->frames_since_key = 1;
    } else {
        e->frames_since_key++;
    }
    fb_packet *p = fb_packet_new(n == 1 ? only->data.frame.buf : e->scratch, total, is_key,
                                 frame_no, pts_us, e->frame_duration_us);
    if (!p) {
        set_err(e, "out of memory for a %zu-byte packet", total);
        return FB_VP9ENC_ERR_NOMEM;
    }
    p->produced_us = monotonic_us();
    *out = p;
    return FB_VP9ENC_OK;

too_big:
    set_err(e, "encoder output for one frame exceeds %zu bytes", e->scratch_cap);
    return FB_VP9ENC_ERR_CODEC;
}

fb_vp9enc_status fb_vp9enc_encode_rgb(fb_vp9enc *e, const uint8_t *rgb, int stride, int64_t pts_us,
                                      fb_packet **out) {
    if (out) *out = NULL;
    if (!e) return FB_VP9ENC_ERR_ARG;
    if (!rgb || !out || stride < 3 * e->p.width) {
        set_err(e, "encode_rgb: NULL buffer or stride %d shorter than a row", stride);
        return FB_VP9ENC_ERR_ARG;
    }
    vpx_image_t *img = e->rgb_img;
    fb_i420 planes = {img->planes[VPX_PLANE_Y], img->planes[VPX_PLANE_U], img->planes[VPX_PLANE_V],
                      img->stride[VPX_PLANE_Y], img->stride[VPX_PLANE_U]};
    fb_rgb24_to_i420(rgb, stride, e->p.width, e->p.height, &planes); /* sizes checked at open */
    return encode_image(e, img, pts_us, out);
}

fb_vp9enc_status fb_vp9enc_encode_i420(fb_vp9enc *e, const fb_i420 *in, int64_t pts_us,
                                       fb_packet **out) {
    if (out) *out = NULL;
    if (!e) return FB_VP9ENC_ERR_ARG;
    if (!in || !out || !in->y || !in->u || !in->v || in->stride_y < e->p.width ||
        in->stride_uv < e->p.width / 2) {
        set_err(e, "encode_i420: NULL plane or stride shorter than a row");
        return FB_VP9ENC_ERR_ARG;
    }
    /* Describe the caller's planes in a vpx_image_t on the stack: no copy, no allocation. */
    vpx_image_t img;
    memset(&img, 0, sizeof img);
    img.fmt = VPX_IMG_FMT_I420;
    img.cs = VPX_CS_BT_709;
    img.range = VPX_CR_STUDIO_RANGE;
    img.w = img.d_w = (unsigned)e->p.width;
    img.h = img.d_h = (unsigned)e->p.height;
    img.bit_depth = 8;
    img.x_chroma_shift = img.y_chroma_shift = 1;
    img.bps = 12;
    img.planes[VPX_PLANE_Y] = in->y;
    img.planes[VPX_PLANE_U] = in->u;
    img.planes[VPX_PLANE_V] = in->v;
    img.stride[VPX_PLANE_Y] = in->stride_y;
    img.stride[VPX_PLANE_U] = img.stride[VPX_PLANE_V] = in->stride_uv;
    return encode_image(e, &img, pts_us, out);
}

void fb_vp9enc_request_keyframe(fb_vp9enc *e) {
    if (e) atomic_store_explicit(&e->key_requested, 1, memory_order_relaxed);
}

fb_vp9enc_status fb_vp9enc_set_bitrate(fb_vp9enc *e, int bitrate_kbps) {
    if (!e) return FB_VP9ENC_ERR_ARG;
    if (bitrate_kbps < 50 || bitrate_kbps > 100000) {
        set_err(e, "bitrate %d kbps outside 50..100000", bitrate_kbps);
        return FB_VP9ENC_ERR_PARAM;
    }
    e->cfg.rc_target_bitrate = (unsigned)bitrate_kbps;
    if (vpx_codec_enc_config_set(&e->codec, &e->cfg) != VPX_CODEC_OK)
        return fail_codec(e, "cannot change the bitrate");
    e->p.bitrate_kbps = bitrate_kbps;
    return FB_VP9ENC_OK;
}

const fb_vp9enc_params *fb_vp9enc_get_params(const fb_vp9enc *e) {
    return e ? &e->p : NULL;
}

const char *fb_vp9enc_error(const fb_vp9enc *e) {
    return e ? e->err : "no encoder";
}

const char *fb_vp9enc_status_str(fb_vp9enc_status s) {
    switch (s) {
    case FB_VP9ENC_OK: return "ok";
    case FB_VP9ENC_ERR_PARAM: return "invalid encoder parameter";
    case FB_VP9ENC_ERR_ARG: return "invalid argument";
    case FB_VP9ENC_ERR_PTS: return "timestamp not increasing";
    case FB_VP9ENC_ERR_NOMEM: return "out of memory";
    case FB_VP9ENC_ERR_CODEC: return "libvpx error";
    }
    return "unknown encoder status";
}
