/* tests/dit/golden_util.h - helpers shared by the DiT and KV-cache tests: tensor loading from
 * the upstream golden files, tolerance comparison with a printed report, and the tiny config
 * of those files. Header-only (static functions) so each test stays one translation unit.
 */
#ifndef FLIPBOOK_TESTS_DIT_GOLDEN_UTIL_H
#define FLIPBOOK_TESTS_DIT_GOLDEN_UTIL_H

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/config.h"
#include "engine/safetensors.h"

#define SKIP_CODE 77

/* Loads a float tensor (any float dtype) as float32, checking the element count when
 * expect > 0. Returns malloc'd data or NULL after printing why. */
static inline float *gu_load(const fb_safetensors *st, const char *name, int64_t expect)
{
    const fb_st_tensor *t = fb_st_find(st, name);
    if (!t) {
        fprintf(stderr, "golden: tensor %s missing\n", name);
        return NULL;
    }
    if (expect > 0 && t->numel != expect) {
        fprintf(stderr, "golden: tensor %s has %lld elements, expected %lld\n", name,
                (long long)t->numel, (long long)expect);
        return NULL;
    }
    float *d = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
    if (!d || fb_st_to_f32(t, d)) {
        fprintf(stderr, "golden: tensor %s is not a float tensor\n", name);
        free(d);
        return NULL;
    }
    return d;
}

typedef struct {
    double max_abs, max_rel;
    int64_t worst;       /* index of the largest violation (or of max_abs) */
    int64_t n_bad;
} gu_diff;

/* allclose: |a - b| <= atol + rtol * |b| for all elements; returns 1 when it holds. */
static inline int gu_close(const float *got, const float *ref, int64_t n, double atol, double rtol,
                    gu_diff *df)
{
    gu_diff d = {0, 0, 0, 0};
    double worst_excess = -1.0;
    for (int64_t i = 0; i < n; i++) {
        double a = got[i], b = ref[i], e = fabs(a - b);
        if (!(e == e)) {   /* NaN */
            d.n_bad++;
            d.worst = i;
            d.max_abs = INFINITY;
            continue;
        }
        if (e > d.max_abs)
            d.max_abs = e;
        double r = e / (fabs(b) > 1e-6 ? fabs(b) : 1e-6);
        if (r > d.max_rel && fabs(b) > 1e-3)
            d.max_rel = r;
        double excess = e - (atol + rtol * fabs(b));
        if (excess > 0)
            d.n_bad++;
        if (excess > worst_excess) {
            worst_excess = excess;
            d.worst = i;
        }
    }
    if (df)
        *df = d;
    return d.n_bad == 0;
}

/* Compares and prints one line; returns 0 on success, 1 on failure. */
static inline int gu_check(const char *name, const float *got, const float *ref, int64_t n,
                    double atol, double rtol)
{
    gu_diff d;
    int ok = gu_close(got, ref, n, atol, rtol, &d);
    printf("%-40s n=%-7lld max_abs=%.3e max_rel(|ref|>1e-3)=%.3e %s", name, (long long)n,
           d.max_abs, d.max_rel, ok ? "ok" : "FAIL");
    if (!ok)
        printf(" (%lld bad; worst [%lld] got %.8g ref %.8g)", (long long)d.n_bad,
               (long long)d.worst, got[d.worst], ref[d.worst]);
    printf("\n");
    return ok ? 0 : 1;
}

static inline int gu_json_int(const cJSON *o, const char *k, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v))
        return -1;
    *out = v->valueint;
    return 0;
}

/* The golden files carry the upstream Wan config as JSON in metadata "config". */
static inline int gu_dit_config(const fb_safetensors *st, fb_dit_config *c)
{
    const char *js = fb_st_metadata(st, "config");
    cJSON *o = js ? cJSON_Parse(js) : NULL;
    if (!o) {
        fprintf(stderr, "golden: metadata config missing or not JSON\n");
        return -1;
    }
    memset(c, 0, sizeof *c);
    int rc = 0;
    rc |= gu_json_int(o, "in_dim", &c->in_dim);
    rc |= gu_json_int(o, "out_dim", &c->out_dim);
    rc |= gu_json_int(o, "dim", &c->dim);
    rc |= gu_json_int(o, "ffn_dim", &c->ffn_dim);
    rc |= gu_json_int(o, "freq_dim", &c->freq_dim);
    rc |= gu_json_int(o, "text_dim", &c->text_dim);
    rc |= gu_json_int(o, "text_len", &c->text_len);
    rc |= gu_json_int(o, "num_heads", &c->num_heads);
    rc |= gu_json_int(o, "num_layers", &c->num_layers);
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(o, "patch_size");
    if (cJSON_GetArraySize(ps) == 3)
        for (int i = 0; i < 3; i++)
            c->patch_size[i] = cJSON_GetArrayItem(ps, i)->valueint;
    else
        rc = -1;
    c->qk_norm = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "qk_norm"));
    c->cross_attn_norm = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "cross_attn_norm"));
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(o, "eps");
    c->eps = cJSON_IsNumber(eps) ? (float)eps->valuedouble : 0.0f;
    cJSON_Delete(o);
    if (rc)
        fprintf(stderr, "golden: config lacks a field\n");
    return rc;
}

/* Opens <dir>/<file>; exits 77 (skip) with a reason when the folder or file is missing. */
static inline fb_safetensors *gu_open_or_skip(const char *dir, const char *file)
{
    char path[4096], err[512];
    if (!dir || !dir[0]) {
        printf("SKIP: no upstream golden folder given\n");
        exit(SKIP_CODE);
    }
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("SKIP: %s not found (the upstream golden files sit beside the checkout in "
               "shared/golden/upstream)\n", path);
        exit(SKIP_CODE);
    }
    fclose(f);
    fb_safetensors *st = fb_st_open(path, err, sizeof err);
    if (!st) {
        fprintf(stderr, "golden: %s\n", err);
        exit(1);
    }
    return st;
}

/* [F, C, H, W] (pipeline layout) <-> [C, F, H, W] (DiT layout) */
static inline void gu_fchw_to_cfhw(const float *src, float *dst, int F, int C, int HW)
{
    for (int f = 0; f < F; f++)
        for (int c = 0; c < C; c++)
            memcpy(dst + ((size_t)c * F + f) * HW, src + ((size_t)f * C + c) * HW,
                   (size_t)HW * sizeof(float));
}

static inline void gu_cfhw_to_fchw(const float *src, float *dst, int F, int C, int HW)
{
    for (int f = 0; f < F; f++)
        for (int c = 0; c < C; c++)
            memcpy(dst + ((size_t)f * C + c) * HW, src + ((size_t)c * F + f) * HW,
                   (size_t)HW * sizeof(float));
}

#endif
