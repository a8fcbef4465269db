/* tests/dit/test_dit_unit.c - the DiT's loading and call validation on a random in-memory
 * model: every malformed weight file and every bad call gets its status and a message naming
 * the problem (never a crash), F16 / BF16 weights load to the same float32 values, and the
 * forward is deterministic and independent of the thread count.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/dit.h"
#include "tests/dit/tiny_model.h"

static int failures;

#define CHECK(cond, ...)                                                                      \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                            \
            printf(__VA_ARGS__);                                                              \
            printf("\n");                                                                     \
            failures++;                                                                       \
        }                                                                                     \
    } while (0)

/* Loads a model image made with opts; returns the status and the message. */
static int try_load(const fb_dit_config *cfg, const tm_opts *o, fb_dit **out, char *err,
                    size_t n)
{
    size_t sz;
    void *img = tm_build_ex(cfg, "dit.", 5, o, &sz);
    fb_safetensors *st = fb_st_open_memory(img, sz, err, n);
    if (!st) {
        free(img);
        return -100;
    }
    int rc = fb_dit_load(st, "dit.", cfg, out, err, n);
    fb_st_close(st);
    free(img);   /* the model copied what it needs */
    return rc;
}

static void test_load_errors(void)
{
    fb_dit_config cfg = tm_config(2);
    char err[512];
    fb_dit *d = NULL;
    struct {
        tm_opts o;
        int want;
        const char *needle;
    } cases[] = {
        {{.skip = "blocks.1.cross_attn.norm_k.weight"}, FB_DIT_ERR_WEIGHTS,
         "dit.blocks.1.cross_attn.norm_k.weight is missing"},
        {{.misshape = "blocks.0.ffn.2.weight"}, FB_DIT_ERR_WEIGHTS, "dit.blocks.0.ffn.2.weight"},
        {{.misshape = "patch_embedding.weight"}, FB_DIT_ERR_WEIGHTS, "patch_embedding.weight"},
        {{.wrong_dt = "head.modulation"}, FB_DIT_ERR_WEIGHTS, "head.modulation has dtype I32"},
        {{.extra = 1}, FB_DIT_ERR_WEIGHTS, "unexpected tensor dit.blocks.2.stray.bias"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = 0;
        int rc = try_load(&cfg, &cases[i].o, &d, err, sizeof err);
        CHECK(rc == cases[i].want && d == NULL && strstr(err, cases[i].needle),
              "case %zu: rc %d, message \"%s\"", i, rc, err);
        printf("  load error %zu: %s\n", i, err);
    }
    /* a config that disagrees with the file: more layers than it has */
    fb_dit_config more = cfg;
    more.num_layers = 3;
    size_t sz;
    void *img = tm_build(&cfg, "dit.", 5, &sz);
    fb_safetensors *st = fb_st_open_memory(img, sz, err, sizeof err);
    CHECK(fb_dit_load(st, "dit.", &more, &d, err, sizeof err) == FB_DIT_ERR_WEIGHTS &&
              strstr(err, "blocks.2"), "3 layers: %s", err);
    /* fewer layers than the file: the extra block is refused */
    fb_dit_config fewer = cfg;
    fewer.num_layers = 1;
    CHECK(fb_dit_load(st, "dit.", &fewer, &d, err, sizeof err) == FB_DIT_ERR_WEIGHTS &&
              strstr(err, "unexpected tensor dit.blocks.1"), "1 layer: %s", err);
    /* a wrong prefix finds nothing */
    CHECK(fb_dit_load(st, "model.", &cfg, &d, err, sizeof err) == FB_DIT_ERR_WEIGHTS &&
              strstr(err, "model.patch_embedding.weight is missing"), "prefix: %s", err);
    /* bad configs */
    fb_dit_config bad = cfg;
    bad.num_heads = 3;
    CHECK(fb_dit_load(st, "dit.", &bad, &d, err, sizeof err) == FB_DIT_ERR_ARG, "heads 3");
    bad = cfg;
    bad.num_heads = 16;   /* head_dim 2 */
    CHECK(fb_dit_load(st, "dit.", &bad, &d, err, sizeof err) == FB_DIT_ERR_ARG, "head_dim 2");
    bad = cfg;
    bad.patch_size[0] = 2;
    CHECK(fb_dit_load(st, "dit.", &bad, &d, err, sizeof err) == FB_DIT_ERR_ARG, "patch t 2");
    fb_st_close(st);
    free(img);
    printf("dit load errors: %s\n", failures ? "FAIL" : "ok");
}

static void run_forward(const fb_dit *d, fb_kctx *kc, float *out)
{
    const fb_dit_config *cfg = fb_dit_get_config(d);
    char err[256];
    float ctx[5 * 16], x[4 * 2 * 4 * 6];
    for (int i = 0; i < 5 * 16; i++)
        ctx[i] = (float)((i * 37) % 11) / 11.0f - 0.5f;
    for (int i = 0; i < 4 * 2 * 4 * 6; i++)
        x[i] = (float)((i * 53) % 17) / 17.0f - 0.5f;
    fb_dit_text *t;
    if (fb_dit_text_prepare(d, kc, ctx, 5, NULL, &t, err, sizeof err)) {
        printf("text: %s\n", err);
        exit(1);
    }
    size_t sb = fb_dit_scratch_bytes(cfg, 2, 0, 6);
    void *s = malloc(sb);
    fb_dit_call c = {.x = x, .n_frames = 2, .height = 4, .width = 6, .t = 500.0f, .text = t,
                     .out = out};
    if (fb_dit_forward(d, kc, s, sb, &c, err, sizeof err)) {
        printf("forward: %s\n", err);
        exit(1);
    }
    free(s);
    fb_dit_text_free(t);
}

static void test_dtypes(fb_kctx *kc1, fb_kctx *kc2)
{
    fb_dit_config cfg = tm_config(2);
    char err[256];
    const size_t n = 4 * 2 * 4 * 6;
    float ref[4 * 2 * 4 * 6], got[4 * 2 * 4 * 6], again[4 * 2 * 4 * 6];
    fb_dtype dts[] = {FB_DT_F16, FB_DT_BF16};
    for (int i = 0; i < 2; i++) {
        /* the same values stored as F32 (rounded through the half type) and as the half type */
        tm_opts as_f32 = {.round_as = dts[i]}, as_half = {.dtype = dts[i], .round_as = dts[i]};
        fb_dit *a = NULL, *b = NULL;
        CHECK(try_load(&cfg, &as_f32, &a, err, sizeof err) == 0, "%s", err);
        CHECK(try_load(&cfg, &as_half, &b, err, sizeof err) == 0, "%s", err);
        if (!a || !b)
            return;
        run_forward(a, kc1, ref);
        run_forward(b, kc1, got);
        CHECK(memcmp(ref, got, n * sizeof(float)) == 0, "%s weights load differently",
              fb_dtype_name(dts[i]));
        /* thread count does not change the result */
        run_forward(b, kc2, again);
        CHECK(memcmp(got, again, n * sizeof(float)) == 0, "1 vs 2 threads differ");
        fb_dit_free(a);
        fb_dit_free(b);
    }
    printf("dit F16/BF16 weights, determinism: %s\n", failures ? "FAIL" : "ok");
}

static void test_call_errors(fb_kctx *kc)
{
    fb_dit_config cfg = tm_config(2);
    char err[512];
    fb_dit *d;
    if (try_load(&cfg, NULL, &d, err, sizeof err)) {
        printf("load: %s\n", err);
        exit(1);
    }
    float ctx[16 * 16] = {0};
    fb_dit_text *t;
    CHECK(fb_dit_text_prepare(d, kc, ctx, 0, NULL, &t, err, sizeof err) == FB_DIT_ERR_ARG,
          "0 context rows");
    CHECK(fb_dit_text_prepare(d, kc, ctx, 9, NULL, &t, err, sizeof err) == FB_DIT_ERR_ARG &&
              strstr(err, "text_len"), "9 rows > text_len 8: %s", err);
    CHECK(fb_dit_text_prepare(d, kc, ctx, 8, NULL, &t, err, sizeof err) == 0, "%s", err);

    const int tpf = 6, A = 1, W = 2;
    float x[4 * 3 * 4 * 6] = {0}, out[4 * 3 * 4 * 6];
    size_t sb = fb_dit_scratch_bytes(&cfg, 3, A + W, tpf);
    void *s = malloc(sb);
    fb_kvpool *pool;
    size_t page = fb_kv_frame_bytes(tpf, cfg.dim);
    fb_kvpool_init(&pool, page * 2 * (A + W) * 2, page, err, sizeof err);
    fb_kvcache *kv, *wrong;
    fb_kvcache_open(pool, 2, A, W, tpf, cfg.dim, &kv, err, sizeof err);
    fb_kvcache_open(pool, 1, A, W, tpf, cfg.dim, &wrong, err, sizeof err);
    fb_kv_plan *pl = malloc(sizeof *pl);

    fb_dit_call base = {.x = x, .n_frames = 3, .height = 4, .width = 6, .t = 0.0f, .text = t,
                        .out = out};
    fb_dit_call c = base;
    CHECK(fb_dit_forward(d, kc, s, sb, &c, err, sizeof err) == 0, "plain call: %s", err);
    c.height = 5;
    CHECK(fb_dit_forward(d, kc, s, sb, &c, err, sizeof err) == FB_DIT_ERR_ARG, "odd height");
    c = base;
    c.text = NULL;
    CHECK(fb_dit_forward(d, kc, s, sb, &c, err, sizeof err) == FB_DIT_ERR_ARG, "no text");
    c = base;
    c.t = 0.0f / 0.0f;
    CHECK(fb_dit_forward(d, kc, s, sb, &c, err, sizeof err) == FB_DIT_ERR_ARG, "NaN t");
    c = base;
    c.write_kv = 1;
    CHECK(fb_dit_forward(d, kc, s, sb, &c, err, sizeof err) == FB_DIT_ERR_ARG, "write, no plan");

    /* plans */
    fb_kvcache_plan(kv, 3, FB_KV_POS_WINDOW, pl, err, sizeof err);
    c = base;
    c.plan = pl;
    c.write_kv = 1;
    CHECK(fb_dit_forward(d, kc, s, sb, &c, err, sizeof err) == FB_DIT_ERR_ARG, "write, no cache");
    c.cache = wrong;
    CHECK(fb_dit_forward(d, kc, s, sb, &c, err, sizeof err) == FB_DIT_ERR_PLAN &&
              strstr(err, "cache shape"), "cache with 1 layer: %s", err);
    c.cache = kv;
    CHECK(fb_dit_forward(d, kc, s, sb, &c, err, sizeof err) == 0, "context pass: %s", err);
    fb_kvcache_commit(kv, pl);
    CHECK(fb_dit_forward(d, kc, s, sb, &c, err, sizeof err) == FB_DIT_ERR_PLAN &&
              strstr(err, "stale"), "stale plan: %s", err);
    fb_kvcache_plan(kv, 3, FB_KV_POS_WINDOW, pl, err, sizeof err);
    c.n_frames = 2;
    CHECK(fb_dit_forward(d, kc, s, sb, &c, err, sizeof err) == FB_DIT_ERR_PLAN, "plan for 3");
    c.n_frames = 3;
    CHECK(fb_dit_forward(d, kc, s, sb - 1, &c, err, sizeof err) == FB_DIT_ERR_SCRATCH,
          "short scratch");
    int saved = pl->past_pos[0];
    pl->past_pos[0] = FB_KV_MAX_POS;
    CHECK(fb_dit_forward(d, kc, s, sb, &c, err, sizeof err) == FB_DIT_ERR_PLAN, "position");
    pl->past_pos[0] = saved;
    saved = pl->past_slot[0];
    pl->past_slot[0] = A + W;
    CHECK(fb_dit_forward(d, kc, s, sb, &c, err, sizeof err) == FB_DIT_ERR_PLAN, "slot");
    pl->past_slot[0] = saved;
    /* a failed call wrote nothing: the same call now succeeds and commits */
    CHECK(fb_dit_forward(d, kc, s, sb, &c, err, sizeof err) == 0, "%s", err);
    fb_kvcache_commit(kv, pl);

    free(pl);
    free(s);
    fb_kvcache_close(kv);
    fb_kvcache_close(wrong);
    fb_kvpool_free(pool);
    fb_dit_text_free(t);
    fb_dit_free(d);
    printf("dit call validation: %s\n", failures ? "FAIL" : "ok");
}

int main(void)
{
    char err[256];
    fb_kctx *kc1, *kc2;
    if (fb_kctx_init(&kc1, 1, err, sizeof err) || fb_kctx_init(&kc2, 2, err, sizeof err)) {
        printf("%s\n", err);
        return 1;
    }
    test_load_errors();
    test_dtypes(kc1, kc2);
    test_call_errors(kc2);
    fb_kctx_free(kc1);
    fb_kctx_free(kc2);
    printf("%d failures\n", failures);
    return failures ? 1 : 0;
}
