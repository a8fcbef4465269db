/* clients/cli/wsclient.h - a small blocking-style WebSocket client over libwebsockets, speaking
 * the flipbook.v1 subprotocol (docs/protocol.md) for the CLI.
 *
 * libwebsockets is event driven; the CLI commands are easier to read as straight-line code
 * ("connect, send start, read until N seconds of video, stop"). This wrapper owns one lws
 * context with one connection and lets the caller drive it: fb_ws_open() returns once the
 * handshake is done (or explains why it failed), fb_ws_poll() services the socket for at most
 * a given time and calls the caller's handlers for every complete message, fb_ws_send_text()
 * queues a text message, fb_ws_close() says goodbye politely.
 *
 * Usage:
 *   fb_ws *ws; char err[256];
 *   fb_ws_events ev = { .ctx = me, .on_text = on_text, .on_binary = on_binary };
 *   if (fb_ws_open(&ws, &url, &ev, &opt, err, sizeof err)) { fprintf(stderr, "%s\n", err); ... }
 *   fb_ws_send_text(ws, "{\"type\":\"join\",\"session\":\"abc\"}");
 *   while (!done && fb_ws_is_open(ws)) fb_ws_poll(ws, 100);
 *   fb_ws_close(ws, 1000, "done", 1000);
 *   fb_ws_free(ws);
 *
 * Thread-safety: none; one thread owns an fb_ws and calls every function on it. Handlers run
 * inside fb_ws_poll()/fb_ws_open() on that thread; they may call fb_ws_send_text() and
 * fb_ws_close_soon() but not fb_ws_poll() or fb_ws_free().
 */
#ifndef FLIPBOOK_CLIENTS_CLI_WSCLIENT_H
#define FLIPBOOK_CLIENTS_CLI_WSCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "clients/cli/url.h"

#define FB_WS_SUBPROTOCOL "flipbook.v1"

typedef struct fb_ws fb_ws;

typedef struct fb_ws_events {
    void *ctx;
    /* A complete text message (not NUL-terminated by the protocol; the buffer does carry a
     * terminating NUL after `len` bytes for convenience). */
    void (*on_text)(void *ctx, const char *text, size_t len);
    /* A complete binary message. The buffer is only valid during the call. */
    void (*on_binary)(void *ctx, const uint8_t *data, size_t len);
} fb_ws_events;

typedef struct fb_ws_options {
    int connect_timeout_ms; /* TCP connect + handshake; <= 0 means 5000 */
    int insecure;           /* wss: accept self-signed certificates and other host names */
    int verbose;            /* let libwebsockets log warnings and notices to stderr */
    size_t max_message;     /* messages larger than this close the connection; 0 = 64 MiB */
} fb_ws_options;

/* Connects to url and completes the WebSocket handshake with subprotocol flipbook.v1.
 * On failure returns -1 with err set to "cannot connect to HOST:PORT: REASON", where REASON is
 * the system's word for it (Connection refused, timed out, unknown host) or the handshake
 * failure libwebsockets reported. */
int fb_ws_open(fb_ws **out, const fb_url *url, const fb_ws_events *ev, const fb_ws_options *opt,
               char *err, size_t err_size);

/* Queues a text message (copied) to be sent when the socket is writable. Returns 0, or -1
 * when the connection is closed or memory ran out. */
int fb_ws_send_text(fb_ws *ws, const char *text);

/* Services the connection for at most max_wait_ms (returns earlier once anything happened).
 * Returns 1 while the connection is open, 0 once it is closed. */
int fb_ws_poll(fb_ws *ws, int max_wait_ms);

int fb_ws_is_open(const fb_ws *ws);

/* Asks for a close (code, reason) once the queued messages are out; does not wait. */
void fb_ws_close_soon(fb_ws *ws, int code, const char *reason);

/* fb_ws_close_soon() then polls until the peer answered or wait_ms passed. */
void fb_ws_close(fb_ws *ws, int code, const char *reason, int wait_ms);

/* Close code and reason the server sent (0 and "" when it sent none or we closed first). */
int fb_ws_peer_close_code(const fb_ws *ws);
const char *fb_ws_peer_close_reason(const fb_ws *ws);

/* Set when the connection failed after it was established (e.g. the message-size cap). */
const char *fb_ws_error(const fb_ws *ws);

void fb_ws_free(fb_ws *ws);

#endif
