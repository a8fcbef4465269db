/* tests/net/wstest.c - blocking WebSocket / HTTP test client (see wstest.h). */
#define _GNU_SOURCE 1  /* memmem, strcasestr */
#include "tests/net/wstest.h"

#include <arpa/inet.h>
#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int64_t wstest_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int tcp_connect(const char *host, int port) {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int write_all(int fd, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads more bytes into c->buf; returns bytes read, 0 on timeout, -1 on EOF/error. */
static int fill(wstest *c, int timeout_ms) {
    struct pollfd pfd = {c->fd, POLLIN, 0};
    int r = poll(&pfd, 1, timeout_ms);
    if (r == 0) return 0;
    if (r < 0) return errno == EINTR ? 0 : -1;
    if (c->cap - c->len < 65536) {
        size_t cap = c->cap ? c->cap * 2 : 131072;
        uint8_t *n = realloc(c->buf, cap);
        if (!n) return -1;
        c->buf = n;
        c->cap = cap;
    }
    ssize_t got = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (got <= 0) return -1;
    c->len += (size_t)got;
    return (int)got;
}

static void consume(wstest *c, size_t n) {
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

int wstest_connect(wstest *c, const char *host, int port, const char *path, const char *protocol) {
    memset(c, 0, sizeof *c);
    c->fd = tcp_connect(host, port);
    if (c->fd < 0) return -1;
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                     path, host, port, protocol ? "Sec-WebSocket-Protocol: " : "",
                     protocol ? protocol : "", protocol ? "\r\n" : "");
    if (write_all(c->fd, req, (size_t)n)) return -1;
    int64_t deadline = wstest_now_ms() + 5000;
    for (;;) {
        if (c->len >= 4) {
            uint8_t *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
            if (end) {
                size_t hl = (size_t)(end - c->buf) + 4;
                char *h = malloc(hl + 1);
                if (!h) return -1;
                memcpy(h, c->buf, hl);
                h[hl] = '\0';
                int status = -1;
                sscanf(h, "HTTP/1.1 %d", &status);
                char *p = strcasestr(h, "\nsec-websocket-protocol:");
                if (p) {
                    p += 24;
                    while (*p == ' ') p++;
                    size_t k = strcspn(p, "\r\n");
                    if (k >= sizeof c->protocol) k = sizeof c->protocol - 1;
                    memcpy(c->protocol, p, k);
                    c->protocol[k] = '\0';
                }
                free(h);
                consume(c, hl);
                return status;
            }
        }
        int left = (int)(deadline - wstest_now_ms());
        if (left <= 0 || fill(c, left) <= 0) return -1;
    }
}

void wstest_close(wstest *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
    c->len = c->cap = 0;
}

int wstest_send_frame(wstest *c, int opcode, int fin, const void *data, size_t len) {
    uint8_t hdr[14];
    size_t h = 0;
    hdr[h++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 15));
    if (len < 126) {
        hdr[h++] = (uint8_t)(0x80 | len);
    } else if (len < 65536) {
        hdr[h++] = 0x80 | 126;
        hdr[h++] = (uint8_t)(len >> 8);
        hdr[h++] = (uint8_t)len;
    } else {
        hdr[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) hdr[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    memcpy(hdr + h, mask, 4);
    h += 4;
    uint8_t *frame = malloc(h + len);
    if (!frame) return -1;
    memcpy(frame, hdr, h);
    const uint8_t *d = data;
    for (size_t i = 0; i < len; i++) frame[h + i] = d[i] ^ mask[i & 3];
    int rc = write_all(c->fd, frame, h + len);
    free(frame);
    return rc;
}

int wstest_send_text(wstest *c, const char *text) {
    return wstest_send_frame(c, WS_TEXT, 1, text, strlen(text));
}

/* Parses one frame from the buffer: 1 = frame ready, 0 = need more bytes. */
static int parse_frame(wstest *c, int *fin, int *op, size_t *hdr_len, uint64_t *plen) {
    if (c->len < 2) return 0;
    const uint8_t *b = c->buf;
    *fin = (b[0] & 0x80) != 0;
    *op = b[0] & 15;
    int masked = (b[1] & 0x80) != 0;
    uint64_t len = b[1] & 127;
    size_t h = 2;
    if (len == 126) {
        if (c->len < 4) return 0;
        len = ((uint64_t)b[2] << 8) | b[3];
        h = 4;
    } else if (len == 127) {
        if (c->len < 10) return 0;
        len = 0;
        for (int i = 0; i < 8; i++) len = (len << 8) | b[2 + i];
        h = 10;
    }
    if (masked) h += 4;  /* servers must not mask; tolerate it anyway */
    if (c->len < h + len) return 0;
    *hdr_len = h;
    *plen = len;
    return 1;
}

int wstest_recv(wstest *c, uint8_t **data, size_t *len, int timeout_ms) {
    *data = NULL;
    *len = 0;
    uint8_t *msg = NULL;
    size_t msg_len = 0;
    int msg_op = 0;
    int64_t deadline = wstest_now_ms() + timeout_ms;
    for (;;) {
        int fin, op;
        size_t h;
        uint64_t pl;
        while (!parse_frame(c, &fin, &op, &h, &pl)) {
            int left = (int)(deadline - wstest_now_ms());
            if (left <= 0) { free(msg); return 0; }
            int r = fill(c, left);
            if (r < 0) { free(msg); return -1; }
        }
        uint8_t *payload = c->buf + h;
        if (op == WS_PING) {
            uint8_t copy[126];
            size_t n = pl < sizeof copy ? (size_t)pl : sizeof copy;
            memcpy(copy, payload, n);
            consume(c, h + (size_t)pl);
            wstest_send_frame(c, WS_PONG, 1, copy, n);
            continue;
        }
        if (op == WS_PONG) { consume(c, h + (size_t)pl); continue; }
        if (op == WS_CLOSE) {
            c->close_code = pl >= 2 ? (payload[0] << 8 | payload[1]) : 1005;
            size_t rl = pl > 2 ? (size_t)pl - 2 : 0;
            if (rl >= sizeof c->close_reason) rl = sizeof c->close_reason - 1;
            memcpy(c->close_reason, payload + 2, rl);
            c->close_reason[rl] = '\0';
            consume(c, h + (size_t)pl);
            free(msg);
            *data = calloc(1, 1);
            return WS_CLOSE;
        }
        if (op != WS_CONT) msg_op = op;
        uint8_t *n = realloc(msg, msg_len + (size_t)pl + 1);
        if (!n) { free(msg); return -1; }
        msg = n;
        memcpy(msg + msg_len, payload, (size_t)pl);
        msg_len += (size_t)pl;
        msg[msg_len] = '\0';
        consume(c, h + (size_t)pl);
        if (fin) {
            *data = msg;
            *len = msg_len;
            return msg_op;
        }
    }
}

int wstest_json_str(const char *json, const char *name, char *out, size_t n) {
    cJSON *o = cJSON_Parse(json);
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, name) : NULL;
    int rc = -1;
    if (v && cJSON_IsString(v)) {
        snprintf(out, n, "%s", v->valuestring);
        rc = 0;
    } else if (v && cJSON_IsBool(v)) {
        snprintf(out, n, "%s", cJSON_IsTrue(v) ? "true" : "false");
        rc = 0;
    }
    cJSON_Delete(o);
    return rc;
}

int wstest_json_num(const char *json, const char *name, double *out) {
    cJSON *o = cJSON_Parse(json);
    const cJSON *v = o ? cJSON_GetObjectItemCaseSensitive(o, name) : NULL;
    int rc = -1;
    if (v && cJSON_IsNumber(v)) {
        *out = v->valuedouble;
        rc = 0;
    }
    cJSON_Delete(o);
    return rc;
}

char *wstest_wait_type(wstest *c, const char *type, int timeout_ms, int *binaries_skipped) {
    int64_t deadline = wstest_now_ms() + timeout_ms;
    for (;;) {
        int left = (int)(deadline - wstest_now_ms());
        if (left <= 0) return NULL;
        uint8_t *d;
        size_t n;
        int op = wstest_recv(c, &d, &n, left);
        if (op <= 0 || op == WS_CLOSE) {
            free(d);
            return NULL;
        }
        if (op == WS_BINARY) {
            if (binaries_skipped) (*binaries_skipped)++;
            free(d);
            continue;
        }
        char t[64];
        if (wstest_json_str((char *)d, "type", t, sizeof t) == 0 && strcmp(t, type) == 0)
            return (char *)d;
        free(d);
    }
}

int wstest_http(const char *host, int port, const char *method, const char *path,
                const char *extra_headers, char **headers, char **body, size_t *body_len) {
    if (headers) *headers = NULL;
    if (body) *body = NULL;
    if (body_len) *body_len = 0;
    int fd = tcp_connect(host, port);
    if (fd < 0) return -1;
    char req[2048];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n%s\r\n",
                     method, path, host, port, extra_headers ? extra_headers : "");
    if (write_all(fd, req, (size_t)n)) { close(fd); return -1; }
    wstest c;
    memset(&c, 0, sizeof c);
    c.fd = fd;
    int64_t deadline = wstest_now_ms() + 5000;
    /* Read until the headers are complete, then Content-Length bytes of body (or EOF). */
    long content_length = -1;
    size_t hl = 0;
    int status = -1;
    for (;;) {
        if (!hl) {
            uint8_t *end = c.len >= 4 ? memmem(c.buf, c.len, "\r\n\r\n", 4) : NULL;
            if (end) {
                hl = (size_t)(end - c.buf) + 4;
                char *h = malloc(hl + 1);
                memcpy(h, c.buf, hl);
                h[hl] = '\0';
                sscanf(h, "HTTP/1.1 %d", &status);
                for (char *p = h; *p; p++) *p = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
                char *cl = strstr(h, "\ncontent-length:");
                if (cl) content_length = strtol(cl + 16, NULL, 10);
                if (headers) *headers = h;
                else free(h);
                if (strcmp(method, "HEAD") == 0) content_length = 0;
            }
        }
        if (hl && content_length >= 0 && c.len - hl >= (size_t)content_length) break;
        int left = (int)(deadline - wstest_now_ms());
        if (left <= 0) break;
        if (fill(&c, left) <= 0) break;
    }
    if (hl && body) {
        size_t bl = c.len - hl;
        if (content_length >= 0 && bl > (size_t)content_length) bl = (size_t)content_length;
        *body = malloc(bl + 1);
        memcpy(*body, c.buf + hl, bl);
        (*body)[bl] = '\0';
        if (body_len) *body_len = bl;
    }
    wstest_close(&c);
    return hl ? status : -1;
}

int wstest_spawn_daemon(char *const argv[], const char *log_path, pid_t *pid, int timeout_ms) {
    int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    pid_t p = fork();
    if (p < 0) { close(fd); return -1; }
    if (p == 0) {
        dup2(fd, 2);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) { dup2(devnull, 0); dup2(devnull, 1); }
        execv(argv[0], argv);
        _exit(127);
    }
    close(fd);
    *pid = p;
    int64_t deadline = wstest_now_ms() + timeout_ms;
    while (wstest_now_ms() < deadline) {
        FILE *f = fopen(log_path, "r");
        if (f) {
            char line[1024];
            while (fgets(line, sizeof line, f)) {
                char *at = strstr(line, "listening on http");
                int port;
                if (at && sscanf(strstr(at, "://") + 3, "%*[^:]:%d/", &port) == 1) {
                    fclose(f);
                    return port;
                }
            }
            fclose(f);
        }
        int status;
        if (waitpid(p, &status, WNOHANG) == p) return -1;  /* died */
        usleep(20000);
    }
    kill(p, SIGKILL);
    waitpid(p, NULL, 0);
    return -1;
}
