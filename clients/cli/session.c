/* clients/cli/session.c - shared flipbook.v1 client helpers (see session.h). */
#include "clients/cli/session.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/cli/cli.h"

int fb_cli_connect(const char *cmd, const char *url_text, double timeout_s, int insecure,
                   int verbose, const fb_ws_events *ev, fb_ws **out, fb_url *url_out) {
    fb_url url;
    char err[300];
    if (fb_url_parse(url_text, &url, err, sizeof err)) {
        fprintf(stderr, "flipbook %s: bad URL '%s': %s\n", cmd, url_text, err);
        return FB_CLI_USAGE;
    }
    if (url_out) *url_out = url;
    fb_ws_options opt = {
        .connect_timeout_ms = (int)(timeout_s * 1000.0),
        .insecure = insecure,
        .verbose = verbose,
    };
    if (fb_ws_open(out, &url, ev, &opt, err, sizeof err)) {
        fprintf(stderr, "flipbook %s: %s\n", cmd, err);
        return FB_CLI_FAIL;
    }
    return FB_CLI_OK;
}

int fb_cli_send_json(fb_ws *ws, const cJSON *obj) {
    char *text = cJSON_PrintUnformatted(obj);
    if (!text) return -1;
    int rc = fb_ws_send_text(ws, text);
    cJSON_free(text);
    return rc;
}

cJSON *fb_cli_parse_message(const char *text, size_t len, const char **type) {
    cJSON *msg = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(msg)) {
        cJSON_Delete(msg);
        return NULL;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(msg, "type");
    if (!cJSON_IsString(t) || !t->valuestring) {
        cJSON_Delete(msg);
        return NULL;
    }
    if (type) *type = t->valuestring;
    return msg;
}

const char *fb_cli_json_str(const cJSON *obj, const char *name, const char *fallback) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : fallback;
}

double fb_cli_json_num(const cJSON *obj, const char *name, double fallback) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) ? v->valuedouble : fallback;
}

int fb_cli_json_bool(const cJSON *obj, const char *name, int fallback) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : fallback;
}

const char *fb_cli_error_text(const cJSON *msg, char *buf, size_t size) {
    snprintf(buf, size, "%s: %s", fb_cli_json_str(msg, "code", "unknown"),
             fb_cli_json_str(msg, "message", "(no message)"));
    return buf;
}
