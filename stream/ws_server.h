/* stream/ws_server.h - the daemon's HTTP + WebSocket front door (libwebsockets 4.1).
 *
 * Serves, on one port:
 *   /ws                    WebSocket, subprotocol "flipbook.v1" (also the vhost default, so a
 *                          bare `new WebSocket(url)` binds to it); JSON text in, text + binary out
 *   /metrics               text from the metrics hook (Prometheus exposition format)
 *   /recordings/NAME.webm  files of the record directory whose NAME matches [A-Za-z0-9_-]+ and
 *                          that the recording_allowed hook accepts; regular files only, opened
 *                          with O_NOFOLLOW; single byte ranges are honoured (206) so browsers
 *                          can seek; anything else is 404
 *   /                      static files of the web root (index.html by default)
 *
 * What the server does by itself, per WebSocket connection: gathers fragmented text messages up
 * to FB_PROTO_MAX_MESSAGE bytes (larger ones are discarded and answered with `too_large`),
 * answers binary messages with `binary_not_allowed`, applies the token-bucket rate limit
 * (`rate_limited`), queues outgoing text, and keeps one fb_fanout (stream/fanout.h) of video
 * packets with its skip-to-keyframe and hard-limit policy. Complete, admitted text messages are
 * handed to the on_message hook; everything else about sessions belongs to the caller.
 *
 * Threads: ONE thread runs fb_ws_server_run(); it owns every socket and makes every lws call,
 * and every hook runs on it. Other threads talk to it only through fb_ws_server_post() (a
 * mutex-protected queue drained completely on each wake-up of the loop) and
 * fb_ws_server_stop(). The fb_ws_conn_* functions are for the service thread only (normally
 * from inside hooks or posted functions). A conn pointer is valid from on_open until on_close
 * returns.
 *
 * Usage:
 *   fb_ws_config cfg; fb_ws_config_default(&cfg); cfg.port = 8080; cfg.web_root = "clients/web";
 *   fb_ws_hooks hooks = { .user = app, .on_message = app_message, .on_close = app_close, ... };
 *   fb_ws_server *srv;
 *   if (fb_ws_server_new(&cfg, &hooks, &srv, err, sizeof err)) die(err);
 *   printf("port %d\n", fb_ws_server_port(srv));
 *   fb_ws_server_run(srv);          // until fb_ws_server_stop()
 *   fb_ws_server_free(srv);
 */
#ifndef FLIPBOOK_STREAM_WS_SERVER_H
#define FLIPBOOK_STREAM_WS_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "stream/fanout.h"
#include "stream/packet.h"
#include "stream/protocol.h"

typedef struct fb_ws_server fb_ws_server;
typedef struct fb_ws_conn fb_ws_conn;

enum { FB_WS_LOG_ERROR = 0, FB_WS_LOG_WARN = 1, FB_WS_LOG_INFO = 2, FB_WS_LOG_DEBUG = 3 };

typedef struct fb_ws_config {
    const char *host;          /* numeric address to bind ("127.0.0.1", "::1"); NULL = all */
    int port;                  /* 0 = let the kernel pick; see fb_ws_server_port() */
    const char *web_root;      /* folder served at "/"; NULL = no static files */
    const char *record_dir;    /* folder served at /recordings/; NULL = none */
    const char *tls_cert;      /* PEM files; both set = https/wss */
    const char *tls_key;
    const char *server_name;   /* Server: header */
    fb_fanout_limits limits;   /* per-client video queue */
    int ping_secs;             /* idle seconds before a PING (default 20) */
    int hangup_secs;           /* idle seconds before a dead peer is dropped (default 45) */
    size_t max_text_queue;     /* outgoing text bytes queued per client before it is closed */
} fb_ws_config;

void fb_ws_config_default(fb_ws_config *c);

typedef struct fb_ws_hooks {
    void *user;
    void (*on_open)(void *user, fb_ws_conn *c);
    /* A complete text message that passed the size and rate checks; NUL-terminated. */
    void (*on_message)(void *user, fb_ws_conn *c, const char *text, size_t len);
    void (*on_close)(void *user, fb_ws_conn *c);
    /* Roughly once a second (stats, timeouts). */
    void (*on_tick)(void *user, int64_t now_us);
    /* The video queue of `c` wants a keyframe (after a skip or a join); rate-limited per conn. */
    void (*on_need_keyframe)(void *user, fb_ws_conn *c);
    /* /metrics body: a malloc'd string (the server frees it); NULL answers 500. */
    char *(*metrics)(void *user, size_t *len);
    /* May /recordings/NAME be served? NAME already matched [A-Za-z0-9_-]+\.webm. 1 = yes.
     * NULL hook = every such name. */
    int (*recording_allowed)(void *user, const char *name);
    /* Log lines of the server (no trailing newline). */
    void (*log)(void *user, int level, const char *msg);
} fb_ws_hooks;

/* Creates the server and binds the port. Returns 0, or -1 with a message in err. */
int fb_ws_server_new(const fb_ws_config *cfg, const fb_ws_hooks *hooks, fb_ws_server **out,
                     char *err, size_t err_size);
/* The port actually bound (useful with port 0). */
int fb_ws_server_port(const fb_ws_server *s);
int fb_ws_server_is_tls(const fb_ws_server *s);
/* Runs the service loop on the calling thread until fb_ws_server_stop(). Returns 0, or -1 when
 * the loop failed. */
int fb_ws_server_run(fb_ws_server *s);
/* Any thread: makes fb_ws_server_run() return soon. */
void fb_ws_server_stop(fb_ws_server *s);
/* Any thread: runs fn(arg) on the service thread soon, in posting order. Returns 0, or -1 when
 * out of memory (fn is then not called). Functions still queued when the server is freed run
 * inside fb_ws_server_free(), before the connections close. */
int fb_ws_server_post(fb_ws_server *s, void (*fn)(void *arg), void *arg);
/* Stops accepting new WebSocket connections (shutdown); existing ones are unaffected. */
void fb_ws_server_refuse_new(fb_ws_server *s);
/* Closes every connection and frees the server. Call from the thread that ran the loop (or
 * after it has returned). */
void fb_ws_server_free(fb_ws_server *s);

/* Totals since start (service thread). */
typedef struct fb_ws_totals {
    uint64_t connections;       /* WebSocket connections open now */
    uint64_t accepted;          /* ever accepted */
    uint64_t frames_sent;       /* binary video messages written */
    uint64_t bytes_sent;        /* bytes handed to the sockets (text + video payload) */
    uint64_t frames_dropped;    /* video packets skipped for slow clients */
    uint64_t slow_closed;       /* clients closed for staying behind */
    uint64_t errors[FB_ERR_COUNT]; /* error messages sent, by code */
} fb_ws_totals;
void fb_ws_server_totals(const fb_ws_server *s, fb_ws_totals *t);

/* ---- per connection (service thread only) ---- */

void fb_ws_conn_set_user(fb_ws_conn *c, void *user);
void *fb_ws_conn_user(const fb_ws_conn *c);
uint64_t fb_ws_conn_id(const fb_ws_conn *c);        /* 1, 2, ... per server */
const char *fb_ws_conn_peer(const fb_ws_conn *c);   /* "address" for logs */

/* Queues a text message (copied). Returns 0, or -1 when the connection is closing or its text
 * queue is over the limit (the connection is then closed as too slow). */
int fb_ws_conn_send_text(fb_ws_conn *c, const char *text, size_t len);
/* Convenience: builds and queues an `error` message, and counts it in the totals. */
int fb_ws_conn_send_error(fb_ws_conn *c, fb_err code, const char *message, int has_id,
                          int64_t id);
/* Offers a video packet to this client's queue (the queue takes its own reference). A client
 * over the hard limit is closed with 1008 and the reason. Returns the fan-out result. */
fb_fanout_result fb_ws_conn_send_packet(fb_ws_conn *c, fb_packet *p);
/* Empties the video queue and waits for a keyframe, as for a new joiner. */
void fb_ws_conn_reset_video(fb_ws_conn *c);
/* Closes the connection with a WebSocket close status and reason once the text already queued
 * has been sent (so `end` arrives before the close). Idempotent. */
void fb_ws_conn_close(fb_ws_conn *c, int status, const char *reason);
int fb_ws_conn_closing(const fb_ws_conn *c);

typedef struct fb_ws_conn_stats {
    uint64_t frames_sent;
    uint64_t bytes_sent;
    uint64_t frames_queued;
    uint64_t dropped;
} fb_ws_conn_stats;
void fb_ws_conn_get_stats(const fb_ws_conn *c, fb_ws_conn_stats *st);

#endif
