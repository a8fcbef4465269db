/* clients/cli/url.c - WebSocket URL parsing (see url.h). Written by hand rather than with
 * lws_parse_uri() because that one edits its input in place, accepts any scheme and gives no
 * reason when it fails; the CLI wants a clear message and exit code 2 for every bad URL. */
#include "clients/cli/url.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int fail(char *err, size_t size, const char *fmt, ...) {
    if (err && size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, size, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int host_char_ok(char c) {
    return isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_';
}

int fb_url_parse(const char *text, fb_url *out, char *err, size_t err_size) {
    if (!text || !*text) return fail(err, err_size, "empty URL");
    for (const char *p = text; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return fail(err, err_size, "URL contains a space or control character");

    fb_url u;
    memset(&u, 0, sizeof u);
    const char *rest;
    if (strncasecmp(text, "ws://", 5) == 0) {
        u.tls = 0;
        rest = text + 5;
    } else if (strncasecmp(text, "wss://", 6) == 0) {
        u.tls = 1;
        rest = text + 6;
    } else if (strncasecmp(text, "http://", 7) == 0 || strncasecmp(text, "https://", 8) == 0) {
        return fail(err, err_size, "'%s' is an HTTP URL; use ws://HOST:PORT/ws (or wss://)",
                    text);
    } else {
        return fail(err, err_size, "URL must start with ws:// or wss://");
    }

    /* authority ends at the first '/', '?' or '#' */
    size_t alen = strcspn(rest, "/?#");
    const char *auth = rest, *after = rest + alen;
    if (memchr(auth, '@', alen)) return fail(err, err_size, "user info (user@host) is not supported");
    if (alen == 0) return fail(err, err_size, "URL has no host");

    const char *host = auth, *port_text = NULL;
    size_t hlen;
    if (auth[0] == '[') {
        const char *close = memchr(auth, ']', alen);
        if (!close) return fail(err, err_size, "unterminated IPv6 address (missing ']')");
        host = auth + 1;
        hlen = (size_t)(close - host);
        if (hlen == 0) return fail(err, err_size, "empty IPv6 address");
        for (size_t i = 0; i < hlen; i++)
            if (!isxdigit((unsigned char)host[i]) && host[i] != ':' && host[i] != '.')
                return fail(err, err_size, "bad character '%c' in IPv6 address", host[i]);
        const char *tail = close + 1;
        if (tail < after) {
            if (*tail != ':') return fail(err, err_size, "unexpected text after ']'");
            port_text = tail + 1;
        }
    } else {
        const char *colon = memchr(auth, ':', alen);
        hlen = colon ? (size_t)(colon - auth) : alen;
        if (colon) port_text = colon + 1;
        if (hlen == 0) return fail(err, err_size, "URL has no host");
        for (size_t i = 0; i < hlen; i++)
            if (!host_char_ok(host[i]))
                return fail(err, err_size, "bad character '%c' in host name", host[i]);
    }
    if (hlen >= sizeof u.host) return fail(err, err_size, "host name too long");
    memcpy(u.host, host, hlen);
    u.host[hlen] = '\0';

    if (port_text) {
        size_t plen = (size_t)(after - port_text);
        if (plen == 0) return fail(err, err_size, "empty port after ':'");
        long port = 0;
        for (size_t i = 0; i < plen; i++) {
            if (!isdigit((unsigned char)port_text[i]))
                return fail(err, err_size, "port must be a number, got '%.*s'", (int)plen,
                            port_text);
            port = port * 10 + (port_text[i] - '0');
            if (port > 65535) break;
        }
        if (port < 1 || port > 65535)
            return fail(err, err_size, "port must be between 1 and 65535, got '%.*s'", (int)plen,
                        port_text);
        u.port = (int)port;
    } else {
        u.port = u.tls ? 443 : 80;
    }

    if (strchr(after, '#')) return fail(err, err_size, "fragments (#...) are not allowed in a WebSocket URL");
    const char *path = after;
    size_t plen = strlen(path);
    if (plen == 0) {
        path = "/ws";
        plen = 3;
    }
    if (plen + 2 > sizeof u.path) return fail(err, err_size, "path too long");
    if (path[0] == '?') { /* "ws://h:1?x" means path "/" with a query */
        u.path[0] = '/';
        memcpy(u.path + 1, path, plen + 1);
    } else {
        memcpy(u.path, path, plen + 1);
    }
    *out = u;
    return 0;
}

const char *fb_url_hostport(const fb_url *u, char *buf, size_t size) {
    if (strchr(u->host, ':'))
        snprintf(buf, size, "[%s]:%d", u->host, u->port);
    else
        snprintf(buf, size, "%s:%d", u->host, u->port);
    return buf;
}
