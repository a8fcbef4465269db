/* daemon/session.c - a session's frame thread: pace, draw, encode, fan out, record
 * (see session.h). */
#include "daemon/session.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/log.h"
#include "daemon/messages.h"
#include "daemon/metrics.h"
#include "daemon/scheduler.h"
#include "stream/recorder.h"

/* Packets handed to the socket thread but not yet delivered; beyond this the socket thread is
 * not keeping up and frames are dropped at the source rather than queued without bound. */
#define MAX_PACKETS_IN_FLIGHT 60
/* While the source has no frame, retry at least this often even without a FRAMES note. */
#define STARVED_RETRY_US 250000

typedef struct control {
    struct control *next;
    fb_msg_type type;
    uint64_t conn_id;
    int has_id;
    int64_t id;
    char *text;
    fb_msg_transition transition;
    int chunks;
    uint64_t seed;
    fb_record_action record;
    fb_anchor_action anchor;
    char *data;
    size_t data_len;
    int width, height;             /* anchor image, as declared */
    char format[16];
    int64_t t_us;                  /* arrival */
} control;

struct fbd_session {
    atomic_int refs;
    char id[FBD_SESSION_ID_LEN + 1];
    char token[FBD_SESSION_TOKEN_LEN + 1];

    const fb_source_ops *ops;
    fb_source_params src;
    char *prompt, *model, *record_dir;
    fb_vp9enc_params enc_params;
    fb_ws_server *server;
    fbd_session_events events;
    void *hub_data;

    pthread_t thread;
    int thread_started, joined;
    pthread_mutex_t mu;
    pthread_cond_t cv;             /* CLOCK_MONOTONIC */
    control *ctl_head, *ctl_tail;  /* mailbox, under mu */
    int stop;                      /* under mu */

    int frame_ready;               /* under mu: the source has a frame again */
    int src_failed;                /* under mu: the source reported a failure */
    char src_failure[384];

    atomic_int kf_request;
    atomic_int in_flight;          /* packets posted, not yet delivered */
    int64_t start_us;

    /* counters for stats (written by the thread) */
    atomic_uint_least64_t frames, bytes, encode_ns, late;
    atomic_llong last_frame;
    atomic_int paused, recording;

    /* under stats_mu: the open source (for its figures) and the last acknowledged control */
    pthread_mutex_t stats_mu;
    fb_source *live_src;
    const char *lc_type;
    int64_t lc_chunk, lc_frame;
};

/* ------------------------------------------------------------------------------------------ */
/* recordings being written (process-wide, so /recordings does not serve half a file)          */

#define MAX_ACTIVE_RECORDINGS 1024
static pthread_mutex_t active_mu = PTHREAD_MUTEX_INITIALIZER;
static char active_names[MAX_ACTIVE_RECORDINGS][64];

static int active_add(const char *name) {
    pthread_mutex_lock(&active_mu);
    int ok = 0;
    for (int i = 0; i < MAX_ACTIVE_RECORDINGS; i++) {
        if (!active_names[i][0]) {
            snprintf(active_names[i], sizeof active_names[i], "%s", name);
            ok = 1;
            break;
        }
    }
    pthread_mutex_unlock(&active_mu);
    return ok;
}

static void active_remove(const char *name) {
    pthread_mutex_lock(&active_mu);
    for (int i = 0; i < MAX_ACTIVE_RECORDINGS; i++)
        if (strcmp(active_names[i], name) == 0) active_names[i][0] = '\0';
    pthread_mutex_unlock(&active_mu);
}

int fbd_recording_is_active(const char *name) {
    pthread_mutex_lock(&active_mu);
    int found = 0;
    for (int i = 0; i < MAX_ACTIVE_RECORDINGS && !found; i++)
        found = active_names[i][0] && strcmp(active_names[i], name) == 0;
    pthread_mutex_unlock(&active_mu);
    return found;
}

static int all_in(const char *s, size_t n, const char *set) {
    for (size_t i = 0; i < n; i++)
        if (!s[i] || !strchr(set, s[i])) return 0;
    return 1;
}

int fbd_recording_name_valid(const char *name) {
    /* <12 hex>-<8 digits>T<6 digits>Z[-N].webm */
    size_t n = strlen(name);
    if (n < 12 + 1 + 16 + 5 || strcmp(name + n - 5, ".webm") != 0) return 0;
    if (!all_in(name, 12, "0123456789abcdef") || name[12] != '-') return 0;
    const char *t = name + 13;
    if (!all_in(t, 8, "0123456789") || t[8] != 'T' || !all_in(t + 9, 6, "0123456789") ||
        t[15] != 'Z')
        return 0;
    const char *rest = t + 16, *end = name + n - 5;
    if (rest == end) return 1;
    if (*rest != '-' || end - rest < 2 || end - rest > 6) return 0;
    return all_in(rest + 1, (size_t)(end - rest - 1), "0123456789");
}

/* ------------------------------------------------------------------------------------------ */

static int64_t mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void random_hex(char *out, size_t n_chars) {
    unsigned char bytes[32];
    size_t n = (n_chars + 1) / 2, got = 0;
    while (got < n) {
        ssize_t r = getrandom(bytes + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            /* getrandom cannot fail on Linux >= 3.17 once the pool is ready; never fall back
             * to a guessable token silently. */
            abort();
        }
        got += (size_t)r;
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n_chars; i++)
        out[i] = hex[(bytes[i / 2] >> ((i & 1) ? 0 : 4)) & 15];
    out[n_chars] = '\0';
}

fbd_session *fbd_session_ref(fbd_session *s) {
    atomic_fetch_add(&s->refs, 1);
    return s;
}

static void free_control(control *c) {
    free(c->text);
    free(c->data);
    free(c);
}

void fbd_session_unref(fbd_session *s) {
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1) return;
    while (s->ctl_head) {
        control *c = s->ctl_head;
        s->ctl_head = c->next;
        free_control(c);
    }
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->stats_mu);
    free(s->prompt);
    free(s->model);
    free(s->record_dir);
    free(s);
}

const char *fbd_session_id(const fbd_session *s) { return s->id; }
const char *fbd_session_token(const fbd_session *s) { return s->token; }

int fbd_session_token_matches(const fbd_session *s, const char *token) {
    /* Every byte is compared whatever the input, so timing says nothing about the token. */
    size_t n = strnlen(token, FB_PROTO_MAX_ID_LEN + 1);
    unsigned diff = (unsigned)(n != FBD_SESSION_TOKEN_LEN);
    for (size_t i = 0; i < FBD_SESSION_TOKEN_LEN; i++) {
        unsigned char a = i < n ? (unsigned char)token[i] : 0;
        diff |= (unsigned)(a ^ (unsigned char)s->token[i]);
    }
    return diff == 0;
}

void fbd_session_get_counters(const fbd_session *s, fbd_session_counters *c) {
    c->frames = atomic_load(&s->frames);
    c->bytes = atomic_load(&s->bytes);
    c->encode_ns = atomic_load(&s->encode_ns);
    c->last_frame = atomic_load(&s->last_frame);
    c->late = atomic_load(&s->late);
    c->paused = atomic_load(&s->paused);
    c->recording = atomic_load(&s->recording);
    c->width = s->src.width;
    c->height = s->src.height;
    c->fps = s->src.fps;
    /* The lock is not part of the session's logical state: reading takes it too. */
    pthread_mutex_t *mu = (pthread_mutex_t *)&s->stats_mu;
    pthread_mutex_lock(mu);
    c->last_type = s->lc_type;
    c->last_chunk = s->lc_chunk;
    c->last_frame_of_control = s->lc_frame;
    c->has_engine = s->live_src && s->ops->get_stats;
    if (c->has_engine) s->ops->get_stats(s->live_src, &c->engine);
    else memset(&c->engine, 0, sizeof c->engine);
    pthread_mutex_unlock(mu);
}

void fbd_session_request_keyframe(fbd_session *s) { atomic_store(&s->kf_request, 1); }

void fbd_session_stop(fbd_session *s) {
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void fbd_session_join(fbd_session *s) {
    if (s->thread_started && !s->joined) {
        pthread_join(s->thread, NULL);
        s->joined = 1;
    }
}

int fbd_session_control_image(fbd_session *s, uint64_t conn_id, const fb_msg *m,
                              const fbd_anchor_image *img) {
    switch (m->type) {
    case FB_MSG_PROMPT: case FB_MSG_SEED: case FB_MSG_PAUSE: case FB_MSG_RESUME:
    case FB_MSG_RESET: case FB_MSG_RECORD: case FB_MSG_ANCHOR:
        break;
    default:
        return -1;
    }
    control *c = calloc(1, sizeof *c);
    if (!c) return -1;
    c->type = m->type;
    c->conn_id = conn_id;
    c->has_id = m->has_id;
    c->id = m->id;
    c->transition = m->transition;
    c->chunks = m->chunks;
    c->seed = m->seed;
    c->record = m->record;
    c->anchor = m->anchor;
    c->t_us = mono_us();
    if (m->text) {
        c->text = strdup(m->text);
        if (!c->text) { free_control(c); return -1; }
    }
    const char *data = img ? img->data : m->anchor_data;
    size_t data_len = img ? img->data_len : m->anchor_data_len;
    if (data) {
        c->data = malloc(data_len + 1);
        if (!c->data) { free_control(c); return -1; }
        memcpy(c->data, data, data_len);
        c->data[data_len] = '\0';
        c->data_len = data_len;
    }
    if (img) {
        c->width = img->width;
        c->height = img->height;
        if (img->format) snprintf(c->format, sizeof c->format, "%s", img->format);
    }
    pthread_mutex_lock(&s->mu);
    if (s->ctl_tail) s->ctl_tail->next = c;
    else s->ctl_head = c;
    s->ctl_tail = c;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int fbd_session_control(fbd_session *s, uint64_t conn_id, const fb_msg *m) {
    return fbd_session_control_image(s, conn_id, m, NULL);
}

/* ------------------------------------------------------------------------------------------ */
/* events to the service thread                                                                */

typedef enum ev_kind { EV_PACKET, EV_REPLY, EV_EXIT } ev_kind;

typedef struct session_event {
    ev_kind kind;
    fbd_session *s;
    fb_packet *packet;
    uint64_t conn_id;
    char text[];
} session_event;

static void run_event(void *arg) {
    session_event *e = arg;
    fbd_session *s = e->s;
    switch (e->kind) {
    case EV_PACKET:
        atomic_fetch_sub(&s->in_flight, 1);
        s->events.on_packet(s->hub_data, s, e->packet);
        fb_packet_unref(e->packet);
        break;
    case EV_REPLY:
        s->events.on_reply(s->hub_data, s, e->conn_id, e->text);
        break;
    case EV_EXIT:
        s->events.on_exit(s->hub_data, s, e->text);
        break;
    }
    fbd_session_unref(s);
    free(e);
}

static int post(fbd_session *s, ev_kind kind, fb_packet *p, uint64_t conn_id, const char *text) {
    size_t n = text ? strlen(text) : 0;
    session_event *e = malloc(sizeof *e + n + 1);
    if (!e) return -1;
    e->kind = kind;
    e->s = fbd_session_ref(s);
    e->packet = p ? fb_packet_ref(p) : NULL;
    e->conn_id = conn_id;
    memcpy(e->text, text ? text : "", n + 1);
    if (fb_ws_server_post(s->server, run_event, e) != 0) {
        fb_packet_unref(e->packet);
        fbd_session_unref(s);
        free(e);
        return -1;
    }
    return 0;
}

/* Posts a built JSON message (and frees it); NULL (out of memory) is ignored. */
static void reply(fbd_session *s, uint64_t conn_id, char *json) {
    if (!json) return;
    if (post(s, EV_REPLY, NULL, conn_id, json) != 0)
        FB_LOG_WARN("session", "%s: out of memory, a reply was lost", s->id);
    fb_proto_free(json);
}

static void reply_error(fbd_session *s, const control *c, fb_err code, const char *msg) {
    reply(s, c->conn_id, fb_proto_error(code, msg, c->has_id, c->id, 0));
}

static void set_last_control(fbd_session *s, const char *type, int64_t chunk, int64_t frame) {
    pthread_mutex_lock(&s->stats_mu);
    s->lc_type = type;
    s->lc_chunk = chunk;
    s->lc_frame = frame;
    pthread_mutex_unlock(&s->stats_mu);
}

/* Notes from the source, on whatever thread the source runs its work (engine workers). The
 * session is alive: a source sends notes only while open, and the thread closes it before
 * dropping its reference. */
static void on_source_note(void *ctx, const fb_source_note *n) {
    fbd_session *s = ctx;
    switch (n->kind) {
    case FB_SOURCE_NOTE_FRAMES:
        pthread_mutex_lock(&s->mu);
        s->frame_ready = 1;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        break;
    case FB_SOURCE_NOTE_ACK: {
        const char *type = fb_msg_type_name(n->to.type);
        fb_ack a = {.of = type, .has_id = n->to.has_id, .id = n->to.id, .has_frame = 1,
                    .frame = n->frame, .has_seed = n->has_seed, .seed = n->seed};
        if (n->to.type == FB_MSG_PROMPT) a.transition = fb_msg_transition_name(n->transition);
        set_last_control(s, type, n->chunk, n->frame);
        if (n->to.type == FB_MSG_PROMPT)
            FB_LOG_DEBUG("session", "%s: prompt from chunk %lld (frame %lld)", s->id,
                         (long long)n->chunk, (long long)n->frame);
        reply(s, n->to.conn_id, fbd_msg_ack_prompt(&a, 1, n->chunk, n->unknown_words));
        break;
    }
    case FB_SOURCE_NOTE_ERROR:
        reply(s, n->to.conn_id,
              fb_proto_error(n->code, n->message ? n->message : "refused", n->to.has_id,
                             n->to.id, 0));
        break;
    case FB_SOURCE_NOTE_FAILED:
        pthread_mutex_lock(&s->mu);
        if (!s->src_failed) {
            s->src_failed = 1;
            snprintf(s->src_failure, sizeof s->src_failure, "%s",
                     n->message ? n->message : "the source failed");
        }
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        break;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* the frame thread                                                                            */

typedef struct runner {
    fbd_session *s;
    fb_source *src;
    fb_vp9enc *enc;
    uint8_t *rgb;
    size_t rgb_size;
    int have_frame;                /* rgb holds a drawn frame (to repeat while paused) */
    uint32_t next_frame;           /* wire number of the next frame (= the encoder's count) */
    /* Timestamps follow the frame clock (base + k / fps) so they stay exact at any fps; a
     * repeated frame while paused moves the base by the real time that passed. A slowed
     * engine session keeps the nominal clock: its recording plays at the model's rate. */
    int64_t pts_base, last_pts, last_wall;
    uint64_t k_since_base;
    int paused;
    int first_logged;
    fb_recorder *rec;
    char rec_name[64];
    uint64_t rec_bytes_counted;
    char failure[512];
} runner;

/* The chunk the next frame belongs to, for acks made here (engine sources only). */
static int chunk_now(runner *r, int64_t *chunk) {
    if (!r->s->ops->get_stats) return 0;
    fb_source_stats st;
    r->s->ops->get_stats(r->src, &st);
    *chunk = st.next_chunk;
    return 1;
}

/* Acks a control that took effect at r->next_frame (pause, resume, record, the test
 * pattern's controls). */
static void ack_now(runner *r, const control *c, fb_ack *a) {
    int64_t chunk = -1;
    int has_chunk = chunk_now(r, &chunk);
    set_last_control(r->s, a->of, has_chunk ? chunk : -1, a->frame);
    reply(r->s, c->conn_id, fbd_msg_ack(a, has_chunk, chunk));
}

static void make_recording_name(runner *r, char *name, size_t n) {
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    snprintf(name, n, "%s-%s.webm", r->s->id, stamp);
    for (int k = 2; k < 1000; k++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", r->s->record_dir, name);
        if (access(path, F_OK) != 0) return;
        snprintf(name, n, "%s-%s-%d.webm", r->s->id, stamp, k);
    }
}

static void count_recording_bytes(runner *r) {
    fb_recorder_stats st;
    fb_recorder_get_stats(r->rec, &st);
    if (st.bytes > r->rec_bytes_counted) {
        atomic_fetch_add(&fbd_metrics_g.recording_bytes, st.bytes - r->rec_bytes_counted);
        r->rec_bytes_counted = st.bytes;
    }
}

/* Stops the recording; `failure` set means it stopped on an error (already known). */
static void recording_finish(runner *r, const char *failure) {
    fbd_session *s = r->s;
    char err[256] = "";
    uint64_t bytes = 0;
    count_recording_bytes(r);
    fb_recorder_status st = fb_recorder_close(r->rec, &bytes, err, sizeof err);
    r->rec = NULL;
    if (bytes > r->rec_bytes_counted)
        atomic_fetch_add(&fbd_metrics_g.recording_bytes, bytes - r->rec_bytes_counted);
    atomic_fetch_sub(&fbd_metrics_g.recordings_active, 1);
    atomic_store(&s->recording, 0);
    active_remove(r->rec_name);
    if (failure || st != FB_RECORDER_OK) {
        const char *why = failure ? failure : (err[0] ? err : fb_recorder_status_str(st));
        atomic_fetch_add(&fbd_metrics_g.recordings_failed, 1);
        FB_LOG_WARN("record", "%s: recording %s failed: %s", s->id, r->rec_name, why);
        reply(s, 0, fb_proto_recording("failed", r->rec_name, NULL, bytes, why));
    } else {
        char url[128];
        snprintf(url, sizeof url, "/recordings/%s", r->rec_name);
        FB_LOG_INFO("record", "%s: recording %s finished (%llu bytes)", s->id, r->rec_name,
                    (unsigned long long)bytes);
        reply(s, 0, fb_proto_recording("stopped", r->rec_name, url, bytes, NULL));
    }
}

static void recording_start(runner *r, const control *c) {
    fbd_session *s = r->s;
    if (r->rec) {
        char msg[128];
        snprintf(msg, sizeof msg, "already recording %s", r->rec_name);
        reply_error(s, c, FB_ERR_RECORD_FAILED, msg);
        return;
    }
    char name[64], path[4200], err[256] = "";
    make_recording_name(r, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", s->record_dir, name);
    /* The directory may have vanished since start-up. */
    (void)mkdir(s->record_dir, 0755);
    fb_recorder_params rp = fb_recorder_default_params();
    fb_recorder *rec = NULL;
    fb_recorder_status st =
        fb_recorder_open(path, s->src.width, s->src.height, s->src.fps, &rp, &rec, err, sizeof err);
    if (st != FB_RECORDER_OK) {
        char msg[320];
        snprintf(msg, sizeof msg, "cannot record: %s", err[0] ? err : fb_recorder_status_str(st));
        FB_LOG_WARN("record", "%s: %s", s->id, msg);
        atomic_fetch_add(&fbd_metrics_g.recordings_failed, 1);
        reply(s, 0, fb_proto_recording("failed", NULL, NULL, 0, msg));
        reply_error(s, c, FB_ERR_RECORD_FAILED, msg);
        return;
    }
    r->rec = rec;
    r->rec_bytes_counted = 0;
    snprintf(r->rec_name, sizeof r->rec_name, "%s", name);
    active_add(name);
    atomic_fetch_add(&fbd_metrics_g.recordings_active, 1);
    atomic_store(&s->recording, 1);
    fb_vp9enc_request_keyframe(r->enc);  /* the file must start at a keyframe */
    FB_LOG_INFO("record", "%s: recording to %s (%s)", s->id, name, fb_recorder_backend(rec));
    fb_ack a = {.of = "record", .has_id = c->has_id, .id = c->id, .has_frame = 1,
                .frame = r->next_frame};
    ack_now(r, c, &a);
    reply(s, 0, fb_proto_recording("started", name, NULL, 0, NULL));
}

static void apply_control(runner *r, const control *c) {
    fbd_session *s = r->s;
    fb_ack a = {.of = fb_msg_type_name(c->type), .has_id = c->has_id, .id = c->id,
                .has_frame = 1, .frame = r->next_frame};
    fb_source_control sc;
    memset(&sc, 0, sizeof sc);
    sc.to.conn_id = c->conn_id;
    sc.to.has_id = c->has_id;
    sc.to.id = c->id;
    sc.to.type = c->type;
    sc.t_us = c->t_us;
    char err[512] = "";
    switch (c->type) {
    case FB_MSG_PAUSE:
    case FB_MSG_RESUME:
        r->paused = c->type == FB_MSG_PAUSE;
        atomic_store(&s->paused, r->paused);
        if (s->ops->set_paused) s->ops->set_paused(r->src, r->paused);
        ack_now(r, c, &a);
        return;
    case FB_MSG_RECORD:
        if (c->record == FB_RECORD_START) {
            recording_start(r, c);
        } else if (!r->rec) {
            reply_error(s, c, FB_ERR_RECORD_FAILED, "not recording");
        } else {
            ack_now(r, c, &a);
            recording_finish(r, NULL);
        }
        return;
    case FB_MSG_PROMPT:
        sc.kind = FB_SOURCE_CTL_PROMPT;
        sc.text = c->text;
        sc.transition = c->transition;
        sc.chunks = c->chunks;
        a.transition = fb_msg_transition_name(c->transition);
        break;
    case FB_MSG_SEED:
        sc.kind = FB_SOURCE_CTL_SEED;
        sc.seed = c->seed;
        a.has_seed = 1;
        a.seed = c->seed;
        break;
    case FB_MSG_RESET:
        sc.kind = FB_SOURCE_CTL_RESET;
        break;
    case FB_MSG_ANCHOR:
        sc.kind = c->anchor == FB_ANCHOR_PIN     ? FB_SOURCE_CTL_ANCHOR_PIN
                  : c->anchor == FB_ANCHOR_CLEAR ? FB_SOURCE_CTL_ANCHOR_CLEAR
                                                 : FB_SOURCE_CTL_ANCHOR_IMAGE;
        sc.data = c->data;
        sc.data_len = c->data_len;
        sc.width = c->width;
        sc.height = c->height;
        sc.format = c->format[0] ? c->format : NULL;
        break;
    default:
        return;
    }
    fb_source_status st = s->ops->control(r->src, &sc, err, sizeof err);
    switch (st) {
    case FB_SOURCE_OK:
        if (c->type == FB_MSG_PROMPT)
            FB_LOG_DEBUG("session", "%s: prompt from frame %u: %s", s->id, r->next_frame, c->text);
        ack_now(r, c, &a);
        break;
    case FB_SOURCE_PENDING:  /* the source's ACK/ERROR note answers */
        break;
    case FB_SOURCE_UNSUPPORTED:
        reply_error(s, c, FB_ERR_UNSUPPORTED, err[0] ? err : "not supported by this source");
        break;
    case FB_SOURCE_BAD_VALUE:
        reply_error(s, c, FB_ERR_BAD_VALUE, err[0] ? err : "bad value");
        break;
    default:
        reply_error(s, c, FB_ERR_INTERNAL, err[0] ? err : "source error");
        break;
    }
}

/* Draws (unless repeating the last picture), encodes and hands out one frame. Returns 0, 1
 * when the source has no frame ready (nothing was produced), or -1 when the session must end
 * (r->failure says why). */
static int produce(runner *r, int repeat) {
    fbd_session *s = r->s;
    char err[384] = "";
    if (!repeat) {
        fb_source_status st = s->ops->next_frame(r->src, r->rgb, r->next_frame, err, sizeof err);
        if (st == FB_SOURCE_AGAIN) return 1;
        if (st != FB_SOURCE_OK) {
            snprintf(r->failure, sizeof r->failure, "source failed: %s", err);
            return -1;
        }
        r->have_frame = 1;
    }
    int64_t now = mono_us(), pts;
    if (r->last_pts < 0) {
        pts = 0;
    } else if (repeat) {
        int64_t step = now - r->last_wall, period = 1000000 / s->src.fps;
        pts = r->last_pts + (step > period ? step : period);
        r->pts_base = pts;
        r->k_since_base = 0;
    } else {
        r->k_since_base++;
        pts = r->pts_base + (int64_t)(r->k_since_base * 1000000u / (uint64_t)s->src.fps);
    }
    int asked = atomic_exchange(&s->kf_request, 0);
    if (asked) fb_vp9enc_request_keyframe(r->enc);
    fb_packet *p = NULL;
    fb_vp9enc_status st = fb_vp9enc_encode_rgb(r->enc, r->rgb, s->src.width * 3, pts, &p);
    int64_t t1 = mono_us();
    if (st == FB_VP9ENC_OK || st == FB_VP9ENC_ERR_NOMEM) {
        r->next_frame++;  /* the encoder counted the frame either way */
        r->last_pts = pts;
        r->last_wall = now;
    }
    if (st == FB_VP9ENC_ERR_NOMEM) {
        FB_LOG_WARN("session", "%s: out of memory while encoding; frame lost", s->id);
        fb_vp9enc_request_keyframe(r->enc);
        return 0;
    }
    if (st != FB_VP9ENC_OK) {
        snprintf(r->failure, sizeof r->failure, "encoder failed: %s", fb_vp9enc_error(r->enc));
        return -1;
    }
    uint64_t ns = (uint64_t)(t1 - now) * 1000;
    fbd_metrics_observe_encode(ns);
    atomic_fetch_add(&s->encode_ns, ns);
    /* While paused only requests make frames: keep asking until the keyframe really comes
     * (the encoder spaces forced keyframes by timestamp). */
    if (repeat && asked && (!p || !p->is_key)) atomic_store(&s->kf_request, 1);
    if (!p) return 0;
    p->produced_us = t1;
    atomic_fetch_add(&s->frames, 1);
    atomic_fetch_add(&s->bytes, p->payload_size);
    atomic_store(&s->last_frame, (long long)p->frame_no);
    atomic_fetch_add(&fbd_metrics_g.frames_encoded, 1);
    if (!r->first_logged) {
        r->first_logged = 1;
        FB_LOG_INFO("session", "%s: first frame %.1f ms after start", s->id,
                    (double)(t1 - s->start_us) / 1000.0);
    }

    if (r->rec) {
        if (fb_recorder_push(r->rec, p) != FB_RECORDER_OK || fb_recorder_failed(r->rec)) {
            char msg[256] = "";
            fb_recorder_get_status(r->rec, msg, sizeof msg);
            recording_finish(r, msg[0] ? msg : "recording failed");
        } else {
            count_recording_bytes(r);
        }
    }
    if (atomic_load(&s->in_flight) >= MAX_PACKETS_IN_FLIGHT) {
        /* The socket thread is far behind: drop here and let the clients resync on a key. */
        atomic_fetch_add(&fbd_metrics_g.frames_backlog, 1);
        fb_vp9enc_request_keyframe(r->enc);
    } else {
        atomic_fetch_add(&s->in_flight, 1);
        if (post(s, EV_PACKET, p, 0, NULL) != 0) atomic_fetch_sub(&s->in_flight, 1);
    }
    fb_packet_unref(p);
    return 0;
}

static void abs_time(struct timespec *ts, int64_t us) {
    ts->tv_sec = (time_t)(us / 1000000);
    ts->tv_nsec = (long)(us % 1000000) * 1000;
}

static void run(runner *r) {
    fbd_session *s = r->s;
    const int64_t base_period = 1000000 / s->src.fps;
    int64_t due = mono_us();
    int starved = 0;               /* the source had no frame at the last try */
    int64_t retry_at = 0;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        for (;;) {
            if (s->stop || s->ctl_head || s->src_failed) break;
            int64_t now = mono_us();
            int want_repeat = r->paused && r->have_frame && atomic_load(&s->kf_request);
            if (want_repeat) break;
            if (!r->paused && now >= due && (!starved || s->frame_ready || now >= retry_at))
                break;
            /* Paused: poll now and then for keyframe requests (joins). */
            int64_t until = r->paused ? now + 200000 : (now >= due ? retry_at : due);
            struct timespec ts;
            abs_time(&ts, until);
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        }
        int stop = s->stop;
        int failed = s->src_failed;
        if (failed) snprintf(r->failure, sizeof r->failure, "source failed: %s", s->src_failure);
        s->frame_ready = 0;
        control *list = s->ctl_head;
        s->ctl_head = s->ctl_tail = NULL;
        pthread_mutex_unlock(&s->mu);

        if (failed && !stop) {
            while (list) {
                control *c = list;
                list = c->next;
                free_control(c);
            }
            break;
        }
        r->failure[0] = '\0';
        if (list) {
            int was_paused = r->paused;
            while (list) {
                control *c = list;
                list = c->next;
                if (!stop) apply_control(r, c);
                free_control(c);
            }
            if (was_paused && !r->paused) {
                due = mono_us();  /* resume: no catch-up burst */
                starved = 0;
            }
            continue;
        }
        if (stop) break;
        if (r->paused) {
            /* A joiner while paused still gets a picture: the last frame, as a keyframe. */
            if (produce(r, 1) < 0) break;
            continue;
        }
        int rc = produce(r, 0);
        if (rc < 0) break;
        if (rc == 1) {
            /* Nothing buffered: wait for the source's FRAMES note (or retry now and then). The
             * slots that pass meanwhile are counted below once a frame comes. */
            starved = 1;
            retry_at = mono_us() + STARVED_RETRY_US;
            continue;
        }
        double pace = s->ops->pace ? s->ops->pace(r->src) : 1.0;
        int64_t period = (int64_t)((double)base_period * (pace > 1.0 ? pace : 1.0));
        due += period;
        int64_t now = mono_us();
        if (now - due >= period) {
            /* Late by at least a frame: count the missed slots and start afresh from now
             * instead of bursting to catch up. Waiting for the very first frame (an engine
             * session's first chunk) is start-up, not lateness. */
            uint64_t missed = (uint64_t)((now - due) / period);
            if (r->next_frame > 1) {
                atomic_fetch_add(&fbd_metrics_g.frames_late, missed);
                atomic_fetch_add(&s->late, missed);
                if (starved) atomic_fetch_add(&fbd_metrics_g.frames_starved, missed);
            }
            due = now;
        }
        starved = 0;
    }
}

static void *session_main(void *arg) {
    fbd_session *s = arg;
    runner r;
    memset(&r, 0, sizeof r);
    r.s = s;
    r.last_pts = -1;
    char err[512] = "";

    s->src.notify = on_source_note;
    s->src.notify_ctx = s;
    r.src = s->ops->open(&s->src, err, sizeof err);
    s->src.engine = NULL;  /* the source owns it now (or closed it) */
    if (!r.src) {
        snprintf(r.failure, sizeof r.failure, "cannot open the %s source: %s", s->ops->name, err);
        goto out;
    }
    pthread_mutex_lock(&s->stats_mu);
    s->live_src = r.src;
    pthread_mutex_unlock(&s->stats_mu);
    if (fb_vp9enc_new(&s->enc_params, &r.enc, err, sizeof err) != FB_VP9ENC_OK) {
        snprintf(r.failure, sizeof r.failure, "cannot start the VP9 encoder: %s", err);
        goto out;
    }
    r.rgb_size = (size_t)s->src.width * (size_t)s->src.height * 3;
    r.rgb = malloc(r.rgb_size);
    if (!r.rgb) {
        snprintf(r.failure, sizeof r.failure, "out of memory for %dx%d frames", s->src.width,
                 s->src.height);
        goto out;
    }
    run(&r);
out:
    if (r.rec) recording_finish(&r, NULL);
    fb_vp9enc_free(r.enc);
    pthread_mutex_lock(&s->stats_mu);
    s->live_src = NULL;
    pthread_mutex_unlock(&s->stats_mu);
    /* Closing the engine source frees its stream and KV share at once. */
    if (r.src) s->ops->close(r.src);
    free(r.rgb);
    if (r.failure[0]) {
        atomic_fetch_add(&fbd_metrics_g.sessions_failed, 1);
        FB_LOG_ERROR("session", "%s: %s", s->id, r.failure);
    }
    if (post(s, EV_EXIT, NULL, 0, r.failure) != 0)
        FB_LOG_ERROR("session", "%s: out of memory: cannot report the end", s->id);
    fbd_session_unref(s);
    return NULL;
}

static char *dup_str(const char *s) { return s ? strdup(s) : NULL; }

int fbd_session_start(const fbd_session_params *p, fbd_session **out, char *err, size_t n) {
    *out = NULL;
    fbd_session *s = calloc(1, sizeof *s);
    if (!s) {
        fbd_gen_close(p->src.engine);
        snprintf(err, n, "out of memory");
        return -1;
    }
    atomic_init(&s->refs, 1);
    atomic_init(&s->last_frame, -1);
    random_hex(s->id, FBD_SESSION_ID_LEN);
    random_hex(s->token, FBD_SESSION_TOKEN_LEN);
    s->ops = p->source;
    s->src = p->src;
    s->prompt = dup_str(p->src.prompt ? p->src.prompt : "");
    s->model = dup_str(p->src.model);
    s->record_dir = dup_str(p->record_dir ? p->record_dir : ".");
    s->src.prompt = s->prompt;
    s->src.model = s->model;
    s->enc_params = p->enc;
    s->server = p->server;
    s->events = p->events;
    s->hub_data = p->hub_data;
    s->start_us = mono_us();
    s->lc_chunk = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->stats_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (!s->prompt || !s->record_dir || (p->src.model && !s->model)) {
        fbd_gen_close(s->src.engine);
        fbd_session_unref(s);
        snprintf(err, n, "out of memory");
        return -1;
    }
    fbd_session_ref(s);  /* the thread's reference, dropped when it ends */
    int rc = pthread_create(&s->thread, NULL, session_main, s);
    if (rc != 0) {
        fbd_gen_close(s->src.engine);
        fbd_session_unref(s);
        fbd_session_unref(s);
        snprintf(err, n, "cannot start a session thread: %s", strerror(rc));
        return -1;
    }
    s->thread_started = 1;
    atomic_fetch_add(&fbd_metrics_g.sessions_started, 1);
    *out = s;
    return 0;
}
