/* clients/cli/cmd_record.c - `flipbook record`: start a session on a daemon and save the video
 * it sends as a WebM file.
 *
 * The file starts at the first keyframe received (a VP9 decoder cannot start on a delta) and
 * its timestamps are the frame headers' timestamps minus that keyframe's. Recording stops once
 * the next frame would lie N seconds or more after the first, so a 30 fps stream recorded for
 * 3 s holds exactly 90 frames. Frames the server skipped for us (gaps in the frame numbers)
 * are counted as dropped.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/cli/cli.h"
#include "clients/cli/session.h"
#include "clients/cli/webm_out.h"
#include "stream/packet.h"

typedef struct record_state {
    const char *out_path;
    int64_t limit_us;
    int verbose;
    fb_ws *ws;

    char session[96];
    int width, height, fps, have_config;
    fb_webm_out *webm;

    int started; /* first keyframe written */
    int64_t first_pts;
    int64_t last_rel_us;
    uint32_t last_frame_no;
    int64_t frames, payload_bytes, keyframes, dropped, skipped_before_key;
    long long last_video_us; /* wall clock of the last binary message */

    int done;   /* enough video */
    int failed; /* error already printed */
    char ended[128];
} record_state;

static void rec_fail(record_state *st, const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "flipbook record: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    st->failed = 1;
}

static void on_text(void *ctx, const char *text, size_t len) {
    record_state *st = ctx;
    const char *type = NULL;
    cJSON *msg = fb_cli_parse_message(text, len, &type);
    if (!msg) {
        fprintf(stderr, "flipbook record: warning: ignoring a server message that is not JSON\n");
        return;
    }
    if (st->verbose) fprintf(stderr, "< %.*s\n", (int)len, text);

    if (strcmp(type, "hello") == 0) {
        snprintf(st->session, sizeof st->session, "%s", fb_cli_json_str(msg, "session", "?"));
        fprintf(stderr, "flipbook record: session %s (owner token %s, viewer link %s)\n",
                st->session, fb_cli_json_str(msg, "token", "?"),
                fb_cli_json_str(msg, "viewer", "?"));
    } else if (strcmp(type, "config") == 0) {
        int w = (int)fb_cli_json_num(msg, "width", 0), h = (int)fb_cli_json_num(msg, "height", 0);
        int fps = (int)fb_cli_json_num(msg, "fps", 0);
        const char *codec = fb_cli_json_str(msg, "codec", "");
        if (strncmp(codec, "vp09.", 5) != 0) {
            rec_fail(st, "server sends codec '%s'; this client records VP9 only%s", codec, "");
        } else if (w <= 0 || h <= 0) {
            rec_fail(st, "server sent a config without a valid size%s%s", "", "");
        } else if (!st->have_config) {
            st->width = w;
            st->height = h;
            st->fps = fps > 0 ? fps : 30;
            st->have_config = 1;
            char err[256];
            if (fb_webm_out_open(&st->webm, st->out_path, w, h, st->fps, err, sizeof err))
                rec_fail(st, "%s%s", err, "");
        } else if (w != st->width || h != st->height) {
            /* One WebM track has one size; keep what we have rather than write a broken file. */
            fprintf(stderr,
                    "flipbook record: the stream changed size to %dx%d; stopping with what was "
                    "recorded at %dx%d\n",
                    w, h, st->width, st->height);
            st->done = 1;
        }
    } else if (strcmp(type, "error") == 0) {
        char buf[400];
        fb_cli_error_text(msg, buf, sizeof buf);
        if (fb_cli_json_bool(msg, "fatal", 0) || !st->have_config)
            rec_fail(st, "server error %s%s", buf, "");
        else
            fprintf(stderr, "flipbook record: warning: server error %s\n", buf);
    } else if (strcmp(type, "end") == 0) {
        snprintf(st->ended, sizeof st->ended, "%s", fb_cli_json_str(msg, "reason", "no reason"));
    }
    cJSON_Delete(msg);
}

static void on_binary(void *ctx, const uint8_t *data, size_t len) {
    record_state *st = ctx;
    st->last_video_us = fb_cli_now_us();
    if (st->done || st->failed) return;
    int is_key = 0;
    uint32_t frame_no = 0;
    int64_t pts = 0;
    if (fb_frame_header_parse(data, len, &is_key, &frame_no, &pts)) {
        fprintf(stderr, "flipbook record: warning: ignoring a binary message with a bad header\n");
        return;
    }
    if (!st->webm) { /* no config yet: nothing to mux into */
        st->skipped_before_key++;
        return;
    }
    if (!st->started) {
        if (!is_key) {
            st->skipped_before_key++;
            return;
        }
        st->started = 1;
        st->first_pts = pts;
    } else {
        if (frame_no > st->last_frame_no + 1) st->dropped += frame_no - st->last_frame_no - 1;
    }
    int64_t rel = pts - st->first_pts;
    if (rel < 0 || (st->frames > 0 && rel <= st->last_rel_us)) {
        fprintf(stderr,
                "flipbook record: warning: frame %" PRIu32 " has timestamp %" PRId64
                " us, not after the previous one; skipped\n",
                frame_no, pts);
        return;
    }
    if (rel >= st->limit_us) {
        st->done = 1;
        return;
    }
    char err[256];
    if (fb_webm_out_write(st->webm, data + FB_FRAME_HEADER_SIZE, len - FB_FRAME_HEADER_SIZE,
                          is_key, rel, err, sizeof err)) {
        rec_fail(st, "writing %s failed: %s", st->out_path, err);
        return;
    }
    st->last_frame_no = frame_no;
    st->last_rel_us = rel;
    st->frames++;
    st->keyframes += is_key;
    st->payload_bytes += (int64_t)(len - FB_FRAME_HEADER_SIZE);
}

static int run_record(const fb_cli_command *self, int argc, char **argv) {
    const char *url = NULL, *prompt = NULL, *out = NULL;
    double seconds = 0, timeout = 5, stall = 10;
    long long seed = -1, width = 0, height = 0, fps = 0;
    int verbose = 0, insecure = 0;
    fb_cli_opt opts[] = {
        {"url", 0, FB_OPT_STRING, "URL", "daemon WebSocket URL, e.g. ws://127.0.0.1:8080/ws", &url, 1, 0, -1, 0},
        {"prompt", 'p', FB_OPT_STRING, "TEXT", "what the stream shows", &prompt, 1, 0, -1, 0},
        {"seconds", 's', FB_OPT_NUMBER, "N", "seconds of video to save", &seconds, 1, 0.001, 86400, 0},
        {"output", 'o', FB_OPT_STRING, "FILE", "WebM file to write", &out, 1, 0, -1, 0},
        {"seed", 0, FB_OPT_INT, "S", "noise seed (integer >= 0)", &seed, 0, 0, 9007199254740991.0, 0},
        {"width", 0, FB_OPT_INT, "W", "ask for this frame width", &width, 0, 16, 4096, 0},
        {"height", 0, FB_OPT_INT, "H", "ask for this frame height", &height, 0, 16, 4096, 0},
        {"fps", 0, FB_OPT_INT, "F", "ask for this frame rate", &fps, 0, 1, 120, 0},
        {"timeout", 0, FB_OPT_NUMBER, "SEC", "connect timeout (default 5)", &timeout, 0, 0.1, 600, 0},
        {"stall", 0, FB_OPT_NUMBER, "SEC", "give up when no video arrives for this long (default 10)", &stall, 0, 0.5, 3600, 0},
        {"insecure", 0, FB_OPT_FLAG, NULL, "wss: accept self-signed certificates", &insecure, 0, 0, -1, 0},
        {"verbose", 'v', FB_OPT_FLAG, NULL, "print the server's messages and transport logs", &verbose, 0, 0, -1, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0, 0},
    };
    int rc = fb_cli_parse(self, opts, argc, argv);
    if (rc < 0) return FB_CLI_OK;
    if (rc) return rc;

    record_state st;
    memset(&st, 0, sizeof st);
    st.out_path = out;
    st.limit_us = (int64_t)(seconds * 1e6 + 0.5);
    st.verbose = verbose;

    fb_cli_install_signals();
    fb_ws_events ev = {.ctx = &st, .on_text = on_text, .on_binary = on_binary};
    rc = fb_cli_connect("record", url, timeout, insecure, verbose, &ev, &st.ws, NULL);
    if (rc) return rc;

    cJSON *start = cJSON_CreateObject();
    cJSON_AddStringToObject(start, "type", "start");
    cJSON_AddStringToObject(start, "prompt", prompt);
    if (seed >= 0) cJSON_AddNumberToObject(start, "seed", (double)seed);
    if (width) cJSON_AddNumberToObject(start, "width", (double)width);
    if (height) cJSON_AddNumberToObject(start, "height", (double)height);
    if (fps) cJSON_AddNumberToObject(start, "fps", (double)fps);
    fb_cli_send_json(st.ws, start);
    cJSON_Delete(start);

    st.last_video_us = fb_cli_now_us();
    int interrupted = 0, stalled = 0;
    while (!st.done && !st.failed && fb_ws_is_open(st.ws)) {
        if (fb_cli_interrupted()) {
            interrupted = 1;
            break;
        }
        if (fb_cli_now_us() - st.last_video_us > (long long)(stall * 1e6)) {
            stalled = 1;
            break;
        }
        fb_ws_poll(st.ws, 100);
    }
    int connection_lost = !st.done && !st.failed && !interrupted && !stalled;

    /* We started this session: end it rather than leave it running for the owner grace time. */
    if (fb_ws_is_open(st.ws)) {
        fb_ws_send_text(st.ws, "{\"type\":\"stop\"}");
        fb_ws_close(st.ws, 1000, "recording done", 1000);
    }

    int result = FB_CLI_OK;
    uint64_t file_bytes = 0;
    if (st.webm) {
        char err[256];
        if (fb_webm_out_finish(st.webm, &file_bytes, err, sizeof err)) {
            fprintf(stderr, "flipbook record: finishing %s failed: %s\n", out, err);
            result = FB_CLI_FAIL;
        }
        st.webm = NULL;
    }

    if (st.failed) {
        result = FB_CLI_FAIL;
    } else if (interrupted) {
        fprintf(stderr, "flipbook record: interrupted; the file holds what arrived until now\n");
        result = FB_CLI_INTERRUPTED;
    } else if (stalled) {
        fprintf(stderr, "flipbook record: no video from the server for %.1f s; giving up\n", stall);
        result = FB_CLI_FAIL;
    } else if (connection_lost) {
        const char *why = fb_ws_error(st.ws);
        if (st.ended[0])
            fprintf(stderr, "flipbook record: the session ended early (%s)\n", st.ended);
        else if (why)
            fprintf(stderr, "flipbook record: %s\n", why);
        else
            fprintf(stderr, "flipbook record: the server closed the connection (%d %s)\n",
                    fb_ws_peer_close_code(st.ws), fb_ws_peer_close_reason(st.ws));
        result = FB_CLI_FAIL;
    }
    fb_ws_free(st.ws);

    if (st.have_config && st.frames > 0) {
        double dur = (double)(st.last_rel_us) / 1e6 + 1.0 / st.fps;
        printf("recorded %" PRId64 " frames, %.3f s, %dx%d at %d fps, %" PRId64
               " bytes of video (%" PRIu64 " bytes file), %" PRId64 " keyframes, %" PRId64
               " dropped -> %s\n",
               st.frames, dur, st.width, st.height, st.fps, st.payload_bytes, file_bytes,
               st.keyframes, st.dropped, out);
        if (st.skipped_before_key)
            printf("(%" PRId64 " frames before the first keyframe were not saved)\n",
                   st.skipped_before_key);
    } else if (result == FB_CLI_OK) {
        fprintf(stderr, "flipbook record: no video was recorded\n");
        result = FB_CLI_FAIL;
    }
    return result;
}

const fb_cli_command fb_cmd_record = {
    .name = "record",
    .summary = "Start a session on a running daemon and save its video as WebM.",
    .usage = "record --url ws://HOST:PORT/ws --prompt TEXT --seconds N -o OUT.webm [--seed S]",
    .details =
        "The file starts at the first keyframe and ends after N seconds of video; timestamps\n"
        "come from the frame headers. The session is stopped when the recording is done.\n"
        "Ctrl-C stops early and still leaves a playable file. Prints a summary line: frames,\n"
        "duration, size, bytes, keyframes and frames the server dropped for this client.",
    .run = run_record,
};
