/* engine/safetensors.h - read-only, memory-mapped safetensors files.
 *
 * A safetensors file is an 8-byte little-endian header length N, N bytes of JSON mapping each
 * tensor name to {dtype, shape, data_offsets} (plus an optional "__metadata__" object of
 * strings), then the raw little-endian tensor data. fb_st_open() maps the file and validates
 * everything before returning: the header JSON, every dtype, shape and offset pair, that
 * offsets lie inside the data area, that byte sizes equal product(shape) * dtype size, and that
 * no two tensors overlap. Errors name the tensor and the problem.
 *
 * Thread-safety: an open file is immutable; any number of threads may read it concurrently.
 * fb_st_close() must not race with readers.
 */
#ifndef FLIPBOOK_ENGINE_SAFETENSORS_H
#define FLIPBOOK_ENGINE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define FB_ST_MAX_DIMS 8

typedef enum {
    FB_DT_F32, FB_DT_F16, FB_DT_BF16, FB_DT_F64,
    FB_DT_I64, FB_DT_I32, FB_DT_I16, FB_DT_I8, FB_DT_U8, FB_DT_BOOL,
} fb_dtype;

typedef struct fb_st_tensor {
    const char *name;
    fb_dtype dtype;
    int ndim;
    int64_t shape[FB_ST_MAX_DIMS];
    int64_t numel;
    const void *data;   /* points into the mapping; may be unaligned for odd offsets */
    size_t nbytes;
} fb_st_tensor;

typedef struct fb_safetensors fb_safetensors;

/* Maps and validates `path`. On failure returns NULL and writes a message into err. */
fb_safetensors *fb_st_open(const char *path, char *err, size_t err_size);
/* Same, over a caller-owned buffer that must outlive the handle (fuzzing, embedded data). */
fb_safetensors *fb_st_open_memory(const void *buf, size_t size, char *err, size_t err_size);
void fb_st_close(fb_safetensors *st);

int fb_st_count(const fb_safetensors *st);
const fb_st_tensor *fb_st_at(const fb_safetensors *st, int i);          /* in file order */
const fb_st_tensor *fb_st_find(const fb_safetensors *st, const char *name); /* NULL if absent */
/* A "__metadata__" string value, or NULL. */
const char *fb_st_metadata(const fb_safetensors *st, const char *key);

size_t fb_dtype_size(fb_dtype dt);
const char *fb_dtype_name(fb_dtype dt);

/* Converts a floating tensor (F32, F16, BF16, F64) to float32 into dst (numel floats).
 * Returns 0, or -1 for a non-float dtype. */
int fb_st_to_f32(const fb_st_tensor *t, float *dst);

/* Checks that t has exactly the given shape; on mismatch writes "NAME: expected shape [..], file
 * has [..]" into err and returns -1. */
int fb_st_check_shape(const fb_st_tensor *t, int ndim, const int64_t *shape, char *err,
                      size_t err_size);

/* Half-precision conversions used by loaders and kernels. */
float fb_f16_to_f32(uint16_t h);
float fb_bf16_to_f32(uint16_t b);
uint16_t fb_f32_to_f16(float f);
uint16_t fb_f32_to_bf16(float f);

#endif
