/* clients/cli/cmd_watch.c - `flipbook watch`: join a session as a viewer and print the server's
 * stats once a second, with what this client actually received beside them. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/cli/cli.h"
#include "clients/cli/session.h"
#include "stream/packet.h"

typedef struct watch_state {
    int json, verbose;
    int joined, failed, ended;
    int64_t frames, bytes, gaps;
    int64_t frames_at_last_stats;
    long long last_stats_us;
    uint32_t last_frame_no;
    int have_frame;
} watch_state;

static void on_text(void *ctx, const char *text, size_t len) {
    watch_state *st = ctx;
    const char *type = NULL;
    cJSON *msg = fb_cli_parse_message(text, len, &type);
    if (!msg) return;
    if (st->verbose) fprintf(stderr, "< %.*s\n", (int)len, text);

    if (strcmp(type, "hello") == 0) {
        st->joined = 1;
        fprintf(stderr, "flipbook watch: watching session %s as %s\n",
                fb_cli_json_str(msg, "session", "?"), fb_cli_json_str(msg, "role", "?"));
    } else if (strcmp(type, "config") == 0) {
        fprintf(stderr, "flipbook watch: %s %.0fx%.0f at %.0f fps\n",
                fb_cli_json_str(msg, "codec", "?"), fb_cli_json_num(msg, "width", 0),
                fb_cli_json_num(msg, "height", 0), fb_cli_json_num(msg, "fps", 0));
    } else if (strcmp(type, "stats") == 0) {
        long long now = fb_cli_now_us();
        double dt = st->last_stats_us ? (now - st->last_stats_us) / 1e6 : 0;
        double recv_fps = dt > 0 ? (double)(st->frames - st->frames_at_last_stats) / dt : 0;
        st->last_stats_us = now;
        st->frames_at_last_stats = st->frames;
        if (st->json) {
            printf("%.*s\n", (int)len, text);
        } else {
            printf("frame %-7.0f fps %5.1f  sent %5.1f  recv %5.1f  %6.0f kbit/s  encode %5.1f ms"
                   "  queue %-3.0f dropped %-5.0f viewers %-4.0f%s%s\n",
                   fb_cli_json_num(msg, "frame", 0), fb_cli_json_num(msg, "fps", 0),
                   fb_cli_json_num(msg, "sentFps", 0), recv_fps,
                   fb_cli_json_num(msg, "bitrateKbps", 0), fb_cli_json_num(msg, "encodeMs", 0),
                   fb_cli_json_num(msg, "queue", 0), fb_cli_json_num(msg, "dropped", 0),
                   fb_cli_json_num(msg, "viewers", 0),
                   fb_cli_json_bool(msg, "recording", 0) ? "  recording" : "",
                   fb_cli_json_bool(msg, "paused", 0) ? "  paused" : "");
        }
        fflush(stdout);
    } else if (strcmp(type, "error") == 0) {
        char buf[400];
        fprintf(stderr, "flipbook watch: server error %s\n", fb_cli_error_text(msg, buf, sizeof buf));
        if (!st->joined || fb_cli_json_bool(msg, "fatal", 0)) st->failed = 1;
    } else if (strcmp(type, "end") == 0) {
        fprintf(stderr, "flipbook watch: the session ended (%s)\n",
                fb_cli_json_str(msg, "reason", "no reason"));
        st->ended = 1;
    }
    cJSON_Delete(msg);
}

static void on_binary(void *ctx, const uint8_t *data, size_t len) {
    watch_state *st = ctx;
    uint32_t frame_no = 0;
    if (fb_frame_header_parse(data, len, NULL, &frame_no, NULL)) return;
    if (st->have_frame && frame_no > st->last_frame_no + 1)
        st->gaps += frame_no - st->last_frame_no - 1;
    st->last_frame_no = frame_no;
    st->have_frame = 1;
    st->frames++;
    st->bytes += (int64_t)len;
}

static int run_watch(const fb_cli_command *self, int argc, char **argv) {
    const char *url = NULL, *session = NULL;
    double seconds = 0, timeout = 5;
    int json = 0, verbose = 0, insecure = 0;
    fb_cli_opt opts[] = {
        {"url", 0, FB_OPT_STRING, "URL", "daemon WebSocket URL, e.g. ws://127.0.0.1:8080/ws", &url, 1, 0, -1, 0},
        {"session", 0, FB_OPT_STRING, "ID", "session id to watch", &session, 1, 0, -1, 0},
        {"seconds", 's', FB_OPT_NUMBER, "N", "stop after N seconds (default: until the session ends)", &seconds, 0, 0.001, 31536000, 0},
        {"timeout", 0, FB_OPT_NUMBER, "SEC", "connect timeout (default 5)", &timeout, 0, 0.1, 600, 0},
        {"json", 0, FB_OPT_FLAG, NULL, "print the stats messages as JSON lines", &json, 0, 0, -1, 0},
        {"insecure", 0, FB_OPT_FLAG, NULL, "wss: accept self-signed certificates", &insecure, 0, 0, -1, 0},
        {"verbose", 'v', FB_OPT_FLAG, NULL, "print the server's messages and transport logs", &verbose, 0, 0, -1, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0, 0},
    };
    int rc = fb_cli_parse(self, opts, argc, argv);
    if (rc < 0) return FB_CLI_OK;
    if (rc) return rc;

    watch_state st;
    memset(&st, 0, sizeof st);
    st.json = json;
    st.verbose = verbose;

    fb_cli_install_signals();
    fb_ws *ws = NULL;
    fb_ws_events ev = {.ctx = &st, .on_text = on_text, .on_binary = on_binary};
    rc = fb_cli_connect("watch", url, timeout, insecure, verbose, &ev, &ws, NULL);
    if (rc) return rc;

    cJSON *join = cJSON_CreateObject();
    cJSON_AddStringToObject(join, "type", "join");
    cJSON_AddStringToObject(join, "session", session);
    fb_cli_send_json(ws, join);
    cJSON_Delete(join);

    long long start = fb_cli_now_us();
    int result = FB_CLI_OK;
    while (!st.failed && !st.ended) {
        if (fb_cli_interrupted()) break; /* the normal way to stop watching */
        if (seconds > 0 && fb_cli_now_us() - start >= (long long)(seconds * 1e6)) break;
        if (!fb_ws_is_open(ws)) {
            fprintf(stderr, "flipbook watch: the server closed the connection (%d %s)\n",
                    fb_ws_peer_close_code(ws), fb_ws_peer_close_reason(ws));
            result = FB_CLI_FAIL;
            break;
        }
        fb_ws_poll(ws, 100);
    }
    if (st.failed) result = FB_CLI_FAIL;
    fb_ws_close(ws, 1000, "done", 1000);
    fb_ws_free(ws);
    double secs = (fb_cli_now_us() - start) / 1e6;
    fprintf(stderr, "flipbook watch: received %" PRId64 " frames (%" PRId64 " bytes) in %.1f s, %"
            PRId64 " skipped by the server\n", st.frames, st.bytes, secs, st.gaps);
    return result;
}

const fb_cli_command fb_cmd_watch = {
    .name = "watch",
    .summary = "Join a session as a viewer and print its stats once a second.",
    .usage = "watch --url ws://HOST:PORT/ws --session ID [--seconds N]",
    .details =
        "Each line shows the server's figures (frame, generated fps, fps sent to this client,\n"
        "bitrate, encode time, queue, dropped, viewers) and `recv`, the frames per second this\n"
        "client actually received. Ctrl-C stops watching (exit 0).",
    .run = run_watch,
};
