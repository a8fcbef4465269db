/* clients/cli/wsclient.c - one-connection WebSocket client over libwebsockets (see wsclient.h). */
#include "clients/cli/wsclient.h"

#include <errno.h>
#include <fcntl.h>
#include <libwebsockets.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct out_msg {
    struct out_msg *next;
    size_t len;
    unsigned char buf[]; /* LWS_PRE headroom, then the text */
} out_msg;

struct fb_ws {
    struct lws_context *context;
    struct lws *wsi;
    fb_ws_events ev;
    fb_url url;
    size_t max_message;

    int established; /* handshake completed */
    int closed;      /* CLIENT_CLOSED or CONNECTION_ERROR seen */
    int conn_error;  /* CONNECTION_ERROR seen */
    char conn_error_text[160];

    out_msg *out_head, *out_tail;
    int want_close;
    int close_code;
    char close_reason[124];

    int peer_code;
    char peer_reason[124];
    char error[160];

    /* message being assembled from fragments */
    unsigned char *rx;
    size_t rx_len, rx_cap;
    int rx_binary, rx_active, rx_overflow;

    lws_sorted_usec_list_t tick; /* bounds each fb_ws_poll() wait */
};

static void set_text(char *dst, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, size, fmt, ap);
    va_end(ap);
}

static void free_out_queue(fb_ws *ws) {
    while (ws->out_head) {
        out_msg *m = ws->out_head;
        ws->out_head = m->next;
        free(m);
    }
    ws->out_tail = NULL;
}

static int rx_append(fb_ws *ws, const void *in, size_t len) {
    if (ws->rx_len + len > ws->max_message) return -1;
    if (ws->rx_len + len + 1 > ws->rx_cap) {
        size_t cap = ws->rx_cap ? ws->rx_cap : 65536;
        while (cap < ws->rx_len + len + 1) cap *= 2;
        unsigned char *n = realloc(ws->rx, cap);
        if (!n) return -1;
        ws->rx = n;
        ws->rx_cap = cap;
    }
    memcpy(ws->rx + ws->rx_len, in, len);
    ws->rx_len += len;
    ws->rx[ws->rx_len] = 0;
    return 0;
}

static int on_lws_event(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len) {
    (void)user;
    struct lws_context *cx = lws_get_context(wsi);
    fb_ws *ws = cx ? lws_context_user(cx) : NULL;
    if (!ws) return 0;

    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        ws->conn_error = 1;
        ws->closed = 1;
        ws->wsi = NULL;
        set_text(ws->conn_error_text, sizeof ws->conn_error_text, "%.*s",
                 in ? (int)(len ? len : strlen(in)) : 0, in ? (const char *)in : "");
        break;

    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        ws->established = 1;
        if (ws->out_head || ws->want_close) lws_callback_on_writable(wsi);
        break;

    case LWS_CALLBACK_CLIENT_RECEIVE: {
        if (!ws->rx_active) {
            ws->rx_active = 1;
            ws->rx_len = 0;
            ws->rx_overflow = 0;
            ws->rx_binary = lws_frame_is_binary(wsi);
        }
        if (!ws->rx_overflow && rx_append(ws, in, len)) {
            ws->rx_overflow = 1;
            set_text(ws->error, sizeof ws->error, "server sent a message over %zu bytes",
                     ws->max_message);
            lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                             (unsigned char *)"message too large", 17);
            return -1;
        }
        if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
            ws->rx_active = 0;
            if (ws->rx_binary) {
                if (ws->ev.on_binary) ws->ev.on_binary(ws->ev.ctx, ws->rx, ws->rx_len);
            } else {
                if (!ws->rx) rx_append(ws, "", 0);
                if (ws->ev.on_text && ws->rx)
                    ws->ev.on_text(ws->ev.ctx, (const char *)ws->rx, ws->rx_len);
            }
            /* Do not keep a huge keyframe's buffer around after a burst. */
            if (ws->rx_cap > (4u << 20)) {
                free(ws->rx);
                ws->rx = NULL;
                ws->rx_cap = 0;
            }
        }
        break;
    }

    case LWS_CALLBACK_CLIENT_WRITEABLE: {
        out_msg *m = ws->out_head;
        if (m) {
            ws->out_head = m->next;
            if (!ws->out_head) ws->out_tail = NULL;
            int n = lws_write(wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT);
            free(m);
            if (n < 0) {
                set_text(ws->error, sizeof ws->error, "write to server failed");
                return -1;
            }
            if (ws->out_head || ws->want_close) lws_callback_on_writable(wsi);
            break;
        }
        if (ws->want_close) {
            lws_close_reason(wsi, (enum lws_close_status)ws->close_code,
                             (unsigned char *)ws->close_reason, strlen(ws->close_reason));
            return -1;
        }
        break;
    }

    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: {
        const unsigned char *p = in;
        if (p && len >= 2) {
            ws->peer_code = (p[0] << 8) | p[1];
            set_text(ws->peer_reason, sizeof ws->peer_reason, "%.*s", (int)(len - 2),
                     (const char *)p + 2);
        }
        break;
    }

    case LWS_CALLBACK_CLIENT_CLOSED:
        ws->closed = 1;
        ws->wsi = NULL;
        break;

    default:
        break;
    }
    return 0;
}

static const struct lws_protocols protocols[] = {
    {FB_WS_SUBPROTOCOL, on_lws_event, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void on_tick(lws_sorted_usec_list_t *sul) { (void)sul; }

/* After libwebsockets reported a failure, find out in plain words why: resolve the host and try
 * a TCP connect ourselves. lws 4.1 only says "connect failed"-style strings; users want
 * "Connection refused" or "unknown host". */
static void diagnose(const fb_ws *ws, int timeout_ms, char *reason, size_t size) {
    char port[16];
    snprintf(port, sizeof port, "%d", ws->url.port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(ws->url.host, port, &hints, &res);
    if (g != 0) {
        set_text(reason, size, "cannot resolve host (%s)", gai_strerror(g));
        return;
    }
    int last_errno = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        int rc = connect(fd, a->ai_addr, a->ai_addrlen);
        if (rc < 0 && errno == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int n = poll(&pfd, 1, timeout_ms > 0 ? timeout_ms : 1);
            if (n == 0) {
                rc = -1;
                errno = ETIMEDOUT;
            } else {
                int soerr = 0;
                socklen_t sl = sizeof soerr;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
                rc = soerr ? -1 : 0;
                errno = soerr;
            }
        }
        if (rc == 0) {
            close(fd);
            freeaddrinfo(res);
            /* TCP works, so the TLS or WebSocket handshake is what failed. */
            const char *why = ws->conn_error_text[0] ? ws->conn_error_text : "no reason given";
            if (ws->url.tls && strstr(why, "SSL"))
                set_text(reason, size,
                         "TLS handshake failed (%s); for a self-signed certificate add --insecure",
                         why);
            else if (!ws->url.tls && strcmp(why, "read failed") == 0)
                set_text(reason, size,
                         "the server hung up during the handshake (if it serves TLS, use wss://)");
            else
                set_text(reason, size, "WebSocket handshake failed (%s)", why);
            return;
        }
        last_errno = errno;
        close(fd);
    }
    freeaddrinfo(res);
    set_text(reason, size, "%s", strerror(last_errno ? last_errno : ECONNREFUSED));
}

int fb_ws_open(fb_ws **out, const fb_url *url, const fb_ws_events *ev, const fb_ws_options *opt,
               char *err, size_t err_size) {
    *out = NULL;
    fb_ws_options o = {0};
    if (opt) o = *opt;
    if (o.connect_timeout_ms <= 0) o.connect_timeout_ms = 5000;
    if (o.max_message == 0) o.max_message = 64u << 20;

    char hostport[300];
    fb_url_hostport(url, hostport, sizeof hostport);

    fb_ws *ws = calloc(1, sizeof *ws);
    if (!ws) {
        set_text(err, err_size, "out of memory");
        return -1;
    }
    ws->url = *url;
    if (ev) ws->ev = *ev;
    ws->max_message = o.max_message;

    lws_set_log_level(o.verbose ? (LLL_ERR | LLL_WARN | LLL_NOTICE) : 0, NULL);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.user = ws;
    info.gid = -1;
    info.uid = -1;
    /* lws's own connect timeout; ours below is usually shorter. */
    info.timeout_secs = (unsigned int)(o.connect_timeout_ms / 1000 + 2);
    if (url->tls) info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    ws->context = lws_create_context(&info);
    if (!ws->context) {
        set_text(err, err_size, "cannot create the WebSocket client context");
        free(ws);
        return -1;
    }

    /* Host header: "host:port" unless it is the scheme's default port. */
    char host_header[300];
    if ((url->tls && url->port == 443) || (!url->tls && url->port == 80))
        snprintf(host_header, sizeof host_header, "%s", strchr(url->host, ':') ? hostport : url->host);
    else
        snprintf(host_header, sizeof host_header, "%s", hostport);

    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = ws->context;
    ci.address = url->host;
    ci.port = url->port;
    ci.path = url->path;
    ci.host = host_header;
    ci.origin = host_header;
    ci.protocol = FB_WS_SUBPROTOCOL;
    ci.pwsi = &ws->wsi;
    if (url->tls) {
        ci.ssl_connection = LCCSCF_USE_SSL;
        if (o.insecure)
            ci.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                                 LCCSCF_ALLOW_EXPIRED;
    }

    long long start = 0;
    {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        start = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    }
    if (!lws_client_connect_via_info(&ci)) ws->closed = ws->conn_error = 1;

    int timed_out = 0;
    while (!ws->established && !ws->closed) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long long now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        if (now - start >= o.connect_timeout_ms) {
            timed_out = 1;
            break;
        }
        lws_sul_schedule(ws->context, 0, &ws->tick, on_tick, 50 * LWS_US_PER_MS);
        lws_service(ws->context, 0);
    }
    if (ws->established) {
        *out = ws;
        return 0;
    }

    char reason[200];
    if (timed_out)
        set_text(reason, sizeof reason, "timed out after %.1f s", o.connect_timeout_ms / 1000.0);
    else
        diagnose(ws, o.connect_timeout_ms, reason, sizeof reason);
    set_text(err, err_size, "cannot connect to %s: %s", hostport, reason);
    fb_ws_free(ws);
    return -1;
}

int fb_ws_send_text(fb_ws *ws, const char *text) {
    if (!ws || ws->closed) return -1;
    size_t len = strlen(text);
    out_msg *m = malloc(sizeof *m + LWS_PRE + len + 1);
    if (!m) return -1;
    m->next = NULL;
    m->len = len;
    memcpy(m->buf + LWS_PRE, text, len + 1);
    if (ws->out_tail)
        ws->out_tail->next = m;
    else
        ws->out_head = m;
    ws->out_tail = m;
    if (ws->wsi) lws_callback_on_writable(ws->wsi);
    return 0;
}

int fb_ws_poll(fb_ws *ws, int max_wait_ms) {
    if (!ws || ws->closed) return 0;
    if (max_wait_ms < 1) max_wait_ms = 1;
    lws_sul_schedule(ws->context, 0, &ws->tick, on_tick, (lws_usec_t)max_wait_ms * LWS_US_PER_MS);
    lws_service(ws->context, 0);
    return ws->closed ? 0 : 1;
}

int fb_ws_is_open(const fb_ws *ws) { return ws && ws->established && !ws->closed; }

void fb_ws_close_soon(fb_ws *ws, int code, const char *reason) {
    if (!ws || ws->closed || ws->want_close) return;
    ws->want_close = 1;
    ws->close_code = code;
    set_text(ws->close_reason, sizeof ws->close_reason, "%s", reason ? reason : "");
    if (ws->wsi) lws_callback_on_writable(ws->wsi);
}

void fb_ws_close(fb_ws *ws, int code, const char *reason, int wait_ms) {
    if (!ws) return;
    fb_ws_close_soon(ws, code, reason);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long start = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    while (!ws->closed) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long long now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        if (now - start >= wait_ms) break;
        fb_ws_poll(ws, 20);
    }
}

int fb_ws_peer_close_code(const fb_ws *ws) { return ws ? ws->peer_code : 0; }
const char *fb_ws_peer_close_reason(const fb_ws *ws) { return ws ? ws->peer_reason : ""; }
const char *fb_ws_error(const fb_ws *ws) { return ws && ws->error[0] ? ws->error : NULL; }

void fb_ws_free(fb_ws *ws) {
    if (!ws) return;
    if (ws->context) {
        lws_sul_cancel(&ws->tick);
        /* Destroying the context closes the connection (and calls back into on_lws_event,
         * which still finds ws through the context user pointer). */
        lws_context_destroy(ws->context);
    }
    free_out_queue(ws);
    free(ws->rx);
    free(ws);
}
