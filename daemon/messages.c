/* daemon/messages.c - server messages with the daemon's fields (see messages.h). */
#include "daemon/messages.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Parses a message from stream/protocol.c (and frees it) so fields can be added. */
static cJSON *open_msg(char *json) {
    if (!json) return NULL;
    cJSON *o = cJSON_Parse(json);
    fb_proto_free(json);
    return o;
}

static char *close_msg(cJSON *o, int ok) {
    char *s = (o && ok) ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

/* Integers as raw text, as stream/protocol.c does (cJSON would print them via a double). */
static int add_int(cJSON *o, const char *name, int64_t v) {
    char buf[24];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return cJSON_AddRawToObject(o, name, buf) != NULL;
}

static int add_num(cJSON *o, const char *name, double v) {
    double r = isfinite(v) ? round(v * 100.0) / 100.0 : 0.0;
    return cJSON_AddNumberToObject(o, name, r) != NULL;
}

/* Splits a space-separated list into a JSON array field. */
static int add_words(cJSON *o, const char *name, const char *words) {
    cJSON *arr = cJSON_AddArrayToObject(o, name);
    if (!arr) return 0;
    const char *p = words ? words : "";
    while (*p) {
        while (*p == ' ') p++;
        const char *e = p;
        while (*e && *e != ' ') e++;
        if (e > p) {
            char w[512];
            size_t n = (size_t)(e - p) < sizeof w - 1 ? (size_t)(e - p) : sizeof w - 1;
            memcpy(w, p, n);
            w[n] = '\0';
            cJSON *s = cJSON_CreateString(w);
            if (!s || !cJSON_AddItemToArray(arr, s)) {
                cJSON_Delete(s);
                return 0;
            }
        }
        p = e;
    }
    return 1;
}

/* `anchorImage`: what an anchor image upload must look like (config and server messages). */
static int add_anchor_image(cJSON *o, int width, int height) {
    cJSON *a = cJSON_AddObjectToObject(o, "anchorImage");
    int ok = a && add_int(a, "width", width) && add_int(a, "height", height);
    ok = ok && add_words(a, "formats", "rgb24 rgba32");
    return ok && add_int(a, "partChars", FBD_ANCHOR_PART_CHARS);
}

char *fbd_msg_ack(const fb_ack *a, int has_chunk, int64_t chunk) {
    return fbd_msg_ack_prompt(a, has_chunk, chunk, NULL);
}

char *fbd_msg_ack_prompt(const fb_ack *a, int has_chunk, int64_t chunk,
                         const char *unknown_words) {
    cJSON *o = open_msg(fb_proto_ack(a));
    int ok = o != NULL;
    if (ok && has_chunk) ok = add_int(o, "chunk", chunk);
    if (ok && unknown_words) ok = add_words(o, "unknownWords", unknown_words);
    return close_msg(o, ok);
}

char *fbd_msg_stats(const fb_stats_msg *s, const fbd_stats_ext *x) {
    cJSON *o = open_msg(fb_proto_stats(s));
    int ok = o != NULL;
    ok = ok && add_int(o, "late", x->late);
    if (ok && x->last_type) {
        cJSON *lc = cJSON_AddObjectToObject(o, "lastControl");
        ok = lc && cJSON_AddStringToObject(lc, "type", x->last_type);
        if (ok && x->last_chunk >= 0) ok = add_int(lc, "chunk", x->last_chunk);
        ok = ok && add_int(lc, "frame", x->last_frame);
    }
    if (ok && x->has_engine) {
        const fb_source_stats *e = &x->engine;
        ok = add_int(o, "chunk", e->chunk < 0 ? 0 : e->chunk);
        ok = ok && add_num(o, "genFps", x->gen_fps);
        ok = ok && add_num(o, "chunkMs", e->chunk_ms);
        ok = ok && add_int(o, "buffer", e->buffer);
        ok = ok && add_int(o, "bufferMax", e->buffer_capacity);
        ok = ok && add_int(o, "kvUsed", e->kv_used);
        ok = ok && add_int(o, "kvTotal", e->kv_total);
        ok = ok && add_int(o, "kvStreams", e->kv_streams);
        ok = ok && add_int(o, "kvStreamsMax", e->kv_streams_max);
        if (ok) {
            ok = e->prompt_latency_ms >= 0 ? add_num(o, "promptLatencyMs", e->prompt_latency_ms)
                                           : cJSON_AddNullToObject(o, "promptLatencyMs") != NULL;
        }
        ok = ok && add_num(o, "slowdown", e->slowdown);
    }
    return close_msg(o, ok);
}

char *fbd_msg_config(int width, int height, int fps, const fbd_config_ext *x) {
    cJSON *o = open_msg(fb_proto_config(width, height, fps));
    int ok = o != NULL;
    if (ok && x->source) ok = cJSON_AddStringToObject(o, "source", x->source) != NULL;
    if (ok && x->model) ok = cJSON_AddStringToObject(o, "model", x->model) != NULL;
    if (ok && x->chunk_frames) ok = add_int(o, "chunkFrames", x->chunk_frames);
    if (ok && x->anchor_width > 0) ok = add_anchor_image(o, x->anchor_width, x->anchor_height);
    return close_msg(o, ok);
}

char *fbd_msg_hello(const char *session, int is_owner, const char *token, const char *server,
                    const char *unknown_words) {
    cJSON *o = open_msg(fb_proto_hello(session, is_owner, token, server));
    int ok = o != NULL;
    if (ok && unknown_words && unknown_words[0]) ok = add_words(o, "unknownWords", unknown_words);
    return close_msg(o, ok);
}

char *fbd_msg_server(const fbd_server_info *x) {
    cJSON *o = cJSON_CreateObject();
    int ok = o && cJSON_AddStringToObject(o, "type", "server") != NULL;
    if (ok && x->has_id) ok = add_int(o, "id", x->id);
    if (ok && x->version) ok = cJSON_AddStringToObject(o, "version", x->version) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "source", x->source ? x->source : "") != NULL;
    if (ok && x->model) ok = cJSON_AddStringToObject(o, "model", x->model) != NULL;
    ok = ok && add_int(o, "width", x->width) && add_int(o, "height", x->height) &&
         add_int(o, "fps", x->fps);
    if (ok && x->chunk_frames > 0) ok = add_int(o, "chunkFrames", x->chunk_frames);
    if (ok) {
        /* The engine checked that the metadata is an array of strings; parse it again anyway
         * so that nothing but such an array can reach the client. */
        cJSON *p = x->prompts_json ? cJSON_Parse(x->prompts_json) : NULL;
        cJSON *arr = cJSON_CreateArray();
        ok = arr != NULL;
        for (const cJSON *e = cJSON_IsArray(p) ? p->child : NULL; ok && e; e = e->next) {
            if (!cJSON_IsString(e) || !e->valuestring[0]) continue;
            cJSON *str = cJSON_CreateString(e->valuestring);
            ok = str && cJSON_AddItemToArray(arr, str);
            if (!ok) cJSON_Delete(str);
        }
        cJSON_Delete(p);
        if (ok) ok = cJSON_AddItemToObject(o, "prompts", arr);
        if (!ok) cJSON_Delete(arr);
    }
    ok = ok && add_int(o, "maxPromptBytes", FB_PROTO_MAX_PROMPT);
    /* The test pattern applies every prompt at once: any transition is accepted and acts as
     * a cut, so only `cut` is offered. */
    ok = ok && add_words(o, "transitions", x->engine ? "cut recache blend" : "cut");
    if (ok && x->engine) {
        cJSON *b = cJSON_AddObjectToObject(o, "blendChunks");
        ok = b && add_int(b, "min", FB_PROTO_MIN_CHUNKS) && add_int(b, "max", FB_PROTO_MAX_CHUNKS) &&
             add_int(b, "default", FB_PROTO_DEFAULT_CHUNKS);
    }
    ok = ok && add_words(o, "controls", x->anchor_width > 0
                                            ? "prompt seed reset pause resume record anchor"
                                            : "prompt seed reset pause resume record");
    if (ok && x->anchor_width > 0) ok = add_anchor_image(o, x->anchor_width, x->anchor_height);
    return close_msg(o, ok);
}
