/* stream/packet.c - refcounted encoded frames (see packet.h). */
#include "stream/packet.h"

#include <stdlib.h>
#include <string.h>

static void put_le32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

fb_packet *fb_packet_new(const void *vp9, size_t size, int is_key, uint32_t frame_no,
                         int64_t pts_us, int64_t duration_us) {
    size_t wire_size = FB_FRAME_HEADER_SIZE + size;
    fb_packet *p = malloc(sizeof(*p) + FB_PACKET_PRE + wire_size);
    if (!p) return NULL;
    atomic_init(&p->refs, 1);
    p->is_key = is_key ? 1 : 0;
    p->frame_no = frame_no;
    p->pts_us = pts_us;
    p->duration_us = duration_us;
    p->produced_us = 0;
    p->payload_size = size;
    p->wire = p->storage + FB_PACKET_PRE;
    p->wire_size = wire_size;
    p->payload = p->wire + FB_FRAME_HEADER_SIZE;
    /* header: version, type, flags, reserved, frame_no (u32 LE), pts_us (i64 LE) */
    p->wire[0] = FB_FRAME_VERSION;
    p->wire[1] = FB_FRAME_TYPE_VIDEO;
    p->wire[2] = p->is_key ? FB_FRAME_FLAG_KEY : 0;
    p->wire[3] = 0;
    put_le32(p->wire + 4, frame_no);
    put_le64(p->wire + 8, (uint64_t)pts_us);
    if (size) memcpy(p->payload, vp9, size);
    return p;
}

fb_packet *fb_packet_ref(fb_packet *p) {
    if (p) atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    return p;
}

void fb_packet_unref(fb_packet *p) {
    if (p && atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1) free(p);
}

int fb_frame_header_parse(const uint8_t *buf, size_t size, int *is_key, uint32_t *frame_no,
                          int64_t *pts_us) {
    if (!buf || size < FB_FRAME_HEADER_SIZE) return -1;
    if (buf[0] != FB_FRAME_VERSION || buf[1] != FB_FRAME_TYPE_VIDEO) return -1;
    uint32_t n = 0;
    uint64_t t = 0;
    for (int i = 0; i < 4; i++) n |= (uint32_t)buf[4 + i] << (8 * i);
    for (int i = 0; i < 8; i++) t |= (uint64_t)buf[8 + i] << (8 * i);
    if (is_key) *is_key = (buf[2] & FB_FRAME_FLAG_KEY) != 0;
    if (frame_no) *frame_no = n;
    if (pts_us) *pts_us = (int64_t)t;
    return 0;
}
