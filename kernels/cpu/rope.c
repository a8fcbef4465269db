/* kernels/cpu/rope.c - Wan's 3D rotary position embedding (see kernels.h for the layout).
 *
 * Upstream builds the table as complex128 (torch.polar over float64 angles) and rotates
 * x.to(float64) as complex numbers before casting back to float32; doing the rotation in
 * double here reproduces that rounding exactly up to the last float ulp.
 */
#include "kernels/cpu/cpu_internal.h"

#include <math.h>
#include <string.h>

int fb_rope_init(fb_rope *r, int head_dim, int n_pos)
{
    memset(r, 0, sizeof *r);
    if (head_dim < 6 || head_dim % 2 != 0 || n_pos < 1)
        return -1;
    int half = head_dim / 2;
    int ph = head_dim / 6;
    int pt = half - 2 * ph;
    r->cs = malloc((size_t)n_pos * half * 2 * sizeof(double));
    if (!r->cs)
        return -1;
    r->head_dim = head_dim;
    r->n_pos = n_pos;
    r->pairs[0] = pt;
    r->pairs[1] = ph;
    r->pairs[2] = ph;
    /* inverse frequency of pair j: axis a with d_a = 2 p_a channels, local index jj */
    double *inv = malloc((size_t)half * sizeof(double));
    if (!inv) {
        free(r->cs);
        r->cs = NULL;
        return -1;
    }
    for (int j = 0; j < half; j++) {
        int axis = j < pt ? 0 : (j < pt + ph ? 1 : 2);
        int base = axis == 0 ? 0 : (axis == 1 ? pt : pt + ph);
        int da = 2 * r->pairs[axis];
        int jj = j - base;
        inv[j] = 1.0 / pow(10000.0, (double)(2 * jj) / (double)da);
    }
    for (int p = 0; p < n_pos; p++)
        for (int j = 0; j < half; j++) {
            double a = (double)p * inv[j];
            r->cs[((size_t)p * half + j) * 2 + 0] = cos(a);
            r->cs[((size_t)p * half + j) * 2 + 1] = sin(a);
        }
    free(inv);
    return 0;
}

void fb_rope_free(fb_rope *r)
{
    if (!r)
        return;
    free(r->cs);
    r->cs = NULL;
}

typedef struct {
    const fb_rope *r;
    float *x;
    int n_heads;
    const int *pos;
} rope_job;

/* rotate token l (all heads) */
static inline void rope_token(const fb_rope *r, float *x, int n_heads, const int *pos3)
{
    int half = r->head_dim / 2;
    int pt = r->pairs[0], ph = r->pairs[1];
    /* one (cos, sin) row pointer per axis for this token */
    const double *row[3];
    for (int a = 0; a < 3; a++) {
        FB_KASSERT(pos3[a] >= 0 && pos3[a] < r->n_pos);
        row[a] = r->cs + (size_t)pos3[a] * half * 2;
    }
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * r->head_dim;
        for (int j = 0; j < half; j++) {
            int axis = j < pt ? 0 : (j < pt + ph ? 1 : 2);
            double c = row[axis][2 * j], s = row[axis][2 * j + 1];
            double a = v[2 * j], b = v[2 * j + 1];
            v[2 * j] = (float)(a * c - b * s);
            v[2 * j + 1] = (float)(a * s + b * c);
        }
    }
}

FB_SIMD static void rope_range(void *p, size_t b, size_t e)
{
    const rope_job *j = p;
    size_t stride = (size_t)j->n_heads * j->r->head_dim;
    for (size_t l = b; l < e; l++)
        rope_token(j->r, j->x + l * stride, j->n_heads, j->pos + 3 * l);
}

void fb_rope_apply(fb_kctx *k, const fb_rope *r, float *x, int L, int n_heads, const int *pos)
{
    FB_KASSERT(r && r->cs && L >= 0 && n_heads > 0);
    rope_job j = {r, x, n_heads, pos};
    size_t g = 8192 / ((size_t)n_heads * r->head_dim);
    fb__parallel_range(k, (size_t)L, g ? g : 1, rope_range, &j);
}
