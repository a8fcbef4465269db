/* tests/net/test_ws_server.c - fb_ws_server from the outside, with a small test application.
 *
 * The application echoes text messages ({"type":"echo","len":N}), and on request sends video
 * packets from the service thread or from a producer thread through fb_ws_server_post. Checked:
 * the upgrade (path, subprotocol, vhost default), fragmented and oversized messages, binary and
 * rate-limit errors with the connection staying usable, the binary frame header, cross-thread
 * delivery in order, a non-reading client being closed with 1008 while a reading one loses
 * nothing, polite close after queued text, and the HTTP side (static files, 404s, traversal,
 * symlinks, /metrics, /recordings with ranges, security headers). */
#include <errno.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stream/ws_server.h"
#include "tests/net/check.h"
#include "tests/net/wstest.h"

static fb_ws_server *srv;
static int port;

/* ---- the test application (service thread) ---- */

#define MAX_CONNS 64
static fb_ws_conn *conns[MAX_CONNS];

static fb_ws_conn *find_conn(uint64_t id) {
    for (int i = 0; i < MAX_CONNS; i++)
        if (conns[i] && fb_ws_conn_id(conns[i]) == id) return conns[i];
    return NULL;
}

static void app_open(void *u, fb_ws_conn *c) {
    (void)u;
    for (int i = 0; i < MAX_CONNS; i++)
        if (!conns[i]) { conns[i] = c; break; }
    char msg[64];
    snprintf(msg, sizeof msg, "{\"type\":\"id\",\"id\":%llu}", (unsigned long long)fb_ws_conn_id(c));
    fb_ws_conn_send_text(c, msg, strlen(msg));
}

static void app_close(void *u, fb_ws_conn *c) {
    (void)u;
    for (int i = 0; i < MAX_CONNS; i++)
        if (conns[i] == c) conns[i] = NULL;
}

static fb_packet *make_packet(int key, uint32_t no, size_t size) {
    uint8_t *data = malloc(size ? size : 1);
    for (size_t i = 0; i < size; i++) data[i] = (uint8_t)(no + i);
    fb_packet *p = fb_packet_new(data, size, key, no, (int64_t)no * 1000, 1000);
    free(data);
    return p;
}

typedef struct producer {
    uint64_t conn_ids[2];
    int n_conns;
    int count, interval_us;
    size_t size;
    int key_every;
} producer;

typedef struct delivery {
    uint64_t conn_ids[2];
    int n_conns;
    fb_packet *p;
} delivery;

static void deliver(void *arg) {
    delivery *d = arg;
    for (int i = 0; i < d->n_conns; i++) {
        fb_ws_conn *c = find_conn(d->conn_ids[i]);
        if (c) fb_ws_conn_send_packet(c, d->p);
    }
    fb_packet_unref(d->p);
    free(d);
}

static void *producer_main(void *arg) {
    producer *pr = arg;
    for (int i = 0; i < pr->count; i++) {
        delivery *d = malloc(sizeof *d);
        memcpy(d->conn_ids, pr->conn_ids, sizeof d->conn_ids);
        d->n_conns = pr->n_conns;
        d->p = make_packet(i % pr->key_every == 0, (uint32_t)i, pr->size);
        if (fb_ws_server_post(srv, deliver, d) != 0) abort();
        usleep((useconds_t)pr->interval_us);
    }
    free(pr);
    return NULL;
}

static void app_message(void *u, fb_ws_conn *c, const char *text, size_t len) {
    (void)u;
    int k, size;
    unsigned long long a, b;
    if (sscanf(text, "burst %d %d", &k, &size) == 2) {
        for (int i = 0; i < k; i++) {
            fb_packet *p = make_packet(i == 0, (uint32_t)i, (size_t)size);
            fb_ws_conn_send_packet(c, p);
            fb_packet_unref(p);
        }
        return;
    }
    int interval;
    if (sscanf(text, "produce %llu %llu %d %d %d", &a, &b, &k, &size, &interval) == 5) {
        producer *pr = calloc(1, sizeof *pr);
        pr->conn_ids[0] = a;
        pr->conn_ids[1] = b;
        pr->n_conns = b ? 2 : 1;
        pr->count = k;
        pr->size = (size_t)size;
        pr->interval_us = interval;
        pr->key_every = 30;
        pthread_t t;
        pthread_create(&t, NULL, producer_main, pr);
        pthread_detach(t);
        return;
    }
    if (strcmp(text, "close") == 0) {
        fb_ws_conn_send_text(c, "bye", 3);
        fb_ws_conn_close(c, 1000, "bye");
        return;
    }
    char msg[64];
    snprintf(msg, sizeof msg, "{\"type\":\"echo\",\"len\":%zu}", len);
    fb_ws_conn_send_text(c, msg, strlen(msg));
}

static char *app_metrics(void *u, size_t *len) {
    (void)u;
    char *s = strdup("m 1\n");
    *len = 4;
    return s;
}

static int app_recording_allowed(void *u, const char *name) {
    (void)u;
    return strncmp(name, "deny", 4) != 0;
}

static void *service_main(void *arg) {
    (void)arg;
    fb_ws_server_run(srv);
    return NULL;
}

/* ---- helpers ---- */

static int connect_ws(wstest *c, const char *protocol) {
    int st = wstest_connect(c, "127.0.0.1", port, "/ws", protocol);
    if (st != 101) return -1;
    char *hello = wstest_wait_type(c, "id", 2000, NULL);
    double id = -1;
    if (hello) wstest_json_num(hello, "id", &id);
    free(hello);
    return (int)id;
}

/* Next text message: its "type" and the whole text (caller frees). */
static char *next_text(wstest *c, int timeout_ms) {
    for (;;) {
        uint8_t *d;
        size_t n;
        int op = wstest_recv(c, &d, &n, timeout_ms);
        if (op == WS_TEXT) return (char *)d;
        free(d);
        if (op != WS_BINARY) return NULL;
    }
}

static int expect_error(wstest *c, const char *code) {
    char *t = next_text(c, 3000);
    char got[64] = "";
    int ok = t && wstest_json_str(t, "type", got, sizeof got) == 0 && strcmp(got, "error") == 0 &&
             wstest_json_str(t, "code", got, sizeof got) == 0 && strcmp(got, code) == 0;
    if (!ok) fprintf(stderr, "expected error %s, got %s\n", code, t ? t : "(nothing)");
    free(t);
    return ok;
}

static int expect_echo(wstest *c, double len) {
    char *t = next_text(c, 3000);
    double n = -1;
    int ok = t && strstr(t, "\"echo\"") && wstest_json_num(t, "len", &n) == 0 && n == len;
    if (!ok) fprintf(stderr, "expected echo %.0f, got %s\n", len, t ? t : "(nothing)");
    free(t);
    return ok;
}

/* ---- tests ---- */

static void test_upgrade(void) {
    wstest c;
    CHECK(wstest_connect(&c, "127.0.0.1", port, "/ws", "flipbook.v1") == 101);
    CHECK_STR(c.protocol, "flipbook.v1");
    wstest_close(&c);
    /* no subprotocol: the vhost default still binds the connection to flipbook.v1 */
    CHECK(connect_ws(&c, NULL) > 0);
    CHECK(wstest_send_text(&c, "hi") == 0);
    CHECK(expect_echo(&c, 2));
    wstest_close(&c);
    /* WebSocket only on /ws */
    CHECK(wstest_connect(&c, "127.0.0.1", port, "/other", "flipbook.v1") != 101);
    wstest_close(&c);
    CHECK(wstest_connect(&c, "127.0.0.1", port, "/", NULL) != 101);
    wstest_close(&c);
}

static void test_messages(void) {
    wstest c;
    CHECK(connect_ws(&c, "flipbook.v1") > 0);
    /* fragmented text message, reassembled */
    CHECK(wstest_send_frame(&c, WS_TEXT, 0, "ab", 2) == 0);
    CHECK(wstest_send_frame(&c, WS_CONT, 0, "cd", 2) == 0);
    CHECK(wstest_send_frame(&c, WS_CONT, 1, "e", 1) == 0);
    CHECK(expect_echo(&c, 5));
    /* an empty message */
    CHECK(wstest_send_frame(&c, WS_TEXT, 1, "", 0) == 0);
    CHECK(expect_echo(&c, 0));
    /* exactly 64 KiB in four fragments: accepted */
    char *big = malloc(70000);
    memset(big, 'x', 70000);
    for (int i = 0; i < 4; i++)
        CHECK(wstest_send_frame(&c, i ? WS_CONT : WS_TEXT, i == 3, big, 16384) == 0);
    CHECK(expect_echo(&c, 65536));
    /* one byte more: too_large, the rest discarded, the connection stays */
    CHECK(wstest_send_frame(&c, WS_TEXT, 0, big, 65536) == 0);
    CHECK(wstest_send_frame(&c, WS_CONT, 1, big, 1) == 0);
    CHECK(expect_error(&c, "too_large"));
    CHECK(wstest_send_frame(&c, WS_TEXT, 1, big, 70000) == 0);  /* one frame, too large */
    CHECK(expect_error(&c, "too_large"));
    CHECK(wstest_send_text(&c, "still here") == 0);
    CHECK(expect_echo(&c, 10));
    free(big);
    /* binary from a client: refused, connection usable */
    CHECK(wstest_send_frame(&c, WS_BINARY, 1, "\x01\x02", 2) == 0);
    CHECK(expect_error(&c, "binary_not_allowed"));
    CHECK(wstest_send_frame(&c, WS_BINARY, 0, "\x01", 1) == 0);
    CHECK(wstest_send_frame(&c, WS_CONT, 1, "\x02", 1) == 0);
    CHECK(expect_error(&c, "binary_not_allowed"));
    CHECK(wstest_send_text(&c, "ok") == 0);
    CHECK(expect_echo(&c, 2));
    /* a ping is answered by lws itself */
    CHECK(wstest_send_frame(&c, WS_PING, 1, "p", 1) == 0);
    CHECK(wstest_send_text(&c, "after ping") == 0);
    CHECK(expect_echo(&c, 10));
    wstest_close(&c);
}

static void test_rate_limit(void) {
    wstest c;
    CHECK(connect_ws(&c, "flipbook.v1") > 0);
    for (int i = 0; i < 60; i++) CHECK(wstest_send_text(&c, "x") == 0);
    int echoes = 0, limited = 0;
    for (int i = 0; i < 60; i++) {
        char *t = next_text(&c, 3000);
        if (!t) break;
        if (strstr(t, "\"echo\"")) echoes++;
        else if (strstr(t, "\"rate_limited\"")) limited++;
        free(t);
    }
    CHECK(echoes + limited == 60);
    /* the burst, plus what refilled while the server read them (slack for a loaded machine) */
    CHECK(echoes >= 40 && echoes <= 50);
    CHECK(limited >= 10);
    /* after a pause the connection works normally */
    usleep(300000);
    CHECK(wstest_send_text(&c, "x") == 0);
    CHECK(expect_echo(&c, 1));
    wstest_close(&c);
}

static void test_packets(void) {
    wstest c;
    CHECK(connect_ws(&c, "flipbook.v1") > 0);
    CHECK(wstest_send_text(&c, "burst 5 1000") == 0);
    for (uint32_t i = 0; i < 5; i++) {
        uint8_t *d;
        size_t n;
        int op = wstest_recv(&c, &d, &n, 3000);
        CHECK(op == WS_BINARY && n == 16 + 1000);
        if (op == WS_BINARY && n == 1016) {
            int key;
            uint32_t no;
            int64_t pts;
            CHECK(fb_frame_header_parse(d, n, &key, &no, &pts) == 0);
            CHECK(d[0] == 1 && d[1] == 1 && d[3] == 0);
            CHECK(no == i && key == (i == 0) && pts == (int64_t)i * 1000);
            CHECK(d[16] == (uint8_t)i && d[1015] == (uint8_t)(i + 999));
        }
        free(d);
    }
    wstest_close(&c);
}

/* Two clients on one producer thread: A reads, B does not. B is closed with 1008 after the
 * hard limit; A receives every frame in order. */
static void test_slow_client(void) {
    wstest a, b;
    int ida = connect_ws(&a, "flipbook.v1"), idb = connect_ws(&b, "flipbook.v1");
    CHECK(ida > 0 && idb > 0);
    /* a small receive buffer on B so backpressure builds quickly */
    int small = 4096;
    setsockopt(b.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    char cmd[128];
    /* 100 frames/s of 20 KB for 3 s; the server gives up on B after 1 s behind */
    const int count = 300;
    snprintf(cmd, sizeof cmd, "produce %d %d %d %d %d", ida, idb, count, 20000, 10000);
    CHECK(wstest_send_text(&a, cmd) == 0);
    int64_t t0 = wstest_now_ms();
    uint32_t next = 0;
    int gaps = 0;
    while (next < (uint32_t)count && wstest_now_ms() - t0 < 20000) {
        uint8_t *d;
        size_t n;
        int op = wstest_recv(&a, &d, &n, 5000);
        if (op == WS_BINARY) {
            uint32_t no;
            int key;
            fb_frame_header_parse(d, n, &key, &no, NULL);
            if (no != next) gaps++;
            next = no + 1;
        }
        free(d);
        if (op <= 0 || op == WS_CLOSE) break;
    }
    CHECK(next == (uint32_t)count);
    CHECK(gaps == 0);
    /* B: drain whatever was buffered; the stream must end with a 1008 close */
    int closed = 0;
    for (;;) {
        uint8_t *d;
        size_t n;
        int op = wstest_recv(&b, &d, &n, 5000);
        free(d);
        if (op == WS_CLOSE) { closed = 1; break; }
        if (op <= 0) break;
    }
    CHECK(closed && b.close_code == 1008);
    CHECK(strstr(b.close_reason, "too slow") != NULL);
    wstest_close(&a);
    wstest_close(&b);
}

static void test_close_after_text(void) {
    wstest c;
    CHECK(connect_ws(&c, "flipbook.v1") > 0);
    CHECK(wstest_send_text(&c, "close") == 0);
    uint8_t *d;
    size_t n;
    CHECK(wstest_recv(&c, &d, &n, 3000) == WS_TEXT && n == 3 && memcmp(d, "bye", 3) == 0);
    free(d);
    CHECK(wstest_recv(&c, &d, &n, 3000) == WS_CLOSE);
    free(d);
    CHECK(c.close_code == 1000 && strcmp(c.close_reason, "bye") == 0);
    wstest_close(&c);
}

static int http(const char *path, const char *extra, char **headers, char **body, size_t *len) {
    return wstest_http("127.0.0.1", port, "GET", path, extra, headers, body, len);
}

static void test_http(void) {
    char *h, *b;
    size_t n;
    CHECK(http("/metrics", NULL, &h, &b, &n) == 200);
    CHECK(b && strcmp(b, "m 1\n") == 0);
    CHECK(h && strstr(h, "content-type: text/plain"));
    free(h);
    free(b);

    CHECK(http("/", NULL, &h, &b, &n) == 200);
    CHECK(b && strcmp(b, "<html>index</html>") == 0);
    CHECK(h && strstr(h, "content-type: text/html"));
    CHECK(h && strstr(h, "x-content-type-options: nosniff"));
    CHECK(h && strstr(h, "content-security-policy:") && strstr(h, "media-src 'self' blob:"));
    free(h);
    free(b);
    CHECK(http("/app.js", NULL, &h, &b, &n) == 200);
    CHECK(h && strstr(h, "content-type: text/javascript"));
    free(h);
    free(b);
    CHECK(http("/sub/", NULL, NULL, &b, &n) == 200 && b && strcmp(b, "sub") == 0);
    free(b);

    const char *missing[] = {"/nope.html", "/escape.txt", "/.hidden", "/sub/../../outside.txt",
                             "/recordings/deny.webm", "/recordings/link.webm",
                             "/recordings/dir.webm", "/recordings/missing.webm",
                             "/recordings/bad%20name.webm", "/recordings/good.txt",
                             "/recordings/../secret.webm", "/recordings/..%2fsecret.webm",
                             "/recordings/", "/recordings"};
    for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        int st = http(missing[i], NULL, NULL, &b, &n);
        if (st != 404) fprintf(stderr, "%s -> %d\n", missing[i], st);
        CHECK(st == 404);
        CHECK(!b || !strstr(b, "SECRET"));
        free(b);
    }

    CHECK(http("/recordings/good.webm", NULL, &h, &b, &n) == 200);
    CHECK(n == 10 && b && memcmp(b, "0123456789", 10) == 0);
    CHECK(h && strstr(h, "content-type: video/webm") && strstr(h, "accept-ranges: bytes"));
    free(h);
    free(b);
    CHECK(http("/recordings/good.webm", "Range: bytes=2-5\r\n", &h, &b, &n) == 206);
    CHECK(n == 4 && b && memcmp(b, "2345", 4) == 0);
    CHECK(h && strstr(h, "content-range: bytes 2-5/10"));
    free(h);
    free(b);
    CHECK(http("/recordings/good.webm", "Range: bytes=7-\r\n", NULL, &b, &n) == 206);
    CHECK(n == 3 && b && memcmp(b, "789", 3) == 0);
    free(b);
    CHECK(http("/recordings/good.webm", "Range: bytes=-2\r\n", NULL, &b, &n) == 206);
    CHECK(n == 2 && b && memcmp(b, "89", 2) == 0);
    free(b);
    CHECK(http("/recordings/good.webm", "Range: bytes=50-60\r\n", &h, &b, &n) == 416);
    CHECK(h && strstr(h, "content-range: bytes */10"));
    free(h);
    free(b);
    CHECK(wstest_http("127.0.0.1", port, "HEAD", "/recordings/good.webm", NULL, &h, &b, &n) == 200);
    CHECK(h && strstr(h, "content-length: 10") && n == 0);
    free(h);
    free(b);
}

static void write_file(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); exit(2); }
    fputs(text, f);
    fclose(f);
}

int main(void) {
    lws_set_log_level(LLL_ERR, NULL);
    char tmp[] = "/tmp/fbwsXXXXXX";
    if (!mkdtemp(tmp)) return 2;
    char web[300], rec[300], path[600], target[600];
    snprintf(web, sizeof web, "%s/web", tmp);
    snprintf(rec, sizeof rec, "%s/rec", tmp);
    mkdir(web, 0755);
    mkdir(rec, 0755);
    write_file(web, "index.html", "<html>index</html>");
    write_file(web, "app.js", "console.log(1)");
    write_file(web, ".hidden", "SECRET");
    write_file(tmp, "outside.txt", "SECRET");
    snprintf(path, sizeof path, "%s/sub", web);
    mkdir(path, 0755);
    write_file(path, "index.html", "sub");
    snprintf(path, sizeof path, "%s/escape.txt", web);
    snprintf(target, sizeof target, "%s/outside.txt", tmp);
    CHECK(symlink(target, path) == 0);
    write_file(rec, "good.webm", "0123456789");
    write_file(rec, "deny.webm", "SECRET");
    write_file(rec, "good.txt", "SECRET");
    write_file(tmp, "secret.webm", "SECRET");
    snprintf(path, sizeof path, "%s/link.webm", rec);
    snprintf(target, sizeof target, "%s/secret.webm", tmp);
    CHECK(symlink(target, path) == 0);
    snprintf(path, sizeof path, "%s/dir.webm", rec);
    mkdir(path, 0755);

    fb_ws_config cfg;
    fb_ws_config_default(&cfg);
    cfg.port = 0;
    cfg.web_root = web;
    cfg.record_dir = rec;
    /* A generous soft limit (half a second at the test's 100 frames/s) keeps the reading client
     * safe from scheduling hiccups on a loaded machine; the non-reading one still hits it. */
    cfg.limits.soft_frames = 50;
    cfg.limits.hard_behind_us = 1000000;
    fb_ws_hooks hooks = {.on_open = app_open, .on_message = app_message, .on_close = app_close,
                         .metrics = app_metrics, .recording_allowed = app_recording_allowed};
    char err[256];
    if (fb_ws_server_new(&cfg, &hooks, &srv, err, sizeof err) != 0) {
        fprintf(stderr, "server: %s\n", err);
        return 1;
    }
    port = fb_ws_server_port(srv);
    CHECK(port > 0);
    pthread_t service;
    pthread_create(&service, NULL, service_main, NULL);

    test_upgrade();
    test_messages();
    test_rate_limit();
    test_packets();
    test_slow_client();
    test_close_after_text();
    test_http();

    usleep(200000);  /* let the last closes land */
    fb_ws_server_stop(srv);
    pthread_join(service, NULL);
    fb_ws_totals t;
    fb_ws_server_totals(srv, &t);
    CHECK(t.connections == 0);
    CHECK(t.slow_closed >= 1 && t.frames_dropped > 0);
    CHECK(t.errors[FB_ERR_TOO_LARGE] == 2 && t.errors[FB_ERR_BINARY_NOT_ALLOWED] == 2);
    CHECK(t.errors[FB_ERR_RATE_LIMITED] >= 10);
    fb_ws_server_free(srv);

    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return check_exit("net_ws_server");
}
