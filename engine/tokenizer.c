/* engine/tokenizer.c - SentencePiece unigram tokenizer (see tokenizer.h).
 *
 * Three parts: a minimal protobuf wire-format reader for the ModelProto fields we use, the
 * normaliser (precompiled character map stored as a darts-clone double-array trie plus a blob
 * of replacement strings), and the unigram Viterbi encoder over a byte trie of the pieces.
 * The algorithms follow the behaviour of SentencePiece's normalizer and unigram model so that
 * ids match the reference implementation exactly (tests/text/test_tokenizer.c checks this
 * against vectors produced by the Python package).
 *
 * Everything read from the file is treated as hostile: every length, index and trie offset is
 * bounds-checked, so a corrupt file gives an error (at load) or a harmless non-match (inside
 * the normaliser trie, whose structure cannot be validated up front), never a crash.
 */
#include "engine/tokenizer.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Pieces longer than this are refused; real vocabularies stay far below it. */
#define TOK_MAX_PIECE_BYTES 1024
#define TOK_MAX_PIECES (1 << 22)
/* SentencePiece gives the unknown piece the lowest normal score minus this penalty. */
#define TOK_UNK_PENALTY 10.0f

static const char kSpaceSymbol[] = "\xe2\x96\x81"; /* U+2581, 3 bytes */

typedef struct {
    uint32_t off, len;   /* bytes in the pool */
    float score;
    uint8_t type;
} tok_piece;

/* Byte trie of the pieces the lattice can use (normal, user-defined, unused). Children form a
 * singly linked sibling list; the root's children are indexed directly by byte. */
typedef struct {
    int32_t first_child, next_sibling, id;
    uint8_t label;
} trie_node;

struct fb_tokenizer {
    int n_pieces;
    tok_piece *pieces;
    char *pool;
    trie_node *nodes;
    int n_nodes, cap_nodes;
    int32_t root[256];
    int unk_id, bos_id, eos_id, pad_id;
    int byte_fallback;
    int32_t byte_id[256];
    float min_score, max_score;
    int has_user_defined;
    /* normaliser */
    char norm_name[64];
    int add_dummy_prefix, remove_extra_ws, escape_ws, ws_suffix;
    uint32_t *darts;     /* double-array units */
    size_t n_darts;
    char *norm_str;      /* replacement strings; always ends with a NUL */
    size_t norm_size;
};

static void set_err(char *err, size_t n, const char *fmt, ...) {
    if (!err || !n) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}

/* ---- protobuf wire format ------------------------------------------------------------------ */

typedef struct {
    const uint8_t *p, *end;
} pb;

enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_I32 = 5 };

static int pb_varint(pb *r, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return -1;
        uint8_t b = *r->p++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) { *v = x; return 0; }
    }
    return -1; /* more than 10 bytes */
}

/* Reads one field header and, for length-delimited fields, its payload bounds. */
typedef struct {
    uint32_t field;
    int wire;
    uint64_t u;          /* varint value, or fixed32/64 bits */
    const uint8_t *data; /* PB_LEN payload */
    size_t len;
} pb_field;

static int pb_next(pb *r, pb_field *f) {
    uint64_t tag;
    if (pb_varint(r, &tag)) return -1;
    f->field = (uint32_t)(tag >> 3);
    f->wire = (int)(tag & 7);
    if (f->field == 0 || (tag >> 3) > 0x1fffffff) return -1;
    switch (f->wire) {
    case PB_VARINT: return pb_varint(r, &f->u);
    case PB_I64:
        if (r->end - r->p < 8) return -1;
        f->u = 0;
        for (int i = 7; i >= 0; i--) f->u = (f->u << 8) | r->p[i];
        r->p += 8;
        return 0;
    case PB_I32:
        if (r->end - r->p < 4) return -1;
        f->u = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 |
               (uint32_t)r->p[3] << 24;
        r->p += 4;
        return 0;
    case PB_LEN: {
        uint64_t n;
        if (pb_varint(r, &n) || n > (uint64_t)(r->end - r->p)) return -1;
        f->data = r->p;
        f->len = (size_t)n;
        r->p += n;
        return 0;
    }
    default: return -1; /* groups (3, 4) are deprecated and never used by SentencePiece */
    }
}

static float pb_float(uint64_t bits) {
    uint32_t b = (uint32_t)bits;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* int32 fields are varints holding the two's complement value (negative = 10 bytes). */
static int pb_int32(uint64_t u) { return (int)(int32_t)(uint32_t)u; }

/* ---- piece trie -------------------------------------------------------------------------------- */

static int32_t trie_new_node(fb_tokenizer *t, uint8_t label) {
    if (t->n_nodes == t->cap_nodes) {
        int cap = t->cap_nodes ? t->cap_nodes * 2 : 1024;
        trie_node *n = realloc(t->nodes, (size_t)cap * sizeof *n);
        if (!n) return -1;
        t->nodes = n;
        t->cap_nodes = cap;
    }
    trie_node *n = &t->nodes[t->n_nodes];
    n->first_child = n->next_sibling = n->id = -1;
    n->label = label;
    return t->n_nodes++;
}

static int32_t trie_child(const fb_tokenizer *t, int32_t node, uint8_t b) {
    if (node < 0) return t->root[b];
    for (int32_t c = t->nodes[node].first_child; c >= 0; c = t->nodes[c].next_sibling)
        if (t->nodes[c].label == b) return c;
    return -1;
}

/* Inserts piece `id`; returns 0, 1 when the piece already exists, -1 on OOM. */
static int trie_insert(fb_tokenizer *t, const uint8_t *s, size_t len, int id) {
    int32_t node = -1;
    for (size_t i = 0; i < len; i++) {
        int32_t c = trie_child(t, node, s[i]);
        if (c < 0) {
            c = trie_new_node(t, s[i]);
            if (c < 0) return -1;
            if (node < 0) {
                t->root[s[i]] = c;
            } else {
                t->nodes[c].next_sibling = t->nodes[node].first_child;
                t->nodes[node].first_child = c;
            }
        }
        node = c;
    }
    if (t->nodes[node].id >= 0) return 1;
    t->nodes[node].id = id;
    return 0;
}

/* ---- loading -------------------------------------------------------------------------------------- */

/* The byte of a "<0xHH>" piece (upper-case hex, as SentencePiece writes them), or -1. */
static int byte_piece_value(const uint8_t *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        int c = s[i];
        if (c >= '0' && c <= '9') v = v * 16 + (c - '0');
        else if (c >= 'A' && c <= 'F') v = v * 16 + (c - 'A' + 10);
        else return -1;
    }
    return v;
}

void fb_tok_free(fb_tokenizer *t) {
    if (!t) return;
    free(t->pieces);
    free(t->pool);
    free(t->nodes);
    free(t->darts);
    free(t->norm_str);
    free(t);
}

static int parse_piece(const uint8_t *d, size_t n, tok_piece *pc, const uint8_t **str) {
    pb r = {d, d + n};
    pb_field f;
    pc->len = 0;
    pc->score = 0.0f;
    pc->type = FB_TOK_NORMAL;
    *str = NULL;
    while (r.p < r.end) {
        if (pb_next(&r, &f)) return -1;
        if (f.field == 1 && f.wire == PB_LEN) {
            *str = f.data;
            if (f.len > TOK_MAX_PIECE_BYTES) return -2;
            pc->len = (uint32_t)f.len;
        } else if (f.field == 2 && f.wire == PB_I32) {
            pc->score = pb_float(f.u);
        } else if (f.field == 3 && f.wire == PB_VARINT) {
            if (f.u < FB_TOK_NORMAL || f.u > FB_TOK_BYTE) return -3;
            pc->type = (uint8_t)f.u;
        }
    }
    return 0;
}

typedef struct {
    int model_type, byte_fallback, ws_suffix;
    int unk_id, bos_id, eos_id, pad_id;
} trainer_spec;

static int parse_trainer(const uint8_t *d, size_t n, trainer_spec *ts) {
    pb r = {d, d + n};
    pb_field f;
    while (r.p < r.end) {
        if (pb_next(&r, &f)) return -1;
        if (f.wire != PB_VARINT) continue;
        switch (f.field) {
        case 3: ts->model_type = pb_int32(f.u); break;
        case 24: ts->ws_suffix = f.u != 0; break;
        case 35: ts->byte_fallback = f.u != 0; break;
        case 40: ts->unk_id = pb_int32(f.u); break;
        case 41: ts->bos_id = pb_int32(f.u); break;
        case 42: ts->eos_id = pb_int32(f.u); break;
        case 43: ts->pad_id = pb_int32(f.u); break;
        default: break;
        }
    }
    return 0;
}

static int parse_normalizer(fb_tokenizer *t, const uint8_t *d, size_t n, char *err,
                            size_t err_size) {
    pb r = {d, d + n};
    pb_field f;
    const uint8_t *map = NULL;
    size_t map_len = 0;
    while (r.p < r.end) {
        if (pb_next(&r, &f)) {
            set_err(err, err_size, "tokenizer: malformed normalizer_spec");
            return -1;
        }
        if (f.field == 1 && f.wire == PB_LEN) {
            size_t k = f.len < sizeof t->norm_name - 1 ? f.len : sizeof t->norm_name - 1;
            memcpy(t->norm_name, f.data, k);
            t->norm_name[k] = 0;
        } else if (f.field == 2 && f.wire == PB_LEN) {
            map = f.data;
            map_len = f.len;
        } else if (f.wire == PB_VARINT) {
            if (f.field == 3) t->add_dummy_prefix = f.u != 0;
            if (f.field == 4) t->remove_extra_ws = f.u != 0;
            if (f.field == 5) t->escape_ws = f.u != 0;
        }
    }
    if (!map || map_len == 0) return 0; /* identity */
    /* <trie size: uint32 LE><double array: trie size bytes><replacement strings> */
    if (map_len < 4) goto bad;
    uint32_t trie_bytes = (uint32_t)map[0] | (uint32_t)map[1] << 8 | (uint32_t)map[2] << 16 |
                          (uint32_t)map[3] << 24;
    if (trie_bytes % 4 != 0 || trie_bytes >= map_len - 4 + 1 || trie_bytes == 0) goto bad;
    t->n_darts = trie_bytes / 4;
    t->darts = malloc(trie_bytes);
    t->norm_size = map_len - 4 - trie_bytes;
    t->norm_str = malloc(t->norm_size + 1);
    if (!t->darts || !t->norm_str) {
        set_err(err, err_size, "tokenizer: out of memory");
        return -1;
    }
    for (size_t i = 0; i < t->n_darts; i++) {
        const uint8_t *u = map + 4 + 4 * i;
        t->darts[i] = (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 |
                      (uint32_t)u[3] << 24;
    }
    memcpy(t->norm_str, map + 4 + trie_bytes, t->norm_size);
    t->norm_str[t->norm_size] = 0; /* every offset below norm_size now ends inside the blob */
    return 0;
bad:
    set_err(err, err_size, "tokenizer: malformed precompiled_charsmap in normalizer_spec");
    return -1;
}

fb_tokenizer *fb_tok_load(const void *data, size_t size, char *err, size_t err_size) {
    if (!data || size == 0) {
        set_err(err, err_size, "tokenizer: empty model");
        return NULL;
    }
    if (size > FB_TOK_MAX_MODEL_BYTES) {
        set_err(err, err_size, "tokenizer: model is %zu bytes, more than the %u allowed", size,
                FB_TOK_MAX_MODEL_BYTES);
        return NULL;
    }
    fb_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        set_err(err, err_size, "tokenizer: out of memory");
        return NULL;
    }
    /* SentencePiece defaults for absent fields. */
    t->add_dummy_prefix = t->remove_extra_ws = t->escape_ws = 1;
    memset(t->root, 0xff, sizeof t->root);
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    trainer_spec ts = {.model_type = 1, .unk_id = 0, .bos_id = 1, .eos_id = 2, .pad_id = -1};

    /* Pass 1: count pieces and pool bytes; parse the specs. */
    pb r = {data, (const uint8_t *)data + size};
    pb_field f;
    size_t n_pieces = 0, pool_bytes = 0;
    while (r.p < r.end) {
        if (pb_next(&r, &f)) {
            set_err(err, err_size, "tokenizer: not a SentencePiece model (malformed protobuf)");
            goto fail;
        }
        if (f.field == 1 && f.wire == PB_LEN) {
            tok_piece pc;
            const uint8_t *s;
            int rc = parse_piece(f.data, f.len, &pc, &s);
            if (rc) {
                set_err(err, err_size, "tokenizer: piece %zu: %s", n_pieces,
                        rc == -2 ? "longer than 1024 bytes"
                        : rc == -3 ? "unknown piece type" : "malformed");
                goto fail;
            }
            if (++n_pieces > TOK_MAX_PIECES) {
                set_err(err, err_size, "tokenizer: more than %d pieces", TOK_MAX_PIECES);
                goto fail;
            }
            pool_bytes += pc.len;
        } else if (f.field == 2 && f.wire == PB_LEN) {
            if (parse_trainer(f.data, f.len, &ts)) {
                set_err(err, err_size, "tokenizer: malformed trainer_spec");
                goto fail;
            }
        } else if (f.field == 3 && f.wire == PB_LEN) {
            if (parse_normalizer(t, f.data, f.len, err, err_size)) goto fail;
        }
    }
    if (n_pieces == 0) {
        set_err(err, err_size, "tokenizer: model has no pieces");
        goto fail;
    }
    if (ts.model_type != 1) {
        set_err(err, err_size,
                "tokenizer: model type %d is not supported (only unigram, type 1)",
                ts.model_type);
        goto fail;
    }
    t->ws_suffix = ts.ws_suffix;
    t->byte_fallback = ts.byte_fallback;
    t->pieces = calloc(n_pieces, sizeof *t->pieces);
    t->pool = malloc(pool_bytes ? pool_bytes : 1);
    if (!t->pieces || !t->pool) {
        set_err(err, err_size, "tokenizer: out of memory");
        goto fail;
    }

    /* Pass 2: copy pieces, build the trie, find the special ids. */
    r.p = data;
    size_t at = 0;
    t->unk_id = -1;
    /* As SentencePiece: extremes over normal pieces, starting from FLT_MAX and FLT_MIN (the
     * smallest positive float, so the maximum of all-negative scores is FLT_MIN, then 0). */
    t->min_score = FLT_MAX;
    t->max_score = FLT_MIN;
    while (r.p < r.end) {
        if (pb_next(&r, &f)) goto fail; /* cannot happen: pass 1 read the same bytes */
        if (!(f.field == 1 && f.wire == PB_LEN)) continue;
        int id = t->n_pieces;
        tok_piece *pc = &t->pieces[id];
        const uint8_t *s;
        parse_piece(f.data, f.len, pc, &s);
        if (pc->len == 0) {
            set_err(err, err_size, "tokenizer: piece %d is empty", id);
            goto fail;
        }
        if (!isfinite(pc->score)) {
            set_err(err, err_size, "tokenizer: piece %d has a non-finite score", id);
            goto fail;
        }
        memcpy(t->pool + at, s, pc->len);
        pc->off = (uint32_t)at;
        at += pc->len;
        t->n_pieces++;
        switch (pc->type) {
        case FB_TOK_NORMAL:
            if (pc->score < t->min_score) t->min_score = pc->score;
            if (pc->score > t->max_score) t->max_score = pc->score;
            /* fall through */
        case FB_TOK_USER_DEFINED:
        case FB_TOK_UNUSED: {
            if (pc->type == FB_TOK_USER_DEFINED) t->has_user_defined = 1;
            int rc = trie_insert(t, s, pc->len, id);
            if (rc < 0) {
                set_err(err, err_size, "tokenizer: out of memory");
                goto fail;
            }
            if (rc > 0) {
                set_err(err, err_size, "tokenizer: piece %d \"%.*s\" is defined twice", id,
                        (int)(pc->len > 64 ? 64 : pc->len), (const char *)s);
                goto fail;
            }
            break;
        }
        case FB_TOK_UNKNOWN:
            if (t->unk_id >= 0) {
                set_err(err, err_size, "tokenizer: more than one unknown piece (%d and %d)",
                        t->unk_id, id);
                goto fail;
            }
            t->unk_id = id;
            break;
        case FB_TOK_BYTE: {
            if (!t->byte_fallback) {
                set_err(err, err_size, "tokenizer: byte piece %d but byte_fallback is off", id);
                goto fail;
            }
            int v = byte_piece_value(s, pc->len);
            if (v >= 0 && t->byte_id[v] < 0) t->byte_id[v] = id;
            break;
        }
        default: break;
        }
    }
    if (t->unk_id < 0) {
        set_err(err, err_size, "tokenizer: model has no unknown piece");
        goto fail;
    }
    if (t->min_score == FLT_MAX) t->min_score = 0.0f;
    if (t->max_score == FLT_MIN) t->max_score = 0.0f;
    for (int i = 0; i < 256; i++)
        if (t->byte_id[i] < 0) t->byte_id[i] = t->unk_id;
    /* Special ids: taken from trainer_spec when they name a piece of a fitting type. */
    t->bos_id = ts.bos_id >= 0 && ts.bos_id < t->n_pieces ? ts.bos_id : -1;
    t->eos_id = ts.eos_id >= 0 && ts.eos_id < t->n_pieces ? ts.eos_id : -1;
    t->pad_id = ts.pad_id >= 0 && ts.pad_id < t->n_pieces ? ts.pad_id : -1;
    if (t->eos_id >= 0 && t->pieces[t->eos_id].type != FB_TOK_CONTROL) t->eos_id = -1;
    if (t->bos_id >= 0 && t->pieces[t->bos_id].type != FB_TOK_CONTROL) t->bos_id = -1;
    if (t->pad_id >= 0 && t->pieces[t->pad_id].type != FB_TOK_CONTROL) t->pad_id = -1;
    return t;
fail:
    fb_tok_free(t);
    return NULL;
}

int fb_tok_vocab_size(const fb_tokenizer *t) { return t->n_pieces; }
int fb_tok_unk_id(const fb_tokenizer *t) { return t->unk_id; }
int fb_tok_eos_id(const fb_tokenizer *t) { return t->eos_id; }
int fb_tok_bos_id(const fb_tokenizer *t) { return t->bos_id; }
int fb_tok_pad_id(const fb_tokenizer *t) { return t->pad_id; }
const char *fb_tok_normalizer(const fb_tokenizer *t) { return t->norm_name; }

const char *fb_tok_piece(const fb_tokenizer *t, int id, size_t *len) {
    if (id < 0 || id >= t->n_pieces) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->pieces[id].len;
    return t->pool + t->pieces[id].off;
}

fb_tok_type fb_tok_piece_type(const fb_tokenizer *t, int id) {
    if (id < 0 || id >= t->n_pieces) return (fb_tok_type)0;
    return (fb_tok_type)t->pieces[id].type;
}

/* ---- normaliser -------------------------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

/* Length of the UTF-8 character starting with byte c, from its lead byte alone (as the
 * unigram lattice steps through the normalised text). */
static size_t utf8_lead_len(uint8_t c) {
    static const uint8_t len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len[c >> 4];
}

/* Length of a valid UTF-8 character at s (0 when the bytes are not one), with the same rules
 * as SentencePiece: shortest form only, no surrogates, at most U+10FFFF. */
static size_t utf8_valid_len(const uint8_t *s, size_t n) {
    uint32_t c;
    if (s[0] < 0x80) return 1;
    if (n >= 2 && (s[0] & 0xe0) == 0xc0) {
        c = (uint32_t)(s[0] & 0x1f) << 6 | (s[1] & 0x3f);
        if ((s[1] & 0xc0) == 0x80 && c >= 0x80) return 2;
    } else if (n >= 3 && (s[0] & 0xf0) == 0xe0) {
        c = (uint32_t)(s[0] & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
        if ((s[1] & 0xc0) == 0x80 && (s[2] & 0xc0) == 0x80 && c >= 0x800 &&
            (c < 0xd800 || c >= 0xe000))
            return 3;
    } else if (n >= 4 && (s[0] & 0xf8) == 0xf0) {
        c = (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3f) << 12 |
            (uint32_t)(s[2] & 0x3f) << 6 | (s[3] & 0x3f);
        if ((s[1] & 0xc0) == 0x80 && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80 &&
            c >= 0x10000 && c <= 0x10ffff)
            return 4;
    }
    return 0;
}

/* darts-clone unit fields */
static inline uint32_t du_has_leaf(uint32_t u) { return (u >> 8) & 1; }
static inline uint32_t du_value(uint32_t u) { return u & 0x7fffffffu; }
static inline uint32_t du_label(uint32_t u) { return u & (0x80000000u | 0xffu); }
static inline uint32_t du_offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }

/* Longest rule of the character map that is a prefix of s: returns its length in bytes (0 if
 * none) and the replacement string's offset in *value. */
static size_t charsmap_match(const fb_tokenizer *t, const uint8_t *s, size_t n,
                             uint32_t *value) {
    if (!t->darts) return 0;
    size_t best = 0;
    size_t pos = du_offset(t->darts[0]);
    for (size_t i = 0; i < n; i++) {
        pos ^= s[i];
        if (pos >= t->n_darts) break;
        uint32_t u = t->darts[pos];
        if (du_label(u) != s[i]) break;
        pos ^= du_offset(u);
        if (pos >= t->n_darts) break;
        if (du_has_leaf(u)) {
            uint32_t v = du_value(t->darts[pos]);
            if (v < t->norm_size) { /* a corrupt offset is ignored, not followed */
                best = i + 1;
                *value = v;
            }
        }
    }
    return best;
}

/* Longest user-defined piece that is a prefix of s (0 if none). */
static size_t user_defined_match(const fb_tokenizer *t, const uint8_t *s, size_t n) {
    size_t best = 0;
    int32_t node = -1;
    for (size_t i = 0; i < n; i++) {
        node = trie_child(t, node, s[i]);
        if (node < 0) break;
        int id = t->nodes[node].id;
        if (id >= 0 && t->pieces[id].type == FB_TOK_USER_DEFINED) best = i + 1;
    }
    return best;
}

/* One normalisation step: the replacement for the longest prefix of s, and how many input
 * bytes it consumes. */
static const char *normalize_prefix(const fb_tokenizer *t, const uint8_t *s, size_t n,
                                    size_t *consumed, size_t *out_len) {
    if (t->has_user_defined) {
        size_t k = user_defined_match(t, s, n);
        if (k) {
            *consumed = *out_len = k;
            return (const char *)s;
        }
    }
    uint32_t v = 0;
    size_t k = charsmap_match(t, s, n, &v);
    if (k) {
        *consumed = k;
        *out_len = strlen(t->norm_str + v);
        return t->norm_str + v;
    }
    k = utf8_valid_len(s, n);
    if (!k) { /* malformed UTF-8: one byte becomes U+FFFD */
        *consumed = 1;
        *out_len = 3;
        return "\xef\xbf\xbd";
    }
    *consumed = *out_len = k;
    return (const char *)s;
}

static void put_ws(const fb_tokenizer *t, sbuf *b) {
    if (t->escape_ws) sb_put(b, kSpaceSymbol, 3);
    else sb_put(b, " ", 1);
}

static int ends_with(const sbuf *b, const char *s, size_t n) {
    return b->n >= n && memcmp(b->p + b->n - n, s, n) == 0;
}

/* Mirrors SentencePiece's Normalizer::Normalize. */
static int normalize(const fb_tokenizer *t, const uint8_t *s, size_t n, sbuf *out) {
    sb_put(out, "", 0);
    size_t consumed, olen;
    if (t->remove_extra_ws) { /* drop leading whitespace */
        while (n) {
            const char *rep = normalize_prefix(t, s, n, &consumed, &olen);
            if (!(olen == 1 && rep[0] == ' ')) break;
            s += consumed;
            n -= consumed;
        }
    }
    if (!n) return out->oom ? -1 : 0;
    if (!t->ws_suffix && t->add_dummy_prefix) put_ws(t, out);
    int prev_space = t->remove_extra_ws;
    while (n) {
        const char *rep = normalize_prefix(t, s, n, &consumed, &olen);
        if (prev_space)
            while (olen && rep[0] == ' ') { rep++; olen--; }
        if (olen) {
            for (size_t i = 0; i < olen; i++) {
                if (t->escape_ws && rep[i] == ' ') sb_put(out, kSpaceSymbol, 3);
                else sb_put(out, rep + i, 1);
            }
            prev_space = rep[olen - 1] == ' ';
        }
        s += consumed;
        n -= consumed;
        if (!t->remove_extra_ws) prev_space = 0;
    }
    if (t->remove_extra_ws) { /* drop trailing whitespace */
        const char *sp = t->escape_ws ? kSpaceSymbol : " ";
        size_t spn = t->escape_ws ? 3 : 1;
        while (ends_with(out, sp, spn)) out->n -= spn;
        if (out->p) out->p[out->n] = 0;
    }
    if (t->ws_suffix && t->add_dummy_prefix) put_ws(t, out);
    return out->oom ? -1 : 0;
}

char *fb_tok_normalize(const fb_tokenizer *t, const char *text, size_t len, size_t *out_len) {
    sbuf b = {0};
    if (normalize(t, (const uint8_t *)text, len, &b)) {
        free(b.p);
        return NULL;
    }
    if (out_len) *out_len = b.n;
    return b.p;
}

/* ---- unigram Viterbi ------------------------------------------------------------------------- */

typedef struct {
    float score;      /* best path score ending here */
    int32_t start;    /* start byte of the last piece of that path; -1: unreached */
    int32_t id;
} best_node;

typedef struct {
    int32_t start, end, id;
} span;

/* Best segmentation of the normalised text s[0..n) into spans (in text order). Mirrors
 * SentencePiece's optimised unigram encoder, including its tie-breaking (first candidate
 * wins, comparisons in float). Returns the number of spans, -1 on OOM. */
static int viterbi(const fb_tokenizer *t, const uint8_t *s, size_t n, span **out) {
    *out = NULL;
    if (n == 0) return 0;
    best_node *best = malloc((n + 1) * sizeof *best);
    if (!best) return -1;
    for (size_t i = 0; i <= n; i++) best[i] = (best_node){0.0f, -1, -1};
    const float unk_score = t->min_score - TOK_UNK_PENALTY;
    size_t start = 0;
    while (start < n) {
        const float base = best[start].score;
        size_t mblen = utf8_lead_len(s[start]);
        if (mblen > n - start) mblen = n - start;
        int has_single = 0;
        int32_t node = -1;
        for (size_t k = start; k < n; k++) {
            node = trie_child(t, node, s[k]);
            if (node < 0) break;
            int id = t->nodes[node].id;
            if (id < 0) continue;
            const tok_piece *pc = &t->pieces[id];
            if (pc->type == FB_TOK_UNUSED) continue;
            size_t len = k + 1 - start;
            /* The reference computes this sum in double (its user-defined bonus is a double
             * expression) and compares before rounding; do the same so near-ties break
             * identically. */
            double score = pc->type == FB_TOK_USER_DEFINED
                               ? (double)((float)len * t->max_score) - 0.1
                               : (double)pc->score;
            double cand = score + (double)base;
            best_node *b = &best[k + 1];
            if (b->start < 0 || cand > (double)b->score) {
                b->score = (float)cand;
                b->start = (int32_t)start;
                b->id = id;
            }
            if (len == mblen) has_single = 1;
        }
        if (!has_single) {
            best_node *b = &best[start + mblen];
            float cand = unk_score + base;
            if (b->start < 0 || cand > b->score) {
                b->score = cand;
                b->start = (int32_t)start;
                b->id = t->unk_id;
            }
        }
        start += mblen;
    }
    int count = 0;
    for (size_t e = n; e > 0; e = (size_t)best[e].start) count++;
    span *sp = malloc((size_t)count * sizeof *sp);
    if (!sp) {
        free(best);
        return -1;
    }
    int i = count;
    for (size_t e = n; e > 0; e = (size_t)best[e].start)
        sp[--i] = (span){best[e].start, (int32_t)e, best[e].id};
    free(best);
    /* The reference emits a run of adjacent unknown characters as one unknown piece. */
    int m = 0;
    for (i = 0; i < count; i++) {
        if (m > 0 && sp[i].id == t->unk_id && sp[m - 1].id == t->unk_id)
            sp[m - 1].end = sp[i].end;
        else
            sp[m++] = sp[i];
    }
    *out = sp;
    return m;
}

/* ---- encode ------------------------------------------------------------------------------------ */

void fb_tok_result_free(fb_tok_result *r) {
    if (!r) return;
    free(r->ids);
    for (int i = 0; i < r->n_unknown; i++) free(r->unknown[i]);
    free(r->unknown);
    memset(r, 0, sizeof *r);
}

/* Records the word of normalised text s around [a, b) (bounded by whitespace symbols) as
 * unknown, once. *last is the word reported last: further unknown spans inside it cost
 * nothing, so a long word full of unknown characters stays linear. */
static int note_unknown(const fb_tokenizer *t, const uint8_t *s, size_t n, size_t a,
                        size_t b, fb_tok_result *r, size_t last[2]) {
    const char *ws = t->escape_ws ? kSpaceSymbol : " ";
    size_t wn = t->escape_ws ? 3 : 1;
    if (b - a == wn && memcmp(s + a, ws, wn) == 0) return 0; /* the separator itself */
    if (a >= last[0] && b <= last[1]) return 0;
    if (r->n_unknown >= FB_TOK_MAX_UNKNOWN) return 0;
    /* Words are separated by whitespace symbols, which are never inside a character, so a
     * byte-wise search is exact. */
    size_t lo = a, hi = b;
    while (lo >= wn && memcmp(s + lo - wn, ws, wn) != 0) lo--;
    if (lo < wn) lo = 0;
    while (hi + wn <= n && memcmp(s + hi, ws, wn) != 0) hi++;
    if (hi + wn > n) hi = n;
    /* Strip separators that the scan may have kept at the edges. */
    while (hi - lo >= wn && memcmp(s + lo, ws, wn) == 0) lo += wn;
    last[0] = lo;
    last[1] = hi;
    size_t len = hi - lo;
    for (int i = 0; i < r->n_unknown; i++)
        if (strlen(r->unknown[i]) == len && memcmp(r->unknown[i], s + lo, len) == 0) return 0;
    char **u = realloc(r->unknown, (size_t)(r->n_unknown + 1) * sizeof *u);
    if (!u) return -1;
    r->unknown = u;
    char *w = malloc(len + 1);
    if (!w) return -1;
    memcpy(w, s + lo, len);
    w[len] = 0;
    r->unknown[r->n_unknown++] = w;
    return 0;
}

int fb_tok_encode(const fb_tokenizer *t, const char *text, size_t len,
                  const fb_tok_options *opt, fb_tok_result *out, char *err, size_t err_size) {
    memset(out, 0, sizeof *out);
    fb_tok_options o = opt ? *opt : (fb_tok_options){0};
    if (!text && len) {
        set_err(err, err_size, "tokenizer: NULL text");
        return -1;
    }
    if (o.max_tokens < 0) {
        set_err(err, err_size, "tokenizer: max_tokens %d is negative", o.max_tokens);
        return -1;
    }
    if (o.add_eos && t->eos_id < 0) {
        set_err(err, err_size, "tokenizer: EOS requested but the model has no EOS piece");
        return -1;
    }
    if (len > (size_t)INT32_MAX / 8) {
        set_err(err, err_size, "tokenizer: text of %zu bytes is too long", len);
        return -1;
    }
    sbuf norm = {0};
    span *sp = NULL;
    if (normalize(t, (const uint8_t *)(text ? text : ""), len, &norm)) goto oom;
    if (norm.n > (size_t)INT32_MAX / 8) {
        free(norm.p);
        set_err(err, err_size, "tokenizer: normalised text is too long");
        return -1;
    }
    const uint8_t *s = (const uint8_t *)norm.p;
    int n_spans = viterbi(t, s, norm.n, &sp);
    if (n_spans < 0) goto oom;

    /* Expand unknown spans to bytes when the model has byte fallback. */
    size_t n_ids = 0;
    for (int i = 0; i < n_spans; i++)
        n_ids += sp[i].id == t->unk_id && t->byte_fallback ? (size_t)(sp[i].end - sp[i].start)
                                                           : 1;
    size_t keep = n_ids, limit = o.max_tokens ? (size_t)o.max_tokens : (size_t)-1;
    if (o.add_eos) limit = limit == 0 ? 0 : limit - 1;
    if (keep > limit) keep = limit;
    out->n_dropped = (int)(n_ids - keep);
    out->ids = malloc((keep + 1) * sizeof *out->ids);
    if (!out->ids) goto oom;
    size_t k = 0, last_word[2] = {1, 0}; /* empty range: nothing reported yet */
    for (int i = 0; i < n_spans && k < keep; i++) {
        int unk = sp[i].id == t->unk_id;
        if (unk && t->byte_fallback) {
            for (int32_t b = sp[i].start; b < sp[i].end && k < keep; b++)
                out->ids[k++] = t->byte_id[s[b]];
        } else {
            out->ids[k++] = sp[i].id;
        }
        if (unk && note_unknown(t, s, norm.n, (size_t)sp[i].start, (size_t)sp[i].end, out,
                                last_word))
            goto oom;
    }
    if (o.add_eos) out->ids[k++] = t->eos_id;
    out->n_ids = (int)k;
    free(sp);
    free(norm.p);
    return 0;
oom:
    free(sp);
    free(norm.p);
    fb_tok_result_free(out);
    set_err(err, err_size, "tokenizer: out of memory");
    return -1;
}
