/* tests/stream/test_recorder.c - the recorder on both write paths, and how it fails.
 *
 * - io_uring and pwrite() produce byte-identical files, identical to the muxer writing to
 *   memory; the environment variable FLIPBOOK_RECORDER_PWRITE=1 forces pwrite (ctest runs this
 *   program once without and once with it);
 * - packets before the first keyframe are skipped;
 * - a full disk (/dev/full behind a symlink), a missing or unwritable directory give clear
 *   errors at open; a file size limit reached mid-recording (RLIMIT_FSIZE, SIGXFSZ ignored)
 *   fails the recording with a message and a callback, leaves a playable file, and never
 *   blocks the pushing thread;
 * - a queue overflow fails the recording without blocking, and the file is still finalized.
 */
#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "stream/recorder.h"
#include "stream/webm.h"
#include "tests/stream/ebml_check.h"
#include "tests/stream/media_test.h"

enum { W = 320, H = 240, FPS = 30, N = 120 };

static fb_packet *packets[N];
static char dir[256];
static int uring_works;   /* io_uring_queue_init succeeds in this environment */
static int env_forces_pwrite;

static uint32_t rng = 4242;
static uint32_t rnd(void) {
    rng = rng * 1664525u + 1013904223u;
    return rng >> 8;
}

/* Synthetic packets (the container does not look inside them): keyframes every 30, sizes from
 * 1 byte to 60 KB so staging buffers fill and split. */
static void make_packets(void) {
    static uint8_t data[60000];
    for (int i = 0; i < N; i++) {
        size_t size = i % 30 == 0 ? 60000 : 1 + rnd() % 9000;
        for (size_t k = 0; k < size; k++) data[k] = (uint8_t)rnd();
        packets[i] = fb_packet_new(data, size, i % 30 == 0, (uint32_t)i,
                                   (int64_t)i * 1000000 / FPS, 1000000 / FPS);
    }
}

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    *len = b ? fread(b, 1, (size_t)n, f) : 0;
    fclose(f);
    return b;
}

typedef struct fail_log {
    pthread_mutex_t lock;
    int calls;
    fb_recorder_status status;
    char msg[256];
} fail_log;

static void on_fail(void *user, fb_recorder_status st, const char *msg) {
    fail_log *l = user;
    pthread_mutex_lock(&l->lock);
    l->calls++;
    l->status = st;
    snprintf(l->msg, sizeof l->msg, "%s", msg);
    pthread_mutex_unlock(&l->lock);
}

static int fail_calls(fail_log *l) {
    pthread_mutex_lock(&l->lock);
    int n = l->calls;
    pthread_mutex_unlock(&l->lock);
    return n;
}

/* Records packets[from..to) to `name`; returns the file's bytes (caller frees). */
static uint8_t *record(const char *name, int force_pwrite, int sync_ms, int from, int to,
                       size_t *len, const char **backend) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    fb_recorder_params p = fb_recorder_default_params();
    p.force_pwrite = force_pwrite;
    p.sync_interval_ms = sync_ms;
    fb_recorder *rec;
    char err[256];
    CHECKF(fb_recorder_open(path, W, H, FPS, &p, &rec, err, sizeof err) == FB_RECORDER_OK, "%s",
           err);
    if (!rec) return NULL;
    *backend = fb_recorder_backend(rec);
    for (int i = from; i < to; i++) {
        CHECK(fb_recorder_push(rec, packets[i]) == FB_RECORDER_OK);
        if (i % 16 == 0) usleep(3000); /* let periodic syncs happen between batches */
    }
    fb_recorder_stats st;
    fb_recorder_get_stats(rec, &st);
    CHECK(!fb_recorder_failed(rec));
    uint64_t bytes = 0;
    CHECKF(fb_recorder_close(rec, &bytes, err, sizeof err) == FB_RECORDER_OK, "%s", err);
    uint8_t *b = read_file(path, len);
    CHECK(b && bytes == *len);
    return b;
}

static void test_paths_identical(void) {
    /* Reference: the muxer writing to memory. */
    mem_sink ms = {0};
    fb_webm_sink sink = mem_sink_make(&ms);
    fb_webm_params wp = {W, H, FPS};
    fb_webm *m = NULL;
    CHECK(fb_webm_open(&sink, &wp, &m) == FB_WEBM_OK);
    for (int i = 0; m && i < N; i++) CHECK(fb_webm_write_packet(m, packets[i]) == FB_WEBM_OK);
    CHECK(fb_webm_finalize(m) == FB_WEBM_OK);
    fb_webm_free(m);

    size_t la = 0, lb = 0, lc = 0;
    const char *ba = "", *bb = "", *bc = "";
    uint8_t *a = record("default.webm", 0, 1, 0, N, &la, &ba);
    uint8_t *b = record("pwrite.webm", 1, 1, 0, N, &lb, &bb);
    uint8_t *c = record("nosync.webm", 0, 0, 0, N, &lc, &bc);
    printf("default backend: %s (io_uring %s here, FLIPBOOK_RECORDER_PWRITE %s)\n", ba,
           uring_works ? "works" : "refused", env_forces_pwrite ? "set" : "unset");
    CHECK(strcmp(ba, uring_works && !env_forces_pwrite ? "io_uring" : "pwrite") == 0);
    CHECK(strcmp(bb, "pwrite") == 0);
    CHECK(a && la == ms.len && memcmp(a, ms.data, la) == 0);
    CHECK(b && lb == ms.len && memcmp(b, ms.data, lb) == 0);
    CHECK(c && lc == ms.len && memcmp(c, ms.data, lc) == 0);
    webm_summary s;
    char err[256];
    CHECKF(a && webm_check(a, la, 0, &s, err, sizeof err) == 0, "%s", err);
    CHECK(s.finalized && s.n_frames == N && s.n_cues == 4);
    webm_summary_free(&s);
    free(a), free(b), free(c);
    mem_sink_free(&ms);
}

/* Deltas pushed before the first keyframe are skipped; the file starts with a keyframe. */
static void test_skip_until_key(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/late.webm", dir);
    fb_recorder *rec;
    CHECK(fb_recorder_open(path, W, H, FPS, NULL, &rec, NULL, 0) == FB_RECORDER_OK);
    if (!rec) return;
    for (int i = 5; i < 70; i++) CHECK(fb_recorder_push(rec, packets[i]) == FB_RECORDER_OK);
    CHECK(fb_recorder_close(rec, NULL, NULL, 0) == FB_RECORDER_OK);
    size_t len = 0;
    uint8_t *b = read_file(path, &len);
    webm_summary s;
    char err[256];
    CHECKF(b && webm_check(b, len, 0, &s, err, sizeof err) == 0, "%s", err);
    CHECKF(s.n_frames == 40 && s.frames[0].time_ms == 0, "%zu frames", s.n_frames);
    webm_summary_free(&s);
    free(b);
}

static void test_open_errors(void) {
    fb_recorder *rec = (fb_recorder *)1;
    char err[256] = "", path[512];

    /* A full disk: /dev/full fails every write with ENOSPC. */
    snprintf(path, sizeof path, "%s/full.webm", dir);
    if (symlink("/dev/full", path) == 0) {
        fb_recorder_status st = fb_recorder_open(path, W, H, FPS, NULL, &rec, err, sizeof err);
        CHECKF(st == FB_RECORDER_ERR_DISK_FULL && !rec, "status %d: %s", st, err);
        CHECKF(strstr(err, "disk full") != NULL, "message: %s", err);
        struct stat sb;
        CHECK(lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode)); /* not removed: not ours */
    } else {
        printf("symlink to /dev/full refused: disk-full-at-open case skipped\n");
    }

    /* A missing directory. */
    snprintf(path, sizeof path, "%s/no/such/dir/x.webm", dir);
    CHECK(fb_recorder_open(path, W, H, FPS, NULL, &rec, err, sizeof err) ==
          FB_RECORDER_ERR_CANNOT_WRITE);
    CHECKF(strstr(err, "no such directory") != NULL, "message: %s", err);

    /* An unwritable directory. Root ignores permissions, so as root the attempt runs in a
     * child that drops to an unprivileged user first. */
    char ro[300];
    snprintf(ro, sizeof ro, "%s/readonly", dir);
    CHECK(mkdir(ro, 0555) == 0);
    snprintf(path, sizeof path, "%s/x.webm", ro);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(77);
        fb_recorder *r2 = NULL;
        char e2[256] = "";
        fb_recorder_status st = fb_recorder_open(path, W, H, FPS, NULL, &r2, e2, sizeof e2);
        if (st != FB_RECORDER_ERR_CANNOT_WRITE || r2) _exit(1);
        if (!strstr(e2, "cannot write the recording file")) _exit(2);
        printf("unwritable directory: \"%s\"\n", e2);
        fflush(stdout);
        _exit(0);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status));
    if (WEXITSTATUS(status) == 77) printf("cannot drop privileges: unwritable-dir case skipped\n");
    else CHECKF(WEXITSTATUS(status) == 0, "unwritable directory case failed (%d)",
                WEXITSTATUS(status));
    chmod(ro, 0755);

    CHECK(fb_recorder_open(NULL, W, H, FPS, NULL, &rec, err, sizeof err) == FB_RECORDER_ERR_ARG);
    CHECK(fb_recorder_open(path, 0, H, FPS, NULL, &rec, err, sizeof err) == FB_RECORDER_ERR_ARG);
    fb_recorder_params p = fb_recorder_default_params();
    p.queue_frames = 0;
    CHECK(fb_recorder_open(path, W, H, FPS, &p, &rec, err, sizeof err) == FB_RECORDER_ERR_ARG);
    CHECK(fb_recorder_push(NULL, packets[0]) == FB_RECORDER_ERR_ARG);
    CHECK(fb_recorder_close(NULL, NULL, NULL, 0) == FB_RECORDER_ERR_ARG);
}

/* In a child (the limit is per process): a 100 KB file size limit hit mid-recording. */
static int size_limit_child(int force_pwrite) {
    struct rlimit rl = {100000, 100000};
    signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) return 77;
    char path[512];
    snprintf(path, sizeof path, "%s/limit%d.webm", dir, force_pwrite);
    fail_log log = {.lock = PTHREAD_MUTEX_INITIALIZER};
    fb_recorder_params p = fb_recorder_default_params();
    p.force_pwrite = force_pwrite;
    p.on_fail = on_fail;
    p.user = &log;
    fb_recorder *rec;
    char err[256];
    if (fb_recorder_open(path, W, H, FPS, &p, &rec, err, sizeof err) != FB_RECORDER_OK) return 10;
    fb_recorder_status st = FB_RECORDER_OK;
    struct timespec t0, t1;
    double worst_push_ms = 0;
    for (int i = 0; i < N && st == FB_RECORDER_OK; i++) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        st = fb_recorder_push(rec, packets[i]);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (ms > worst_push_ms) worst_push_ms = ms;
        usleep(1000);
    }
    for (int i = 0; i < 200 && !fb_recorder_failed(rec); i++) usleep(10000);
    if (!fb_recorder_failed(rec)) return 11;
    for (int i = 0; i < 200 && fail_calls(&log) == 0; i++) usleep(10000);
    char msg[256];
    if (fb_recorder_get_status(rec, msg, sizeof msg) != FB_RECORDER_ERR_FILE_TOO_LARGE) return 12;
    if (fb_recorder_push(rec, packets[0]) != FB_RECORDER_ERR_FILE_TOO_LARGE) return 13;
    uint64_t bytes = 0;
    st = fb_recorder_close(rec, &bytes, err, sizeof err);
    if (st != FB_RECORDER_ERR_FILE_TOO_LARGE || !strstr(err, "file size limit")) return 14;
    if (fail_calls(&log) != 1 || log.status != FB_RECORDER_ERR_FILE_TOO_LARGE) return 15;
    if (bytes != 100000) return 16; /* everything up to the limit was written */
    if (worst_push_ms > 50) return 17;
    size_t len = 0;
    uint8_t *b = read_file(path, &len);
    webm_summary s;
    int rc = b ? webm_check(b, len, 1, &s, err, sizeof err) : -1;
    free(b);
    if (rc != 0) {
        fprintf(stderr, "limited file: %s\n", err);
        return 18;
    }
    int frames = (int)s.n_frames;
    webm_summary_free(&s);
    if (frames < 5) return 19;
    printf("%s: size limit -> \"%s\"; %d frames kept, worst push %.3f ms\n",
           force_pwrite ? "pwrite" : "default", msg, frames, worst_push_ms);
    return 0;
}

static void test_size_limit(void) {
    for (int force = 0; force <= 1; force++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            int rc = size_limit_child(force);
            fflush(stdout);
            _exit(rc);
        }
        int st = 0;
        CHECK(pid > 0 && waitpid(pid, &st, 0) == pid);
        CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "size-limit child (pwrite=%d) status %d",
               force, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    }
}

/* A writer that falls behind fails the recording; push never waits; the file is finalized. */
static void test_queue_full(void) {
    static uint8_t big[512 * 1024];
    fb_packet *key = fb_packet_new(big, sizeof big, 1, 0, 0, 33333);
    char path[512];
    snprintf(path, sizeof path, "%s/behind.webm", dir);
    fail_log log = {.lock = PTHREAD_MUTEX_INITIALIZER};
    fb_recorder_params p = fb_recorder_default_params();
    p.queue_frames = 2;
    p.on_fail = on_fail;
    p.user = &log;
    fb_recorder *rec;
    CHECK(fb_recorder_open(path, W, H, FPS, &p, &rec, NULL, 0) == FB_RECORDER_OK);
    if (!rec || !key) return;
    fb_recorder_status st = FB_RECORDER_OK;
    int pushes = 0;
    while (st == FB_RECORDER_OK && pushes < 100000) {
        st = fb_recorder_push(rec, key);
        pushes++;
    }
    CHECKF(st == FB_RECORDER_ERR_QUEUE_FULL, "status %d after %d pushes", st, pushes);
    CHECK(fb_recorder_failed(rec));
    CHECK(fb_recorder_push(rec, key) == FB_RECORDER_ERR_QUEUE_FULL);
    for (int i = 0; i < 200 && fail_calls(&log) == 0; i++) usleep(10000);
    CHECK(fail_calls(&log) == 1 && log.status == FB_RECORDER_ERR_QUEUE_FULL);
    CHECKF(strstr(log.msg, "fell behind") != NULL, "message: %s", log.msg);
    char err[256];
    uint64_t bytes = 0;
    CHECK(fb_recorder_close(rec, &bytes, err, sizeof err) == FB_RECORDER_ERR_QUEUE_FULL);
    CHECK(strstr(err, "fell behind") != NULL);
    CHECK(fail_calls(&log) == 1);
    size_t len = 0;
    uint8_t *b = read_file(path, &len);
    webm_summary s;
    CHECKF(b && len == bytes && webm_check(b, len, 0, &s, err, sizeof err) == 0, "%s", err);
    CHECK(s.finalized && s.n_frames >= 1);
    printf("queue full after %d pushes; %zu frames in the finalized file\n", pushes, s.n_frames);
    webm_summary_free(&s);
    free(b);
    fb_packet_unref(key);
}

static void remove_dir(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

int main(void) {
    struct io_uring ring;
    uring_works = io_uring_queue_init(8, &ring, 0) == 0;
    if (uring_works) io_uring_queue_exit(&ring);
    const char *env = getenv("FLIPBOOK_RECORDER_PWRITE");
    env_forces_pwrite = env && *env && strcmp(env, "0") != 0;
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/fb_recorder_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    chmod(dir, 0755); /* the unprivileged child must reach the read-only folder inside */
    make_packets();
    test_paths_identical();
    test_skip_until_key();
    test_open_errors();
    test_size_limit();
    test_queue_full();
    for (int i = 0; i < N; i++) fb_packet_unref(packets[i]);
    if (test_failures) fprintf(stderr, "files kept in %s\n", dir);
    else remove_dir();
    return test_result(env_forces_pwrite ? "stream_recorder_pwrite" : "stream_recorder");
}
