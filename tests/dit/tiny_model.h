/* tests/dit/tiny_model.h - builds a small random Wan DiT as an in-memory safetensors file, so
 * tests that need a model do not depend on files outside the repository. Names follow the
 * upstream state dict under a prefix; values are drawn like the golden files' weights
 * (N(0,1)/sqrt(fan_in) for matrices, 1 + 0.1 N for norm weights, 0.05 N for biases,
 * 0.1 N for modulations), from a fixed seed.
 */
#ifndef FLIPBOOK_TESTS_DIT_TINY_MODEL_H
#define FLIPBOOK_TESTS_DIT_TINY_MODEL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/config.h"
#include "engine/safetensors.h"

/* Variations for load tests. */
typedef struct {
    fb_dtype dtype;        /* stored dtype: F32 (default), F16 or BF16 */
    fb_dtype round_as;     /* F32: none; F16/BF16: round values through it, store as dtype */
    const char *skip;      /* a tensor name (after the prefix) to leave out */
    const char *misshape;  /* a tensor whose first dimension gets one extra row */
    const char *wrong_dt;  /* a tensor stored as I32 */
    int extra;             /* add a stray tensor under the prefix */
} tm_opts;

typedef struct {
    char *json;
    size_t json_len, json_cap;
    unsigned char *data;
    size_t bytes, cap;
    uint64_t rng;
    const char *prefix;
    tm_opts o;
} tm_builder;

static inline double tm_normal(tm_builder *b)
{
    /* Box-Muller on xorshift64 */
    double u[2];
    for (int i = 0; i < 2; i++) {
        b->rng ^= b->rng << 13;
        b->rng ^= b->rng >> 7;
        b->rng ^= b->rng << 17;
        u[i] = ((b->rng >> 11) + 0.5) / 9007199254740992.0;
    }
    return sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

static inline void tm_json(tm_builder *b, const char *s)
{
    size_t l = strlen(s);
    if (b->json_len + l + 1 > b->json_cap) {
        b->json_cap = (b->json_len + l + 1) * 2;
        b->json = realloc(b->json, b->json_cap);
    }
    memcpy(b->json + b->json_len, s, l + 1);
    b->json_len += l;
}

static inline int tm_is(const tm_builder *b, const char *name, const char *which)
{
    size_t pl = strlen(b->prefix);
    return which && strncmp(name, b->prefix, pl) == 0 && strcmp(name + pl, which) == 0;
}

/* kind: 0 matrix (fan_in = last dims), 1 norm weight, 2 bias, 3 modulation */
static inline void tm_add(tm_builder *b, const char *name, int kind, int ndim,
                          const int64_t *shape_in)
{
    int64_t shape[8];
    memcpy(shape, shape_in, (size_t)ndim * sizeof(int64_t));
    if (tm_is(b, name, b->o.skip))
        return;
    if (tm_is(b, name, b->o.misshape))
        shape[0]++;
    fb_dtype dt = tm_is(b, name, b->o.wrong_dt) ? FB_DT_I32 : b->o.dtype;
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    size_t es = dt == FB_DT_F32 || dt == FB_DT_I32 ? 4 : 2;
    if (b->bytes + n * es > b->cap) {
        b->cap = (b->bytes + n * es) * 2;
        b->data = realloc(b->data, b->cap);
    }
    double fan_in = ndim > 1 ? (double)n / (double)shape[0] : 1.0;
    unsigned char *dst = b->data + b->bytes;
    for (size_t i = 0; i < n; i++) {
        double z = tm_normal(b);
        float v = kind == 0 ? (float)(z / sqrt(fan_in))
                : kind == 1 ? (float)(1.0 + 0.1 * z)
                : kind == 2 ? (float)(0.05 * z) : (float)(0.1 * z);
        if (b->o.round_as == FB_DT_F16)
            v = fb_f16_to_f32(fb_f32_to_f16(v));
        else if (b->o.round_as == FB_DT_BF16)
            v = fb_bf16_to_f32(fb_f32_to_bf16(v));
        if (dt == FB_DT_F16) {
            uint16_t h = fb_f32_to_f16(v);
            memcpy(dst + 2 * i, &h, 2);
        } else if (dt == FB_DT_BF16) {
            uint16_t h = fb_f32_to_bf16(v);
            memcpy(dst + 2 * i, &h, 2);
        } else if (dt == FB_DT_I32) {
            int32_t w = (int32_t)(v * 1000);
            memcpy(dst + 4 * i, &w, 4);
        } else {
            memcpy(dst + 4 * i, &v, 4);
        }
    }
    char buf[512];
    int o = snprintf(buf, sizeof buf, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                     b->json_len > 1 ? "," : "", name, fb_dtype_name(dt));
    for (int i = 0; i < ndim; i++)
        o += snprintf(buf + o, sizeof buf - (size_t)o, "%s%lld", i ? "," : "",
                      (long long)shape[i]);
    snprintf(buf + o, sizeof buf - (size_t)o, "],\"data_offsets\":[%zu,%zu]}", b->bytes,
             b->bytes + n * es);
    tm_json(b, buf);
    b->bytes += n * es;
}

#define TM(b, kind, nm, ...)                                                                  \
    do {                                                                                      \
        int64_t sh_[] = {__VA_ARGS__};                                                        \
        tm_add(b, nm, kind, (int)(sizeof sh_ / sizeof sh_[0]), sh_);                          \
    } while (0)

/* Returns a malloc'd safetensors image of a random DiT with config c under prefix, varied by
 * o (NULL: plain F32); *size receives its length. The values depend only on the seed. */
static inline void *tm_build_ex(const fb_dit_config *c, const char *prefix, uint64_t seed,
                                const tm_opts *o, size_t *size)
{
    tm_builder b = {0};
    b.rng = seed ? seed : 1;
    b.prefix = prefix;
    if (o)
        b.o = *o;
    tm_json(&b, "{");
    char n[256];
    int64_t D = c->dim;
#define NAME(...) (snprintf(n, sizeof n, __VA_ARGS__), n)
    TM(&b, 0, NAME("%spatch_embedding.weight", prefix), D, c->in_dim, 1, c->patch_size[1],
       c->patch_size[2]);
    TM(&b, 2, NAME("%spatch_embedding.bias", prefix), D);
    TM(&b, 0, NAME("%stext_embedding.0.weight", prefix), D, c->text_dim);
    TM(&b, 2, NAME("%stext_embedding.0.bias", prefix), D);
    TM(&b, 0, NAME("%stext_embedding.2.weight", prefix), D, D);
    TM(&b, 2, NAME("%stext_embedding.2.bias", prefix), D);
    TM(&b, 0, NAME("%stime_embedding.0.weight", prefix), D, c->freq_dim);
    TM(&b, 2, NAME("%stime_embedding.0.bias", prefix), D);
    TM(&b, 0, NAME("%stime_embedding.2.weight", prefix), D, D);
    TM(&b, 2, NAME("%stime_embedding.2.bias", prefix), D);
    TM(&b, 0, NAME("%stime_projection.1.weight", prefix), 6 * D, D);
    TM(&b, 2, NAME("%stime_projection.1.bias", prefix), 6 * D);
    int64_t pout = (int64_t)c->out_dim * c->patch_size[1] * c->patch_size[2];
    TM(&b, 0, NAME("%shead.head.weight", prefix), pout, D);
    TM(&b, 2, NAME("%shead.head.bias", prefix), pout);
    TM(&b, 3, NAME("%shead.modulation", prefix), 1, 2, D);
    static const char *const attn[] = {"self_attn", "cross_attn"};
    static const char *const proj[] = {"q", "k", "v", "o"};
    for (int i = 0; i < c->num_layers; i++) {
        TM(&b, 3, NAME("%sblocks.%d.modulation", prefix, i), 1, 6, D);
        for (int a = 0; a < 2; a++) {
            for (int p = 0; p < 4; p++) {
                TM(&b, 0, NAME("%sblocks.%d.%s.%s.weight", prefix, i, attn[a], proj[p]), D, D);
                TM(&b, 2, NAME("%sblocks.%d.%s.%s.bias", prefix, i, attn[a], proj[p]), D);
            }
            if (c->qk_norm) {
                TM(&b, 1, NAME("%sblocks.%d.%s.norm_q.weight", prefix, i, attn[a]), D);
                TM(&b, 1, NAME("%sblocks.%d.%s.norm_k.weight", prefix, i, attn[a]), D);
            }
            if (a == 0 && c->cross_attn_norm) {
                TM(&b, 1, NAME("%sblocks.%d.norm3.weight", prefix, i), D);
                TM(&b, 2, NAME("%sblocks.%d.norm3.bias", prefix, i), D);
            }
        }
        TM(&b, 0, NAME("%sblocks.%d.ffn.0.weight", prefix, i), c->ffn_dim, D);
        TM(&b, 2, NAME("%sblocks.%d.ffn.0.bias", prefix, i), c->ffn_dim);
        TM(&b, 0, NAME("%sblocks.%d.ffn.2.weight", prefix, i), D, c->ffn_dim);
        TM(&b, 2, NAME("%sblocks.%d.ffn.2.bias", prefix, i), D);
    }
    if (b.o.extra)
        TM(&b, 2, NAME("%sblocks.%d.stray.bias", prefix, c->num_layers), D);
#undef NAME
    tm_json(&b, "}");
    size_t hl = (b.json_len + 7) / 8 * 8;   /* header padded with spaces to 8 bytes */
    size_t total = 8 + hl + b.bytes;
    unsigned char *img = malloc(total);
    uint64_t hl64 = hl;
    for (int i = 0; i < 8; i++)
        img[i] = (unsigned char)(hl64 >> (8 * i));
    memcpy(img + 8, b.json, b.json_len);
    memset(img + 8 + b.json_len, ' ', hl - b.json_len);
    memcpy(img + 8 + hl, b.data, b.bytes);
    free(b.json);
    free(b.data);
    *size = total;
    return img;
}

static inline void *tm_build(const fb_dit_config *c, const char *prefix, uint64_t seed,
                             size_t *size)
{
    return tm_build_ex(c, prefix, seed, NULL, size);
}

/* A small config: head_dim 16, 2 heads. */
static inline fb_dit_config tm_config(int layers)
{
    fb_dit_config c;
    memset(&c, 0, sizeof c);
    c.patch_size[0] = 1;
    c.patch_size[1] = 2;
    c.patch_size[2] = 2;
    c.in_dim = 4;
    c.out_dim = 4;
    c.dim = 32;
    c.ffn_dim = 64;
    c.freq_dim = 32;
    c.text_dim = 16;
    c.text_len = 8;
    c.num_heads = 2;
    c.num_layers = layers;
    c.qk_norm = 1;
    c.cross_attn_norm = 1;
    c.eps = 1e-6f;
    return c;
}

#endif
