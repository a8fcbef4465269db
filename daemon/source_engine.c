/* daemon/source_engine.c - the engine frame source: a session's view of its fbd_gen
 * (daemon/scheduler.h).
 *
 * Frames come out of the gen's playback buffer; controls are checked here (prompt with the
 * model's tokenizer, anchor image size and format, base64) and queued for the scheduler's
 * worker, whose ACK/ERROR notes are translated into the session's notes. The anchor image
 * arrives as base64 of raw pixels ("rgb24", or "rgba32" whose alpha is dropped) at exactly the
 * model's frame size, so the daemon needs no image decoder (docs/protocol.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/scheduler.h"
#include "daemon/source.h"

typedef struct engine_source {
    fbd_gen *g;
    fb_source_notify_fn notify;
    void *notify_ctx;
    int width, height;
} engine_source;

static fb_msg_type msg_type_of(int t) {
    return t >= 0 && t < FB_MSG_COUNT ? (fb_msg_type)t : FB_MSG_PROMPT;
}

static void on_note(void *ctx, const fbd_gen_note *n) {
    engine_source *e = ctx;
    fb_source_note out;
    memset(&out, 0, sizeof out);
    out.to.conn_id = n->to.conn_id;
    out.to.has_id = n->to.has_id;
    out.to.id = n->to.id;
    out.to.type = msg_type_of(n->to.type);
    switch (n->kind) {
    case FBD_NOTE_FRAMES:
        out.kind = FB_SOURCE_NOTE_FRAMES;
        break;
    case FBD_NOTE_ACK:
        out.kind = FB_SOURCE_NOTE_ACK;
        out.chunk = n->chunk;
        out.frame = n->frame;
        if (n->ctl == FBD_GEN_PROMPT) {
            out.transition = (fb_msg_transition)n->transition;
            out.unknown_words = n->unknown_words ? n->unknown_words : "";
            out.n_unknown = n->n_unknown;
        }
        if (n->ctl == FBD_GEN_SEED) {
            out.has_seed = 1;
            out.seed = n->seed;
        }
        break;
    case FBD_NOTE_ERROR:
        out.kind = FB_SOURCE_NOTE_ERROR;
        out.code = n->error == FBD_GEN_ERR_BAD_VALUE     ? FB_ERR_BAD_VALUE
                   : n->error == FBD_GEN_ERR_UNSUPPORTED ? FB_ERR_UNSUPPORTED
                                                         : FB_ERR_INTERNAL;
        out.message = n->message;
        break;
    case FBD_NOTE_FAILED:
        out.kind = FB_SOURCE_NOTE_FAILED;
        out.message = n->message;
        break;
    }
    if (e->notify) e->notify(e->notify_ctx, &out);
}

static fb_source *es_open(const fb_source_params *p, char *err, size_t n) {
    fbd_gen *g = p->engine;
    if (!g) {
        snprintf(err, n, "no engine stream was admitted for this session");
        return NULL;
    }
    engine_source *e = calloc(1, sizeof *e);
    if (!e) {
        fbd_gen_close(g);
        snprintf(err, n, "out of memory");
        return NULL;
    }
    e->g = g;
    e->notify = p->notify;
    e->notify_ctx = p->notify_ctx;
    e->width = p->width;
    e->height = p->height;
    fbd_gen_attach(g, on_note, e);
    return (fb_source *)e;
}

static fb_source_status es_next(fb_source *src, uint8_t *rgb, uint32_t frame_no, char *err,
                                size_t n) {
    engine_source *e = (engine_source *)src;
    int rc = fbd_gen_pop(e->g, rgb, frame_no, err, n);
    return rc > 0 ? FB_SOURCE_OK : rc == 0 ? FB_SOURCE_AGAIN : FB_SOURCE_ERROR;
}

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict base64 (RFC 4648, standard alphabet, padding optional). Returns the decoded length,
 * or -1 on a bad character or a bad length. out must hold 3 * (len / 4) + 3 bytes. */
static long base64_decode(const char *in, size_t len, uint8_t *out) {
    while (len && in[len - 1] == '=') len--;
    if (len % 4 == 1) return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)in[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return (long)o;
}

static fb_source_status image_control(engine_source *e, const fb_source_control *c,
                                      fbd_gen_ctl *gc, char *err, size_t n, uint8_t **owned) {
    const char *fmt = c->format ? c->format : "rgb24";
    int bpp = strcmp(fmt, "rgb24") == 0 ? 3 : strcmp(fmt, "rgba32") == 0 ? 4 : 0;
    if (!bpp) {
        snprintf(err, n, "anchor image format \"%.32s\" is not rgb24 or rgba32", fmt);
        return FB_SOURCE_BAD_VALUE;
    }
    int w = c->width ? c->width : e->width, h = c->height ? c->height : e->height;
    if (w != e->width || h != e->height) {
        snprintf(err, n, "the anchor image is %dx%d; this model takes %dx%d (send the picture "
                 "scaled to that size)", w, h, e->width, e->height);
        return FB_SOURCE_BAD_VALUE;
    }
    size_t want = (size_t)w * (size_t)h * (size_t)bpp;
    if (!c->data || c->data_len == 0) {
        snprintf(err, n, "the anchor image has no data");
        return FB_SOURCE_BAD_VALUE;
    }
    if (c->data_len / 4 > want / 3 + 4) {
        snprintf(err, n, "the anchor image data is longer than %dx%d %s pixels", w, h, fmt);
        return FB_SOURCE_BAD_VALUE;
    }
    uint8_t *raw = malloc(3 * (c->data_len / 4) + 3);
    if (!raw) {
        snprintf(err, n, "out of memory");
        return FB_SOURCE_ERROR;
    }
    long got = base64_decode(c->data, c->data_len, raw);
    if (got < 0) {
        free(raw);
        snprintf(err, n, "the anchor image data is not valid base64");
        return FB_SOURCE_BAD_VALUE;
    }
    if ((size_t)got != want) {
        free(raw);
        snprintf(err, n, "the anchor image data is %ld bytes; %dx%d %s needs %zu", got, w, h, fmt,
                 want);
        return FB_SOURCE_BAD_VALUE;
    }
    if (bpp == 4) {  /* drop alpha in place */
        for (size_t i = 0, px = (size_t)w * h; i < px; i++) {
            raw[3 * i] = raw[4 * i];
            raw[3 * i + 1] = raw[4 * i + 1];
            raw[3 * i + 2] = raw[4 * i + 2];
        }
    }
    gc->kind = FBD_GEN_IMAGE;
    gc->rgb = raw;
    gc->width = w;
    gc->height = h;
    *owned = raw;
    return FB_SOURCE_OK;
}

static fb_source_status es_control(fb_source *src, const fb_source_control *c, char *err,
                                   size_t n) {
    engine_source *e = (engine_source *)src;
    fbd_gen_ctl gc;
    memset(&gc, 0, sizeof gc);
    gc.to.conn_id = c->to.conn_id;
    gc.to.has_id = c->to.has_id;
    gc.to.id = c->to.id;
    gc.to.type = (int)c->to.type;
    gc.t_us = c->t_us;
    uint8_t *owned = NULL;
    switch (c->kind) {
    case FB_SOURCE_CTL_PROMPT:
        gc.kind = FBD_GEN_PROMPT;
        gc.text = c->text ? c->text : "";
        gc.transition = c->transition == FB_MSG_TRANSITION_RECACHE ? 1
                        : c->transition == FB_MSG_TRANSITION_BLEND  ? 2
                                                                : 0;
        gc.chunks = c->chunks > 0 ? c->chunks : FB_PROTO_DEFAULT_CHUNKS;
        break;
    case FB_SOURCE_CTL_SEED:
        gc.kind = FBD_GEN_SEED;
        gc.seed = c->seed;
        break;
    case FB_SOURCE_CTL_RESET:
        gc.kind = FBD_GEN_RESET;
        break;
    case FB_SOURCE_CTL_ANCHOR_PIN:
        gc.kind = FBD_GEN_PIN;
        break;
    case FB_SOURCE_CTL_ANCHOR_CLEAR:
        gc.kind = FBD_GEN_CLEAR;
        break;
    case FB_SOURCE_CTL_ANCHOR_IMAGE: {
        fb_source_status st = image_control(e, c, &gc, err, n, &owned);
        if (st != FB_SOURCE_OK) return st;
        break;
    }
    }
    int rc = fbd_gen_control(e->g, &gc, err, n);
    free(owned);
    return rc == 0 ? FB_SOURCE_PENDING : rc == -2 ? FB_SOURCE_UNSUPPORTED : FB_SOURCE_BAD_VALUE;
}

static void es_close(fb_source *src) {
    engine_source *e = (engine_source *)src;
    fbd_gen_close(e->g);
    free(e);
}

static void es_set_paused(fb_source *src, int paused) {
    fbd_gen_set_paused(((engine_source *)src)->g, paused);
}

static double es_pace(fb_source *src) { return fbd_gen_slowdown(((engine_source *)src)->g); }

static void es_get_stats(fb_source *src, fb_source_stats *o) {
    fbd_gen_stats g;
    fbd_gen_get_stats(((engine_source *)src)->g, &g);
    memset(o, 0, sizeof *o);
    o->chunk = g.chunk;
    o->next_chunk = g.next_chunk;
    o->frames_generated = g.frames_generated;
    o->chunk_ms = g.chunk_ms;
    o->buffer = g.buffer;
    o->buffer_capacity = g.buffer_capacity;
    o->kv_used = g.kv_used;
    o->kv_total = g.kv_total;
    o->kv_streams = g.kv_streams;
    o->kv_streams_max = g.kv_streams_max;
    o->prompt_latency_ms = g.prompt_latency_ms;
    o->slowdown = g.slowdown;
}

const fb_source_ops fb_source_engine = {
    .name = "engine",
    .min_size = 16,
    .max_size = 4096,
    .max_fps = 120,
    .open = es_open,
    .next_frame = es_next,
    .control = es_control,
    .close = es_close,
    .set_paused = es_set_paused,
    .pace = es_pace,
    .get_stats = es_get_stats,
};
