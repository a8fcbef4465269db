/* The shipped default model (models/default/model.safetensors) against the PyTorch
 * reference's output for the same weights (tests/data/default_golden.safetensors, written by
 * tools/make_default_golden.py): one stream, a cut to a second prompt, every chunk's latents
 * and the decoded frames of two chunks.
 *
 * The weights are float16 in the file and both sides compute in float32 from the same rounded
 * values, so only summation order separates them; the tolerances allow for that growing over
 * six chunks of four denoising steps each. A failure right after retraining means the dump is
 * stale: run tools/make_default_golden.py again.
 *
 * usage: test_default_golden GOLDEN_FILE MODEL_FILE
 */
#include <stdint.h>

#include "engine/engine.h"
#include "engine/engine_internal.h"
#include "tests/engine/golden_util.h"

#define TOL_LATENT_ABS 2e-3
#define TOL_LATENT_REL 2e-3
#define TOL_PIXEL 3           /* 8-bit levels, for any pixel */
#define TOL_PIXEL_MEAN 0.25   /* mean absolute difference in levels */

static long meta_long(const fb_safetensors *g, const char *key)
{
    const char *v = fb_st_metadata(g, key);
    CHECK_MSG(v != NULL, "golden metadata %s is missing", key);
    return v ? strtol(v, NULL, 10) : -1;
}

static void compare_frames(const char *what, const uint8_t *got, const uint8_t *want, size_t n)
{
    int worst = 0;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)got[i] - (int)want[i]);
        worst = d > worst ? d : worst;
        sum += d;
    }
    double mean = n ? sum / (double)n : 0;
    printf("%s: max |diff| %d levels, mean %.4f\n", what, worst, mean);
    CHECK_MSG(worst <= TOL_PIXEL, "%s: a pixel differs by %d levels (tolerance %d)", what, worst,
              TOL_PIXEL);
    CHECK_MSG(mean <= TOL_PIXEL_MEAN, "%s: mean difference %.4f levels (tolerance %.2f)", what,
              mean, TOL_PIXEL_MEAN);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s GOLDEN_FILE MODEL_FILE\n", argv[0]);
        return 2;
    }
    (void)g_ints;   /* golden_util.h's integer reader: this dump holds none */
    char err[1024];
    fb_safetensors *g = fb_st_open(argv[1], err, sizeof err);
    if (!g) {
        fprintf(stderr, "%s\nwrite it with tools/make_default_golden.py\n", err);
        return 1;
    }
    fb_model *m = NULL;
    fb_model_params mp = fb_model_default_params();
    mp.backend = FB_BACKEND_CPU;
    fb_status st = fb_model_load(argv[2], &mp, &m, err, sizeof err);
    if (st != FB_OK) {
        fprintf(stderr, "cannot load %s: %s\n", argv[2], err);
        fb_st_close(g);
        return 1;
    }
    fb_model_info info;
    fb_model_get_info(m, &info);

    const long chunks = meta_long(g, "chunks"), switch_chunk = meta_long(g, "switch_chunk");
    const long seed = meta_long(g, "seed");
    const char *prompt_a = fb_st_metadata(g, "prompt_a"), *prompt_b = fb_st_metadata(g, "prompt_b");
    CHECK(prompt_a && prompt_b && chunks > 0 && chunks <= 64 && switch_chunk > 0);
    if (t_failures)
        goto out;

    const size_t lat_frame = (size_t)info.latent_channels * info.latent_height * info.latent_width;
    const int F = info.latent_frames_per_chunk;
    const int64_t numel = (int64_t)chunks * F * (int64_t)lat_frame;
    float *want = g_floats(g, "output.latents", numel);          /* [C, T, h, w] */
    float *got = calloc((size_t)numel, sizeof *got);             /* [C, T, h, w] */
    uint8_t *rgb = malloc(info.chunk_rgb_bytes);
    fb_stream *s = NULL;
    if (!want || !got || !rgb)
        goto done;
    st = fb_stream_open(m, prompt_a, (uint64_t)seed, &s, err, sizeof err);
    CHECK_MSG(st == FB_OK, "open: %s", err);
    if (st != FB_OK)
        goto done;
    const size_t plane = (size_t)info.latent_height * info.latent_width;
    const int64_t T = chunks * F;
    for (long c = 0; c < chunks; c++) {
        if (c == switch_chunk)
            CHECK(fb_stream_set_prompt(s, prompt_b, FB_TRANSITION_CUT, 0) == FB_OK);
        int n = 0;
        fb_chunk_info ci;
        st = fb_stream_next_chunk(s, rgb, info.chunk_rgb_bytes, &n, &ci);
        CHECK_MSG(st == FB_OK, "chunk %ld: %s", c, fb_stream_errmsg(s));
        if (st != FB_OK)
            break;
        /* The engine's latents are [F, C, h, w]; the dump's [C, T, h, w]. */
        const float *lat = fb__stream_last_latents(s);
        for (int f = 0; f < F; f++)
            for (int ch = 0; ch < info.latent_channels; ch++)
                memcpy(got + ((size_t)ch * T + (size_t)(c * F + f)) * plane,
                       lat + ((size_t)f * info.latent_channels + ch) * plane,
                       plane * sizeof(float));
        char name[64];
        snprintf(name, sizeof name, "output.c%ld.frames_u8", c);
        const fb_st_tensor *ft = fb_st_find(g, name);
        if (ft) {
            CHECK_MSG((size_t)ft->numel == (size_t)n * info.frame_bytes,
                      "%s has %lld bytes, the chunk %zu", name, (long long)ft->numel,
                      (size_t)n * info.frame_bytes);
            if ((size_t)ft->numel == (size_t)n * info.frame_bytes)
                compare_frames(name, rgb, ft->data, (size_t)ft->numel);
        }
    }
    double worst = g_compare("latents of all chunks", got, want, (size_t)numel, TOL_LATENT_ABS,
                             TOL_LATENT_REL);
    printf("latents: %ld chunks, max |diff| %.3g\n", chunks, worst);
done:
    fb_stream_free(s);
    free(rgb);
    free(got);
    free(want);
out:
    fb_model_free(m);
    fb_st_close(g);
    if (t_failures)
        fprintf(stderr, "%d failure(s); if the shipped weights changed, run "
                "tools/make_default_golden.py\n", t_failures);
    else
        printf("default model matches the reference\n");
    return t_failures ? 1 : 0;
}
