/* tests/stream/ebml_check.c - parse back and check a WebM file (see ebml_check.h).
 *
 * Written from the Matroska/EBML specifications (RFC 9559, RFC 8794), independently of
 * stream/webm.c, so that a bug in the muxer's encoding is not mirrored by the reader. */
#include "tests/stream/ebml_check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNKNOWN UINT64_MAX

typedef struct elem {
    uint32_t id;
    uint64_t at;    /* offset of the ID */
    uint64_t data;  /* offset of the payload */
    uint64_t size;  /* payload size, or UNKNOWN */
    int size_len;   /* bytes of the size field */
} elem;

typedef struct cluster_info {
    uint64_t at, data;
    uint64_t timecode;
    int known_size;
    size_t first_frame;  /* index into frames, or SIZE_MAX when it has none */
} cluster_info;

typedef struct cue_info {
    uint64_t time, cluster_pos, rel_pos;
    int has_rel;
} cue_info;

typedef struct seek_info {
    uint32_t id;
    uint64_t pos;
} seek_info;

typedef struct top_elem {
    uint32_t id;
    uint64_t at;
} top_elem;

typedef struct ctx {
    const uint8_t *b;
    uint64_t len;
    int allow_truncated;
    char *err;
    size_t err_size;
    webm_summary *s;
    cluster_info *clusters;
    size_t cap_clusters;
    cue_info *cues;
    size_t cap_cues;
    size_t cap_frames;
    seek_info seeks[16];
    size_t n_seeks;
    top_elem tops[64];   /* level-1 elements other than clusters */
    size_t n_tops;
    uint64_t timecode_scale;
} ctx;

/* TRUNC: the file ends inside an element's header; TRUNC_BODY: the header is complete but the
 * payload is cut off (the header fields are then valid). */
enum { OK = 0, TRUNC = 1, TRUNC_BODY = 2, BAD = -1 };

static int fail(ctx *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (c->err && c->err_size) vsnprintf(c->err, c->err_size, fmt, ap);
    va_end(ap);
    return BAD;
}

static int grow(void **p, size_t *cap, size_t n, size_t elem_size) {
    if (n < *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 16;
    void *q = realloc(*p, nc * elem_size);
    if (!q) return -1;
    *p = q;
    *cap = nc;
    return 0;
}

/* Reads an element header at `at`, which must end by `limit` (the parent's end). TRUNC or
 * TRUNC_BODY when the file ends first. */
static int read_header(ctx *c, uint64_t at, uint64_t limit, elem *e) {
    const uint8_t *b = c->b;
    if (at >= c->len) return TRUNC;
    int id_len = 0;
    for (int i = 0; i < 4; i++)
        if (b[at] & (0x80 >> i)) {
            id_len = i + 1;
            break;
        }
    if (!id_len) return fail(c, "invalid element ID byte 0x%02x at %llu", b[at],
                             (unsigned long long)at);
    if (at + (uint64_t)id_len > c->len) return TRUNC;
    e->id = 0;
    for (int i = 0; i < id_len; i++) e->id = (e->id << 8) | b[at + i];
    uint64_t p = at + (uint64_t)id_len;
    if (p >= c->len) return TRUNC;
    int len = 0;
    for (int i = 0; i < 8; i++)
        if (b[p] & (0x80 >> i)) {
            len = i + 1;
            break;
        }
    if (!len) return fail(c, "invalid size byte at %llu", (unsigned long long)p);
    if (p + (uint64_t)len > c->len) return TRUNC;
    uint64_t v = b[p] & (0xFFu >> len);
    int all_ones = v == (0xFFu >> len);
    for (int i = 1; i < len; i++) {
        v = (v << 8) | b[p + i];
        all_ones &= b[p + i] == 0xFF;
    }
    e->at = at;
    e->data = p + (uint64_t)len;
    e->size_len = len;
    e->size = all_ones ? UNKNOWN : v;
    if (e->data > limit) return fail(c, "element 0x%X at %llu overruns its parent", e->id,
                                     (unsigned long long)at);
    if (e->size != UNKNOWN && e->size > limit - e->data)
        return fail(c, "element 0x%X at %llu (size %llu) overruns its parent", e->id,
                    (unsigned long long)at, (unsigned long long)e->size);
    if (e->size != UNKNOWN && e->data + e->size > c->len) return TRUNC_BODY;
    return OK;
}

static uint64_t read_uint(ctx *c, const elem *e, int *bad) {
    if (e->size > 8) {
        *bad = 1;
        return 0;
    }
    uint64_t v = 0;
    for (uint64_t i = 0; i < e->size; i++) v = (v << 8) | c->b[e->data + i];
    return v;
}

static int read_float(ctx *c, const elem *e, double *out) {
    if (e->size == 8) {
        uint64_t bits = 0;
        for (int i = 0; i < 8; i++) bits = (bits << 8) | c->b[e->data + (uint64_t)i];
        memcpy(out, &bits, 8);
        return 0;
    }
    if (e->size == 4) {
        uint32_t bits = 0;
        for (int i = 0; i < 4; i++) bits = (bits << 8) | c->b[e->data + (uint64_t)i];
        float f;
        memcpy(&f, &bits, 4);
        *out = f;
        return 0;
    }
    return -1;
}

static int str_is(ctx *c, const elem *e, const char *s) {
    return e->size == strlen(s) && memcmp(c->b + e->data, s, e->size) == 0;
}

/* Walks the children of a known-size master element:
 *   iter it = children(parent);
 *   while (next_child(c, &it, &e, &rc)) { ... }      // then rc is OK or the error
 */
typedef struct iter {
    uint64_t at, end;
} iter;

static iter children(const elem *parent) {
    iter it = {parent->data, parent->data + parent->size};
    return it;
}

static int next_child(ctx *c, iter *it, elem *e, int *rc) {
    if (*rc != OK || it->at >= it->end) return 0;
    *rc = read_header(c, it->at, it->end, e);
    if (*rc == OK && e->size == UNKNOWN) *rc = fail(c, "unknown size inside element 0x%X", e->id);
    if (*rc != OK) return 0;
    it->at = e->data + e->size;
    return 1;
}

static int check_ebml_header(ctx *c, const elem *h) {
    int rc = OK, bad = 0, doctype = 0;
    elem e;
    iter it = children(h);
    while (next_child(c, &it, &e, &rc)) {
        uint64_t want = 0;
        switch (e.id) {
        case 0x4286: want = 1; break;  /* EBMLVersion */
        case 0x42F7: want = 1; break;  /* EBMLReadVersion */
        case 0x42F2: want = 4; break;  /* EBMLMaxIDLength */
        case 0x42F3: want = 8; break;  /* EBMLMaxSizeLength */
        case 0x4285: want = 2; break;  /* DocTypeReadVersion */
        case 0x4287:                   /* DocTypeVersion */
            if (read_uint(c, &e, &bad) < 2) return fail(c, "DocTypeVersion below 2");
            continue;
        case 0x4282:
            if (!str_is(c, &e, "webm")) return fail(c, "DocType is not webm");
            doctype = 1;
            continue;
        default: return fail(c, "unexpected element 0x%X in the EBML header", e.id);
        }
        if (read_uint(c, &e, &bad) != want || bad)
            return fail(c, "EBML header field 0x%X is not %llu", e.id, (unsigned long long)want);
    }
    if (rc != OK) return rc;
    return doctype ? OK : fail(c, "no DocType");
}

static int check_seekhead(ctx *c, const elem *sh) {
    int rc = OK, bad = 0;
    elem s, f;
    c->s->has_seekhead = 1;
    iter it = children(sh);
    while (next_child(c, &it, &s, &rc)) {
        if (s.id != 0x4DBB) return fail(c, "unexpected element 0x%X in SeekHead", s.id);
        seek_info si = {0, UNKNOWN};
        int rc2 = OK;
        iter inner = children(&s);
        while (next_child(c, &inner, &f, &rc2)) {
            if (f.id == 0x53AB) si.id = (uint32_t)read_uint(c, &f, &bad);
            else if (f.id == 0x53AC) si.pos = read_uint(c, &f, &bad);
            else return fail(c, "unexpected element 0x%X in Seek", f.id);
        }
        if (rc2 != OK) return rc2;
        if (bad || !si.id || si.pos == UNKNOWN) return fail(c, "incomplete Seek entry");
        if (c->n_seeks == sizeof c->seeks / sizeof c->seeks[0]) return fail(c, "too many Seeks");
        c->seeks[c->n_seeks++] = si;
    }
    return rc;
}

static int check_info(ctx *c, const elem *info) {
    int rc = OK, bad = 0, muxing = 0, writing = 0;
    elem e;
    iter it = children(info);
    while (next_child(c, &it, &e, &rc)) {
        switch (e.id) {
        case 0x2AD7B1: c->timecode_scale = read_uint(c, &e, &bad); break;
        case 0x4D80: muxing = str_is(c, &e, "flipbook"); break;
        case 0x5741: writing = str_is(c, &e, "flipbook"); break;
        case 0x4489:
            if (read_float(c, &e, &c->s->duration_ms)) return fail(c, "bad Duration size");
            c->s->has_duration = 1;
            break;
        case 0xEC: break; /* Void: the Duration placeholder */
        default: return fail(c, "unexpected element 0x%X in Info", e.id);
        }
    }
    if (rc != OK) return rc;
    if (bad || c->timecode_scale != 1000000) return fail(c, "TimecodeScale is not 1 ms");
    if (!muxing || !writing) return fail(c, "MuxingApp/WritingApp is not flipbook");
    return OK;
}

static int check_colour(ctx *c, const elem *col) {
    int rc = OK, bad = 0, seen = 0;
    elem e;
    iter it = children(col);
    while (next_child(c, &it, &e, &rc)) {
        if (e.id != 0x55B1 && e.id != 0x55B9 && e.id != 0x55BA && e.id != 0x55BB)
            return fail(c, "unexpected element 0x%X in Colour", e.id);
        if (read_uint(c, &e, &bad) != 1 || bad)
            return fail(c, "Colour field 0x%X is not 1 (BT.709 / limited)", e.id);
        seen++;
    }
    if (rc != OK) return rc;
    return seen == 4 ? OK : fail(c, "Colour lacks matrix, range, transfer or primaries");
}

static int check_tracks(ctx *c, const elem *tracks) {
    int rc = OK, bad = 0, entries = 0;
    elem t, e, v;
    iter it = children(tracks);
    while (next_child(c, &it, &t, &rc)) {
        if (t.id != 0xAE) return fail(c, "unexpected element 0x%X in Tracks", t.id);
        entries++;
        int number = 0, type = 0, codec = 0, colour = 0, rc2 = OK;
        iter inner = children(&t);
        while (next_child(c, &inner, &e, &rc2)) {
            switch (e.id) {
            case 0xD7: number = read_uint(c, &e, &bad) == 1; break;
            case 0x83: type = read_uint(c, &e, &bad) == 1; break;
            case 0x86: codec = str_is(c, &e, "V_VP9"); break;
            case 0x73C5:
                if (read_uint(c, &e, &bad) == 0) return fail(c, "TrackUID is 0");
                break;
            case 0x9C: break; /* FlagLacing */
            case 0x23E383: c->s->default_duration_ns = read_uint(c, &e, &bad); break;
            case 0xE0: {
                int rc3 = OK;
                iter inner2 = children(&e);
                while (next_child(c, &inner2, &v, &rc3)) {
                    if (v.id == 0xB0) c->s->width = (int)read_uint(c, &v, &bad);
                    else if (v.id == 0xBA) c->s->height = (int)read_uint(c, &v, &bad);
                    else if (v.id == 0x55B0) {
                        if (check_colour(c, &v) != OK) return BAD;
                        colour = 1;
                    } else return fail(c, "unexpected element 0x%X in Video", v.id);
                }
                if (rc3 != OK) return rc3;
                break;
            }
            default: return fail(c, "unexpected element 0x%X in TrackEntry", e.id);
            }
        }
        if (rc2 != OK) return rc2;
        if (bad || !number || !type || !codec || !colour)
            return fail(c, "track is not video track 1, V_VP9, with Colour");
    }
    if (rc != OK) return rc;
    if (entries != 1) return fail(c, "expected one TrackEntry, found %d", entries);
    if (c->s->width < 1 || c->s->height < 1) return fail(c, "no pixel size");
    return OK;
}

static int is_level1(uint32_t id) {
    return id == 0x1F43B675 || id == 0x1C53BB6B || id == 0x114D9B74 || id == 0x1549A966 ||
           id == 0x1654AE6B || id == 0x1254C367 || id == 0x1941A469 || id == 0x1043A770;
}

/* Parses one Cluster starting at `cl`; *end receives where the next level-1 element starts.
 * seg_end is where the Segment ends, UINT64_MAX when its size is unknown. */
static int check_cluster(ctx *c, const elem *cl, uint64_t seg_end, uint64_t *end) {
    webm_summary *s = c->s;
    if (grow((void **)&c->clusters, &c->cap_clusters, s->n_clusters, sizeof *c->clusters))
        return fail(c, "out of memory");
    if (s->n_clusters && !c->clusters[s->n_clusters - 1].known_size)
        return fail(c, "a cluster of unknown size is followed by another cluster");
    cluster_info *ci = &c->clusters[s->n_clusters++];
    ci->at = cl->at;
    ci->data = cl->data;
    ci->known_size = cl->size != UNKNOWN;
    ci->first_frame = SIZE_MAX;
    uint64_t limit = ci->known_size ? cl->data + cl->size : seg_end;
    int have_tc = 0, bad = 0;
    uint64_t at = cl->data;
    while (at < limit) {
        if (at >= c->len) {
            if (limit == UINT64_MAX) break; /* a live file ends with its last cluster */
            goto truncated;
        }
        elem e;
        int rc = read_header(c, at, limit, &e);
        if (rc == TRUNC || rc == TRUNC_BODY) goto truncated;
        if (rc != OK) return rc;
        if (!ci->known_size && is_level1(e.id)) break; /* the unknown-size cluster ends here */
        if (e.size == UNKNOWN) return fail(c, "unknown size inside a Cluster");
        if (e.id == 0xE7) {
            if (have_tc) return fail(c, "two Timecodes in a cluster");
            ci->timecode = read_uint(c, &e, &bad);
            have_tc = 1;
        } else if (e.id == 0xA3) {
            if (!have_tc) return fail(c, "SimpleBlock before the cluster Timecode");
            if (e.size < 5) return fail(c, "SimpleBlock too short");
            const uint8_t *p = c->b + e.data;
            if (p[0] != 0x81) return fail(c, "SimpleBlock for a track other than 1");
            int16_t rel = (int16_t)((p[1] << 8) | p[2]);
            if (rel < 0) return fail(c, "negative relative time in a SimpleBlock");
            if (p[3] & 0x7F) return fail(c, "unexpected SimpleBlock flags 0x%02x", p[3]);
            if (grow((void **)&s->frames, &c->cap_frames, s->n_frames, sizeof *s->frames))
                return fail(c, "out of memory");
            webm_frame_info *f = &s->frames[s->n_frames];
            f->block_at = e.at;
            f->data_at = e.data + 4;
            f->end_at = e.data + e.size;
            f->size = (size_t)(e.size - 4);
            f->time_ms = ci->timecode + (uint64_t)rel;
            f->is_key = (p[3] & 0x80) != 0;
            f->first_in_cluster = ci->first_frame == SIZE_MAX;
            if (s->n_frames == 0 && !f->is_key) return fail(c, "the first frame is not a key");
            if (f->is_key && !f->first_in_cluster)
                return fail(c, "keyframe %zu is not the first block of its cluster", s->n_frames);
            if (s->n_frames && f->time_ms < s->frames[s->n_frames - 1].time_ms)
                return fail(c, "frame %zu goes back in time", s->n_frames);
            if (ci->first_frame == SIZE_MAX) ci->first_frame = s->n_frames;
            s->n_keyframes += (size_t)f->is_key;
            s->n_frames++;
        } else {
            return fail(c, "unexpected element 0x%X in a Cluster", e.id);
        }
        at = e.data + e.size;
    }
    if (bad) return fail(c, "bad cluster Timecode");
    /* A cluster that stops at the end of the file before its first block was cut off. */
    if ((!have_tc || ci->first_frame == SIZE_MAX) && at >= c->len) goto truncated;
    if (!have_tc) return fail(c, "cluster without a Timecode");
    if (ci->first_frame == SIZE_MAX) return fail(c, "empty cluster");
    *end = at;
    return OK;

truncated:
    *end = c->len;
    return TRUNC;
}

static int check_cues(ctx *c, const elem *cues) {
    int rc = OK, bad = 0;
    elem p, t, f;
    iter it = children(cues);
    while (next_child(c, &it, &p, &rc)) {
        if (p.id != 0xBB) return fail(c, "unexpected element 0x%X in Cues", p.id);
        cue_info cu = {UNKNOWN, UNKNOWN, 0, 0};
        int rc2 = OK, track = 0;
        iter inner = children(&p);
        while (next_child(c, &inner, &t, &rc2)) {
            if (t.id == 0xB3) {
                cu.time = read_uint(c, &t, &bad);
            } else if (t.id == 0xB7) {
                int rc3 = OK;
                iter inner2 = children(&t);
                while (next_child(c, &inner2, &f, &rc3)) {
                    if (f.id == 0xF7) track = read_uint(c, &f, &bad) == 1;
                    else if (f.id == 0xF1) cu.cluster_pos = read_uint(c, &f, &bad);
                    else if (f.id == 0xF0) {
                        cu.rel_pos = read_uint(c, &f, &bad);
                        cu.has_rel = 1;
                    } else return fail(c, "unexpected element 0x%X in CueTrackPositions", f.id);
                }
                if (rc3 != OK) return rc3;
            } else {
                return fail(c, "unexpected element 0x%X in CuePoint", t.id);
            }
        }
        if (rc2 != OK) return rc2;
        if (bad || !track || cu.time == UNKNOWN || cu.cluster_pos == UNKNOWN)
            return fail(c, "incomplete CuePoint");
        if (grow((void **)&c->cues, &c->cap_cues, c->s->n_cues, sizeof *c->cues))
            return fail(c, "out of memory");
        c->cues[c->s->n_cues++] = cu;
    }
    return rc;
}

/* Cross-checks Cues and SeekHead against what was parsed. */
static int check_index(ctx *c, uint64_t seg_data) {
    webm_summary *s = c->s;
    for (size_t i = 0; i < s->n_cues; i++) {
        const cue_info *cu = &c->cues[i];
        const cluster_info *cl = NULL;
        for (size_t k = 0; k < s->n_clusters; k++)
            if (c->clusters[k].at == seg_data + cu->cluster_pos) cl = &c->clusters[k];
        if (!cl) {
            if (s->truncated && seg_data + cu->cluster_pos >= c->len) continue;
            return fail(c, "cue %zu points at %llu, which is not a cluster", i,
                        (unsigned long long)(seg_data + cu->cluster_pos));
        }
        const webm_frame_info *f = &s->frames[cl->first_frame];
        if (cl->timecode != cu->time) return fail(c, "cue %zu time differs from its cluster", i);
        if (!f->is_key) return fail(c, "cue %zu points at a cluster that starts with a delta", i);
        if (cu->has_rel && cl->data + cu->rel_pos != f->block_at)
            return fail(c, "cue %zu relative position does not point at the keyframe", i);
    }
    if (!s->truncated && s->finalized && s->n_cues != s->n_keyframes)
        return fail(c, "%zu cues for %zu keyframes", s->n_cues, s->n_keyframes);

    int seen_info = 0, seen_tracks = 0, seen_cues = 0;
    for (size_t i = 0; i < c->n_seeks; i++) {
        uint64_t at = seg_data + c->seeks[i].pos;
        if (at >= c->len && s->truncated) continue;
        int found = 0;
        for (size_t k = 0; k < c->n_tops; k++)
            found |= c->tops[k].at == at && c->tops[k].id == c->seeks[i].id;
        if (!found)
            return fail(c, "SeekHead entry 0x%X points at %llu, where no such element is",
                        c->seeks[i].id, (unsigned long long)at);
        seen_info |= c->seeks[i].id == 0x1549A966;
        seen_tracks |= c->seeks[i].id == 0x1654AE6B;
        seen_cues |= c->seeks[i].id == 0x1C53BB6B;
    }
    if (s->finalized && !s->truncated) {
        if (!s->has_seekhead || !seen_info || !seen_tracks)
            return fail(c, "finalized file without SeekHead entries for Info and Tracks");
        if (s->n_cues && !seen_cues) return fail(c, "SeekHead does not point at the Cues");
        if (s->n_frames && !s->has_duration) return fail(c, "finalized file without Duration");
    }
    if (s->has_duration && s->n_frames &&
        s->duration_ms < (double)s->frames[s->n_frames - 1].time_ms)
        return fail(c, "Duration %.3f ms ends before the last frame", s->duration_ms);
    return OK;
}

int webm_check(const uint8_t *buf, size_t len, int allow_truncated, webm_summary *out, char *err,
               size_t err_size) {
    memset(out, 0, sizeof *out);
    if (err && err_size) err[0] = 0;
    ctx c = {.b = buf, .len = len, .allow_truncated = allow_truncated, .err = err,
             .err_size = err_size, .s = out};
    elem h, seg;
    int rc = read_header(&c, 0, len, &h);
    if (rc == OK && (h.id != 0x1A45DFA3 || h.size == UNKNOWN)) rc = fail(&c, "no EBML header");
    if (rc == OK) rc = check_ebml_header(&c, &h);
    if (rc == OK) rc = read_header(&c, h.data + h.size, UINT64_MAX, &seg);
    if (rc == TRUNC_BODY) rc = OK; /* a finalized file cut off: checked below */
    if (rc == OK && seg.id != 0x18538067) rc = fail(&c, "no Segment after the EBML header");
    if (rc == OK && seg.size_len != 8) rc = fail(&c, "Segment size is not an 8-byte field");
    if (rc == TRUNC || rc == TRUNC_BODY) rc = fail(&c, "file ends inside its header");
    if (rc != OK) goto done;

    /* A patched Segment must end exactly at the end of the file. */
    out->finalized = seg.size != UNKNOWN;
    uint64_t seg_end = len;
    if (out->finalized) {
        seg_end = seg.data + seg.size;
        if (seg_end < len) {
            rc = fail(&c, "%llu bytes after the Segment", (unsigned long long)(len - seg_end));
            goto done;
        }
        if (seg_end > len) out->truncated = 1;
        if (seg_end > len) seg_end = len;
    }

    uint64_t seg_limit = out->finalized ? seg.data + seg.size : UINT64_MAX;
    int have_info = 0, have_tracks = 0;
    uint64_t at = seg.data;
    while (at < seg_end) {
        elem e;
        rc = read_header(&c, at, seg_limit, &e);
        if (rc == TRUNC_BODY && e.id != 0x1F43B675 && c.n_tops < sizeof c.tops / sizeof c.tops[0])
            c.tops[c.n_tops++] = (top_elem){e.id, e.at}; /* for the SeekHead check */
        /* A cluster whose payload is cut off still holds whole frames: parse it. */
        if (rc == TRUNC_BODY && e.id == 0x1F43B675) rc = OK;
        if (rc == TRUNC || rc == TRUNC_BODY) break;
        if (rc != OK) goto done;
        if (e.id != 0x1F43B675) {
            if (e.size == UNKNOWN) {
                rc = fail(&c, "level-1 element 0x%X of unknown size", e.id);
                goto done;
            }
            if (c.n_tops < sizeof c.tops / sizeof c.tops[0])
                c.tops[c.n_tops++] = (top_elem){e.id, e.at};
        }
        if (out->n_clusters && e.id != 0x1F43B675 && e.id != 0x1C53BB6B && e.id != 0xEC) {
            rc = fail(&c, "element 0x%X after the clusters", e.id);
            goto done;
        }
        switch (e.id) {
        case 0xEC: rc = OK; break;
        case 0x114D9B74: rc = check_seekhead(&c, &e); break;
        case 0x1549A966: rc = check_info(&c, &e); have_info = 1; break;
        case 0x1654AE6B: rc = check_tracks(&c, &e); have_tracks = 1; break;
        case 0x1C53BB6B: rc = check_cues(&c, &e); break;
        case 0x1F43B675:
            if (!have_info || !have_tracks) {
                rc = fail(&c, "a Cluster before Info and Tracks");
                goto done;
            }
            rc = check_cluster(&c, &e, seg_limit, &at);
            if (rc == TRUNC) goto truncated;
            if (rc != OK) goto done;
            continue;
        default: rc = fail(&c, "unexpected level-1 element 0x%X", e.id); break;
        }
        if (rc != OK) goto done;
        at = e.data + e.size;
    }
    if (at < seg_end) {
    truncated:
        out->truncated = 1;
        rc = OK;
    }
    if (out->truncated && !allow_truncated) {
        rc = fail(&c, "the file is cut off");
        goto done;
    }
    if (!out->truncated && (!have_info || !have_tracks)) {
        rc = fail(&c, "no Info or Tracks");
        goto done;
    }
    rc = check_index(&c, seg.data);

done:
    free(c.clusters);
    free(c.cues);
    return rc == OK ? 0 : -1;
}

void webm_summary_free(webm_summary *s) {
    if (!s) return;
    free(s->frames);
    s->frames = NULL;
    s->n_frames = 0;
}
