/* stream/recorder.c - WebM recording on a writer thread, io_uring or pwrite (see recorder.h).
 *
 * Data path on the writer thread:
 *
 *   packet queue --> webm muxer --> sink_write_at() --> staging buffers --> io_uring / pwrite
 *
 * The muxer calls the sink with (offset, bytes). The sink copies the bytes into a staging buffer
 * (a few Mb/s: copying is cheap, and it lets frames be released at once); consecutive writes
 * are joined into one buffer, and a write at another offset (a size patch) starts a new one.
 * After each batch of packets the filled buffers are submitted, each as one write at its own
 * offset. With io_uring a buffer stays alive until its completion arrives; a short write is
 * resubmitted for the rest (io_uring does not retry by itself). Writes never use O_APPEND or
 * offset -1: with explicit offsets the order in which the kernel completes them does not matter
 * (shared/specs/streaming.md 5).
 *
 * Durability: IORING_OP_FSYNC with IORING_FSYNC_DATASYNC (or fdatasync()) once the data written
 * is sync_interval_ms old and no write is in flight; a full fsync after finalize at close, then
 * an fsync of the directory so the file's name is durable too. */
#include "stream/recorder.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "stream/webm.h"

#define WBUF_SIZE (256u * 1024u) /* staging buffer size (grown for a larger single write) */
#define FREE_KEEP 8              /* staging buffers kept for reuse */
#define RING_ENTRIES 64
#define MAX_IN_FLIGHT 32         /* writes submitted and not yet completed */
#define BATCH 32                 /* packets taken from the queue at once */
#define IN_FLIGHT_POLL_MS 5      /* how often the idle writer reaps completions */
#define DIR_MAX 4096

typedef struct wbuf {
    struct wbuf *next;
    uint8_t *data;
    size_t cap;
    size_t len;    /* bytes staged */
    size_t done;   /* bytes the kernel has written (a short write leaves done < len) */
    uint64_t off;  /* file offset of data[0] */
} wbuf;

struct fb_recorder {
    fb_recorder_params p;
    int fd;
    char dir[DIR_MAX];            /* the file's directory, fsynced at close */
    int use_uring;
    struct io_uring ring;
    fb_webm *mux;
    pthread_t thread;

    /* Shared between push() and the writer: guarded by `lock`. */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    fb_packet **q;
    int q_cap, q_head, q_count;
    int closing;
    int seen_key;              /* a keyframe has been queued; earlier deltas are skipped */
    fb_recorder_status status; /* the first failure */
    char msg[192];
    int notify;                /* a failure on_fail has not been told about yet */
    atomic_int failed;

    /* Writer thread only (and open/close, before and after it runs). */
    wbuf *cur;                 /* being filled */
    wbuf *pending, **pending_tail; /* filled, waiting for submission */
    wbuf *free_list;
    int n_free;
    int in_flight;             /* writes submitted without a completion yet */
    int sync_in_flight;
    int io_failed;             /* a write or sync failed: the file cannot be finalized */
    int direct;                /* header at open: written synchronously */
    int direct_errno;          /* errno of a failed synchronous write */
    int dirty;                 /* data written since the last sync */
    int64_t dirty_since_ms;

    atomic_uint_least64_t frames, skipped, bytes;
};

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- failures ------------------------------------------------------------------------------ */

static fb_recorder_status status_from_errno(int e) {
    switch (e) {
    case ENOSPC:
    case EDQUOT: return FB_RECORDER_ERR_DISK_FULL;
    case EFBIG: return FB_RECORDER_ERR_FILE_TOO_LARGE;
    case EACCES:
    case EPERM:
    case EROFS:
    case ENOENT:
    case ENOTDIR:
    case EISDIR:
    case ELOOP:
    case ENAMETOOLONG: return FB_RECORDER_ERR_CANNOT_WRITE;
    case ENOMEM: return FB_RECORDER_ERR_NOMEM;
    default: return FB_RECORDER_ERR_IO;
    }
}

/* A sentence for an errno from `what` ("write", "sync", "open"), without the path. */
static void errno_message(int e, const char *what, char *buf, size_t size) {
    char sys[128];
    if (strerror_r(e, sys, sizeof sys) != 0) snprintf(sys, sizeof sys, "errno %d", e);
    switch (status_from_errno(e)) {
    case FB_RECORDER_ERR_DISK_FULL: snprintf(buf, size, "disk full (%s)", sys); break;
    case FB_RECORDER_ERR_FILE_TOO_LARGE:
        snprintf(buf, size, "file size limit reached (%s)", sys);
        break;
    case FB_RECORDER_ERR_CANNOT_WRITE:
        if (e == ENOENT || e == ENOTDIR)
            snprintf(buf, size, "cannot create the recording file: no such directory (%s)", sys);
        else
            snprintf(buf, size, "cannot write the recording file (%s)", sys);
        break;
    default: snprintf(buf, size, "%s failed (%s)", what, sys); break;
    }
}

/* Records the first failure (later ones are consequences of it). Caller holds the lock. */
static void fail_locked(fb_recorder *r, fb_recorder_status st, const char *msg) {
    if (r->status != FB_RECORDER_OK) return;
    r->status = st;
    snprintf(r->msg, sizeof r->msg, "%s", msg);
    r->notify = 1;
    atomic_store(&r->failed, 1);
    pthread_cond_signal(&r->wake);
}

static void fail(fb_recorder *r, fb_recorder_status st, const char *fmt, ...) {
    char msg[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&r->lock);
    fail_locked(r, st, msg);
    pthread_mutex_unlock(&r->lock);
}

/* An I/O error on the file: it cannot be finalized any more. */
static void fail_io(fb_recorder *r, int e, const char *what) {
    char msg[192];
    r->io_failed = 1;
    errno_message(e, what, msg, sizeof msg);
    fail(r, status_from_errno(e), "%s", msg);
}

/* ---- staging buffers ---------------------------------------------------------------------- */

static wbuf *wbuf_get(fb_recorder *r, size_t need) {
    wbuf *b = r->free_list;
    if (b) {
        r->free_list = b->next;
        r->n_free--;
    } else {
        b = calloc(1, sizeof *b);
        if (!b) return NULL;
    }
    if (b->cap < need || b->cap < WBUF_SIZE) {
        size_t cap = need > WBUF_SIZE ? need : WBUF_SIZE;
        uint8_t *d = realloc(b->data, cap);
        if (!d) {
            free(b->data);
            free(b);
            return NULL;
        }
        b->data = d;
        b->cap = cap;
    }
    b->next = NULL;
    b->len = b->done = 0;
    return b;
}

static void wbuf_recycle(fb_recorder *r, wbuf *b) {
    if (r->n_free >= FREE_KEEP || b->cap > WBUF_SIZE) { /* keep only standard-size spares */
        free(b->data);
        free(b);
        return;
    }
    b->next = r->free_list;
    r->free_list = b;
    r->n_free++;
}

static void wbuf_free_list(wbuf *b) {
    while (b) {
        wbuf *next = b->next;
        free(b->data);
        free(b);
        b = next;
    }
}

static void pending_push(fb_recorder *r, wbuf *b) {
    b->next = NULL;
    *r->pending_tail = b;
    r->pending_tail = &b->next;
}

static wbuf *pending_pop(fb_recorder *r) {
    wbuf *b = r->pending;
    if (b) {
        r->pending = b->next;
        if (!r->pending) r->pending_tail = &r->pending;
    }
    return b;
}

static int pwrite_all(int fd, const uint8_t *p, size_t len, uint64_t off) {
    while (len) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (n == 0) return EIO;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

/* The muxer's sink: stage the bytes (or write them now, for the header at open). */
static int sink_write_at(void *ctx, uint64_t off, const void *buf, size_t len) {
    fb_recorder *r = ctx;
    if (r->io_failed) return -EIO;
    if (r->direct) {
        int e = pwrite_all(r->fd, buf, len, off);
        r->direct_errno = e;
        return e ? -e : 0;
    }
    wbuf *b = r->cur;
    if (b && (off != b->off + b->len || b->len + len > b->cap)) {
        pending_push(r, b); /* not contiguous, or full: close this buffer */
        b = r->cur = NULL;
    }
    if (!b) {
        b = r->cur = wbuf_get(r, len);
        if (!b) return -ENOMEM;
        b->off = off;
    }
    memcpy(b->data + b->len, buf, len);
    b->len += len;
    return 0;
}

/* ---- io_uring ------------------------------------------------------------------------------ */

static void reap(fb_recorder *r, int wait);

/* Gets an SQE, submitting or waiting for completions when the submission queue is full. */
static struct io_uring_sqe *get_sqe(fb_recorder *r) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    while (!sqe) {
        io_uring_submit(&r->ring);
        sqe = io_uring_get_sqe(&r->ring);
        if (!sqe) reap(r, 1);
    }
    return sqe;
}

/* io_uring_submit, retrying while the kernel is short of resources (reaping frees them). */
static void submit(fb_recorder *r) {
    for (;;) {
        int rc = io_uring_submit(&r->ring);
        if (rc >= 0) return;
        if (rc == -EINTR) continue;
        if ((rc == -EAGAIN || rc == -EBUSY) && (r->in_flight || r->sync_in_flight)) {
            reap(r, 1);
            continue;
        }
        /* Not expected once the ring works. Nothing more is submitted, so no completion will
         * come for what is counted in flight: stop waiting for it (its buffers are abandoned;
         * waiting would hang the writer and close()). */
        fail_io(r, -rc, "submit");
        r->in_flight = r->sync_in_flight = 0;
        return;
    }
}

/* Handles one write completion. */
static void write_done(fb_recorder *r, wbuf *b, int res) {
    r->in_flight--;
    if (r->io_failed) {
        wbuf_recycle(r, b);
    } else if (res == -EINTR || res == -EAGAIN) {
        pending_push(r, b);           /* try again as it was */
    } else if (res < 0) {
        fail_io(r, -res, "write");
        wbuf_recycle(r, b);
    } else if (res == 0) {
        fail_io(r, EIO, "write");     /* no progress on a regular file: give up */
        wbuf_recycle(r, b);
    } else {
        b->done += (size_t)res;
        if (b->done < b->len) pending_push(r, b); /* short write: the rest goes again */
        else wbuf_recycle(r, b);
    }
}

/* Processes available completions; with `wait`, blocks for at least one first. */
static void reap(fb_recorder *r, int wait) {
    struct io_uring_cqe *cqe;
    int rc = wait ? io_uring_wait_cqe(&r->ring, &cqe) : io_uring_peek_cqe(&r->ring, &cqe);
    while (rc == -EINTR && wait) rc = io_uring_wait_cqe(&r->ring, &cqe);
    if (wait && rc < 0) {
        /* The ring itself failed (not expected): give up on what is in flight rather than
         * wait forever (see submit()). */
        fail_io(r, -rc, "wait");
        r->in_flight = r->sync_in_flight = 0;
        return;
    }
    while (rc == 0) {
        wbuf *b = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&r->ring, cqe);
        if (b) {
            write_done(r, b, res);
        } else {
            r->sync_in_flight--;
            if (res < 0 && !r->io_failed) fail_io(r, -res, "sync");
        }
        rc = io_uring_peek_cqe(&r->ring, &cqe);
    }
}

/* ---- writing and syncing ------------------------------------------------------------------ */

/* Sends every staged buffer on its way. */
static void flush(fb_recorder *r) {
    if (r->cur && r->cur->len) {
        pending_push(r, r->cur);
        r->cur = NULL;
    }
    int queued = 0, wrote = 0;
    wbuf *b;
    while ((b = pending_pop(r))) {
        if (r->io_failed) {
            wbuf_recycle(r, b);
            continue;
        }
        wrote = 1;
        if (!r->use_uring) {
            int e = pwrite_all(r->fd, b->data, b->len, b->off);
            if (e) fail_io(r, e, "write");
            wbuf_recycle(r, b);
            continue;
        }
        if (r->in_flight >= MAX_IN_FLIGHT) {
            if (queued) submit(r);
            queued = 0;
            reap(r, 1);
        }
        struct io_uring_sqe *sqe = get_sqe(r);
        io_uring_prep_write(sqe, r->fd, b->data + b->done, (unsigned)(b->len - b->done),
                            b->off + b->done);
        io_uring_sqe_set_data(sqe, b);
        r->in_flight++;
        queued++;
    }
    if (queued) submit(r);
    if (wrote && !r->dirty) {
        r->dirty = 1;
        r->dirty_since_ms = now_ms();
    }
}

/* Waits until every staged and submitted write has completed (resubmitting short writes). */
static void drain(fb_recorder *r) {
    flush(r);
    while (r->use_uring && (r->in_flight || r->sync_in_flight || r->pending)) {
        if (r->pending) flush(r);
        if (r->in_flight || r->sync_in_flight) reap(r, 1);
    }
}

/* fdatasync (full = 0) or fsync (full = 1) of what has been written so far. */
static void sync_file(fb_recorder *r, int full) {
    r->dirty = 0;
    if (r->io_failed) return;
    if (!r->use_uring) {
        if ((full ? fsync(r->fd) : fdatasync(r->fd)) != 0) fail_io(r, errno, "sync");
    } else {
        struct io_uring_sqe *sqe = get_sqe(r);
        io_uring_prep_fsync(sqe, r->fd, full ? 0 : IORING_FSYNC_DATASYNC);
        io_uring_sqe_set_data(sqe, NULL);
        r->sync_in_flight++;
        submit(r);
        if (full) drain(r);
    }
}

/* A periodic data sync, once the oldest unsynced data is old enough and its writes are done
 * (a sync only covers completed writes). */
static void maybe_sync(fb_recorder *r) {
    if (!r->dirty || r->p.sync_interval_ms <= 0 || r->in_flight || r->sync_in_flight) return;
    if (now_ms() - r->dirty_since_ms >= r->p.sync_interval_ms) sync_file(r, 0);
}

static void mux_packet(fb_recorder *r, fb_packet *p) {
    fb_webm_status s = fb_webm_write_packet(r->mux, p);
    if (s == FB_WEBM_OK) {
        atomic_fetch_add(&r->frames, 1);
        atomic_store(&r->bytes, fb_webm_size(r->mux));
    } else if (s == FB_WEBM_ERR_IO) {
        if (!r->io_failed) fail_io(r, fb_webm_io_errno(r->mux), "write");
    } else if (s == FB_WEBM_ERR_NOMEM) {
        fail(r, FB_RECORDER_ERR_NOMEM, "out of memory");
    } else {
        fail(r, FB_RECORDER_ERR_FRAME, "frame %u refused: %s", (unsigned)p->frame_no,
             fb_webm_status_str(s));
    }
}

/* Tells the owner about a failure, outside the lock. */
static void notify_failure(fb_recorder *r) {
    pthread_mutex_lock(&r->lock);
    int notify = r->notify;
    fb_recorder_status st = r->status;
    char msg[sizeof r->msg];
    memcpy(msg, r->msg, sizeof msg);
    r->notify = 0;
    pthread_mutex_unlock(&r->lock);
    if (notify && r->p.on_fail) r->p.on_fail(r->p.user, st, msg);
}

static void timed_wait(fb_recorder *r, int64_t ms) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&r->wake, &r->lock, &ts);
}

static void *writer_main(void *arg) {
    fb_recorder *r = arg;
    fb_packet *batch[BATCH];
    for (;;) {
        pthread_mutex_lock(&r->lock);
        if (!r->q_count && !r->closing && !r->notify) {
            /* Sleep until a packet comes, or until there is I/O to look after. */
            if (r->in_flight || r->sync_in_flight) {
                timed_wait(r, IN_FLIGHT_POLL_MS);
            } else if (r->dirty && r->p.sync_interval_ms > 0) {
                int64_t left = r->dirty_since_ms + r->p.sync_interval_ms - now_ms();
                if (left > 0) timed_wait(r, left);
            } else {
                pthread_cond_wait(&r->wake, &r->lock);
            }
        }
        int n = 0;
        while (n < BATCH && r->q_count) {
            batch[n++] = r->q[r->q_head];
            r->q_head = (r->q_head + 1) % r->q_cap;
            r->q_count--;
        }
        int closing = r->closing && !r->q_count;
        /* After a failure the recording stops; what was queued before a queue overflow is
         * still written, so the file ends where the overflow happened. */
        int writable = r->status == FB_RECORDER_OK || r->status == FB_RECORDER_ERR_QUEUE_FULL;
        pthread_mutex_unlock(&r->lock);

        for (int i = 0; i < n; i++) {
            if (writable && !r->io_failed) mux_packet(r, batch[i]);
            fb_packet_unref(batch[i]);
        }
        if (n) flush(r);
        if (r->use_uring) reap(r, 0);
        maybe_sync(r);
        notify_failure(r);
        if (closing) break;
    }

    /* Close: the file can be finalized unless the disk itself failed (a queue overflow or a
     * refused frame leaves a good file that just ends early). */
    if (!r->io_failed) {
        fb_webm_status s = fb_webm_finalize(r->mux);
        if (s == FB_WEBM_ERR_IO && !r->io_failed) fail_io(r, fb_webm_io_errno(r->mux), "write");
        else if (s == FB_WEBM_ERR_NOMEM) fail(r, FB_RECORDER_ERR_NOMEM, "out of memory");
    }
    drain(r);
    sync_file(r, 1);
    notify_failure(r);
    return NULL;
}

/* ---- public API ---------------------------------------------------------------------------- */

fb_recorder_params fb_recorder_default_params(void) {
    fb_recorder_params p;
    memset(&p, 0, sizeof p);
    p.queue_frames = 256;
    p.sync_interval_ms = 2000;
    return p;
}

static void copy_msg(char *dst, size_t size, const char *msg) {
    if (dst && size) snprintf(dst, size, "%s", msg);
}

/* Sets up io_uring unless told not to; returns 1 when it is usable for this file. */
static int init_uring(fb_recorder *r) {
    const char *env = getenv("FLIPBOOK_RECORDER_PWRITE");
    if (r->p.force_pwrite || (env && *env && strcmp(env, "0") != 0)) return 0;
    if (io_uring_queue_init(RING_ENTRIES, &r->ring, 0) != 0) return 0; /* e.g. EPERM (seccomp) */
    struct io_uring_probe *probe = io_uring_get_probe_ring(&r->ring);
    int ok = probe && io_uring_opcode_supported(probe, IORING_OP_WRITE) &&
             io_uring_opcode_supported(probe, IORING_OP_FSYNC);
    if (probe) io_uring_free_probe(probe);
    if (!ok) io_uring_queue_exit(&r->ring);
    return ok;
}

static void recorder_free(fb_recorder *r) {
    if (r->use_uring) io_uring_queue_exit(&r->ring);
    if (r->cur) wbuf_free_list(r->cur);
    wbuf_free_list(r->pending);
    wbuf_free_list(r->free_list);
    fb_webm_free(r->mux);
    free(r->q);
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

fb_recorder_status fb_recorder_open(const char *path, int width, int height, int fps,
                                    const fb_recorder_params *params, fb_recorder **out,
                                    char *err, size_t err_size) {
    if (!out) return FB_RECORDER_ERR_ARG;
    *out = NULL;
    fb_recorder_params p = params ? *params : fb_recorder_default_params();
    if (!path || !*path || width < 1 || height < 1 || width > 16384 || height > 16384 ||
        fps < 1 || fps > 1000 || p.queue_frames < 1 || p.queue_frames > 65536 ||
        p.sync_interval_ms < 0) {
        copy_msg(err, err_size, "invalid recorder arguments");
        return FB_RECORDER_ERR_ARG;
    }
    if (strlen(path) >= DIR_MAX) {
        copy_msg(err, err_size, "recording path too long");
        return FB_RECORDER_ERR_ARG;
    }

    fb_recorder *r = calloc(1, sizeof *r);
    if (!r) {
        copy_msg(err, err_size, "out of memory");
        return FB_RECORDER_ERR_NOMEM;
    }
    r->p = p;
    r->fd = -1;
    r->pending_tail = &r->pending;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&r->lock, NULL);
    r->q_cap = p.queue_frames;
    r->q = calloc((size_t)r->q_cap, sizeof *r->q);
    if (!r->q) {
        copy_msg(err, err_size, "out of memory");
        recorder_free(r);
        return FB_RECORDER_ERR_NOMEM;
    }
    snprintf(r->dir, sizeof r->dir, "%s", path);
    char *slash = strrchr(r->dir, '/');
    if (!slash) snprintf(r->dir, sizeof r->dir, ".");
    else if (slash == r->dir) slash[1] = 0;
    else *slash = 0;

    /* The final name from the start (see recorder.h). Never O_APPEND: offsets are explicit. */
    int existed = access(path, F_OK) == 0;
    r->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (r->fd < 0) {
        int e = errno;
        char msg[192];
        errno_message(e, "open", msg, sizeof msg);
        copy_msg(err, err_size, msg);
        recorder_free(r);
        return status_from_errno(e);
    }
    r->use_uring = init_uring(r);

    /* Header now, synchronously, so that an unusable disk is reported to the caller. */
    r->direct = 1;
    fb_webm_sink sink = {r, sink_write_at};
    fb_webm_params wp = {width, height, fps};
    fb_webm_status ms = fb_webm_open(&sink, &wp, &r->mux);
    r->direct = 0;
    if (ms != FB_WEBM_OK) {
        fb_recorder_status st = FB_RECORDER_ERR_NOMEM;
        char msg[192] = "out of memory";
        if (ms == FB_WEBM_ERR_IO) {
            int e = r->direct_errno ? r->direct_errno : EIO;
            st = status_from_errno(e);
            errno_message(e, "write", msg, sizeof msg);
        }
        copy_msg(err, err_size, msg);
        close(r->fd);
        if (!existed) unlink(path); /* do not leave an empty file we created */
        recorder_free(r);
        return st;
    }
    atomic_store(&r->bytes, fb_webm_size(r->mux));

    /* The writer thread takes no signals: they belong to the daemon's own handling. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&r->thread, NULL, writer_main, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        copy_msg(err, err_size, "cannot start the recording thread");
        close(r->fd);
        recorder_free(r);
        return FB_RECORDER_ERR_NOMEM;
    }
    *out = r;
    return FB_RECORDER_OK;
}

fb_recorder_status fb_recorder_push(fb_recorder *r, fb_packet *p) {
    if (!r || !p) return FB_RECORDER_ERR_ARG;
    pthread_mutex_lock(&r->lock);
    fb_recorder_status st = r->status;
    if (st == FB_RECORDER_OK) {
        if (!r->seen_key && !p->is_key) {
            atomic_fetch_add(&r->skipped, 1);
        } else if (r->q_count == r->q_cap) {
            char msg[96];
            snprintf(msg, sizeof msg, "recording fell behind: %d frames waiting for the disk",
                     r->q_cap);
            fail_locked(r, FB_RECORDER_ERR_QUEUE_FULL, msg);
            st = r->status;
        } else {
            r->seen_key = 1;
            r->q[(r->q_head + r->q_count) % r->q_cap] = fb_packet_ref(p);
            r->q_count++;
            pthread_cond_signal(&r->wake);
        }
    }
    pthread_mutex_unlock(&r->lock);
    return st;
}

fb_recorder_status fb_recorder_close(fb_recorder *r, uint64_t *bytes, char *err,
                                     size_t err_size) {
    if (bytes) *bytes = 0;
    if (!r) return FB_RECORDER_ERR_ARG;
    pthread_mutex_lock(&r->lock);
    r->closing = 1;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);

    struct stat st;
    if (bytes && fstat(r->fd, &st) == 0) *bytes = (uint64_t)st.st_size;
    if (close(r->fd) != 0 && !r->io_failed) fail_io(r, errno, "close");
    /* Make the new directory entry durable as well (best effort: some file systems refuse). */
    int dfd = open(r->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }

    fb_recorder_status status = r->status;
    copy_msg(err, err_size, status == FB_RECORDER_OK ? "" : r->msg);
    recorder_free(r);
    return status;
}

int fb_recorder_failed(const fb_recorder *r) {
    return r ? atomic_load(&r->failed) : 1;
}

fb_recorder_status fb_recorder_get_status(fb_recorder *r, char *msg, size_t msg_size) {
    if (!r) return FB_RECORDER_ERR_ARG;
    pthread_mutex_lock(&r->lock);
    fb_recorder_status st = r->status;
    copy_msg(msg, msg_size, st == FB_RECORDER_OK ? "" : r->msg);
    pthread_mutex_unlock(&r->lock);
    return st;
}

void fb_recorder_get_stats(const fb_recorder *r, fb_recorder_stats *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!r) return;
    out->frames_written = atomic_load(&r->frames);
    out->frames_skipped = atomic_load(&r->skipped);
    out->bytes = atomic_load(&r->bytes);
}

const char *fb_recorder_backend(const fb_recorder *r) {
    return r && r->use_uring ? "io_uring" : "pwrite";
}

const char *fb_recorder_status_str(fb_recorder_status s) {
    switch (s) {
    case FB_RECORDER_OK: return "ok";
    case FB_RECORDER_ERR_ARG: return "invalid argument";
    case FB_RECORDER_ERR_CANNOT_WRITE: return "cannot write the recording file";
    case FB_RECORDER_ERR_DISK_FULL: return "disk full";
    case FB_RECORDER_ERR_FILE_TOO_LARGE: return "file size limit reached";
    case FB_RECORDER_ERR_IO: return "write error";
    case FB_RECORDER_ERR_QUEUE_FULL: return "recording fell behind";
    case FB_RECORDER_ERR_FRAME: return "frame refused by the muxer";
    case FB_RECORDER_ERR_NOMEM: return "out of memory";
    }
    return "unknown recorder status";
}
