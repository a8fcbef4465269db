/* tests/fuzz/fuzz_safetensors.c - the safetensors header parser (fb_st_open_memory) on
 * hostile input.
 *
 * Any bytes may be given; a file that opens must be self-consistent: every tensor lies inside
 * the buffer with nbytes = numel * dtype size, lookups by name and index agree, metadata
 * values are strings, and converting every float tensor to float32 reads only its own bytes
 * (ASan checks that). A crash, a sanitizer report or a failed check (abort) is a bug. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/safetensors.h"

#define REQUIRE(c)                                                          \
    do {                                                                    \
        if (!(c)) {                                                         \
            fprintf(stderr, "fuzz_safetensors: check failed: %s\n", #c);    \
            abort();                                                        \
        }                                                                   \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256] = "";
    fb_safetensors *st = fb_st_open_memory(data, size, err, sizeof err);
    if (!st) {
        REQUIRE(err[0]);
        return 0;
    }
    const uint8_t *end = data + size;
    for (int i = 0; i < fb_st_count(st); i++) {
        const fb_st_tensor *t = fb_st_at(st, i);
        REQUIRE(t && t->name);
        REQUIRE(fb_st_find(st, t->name) == t);
        REQUIRE(t->ndim >= 0 && t->ndim <= FB_ST_MAX_DIMS);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= t->shape[d];
        REQUIRE(numel == t->numel);
        REQUIRE(t->nbytes == (size_t)t->numel * fb_dtype_size(t->dtype));
        const uint8_t *p = t->data;
        REQUIRE(p >= data && p <= end && t->nbytes <= (size_t)(end - p));
        REQUIRE(fb_st_check_shape(t, t->ndim, t->shape, err, sizeof err) == 0);
        if (t->ndim > 0) {
            int64_t other[FB_ST_MAX_DIMS];
            memcpy(other, t->shape, sizeof other);
            other[0] += 1;
            REQUIRE(fb_st_check_shape(t, t->ndim, other, err, sizeof err) == -1);
        }
        int is_float = t->dtype == FB_DT_F32 || t->dtype == FB_DT_F16 ||
                       t->dtype == FB_DT_BF16 || t->dtype == FB_DT_F64;
        if (is_float && t->numel <= (1 << 20)) {
            float *f = malloc(((size_t)t->numel + 1) * sizeof *f);
            REQUIRE(fb_st_to_f32(t, f) == 0);
            free(f);
        } else if (!is_float) {
            float dummy;
            REQUIRE(fb_st_to_f32(t, &dummy) == -1);
        }
    }
    REQUIRE(fb_st_at(st, -1) == NULL && fb_st_at(st, fb_st_count(st)) == NULL);
    const char *m = fb_st_metadata(st, "flipbook.config");
    if (m) REQUIRE(strlen(m) < size);
    fb_st_close(st);
    return 0;
}
