/* Classifier-free guidance (sampler.guidance) against the reference's dump guidance.safetensors
 * (tests/data/golden/README.md): the golden tiny model's tensors under a config with
 * guidance 3, prompt A, 2 chunks.
 *   single     one stream: every step's conditional, unconditional and combined flow, its
 *              input, the context pass and the chunk latents; the chunk report counts the
 *              extra passes (time and FLOPs), and later chunks allocate nothing;
 *   lockstep   two guided streams through fb_streams_next_chunk (uncond calls batched like
 *              the others): each bit for bit what it gives alone;
 *   steering   a recache and a blend on a guided stream run (they touch only the prompt's
 *              conditioning);
 *   off        "guidance": 1 written out gives exactly the model without the key, which the
 *              stream golden (stream.safetensors) pins;
 *   empty      the public API still refuses an empty prompt on a guided model.
 *
 * usage: test_engine_guidance GOLDEN_DIR
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/engine.h"
#include "engine/engine_internal.h"
#include "tests/engine/golden_util.h"
#include "tests/engine/model_util.h"

#include "tests/engine/alloc_count.h"   /* n_allocs: heap allocations so far */

/* Same tolerances as the stream goldens of test_engine_golden. */
#define TOL_CHAIN 2e-4
#define RTOL 1e-4

enum { CH = 2, STEPS = 4, NMAX = 512 };

static const char *gdir;
static size_t LAT;   /* floats per latent frame */
static int F;        /* latent frames per chunk */

typedef struct {
    float x_in[CH][STEPS + 1][NMAX];
    float flow[CH][STEPS + 1][NMAX];
    float flow_c[CH][STEPS][NMAX], flow_u[CH][STEPS][NMAX];
    int events[CH][STEPS + 1];
    int has_cu[CH][STEPS + 1];
} record;

static void on_step(void *ctx, const fb__step_event *ev)
{
    record *r = ctx;
    size_t n = (size_t)ev->n_frames * LAT;
    int c = (int)ev->chunk, k = ev->step;
    if (k < 0 || c >= CH || k > STEPS || n > NMAX)
        return;
    r->events[c][k]++;
    memcpy(r->x_in[c][k], ev->x_in, n * sizeof(float));
    memcpy(r->flow[c][k], ev->flow, n * sizeof(float));
    r->has_cu[c][k] = ev->flow_c && ev->flow_u;
    if (k < STEPS && ev->flow_c && ev->flow_u) {
        memcpy(r->flow_c[c][k], ev->flow_c, n * sizeof(float));
        memcpy(r->flow_u[c][k], ev->flow_u, n * sizeof(float));
    }
}

static fb_model *load(const char *path, int max_streams)
{
    fb_model_params mp = fb_model_default_params();
    mp.n_threads = 2;
    mp.max_streams = max_streams;
    fb_model *m = NULL;
    char err[1024];
    fb_status st = fb_model_load(path, &mp, &m, err, sizeof err);
    CHECK_MSG(st == FB_OK, "load %s: %s", path, err);
    return st == FB_OK ? m : NULL;
}

static fb_stream *open_stream(fb_model *m, const char *prompt, uint64_t seed)
{
    fb_stream *s = NULL;
    char err[512];
    fb_status st = fb_stream_open(m, prompt, seed, &s, err, sizeof err);
    CHECK_MSG(st == FB_OK, "open: %s", err);
    return st == FB_OK ? s : NULL;
}

/* Runs n chunks of s alone; latents into lat (n * F * LAT floats), reports into ci. */
static int run_alone(fb_model *m, fb_stream *s, int n, float *lat, fb_chunk_info *ci,
                     long *allocs_after_first)
{
    fb_model_info info;
    fb_model_get_info(m, &info);
    uint8_t *rgb = malloc(info.chunk_rgb_bytes);
    int ok = rgb != NULL;
    for (int c = 0; c < n && ok; c++) {
        int nf = 0;
        long a0 = n_allocs;
        fb_status st = fb_stream_next_chunk(s, rgb, info.chunk_rgb_bytes, &nf, &ci[c]);
        if (c > 0 && allocs_after_first)
            *allocs_after_first += n_allocs - a0;
        CHECK_MSG(st == FB_OK, "chunk %d: %s", c, fb_stream_errmsg(s));
        ok = st == FB_OK;
        if (ok)
            memcpy(lat + (size_t)c * F * LAT, fb__stream_last_latents(s),
                   (size_t)F * LAT * sizeof(float));
    }
    free(rgb);
    return ok;
}

static record rec;   /* large: static */

static void case_single(fb_model *guided, fb_model *plain, const fb_safetensors *g,
                        const char *prompt, uint64_t seed, float *lat_out)
{
    fb_stream *s = open_stream(guided, prompt, seed);
    if (!s)
        return;
    memset(&rec, 0, sizeof rec);
    fb__stream_set_observer(s, on_step, &rec);
    fb_chunk_info ci[CH];
    long allocs = 0;
    if (!run_alone(guided, s, CH, lat_out, ci, &allocs)) {
        fb_stream_free(s);
        return;
    }
    CHECK_MSG(allocs == 0, "guided chunks after the first allocated %ld times", allocs);
    size_t n = (size_t)F * LAT;
    char name[96], what[128];
    for (int c = 0; c < CH; c++) {
        snprintf(name, sizeof name, "input.c%d.noise.d0", c);
        float *d0 = g_floats(g, name, (int64_t)n);
        if (d0)
            CHECK_MSG(memcmp(d0, rec.x_in[c][0], n * sizeof(float)) == 0,
                      "chunk %d: initial noise differs from the reference's counter RNG", c);
        free(d0);
        for (int k = 0; k < STEPS; k++) {
            /* one event per guided step, after both calls */
            CHECK_MSG(rec.events[c][k] == 1 && rec.has_cu[c][k],
                      "chunk %d step %d: %d events, flow_c/flow_u %s", c, k, rec.events[c][k],
                      rec.has_cu[c][k] ? "given" : "missing");
            static const char *const parts[] = {"x_in", "flow_c", "flow_u", "flow"};
            const float *got[] = {rec.x_in[c][k], rec.flow_c[c][k], rec.flow_u[c][k],
                                  rec.flow[c][k]};
            for (int p = 0; p < 4; p++) {
                snprintf(name, sizeof name, "inter.c%d.s%d.%s", c, k, parts[p]);
                float *want = g_floats(g, name, (int64_t)n);
                if (!want)
                    continue;
                snprintf(what, sizeof what, "guided c%d s%d %s", c, k, parts[p]);
                g_compare(what, got[p], want, n, TOL_CHAIN, RTOL);
                free(want);
            }
            /* the reported flow is the combination of the two reported calls, exactly */
            float comb[NMAX];
            fb_cfg_combine(comb, rec.flow_c[c][k], rec.flow_u[c][k], 3.0f, n);
            CHECK_MSG(memcmp(comb, rec.flow[c][k], n * sizeof(float)) == 0,
                      "chunk %d step %d: flow is not v_u + 3 (v_c - v_u)", c, k);
        }
        CHECK(rec.events[c][STEPS] == 1 && !rec.has_cu[c][STEPS]);   /* context: one call */
        snprintf(name, sizeof name, "inter.c%d.ctx.flow", c);
        float *cf = g_floats(g, name, (int64_t)n);
        if (cf) {
            snprintf(what, sizeof what, "guided c%d context-pass flow", c);
            g_compare(what, rec.flow[c][STEPS], cf, n, TOL_CHAIN, RTOL);
            free(cf);
        }
    }
    float *want = g_floats(g, "output.latents", (int64_t)CH * n);
    if (want) {
        double worst = g_compare("guided latents", lat_out, want, CH * n, TOL_CHAIN, RTOL);
        printf("guidance 3: %d chunks within %.2g of the reference\n", CH, worst);
        free(want);
    }

    /* The report: 4 extra passes per chunk, counted with the denoising steps. */
    fb_stream *p = open_stream(plain, prompt, seed);
    if (p) {
        static float plat[CH * NMAX];
        fb_chunk_info pci[CH];
        if (run_alone(plain, p, 1, plat, pci, NULL)) {
            double want_g = pci[0].gflop_dit * (2 * STEPS + 1) / (STEPS + 1);
            CHECK_MSG(fabs(ci[0].gflop_dit - want_g) <= 1e-9 * want_g,
                      "guided chunk reports %.6g GFLOP, want %.6g (9 passes instead of 5)",
                      ci[0].gflop_dit, want_g);
        }
        fb_stream_free(p);
    }
    CHECK(ci[0].ms_dit_steps > 0 && ci[0].ms_context > 0);
    fb_stream_free(s);
}

/* Two guided streams in lockstep give what each gives alone, bit for bit. */
static void case_lockstep(fb_model *guided, const char *prompt, uint64_t seed,
                          const float *lat_alone)
{
    static const char *prompt_b = "two blue cubes slide on ice at sunset";
    const uint64_t seed_b = 77;
    size_t n = (size_t)F * LAT;
    static float lat_b_alone[CH * NMAX];
    fb_chunk_info ci[CH];
    fb_stream *b = open_stream(guided, prompt_b, seed_b);
    if (!b || !run_alone(guided, b, CH, lat_b_alone, ci, NULL)) {
        fb_stream_free(b);
        return;
    }
    fb_stream_free(b);

    fb_stream *ss[2] = {open_stream(guided, prompt, seed), open_stream(guided, prompt_b, seed_b)};
    if (!ss[0] || !ss[1]) {
        fb_stream_free(ss[0]);
        fb_stream_free(ss[1]);
        return;
    }
    fb_model_info info;
    fb_model_get_info(guided, &info);
    uint8_t *rgb0 = malloc(info.chunk_rgb_bytes), *rgb1 = malloc(info.chunk_rgb_bytes);
    uint8_t *const outs[2] = {rgb0, rgb1};
    for (int c = 0; c < CH; c++) {
        int nf[2];
        fb_chunk_info inf[2];
        fb_status sts[2];
        fb_status st = fb_streams_next_chunk(ss, 2, outs, info.chunk_rgb_bytes, nf, inf, sts);
        CHECK_MSG(st == FB_OK, "lockstep chunk %d: %s / %s", c, fb_stream_errmsg(ss[0]),
                  fb_stream_errmsg(ss[1]));
        if (st != FB_OK)
            break;
        CHECK_MSG(inf[0].batch_size == 2 && inf[1].batch_size == 2,
                  "lockstep chunk %d ran in batches of %d and %d", c, inf[0].batch_size,
                  inf[1].batch_size);
        CHECK_MSG(memcmp(fb__stream_last_latents(ss[0]), lat_alone + (size_t)c * n,
                         n * sizeof(float)) == 0,
                  "lockstep chunk %d: stream A differs from its run alone", c);
        CHECK_MSG(memcmp(fb__stream_last_latents(ss[1]), lat_b_alone + (size_t)c * n,
                         n * sizeof(float)) == 0,
                  "lockstep chunk %d: stream B differs from its run alone", c);
    }
    free(rgb0);
    free(rgb1);
    fb_stream_free(ss[0]);
    fb_stream_free(ss[1]);
}

/* Transitions on a guided stream change only the conditional prompt and keep running. */
static void case_steering(fb_model *guided, const char *prompt, uint64_t seed)
{
    fb_stream *s = open_stream(guided, prompt, seed);
    if (!s)
        return;
    static float lat[4 * NMAX];
    fb_chunk_info ci[4];
    CHECK(run_alone(guided, s, 2, lat, ci, NULL));
    CHECK(fb_stream_set_prompt(s, "a yellow ball bounces off a white wall",
                               FB_TRANSITION_RECACHE, 0) == FB_OK);
    CHECK(run_alone(guided, s, 1, lat, ci, NULL) && ci[0].recached);
    CHECK(fb_stream_set_prompt(s, "rain falls on a quiet city street at night",
                               FB_TRANSITION_BLEND, 2) == FB_OK);
    CHECK(run_alone(guided, s, 2, lat, ci, NULL));
    int finite = 1;
    for (size_t i = 0; i < (size_t)F * LAT; i++)
        finite &= isfinite(lat[i]);
    CHECK(finite);
    fb_stream_free(s);
}

/* "guidance": 1 in the file is the model without the key, and both match stream.safetensors. */
static void case_off(fb_model *plain, fb_model *one)
{
    char path[2048], err[512];
    snprintf(path, sizeof path, "%s/stream.safetensors", gdir);
    fb_safetensors *g = fb_st_open(path, err, sizeof err);
    CHECK_MSG(g != NULL, "%s", err);
    if (!g)
        return;
    enum { N5 = 5 };
    const char *prompt = fb_st_metadata(g, "prompt");
    const char *seed_s = fb_st_metadata(g, "seed");
    CHECK(prompt && seed_s);
    if (prompt && seed_s) {
        uint64_t seed = strtoull(seed_s, NULL, 10);
        static float a[N5 * NMAX], b[N5 * NMAX];
        fb_chunk_info ci[N5];
        fb_stream *sa = open_stream(plain, prompt, seed), *sb = open_stream(one, prompt, seed);
        if (sa && sb && run_alone(plain, sa, N5, a, ci, NULL) &&
            run_alone(one, sb, N5, b, ci, NULL)) {
            size_t n = (size_t)N5 * F * LAT;
            CHECK_MSG(memcmp(a, b, n * sizeof(float)) == 0,
                      "\"guidance\": 1 changed the stream");
            float *want = g_floats(g, "output.latents", (int64_t)n);
            if (want) {
                g_compare("guidance 1 stream latents", b, want, n, TOL_CHAIN, RTOL);
                free(want);
            }
        }
        fb_stream_free(sa);
        fb_stream_free(sb);
    }
    fb_st_close(g);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s GOLDEN_DIR\n", argv[0]);
        return 2;
    }
    gdir = argv[1];
    char tiny[2048], path[2048], err[512];
    snprintf(tiny, sizeof tiny, "%s/tiny_model.safetensors", gdir);
    snprintf(path, sizeof path, "%s/guidance.safetensors", gdir);
    fb_safetensors *g = fb_st_open(path, err, sizeof err);
    CHECK_MSG(g != NULL, "%s", err);
    if (!g)
        TEST_EXIT();
    const char *gs = fb_st_metadata(g, "guidance");
    const char *prompt = fb_st_metadata(g, "prompt");
    const char *seed_s = fb_st_metadata(g, "seed");
    CHECK_MSG(gs && prompt && seed_s && atof(gs) == 3.0, "guidance.safetensors metadata");
    if (!gs || !prompt || !seed_s) {
        fb_st_close(g);
        TEST_EXIT();
    }
    uint64_t seed = strtoull(seed_s, NULL, 10);

    char guided_path[1024], one_path[1024];
    temp_path(guided_path, sizeof guided_path, "guided");
    temp_path(one_path, sizeof one_path, "guidance1");
    static const cfg_edit g3[] = {{"sampler", "guidance", "3"}};
    static const cfg_edit g1[] = {{"sampler", "guidance", "1"}};
    CHECK(clone_model(tiny, guided_path, g3, 1, NULL) == 0);
    CHECK(clone_model(tiny, one_path, g1, 1, NULL) == 0);
    fb_model *plain = load(tiny, 2);
    fb_model *guided = load(guided_path, 3);
    fb_model *one = load(one_path, 2);
    if (plain && guided && one) {
        fb_model_info info;
        fb_model_get_info(guided, &info);
        F = info.latent_frames_per_chunk;
        LAT = (size_t)info.latent_channels * info.latent_height * info.latent_width;
        CHECK(info.steps == STEPS && info.guidance == 3.0f && (size_t)F * LAT <= NMAX);
        /* the reference's empty prompt is just EOS, as the engine tokenizes it */
        int n_ids = 0;
        int64_t *ids = g_ints(g, "input.uncond.ids", &n_ids);
        CHECK(ids && n_ids == 1 && ids[0] == fb_tok_eos_id(guided->tok));
        free(ids);
        static float lat[CH * NMAX];
        case_single(guided, plain, g, prompt, seed, lat);
        case_lockstep(guided, prompt, seed, lat);
        case_steering(guided, prompt, seed);
        case_off(plain, one);

        /* users still may not send an empty prompt */
        fb_stream *s = NULL;
        fb_status st = fb_stream_open(guided, "", 1, &s, err, sizeof err);
        CHECK_MSG(st == FB_E_INVALID && strstr(err, "prompt is empty"),
                  "empty prompt on a guided model: status %d, '%s'", (int)st, err);
        fb_stream_free(s);
    }
    fb_model_free(plain);
    fb_model_free(guided);
    fb_model_free(one);
    remove(guided_path);
    remove(one_path);
    fb_st_close(g);
    TEST_EXIT();
}
