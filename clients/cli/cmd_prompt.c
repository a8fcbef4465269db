/* clients/cli/cmd_prompt.c - `flipbook prompt`: join a session as its owner, change the prompt,
 * wait for the server's answer and print it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/cli/cli.h"
#include "clients/cli/session.h"

enum { ID_JOIN = 1, ID_PROMPT = 2 };

typedef struct prompt_state {
    fb_ws *ws;
    const char *text, *transition;
    long long chunks;
    int json, verbose;
    int joined, sent, finished, failed;
} prompt_state;

static int msg_id(const cJSON *msg) { return (int)fb_cli_json_num(msg, "id", -1); }

static void on_text(void *ctx, const char *text, size_t len) {
    prompt_state *st = ctx;
    const char *type = NULL;
    cJSON *msg = fb_cli_parse_message(text, len, &type);
    if (!msg) return;
    if (st->verbose) fprintf(stderr, "< %.*s\n", (int)len, text);

    if (strcmp(type, "hello") == 0 && !st->joined) {
        st->joined = 1;
        if (strcmp(fb_cli_json_str(msg, "role", ""), "owner") != 0) {
            fprintf(stderr, "flipbook prompt: joined as %s, not as owner\n",
                    fb_cli_json_str(msg, "role", "?"));
            st->failed = 1;
        } else {
            cJSON *p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "type", "prompt");
            cJSON_AddStringToObject(p, "text", st->text);
            cJSON_AddStringToObject(p, "transition", st->transition);
            if (st->chunks > 0) cJSON_AddNumberToObject(p, "chunks", (double)st->chunks);
            cJSON_AddNumberToObject(p, "id", ID_PROMPT);
            fb_cli_send_json(st->ws, p);
            cJSON_Delete(p);
            st->sent = 1;
        }
    } else if (strcmp(type, "ack") == 0 && msg_id(msg) == ID_PROMPT) {
        if (st->json) {
            printf("%.*s\n", (int)len, text);
        } else {
            printf("prompt accepted (%s)", fb_cli_json_str(msg, "transition", st->transition));
            double frame = fb_cli_json_num(msg, "frame", -1);
            if (frame >= 0) printf(", takes effect from frame %.0f", frame);
            const cJSON *uw = cJSON_GetObjectItemCaseSensitive(msg, "unknownWords");
            if (cJSON_IsArray(uw) && cJSON_GetArraySize(uw) > 0) {
                printf("; unknown words:");
                const cJSON *w;
                cJSON_ArrayForEach(w, uw) if (cJSON_IsString(w)) printf(" %s", w->valuestring);
            }
            printf("\n");
        }
        st->finished = 1;
    } else if (strcmp(type, "error") == 0) {
        char buf[400];
        fprintf(stderr, "flipbook prompt: server error %s\n", fb_cli_error_text(msg, buf, sizeof buf));
        st->failed = 1;
    } else if (strcmp(type, "end") == 0) {
        fprintf(stderr, "flipbook prompt: the session ended (%s)\n",
                fb_cli_json_str(msg, "reason", "no reason"));
        st->failed = 1;
    }
    cJSON_Delete(msg);
}

static int run_prompt(const fb_cli_command *self, int argc, char **argv) {
    const char *url = NULL, *session = NULL, *token = NULL, *text = NULL, *transition = "cut";
    double timeout = 5, wait = 10;
    long long chunks = 0;
    int json = 0, verbose = 0, insecure = 0;
    fb_cli_opt opts[] = {
        {"url", 0, FB_OPT_STRING, "URL", "daemon WebSocket URL, e.g. ws://127.0.0.1:8080/ws", &url, 1, 0, -1, 0},
        {"session", 0, FB_OPT_STRING, "ID", "session id (from `record` or the web page)", &session, 1, 0, -1, 0},
        {"token", 0, FB_OPT_STRING, "T", "the session's owner token", &token, 1, 0, -1, 0},
        {"text", 't', FB_OPT_STRING, "TEXT", "the new prompt", &text, 1, 0, -1, 0},
        {"transition", 0, FB_OPT_STRING, "KIND", "cut | recache | blend (default cut)", &transition, 0, 0, -1, 0},
        {"chunks", 0, FB_OPT_INT, "N", "blend length in chunks, 1-64 (default 4)", &chunks, 0, 1, 64, 0},
        {"timeout", 0, FB_OPT_NUMBER, "SEC", "connect timeout (default 5)", &timeout, 0, 0.1, 600, 0},
        {"wait", 0, FB_OPT_NUMBER, "SEC", "how long to wait for the answer (default 10)", &wait, 0, 0.1, 600, 0},
        {"json", 0, FB_OPT_FLAG, NULL, "print the server's ack as JSON", &json, 0, 0, -1, 0},
        {"insecure", 0, FB_OPT_FLAG, NULL, "wss: accept self-signed certificates", &insecure, 0, 0, -1, 0},
        {"verbose", 'v', FB_OPT_FLAG, NULL, "print the server's messages and transport logs", &verbose, 0, 0, -1, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0, 0},
    };
    int rc = fb_cli_parse(self, opts, argc, argv);
    if (rc < 0) return FB_CLI_OK;
    if (rc) return rc;
    if (strcmp(transition, "cut") && strcmp(transition, "recache") && strcmp(transition, "blend")) {
        fprintf(stderr, "flipbook prompt: --transition must be cut, recache or blend, got '%s'\n",
                transition);
        return FB_CLI_USAGE;
    }

    prompt_state st;
    memset(&st, 0, sizeof st);
    st.text = text;
    st.transition = transition;
    st.chunks = chunks;
    st.json = json;
    st.verbose = verbose;

    fb_cli_install_signals();
    fb_ws_events ev = {.ctx = &st, .on_text = on_text};
    rc = fb_cli_connect("prompt", url, timeout, insecure, verbose, &ev, &st.ws, NULL);
    if (rc) return rc;

    cJSON *join = cJSON_CreateObject();
    cJSON_AddStringToObject(join, "type", "join");
    cJSON_AddStringToObject(join, "session", session);
    cJSON_AddStringToObject(join, "token", token);
    cJSON_AddNumberToObject(join, "id", ID_JOIN);
    fb_cli_send_json(st.ws, join);
    cJSON_Delete(join);

    long long deadline = fb_cli_now_us() + (long long)(wait * 1e6);
    int result = FB_CLI_OK;
    while (!st.finished && !st.failed) {
        if (fb_cli_interrupted()) {
            result = FB_CLI_INTERRUPTED;
            break;
        }
        if (!fb_ws_is_open(st.ws)) {
            fprintf(stderr, "flipbook prompt: the server closed the connection (%d %s)\n",
                    fb_ws_peer_close_code(st.ws), fb_ws_peer_close_reason(st.ws));
            result = FB_CLI_FAIL;
            break;
        }
        if (fb_cli_now_us() > deadline) {
            fprintf(stderr, "flipbook prompt: no answer from the server within %.1f s\n", wait);
            result = FB_CLI_FAIL;
            break;
        }
        fb_ws_poll(st.ws, 100);
    }
    if (st.failed) result = FB_CLI_FAIL;
    fb_ws_close(st.ws, 1000, "done", 1000);
    fb_ws_free(st.ws);
    return result;
}

const fb_cli_command fb_cmd_prompt = {
    .name = "prompt",
    .summary = "Change the prompt of a running session (as its owner).",
    .usage = "prompt --url ws://HOST:PORT/ws --session ID --token T --text TEXT\n"
             "                [--transition cut|recache|blend] [--chunks N]",
    .details =
        "Joins the session with its owner token, sends the prompt, waits for the server's\n"
        "ack and prints it. Exits 1 with the server's error code and message when the server\n"
        "refuses (bad_token, bad_value, ...).",
    .run = run_prompt,
};
