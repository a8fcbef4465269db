/* engine/safetensors.c - memory-mapped safetensors reader with full validation. */
#include "engine/safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The header is JSON text; anything near this size is not a real model file. */
#define FB_ST_MAX_HEADER (256u << 20)

struct fb_safetensors {
    const uint8_t *base;     /* whole file */
    size_t size;
    int mapped;              /* 1: munmap on close */
    const uint8_t *data;     /* first byte after the header */
    size_t data_size;
    int n;
    fb_st_tensor *tensors;
    char **meta_keys;
    char **meta_values;
    int n_meta;
};

static void set_err(char *err, size_t n, const char *fmt, ...) {
    if (!err || !n) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}

size_t fb_dtype_size(fb_dtype dt) {
    switch (dt) {
    case FB_DT_F64: case FB_DT_I64: return 8;
    case FB_DT_F32: case FB_DT_I32: return 4;
    case FB_DT_F16: case FB_DT_BF16: case FB_DT_I16: return 2;
    case FB_DT_I8: case FB_DT_U8: case FB_DT_BOOL: return 1;
    }
    return 0;
}

static const struct { const char *name; fb_dtype dt; } dtype_names[] = {
    {"F32", FB_DT_F32}, {"F16", FB_DT_F16}, {"BF16", FB_DT_BF16}, {"F64", FB_DT_F64},
    {"I64", FB_DT_I64}, {"I32", FB_DT_I32}, {"I16", FB_DT_I16}, {"I8", FB_DT_I8},
    {"U8", FB_DT_U8}, {"BOOL", FB_DT_BOOL},
};

const char *fb_dtype_name(fb_dtype dt) {
    for (size_t i = 0; i < sizeof dtype_names / sizeof dtype_names[0]; i++)
        if (dtype_names[i].dt == dt) return dtype_names[i].name;
    return "?";
}

static int dtype_parse(const char *s, fb_dtype *out) {
    for (size_t i = 0; i < sizeof dtype_names / sizeof dtype_names[0]; i++)
        if (strcmp(s, dtype_names[i].name) == 0) { *out = dtype_names[i].dt; return 0; }
    return -1;
}

void fb_st_close(fb_safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++) free((char *)st->tensors[i].name);
    for (int i = 0; i < st->n_meta; i++) { free(st->meta_keys[i]); free(st->meta_values[i]); }
    free(st->tensors);
    free(st->meta_keys);
    free(st->meta_values);
    if (st->mapped && st->base) munmap((void *)st->base, st->size);
    free(st);
}

/* A JSON number that must be a non-negative integer exactly representable as int64. */
static int json_u64(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return -1;
    double d = j->valuedouble;
    if (!(d >= 0) || d > 9007199254740992.0 || d != floor(d)) return -1;
    *out = (uint64_t)d;
    return 0;
}

typedef struct { uint64_t begin, end; int index; } span;
static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int parse_tensor(fb_safetensors *st, const cJSON *item, fb_st_tensor *t, span *sp,
                        char *err, size_t err_size) {
    const char *name = item->string;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsObject(item) || !cJSON_IsString(dt) || !cJSON_IsArray(shape) ||
        !cJSON_IsArray(offs)) {
        set_err(err, err_size, "tensor '%s': entry needs dtype, shape and data_offsets", name);
        return -1;
    }
    if (dtype_parse(dt->valuestring, &t->dtype) != 0) {
        set_err(err, err_size, "tensor '%s': unsupported dtype '%s'", name, dt->valuestring);
        return -1;
    }
    int nd = cJSON_GetArraySize(shape);
    if (nd > FB_ST_MAX_DIMS) {
        set_err(err, err_size, "tensor '%s': %d dimensions (at most %d)", name, nd, FB_ST_MAX_DIMS);
        return -1;
    }
    t->ndim = nd;
    uint64_t numel = 1;
    for (int i = 0; i < nd; i++) {
        uint64_t d;
        if (json_u64(cJSON_GetArrayItem(shape, i), &d) != 0 || d > (1ull << 40)) {
            set_err(err, err_size, "tensor '%s': dimension %d is not a valid size", name, i);
            return -1;
        }
        t->shape[i] = (int64_t)d;
        if (d && numel > (UINT64_MAX / 16) / d) {
            set_err(err, err_size, "tensor '%s': shape too large", name);
            return -1;
        }
        numel *= d;
    }
    t->numel = (int64_t)numel;
    uint64_t b, e;
    if (cJSON_GetArraySize(offs) != 2 || json_u64(cJSON_GetArrayItem(offs, 0), &b) != 0 ||
        json_u64(cJSON_GetArrayItem(offs, 1), &e) != 0 || e < b) {
        set_err(err, err_size, "tensor '%s': data_offsets must be [begin, end] with begin <= end",
                name);
        return -1;
    }
    if (e > st->data_size) {
        set_err(err, err_size,
                "tensor '%s': data ends at byte %llu but the file has %zu data bytes "
                "(truncated file?)", name, (unsigned long long)e, st->data_size);
        return -1;
    }
    uint64_t want = numel * fb_dtype_size(t->dtype);
    if (e - b != want) {
        set_err(err, err_size, "tensor '%s': %llu data bytes, but shape and dtype %s need %llu",
                name, (unsigned long long)(e - b), fb_dtype_name(t->dtype),
                (unsigned long long)want);
        return -1;
    }
    t->name = strdup(name);
    if (!t->name) { set_err(err, err_size, "out of memory"); return -1; }
    t->data = st->data + b;
    t->nbytes = (size_t)(e - b);
    sp->begin = b;
    sp->end = e;
    return 0;
}

static fb_safetensors *parse(fb_safetensors *st, char *err, size_t err_size) {
    if (st->size < 8) {
        set_err(err, err_size, "file too small for a safetensors header (%zu bytes)", st->size);
        goto fail;
    }
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)st->base[i] << (8 * i);
    if (hlen > FB_ST_MAX_HEADER || hlen > st->size - 8) {
        set_err(err, err_size, "header length %llu does not fit the file (%zu bytes)",
                (unsigned long long)hlen, st->size);
        goto fail;
    }
    st->data = st->base + 8 + hlen;
    st->data_size = st->size - 8 - (size_t)hlen;
    cJSON *root = cJSON_ParseWithLength((const char *)st->base + 8, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        set_err(err, err_size, "header is not a JSON object");
        goto fail;
    }
    int count = cJSON_GetArraySize(root);
    st->tensors = calloc((size_t)count + 1, sizeof *st->tensors);
    span *spans = calloc((size_t)count + 1, sizeof *spans);
    if (!st->tensors || !spans) {
        free(spans);
        cJSON_Delete(root);
        set_err(err, err_size, "out of memory");
        goto fail;
    }
    int rc = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        if (strcmp(item->string, "__metadata__") == 0) {
            /* JSON allows a repeated key; a second metadata object would be appended past
             * the arrays sized for the first one. */
            if (st->meta_keys) {
                set_err(err, err_size, "__metadata__ appears twice");
                rc = -1;
                break;
            }
            if (!cJSON_IsObject(item)) {
                set_err(err, err_size, "__metadata__ must be an object of strings");
                rc = -1;
                break;
            }
            int nm = cJSON_GetArraySize(item);
            st->meta_keys = calloc((size_t)nm + 1, sizeof(char *));
            st->meta_values = calloc((size_t)nm + 1, sizeof(char *));
            if (!st->meta_keys || !st->meta_values) { rc = -1; set_err(err, err_size, "out of memory"); break; }
            const cJSON *m;
            cJSON_ArrayForEach(m, item) {
                if (!cJSON_IsString(m)) {
                    set_err(err, err_size, "__metadata__ key '%s' is not a string", m->string);
                    rc = -1;
                    break;
                }
                st->meta_keys[st->n_meta] = strdup(m->string);
                st->meta_values[st->n_meta] = strdup(m->valuestring);
                st->n_meta++;
                if (!st->meta_keys[st->n_meta - 1] || !st->meta_values[st->n_meta - 1]) {
                    set_err(err, err_size, "out of memory");
                    rc = -1;
                    break;
                }
            }
            if (rc) break;
            continue;
        }
        if (parse_tensor(st, item, &st->tensors[st->n], &spans[st->n], err, err_size) != 0) {
            rc = -1;
            break;
        }
        spans[st->n].index = st->n;
        st->n++;
    }
    cJSON_Delete(root);
    if (rc == 0) {
        /* Overlapping data would mean a corrupted or hostile file. */
        /* Sorted by start, a non-empty span overlaps an earlier one iff it starts before
         * the furthest end seen so far (comparing neighbours only would miss a long span
         * followed by an empty one and then a span inside the long one). */
        qsort(spans, (size_t)st->n, sizeof *spans, span_cmp);
        uint64_t max_end = 0;
        int max_at = -1;
        for (int i = 0; i < st->n; i++) {
            if (spans[i].end == spans[i].begin) continue; /* empty tensors take no bytes */
            if (max_at >= 0 && spans[i].begin < max_end) {
                set_err(err, err_size, "tensors '%s' and '%s' overlap in the file",
                        st->tensors[max_at].name, st->tensors[spans[i].index].name);
                rc = -1;
                break;
            }
            if (spans[i].end > max_end) { max_end = spans[i].end; max_at = spans[i].index; }
        }
        /* Duplicate names would make lookups ambiguous; sort the names (n log n: a header of
         * millions of entries must not take quadratic time) and compare neighbours. */
        if (rc == 0 && st->n > 1) {
            const char **names = malloc((size_t)st->n * sizeof *names);
            if (!names) {
                set_err(err, err_size, "out of memory");
                rc = -1;
            } else {
                for (int i = 0; i < st->n; i++) names[i] = st->tensors[i].name;
                qsort(names, (size_t)st->n, sizeof *names, name_cmp);
                for (int i = 1; i < st->n; i++)
                    if (strcmp(names[i - 1], names[i]) == 0) {
                        set_err(err, err_size, "tensor '%s' appears twice", names[i]);
                        rc = -1;
                        break;
                    }
                free(names);
            }
        }
    }
    free(spans);
    if (rc) goto fail;
    return st;
fail:
    fb_st_close(st);
    return NULL;
}

fb_safetensors *fb_st_open(const char *path, char *err, size_t err_size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_err(err, err_size, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        set_err(err, err_size, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    fb_safetensors *st = calloc(1, sizeof *st);
    if (!st) { close(fd); set_err(err, err_size, "out of memory"); return NULL; }
    st->size = (size_t)sb.st_size;
    if (st->size > 0) {
        void *m = mmap(NULL, st->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            set_err(err, err_size, "%s: mmap: %s", path, strerror(errno));
            close(fd);
            free(st);
            return NULL;
        }
        st->base = m;
        st->mapped = 1;
    }
    close(fd);
    char inner[384];
    if (!parse(st, inner, sizeof inner)) {
        set_err(err, err_size, "%s: %s", path, inner);
        return NULL;
    }
    return st;
}

fb_safetensors *fb_st_open_memory(const void *buf, size_t size, char *err, size_t err_size) {
    fb_safetensors *st = calloc(1, sizeof *st);
    if (!st) { set_err(err, err_size, "out of memory"); return NULL; }
    st->base = buf;
    st->size = size;
    return parse(st, err, err_size);
}

int fb_st_count(const fb_safetensors *st) { return st->n; }

const fb_st_tensor *fb_st_at(const fb_safetensors *st, int i) {
    return (i >= 0 && i < st->n) ? &st->tensors[i] : NULL;
}

const fb_st_tensor *fb_st_find(const fb_safetensors *st, const char *name) {
    for (int i = 0; i < st->n; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

const char *fb_st_metadata(const fb_safetensors *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_values[i];
    return NULL;
}

float fb_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float fb_bf16_to_f32(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t fb_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1);   /* round to nearest even */
    return (uint16_t)(x >> 16);
}

uint16_t fb_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t man = x & 0x7fffffu;
    if (((x >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00u);           /* overflow -> inf */
    if (exp <= 0) {                                            /* subnormal or zero */
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = sign | ((uint32_t)exp << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;     /* may carry into exp: fine */
    return (uint16_t)h;
}

int fb_st_to_f32(const fb_st_tensor *t, float *dst) {
    const uint8_t *p = t->data;
    int64_t n = t->numel;
    switch (t->dtype) {
    case FB_DT_F32: memcpy(dst, p, (size_t)n * 4); return 0;
    case FB_DT_F64:
        for (int64_t i = 0; i < n; i++) { double d; memcpy(&d, p + 8 * i, 8); dst[i] = (float)d; }
        return 0;
    case FB_DT_F16:
        for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, p + 2 * i, 2); dst[i] = fb_f16_to_f32(h); }
        return 0;
    case FB_DT_BF16:
        for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, p + 2 * i, 2); dst[i] = fb_bf16_to_f32(h); }
        return 0;
    default: return -1;
    }
}

int fb_st_check_shape(const fb_st_tensor *t, int ndim, const int64_t *shape, char *err,
                      size_t err_size) {
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (ok) return 0;
    char want[160] = "", have[160] = "";
    size_t a = 0, b = 0;
    for (int i = 0; i < ndim && a < sizeof want; i++)
        a += (size_t)snprintf(want + a, sizeof want - a, i ? ",%lld" : "%lld", (long long)shape[i]);
    for (int i = 0; i < t->ndim && b < sizeof have; i++)
        b += (size_t)snprintf(have + b, sizeof have - b, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    set_err(err, err_size, "%s: expected shape [%s], file has [%s]", t->name, want, have);
    return -1;
}
