/* engine/dit.c - the Wan2.1 DiT forward on the CPU kernels (see dit.h and
 * shared/specs/wan_causal.md sec. 2-4).
 *
 * Layout of this file: weight table and loading; the prepared prompt; scratch planning; the
 * forward (time embedding, patch embedding, blocks, head, unpatchify), written for a batch of
 * calls whose token rows are stacked (a single call is a batch of one). Variables are named
 * after the upstream modules; every tensor statement carries its shape as a comment, with
 * L = tokens of the call (F x tokens_per_frame), Lp = past tokens, Lk = Lp + L, D = dim,
 * Lt = text_len.
 */
#include "engine/dit.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert((int)FB_KV_POS_WINDOW == (int)FB_POS_WINDOW &&
                   (int)FB_KV_POS_ABSOLUTE == (int)FB_POS_ABSOLUTE,
               "kvcache and config positions enums must agree");
_Static_assert(FB_KV_MAX_POS == FB_ROPE_MAX_POS, "RoPE table extent must agree");

/* ---- weights ----------------------------------------------------------------------------- */

typedef struct dit_attn {
    float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;  /* [D, D], [D] */
    float *norm_q, *norm_k;                                 /* [D]; NULL without qk_norm */
} dit_attn;

typedef struct dit_block {
    float *modulation;                 /* [6, D] */
    dit_attn self_attn;
    float *norm3_w, *norm3_b;          /* [D]; NULL without cross_attn_norm (Identity) */
    dit_attn cross_attn;
    float *ffn0_w, *ffn0_b;            /* [F_ffn, D], [F_ffn] */
    float *ffn2_w, *ffn2_b;            /* [D, F_ffn], [D] */
} dit_block;

struct fb_dit {
    fb_dit_config cfg;
    int head_dim, patch_in, patch_out;  /* Dh; C_in*ph*pw; C_out*ph*pw */
    float *patch_w, *patch_b;           /* [D, patch_in] (Conv3d weight [D, C, 1, ph, pw]), [D] */
    float *text0_w, *text0_b;           /* [D, text_dim], [D] */
    float *text2_w, *text2_b;           /* [D, D], [D] */
    float *time0_w, *time0_b;           /* [D, freq_dim], [D] */
    float *time2_w, *time2_b;           /* [D, D], [D] */
    float *tproj_w, *tproj_b;           /* [6D, D], [6D] */
    float *head_w, *head_b;             /* [patch_out, D], [patch_out] */
    float *head_mod;                    /* [2, D] */
    dit_block *blocks;                  /* [num_layers] */
    fb_rope rope;                       /* positions 0..FB_ROPE_MAX_POS-1 (and the grid) */
    float *arena;                       /* every weight, float32 */
    size_t n_floats;
};

struct fb_dit_text {
    int text_len, dim, n_layers;
    int placed;  /* in caller memory (fb_dit_text_init): fb_dit_text_free leaves it alone */
    float *kv;   /* [n_layers][2][Lt, D]: cross-attention K (after norm_k) and V */
};

static void set_err(char *err, size_t n, const char *fmt, ...)
{
    if (!err || n == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}

const char *fb_dit_status_str(int status)
{
    switch (status) {
    case FB_DIT_OK: return "ok";
    case FB_DIT_ERR_ARG: return "invalid argument";
    case FB_DIT_ERR_WEIGHTS: return "bad or missing weights";
    case FB_DIT_ERR_NOMEM: return "out of memory";
    case FB_DIT_ERR_SCRATCH: return "scratch arena too small";
    case FB_DIT_ERR_PLAN: return "attention plan does not match the cache";
    default: return "unknown status";
    }
}

typedef struct {
    char name[160];
    int ndim;
    int64_t shape[5];
    float **dst;
    const fb_st_tensor *t;
} wspec;

typedef struct {
    wspec *v;
    int n, cap;
    int oom;
} wlist;

static void wadd(wlist *l, float **dst, int ndim, const int64_t *shape, const char *fmt, ...)
{
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        wspec *nv = realloc(l->v, (size_t)cap * sizeof *nv);
        if (!nv) {
            l->oom = 1;
            return;
        }
        l->v = nv;
        l->cap = cap;
    }
    wspec *w = &l->v[l->n++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->name, sizeof w->name, fmt, ap);
    va_end(ap);
    w->ndim = ndim;
    memcpy(w->shape, shape, (size_t)ndim * sizeof(int64_t));
    w->dst = dst;
    w->t = NULL;
}

#define W1(l, dst, a, ...) wadd(l, dst, 1, (int64_t[]){a}, __VA_ARGS__)
#define W2(l, dst, a, b, ...) wadd(l, dst, 2, (int64_t[]){a, b}, __VA_ARGS__)
#define W3(l, dst, a, b, c, ...) wadd(l, dst, 3, (int64_t[]){a, b, c}, __VA_ARGS__)

static void add_attn(wlist *l, dit_attn *a, const fb_dit_config *c, int i, const char *mod)
{
    int64_t D = c->dim;
    W2(l, &a->q_w, D, D, "blocks.%d.%s.q.weight", i, mod);
    W1(l, &a->q_b, D, "blocks.%d.%s.q.bias", i, mod);
    W2(l, &a->k_w, D, D, "blocks.%d.%s.k.weight", i, mod);
    W1(l, &a->k_b, D, "blocks.%d.%s.k.bias", i, mod);
    W2(l, &a->v_w, D, D, "blocks.%d.%s.v.weight", i, mod);
    W1(l, &a->v_b, D, "blocks.%d.%s.v.bias", i, mod);
    W2(l, &a->o_w, D, D, "blocks.%d.%s.o.weight", i, mod);
    W1(l, &a->o_b, D, "blocks.%d.%s.o.bias", i, mod);
    if (c->qk_norm) {
        W1(l, &a->norm_q, D, "blocks.%d.%s.norm_q.weight", i, mod);
        W1(l, &a->norm_k, D, "blocks.%d.%s.norm_k.weight", i, mod);
    }
}

/* The full weight table of a config: names after the prefix, shapes, destinations. */
static void build_table(wlist *l, fb_dit *d)
{
    const fb_dit_config *c = &d->cfg;
    int64_t D = c->dim;
    wadd(l, &d->patch_w, 5,
         (int64_t[]){D, c->in_dim, c->patch_size[0], c->patch_size[1], c->patch_size[2]},
         "patch_embedding.weight");
    W1(l, &d->patch_b, D, "patch_embedding.bias");
    W2(l, &d->text0_w, D, c->text_dim, "text_embedding.0.weight");
    W1(l, &d->text0_b, D, "text_embedding.0.bias");
    W2(l, &d->text2_w, D, D, "text_embedding.2.weight");
    W1(l, &d->text2_b, D, "text_embedding.2.bias");
    W2(l, &d->time0_w, D, c->freq_dim, "time_embedding.0.weight");
    W1(l, &d->time0_b, D, "time_embedding.0.bias");
    W2(l, &d->time2_w, D, D, "time_embedding.2.weight");
    W1(l, &d->time2_b, D, "time_embedding.2.bias");
    W2(l, &d->tproj_w, 6 * D, D, "time_projection.1.weight");
    W1(l, &d->tproj_b, 6 * D, "time_projection.1.bias");
    W2(l, &d->head_w, d->patch_out, D, "head.head.weight");
    W1(l, &d->head_b, d->patch_out, "head.head.bias");
    W3(l, &d->head_mod, 1, 2, D, "head.modulation");
    for (int i = 0; i < c->num_layers; i++) {
        dit_block *b = &d->blocks[i];
        W3(l, &b->modulation, 1, 6, D, "blocks.%d.modulation", i);
        add_attn(l, &b->self_attn, c, i, "self_attn");
        if (c->cross_attn_norm) {
            W1(l, &b->norm3_w, D, "blocks.%d.norm3.weight", i);
            W1(l, &b->norm3_b, D, "blocks.%d.norm3.bias", i);
        }
        add_attn(l, &b->cross_attn, c, i, "cross_attn");
        W2(l, &b->ffn0_w, c->ffn_dim, D, "blocks.%d.ffn.0.weight", i);
        W1(l, &b->ffn0_b, c->ffn_dim, "blocks.%d.ffn.0.bias", i);
        W2(l, &b->ffn2_w, D, c->ffn_dim, "blocks.%d.ffn.2.weight", i);
        W1(l, &b->ffn2_b, D, "blocks.%d.ffn.2.bias", i);
    }
}

static int check_config(const fb_dit_config *c, char *err, size_t n)
{
    if (c->patch_size[0] != 1 || c->patch_size[1] < 1 || c->patch_size[2] < 1) {
        set_err(err, n, "dit: patch_size must be [1, ph, pw], got [%d, %d, %d]",
                c->patch_size[0], c->patch_size[1], c->patch_size[2]);
        return -1;
    }
    if (c->in_dim < 1 || c->out_dim < 1 || c->dim < 1 || c->ffn_dim < 1 || c->text_dim < 1 ||
        c->text_len < 1 || c->num_layers < 1 || c->num_heads < 1 || c->freq_dim < 2 ||
        c->freq_dim % 2 != 0 || !(c->eps > 0.0f)) {
        set_err(err, n, "dit: config has a non-positive size, an odd freq_dim or eps <= 0");
        return -1;
    }
    if (c->dim % c->num_heads != 0) {
        set_err(err, n, "dit: dim %d is not a multiple of num_heads %d", c->dim, c->num_heads);
        return -1;
    }
    int hd = c->dim / c->num_heads;
    if (hd < 6 || hd % 2 != 0 || hd > FB_ATTN_MAX_HEAD_DIM) {
        set_err(err, n, "dit: head_dim %d must be even and in [6, %d]", hd,
                FB_ATTN_MAX_HEAD_DIM);
        return -1;
    }
    return 0;
}

static int tensor_has_prefix(const char *name, const char *prefix)
{
    return strncmp(name, prefix, strlen(prefix)) == 0;
}

int fb_dit_load(const fb_safetensors *st, const char *prefix, const fb_dit_config *cfg,
                fb_dit **out, char *err, size_t err_size)
{
    *out = NULL;
    if (!st || !cfg) {
        set_err(err, err_size, "dit: NULL file or config");
        return FB_DIT_ERR_ARG;
    }
    if (!prefix)
        prefix = "";
    if (check_config(cfg, err, err_size))
        return FB_DIT_ERR_ARG;
    fb_dit *d = calloc(1, sizeof *d);
    if (!d) {
        set_err(err, err_size, "dit: out of memory");
        return FB_DIT_ERR_NOMEM;
    }
    d->cfg = *cfg;
    d->head_dim = cfg->dim / cfg->num_heads;
    d->patch_in = cfg->in_dim * cfg->patch_size[1] * cfg->patch_size[2];
    d->patch_out = cfg->out_dim * cfg->patch_size[1] * cfg->patch_size[2];
    d->blocks = calloc((size_t)cfg->num_layers, sizeof *d->blocks);
    wlist l = {0};
    int rc = FB_DIT_OK;
    if (!d->blocks) {
        rc = FB_DIT_ERR_NOMEM;
        goto fail;
    }
    build_table(&l, d);
    if (l.oom) {
        rc = FB_DIT_ERR_NOMEM;
        goto fail;
    }
    /* pass 1: presence, dtype, shape; size the arena */
    size_t total = 0;
    for (int i = 0; i < l.n; i++) {
        wspec *w = &l.v[i];
        char full[256];
        snprintf(full, sizeof full, "%s%s", prefix, w->name);
        const fb_st_tensor *t = fb_st_find(st, full);
        if (!t) {
            set_err(err, err_size, "dit: tensor %s is missing", full);
            rc = FB_DIT_ERR_WEIGHTS;
            goto fail;
        }
        if (t->dtype != FB_DT_F32 && t->dtype != FB_DT_F16 && t->dtype != FB_DT_BF16) {
            set_err(err, err_size, "dit: tensor %s has dtype %s (F32, F16 or BF16 expected)",
                    full, fb_dtype_name(t->dtype));
            rc = FB_DIT_ERR_WEIGHTS;
            goto fail;
        }
        char serr[256];
        if (fb_st_check_shape(t, w->ndim, w->shape, serr, sizeof serr)) {
            set_err(err, err_size, "dit: %s", serr);
            rc = FB_DIT_ERR_WEIGHTS;
            goto fail;
        }
        w->t = t;
        total += ((size_t)t->numel + 15) / 16 * 16;   /* keep every tensor 64-byte aligned */
    }
    /* every tensor under a non-empty prefix must be one we know: an extra block or a stray
     * name means the file and the config disagree (e.g. num_layers) */
    if (prefix[0]) {
        for (int i = 0; i < fb_st_count(st); i++) {
            const fb_st_tensor *t = fb_st_at(st, i);
            if (!tensor_has_prefix(t->name, prefix))
                continue;
            int known = 0;
            for (int j = 0; j < l.n && !known; j++)
                known = l.v[j].t == t;
            if (!known) {
                set_err(err, err_size, "dit: unexpected tensor %s (does the config match the "
                        "file? num_layers %d, qk_norm %d, cross_attn_norm %d)", t->name,
                        cfg->num_layers, cfg->qk_norm, cfg->cross_attn_norm);
                rc = FB_DIT_ERR_WEIGHTS;
                goto fail;
            }
        }
    }
    d->arena = aligned_alloc(64, (total * sizeof(float) + 63) / 64 * 64);
    if (!d->arena) {
        set_err(err, err_size, "dit: cannot allocate %zu bytes of weights", total * sizeof(float));
        rc = FB_DIT_ERR_NOMEM;
        goto fail;
    }
    d->n_floats = total;
    /* pass 2: convert */
    float *p = d->arena;
    for (int i = 0; i < l.n; i++) {
        wspec *w = &l.v[i];
        fb_st_to_f32(w->t, p);
        *w->dst = p;
        p += ((size_t)w->t->numel + 15) / 16 * 16;
    }
    /* one table for all three axes: 1024 positions covers time and any grid we accept */
    if (fb_rope_init(&d->rope, d->head_dim, FB_ROPE_MAX_POS)) {
        set_err(err, err_size, "dit: cannot build the RoPE table");
        rc = FB_DIT_ERR_NOMEM;
        goto fail;
    }
    free(l.v);
    *out = d;
    return FB_DIT_OK;
fail:
    if (rc == FB_DIT_ERR_NOMEM && err && err_size && !err[0])
        set_err(err, err_size, "dit: out of memory");
    free(l.v);
    fb_dit_free(d);
    return rc;
}

void fb_dit_free(fb_dit *d)
{
    if (!d)
        return;
    fb_rope_free(&d->rope);
    free(d->arena);
    free(d->blocks);
    free(d);
}

const fb_dit_config *fb_dit_get_config(const fb_dit *d)
{
    return &d->cfg;
}

size_t fb_dit_weight_bytes(const fb_dit *d)
{
    return d->n_floats * sizeof(float);
}

static void dump(const fb_dit_dump *dp, const char *name, const float *data, int ndim, ...)
{
    if (!dp || !dp->fn)
        return;
    int64_t shape[8];
    va_list ap;
    va_start(ap, ndim);
    for (int i = 0; i < ndim && i < 8; i++)
        shape[i] = va_arg(ap, int64_t);
    va_end(ap);
    dp->fn(dp->user, name, data, ndim, shape);
}

/* ---- prompt ------------------------------------------------------------------------------ */

/* A placed text lives in caller memory: the struct, then (64-byte aligned) its K/V. */
static size_t text_kv_offset(void)
{
    return (sizeof(fb_dit_text) + 63) & ~(size_t)63;
}

static size_t text_kv_floats(const fb_dit_config *cfg)
{
    return (size_t)cfg->num_layers * 2 * cfg->text_len * cfg->dim;
}

size_t fb_dit_text_bytes(const fb_dit_config *cfg)
{
    return text_kv_offset() + text_kv_floats(cfg) * sizeof(float);
}

fb_dit_text *fb_dit_text_init(void *mem, size_t bytes, const fb_dit_config *cfg)
{
    if (!mem || !cfg || ((uintptr_t)mem & 63) || bytes < fb_dit_text_bytes(cfg))
        return NULL;
    fb_dit_text *t = mem;
    memset(t, 0, sizeof *t);
    t->text_len = cfg->text_len;
    t->dim = cfg->dim;
    t->n_layers = cfg->num_layers;
    t->placed = 1;
    t->kv = (float *)((char *)mem + text_kv_offset());
    return t;
}

size_t fb_dit_text_scratch_bytes(const fb_dit_config *cfg)
{
    /* context padded to text_len [Lt, text_dim], hidden [Lt, D], embedded context [Lt, D] */
    size_t Lt = (size_t)cfg->text_len;
    return (Lt * cfg->text_dim + 2 * Lt * cfg->dim) * sizeof(float) + 64;
}

int fb_dit_text_prepare_into(const fb_dit *d, fb_kctx *kc, const float *context, int n_rows,
                             const fb_dit_dump *dp, fb_dit_text *t, void *scratch,
                             size_t scratch_bytes, char *err, size_t err_size)
{
    if (!d || !kc || !t) {
        set_err(err, err_size, "dit: NULL model, context or prepared prompt");
        return FB_DIT_ERR_ARG;
    }
    const fb_dit_config *c = &d->cfg;
    if (!context || n_rows < 1 || n_rows > c->text_len) {
        set_err(err, err_size, "dit: context has %d rows, expected 1..%d (text_len)", n_rows,
                c->text_len);
        return FB_DIT_ERR_ARG;
    }
    if (t->dim != c->dim || t->n_layers != c->num_layers || t->text_len != c->text_len) {
        set_err(err, err_size, "dit: the prepared prompt was made for another model");
        return FB_DIT_ERR_ARG;
    }
    if (!scratch || scratch_bytes < fb_dit_text_scratch_bytes(c)) {
        set_err(err, err_size, "dit: text scratch has %zu bytes, preparing a prompt needs %zu",
                scratch ? scratch_bytes : 0, fb_dit_text_scratch_bytes(c));
        return FB_DIT_ERR_SCRATCH;
    }
    /* nothing below can fail: a refused call has written nothing */
    int Lt = c->text_len, D = c->dim;
    float *ctx = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63); /* [Lt, text_dim] */
    float *h = ctx + (size_t)Lt * c->text_dim;                          /* [Lt, D] */
    float *ce = h + (size_t)Lt * D;                                     /* [Lt, D] */
    /* rows n_rows..Lt-1 are zero: they are embedded and attended like upstream's padding */
    memcpy(ctx, context, (size_t)n_rows * c->text_dim * sizeof(float));
    memset(ctx + (size_t)n_rows * c->text_dim, 0,
           (size_t)(Lt - n_rows) * c->text_dim * sizeof(float));
    fb_linear(kc, ctx, d->text0_w, d->text0_b, h, Lt, D, c->text_dim); /* [Lt, D] */
    fb_gelu_tanh(kc, h, h, (size_t)Lt * D);                             /* [Lt, D] */
    fb_linear(kc, h, d->text2_w, d->text2_b, ce, Lt, D, D);            /* [Lt, D] context */
    dump(dp, "context_emb", ce, 3, (int64_t)1, (int64_t)Lt, (int64_t)D);
    for (int i = 0; i < c->num_layers; i++) {
        const dit_attn *ca = &d->blocks[i].cross_attn;
        float *k = t->kv + (size_t)i * 2 * Lt * D;   /* [Lt, D] */
        float *v = k + (size_t)Lt * D;                /* [Lt, D] */
        fb_linear(kc, ce, ca->k_w, ca->k_b, k, Lt, D, D);
        if (ca->norm_k)
            fb_rmsnorm(kc, k, k, Lt, D, c->eps, ca->norm_k);
        fb_linear(kc, ce, ca->v_w, ca->v_b, v, Lt, D, D);
    }
    return FB_DIT_OK;
}

int fb_dit_text_prepare(const fb_dit *d, fb_kctx *kc, const float *context, int n_rows,
                        const fb_dit_dump *dp, fb_dit_text **out, char *err, size_t err_size)
{
    *out = NULL;
    if (!d) {
        set_err(err, err_size, "dit: NULL model");
        return FB_DIT_ERR_ARG;
    }
    const fb_dit_config *c = &d->cfg;
    size_t bytes = fb_dit_text_bytes(c), sb = fb_dit_text_scratch_bytes(c);
    void *mem = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    void *scratch = malloc(sb);
    fb_dit_text *t = mem ? fb_dit_text_init(mem, bytes, c) : NULL;
    if (!t || !scratch) {
        free(mem);
        free(scratch);
        set_err(err, err_size, "dit: out of memory preparing the prompt");
        return FB_DIT_ERR_NOMEM;
    }
    t->placed = 0;   /* this one is ours: fb_dit_text_free releases it */
    int rc = fb_dit_text_prepare_into(d, kc, context, n_rows, dp, t, scratch, sb, err, err_size);
    free(scratch);
    if (rc != FB_DIT_OK) {
        free(mem);
        return rc;
    }
    *out = t;
    return FB_DIT_OK;
}

void fb_dit_text_free(fb_dit_text *t)
{
    if (!t || t->placed)
        return;
    free(t);   /* the K/V follow the struct in the same block */
}

/* ---- scratch ----------------------------------------------------------------------------- */

/* A batch's working set: the token rows of every call one after another (L = the sum of the
 * calls' tokens), the keys and values of one call at a time (Lk = the most keys a call
 * attends to), every call's key positions (Lk_sum), and each call's time embedding. */
typedef struct {
    float *x, *a, *q, *att, *y;   /* [L, D] */
    float *kall, *vall;           /* [Lk, D] */
    float *big;                   /* [L, big_width]: patches, FFN hidden, the new K and V */
    float *small;                 /* time embedding temporaries, then per call vectors */
    int *pos;                     /* [Lk_sum, 3] */
} dit_bufs;

#define ALIGN_F 16   /* floats per 64 bytes */

static size_t al(size_t n)
{
    return (n + ALIGN_F - 1) / ALIGN_F * ALIGN_F;
}

/* sinusoid, silu(e), h: shared temporaries of the time embedding */
static size_t shared_small(const fb_dit_config *c)
{
    return al((size_t)c->freq_dim) + 2 * al((size_t)c->dim);
}

/* e [D], e0 [6, D], the layer's modulation [6, D] and the head's [2, D] of one call */
static size_t call_small(const fb_dit_config *c)
{
    return al((size_t)c->dim) + 2 * al((size_t)6 * c->dim) + al((size_t)2 * c->dim);
}

static size_t big_width(const fb_dit_config *c)
{
    size_t pin = (size_t)c->in_dim * c->patch_size[1] * c->patch_size[2];
    size_t pout = (size_t)c->out_dim * c->patch_size[1] * c->patch_size[2];
    size_t w = (size_t)c->ffn_dim;
    if (pin > w)
        w = pin;
    if (pout > w)
        w = pout;
    if ((size_t)2 * c->dim > w)
        w = (size_t)2 * c->dim;   /* the new keys and values of every call, side by side */
    return w;
}

/* Carves the buffers out of base (or just counts when base is NULL); returns bytes needed. */
static size_t carve(const fb_dit_config *c, size_t L, size_t Lk, size_t Lk_sum, int n_calls,
                    void *base, dit_bufs *b)
{
    size_t D = (size_t)c->dim, off = 0;
    float *f = base;
#define TAKE(field, n)                                                                        \
    do {                                                                                      \
        if (f)                                                                                \
            b->field = f + off;                                                               \
        off += al(n);                                                                         \
    } while (0)
    TAKE(x, L * D);
    TAKE(a, L * D);
    TAKE(q, L * D);
    TAKE(att, L * D);
    TAKE(y, L * D);
    TAKE(kall, Lk * D);
    TAKE(vall, Lk * D);
    TAKE(big, L * big_width(c));
    TAKE(small, shared_small(c) + (size_t)n_calls * call_small(c));
#undef TAKE
    if (f)
        b->pos = (int *)(f + off);
    off += al(Lk_sum * 3);   /* ints are float-sized */
    return off * sizeof(float) + 64;   /* + 64: room to align an unaligned base */
}

size_t fb_dit_scratch_bytes_batch(const fb_dit_config *cfg, int n_calls, int max_frames,
                                  int max_past_frames, int tokens_per_frame)
{
    if (!cfg || n_calls < 1 || n_calls > FB_DIT_MAX_BATCH || max_frames < 1 ||
        max_past_frames < 0 || tokens_per_frame < 1)
        return 0;
    size_t L = (size_t)max_frames * tokens_per_frame;
    size_t Lk = L + (size_t)max_past_frames * tokens_per_frame;
    return carve(cfg, L * n_calls, Lk, Lk * n_calls, n_calls, NULL, NULL);
}

size_t fb_dit_scratch_bytes(const fb_dit_config *cfg, int max_frames, int max_past_frames,
                            int tokens_per_frame)
{
    return fb_dit_scratch_bytes_batch(cfg, 1, max_frames, max_past_frames, tokens_per_frame);
}

double fb_dit_flops(const fb_dit_config *c, int n_frames, int n_past, int tpf)
{
    double L = (double)n_frames * tpf, Lk = L + (double)n_past * tpf, D = c->dim;
    double per_layer = 2.0 * L * (6.0 * D * D + 2.0 * D * c->ffn_dim) /* linears */
                       + 4.0 * L * Lk * D                               /* self-attention */
                       + 4.0 * L * c->text_len * D;                     /* cross-attention */
    double io = 2.0 * L * D *
                (double)(c->in_dim + c->out_dim) * c->patch_size[1] * c->patch_size[2];
    return per_layer * c->num_layers + io;
}

/* ---- forward ----------------------------------------------------------------------------- */

/* Checks everything a call needs before any compute (the scratch is checked per batch). */
static int check_call(const fb_dit *d, const fb_dit_call *call, char *err, size_t n,
                      int *tpf_out)
{
    const fb_dit_config *c = &d->cfg;
    if (!call || !call->x || !call->out || !call->text || call->n_frames < 1) {
        set_err(err, n, "dit: call needs x, out, text and n_frames >= 1");
        return FB_DIT_ERR_ARG;
    }
    int ph = c->patch_size[1], pw = c->patch_size[2];
    if (call->height < ph || call->width < pw || call->height % ph || call->width % pw) {
        set_err(err, n, "dit: latent %dx%d is not a positive multiple of the patch %dx%d",
                call->height, call->width, ph, pw);
        return FB_DIT_ERR_ARG;
    }
    int hp = call->height / ph, wp = call->width / pw;
    if (hp > d->rope.n_pos || wp > d->rope.n_pos) {
        set_err(err, n, "dit: grid %dx%d exceeds the RoPE table (%d)", hp, wp, d->rope.n_pos);
        return FB_DIT_ERR_ARG;
    }
    if (call->text->dim != c->dim || call->text->n_layers != c->num_layers) {
        set_err(err, n, "dit: prompt was prepared for another model");
        return FB_DIT_ERR_ARG;
    }
    if (!isfinite(call->t)) {
        set_err(err, n, "dit: timestep is not finite");
        return FB_DIT_ERR_ARG;
    }
    int tpf = hp * wp;
    *tpf_out = tpf;
    const fb_kv_plan *p = call->plan;
    int n_past = p ? p->n_past : 0;
    if (p) {
        if (p->n_frames != call->n_frames) {
            set_err(err, n, "dit: plan is for %d frames, the call has %d", p->n_frames,
                    call->n_frames);
            return FB_DIT_ERR_PLAN;
        }
        if (n_past < 0 || n_past > FB_KV_MAX_FRAMES || p->n_frames > FB_KV_MAX_FRAMES) {
            set_err(err, n, "dit: plan frame counts out of range");
            return FB_DIT_ERR_PLAN;
        }
        for (int i = 0; i < n_past; i++)
            if (p->past_pos[i] < 0 || p->past_pos[i] >= d->rope.n_pos) {
                set_err(err, n, "dit: past position %d out of [0, %d)", p->past_pos[i],
                        d->rope.n_pos);
                return FB_DIT_ERR_PLAN;
            }
        for (int f = 0; f < p->n_frames; f++)
            if (p->frame_pos[f] < 0 || p->frame_pos[f] >= d->rope.n_pos) {
                set_err(err, n, "dit: frame position %d out of [0, %d)", p->frame_pos[f],
                        d->rope.n_pos);
                return FB_DIT_ERR_PLAN;
            }
    } else if (call->n_frames > d->rope.n_pos) {
        set_err(err, n, "dit: %d frames exceed the RoPE table", call->n_frames);
        return FB_DIT_ERR_ARG;
    }
    if (call->write_kv && !p) {
        set_err(err, n, "dit: write_kv needs a plan");
        return FB_DIT_ERR_ARG;
    }
    if (n_past > 0 || call->write_kv) {
        fb_kvcache *kv = call->cache;
        if (!kv) {
            set_err(err, n, "dit: the plan reads or writes the cache but no cache was given");
            return FB_DIT_ERR_ARG;
        }
        fb_kvcache_info info;
        fb_kvcache_info_get(kv, &info);
        if (info.n_layers != c->num_layers || info.dim != c->dim ||
            info.tokens_per_frame != tpf) {
            set_err(err, n, "dit: cache shape (layers %d, dim %d, tokens/frame %d) does not "
                    "match the model and latent (%d, %d, %d)", info.n_layers, info.dim,
                    info.tokens_per_frame, c->num_layers, c->dim, tpf);
            return FB_DIT_ERR_PLAN;
        }
        if (call->write_kv && info.latent_floats &&
            info.latent_floats != (size_t)c->in_dim * call->height * call->width) {
            set_err(err, n, "dit: the cache keeps %zu latent floats per frame, a frame has %d",
                    info.latent_floats, c->in_dim * call->height * call->width);
            return FB_DIT_ERR_PLAN;
        }
        if (!fb_kvcache_plan_valid(kv, p)) {
            set_err(err, n, "dit: stale plan (the cache changed since it was made)");
            return FB_DIT_ERR_PLAN;
        }
        int n_slots = info.n_anchor + info.n_window;
        for (int i = 0; i < n_past; i++)
            if (p->past_slot[i] < 0 || p->past_slot[i] >= n_slots) {
                set_err(err, n, "dit: past slot %d out of range", p->past_slot[i]);
                return FB_DIT_ERR_PLAN;
            }
        if (call->write_kv)
            for (int f = 0; f < p->n_frames; f++)
                if (p->write_slot[f] < -1 || p->write_slot[f] >= n_slots) {
                    set_err(err, n, "dit: write slot %d out of range", p->write_slot[f]);
                    return FB_DIT_ERR_PLAN;
                }
    }
    return FB_DIT_OK;
}

/* tokens [L, patch_in] from latents [C, F, H, W]: token (f, hh, ww), index c*ph*pw + i*pw + j */
static void patchify(const float *x, float *tok, int C, int F, int H, int W, int ph, int pw)
{
    int hp = H / ph, wp = W / pw, pin = C * ph * pw;
    for (int f = 0; f < F; f++)
        for (int hh = 0; hh < hp; hh++)
            for (int ww = 0; ww < wp; ww++) {
                float *row = tok + ((size_t)(f * hp + hh) * wp + ww) * pin;
                for (int c = 0; c < C; c++)
                    for (int i = 0; i < ph; i++)
                        for (int j = 0; j < pw; j++)
                            row[(c * ph + i) * pw + j] =
                                x[(((size_t)c * F + f) * H + hh * ph + i) * W + ww * pw + j];
            }
}

/* latents [C, F, H, W] from tokens [L, patch_out]: index (i*pw + j)*C + c (channel last) */
static void unpatchify(const float *tok, float *out, int C, int F, int H, int W, int ph, int pw)
{
    int hp = H / ph, wp = W / pw, pout = C * ph * pw;
    for (int f = 0; f < F; f++)
        for (int hh = 0; hh < hp; hh++)
            for (int ww = 0; ww < wp; ww++) {
                const float *row = tok + ((size_t)(f * hp + hh) * wp + ww) * pout;
                for (int i = 0; i < ph; i++)
                    for (int j = 0; j < pw; j++)
                        for (int c = 0; c < C; c++)
                            out[(((size_t)c * F + f) * H + hh * ph + i) * W + ww * pw + j] =
                                row[(i * pw + j) * C + c];
            }
}

/* (t, h, w) positions of n_frames frames of hp x wp tokens */
static void fill_pos(int *pos, const int *frame_pos, int n_frames, int hp, int wp)
{
    for (int f = 0; f < n_frames; f++)
        for (int hh = 0; hh < hp; hh++)
            for (int ww = 0; ww < wp; ww++) {
                int *p3 = pos + 3 * ((size_t)(f * hp + hh) * wp + ww);
                p3[0] = frame_pos[f];
                p3[1] = hh;
                p3[2] = ww;
            }
}

static void dump_tokens(const fb_dit_dump *dp, const char *fmt, int layer, const float *data,
                        size_t L, size_t D)
{
    if (!dp || !dp->fn)
        return;
    char name[64];
    snprintf(name, sizeof name, fmt, layer);
    dump(dp, name, data, 3, (int64_t)1, (int64_t)L, (int64_t)D);
}


/* Where one call's rows sit in a batch. */
typedef struct {
    size_t off, L, Lp, Lk;       /* first token row, tokens, past tokens, keys */
    int n_past, tpf;             /* past frames; tokens per frame (calls may differ) */
    int *pos;                    /* [Lk, 3] key positions; queries use the last L */
    float *e, *e0, *mod, *hmod;  /* [D], [6, D], [6, D], [2, D] */
} call_rows;

/* Every check of every call, then the scratch for the whole batch; fills the row layout. */
static int check_batch(const fb_dit *d, const fb_dit_call *calls, int n, size_t scratch_bytes,
                       call_rows *cr, int *seg, size_t *L_out, size_t *Lk_out,
                       size_t *Lk_sum_out, char *err, size_t err_size)
{
    if (n < 1 || n > FB_DIT_MAX_BATCH) {
        set_err(err, err_size, "dit: a batch holds 1..%d calls, got %d", FB_DIT_MAX_BATCH, n);
        return FB_DIT_ERR_ARG;
    }
    size_t L = 0, Lk = 0, Lk_sum = 0;
    for (int i = 0; i < n; i++) {
        char e1[512];
        int tpf = 0;
        int rc = check_call(d, &calls[i], e1, sizeof e1, &tpf);
        if (rc) {
            if (n > 1)
                set_err(err, err_size, "call %d of the batch: %s", i, e1);
            else
                set_err(err, err_size, "%s", e1);
            return rc;
        }
        cr[i].tpf = tpf;
        cr[i].n_past = calls[i].plan ? calls[i].plan->n_past : 0;
        cr[i].off = L;
        cr[i].L = (size_t)calls[i].n_frames * tpf;
        cr[i].Lp = (size_t)cr[i].n_past * tpf;
        cr[i].Lk = cr[i].Lp + cr[i].L;
        if (cr[i].L > (size_t)1 << 30) {
            set_err(err, err_size, "dit: call %d has too many tokens", i);
            return FB_DIT_ERR_ARG;
        }
        seg[i] = (int)cr[i].L;
        L += cr[i].L;
        Lk_sum += cr[i].Lk;
        if (cr[i].Lk > Lk)
            Lk = cr[i].Lk;
    }
    if (L > (size_t)1 << 30) {
        set_err(err, err_size, "dit: the batch has too many tokens (%zu)", L);
        return FB_DIT_ERR_ARG;
    }
    size_t need = carve(&d->cfg, L, Lk, Lk_sum, n, NULL, NULL);
    if (scratch_bytes < need) {
        set_err(err, err_size, "dit: scratch has %zu bytes, this %s needs %zu (%zu tokens, at "
                "most %zu keys per call)", scratch_bytes, n > 1 ? "batch" : "call", need, L,
                Lk);
        return FB_DIT_ERR_SCRATCH;
    }
    *L_out = L;
    *Lk_out = Lk;
    *Lk_sum_out = Lk_sum;
    return FB_DIT_OK;
}

/* Runs a per-call dump of token rows [L, D] for every call that has a hook. */
static void dump_rows(const fb_dit_call *calls, const call_rows *cr, int n, const char *fmt,
                      int layer, const float *data, size_t D)
{
    for (int i = 0; i < n; i++)
        if (calls[i].dump && calls[i].dump->fn)
            dump_tokens(calls[i].dump, fmt, layer, data + cr[i].off * D, cr[i].L, D);
}

static int any_dump(const fb_dit_call *calls, int n)
{
    for (int i = 0; i < n; i++)
        if (calls[i].dump && calls[i].dump->fn)
            return 1;
    return 0;
}

int fb_dit_forward(const fb_dit *d, fb_kctx *kc, void *scratch, size_t scratch_bytes,
                   const fb_dit_call *call, char *err, size_t err_size)
{
    if (!call) {
        set_err(err, err_size, "dit: call is NULL");
        return FB_DIT_ERR_ARG;
    }
    return fb_dit_forward_batch(d, kc, scratch, scratch_bytes, call, 1, err, err_size);
}

/* The batch runs every per-token operation once over the rows of all calls (the linear
 * layers through fb_linear_rows, which keeps each call's rows as they would be alone; row-wise
 * norms and activations, whose rows never interact), and everything that belongs to one call
 * on that call's rows only: its time modulation, its self-attention over its own cache and
 * positions, its cross-attention over its own prompt. A batch of one is the single call. */
int fb_dit_forward_batch(const fb_dit *d, fb_kctx *kc, void *scratch, size_t scratch_bytes,
                         const fb_dit_call *calls, int n, char *err, size_t err_size)
{
    if (!d || !kc || !scratch || !calls) {
        set_err(err, err_size, "dit: NULL model, context, scratch or calls");
        return FB_DIT_ERR_ARG;
    }
    call_rows cr[FB_DIT_MAX_BATCH];
    int seg[FB_DIT_MAX_BATCH];
    size_t L = 0, Lkmax = 0, Lk_sum = 0;
    int rc = check_batch(d, calls, n, scratch_bytes, cr, seg, &L, &Lkmax, &Lk_sum, err,
                         err_size);
    if (rc)
        return rc;
    const fb_dit_config *c = &d->cfg;
    const int ph = c->patch_size[1], pw = c->patch_size[2];
    const int D = c->dim, NH = c->num_heads, Dh = d->head_dim, Lt = c->text_len;
    const float scale = 1.0f / sqrtf((float)Dh);
    const int dumping = any_dump(calls, n);

    dit_bufs b;
    void *base = (void *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    carve(c, L, Lkmax, Lk_sum, n, base, &b);
    float *sinus = b.small;                        /* [freq_dim] */
    float *e_silu = sinus + al((size_t)c->freq_dim); /* [D] */
    float *th = e_silu + al((size_t)D);            /* [D] */
    float *per_call = th + al((size_t)D);
    int *pos = b.pos;
    for (int i = 0; i < n; i++) {
        float *v = per_call + (size_t)i * call_small(c);
        cr[i].e = v;                               /* [D] */
        cr[i].e0 = cr[i].e + al((size_t)D);        /* [6, D] */
        cr[i].mod = cr[i].e0 + al((size_t)6 * D);  /* [6, D] */
        cr[i].hmod = cr[i].mod + al((size_t)6 * D);/* [2, D] */
        cr[i].pos = pos;
        pos += 3 * cr[i].Lk;
    }

    /* time embedding: one t for every frame of a call, so once per call */
    for (int i = 0; i < n; i++) {
        const fb_dit_dump *dp = calls[i].dump;
        fb_time_sinusoid((double)calls[i].t, c->freq_dim, sinus);           /* [freq_dim] */
        dump(dp, "sinusoid", sinus, 2, (int64_t)1, (int64_t)c->freq_dim);
        fb_linear(kc, sinus, d->time0_w, d->time0_b, th, 1, D, c->freq_dim); /* [D] */
        fb_silu(kc, th, th, (size_t)D);                                     /* [D] */
        fb_linear(kc, th, d->time2_w, d->time2_b, cr[i].e, 1, D, D);       /* [D] e */
        dump(dp, "e", cr[i].e, 2, (int64_t)1, (int64_t)D);
        fb_silu(kc, cr[i].e, e_silu, (size_t)D);                            /* [D] */
        fb_linear(kc, e_silu, d->tproj_w, d->tproj_b, cr[i].e0, 1, 6 * D, D); /* [6, D] e0 */
        dump(dp, "e0", cr[i].e0, 3, (int64_t)1, (int64_t)6, (int64_t)D);
    }

    if (dumping) {
        /* the RoPE table, (cos, sin) per position and pair, as float */
        size_t nf = (size_t)d->rope.n_pos * (Dh / 2) * 2;
        float *tab = malloc(nf * sizeof(float));
        if (tab) {
            for (size_t i = 0; i < nf; i++)
                tab[i] = (float)d->rope.cs[i];
            for (int i = 0; i < n; i++)
                dump(calls[i].dump, "rope_freqs", tab, 3, (int64_t)d->rope.n_pos,
                     (int64_t)(Dh / 2), (int64_t)2);
            free(tab);
        }
    }

    /* patch embedding: Conv3d with stride = kernel is a GEMM over patches */
    for (int i = 0; i < n; i++)
        patchify(calls[i].x, b.big + cr[i].off * d->patch_in, c->in_dim, calls[i].n_frames,
                 calls[i].height, calls[i].width, ph, pw);                  /* [L, patch_in] */
    fb_linear_rows(kc, b.big, d->patch_w, d->patch_b, b.x, seg, n, D, d->patch_in); /* [L, D] */
    for (int i = 0; i < n; i++)
        dump(calls[i].dump, "patch_tokens", b.x + cr[i].off * D, 3, (int64_t)1,
             (int64_t)cr[i].L, (int64_t)D);

    for (int i = 0; i < n; i++) {
        const fb_dit_call *call = &calls[i];
        const fb_kv_plan *plan = call->plan;
        const int F = call->n_frames, hp = call->height / ph, wp = call->width / pw;
        /* RoPE positions of the keys: past frames then the call's frames; queries use the
         * tail */
        int frame_pos0[FB_KV_MAX_FRAMES];
        const int *frame_pos = plan ? plan->frame_pos : frame_pos0;
        if (!plan)
            for (int f = 0; f < F; f++)
                frame_pos0[f] = f;
        if (cr[i].n_past)
            fill_pos(cr[i].pos, plan->past_pos, cr[i].n_past, hp, wp);     /* [Lp, 3] */
        fill_pos(cr[i].pos + 3 * cr[i].Lp, frame_pos, F, hp, wp);           /* [L, 3] */

        /* the storing pass also keeps the clean latents of the written frames, when the
         * cache keeps latents (the input of a later re-cache) */
        if (call->write_kv) {
            size_t hw = (size_t)call->height * call->width;
            for (int f = 0; f < F; f++) {
                int s = plan->write_slot[f];
                float *lat = s >= 0 ? fb_kvcache_slot_latent(call->cache, s) : NULL;
                if (!lat)
                    continue;
                for (int ci = 0; ci < c->in_dim; ci++)                    /* [C, H, W] */
                    memcpy(lat + (size_t)ci * hw, call->x + ((size_t)ci * F + f) * hw,
                           hw * sizeof(float));
            }
        }
    }

    float *k_cat = b.big;              /* [L, D] every call's new keys */
    float *v_cat = b.big + L * D;      /* [L, D] and values */

    for (int l = 0; l < c->num_layers; l++) {
        const dit_block *blk = &d->blocks[l];
        const dit_attn *sa = &blk->self_attn, *ca = &blk->cross_attn;
        for (int i = 0; i < n; i++)
            for (int r = 0; r < 6 * D; r++)
                cr[i].mod[r] = blk->modulation[r] + cr[i].e0[r];           /* [6, D] */
        /* shift_msa, scale_msa, gate_msa, shift_ffn, scale_ffn, gate_ffn: rows 0..5 of mod */
#define MOD(i, row) (cr[i].mod + (size_t)(row) * D)
#define ROWS(p, i) ((p) + cr[i].off * D)

        /* ---- self-attention ---- */
        for (int i = 0; i < n; i++)
            fb_modulate(kc, ROWS(b.x, i), ROWS(b.a, i), (int)cr[i].L, D, c->eps, MOD(i, 0),
                        MOD(i, 1));                                         /* [L, D] */
        if (dumping)
            dump_rows(calls, cr, n, "block%d.self_attn_in", l, b.a, (size_t)D);
        fb_linear_rows(kc, b.a, sa->q_w, sa->q_b, b.q, seg, n, D, D);      /* [L, D] */
        if (sa->norm_q)
            fb_rmsnorm(kc, b.q, b.q, (int)L, D, c->eps, sa->norm_q);      /* [L, D] */
        fb_linear_rows(kc, b.a, sa->k_w, sa->k_b, k_cat, seg, n, D, D);    /* [L, D] */
        if (sa->norm_k)
            fb_rmsnorm(kc, k_cat, k_cat, (int)L, D, c->eps, sa->norm_k);  /* [L, D] */
        fb_linear_rows(kc, b.a, sa->v_w, sa->v_b, v_cat, seg, n, D, D);    /* [L, D] */
        if (dumping) {
            dump_rows(calls, cr, n, "block%d.q_normed", l, b.q, (size_t)D);
            dump_rows(calls, cr, n, "block%d.k_normed", l, k_cat, (size_t)D);
        }
        for (int i = 0; i < n; i++) {
            const fb_dit_call *call = &calls[i];
            const fb_kv_plan *plan = call->plan;
            fb_kvcache *kv = call->cache;
            const size_t Lp = cr[i].Lp, Li = cr[i].L, Lk = cr[i].Lk;
            const size_t frame_floats = (size_t)cr[i].tpf * D;
            const float *k_new = ROWS(k_cat, i), *v_new = ROWS(v_cat, i);
            /* past K/V of this layer are read before the call's own are stored: a planned
             * write slot may be a slot this call still attends to (the ring's oldest frame) */
            for (int j = 0; j < cr[i].n_past; j++) {
                memcpy(b.kall + (size_t)j * frame_floats,                  /* [tpf, D] */
                       fb_kvcache_slot_k(kv, l, plan->past_slot[j]),
                       frame_floats * sizeof(float));
                memcpy(b.vall + (size_t)j * frame_floats,                  /* [tpf, D] */
                       fb_kvcache_slot_v(kv, l, plan->past_slot[j]),
                       frame_floats * sizeof(float));
            }
            if (call->write_kv)
                for (int f = 0; f < call->n_frames; f++) {
                    int s = plan->write_slot[f];
                    if (s < 0)
                        continue;
                    memcpy(fb_kvcache_slot_k(kv, l, s), k_new + (size_t)f * frame_floats,
                           frame_floats * sizeof(float));                  /* pre-RoPE keys */
                    memcpy(fb_kvcache_slot_v(kv, l, s), v_new + (size_t)f * frame_floats,
                           frame_floats * sizeof(float));
                }
            memcpy(b.kall + Lp * D, k_new, Li * D * sizeof(float));        /* [L, D] */
            memcpy(b.vall + Lp * D, v_new, Li * D * sizeof(float));        /* [L, D] */
            float *qi = ROWS(b.q, i);
            fb_rope_apply(kc, &d->rope, qi, (int)Li, NH, cr[i].pos + 3 * Lp); /* [L, NH, Dh] */
            fb_rope_apply(kc, &d->rope, b.kall, (int)Lk, NH, cr[i].pos);   /* [Lk, NH, Dh] */
            if (call->dump && call->dump->fn) {
                char name[64];
                snprintf(name, sizeof name, "block%d.q_roped", l);
                dump(call->dump, name, qi, 4, (int64_t)1, (int64_t)Li, (int64_t)NH,
                     (int64_t)Dh);
                snprintf(name, sizeof name, "block%d.k_roped", l);
                dump(call->dump, name, b.kall + Lp * D, 4, (int64_t)1, (int64_t)Li,
                     (int64_t)NH, (int64_t)Dh);
            }
            fb_attention(kc, qi, b.kall, b.vall, ROWS(b.att, i), (int)Li, (int)Lk, NH, Dh,
                         scale);                                            /* [L, D] */
        }
        fb_linear_rows(kc, b.att, sa->o_w, sa->o_b, b.y, seg, n, D, D);    /* [L, D] */
        if (dumping)
            dump_rows(calls, cr, n, "block%d.self_attn_out", l, b.y, (size_t)D);
        for (int i = 0; i < n; i++)
            fb_gated_add(kc, ROWS(b.x, i), ROWS(b.y, i), MOD(i, 2), (int)cr[i].L, D); /* x += y*g */

        /* ---- cross-attention (no modulation, no gate) ---- */
        const float *xn = b.x;
        if (blk->norm3_w) {
            fb_layernorm(kc, b.x, b.a, (int)L, D, c->eps, blk->norm3_w, blk->norm3_b); /* [L, D] */
            xn = b.a;
        }
        if (dumping)
            dump_rows(calls, cr, n, "block%d.norm3_out", l, xn, (size_t)D);
        fb_linear_rows(kc, xn, ca->q_w, ca->q_b, b.q, seg, n, D, D);       /* [L, D] */
        if (ca->norm_q)
            fb_rmsnorm(kc, b.q, b.q, (int)L, D, c->eps, ca->norm_q);      /* [L, D] */
        for (int i = 0; i < n; i++) {
            const float *tk = calls[i].text->kv + (size_t)l * 2 * Lt * D; /* [Lt, D] */
            const float *tv = tk + (size_t)Lt * D;                        /* [Lt, D] */
            fb_attention(kc, ROWS(b.q, i), tk, tv, ROWS(b.att, i), (int)cr[i].L, Lt, NH, Dh,
                         scale);                                            /* [L, D] */
        }
        fb_linear_rows(kc, b.att, ca->o_w, ca->o_b, b.y, seg, n, D, D);    /* [L, D] */
        if (dumping)
            dump_rows(calls, cr, n, "block%d.cross_attn_out", l, b.y, (size_t)D);
        fb_gated_add(kc, b.x, b.y, NULL, (int)L, D);                      /* [L, D] x += y */

        /* ---- feed-forward ---- */
        for (int i = 0; i < n; i++)
            fb_modulate(kc, ROWS(b.x, i), ROWS(b.a, i), (int)cr[i].L, D, c->eps, MOD(i, 3),
                        MOD(i, 4));                                         /* [L, D] */
        if (dumping)
            dump_rows(calls, cr, n, "block%d.ffn_in", l, b.a, (size_t)D);
        fb_linear_rows(kc, b.a, blk->ffn0_w, blk->ffn0_b, b.big, seg, n, c->ffn_dim,
                       D);                                                  /* [L, Ff] */
        fb_gelu_tanh(kc, b.big, b.big, L * (size_t)c->ffn_dim);           /* [L, Ff] */
        fb_linear_rows(kc, b.big, blk->ffn2_w, blk->ffn2_b, b.y, seg, n, D,
                       c->ffn_dim);                                         /* [L, D] */
        if (dumping)
            dump_rows(calls, cr, n, "block%d.ffn_out", l, b.y, (size_t)D);
        for (int i = 0; i < n; i++)
            fb_gated_add(kc, ROWS(b.x, i), ROWS(b.y, i), MOD(i, 5), (int)cr[i].L, D); /* x += y*g */
        if (dumping)
            dump_rows(calls, cr, n, "block%d.out", l, b.x, (size_t)D);
    }

    /* head: modulation from the raw time embedding e */
    for (int i = 0; i < n; i++) {
        dump(calls[i].dump, "head_in", ROWS(b.x, i), 3, (int64_t)1, (int64_t)cr[i].L,
             (int64_t)D);
        for (int r = 0; r < 2 * D; r++)
            cr[i].hmod[r] = d->head_mod[r] + cr[i].e[r % D];               /* [2, D] */
        fb_modulate(kc, ROWS(b.x, i), ROWS(b.a, i), (int)cr[i].L, D, c->eps, cr[i].hmod,
                    cr[i].hmod + D);                                        /* [L, D] */
    }
    fb_linear_rows(kc, b.a, d->head_w, d->head_b, b.big, seg, n, d->patch_out,
                   D);                                                      /* [L, patch_out] */
    for (int i = 0; i < n; i++) {
        const float *rows = b.big + cr[i].off * d->patch_out;
        dump(calls[i].dump, "head_out", rows, 3, (int64_t)1, (int64_t)cr[i].L,
             (int64_t)d->patch_out);
        unpatchify(rows, calls[i].out, c->out_dim, calls[i].n_frames, calls[i].height,
                   calls[i].width, ph, pw);                                 /* [C_out, F, H, W] */
    }
#undef MOD
#undef ROWS
    return FB_DIT_OK;
}
