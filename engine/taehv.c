/* engine/taehv.c - TAEHV streaming decoder and encoder on the conv kernels (see taehv.h).
 *
 * Two rewrites of upstream's graph keep the work and memory down without changing results:
 *   - Upsample (nearest) followed by TGrow (a 1x1 conv) equals TGrow followed by Upsample, so
 *     TGrow runs at the low resolution (4x fewer FLOPs) and the upsampling is fused into the
 *     next 3x3 conv's column fill (kernels/conv.h `up`): no upsampled tensor is ever stored.
 *   - MemBlock's last conv accumulates into its input buffer in place (residual == output),
 *     after the input has been copied into the block's past for the next time step.
 */
#include "engine/taehv.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/conv.h"

#define N_MEM 3 /* MemBlocks per stage */

typedef struct {
    float *w, *b;      /* [c_out, c_in, k, k], [c_out] or NULL */
    int c_in, c_out, k;
} conv_w;

typedef struct {
    conv_w c0, c2, c4; /* conv.0 (2n -> n), conv.2, conv.4 */
} memblock_w;

typedef struct {
    int c, c_next;     /* channels in this stage, after its trailing conv */
    int time_up, space_up;
    memblock_w mb[N_MEM];
    conv_w tgrow;      /* 1x1 c -> time_up * c */
    conv_w conv;       /* 3x3 c -> c_next, no bias */
} dec_stage;

typedef struct {
    int stride;        /* TPool frames per output frame (1 or 2) */
    conv_w pool;       /* 1x1 stride * c -> c */
    conv_w conv;       /* 3x3 stride 2, no bias */
    memblock_w mb[N_MEM];
} enc_stage;

struct fb_taehv {
    fb_vae_config cfg;
    int n_dec;         /* decoder stages with MemBlocks: n_stages - 1 */
    conv_w dec_in;     /* decoder.1 */
    dec_stage dec[FB_CFG_MAX_STAGES];
    conv_w dec_out;    /* decoder.(6 n_stages - 2) */
    int fpl;           /* frames per latent */
    int has_enc;
    int n_enc;
    conv_w enc_in;     /* encoder.0 */
    enc_stage enc[FB_CFG_MAX_STAGES];
    conv_w enc_out;    /* encoder.(2 + 5 n_enc) */
    int enc_group;     /* frames per encoded latent */
    size_t weight_bytes;
};

static void set_err(char *err, size_t n, const char *fmt, ...) {
    if (!err || !n) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}

/* ---- loading ------------------------------------------------------------------------------ */

static void conv_free(conv_w *c) {
    free(c->w);
    free(c->b);
    c->w = c->b = NULL;
}

static void memblock_free(memblock_w *m) {
    conv_free(&m->c0);
    conv_free(&m->c2);
    conv_free(&m->c4);
}

void fb_taehv_free(fb_taehv *v) {
    if (!v) return;
    conv_free(&v->dec_in);
    conv_free(&v->dec_out);
    conv_free(&v->enc_in);
    conv_free(&v->enc_out);
    for (int i = 0; i < FB_CFG_MAX_STAGES; i++) {
        for (int j = 0; j < N_MEM; j++) {
            memblock_free(&v->dec[i].mb[j]);
            memblock_free(&v->enc[i].mb[j]);
        }
        conv_free(&v->dec[i].tgrow);
        conv_free(&v->dec[i].conv);
        conv_free(&v->enc[i].pool);
        conv_free(&v->enc[i].conv);
    }
    free(v);
}

static const fb_st_tensor *find_float(const fb_safetensors *st, const char *name, char *err,
                                      size_t err_size) {
    const fb_st_tensor *t = fb_st_find(st, name);
    if (!t) {
        set_err(err, err_size, "vae: tensor %s is missing", name);
        return NULL;
    }
    if (t->dtype != FB_DT_F32 && t->dtype != FB_DT_F16 && t->dtype != FB_DT_BF16) {
        set_err(err, err_size, "vae: %s has dtype %s (expected F32, F16 or BF16)", name,
                fb_dtype_name(t->dtype));
        return NULL;
    }
    return t;
}

/* Loads `<prefix><base>.weight` [c_out, c_in, k, k] (and `.bias` [c_out] when has_bias).
 * extra_rows_ok: the tensor may have more output rows (a multiple of c_out_unit); the last
 * c_out rows are kept (TGrow of a checkpoint with a larger time stride). */
static int load_conv(fb_taehv *v, const fb_safetensors *st, const char *prefix,
                     const char *base, int c_in, int c_out, int k, int has_bias,
                     int extra_rows_ok, conv_w *c, char *err, size_t err_size) {
    char name[256];
    snprintf(name, sizeof name, "%s%s.weight", prefix, base);
    const fb_st_tensor *t = find_float(st, name, err, err_size);
    if (!t) return -1;
    int64_t shape[4] = {c_out, c_in, k, k};
    int64_t skip_rows = 0;
    if (extra_rows_ok && t->ndim == 4 && t->shape[0] > c_out && t->shape[0] % c_in == 0 &&
        t->shape[1] == c_in && t->shape[2] == k && t->shape[3] == k)
        skip_rows = t->shape[0] - c_out;
    else if (fb_st_check_shape(t, 4, shape, err, err_size))
        return -1;
    c->c_in = c_in;
    c->c_out = c_out;
    c->k = k;
    size_t n = (size_t)c_out * c_in * k * k;
    c->w = malloc(n * sizeof(float));
    float *all = skip_rows ? malloc((size_t)t->numel * sizeof(float)) : c->w;
    if (!c->w || !all) {
        if (skip_rows) free(all);
        set_err(err, err_size, "vae: out of memory loading %s", name);
        return -1;
    }
    fb_st_to_f32(t, all);
    if (skip_rows) {
        memcpy(c->w, all + (size_t)skip_rows * c_in * k * k, n * sizeof(float));
        free(all);
    }
    v->weight_bytes += n * sizeof(float);
    if (has_bias) {
        snprintf(name, sizeof name, "%s%s.bias", prefix, base);
        t = find_float(st, name, err, err_size);
        int64_t bshape[1] = {c_out};
        if (!t || fb_st_check_shape(t, 1, bshape, err, err_size)) return -1;
        c->b = malloc((size_t)c_out * sizeof(float));
        if (!c->b) {
            set_err(err, err_size, "vae: out of memory loading %s", name);
            return -1;
        }
        fb_st_to_f32(t, c->b);
        v->weight_bytes += (size_t)c_out * sizeof(float);
    }
    return 0;
}

static int load_memblock(fb_taehv *v, const fb_safetensors *st, const char *prefix,
                         const char *part, int index, int c, memblock_w *m, char *err,
                         size_t err_size) {
    char base[96];
    snprintf(base, sizeof base, "%s.%d.conv.0", part, index);
    if (load_conv(v, st, prefix, base, 2 * c, c, 3, 1, 0, &m->c0, err, err_size)) return -1;
    snprintf(base, sizeof base, "%s.%d.conv.2", part, index);
    if (load_conv(v, st, prefix, base, c, c, 3, 1, 0, &m->c2, err, err_size)) return -1;
    snprintf(base, sizeof base, "%s.%d.conv.4", part, index);
    return load_conv(v, st, prefix, base, c, c, 3, 1, 0, &m->c4, err, err_size);
}

static int check_config(const fb_vae_config *c, char *err, size_t err_size) {
    if (c->n_stages < 2 || c->n_stages > FB_CFG_MAX_STAGES) {
        set_err(err, err_size, "vae: %d decoder stages (expected 2..%d)", c->n_stages,
                FB_CFG_MAX_STAGES);
        return -1;
    }
    for (int i = 0; i < c->n_stages; i++)
        if (c->decoder_channels[i] < 1 || c->decoder_channels[i] > 4096) {
            set_err(err, err_size, "vae: decoder_channels[%d] = %d is out of range", i,
                    c->decoder_channels[i]);
            return -1;
        }
    if (c->latent_channels < 1 || c->latent_channels > 4096 || c->image_channels != 3 ||
        c->patch_size < 1 || c->patch_size > 8 || c->encoder_channels < 1 ||
        c->encoder_channels > 4096) {
        set_err(err, err_size,
                "vae: latent_channels %d, image_channels %d (must be 3), patch_size %d, "
                "encoder_channels %d: out of range", c->latent_channels, c->image_channels,
                c->patch_size, c->encoder_channels);
        return -1;
    }
    if (c->n_encoder_time < 1 || c->n_encoder_time > FB_CFG_MAX_STAGES) {
        set_err(err, err_size, "vae: %d encoder stages (expected 1..%d)", c->n_encoder_time,
                FB_CFG_MAX_STAGES);
        return -1;
    }
    int fpl = 1;
    for (int i = 0; i < c->n_stages - 1; i++) fpl *= c->decoder_time_upscale[i] ? 2 : 1;
    if (c->frames_to_trim < 0 || c->frames_to_trim >= fpl) {
        set_err(err, err_size, "vae: frames_to_trim %d must be in [0, %d)", c->frames_to_trim,
                fpl);
        return -1;
    }
    if (c->warm_start != 0 && c->warm_start != 1) {
        set_err(err, err_size, "vae: warm_start %d must be 0 or 1", c->warm_start);
        return -1;
    }
    return 0;
}

int fb_taehv_load(const fb_safetensors *st, const char *prefix, const fb_vae_config *cfg,
                  fb_taehv **out, char *err, size_t err_size) {
    *out = NULL;
    if (!st || !cfg) {
        set_err(err, err_size, "vae: NULL argument");
        return -1;
    }
    if (!prefix) prefix = "";
    if (check_config(cfg, err, err_size)) return -1;
    fb_taehv *v = calloc(1, sizeof *v);
    if (!v) {
        set_err(err, err_size, "vae: out of memory");
        return -1;
    }
    v->cfg = *cfg;
    const int p2 = cfg->patch_size * cfg->patch_size;
    const int *ch = cfg->decoder_channels;
    v->n_dec = cfg->n_stages - 1;
    v->fpl = 1;
    char base[96];
    if (load_conv(v, st, prefix, "decoder.1", cfg->latent_channels, ch[0], 3, 1, 0,
                  &v->dec_in, err, err_size))
        goto fail;
    for (int i = 0; i < v->n_dec; i++) {
        dec_stage *s = &v->dec[i];
        const int at = 3 + 6 * i; /* module index of the stage's first MemBlock */
        s->c = ch[i];
        s->c_next = ch[i + 1];
        s->time_up = cfg->decoder_time_upscale[i] ? 2 : 1;
        s->space_up = cfg->decoder_space_upscale[i] ? 2 : 1;
        v->fpl *= s->time_up;
        for (int j = 0; j < N_MEM; j++)
            if (load_memblock(v, st, prefix, "decoder", at + j, s->c, &s->mb[j], err, err_size))
                goto fail;
        snprintf(base, sizeof base, "decoder.%d.conv", at + 4);
        if (load_conv(v, st, prefix, base, s->c, s->time_up * s->c, 1, 0, 1, &s->tgrow, err,
                      err_size))
            goto fail;
        snprintf(base, sizeof base, "decoder.%d", at + 5);
        if (load_conv(v, st, prefix, base, s->c, s->c_next, 3, 0, 0, &s->conv, err, err_size))
            goto fail;
    }
    snprintf(base, sizeof base, "decoder.%d", 6 * cfg->n_stages - 2);
    if (load_conv(v, st, prefix, base, ch[cfg->n_stages - 1], 3 * p2, 3, 1, 0, &v->dec_out,
                  err, err_size))
        goto fail;

    /* The encoder is optional (decoder-only checkpoints). */
    char probe[256];
    snprintf(probe, sizeof probe, "%sencoder.0.weight", prefix);
    v->n_enc = cfg->n_encoder_time;
    v->enc_group = 1;
    if (fb_st_find(st, probe)) {
        const int ce = cfg->encoder_channels;
        if (load_conv(v, st, prefix, "encoder.0", 3 * p2, ce, 3, 1, 0, &v->enc_in, err,
                      err_size))
            goto fail;
        for (int i = 0; i < v->n_enc; i++) {
            enc_stage *s = &v->enc[i];
            const int at = 2 + 5 * i; /* module index of the stage's TPool */
            s->stride = cfg->encoder_time_downscale[i] ? 2 : 1;
            v->enc_group *= s->stride;
            snprintf(base, sizeof base, "encoder.%d.conv", at);
            if (load_conv(v, st, prefix, base, s->stride * ce, ce, 1, 0, 0, &s->pool, err,
                          err_size))
                goto fail;
            snprintf(base, sizeof base, "encoder.%d", at + 1);
            if (load_conv(v, st, prefix, base, ce, ce, 3, 0, 0, &s->conv, err, err_size))
                goto fail;
            for (int j = 0; j < N_MEM; j++)
                if (load_memblock(v, st, prefix, "encoder", at + 2 + j, ce, &s->mb[j], err,
                                  err_size))
                    goto fail;
        }
        snprintf(base, sizeof base, "encoder.%d", 2 + 5 * v->n_enc);
        if (load_conv(v, st, prefix, base, ce, cfg->latent_channels, 3, 1, 0, &v->enc_out, err,
                      err_size))
            goto fail;
        v->has_enc = 1;
    }
    *out = v;
    return 0;
fail:
    fb_taehv_free(v);
    return -1;
}

const fb_vae_config *fb_taehv_get_config(const fb_taehv *v) { return &v->cfg; }
int fb_taehv_has_encoder(const fb_taehv *v) { return v->has_enc; }
size_t fb_taehv_weight_bytes(const fb_taehv *v) { return v->weight_bytes; }
int fb_taehv_frames_per_latent(const fb_taehv *v) { return v->fpl; }
int fb_taehv_frames_per_encoded_latent(const fb_taehv *v) { return v->enc_group; }

int fb_taehv_encoder_size_multiple(const fb_taehv *v) {
    return (1 << v->n_enc) * v->cfg.patch_size;
}

/* Height/width of decoder stage i's input for an h x w latent (stage n_dec: the last conv). */
static void dec_res(const fb_taehv *v, int i, int h, int w, int *hi, int *wi) {
    for (int s = 0; s < i; s++) {
        h *= v->dec[s].space_up;
        w *= v->dec[s].space_up;
    }
    *hi = h;
    *wi = w;
}

void fb_taehv_frame_size(const fb_taehv *v, int h, int w, int *height, int *width) {
    dec_res(v, v->n_dec, h, w, height, width);
    *height *= v->cfg.patch_size;
    *width *= v->cfg.patch_size;
}

static double conv_flops(const conv_w *c, int ho, int wo) {
    return 2.0 * c->c_out * c->c_in * c->k * c->k * (double)ho * wo;
}

double fb_taehv_decode_flops(const fb_taehv *v, int h, int w) {
    double f = conv_flops(&v->dec_in, h, w);
    int frames = 1; /* frames per latent at the current stage */
    for (int i = 0; i < v->n_dec; i++) {
        const dec_stage *s = &v->dec[i];
        int hi, wi;
        dec_res(v, i, h, w, &hi, &wi);
        for (int j = 0; j < N_MEM; j++)
            f += frames * (conv_flops(&s->mb[j].c0, hi, wi) + conv_flops(&s->mb[j].c2, hi, wi) +
                           conv_flops(&s->mb[j].c4, hi, wi));
        f += frames * conv_flops(&s->tgrow, hi, wi);
        frames *= s->time_up;
        f += frames * conv_flops(&s->conv, hi * s->space_up, wi * s->space_up);
    }
    int ho, wo;
    dec_res(v, v->n_dec, h, w, &ho, &wo);
    return f + frames * conv_flops(&v->dec_out, ho, wo);
}

/* ---- conv helpers ------------------------------------------------------------------------- */

typedef struct {
    fb_kctx *kc;
    float *col;
    size_t col_floats;
} run_ctx;

static void conv_run(const run_ctx *r, const conv_w *c, const float *x, const float *x1,
                     int h, int w, int up, int stride, const float *residual, int relu,
                     float *y) {
    fb_conv2d d = {.x = x, .c_in0 = x1 ? c->c_in / 2 : c->c_in, .x1 = x1,
                   .c_in1 = x1 ? c->c_in / 2 : 0, .h = h, .w = w, .up = up, .k = c->k,
                   .stride = stride, .weight = c->w, .bias = c->b, .c_out = c->c_out,
                   .residual = residual, .relu = relu, .y = y};
    fb_conv2d_run(r->kc, &d, r->col, r->col_floats);
}

static size_t conv_col(const conv_w *c, int two_parts, int h, int w, int up, int stride) {
    fb_conv2d d = {.c_in0 = two_parts ? c->c_in / 2 : c->c_in, .c_in1 = two_parts ? c->c_in / 2 : 0,
                   .h = h, .w = w, .up = up, .k = c->k, .stride = stride, .c_out = c->c_out};
    return fb_conv2d_scratch_floats(&d);
}

static size_t max_z(size_t a, size_t b) { return a > b ? a : b; }

/* MemBlock in place on cur [c, h, w]: cur = ReLU(conv4(ReLU(conv2(ReLU(conv0([cur, past])))))
 * + cur); past <- the input. t1, t2: [c, h, w] temporaries. */
static void memblock_run(const run_ctx *r, const memblock_w *m, float *cur, float *past,
                         float *t1, float *t2, int h, int w) {
    conv_run(r, &m->c0, cur, past, h, w, 1, 1, NULL, 1, t1);
    conv_run(r, &m->c2, t1, NULL, h, w, 1, 1, NULL, 1, t2);
    memcpy(past, cur, (size_t)m->c2.c_out * h * w * sizeof(float));
    conv_run(r, &m->c4, t2, NULL, h, w, 1, 1, cur, 1, cur);
}

#define ALIGN_FLOATS 16

static size_t round_up(size_t n) { return (n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS; }

static float *align_ptr(void *p) {
    return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

/* ---- decoder ------------------------------------------------------------------------------ */

struct fb_taehv_stream {
    const fb_taehv *vae;
    int h, w;
    int to_trim;       /* frames still to drop (a warm start's first pass included) */
    int warm_pending;  /* warm start: the next latent is decoded twice */
    float *past[FB_CFG_MAX_STAGES][N_MEM];
    float *mem;
    size_t mem_floats;
};

typedef struct {
    float *lat, *cur, *t1, *t2, *shuf, *col;
    float *tg[FB_CFG_MAX_STAGES];
    size_t col_floats;
} dec_scratch;

static size_t dec_layout(const fb_taehv *v, int h, int w, float *base, dec_scratch *s) {
    size_t cur = 0, tmp = 0, col = 0, at = 0;
    size_t tg[FB_CFG_MAX_STAGES] = {0};
    int hi, wi;
    col = conv_col(&v->dec_in, 0, h, w, 1, 1);
    for (int i = 0; i < v->n_dec; i++) {
        const dec_stage *st = &v->dec[i];
        dec_res(v, i, h, w, &hi, &wi);
        size_t plane = (size_t)hi * wi;
        cur = max_z(cur, st->c * plane);
        tmp = max_z(tmp, st->c * plane);
        tg[i] = (size_t)st->tgrow.c_out * plane;
        col = max_z(col, conv_col(&st->mb[0].c0, 1, hi, wi, 1, 1));
        col = max_z(col, conv_col(&st->mb[0].c2, 0, hi, wi, 1, 1));
        col = max_z(col, conv_col(&st->conv, 0, hi, wi, st->space_up, 1));
    }
    dec_res(v, v->n_dec, h, w, &hi, &wi);
    const size_t last = (size_t)hi * wi;
    cur = max_z(cur, (size_t)v->dec_out.c_in * last);
    col = max_z(col, conv_col(&v->dec_out, 0, hi, wi, 1, 1));
    const size_t shuf = v->cfg.patch_size > 1 ? (size_t)v->dec_out.c_out * last : 0;
#define CARVE(ptr, count)                              \
    do {                                               \
        if (s) s->ptr = base + at;                     \
        at += round_up(count);                         \
    } while (0)
    CARVE(lat, (size_t)v->cfg.latent_channels * h * w);
    CARVE(cur, cur);
    CARVE(t1, tmp);
    CARVE(t2, tmp);
    CARVE(shuf, shuf);
    for (int i = 0; i < v->n_dec; i++) CARVE(tg[i], tg[i]);
    CARVE(col, col);
#undef CARVE
    if (s) s->col_floats = col;
    return at;
}

size_t fb_taehv_decode_scratch_bytes(const fb_taehv *v, int h, int w) {
    return dec_layout(v, h, w, NULL, NULL) * sizeof(float) + 64;
}

static size_t stream_floats(const fb_taehv *v, int h, int w, size_t *each) {
    size_t total = 0;
    for (int i = 0; i < v->n_dec; i++) {
        int hi, wi;
        dec_res(v, i, h, w, &hi, &wi);
        each[i] = (size_t)v->dec[i].c * hi * wi;
        total += N_MEM * round_up(each[i]);
    }
    return total;
}

size_t fb_taehv_stream_bytes(const fb_taehv *v, int h, int w) {
    size_t each[FB_CFG_MAX_STAGES];
    return stream_floats(v, h, w, each) * sizeof(float) + sizeof(fb_taehv_stream);
}

/* A fresh clip: with warm start the first latent's first pass fills the memory and its fpl
 * frames are dropped before the frames_to_trim of the second pass. */
static void stream_start(fb_taehv_stream *ds) {
    const fb_taehv *v = ds->vae;
    ds->warm_pending = v->cfg.warm_start;
    ds->to_trim = v->cfg.frames_to_trim + (v->cfg.warm_start ? v->fpl : 0);
}

static int check_latent_size(int h, int w, char *err, size_t err_size) {
    if (h < 1 || w < 1 || h > 4096 || w > 4096) {
        set_err(err, err_size, "vae: latent size %dx%d is out of range", h, w);
        return -1;
    }
    return 0;
}

int fb_taehv_stream_init(const fb_taehv *v, int h, int w, fb_taehv_stream **out, char *err,
                         size_t err_size) {
    *out = NULL;
    if (check_latent_size(h, w, err, err_size)) return -1;
    fb_taehv_stream *ds = calloc(1, sizeof *ds);
    size_t each[FB_CFG_MAX_STAGES];
    size_t total = stream_floats(v, h, w, each);
    if (ds) ds->mem = calloc(total, sizeof(float));
    if (!ds || !ds->mem) {
        free(ds);
        set_err(err, err_size, "vae: out of memory for the decoder state (%zu bytes)",
                total * sizeof(float));
        return -1;
    }
    ds->vae = v;
    ds->h = h;
    ds->w = w;
    ds->mem_floats = total;
    size_t at = 0;
    for (int i = 0; i < v->n_dec; i++)
        for (int j = 0; j < N_MEM; j++) {
            ds->past[i][j] = ds->mem + at;
            at += round_up(each[i]);
        }
    stream_start(ds);
    *out = ds;
    return 0;
}

void fb_taehv_stream_free(fb_taehv_stream *ds) {
    if (!ds) return;
    free(ds->mem);
    free(ds);
}

void fb_taehv_stream_reset(fb_taehv_stream *ds) {
    memset(ds->mem, 0, ds->mem_floats * sizeof(float));
    stream_start(ds);
}

int fb_taehv_stream_frames_for(const fb_taehv_stream *ds, int n_latents) {
    if (n_latents <= 0) return 0;
    /* a pending warm start decodes one latent more, all of whose frames are in to_trim */
    int total = (n_latents + (ds->warm_pending ? 1 : 0)) * ds->vae->fpl;
    return total - (ds->to_trim < total ? ds->to_trim : total);
}

typedef struct {
    const fb_taehv *v;
    fb_taehv_stream *ds;
    run_ctx r;
    dec_scratch s;
    float *out;       /* next output frame slot */
    int n_out;
} dec_ctx;

/* Final ReLU'd features in s.cur [c_last, H', W'] -> one RGB frame (unless trimmed). */
static void dec_emit(dec_ctx *d) {
    const fb_taehv *v = d->v;
    if (d->ds->to_trim > 0) { /* dropped frame: its last conv has no memory, skip it */
        d->ds->to_trim--;
        return;
    }
    int hl, wl;
    dec_res(v, v->n_dec, d->ds->h, d->ds->w, &hl, &wl);
    const int p = v->cfg.patch_size;
    const size_t n = (size_t)3 * hl * wl * p * p;
    float *y = p > 1 ? d->s.shuf : d->out;
    conv_run(&d->r, &v->dec_out, d->s.cur, NULL, hl, wl, 1, 1, NULL, 0, y);
    if (p > 1) { /* pixel shuffle: out[c, h*p+i, w*p+j] = y[c*p*p + i*p + j, h, w] */
        const int W = wl * p;
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < p; i++)
                for (int j = 0; j < p; j++) {
                    const float *src = y + (size_t)((c * p + i) * p + j) * hl * wl;
                    for (int hh = 0; hh < hl; hh++)
                        for (int ww = 0; ww < wl; ww++)
                            d->out[((size_t)c * hl * p + hh * p + i) * W + ww * p + j] =
                                src[(size_t)hh * wl + ww];
                }
    }
    for (size_t i = 0; i < n; i++) { /* clamp(0, 1); also maps NaN to 0 */
        float x = d->out[i];
        d->out[i] = x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f;
    }
    d->out += n;
    d->n_out++;
}

/* Runs decoder stage i on s.cur [c_i, h_i, w_i], then (depth-first) everything after it. */
static void dec_stage_run(dec_ctx *d, int i) {
    const fb_taehv *v = d->v;
    const dec_stage *st = &v->dec[i];
    int hi, wi;
    dec_res(v, i, d->ds->h, d->ds->w, &hi, &wi);
    for (int j = 0; j < N_MEM; j++)
        memblock_run(&d->r, &st->mb[j], d->s.cur, d->ds->past[i][j], d->s.t1, d->s.t2, hi, wi);
    /* TGrow at the low resolution (it commutes with the nearest upsample). */
    conv_run(&d->r, &st->tgrow, d->s.cur, NULL, hi, wi, 1, 1, NULL, 0, d->s.tg[i]);
    const size_t frame = (size_t)st->c * hi * wi;
    const int last = i + 1 == v->n_dec;
    for (int k = 0; k < st->time_up; k++) {
        /* Upsample + conv c_i -> c_{i+1}; the decoder's final ReLU follows the last one. */
        conv_run(&d->r, &st->conv, d->s.tg[i] + k * frame, NULL, hi, wi, st->space_up, 1, NULL,
                 last, d->s.cur);
        if (last) dec_emit(d);
        else dec_stage_run(d, i + 1);
    }
}

int fb_taehv_decode(const fb_taehv *v, fb_kctx *kc, fb_taehv_stream *ds, const float *latents,
                    int n_latents, float *out, int *n_frames, void *scratch,
                    size_t scratch_bytes, char *err, size_t err_size) {
    if (n_frames) *n_frames = 0;
    if (!v || !kc || !ds || !latents || !out || !n_frames || n_latents < 0) {
        set_err(err, err_size, "vae: NULL argument or negative count");
        return -1;
    }
    if (ds->vae != v) {
        set_err(err, err_size, "vae: decoder state belongs to another model");
        return -1;
    }
    size_t need = fb_taehv_decode_scratch_bytes(v, ds->h, ds->w);
    if (!scratch || scratch_bytes < need) {
        set_err(err, err_size, "vae: decode scratch of %zu bytes, %zu needed", scratch_bytes,
                need);
        return -1;
    }
    dec_ctx d = {.v = v, .ds = ds, .out = out};
    dec_layout(v, ds->h, ds->w, align_ptr(scratch), &d.s);
    d.r = (run_ctx){kc, d.s.col, d.s.col_floats};
    const size_t lat_n = (size_t)v->cfg.latent_channels * ds->h * ds->w;
    for (int t = 0; t < n_latents; t++) {
        const float *x = latents + t * lat_n;
        for (size_t i = 0; i < lat_n; i++) d.s.lat[i] = tanhf(x[i] / 3.0f) * 3.0f;
        /* Warm start: the first pass only fills the memory (its frames are in to_trim); both
         * passes read the same clamped latent, which dec_in leaves untouched. */
        const int passes = ds->warm_pending ? 2 : 1;
        ds->warm_pending = 0;
        for (int pass = 0; pass < passes; pass++) {
            conv_run(&d.r, &v->dec_in, d.s.lat, NULL, ds->h, ds->w, 1, 1, NULL, 1, d.s.cur);
            dec_stage_run(&d, 0);
        }
    }
    *n_frames = d.n_out;
    return 0;
}

/* ---- encoder ------------------------------------------------------------------------------ */

struct fb_taehv_enc {
    const fb_taehv *vae;
    int height, width;      /* pixel frames */
    int hp, wp;             /* after pixel unshuffle */
    float *pending[FB_CFG_MAX_STAGES];  /* a TPool's first frame while it waits */
    int n_pending[FB_CFG_MAX_STAGES];
    float *past[FB_CFG_MAX_STAGES][N_MEM];
    float *last;            /* last frame pushed [3, H, W] (flush repeats it) */
    float *discard;         /* warm start: the dropped latent (NULL without warm start) */
    int in_group;           /* frames pushed in the current group */
    int warm_pending;       /* warm start: the next frame is first pushed enc_group times */
    float *mem;
    size_t mem_floats;
};

typedef struct {
    float *unshuf, *a, *p, *cur, *t1, *t2, *col;
    size_t col_floats;
} enc_scratch;

static size_t enc_layout(const fb_taehv *v, int hp, int wp, float *base, enc_scratch *s) {
    const int ce = v->cfg.encoder_channels, p = v->cfg.patch_size;
    const size_t full = (size_t)hp * wp, half = (size_t)(hp / 2) * (wp / 2);
    size_t col = conv_col(&v->enc_in, 0, hp, wp, 1, 1), at = 0;
    int h = hp, w = wp;
    for (int i = 0; i < v->n_enc; i++) {
        const enc_stage *st = &v->enc[i];
        col = max_z(col, conv_col(&st->pool, st->stride == 2, h, w, 1, 1));
        col = max_z(col, conv_col(&st->conv, 0, h, w, 1, 2));
        h /= 2;
        w /= 2;
        col = max_z(col, conv_col(&st->mb[0].c0, 1, h, w, 1, 1));
        col = max_z(col, conv_col(&st->mb[0].c2, 0, h, w, 1, 1));
    }
    col = max_z(col, conv_col(&v->enc_out, 0, h, w, 1, 1));
#define CARVE(ptr, count)                              \
    do {                                               \
        if (s) s->ptr = base + at;                     \
        at += round_up(count);                         \
    } while (0)
    CARVE(unshuf, p > 1 ? (size_t)3 * p * p * full : 0);
    CARVE(a, ce * full);
    CARVE(p, ce * full);
    CARVE(cur, ce * half);
    CARVE(t1, ce * half);
    CARVE(t2, ce * half);
    CARVE(col, col);
#undef CARVE
    if (s) s->col_floats = col;
    return at;
}

size_t fb_taehv_encode_scratch_bytes(const fb_taehv *v, int height, int width) {
    const int p = v->cfg.patch_size;
    return enc_layout(v, height / p, width / p, NULL, NULL) * sizeof(float) + 64;
}

int fb_taehv_enc_init(const fb_taehv *v, int height, int width, fb_taehv_enc **out, char *err,
                      size_t err_size) {
    *out = NULL;
    if (!v->has_enc) {
        set_err(err, err_size, "vae: this model has no encoder");
        return -1;
    }
    const int m = fb_taehv_encoder_size_multiple(v);
    if (height < m || width < m || height % m || width % m || height > 16384 || width > 16384) {
        set_err(err, err_size, "vae: encoder frames of %dx%d (must be positive multiples of %d)",
                width, height, m);
        return -1;
    }
    const int ce = v->cfg.encoder_channels, p = v->cfg.patch_size;
    fb_taehv_enc *e = calloc(1, sizeof *e);
    if (!e) goto oom;
    e->vae = v;
    e->height = height;
    e->width = width;
    e->hp = height / p;
    e->wp = width / p;
    const int m_lat = fb_taehv_encoder_size_multiple(v);
    const size_t lat_floats = v->cfg.warm_start
        ? (size_t)v->cfg.latent_channels * (height / m_lat) * (width / m_lat) : 0;
    size_t total = round_up((size_t)3 * height * width) + round_up(lat_floats);
    int h = e->hp, w = e->wp;
    for (int i = 0; i < v->n_enc; i++) {
        total += round_up((size_t)ce * h * w);                      /* pending */
        total += N_MEM * round_up((size_t)ce * (h / 2) * (w / 2)); /* pasts */
        h /= 2;
        w /= 2;
    }
    e->mem = calloc(total, sizeof(float));
    if (!e->mem) goto oom;
    e->mem_floats = total;
    size_t at = 0;
    e->last = e->mem;
    at += round_up((size_t)3 * height * width);
    if (lat_floats) e->discard = e->mem + at;
    at += round_up(lat_floats);
    e->warm_pending = v->cfg.warm_start;
    h = e->hp;
    w = e->wp;
    for (int i = 0; i < v->n_enc; i++) {
        e->pending[i] = e->mem + at;
        at += round_up((size_t)ce * h * w);
        h /= 2;
        w /= 2;
        for (int j = 0; j < N_MEM; j++) {
            e->past[i][j] = e->mem + at;
            at += round_up((size_t)ce * h * w);
        }
    }
    *out = e;
    return 0;
oom:
    if (e) free(e->mem);
    free(e);
    set_err(err, err_size, "vae: out of memory for the encoder state");
    return -1;
}

void fb_taehv_enc_free(fb_taehv_enc *e) {
    if (!e) return;
    free(e->mem);
    free(e);
}

void fb_taehv_enc_reset(fb_taehv_enc *e) {
    memset(e->mem, 0, e->mem_floats * sizeof(float));
    memset(e->n_pending, 0, sizeof e->n_pending);
    e->in_group = 0;
    e->warm_pending = e->vae->cfg.warm_start;
}

/* Feeds x [ce, h, w] into encoder stage i; returns 1 when a latent was written. */
static int enc_feed(const fb_taehv *v, fb_taehv_enc *e, const run_ctx *r, enc_scratch *s,
                    int i, const float *x, int h, int w, float *out_latent) {
    const enc_stage *st = &v->enc[i];
    const size_t n = (size_t)v->cfg.encoder_channels * h * w;
    if (st->stride == 2 && e->n_pending[i] == 0) {
        memcpy(e->pending[i], x, n * sizeof(float));
        e->n_pending[i] = 1;
        return 0;
    }
    /* TPool: 1x1 conv over the frames of the group concatenated on channels, oldest first. */
    if (st->stride == 2) conv_run(r, &st->pool, e->pending[i], x, h, w, 1, 1, NULL, 0, s->p);
    else conv_run(r, &st->pool, x, NULL, h, w, 1, 1, NULL, 0, s->p);
    e->n_pending[i] = 0;
    conv_run(r, &st->conv, s->p, NULL, h, w, 1, 2, NULL, 0, s->cur);
    h /= 2;
    w /= 2;
    for (int j = 0; j < N_MEM; j++)
        memblock_run(r, &st->mb[j], s->cur, e->past[i][j], s->t1, s->t2, h, w);
    if (i + 1 < v->n_enc) return enc_feed(v, e, r, s, i + 1, s->cur, h, w, out_latent);
    conv_run(r, &v->enc_out, s->cur, NULL, h, w, 1, 1, NULL, 0, out_latent);
    return 1;
}

static int enc_check(const fb_taehv *v, fb_kctx *kc, const fb_taehv_enc *e, const void *out,
                     const void *scratch, size_t scratch_bytes, char *err, size_t err_size) {
    if (!v || !kc || !e || !out) {
        set_err(err, err_size, "vae: NULL argument");
        return -1;
    }
    if (e->vae != v) {
        set_err(err, err_size, "vae: encoder state belongs to another model");
        return -1;
    }
    size_t need = fb_taehv_encode_scratch_bytes(v, e->height, e->width);
    if (!scratch || scratch_bytes < need) {
        set_err(err, err_size, "vae: encode scratch of %zu bytes, %zu needed", scratch_bytes,
                need);
        return -1;
    }
    return 0;
}

static int enc_push(const fb_taehv *v, fb_kctx *kc, fb_taehv_enc *e, const float *frame,
                    float *out_latent, void *scratch) {
    enc_scratch s;
    enc_layout(v, e->hp, e->wp, align_ptr(scratch), &s);
    run_ctx r = {kc, s.col, s.col_floats};
    const int p = v->cfg.patch_size;
    const float *in = frame;
    if (frame != e->last) memcpy(e->last, frame, (size_t)3 * e->height * e->width * sizeof(float));
    if (p > 1) { /* pixel unshuffle: y[c*p*p + i*p + j, h, w] = x[c, h*p+i, w*p+j] */
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < p; i++)
                for (int j = 0; j < p; j++) {
                    float *dst = s.unshuf + (size_t)((c * p + i) * p + j) * e->hp * e->wp;
                    for (int hh = 0; hh < e->hp; hh++)
                        for (int ww = 0; ww < e->wp; ww++)
                            dst[(size_t)hh * e->wp + ww] =
                                frame[((size_t)c * e->height + hh * p + i) * e->width + ww * p + j];
                }
        in = s.unshuf;
    }
    conv_run(&r, &v->enc_in, in, NULL, e->hp, e->wp, 1, 1, NULL, 1, s.a);
    e->in_group = (e->in_group + 1) % v->enc_group;
    return enc_feed(v, e, &r, &s, 0, s.a, e->hp, e->wp, out_latent);
}

int fb_taehv_encode_push(const fb_taehv *v, fb_kctx *kc, fb_taehv_enc *e, const float *frame,
                         float *out_latent, int *n_latents, void *scratch, size_t scratch_bytes,
                         char *err, size_t err_size) {
    if (n_latents) *n_latents = 0;
    if (!frame || !n_latents) {
        set_err(err, err_size, "vae: NULL argument");
        return -1;
    }
    if (enc_check(v, kc, e, out_latent, scratch, scratch_bytes, err, err_size)) return -1;
    if (e->warm_pending) {
        /* Warm start: a full group of copies of the first frame fills the memory; the latent
         * it completes (always exactly one, from a fresh state) is dropped. */
        e->warm_pending = 0;
        for (int k = 0; k < v->enc_group; k++) enc_push(v, kc, e, frame, e->discard, scratch);
    }
    *n_latents = enc_push(v, kc, e, frame, out_latent, scratch);
    return 0;
}

int fb_taehv_encode_flush(const fb_taehv *v, fb_kctx *kc, fb_taehv_enc *e, float *out_latent,
                          int *n_latents, void *scratch, size_t scratch_bytes, char *err,
                          size_t err_size) {
    if (n_latents) *n_latents = 0;
    if (!n_latents) {
        set_err(err, err_size, "vae: NULL argument");
        return -1;
    }
    if (enc_check(v, kc, e, out_latent, scratch, scratch_bytes, err, err_size)) return -1;
    int got = 0;
    while (e->in_group != 0) got |= enc_push(v, kc, e, e->last, out_latent, scratch);
    *n_latents = got;
    return 0;
}

/* ---- pixel helpers ------------------------------------------------------------------------ */

void fb_taehv_to_rgb24(const float *rgb, int height, int width, uint8_t *dst, size_t stride) {
    const size_t plane = (size_t)height * width;
    for (int y = 0; y < height; y++) {
        uint8_t *row = dst + (size_t)y * stride;
        for (int x = 0; x < width; x++)
            for (int c = 0; c < 3; c++) {
                float f = rgb[c * plane + (size_t)y * width + x] * 255.0f + 0.5f;
                row[3 * x + c] = f >= 255.0f ? 255 : f > 0.0f ? (uint8_t)f : 0;
            }
    }
}

void fb_taehv_from_rgb24(const uint8_t *src, size_t stride, int height, int width, float *rgb) {
    const size_t plane = (size_t)height * width;
    for (int y = 0; y < height; y++) {
        const uint8_t *row = src + (size_t)y * stride;
        for (int x = 0; x < width; x++)
            for (int c = 0; c < 3; c++)
                rgb[c * plane + (size_t)y * width + x] = row[3 * x + c] / 255.0f;
    }
}
