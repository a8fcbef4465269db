/* Streams generated together (fb_streams_next_chunk) give exactly the frames they give alone,
 * and the model's shared execution contexts, on the golden tiny model:
 *   lockstep     4 streams with different seeds and prompts, one of them two chunks ahead,
 *                batched for 6 chunks: every frame and every chunk-info count equals the
 *                stream generated alone, with a cut, a recache and a blend switched on in three
 *                of them mid-run; again with max_batch 3 (groups) on 2 contexts;
 *   isolation    in a batch, a stream given a short buffer or a failed stream gets its own
 *                error while the others produce their frames; bad argument arrays are refused
 *                before any stream is touched;
 *   contexts     opening streams starts no threads (they share the model's contexts); a
 *                stream with own_threads starts its own and gives the same frames; 4 threads
 *                generating at once on 2 contexts give the frames of one thread; bad
 *                max_parallel_calls, max_batch, own_threads are refused.
 *
 * usage: test_batch_streams GOLDEN_DIR
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "engine/engine_internal.h"
#include "tests/engine/test_util.h"

#define NS 4
#define NCH 6
#define AHEAD 2   /* stream 3 runs this many chunks alone before joining */

static char tiny[2048];
static const char *PROMPTS[NS] = {
    "a red ball rolls across a wooden floor",
    "Two blue cubes slide on ice at sunset!",
    "a red ball rolls across a wooden floor",
    "a green triangle spins",
};
static const uint64_t SEEDS[NS] = {11, 12, 13, 14};

/* The prompt switch stream i makes before its chunk c (by the stream's own chunk index). */
static void steer(fb_stream *s, int i, int64_t c)
{
    if (i == 1 && c == 2)
        CHECK(fb_stream_set_prompt(s, "a green triangle spins", FB_TRANSITION_RECACHE, 0) ==
              FB_OK);
    if (i == 2 && c == 3)
        CHECK(fb_stream_set_prompt(s, "Two blue cubes slide on ice at sunset!",
                                   FB_TRANSITION_BLEND, 2) == FB_OK);
    if (i == 3 && c == 4)
        CHECK(fb_stream_set_prompt(s, "a red ball rolls across a wooden floor",
                                   FB_TRANSITION_CUT, 0) == FB_OK);
}

typedef struct {
    uint8_t *rgb;          /* every frame of the run */
    int frames;
    fb_chunk_info ci[NCH + AHEAD];
    int chunks;
} run;

static int chunks_of(int i)
{
    return i == 3 ? NCH + AHEAD : NCH;
}

static fb_model *load(int threads, int parallel, int max_batch)
{
    fb_model_params mp = fb_model_default_params();
    mp.n_threads = threads;
    mp.max_streams = NS + 1;
    mp.max_parallel_calls = parallel;
    mp.max_batch = max_batch;
    fb_model *m = NULL;
    char err[512];
    fb_status st = fb_model_load(tiny, &mp, &m, err, sizeof err);
    CHECK_MSG(st == FB_OK, "%s", err);
    return m;
}

static void run_alloc(run *r, const fb_model_info *info)
{
    memset(r, 0, sizeof *r);
    r->rgb = malloc((size_t)(NCH + AHEAD) * info->chunk_rgb_bytes);
}

/* Stream i alone, start to end. */
static void gen_alone(fb_model *m, int i, run *r, const fb_stream_params *sp)
{
    fb_model_info info;
    fb_model_get_info(m, &info);
    fb_stream *s = NULL;
    char err[512];
    CHECK(fb_stream_open_ex(m, PROMPTS[i], SEEDS[i], sp, &s, err, sizeof err) == FB_OK);
    if (!s)
        return;
    for (int c = 0; c < chunks_of(i); c++) {
        steer(s, i, c);
        int n = 0;
        fb_status st = fb_stream_next_chunk(s, r->rgb + (size_t)r->frames * info.frame_bytes,
                                            info.chunk_rgb_bytes, &n, &r->ci[c]);
        CHECK_MSG(st == FB_OK, "stream %d chunk %d: %s", i, c, fb_stream_errmsg(s));
        r->frames += n;
        r->chunks++;
    }
    fb_stream_free(s);
}

static int same_info(const fb_chunk_info *a, const fb_chunk_info *b)
{
    return a->chunk == b->chunk && a->first_frame == b->first_frame &&
           a->n_frames == b->n_frames && a->first_latent == b->first_latent &&
           a->seed == b->seed && a->prompt_changed == b->prompt_changed &&
           a->blend == b->blend && a->recached == b->recached &&
           a->n_anchor_frames == b->n_anchor_frames && a->n_window_frames == b->n_window_frames;
}

static void compare(const run *want, const run *got, const fb_model_info *info, int i,
                    const char *what)
{
    CHECK_MSG(got->chunks == want->chunks && got->frames == want->frames,
              "%s: stream %d made %d chunks / %d frames, alone %d / %d", what, i, got->chunks,
              got->frames, want->chunks, want->frames);
    if (got->frames == want->frames)
        CHECK_MSG(memcmp(got->rgb, want->rgb, (size_t)want->frames * info->frame_bytes) == 0,
                  "%s: stream %d: frames differ from the stream alone", what, i);
    for (int c = 0; c < want->chunks && c < got->chunks; c++)
        CHECK_MSG(same_info(&want->ci[c], &got->ci[c]), "%s: stream %d chunk %d: info differs",
                  what, i, c);
}

/* All four streams batched (stream 3 first runs AHEAD chunks alone). */
static void gen_batched(fb_model *m, run *r)
{
    fb_model_info info;
    fb_model_get_info(m, &info);
    fb_stream *ss[NS] = {NULL};
    char err[512];
    for (int i = 0; i < NS; i++)
        CHECK(fb_stream_open(m, PROMPTS[i], SEEDS[i], &ss[i], err, sizeof err) == FB_OK);
    for (int i = 0; i < NS; i++)
        if (!ss[i])
            goto out;
    for (int c = 0; c < AHEAD; c++) {
        steer(ss[3], 3, c);
        int n = 0;
        CHECK(fb_stream_next_chunk(ss[3], r[3].rgb + (size_t)r[3].frames * info.frame_bytes,
                                   info.chunk_rgb_bytes, &n, &r[3].ci[c]) == FB_OK);
        r[3].frames += n;
        r[3].chunks++;
    }
    for (int c = 0; c < NCH; c++) {
        uint8_t *outs[NS];
        int nf[NS];
        fb_chunk_info ci[NS];
        fb_status sts[NS];
        for (int i = 0; i < NS; i++) {
            steer(ss[i], i, fb_stream_chunk_index(ss[i]));
            outs[i] = r[i].rgb + (size_t)r[i].frames * info.frame_bytes;
        }
        fb_status st = fb_streams_next_chunk(ss, NS, outs, info.chunk_rgb_bytes, nf, ci, sts);
        CHECK_MSG(st == FB_OK, "batched chunk %d: %d", c, st);
        for (int i = 0; i < NS; i++) {
            CHECK_MSG(sts[i] == FB_OK, "batched chunk %d, stream %d: %s", c, i,
                      fb_stream_errmsg(ss[i]));
            r[i].ci[r[i].chunks++] = ci[i];
            r[i].frames += nf[i];
        }
    }
out:
    for (int i = 0; i < NS; i++)
        fb_stream_free(ss[i]);
}

static void test_lockstep(fb_model *m, run *alone)
{
    fb_model_info info;
    fb_model_get_info(m, &info);
    CHECK(info.max_batch == NS + 1 && info.max_parallel_calls == 1 && info.exec_bytes > 0);
    run got[NS];
    for (int i = 0; i < NS; i++)
        run_alloc(&got[i], &info);
    gen_batched(m, got);
    for (int i = 0; i < NS; i++)
        compare(&alone[i], &got[i], &info, i, "batch of 4");
    /* the switches really happened inside the batch */
    CHECK(got[1].ci[2].recached == 1 && got[1].ci[2].prompt_changed == 1);
    CHECK(got[2].ci[3].blend == 0.5f && got[2].ci[4].blend == 1.0f);
    CHECK(got[3].ci[4].prompt_changed == 1 && got[3].ci[4].chunk == 4);
    /* and the passes were shared: 4 streams per forward (stream 3's first chunks alone) */
    for (int i = 0; i < NS; i++)
        for (int c = i == 3 ? AHEAD : 0; c < got[i].chunks; c++)
            CHECK_MSG(got[i].ci[c].batch_size == NS, "stream %d chunk %d: batch of %d", i, c,
                      got[i].ci[c].batch_size);
    CHECK(got[3].ci[0].batch_size == 1 && alone[0].ci[1].batch_size == 1);
    for (int i = 0; i < NS; i++)
        free(got[i].rgb);

    /* groups of 3 on a model with 2 contexts */
    fb_model *m3 = load(2, 2, 3);
    if (m3) {
        fb_model_info i3;
        fb_model_get_info(m3, &i3);
        CHECK(i3.max_batch == 3 && i3.max_parallel_calls == 2 && i3.threads_per_call == 2);
        for (int i = 0; i < NS; i++)
            run_alloc(&got[i], &info);
        gen_batched(m3, got);
        CHECK(got[0].ci[1].batch_size == 3 && got[3].ci[AHEAD + 1].batch_size == 1);
        for (int i = 0; i < NS; i++) {
            compare(&alone[i], &got[i], &info, i, "groups of 3");
            free(got[i].rgb);
        }
        fb_model_free(m3);
    }
    /* max_batch 1: the batched call runs the streams one by one, still the same frames */
    fb_model *m1 = load(2, 1, 1);
    if (m1) {
        fb_model_info i1;
        fb_model_get_info(m1, &i1);
        CHECK(i1.max_batch == 1 && i1.exec_bytes == 0);
        for (int i = 0; i < NS; i++)
            run_alloc(&got[i], &info);
        gen_batched(m1, got);
        for (int i = 0; i < NS; i++) {
            compare(&alone[i], &got[i], &info, i, "max_batch 1");
            free(got[i].rgb);
        }
        fb_model_free(m1);
    }
}

static void test_isolation(fb_model *m, run *alone)
{
    fb_model_info info;
    fb_model_get_info(m, &info);
    fb_stream *ss[3] = {NULL, NULL, NULL};
    char err[512];
    for (int i = 0; i < 3; i++)
        CHECK(fb_stream_open(m, PROMPTS[i], SEEDS[i], &ss[i], err, sizeof err) == FB_OK);
    if (!ss[0] || !ss[1] || !ss[2])
        return;
    uint8_t *buf[3];
    for (int i = 0; i < 3; i++)
        buf[i] = malloc(info.chunk_rgb_bytes);
    int nf[3];
    fb_chunk_info ci[3];
    fb_status sts[3];

    /* bad arrays: refused, nothing moves */
    fb_stream *dup[2] = {ss[0], ss[0]};
    CHECK(fb_streams_next_chunk(dup, 2, buf, info.chunk_rgb_bytes, nf, ci, sts) ==
          FB_E_INVALID);
    fb_stream *hole[2] = {ss[0], NULL};
    CHECK(fb_streams_next_chunk(hole, 2, buf, info.chunk_rgb_bytes, nf, ci, sts) ==
          FB_E_INVALID);
    CHECK(fb_streams_next_chunk(ss, -1, buf, info.chunk_rgb_bytes, nf, ci, sts) == FB_E_INVALID);
    CHECK(fb_streams_next_chunk(ss, 3, NULL, info.chunk_rgb_bytes, nf, ci, sts) == FB_E_INVALID);
    CHECK(fb_streams_next_chunk(ss, 3, buf, info.chunk_rgb_bytes, nf, ci, NULL) == FB_E_INVALID);
    CHECK(fb_streams_next_chunk(ss, 0, buf, info.chunk_rgb_bytes, nf, ci, sts) == FB_OK);
    for (int i = 0; i < 3; i++)
        CHECK(fb_stream_chunk_index(ss[i]) == 0);

    /* stream 1 has no output buffer: its own FB_E_INVALID, the others go on */
    uint8_t *outs[3] = {buf[0], NULL, buf[2]};
    fb_status st = fb_streams_next_chunk(ss, 3, outs, info.chunk_rgb_bytes, nf, ci, sts);
    CHECK(st == FB_E_INVALID && sts[0] == FB_OK && sts[1] == FB_E_INVALID && sts[2] == FB_OK);
    CHECK(nf[1] == 0 && fb_stream_chunk_index(ss[1]) == 0 && strstr(fb_stream_errmsg(ss[1]),
                                                                       "out_rgb"));
    CHECK(nf[0] == info.first_chunk_frames && memcmp(buf[0], alone[0].rgb,
                                                      (size_t)nf[0] * info.frame_bytes) == 0);
    CHECK(memcmp(buf[2], alone[2].rgb, (size_t)nf[2] * info.frame_bytes) == 0);

    /* a failed stream: FB_E_STATE for it, frames for the others */
    ss[2]->failed = 1;
    snprintf(ss[2]->fail_reason, sizeof ss[2]->fail_reason, "test");
    fb_stream *two[3] = {ss[1], ss[2], ss[0]};
    uint8_t *outs2[3] = {buf[1], buf[2], buf[0]};
    st = fb_streams_next_chunk(two, 3, outs2, info.chunk_rgb_bytes, nf, ci, sts);
    CHECK(st == FB_E_STATE && sts[0] == FB_OK && sts[1] == FB_E_STATE && sts[2] == FB_OK);
    CHECK(ci[0].chunk == 0 && ci[2].chunk == 1);
    CHECK(memcmp(buf[1], alone[1].rgb, (size_t)nf[0] * info.frame_bytes) == 0);
    CHECK(memcmp(buf[0], alone[0].rgb + (size_t)info.first_chunk_frames * info.frame_bytes,
                 (size_t)nf[2] * info.frame_bytes) == 0);
    CHECK(fb_stream_reset(ss[2]) == FB_OK);
    for (int i = 0; i < 3; i++) {
        free(buf[i]);
        fb_stream_free(ss[i]);
    }
}

static int threads_now(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int n = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1)
            break;
    if (f)
        fclose(f);
    return n;
}

typedef struct {
    fb_model *m;
    int i;
    run r;
} job;

static void *run_job(void *p)
{
    job *j = p;
    gen_alone(j->m, j->i, &j->r, NULL);
    return NULL;
}

static void test_contexts(run *alone)
{
    fb_model *m = load(3, 2, 0);
    if (!m)
        return;
    fb_model_info info;
    fb_model_get_info(m, &info);
    CHECK(info.threads_per_call == 3 && info.max_parallel_calls == 2);
    /* 2 contexts of 3 threads: 2 workers each, started at load */
    int t0 = threads_now();
    fb_stream *ss[NS] = {NULL};
    char err[512];
    for (int i = 0; i < NS; i++)
        CHECK(fb_stream_open(m, PROMPTS[i], SEEDS[i], &ss[i], err, sizeof err) == FB_OK);
    int t1 = threads_now();
    CHECK_MSG(t1 == t0, "opening %d streams started %d threads", NS, t1 - t0);
    for (int i = 0; i < NS; i++)
        fb_stream_free(ss[i]);
    fb_stream_params sp = fb_stream_default_params();
    sp.own_threads = 2;
    fb_stream *own = NULL;
    CHECK(fb_stream_open_ex(m, PROMPTS[0], SEEDS[0], &sp, &own, err, sizeof err) == FB_OK);
    CHECK_MSG(threads_now() == t0 + 1, "own_threads 2 should start one worker, %d started",
              threads_now() - t0);
    fb_stream_free(own);
    sp.own_threads = -1;
    CHECK(fb_stream_open_ex(m, PROMPTS[0], 1, &sp, &own, err, sizeof err) == FB_E_INVALID &&
          own == NULL && strstr(err, "own_threads"));

    /* a stream on its own threads gives the frames of the shared ones */
    run r;
    run_alloc(&r, &info);
    sp.own_threads = 1;
    gen_alone(m, 1, &r, &sp);
    compare(&alone[1], &r, &info, 1, "own threads");
    free(r.rgb);

    /* four callers at once on two contexts */
    job jobs[NS];
    pthread_t th[NS];
    for (int i = 0; i < NS; i++) {
        jobs[i].m = m;
        jobs[i].i = i;
        run_alloc(&jobs[i].r, &info);
        pthread_create(&th[i], NULL, run_job, &jobs[i]);
    }
    for (int i = 0; i < NS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < NS; i++) {
        compare(&alone[i], &jobs[i].r, &info, i, "4 threads, 2 contexts");
        free(jobs[i].r.rgb);
    }
    for (int i = 0; i < m->n_exec; i++)
        CHECK(m->exec[i].busy == 0);
    fb_model_free(m);

    /* bad parameters */
    fb_model_params mp = fb_model_default_params();
    fb_model *bad = NULL;
    mp.max_parallel_calls = -1;
    CHECK(fb_model_load(tiny, &mp, &bad, err, sizeof err) == FB_E_INVALID && !bad &&
          strstr(err, "max_parallel_calls"));
    mp.max_parallel_calls = 1;
    mp.max_batch = 65;
    CHECK(fb_model_load(tiny, &mp, &bad, err, sizeof err) == FB_E_INVALID && !bad &&
          strstr(err, "max_batch"));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s GOLDEN_DIR\n", argv[0]);
        return 2;
    }
    snprintf(tiny, sizeof tiny, "%s/tiny_model.safetensors", argv[1]);
    fb_model *m = load(2, 1, 0);
    if (!m)
        TEST_EXIT();
    fb_model_info info;
    fb_model_get_info(m, &info);
    run alone[NS];
    for (int i = 0; i < NS; i++) {
        run_alloc(&alone[i], &info);
        gen_alone(m, i, &alone[i], NULL);
    }
    /* the streams differ from each other: the comparisons below mean something */
    CHECK(memcmp(alone[0].rgb, alone[2].rgb, info.frame_bytes * 8) != 0);
    test_lockstep(m, alone);
    test_isolation(m, alone);
    test_contexts(alone);
    for (int i = 0; i < NS; i++)
        free(alone[i].rgb);
    fb_model_free(m);
    TEST_EXIT();
}
