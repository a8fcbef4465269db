/* kernels/cpu/attention.c - multi-head attention with tiled online softmax.
 *
 * One task = one head x one tile of FB_ATTN_BQ queries. It walks the keys in tiles of
 * FB_ATTN_BK: S = scale * Q_tile K_tile^T (a small GEMM on strided rows, no copies), then the
 * running max m, the running sum l and the accumulator O are rescaled as in the online softmax
 * (the recurrence FlashAttention uses), O += P V_tile, and at the end
 * out = O / l. Memory is one FB_ATTN_BQ x FB_ATTN_BK score tile and one FB_ATTN_BQ x Dh
 * accumulator per thread (in the context), whatever the sequence lengths: a 4680 x 18720 score
 * matrix per head (350 MB) never exists.
 *
 * Exponentials use fb__exp_fast: with Lq x Lk x H of them per layer they would otherwise cost
 * as much as the two GEMMs.
 */
#include "kernels/cpu/cpu_internal.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>

typedef struct {
    fb_kctx *k;
    const float *q, *kk, *v;
    float *out;
    int Lq, Lk, H, Dh;
    float scale;
    int q_tiles;
} attn_job;

/* Online-softmax update of one score tile S [nq, nk] (row stride FB_ATTN_BK): turns S into
 * P = exp(S - m_new), rescales the rows of O whose running max moved, updates m and l. The
 * max and sum reductions run in LANES independent accumulators so that the loops vectorise
 * under strict IEEE semantics (a single float accumulator would forbid reordering). */
#define LANES 16
FB_SIMD static void tile_softmax(float *S, int nq, int nk, float *m, float *l, float *O, int Dh)
{
    for (int i = 0; i < nq; i++) {
        float *restrict s = S + (size_t)i * FB_ATTN_BK;
        float lane[LANES];
        for (int u = 0; u < LANES; u++)
            lane[u] = m[i];
        int c = 0;
        for (; c + LANES <= nk; c += LANES)
            for (int u = 0; u < LANES; u++)
                lane[u] = s[c + u] > lane[u] ? s[c + u] : lane[u];
        float mx = lane[0];
        for (int u = 1; u < LANES; u++)
            mx = lane[u] > mx ? lane[u] : mx;
        for (; c < nk; c++)
            mx = s[c] > mx ? s[c] : mx;
        /* s - mx <= 0; below -87 the weight is < 1e-38 of the largest: flush to ~0 */
        for (c = 0; c < nk; c++) {
            float d = s[c] - mx;
            s[c] = fb__exp_fast(d < -87.0f ? -87.0f : d);
        }
        for (int u = 0; u < LANES; u++)
            lane[u] = 0.0f;
        for (c = 0; c + LANES <= nk; c += LANES)
            for (int u = 0; u < LANES; u++)
                lane[u] += s[c + u];
        float sum = 0.0f;
        for (int u = 0; u < LANES; u++)
            sum += lane[u];
        for (; c < nk; c++)
            sum += s[c];
        if (mx != m[i]) {
            float corr = m[i] == -FLT_MAX ? 0.0f : fb__exp_fast(fmaxf(m[i] - mx, -87.0f));
            float *o = O + (size_t)i * Dh;
            for (int d = 0; d < Dh; d++)
                o[d] *= corr;
            l[i] = l[i] * corr + sum;
            m[i] = mx;
        } else {
            l[i] += sum;
        }
    }
}

static void attn_task(void *p, int task, int thread)
{
    const attn_job *j = p;
    int h = task / j->q_tiles;
    int q0 = (task % j->q_tiles) * FB_ATTN_BQ;
    int nq = j->Lq - q0 < FB_ATTN_BQ ? j->Lq - q0 : FB_ATTN_BQ;
    int Dh = j->Dh;
    int ld = j->H * Dh;   /* row stride of q, k, v, out */

    float *S = j->k->attn_scratch + (size_t)thread * j->k->attn_stride;
    float *O = S + FB_ATTN_BQ * FB_ATTN_BK;
    float *m = O + FB_ATTN_BQ * FB_ATTN_MAX_HEAD_DIM;
    float *l = m + FB_ATTN_BQ;

    const float *Q = j->q + (size_t)q0 * ld + (size_t)h * Dh;
    for (int i = 0; i < nq; i++) {
        m[i] = -FLT_MAX;
        l[i] = 0.0f;
    }
    memset(O, 0, (size_t)nq * Dh * sizeof(float));

    for (int k0 = 0; k0 < j->Lk; k0 += FB_ATTN_BK) {
        int nk = j->Lk - k0 < FB_ATTN_BK ? j->Lk - k0 : FB_ATTN_BK;
        const float *K = j->kk + (size_t)k0 * ld + (size_t)h * Dh;
        const float *V = j->v + (size_t)k0 * ld + (size_t)h * Dh;
        /* S[nq, nk] = scale * Q K^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, Dh, j->scale, Q, ld, K, ld,
                    0.0f, S, FB_ATTN_BK);
        tile_softmax(S, nq, nk, m, l, O, Dh);
        /* O[nq, Dh] += P V */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, Dh, nk, 1.0f, S, FB_ATTN_BK,
                    V, ld, 1.0f, O, Dh);
    }
    float *out = j->out + (size_t)q0 * ld + (size_t)h * Dh;
    for (int i = 0; i < nq; i++) {
        float inv = 1.0f / l[i];
        const float *o = O + (size_t)i * Dh;
        float *dst = out + (size_t)i * ld;
        for (int d = 0; d < Dh; d++)
            dst[d] = o[d] * inv;
    }
}

void fb_attention(fb_kctx *k, const float *q, const float *kk, const float *v, float *out,
                  int Lq, int Lk, int H, int Dh, float scale)
{
    FB_KASSERT(Lq >= 0 && Lk >= 1 && H >= 1 && Dh >= 1 && Dh <= FB_ATTN_MAX_HEAD_DIM);
    if (Lq == 0)
        return;
    attn_job j = {k, q, kk, v, out, Lq, Lk, H, Dh, scale, (Lq + FB_ATTN_BQ - 1) / FB_ATTN_BQ};
    fb_kctx_parallel(k, j.q_tiles * H, attn_task, &j);
}
