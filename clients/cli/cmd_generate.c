/* clients/cli/cmd_generate.c - `flipbook generate`: run the engine in-process (no daemon) and
 * write N frames of a prompt to a file, optionally switching prompts at chunk boundaries
 * (--switch) and skipping the start of the stream (--skip).
 *
 * The output format follows the file name: .webm is VP9 in WebM (stream/vp9enc.h and the CLI's
 * WebM writer), .rgb is raw RGB24 frames one after another (geometry printed on stderr), .png
 * writes one PNG per frame (OUT.png becomes OUT_00000.png, OUT_00001.png, ...; a name with a
 * printf-style %d, e.g. frames/%05d.png, is used as the pattern). Frames depend only on the
 * model, prompts, switch frames, transition and seed, so the same command writes the same frames
 * (and, for .rgb and .png, the same bytes) every time.
 *
 * Frame numbers (--switch FRAME, --skip N, PNG names) count from the stream's first frame, not
 * from the first frame written: `--skip 10000 --frames 500` writes frames 10000..10499 of the
 * same stream that `--frames 10500` would write in full.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "clients/cli/cli.h"
#include "clients/cli/webm_out.h"
#include "engine/engine.h"
#include "stream/packet.h"
#include "stream/vp9enc.h"

typedef enum { OUT_WEBM, OUT_RGB, OUT_PNG } out_kind;

/* ---- PNG (uncompressed deflate: no zlib dependency, and the bytes are deterministic) ------ */

static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int png_chunk(FILE *f, const char *type, const uint8_t *data, size_t n, uint32_t crc_in,
                     int crc_given)
{
    uint8_t hdr[8];
    put_be32(hdr, (uint32_t)n);
    memcpy(hdr + 4, type, 4);
    uint32_t crc = crc_given ? crc_in : crc32_update(crc32_update(0, hdr + 4, 4), data, n);
    uint8_t tail[4];
    put_be32(tail, crc);
    return fwrite(hdr, 1, 8, f) == 8 && (n == 0 || fwrite(data, 1, n, f) == n) &&
                   fwrite(tail, 1, 4, f) == 4
               ? 0
               : -1;
}

/* Writes an RGB24 image as a PNG whose IDAT holds stored (uncompressed) deflate blocks. */
static int write_png(const char *path, const uint8_t *rgb, int w, int h)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    uint8_t ihdr[13];
    put_be32(ihdr, (uint32_t)w);
    put_be32(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8;   /* bit depth */
    ihdr[9] = 2;   /* colour type: RGB */
    ihdr[10] = ihdr[11] = ihdr[12] = 0;
    int rc = fwrite(sig, 1, 8, f) == 8 ? 0 : -1;
    if (!rc)
        rc = png_chunk(f, "IHDR", ihdr, 13, 0, 0);

    /* zlib stream: header, stored blocks of <= 65535 bytes, Adler-32. */
    size_t raw = (size_t)h * ((size_t)w * 3 + 1);
    size_t nblocks = raw / 65535 + 1;
    size_t zlen = 2 + raw + nblocks * 5 + 4;
    uint8_t *z = malloc(zlen);
    if (!z) {
        fclose(f);
        return -1;
    }
    size_t o = 0;
    z[o++] = 0x78;
    z[o++] = 0x01;
    uint32_t a = 1, b = 0;
    size_t row_bytes = (size_t)w * 3 + 1, pos = 0;   /* position in the filtered raw data */
    while (pos < raw) {
        size_t n = raw - pos < 65535 ? raw - pos : 65535;
        int last = pos + n == raw;
        z[o++] = (uint8_t)last;
        z[o++] = (uint8_t)(n & 0xff);
        z[o++] = (uint8_t)(n >> 8);
        z[o++] = (uint8_t)(~n & 0xff);
        z[o++] = (uint8_t)((~n >> 8) & 0xff);
        for (size_t i = 0; i < n; i++, pos++) {
            size_t y = pos / row_bytes, x = pos % row_bytes;
            uint8_t v = x == 0 ? 0 : rgb[y * (size_t)w * 3 + x - 1];   /* filter 0 per row */
            z[o++] = v;
            a = (a + v) % 65521u;
            b = (b + a) % 65521u;
        }
        if (last)
            break;
    }
    put_be32(z + o, (b << 16) | a);
    o += 4;
    if (!rc)
        rc = png_chunk(f, "IDAT", z, o, 0, 0);
    free(z);
    if (!rc)
        rc = png_chunk(f, "IEND", NULL, 0, 0, 0);
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

static int png_name(char *dst, size_t n, const char *pattern, long long frame)
{
    const char *pct = strchr(pattern, '%');
    if (pct) {
        /* accept exactly one %d / %0Nd conversion */
        const char *p = pct + 1;
        while (*p >= '0' && *p <= '9')
            p++;
        if (*p != 'd' || strchr(p, '%'))
            return -1;
        char fmt[4200];
        snprintf(fmt, sizeof fmt, "%.*slld%s", (int)(p - pattern), pattern, p + 1);
        /* fmt holds the user's prefix and suffix around %<width>lld */
        int k = snprintf(dst, n, fmt, frame);
        return k < 0 || (size_t)k >= n ? -1 : 0;
    }
    size_t len = strlen(pattern);
    int k = snprintf(dst, n, "%.*s_%05lld.png", (int)(len - 4), pattern, frame);
    return k < 0 || (size_t)k >= n ? -1 : 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcasecmp(s + a - b, suffix) == 0;
}


/* ---- prompt switches ---------------------------------------------------------------------- */

typedef struct {
    long long frame;   /* as given: switch at the first chunk boundary at or after this frame */
    long long at;      /* that boundary: the first frame generated under the new prompt */
    const char *text;
    int order;         /* position on the command line (ties keep it) */
} gen_switch;

static int is_blank(const char *s)
{
    for (; *s; s++)
        if (!isspace((unsigned char)*s))
            return 0;
    return 1;
}

/* "FRAME:TEXT" -> sw. FRAME is a decimal integer >= 1 (frame 0 is --prompt's), TEXT not blank. */
static int parse_switch(const char *arg, gen_switch *sw)
{
    const char *colon = strchr(arg, ':');
    if (!colon || colon == arg) {
        fprintf(stderr, "flipbook generate: --switch wants FRAME:TEXT (e.g. --switch "
                "'48:a blue box on the grass'), got '%s'\n", arg);
        return FB_CLI_USAGE;
    }
    long long v = 0;
    for (const char *p = arg; p < colon; p++) {
        if (*p < '0' || *p > '9' || v > 1000000000000LL) {
            fprintf(stderr, "flipbook generate: --switch '%s': FRAME must be a whole frame number "
                    "before the ':', got '%.*s'\n", arg, (int)(colon - arg), arg);
            return FB_CLI_USAGE;
        }
        v = v * 10 + (*p - '0');
    }
    if (v < 1) {
        fprintf(stderr, "flipbook generate: --switch '%s': FRAME must be 1 or more (the prompt "
                "at frame 0 is --prompt)\n", arg);
        return FB_CLI_USAGE;
    }
    if (is_blank(colon + 1)) {
        fprintf(stderr, "flipbook generate: --switch '%s': the prompt after the ':' is empty\n",
                arg);
        return FB_CLI_USAGE;
    }
    sw->frame = v;
    sw->text = colon + 1;
    return FB_CLI_OK;
}

static int cmp_switch(const void *a, const void *b)
{
    const gen_switch *x = a, *y = b;
    if (x->frame != y->frame)
        return x->frame < y->frame ? -1 : 1;
    return x->order - y->order;
}

/* "cut", "recache", "blend" or "blend:N" (N chunks, 1..1000, default 4 as in the protocol). */
static int parse_transition(const char *s, fb_transition *tr, int *blend_chunks)
{
    *blend_chunks = 4;
    if (strcmp(s, "cut") == 0) {
        *tr = FB_TRANSITION_CUT;
        return FB_CLI_OK;
    }
    if (strcmp(s, "recache") == 0) {
        *tr = FB_TRANSITION_RECACHE;
        return FB_CLI_OK;
    }
    if (strncmp(s, "blend", 5) == 0 && (s[5] == '\0' || s[5] == ':')) {
        *tr = FB_TRANSITION_BLEND;
        if (s[5] == '\0')
            return FB_CLI_OK;
        char *end = NULL;
        errno = 0;
        long v = strtol(s + 6, &end, 10);
        if (!errno && end != s + 6 && *end == '\0' && isdigit((unsigned char)s[6]) && v >= 1 &&
            v <= 1000) {
            *blend_chunks = (int)v;
            return FB_CLI_OK;
        }
    }
    fprintf(stderr, "flipbook generate: --transition wants cut, recache, blend or blend:N "
            "(N chunks, 1-1000), got '%s'\n", s);
    return FB_CLI_USAGE;
}

/* The first frame of the first chunk that starts at or after `frame`. */
static long long chunk_boundary(long long frame, int first_chunk, int per_chunk)
{
    if (frame <= first_chunk)
        return first_chunk;
    return first_chunk + (frame - first_chunk + per_chunk - 1) / per_chunk * per_chunk;
}

static int run_generate(const fb_cli_command *self, int argc, char **argv);

const fb_cli_command fb_cmd_generate = {
    .name = "generate",
    .summary = "Generate video from a prompt with the engine in this process (no daemon).",
    .usage = "generate --model PATH|default --prompt TEXT [--seed S] --frames N -o OUT\n"
             "                         [--switch FRAME:TEXT ...] [--transition cut|recache|blend[:N]]\n"
             "                         [--skip N]       (OUT: .webm, .rgb or .png)",
    .details =
        "The output format follows the extension: .webm is VP9 in WebM; .rgb is raw RGB24\n"
        "frames back to back (the size is printed on stderr); .png writes one file per frame\n"
        "(OUT_00000.png, ... or a pattern such as frames/%05d.png). The same model, prompt\n"
        "and seed always give the same frames. Progress goes to stderr.\n"
        "\n"
        "--switch FRAME:TEXT (repeatable) changes the prompt at the first chunk boundary at or\n"
        "after FRAME, with the --transition given (cut by default; blend:N blends over N\n"
        "chunks, 4 without N). --skip N generates the first N frames without writing them.\n"
        "Frame numbers (FRAME, N and PNG names) count from the start of the stream.",
    .run = run_generate,
};

static int run_generate(const fb_cli_command *self, int argc, char **argv)
{
    const char *model_path = "default", *prompt = NULL, *out_path = NULL;
    const char *transition_arg = "cut";
    const char *switch_items[256];
    fb_cli_list switch_list = {switch_items, 0, 256};
    long long seed = 0, frames = 0, threads = 0, bitrate = 0, skip = 0;
    int quiet = 0;
    fb_cli_opt opts[] = {
        {"model", 'm', FB_OPT_STRING, "PATH", "model file, or 'default' (the shipped model)",
         &model_path, 0, 0, 0, 0},
        {"prompt", 'p', FB_OPT_STRING, "TEXT", "what the video shows", &prompt, 1, 0, 0, 0},
        {"seed", 's', FB_OPT_INT, "S", "noise seed (default 0)", &seed, 0, 0, 9.2e18, 0},
        {"frames", 'n', FB_OPT_INT, "N", "frames to write", &frames, 1, 1, 1e7, 0},
        {"output", 'o', FB_OPT_STRING, "OUT", "output file (.webm, .rgb, .png)", &out_path, 1,
         0, 0, 0},
        {"threads", 't', FB_OPT_INT, "N", "CPU threads (default: all cores)", &threads, 0, 0,
         1024, 0},
        {"bitrate", 0, FB_OPT_INT, "KBPS", "VP9 target bitrate for .webm (default: by size)",
         &bitrate, 0, 50, 100000, 0},
        {"switch", 0, FB_OPT_LIST, "FRAME:TEXT",
         "new prompt from the first chunk boundary at or after FRAME (repeatable)",
         &switch_list, 0, 0, 0, 0},
        {"transition", 0, FB_OPT_STRING, "T",
         "how --switch prompts take over: cut (default), recache, blend[:N]", &transition_arg, 0,
         0, 0, 0},
        {"skip", 0, FB_OPT_INT, "N", "generate the first N frames without writing them", &skip,
         0, 0, 1e12, 0},
        {"quiet", 'q', FB_OPT_FLAG, NULL, "no progress on stderr", &quiet, 0, 0, 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0, 0},
    };
    int prc = fb_cli_parse(self, opts, argc, argv);
    if (prc == -1)
        return FB_CLI_OK;
    if (prc != FB_CLI_OK)
        return prc;

    fb_transition transition;
    int blend_chunks;
    if (parse_transition(transition_arg, &transition, &blend_chunks) != FB_CLI_OK)
        return FB_CLI_USAGE;
    gen_switch *switches = calloc((size_t)switch_list.n + 1, sizeof *switches);
    int n_switch = switch_list.n;
    if (!switches) {
        fprintf(stderr, "flipbook generate: out of memory\n");
        return FB_CLI_FAIL;
    }
    for (int i = 0; i < n_switch; i++) {
        if (parse_switch(switch_list.items[i], &switches[i]) != FB_CLI_OK) {
            free(switches);
            return FB_CLI_USAGE;
        }
        switches[i].order = i;
    }
    qsort(switches, (size_t)n_switch, sizeof *switches, cmp_switch);
    long long total = skip + frames;   /* frames the stream generates (at least) */
    for (int i = 0; i < n_switch; i++)
        if (switches[i].frame >= total) {
            fprintf(stderr, "flipbook generate: --switch at frame %lld is beyond the last frame "
                    "(%lld with --skip %lld --frames %lld)\n", switches[i].frame, total - 1,
                    skip, frames);
            free(switches);
            return FB_CLI_USAGE;
        }

    out_kind kind;
    if (ends_with(out_path, ".webm"))
        kind = OUT_WEBM;
    else if (ends_with(out_path, ".rgb"))
        kind = OUT_RGB;
    else if (ends_with(out_path, ".png"))
        kind = OUT_PNG;
    else {
        fprintf(stderr, "flipbook generate: cannot tell the format of '%s': use a .webm, .rgb "
                "or .png file name\n", out_path);
        free(switches);
        return FB_CLI_USAGE;
    }
    char name[4096];
    if (kind == OUT_PNG && png_name(name, sizeof name, out_path, 0) != 0) {
        fprintf(stderr, "flipbook generate: bad PNG name pattern '%s' (one %%d or %%0Nd)\n",
                out_path);
        free(switches);
        return FB_CLI_USAGE;
    }

    fb_cli_install_signals();
    char err[1024];
    fb_model_params mp = fb_model_default_params();
    mp.n_threads = (int)threads;
    fb_model *model = NULL;
    long long t0 = fb_cli_now_us();
    fb_status st = fb_model_load(model_path, &mp, &model, err, sizeof err);
    if (st != FB_OK) {
        fprintf(stderr, "flipbook generate: cannot load model: %s\n", err);
        free(switches);
        return FB_CLI_FAIL;
    }
    fb_model_info info;
    fb_model_get_info(model, &info);
    if (!quiet)
        fprintf(stderr, "flipbook generate: model %s (%s): %dx%d at %g fps, %d frames per chunk, "
                "loaded in %.1f s\n", info.name, info.backend, info.width, info.height, info.fps,
                info.frames_per_chunk, (double)(fb_cli_now_us() - t0) / 1e6);

    int rc = FB_CLI_FAIL;
    fb_stream *stream = NULL;
    uint8_t *rgb = NULL;
    FILE *raw = NULL;
    fb_vp9enc *enc = NULL;
    fb_webm_out *webm = NULL;

    char words[512];
    int n_unknown = 0;
    if (fb_model_unknown_words(model, prompt, words, sizeof words, &n_unknown) == FB_OK &&
        n_unknown > 0)
        fprintf(stderr, "flipbook generate: warning: the model does not know %d word(s): %s\n",
                n_unknown, words);
    int n_tok = 0, n_cut = 0;
    if (fb_model_prompt_tokens(model, prompt, &n_tok, &n_cut) == FB_OK && n_cut > 0)
        fprintf(stderr, "flipbook generate: warning: the prompt is %d tokens too long for this "
                "model (it reads %d); the end is ignored\n", n_cut, n_tok);

    /* Switches: where each takes effect, checked before any frame is generated. */
    for (int i = 0; i < n_switch; i++) {
        gen_switch *sw = &switches[i];
        sw->at = chunk_boundary(sw->frame, info.first_chunk_frames, info.frames_per_chunk);
        if (sw->at >= total) {
            fprintf(stderr, "flipbook generate: --switch at frame %lld would take effect at frame "
                    "%lld (the next chunk boundary; chunks are %d frames, the first %d), after the "
                    "last frame (%lld)\n", sw->frame, sw->at, info.frames_per_chunk,
                    info.first_chunk_frames, total - 1);
            rc = FB_CLI_USAGE;
            goto done;
        }
        if (i > 0 && switches[i - 1].at == sw->at) {
            fprintf(stderr, "flipbook generate: --switch at frames %lld and %lld both take effect "
                    "at frame %lld (one chunk boundary); give one prompt per chunk\n",
                    switches[i - 1].frame, sw->frame, sw->at);
            rc = FB_CLI_USAGE;
            goto done;
        }
        int ntk = 0, ncut = 0;
        if (fb_model_prompt_tokens(model, sw->text, &ntk, &ncut) != FB_OK) {
            fprintf(stderr, "flipbook generate: --switch at frame %lld: the prompt cannot be "
                    "read (empty, or over 16 KiB)\n", sw->frame);
            rc = FB_CLI_USAGE;
            goto done;
        }
        if (ncut > 0)
            fprintf(stderr, "flipbook generate: warning: the prompt of --switch at frame %lld is "
                    "%d tokens too long (the model reads %d); the end is ignored\n", sw->frame,
                    ncut, ntk);
        if (fb_model_unknown_words(model, sw->text, words, sizeof words, &n_unknown) == FB_OK &&
            n_unknown > 0)
            fprintf(stderr, "flipbook generate: warning: the model does not know %d word(s) of "
                    "the prompt at frame %lld: %s\n", n_unknown, sw->frame, words);
    }
    st = fb_stream_open(model, prompt, (uint64_t)seed, &stream, err, sizeof err);
    if (st != FB_OK) {
        fprintf(stderr, "flipbook generate: %s\n", err);
        rc = st == FB_E_INVALID || st == FB_E_LIMIT ? FB_CLI_USAGE : FB_CLI_FAIL;
        goto done;
    }
    rgb = malloc(info.chunk_rgb_bytes);
    if (!rgb) {
        fprintf(stderr, "flipbook generate: out of memory\n");
        goto done;
    }
    int fps = (int)(info.fps + 0.5);
    if (kind == OUT_RGB) {
        raw = fopen(out_path, "wb");
        if (!raw) {
            fprintf(stderr, "flipbook generate: cannot create %s: %s\n", out_path,
                    strerror(errno));
            goto done;
        }
    } else if (kind == OUT_WEBM) {
        fb_vp9enc_params vp = fb_vp9enc_default_params(info.width, info.height, fps);
        if (bitrate > 0)
            vp.bitrate_kbps = (int)bitrate;
        if (fb_vp9enc_new(&vp, &enc, err, sizeof err) != FB_VP9ENC_OK) {
            fprintf(stderr, "flipbook generate: VP9 encoder: %s\n", err);
            goto done;
        }
        if (fb_webm_out_open(&webm, out_path, info.width, info.height, fps, err, sizeof err)) {
            fprintf(stderr, "flipbook generate: %s\n", err);
            goto done;
        }
    }

    long long written = 0, produced = 0;   /* frames written; frames the stream generated */
    int next_switch = 0;
    double ms_gen = 0;
    while (written < frames) {
        if (fb_cli_interrupted()) {
            fprintf(stderr, "\nflipbook generate: interrupted after %lld frames\n", written);
            rc = 130;
            break;
        }
        /* A switch takes effect with the first chunk that starts at or after its frame. */
        while (next_switch < n_switch && switches[next_switch].at <= produced) {
            gen_switch *sw = &switches[next_switch++];
            st = fb_stream_set_prompt(stream, sw->text, transition, blend_chunks);
            if (st != FB_OK) {
                fprintf(stderr, "\nflipbook generate: --switch at frame %lld: %s\n", sw->frame,
                        fb_stream_errmsg(stream));
                rc = st == FB_E_INVALID ? FB_CLI_USAGE : FB_CLI_FAIL;
                goto done;
            }
            if (!quiet)
                fprintf(stderr, "%sflipbook generate: frame %lld: prompt '%s' (%s)\n",
                        isatty(2) && produced > 0 ? "\n" : "", produced, sw->text,
                        transition_arg);
        }
        int n = 0;
        fb_chunk_info ci;
        st = fb_stream_next_chunk(stream, rgb, info.chunk_rgb_bytes, &n, &ci);
        if (st != FB_OK) {
            fprintf(stderr, "\nflipbook generate: chunk %lld: %s\n",
                    (long long)fb_stream_chunk_index(stream), fb_stream_errmsg(stream));
            goto done;
        }
        ms_gen += ci.ms_total;
        for (int i = 0; i < n && written < frames; i++) {
            long long fno = produced + i;   /* this frame's number in the stream */
            if (fno < skip)
                continue;
            const uint8_t *fr = rgb + (size_t)i * info.frame_bytes;
            if (kind == OUT_RGB) {
                if (fwrite(fr, 1, info.frame_bytes, raw) != info.frame_bytes) {
                    fprintf(stderr, "flipbook generate: writing %s: %s\n", out_path,
                            strerror(errno));
                    goto done;
                }
            } else if (kind == OUT_PNG) {
                if (png_name(name, sizeof name, out_path, fno) != 0 ||
                    write_png(name, fr, info.width, info.height) != 0) {
                    fprintf(stderr, "flipbook generate: cannot write %s: %s\n", name,
                            strerror(errno));
                    goto done;
                }
            } else {
                fb_packet *pkt = NULL;
                int64_t pts = (int64_t)((double)written * 1e6 / info.fps + 0.5);
                if (fb_vp9enc_encode_rgb(enc, fr, info.width * 3, pts, &pkt) != FB_VP9ENC_OK) {
                    fprintf(stderr, "flipbook generate: VP9: %s\n", fb_vp9enc_error(enc));
                    goto done;
                }
                if (pkt) {
                    int wrc = fb_webm_out_write(webm, pkt->payload, pkt->payload_size,
                                                pkt->is_key, pts, err, sizeof err);
                    fb_packet_unref(pkt);
                    if (wrc) {
                        fprintf(stderr, "flipbook generate: %s\n", err);
                        goto done;
                    }
                }
            }
            written++;
        }
        produced += n;
        if (!quiet) {
            double fps_now = ms_gen > 0 ? (double)produced * 1000.0 / ms_gen : 0;
            if (produced <= skip)
                fprintf(stderr, "%schunk %" PRId64 ": skipping, %lld/%lld frames, %.0f ms (%.2f "
                        "frames/s)%s", isatty(2) ? "\r" : "", ci.chunk, produced, skip,
                        ci.ms_total, fps_now, isatty(2) ? "   " : "\n");
            else
                fprintf(stderr, "%schunk %" PRId64 ": %lld/%lld frames, %.0f ms (%.2f frames/s)%s",
                        isatty(2) ? "\r" : "", ci.chunk, written, frames, ci.ms_total, fps_now,
                        isatty(2) ? "   " : "\n");
        }
    }
    if (!quiet && isatty(2))
        fputc('\n', stderr);
    if (rc != 130)
        rc = FB_CLI_OK;
    if (written == 0 && !quiet)
        fprintf(stderr, "flipbook generate: wrote no frames to %s\n", out_path);
    else if (kind == OUT_RGB && !quiet)
        fprintf(stderr, "flipbook generate: wrote %lld frames (%lld..%lld) of %dx%d RGB24 to %s "
                "(ffplay -f rawvideo -pixel_format rgb24 -video_size %dx%d -framerate %d %s)\n",
                written, skip, skip + written - 1, info.width, info.height, out_path, info.width,
                info.height, fps, out_path);
    else if (!quiet)
        fprintf(stderr, "flipbook generate: wrote %lld frames (%lld..%lld) to %s\n", written,
                skip, skip + written - 1, out_path);

done:
    if (webm) {
        uint64_t bytes = 0;
        if (fb_webm_out_finish(webm, &bytes, err, sizeof err) != 0) {
            fprintf(stderr, "flipbook generate: %s\n", err);
            rc = FB_CLI_FAIL;
        }
    }
    fb_vp9enc_free(enc);
    if (raw && fclose(raw) != 0 && rc == FB_CLI_OK) {
        fprintf(stderr, "flipbook generate: closing %s: %s\n", out_path, strerror(errno));
        rc = FB_CLI_FAIL;
    }
    free(rgb);
    free(switches);
    fb_stream_free(stream);
    fb_model_free(model);
    return rc;
}
