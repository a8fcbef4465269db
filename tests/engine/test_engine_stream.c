/* The stream API's behaviour on the golden tiny model (and variants of its config):
 *   determinism   same seed -> bit-identical frames twice, after close/reopen, after reset,
 *                 in two threads at once, and through fb_streams_next_chunk; another seed
 *                 differs; set_seed changes only later chunks;
 *   controls      pending prompt replaced, cut/recache/blend accepted, pin and anchor image;
 *   KV pool       a pool for 2 streams refuses the third with FB_E_NO_KV and a message saying
 *                 how many fit; freeing one lets the next open;
 *   absolute      "absolute" positions end the stream at frame 1024 with FB_E_LIMIT; reset
 *                 starts over;
 *   bad input     NULL everywhere, empty / blank / oversized prompts, wrong image size or
 *                 stride, small output buffers, bad transition or blend length, missing or
 *                 malformed model files, a config naming the bad field, missing tensors,
 *                 "default" not installed - each returns its status and a message, nothing
 *                 crashes.
 *
 * usage: test_engine_stream GOLDEN_DIR
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "engine/engine.h"
#include "tests/engine/model_util.h"
#include "tests/engine/test_util.h"

static char tiny[2048];
static fb_model *model;
static fb_model_info info;
static const char *PROMPT = "a red ball rolls across a wooden floor";

/* Generates n chunks of a fresh stream into out (n * chunk_rgb_bytes). */
static int gen(fb_model *m, const char *prompt, uint64_t seed, int n, uint8_t *out, int *frames)
{
    fb_model_info mi;
    fb_model_get_info(m, &mi);
    fb_stream *s = NULL;
    char err[512];
    if (fb_stream_open(m, prompt, seed, &s, err, sizeof err) != FB_OK) {
        fprintf(stderr, "open: %s\n", err);
        return -1;
    }
    *frames = 0;
    for (int c = 0; c < n; c++) {
        int k = 0;
        if (fb_stream_next_chunk(s, out + (size_t)*frames * mi.frame_bytes, mi.chunk_rgb_bytes,
                                 &k, NULL) != FB_OK) {
            fprintf(stderr, "chunk %d: %s\n", c, fb_stream_errmsg(s));
            fb_stream_free(s);
            return -1;
        }
        *frames += k;
    }
    fb_stream_free(s);
    return 0;
}

typedef struct {
    uint8_t *out;
    int frames, rc;
    uint64_t seed;
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    j->rc = gen(model, PROMPT, j->seed, 4, j->out, &j->frames);
    return NULL;
}

static void test_determinism(void)
{
    enum { N = 4 };
    size_t bytes = (size_t)N * info.chunk_rgb_bytes;
    uint8_t *a = malloc(bytes), *b = malloc(bytes), *c = malloc(bytes);
    int fa = 0, fb = 0, fc = 0;
    CHECK(gen(model, PROMPT, 11, N, a, &fa) == 0);
    CHECK(gen(model, PROMPT, 11, N, b, &fb) == 0);
    CHECK(fa == info.first_chunk_frames + (N - 1) * info.frames_per_chunk && fa == fb);
    CHECK_MSG(memcmp(a, b, (size_t)fa * info.frame_bytes) == 0, "same seed, different frames");
    CHECK(gen(model, PROMPT, 12, N, c, &fc) == 0);
    CHECK_MSG(memcmp(a, c, (size_t)fa * info.frame_bytes) != 0, "another seed, same frames");

    /* after a model reload */
    fb_model *m2 = NULL;
    char err[512];
    fb_model_params mp = fb_model_default_params();
    mp.n_threads = 1;   /* and another thread count */
    CHECK(fb_model_load(tiny, &mp, &m2, err, sizeof err) == FB_OK);
    if (m2) {
        memset(b, 0, bytes);
        CHECK(gen(m2, PROMPT, 11, N, b, &fb) == 0);
        CHECK_MSG(memcmp(a, b, (size_t)fa * info.frame_bytes) == 0,
                  "reloaded model, 1 thread: different frames");
        fb_model_free(m2);
    }

    /* two streams in two threads at once */
    job j1 = {b, 0, 0, 11}, j2 = {c, 0, 0, 11};
    memset(b, 0, bytes);
    memset(c, 0, bytes);
    pthread_t t1, t2;
    pthread_create(&t1, NULL, run_job, &j1);
    pthread_create(&t2, NULL, run_job, &j2);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK(j1.rc == 0 && j2.rc == 0);
    CHECK_MSG(memcmp(a, b, (size_t)fa * info.frame_bytes) == 0 &&
              memcmp(a, c, (size_t)fa * info.frame_bytes) == 0, "concurrent streams differ");

    /* reset: the same frames again, numbered from 0 */
    fb_stream *s = NULL;
    CHECK(fb_stream_open(model, PROMPT, 11, &s, err, sizeof err) == FB_OK);
    int n = 0, tot = 0;
    fb_chunk_info ci;
    for (int k = 0; k < 3; k++)
        CHECK(fb_stream_next_chunk(s, b, info.chunk_rgb_bytes, &n, &ci) == FB_OK);
    CHECK(fb_stream_reset(s) == FB_OK);
    for (int k = 0; k < N; k++) {
        CHECK(fb_stream_next_chunk(s, b + (size_t)tot * info.frame_bytes, info.chunk_rgb_bytes,
                                   &n, &ci) == FB_OK);
        CHECK(ci.chunk == k && ci.first_frame == tot && ci.n_frames == n);
        tot += n;
    }
    CHECK_MSG(tot == fa && memcmp(a, b, (size_t)fa * info.frame_bytes) == 0,
              "reset stream differs from a fresh one");

    /* set_seed: chunks before are unchanged, later ones differ */
    CHECK(fb_stream_reset(s) == FB_OK);
    tot = 0;
    for (int k = 0; k < N; k++) {
        if (k == 2)
            CHECK(fb_stream_set_seed(s, 999) == FB_OK);
        CHECK(fb_stream_next_chunk(s, b + (size_t)tot * info.frame_bytes, info.chunk_rgb_bytes,
                                   &n, &ci) == FB_OK);
        CHECK(ci.seed == (k < 2 ? 11u : 999u));
        tot += n;
    }
    size_t before = (size_t)(info.first_chunk_frames + info.frames_per_chunk) * info.frame_bytes;
    CHECK(memcmp(a, b, before) == 0);
    CHECK(memcmp(a + before, b + before, (size_t)fa * info.frame_bytes - before) != 0);
    fb_stream_free(s);

    /* the batched entry point gives what single calls give */
    fb_stream *ss[2] = {NULL, NULL};
    CHECK(fb_stream_open(model, PROMPT, 11, &ss[0], err, sizeof err) == FB_OK);
    CHECK(fb_stream_open(model, PROMPT, 12, &ss[1], err, sizeof err) == FB_OK);
    if (ss[0] && ss[1]) {
        uint8_t *outs[2] = {b, c};
        int nf[2];
        fb_chunk_info cis[2];
        fb_status sts[2];
        CHECK(fb_streams_next_chunk(ss, 2, outs, info.chunk_rgb_bytes, nf, cis, sts) == FB_OK);
        CHECK(sts[0] == FB_OK && sts[1] == FB_OK && nf[0] == info.first_chunk_frames);
        CHECK(memcmp(a, b, (size_t)nf[0] * info.frame_bytes) == 0);
        fb_stream *dup[2] = {ss[0], ss[0]};
        CHECK(fb_streams_next_chunk(dup, 2, outs, info.chunk_rgb_bytes, nf, cis, sts) ==
              FB_E_INVALID);
    }
    fb_stream_free(ss[0]);
    fb_stream_free(ss[1]);
    free(a);
    free(b);
    free(c);
}

static void test_controls(void)
{
    fb_stream *s = NULL;
    char err[512];
    CHECK(fb_stream_open(model, PROMPT, 3, &s, err, sizeof err) == FB_OK);
    if (!s)
        return;
    uint8_t *rgb = malloc(info.chunk_rgb_bytes);
    int n;
    fb_chunk_info ci;
    /* pin before any chunk, and while the window is still empty */
    CHECK(fb_stream_pin_anchor(s) == FB_E_STATE && strstr(fb_stream_errmsg(s), "chunk"));
    CHECK(fb_stream_next_chunk(s, rgb, info.chunk_rgb_bytes, &n, &ci) == FB_OK);
    CHECK(ci.prompt_changed == 0 && ci.n_anchor_frames == 0 && ci.ms_text > 0);
    CHECK(fb_stream_pin_anchor(s) == FB_E_STATE);
    /* the second prompt replaces the first before it applies */
    CHECK(fb_stream_set_prompt(s, "a green triangle spins", FB_TRANSITION_CUT, 0) == FB_OK);
    CHECK(fb_stream_set_prompt(s, "Two blue cubes slide on ice at sunset!", FB_TRANSITION_RECACHE,
                               0) == FB_OK);
    CHECK(fb_stream_next_chunk(s, rgb, info.chunk_rgb_bytes, &n, &ci) == FB_OK);
    CHECK(ci.prompt_changed == 1 && ci.n_anchor_frames == 2);
    CHECK(ci.recached == 0);   /* the window was still empty */
    CHECK(fb_stream_next_chunk(s, rgb, info.chunk_rgb_bytes, &n, &ci) == FB_OK);
    CHECK(ci.prompt_changed == 0 && ci.n_window_frames == 2);
    CHECK(fb_stream_set_prompt(s, PROMPT, FB_TRANSITION_RECACHE, 0) == FB_OK);
    CHECK(fb_stream_next_chunk(s, rgb, info.chunk_rgb_bytes, &n, &ci) == FB_OK);
    CHECK(ci.recached == 1 && ci.ms_recache > 0 && ci.prompt_changed == 1);
    /* blend over 3 chunks: progress 1/3, 2/3, 1, then done */
    CHECK(fb_stream_set_prompt(s, "Two blue cubes slide on ice at sunset!", FB_TRANSITION_BLEND,
                               3) == FB_OK);
    float want[] = {1.0f / 3.0f, 2.0f / 3.0f, 1.0f, 1.0f};
    for (int k = 0; k < 4; k++) {
        CHECK(fb_stream_next_chunk(s, rgb, info.chunk_rgb_bytes, &n, &ci) == FB_OK);
        CHECK_MSG(fabsf(ci.blend - want[k]) < 1e-6f && ci.prompt_changed == (k < 3),
                  "blend chunk %d: progress %g, changed %d", k, (double)ci.blend,
                  ci.prompt_changed);
    }
    /* pin now that the window holds frames */
    CHECK(fb_stream_pin_anchor(s) == FB_OK);
    CHECK(fb_stream_next_chunk(s, rgb, info.chunk_rgb_bytes, &n, &ci) == FB_OK);
    CHECK(ci.n_anchor_frames == 2);

    /* anchor from an image: a gradient of the model's size */
    uint8_t *img = malloc(info.frame_bytes);
    for (int y = 0; y < info.height; y++)
        for (int x = 0; x < info.width; x++) {
            uint8_t *p = img + ((size_t)y * info.width + x) * 3;
            p[0] = (uint8_t)(x * 4);
            p[1] = (uint8_t)(y * 4);
            p[2] = 128;
        }
    CHECK(fb_stream_set_anchor_image(s, img, info.width, info.height, (size_t)info.width * 3) ==
          FB_OK);
    CHECK(fb_stream_next_chunk(s, rgb, info.chunk_rgb_bytes, &n, &ci) == FB_OK);
    CHECK(ci.n_anchor_frames == 2);
    /* bad images change nothing */
    CHECK(fb_stream_set_anchor_image(s, img, info.width - 2, info.height,
                                     (size_t)info.width * 3) == FB_E_INVALID);
    CHECK(strstr(fb_stream_errmsg(s), "64x64") != NULL);
    CHECK(fb_stream_set_anchor_image(s, img, info.width, info.height + 8,
                                     (size_t)info.width * 3) == FB_E_INVALID);
    CHECK(fb_stream_set_anchor_image(s, img, info.width, info.height, 10) == FB_E_INVALID);
    CHECK(fb_stream_set_anchor_image(s, NULL, info.width, info.height, 0) == FB_E_INVALID);
    CHECK(fb_stream_next_chunk(s, rgb, info.chunk_rgb_bytes, &n, &ci) == FB_OK);
    /* an image anchor on a fresh stream, before its first chunk */
    fb_stream *s2 = NULL;
    CHECK(fb_stream_open(model, PROMPT, 3, &s2, err, sizeof err) == FB_OK);
    CHECK(fb_stream_set_anchor_image(s2, img, info.width, info.height, (size_t)info.width * 3) ==
          FB_OK);
    CHECK(fb_stream_next_chunk(s2, rgb, info.chunk_rgb_bytes, &n, &ci) == FB_OK);
    CHECK(ci.n_anchor_frames == 2 && ci.chunk == 0);
    fb_stream_free(s2);
    free(img);
    free(rgb);
    fb_stream_free(s);
}

static void test_pool(void)
{
    fb_model *m = NULL;
    char err[512];
    fb_model_params mp = fb_model_default_params();
    mp.max_streams = 2;
    mp.n_threads = 1;
    CHECK(fb_model_load(tiny, &mp, &m, err, sizeof err) == FB_OK);
    if (!m)
        return;
    fb_model_info mi;
    fb_model_get_info(m, &mi);
    CHECK(mi.max_streams == 2 && mi.kv_pool_bytes >= 2 * mi.kv_bytes_per_stream);
    /* 2 layers x (2 anchors + 3 window) frames x K and V of 16 tokens x 48 floats */
    CHECK(mi.kv_bytes_per_stream == (size_t)2 * 5 * 2 * 16 * 48 * 4);
    CHECK(fb_model_streams_available(m) == 2);
    fb_stream *a = NULL, *b = NULL, *c = NULL;
    CHECK(fb_stream_open(m, PROMPT, 1, &a, err, sizeof err) == FB_OK);
    CHECK(fb_model_streams_available(m) == 1);
    CHECK(fb_stream_open(m, PROMPT, 2, &b, err, sizeof err) == FB_OK);
    CHECK(fb_model_streams_available(m) == 0);
    fb_status st = fb_stream_open(m, PROMPT, 3, &c, err, sizeof err);
    CHECK_MSG(st == FB_E_NO_KV && c == NULL && strstr(err, "holds 2 stream"), "third open: %d %s",
              st, err);
    fb_stream_free(a);
    CHECK(fb_model_streams_available(m) == 1);
    CHECK(fb_stream_open(m, PROMPT, 3, &c, err, sizeof err) == FB_OK);
    fb_stream_free(b);
    fb_stream_free(c);
    fb_model_free(m);

    /* a budget that holds no stream is refused at load */
    mp.kv_budget_bytes = 1000;
    m = NULL;
    CHECK(fb_model_load(tiny, &mp, &m, err, sizeof err) == FB_E_INVALID && m == NULL);
    CHECK(strstr(err, "holds no stream") != NULL);
}

static void test_absolute(const char *dir)
{
    char path[512], err[512];
    temp_path(path, sizeof path, "absolute");
    static const cfg_edit e[] = {
        {"stream", "positions", "\"absolute\""},
        {"stream", "latent_height", "2"},
        {"stream", "latent_width", "2"},
        {"vae", "decoder_space_upscale", "[false, false, false]"},
    };
    CHECK(clone_model(tiny, path, e, 4, NULL) == 0);
    fb_model *m = NULL;
    fb_model_params mp = fb_model_default_params();
    mp.n_threads = 1;
    fb_status st = fb_model_load(path, &mp, &m, err, sizeof err);
    unlink(path);
    CHECK_MSG(st == FB_OK, "%s", err);
    if (!m)
        return;
    fb_model_info mi;
    fb_model_get_info(m, &mi);
    CHECK(mi.absolute_positions && mi.max_chunks == 512);
    fb_stream *s = NULL;
    CHECK(fb_stream_open(m, PROMPT, 1, &s, err, sizeof err) == FB_OK);
    uint8_t *rgb = malloc(mi.chunk_rgb_bytes);
    int n;
    fb_chunk_info ci;
    int64_t c = 0;
    while ((st = fb_stream_next_chunk(s, rgb, mi.chunk_rgb_bytes, &n, &ci)) == FB_OK && c < 600)
        c++;
    CHECK_MSG(st == FB_E_LIMIT && c == 512, "stream ended after %lld chunks with %d", (long long)c,
              st);
    CHECK(strstr(fb_stream_errmsg(s), "absolute") != NULL);
    /* still over until reset; reset starts again */
    CHECK(fb_stream_next_chunk(s, rgb, mi.chunk_rgb_bytes, &n, &ci) == FB_E_LIMIT);
    CHECK(fb_stream_reset(s) == FB_OK);
    CHECK(fb_stream_next_chunk(s, rgb, mi.chunk_rgb_bytes, &n, &ci) == FB_OK && ci.chunk == 0);
    free(rgb);
    fb_stream_free(s);
    fb_model_free(m);
    (void)dir;
}

static void test_bad_input(void)
{
    char err[1024];
    fb_model *m = NULL;
    fb_stream *s = NULL;
    /* loading */
    CHECK(fb_model_load(NULL, NULL, &m, err, sizeof err) == FB_E_INVALID && m == NULL);
    CHECK(fb_model_load(tiny, NULL, NULL, err, sizeof err) == FB_E_INVALID);
    CHECK(fb_model_load("", NULL, &m, err, sizeof err) == FB_E_INVALID);
    CHECK(fb_model_load("/nonexistent/flipbook/model.safetensors", NULL, &m, err, sizeof err) ==
          FB_E_NOT_FOUND && strstr(err, "No such file"));
    CHECK(fb_model_load("/", NULL, &m, err, sizeof err) == FB_E_IO);
    fb_model_params bad = fb_model_default_params();
    bad.n_threads = -1;
    CHECK(fb_model_load(tiny, &bad, &m, err, sizeof err) == FB_E_INVALID);

    /* "default" when nothing is installed: says so and where it looked */
    char dir[512];
    snprintf(dir, sizeof dir, "/tmp/flipbook-test-%ld-models", (long)getpid());
    mkdir(dir, 0700);
    setenv("FLIPBOOK_MODELS", dir, 1);
    CHECK(fb_model_load("default", NULL, &m, err, sizeof err) == FB_E_NOT_FOUND && m == NULL);
    CHECK_MSG(strstr(err, "default model") && strstr(err, "not there yet") && strstr(err, dir) &&
              strstr(err, "FLIPBOOK_MODELS"), "message: %s", err);
    /* ...and finds it when it is there */
    char sub[600], file[700];
    snprintf(sub, sizeof sub, "%s/default", dir);
    mkdir(sub, 0700);
    snprintf(file, sizeof file, "%s/model.safetensors", sub);
    static const cfg_edit none[] = {{"stream", "fps", "16"}};
    CHECK(clone_model(tiny, file, none, 1, NULL) == 0);
    fb_model_params mp = fb_model_default_params();
    mp.n_threads = 1;
    CHECK(fb_model_load("default", &mp, &m, err, sizeof err) == FB_OK);
    fb_model_free(m);
    m = NULL;
    unlink(file);
    rmdir(sub);
    rmdir(dir);
    unsetenv("FLIPBOOK_MODELS");

    /* malformed files: not safetensors; a config naming its bad field; missing tensors */
    char path[512];
    temp_path(path, sizeof path, "bad");
    FILE *f = fopen(path, "wb");
    fputs("this is not a model", f);
    fclose(f);
    CHECK(fb_model_load(path, NULL, &m, err, sizeof err) == FB_E_FORMAT && m == NULL);
    static const cfg_edit badcfg[] = {{"dit", "num_heads", "5"}};
    CHECK(clone_model(tiny, path, badcfg, 1, NULL) == 0);
    CHECK(fb_model_load(path, NULL, &m, err, sizeof err) == FB_E_FORMAT);
    CHECK_MSG(strstr(err, "dit.num_heads") != NULL, "message: %s", err);
    static const cfg_edit typo[] = {{"stream", "window_frame", "3"}};
    CHECK(clone_model(tiny, path, typo, 1, NULL) == 0);
    CHECK(fb_model_load(path, NULL, &m, err, sizeof err) == FB_E_FORMAT);
    CHECK_MSG(strstr(err, "stream.window_frame: unknown key") != NULL, "message: %s", err);
    CHECK(clone_model(tiny, path, none, 1, "dit.blocks.1.") == 0);
    CHECK(fb_model_load(path, NULL, &m, err, sizeof err) == FB_E_FORMAT);
    CHECK_MSG(strstr(err, "dit.blocks.1.") != NULL, "message: %s", err);
    CHECK(clone_model(tiny, path, none, 1, "tokenizer.") == 0);
    CHECK(fb_model_load(path, NULL, &m, err, sizeof err) == FB_E_FORMAT);
    CHECK_MSG(strstr(err, "tokenizer.spm") != NULL, "message: %s", err);
    unlink(path);

    /* streams */
    CHECK(fb_stream_open(NULL, PROMPT, 1, &s, err, sizeof err) == FB_E_INVALID);
    CHECK(fb_stream_open(model, PROMPT, 1, NULL, err, sizeof err) == FB_E_INVALID);
    CHECK(fb_stream_open(model, NULL, 1, &s, err, sizeof err) == FB_E_INVALID && s == NULL);
    CHECK(fb_stream_open(model, "", 1, &s, err, sizeof err) == FB_E_INVALID && strstr(err, "empty"));
    CHECK(fb_stream_open(model, " \t\n ", 1, &s, err, sizeof err) == FB_E_INVALID);
    char *huge = malloc(20000);
    memset(huge, 'a', 19999);
    huge[19999] = '\0';
    CHECK(fb_stream_open(model, huge, 1, &s, err, sizeof err) == FB_E_INVALID && s == NULL);
    /* long but allowed: cut at max_tokens */
    huge[2000] = '\0';
    for (int i = 0; i < 2000; i += 5)
        huge[i] = ' ';
    int nt = 0, nd = 0;
    CHECK(fb_model_prompt_tokens(model, huge, &nt, &nd) == FB_OK && nt == 24 && nd > 0);
    CHECK(fb_stream_open(model, huge, 1, &s, err, sizeof err) == FB_OK);
    uint8_t *rgb = malloc(info.chunk_rgb_bytes);
    int n = -1;
    fb_chunk_info ci;
    CHECK(fb_stream_next_chunk(s, NULL, info.chunk_rgb_bytes, &n, &ci) == FB_E_INVALID);
    CHECK(fb_stream_next_chunk(s, rgb, info.chunk_rgb_bytes - 1, &n, &ci) == FB_E_INVALID);
    CHECK(strstr(fb_stream_errmsg(s), "chunk_rgb_bytes") != NULL);
    CHECK(fb_stream_next_chunk(s, rgb, info.chunk_rgb_bytes, NULL, &ci) == FB_E_INVALID);
    CHECK(fb_stream_next_chunk(NULL, rgb, info.chunk_rgb_bytes, &n, &ci) == FB_E_INVALID);
    CHECK(fb_stream_next_chunk(s, rgb, info.chunk_rgb_bytes, &n, NULL) == FB_OK);
    CHECK(fb_stream_set_prompt(s, NULL, FB_TRANSITION_CUT, 0) == FB_E_INVALID);
    CHECK(fb_stream_set_prompt(s, "", FB_TRANSITION_CUT, 0) == FB_E_INVALID);
    CHECK(fb_stream_set_prompt(s, huge, (fb_transition)7, 0) == FB_E_INVALID);
    CHECK(fb_stream_set_prompt(s, PROMPT, FB_TRANSITION_BLEND, 0) == FB_E_INVALID);
    CHECK(fb_stream_set_prompt(s, PROMPT, FB_TRANSITION_BLEND, 1001) == FB_E_INVALID);
    CHECK(strstr(fb_stream_errmsg(s), "blend_chunks") != NULL);
    /* none of that disturbed the stream */
    CHECK(fb_stream_next_chunk(s, rgb, info.chunk_rgb_bytes, &n, &ci) == FB_OK && ci.chunk == 1 &&
          ci.prompt_changed == 0);
    CHECK(fb_stream_set_prompt(NULL, PROMPT, FB_TRANSITION_CUT, 0) == FB_E_INVALID);
    CHECK(fb_stream_set_seed(NULL, 1) == FB_E_INVALID);
    CHECK(fb_stream_pin_anchor(NULL) == FB_E_INVALID);
    CHECK(fb_stream_reset(NULL) == FB_E_INVALID);
    CHECK(fb_stream_set_anchor_image(NULL, rgb, 1, 1, 3) == FB_E_INVALID);
    CHECK(strcmp(fb_stream_errmsg(NULL), "stream is NULL") == 0);
    CHECK(fb_model_unknown_words(NULL, PROMPT, err, sizeof err, &n) == FB_E_INVALID);
    CHECK(fb_model_unknown_words(model, "", err, sizeof err, &n) == FB_E_INVALID);
    fb_model_info zero;
    fb_model_get_info(NULL, &zero);
    CHECK(zero.width == 0);
    fb_model_get_info(model, NULL);
    CHECK(fb_model_streams_available(NULL) == 0);
    fb_stream_free(NULL);
    fb_model_free(NULL);
    free(rgb);
    free(huge);
    fb_stream_free(s);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s GOLDEN_DIR\n", argv[0]);
        return 2;
    }
    snprintf(tiny, sizeof tiny, "%s/tiny_model.safetensors", argv[1]);
    char err[1024];
    fb_model_params mp = fb_model_default_params();
    mp.n_threads = 2;
    mp.max_streams = 4;
    fb_status st = fb_model_load(tiny, &mp, &model, err, sizeof err);
    CHECK_MSG(st == FB_OK, "%s", err);
    if (st != FB_OK)
        TEST_EXIT();
    fb_model_get_info(model, &info);
    test_determinism();
    test_controls();
    test_pool();
    test_absolute(argv[1]);
    test_bad_input();
    fb_model_free(model);
    TEST_EXIT();
}
