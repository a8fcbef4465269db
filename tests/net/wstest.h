/* tests/net/wstest.h - a tiny blocking WebSocket and HTTP/1.1 client for the tests.
 *
 * Written against RFC 6455 with plain sockets so the tests exercise the server from the outside,
 * byte for byte, without a second WebSocket library: masked client frames, fragmented sends,
 * reassembly of fragmented server messages, automatic PONG replies, close frames. Also a helper
 * that starts flipbookd and reads the port from its "listening on" line.
 *
 * Thread-safety: one wstest per thread. */
#ifndef FLIPBOOK_TESTS_WSTEST_H
#define FLIPBOOK_TESTS_WSTEST_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum { WS_CONT = 0, WS_TEXT = 1, WS_BINARY = 2, WS_CLOSE = 8, WS_PING = 9, WS_PONG = 10 };

typedef struct wstest {
    int fd;
    uint8_t *buf;        /* bytes read but not yet consumed */
    size_t len, cap;
    char protocol[64];   /* Sec-WebSocket-Protocol the server chose ("" if none) */
    int close_code;      /* from the server's close frame, 0 if none */
    char close_reason[128];
} wstest;

/* Connects and upgrades. `protocol` may be NULL (no subprotocol header). Returns the HTTP status
 * of the answer (101 on success; then the client is usable), or -1 when no answer came. */
int wstest_connect(wstest *c, const char *host, int port, const char *path, const char *protocol);
void wstest_close(wstest *c);  /* closes the socket and frees the buffer */

/* Sends one frame (masked, as a client must). */
int wstest_send_frame(wstest *c, int opcode, int fin, const void *data, size_t len);
int wstest_send_text(wstest *c, const char *text);

/* Receives one complete message (fragments joined; pings answered; pongs skipped). Returns its
 * opcode (WS_TEXT, WS_BINARY, WS_CLOSE), 0 on timeout, -1 when the connection ended. *data is
 * malloc'd and NUL-terminated (free it); close frames fill close_code/close_reason. */
int wstest_recv(wstest *c, uint8_t **data, size_t *len, int timeout_ms);

/* Receives until a text message whose JSON "type" equals `type` arrives (other messages are
 * dropped); returns it (malloc'd) or NULL on timeout/close. Counts skipped binary frames. */
char *wstest_wait_type(wstest *c, const char *type, int timeout_ms, int *binaries_skipped);

/* One HTTP/1.1 GET (Connection: close). Returns the status, or -1. *body (malloc'd, may be
 * NULL) and *headers (malloc'd, lower-case names) when the pointers are given. */
int wstest_http(const char *host, int port, const char *method, const char *path,
                const char *extra_headers, char **headers, char **body, size_t *body_len);

/* Starts `argv` (argv[0] = the binary) with stderr to `log_path`, waits up to timeout_ms for the
 * "listening on http://HOST:PORT/" line, and returns the port (pid in *pid), or -1. */
int wstest_spawn_daemon(char *const argv[], const char *log_path, pid_t *pid, int timeout_ms);

/* Milliseconds on the monotonic clock. */
int64_t wstest_now_ms(void);

/* Extracts a JSON string/number field with a naive scan (enough for the flat test messages):
 * copies the string value of "name" into out. Returns 0 or -1. */
int wstest_json_str(const char *json, const char *name, char *out, size_t n);
int wstest_json_num(const char *json, const char *name, double *out);

#endif
