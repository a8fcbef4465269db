/* tests/dit/test_dit_golden.c - the DiT against Wan2.1 WanModel (upstream golden case 1).
 *
 * Loads wan_dit.safetensors (tiny config, weights under "weight."), prepares the prompt from
 * input.context, runs one forward on input.x at input.t without a cache, and compares every
 * intermediate the file holds (inter.*, captured by forward hooks upstream) and output.flow.
 * Usage: test_dit_golden UPSTREAM_GOLDEN_DIR   (exit 77 = skipped: folder missing)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/dit.h"
#include "tests/dit/golden_util.h"

#define ATOL 1e-5
#define RTOL 1e-5

typedef struct {
    const fb_safetensors *st;
    int failures;
    int compared;
    char seen[64][128];
    int n_seen;
} dump_ctx;

static void on_dump(void *user, const char *name, const float *data, int ndim,
                    const int64_t *shape)
{
    dump_ctx *dc = user;
    char full[128];
    snprintf(full, sizeof full, "inter.%s", name);
    const fb_st_tensor *t = fb_st_find(dc->st, full);
    if (!t)
        return;   /* upstream did not capture this one */
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    int64_t cmp = t->numel;
    if (strcmp(name, "rope_freqs") == 0) {
        /* upstream dumped the first rows of the table only */
        if (n < cmp) {
            printf("%s: C table has %lld values, golden %lld\n", name, (long long)n,
                   (long long)cmp);
            dc->failures++;
            return;
        }
    } else if (n != cmp) {
        printf("%s: C has %lld values, golden %lld\n", name, (long long)n, (long long)cmp);
        dc->failures++;
        return;
    }
    float *ref = gu_load(dc->st, full, cmp);
    if (!ref) {
        dc->failures++;
        return;
    }
    dc->failures += gu_check(full, data, ref, cmp, ATOL, RTOL);
    dc->compared++;
    if (dc->n_seen < 64)
        snprintf(dc->seen[dc->n_seen++], sizeof dc->seen[0], "%s", full);
    free(ref);
}

int main(int argc, char **argv)
{
    fb_safetensors *st = gu_open_or_skip(argc > 1 ? argv[1] : NULL, "wan_dit.safetensors");
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
    const fb_st_tensor *xt = fb_st_find(st, "input.x");
    const fb_st_tensor *ct = fb_st_find(st, "input.context");
    if (!xt || xt->ndim != 4 || !ct || ct->ndim != 2) {
        fprintf(stderr, "golden: input.x / input.context missing or misshapen\n");
        return 1;
    }
    int C = (int)xt->shape[0], F = (int)xt->shape[1], H = (int)xt->shape[2],
        W = (int)xt->shape[3];
    float *x = gu_load(st, "input.x", 0);
    float *ctx = gu_load(st, "input.context", 0);
    float *tv = gu_load(st, "input.t", 1);
    float *ref_flow = gu_load(st, "output.flow", (int64_t)cfg.out_dim * F * H * W);
    if (!x || !ctx || !tv || !ref_flow || C != cfg.in_dim)
        return 1;

    dump_ctx dc = {.st = st};
    fb_dit_dump dump = {on_dump, &dc};
    fb_dit_text *text;
    if (fb_dit_text_prepare(dit, kc, ctx, (int)ct->shape[0], &dump, &text, err, sizeof err)) {
        fprintf(stderr, "text: %s\n", err);
        return 1;
    }
    int tpf = (H / cfg.patch_size[1]) * (W / cfg.patch_size[2]);
    size_t sb = fb_dit_scratch_bytes(&cfg, F, 0, tpf);
    void *scratch = malloc(sb);
    float *flow = malloc((size_t)cfg.out_dim * F * H * W * sizeof(float));
    fb_dit_call call = {.x = x, .n_frames = F, .height = H, .width = W, .t = tv[0],
                        .text = text, .out = flow, .dump = &dump};
    if (fb_dit_forward(dit, kc, scratch, sb, &call, err, sizeof err)) {
        fprintf(stderr, "forward: %s\n", err);
        return 1;
    }
    int fails = dc.failures;
    fails += gu_check("output.flow", flow, ref_flow, (int64_t)cfg.out_dim * F * H * W, ATOL,
                      RTOL);

    /* every inter.* tensor of the file must have been produced and compared */
    for (int i = 0; i < fb_st_count(st); i++) {
        const char *n = fb_st_at(st, i)->name;
        if (strncmp(n, "inter.", 6) != 0)
            continue;
        int found = 0;
        for (int j = 0; j < dc.n_seen && !found; j++)
            found = strcmp(dc.seen[j], n) == 0;
        if (!found) {
            printf("%s: not produced by the C forward\n", n);
            fails++;
        }
    }

    /* a too-small scratch is refused before anything is computed */
    if (fb_dit_forward(dit, kc, scratch, sb - 1, &call, err, sizeof err) != FB_DIT_ERR_SCRATCH) {
        printf("a short scratch arena was not refused\n");
        fails++;
    }
    printf("%d tensors compared, %d failures\n", dc.compared + 1, fails);

    free(scratch);
    free(flow);
    free(x);
    free(ctx);
    free(tv);
    free(ref_flow);
    fb_dit_text_free(text);
    fb_dit_free(dit);
    fb_kctx_free(kc);
    fb_st_close(st);
    return fails ? 1 : 0;
}
