/* clients/cli/session.h - flipbook.v1 helpers the CLI subcommands share: connect from a URL
 * string with the CLI's exit-code conventions, send a JSON object, and read the fields of the
 * server's messages (docs/protocol.md).
 *
 * Thread-safety: none needed; the CLI is single-threaded.
 */
#ifndef FLIPBOOK_CLIENTS_CLI_SESSION_H
#define FLIPBOOK_CLIENTS_CLI_SESSION_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "clients/cli/wsclient.h"

/* Parses url_text and connects. Returns FB_CLI_OK with *out set, FB_CLI_USAGE after printing
 * "flipbook CMD: bad URL '...': reason", or FB_CLI_FAIL after printing
 * "flipbook CMD: cannot connect to HOST:PORT: reason". */
int fb_cli_connect(const char *cmd, const char *url_text, double timeout_s, int insecure,
                   int verbose, const fb_ws_events *ev, fb_ws **out, fb_url *url_out);

/* Sends obj as compact JSON (obj stays owned by the caller). Returns 0 or -1. */
int fb_cli_send_json(fb_ws *ws, const cJSON *obj);

/* Parses a server text message; returns a cJSON object (free with cJSON_Delete) whose "type"
 * is a string, or NULL when it is not such an object. *type gets that string. */
cJSON *fb_cli_parse_message(const char *text, size_t len, const char **type);

/* Field readers that tolerate missing or mistyped fields. */
const char *fb_cli_json_str(const cJSON *obj, const char *name, const char *fallback);
double fb_cli_json_num(const cJSON *obj, const char *name, double fallback);
int fb_cli_json_bool(const cJSON *obj, const char *name, int fallback);

/* Formats an `error` message as "CODE: MESSAGE" into buf. Returns buf. */
const char *fb_cli_error_text(const cJSON *msg, char *buf, size_t size);

#endif
