/* stream/protocol.c - flipbook.v1 message parsing and building (see protocol.h).
 *
 * All JSON goes through cJSON; this file only checks what cJSON returns against the protocol's
 * rules and picks the error code docs/protocol.md assigns: a field that is missing or of the
 * wrong JSON type is bad_message, a field of the right type with an unacceptable value is
 * bad_value. */
#include "stream/protocol.h"

#include <cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const type_names[FB_MSG_COUNT] = {
    [FB_MSG_START] = "start",   [FB_MSG_JOIN] = "join",     [FB_MSG_PROMPT] = "prompt",
    [FB_MSG_SEED] = "seed",     [FB_MSG_PAUSE] = "pause",   [FB_MSG_RESUME] = "resume",
    [FB_MSG_RECORD] = "record", [FB_MSG_ANCHOR] = "anchor", [FB_MSG_RESET] = "reset",
    [FB_MSG_KEYFRAME] = "keyframe", [FB_MSG_STOP] = "stop", [FB_MSG_STATS] = "stats",
    [FB_MSG_INFO] = "info",
};

static const char *const err_names[FB_ERR_COUNT] = {
    [FB_ERR_NONE] = "none",
    [FB_ERR_BAD_JSON] = "bad_json",
    [FB_ERR_BAD_MESSAGE] = "bad_message",
    [FB_ERR_BAD_VALUE] = "bad_value",
    [FB_ERR_UNKNOWN_TYPE] = "unknown_type",
    [FB_ERR_TOO_LARGE] = "too_large",
    [FB_ERR_RATE_LIMITED] = "rate_limited",
    [FB_ERR_BINARY_NOT_ALLOWED] = "binary_not_allowed",
    [FB_ERR_NO_SESSION] = "no_session",
    [FB_ERR_ALREADY_IN_SESSION] = "already_in_session",
    [FB_ERR_BAD_TOKEN] = "bad_token",
    [FB_ERR_NOT_OWNER] = "not_owner",
    [FB_ERR_SESSION_LIMIT] = "session_limit",
    [FB_ERR_UNSUPPORTED] = "unsupported",
    [FB_ERR_RECORD_FAILED] = "record_failed",
    [FB_ERR_INTERNAL] = "internal",
};

const char *fb_msg_type_name(fb_msg_type t) {
    return (unsigned)t < FB_MSG_COUNT ? type_names[t] : "?";
}

const char *fb_err_code(fb_err e) {
    return (unsigned)e < FB_ERR_COUNT ? err_names[e] : "internal";
}

int fb_msg_needs_owner(fb_msg_type t) {
    switch (t) {
    case FB_MSG_PROMPT: case FB_MSG_SEED: case FB_MSG_PAUSE: case FB_MSG_RESUME:
    case FB_MSG_RECORD: case FB_MSG_ANCHOR: case FB_MSG_RESET: case FB_MSG_STOP:
        return 1;
    default:
        return 0;
    }
}

const char *fb_msg_transition_name(fb_msg_transition t) {
    switch (t) {
    case FB_MSG_TRANSITION_RECACHE: return "recache";
    case FB_MSG_TRANSITION_BLEND: return "blend";
    default: return "cut";
    }
}

/* ---------------------------------------------------------------------------------------- */

int fb_utf8_valid(const void *buf, size_t len) {
    const unsigned char *s = buf;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t need;
        unsigned lo = 0x80, hi = 0xBF;  /* allowed range of the first continuation byte */
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c == 0xE0) { need = 2; lo = 0xA0; }           /* no overlongs */
        else if (c == 0xED) { need = 2; hi = 0x9F; }           /* no UTF-16 surrogates */
        else if (c >= 0xE1 && c <= 0xEF) need = 2;
        else if (c == 0xF0) { need = 3; lo = 0x90; }
        else if (c >= 0xF1 && c <= 0xF3) need = 3;
        else if (c == 0xF4) { need = 3; hi = 0x8F; }           /* <= U+10FFFF */
        else return 0;
        if (len - i - 1 < need) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xC0) != 0x80) return 0;
        i += need + 1;
    }
    return 1;
}

/* ---------------------------------------------------------------------------------------- */

static int fail(fb_msg_error *err, fb_err code, const char *fmt, ...) {
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* A JSON string may carry \u0000, which cJSON decodes into a NUL byte that would silently cut
 * the C string short. Find an escape introducer (odd run of backslashes) followed by u0000. */
static int has_nul_escape(const char *text, size_t len) {
    for (size_t i = 0; i + 6 <= len; i++) {
        if (text[i] != '\\' || memcmp(text + i + 1, "u0000", 5) != 0) continue;
        size_t run = 0;
        while (run <= i && text[i - run] == '\\') run++;
        if (run % 2 == 1) return 1;
    }
    return 0;
}

/* Integral JSON number within [lo, hi]. Returns 0 ok, or sets err (bad_message for the wrong
 * type, bad_value for out of range). `required` says whether absence is an error; *present
 * (optional) reports presence. */
static int get_int(const cJSON *obj, const char *name, int required, double lo, double hi,
                   int64_t *out, int *present, fb_msg_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (present) *present = 0;
    if (!v || cJSON_IsNull(v)) {
        if (required) return fail(err, FB_ERR_BAD_MESSAGE, "field \"%s\" is required", name);
        return 0;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || floor(v->valuedouble) != v->valuedouble)
        return fail(err, FB_ERR_BAD_MESSAGE, "field \"%s\" must be an integer", name);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return fail(err, FB_ERR_BAD_VALUE, "field \"%s\" must be between %.0f and %.0f", name, lo,
                    hi);
    *out = (int64_t)v->valuedouble;
    if (present) *present = 1;
    return 0;
}

/* String field; NULL result when absent and not required. */
static int get_str(const cJSON *obj, const char *name, int required, const char **out,
                   fb_msg_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) {
        if (required) return fail(err, FB_ERR_BAD_MESSAGE, "field \"%s\" is required", name);
        return 0;
    }
    if (!cJSON_IsString(v) || !v->valuestring)
        return fail(err, FB_ERR_BAD_MESSAGE, "field \"%s\" must be a string", name);
    *out = v->valuestring;
    return 0;
}

/* Picks `s` out of a NULL-terminated list of names; bad_value listing the choices otherwise. */
static int get_choice(const cJSON *obj, const char *name, int required, const char *const *names,
                      int dflt, int *out, fb_msg_error *err) {
    const char *s;
    if (get_str(obj, name, required, &s, err)) return -1;
    if (!s) { *out = dflt; return 0; }
    for (int i = 0; names[i]; i++)
        if (strcmp(s, names[i]) == 0) { *out = i; return 0; }
    char choices[96] = "";
    for (int i = 0; names[i]; i++) {
        strncat(choices, i ? ", " : "", sizeof choices - strlen(choices) - 1);
        strncat(choices, names[i], sizeof choices - strlen(choices) - 1);
    }
    return fail(err, FB_ERR_BAD_VALUE, "field \"%s\" must be one of: %s", name, choices);
}

static int get_number(const cJSON *obj, const char *name, double *out, int *present,
                      fb_msg_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    *present = 0;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v))
        return fail(err, FB_ERR_BAD_MESSAGE, "field \"%s\" must be a number", name);
    if (!isfinite(v->valuedouble) || v->valuedouble < 0)
        return fail(err, FB_ERR_BAD_VALUE, "field \"%s\" must be a non-negative number", name);
    *out = v->valuedouble;
    *present = 1;
    return 0;
}

static int copy_text(const char *name, const char *s, char **out, size_t *out_len,
                     fb_msg_error *err) {
    size_t n = strlen(s);
    if (n > FB_PROTO_MAX_PROMPT)
        return fail(err, FB_ERR_BAD_VALUE, "field \"%s\" is longer than %d bytes", name,
                    FB_PROTO_MAX_PROMPT);
    if (!fb_utf8_valid(s, n))
        return fail(err, FB_ERR_BAD_VALUE, "field \"%s\" is not valid UTF-8", name);
    *out = malloc(n + 1);
    if (!*out) return fail(err, FB_ERR_INTERNAL, "out of memory");
    memcpy(*out, s, n + 1);
    *out_len = n;
    return 0;
}

static int copy_id(const cJSON *obj, const char *name, int required, char *dst, int *present,
                   fb_msg_error *err) {
    const char *s;
    if (get_str(obj, name, required, &s, err)) return -1;
    if (present) *present = s != NULL;
    if (!s) return 0;
    size_t n = strlen(s);
    if (n > FB_PROTO_MAX_ID_LEN)
        return fail(err, FB_ERR_BAD_VALUE, "field \"%s\" is longer than %d characters", name,
                    FB_PROTO_MAX_ID_LEN);
    memcpy(dst, s, n + 1);
    return 0;
}

static int is_base64(const char *s) {
    size_t n = strlen(s), pad = 0;
    if (n == 0 || n % 4 != 0) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '=') { pad++; continue; }
        if (pad) return 0;  /* '=' only at the end */
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return 0;
    }
    return pad <= 2;
}

static int parse_size(const cJSON *obj, const char *name, int *out, fb_msg_error *err) {
    int64_t v = 0;
    int present;
    if (get_int(obj, name, 0, FB_PROTO_MIN_SIZE, FB_PROTO_MAX_SIZE, &v, &present, err)) return -1;
    if (present && (v & 1))
        return fail(err, FB_ERR_BAD_VALUE, "field \"%s\" must be even", name);
    *out = present ? (int)v : 0;
    return 0;
}

static int parse_fields(const cJSON *root, fb_msg *m, fb_msg_error *err) {
    static const char *const transitions[] = {"cut", "recache", "blend", NULL};
    static const char *const record_actions[] = {"start", "stop", NULL};
    static const char *const anchor_actions[] = {"pin", "clear", "image", NULL};
    const char *s;
    int64_t v;
    int present;
    int choice;

    switch (m->type) {
    case FB_MSG_START:
        if (get_str(root, "prompt", 1, &s, err)) return -1;
        if (copy_text("prompt", s, &m->text, &m->text_len, err)) return -1;
        if (get_int(root, "seed", 0, 0, FB_PROTO_MAX_SEED, &v, &m->has_seed, err)) return -1;
        if (m->has_seed) m->seed = (uint64_t)v;
        if (parse_size(root, "width", &m->width, err)) return -1;
        if (parse_size(root, "height", &m->height, err)) return -1;
        if (get_int(root, "fps", 0, 1, FB_PROTO_MAX_FPS, &v, &present, err)) return -1;
        m->fps = present ? (int)v : 0;
        return 0;
    case FB_MSG_JOIN:
        if (copy_id(root, "session", 1, m->session, NULL, err)) return -1;
        return copy_id(root, "token", 0, m->token, &m->has_token, err);
    case FB_MSG_PROMPT:
        if (get_str(root, "text", 1, &s, err)) return -1;
        if (copy_text("text", s, &m->text, &m->text_len, err)) return -1;
        if (get_choice(root, "transition", 0, transitions, FB_MSG_TRANSITION_CUT, &choice, err))
            return -1;
        m->transition = (fb_msg_transition)choice;
        v = FB_PROTO_DEFAULT_CHUNKS;
        if (get_int(root, "chunks", 0, FB_PROTO_MIN_CHUNKS, FB_PROTO_MAX_CHUNKS, &v, NULL, err))
            return -1;
        m->chunks = (int)v;
        return 0;
    case FB_MSG_SEED:
        if (get_int(root, "seed", 1, 0, FB_PROTO_MAX_SEED, &v, &m->has_seed, err)) return -1;
        m->seed = (uint64_t)v;
        return 0;
    case FB_MSG_RECORD:
        if (get_choice(root, "action", 1, record_actions, 0, &choice, err)) return -1;
        m->record = (fb_record_action)choice;
        return 0;
    case FB_MSG_ANCHOR:
        if (get_choice(root, "action", 1, anchor_actions, 0, &choice, err)) return -1;
        m->anchor = (fb_anchor_action)choice;
        if (m->anchor == FB_ANCHOR_IMAGE) {
            if (get_str(root, "data", 1, &s, err)) return -1;
            if (!is_base64(s))
                return fail(err, FB_ERR_BAD_VALUE, "field \"data\" must be base64");
            size_t n = strlen(s);
            m->anchor_data = malloc(n + 1);
            if (!m->anchor_data) return fail(err, FB_ERR_INTERNAL, "out of memory");
            memcpy(m->anchor_data, s, n + 1);
            m->anchor_data_len = n;
        }
        return 0;
    case FB_MSG_STATS:
        if (get_number(root, "decodeQueue", &m->decode_queue, &m->has_decode_queue, err)) return -1;
        if (get_number(root, "fps", &m->client_fps, &m->has_client_fps, err)) return -1;
        return get_number(root, "dropped", &m->client_dropped, &m->has_client_dropped, err);
    default:  /* pause, resume, reset, keyframe, stop, info: no fields */
        return 0;
    }
}

int fb_msg_parse(const char *text, size_t len, fb_msg *out, fb_msg_error *err) {
    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);
    if (!text) return fail(err, FB_ERR_BAD_JSON, "message is not a JSON object");
    if (len > FB_PROTO_MAX_MESSAGE)
        return fail(err, FB_ERR_TOO_LARGE, "message is larger than %d bytes", FB_PROTO_MAX_MESSAGE);
    /* Raw NUL bytes are never valid JSON text; cJSON would stop at them. */
    if (memchr(text, '\0', len))
        return fail(err, FB_ERR_BAD_JSON, "message is not a JSON object");

    const char *end = NULL;
    /* cJSON's "require null terminated" check reads one byte past the text, so give it a
     * terminated copy rather than trusting the caller's buffer. */
    char *copy = malloc(len + 1);
    if (!copy) return fail(err, FB_ERR_INTERNAL, "out of memory");
    memcpy(copy, text, len);
    copy[len] = '\0';
    cJSON *root = cJSON_ParseWithLengthOpts(copy, len + 1, &end, 1);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        free(copy);
        return fail(err, FB_ERR_BAD_JSON, "message is not a JSON object");
    }
    int rc = 0;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    if (id && !cJSON_IsNull(id)) {
        if (!cJSON_IsNumber(id) || !isfinite(id->valuedouble) ||
            floor(id->valuedouble) != id->valuedouble || fabs(id->valuedouble) > FB_PROTO_MAX_SEED) {
            rc = fail(err, FB_ERR_BAD_MESSAGE, "field \"id\" must be an integer");
            goto done;
        }
        out->has_id = err->has_id = 1;
        out->id = err->id = (int64_t)id->valuedouble;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
    if (!type) { rc = fail(err, FB_ERR_BAD_MESSAGE, "field \"type\" is required"); goto done; }
    if (!cJSON_IsString(type) || !type->valuestring) {
        rc = fail(err, FB_ERR_BAD_MESSAGE, "field \"type\" must be a string");
        goto done;
    }
    int t;
    for (t = 0; t < FB_MSG_COUNT; t++)
        if (strcmp(type->valuestring, type_names[t]) == 0) break;
    if (t == FB_MSG_COUNT) {
        /* Echo a printable, bounded form of the name so the message stays readable. */
        char shown[33];
        size_t k = 0;
        for (const char *p = type->valuestring; *p && k < sizeof shown - 1; p++)
            shown[k++] = (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\') ? *p : '?';
        shown[k] = '\0';
        rc = fail(err, FB_ERR_UNKNOWN_TYPE, "unknown message type \"%s\"", shown);
        goto done;
    }
    out->type = (fb_msg_type)t;
    if (has_nul_escape(copy, len)) {
        rc = fail(err, FB_ERR_BAD_VALUE, "strings may not contain \\u0000");
        goto done;
    }
    rc = parse_fields(root, out, err);
done:
    cJSON_Delete(root);
    free(copy);
    if (rc) {
        int has_id = err->has_id;
        int64_t idv = err->id;
        fb_msg_clear(out);
        err->has_id = has_id;
        err->id = idv;
    }
    return rc;
}

void fb_msg_clear(fb_msg *m) {
    if (!m) return;
    free(m->text);
    free(m->anchor_data);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------------------------------- */

void fb_proto_free(char *s) { cJSON_free(s); }

/* Prints and frees `o`; NULL when o is NULL or any add failed (adds return NULL on OOM). */
static char *finish(cJSON *o, int ok) {
    char *s = (o && ok) ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

/* Integers go out as raw text: cJSON prints numbers through a double with 15 significant
 * digits, which would corrupt seeds and ids near 2^53. */
static cJSON *add_int(cJSON *o, const char *name, int64_t v) {
    char buf[24];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return cJSON_AddRawToObject(o, name, buf);
}

static cJSON *add_uint(cJSON *o, const char *name, uint64_t v) {
    char buf[24];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return cJSON_AddRawToObject(o, name, buf);
}

/* Rounds figures meant for people to two decimals so the JSON stays short. */
static double r2(double x) { return isfinite(x) ? round(x * 100.0) / 100.0 : 0.0; }

char *fb_proto_hello(const char *session, int is_owner, const char *token, const char *server) {
    cJSON *o = cJSON_CreateObject();
    int ok = o != NULL;
    char viewer[FB_PROTO_MAX_ID_LEN + 16];
    snprintf(viewer, sizeof viewer, "/?session=%s", session ? session : "");
    ok = ok && cJSON_AddStringToObject(o, "type", "hello");
    ok = ok && cJSON_AddStringToObject(o, "session", session ? session : "");
    ok = ok && cJSON_AddStringToObject(o, "role", is_owner ? "owner" : "viewer");
    if (is_owner && token) ok = ok && cJSON_AddStringToObject(o, "token", token);
    ok = ok && cJSON_AddStringToObject(o, "viewer", viewer);
    ok = ok && cJSON_AddStringToObject(o, "server", server ? server : "flipbook");
    return finish(o, ok);
}

char *fb_proto_config(int width, int height, int fps) {
    cJSON *o = cJSON_CreateObject();
    int ok = o != NULL;
    ok = ok && cJSON_AddStringToObject(o, "type", "config");
    ok = ok && cJSON_AddStringToObject(o, "codec", FB_PROTO_CODEC);
    ok = ok && add_int(o, "width", width);
    ok = ok && add_int(o, "height", height);
    ok = ok && add_int(o, "fps", fps);
    cJSON *cs = ok ? cJSON_AddObjectToObject(o, "colorSpace") : NULL;
    ok = ok && cs;
    ok = ok && cJSON_AddStringToObject(cs, "primaries", "bt709");
    ok = ok && cJSON_AddStringToObject(cs, "transfer", "bt709");
    ok = ok && cJSON_AddStringToObject(cs, "matrix", "bt709");
    ok = ok && cJSON_AddFalseToObject(cs, "fullRange");
    return finish(o, ok);
}

char *fb_proto_ack(const fb_ack *a) {
    cJSON *o = cJSON_CreateObject();
    int ok = o != NULL;
    ok = ok && cJSON_AddStringToObject(o, "type", "ack");
    ok = ok && cJSON_AddStringToObject(o, "of", a->of ? a->of : "");
    if (a->has_id) ok = ok && add_int(o, "id", a->id);
    if (a->has_frame) ok = ok && add_int(o, "frame", a->frame);
    if (a->has_seed) ok = ok && add_uint(o, "seed", a->seed);
    if (a->transition) ok = ok && cJSON_AddStringToObject(o, "transition", a->transition);
    if (a->unknown_words) {
        cJSON *arr = ok ? cJSON_AddArrayToObject(o, "unknownWords") : NULL;
        ok = ok && arr;
        for (int i = 0; ok && i < a->n_unknown_words; i++) {
            cJSON *w = cJSON_CreateString(a->unknown_words[i] ? a->unknown_words[i] : "");
            ok = w && cJSON_AddItemToArray(arr, w);
            if (!ok) cJSON_Delete(w);
        }
    }
    return finish(o, ok);
}

char *fb_proto_stats(const fb_stats_msg *s) {
    cJSON *o = cJSON_CreateObject();
    int ok = o != NULL;
    ok = ok && cJSON_AddStringToObject(o, "type", "stats");
    ok = ok && add_int(o, "frame", s->frame);
    ok = ok && cJSON_AddNumberToObject(o, "fps", r2(s->fps));
    ok = ok && cJSON_AddNumberToObject(o, "sentFps", r2(s->sent_fps));
    ok = ok && cJSON_AddNumberToObject(o, "bitrateKbps", r2(s->bitrate_kbps));
    ok = ok && cJSON_AddNumberToObject(o, "encodeMs", r2(s->encode_ms));
    ok = ok && add_int(o, "queue", s->queue);
    ok = ok && add_int(o, "dropped", s->dropped);
    ok = ok && add_int(o, "viewers", s->viewers);
    ok = ok && cJSON_AddBoolToObject(o, "recording", s->recording != 0);
    ok = ok && cJSON_AddBoolToObject(o, "paused", s->paused != 0);
    return finish(o, ok);
}

char *fb_proto_recording(const char *state, const char *name, const char *url, uint64_t bytes,
                         const char *message) {
    cJSON *o = cJSON_CreateObject();
    int ok = o != NULL;
    ok = ok && cJSON_AddStringToObject(o, "type", "recording");
    ok = ok && cJSON_AddStringToObject(o, "state", state ? state : "");
    if (name) ok = ok && cJSON_AddStringToObject(o, "name", name);
    if (url) ok = ok && cJSON_AddStringToObject(o, "url", url);
    ok = ok && add_uint(o, "bytes", bytes);
    if (message) ok = ok && cJSON_AddStringToObject(o, "message", message);
    return finish(o, ok);
}

char *fb_proto_error(fb_err code, const char *message, int has_id, int64_t id, int fatal) {
    cJSON *o = cJSON_CreateObject();
    int ok = o != NULL;
    ok = ok && cJSON_AddStringToObject(o, "type", "error");
    ok = ok && cJSON_AddStringToObject(o, "code", fb_err_code(code));
    ok = ok && cJSON_AddStringToObject(o, "message", message ? message : fb_err_code(code));
    if (has_id) ok = ok && add_int(o, "id", id);
    if (fatal) ok = ok && cJSON_AddTrueToObject(o, "fatal");
    return finish(o, ok);
}

char *fb_proto_end(const char *reason) {
    cJSON *o = cJSON_CreateObject();
    int ok = o != NULL;
    ok = ok && cJSON_AddStringToObject(o, "type", "end");
    ok = ok && cJSON_AddStringToObject(o, "reason", reason ? reason : "");
    return finish(o, ok);
}

/* ---------------------------------------------------------------------------------------- */

void fb_rate_init(fb_rate *r, double rate, double burst, int64_t now_us) {
    r->rate = rate;
    r->burst_u = (int64_t)(burst * 1e6);
    r->tokens_u = r->burst_u;
    r->last_us = now_us;
}

int fb_rate_take(fb_rate *r, int64_t now_us) {
    if (now_us > r->last_us) {
        int64_t dt = now_us - r->last_us;
        /* dt * rate millionths; capped before multiplying so a long pause cannot overflow */
        int64_t add = dt > 3600000000LL ? r->burst_u : (int64_t)((double)dt * r->rate);
        r->tokens_u = r->tokens_u + add > r->burst_u ? r->burst_u : r->tokens_u + add;
        r->last_us = now_us;
    }
    if (r->tokens_u >= 1000000) {
        r->tokens_u -= 1000000;
        return 1;
    }
    return 0;
}
