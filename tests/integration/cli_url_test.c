/* tests/integration/cli_url_test.c - the CLI's WebSocket URL parser: accepted forms, defaults,
 * and a clear refusal for every malformed URL (the CLI turns those into exit code 2). */
#include <stdio.h>
#include <string.h>

#include "clients/cli/url.h"

typedef struct {
    const char *text;
    int ok;
    int tls;
    const char *host;
    int port;
    const char *path;
    const char *err_has; /* for refusals: a word the message must contain */
} url_case;

static const url_case cases[] = {
    {"ws://127.0.0.1:8080/ws", 1, 0, "127.0.0.1", 8080, "/ws", NULL},
    {"ws://localhost:1/ws", 1, 0, "localhost", 1, "/ws", NULL},
    {"ws://localhost:65535/ws", 1, 0, "localhost", 65535, "/ws", NULL},
    {"wss://example.org/ws", 1, 1, "example.org", 443, "/ws", NULL},
    {"ws://example.org", 1, 0, "example.org", 80, "/ws", NULL},
    {"ws://example.org/", 1, 0, "example.org", 80, "/", NULL},
    {"WS://Host-1.example_x:9/a/b?c=d&e", 1, 0, "Host-1.example_x", 9, "/a/b?c=d&e", NULL},
    {"ws://h:9?x=1", 1, 0, "h", 9, "/?x=1", NULL},
    {"ws://[::1]:8080/ws", 1, 0, "::1", 8080, "/ws", NULL},
    {"wss://[fe80::1]/x", 1, 1, "fe80::1", 443, "/x", NULL},
    {"", 0, 0, NULL, 0, NULL, "empty"},
    {"127.0.0.1:8080/ws", 0, 0, NULL, 0, NULL, "ws://"},
    {"http://127.0.0.1:8080/", 0, 0, NULL, 0, NULL, "HTTP"},
    {"https://127.0.0.1/", 0, 0, NULL, 0, NULL, "HTTP"},
    {"ftp://h/", 0, 0, NULL, 0, NULL, "ws://"},
    {"ws://", 0, 0, NULL, 0, NULL, "no host"},
    {"ws:///ws", 0, 0, NULL, 0, NULL, "no host"},
    {"ws://:8080/ws", 0, 0, NULL, 0, NULL, "no host"},
    {"ws://h:/ws", 0, 0, NULL, 0, NULL, "empty port"},
    {"ws://h:0/ws", 0, 0, NULL, 0, NULL, "between 1 and 65535"},
    {"ws://h:65536/ws", 0, 0, NULL, 0, NULL, "between 1 and 65535"},
    {"ws://h:99999999999999999999/ws", 0, 0, NULL, 0, NULL, "between 1 and 65535"},
    {"ws://h:-1/ws", 0, 0, NULL, 0, NULL, "number"},
    {"ws://h:80x/ws", 0, 0, NULL, 0, NULL, "number"},
    {"ws://user@h/ws", 0, 0, NULL, 0, NULL, "user info"},
    {"ws://h/ws#frag", 0, 0, NULL, 0, NULL, "fragment"},
    {"ws://h o/ws", 0, 0, NULL, 0, NULL, "space"},
    {"ws://h/w s", 0, 0, NULL, 0, NULL, "space"},
    {"ws://h\x01/ws", 0, 0, NULL, 0, NULL, "control"},
    {"ws://h!x/ws", 0, 0, NULL, 0, NULL, "bad character"},
    {"ws://[::1/ws", 0, 0, NULL, 0, NULL, "unterminated"},
    {"ws://[]/ws", 0, 0, NULL, 0, NULL, "empty IPv6"},
    {"ws://[::g]/ws", 0, 0, NULL, 0, NULL, "IPv6"},
    {"ws://[::1]x/ws", 0, 0, NULL, 0, NULL, "after ']'"},
};

int main(void) {
    int failures = 0, n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++) {
        const url_case *c = &cases[i];
        fb_url u;
        char err[256] = "";
        memset(&u, 0x5a, sizeof u);
        int rc = fb_url_parse(c->text, &u, err, sizeof err);
        int ok = 1;
        if (c->ok) {
            ok = rc == 0 && u.tls == c->tls && strcmp(u.host, c->host) == 0 && u.port == c->port &&
                 strcmp(u.path, c->path) == 0;
            if (!ok)
                fprintf(stderr, "FAIL '%s': rc %d tls %d host '%s' port %d path '%s' (%s)\n",
                        c->text, rc, u.tls, rc ? "" : u.host, u.port, rc ? "" : u.path, err);
        } else {
            ok = rc == -1 && strstr(err, c->err_has) != NULL;
            if (!ok)
                fprintf(stderr, "FAIL '%s': expected a refusal mentioning '%s', got rc %d '%s'\n",
                        c->text, c->err_has, rc, err);
        }
        failures += !ok;
    }
    /* A host name longer than the buffer is refused, not truncated. */
    char longurl[600];
    memset(longurl, 'a', sizeof longurl);
    memcpy(longurl, "ws://", 5);
    longurl[sizeof longurl - 1] = 0;
    fb_url u;
    char err[256];
    if (fb_url_parse(longurl, &u, err, sizeof err) != -1 || !strstr(err, "too long")) {
        fprintf(stderr, "FAIL: long host name accepted\n");
        failures++;
    }
    /* A NULL error buffer is allowed. */
    if (fb_url_parse("nope", &u, NULL, 0) != -1) failures++;

    char hp[300];
    fb_url v6 = {0, "::1", 80, "/"};
    if (strcmp(fb_url_hostport(&v6, hp, sizeof hp), "[::1]:80") != 0) {
        fprintf(stderr, "FAIL: hostport of IPv6 is '%s'\n", hp);
        failures++;
    }
    printf("%d passed, %d failed\n", n + 3 - failures, failures);
    return failures ? 1 : 0;
}
