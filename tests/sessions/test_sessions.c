/* tests/sessions/test_sessions.c - generation sessions end to end: the real flipbookd on a model
 * file (the tiny random-weight model of tests/data/golden), driven through its WebSocket and
 * HTTP interfaces with a raw client (tests/net/wstest.h).
 *
 *   basic        frames arrive at the model's frame rate; config/hello/stats carry the engine
 *                fields; prompt, seed, pause/resume, pin, clear, reset are acknowledged with the
 *                chunk and frame where they apply and stats report them; viewers cannot steer
 *   independent  two concurrent sessions with different prompts: their frames differ, and
 *                steering one leaves the other byte-identical to a run where nothing was
 *                steered; the steered one is identical up to the acknowledged frame
 *   admission    past what runs at full frame rate a start is refused with a message saying
 *                how many fit; the KV pool limits likewise; --overcommit slow admits them and
 *                every session reports the same slowdown and runs slower
 *   anchor       anchor images: wrong size, format, base64 or length give bad_value and the
 *                session goes on; rgb24 in one message and rgba32 in parts are acknowledged
 *   failure      a forced engine failure (FLIPBOOK_ENGINE_FAIL_ON_PROMPT) ends that session
 *                only (end with the reason, close 1011), on a chunk and on an anchor image;
 *                its KV share is free again at once
 *   record       recording an engine session gives a WebM that ffprobe reads
 *
 * usage: test_sessions SCENARIO FLIPBOOKD MODEL [FFPROBE] */
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

static const char *daemon_path, *model_path, *ffprobe_path;
static char tmp[] = "/tmp/fbsessXXXXXX";

/* ---- the daemon ---- */

typedef struct dmn {
    pid_t pid;
    int port;
    char log[320];
} dmn;

static int runs;

/* Starts flipbookd on the model with the given extra arguments (NULL-terminated). */
static int dmn_start(dmn *d, const char *const *extra) {
    char rec[300];
    snprintf(rec, sizeof rec, "%s/rec", tmp);
    snprintf(d->log, sizeof d->log, "%s/daemon%d.log", tmp, ++runs);
    const char *argv[40] = {daemon_path, "--port", "0", "--model", model_path, "--record-dir",
                            rec, "--log-level", "debug", "--owner-grace", "1"};
    int n = 11;
    for (int i = 0; extra && extra[i] && n < 38; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    d->port = wstest_spawn_daemon((char *const *)argv, d->log, &d->pid, 20000);
    if (d->port <= 0) {
        fprintf(stderr, "flipbookd did not start; log:\n");
        char cmd[400];
        snprintf(cmd, sizeof cmd, "cat '%s' >&2", d->log);
        if (system(cmd) != 0) {}
        return -1;
    }
    return 0;
}

static int dmn_stop(dmn *d) {
    kill(d->pid, SIGTERM);
    int64_t end = wstest_now_ms() + 10000;
    while (wstest_now_ms() < end) {
        int st;
        if (waitpid(d->pid, &st, WNOHANG) == d->pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(20000);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    return -1;
}

static int log_contains(const dmn *d, const char *text) {
    FILE *f = fopen(d->log, "r");
    if (!f) return 0;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, text) != NULL;
}

/* ---- a client connection that records the video it receives ---- */

#define MAX_KEEP 1024
#define MAX_TEXTS 64

typedef struct conn {
    wstest ws;
    int ok;
    int frames;                   /* binary messages received */
    int64_t first_ms;             /* arrival of the first frame */
    int64_t last_ms;
    uint32_t last_no;
    int first_key;
    uint8_t *payload[MAX_KEEP];   /* VP9 bytes by frame number */
    size_t plen[MAX_KEEP];
    cJSON *texts[MAX_TEXTS];      /* text messages received while pumping video */
    int n_texts;
    int closed;
} conn;

static int conn_open(conn *c, int port) {
    memset(c, 0, sizeof *c);
    c->ok = wstest_connect(&c->ws, "127.0.0.1", port, "/ws", "flipbook.v1") == 101;
    return c->ok ? 0 : -1;
}

static void conn_close(conn *c) {
    if (c->ok) wstest_close(&c->ws);
    for (int i = 0; i < MAX_KEEP; i++) free(c->payload[i]);
    for (int i = 0; i < c->n_texts; i++) cJSON_Delete(c->texts[i]);
    memset(c, 0, sizeof *c);
}

static void send_json(conn *c, const char *json) { CHECK(wstest_send_text(&c->ws, json) == 0); }

/* Receives one message within timeout_ms: video is recorded, text is queued. Returns 1 when
 * something came, 0 on timeout, -1 when the connection is closed. */
static int conn_step(conn *c, int timeout_ms) {
    if (c->closed) return -1;
    uint8_t *d;
    size_t n;
    int op = wstest_recv(&c->ws, &d, &n, timeout_ms);
    if (op == 0) return 0;
    if (op < 0 || op == WS_CLOSE) {
        free(d);
        c->closed = 1;
        return -1;
    }
    if (op == WS_BINARY) {
        int key;
        uint32_t no;
        int64_t pts;
        if (n <= FB_FRAME_HEADER_SIZE || fb_frame_header_parse(d, n, &key, &no, &pts) != 0) {
            fprintf(stderr, "bad video message\n");
            check_failures++;
        } else {
            if (c->frames == 0) {
                c->first_ms = wstest_now_ms();
                c->first_key = key;
            } else if (no != c->last_no + 1) {
                fprintf(stderr, "frame %u after %u\n", no, c->last_no);
                check_failures++;
            }
            c->last_no = no;
            c->last_ms = wstest_now_ms();
            c->frames++;
            if (no < MAX_KEEP && !c->payload[no]) {
                c->plen[no] = n - FB_FRAME_HEADER_SIZE;
                c->payload[no] = malloc(c->plen[no]);
                if (c->payload[no]) memcpy(c->payload[no], d + FB_FRAME_HEADER_SIZE, c->plen[no]);
            }
        }
    } else if (op == WS_TEXT) {
        cJSON *j = cJSON_Parse((const char *)d);
        if (!j) {
            fprintf(stderr, "text message is not JSON: %s\n", (const char *)d);
            check_failures++;
        } else if (c->n_texts < MAX_TEXTS) {
            c->texts[c->n_texts++] = j;
        } else {
            cJSON_Delete(j);  /* a test that never reads its texts: drop the oldest */
        }
    }
    free(d);
    return 1;
}

static const char *jstr(const cJSON *o, const char *name) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(f) ? f->valuestring : NULL;
}

static double jnum(const cJSON *o, const char *name, double dflt) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(f) ? f->valuedouble : dflt;
}

static int is_type(const cJSON *o, const char *type) {
    const char *t = jstr(o, "type");
    return t && strcmp(t, type) == 0;
}

/* Takes the first queued text message of one of the types ("ack|error"), waiting (and
 * recording video) up to timeout_ms. Returns it (caller deletes) or NULL. */
static cJSON *conn_wait(conn *c, const char *types, int timeout_ms) {
    int64_t end = wstest_now_ms() + timeout_ms;
    for (;;) {
        for (int i = 0; i < c->n_texts; i++) {
            const char *t = jstr(c->texts[i], "type");
            char want[128];
            snprintf(want, sizeof want, "|%s|", types);
            char key[64];
            snprintf(key, sizeof key, "|%s|", t ? t : "");
            if (strstr(want, key)) {
                cJSON *j = c->texts[i];
                memmove(&c->texts[i], &c->texts[i + 1], (size_t)(c->n_texts - i - 1) * sizeof j);
                c->n_texts--;
                return j;
            }
        }
        if (c->closed) return NULL;
        int64_t left = end - wstest_now_ms();
        if (left <= 0) return NULL;
        conn_step(c, (int)(left > 200 ? 200 : left));
    }
}

/* Drops queued texts of a type (e.g. stats before a fresh one is wanted). */
static void conn_drop(conn *c, const char *type) {
    for (int i = 0; i < c->n_texts;) {
        if (is_type(c->texts[i], type)) {
            cJSON_Delete(c->texts[i]);
            memmove(&c->texts[i], &c->texts[i + 1], (size_t)(c->n_texts - i - 1) * sizeof(cJSON *));
            c->n_texts--;
        } else {
            i++;
        }
    }
}

/* Receives for `ms` on several connections at once. */
static void pump(conn **cs, int n, int ms) {
    int64_t end = wstest_now_ms() + ms;
    while (wstest_now_ms() < end)
        for (int i = 0; i < n; i++) conn_step(cs[i], 5);
}

/* Until every connection has frame `no` (or timeout). */
static int pump_until_frame(conn **cs, int n, uint32_t no, int timeout_ms) {
    int64_t end = wstest_now_ms() + timeout_ms;
    for (;;) {
        int all = 1;
        for (int i = 0; i < n; i++) all &= cs[i]->frames > 0 && cs[i]->last_no >= no;
        if (all) return 1;
        if (wstest_now_ms() >= end) return 0;
        for (int i = 0; i < n; i++) conn_step(cs[i], 5);
    }
}

/* An ack of `of` with `id`: returns it (caller deletes) or NULL after printing what came. */
static cJSON *expect_ack(conn *c, const char *of, int id) {
    cJSON *j = conn_wait(c, "ack|error", 5000);
    const char *got = j ? jstr(j, "of") : NULL;
    if (!j || !is_type(j, "ack") || !got || strcmp(got, of) != 0 || jnum(j, "id", -1) != id) {
        char *s = j ? cJSON_PrintUnformatted(j) : NULL;
        fprintf(stderr, "expected ack of %s (id %d), got %s\n", of, id, s ? s : "nothing");
        free(s);
        cJSON_Delete(j);
        check_failures++;
        return NULL;
    }
    return j;
}

/* An error with `code` (and id): 1 when it came. Its message goes to *msg (optional). */
static int expect_error(conn *c, const char *code, int id, char *msg, size_t n) {
    cJSON *j = conn_wait(c, "ack|error", 5000);
    const char *got = j ? jstr(j, "code") : NULL;
    int ok = j && is_type(j, "error") && got && strcmp(got, code) == 0 && jnum(j, "id", -1) == id;
    if (!ok) {
        char *s = j ? cJSON_PrintUnformatted(j) : NULL;
        fprintf(stderr, "expected error %s (id %d), got %s\n", code, id, s ? s : "nothing");
        free(s);
    } else if (msg) {
        snprintf(msg, n, "%s", jstr(j, "message") ? jstr(j, "message") : "");
    }
    cJSON_Delete(j);
    return ok;
}

/* Starts a session on a fresh connection. Returns 0 with id/token, or -1; *refusal receives an
 * error message when the start was refused (code in refusal_code). */
static int start(conn *c, int port, const char *prompt, int seed, char *id, char *token,
                 char *refusal_code, char *refusal, size_t refusal_size) {
    if (conn_open(c, port) != 0) return -1;
    char msg[512];
    snprintf(msg, sizeof msg, "{\"type\":\"start\",\"prompt\":\"%s\",\"seed\":%d,\"id\":1}", prompt,
             seed);
    send_json(c, msg);
    cJSON *h = conn_wait(c, "hello|error", 8000);
    if (!h || !is_type(h, "hello")) {
        if (h && refusal) {
            snprintf(refusal_code, 64, "%s", jstr(h, "code") ? jstr(h, "code") : "");
            snprintf(refusal, refusal_size, "%s", jstr(h, "message") ? jstr(h, "message") : "");
        }
        cJSON_Delete(h);
        return -1;
    }
    if (id) snprintf(id, 64, "%s", jstr(h, "session") ? jstr(h, "session") : "");
    if (token) snprintf(token, 64, "%s", jstr(h, "token") ? jstr(h, "token") : "");
    cJSON_Delete(h);
    cJSON *cfg = conn_wait(c, "config", 5000);
    int ok = cfg != NULL;
    cJSON_Delete(cfg);
    return ok ? 0 : -1;
}

/* A fresh stats message (older ones dropped first). */
static cJSON *fresh_stats(conn *c) {
    conn_drop(c, "stats");
    return conn_wait(c, "stats", 3000);
}

static double metric(int port, const char *name) {
    char *body = NULL;
    size_t len = 0;
    if (wstest_http("127.0.0.1", port, "GET", "/metrics", NULL, NULL, &body, &len) != 200) {
        free(body);
        return -1;
    }
    double v = -1;
    char key[160];
    snprintf(key, sizeof key, "\n%s ", name);
    char *p = body ? strstr(body, key) : NULL;
    if (p) v = strtod(p + strlen(key), NULL);
    free(body);
    return v;
}

/* ---- scenarios ---- */

static void test_basic(void) {
    dmn d;
    if (dmn_start(&d, NULL) != 0) { check_failures++; return; }
    CHECK(log_contains(&d, "engine: "));
    CHECK(log_contains(&d, "running on the CPU") || log_contains(&d, "CPU backend"));

    conn o;
    CHECK(conn_open(&o, d.port) == 0);
    int64_t t0 = wstest_now_ms();
    send_json(&o, "{\"type\":\"start\",\"prompt\":\"a red ball rolls \\u00fcber the floor\","
                  "\"seed\":7,\"id\":1}");
    cJSON *hello = conn_wait(&o, "hello|error", 8000);
    CHECK(hello && is_type(hello, "hello"));
    char id[64] = "", token[64] = "";
    if (hello) {
        snprintf(id, sizeof id, "%s", jstr(hello, "session") ? jstr(hello, "session") : "");
        snprintf(token, sizeof token, "%s", jstr(hello, "token") ? jstr(hello, "token") : "");
        /* the tiny model's tokenizer does not know "über" */
        const cJSON *uw = cJSON_GetObjectItemCaseSensitive(hello, "unknownWords");
        CHECK(cJSON_IsArray(uw) && cJSON_GetArraySize(uw) >= 1);
        const cJSON *w0 = cJSON_IsArray(uw) ? cJSON_GetArrayItem(uw, 0) : NULL;
        CHECK(cJSON_IsString(w0) && strcmp(w0->valuestring, "\xc3\xbc" "ber") == 0);
    }
    cJSON_Delete(hello);
    cJSON *cfg = conn_wait(&o, "config", 5000);
    CHECK(cfg && jnum(cfg, "width", 0) == 64 && jnum(cfg, "height", 0) == 64 &&
          jnum(cfg, "fps", 0) == 16 && jnum(cfg, "chunkFrames", 0) == 8);
    CHECK(cfg && jstr(cfg, "source") && strcmp(jstr(cfg, "source"), "engine") == 0);
    CHECK(cfg && jstr(cfg, "model") && strcmp(jstr(cfg, "model"), "golden-tiny") == 0);
    const cJSON *ai = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "anchorImage") : NULL;
    CHECK(ai && jnum(ai, "width", 0) == 64 && jnum(ai, "partChars", 0) > 1000);
    cJSON_Delete(cfg);

    /* frames at the model's rate, numbered from 0, the first a keyframe */
    conn *one[] = {&o};
    CHECK(pump_until_frame(one, 1, 0, 5000));
    int64_t first_ms = o.first_ms - t0;
    CHECK(o.first_key);
    CHECK(o.payload[0] != NULL);
    int f0 = o.frames;
    int64_t m0 = wstest_now_ms();
    pump(one, 1, 3000);
    double rate = (o.frames - f0) * 1000.0 / (double)(wstest_now_ms() - m0);
    fprintf(stderr, "FIGURE start to first frame: %lld ms; frame rate %.2f fps (model 16)\n",
            (long long)first_ms, rate);
    CHECK(rate > 12.0 && rate < 17.5);

    /* stats carry the engine figures */
    cJSON *st = fresh_stats(&o);
    CHECK(st != NULL);
    if (st) {
        CHECK(jnum(st, "chunk", -1) >= 1);
        CHECK(jnum(st, "genFps", -1) > 5);
        CHECK(jnum(st, "chunkMs", -1) > 0);
        CHECK(jnum(st, "buffer", -1) >= 0 && jnum(st, "buffer", 99) <= jnum(st, "bufferMax", 0));
        CHECK(jnum(st, "kvUsed", -1) == 5 && jnum(st, "kvTotal", -1) == 5);
        CHECK(jnum(st, "kvStreams", -1) == 1 && jnum(st, "kvStreamsMax", -1) >= 1);
        CHECK(jnum(st, "slowdown", -1) == 1);
        CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(st, "promptLatencyMs")));
        CHECK(jnum(st, "fps", 0) > 12);
    }
    cJSON_Delete(st);

    /* a prompt change: ack with chunk and frame; stats report it and its latency */
    uint32_t now_no = o.last_no;
    int64_t tp = wstest_now_ms();
    send_json(&o, "{\"type\":\"prompt\",\"text\":\"two blue cubes slide on ice\","
                  "\"transition\":\"recache\",\"id\":2}");
    cJSON *ack = expect_ack(&o, "prompt", 2);
    int64_t ack_chunk = -1, ack_frame = -1;
    if (ack) {
        ack_chunk = (int64_t)jnum(ack, "chunk", -1);
        ack_frame = (int64_t)jnum(ack, "frame", -1);
        CHECK(ack_chunk >= 1);
        CHECK(ack_frame > (int64_t)now_no);
        CHECK(ack_frame <= (int64_t)now_no + 24);  /* at most the buffer (two chunks) ahead */
        CHECK(jstr(ack, "transition") && strcmp(jstr(ack, "transition"), "recache") == 0);
        const cJSON *uw = cJSON_GetObjectItemCaseSensitive(ack, "unknownWords");
        CHECK(cJSON_IsArray(uw) && cJSON_GetArraySize(uw) == 0);
    }
    cJSON_Delete(ack);
    CHECK(pump_until_frame(one, 1, (uint32_t)(ack_frame < 0 ? 0 : ack_frame), 5000));
    fprintf(stderr, "FIGURE prompt change to its first frame (client side): %lld ms\n",
            (long long)(o.last_ms - tp));
    pump(one, 1, 200);
    st = fresh_stats(&o);
    CHECK(st != NULL);
    if (st) {
        const cJSON *lc = cJSON_GetObjectItemCaseSensitive(st, "lastControl");
        CHECK(lc && jstr(lc, "type") && strcmp(jstr(lc, "type"), "prompt") == 0);
        CHECK(lc && jnum(lc, "chunk", -2) == ack_chunk && jnum(lc, "frame", -2) == ack_frame);
        double pl = jnum(st, "promptLatencyMs", -1);
        fprintf(stderr, "FIGURE prompt change to its first frame (daemon stats): %.1f ms\n", pl);
        CHECK(pl > 0 && pl < 3000);
        CHECK(jnum(st, "chunk", -1) >= ack_chunk);
    }
    cJSON_Delete(st);

    /* a prompt the model cannot use, and a bad transition */
    send_json(&o, "{\"type\":\"prompt\",\"text\":\"   \",\"id\":3}");
    CHECK(expect_error(&o, "bad_value", 3, NULL, 0));
    send_json(&o, "{\"type\":\"prompt\",\"text\":\"x\",\"transition\":\"fade\",\"id\":4}");
    CHECK(expect_error(&o, "bad_value", 4, NULL, 0));

    /* seed, pin, blend */
    send_json(&o, "{\"type\":\"seed\",\"seed\":99,\"id\":5}");
    ack = expect_ack(&o, "seed", 5);
    CHECK(ack && jnum(ack, "seed", -1) == 99 && jnum(ack, "chunk", -1) >= 1);
    cJSON_Delete(ack);
    send_json(&o, "{\"type\":\"anchor\",\"action\":\"pin\",\"id\":6}");
    ack = expect_ack(&o, "anchor", 6);
    CHECK(ack && jnum(ack, "chunk", -1) >= 1 && jnum(ack, "frame", -1) > 0);
    cJSON_Delete(ack);
    send_json(&o, "{\"type\":\"prompt\",\"text\":\"a green kite\",\"transition\":\"blend\","
                  "\"chunks\":3,\"id\":7}");
    ack = expect_ack(&o, "prompt", 7);
    CHECK(ack && jstr(ack, "transition") && strcmp(jstr(ack, "transition"), "blend") == 0);
    cJSON_Delete(ack);

    /* a viewer sees the stream and cannot steer it */
    conn v;
    CHECK(conn_open(&v, d.port) == 0);
    char join[200];
    snprintf(join, sizeof join, "{\"type\":\"join\",\"session\":\"%s\"}", id);
    send_json(&v, join);
    cJSON *vh = conn_wait(&v, "hello", 5000);
    CHECK(vh && jstr(vh, "role") && strcmp(jstr(vh, "role"), "viewer") == 0);
    cJSON_Delete(vh);
    cJSON *vc = conn_wait(&v, "config", 5000);
    CHECK(vc && jstr(vc, "source") && strcmp(jstr(vc, "source"), "engine") == 0);
    cJSON_Delete(vc);
    conn *both[] = {&o, &v};
    pump(both, 2, 600);
    CHECK(v.frames > 0 && v.first_key);
    send_json(&v, "{\"type\":\"prompt\",\"text\":\"mine now\",\"id\":8}");
    CHECK(expect_error(&v, "not_owner", 8, NULL, 0));
    send_json(&v, "{\"type\":\"anchor\",\"action\":\"pin\",\"id\":9}");
    CHECK(expect_error(&v, "not_owner", 9, NULL, 0));
    send_json(&v, "{\"type\":\"reset\",\"id\":10}");
    CHECK(expect_error(&v, "not_owner", 10, NULL, 0));
    conn_close(&v);

    /* pause: no frames, no engine work; resume */
    send_json(&o, "{\"type\":\"pause\",\"id\":11}");
    ack = expect_ack(&o, "pause", 11);
    CHECK(ack && jnum(ack, "chunk", -1) >= 0);
    cJSON_Delete(ack);
    pump(one, 1, 300);
    int fp = o.frames;
    double chunks0 = metric(d.port, "flipbook_engine_chunks_total");
    pump(one, 1, 1200);
    CHECK(o.frames == fp);
    CHECK(metric(d.port, "flipbook_engine_chunks_total") == chunks0);
    st = fresh_stats(&o);
    CHECK(st && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(st, "paused")));
    cJSON_Delete(st);
    send_json(&o, "{\"type\":\"resume\",\"id\":12}");
    cJSON_Delete(expect_ack(&o, "resume", 12));
    pump(one, 1, 1000);
    CHECK(o.frames > fp + 8);

    /* reset and clear restart the stream: chunk 0 */
    send_json(&o, "{\"type\":\"reset\",\"id\":13}");
    ack = expect_ack(&o, "reset", 13);
    CHECK(ack && jnum(ack, "chunk", -1) == 0);
    cJSON_Delete(ack);
    send_json(&o, "{\"type\":\"anchor\",\"action\":\"clear\",\"id\":14}");
    ack = expect_ack(&o, "anchor", 14);
    CHECK(ack && jnum(ack, "chunk", -1) == 0);
    int64_t clear_frame = ack ? (int64_t)jnum(ack, "frame", -1) : -1;
    cJSON_Delete(ack);
    pump(one, 1, 1200);
    st = fresh_stats(&o);
    CHECK(st != NULL);
    if (st) {
        const cJSON *lc = cJSON_GetObjectItemCaseSensitive(st, "lastControl");
        CHECK(lc && jstr(lc, "type") && strcmp(jstr(lc, "type"), "anchor") == 0 &&
              jnum(lc, "frame", -1) == clear_frame);
        CHECK(jnum(st, "chunk", -1) >= 1 && jnum(st, "chunk", 99) <= 4);
    }
    cJSON_Delete(st);

    /* /metrics has the engine's figures */
    CHECK(metric(d.port, "flipbook_engine_chunk_seconds_count") > 10);
    CHECK(metric(d.port, "flipbook_engine_capacity_sessions") >= 1);
    CHECK(metric(d.port, "flipbook_engine_sessions") == 1);
    CHECK(metric(d.port, "flipbook_engine_errors_total") == 0);

    send_json(&o, "{\"type\":\"stop\",\"id\":15}");
    cJSON *end = conn_wait(&o, "end", 5000);
    CHECK(end != NULL);
    cJSON_Delete(end);
    conn_close(&o);
    usleep(300000);
    CHECK(metric(d.port, "flipbook_engine_sessions") == 0);
    CHECK(dmn_stop(&d) == 0);
}

/* One run of two sessions A and B; B is steered after frame 16 when `steer`. Frames 0..n-1 of
 * both are kept in the connections. Returns B's acknowledged frame (or -1). */
static int64_t two_sessions(conn *a, conn *b, int steer, uint32_t n) {
    dmn d;
    if (dmn_start(&d, NULL) != 0) { check_failures++; return -1; }
    int64_t ack_frame = -1;
    CHECK(start(a, d.port, "a red ball rolls across a wooden floor", 11, NULL, NULL, NULL, NULL,
                0) == 0);
    CHECK(start(b, d.port, "two blue cubes slide on ice at sunset", 22, NULL, NULL, NULL, NULL,
                0) == 0);
    conn *both[] = {a, b};
    CHECK(pump_until_frame(both, 2, 16, 8000));
    if (steer) {
        send_json(b, "{\"type\":\"prompt\",\"text\":\"a green kite over the sea\",\"id\":5}");
        cJSON *ack = expect_ack(b, "prompt", 5);
        if (ack) ack_frame = (int64_t)jnum(ack, "frame", -1);
        cJSON_Delete(ack);
        CHECK(ack_frame > 16 && ack_frame < (int64_t)n - 1);
    }
    CHECK(pump_until_frame(both, 2, n, 12000));
    CHECK(dmn_stop(&d) == 0);
    return ack_frame;
}

static int same(const conn *x, const conn *y, uint32_t no) {
    return x->payload[no] && y->payload[no] && x->plen[no] == y->plen[no] &&
           memcmp(x->payload[no], y->payload[no], x->plen[no]) == 0;
}

static void test_independent(void) {
    const uint32_t n = 56;
    conn a1, b1, a2, b2;
    int64_t f = two_sessions(&a1, &b1, 1, n);
    two_sessions(&a2, &b2, 0, n);
    /* A is untouched by B's steering: every frame identical to the unsteered run */
    int a_same = 0, ab_same = 0, b_before = 0, b_after_diff = 0;
    for (uint32_t i = 0; i < n; i++) {
        a_same += same(&a1, &a2, i);
        ab_same += same(&a1, &b1, i);
    }
    CHECK(a_same == (int)n);
    /* different prompts give different pictures */
    CHECK(ab_same == 0);
    /* B: identical up to the acknowledged frame, different from there on */
    if (f > 0) {
        for (uint32_t i = 0; i < (uint32_t)f; i++) b_before += same(&b1, &b2, i);
        for (uint32_t i = (uint32_t)f; i < n; i++) b_after_diff += !same(&b1, &b2, i);
        CHECK(b_before == (int)f);
        CHECK(!same(&b1, &b2, (uint32_t)f));
        CHECK(b_after_diff >= (int)(n - (uint32_t)f) / 2);
    }
    fprintf(stderr, "independent: A identical %d/%u, A vs B identical %d, B identical before "
            "frame %lld: %d, differing after: %d\n", a_same, n, ab_same, (long long)f, b_before,
            b_after_diff);
    conn_close(&a1);
    conn_close(&b1);
    conn_close(&a2);
    conn_close(&b2);
}

static void test_admission(void) {
    char code[64], msg[512];
    /* compute: a chunk takes ~160 ms here and one is needed every 500 ms -> 2 fit */
    setenv("FLIPBOOK_ENGINE_SLOW_MS", "150", 1);
    {
        dmn d;
        if (dmn_start(&d, NULL) != 0) { check_failures++; return; }
        conn s1, s2, s3, s4;
        CHECK(start(&s1, d.port, "one", 1, NULL, NULL, code, msg, sizeof msg) == 0);
        CHECK(start(&s2, d.port, "two", 2, NULL, NULL, code, msg, sizeof msg) == 0);
        code[0] = msg[0] = '\0';
        CHECK(start(&s3, d.port, "three", 3, NULL, NULL, code, msg, sizeof msg) == -1);
        CHECK(strcmp(code, "session_limit") == 0);
        fprintf(stderr, "refusal: %s\n", msg);
        CHECK(strstr(msg, "2 sessions at full frame rate") != NULL);
        CHECK(strstr(msg, "--overcommit slow") != NULL);
        CHECK(metric(d.port, "flipbook_sessions_refused_total{reason=\"compute\"}") == 1);
        conn_close(&s3);
        /* the two admitted run at full rate */
        conn *two[] = {&s1, &s2};
        pump(two, 2, 2500);
        cJSON *st = fresh_stats(&s1);
        CHECK(st && jnum(st, "slowdown", 0) == 1 && jnum(st, "fps", 0) > 12);
        cJSON_Delete(st);
        /* a stopped session makes room at once */
        send_json(&s2, "{\"type\":\"stop\"}");
        cJSON_Delete(conn_wait(&s2, "end", 5000));
        conn_close(&s2);
        CHECK(start(&s4, d.port, "four", 4, NULL, NULL, code, msg, sizeof msg) == 0);
        conn_close(&s4);
        conn_close(&s1);
        CHECK(dmn_stop(&d) == 0);
    }
    /* overcommit slow: four admitted, all slowed by the same factor */
    {
        dmn d;
        const char *extra[] = {"--overcommit", "slow", NULL};
        if (dmn_start(&d, extra) != 0) { check_failures++; return; }
        conn s[4];
        conn *all[4];
        for (int i = 0; i < 4; i++) {
            CHECK(start(&s[i], d.port, "slow", 10 + i, NULL, NULL, code, msg, sizeof msg) == 0);
            all[i] = &s[i];
        }
        pump(all, 4, 2500);
        int f0[4];
        for (int i = 0; i < 4; i++) f0[i] = s[i].frames;
        int64_t t0 = wstest_now_ms();
        pump(all, 4, 3000);
        double dt = (double)(wstest_now_ms() - t0) / 1000.0;
        double sd0 = -1;
        for (int i = 0; i < 4; i++) {
            double rate = (s[i].frames - f0[i]) / dt;
            cJSON *st = fresh_stats(&s[i]);
            double sd = st ? jnum(st, "slowdown", 0) : 0;
            fprintf(stderr, "overcommitted session %d: %.1f fps, slowdown %.2f, buffer %g\n", i,
                    rate, sd, st ? jnum(st, "buffer", -1) : -1);
            /* four sessions of ~160 ms chunks need 1.28 s of engine time every 0.5 s of
             * video: each is slowed by the same factor (about 1.4; more on a loaded machine)
             * and runs at about 16 fps / factor */
            if (sd0 < 0) sd0 = sd;
            CHECK(sd > 1.2 && sd < 4.0);
            CHECK(sd > sd0 * 0.9 && sd < sd0 * 1.1);
            CHECK(rate < 14.5 && rate > 0.65 * 16.0 / sd && rate < 1.2 * 16.0 / sd);
            CHECK(st && jnum(st, "buffer", 99) <= jnum(st, "bufferMax", 0));
            cJSON_Delete(st);
        }
        CHECK(metric(d.port, "flipbook_engine_slowdown") > 1.2);
        for (int i = 0; i < 4; i++) conn_close(&s[i]);
        CHECK(dmn_stop(&d) == 0);
    }
    unsetenv("FLIPBOOK_ENGINE_SLOW_MS");
    /* KV pool: room for two streams of the tiny model (61,440 bytes each) */
    {
        dmn d;
        const char *extra[] = {"--kv-budget", "130000", NULL};
        if (dmn_start(&d, extra) != 0) { check_failures++; return; }
        conn s1, s2, s3;
        CHECK(start(&s1, d.port, "one", 1, NULL, NULL, code, msg, sizeof msg) == 0);
        CHECK(start(&s2, d.port, "two", 2, NULL, NULL, code, msg, sizeof msg) == 0);
        code[0] = msg[0] = '\0';
        CHECK(start(&s3, d.port, "three", 3, NULL, NULL, code, msg, sizeof msg) == -1);
        CHECK(strcmp(code, "session_limit") == 0);
        fprintf(stderr, "refusal: %s\n", msg);
        CHECK(strstr(msg, "KV cache has room for 2 sessions") != NULL);
        CHECK(metric(d.port, "flipbook_sessions_refused_total{reason=\"kv\"}") == 1);
        conn_close(&s1);
        conn_close(&s2);
        conn_close(&s3);
        CHECK(dmn_stop(&d) == 0);
    }
}

static char *b64(const uint8_t *p, size_t n) {
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc(4 * ((n + 2) / 3) + 1), *q = o;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        *q++ = a[v >> 18];
        *q++ = a[(v >> 12) & 63];
        *q++ = i + 1 < n ? a[(v >> 6) & 63] : '=';
        *q++ = i + 2 < n ? a[v & 63] : '=';
    }
    *q = '\0';
    return o;
}

static void send_image(conn *c, int id, int w, int h, const char *fmt, const char *data,
                       int part, int parts) {
    size_t n = strlen(data) + 256;
    char *msg = malloc(n);
    snprintf(msg, n, "{\"type\":\"anchor\",\"action\":\"image\",\"width\":%d,\"height\":%d,"
             "\"format\":\"%s\",\"part\":%d,\"parts\":%d,\"data\":\"%s\",\"id\":%d}",
             w, h, fmt, part, parts, data, id);
    send_json(c, msg);
    free(msg);
}

static void test_anchor(void) {
    dmn d;
    if (dmn_start(&d, NULL) != 0) { check_failures++; return; }
    conn o;
    CHECK(start(&o, d.port, "a red ball", 5, NULL, NULL, NULL, NULL, 0) == 0);
    conn *one[] = {&o};
    CHECK(pump_until_frame(one, 1, 8, 5000));
    uint8_t rgb[64 * 64 * 4];
    for (int i = 0; i < 64 * 64 * 4; i++) rgb[i] = (uint8_t)(i * 7);
    char *img = b64(rgb, 64 * 64 * 3), *small = b64(rgb, 32 * 32 * 3),
         *short_img = b64(rgb, 64 * 64 * 3 - 3), *rgba = b64(rgb, 64 * 64 * 4);
    char msg[512];

    send_image(&o, 1, 32, 32, "rgb24", small, 0, 1);
    CHECK(expect_error(&o, "bad_value", 1, msg, sizeof msg));
    CHECK(strstr(msg, "64x64") != NULL);
    send_image(&o, 2, 64, 64, "png", img, 0, 1);
    CHECK(expect_error(&o, "bad_value", 2, NULL, 0));
    send_image(&o, 3, 64, 64, "rgb24", short_img, 0, 1);
    CHECK(expect_error(&o, "bad_value", 3, msg, sizeof msg));
    CHECK(strstr(msg, "12288") != NULL);
    send_image(&o, 4, 64, 64, "rgba32", img, 0, 1);  /* rgb24 bytes declared as rgba32 */
    CHECK(expect_error(&o, "bad_value", 4, NULL, 0));
    send_image(&o, 5, 64, 64, "rgb24", "QUJD", 1, 2);  /* a part with no start */
    CHECK(expect_error(&o, "bad_value", 5, msg, sizeof msg));
    CHECK(strstr(msg, "part") != NULL);
    /* not base64 at all: the protocol parser refuses it */
    send_json(&o, "{\"type\":\"anchor\",\"action\":\"image\",\"data\":\"@@@@\",\"id\":6}");
    CHECK(expect_error(&o, "bad_value", 6, NULL, 0));

    /* the session went on */
    int f0 = o.frames;
    pump(one, 1, 600);
    CHECK(o.frames > f0 + 5);

    /* good: rgb24 in one message */
    send_image(&o, 7, 64, 64, "rgb24", img, 0, 1);
    cJSON *ack = expect_ack(&o, "anchor", 7);
    CHECK(ack && jnum(ack, "chunk", -1) >= 1 && jnum(ack, "frame", -1) >= (double)o.last_no);
    cJSON_Delete(ack);
    /* good: rgba32 in three parts, one ack for the whole */
    size_t len = strlen(rgba), third = (len / 3) & ~(size_t)3;
    char *p0 = strndup(rgba, third), *p1 = strndup(rgba + third, third), *p2 = strdup(rgba + 2 * third);
    send_image(&o, 8, 64, 64, "rgba32", p0, 0, 3);
    send_image(&o, 8, 64, 64, "rgba32", p1, 1, 3);
    send_image(&o, 8, 64, 64, "rgba32", p2, 2, 3);
    ack = expect_ack(&o, "anchor", 8);
    CHECK(ack && jnum(ack, "chunk", -1) >= 1);
    cJSON_Delete(ack);
    f0 = o.frames;
    pump(one, 1, 600);
    CHECK(o.frames > f0 + 5);
    free(p0);
    free(p1);
    free(p2);
    free(img);
    free(small);
    free(short_img);
    free(rgba);
    conn_close(&o);
    CHECK(metric(d.port, "flipbook_sessions_failed_total") == 0);
    CHECK(dmn_stop(&d) == 0);
}

/* Waits for `end` and the close; returns the end reason (static) or "". */
static const char *expect_end(conn *c, int *close_code) {
    static char reason[512];
    reason[0] = '\0';
    cJSON *e = conn_wait(c, "end", 8000);
    if (e && jstr(e, "reason")) snprintf(reason, sizeof reason, "%s", jstr(e, "reason"));
    cJSON_Delete(e);
    int64_t end = wstest_now_ms() + 3000;
    while (!c->closed && wstest_now_ms() < end) conn_step(c, 100);
    *close_code = c->ws.close_code;
    return reason;
}

static void test_failure(void) {
    setenv("FLIPBOOK_ENGINE_FAIL_ON_PROMPT", "EXPLODE", 1);
    dmn d;
    const char *extra[] = {"--kv-budget", "130000", NULL};  /* two streams */
    if (dmn_start(&d, extra) != 0) { check_failures++; return; }
    unsetenv("FLIPBOOK_ENGINE_FAIL_ON_PROMPT");
    conn a, b;
    CHECK(start(&a, d.port, "a calm lake", 1, NULL, NULL, NULL, NULL, 0) == 0);
    CHECK(start(&b, d.port, "a busy street", 2, NULL, NULL, NULL, NULL, 0) == 0);
    conn *both[] = {&a, &b};
    CHECK(pump_until_frame(both, 2, 10, 6000));

    /* a failing chunk ends B only */
    send_json(&b, "{\"type\":\"prompt\",\"text\":\"EXPLODE\",\"id\":3}");
    cJSON_Delete(expect_ack(&b, "prompt", 3));
    int code = 0;
    const char *why = expect_end(&b, &code);
    fprintf(stderr, "ended: %s (close %d)\n", why, code);
    CHECK(strstr(why, "engine failure") != NULL);
    CHECK(code == 1011);
    int fa = a.frames;
    conn *one[] = {&a};
    pump(one, 1, 1500);
    CHECK(a.frames > fa + 16);
    CHECK(!a.closed);
    CHECK(metric(d.port, "flipbook_engine_errors_total") == 1);
    CHECK(metric(d.port, "flipbook_sessions_failed_total") == 1);

    /* its KV share is free: a new session fits next to A */
    conn c;
    char cm[512] = "", cc[64] = "";
    CHECK(start(&c, d.port, "a quiet field", 3, NULL, NULL, cc, cm, sizeof cm) == 0);
    conn *ac[] = {&a, &c};
    CHECK(pump_until_frame(ac, 2, 4, 6000) || c.frames > 0);

    /* an engine failure on an anchor image: paused (no chunks run), the prompt switched to the
     * failing word, then the image */
    send_json(&c, "{\"type\":\"pause\",\"id\":4}");
    cJSON_Delete(expect_ack(&c, "pause", 4));
    send_json(&c, "{\"type\":\"prompt\",\"text\":\"EXPLODE softly\",\"id\":5}");
    cJSON_Delete(expect_ack(&c, "prompt", 5));
    uint8_t rgb[64 * 64 * 3];
    memset(rgb, 128, sizeof rgb);
    char *img = b64(rgb, sizeof rgb);
    send_image(&c, 6, 64, 64, "rgb24", img, 0, 1);
    free(img);
    why = expect_end(&c, &code);
    fprintf(stderr, "ended: %s (close %d)\n", why, code);
    CHECK(strstr(why, "anchor image") != NULL);
    CHECK(code == 1011);
    fa = a.frames;
    pump(one, 1, 1000);
    CHECK(a.frames > fa + 10);
    CHECK(metric(d.port, "flipbook_engine_errors_total") == 2);
    conn_close(&a);
    conn_close(&b);
    conn_close(&c);
    CHECK(dmn_stop(&d) == 0);
}

static void test_record(void) {
    dmn d;
    if (dmn_start(&d, NULL) != 0) { check_failures++; return; }
    conn o;
    CHECK(start(&o, d.port, "a red ball", 5, NULL, NULL, NULL, NULL, 0) == 0);
    conn *one[] = {&o};
    CHECK(pump_until_frame(one, 1, 4, 5000));
    send_json(&o, "{\"type\":\"record\",\"action\":\"start\",\"id\":2}");
    cJSON *ack = expect_ack(&o, "record", 2);
    CHECK(ack && jnum(ack, "chunk", -1) >= 0);
    cJSON_Delete(ack);
    cJSON *r = conn_wait(&o, "recording", 5000);
    CHECK(r && jstr(r, "state") && strcmp(jstr(r, "state"), "started") == 0);
    cJSON_Delete(r);
    pump(one, 1, 2500);
    send_json(&o, "{\"type\":\"record\",\"action\":\"stop\",\"id\":3}");
    cJSON_Delete(expect_ack(&o, "record", 3));
    r = conn_wait(&o, "recording", 5000);
    char url[256] = "";
    CHECK(r && jstr(r, "state") && strcmp(jstr(r, "state"), "stopped") == 0 && jstr(r, "url"));
    if (r && jstr(r, "url")) snprintf(url, sizeof url, "%s", jstr(r, "url"));
    cJSON_Delete(r);
    char *body = NULL;
    size_t len = 0;
    CHECK(url[0] && wstest_http("127.0.0.1", d.port, "GET", url, NULL, NULL, &body, &len) == 200);
    CHECK(len > 1000);
    char path[400];
    snprintf(path, sizeof path, "%s/got.webm", tmp);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        fwrite(body, 1, len, f);
        fclose(f);
    }
    free(body);
    if (ffprobe_path && ffprobe_path[0]) {
        char cmd[1200], out[512] = "";
        snprintf(cmd, sizeof cmd,
                 "'%s' -v error -count_frames -select_streams v:0 -show_entries "
                 "stream=codec_name,width,height,nb_read_frames -of csv=p=0 '%s'",
                 ffprobe_path, path);
        FILE *p = popen(cmd, "r");
        if (p) {
            size_t n = fread(out, 1, sizeof out - 1, p);
            out[n] = '\0';
            CHECK(pclose(p) == 0);
        }
        char codec[32] = "";
        int w = 0, h = 0, frames = 0;
        CHECK(sscanf(out, "%31[^,],%d,%d,%d", codec, &w, &h, &frames) == 4);
        fprintf(stderr, "ffprobe: %s", out);
        CHECK(strcmp(codec, "vp9") == 0 && w == 64 && h == 64);
        /* about 2.5 s at 16 fps, less what passes before the first keyframe (forced keyframes
         * are at most one a second) */
        CHECK(frames >= 20 && frames <= 50);
    }
    conn_close(&o);
    CHECK(dmn_stop(&d) == 0);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s basic|independent|admission|anchor|failure|record "
                        "PATH/TO/flipbookd MODEL [FFPROBE]\n", argv[0]);
        return 2;
    }
    daemon_path = argv[2];
    model_path = argv[3];
    ffprobe_path = argc > 4 ? argv[4] : NULL;
    if (!mkdtemp(tmp)) return 2;
    signal(SIGPIPE, SIG_IGN);
    const char *s = argv[1];
    if (!strcmp(s, "basic")) test_basic();
    else if (!strcmp(s, "independent")) test_independent();
    else if (!strcmp(s, "admission")) test_admission();
    else if (!strcmp(s, "anchor")) test_anchor();
    else if (!strcmp(s, "failure")) test_failure();
    else if (!strcmp(s, "record")) test_record();
    else {
        fprintf(stderr, "unknown scenario %s\n", s);
        return 2;
    }
    char cmd[300];
    if (check_failures) fprintf(stderr, "logs kept in %s\n", tmp);
    else {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    }
    char name[64];
    snprintf(name, sizeof name, "sessions_%s", s);
    return check_exit(name);
}
