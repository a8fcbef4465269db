/* daemon/scheduler.c - model, workers, admission and playback buffers (see scheduler.h).
 *
 * Locking: one mutex per scheduler guards the gen list, every gen's ring, control queue,
 * flags and figures. It is never held during engine calls or callbacks: a worker marks the
 * gens it takes `busy`, drops the lock, runs the engine, and takes the lock again to hand the
 * frames over. fbd_gen_close waits (on the same condition variable the workers sleep on) until
 * its gen is no longer busy, so a gen is never freed under a worker.
 */
#include "daemon/scheduler.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/log.h"
#include "daemon/metrics.h"
#include "engine/engine.h"

/* Sessions are admitted at full rate while the engine is busy at most this fraction of the
 * time; the rest absorbs jitter (other processes, encoder threads, prompt encodes). */
#define HEADROOM 0.9
/* The buffer always covers at least this much playback before a chunk is due. */
#define MIN_LEAD_MS 150.0
/* The chunk-time estimate is the median of this many recent chunks: robust against the odd
 * slow chunk (another process, a prompt encode) that would otherwise slow every session. */
#define EST_WINDOW 31
#define MAX_BATCH 64
#define CALIBRATION_CHUNKS 3

typedef struct pending {
    struct pending *next;
    fbd_gen_ctl c;               /* text and rgb point at the copies below */
    char *text;
    uint8_t *rgb;
    char *unknown;
    int n_unknown;
} pending;

typedef struct frame_tag {
    int64_t chunk;
    int64_t prompt_t_us;         /* arrival of the prompt change this frame is the first of */
} frame_tag;

struct fbd_gen {
    fbd_sched *sc;
    fbd_gen *prev, *next;
    fbd_gen_notify_fn notify;
    void *notify_ctx;
    int attached, closing, busy, paused, failed;
    char failure[384];

    /* worker side (only the worker holding the gen busy touches these) */
    char *prompt;                /* the prompt in effect as far as controls go (test hook) */
    uint64_t seed;
    fb_stream *stream;
    int64_t prompt_t_pending;    /* a prompt was applied: tag its first chunk with this */
    uint8_t *stage;              /* one chunk of RGB24 out of the engine */

    /* under the lock */
    pending *ctl_head, *ctl_tail;
    uint8_t *ring;
    frame_tag *tags;
    int cap, head, count;
    uint32_t next_wire;          /* wire number the next popped frame will get */
    int64_t next_chunk;          /* chunk the engine produces next */
    int64_t last_chunk;          /* chunk of the last popped frame */
    int64_t starve_since;        /* when pop first found the ring empty (0: not starving) */
    int want_frames_note;
    int kv_used;
    uint64_t frames_generated, chunks_generated;
    double chunk_ms;
    double prompt_latency_ms;
};

struct fbd_sched {
    fb_model *m;
    fb_model_info info;
    fbd_sched_params p;
    int max_chunk_frames;
    double period_ms;
    int kv_streams;
    int cores;
    int slow_ms;                 /* test hook */
    char fail_word[128];         /* test hook */

    pthread_mutex_t mu;
    pthread_cond_t cv;           /* CLOCK_MONOTONIC; workers wait for work, close for !busy */
    fbd_gen *gens;
    int n_gens;
    int streams_open;
    int stop;
    double est_ms;               /* running estimate of one stream's chunk */
    double est_samples[EST_WINDOW];
    int n_samples, next_sample;
    pthread_t *threads;
    int n_threads;
};

static int64_t mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static int contains_word(const char *text, const char *word) {
    return word[0] && text && strstr(text, word) != NULL;
}

/* ---- figures (under the lock) ------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Adds one chunk's time and recomputes the estimate (under the lock). */
static void add_sample_locked(fbd_sched *sc, double ms) {
    sc->est_samples[sc->next_sample] = ms;
    sc->next_sample = (sc->next_sample + 1) % EST_WINDOW;
    if (sc->n_samples < EST_WINDOW) sc->n_samples++;
    double sorted[EST_WINDOW];
    memcpy(sorted, sc->est_samples, (size_t)sc->n_samples * sizeof *sorted);
    qsort(sorted, (size_t)sc->n_samples, sizeof *sorted, cmp_double);
    sc->est_ms = sorted[sc->n_samples / 2];
    if (sc->est_ms < 0.01) sc->est_ms = 0.01;
}

/* Machine time one session costs per chunk: the engine's chunk, plus encoding its frames to
 * VP9 (on the session threads, spread over the cores), from the daemon's running figures. */
static double encode_ms_per_chunk(const fbd_sched *sc) {
    uint64_t n = atomic_load_explicit(&fbd_metrics_g.encode_count, memory_order_relaxed);
    uint64_t ns = atomic_load_explicit(&fbd_metrics_g.encode_ns_sum, memory_order_relaxed);
    if (n < 16) return 0;
    return (double)ns / (double)n / 1e6 * sc->info.frames_per_chunk / sc->cores;
}

static double cost_ms(const fbd_sched *sc) { return sc->est_ms + encode_ms_per_chunk(sc); }

static int active_locked(const fbd_sched *sc) {
    int n = 0;
    for (const fbd_gen *g = sc->gens; g; g = g->next)
        n += g->attached && !g->closing && !g->paused && !g->failed;
    return n;
}

static double slowdown_for(const fbd_sched *sc, int active) {
    double u = (double)active * cost_ms(sc) / ((double)sc->p.workers * sc->period_ms);
    return u > HEADROOM ? u / HEADROOM : 1.0;
}

static int capacity_locked(const fbd_sched *sc) {
    double c = floor(HEADROOM * sc->p.workers * sc->period_ms / cost_ms(sc));
    /* One session always runs, slowed if the machine cannot make even one at full rate:
     * refusing everybody would make the daemon useless on a slow machine. */
    return c < 1 ? 1 : (c > 1e6 ? 1000000 : (int)c);
}

/* Frames a ring must hold before its next chunk is due: enough playback to cover the chunks
 * queued ahead of it on the workers, with margin; never more than one chunk. */
static int low_water_locked(const fbd_sched *sc, int active, double slowdown) {
    int rounds = (active + sc->p.workers - 1) / sc->p.workers;
    if (rounds < 1) rounds = 1;
    double lead_ms = MIN_LEAD_MS + 1.5 * sc->est_ms * rounds;
    double fps = sc->info.fps / slowdown;
    int lw = (int)ceil(lead_ms * fps / 1000.0);
    if (lw > sc->info.frames_per_chunk) lw = sc->info.frames_per_chunk;
    return lw < 1 ? 1 : lw;
}

/* ---- start / stop ------------------------------------------------------------------------ */

static void *worker_main(void *arg);

/* Runs a few chunks on a throw-away stream: proves the model runs and gives admission its
 * first chunk time. */
static int calibrate(fbd_sched *sc, char *err, size_t n) {
    fb_stream *st = NULL;
    char e[512];
    if (fb_stream_open(sc->m, "calibration", 1, &st, e, sizeof e) != FB_OK) {
        snprintf(err, n, "cannot open a stream on the model: %s", e);
        return -1;
    }
    uint8_t *rgb = malloc(sc->info.chunk_rgb_bytes);
    if (!rgb) {
        fb_stream_free(st);
        snprintf(err, n, "out of memory");
        return -1;
    }
    double sum = 0;
    int counted = 0;
    for (int i = 0; i < CALIBRATION_CHUNKS; i++) {
        int nf = 0;
        fb_chunk_info ci;
        if (sc->slow_ms) sleep_ms(sc->slow_ms);
        if (fb_stream_next_chunk(st, rgb, sc->info.chunk_rgb_bytes, &nf, &ci) != FB_OK) {
            snprintf(err, n, "the model failed on its first chunks: %s", fb_stream_errmsg(st));
            free(rgb);
            fb_stream_free(st);
            return -1;
        }
        if (i > 0 || CALIBRATION_CHUNKS == 1) {  /* chunk 0 also encodes the prompt */
            sum += ci.ms_total + sc->slow_ms;
            counted++;
        }
    }
    free(rgb);
    fb_stream_free(st);
    add_sample_locked(sc, sum / counted);  /* no other thread exists yet */
    return 0;
}

int fbd_sched_start(const fbd_sched_params *p, fbd_sched **out, char *err, size_t n) {
    *out = NULL;
    fbd_sched *sc = calloc(1, sizeof *sc);
    if (!sc) {
        snprintf(err, n, "out of memory");
        return FBD_SCHED_ERR;
    }
    sc->p = *p;
    if (sc->p.workers < 1) sc->p.workers = 1;
    if (sc->p.batch < 1) sc->p.batch = 1;
    if (sc->p.batch > MAX_BATCH) sc->p.batch = MAX_BATCH;
    if (sc->p.max_sessions < 1) sc->p.max_sessions = 1;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    sc->cores = cores > 0 ? (int)cores : 1;
    const char *slow = getenv("FLIPBOOK_ENGINE_SLOW_MS");
    if (slow && *slow) sc->slow_ms = atoi(slow) > 0 ? atoi(slow) : 0;
    const char *word = getenv("FLIPBOOK_ENGINE_FAIL_ON_PROMPT");
    if (word) snprintf(sc->fail_word, sizeof sc->fail_word, "%s", word);

    fb_model_params mp = fb_model_default_params();
    mp.n_threads = sc->p.threads;
    mp.kv_budget_bytes = sc->p.kv_budget;
    mp.max_streams = sc->p.max_sessions;
    /* one execution context per worker, so the workers compute side by side; a batch as large
     * as the scheduler makes */
    mp.max_parallel_calls = sc->p.workers;
    mp.max_batch = sc->p.batch;
    char e[1024];
    fb_status st = fb_model_load(p->model, &mp, &sc->m, e, sizeof e);
    if (st != FB_OK) {
        int rc = FBD_SCHED_ERR;
        if (st == FB_E_NOT_FOUND) rc = strcmp(p->model, "default") == 0 ? FBD_SCHED_NOT_INSTALLED
                                                                         : FBD_SCHED_NOT_FOUND;
        snprintf(err, n, "%s", e);
        free(sc);
        return rc;
    }
    fb_model_get_info(sc->m, &sc->info);
    sc->max_chunk_frames = (int)(sc->info.chunk_rgb_bytes / sc->info.frame_bytes);
    if (sc->info.fps <= 0 || sc->info.frames_per_chunk <= 0 || sc->max_chunk_frames <= 0) {
        snprintf(err, n, "%s: the model reports %g fps and %d frames per chunk", p->model,
                 sc->info.fps, sc->info.frames_per_chunk);
        fb_model_free(sc->m);
        free(sc);
        return FBD_SCHED_ERR;
    }
    sc->period_ms = 1000.0 * sc->info.frames_per_chunk / sc->info.fps;
    if (calibrate(sc, err, n) != 0) {
        fb_model_free(sc->m);
        free(sc);
        return FBD_SCHED_ERR;
    }
    sc->kv_streams = fb_model_streams_available(sc->m);
    pthread_mutex_init(&sc->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sc->cv, &ca);
    pthread_condattr_destroy(&ca);
    sc->threads = calloc((size_t)sc->p.workers, sizeof *sc->threads);
    if (!sc->threads) {
        snprintf(err, n, "out of memory");
        fbd_sched_stop(sc);
        return FBD_SCHED_ERR;
    }
    for (int i = 0; i < sc->p.workers; i++) {
        int rc = pthread_create(&sc->threads[i], NULL, worker_main, sc);
        if (rc != 0) {
            snprintf(err, n, "cannot start an engine worker thread: %s", strerror(rc));
            fbd_sched_stop(sc);
            return FBD_SCHED_ERR;
        }
        sc->n_threads++;
    }
    *out = sc;
    return FBD_SCHED_OK;
}

static void free_pending(pending *q) {
    while (q) {
        pending *next = q->next;
        free(q->text);
        free(q->rgb);
        free(q->unknown);
        free(q);
        q = next;
    }
}

static void gen_free(fbd_gen *g) {
    if (!g) return;
    fb_stream_free(g->stream);
    free_pending(g->ctl_head);
    free(g->prompt);
    free(g->stage);
    free(g->ring);
    free(g->tags);
    free(g);
}

void fbd_sched_stop(fbd_sched *sc) {
    if (!sc) return;
    pthread_mutex_lock(&sc->mu);
    sc->stop = 1;
    pthread_cond_broadcast(&sc->cv);
    pthread_mutex_unlock(&sc->mu);
    for (int i = 0; i < sc->n_threads; i++) pthread_join(sc->threads[i], NULL);
    free(sc->threads);
    while (sc->gens) {  /* normally none: every session closed its gen */
        fbd_gen *g = sc->gens;
        sc->gens = g->next;
        gen_free(g);
    }
    pthread_cond_destroy(&sc->cv);
    pthread_mutex_destroy(&sc->mu);
    fb_model_free(sc->m);
    free(sc);
}

void fbd_sched_get_info(fbd_sched *sc, fbd_sched_info *o) {
    memset(o, 0, sizeof *o);
    snprintf(o->model_name, sizeof o->model_name, "%s", sc->info.name ? sc->info.name : "");
    o->prompts_json = sc->info.prompts_json;
    snprintf(o->backend, sizeof o->backend, "%s", sc->info.backend ? sc->info.backend : "cpu");
    o->width = sc->info.width;
    o->height = sc->info.height;
    o->fps = sc->info.fps;
    o->frames_per_chunk = sc->info.frames_per_chunk;
    o->first_chunk_frames = sc->info.first_chunk_frames;
    o->anchor_frames = sc->info.anchor_frames;
    o->window_frames = sc->info.window_frames;
    o->kv_streams = sc->kv_streams;
    o->period_ms = sc->period_ms;
    o->weight_bytes = sc->info.weight_bytes;
    o->kv_bytes_per_stream = sc->info.kv_bytes_per_stream;
    o->stream_bytes = sc->info.stream_bytes;
    pthread_mutex_lock(&sc->mu);
    o->chunk_ms = sc->est_ms;
    o->encode_ms = encode_ms_per_chunk(sc);
    o->capacity = capacity_locked(sc);
    o->sessions = sc->n_gens;
    o->active = active_locked(sc);
    o->slowdown = slowdown_for(sc, o->active);
    pthread_mutex_unlock(&sc->mu);
}

int fbd_sched_check_prompt(fbd_sched *sc, const char *prompt, char *unknown, size_t un,
                           int *n_unknown, char *err, size_t en) {
    char buf[1024];
    int nu = 0;
    fb_status st = fb_model_unknown_words(sc->m, prompt ? prompt : "", buf, sizeof buf, &nu);
    if (st != FB_OK) {
        /* On failure the engine writes its reason where the words would go. */
        snprintf(err, en, "%s", buf[0] ? buf : fb_status_str(st));
        return -1;
    }
    if (unknown && un) snprintf(unknown, un, "%s", buf);
    if (n_unknown) *n_unknown = nu;
    return 0;
}

/* ---- admission --------------------------------------------------------------------------- */

fbd_gen *fbd_sched_admit(fbd_sched *sc, const char *prompt, uint64_t seed, int *why, char *msg,
                         size_t n) {
    *why = 0;
    char e[512];
    if (fbd_sched_check_prompt(sc, prompt, NULL, 0, NULL, e, sizeof e) != 0) {
        *why = FBD_ADMIT_BAD_PROMPT;
        snprintf(msg, n, "prompt: %s", e);
        return NULL;
    }
    fbd_gen *g = calloc(1, sizeof *g);
    if (g) {
        g->sc = sc;
        g->cap = sc->info.frames_per_chunk + sc->max_chunk_frames;
        g->ring = malloc((size_t)g->cap * sc->info.frame_bytes);
        g->tags = calloc((size_t)g->cap, sizeof *g->tags);
        g->stage = malloc(sc->info.chunk_rgb_bytes);
        g->prompt = strdup(prompt);
        g->seed = seed;
        g->last_chunk = -1;
        g->prompt_latency_ms = -1;
    }
    if (!g || !g->ring || !g->tags || !g->stage || !g->prompt) {
        gen_free(g);
        *why = FBD_ADMIT_NO_MEMORY;
        snprintf(msg, n, "out of memory for a new session");
        return NULL;
    }
    pthread_mutex_lock(&sc->mu);
    if (sc->n_gens >= sc->kv_streams) {
        *why = FBD_ADMIT_REFUSED_KV;
        snprintf(msg, n, "the engine's KV cache has room for %d session%s and all are in use; "
                 "try again later", sc->kv_streams, sc->kv_streams == 1 ? "" : "s");
    } else if (sc->p.overcommit == FBD_OVERCOMMIT_REFUSE && sc->n_gens >= capacity_locked(sc)) {
        int cap = capacity_locked(sc);
        *why = FBD_ADMIT_REFUSED_COMPUTE;
        snprintf(msg, n, "this machine can generate %d session%s at full frame rate (a chunk "
                 "takes %.0f ms with its encoding, each session needs one every %.0f ms) and %d "
                 "%s running; try again later, or start flipbookd with --overcommit slow to "
                 "share it", cap, cap == 1 ? "" : "s", cost_ms(sc), sc->period_ms, sc->n_gens,
                 sc->n_gens == 1 ? "is" : "are");
    } else {
        g->next = sc->gens;
        if (sc->gens) sc->gens->prev = g;
        sc->gens = g;
        sc->n_gens++;
    }
    pthread_mutex_unlock(&sc->mu);
    if (*why) {
        gen_free(g);
        return NULL;
    }
    return g;
}

/* ---- the session's side ------------------------------------------------------------------ */

void fbd_gen_attach(fbd_gen *g, fbd_gen_notify_fn fn, void *ctx) {
    fbd_sched *sc = g->sc;
    pthread_mutex_lock(&sc->mu);
    g->notify = fn;
    g->notify_ctx = ctx;
    g->attached = 1;
    pthread_cond_broadcast(&sc->cv);
    pthread_mutex_unlock(&sc->mu);
}

int fbd_gen_pop(fbd_gen *g, uint8_t *rgb, uint32_t frame_no, char *err, size_t n) {
    fbd_sched *sc = g->sc;
    int64_t now = mono_us();
    pthread_mutex_lock(&sc->mu);
    if (g->failed) {
        snprintf(err, n, "%s", g->failure);
        pthread_mutex_unlock(&sc->mu);
        return -1;
    }
    if (g->count == 0) {
        if (!g->starve_since) g->starve_since = now;
        g->want_frames_note = 1;
        pthread_cond_broadcast(&sc->cv);
        pthread_mutex_unlock(&sc->mu);
        return 0;
    }
    size_t fb = sc->info.frame_bytes;
    memcpy(rgb, g->ring + (size_t)g->head * fb, fb);
    frame_tag t = g->tags[g->head];
    g->head = (g->head + 1) % g->cap;
    g->count--;
    g->next_wire = frame_no + 1;
    g->last_chunk = t.chunk;
    g->starve_since = 0;
    if (t.prompt_t_us) g->prompt_latency_ms = (double)(now - t.prompt_t_us) / 1000.0;
    int active = active_locked(sc);
    int due = g->count < low_water_locked(sc, active, slowdown_for(sc, active));
    if (due) pthread_cond_broadcast(&sc->cv);
    pthread_mutex_unlock(&sc->mu);
    return 1;
}

int fbd_gen_control(fbd_gen *g, const fbd_gen_ctl *c, char *err, size_t n) {
    fbd_sched *sc = g->sc;
    pending *q = calloc(1, sizeof *q);
    if (!q) {
        snprintf(err, n, "out of memory");
        return -1;
    }
    q->c = *c;
    q->c.text = NULL;
    q->c.rgb = NULL;
    switch (c->kind) {
    case FBD_GEN_PROMPT: {
        char unknown[1024];
        int nu = 0;
        if (fbd_sched_check_prompt(sc, c->text, unknown, sizeof unknown, &nu, err, n) != 0) {
            free_pending(q);
            return -1;
        }
        q->text = strdup(c->text);
        q->unknown = strdup(unknown);
        q->n_unknown = nu;
        if (!q->text || !q->unknown) {
            free_pending(q);
            snprintf(err, n, "out of memory");
            return -1;
        }
        q->c.text = q->text;
        break;
    }
    case FBD_GEN_IMAGE: {
        if (c->width != sc->info.width || c->height != sc->info.height) {
            snprintf(err, n, "the anchor image is %dx%d; this model takes %dx%d", c->width,
                     c->height, sc->info.width, sc->info.height);
            free_pending(q);
            return -1;
        }
        size_t bytes = (size_t)c->width * (size_t)c->height * 3;
        q->rgb = malloc(bytes);
        if (!q->rgb) {
            free_pending(q);
            snprintf(err, n, "out of memory");
            return -1;
        }
        memcpy(q->rgb, c->rgb, bytes);
        q->c.rgb = q->rgb;
        break;
    }
    case FBD_GEN_PIN:
        if (sc->info.anchor_frames == 0) {
            snprintf(err, n, "this model has no anchor frames to pin");
            free_pending(q);
            return -2;
        }
        break;
    default:
        break;
    }
    pthread_mutex_lock(&sc->mu);
    if (g->ctl_tail) g->ctl_tail->next = q;
    else g->ctl_head = q;
    g->ctl_tail = q;
    pthread_cond_broadcast(&sc->cv);
    pthread_mutex_unlock(&sc->mu);
    return 0;
}

void fbd_gen_set_paused(fbd_gen *g, int paused) {
    fbd_sched *sc = g->sc;
    pthread_mutex_lock(&sc->mu);
    g->paused = paused != 0;
    pthread_cond_broadcast(&sc->cv);
    pthread_mutex_unlock(&sc->mu);
}

double fbd_gen_slowdown(fbd_gen *g) {
    fbd_sched *sc = g->sc;
    pthread_mutex_lock(&sc->mu);
    double f = slowdown_for(sc, active_locked(sc));
    pthread_mutex_unlock(&sc->mu);
    return f;
}

void fbd_gen_get_stats(fbd_gen *g, fbd_gen_stats *o) {
    fbd_sched *sc = g->sc;
    memset(o, 0, sizeof *o);
    pthread_mutex_lock(&sc->mu);
    o->chunk = g->last_chunk;
    o->next_chunk = g->count ? g->tags[g->head].chunk : g->next_chunk;
    o->frames_generated = g->frames_generated;
    o->chunks_generated = g->chunks_generated;
    o->chunk_ms = g->chunk_ms;
    o->buffer = g->count;
    o->buffer_capacity = g->cap;
    o->kv_used = g->kv_used;
    o->kv_total = sc->info.anchor_frames + sc->info.window_frames;
    o->kv_streams = sc->streams_open;
    o->kv_streams_max = sc->kv_streams;
    o->prompt_latency_ms = g->prompt_latency_ms;
    o->slowdown = slowdown_for(sc, active_locked(sc));
    o->paused = g->paused;
    pthread_mutex_unlock(&sc->mu);
}

void fbd_gen_close(fbd_gen *g) {
    if (!g) return;
    fbd_sched *sc = g->sc;
    pthread_mutex_lock(&sc->mu);
    g->closing = 1;
    while (g->busy) pthread_cond_wait(&sc->cv, &sc->mu);
    if (g->prev) g->prev->next = g->next;
    else sc->gens = g->next;
    if (g->next) g->next->prev = g->prev;
    sc->n_gens--;
    if (g->stream) sc->streams_open--;
    pthread_cond_broadcast(&sc->cv);  /* the others may now be due sooner (less slowdown) */
    pthread_mutex_unlock(&sc->mu);
    gen_free(g);
}

/* ---- the workers ------------------------------------------------------------------------- */

static void notify(fbd_gen *g, const fbd_gen_note *note) {
    if (g->notify) g->notify(g->notify_ctx, note);
}

/* Marks the gen failed (worker side, outside the lock) and tells its session. */
static void gen_fail(fbd_gen *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void gen_fail(fbd_gen *g, const char *fmt, ...) {
    fbd_sched *sc = g->sc;
    char why[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    atomic_fetch_add(&fbd_metrics_g.engine_errors, 1);
    pthread_mutex_lock(&sc->mu);
    g->failed = 1;
    snprintf(g->failure, sizeof g->failure, "%s", why);
    pthread_mutex_unlock(&sc->mu);
    fbd_gen_note note = {.kind = FBD_NOTE_FAILED, .message = why};
    notify(g, &note);
}

/* The session frame number at which the next generated chunk will start. */
static int64_t next_frame_no(fbd_gen *g, int flush) {
    fbd_sched *sc = g->sc;
    pthread_mutex_lock(&sc->mu);
    if (flush) {
        g->count = 0;
        g->head = 0;
    }
    int64_t f = (int64_t)g->next_wire + g->count;
    pthread_mutex_unlock(&sc->mu);
    return f;
}

static void control_error(fbd_gen *g, const pending *q, int code, const char *msg) {
    fbd_gen_note note = {.kind = FBD_NOTE_ERROR, .ctl = q->c.kind, .to = q->c.to, .error = code,
                         .message = msg};
    notify(g, &note);
}

/* Applies one queued control (worker, gen busy, lock not held). */
static void apply_control(fbd_gen *g, pending *q) {
    fbd_sched *sc = g->sc;
    if (g->failed) return;
    fb_stream *s = g->stream;
    fb_status st = FB_OK;
    int flush = 0;
    const char *what = "control";
    if (contains_word(g->prompt, sc->fail_word) && q->c.kind == FBD_GEN_IMAGE) {
        gen_fail(g, "engine failure while encoding the anchor image: forced by "
                    "FLIPBOOK_ENGINE_FAIL_ON_PROMPT");
        return;
    }
    switch (q->c.kind) {
    case FBD_GEN_PROMPT:
        what = "prompt";
        st = fb_stream_set_prompt(s, q->c.text, (fb_transition)q->c.transition, q->c.chunks);
        if (st == FB_OK) {
            char *p = strdup(q->c.text);
            if (p) {
                free(g->prompt);
                g->prompt = p;
            }
            g->prompt_t_pending = q->c.t_us ? q->c.t_us : mono_us();
        }
        break;
    case FBD_GEN_SEED:
        what = "seed";
        st = fb_stream_set_seed(s, q->c.seed);
        break;
    case FBD_GEN_RESET:
    case FBD_GEN_CLEAR:
        what = q->c.kind == FBD_GEN_RESET ? "reset" : "anchor clear";
        st = fb_stream_reset(s);
        flush = 1;  /* the frames already buffered belong to the stream before the restart */
        break;
    case FBD_GEN_PIN:
        what = "anchor pin";
        st = fb_stream_pin_anchor(s);
        break;
    case FBD_GEN_IMAGE:
        what = "anchor image";
        st = fb_stream_set_anchor_image(s, q->c.rgb, q->c.width, q->c.height,
                                        (size_t)q->c.width * 3);
        break;
    }
    if (st == FB_OK) {
        int64_t chunk = fb_stream_chunk_index(s);
        int64_t frame = next_frame_no(g, flush);
        if (flush) {
            pthread_mutex_lock(&sc->mu);
            g->next_chunk = chunk;
            pthread_mutex_unlock(&sc->mu);
        }
        fbd_gen_note note = {.kind = FBD_NOTE_ACK, .ctl = q->c.kind, .to = q->c.to,
                             .chunk = chunk, .frame = frame, .transition = q->c.transition,
                             .chunks = q->c.chunks, .seed = q->c.seed,
                             .unknown_words = q->unknown ? q->unknown : "",
                             .n_unknown = q->n_unknown};
        notify(g, &note);
        return;
    }
    char msg[640];
    snprintf(msg, sizeof msg, "%s: %s", what, fb_stream_errmsg(s));
    switch (st) {
    case FB_E_INVALID: control_error(g, q, FBD_GEN_ERR_BAD_VALUE, msg); break;
    case FB_E_STATE: control_error(g, q, FBD_GEN_ERR_UNSUPPORTED, msg); break;
    case FB_E_NO_MEMORY: control_error(g, q, FBD_GEN_ERR_INTERNAL, msg); break;
    default:
        gen_fail(g, "engine failure (%s) on %s", fb_status_str(st), msg);
        break;
    }
}

typedef struct job {
    fbd_gen *g;
    pending *ctl;                /* taken from the gen's queue */
    int run;                     /* generate a chunk */
    int64_t prompt_t;            /* tag for the chunk's first frame */
    fb_chunk_info ci;
    fb_status st;
    int n_frames;
} job;

/* Chooses this round's work (under the lock): due gens by earliest deadline, then gens that
 * only have controls queued. Returns how many jobs were filled. */
static int pick(fbd_sched *sc, job *jobs, int64_t now) {
    int active = active_locked(sc);
    double sd = slowdown_for(sc, active);
    int lw = low_water_locked(sc, active, sd);
    double frame_us = 1e6 / sc->info.fps * sd;
    int nj = 0;
    int64_t deadline[MAX_BATCH];
    for (fbd_gen *g = sc->gens; g; g = g->next) {
        if (!g->attached || g->closing || g->busy || g->failed) continue;
        int due = !g->paused && g->count < lw && g->cap - g->count >= sc->max_chunk_frames;
        if (!due) continue;
        int64_t d = g->count == 0 ? (g->starve_since ? g->starve_since : 0)
                                  : now + (int64_t)(g->count * frame_us);
        /* insertion into the sorted list, keeping the `batch` earliest */
        int pos = nj;
        while (pos > 0 && deadline[pos - 1] > d) pos--;
        if (pos >= sc->p.batch) continue;
        int last = nj < sc->p.batch ? nj : sc->p.batch - 1;
        for (int k = last; k > pos; k--) {
            jobs[k] = jobs[k - 1];
            deadline[k] = deadline[k - 1];
        }
        memset(&jobs[pos], 0, sizeof jobs[pos]);
        jobs[pos].g = g;
        jobs[pos].run = 1;
        deadline[pos] = d;
        if (nj < sc->p.batch) nj++;
    }
    /* A batch is going to run: when the sessions are being slowed (more of them than run at
     * full rate), fill it with sessions that are not due yet but hold less than a chunk
     * (fewest frames first). A batched pass costs less per stream than separate ones, and
     * their buffers stay bounded (at most two chunks). Otherwise this is skipped: every
     * session already runs at full rate, and deeper buffers would only delay prompt changes. */
    int busy_machine = sd > 1.0;
    while (nj > 0 && nj < sc->p.batch && busy_machine) {
        fbd_gen *best = NULL;
        for (fbd_gen *g = sc->gens; g; g = g->next) {
            if (!g->attached || g->closing || g->busy || g->failed || g->paused) continue;
            if (g->count >= sc->info.frames_per_chunk || g->cap - g->count < sc->max_chunk_frames)
                continue;
            int taken = 0;
            for (int k = 0; k < nj; k++) taken |= jobs[k].g == g;
            if (!taken && (!best || g->count < best->count)) best = g;
        }
        if (!best) break;
        memset(&jobs[nj], 0, sizeof jobs[nj]);
        jobs[nj].g = best;
        jobs[nj++].run = 1;
    }
    for (fbd_gen *g = sc->gens; g && nj < sc->p.batch; g = g->next) {
        if (!g->attached || g->closing || g->busy || g->failed || !g->ctl_head) continue;
        int taken = 0;
        for (int k = 0; k < nj; k++) taken |= jobs[k].g == g;
        if (taken) continue;
        memset(&jobs[nj], 0, sizeof jobs[nj]);
        jobs[nj++].g = g;
    }
    for (int k = 0; k < nj; k++) {
        fbd_gen *g = jobs[k].g;
        g->busy = 1;
        jobs[k].ctl = g->ctl_head;
        g->ctl_head = g->ctl_tail = NULL;
    }
    return nj;
}

/* Runs one round of jobs (lock not held). */
static void work(fbd_sched *sc, job *jobs, int nj) {
    fb_stream *streams[MAX_BATCH];
    uint8_t *outs[MAX_BATCH];
    int nfr[MAX_BATCH];
    fb_chunk_info infos[MAX_BATCH];
    fb_status sts[MAX_BATCH];
    int idx[MAX_BATCH];
    int n = 0;
    for (int k = 0; k < nj; k++) {
        job *j = &jobs[k];
        fbd_gen *g = j->g;
        j->st = FB_OK;
        if (!g->stream && !g->failed) {
            char e[512];
            fb_status st = fb_stream_open(sc->m, g->prompt, g->seed, &g->stream, e, sizeof e);
            if (st != FB_OK) {
                gen_fail(g, "cannot open an engine stream: %s", e);
            } else {
                pthread_mutex_lock(&sc->mu);
                sc->streams_open++;
                pthread_mutex_unlock(&sc->mu);
            }
        }
        for (pending *q = j->ctl; q; q = q->next) apply_control(g, q);
        free_pending(j->ctl);
        j->ctl = NULL;
        if (!j->run || g->failed) {
            j->run = 0;
            continue;
        }
        if (contains_word(g->prompt, sc->fail_word)) {
            j->run = 0;
            gen_fail(g, "engine failure at chunk %lld: forced by FLIPBOOK_ENGINE_FAIL_ON_PROMPT",
                     (long long)fb_stream_chunk_index(g->stream));
            continue;
        }
        j->prompt_t = g->prompt_t_pending;
        g->prompt_t_pending = 0;
        streams[n] = g->stream;
        outs[n] = g->stage;
        idx[n] = k;
        n++;
    }
    if (n == 0) return;
    int64_t t0 = mono_us();
    if (sc->slow_ms) sleep_ms(sc->slow_ms * n);
    fb_streams_next_chunk(streams, n, outs, sc->info.chunk_rgb_bytes, nfr, infos, sts);
    double per_ms = (double)(mono_us() - t0) / 1000.0 / n;
    for (int i = 0; i < n; i++) {
        job *j = &jobs[idx[i]];
        j->st = sts[i];
        j->ci = infos[i];
        j->n_frames = nfr[i];
        fbd_gen *g = j->g;
        if (sts[i] == FB_E_LIMIT) {
            /* "absolute" positions ran out: the stream restarts rather than ending, so the
             * session stays endless (the restart is a visible cut). */
            FB_LOG_WARN("engine", "stream reached the model's position limit; restarting it");
            fb_stream_reset(g->stream);
            pthread_mutex_lock(&sc->mu);
            g->next_chunk = 0;
            pthread_mutex_unlock(&sc->mu);
        } else if (sts[i] == FB_E_NO_MEMORY) {
            FB_LOG_WARN("engine", "out of memory for a chunk (%s); retrying",
                        fb_stream_errmsg(g->stream));
            g->prompt_t_pending = j->prompt_t;
        } else if (sts[i] != FB_OK) {
            gen_fail(g, "engine failure (%s) at chunk %lld: %s", fb_status_str(sts[i]),
                     (long long)fb_stream_chunk_index(g->stream), fb_stream_errmsg(g->stream));
        } else {
            fbd_metrics_observe_chunk((uint64_t)(per_ms * 1e6));
            atomic_fetch_add(&fbd_metrics_g.engine_chunks, 1);
            if (infos[i].batch_size > 1) atomic_fetch_add(&fbd_metrics_g.engine_batched, 1);
            atomic_fetch_add(&fbd_metrics_g.engine_frames, (uint64_t)nfr[i]);
        }
    }

    /* hand the frames over */
    fbd_gen *wake[MAX_BATCH];
    int nw = 0;
    pthread_mutex_lock(&sc->mu);
    add_sample_locked(sc, per_ms);
    for (int i = 0; i < n; i++) {
        job *j = &jobs[idx[i]];
        fbd_gen *g = j->g;
        if (j->st != FB_OK) continue;
        size_t fb = sc->info.frame_bytes;
        for (int f = 0; f < j->n_frames; f++) {
            if (g->count == g->cap) {
                /* Cannot happen (a gen is only due with room for a chunk); keep the bound. */
                g->head = (g->head + 1) % g->cap;
                g->count--;
            }
            int slot = (g->head + g->count) % g->cap;
            memcpy(g->ring + (size_t)slot * fb, g->stage + (size_t)f * fb, fb);
            g->tags[slot].chunk = j->ci.chunk;
            g->tags[slot].prompt_t_us = f == 0 ? j->prompt_t : 0;
            g->count++;
        }
        g->next_chunk = j->ci.chunk + 1;
        g->frames_generated += (uint64_t)j->n_frames;
        g->chunks_generated++;
        g->chunk_ms = j->ci.ms_total + sc->slow_ms;
        int used = j->ci.n_anchor_frames + j->ci.n_window_frames +
                   sc->info.latent_frames_per_chunk;
        int total = sc->info.anchor_frames + sc->info.window_frames;
        g->kv_used = used < total ? used : total;
        if (g->want_frames_note) {
            g->want_frames_note = 0;
            wake[nw++] = g;
        }
    }
    pthread_mutex_unlock(&sc->mu);
    fbd_gen_note note = {.kind = FBD_NOTE_FRAMES};
    for (int i = 0; i < nw; i++) notify(wake[i], &note);
}

static void *worker_main(void *arg) {
    fbd_sched *sc = arg;
    job jobs[MAX_BATCH];
    pthread_mutex_lock(&sc->mu);
    while (!sc->stop) {
        int nj = pick(sc, jobs, mono_us());
        if (nj == 0) {
            /* Woken by pops, controls, attach/close and pause changes; the timeout is only a
             * safety net. */
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_nsec += 100 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&sc->cv, &sc->mu, &ts);
            continue;
        }
        pthread_mutex_unlock(&sc->mu);
        work(sc, jobs, nj);
        pthread_mutex_lock(&sc->mu);
        for (int k = 0; k < nj; k++) jobs[k].g->busy = 0;
        pthread_cond_broadcast(&sc->cv);
    }
    pthread_mutex_unlock(&sc->mu);
    return NULL;
}
