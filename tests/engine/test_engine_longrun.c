/* A long stream keeps memory flat and positions bounded: after the first chunks, generating
 * more than 10,000 latent frames performs no heap allocation at all (every malloc-family call
 * of the statically linked engine, kernels and KV cache is counted through the linker's --wrap)
 * and the resident set does not grow; every chunk attends to at most anchors + window frames
 * at window positions below anchors + window + chunk. The run steers between two prompts the
 * model's prompt cache already holds: blends over 200 chunks (each re-prepares the DiT's text
 * K/V), recaches and cuts; allocations are counted inside the chunk calls (fb_stream_set_prompt
 * itself tokenizes into fresh memory, outside them).
 *
 * To stay within seconds it runs the golden tiny model's weights with 2x2 latents and no
 * spatial upsampling in the decoder (the same tensors: neither shape depends on the frame
 * size), so the work per chunk is small while the whole path (text, DiT steps, context pass,
 * cache roll, decode) runs every chunk.
 *
 * usage: test_engine_longrun GOLDEN_DIR [LATENT_FRAMES]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "engine/engine.h"
#include "engine/engine_internal.h"
#include "tests/engine/model_util.h"
#include "tests/engine/test_util.h"

#include "tests/engine/alloc_count.h"   /* n_allocs: heap allocations so far */

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

typedef struct {
    int max_pos, max_past, bound, past_bound, chunks_seen;
} pos_stats;

static void on_step(void *ctx, const fb__step_event *ev)
{
    pos_stats *p = ctx;
    if (ev->step != 0)
        return;
    p->chunks_seen++;
    if (ev->plan->n_past > p->max_past)
        p->max_past = ev->plan->n_past;
    for (int i = 0; i < ev->plan->n_past; i++)
        if (ev->plan->past_pos[i] > p->max_pos)
            p->max_pos = ev->plan->past_pos[i];
    for (int i = 0; i < ev->plan->n_frames; i++)
        if (ev->plan->frame_pos[i] > p->max_pos)
            p->max_pos = ev->plan->frame_pos[i];
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s GOLDEN_DIR [LATENT_FRAMES]\n", argv[0]);
        return 2;
    }
    long want_frames = argc > 2 ? atol(argv[2]) : 10200;
    char src[2048], path[512], err[1024];
    snprintf(src, sizeof src, "%s/tiny_model.safetensors", argv[1]);
    temp_path(path, sizeof path, "longrun");
    static const cfg_edit small[] = {
        {"stream", "latent_height", "2"},
        {"stream", "latent_width", "2"},
        {"vae", "decoder_space_upscale", "[false, false, false]"},
    };
    CHECK(clone_model(src, path, small, 3, NULL) == 0);
    fb_model_params mp = fb_model_default_params();
    mp.n_threads = 1;
    fb_model *m = NULL;
    fb_status st = fb_model_load(path, &mp, &m, err, sizeof err);
    unlink(path);
    CHECK_MSG(st == FB_OK, "%s", err);
    if (st != FB_OK)
        TEST_EXIT();
    fb_model_info info;
    fb_model_get_info(m, &info);
    fb_stream *s = NULL;
    CHECK(fb_stream_open(m, "a red ball rolls across a wooden floor", 5, &s, err, sizeof err) ==
          FB_OK);
    pos_stats ps = {0, 0, 0, 0, 0};
    fb__stream_set_observer(s, on_step, &ps);
    uint8_t *rgb = malloc(info.chunk_rgb_bytes);
    int F = info.latent_frames_per_chunk;
    long chunks = (want_frames + F - 1) / F;
    int n;
    fb_chunk_info ci;
    /* warm-up: the first chunk encodes the prompt and fills the caches; chunk 2 encodes the
     * second prompt into the prompt cache; by chunk 4 the window has rolled */
    static const char *const prompts[2] = {"a red ball rolls across a wooden floor",
                                           "Two blue cubes slide on ice at sunset!"};
    for (int i = 0; i < 4; i++) {
        if (i == 2 || i == 3)
            CHECK(fb_stream_set_prompt(s, prompts[i - 2 == 0], FB_TRANSITION_CUT, 0) == FB_OK);
        CHECK(fb_stream_next_chunk(s, rgb, info.chunk_rgb_bytes, &n, &ci) == FB_OK);
    }
    long rss0 = rss_kib();
    long a_start = n_allocs;
    long allocs = 0;
    int64_t frames = 0;
    int blends = 0, blend_steps = 0, recaches = 0, cur = 0;
    for (long c = 4; c < chunks; c++) {
        /* steering: a blend every 500 chunks (to the other prompt, over 200 chunks), a
         * recache back 250 chunks later, an occasional cut */
        if (c % 500 == 10) {
            cur ^= 1;
            CHECK(fb_stream_set_prompt(s, prompts[cur], FB_TRANSITION_BLEND, 200) == FB_OK);
            blends++;
        } else if (c % 500 == 260) {
            cur ^= 1;
            CHECK(fb_stream_set_prompt(s, prompts[cur], FB_TRANSITION_RECACHE, 0) == FB_OK);
        } else if (c % 500 == 400) {
            CHECK(fb_stream_set_prompt(s, prompts[cur], FB_TRANSITION_CUT, 0) == FB_OK);
        }
        long a0 = n_allocs;
        st = fb_stream_next_chunk(s, rgb, info.chunk_rgb_bytes, &n, &ci);
        allocs += n_allocs - a0;
        if (st != FB_OK) {
            CHECK_MSG(0, "chunk %ld: %s", c, fb_stream_errmsg(s));
            break;
        }
        blend_steps += ci.blend < 1.0f;
        recaches += ci.recached;
        frames += n;
    }
    CHECK_MSG(a_start > 0, "the allocation counter saw nothing (is --wrap in effect?)");
    /* (the last blend may be cut short by the end of the run) */
    CHECK_MSG(blends >= 10 && blend_steps >= (blends - 1) * 199 && recaches >= blends - 1,
              "%d blends (%d steps), %d recaches", blends, blend_steps, recaches);
    long rss1 = rss_kib();
    CHECK(ci.chunk == chunks - 1);
    CHECK(ci.first_latent == (chunks - 1) * F);
    CHECK_MSG(allocs == 0, "%ld heap allocations during %ld chunks", allocs, chunks - 4);
    long a_rest = n_allocs - a_start;   /* set_prompt's token arrays */
#if defined(__SANITIZE_ADDRESS__)
    /* AddressSanitizer keeps freed blocks in quarantine; OpenBLAS's small-matrix SGEMM kernels
     * (a shared library, outside the count above) malloc and free a buffer per call, so the
     * resident set grows under ASan only. */
    printf("AddressSanitizer build: resident-set check skipped\n");
#else
    CHECK_MSG(rss1 - rss0 <= 256, "resident set grew by %ld KiB (%ld -> %ld)", rss1 - rss0, rss0,
              rss1);
#endif
    int bound = info.anchor_frames + info.window_frames + F;
    CHECK_MSG(ps.max_pos < bound, "a position reached %d (bound %d)", ps.max_pos, bound);
    CHECK_MSG(ps.max_past <= info.anchor_frames + info.window_frames, "attended %d past frames",
              ps.max_past);
    CHECK(ps.chunks_seen == chunks);
    CHECK(frames == (int64_t)(chunks - 4) * info.frames_per_chunk);
    printf("%ld chunks, %ld latent frames, %lld pixel frames: %ld allocations in chunks after "
           "warm-up (%ld in set_prompt), %d blends of 200 chunks, %d recaches, RSS %ld -> %ld "
           "KiB, max position %d, max past frames %d\n", chunks, chunks * F,
           (long long)ci.first_frame + n, allocs, a_rest, blends, recaches, rss0, rss1,
           ps.max_pos, ps.max_past);
    free(rgb);
    fb_stream_free(s);
    fb_model_free(m);
    TEST_EXIT();
}
