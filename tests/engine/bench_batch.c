/* fb_bench_batch - what batching streams buys: frames/s of N streams generated together
 * (fb_streams_next_chunk: one batched DiT pass per sampler step) against the same N streams
 * generated one after another (fb_stream_next_chunk each), and where a round's time goes.
 *
 * usage: fb_bench_batch --model PATH [--streams 1,2,4] [--chunks N] [--warmup N]
 *                       [--threads T] [--repeat R]
 *
 * A round is one chunk of every stream. The first --warmup rounds (prompt encoding, the cache
 * filling up) are not measured; then --chunks rounds are, --repeat times, and the best run is
 * reported (the machine is shared). Per round: wall ms, the DiT denoising passes, the context
 * pass, decoding, and the rest (prompt, staging, bookkeeping). In the one-by-one mode the parts
 * are the sums of every stream's chunk; in the batched mode the shared passes count once.
 * Not a test: it prints figures for docs/performance.md.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine.h"

#define MAX_N 16

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *const PROMPTS[] = {
    "a red ball rolls across a wooden floor",
    "Two blue cubes slide on ice at sunset!",
    "a green triangle spins",
    "a red ball and a blue cube",
};

typedef struct {
    double wall, dit, ctx, dec, total_parts;
    long frames;
} figures;

/* One measured run of n streams over `chunks` rounds, batched or not. */
static int measure(fb_model *m, int n, int batched, int warmup, int chunks, figures *out)
{
    fb_model_info info;
    fb_model_get_info(m, &info);
    fb_stream *ss[MAX_N] = {NULL};
    uint8_t *rgb[MAX_N] = {NULL};
    char err[512];
    int rc = 0;
    for (int i = 0; i < n; i++) {
        rgb[i] = malloc(info.chunk_rgb_bytes);
        if (!rgb[i] || fb_stream_open(m, PROMPTS[i % 4], 100 + (uint64_t)i, &ss[i], err,
                                      sizeof err) != FB_OK) {
            fprintf(stderr, "open: %s\n", err);
            rc = -1;
            goto out;
        }
    }
    memset(out, 0, sizeof *out);
    for (int r = 0; r < warmup + chunks; r++) {
        int nf[MAX_N];
        fb_chunk_info ci[MAX_N];
        fb_status sts[MAX_N];
        double t0 = now_s();
        if (batched) {
            if (fb_streams_next_chunk(ss, n, rgb, info.chunk_rgb_bytes, nf, ci, sts) != FB_OK) {
                fprintf(stderr, "batched chunk: %s\n", fb_stream_errmsg(ss[0]));
                rc = -1;
                goto out;
            }
        } else {
            for (int i = 0; i < n; i++)
                if (fb_stream_next_chunk(ss[i], rgb[i], info.chunk_rgb_bytes, &nf[i], &ci[i]) !=
                    FB_OK) {
                    fprintf(stderr, "chunk: %s\n", fb_stream_errmsg(ss[i]));
                    rc = -1;
                    goto out;
                }
        }
        double dt = now_s() - t0;
        if (r < warmup)
            continue;
        out->wall += dt;
        for (int i = 0; i < n; i++) {
            out->frames += nf[i];
            out->dec += ci[i].ms_decode;
            /* a shared pass is reported to every stream in it: count it once */
            if (!batched || i == 0) {
                out->dit += ci[i].ms_dit_steps;
                out->ctx += ci[i].ms_context;
            }
        }
    }
out:
    for (int i = 0; i < n; i++) {
        fb_stream_free(ss[i]);
        free(rgb[i]);
    }
    return rc;
}

int main(int argc, char **argv)
{
    const char *model = NULL;
    int counts[MAX_N], n_counts = 0, chunks = 8, warmup = 4, threads = 0, repeat = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--model") && v) {
            model = v;
            i++;
        } else if (!strcmp(a, "--streams") && v) {
            for (const char *p = v; *p && n_counts < MAX_N;) {
                int k = atoi(p);
                if (k < 1 || k > MAX_N) {
                    fprintf(stderr, "--streams: counts are 1..%d\n", MAX_N);
                    return 2;
                }
                counts[n_counts++] = k;
                p = strchr(p, ',');
                if (!p)
                    break;
                p++;
            }
            i++;
        } else if (!strcmp(a, "--chunks") && v) {
            chunks = atoi(v);
            i++;
        } else if (!strcmp(a, "--warmup") && v) {
            warmup = atoi(v);
            i++;
        } else if (!strcmp(a, "--threads") && v) {
            threads = atoi(v);
            i++;
        } else if (!strcmp(a, "--repeat") && v) {
            repeat = atoi(v);
            i++;
        } else {
            fprintf(stderr, "usage: %s --model PATH [--streams 1,2,4] [--chunks N] [--warmup N] "
                    "[--threads T] [--repeat R]\n", argv[0]);
            return 2;
        }
    }
    if (!model || chunks < 1 || warmup < 0 || threads < 0 || repeat < 1) {
        fprintf(stderr, "usage: %s --model PATH [--streams 1,2,4] [--chunks N] [--warmup N] "
                "[--threads T] [--repeat R]\n", argv[0]);
        return 2;
    }
    if (n_counts == 0) {
        counts[0] = 1;
        counts[1] = 2;
        counts[2] = 4;
        n_counts = 3;
    }
    int max_n = 1;
    for (int i = 0; i < n_counts; i++)
        max_n = counts[i] > max_n ? counts[i] : max_n;
    fb_model_params mp = fb_model_default_params();
    mp.n_threads = threads;
    mp.max_streams = max_n;
    mp.max_batch = max_n;
    fb_model *m = NULL;
    char err[1024];
    if (fb_model_load(model, &mp, &m, err, sizeof err) != FB_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    fb_model_info info;
    fb_model_get_info(m, &info);
    printf("model %s: %dx%d, latent %dx%dx%d, %d latent frames per chunk (%d video frames), "
           "anchors %d, window %d, %d steps; %d kernel threads; %.2f GFLOP DiT + %.2f GFLOP "
           "decode per chunk\n", info.name, info.width, info.height, info.latent_channels,
           info.latent_height, info.latent_width, info.latent_frames_per_chunk,
           info.frames_per_chunk, info.anchor_frames, info.window_frames, info.steps,
           info.threads_per_call, info.dit_gflop_per_chunk, info.decode_gflop_per_chunk);
    printf("%-8s %-10s %9s %9s %9s %9s %9s %9s %8s\n", "streams", "mode", "frames/s",
           "ms/round", "dit", "context", "decode", "other", "speedup");
    for (int ci = 0; ci < n_counts; ci++) {
        int n = counts[ci];
        double fps_one = 0;
        for (int batched = 0; batched < 2; batched++) {
            if (n == 1 && batched)
                continue;   /* one stream batched is one stream alone */
            figures best = {0};
            for (int r = 0; r < repeat; r++) {
                figures f;
                if (measure(m, n, batched, warmup, chunks, &f) != 0) {
                    fb_model_free(m);
                    return 1;
                }
                if (r == 0 || f.wall < best.wall)
                    best = f;
            }
            double fps = (double)best.frames / best.wall;
            double ms = best.wall * 1e3 / chunks;
            double dit = best.dit / chunks, ctx = best.ctx / chunks, dec = best.dec / chunks;
            if (!batched)
                fps_one = fps;
            printf("%-8d %-10s %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %7.2fx\n", n,
                   batched ? "batched" : "one-by-one", fps, ms, dit, ctx, dec,
                   ms - dit - ctx - dec, fps / fps_one);
            fflush(stdout);
        }
    }
    fb_model_free(m);
    return 0;
}
