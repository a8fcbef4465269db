/* stream/webm.c - live-friendly WebM muxer (see webm.h).
 *
 * EBML in one paragraph: every element is an ID (1-4 bytes, its length encoded in its first
 * byte), a size as a variable-length integer ("vint": the number of leading zero bits of the
 * first byte + 1 gives the length, the rest is the value; all value bits set means "unknown
 * size"), then the payload. Positions in SeekHead and Cues count from the first byte of the
 * Segment's payload. Element IDs below are from the Matroska specification (RFC 9559). */
#include "stream/webm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    ID_EBML = 0x1A45DFA3,
    ID_EBML_VERSION = 0x4286,
    ID_EBML_READ_VERSION = 0x42F7,
    ID_EBML_MAX_ID_LENGTH = 0x42F2,
    ID_EBML_MAX_SIZE_LENGTH = 0x42F3,
    ID_DOCTYPE = 0x4282,
    ID_DOCTYPE_VERSION = 0x4287,
    ID_DOCTYPE_READ_VERSION = 0x4285,
    ID_SEGMENT = 0x18538067,
    ID_SEEKHEAD = 0x114D9B74,
    ID_SEEK = 0x4DBB,
    ID_SEEK_ID = 0x53AB,
    ID_SEEK_POSITION = 0x53AC,
    ID_INFO = 0x1549A966,
    ID_TIMECODE_SCALE = 0x2AD7B1,
    ID_MUXING_APP = 0x4D80,
    ID_WRITING_APP = 0x5741,
    ID_DURATION = 0x4489,
    ID_TRACKS = 0x1654AE6B,
    ID_TRACK_ENTRY = 0xAE,
    ID_TRACK_NUMBER = 0xD7,
    ID_TRACK_UID = 0x73C5,
    ID_TRACK_TYPE = 0x83,
    ID_FLAG_LACING = 0x9C,
    ID_CODEC_ID = 0x86,
    ID_DEFAULT_DURATION = 0x23E383,
    ID_VIDEO = 0xE0,
    ID_PIXEL_WIDTH = 0xB0,
    ID_PIXEL_HEIGHT = 0xBA,
    ID_COLOUR = 0x55B0,
    ID_MATRIX_COEFFICIENTS = 0x55B1,
    ID_RANGE = 0x55B9,
    ID_TRANSFER_CHARACTERISTICS = 0x55BA,
    ID_PRIMARIES = 0x55BB,
    ID_CLUSTER = 0x1F43B675,
    ID_TIMECODE = 0xE7,
    ID_SIMPLE_BLOCK = 0xA3,
    ID_CUES = 0x1C53BB6B,
    ID_CUE_POINT = 0xBB,
    ID_CUE_TIME = 0xB3,
    ID_CUE_TRACK_POSITIONS = 0xB7,
    ID_CUE_TRACK = 0xF7,
    ID_CUE_CLUSTER_POSITION = 0xF1,
    ID_CUE_RELATIVE_POSITION = 0xF0,
    ID_VOID = 0xEC,
};

#define APP_NAME "flipbook"
#define TRACK_NUMBER 1
#define SEEKHEAD_RESERVE 96   /* room for a SeekHead with three entries (72 bytes) + a Void */
#define DURATION_SIZE 11      /* Duration element: 2-byte ID, 1-byte size, 8-byte double */
#define UNKNOWN_SIZE_LEN 8    /* Segment and Cluster sizes are 8-byte vints, patched in place */
#define CLUSTER_HEADER 12     /* Cluster ID (4) + 8-byte size */

/* ---- a byte buffer that EBML elements are built in ---------------------------------------- */

typedef struct ebuf {
    uint8_t *d;
    size_t n, cap;
    int heap;    /* may grow with realloc (else a fixed caller array) */
    int failed;  /* out of memory or out of room: contents are incomplete */
} ebuf;

static int eb_reserve(ebuf *b, size_t more) {
    if (b->failed) return 0;
    if (b->n + more <= b->cap) return 1;
    if (!b->heap) {
        b->failed = 1;
        return 0;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more) cap *= 2;
    uint8_t *d = realloc(b->d, cap);
    if (!d) {
        b->failed = 1;
        return 0;
    }
    b->d = d;
    b->cap = cap;
    return 1;
}

static void eb_put(ebuf *b, const void *src, size_t len) {
    if (!eb_reserve(b, len)) return;
    memcpy(b->d + b->n, src, len);
    b->n += len;
}

static void eb_byte(ebuf *b, uint8_t v) {
    eb_put(b, &v, 1);
}

/* Big-endian, `len` bytes. */
static void put_be(uint8_t *p, uint64_t v, int len) {
    for (int i = len - 1; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

static void eb_be(ebuf *b, uint64_t v, int len) {
    uint8_t tmp[8];
    put_be(tmp, v, len);
    eb_put(b, tmp, (size_t)len);
}

/* IDs carry their own length marker, so they are written as their big-endian bytes. */
static void eb_id(ebuf *b, uint32_t id) {
    int len = id > 0xFFFFFF ? 4 : id > 0xFFFF ? 3 : id > 0xFF ? 2 : 1;
    eb_be(b, id, len);
}

/* Shortest vint length for `v` (all-ones is reserved for "unknown", hence the -1). */
static int vint_len(uint64_t v) {
    int len = 1;
    while (len < 8 && v >= (1ull << (7 * len)) - 1) len++;
    return len;
}

static void put_vint(uint8_t *p, uint64_t v, int len) {
    put_be(p, v | (1ull << (7 * len)), len);
}

static void eb_vint(ebuf *b, uint64_t v, int len) {
    uint8_t tmp[8];
    put_vint(tmp, v, len);
    eb_put(b, tmp, (size_t)len);
}

static void eb_uint(ebuf *b, uint32_t id, uint64_t v) {
    int len = 1;
    while (len < 8 && (v >> (8 * len))) len++;
    eb_id(b, id);
    eb_vint(b, (uint64_t)len, 1);
    eb_be(b, v, len);
}

static void eb_str(ebuf *b, uint32_t id, const char *s) {
    size_t len = strlen(s);
    eb_id(b, id);
    eb_vint(b, len, vint_len(len));
    eb_put(b, s, len);
}

static void eb_float(ebuf *b, uint32_t id, double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    eb_id(b, id);
    eb_vint(b, 8, 1);
    eb_be(b, bits, 8);
}

/* A Void element of exactly `total` bytes (>= 2): skipped by readers, overwritten later. */
static void eb_void(ebuf *b, size_t total) {
    size_t len = total - 2 <= 126 ? 1 : 8; /* size field length; payload is total - 1 - len */
    eb_id(b, ID_VOID);
    eb_vint(b, total - 1 - len, (int)len);
    if (eb_reserve(b, total - 1 - len)) {
        memset(b->d + b->n, 0, total - 1 - len);
        b->n += total - 1 - len;
    }
}

/* Master elements: open() writes the ID and a 1-byte size placeholder and returns where the
 * payload starts; close() writes the real size, moving the payload if the size needs more bytes,
 * so every size is as short as possible. */
static size_t eb_open(ebuf *b, uint32_t id) {
    eb_id(b, id);
    eb_byte(b, 0);
    return b->n;
}

static void eb_close(ebuf *b, size_t start) {
    if (b->failed) return;
    uint64_t size = b->n - start;
    int len = vint_len(size);
    if (len > 1) {
        if (!eb_reserve(b, (size_t)len - 1)) return;
        memmove(b->d + start + len - 1, b->d + start, size);
        b->n += (size_t)len - 1;
    }
    put_vint(b->d + start - 1, size, len);
}

/* ---- the muxer ---------------------------------------------------------------------------- */

typedef struct cue {
    uint64_t time_ms;
    uint64_t cluster_pos;   /* Cluster offset relative to the Segment payload */
    uint64_t block_pos;     /* keyframe block offset relative to the Cluster payload */
} cue;

enum { ST_OPEN, ST_FINAL, ST_DEAD };

struct fb_webm {
    fb_webm_sink sink;
    fb_webm_params p;
    int state;
    int io_errno;
    uint64_t end;              /* append position: the length of the file so far */
    uint64_t segment_size_at;  /* offset of the Segment's 8-byte size */
    uint64_t segment_data;     /* offset of the Segment's payload */
    uint64_t seekhead_at;      /* reserved Void for the SeekHead */
    uint64_t info_at, tracks_at;
    uint64_t duration_at;      /* Void inside Info that becomes Duration */
    int in_cluster;
    uint64_t cluster_at;       /* offset of the current Cluster's ID */
    uint64_t cluster_ms;       /* its timecode */
    int64_t first_pts_us, last_pts_us;
    uint64_t last_ms;
    uint64_t frames;
    cue *cues;
    size_t n_cues, cap_cues;
};

static fb_webm_status write_at(fb_webm *m, uint64_t off, const void *buf, size_t len) {
    int rc = m->sink.write_at(m->sink.ctx, off, buf, len);
    if (rc < 0) {
        m->state = ST_DEAD;
        m->io_errno = -rc;
        return FB_WEBM_ERR_IO;
    }
    return FB_WEBM_OK;
}

static fb_webm_status append(fb_webm *m, const void *buf, size_t len) {
    fb_webm_status s = write_at(m, m->end, buf, len);
    if (s == FB_WEBM_OK) m->end += len;
    return s;
}

/* Writes an 8-byte vint size at `at` (a Segment or Cluster size placeholder). */
static fb_webm_status patch_size(fb_webm *m, uint64_t at, uint64_t size) {
    uint8_t v[UNKNOWN_SIZE_LEN];
    put_vint(v, size, UNKNOWN_SIZE_LEN);
    return write_at(m, at, v, sizeof v);
}

static fb_webm_status finish_cluster(fb_webm *m) {
    if (!m->in_cluster) return FB_WEBM_OK;
    m->in_cluster = 0;
    return patch_size(m, m->cluster_at + 4, m->end - (m->cluster_at + CLUSTER_HEADER));
}

/* Builds everything up to the first Cluster. The header is written at offset 0, so positions in
 * `b` are file offsets. */
static void build_header(fb_webm *m, ebuf *b) {
    size_t ebml = eb_open(b, ID_EBML);
    eb_uint(b, ID_EBML_VERSION, 1);
    eb_uint(b, ID_EBML_READ_VERSION, 1);
    eb_uint(b, ID_EBML_MAX_ID_LENGTH, 4);
    eb_uint(b, ID_EBML_MAX_SIZE_LENGTH, 8);
    eb_str(b, ID_DOCTYPE, "webm");
    eb_uint(b, ID_DOCTYPE_VERSION, 4);   /* Colour elements are a version 4 feature */
    eb_uint(b, ID_DOCTYPE_READ_VERSION, 2);
    eb_close(b, ebml);

    /* Segment with an unknown size until finalize. */
    eb_id(b, ID_SEGMENT);
    m->segment_size_at = b->n;
    eb_be(b, 0x01FFFFFFFFFFFFFFull, UNKNOWN_SIZE_LEN);
    m->segment_data = b->n;

    m->seekhead_at = b->n;
    eb_void(b, SEEKHEAD_RESERVE);

    m->info_at = b->n;
    size_t info = eb_open(b, ID_INFO);
    eb_uint(b, ID_TIMECODE_SCALE, 1000000); /* timestamps in ms */
    eb_str(b, ID_MUXING_APP, APP_NAME);
    eb_str(b, ID_WRITING_APP, APP_NAME);
    /* Duration is unknown while recording. A Void holds its place rather than a zero Duration,
     * which some players would take literally for a file cut off by a crash. */
    size_t duration_at = b->n;
    eb_void(b, DURATION_SIZE);
    size_t before_close = b->n;
    eb_close(b, info);
    m->duration_at = duration_at + (b->n - before_close); /* in case the size field grew */

    m->tracks_at = b->n;
    size_t tracks = eb_open(b, ID_TRACKS);
    size_t entry = eb_open(b, ID_TRACK_ENTRY);
    eb_uint(b, ID_TRACK_NUMBER, TRACK_NUMBER);
    eb_uint(b, ID_TRACK_UID, 1);
    eb_uint(b, ID_TRACK_TYPE, 1); /* video */
    eb_uint(b, ID_FLAG_LACING, 0);
    eb_str(b, ID_CODEC_ID, "V_VP9");
    eb_uint(b, ID_DEFAULT_DURATION, (uint64_t)(1e9 / m->p.fps + 0.5)); /* ns */
    size_t video = eb_open(b, ID_VIDEO);
    eb_uint(b, ID_PIXEL_WIDTH, (uint64_t)m->p.width);
    eb_uint(b, ID_PIXEL_HEIGHT, (uint64_t)m->p.height);
    /* BT.709 matrix, transfer and primaries, limited range: what the encoder signals too. */
    size_t colour = eb_open(b, ID_COLOUR);
    eb_uint(b, ID_MATRIX_COEFFICIENTS, 1);
    eb_uint(b, ID_RANGE, 1);
    eb_uint(b, ID_TRANSFER_CHARACTERISTICS, 1);
    eb_uint(b, ID_PRIMARIES, 1);
    eb_close(b, colour);
    eb_close(b, video);
    eb_close(b, entry);
    eb_close(b, tracks);
}

fb_webm_status fb_webm_open(const fb_webm_sink *sink, const fb_webm_params *p, fb_webm **out) {
    if (!out) return FB_WEBM_ERR_ARG;
    *out = NULL;
    if (!sink || !sink->write_at || !p || p->width < 1 || p->height < 1 || p->width > 16384 ||
        p->height > 16384 || p->fps < 1 || p->fps > 1000)
        return FB_WEBM_ERR_ARG;
    fb_webm *m = calloc(1, sizeof *m);
    if (!m) return FB_WEBM_ERR_NOMEM;
    m->sink = *sink;
    m->p = *p;
    m->state = ST_OPEN;

    ebuf b = {.heap = 1};
    build_header(m, &b);
    fb_webm_status s = b.failed ? FB_WEBM_ERR_NOMEM : append(m, b.d, b.n);
    free(b.d);
    if (s != FB_WEBM_OK) {
        fb_webm_free(m);
        return s;
    }
    *out = m;
    return FB_WEBM_OK;
}

fb_webm_status fb_webm_write_frame(fb_webm *m, const void *data, size_t size, int64_t pts_us,
                                   int is_key) {
    if (!m) return FB_WEBM_ERR_ARG;
    if (m->state != ST_OPEN) return FB_WEBM_ERR_STATE;
    if (!data) return FB_WEBM_ERR_ARG;
    if (size == 0 || size > FB_WEBM_MAX_FRAME) return FB_WEBM_ERR_FRAME_SIZE;
    if (m->frames == 0 && !is_key) return FB_WEBM_ERR_NO_KEYFRAME;
    if (pts_us < 0 || (m->frames && pts_us < m->last_pts_us)) return FB_WEBM_ERR_TIMESTAMP;

    /* Both operands are >= 0, so the difference cannot overflow. */
    uint64_t ms = m->frames ? (uint64_t)(pts_us - m->first_pts_us + 500) / 1000 : 0;
    /* The 5 s limit also keeps the block's relative time far inside int16. */
    int new_cluster = !m->in_cluster || is_key || ms - m->cluster_ms >= FB_WEBM_CLUSTER_MAX_MS;

    /* Make room for the cue first, so that running out of memory refuses the frame cleanly. */
    if (new_cluster && is_key && m->n_cues == m->cap_cues) {
        size_t cap = m->cap_cues ? 2 * m->cap_cues : 64;
        cue *c = realloc(m->cues, cap * sizeof *c);
        if (!c) return FB_WEBM_ERR_NOMEM;
        m->cues = c;
        m->cap_cues = cap;
    }

    uint8_t hdr[48];
    ebuf b = {.d = hdr, .cap = sizeof hdr};
    if (new_cluster) {
        if (finish_cluster(m) != FB_WEBM_OK) return FB_WEBM_ERR_IO;
        m->in_cluster = 1;
        m->cluster_at = m->end;
        m->cluster_ms = ms;
        eb_id(&b, ID_CLUSTER);
        eb_be(&b, 0x01FFFFFFFFFFFFFFull, UNKNOWN_SIZE_LEN);
        eb_uint(&b, ID_TIMECODE, ms);
        if (is_key) {
            cue *c = &m->cues[m->n_cues++];
            c->time_ms = ms;
            c->cluster_pos = m->cluster_at - m->segment_data;
            c->block_pos = b.n - CLUSTER_HEADER;
        }
    }
    /* SimpleBlock: track number (vint), int16 time relative to the cluster, flags, frame. */
    uint64_t block_size = 4 + size;
    eb_id(&b, ID_SIMPLE_BLOCK);
    eb_vint(&b, block_size, vint_len(block_size));
    eb_vint(&b, TRACK_NUMBER, 1);
    eb_be(&b, ms - m->cluster_ms, 2);
    eb_byte(&b, is_key ? 0x80 : 0x00);
    if (append(m, b.d, b.n) != FB_WEBM_OK || append(m, data, size) != FB_WEBM_OK)
        return FB_WEBM_ERR_IO;

    if (m->frames == 0) m->first_pts_us = pts_us;
    m->last_pts_us = pts_us;
    m->last_ms = ms;
    m->frames++;
    return FB_WEBM_OK;
}

fb_webm_status fb_webm_write_packet(fb_webm *m, const fb_packet *p) {
    if (!p) return FB_WEBM_ERR_ARG;
    return fb_webm_write_frame(m, p->payload, p->payload_size, p->pts_us, p->is_key);
}

static void build_cues(const fb_webm *m, ebuf *b) {
    size_t cues = eb_open(b, ID_CUES);
    for (size_t i = 0; i < m->n_cues; i++) {
        size_t point = eb_open(b, ID_CUE_POINT);
        eb_uint(b, ID_CUE_TIME, m->cues[i].time_ms);
        size_t pos = eb_open(b, ID_CUE_TRACK_POSITIONS);
        eb_uint(b, ID_CUE_TRACK, TRACK_NUMBER);
        eb_uint(b, ID_CUE_CLUSTER_POSITION, m->cues[i].cluster_pos);
        eb_uint(b, ID_CUE_RELATIVE_POSITION, m->cues[i].block_pos);
        eb_close(b, pos);
        eb_close(b, point);
    }
    eb_close(b, cues);
}

static void add_seek(ebuf *b, uint32_t id, uint64_t pos) {
    size_t seek = eb_open(b, ID_SEEK);
    eb_id(b, ID_SEEK_ID);
    eb_vint(b, 4, 1);
    eb_be(b, id, 4);
    eb_uint(b, ID_SEEK_POSITION, pos);
    eb_close(b, seek);
}

fb_webm_status fb_webm_finalize(fb_webm *m) {
    if (!m) return FB_WEBM_ERR_ARG;
    if (m->state != ST_OPEN) return FB_WEBM_ERR_STATE;
    if (finish_cluster(m) != FB_WEBM_OK) return FB_WEBM_ERR_IO;

    /* Cues at the end (a Cues element needs at least one CuePoint, so none without frames). */
    uint64_t cues_at = 0;
    if (m->n_cues) {
        ebuf b = {.heap = 1};
        build_cues(m, &b);
        if (b.failed) {
            free(b.d);
            return FB_WEBM_ERR_NOMEM;
        }
        cues_at = m->end;
        fb_webm_status s = append(m, b.d, b.n);
        free(b.d);
        if (s != FB_WEBM_OK) return s;
    }

    if (m->frames) {
        uint8_t dur[DURATION_SIZE];
        ebuf b = {.d = dur, .cap = sizeof dur};
        eb_float(&b, ID_DURATION, (double)m->last_ms + 1000.0 / m->p.fps);
        if (write_at(m, m->duration_at, b.d, b.n) != FB_WEBM_OK) return FB_WEBM_ERR_IO;
    }

    /* SeekHead into its reserved space, the rest of which stays a (smaller) Void. */
    uint8_t sh[SEEKHEAD_RESERVE];
    ebuf b = {.d = sh, .cap = sizeof sh};
    size_t seekhead = eb_open(&b, ID_SEEKHEAD);
    add_seek(&b, ID_INFO, m->info_at - m->segment_data);
    add_seek(&b, ID_TRACKS, m->tracks_at - m->segment_data);
    if (cues_at) add_seek(&b, ID_CUES, cues_at - m->segment_data);
    eb_close(&b, seekhead);
    eb_void(&b, SEEKHEAD_RESERVE - b.n);
    if (write_at(m, m->seekhead_at, b.d, b.n) != FB_WEBM_OK) return FB_WEBM_ERR_IO;

    if (patch_size(m, m->segment_size_at, m->end - m->segment_data) != FB_WEBM_OK)
        return FB_WEBM_ERR_IO;
    m->state = ST_FINAL;
    return FB_WEBM_OK;
}

void fb_webm_free(fb_webm *m) {
    if (!m) return;
    free(m->cues);
    free(m);
}

uint64_t fb_webm_size(const fb_webm *m) {
    return m ? m->end : 0;
}

uint64_t fb_webm_frame_count(const fb_webm *m) {
    return m ? m->frames : 0;
}

int fb_webm_io_errno(const fb_webm *m) {
    return m ? m->io_errno : 0;
}

static int fd_write_at(void *ctx, uint64_t offset, const void *buf, size_t len) {
    int fd = (int)(intptr_t)ctx;
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)offset);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) return -EIO;
        p += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

fb_webm_sink fb_webm_fd_sink(int fd) {
    fb_webm_sink s = {(void *)(intptr_t)fd, fd_write_at};
    return s;
}

const char *fb_webm_status_str(fb_webm_status s) {
    switch (s) {
    case FB_WEBM_OK: return "ok";
    case FB_WEBM_ERR_ARG: return "invalid argument";
    case FB_WEBM_ERR_NO_KEYFRAME: return "the first frame of a recording must be a keyframe";
    case FB_WEBM_ERR_TIMESTAMP: return "frame timestamp is negative or goes backwards";
    case FB_WEBM_ERR_FRAME_SIZE: return "frame is empty or too large";
    case FB_WEBM_ERR_IO: return "write failed";
    case FB_WEBM_ERR_NOMEM: return "out of memory";
    case FB_WEBM_ERR_STATE: return "muxer already finalized or failed";
    }
    return "unknown webm status";
}
