/* tests/dit/test_dit_causal.c - DiT + KV cache against Self-Forcing's causal inference
 * (upstream golden case 2): three whole runs, chunk by chunk and step by step.
 *
 * Each run of causal_dit.safetensors (global; window 9 with sink 3; window 6 without sink) is
 * replayed with fb_kvcache in absolute-position mode, upstream's local_attn_size L and
 * sink_size S mapped as docs/model-format.md says (anchor = S, window = L - S - chunk; global:
 * no anchor and a window that holds the whole run). The sampler loop is written out here: 4
 * denoising steps with the injected re-noise tensors, then the t = 0 context pass that stores
 * the chunk's K/V, then commit. Every x_in, flow, x0, context-pass flow and the final latents
 * are compared, and so is the layer-0 cache at the end (rotated at the absolute positions,
 * since upstream stores keys after RoPE). The window runs roll past their window, so this
 * checks eviction, slot order and positions.
 * Usage: test_dit_causal UPSTREAM_GOLDEN_DIR   (exit 77 = skipped)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/dit.h"
#include "tests/dit/golden_util.h"

#define ATOL 1e-4
#define RTOL 1e-4
#define CHUNK 3
#define STEPS 4

static int run_one(const fb_safetensors *st, const fb_dit *dit, fb_kctx *kc,
                   const fb_dit_text *text, const char *run, int L_attn, int sink, int chunks,
                   int frames)
{
    const fb_dit_config *cfg = fb_dit_get_config(dit);
    char err[512], name[128];
    int C = cfg->in_dim, H = 8, W = 8, HW = H * W;
    const fb_st_tensor *nt;
    snprintf(name, sizeof name, "input.%s.noise", run);
    nt = fb_st_find(st, name);
    if (!nt || nt->ndim != 5 || nt->shape[1] != frames || nt->shape[2] != C) {
        fprintf(stderr, "%s: noise missing or misshapen\n", run);
        return 1;
    }
    H = (int)nt->shape[3];
    W = (int)nt->shape[4];
    HW = H * W;
    int tpf = (H / cfg->patch_size[1]) * (W / cfg->patch_size[2]);
    int A = sink, Wn = L_attn < 0 ? frames : L_attn - sink - CHUNK;
    printf("== run %s: local_attn_size %d sink %d -> anchor %d window %d, %d chunks\n", run,
           L_attn, sink, A, Wn, chunks);

    float *noise = gu_load(st, name, 0);
    snprintf(name, sizeof name, "input.%s.timesteps", run);
    float *ts = gu_load(st, name, STEPS);
    snprintf(name, sizeof name, "inter.%s.sigmas", run);
    float *sig = gu_load(st, name, STEPS);
    if (!noise || !ts || !sig)
        return 1;

    fb_kvpool *pool;
    size_t page = fb_kv_frame_bytes(tpf, cfg->dim);
    size_t budget = page * (size_t)cfg->num_layers * (size_t)(A + Wn);
    if (fb_kvpool_init(&pool, budget, page, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    fb_kvcache *kv;
    if (fb_kvcache_open(pool, cfg->num_layers, A, Wn, tpf, cfg->dim, &kv, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    size_t sb = fb_dit_scratch_bytes(cfg, CHUNK, A + Wn, tpf);
    void *scratch = malloc(sb);
    size_t n = (size_t)CHUNK * C * HW;
    float *x = malloc(n * sizeof(float)), *x0 = malloc(n * sizeof(float));
    float *xd = malloc(n * sizeof(float)), *fd = malloc(n * sizeof(float));
    float *flow = malloc(n * sizeof(float));
    float *latents = malloc((size_t)frames * C * HW * sizeof(float));
    fb_kv_plan *plan = malloc(sizeof *plan);
    int fails = 0;

    for (int c = 0; c < chunks; c++) {
        if (fb_kvcache_plan(kv, CHUNK, FB_KV_POS_ABSOLUTE, plan, err, sizeof err)) {
            fprintf(stderr, "plan: %s\n", err);
            return 1;
        }
        /* x = noise[:, 3c:3c+3], pipeline layout [F, C, H, W] */
        memcpy(x, noise + (size_t)c * CHUNK * C * HW, n * sizeof(float));
        for (int k = 0; k < STEPS; k++) {
            snprintf(name, sizeof name, "inter.%s.c%d.s%d.x_in", run, c, k);
            float *ref = gu_load(st, name, (int64_t)n);
            if (!ref)
                return 1;
            fails += gu_check(name, x, ref, (int64_t)n, ATOL, RTOL);
            free(ref);

            gu_fchw_to_cfhw(x, xd, CHUNK, C, HW);
            fb_dit_call call = {.x = xd, .n_frames = CHUNK, .height = H, .width = W,
                                .t = ts[k], .text = text, .cache = kv, .plan = plan,
                                .write_kv = 0, .out = fd};
            if (fb_dit_forward(dit, kc, scratch, sb, &call, err, sizeof err)) {
                fprintf(stderr, "forward: %s\n", err);
                return 1;
            }
            gu_cfhw_to_fchw(fd, flow, CHUNK, C, HW);
            snprintf(name, sizeof name, "inter.%s.c%d.s%d.flow", run, c, k);
            ref = gu_load(st, name, (int64_t)n);
            if (!ref)
                return 1;
            fails += gu_check(name, flow, ref, (int64_t)n, ATOL, RTOL);
            free(ref);

            /* x0 = x - sigma * flow in double, rounded to float (as upstream) */
            for (size_t i = 0; i < n; i++)
                x0[i] = (float)((double)x[i] - (double)sig[k] * (double)flow[i]);
            snprintf(name, sizeof name, "inter.%s.c%d.s%d.x0", run, c, k);
            ref = gu_load(st, name, (int64_t)n);
            if (!ref)
                return 1;
            fails += gu_check(name, x0, ref, (int64_t)n, ATOL, RTOL);
            free(ref);

            if (k + 1 < STEPS) {
                /* re-noise in float32: (1 - s) x0 + s eps, with the injected draw */
                snprintf(name, sizeof name, "input.%s.c%d.s%d.eps", run, c, k + 1);
                float *eps = gu_load(st, name, (int64_t)n);
                if (!eps)
                    return 1;
                float s = sig[k + 1], one_minus = 1.0f - s;
                for (size_t i = 0; i < n; i++) {
                    float a = one_minus * x0[i];
                    float b = s * eps[i];
                    x[i] = a + b;
                }
                free(eps);
            }
        }
        memcpy(latents + (size_t)c * n, x0, n * sizeof(float));

        /* context pass at t = 0 on the clean chunk: stores its K/V, then commit */
        gu_fchw_to_cfhw(x0, xd, CHUNK, C, HW);
        fb_dit_call call = {.x = xd, .n_frames = CHUNK, .height = H, .width = W, .t = 0.0f,
                            .text = text, .cache = kv, .plan = plan, .write_kv = 1, .out = fd};
        if (fb_dit_forward(dit, kc, scratch, sb, &call, err, sizeof err)) {
            fprintf(stderr, "context forward: %s\n", err);
            return 1;
        }
        gu_cfhw_to_fchw(fd, flow, CHUNK, C, HW);
        snprintf(name, sizeof name, "inter.%s.c%d.ctx.flow", run, c);
        float *ref = gu_load(st, name, (int64_t)n);
        if (!ref)
            return 1;
        fails += gu_check(name, flow, ref, (int64_t)n, ATOL, RTOL);
        free(ref);
        fb_kvcache_commit(kv, plan);
    }

    snprintf(name, sizeof name, "output.%s.latents", run);
    float *ref = gu_load(st, name, (int64_t)frames * C * HW);
    if (!ref)
        return 1;
    fails += gu_check(name, latents, ref, (int64_t)frames * C * HW, ATOL, RTOL);
    free(ref);

    /* layer-0 cache. Upstream's filled slots hold the sink frames 0..S-1, then the newest
     * frames in time order; at rest it still holds the chunk that the next chunk's arrival
     * evicts, so it has `chunk` more frames than ours (anchors + window = what the next chunk
     * sees). Every frame of ours must be in upstream's list and agree; keys are compared
     * after rotating ours at their absolute positions (upstream stores them rotated). */
    if (fb_kvcache_plan(kv, CHUNK, FB_KV_POS_ABSOLUTE, plan, err, sizeof err)) {
        fprintf(stderr, "plan: %s\n", err);
        return 1;
    }
    snprintf(name, sizeof name, "inter.%s.kv.l0.k", run);
    const fb_st_tensor *kt = fb_st_find(st, name);
    int64_t ff = (int64_t)tpf * cfg->dim;
    int n_up = kt ? (int)(kt->numel / ff) : 0;
    int expect_up = L_attn < 0 ? frames : L_attn;
    if (!kt || n_up != expect_up || plan->n_past != (L_attn < 0 ? frames : A + Wn)) {
        printf("%s: upstream holds %d frames (expected %d), our cache %d\n", name, n_up,
               expect_up, plan->n_past);
        fails++;
    } else {
        float *rk = gu_load(st, name, 0);
        snprintf(name, sizeof name, "inter.%s.kv.l0.v", run);
        float *rv = gu_load(st, name, kt->numel);
        float *ck = malloc((size_t)ff * sizeof(float));
        int *pos = malloc((size_t)tpf * 3 * sizeof(int));
        int wp = W / cfg->patch_size[2];
        fb_rope rope;
        fb_rope_init(&rope, cfg->dim / cfg->num_heads, FB_KV_MAX_POS);
        for (int i = 0; i < plan->n_past; i++) {
            int64_t fr = plan->past_frame[i];
            /* upstream slot of frame fr */
            int us = fr < sink ? (int)fr : (int)(fr - (frames - (n_up - sink)) + sink);
            if (us < 0 || us >= n_up || (us >= sink && fr < frames - (n_up - sink))) {
                printf("cache frame %lld is not held upstream\n", (long long)fr);
                fails++;
                continue;
            }
            memcpy(ck, fb_kvcache_slot_k(kv, 0, plan->past_slot[i]), (size_t)ff * sizeof(float));
            for (int t = 0; t < tpf; t++) {
                pos[3 * t] = plan->past_pos[i];
                pos[3 * t + 1] = t / wp;
                pos[3 * t + 2] = t % wp;
            }
            fb_rope_apply_ref(&rope, ck, tpf, cfg->num_heads, pos);
            char nk[160], nv[160];
            snprintf(nk, sizeof nk, "inter.%s.kv.l0.k[slot %d] frame %lld", run, us,
                     (long long)fr);
            snprintf(nv, sizeof nv, "inter.%s.kv.l0.v[slot %d] frame %lld", run, us,
                     (long long)fr);
            fails += gu_check(nk, ck, rk + (size_t)us * ff, ff, ATOL, RTOL);
            fails += gu_check(nv, fb_kvcache_slot_v(kv, 0, plan->past_slot[i]),
                              rv + (size_t)us * ff, ff, ATOL, RTOL);
        }
        fb_rope_free(&rope);
        free(rk);
        free(rv);
        free(ck);
        free(pos);
    }

    free(plan);
    free(scratch);
    free(x);
    free(x0);
    free(xd);
    free(fd);
    free(flow);
    free(latents);
    free(noise);
    free(ts);
    free(sig);
    fb_kvcache_close(kv);
    fb_kvpool_free(pool);
    return fails;
}

int main(int argc, char **argv)
{
    fb_safetensors *st = gu_open_or_skip(argc > 1 ? argv[1] : NULL, "causal_dit.safetensors");
    char err[512];
    fb_dit_config cfg;
    if (gu_dit_config(st, &cfg))
        return 1;
    fb_dit *dit;
    if (fb_dit_load(st, "weight.", &cfg, &dit, err, sizeof err)) {
        fprintf(stderr, "load: %s\n", err);
        return 1;
    }
    fb_kctx *kc;
    if (fb_kctx_init(&kc, 2, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const fb_st_tensor *ct = fb_st_find(st, "input.context");
    float *ctx = gu_load(st, "input.context", 0);
    if (!ct || !ctx)
        return 1;
    fb_dit_text *text;
    if (fb_dit_text_prepare(dit, kc, ctx, (int)ct->shape[0], NULL, &text, err, sizeof err)) {
        fprintf(stderr, "text: %s\n", err);
        return 1;
    }
    const char *runs_js = fb_st_metadata(st, "runs");
    cJSON *runs = runs_js ? cJSON_Parse(runs_js) : NULL;
    if (!runs) {
        fprintf(stderr, "golden: metadata runs missing\n");
        return 1;
    }
    int fails = 0, n_runs = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, runs) {
        int L = 0, S = 0, chunks = 0, frames = 0;
        if (gu_json_int(r, "local_attn_size", &L) || gu_json_int(r, "sink_size", &S) ||
            gu_json_int(r, "chunks", &chunks) || gu_json_int(r, "latent_frames", &frames)) {
            fprintf(stderr, "golden: run %s lacks a field\n", r->string);
            return 1;
        }
        fails += run_one(st, dit, kc, text, r->string, L, S, chunks, frames);
        n_runs++;
    }
    cJSON_Delete(runs);
    printf("%d runs, %d failures\n", n_runs, fails);
    free(ctx);
    fb_dit_text_free(text);
    fb_dit_free(dit);
    fb_kctx_free(kc);
    fb_st_close(st);
    return fails || n_runs != 3 ? 1 : 0;
}
