/* clients/cli/url.h - parses the WebSocket URL the CLI connects to.
 *
 * Accepted form:  ws://HOST[:PORT][/PATH[?QUERY]]  or  wss://...
 *   HOST: a DNS name or IPv4 address (letters, digits, '.', '-', '_'), or an IPv6 literal in
 *         brackets ([::1]).
 *   PORT: 1-65535; defaults to 80 for ws and 443 for wss.
 *   PATH: defaults to /ws (the daemon's endpoint) when the URL has none.
 * Refused, each with a message saying why: other schemes (http:// gets a hint), user info
 * (user@host), fragments (#...), empty hosts, bad or out-of-range ports, spaces and control
 * characters anywhere, and parts longer than the fixed buffers below.
 *
 * Thread-safety: pure function over caller-owned memory.
 */
#ifndef FLIPBOOK_CLIENTS_CLI_URL_H
#define FLIPBOOK_CLIENTS_CLI_URL_H

#include <stddef.h>

typedef struct fb_url {
    int tls;          /* 1 for wss:// */
    char host[256];   /* without brackets for IPv6 literals */
    int port;
    char path[1024];  /* always starts with '/'; includes the query */
} fb_url;

/* Returns 0 and fills *out, or -1 with a one-line reason in err (which may be NULL). */
int fb_url_parse(const char *text, fb_url *out, char *err, size_t err_size);

/* Writes "HOST:PORT" ("[v6]:PORT" for IPv6) into buf, for messages. Returns buf. */
const char *fb_url_hostport(const fb_url *u, char *buf, size_t size);

#endif
