/* stream/ws_server.c - libwebsockets server: /ws, /metrics, /recordings, static files
 * (see ws_server.h; the lws patterns follow shared/specs/streaming.md section 1). */
#include "stream/ws_server.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Packets carry their own headroom so one buffer goes to every client without a copy. */
_Static_assert(FB_PACKET_PRE >= LWS_PRE, "FB_PACKET_PRE must cover LWS_PRE");

#define RX_BUFFER_SIZE 4096            /* per-callback RX chunk; control messages are small */
#define TX_PACKET_SIZE (128 * 1024)    /* one send() of video: a keyframe usually fits */
#define NOTSENT_LOWAT (64 * 1024)      /* writable only when the kernel's unsent bytes are low */
#define HTTP_CHUNK (32 * 1024)
/* A closing client gets this long to become writable for its close frame (a stuck reader only
 * needs to read a little: nothing else is queued for it any more), then it is cut off. */
#define CLOSE_GRACE_SECS 10

typedef struct text_item {
    struct text_item *next;
    size_t len;
    unsigned char buf[];               /* LWS_PRE headroom + text */
} text_item;

typedef struct event {
    struct event *next;
    void (*fn)(void *arg);
    void *arg;
} event;

struct fb_ws_conn {
    fb_ws_server *srv;
    struct lws *wsi;
    fb_ws_conn *prev, *next;
    uint64_t id;
    void *user;
    char peer[64];

    /* receiving one message, possibly in many callbacks */
    int rx_active, rx_binary, rx_over;
    char *rx;
    size_t rx_len, rx_cap;
    fb_rate rate;

    /* sending */
    text_item *text_head, *text_tail;
    size_t text_bytes;
    fb_fanout *video;
    uint64_t frames_sent, bytes_sent;

    int close_pending;                 /* close once the queued text is out */
    int close_now;                     /* close at the next writable, dropping what is queued */
    int close_status;
    char close_reason[124];
};

struct ws_pss { fb_ws_conn *conn; };

struct http_pss {
    char *body;                        /* /metrics text */
    size_t body_len, body_off;
    int fd_plus1;                      /* recording being sent (fd + 1; 0 = none) */
    uint64_t file_pos, file_left;
};

struct fb_ws_server {
    fb_ws_config cfg;
    fb_ws_hooks hooks;
    char *host, *web_root, *record_dir, *tls_cert, *tls_key, *server_name;
    char web_root_real[PATH_MAX];      /* "" = no static files */

    struct lws_context *ctx;
    struct lws_vhost *vhost;
    struct lws_protocols protocols[3];
    struct lws_protocol_vhost_options pvo_default, pvo_ws;
    struct lws_protocol_vhost_options headers[6];
    lws_retry_bo_t retry;
    lws_sorted_usec_list_t tick;
    int port;

    pthread_mutex_t lock;              /* guards the event queue */
    event *ev_head, *ev_tail;
    atomic_int stop;

    /* service thread only */
    fb_ws_conn *conns;
    uint64_t next_id;
    int refuse_new;
    int destroying;
    fb_ws_totals totals;
    unsigned char http_buf[LWS_PRE + HTTP_CHUNK];  /* one HTTP body chunk at a time */
};

static int64_t mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void slog(fb_ws_server *s, int level, const char *fmt, ...) {
    if (!s->hooks.log) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->hooks.log(s->hooks.user, level, msg);
}

static char *dup_or_null(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void fb_ws_config_default(fb_ws_config *c) {
    memset(c, 0, sizeof *c);
    c->host = "127.0.0.1";
    c->port = 8080;
    c->server_name = "flipbook";
    fb_fanout_limits_default(&c->limits);
    c->ping_secs = 20;
    c->hangup_secs = 45;
    c->max_text_queue = 1u << 20;
}

/* ------------------------------------------------------------------------------------------ */
/* connections                                                                                 */

static void conn_free(fb_ws_conn *c) {
    while (c->text_head) {
        text_item *t = c->text_head;
        c->text_head = t->next;
        free(t);
    }
    fb_fanout_free(c->video);
    free(c->rx);
    free(c);
}

static void conn_want_key(void *arg) {
    fb_ws_conn *c = arg;
    if (c->srv->hooks.on_need_keyframe && !c->close_pending)
        c->srv->hooks.on_need_keyframe(c->srv->hooks.user, c);
}

void fb_ws_conn_set_user(fb_ws_conn *c, void *user) { c->user = user; }
void *fb_ws_conn_user(const fb_ws_conn *c) { return c->user; }
uint64_t fb_ws_conn_id(const fb_ws_conn *c) { return c->id; }
const char *fb_ws_conn_peer(const fb_ws_conn *c) { return c->peer; }
int fb_ws_conn_closing(const fb_ws_conn *c) { return c->close_pending; }

static void begin_close(fb_ws_conn *c, int status, const char *reason, int now) {
    if (c->srv->destroying) return;
    if (!c->close_pending) {
        c->close_pending = 1;
        c->close_status = status;
        snprintf(c->close_reason, sizeof c->close_reason, "%s", reason ? reason : "");
        /* Stuck peers never become writable: bound how long the polite close may take. */
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_GRACE_SECS);
    }
    if (now) c->close_now = 1;
    lws_callback_on_writable(c->wsi);
}

void fb_ws_conn_close(fb_ws_conn *c, int status, const char *reason) {
    begin_close(c, status, reason, 0);
}

int fb_ws_conn_send_text(fb_ws_conn *c, const char *text, size_t len) {
    if (c->close_pending || c->srv->destroying) return -1;
    if (c->text_bytes + len > c->srv->cfg.max_text_queue) {
        slog(c->srv, FB_WS_LOG_WARN, "client %llu (%s): control messages not read, closing",
             (unsigned long long)c->id, c->peer);
        c->srv->totals.slow_closed++;
        begin_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "client too slow: messages not read", 1);
        return -1;
    }
    text_item *t = malloc(sizeof *t + LWS_PRE + len + 1);
    if (!t) return -1;
    t->next = NULL;
    t->len = len;
    memcpy(t->buf + LWS_PRE, text, len);
    t->buf[LWS_PRE + len] = '\0';
    if (c->text_tail) c->text_tail->next = t;
    else c->text_head = t;
    c->text_tail = t;
    c->text_bytes += len;
    lws_callback_on_writable(c->wsi);
    return 0;
}

int fb_ws_conn_send_error(fb_ws_conn *c, fb_err code, const char *message, int has_id,
                          int64_t id) {
    if ((unsigned)code < FB_ERR_COUNT) c->srv->totals.errors[code]++;
    char *s = fb_proto_error(code, message, has_id, id, 0);
    if (!s) return -1;
    int rc = fb_ws_conn_send_text(c, s, strlen(s));
    fb_proto_free(s);
    return rc;
}

fb_fanout_result fb_ws_conn_send_packet(fb_ws_conn *c, fb_packet *p) {
    if (c->close_pending || c->srv->destroying) return FB_FANOUT_CLOSE;
    uint64_t before = fb_fanout_dropped(c->video);
    fb_fanout_result r = fb_fanout_push(c->video, p, mono_us());
    c->srv->totals.frames_dropped += fb_fanout_dropped(c->video) - before;
    if (r == FB_FANOUT_CLOSE) {
        slog(c->srv, FB_WS_LOG_WARN, "client %llu (%s): %s", (unsigned long long)c->id, c->peer,
             fb_fanout_close_reason(c->video));
        c->srv->totals.slow_closed++;
        begin_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, fb_fanout_close_reason(c->video), 1);
    } else if (fb_fanout_frames(c->video)) {
        lws_callback_on_writable(c->wsi);
    }
    return r;
}

void fb_ws_conn_reset_video(fb_ws_conn *c) { fb_fanout_reset(c->video); }

void fb_ws_conn_get_stats(const fb_ws_conn *c, fb_ws_conn_stats *st) {
    st->frames_sent = c->frames_sent;
    st->bytes_sent = c->bytes_sent;
    st->frames_queued = fb_fanout_frames(c->video);
    st->dropped = fb_fanout_dropped(c->video);
}

/* A whole message has arrived (or been discarded): apply the limits, then hand it on. */
static void finish_message(fb_ws_conn *c) {
    fb_ws_server *s = c->srv;
    if (!fb_rate_take(&c->rate, mono_us())) {
        fb_ws_conn_send_error(c, FB_ERR_RATE_LIMITED,
                              "more than 20 messages per second; message dropped", 0, 0);
        return;
    }
    if (c->rx_binary) {
        fb_ws_conn_send_error(c, FB_ERR_BINARY_NOT_ALLOWED, "clients may not send binary messages",
                              0, 0);
        return;
    }
    if (c->rx_over) {
        char msg[96];
        snprintf(msg, sizeof msg, "message is larger than %d bytes; discarded",
                 FB_PROTO_MAX_MESSAGE);
        fb_ws_conn_send_error(c, FB_ERR_TOO_LARGE, msg, 0, 0);
        return;
    }
    if (!c->rx) {  /* an empty message */
        c->rx = malloc(1);
        if (!c->rx) return;
        c->rx_cap = 1;
    }
    c->rx[c->rx_len] = '\0';
    if (s->hooks.on_message) s->hooks.on_message(s->hooks.user, c, c->rx, c->rx_len);
}

static void rx_append(fb_ws_conn *c, const void *in, size_t len) {
    if (c->rx_binary || c->rx_over) return;  /* discarding */
    if (c->rx_len + len > FB_PROTO_MAX_MESSAGE) {
        c->rx_over = 1;
        return;
    }
    if (c->rx_len + len + 1 > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap : 1024;
        while (cap < c->rx_len + len + 1) cap *= 2;
        if (cap > FB_PROTO_MAX_MESSAGE + 1) cap = FB_PROTO_MAX_MESSAGE + 1;
        char *n = realloc(c->rx, cap);
        if (!n) { c->rx_over = 1; return; }
        c->rx = n;
        c->rx_cap = cap;
    }
    memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += len;
}

static void drain_events(fb_ws_server *s) {
    pthread_mutex_lock(&s->lock);
    event *e = s->ev_head;
    s->ev_head = s->ev_tail = NULL;
    pthread_mutex_unlock(&s->lock);
    while (e) {
        event *next = e->next;
        e->fn(e->arg);
        free(e);
        e = next;
    }
}

static int conn_writeable(fb_ws_conn *c) {
    struct lws *wsi = c->wsi;
    if (c->close_now || (c->close_pending && !c->text_head)) {
        lws_close_reason(wsi, (enum lws_close_status)c->close_status,
                         (unsigned char *)c->close_reason, strlen(c->close_reason));
        return -1;
    }
    /* Exactly one lws_write() per WRITEABLE callback: text first (hello/config must precede
     * video), then one video frame. */
    if (c->text_head) {
        text_item *t = c->text_head;
        int n = lws_write(wsi, t->buf + LWS_PRE, t->len, LWS_WRITE_TEXT);
        if (n < (int)t->len) return -1;
        c->text_head = t->next;
        if (!c->text_head) c->text_tail = NULL;
        c->text_bytes -= t->len;
        c->bytes_sent += t->len;
        c->srv->totals.bytes_sent += t->len;
        free(t);
    } else {
        fb_packet *p = fb_fanout_pop(c->video, mono_us());
        if (p) {
            int n = lws_write(wsi, p->wire, p->wire_size, LWS_WRITE_BINARY);
            size_t size = p->wire_size;
            fb_packet_unref(p);
            if (n < (int)size) return -1;
            c->frames_sent++;
            c->bytes_sent += size;
            c->srv->totals.frames_sent++;
            c->srv->totals.bytes_sent += size;
        }
    }
    if (c->text_head || fb_fanout_frames(c->video) || c->close_pending)
        lws_callback_on_writable(wsi);
    return 0;
}

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len) {
    fb_ws_server *s = lws_context_user(lws_get_context(wsi));
    struct ws_pss *pss = user;
    fb_ws_conn *c = pss ? pss->conn : NULL;

    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (s) drain_events(s);
        return 0;

    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        char uri[64];
        if (!s || s->refuse_new) return 1;
        int n = lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI);
        if (n <= 0 || strcmp(uri, FB_PROTO_PATH) != 0) return 1;  /* WebSocket only on /ws */
        return 0;
    }

    case LWS_CALLBACK_ESTABLISHED: {
        if (!s || !pss) return -1;
        c = calloc(1, sizeof *c);
        if (!c) return -1;
        c->srv = s;
        c->wsi = wsi;
        c->id = ++s->next_id;
        c->video = fb_fanout_new(&s->cfg.limits, conn_want_key, c);
        if (!c->video) { free(c); return -1; }
        fb_rate_init(&c->rate, FB_PROTO_RATE_PER_SEC, FB_PROTO_RATE_BURST, mono_us());
        lws_get_peer_simple(wsi, c->peer, sizeof c->peer);
        int fd = lws_get_socket_fd(wsi);
        if (fd >= 0) {
            int lowat = NOTSENT_LOWAT;
            /* Not fatal: unix sockets and old kernels refuse it. */
            (void)setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat);
        }
        pss->conn = c;
        c->next = s->conns;
        if (s->conns) s->conns->prev = c;
        s->conns = c;
        s->totals.connections++;
        s->totals.accepted++;
        slog(s, FB_WS_LOG_DEBUG, "client %llu connected from %s", (unsigned long long)c->id,
             c->peer);
        if (s->hooks.on_open) s->hooks.on_open(s->hooks.user, c);
        return 0;
    }

    case LWS_CALLBACK_RECEIVE:
        if (!c) return 0;
        if (!c->rx_active) {
            c->rx_active = 1;
            c->rx_binary = lws_frame_is_binary(wsi);
            c->rx_over = 0;
            c->rx_len = 0;
        }
        if (len) rx_append(c, in, len);
        if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
            c->rx_active = 0;
            if (!c->close_pending) finish_message(c);
            /* Give back a large buffer once the big message is done. */
            if (c->rx_cap > 16384) {
                free(c->rx);
                c->rx = NULL;
                c->rx_cap = 0;
            }
            c->rx_len = 0;
        }
        return 0;

    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (!c) return 0;
        return conn_writeable(c);

    case LWS_CALLBACK_CLOSED:
        if (!c) return 0;
        /* Unlink first so the hook sees the connection count without this one. */
        if (c->prev) c->prev->next = c->next;
        else s->conns = c->next;
        if (c->next) c->next->prev = c->prev;
        s->totals.connections--;
        if (s->hooks.on_close) s->hooks.on_close(s->hooks.user, c);
        slog(s, FB_WS_LOG_DEBUG, "client %llu closed", (unsigned long long)c->id);
        conn_free(c);
        pss->conn = NULL;
        return 0;

    default:
        return 0;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* HTTP: /metrics, /recordings/NAME.webm and the static files of the web root                 */

static void http_pss_clear(struct http_pss *h) {
    free(h->body);
    h->body = NULL;
    if (h->fd_plus1) close(h->fd_plus1 - 1);
    h->fd_plus1 = 0;
}

static int http_done(struct lws *wsi) {
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int http_status(struct lws *wsi, unsigned code) {
    lws_return_http_status(wsi, code, NULL);
    return http_done(wsi);
}

static int valid_recording_name(const char *name) {
    size_t n = strlen(name);
    if (n <= 5 || n > 200 || strcmp(name + n - 5, ".webm") != 0) return 0;
    for (size_t i = 0; i < n - 5; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* Parses "bytes=A-B", "bytes=A-" or "bytes=-N" against a file of `size` bytes. Returns 1 with
 * [*from, *from + *count) set, 0 when there is no usable single range (serve everything), -1
 * when the range cannot be satisfied (416). */
static int parse_range(const char *h, uint64_t size, uint64_t *from, uint64_t *count) {
    if (strncmp(h, "bytes=", 6) != 0 || strchr(h, ',')) return 0;
    const char *p = h + 6;
    char *end;
    if (*p == '-') {
        errno = 0;
        unsigned long long n = strtoull(p + 1, &end, 10);
        if (errno || end == p + 1 || *end) return 0;
        if (n == 0 || size == 0) return -1;
        if (n > size) n = size;
        *from = size - n;
        *count = n;
        return 1;
    }
    errno = 0;
    unsigned long long a = strtoull(p, &end, 10);
    if (errno || end == p || *end != '-') return 0;
    p = end + 1;
    unsigned long long b = size ? size - 1 : 0;
    if (*p) {
        b = strtoull(p, &end, 10);
        if (errno || *end) return 0;
        if (b >= size) b = size - 1;
    }
    if (a >= size || b < a) return -1;
    *from = a;
    *count = b - a + 1;
    return 1;
}

/* Answers with the open regular file `fd` (which this takes over): 200, or 206 for a single
 * satisfiable Range, or 416. The body goes out from HTTP_WRITEABLE in HTTP_CHUNK pieces. */
static int serve_fd(struct lws *wsi, struct http_pss *h, int fd, const char *mime,
                    const char *cache, int head) {
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return http_status(wsi, HTTP_STATUS_NOT_FOUND);
    }
    uint64_t size = (uint64_t)st.st_size, from = 0, count = size;
    unsigned code = HTTP_STATUS_OK;
    char range[128], cr[96];
    int cr_len = 0;
    if (lws_hdr_copy(wsi, range, sizeof range, WSI_TOKEN_HTTP_RANGE) > 0) {
        int r = parse_range(range, size, &from, &count);
        if (r < 0) {
            close(fd);
            unsigned char buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *p = start,
                          *end = buf + sizeof buf - 1;
            cr_len = snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)size);
            if (lws_add_http_common_headers(wsi, HTTP_STATUS_REQ_RANGE_NOT_SATISFIABLE,
                                            "text/plain", 0, &p, end) ||
                lws_add_http_header_by_name(wsi, (const unsigned char *)"content-range:",
                                            (const unsigned char *)cr, cr_len, &p, end) ||
                lws_finalize_write_http_header(wsi, start, &p, end))
                return -1;
            return http_done(wsi);
        }
        if (r > 0) {
            code = HTTP_STATUS_PARTIAL_CONTENT;
            cr_len = snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu", (unsigned long long)from,
                              (unsigned long long)(from + count - 1), (unsigned long long)size);
        }
    }
    unsigned char buf[LWS_PRE + 2048], *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
    if (lws_add_http_common_headers(wsi, code, mime, (lws_filepos_t)count, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"accept-ranges:",
                                    (const unsigned char *)"bytes", 5, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)cache, (int)strlen(cache), &p, end) ||
        (cr_len && lws_add_http_header_by_name(wsi, (const unsigned char *)"content-range:",
                                               (const unsigned char *)cr, cr_len, &p, end)) ||
        lws_finalize_write_http_header(wsi, start, &p, end)) {
        close(fd);
        return -1;
    }
    if (head || count == 0) {
        close(fd);
        return http_done(wsi);
    }
    h->fd_plus1 = fd + 1;
    h->file_pos = from;
    h->file_left = count;
    lws_callback_on_writable(wsi);
    return 0;
}

static int start_recording(fb_ws_server *s, struct lws *wsi, struct http_pss *h, const char *name,
                           int head) {
    if (!s->record_dir || !valid_recording_name(name)) return http_status(wsi, HTTP_STATUS_NOT_FOUND);
    if (s->hooks.recording_allowed && !s->hooks.recording_allowed(s->hooks.user, name))
        return http_status(wsi, HTTP_STATUS_NOT_FOUND);
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", s->record_dir, name) >= sizeof path)
        return http_status(wsi, HTTP_STATUS_NOT_FOUND);
    /* O_NOFOLLOW: a symlink planted in the record dir is never followed; serve_fd then insists
     * on a regular file. */
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return http_status(wsi, HTTP_STATUS_NOT_FOUND);
    return serve_fd(wsi, h, fd, "video/webm", "no-cache", head);
}

static const char *mime_type(const char *path) {
    static const char *const table[][2] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
        {".json", "application/json"}, {".map", "application/json"},
        {".webm", "video/webm"}, {".wasm", "application/wasm"},
        {".svg", "image/svg+xml"}, {".png", "image/png"}, {".jpg", "image/jpeg"},
        {".ico", "image/x-icon"}, {".txt", "text/plain; charset=utf-8"},
        {".woff2", "font/woff2"},
    };
    size_t n = strlen(path);
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        size_t m = strlen(table[i][0]);
        if (n >= m && strcmp(path + n - m, table[i][0]) == 0) return table[i][1];
    }
    return "application/octet-stream";
}

/* A static file of the web root. lws has already decoded and normalised the path; still, only
 * plain names are accepted (no dot-files, no "..", no control characters), and the file's real
 * path must lie inside the real web root (symlinks leading out are refused). */
static int start_static(fb_ws_server *s, struct lws *wsi, struct http_pss *h, const char *uri,
                        int head) {
    if (!s->web_root_real[0] || uri[0] != '/') return http_status(wsi, HTTP_STATUS_NOT_FOUND);
    char rel[1024];
    size_t n = strlen(uri);
    if (n + 16 >= sizeof rel) return http_status(wsi, HTTP_STATUS_NOT_FOUND);
    memcpy(rel, uri, n + 1);
    if (rel[n - 1] == '/') memcpy(rel + n, "index.html", 11);
    for (const char *p = rel; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == '\\') return http_status(wsi, HTTP_STATUS_NOT_FOUND);
        if (*p == '/' && p[1] == '.') return http_status(wsi, HTTP_STATUS_NOT_FOUND);
    }
    char path[PATH_MAX + 1100], real[PATH_MAX];
    snprintf(path, sizeof path, "%s%s", s->web_root_real, rel);
    if (!realpath(path, real)) return http_status(wsi, HTTP_STATUS_NOT_FOUND);
    size_t rl = strlen(s->web_root_real);
    if (strncmp(real, s->web_root_real, rl) != 0 || real[rl] != '/')
        return http_status(wsi, HTTP_STATUS_NOT_FOUND);
    int fd = open(real, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return http_status(wsi, HTTP_STATUS_NOT_FOUND);
    /* no-cache: browsers revalidate, so a changed web client is picked up on reload. */
    return serve_fd(wsi, h, fd, mime_type(real), "no-cache", head);
}

static int start_metrics(fb_ws_server *s, struct lws *wsi, struct http_pss *h, int head) {
    size_t len = 0;
    char *text = s->hooks.metrics ? s->hooks.metrics(s->hooks.user, &len) : NULL;
    if (!text) return http_status(wsi, HTTP_STATUS_INTERNAL_SERVER_ERROR);
    unsigned char buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
    if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, "text/plain; version=0.0.4; charset=utf-8",
                                    (lws_filepos_t)len, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end)) {
        free(text);
        return -1;
    }
    if (head || len == 0) {
        free(text);
        return http_done(wsi);
    }
    h->body = text;
    h->body_len = len;
    h->body_off = 0;
    lws_callback_on_writable(wsi);
    return 0;
}

static int http_writeable(fb_ws_server *s, struct lws *wsi, struct http_pss *h) {
    unsigned char *data = s->http_buf + LWS_PRE;
    size_t n = 0;
    int last = 0;
    if (h->body) {
        n = h->body_len - h->body_off;
        if (n > HTTP_CHUNK) n = HTTP_CHUNK;
        memcpy(data, h->body + h->body_off, n);
        h->body_off += n;
        last = h->body_off == h->body_len;
    } else if (h->fd_plus1) {
        size_t want = h->file_left < HTTP_CHUNK ? (size_t)h->file_left : HTTP_CHUNK;
        ssize_t got = pread(h->fd_plus1 - 1, data, want, (off_t)h->file_pos);
        if (got <= 0) return -1;  /* the file shrank or failed: drop the connection */
        n = (size_t)got;
        h->file_pos += n;
        h->file_left -= n;
        last = h->file_left == 0;
    } else {
        return 0;
    }
    if (lws_write(wsi, data, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n) return -1;
    if (last) {
        http_pss_clear(h);
        return http_done(wsi);
    }
    lws_callback_on_writable(wsi);
    return 0;
}

static int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len) {
    fb_ws_server *s = lws_context_user(lws_get_context(wsi));
    struct http_pss *h = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        char uri[512];
        int head = 0;
        int n = lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI);
        if (n <= 0) {
            n = lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_HEAD_URI);
            head = n > 0;
        }
        if (n <= 0 || !s || !h) return http_status(wsi, HTTP_STATUS_NOT_FOUND);
        http_pss_clear(h);
        if (strcmp(uri, "/metrics") == 0) return start_metrics(s, wsi, h, head);
        if (strncmp(uri, "/recordings/", 12) == 0) return start_recording(s, wsi, h, uri + 12, head);
        return start_static(s, wsi, h, uri, head);
    }
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return h && s ? http_writeable(s, wsi, h) : 0;
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
        if (h) http_pss_clear(h);
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* ------------------------------------------------------------------------------------------ */

static void tick_cb(lws_sorted_usec_list_t *sul) {
    fb_ws_server *s = lws_container_of(sul, fb_ws_server, tick);
    if (s->hooks.on_tick) s->hooks.on_tick(s->hooks.user, mono_us());
    lws_sul_schedule(s->ctx, 0, &s->tick, tick_cb, LWS_US_PER_SEC);
}

static void set_pvo(struct lws_protocol_vhost_options *o, struct lws_protocol_vhost_options *next,
                    const char *name, const char *value) {
    o->next = next;
    o->options = NULL;
    o->name = name;
    o->value = value;
}

int fb_ws_server_new(const fb_ws_config *cfg, const fb_ws_hooks *hooks, fb_ws_server **out,
                     char *err, size_t err_size) {
    *out = NULL;
    if ((cfg->tls_cert != NULL) != (cfg->tls_key != NULL)) {
        snprintf(err, err_size, "TLS needs both a certificate and a key");
        return -1;
    }
    fb_ws_server *s = calloc(1, sizeof *s);
    if (!s) { snprintf(err, err_size, "out of memory"); return -1; }
    s->cfg = *cfg;
    if (hooks) s->hooks = *hooks;
    if (!s->cfg.max_text_queue) s->cfg.max_text_queue = 1u << 20;
    s->host = dup_or_null(cfg->host);
    s->web_root = dup_or_null(cfg->web_root);
    s->record_dir = dup_or_null(cfg->record_dir);
    s->tls_cert = dup_or_null(cfg->tls_cert);
    s->tls_key = dup_or_null(cfg->tls_key);
    s->server_name = dup_or_null(cfg->server_name ? cfg->server_name : "flipbook");
    pthread_mutex_init(&s->lock, NULL);
    atomic_init(&s->stop, 0);
    if (cfg->web_root && !realpath(cfg->web_root, s->web_root_real)) {
        snprintf(err, err_size, "web root %s: %s", cfg->web_root, strerror(errno));
        fb_ws_server_free(s);
        return -1;
    }

    /* protocols[0] takes every plain HTTP request. Static files are served by our callback
     * rather than an lws file mount: the 4.1 mount leaves requests for missing files hanging,
     * has no .webm type and ignores Range. */
    s->protocols[0] = (struct lws_protocols){"http", http_callback, sizeof(struct http_pss), 0, 0,
                                             NULL, 0};
    s->protocols[1] = (struct lws_protocols){FB_PROTO_NAME, ws_callback, sizeof(struct ws_pss),
                                             RX_BUFFER_SIZE, 0, NULL, TX_PACKET_SIZE};

    /* Make flipbook.v1 the vhost default so a WebSocket without a subprotocol binds to it. */
    set_pvo(&s->pvo_default, NULL, "default", "1");
    set_pvo(&s->pvo_ws, NULL, FB_PROTO_NAME, "");
    s->pvo_ws.options = &s->pvo_default;

    /* Our own security headers instead of lws's "best practices" CSP, which would block media
     * and blob: URLs the page may need (shared/specs/streaming.md 1.2). */
    set_pvo(&s->headers[0], &s->headers[1], "x-content-type-options:", "nosniff");
    set_pvo(&s->headers[1], &s->headers[2], "referrer-policy:", "no-referrer");
    set_pvo(&s->headers[2], &s->headers[3], "x-frame-options:", "DENY");
    set_pvo(&s->headers[3], &s->headers[4], "cross-origin-opener-policy:", "same-origin");
    set_pvo(&s->headers[4], NULL, "content-security-policy:",
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self' ws: wss:; "
            "worker-src 'self' blob:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'");

    s->retry.secs_since_valid_ping = (uint16_t)(cfg->ping_secs > 0 ? cfg->ping_secs : 20);
    s->retry.secs_since_valid_hangup = (uint16_t)(cfg->hangup_secs > s->retry.secs_since_valid_ping
                                                      ? cfg->hangup_secs
                                                      : s->retry.secs_since_valid_ping + 25);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    if (s->tls_cert) info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.user = s;
    info.server_string = s->server_name;
    info.port = CONTEXT_PORT_NO_LISTEN;
    s->ctx = lws_create_context(&info);
    if (!s->ctx) {
        snprintf(err, err_size, "cannot create the libwebsockets context");
        fb_ws_server_free(s);
        return -1;
    }

    memset(&info, 0, sizeof info);
    info.vhost_name = "default";
    info.port = cfg->port;
    info.iface = s->host;
    info.protocols = s->protocols;
    info.pvo = &s->pvo_ws;
    info.headers = &s->headers[0];
    info.retry_and_idle_policy = &s->retry;
    info.timeout_secs = 10;
    info.user = s;
    /* A wrong --host must fail start-up, not leave a daemon that listens nowhere. */
    info.options |= LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
    if (s->host && !strchr(s->host, ':')) info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
    if (s->tls_cert) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        info.ssl_cert_filepath = s->tls_cert;
        info.ssl_private_key_filepath = s->tls_key;
        info.alpn = "http/1.1";   /* static files are written in 32 KiB pieces, over the 16 KiB
                                   * an HTTP/2 frame may carry; WebSockets are HTTP/1.1 anyway */
    }
    s->vhost = lws_create_vhost(s->ctx, &info);
    if (!s->vhost) {
        snprintf(err, err_size, "cannot listen on %s port %d (in use, or not an address of this "
                 "machine%s)", s->host ? s->host : "*", cfg->port,
                 s->tls_cert ? ", or the TLS certificate/key could not be loaded" : "");
        fb_ws_server_free(s);
        return -1;
    }
    s->port = lws_get_vhost_listen_port(s->vhost);
    lws_sul_schedule(s->ctx, 0, &s->tick, tick_cb, LWS_US_PER_SEC);
    *out = s;
    return 0;
}

int fb_ws_server_port(const fb_ws_server *s) { return s->port; }
int fb_ws_server_is_tls(const fb_ws_server *s) { return s->tls_cert != NULL; }

int fb_ws_server_run(fb_ws_server *s) {
    while (!atomic_load(&s->stop)) {
        if (lws_service(s->ctx, 0) < 0) return -1;
    }
    return 0;
}

void fb_ws_server_stop(fb_ws_server *s) {
    atomic_store(&s->stop, 1);
    if (s->ctx) lws_cancel_service(s->ctx);
}

int fb_ws_server_post(fb_ws_server *s, void (*fn)(void *arg), void *arg) {
    event *e = malloc(sizeof *e);
    if (!e) return -1;
    e->next = NULL;
    e->fn = fn;
    e->arg = arg;
    pthread_mutex_lock(&s->lock);
    if (s->ev_tail) s->ev_tail->next = e;
    else s->ev_head = e;
    s->ev_tail = e;
    /* Wakes the service thread; many wakes merge into one, hence the full drain there. */
    if (s->ctx) lws_cancel_service(s->ctx);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

void fb_ws_server_refuse_new(fb_ws_server *s) { s->refuse_new = 1; }

void fb_ws_server_totals(const fb_ws_server *s, fb_ws_totals *t) { *t = s->totals; }

void fb_ws_server_free(fb_ws_server *s) {
    if (!s) return;
    drain_events(s);
    if (s->ctx) {
        lws_sul_cancel(&s->tick);
        s->destroying = 1;
        lws_context_destroy(s->ctx);
        s->ctx = NULL;
    }
    drain_events(s);  /* anything posted by on_close hooks */
    while (s->conns) {  /* not expected: lws closes every wsi in destroy */
        fb_ws_conn *c = s->conns;
        s->conns = c->next;
        conn_free(c);
    }
    pthread_mutex_destroy(&s->lock);
    free(s->host);
    free(s->web_root);
    free(s->record_dir);
    free(s->tls_cert);
    free(s->tls_key);
    free(s->server_name);
    free(s);
}
