/* tests/text/test_t5.c - the umT5 encoder against the upstream dump (umt5.safetensors).
 *
 * argv[1] is the folder of the upstream golden files; the test exits 77 (skipped) when the
 * file is absent. Each of the two padded sequences is encoded on its real tokens only and
 * compared row by row on those tokens: output.hidden, the residual stream after each block,
 * block 0's attention and feed-forward outputs; then block 0's position bias [4, 8, 8] and the
 * bucket of every distance -99..99 exactly. Also: rows past the length are zero, a failed
 * call leaves the output untouched, and bad ids / sizes / missing tensors give messages. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/safetensors.h"
#include "engine/t5.h"
#include "kernels/kernels.h"
#include "tests/text/text_test_util.h"

#define ATOL 2e-5
#define RTOL 1e-5

typedef struct {
    const fb_safetensors *st;
    int seq, n, dim, seq_len;
    char what[32];
} dump_ctx;

static void on_dump(void *user, const char *name, const float *data, int rows, int cols) {
    dump_ctx *d = user;
    char ref_name[96];
    if (strcmp(name, "hidden") == 0) snprintf(ref_name, sizeof ref_name, "output.hidden");
    else snprintf(ref_name, sizeof ref_name, "inter.%s", name);
    const fb_st_tensor *t = fb_st_find(d->st, ref_name);
    if (!t) return; /* only block 0's attn/ffn outputs are in the dump */
    CHECK(rows == d->n && cols == d->dim);
    CHECK(t->dtype == FB_DT_F32 && t->ndim == 3 && t->shape[1] == d->seq_len);
    float *want = malloc((size_t)t->numel * sizeof(float));
    fb_st_to_f32(t, want);
    char what[128];
    snprintf(what, sizeof what, "seq%d %s", d->seq, ref_name);
    compare_f32(what, data, want + (size_t)d->seq * d->seq_len * d->dim, (size_t)rows * cols,
                ATOL, RTOL);
    free(want);
    snprintf(d->what, sizeof d->what, "%s", name);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s UPSTREAM_GOLDEN_DIR\n", argv[0]);
        return 2;
    }
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/umt5.safetensors", argv[1]);
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        printf("SKIP: %s not found\n", path);
        return TEST_SKIP_CODE;
    }
    fclose(probe);
    fb_safetensors *st = fb_st_open(path, err, sizeof err);
    CHECK_MSG(st != NULL, "%s", err);
    if (!st) return 1;

    fb_text_config cfg = {.vocab = 128, .dim = 32, .dim_attn = 32, .dim_ffn = 64,
                          .num_heads = 4, .num_layers = 2, .num_buckets = 32,
                          .max_distance = 128, .shared_pos = 0, .eps = 1e-6f,
                          .max_tokens = 100};
    snprintf(cfg.arch, sizeof cfg.arch, "umt5");
    fb_t5 *t5 = NULL;
    CHECK_MSG(fb_t5_load(st, "weight.", &cfg, &t5, err, sizeof err) == 0, "%s", err);
    if (!t5) return 1;
    fb_kctx *kc = NULL;
    CHECK(fb_kctx_init(&kc, 2, err, sizeof err) == 0);

    const fb_st_tensor *ids_t = fb_st_find(st, "input.ids");
    const fb_st_tensor *mask_t = fb_st_find(st, "input.mask");
    CHECK(ids_t && mask_t && ids_t->dtype == FB_DT_I64 && ids_t->shape[0] == 2 &&
          ids_t->shape[1] == 100);
    const int S = 100, D = cfg.dim;
    size_t sb = fb_t5_scratch_bytes(t5, S);
    void *scratch = malloc(sb);
    float *out = malloc((size_t)S * D * sizeof(float));
    for (int seq = 0; seq < 2; seq++) {
        int64_t ids64[100], mask64[100];
        memcpy(ids64, (const int64_t *)ids_t->data + seq * S, sizeof ids64);
        memcpy(mask64, (const int64_t *)mask_t->data + seq * S, sizeof mask64);
        int32_t ids[100];
        int n = 0;
        for (int i = 0; i < S; i++)
            if (mask64[i]) ids[n++] = (int32_t)ids64[i];
        CHECK(n == (seq == 0 ? 97 : 21));
        dump_ctx d = {.st = st, .seq = seq, .n = n, .dim = D, .seq_len = S};
        for (int i = 0; i < S * D; i++) out[i] = 1234.0f;
        fb_t5_call c = {.ids = ids, .n_ids = n, .out = out, .out_rows = S, .dump = on_dump,
                        .dump_user = &d};
        CHECK_MSG(fb_t5_encode(t5, kc, scratch, sb, &c, err, sizeof err) == 0, "%s", err);
        CHECK(strcmp(d.what, "hidden") == 0);
        int zero = 1;
        for (int i = n * D; i < S * D; i++) zero &= out[i] == 0.0f;
        CHECK_MSG(zero, "rows past the length must be zero");
    }

    /* Position bias and buckets. */
    const fb_st_tensor *pb = fb_st_find(st, "inter.block0.pos_bias");
    CHECK(pb && pb->numel == 4 * 8 * 8);
    if (pb) {
        float got[256], want[256];
        CHECK(fb_t5_pos_bias(t5, 0, 8, 8, got) == 0);
        fb_st_to_f32(pb, want);
        compare_f32("inter.block0.pos_bias", got, want, 256, 0, 0);
    }
    CHECK(fb_t5_pos_bias(t5, 2, 8, 8, out) == -1);
    const fb_st_tensor *bt = fb_st_find(st, "inter.bucket_of_rel");
    CHECK(bt && bt->dtype == FB_DT_I64 && bt->numel == 199);
    if (bt) {
        int bad = 0;
        for (int r = -99; r <= 99; r++) {
            int64_t want;
            memcpy(&want, (const int64_t *)bt->data + (r + 99), sizeof want);
            int got = fb_t5_bucket(r, 32, 128, 1);
            if (got != want) {
                fprintf(stderr, "bucket(%d) = %d, upstream %lld\n", r, got, (long long)want);
                bad++;
            }
        }
        CHECK(bad == 0);
        printf("inter.bucket_of_rel: 199 distances, %d mismatches\n", bad);
    }

    /* Errors: a failed call writes nothing. */
    for (int i = 0; i < S * D; i++) out[i] = 7.0f;
    int32_t bad_ids[3] = {5, 128, 1};
    fb_t5_call c = {.ids = bad_ids, .n_ids = 3, .out = out, .out_rows = S};
    CHECK(fb_t5_encode(t5, kc, scratch, sb, &c, err, sizeof err) == -1);
    printf("bad id: %s\n", err);
    c.ids = (const int32_t[]){5, 6, 1};
    c.out_rows = 2;
    CHECK(fb_t5_encode(t5, kc, scratch, sb, &c, err, sizeof err) == -1);
    c.out_rows = S;
    CHECK(fb_t5_encode(t5, kc, scratch, 16, &c, err, sizeof err) == -1);
    printf("small scratch: %s\n", err);
    c.n_ids = 0;
    CHECK(fb_t5_encode(t5, kc, scratch, sb, &c, err, sizeof err) == -1);
    int untouched = 1;
    for (int i = 0; i < S * D; i++) untouched &= out[i] == 7.0f;
    CHECK(untouched);
    fb_t5 *none = NULL;
    CHECK(fb_t5_load(st, "nothing.", &cfg, &none, err, sizeof err) == -1 && none == NULL);
    printf("missing: %s\n", err);
    fb_text_config wrong = cfg;
    wrong.dim_ffn = 65;
    CHECK(fb_t5_load(st, "weight.", &wrong, &none, err, sizeof err) == -1);
    printf("shape: %s\n", err);
    wrong = cfg;
    wrong.num_heads = 5;
    CHECK(fb_t5_load(st, "weight.", &wrong, &none, err, sizeof err) == -1);
    printf("heads: %s\n", err);

    free(out);
    free(scratch);
    fb_t5_free(t5);
    fb_kctx_free(kc);
    fb_st_close(st);
    TEST_EXIT();
}
