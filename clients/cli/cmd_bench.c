/* clients/cli/cmd_bench.c - `flipbook bench`: how fast the engine runs on this machine.
 *
 * Measures, in this order: the machine's single-precision GEMM peak (a few large cblas_sgemm
 * calls on all cores: the ceiling the DiT's linear layers can reach), then the engine on one
 * stream: a warm-up chunk (it also encodes the prompt), then enough chunks for the KV window to
 * fill so that the figures describe the steady state. Reports milliseconds per chunk split by
 * part (text encoder, DiT denoising steps, context pass, decode), frames per second, achieved
 * GFLOP/s from the analytic FLOP count of the config against the measured peak, the KV bytes
 * each stream takes and the peak RSS of the process.
 */
#include <cblas.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "clients/cli/cli.h"
#include "engine/engine.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Best of a few n x n x n SGEMMs, in GFLOP/s, with OpenBLAS on `threads` threads. */
static double sgemm_peak(int n, int reps, int threads)
{
    float *a = malloc((size_t)n * n * sizeof *a);
    float *b = malloc((size_t)n * n * sizeof *b);
    float *c = malloc((size_t)n * n * sizeof *c);
    if (!a || !b || !c) {
        free(a);
        free(b);
        free(c);
        return 0;
    }
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = (float)((i * 7) % 13) * 0.01f;
        b[i] = (float)((i * 5) % 11) * 0.01f;
    }
    openblas_set_num_threads(threads);
    double best = 0;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                n);   /* warm-up: thread start, page faults */
    for (int r = 0; r < reps; r++) {
        double t = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f,
                    c, n);
        double dt = now_s() - t;
        double g = 2.0 * n * n * (double)n / dt / 1e9;
        if (g > best)
            best = g;
    }
    /* The engine's kernels run OpenBLAS single-threaded inside their own workers. */
    openblas_set_num_threads(1);
    free(a);
    free(b);
    free(c);
    return best;
}

static int run_bench(const fb_cli_command *self, int argc, char **argv);

const fb_cli_command fb_cmd_bench = {
    .name = "bench",
    .summary = "Measure engine speed: ms per chunk by part, frames/s, GFLOP/s, memory.",
    .usage = "bench --model PATH|default [--chunks N] [--threads N] [--json]",
    .details =
        "First measures this machine's SGEMM peak (OpenBLAS, all cores), then runs one stream:\n"
        "a warm-up chunk, then N chunks (default: until the KV window is full, plus two).\n"
        "GFLOP/s counts the DiT's and decoder's arithmetic analytically from the model config.\n"
        "--json prints one JSON object instead of the table.",
    .run = run_bench,
};

static int run_bench(const fb_cli_command *self, int argc, char **argv)
{
    const char *model_path = "default", *prompt = "a lighthouse on a cliff at dusk, waves";
    long long chunks = 0, threads = 0, seed = 1, gemm_n = 1024;
    int json = 0;
    fb_cli_opt opts[] = {
        {"model", 'm', FB_OPT_STRING, "PATH", "model file, or 'default'", &model_path, 0, 0, 0,
         0},
        {"chunks", 'c', FB_OPT_INT, "N", "chunks to time after the warm-up", &chunks, 0, 1,
         100000, 0},
        {"threads", 't', FB_OPT_INT, "N", "CPU threads (default: all cores)", &threads, 0, 0,
         1024, 0},
        {"prompt", 'p', FB_OPT_STRING, "TEXT", "prompt of the timed stream", &prompt, 0, 0, 0,
         0},
        {"seed", 's', FB_OPT_INT, "S", "seed of the timed stream", &seed, 0, 0, 9.2e18, 0},
        {"gemm-size", 0, FB_OPT_INT, "N", "size of the SGEMM peak test (1024)", &gemm_n, 0, 64,
         8192, 0},
        {"json", 0, FB_OPT_FLAG, NULL, "print one JSON object", &json, 0, 0, 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0, 0},
    };
    int prc = fb_cli_parse(self, opts, argc, argv);
    if (prc == -1)
        return FB_CLI_OK;
    if (prc != FB_CLI_OK)
        return prc;
    fb_cli_install_signals();

    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int gemm_threads = threads > 0 ? (int)threads : (int)(cores > 0 ? cores : 1);
    double peak = sgemm_peak((int)gemm_n, 5, gemm_threads);

    char err[1024];
    fb_model_params mp = fb_model_default_params();
    mp.n_threads = (int)threads;
    fb_model *model = NULL;
    double t_load = now_s();
    fb_status st = fb_model_load(model_path, &mp, &model, err, sizeof err);
    t_load = now_s() - t_load;
    if (st != FB_OK) {
        fprintf(stderr, "flipbook bench: cannot load model: %s\n", err);
        return FB_CLI_FAIL;
    }
    fb_model_info info;
    fb_model_get_info(model, &info);
    if (chunks <= 0) {
        int fill = info.latent_frames_per_chunk > 0
                       ? (info.anchor_frames + info.window_frames) / info.latent_frames_per_chunk
                       : 0;
        chunks = fill + 2;
        if (info.max_chunks > 0 && chunks > info.max_chunks - 1)
            chunks = info.max_chunks - 1;
        if (chunks < 1)
            chunks = 1;
    }

    int rc = FB_CLI_FAIL;
    fb_stream *stream = NULL;
    uint8_t *rgb = malloc(info.chunk_rgb_bytes);
    if (!rgb) {
        fprintf(stderr, "flipbook bench: out of memory\n");
        goto done;
    }
    double t_open = now_s();
    st = fb_stream_open(model, prompt, (uint64_t)seed, &stream, err, sizeof err);
    t_open = now_s() - t_open;
    if (st != FB_OK) {
        fprintf(stderr, "flipbook bench: %s\n", err);
        goto done;
    }
    int n = 0;
    fb_chunk_info warm, ci;
    if (fb_stream_next_chunk(stream, rgb, info.chunk_rgb_bytes, &n, &warm) != FB_OK) {
        fprintf(stderr, "flipbook bench: %s\n", fb_stream_errmsg(stream));
        goto done;
    }
    double sum_text = 0, sum_steps = 0, sum_ctx = 0, sum_dec = 0, sum_total = 0;
    double gf_dit = 0, gf_dec = 0;
    long long frames = 0, done_chunks = 0;
    for (long long c = 0; c < chunks && !fb_cli_interrupted(); c++) {
        if (fb_stream_next_chunk(stream, rgb, info.chunk_rgb_bytes, &n, &ci) != FB_OK) {
            fprintf(stderr, "flipbook bench: %s\n", fb_stream_errmsg(stream));
            goto done;
        }
        sum_text += ci.ms_text;
        sum_steps += ci.ms_dit_steps;
        sum_ctx += ci.ms_context;
        sum_dec += ci.ms_decode;
        sum_total += ci.ms_total;
        gf_dit += ci.gflop_dit;
        gf_dec += ci.gflop_decode;
        frames += n;
        done_chunks++;
        if (!json)
            fprintf(stderr, "%schunk %" PRId64 ": %.1f ms%s", isatty(2) ? "\r" : "", ci.chunk,
                    ci.ms_total, isatty(2) ? "   " : "\n");
    }
    if (!json && isatty(2))
        fputc('\n', stderr);
    if (done_chunks == 0)
        goto done;

    double k = (double)done_chunks;
    double dit_s = (sum_steps + sum_ctx) / 1000.0, dec_s = sum_dec / 1000.0;
    double dit_gflops = dit_s > 0 ? gf_dit / dit_s : 0;
    double dec_gflops = dec_s > 0 ? gf_dec / dec_s : 0;
    double fps = sum_total > 0 ? (double)frames * 1000.0 / sum_total : 0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss_mib = (double)ru.ru_maxrss / 1024.0;   /* ru_maxrss is in KiB on Linux */

    if (json) {
        printf("{\"model\": \"%s\", \"backend\": \"%s\", \"width\": %d, \"height\": %d, "
               "\"threads\": %d, \"chunks\": %lld, \"frames_per_chunk\": %d, "
               "\"ms_load\": %.1f, \"ms_open\": %.1f, \"ms_first_chunk\": %.2f, "
               "\"ms_text_first\": %.2f, \"ms_per_chunk\": %.3f, \"ms_text\": %.3f, "
               "\"ms_dit_steps\": %.3f, \"ms_context\": %.3f, \"ms_decode\": %.3f, "
               "\"frames_per_s\": %.3f, \"realtime_factor\": %.4f, \"gflop_dit_per_chunk\": %.4f, "
               "\"gflops_dit\": %.2f, \"gflop_decode_per_chunk\": %.4f, \"gflops_decode\": %.2f, "
               "\"sgemm_peak_gflops\": %.2f, \"dit_fraction_of_peak\": %.4f, "
               "\"kv_bytes_per_stream\": %zu, \"streams_fit\": %d, \"stream_bytes\": %zu, "
               "\"weight_bytes\": %zu, \"peak_rss_mib\": %.1f, \"guidance\": %g}\n",
               info.name, info.backend, info.width, info.height, gemm_threads, done_chunks,
               info.frames_per_chunk, t_load * 1e3, t_open * 1e3, warm.ms_total, warm.ms_text,
               sum_total / k, sum_text / k, sum_steps / k, sum_ctx / k, sum_dec / k, fps,
               fps / info.fps, gf_dit / k, dit_gflops, gf_dec / k, dec_gflops, peak,
               peak > 0 ? dit_gflops / peak : 0, info.kv_bytes_per_stream, info.max_streams,
               info.stream_bytes, info.weight_bytes, rss_mib, (double)info.guidance);
    } else {
        printf("model            %s (%s), %dx%d at %g fps, %d latent frames per chunk, "
               "%d steps + context pass", info.name, info.backend, info.width, info.height,
               info.fps, info.latent_frames_per_chunk, info.steps);
        if (info.guidance != 1.0f)
            printf(", guidance %g", (double)info.guidance);
        printf("\n");
        printf("load / open      %.1f ms / %.1f ms; first chunk %.1f ms (text %.1f ms)\n",
               t_load * 1e3, t_open * 1e3, warm.ms_total, warm.ms_text);
        printf("per chunk        %.2f ms over %lld chunks (%d frames each)\n", sum_total / k,
               done_chunks, info.frames_per_chunk);
        printf("  text           %.2f ms\n", sum_text / k);
        /* a guided step is two passes: under the prompt and under the empty prompt */
        printf("  DiT steps      %.2f ms  (%d passes)\n", sum_steps / k,
               info.guidance != 1.0f ? 2 * info.steps : info.steps);
        printf("  context pass   %.2f ms\n", sum_ctx / k);
        printf("  decode         %.2f ms\n", sum_dec / k);
        printf("frames/s         %.2f  (%.2fx real time at %g fps)\n", fps, fps / info.fps,
               info.fps);
        printf("DiT              %.3f GFLOP/chunk, %.2f GFLOP/s = %.1f%% of the SGEMM peak\n",
               gf_dit / k, dit_gflops, peak > 0 ? 100.0 * dit_gflops / peak : 0);
        printf("decode           %.3f GFLOP/chunk, %.2f GFLOP/s\n", gf_dec / k, dec_gflops);
        printf("SGEMM peak       %.2f GFLOP/s (%dx%dx%d, %d threads)\n", peak, (int)gemm_n,
               (int)gemm_n, (int)gemm_n, gemm_threads);
        printf("KV per stream    %.2f MiB (the pool holds %d stream(s)); other per-stream %.2f MiB\n",
               (double)info.kv_bytes_per_stream / 1048576.0, info.max_streams,
               (double)info.stream_bytes / 1048576.0);
        printf("weights          %.2f MiB; peak RSS %.1f MiB\n",
               (double)info.weight_bytes / 1048576.0, rss_mib);
    }
    rc = FB_CLI_OK;
done:
    free(rgb);
    fb_stream_free(stream);
    fb_model_free(model);
    return rc;
}
