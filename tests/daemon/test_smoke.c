/* tests/daemon/test_smoke.c - flipbookd end to end, through its WebSocket and HTTP interfaces.
 *
 * Starts the real binary (--port 0), then: start a session and receive hello, config and video
 * frames with the documented header; bad messages get errors while the connection stays usable;
 * a viewer joins, gets a keyframe first and cannot steer; controls are acknowledged with frame
 * numbers; stats arrive; a recording is made and served (not while it is written); path
 * traversal on /recordings is 404; /metrics parses; the session limit holds; a session ends
 * when its owner stops it or is gone past the grace period; SIGTERM finishes the recording,
 * sends `end` with "shutdown", closes with 1001 and exits 0; a second signal exits at once and
 * leaves a playable file.
 *
 * usage: test_daemon_smoke PATH/TO/flipbookd */
#include <cJSON.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stream/packet.h"
#include "tests/net/check.h"
#include "tests/net/wstest.h"

static const char *daemon_path;
static char tmp[] = "/tmp/fbsmokeXXXXXX";
static int port;

/* ---- small helpers ---- */

static char *next_text(wstest *c, int timeout_ms, int *binaries) {
    for (;;) {
        uint8_t *d;
        size_t n;
        int op = wstest_recv(c, &d, &n, timeout_ms);
        if (op == WS_TEXT) return (char *)d;
        free(d);
        if (op != WS_BINARY) return NULL;
        if (binaries) (*binaries)++;
    }
}

static int is_type(const char *json, const char *type) {
    char t[64];
    return json && wstest_json_str(json, "type", t, sizeof t) == 0 && strcmp(t, type) == 0;
}

static int str_field(const char *json, const char *name, const char *want) {
    char v[256];
    return json && wstest_json_str(json, name, v, sizeof v) == 0 && strcmp(v, want) == 0;
}

/* Waits for an error (skipping stats/binary) and checks its code and echoed id (-1: none). */
static int expect_error(wstest *c, const char *code, int id) {
    for (;;) {
        char *t = next_text(c, 3000, NULL);
        if (!t) {
            fprintf(stderr, "expected error %s, got nothing\n", code);
            return 0;
        }
        if (is_type(t, "stats")) { free(t); continue; }
        double got_id = -1;
        wstest_json_num(t, "id", &got_id);
        int ok = is_type(t, "error") && str_field(t, "code", code) && got_id == id;
        if (!ok) fprintf(stderr, "expected error %s (id %d), got %s\n", code, id, t);
        free(t);
        return ok;
    }
}

/* Waits for an ack of `of` (skipping stats/binary); returns its frame (or 0), -1 if none. */
static double expect_ack(wstest *c, const char *of, int id) {
    int64_t end = wstest_now_ms() + 4000;
    while (wstest_now_ms() < end) {
        char *t = next_text(c, 4000, NULL);
        if (!t) break;
        if (is_type(t, "stats") || is_type(t, "recording") || is_type(t, "config")) {
            free(t);
            continue;
        }
        double got_id = -1, frame = 0;
        wstest_json_num(t, "id", &got_id);
        wstest_json_num(t, "frame", &frame);
        int ok = is_type(t, "ack") && str_field(t, "of", of) && got_id == id;
        if (!ok) fprintf(stderr, "expected ack of %s (id %d), got %s\n", of, id, t);
        free(t);
        return ok ? frame : -1;
    }
    fprintf(stderr, "expected ack of %s: nothing came\n", of);
    return -1;
}

/* Receives binary frames until `n` arrived; checks the header; returns the first frame number
 * and whether the first was a keyframe. */
static int expect_frames(wstest *c, int n, uint32_t *first_no, int *first_key) {
    int got = 0;
    uint32_t last = 0;
    int64_t last_pts = -1;
    int64_t end = wstest_now_ms() + 5000;
    while (got < n && wstest_now_ms() < end) {
        uint8_t *d;
        size_t len;
        int op = wstest_recv(c, &d, &len, 3000);
        if (op == WS_BINARY) {
            int key;
            uint32_t no;
            int64_t pts;
            CHECK(len > 16 && fb_frame_header_parse(d, len, &key, &no, &pts) == 0);
            CHECK(d[0] == 1 && d[1] == 1 && (d[2] & ~1) == 0 && d[3] == 0);
            if (got == 0) {
                if (first_no) *first_no = no;
                if (first_key) *first_key = key;
            } else {
                CHECK(no > last);
                CHECK(pts > last_pts);
            }
            last = no;
            last_pts = pts;
            got++;
        }
        free(d);
        if (op <= 0 || op == WS_CLOSE) break;
    }
    return got;
}

static int connect_ws(wstest *c) {
    return wstest_connect(c, "127.0.0.1", port, "/ws", "flipbook.v1") == 101 ? 0 : -1;
}

static int daemon_runs;

static pid_t start_daemon(const char *extra1, const char *extra2) {
    char rec[300], web[300], log[300];
    daemon_runs++;
    snprintf(rec, sizeof rec, "%s/rec", tmp);
    snprintf(web, sizeof web, "%s/web", tmp);
    snprintf(log, sizeof log, "%s/daemon%d.log", tmp, daemon_runs);
    char *argv[] = {(char *)daemon_path, "--port", "0", "--record-dir", rec, "--web-root", web,
                    "--owner-grace", "2", "--max-sessions", "2", "--width", "64", "--height",
                    "64", "--log-level", "debug", (char *)extra1, (char *)extra2, NULL};
    pid_t pid;
    port = wstest_spawn_daemon(argv, log, &pid, 10000);
    if (port <= 0) {
        fprintf(stderr, "flipbookd did not start; log:\n");
        char cmd[400];
        snprintf(cmd, sizeof cmd, "cat '%s' >&2", log);
        if (system(cmd) != 0) {}
        exit(1);
    }
    return pid;
}

static int wait_exit(pid_t pid, int timeout_ms) {
    int64_t end = wstest_now_ms() + timeout_ms;
    while (wstest_now_ms() < end) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(20000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

/* Starts a session on `c`; fills id and token. */
static int start_session(wstest *c, char *id, char *token, int msg_id) {
    char msg[128];
    snprintf(msg, sizeof msg, "{\"type\":\"start\",\"prompt\":\"a test\",\"seed\":7,\"id\":%d}", msg_id);
    if (wstest_send_text(c, msg)) return -1;
    char *hello = next_text(c, 3000, NULL);
    int ok = is_type(hello, "hello") && str_field(hello, "role", "owner") &&
             wstest_json_str(hello, "session", id, 64) == 0 &&
             wstest_json_str(hello, "token", token, 64) == 0;
    if (!ok) fprintf(stderr, "expected hello, got %s\n", hello ? hello : "(nothing)");
    free(hello);
    char *config = next_text(c, 3000, NULL);
    ok = ok && is_type(config, "config");
    free(config);
    return ok ? 0 : -1;
}

static int all_hex(const char *s, size_t n) {
    if (strlen(s) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789abcdef", s[i])) return 0;
    return 1;
}

/* ---- the scenario ---- */

static void test_session_flow(void) {
    wstest owner, viewer;
    CHECK(connect_ws(&owner) == 0);

    /* before start: garbage and steering are refused, the connection stays */
    CHECK(wstest_send_text(&owner, "not json") == 0);
    CHECK(expect_error(&owner, "bad_json", -1));
    CHECK(wstest_send_text(&owner, "{\"type\":\"prompt\",\"text\":\"x\",\"id\":3}") == 0);
    CHECK(expect_error(&owner, "no_session", 3));
    CHECK(wstest_send_text(&owner, "{\"type\":\"join\",\"session\":\"ffffffffffff\"}") == 0);
    CHECK(expect_error(&owner, "no_session", -1));
    CHECK(wstest_send_text(&owner, "{\"type\":\"start\",\"prompt\":\"x\",\"width\":8192}") == 0);
    CHECK(expect_error(&owner, "bad_value", -1));
    CHECK(wstest_send_text(&owner, "{\"type\":\"start\",\"prompt\":\"x\",\"fps\":100}") == 0);
    CHECK(expect_error(&owner, "bad_value", -1));

    /* start: hello, then config, then video starting with a keyframe */
    CHECK(wstest_send_text(&owner, "{\"type\":\"start\",\"prompt\":\"a red ball\",\"id\":1}") == 0);
    char *hello = next_text(&owner, 3000, NULL);
    CHECK(is_type(hello, "hello"));
    char sid[64] = "", token[64] = "", viewer_link[128] = "";
    CHECK(str_field(hello, "role", "owner"));
    CHECK(wstest_json_str(hello, "session", sid, sizeof sid) == 0 && all_hex(sid, 12));
    CHECK(wstest_json_str(hello, "token", token, sizeof token) == 0 && all_hex(token, 32));
    CHECK(wstest_json_str(hello, "viewer", viewer_link, sizeof viewer_link) == 0);
    char want_link[128];
    snprintf(want_link, sizeof want_link, "/?session=%s", sid);
    CHECK_STR(viewer_link, want_link);
    CHECK(strstr(hello, "\"server\":\"flipbookd/") != NULL);
    free(hello);
    char *config = next_text(&owner, 3000, NULL);
    CHECK(is_type(config, "config") && str_field(config, "codec", "vp09.00.31.08"));
    double w = 0, h = 0, fps = 0;
    wstest_json_num(config, "width", &w);
    wstest_json_num(config, "height", &h);
    wstest_json_num(config, "fps", &fps);
    CHECK(w == 64 && h == 64 && fps == 30);
    CHECK(config && strstr(config, "\"colorSpace\":{\"primaries\":\"bt709\",\"transfer\":\"bt709\","
                                   "\"matrix\":\"bt709\",\"fullRange\":false}"));
    free(config);
    uint32_t first = 99;
    int key = 0;
    CHECK(expect_frames(&owner, 10, &first, &key) == 10);
    CHECK(first == 0 && key == 1);

    /* errors while in the session; the connection stays usable */
    CHECK(wstest_send_text(&owner, "{\"type\":\"start\",\"prompt\":\"again\",\"id\":2}") == 0);
    CHECK(expect_error(&owner, "already_in_session", 2));
    CHECK(wstest_send_text(&owner, "{\"type\":\"dance\",\"id\":4}") == 0);
    CHECK(expect_error(&owner, "unknown_type", 4));
    CHECK(wstest_send_text(&owner, "{\"type\":\"seed\",\"seed\":-1,\"id\":5}") == 0);
    CHECK(expect_error(&owner, "bad_value", 5));
    CHECK(wstest_send_frame(&owner, WS_BINARY, 1, "xx", 2) == 0);
    CHECK(expect_error(&owner, "binary_not_allowed", -1));
    CHECK(wstest_send_text(&owner, "{\"type\":\"anchor\",\"action\":\"pin\",\"id\":6}") == 0);
    CHECK(expect_error(&owner, "unsupported", 6));

    /* controls are acknowledged with the frame they apply from */
    CHECK(wstest_send_text(&owner, "{\"type\":\"prompt\",\"text\":\"a blue cube\",\"id\":10}") == 0);
    CHECK(expect_ack(&owner, "prompt", 10) > 0);
    CHECK(wstest_send_text(&owner, "{\"type\":\"seed\",\"seed\":123,\"id\":11}") == 0);
    CHECK(expect_ack(&owner, "seed", 11) > 0);
    CHECK(wstest_send_text(&owner, "{\"type\":\"keyframe\",\"id\":12}") == 0);
    CHECK(expect_ack(&owner, "keyframe", 12) >= 0);
    CHECK(wstest_send_text(&owner, "{\"type\":\"reset\",\"id\":13}") == 0);
    CHECK(expect_ack(&owner, "reset", 13) > 0);
    CHECK(expect_frames(&owner, 3, NULL, NULL) == 3);

    /* a viewer: hello without token, config, then a keyframe first */
    CHECK(connect_ws(&viewer) == 0);
    char msg[256];
    snprintf(msg, sizeof msg, "{\"type\":\"join\",\"session\":\"%s\",\"token\":\"%s\"}", sid,
             "00000000000000000000000000000000");
    CHECK(wstest_send_text(&viewer, msg) == 0);
    CHECK(expect_error(&viewer, "bad_token", -1));
    snprintf(msg, sizeof msg, "{\"type\":\"join\",\"session\":\"%s\",\"id\":20}", sid);
    CHECK(wstest_send_text(&viewer, msg) == 0);
    hello = next_text(&viewer, 3000, NULL);
    CHECK(is_type(hello, "hello") && str_field(hello, "role", "viewer"));
    CHECK(hello && !strstr(hello, "\"token\""));
    free(hello);
    config = next_text(&viewer, 3000, NULL);
    CHECK(is_type(config, "config"));
    free(config);
    key = 0;
    CHECK(expect_frames(&viewer, 5, &first, &key) == 5);
    CHECK(key == 1);

    /* viewers cannot steer */
    const char *steer[] = {"{\"type\":\"prompt\",\"text\":\"x\",\"id\":21}",
                           "{\"type\":\"record\",\"action\":\"start\",\"id\":21}",
                           "{\"type\":\"stop\",\"id\":21}", "{\"type\":\"pause\",\"id\":21}",
                           "{\"type\":\"seed\",\"seed\":1,\"id\":21}"};
    for (size_t i = 0; i < sizeof steer / sizeof steer[0]; i++) {
        CHECK(wstest_send_text(&viewer, steer[i]) == 0);
        CHECK(expect_error(&viewer, "not_owner", 21));
    }
    /* but may ask for a keyframe and send stats */
    CHECK(wstest_send_text(&viewer, "{\"type\":\"keyframe\",\"id\":22}") == 0);
    CHECK(expect_ack(&viewer, "keyframe", 22) >= 0);
    CHECK(wstest_send_text(&viewer, "{\"type\":\"stats\",\"decodeQueue\":1,\"fps\":30,\"dropped\":4}") == 0);

    /* stats once a second */
    char *st = wstest_wait_type(&viewer, "stats", 2500, NULL);
    CHECK(st != NULL);
    double viewers = 0, frame = 0, sfps = 0;
    wstest_json_num(st, "viewers", &viewers);
    wstest_json_num(st, "frame", &frame);
    wstest_json_num(st, "fps", &sfps);
    CHECK(viewers == 2 && frame > 0 && sfps > 10);
    CHECK(st && strstr(st, "\"sentFps\":") && strstr(st, "\"bitrateKbps\":") &&
          strstr(st, "\"encodeMs\":") && strstr(st, "\"queue\":") && strstr(st, "\"dropped\":") &&
          strstr(st, "\"recording\":false") && strstr(st, "\"paused\":false"));
    free(st);

    /* pause: acknowledged, reported in stats, frames stop; resume: they flow again */
    CHECK(wstest_send_text(&owner, "{\"type\":\"pause\",\"id\":30}") == 0);
    CHECK(expect_ack(&owner, "pause", 30) > 0);
    st = wstest_wait_type(&owner, "stats", 2500, NULL);
    CHECK(st && strstr(st, "\"paused\":true"));
    free(st);
    int during = 0;
    st = wstest_wait_type(&owner, "stats", 2500, &during);
    free(st);
    CHECK(during <= 3);  /* only repeats for keyframe requests, if any */
    CHECK(wstest_send_text(&owner, "{\"type\":\"resume\",\"id\":31}") == 0);
    CHECK(expect_ack(&owner, "resume", 31) > 0);
    CHECK(expect_frames(&owner, 5, NULL, NULL) == 5);

    /* recording: started, not served while written, stopped, served with the reported size */
    CHECK(wstest_send_text(&owner, "{\"type\":\"record\",\"action\":\"start\",\"id\":40}") == 0);
    char name[128] = "";
    int64_t end = wstest_now_ms() + 4000;
    int acked = 0, started = 0;
    while ((!acked || !started) && wstest_now_ms() < end) {
        char *t = next_text(&owner, 3000, NULL);
        if (!t) break;
        if (is_type(t, "ack") && str_field(t, "of", "record")) acked = 1;
        if (is_type(t, "recording") && str_field(t, "state", "started")) {
            started = 1;
            wstest_json_str(t, "name", name, sizeof name);
        }
        free(t);
    }
    CHECK(acked && started && strlen(name) > 5);
    char url[256];
    snprintf(url, sizeof url, "/recordings/%s", name);
    CHECK(wstest_http("127.0.0.1", port, "GET", url, NULL, NULL, NULL, NULL) == 404);
    CHECK(wstest_send_text(&owner, "{\"type\":\"record\",\"action\":\"start\",\"id\":41}") == 0);
    CHECK(expect_error(&owner, "record_failed", 41));
    st = wstest_wait_type(&owner, "stats", 2500, NULL);
    CHECK(st && strstr(st, "\"recording\":true"));
    free(st);
    CHECK(wstest_send_text(&owner, "{\"type\":\"record\",\"action\":\"stop\",\"id\":42}") == 0);
    char *stopped = wstest_wait_type(&owner, "recording", 4000, NULL);
    CHECK(stopped && str_field(stopped, "state", "stopped"));
    char got_url[256] = "";
    double bytes = 0;
    wstest_json_str(stopped, "url", got_url, sizeof got_url);
    wstest_json_num(stopped, "bytes", &bytes);
    CHECK_STR(got_url, url);
    CHECK(bytes > 100);
    free(stopped);
    char *body = NULL, *hdrs = NULL;
    size_t blen = 0;
    CHECK(wstest_http("127.0.0.1", port, "GET", url, NULL, &hdrs, &body, &blen) == 200);
    CHECK((double)blen == bytes);
    CHECK(body && blen > 4 && memcmp(body, "\x1a\x45\xdf\xa3", 4) == 0);
    CHECK(hdrs && strstr(hdrs, "content-type: video/webm"));
    free(body);
    free(hdrs);
    CHECK(wstest_send_text(&owner, "{\"type\":\"record\",\"action\":\"stop\",\"id\":43}") == 0);
    CHECK(expect_error(&owner, "record_failed", 43));

    /* /recordings only serves daemon-made names that exist */
    const char *bad[] = {"/recordings/../../etc/passwd", "/recordings/..%2f..%2fetc%2fpasswd",
                         "/recordings/%2e%2e/daemon1.log", "/recordings/daemon1.log",
                         "/recordings/x.webm", "/recordings/planted.webm",
                         "/recordings/aaaaaaaaaaaa-20250101T000000Z.webm"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int code = wstest_http("127.0.0.1", port, "GET", bad[i], NULL, NULL, &body, NULL);
        if (code != 404) fprintf(stderr, "%s -> %d\n", bad[i], code);
        CHECK(code == 404);
        free(body);
    }

    /* /metrics: Prometheus text; every sample line is NAME[{labels}] NUMBER */
    CHECK(wstest_http("127.0.0.1", port, "GET", "/metrics", NULL, &hdrs, &body, &blen) == 200);
    CHECK(hdrs && strstr(hdrs, "content-type: text/plain"));
    int samples = 0, bad_lines = 0;
    double sessions = -1, encoded = -1, conns = -1, inf_bucket = -1, rec_bytes = -1;
    for (char *line = body ? strtok(body, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') {
            if (strncmp(line, "# HELP ", 7) != 0 && strncmp(line, "# TYPE ", 7) != 0) bad_lines++;
            continue;
        }
        char *sp = strrchr(line, ' ');
        char *e;
        if (!sp) { bad_lines++; continue; }
        double v = strtod(sp + 1, &e);
        if (*e) bad_lines++;
        *sp = '\0';
        samples++;
        if (!strcmp(line, "flipbook_sessions")) sessions = v;
        if (!strcmp(line, "flipbook_frames_encoded_total")) encoded = v;
        if (!strcmp(line, "flipbook_viewers")) conns = v;
        if (!strcmp(line, "flipbook_encode_seconds_bucket{le=\"+Inf\"}")) inf_bucket = v;
        if (!strcmp(line, "flipbook_recording_bytes_total")) rec_bytes = v;
    }
    CHECK(bad_lines == 0 && samples > 20);
    CHECK(sessions == 1 && encoded > 20 && conns == 2 && inf_bucket > 20 && rec_bytes >= bytes);
    free(body);
    free(hdrs);
    CHECK(wstest_http("127.0.0.1", port, "GET", "/metrics", NULL, NULL, &body, NULL) == 200);
    CHECK(body && strstr(body, "# TYPE flipbook_encode_seconds histogram") &&
          strstr(body, "flipbook_frames_dropped_total{reason=\"slow_client\"}") &&
          strstr(body, "flipbook_ws_errors_total{code=\"not_owner\"} 5") &&
          strstr(body, "flipbook_recordings_active 0") && strstr(body, "flipbook_bytes_sent_total"));
    free(body);

    /* session limit (2): a second session starts, a third is refused */
    wstest s2, s3;
    char sid2[64], tok2[64];
    CHECK(connect_ws(&s2) == 0 && start_session(&s2, sid2, tok2, 50) == 0);
    CHECK(connect_ws(&s3) == 0);
    CHECK(wstest_send_text(&s3, "{\"type\":\"start\",\"prompt\":\"x\",\"id\":51}") == 0);
    CHECK(expect_error(&s3, "session_limit", 51));

    /* stop by the owner: ack, then `end` and a normal close, for owner and viewers alike */
    snprintf(msg, sizeof msg, "{\"type\":\"join\",\"session\":\"%s\"}", sid2);
    CHECK(wstest_send_text(&s3, msg) == 0);
    free(wstest_wait_type(&s3, "config", 3000, NULL));
    CHECK(wstest_send_text(&s2, "{\"type\":\"stop\",\"id\":52}") == 0);
    CHECK(expect_ack(&s2, "stop", 52) >= 0);
    char *e2 = wstest_wait_type(&s3, "end", 3000, NULL);
    CHECK(e2 && str_field(e2, "reason", "stopped by the owner"));
    free(e2);
    uint8_t *d;
    size_t n;
    int op;
    while ((op = wstest_recv(&s3, &d, &n, 3000)) > 0 && op != WS_CLOSE) free(d);
    free(d);
    CHECK(op == WS_CLOSE && s3.close_code == 1000);
    wstest_close(&s2);
    wstest_close(&s3);

    /* the owner leaves: after the grace period (2 s) the viewer gets `end` */
    wstest_close(&owner);
    int64_t t0 = wstest_now_ms();
    char *e1 = wstest_wait_type(&viewer, "end", 6000, NULL);
    CHECK(e1 && str_field(e1, "reason", "no owner for 2 s"));
    CHECK(wstest_now_ms() - t0 >= 1500);
    free(e1);
    wstest_close(&viewer);

    /* and the session is gone */
    usleep(300000);
    CHECK(wstest_http("127.0.0.1", port, "GET", "/metrics", NULL, NULL, &body, NULL) == 200);
    CHECK(body && strstr(body, "\nflipbook_sessions 0\n"));
    free(body);
}

/* Owner may reconnect within the grace period with the token. */
static void test_owner_rejoin(void) {
    wstest a, b;
    char sid[64], tok[64];
    CHECK(connect_ws(&a) == 0 && start_session(&a, sid, tok, 1) == 0);
    wstest_close(&a);
    usleep(500000);
    CHECK(connect_ws(&b) == 0);
    char msg[256];
    snprintf(msg, sizeof msg, "{\"type\":\"join\",\"session\":\"%s\",\"token\":\"%s\"}", sid, tok);
    CHECK(wstest_send_text(&b, msg) == 0);
    char *hello = next_text(&b, 3000, NULL);
    CHECK(is_type(hello, "hello") && str_field(hello, "role", "owner") && str_field(hello, "token", tok));
    free(hello);
    /* still alive after the grace period, because an owner is connected again */
    sleep(3);
    CHECK(wstest_send_text(&b, "{\"type\":\"prompt\",\"text\":\"still mine\",\"id\":9}") == 0);
    CHECK(expect_ack(&b, "prompt", 9) > 0);
    CHECK(wstest_send_text(&b, "{\"type\":\"stop\"}") == 0);
    free(wstest_wait_type(&b, "end", 3000, NULL));
    wstest_close(&b);
}

/* SIGTERM with a recording running: recording stopped, end "shutdown", close 1001, exit 0. */
static void test_sigterm(pid_t pid) {
    wstest c, idle;
    char sid[64], tok[64];
    CHECK(connect_ws(&c) == 0 && start_session(&c, sid, tok, 1) == 0);
    CHECK(connect_ws(&idle) == 0);
    CHECK(wstest_send_text(&c, "{\"type\":\"record\",\"action\":\"start\"}") == 0);
    char *started = wstest_wait_type(&c, "recording", 3000, NULL);
    CHECK(started && str_field(started, "state", "started"));
    char name[128] = "";
    wstest_json_str(started, "name", name, sizeof name);
    free(started);
    CHECK(expect_frames(&c, 15, NULL, NULL) == 15);
    CHECK(kill(pid, SIGTERM) == 0);
    int saw_stopped = 0, saw_end = 0;
    for (;;) {
        uint8_t *d;
        size_t n;
        int op = wstest_recv(&c, &d, &n, 5000);
        if (op == WS_TEXT) {
            if (is_type((char *)d, "recording") && str_field((char *)d, "state", "stopped"))
                saw_stopped = 1;
            if (is_type((char *)d, "end")) {
                saw_end = 1;
                CHECK(str_field((char *)d, "reason", "shutdown"));
                CHECK(saw_stopped);  /* the recording was finished before the end */
            }
        }
        free(d);
        if (op <= 0 || op == WS_CLOSE) break;
    }
    CHECK(saw_stopped && saw_end && c.close_code == 1001);
    uint8_t *d;
    size_t n;
    CHECK(wstest_recv(&idle, &d, &n, 5000) == WS_CLOSE && idle.close_code == 1001);
    free(d);
    CHECK(wait_exit(pid, 8000) == 0);
    wstest_close(&c);
    wstest_close(&idle);
    char path[512];
    snprintf(path, sizeof path, "%s/rec/%s", tmp, name);
    struct stat st;
    CHECK(stat(path, &st) == 0 && st.st_size > 100);
}

/* Two signals: exit at once with 1; the recording cut short still starts with a WebM header
 * (and decodes, when ffprobe is installed). */
static void test_double_signal(pid_t pid) {
    wstest c;
    char sid[64], tok[64];
    CHECK(connect_ws(&c) == 0 && start_session(&c, sid, tok, 1) == 0);
    CHECK(wstest_send_text(&c, "{\"type\":\"record\",\"action\":\"start\"}") == 0);
    char *started = wstest_wait_type(&c, "recording", 3000, NULL);
    char name[128] = "";
    if (started) wstest_json_str(started, "name", name, sizeof name);
    free(started);
    CHECK(expect_frames(&c, 45, NULL, NULL) == 45);
    kill(pid, SIGTERM);
    kill(pid, SIGTERM);
    int code = wait_exit(pid, 5000);
    CHECK(code == 1 || code == 0);  /* 0 if the first signal's shutdown won the race */
    wstest_close(&c);
    char path[512];
    snprintf(path, sizeof path, "%s/rec/%s", tmp, name);
    FILE *f = fopen(path, "rb");
    unsigned char magic[4] = {0};
    CHECK(f && fread(magic, 1, 4, f) == 4 && memcmp(magic, "\x1a\x45\xdf\xa3", 4) == 0);
    if (f) fclose(f);
    if (access("/usr/bin/ffprobe", X_OK) == 0) {
        char cmd[800];
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/ffprobe -v error -count_frames -select_streams v:0 -show_entries "
                 "stream=nb_read_frames -of csv=p=0 '%s' > '%s/frames.txt' 2>/dev/null",
                 path, tmp);
        CHECK(system(cmd) == 0);
        snprintf(cmd, sizeof cmd, "%s/frames.txt", tmp);
        FILE *ff = fopen(cmd, "r");
        int frames = 0;
        if (ff) {
            if (fscanf(ff, "%d", &frames) != 1) frames = 0;
            fclose(ff);
        }
        CHECK(frames > 10);
    }
}

/* A source that fails ends its session with the reason (end, close 1011); the daemon carries
 * on and starts the next session normally. (Every session of this daemon fails at frame 20,
 * and its record directory cannot be created.) */
static void test_session_failure(pid_t pid) {
    wstest bad, next;
    char sid[64], tok[64];
    CHECK(connect_ws(&bad) == 0 && start_session(&bad, sid, tok, 1) == 0);
    char *end = wstest_wait_type(&bad, "end", 5000, NULL);
    char reason[256] = "";
    if (end) wstest_json_str(end, "reason", reason, sizeof reason);
    CHECK(strstr(reason, "source failed: test pattern told to fail at frame 20") != NULL);
    free(end);
    uint8_t *d;
    size_t n;
    int op;
    while ((op = wstest_recv(&bad, &d, &n, 3000)) > 0 && op != WS_CLOSE) free(d);
    free(d);
    CHECK(op == WS_CLOSE && bad.close_code == 1011);
    wstest_close(&bad);
    char *body = NULL;
    CHECK(wstest_http("127.0.0.1", port, "GET", "/metrics", NULL, NULL, &body, NULL) == 200);
    CHECK(body && strstr(body, "\nflipbook_sessions_failed_total 1\n") &&
          strstr(body, "\nflipbook_sessions 0\n"));
    free(body);
    CHECK(connect_ws(&next) == 0 && start_session(&next, sid, tok, 2) == 0);
    /* this daemon's record dir cannot exist (its parent is a file): the recording fails with a
     * reason, the stream goes on */
    CHECK(wstest_send_text(&next, "{\"type\":\"record\",\"action\":\"start\",\"id\":3}") == 0);
    int failed_msg = 0, error_msg = 0;
    for (int i = 0; i < 4 && !(failed_msg && error_msg); i++) {
        char *t = next_text(&next, 3000, NULL);
        if (!t) break;
        if (is_type(t, "recording") && str_field(t, "state", "failed")) {
            char m[256] = "";
            wstest_json_str(t, "message", m, sizeof m);
            failed_msg = strstr(m, "cannot record") != NULL;
        }
        if (is_type(t, "error") && str_field(t, "code", "record_failed")) error_msg = 1;
        free(t);
    }
    CHECK(failed_msg && error_msg);
    CHECK(expect_frames(&next, 10, NULL, NULL) == 10);
    wstest_close(&next);
    kill(pid, SIGTERM);
    CHECK(wait_exit(pid, 8000) == 0);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH/TO/flipbookd\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    daemon_path = argv[1];
    if (!mkdtemp(tmp)) return 2;
    char path[400];
    snprintf(path, sizeof path, "%s/web", tmp);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/web/index.html", tmp);
    FILE *f = fopen(path, "w");
    fputs("<html>flipbook</html>", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/rec", tmp);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/rec/planted.webm", tmp);
    f = fopen(path, "w");
    fputs("not made by the daemon", f);
    fclose(f);

    pid_t pid = start_daemon(NULL, NULL);
    char *body = NULL;
    CHECK(wstest_http("127.0.0.1", port, "GET", "/", NULL, NULL, &body, NULL) == 200);
    CHECK(body && strstr(body, "flipbook"));
    free(body);
    test_session_flow();
    test_owner_rejoin();
    test_sigterm(pid);

    pid = start_daemon(NULL, NULL);
    test_double_signal(pid);

    setenv("FLIPBOOK_TESTPATTERN_FAIL_AT", "20", 1);
    char bad_dir[400];
    snprintf(bad_dir, sizeof bad_dir, "%s/rec/planted.webm/rec", tmp);
    pid = start_daemon("--record-dir", bad_dir);
    unsetenv("FLIPBOOK_TESTPATTERN_FAIL_AT");
    test_session_failure(pid);

    if (check_failures) {
        fprintf(stderr, "daemon log kept in %s\n", tmp);
    } else {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    }
    return check_exit("daemon_smoke");
}
