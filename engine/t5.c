/* engine/t5.c - umT5 / T5 encoder forward on the CPU kernels (see t5.h). */
#include "engine/t5.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A weight usable as float32: in place (F32 in the mapping), converted at load (owned), or
 * converted into scratch each time it is used (f32 == NULL). */
typedef struct {
    const fb_st_tensor *t;
    const float *f32;
    float *owned;
} t5_mat;

typedef struct {
    t5_mat norm1, q, k, v, o, norm2, gate, fc1, fc2, pos;
} t5_block;

struct fb_t5 {
    fb_text_config cfg;
    int head_dim;
    const fb_st_tensor *emb;     /* [vocab, dim], rows converted on lookup */
    t5_block *blocks;
    t5_mat pos_shared;           /* shared_pos only */
    t5_mat norm;
    size_t converted_bytes;
    size_t max_lazy_floats;      /* largest matrix converted per use (0: none) */
};

static void set_err(char *err, size_t n, const char *fmt, ...) {
    if (!err || !n) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}

static int is_float_dtype(fb_dtype dt) {
    return dt == FB_DT_F32 || dt == FB_DT_F16 || dt == FB_DT_BF16;
}

/* Finds prefix+name with the given shape and a float dtype. */
static const fb_st_tensor *find_tensor(const fb_safetensors *st, const char *prefix,
                                       const char *name, int ndim, const int64_t *shape,
                                       char *err, size_t err_size) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    const fb_st_tensor *t = fb_st_find(st, full);
    if (!t) {
        set_err(err, err_size, "text encoder: tensor %s is missing", full);
        return NULL;
    }
    if (!is_float_dtype(t->dtype)) {
        set_err(err, err_size, "text encoder: %s has dtype %s (expected F32, F16 or BF16)",
                full, fb_dtype_name(t->dtype));
        return NULL;
    }
    if (fb_st_check_shape(t, ndim, shape, err, err_size)) return NULL;
    return t;
}

/* Decides how a matrix is held. Small tensors (norms, bias tables) are always converted. */
static int mat_init(fb_t5 *m, t5_mat *w, const fb_st_tensor *t, int always_convert,
                    char *err, size_t err_size) {
    w->t = t;
    if (t->dtype == FB_DT_F32 && ((uintptr_t)t->data % sizeof(float)) == 0 && !always_convert) {
        w->f32 = t->data;
        return 0;
    }
    size_t bytes = (size_t)t->numel * sizeof(float);
    if (!always_convert && m->converted_bytes + bytes > FB_T5_RESIDENT_MAX) {
        if ((size_t)t->numel > m->max_lazy_floats) m->max_lazy_floats = (size_t)t->numel;
        return 0; /* converted per use */
    }
    w->owned = malloc(bytes);
    if (!w->owned) {
        set_err(err, err_size, "text encoder: out of memory converting %s", t->name);
        return -1;
    }
    fb_st_to_f32(t, w->owned);
    w->f32 = w->owned;
    m->converted_bytes += bytes;
    return 0;
}

static const float *mat_get(const t5_mat *w, float *tmp) {
    if (w->f32) return w->f32;
    fb_st_to_f32(w->t, tmp);
    return tmp;
}

static void mat_free(t5_mat *w) { free(w->owned); }

void fb_t5_free(fb_t5 *m) {
    if (!m) return;
    if (m->blocks) {
        for (int i = 0; i < m->cfg.num_layers; i++) {
            t5_block *b = &m->blocks[i];
            t5_mat *all[] = {&b->norm1, &b->q, &b->k,   &b->v,   &b->o,
                             &b->norm2, &b->gate, &b->fc1, &b->fc2, &b->pos};
            for (size_t j = 0; j < sizeof all / sizeof all[0]; j++) mat_free(all[j]);
        }
    }
    free(m->blocks);
    mat_free(&m->pos_shared);
    mat_free(&m->norm);
    free(m);
}

static int check_config(const fb_text_config *c, char *err, size_t err_size) {
    if (c->vocab < 1 || c->dim < 1 || c->dim_attn < 1 || c->dim_ffn < 1 || c->num_heads < 1 ||
        c->num_layers < 1 || c->max_tokens < 1) {
        set_err(err, err_size, "text encoder: config sizes must be positive");
        return -1;
    }
    if (c->dim_attn % c->num_heads) {
        set_err(err, err_size, "text encoder: dim_attn %d is not a multiple of num_heads %d",
                c->dim_attn, c->num_heads);
        return -1;
    }
    /* Bidirectional buckets: half per direction, of which half are exact distances; the
     * logarithmic part needs at least one exact bucket and max_distance beyond them. */
    if (c->num_buckets < 4 || c->max_distance <= c->num_buckets / 4) {
        set_err(err, err_size,
                "text encoder: num_buckets %d must be >= 4 and max_distance %d > %d",
                c->num_buckets, c->max_distance, c->num_buckets / 4);
        return -1;
    }
    if (!(c->eps > 0.0f) || !isfinite(c->eps)) {
        set_err(err, err_size, "text encoder: eps must be positive");
        return -1;
    }
    if (c->max_tokens > 65536) {
        set_err(err, err_size, "text encoder: max_tokens %d is too large", c->max_tokens);
        return -1;
    }
    return 0;
}

int fb_t5_load(const fb_safetensors *st, const char *prefix, const fb_text_config *cfg,
               fb_t5 **out, char *err, size_t err_size) {
    *out = NULL;
    if (!st || !cfg) {
        set_err(err, err_size, "text encoder: NULL argument");
        return -1;
    }
    if (!prefix) prefix = "";
    if (check_config(cfg, err, err_size)) return -1;
    fb_t5 *m = calloc(1, sizeof *m);
    if (!m) {
        set_err(err, err_size, "text encoder: out of memory");
        return -1;
    }
    m->cfg = *cfg;
    m->head_dim = cfg->dim_attn / cfg->num_heads;
    m->blocks = calloc((size_t)cfg->num_layers, sizeof *m->blocks);
    if (!m->blocks) {
        set_err(err, err_size, "text encoder: out of memory");
        goto fail;
    }
    const int64_t D = cfg->dim, A = cfg->dim_attn, F = cfg->dim_ffn;
    const int64_t emb_shape[2] = {cfg->vocab, D};
    m->emb = find_tensor(st, prefix, "token_embedding.weight", 2, emb_shape, err, err_size);
    if (!m->emb) goto fail;
    const int64_t vec[1] = {D}, pos_shape[2] = {cfg->num_buckets, cfg->num_heads};
    const fb_st_tensor *t;
    if (!(t = find_tensor(st, prefix, "norm.weight", 1, vec, err, err_size))) goto fail;
    if (mat_init(m, &m->norm, t, 1, err, err_size)) goto fail;
    if (cfg->shared_pos) {
        t = find_tensor(st, prefix, "pos_embedding.embedding.weight", 2, pos_shape, err,
                        err_size);
        if (!t || mat_init(m, &m->pos_shared, t, 1, err, err_size)) goto fail;
    }
    for (int i = 0; i < cfg->num_layers; i++) {
        t5_block *b = &m->blocks[i];
        struct {
            t5_mat *w;
            const char *name;
            int64_t rows, cols; /* cols 0: a vector */
            int small;
        } items[] = {
            {&b->norm1, "norm1.weight", D, 0, 1},     {&b->norm2, "norm2.weight", D, 0, 1},
            {&b->q, "attn.q.weight", A, D, 0},        {&b->k, "attn.k.weight", A, D, 0},
            {&b->v, "attn.v.weight", A, D, 0},        {&b->o, "attn.o.weight", D, A, 0},
            {&b->gate, "ffn.gate.0.weight", F, D, 0}, {&b->fc1, "ffn.fc1.weight", F, D, 0},
            {&b->fc2, "ffn.fc2.weight", D, F, 0},
        };
        for (size_t j = 0; j < sizeof items / sizeof items[0]; j++) {
            char name[128];
            snprintf(name, sizeof name, "blocks.%d.%s", i, items[j].name);
            int64_t shape[2] = {items[j].rows, items[j].cols};
            t = find_tensor(st, prefix, name, items[j].cols ? 2 : 1, shape, err, err_size);
            if (!t || mat_init(m, items[j].w, t, items[j].small, err, err_size)) goto fail;
        }
        if (!cfg->shared_pos) {
            char name[128];
            snprintf(name, sizeof name, "blocks.%d.pos_embedding.embedding.weight", i);
            t = find_tensor(st, prefix, name, 2, pos_shape, err, err_size);
            if (!t || mat_init(m, &b->pos, t, 1, err, err_size)) goto fail;
        }
    }
    *out = m;
    return 0;
fail:
    fb_t5_free(m);
    return -1;
}

const fb_text_config *fb_t5_get_config(const fb_t5 *m) { return &m->cfg; }
size_t fb_t5_weight_bytes(const fb_t5 *m) { return m->converted_bytes; }

/* ---- positions -------------------------------------------------------------------------- */

int fb_t5_bucket(int rel, int num_buckets, int max_distance, int bidirectional) {
    int ret = 0, nb = num_buckets;
    if (bidirectional) {
        nb /= 2;
        if (rel > 0) ret += nb;
        rel = rel < 0 ? -rel : rel;
    } else {
        rel = rel < 0 ? -rel : 0;
    }
    int max_exact = nb / 2;
    if (rel < max_exact) return ret + rel;
    if (max_exact < 1 || max_distance <= max_exact) return ret + (nb > 0 ? nb - 1 : 0);
    /* Upstream evaluates this on float32 tensors: log(rel / max_exact) / log(max_distance /
     * max_exact) * (nb - max_exact), then truncates; the divisor is a Python double that
     * the tensor op rounds to float32. Keep each step in float so boundaries agree. */
    float num = logf((float)rel / (float)max_exact);
    float den = (float)log((double)max_distance / (double)max_exact);
    float f = num / den * (float)(nb - max_exact);
    long large = max_exact + (long)f;
    if (large > nb - 1) large = nb - 1;
    return ret + (int)large;
}

static const float *pos_table(const fb_t5 *m, int layer) {
    return m->cfg.shared_pos ? m->pos_shared.f32 : m->blocks[layer].pos.f32;
}

int fb_t5_pos_bias(const fb_t5 *m, int layer, int lq, int lk, float *out) {
    if (layer < 0 || layer >= m->cfg.num_layers || lq < 1 || lk < 1) return -1;
    const float *tab = pos_table(m, layer);
    const int H = m->cfg.num_heads;
    for (int h = 0; h < H; h++)
        for (int i = 0; i < lq; i++)
            for (int j = 0; j < lk; j++) {
                int b = fb_t5_bucket(j - i, m->cfg.num_buckets, m->cfg.max_distance, 1);
                out[((size_t)h * lq + i) * lk + j] = tab[(size_t)b * H + h];
            }
    return 0;
}

/* ---- forward --------------------------------------------------------------------------- */

#define ALIGN_FLOATS 16 /* 64-byte alignment of every scratch array */

static size_t round_up(size_t n) { return (n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS; }

typedef struct {
    float *x, *h, *q, *k, *v, *att, *y, *s, *f1, *g, *wtmp;
    int *bucket; /* [2L - 1]: bucket of rel = idx - (L - 1) */
} t5_scratch;

/* Lays the scratch out for L tokens; returns the floats needed (ints counted as floats). */
static size_t scratch_layout(const fb_t5 *m, int L, float *base, t5_scratch *s) {
    const size_t D = (size_t)m->cfg.dim, A = (size_t)m->cfg.dim_attn,
                 F = (size_t)m->cfg.dim_ffn, n = (size_t)L;
    size_t at = 0;
#define CARVE(field, count)                                   \
    do {                                                      \
        if (s) s->field = (void *)(base + at);                \
        at += round_up(count);                                \
    } while (0)
    CARVE(x, n * D);
    CARVE(h, n * D);
    CARVE(y, n * D);
    CARVE(q, n * A);
    CARVE(k, n * A);
    CARVE(v, n * A);
    CARVE(att, n * A);
    CARVE(s, n * n);
    CARVE(f1, n * F);
    CARVE(g, n * F);
    CARVE(bucket, 2 * n);
    CARVE(wtmp, m->max_lazy_floats);
#undef CARVE
    return at;
}

size_t fb_t5_scratch_bytes(const fb_t5 *m, int max_tokens) {
    if (max_tokens < 1) max_tokens = 1;
    return scratch_layout(m, max_tokens, NULL, NULL) * sizeof(float) + 64;
}

static void emb_row(const fb_st_tensor *e, int64_t row, int64_t dim, float *dst) {
    const uint8_t *p = (const uint8_t *)e->data + (size_t)(row * dim) * fb_dtype_size(e->dtype);
    for (int64_t i = 0; i < dim; i++) {
        switch (e->dtype) {
        case FB_DT_F32: memcpy(&dst[i], p + 4 * i, 4); break;
        case FB_DT_F16: {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = fb_f16_to_f32(h);
            break;
        }
        default: {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = fb_bf16_to_f32(h);
            break;
        }
        }
    }
}

static void dump(const fb_t5_call *c, const char *name, int layer, const float *x, int rows,
                 int cols) {
    if (!c->dump) return;
    char full[64];
    if (layer >= 0) snprintf(full, sizeof full, "block%d.%s", layer, name);
    else snprintf(full, sizeof full, "%s", name);
    c->dump(c->dump_user, full, x, rows, cols);
}

int fb_t5_encode(const fb_t5 *m, fb_kctx *kc, void *scratch, size_t scratch_bytes,
                 const fb_t5_call *c, char *err, size_t err_size) {
    const fb_text_config *cfg = &m->cfg;
    if (!c || !c->ids || !c->out || !kc) {
        set_err(err, err_size, "text encoder: NULL argument");
        return -1;
    }
    const int L = c->n_ids;
    if (L < 1 || L > cfg->max_tokens) {
        set_err(err, err_size, "text encoder: %d tokens (expected 1..%d)", L, cfg->max_tokens);
        return -1;
    }
    if (c->out_rows < L) {
        set_err(err, err_size, "text encoder: %d output rows for %d tokens", c->out_rows, L);
        return -1;
    }
    for (int i = 0; i < L; i++)
        if (c->ids[i] < 0 || c->ids[i] >= cfg->vocab) {
            set_err(err, err_size, "text encoder: token %d has id %d outside [0, %d)", i,
                    (int)c->ids[i], cfg->vocab);
            return -1;
        }
    float *base = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    size_t need = scratch_layout(m, L, NULL, NULL);
    if (!scratch ||
        scratch_bytes < need * sizeof(float) + (size_t)((char *)base - (char *)scratch)) {
        set_err(err, err_size, "text encoder: scratch of %zu bytes, %zu needed for %d tokens",
                scratch_bytes, fb_t5_scratch_bytes(m, L), L);
        return -1;
    }
    t5_scratch s;
    scratch_layout(m, L, base, &s);

    const int D = cfg->dim, A = cfg->dim_attn, F = cfg->dim_ffn, H = cfg->num_heads;
    const int Dh = m->head_dim;
    for (int i = 0; i < L; i++) emb_row(m->emb, c->ids[i], D, s.x + (size_t)i * D);
    for (int r = 0; r < 2 * L - 1; r++)
        s.bucket[r] = fb_t5_bucket(r - (L - 1), cfg->num_buckets, cfg->max_distance, 1);

    for (int l = 0; l < cfg->num_layers; l++) {
        const t5_block *b = &m->blocks[l];
        const float *pos = pos_table(m, l);
        /* attention */
        fb_rmsnorm(kc, s.x, s.h, L, D, cfg->eps, b->norm1.f32);           /* h [L, D] */
        fb_linear(kc, s.h, mat_get(&b->q, s.wtmp), NULL, s.q, L, A, D);   /* q [L, A] */
        fb_linear(kc, s.h, mat_get(&b->k, s.wtmp), NULL, s.k, L, A, D);   /* k [L, A] */
        fb_linear(kc, s.h, mat_get(&b->v, s.wtmp), NULL, s.v, L, A, D);   /* v [L, A] */
        for (int h = 0; h < H; h++) {
            /* scores [L, L] = q_h k_h^T (no 1/sqrt(d) scaling in T5) + bias_h */
            fb_sgemm(kc, 0, 1, L, L, Dh, 1.0f, s.q + h * Dh, A, s.k + h * Dh, A, 0.0f, s.s, L);
            for (int i = 0; i < L; i++) {
                float *row = s.s + (size_t)i * L;
                const int *bk = s.bucket + (L - 1 - i); /* bk[j] = bucket(j - i) */
                for (int j = 0; j < L; j++) row[j] += pos[(size_t)bk[j] * H + h];
            }
            fb_softmax(kc, s.s, L, L);
            /* att_h [L, Dh] = P v_h */
            fb_sgemm(kc, 0, 0, L, Dh, L, 1.0f, s.s, L, s.v + h * Dh, A, 0.0f, s.att + h * Dh,
                     A);
        }
        fb_linear(kc, s.att, mat_get(&b->o, s.wtmp), NULL, s.y, L, D, A); /* y [L, D] */
        dump(c, "attn_out", l, s.y, L, D);
        fb_gated_add(kc, s.x, s.y, NULL, L, D);
        /* gated feed-forward: fc2(fc1(h) * gelu(gate(h))) */
        fb_rmsnorm(kc, s.x, s.h, L, D, cfg->eps, b->norm2.f32);
        fb_linear(kc, s.h, mat_get(&b->gate, s.wtmp), NULL, s.g, L, F, D); /* g [L, F] */
        fb_gelu_tanh(kc, s.g, s.g, (size_t)L * F);
        fb_linear(kc, s.h, mat_get(&b->fc1, s.wtmp), NULL, s.f1, L, F, D); /* f1 [L, F] */
        for (size_t i = 0; i < (size_t)L * F; i++) s.f1[i] *= s.g[i];
        fb_linear(kc, s.f1, mat_get(&b->fc2, s.wtmp), NULL, s.y, L, D, F); /* y [L, D] */
        dump(c, "ffn_out", l, s.y, L, D);
        fb_gated_add(kc, s.x, s.y, NULL, L, D);
        dump(c, "out", l, s.x, L, D);
    }
    fb_rmsnorm(kc, s.x, c->out, L, D, cfg->eps, m->norm.f32);
    memset(c->out + (size_t)L * D, 0, (size_t)(c->out_rows - L) * D * sizeof(float));
    dump(c, "hidden", -1, c->out, L, D);
    return 0;
}

double fb_t5_flops(const fb_text_config *c, int n) {
    double D = c->dim, A = c->dim_attn, F = c->dim_ffn;
    double per_layer = 2.0 * n * (4.0 * D * A + 3.0 * D * F) + 4.0 * (double)n * n * A;
    return per_layer * c->num_layers;
}
