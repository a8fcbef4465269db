/* daemon/hub.c - connections <-> sessions on the service thread (see hub.h). */
#include "daemon/hub.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "daemon/log.h"
#include "daemon/messages.h"
#include "daemon/metrics.h"
#include "daemon/session.h"
#include "stream/protocol.h"
#include "stream/vp9enc.h"

#define SHUTDOWN_CLOSE_SECS 3   /* how long closing clients may take to say goodbye */

typedef struct hub_session hub_session;

typedef struct hub_client {
    fbd_hub *hub;
    fb_ws_conn *conn;
    hub_session *hs;
    int owner;
    struct hub_client *next_in_session;
    struct hub_client *prev, *next;     /* all clients */
    uint64_t last_frames_sent;
    double reported_dropped;
    /* an anchor image arriving in parts (engine sessions) */
    char *img;
    size_t img_len, img_max;
    int img_next, img_parts, img_w, img_h;
    char img_fmt[16];
} hub_client;

struct hub_session {
    fbd_hub *hub;
    fbd_session *s;
    hub_client *clients;
    int n_clients, n_owners;
    int64_t owner_gone_since;           /* 0 while an owner is connected */
    int ending;
    int end_status;
    char end_reason[128];
    fbd_session_counters last;
    int64_t last_us;
    char unknown[512];                  /* words of the start prompt the model does not know */
    hub_session *next;
};

struct fbd_hub {
    const fbd_config *cfg;
    const fb_source_ops *source;
    char *record_dir;
    fb_ws_server *srv;
    hub_session *sessions;
    int n_sessions;
    hub_client *clients;
    int shutting_down, closing_all;
    int stopped;                        /* fb_ws_server_stop called: the loop is ending */
    int64_t close_deadline;
    int64_t start_us;
    fbd_sched *sched;                   /* the engine; NULL for the test pattern */
    fbd_sched_info info;                /* its fixed figures (size, fps, model) */
    int engine_fps;
};

static int64_t mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Sends a built JSON message (and frees it). */
static void send_json(hub_client *c, char *json) {
    if (!json) return;
    fb_ws_conn_send_text(c->conn, json, strlen(json));
    fb_proto_free(json);
}

static void send_error(hub_client *c, fb_err code, const char *msg, const fb_msg *m) {
    fb_ws_conn_send_error(c->conn, code, msg, m ? m->has_id : 0, m ? m->id : 0);
}

/* ------------------------------------------------------------------------------------------ */
/* sessions                                                                                    */

static void attach(hub_session *hs, hub_client *c, int owner) {
    c->hs = hs;
    c->owner = owner;
    c->next_in_session = hs->clients;
    hs->clients = c;
    hs->n_clients++;
    if (owner) {
        hs->n_owners++;
        hs->owner_gone_since = 0;
    }
    fb_ws_conn_stats st;
    fb_ws_conn_get_stats(c->conn, &st);
    c->last_frames_sent = st.frames_sent;
}

static void detach(hub_client *c) {
    hub_session *hs = c->hs;
    if (!hs) return;
    for (hub_client **pp = &hs->clients; *pp; pp = &(*pp)->next_in_session) {
        if (*pp == c) {
            *pp = c->next_in_session;
            break;
        }
    }
    hs->n_clients--;
    if (c->owner && --hs->n_owners == 0) hs->owner_gone_since = mono_us();
    c->hs = NULL;
    c->owner = 0;
    c->next_in_session = NULL;
}

static void end_session(hub_session *hs, const char *reason, int status) {
    if (hs->ending) return;
    hs->ending = 1;
    hs->end_status = status;
    snprintf(hs->end_reason, sizeof hs->end_reason, "%s", reason);
    FB_LOG_INFO("session", "%s: ending (%s)", fbd_session_id(hs->s), reason);
    fbd_session_stop(hs->s);
}

static void maybe_finish(fbd_hub *h) {
    /* After stop, the connections that remain are closed by the server's destruction; their
     * on_close must not touch the loop again. */
    if (!h->shutting_down || h->stopped || h->n_sessions > 0) return;
    if (!h->closing_all) {
        h->closing_all = 1;
        h->close_deadline = mono_us() + SHUTDOWN_CLOSE_SECS * 1000000LL;
        for (hub_client *c = h->clients; c; c = c->next)
            fb_ws_conn_close(c->conn, 1001, "server shutting down");
    }
    fb_ws_totals t;
    fb_ws_server_totals(h->srv, &t);
    if (t.connections == 0 || mono_us() >= h->close_deadline) {
        FB_LOG_INFO("daemon", "shutdown complete");
        h->stopped = 1;
        fb_ws_server_stop(h->srv);
    }
}

static void ev_packet(void *hub_data, fbd_session *s, fb_packet *p) {
    hub_session *hs = hub_data;
    (void)s;
    for (hub_client *c = hs->clients; c; c = c->next_in_session) fb_ws_conn_send_packet(c->conn, p);
}

static void ev_reply(void *hub_data, fbd_session *s, uint64_t conn_id, const char *json) {
    hub_session *hs = hub_data;
    (void)s;
    for (hub_client *c = hs->clients; c; c = c->next_in_session) {
        if (conn_id ? fb_ws_conn_id(c->conn) == conn_id : c->owner)
            fb_ws_conn_send_text(c->conn, json, strlen(json));
    }
}

static void ev_exit(void *hub_data, fbd_session *s, const char *failure) {
    hub_session *hs = hub_data;
    fbd_hub *h = hs->hub;
    const char *reason = failure[0] ? failure : (hs->end_reason[0] ? hs->end_reason : "ended");
    int status = failure[0] ? 1011 : (hs->end_status ? hs->end_status : 1000);
    char *end = fb_proto_end(reason);
    while (hs->clients) {
        hub_client *c = hs->clients;
        if (end) fb_ws_conn_send_text(c->conn, end, strlen(end));
        fb_ws_conn_close(c->conn, status, failure[0] ? "session failed" : "session ended");
        detach(c);
    }
    fb_proto_free(end);
    for (hub_session **pp = &h->sessions; *pp; pp = &(*pp)->next) {
        if (*pp == hs) {
            *pp = hs->next;
            break;
        }
    }
    h->n_sessions--;
    FB_LOG_INFO("session", "%s: ended (%s)", fbd_session_id(s), reason);
    fbd_session_join(s);
    fbd_session_unref(s);
    free(hs);
    maybe_finish(h);
}

static hub_session *find_session(fbd_hub *h, const char *id) {
    for (hub_session *hs = h->sessions; hs; hs = hs->next)
        if (!hs->ending && strcmp(fbd_session_id(hs->s), id) == 0) return hs;
    return NULL;
}

static uint64_t random_seed(void) {
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) v = (uint64_t)mono_us();
    return v & ((1ull << 53) - 1);  /* a seed a JSON number can carry back */
}

static void send_config(hub_client *c, hub_session *hs) {
    fbd_hub *h = hs->hub;
    fbd_session_counters k;
    fbd_session_get_counters(hs->s, &k);
    fbd_config_ext x = {.source = h->source->name};
    if (h->sched) {
        x.model = h->info.model_name;
        x.chunk_frames = h->info.frames_per_chunk;
        if (h->info.anchor_frames > 0) {
            x.anchor_width = h->info.width;
            x.anchor_height = h->info.height;
        }
    }
    send_json(c, fbd_msg_config(k.width, k.height, k.fps, &x));
}

static void send_welcome(hub_client *c, hub_session *hs, int started) {
    send_json(c, fbd_msg_hello(fbd_session_id(hs->s), c->owner,
                               c->owner ? fbd_session_token(hs->s) : NULL,
                               "flipbookd/" FLIPBOOKD_VERSION, started ? hs->unknown : NULL));
    send_config(c, hs);
}

static void handle_start(fbd_hub *h, hub_client *c, const fb_msg *m) {
    const fbd_config *cfg = h->cfg;
    const fb_source_ops *src = h->source;
    if (h->shutting_down) {
        send_error(c, FB_ERR_INTERNAL, "the server is shutting down", m);
        return;
    }
    if (h->n_sessions >= cfg->max_sessions) {
        char msg[96];
        snprintf(msg, sizeof msg, "%d sessions are running, the most this server allows",
                 h->n_sessions);
        atomic_fetch_add(&fbd_metrics_g.refused_max, 1);
        send_error(c, FB_ERR_SESSION_LIMIT, msg, m);
        return;
    }
    int w = m->width ? m->width : cfg->width, ht = m->height ? m->height : cfg->height;
    int fps = m->fps ? m->fps : cfg->fps;
    char msg[512];
    if (h->sched) {
        /* The model makes one size at one rate. */
        const fbd_sched_info *in = &h->info;
        if ((m->width && m->width != in->width) || (m->height && m->height != in->height) ||
            (m->fps && m->fps != h->engine_fps)) {
            snprintf(msg, sizeof msg, "this model makes %dx%d frames at %d fps; leave width, "
                     "height and fps out or give exactly these", in->width, in->height,
                     h->engine_fps);
            send_error(c, FB_ERR_BAD_VALUE, msg, m);
            return;
        }
        w = in->width;
        ht = in->height;
        fps = h->engine_fps;
    } else if (w < src->min_size || w > src->max_size || ht < src->min_size ||
               ht > src->max_size) {
        snprintf(msg, sizeof msg, "width and height must be between %d and %d for the %s source",
                 src->min_size, src->max_size, src->name);
        send_error(c, FB_ERR_BAD_VALUE, msg, m);
        return;
    } else if (fps > src->max_fps) {
        snprintf(msg, sizeof msg, "fps must be at most %d for the %s source", src->max_fps,
                 src->name);
        send_error(c, FB_ERR_BAD_VALUE, msg, m);
        return;
    }
    uint64_t seed = m->has_seed ? m->seed : random_seed();
    const char *prompt = m->text ? m->text : "";
    fbd_gen *gen = NULL;
    char unknown[512] = "";
    if (h->sched) {
        int why = 0;
        gen = fbd_sched_admit(h->sched, prompt, seed, &why, msg, sizeof msg);
        if (!gen) {
            fb_err code = FB_ERR_SESSION_LIMIT;
            if (why == FBD_ADMIT_BAD_PROMPT) code = FB_ERR_BAD_VALUE;
            else if (why == FBD_ADMIT_NO_MEMORY) code = FB_ERR_INTERNAL;
            else if (why == FBD_ADMIT_REFUSED_KV) atomic_fetch_add(&fbd_metrics_g.refused_kv, 1);
            else atomic_fetch_add(&fbd_metrics_g.refused_compute, 1);
            if (code == FB_ERR_SESSION_LIMIT)
                FB_LOG_INFO("session", "refused a start from %s: %s", fb_ws_conn_peer(c->conn),
                            msg);
            send_error(c, code, msg, m);
            return;
        }
        char e[256];
        int nu = 0;
        if (fbd_sched_check_prompt(h->sched, prompt, unknown, sizeof unknown, &nu, e,
                                   sizeof e) != 0)
            unknown[0] = '\0';
    }
    hub_session *hs = calloc(1, sizeof *hs);
    if (!hs) {
        fbd_gen_close(gen);
        send_error(c, FB_ERR_INTERNAL, "out of memory", m);
        return;
    }
    hs->hub = h;
    snprintf(hs->unknown, sizeof hs->unknown, "%s", unknown);
    fbd_session_params p;
    memset(&p, 0, sizeof p);
    p.source = src;
    p.src.width = w;
    p.src.height = ht;
    p.src.fps = fps;
    p.src.seed = seed;
    p.src.prompt = prompt;
    p.src.model = cfg->model[0] ? cfg->model : NULL;
    p.src.engine = gen;
    p.enc = fb_vp9enc_default_params(w, ht, fps);
    if (cfg->bitrate_kbps) p.enc.bitrate_kbps = cfg->bitrate_kbps;
    if (cfg->keyframe_interval) p.enc.keyframe_interval = cfg->keyframe_interval;
    p.enc.cpu_used = cfg->cpu_used;
    if (cfg->encoder_threads) p.enc.threads = cfg->encoder_threads;
    p.record_dir = h->record_dir;
    p.server = h->srv;
    p.events.on_packet = ev_packet;
    p.events.on_reply = ev_reply;
    p.events.on_exit = ev_exit;
    p.hub_data = hs;
    char err[256];
    if (fbd_session_start(&p, &hs->s, err, sizeof err) != 0) {  /* closes gen on failure */
        free(hs);
        FB_LOG_ERROR("session", "cannot start a session: %s", err);
        send_error(c, FB_ERR_INTERNAL, err, m);
        return;
    }
    hs->last_us = mono_us();
    hs->last.last_frame = -1;
    hs->next = h->sessions;
    h->sessions = hs;
    h->n_sessions++;
    attach(hs, c, 1);
    FB_LOG_INFO("session", "%s: started by client %llu (%s) %dx%d@%d seed %llu",
                fbd_session_id(hs->s), (unsigned long long)fb_ws_conn_id(c->conn),
                fb_ws_conn_peer(c->conn), w, ht, fps, (unsigned long long)seed);
    send_welcome(c, hs, 1);
}

static void handle_join(fbd_hub *h, hub_client *c, const fb_msg *m) {
    hub_session *hs = find_session(h, m->session);
    if (!hs) {
        char msg[128];
        snprintf(msg, sizeof msg, "no session \"%s\"", m->session);
        send_error(c, FB_ERR_NO_SESSION, msg, m);
        return;
    }
    int owner = 0;
    if (m->has_token) {
        if (!fbd_session_token_matches(hs->s, m->token)) {
            FB_LOG_WARN("session", "%s: wrong owner token from %s", fbd_session_id(hs->s),
                        fb_ws_conn_peer(c->conn));
            send_error(c, FB_ERR_BAD_TOKEN, "wrong owner token", m);
            return;
        }
        owner = 1;
    }
    attach(hs, c, owner);
    fb_ws_conn_reset_video(c->conn);
    FB_LOG_INFO("session", "%s: client %llu (%s) joined as %s", fbd_session_id(hs->s),
                (unsigned long long)fb_ws_conn_id(c->conn), fb_ws_conn_peer(c->conn),
                owner ? "owner" : "viewer");
    send_welcome(c, hs, 0);
    fbd_session_request_keyframe(hs->s);
}

/* ------------------------------------------------------------------------------------------ */
/* hooks                                                                                       */

static void on_open(void *user, fb_ws_conn *conn) {
    fbd_hub *h = user;
    hub_client *c = calloc(1, sizeof *c);
    if (!c) {
        fb_ws_conn_close(conn, 1011, "out of memory");
        return;
    }
    c->hub = h;
    c->conn = conn;
    c->next = h->clients;
    if (h->clients) h->clients->prev = c;
    h->clients = c;
    fb_ws_conn_set_user(conn, c);
}

static void on_close(void *user, fb_ws_conn *conn) {
    fbd_hub *h = user;
    hub_client *c = fb_ws_conn_user(conn);
    if (!c) return;
    hub_session *hs = c->hs;
    int was_owner = c->owner;
    detach(c);
    if (c->prev) c->prev->next = c->next;
    else h->clients = c->next;
    if (c->next) c->next->prev = c->prev;
    free(c->img);
    free(c);
    fb_ws_conn_set_user(conn, NULL);
    if (hs && was_owner && hs->n_owners == 0 && !hs->ending && h->cfg->owner_grace == 0)
        end_session(hs, "the owner left", 1000);
    maybe_finish(h);
}

/* ------------------------------------------------------------------------------------------ */
/* anchor images                                                                               */

static void image_reset(hub_client *c) {
    free(c->img);
    c->img = NULL;
    c->img_len = c->img_max = 0;
    c->img_next = c->img_parts = 0;
}

/* Reads an integer field of an anchor message: 0 = absent (*v = dflt), 1 = ok, -1 = bad. */
static int int_field(const cJSON *o, const char *name, int lo, int hi, int dflt, int *v) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);
    *v = dflt;
    if (!f || cJSON_IsNull(f)) return 0;
    if (!cJSON_IsNumber(f) || !isfinite(f->valuedouble) || floor(f->valuedouble) != f->valuedouble ||
        f->valuedouble < lo || f->valuedouble > hi)
        return -1;
    *v = (int)f->valuedouble;
    return 1;
}

/* An `anchor` `image` message on an engine session: its declared size and format are checked
 * against the model, parts are joined (an image larger than one 64 KiB message comes in
 * several, docs/protocol.md), and the whole image goes to the session. */
static void handle_anchor_image(fbd_hub *h, hub_client *c, const fb_msg *m, const char *text,
                                size_t len) {
    cJSON *o = cJSON_ParseWithLength(text, len);
    if (!o) {
        send_error(c, FB_ERR_INTERNAL, "out of memory", m);
        return;
    }
    int w, ht, part, parts;
    char msg[256];
    const char *bad = NULL;
    if (int_field(o, "width", 1, FB_PROTO_MAX_SIZE, 0, &w) < 0) bad = "width";
    else if (int_field(o, "height", 1, FB_PROTO_MAX_SIZE, 0, &ht) < 0) bad = "height";
    else if (int_field(o, "parts", 1, 4096, 1, &parts) < 0) bad = "parts";
    else if (int_field(o, "part", 0, parts - 1, 0, &part) < 0) bad = "part";
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "format");
    char fmt[16] = "rgb24";
    if (!bad && f && !cJSON_IsNull(f)) {
        if (!cJSON_IsString(f) || (strcmp(f->valuestring, "rgb24") != 0 &&
                                   strcmp(f->valuestring, "rgba32") != 0))
            bad = "format";
        else
            snprintf(fmt, sizeof fmt, "%s", f->valuestring);
    }
    cJSON_Delete(o);
    if (bad) {
        if (!strcmp(bad, "format"))
            snprintf(msg, sizeof msg, "field \"format\" must be \"rgb24\" or \"rgba32\"");
        else if (!strcmp(bad, "part"))
            snprintf(msg, sizeof msg, "field \"part\" must be an integer from 0 to parts - 1");
        else
            snprintf(msg, sizeof msg, "field \"%s\" must be a positive integer", bad);
        image_reset(c);
        send_error(c, FB_ERR_BAD_VALUE, msg, m);
        return;
    }
    if (!w) w = h->info.width;
    if (!ht) ht = h->info.height;
    if (w != h->info.width || ht != h->info.height) {
        snprintf(msg, sizeof msg, "the anchor image is %dx%d; this model takes %dx%d (send the "
                 "picture scaled to that size)", w, ht, h->info.width, h->info.height);
        image_reset(c);
        send_error(c, FB_ERR_BAD_VALUE, msg, m);
        return;
    }
    fbd_anchor_image img = {.width = w, .height = ht, .format = fmt, .data = m->anchor_data,
                            .data_len = m->anchor_data_len};
    if (parts == 1) {
        image_reset(c);
        if (fbd_session_control_image(c->hs->s, fb_ws_conn_id(c->conn), m, &img) != 0)
            send_error(c, FB_ERR_INTERNAL, "out of memory", m);
        return;
    }
    if (part == 0) {
        image_reset(c);
        size_t bpp = strcmp(fmt, "rgba32") == 0 ? 4 : 3;
        c->img_max = 4 * (((size_t)w * ht * bpp + 2) / 3);
        c->img = malloc(c->img_max + 1);
        if (!c->img) {
            image_reset(c);
            send_error(c, FB_ERR_INTERNAL, "out of memory", m);
            return;
        }
        c->img_parts = parts;
        c->img_w = w;
        c->img_h = ht;
        snprintf(c->img_fmt, sizeof c->img_fmt, "%s", fmt);
    } else if (!c->img || part != c->img_next || parts != c->img_parts || w != c->img_w ||
               ht != c->img_h || strcmp(fmt, c->img_fmt) != 0) {
        snprintf(msg, sizeof msg, "anchor image part %d of %d does not continue an upload "
                 "(expected part %d); start again from part 0", part, parts,
                 c->img ? c->img_next : 0);
        image_reset(c);
        send_error(c, FB_ERR_BAD_VALUE, msg, m);
        return;
    }
    if (c->img_len + m->anchor_data_len > c->img_max) {
        snprintf(msg, sizeof msg, "the anchor image parts hold more base64 than a %dx%d %s "
                 "picture (%zu characters)", w, ht, fmt, c->img_max);
        image_reset(c);
        send_error(c, FB_ERR_BAD_VALUE, msg, m);
        return;
    }
    memcpy(c->img + c->img_len, m->anchor_data, m->anchor_data_len);
    c->img_len += m->anchor_data_len;
    c->img[c->img_len] = '\0';
    c->img_next = part + 1;
    if (part < parts - 1) return;  /* more to come; the whole image is acknowledged */
    img.data = c->img;
    img.data_len = c->img_len;
    if (fbd_session_control_image(c->hs->s, fb_ws_conn_id(c->conn), m, &img) != 0)
        send_error(c, FB_ERR_INTERNAL, "out of memory", m);
    image_reset(c);
}

/* The `server` message: what a page needs before it starts a session (docs/protocol.md). */
static void send_server_info(fbd_hub *h, hub_client *c, int has_id, int64_t id) {
    fbd_server_info x = {.has_id = has_id, .id = id, .version = "flipbookd/" FLIPBOOKD_VERSION,
                         .source = h->source->name, .width = h->cfg->width,
                         .height = h->cfg->height, .fps = h->cfg->fps};
    if (h->sched) {
        x.model = h->info.model_name;
        x.width = h->info.width;
        x.height = h->info.height;
        x.fps = h->engine_fps;
        x.chunk_frames = h->info.frames_per_chunk;
        x.prompts_json = h->info.prompts_json;
        x.engine = 1;
        if (h->info.anchor_frames > 0) {
            x.anchor_width = h->info.width;
            x.anchor_height = h->info.height;
        }
    }
    send_json(c, fbd_msg_server(&x));
}

static void on_message(void *user, fb_ws_conn *conn, const char *text, size_t len) {
    fbd_hub *h = user;
    hub_client *c = fb_ws_conn_user(conn);
    if (!c) return;
    fb_msg m;
    fb_msg_error e;
    if (fb_msg_parse(text, len, &m, &e) != 0) {
        FB_LOG_DEBUG("ws", "client %llu: %s: %s", (unsigned long long)fb_ws_conn_id(conn),
                     fb_err_code(e.code), e.message);
        fb_ws_conn_send_error(conn, e.code, e.message, e.has_id, e.id);
        return;
    }
    hub_session *hs = c->hs;
    switch (m.type) {
    case FB_MSG_START:
    case FB_MSG_JOIN:
        if (hs) {
            send_error(c, FB_ERR_ALREADY_IN_SESSION, "this connection is already in a session", &m);
            break;
        }
        if (m.type == FB_MSG_START) handle_start(h, c, &m);
        else handle_join(h, c, &m);
        break;
    case FB_MSG_INFO:
        send_server_info(h, c, m.has_id, m.id);
        break;
    case FB_MSG_STATS:
        atomic_fetch_add(&fbd_metrics_g.client_reports, 1);
        if (m.has_client_dropped && m.client_dropped > c->reported_dropped) {
            atomic_fetch_add(&fbd_metrics_g.client_dropped,
                             (uint64_t)(m.client_dropped - c->reported_dropped));
            c->reported_dropped = m.client_dropped;
        }
        break;
    default:
        if (!hs) {
            send_error(c, FB_ERR_NO_SESSION, "send start or join first", &m);
            break;
        }
        if (hs->ending) {
            send_error(c, FB_ERR_NO_SESSION, "the session is ending", &m);
            break;
        }
        if (fb_msg_needs_owner(m.type) && !c->owner) {
            send_error(c, FB_ERR_NOT_OWNER, "viewers cannot steer the stream", &m);
            break;
        }
        if (m.type == FB_MSG_KEYFRAME) {
            fbd_session_request_keyframe(hs->s);
            fb_ack a = {.of = "keyframe", .has_id = m.has_id, .id = m.id};
            send_json(c, fb_proto_ack(&a));
        } else if (m.type == FB_MSG_STOP) {
            fbd_session_counters k;
            fbd_session_get_counters(hs->s, &k);
            fb_ack a = {.of = "stop", .has_id = m.has_id, .id = m.id, .has_frame = 1,
                        .frame = k.last_frame + 1};
            send_json(c, fb_proto_ack(&a));
            end_session(hs, "stopped by the owner", 1000);
        } else if (m.type == FB_MSG_ANCHOR && m.anchor == FB_ANCHOR_IMAGE && h->sched) {
            handle_anchor_image(h, c, &m, text, len);
        } else if (fbd_session_control(hs->s, fb_ws_conn_id(conn), &m) != 0) {
            send_error(c, FB_ERR_INTERNAL, "out of memory", &m);
        }
        break;
    }
    fb_msg_clear(&m);
}

static void on_tick(void *user, int64_t now) {
    fbd_hub *h = user;
    for (hub_session *hs = h->sessions, *next; hs; hs = next) {
        next = hs->next;
        if (hs->ending) continue;
        fbd_session_counters k;
        fbd_session_get_counters(hs->s, &k);
        double dt = (double)(now - hs->last_us) * 1e-6;
        if (dt <= 0) dt = 1;
        uint64_t df = k.frames - hs->last.frames;
        fb_stats_msg st = {
            .frame = k.last_frame < 0 ? 0 : k.last_frame,
            .fps = (double)df / dt,
            .bitrate_kbps = (double)(k.bytes - hs->last.bytes) * 8.0 / 1000.0 / dt,
            .encode_ms = df ? (double)(k.encode_ns - hs->last.encode_ns) / (double)df * 1e-6 : 0,
            .viewers = hs->n_clients,
            .recording = k.recording,
            .paused = k.paused,
        };
        fbd_stats_ext x = {.late = (int64_t)k.late, .last_type = k.last_type,
                           .last_chunk = k.last_chunk, .last_frame = k.last_frame_of_control,
                           .has_engine = k.has_engine, .engine = k.engine};
        if (k.has_engine && k.engine.frames_generated >= hs->last.engine.frames_generated)
            x.gen_fps = (double)(k.engine.frames_generated - hs->last.engine.frames_generated) / dt;
        for (hub_client *c = hs->clients; c; c = c->next_in_session) {
            fb_ws_conn_stats cs;
            fb_ws_conn_get_stats(c->conn, &cs);
            st.sent_fps = (double)(cs.frames_sent - c->last_frames_sent) / dt;
            st.queue = (int64_t)cs.frames_queued;
            st.dropped = (int64_t)cs.dropped;
            c->last_frames_sent = cs.frames_sent;
            send_json(c, fbd_msg_stats(&st, &x));
        }
        hs->last = k;
        hs->last_us = now;
        if (hs->n_owners == 0 && hs->owner_gone_since &&
            now - hs->owner_gone_since >= (int64_t)h->cfg->owner_grace * 1000000) {
            char why[96];
            snprintf(why, sizeof why, "no owner for %d s", h->cfg->owner_grace);
            end_session(hs, why, 1000);
        }
    }
    maybe_finish(h);
}

static void on_need_keyframe(void *user, fb_ws_conn *conn) {
    (void)user;
    hub_client *c = fb_ws_conn_user(conn);
    if (c && c->hs) fbd_session_request_keyframe(c->hs->s);
}

static char *metrics(void *user, size_t *len) {
    fbd_hub *h = user;
    fb_ws_totals t;
    fb_ws_server_totals(h->srv, &t);
    fbd_metrics_view v = {.sessions = h->n_sessions,
                          .ws = &t,
                          .uptime_seconds = (double)(mono_us() - h->start_us) * 1e-6,
                          .version = FLIPBOOKD_VERSION};
    if (h->sched) {
        fbd_sched_info in;
        fbd_sched_get_info(h->sched, &in);
        v.has_engine = 1;
        v.engine_capacity = in.capacity;
        v.engine_kv_streams = in.kv_streams;
        v.engine_streams = in.sessions;
        v.engine_chunk_ms = in.chunk_ms;
        v.engine_slowdown = in.slowdown;
    }
    return fbd_metrics_render(&v, len);
}

static int recording_allowed(void *user, const char *name) {
    (void)user;
    return fbd_recording_name_valid(name) && !fbd_recording_is_active(name);
}

static void ws_log(void *user, int level, const char *msg) {
    (void)user;
    FB_LOG(level, "ws", "%s", msg);
}

static void begin_shutdown(void *arg) {
    fbd_hub *h = arg;
    if (h->shutting_down) return;
    h->shutting_down = 1;
    FB_LOG_INFO("daemon", "shutting down: %d session(s) to finish", h->n_sessions);
    fb_ws_server_refuse_new(h->srv);
    for (hub_session *hs = h->sessions; hs; hs = hs->next) end_session(hs, "shutdown", 1001);
    maybe_finish(h);
}

/* ------------------------------------------------------------------------------------------ */

fbd_hub *fbd_hub_new(const fbd_config *cfg, const fb_source_ops *source, const char *record_dir) {
    fbd_hub *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->cfg = cfg;
    h->source = source;
    h->record_dir = strdup(record_dir);
    if (!h->record_dir) {
        free(h);
        return NULL;
    }
    h->start_us = mono_us();
    return h;
}

void fbd_hub_hooks(fbd_hub *h, fb_ws_hooks *hooks) {
    memset(hooks, 0, sizeof *hooks);
    hooks->user = h;
    hooks->on_open = on_open;
    hooks->on_message = on_message;
    hooks->on_close = on_close;
    hooks->on_tick = on_tick;
    hooks->on_need_keyframe = on_need_keyframe;
    hooks->metrics = metrics;
    hooks->recording_allowed = recording_allowed;
    hooks->log = ws_log;
}

void fbd_hub_attach(fbd_hub *h, fb_ws_server *srv) { h->srv = srv; }

void fbd_hub_set_engine(fbd_hub *h, fbd_sched *sched) {
    h->sched = sched;
    if (!sched) return;
    fbd_sched_get_info(sched, &h->info);
    h->engine_fps = (int)lround(h->info.fps);
    if (h->engine_fps < 1) h->engine_fps = 1;
}

int fbd_hub_request_shutdown(fbd_hub *h) {
    return fb_ws_server_post(h->srv, begin_shutdown, h);
}

void fbd_hub_stop_sessions(fbd_hub *h) {
    for (hub_session *hs = h->sessions; hs; hs = hs->next) {
        fbd_session_stop(hs->s);
        fbd_session_join(hs->s);
    }
}

void fbd_hub_free(fbd_hub *h) {
    if (!h) return;
    /* Normally empty: ev_exit (run while the server drains its queue) removed every session. */
    while (h->sessions) {
        hub_session *hs = h->sessions;
        h->sessions = hs->next;
        fbd_session_stop(hs->s);
        fbd_session_join(hs->s);
        fbd_session_unref(hs->s);
        free(hs);
    }
    while (h->clients) {
        hub_client *c = h->clients;
        h->clients = c->next;
        free(c->img);
        free(c);
    }
    free(h->record_dir);
    free(h);
}
