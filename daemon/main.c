/* daemon/main.c - flipbookd: options, start-up checks, signals, the service loop.
 *
 * Threads: the main thread runs the libwebsockets service loop (every socket, every lws call);
 * each session has its frame thread (daemon/session.c); with the engine source, the scheduler's
 * worker threads run the model (daemon/scheduler.c); a signal thread waits in sigwait() for
 * SIGINT/SIGTERM, which every other thread blocks. The first signal asks the hub for an orderly
 * shutdown (through the server's wake-up queue, like any other cross-thread event); a second one
 * exits at once with status 1. Recordings stay playable even then: the WebM is written so that
 * a file cut short still plays (stream/webm.h).
 *
 * The model (engine source) is loaded once, before the port is opened: a missing or invalid
 * model file ends the daemon with a message and status 1.
 *
 * Exit status: 0 after a clean shutdown, 1 on a runtime failure (cannot listen, no model, ...),
 * 2 on a bad option or config file.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/config.h"
#include "daemon/hub.h"
#include "daemon/log.h"
#include "daemon/scheduler.h"
#include "daemon/source.h"
#include "stream/ws_server.h"
#ifdef FLIPBOOK_HAVE_CUDA
#include "kernels/cuda/kernels_cuda.h"
#endif

static pthread_mutex_t signal_mu = PTHREAD_MUTEX_INITIALIZER;
static fbd_hub *signal_hub;          /* under signal_mu; NULL once the loop has ended */
static fb_ws_server *signal_srv;

/* Threads that libraries start before main() (OpenBLAS starts its pool in a constructor) do not
 * block SIGINT/SIGTERM, so the kernel may deliver them there. This handler, installed once the
 * signal thread exists, hands such a signal on to the signal thread (which blocks it and waits
 * for it in sigwait); pthread_kill is async-signal-safe. */
static pthread_t signal_thread;

static void forward_signal(int sig) { pthread_kill(signal_thread, sig); }

static void *signal_main(void *arg) {
    sigset_t *set = arg;
    int count = 0;
    for (;;) {
        int sig = 0;
        if (sigwait(set, &sig) != 0) continue;
        if (++count > 1) {
            static const char msg[] = "flipbookd: second signal: exiting now\n";
            ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
            (void)w;
            _exit(1);
        }
        FB_LOG_INFO("daemon", "%s received: shutting down (send it again to exit at once)",
                    sig == SIGINT ? "SIGINT" : "SIGTERM");
        pthread_mutex_lock(&signal_mu);
        if (signal_hub && fbd_hub_request_shutdown(signal_hub) != 0)
            fb_ws_server_stop(signal_srv);  /* out of memory: stop without the niceties */
        pthread_mutex_unlock(&signal_mu);
    }
    return NULL;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int mkdir_p(const char *path) {
    char tmp[FBD_PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
    return is_dir(tmp) ? 0 : -1;
}

/* The web client: --web-root, else clients/web found relative to the executable (installed:
 * <prefix>/share/flipbook/web; build tree: <build>/bin/../../clients/web). "" when none. */
static int find_web_root(const fbd_config *cfg, char *out, size_t n) {
    char resolved[PATH_MAX];
    if (cfg->web_root[0]) {
        if (!realpath(cfg->web_root, resolved) || !is_dir(resolved)) return -1;
        snprintf(out, n, "%s", resolved);
        return 0;
    }
    out[0] = '\0';
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return 0;
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return 0;
    *slash = '\0';
    static const char *const rel[] = {"../share/flipbook/web", "../clients/web",
                                      "../../clients/web"};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        char cand[PATH_MAX + 64];
        snprintf(cand, sizeof cand, "%s/%s", exe, rel[i]);
        if (is_dir(cand) && realpath(cand, resolved)) {
            snprintf(out, n, "%s", resolved);
            return 0;
        }
    }
    return 0;
}

/* Host name -> numeric address for binding (IPv4 preferred, as "localhost" usually means). */
static int resolve_host(const char *host, char *out, size_t n) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) return -1;
    struct addrinfo *pick = res;
    for (struct addrinfo *a = res; a; a = a->ai_next)
        if (a->ai_family == AF_INET) { pick = a; break; }
    const void *addr = pick->ai_family == AF_INET
                           ? (const void *)&((struct sockaddr_in *)pick->ai_addr)->sin_addr
                           : (const void *)&((struct sockaddr_in6 *)pick->ai_addr)->sin6_addr;
    int ok = inet_ntop(pick->ai_family, addr, out, (socklen_t)n) != NULL;
    freeaddrinfo(res);
    return ok ? 0 : -1;
}

/* One line about where the engine runs. */
static void log_backend(void) {
#ifdef FLIPBOOK_HAVE_CUDA
    char desc[256] = "";
    int n = fb_cuda_probe(desc, sizeof desc);
    if (n <= 0)
        FB_LOG_INFO("engine", "no GPU found (%s); running on the CPU",
                    desc[0] ? desc : "no CUDA device");
    else
        FB_LOG_INFO("engine", "%d GPU%s found (%s), but the CUDA engine path is not wired yet; "
                    "running on the CPU for now", n, n == 1 ? "" : "s", desc);
#else
    FB_LOG_INFO("engine", "CPU backend (this build has no CUDA)");
#endif
}

/* Loads the model and starts the scheduler; on failure prints why and returns NULL. */
static fbd_sched *start_engine(const fbd_config *cfg) {
    const char *model = cfg->model[0] ? cfg->model : "default";
    log_backend();
    FB_LOG_INFO("engine", "loading the model %s", model);
    fbd_sched_params sp = {.model = model,
                           .max_sessions = cfg->max_sessions,
                           .kv_budget = cfg->kv_budget,
                           .workers = cfg->engine_workers,
                           .threads = cfg->engine_threads,
                           .batch = cfg->batch,
                           .overcommit = cfg->overcommit};
    fbd_sched *sched = NULL;
    char err[2048];
    int rc = fbd_sched_start(&sp, &sched, err, sizeof err);
    if (rc == FBD_SCHED_NOT_INSTALLED) {
        fprintf(stderr,
                "flipbookd: the default model is not installed yet (%s)\n"
                "flipbookd: run the test pattern instead (flipbookd --source testpattern), or "
                "give a model file (flipbookd --model PATH)\n", err);
        return NULL;
    }
    if (rc != FBD_SCHED_OK) {
        fprintf(stderr, "flipbookd: cannot load the model: %s\n", err);
        return NULL;
    }
    fbd_sched_info in;
    fbd_sched_get_info(sched, &in);
    FB_LOG_INFO("engine", "model %s: %dx%d at %g fps, %d frames a chunk, %.1f MiB of weights; "
                "a chunk takes %.1f ms and a session needs one every %.0f ms: about %d "
                "session%s at full frame rate (overcommit %s); the KV pool holds %d",
                in.model_name, in.width, in.height, in.fps, in.frames_per_chunk,
                (double)in.weight_bytes / (1 << 20), in.chunk_ms, in.period_ms, in.capacity,
                in.capacity == 1 ? "" : "s", cfg->overcommit ? "slow" : "refuse", in.kv_streams);
    return sched;
}

int main(int argc, char **argv) {
    static fbd_config cfg;
    char err[FBD_PATH_MAX + 512];
    if (fbd_config_parse(&cfg, argc, argv, err, sizeof err) != 0) {
        fprintf(stderr, "flipbookd: %s\nTry 'flipbookd --help'.\n", err);
        return 2;
    }
    if (cfg.help) {
        fbd_config_usage(stdout);
        return 0;
    }
    if (cfg.version) {
        printf("flipbookd %s\n", FLIPBOOKD_VERSION);
        return 0;
    }
    if (fbd_config_check(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "flipbookd: %s\nTry 'flipbookd --help'.\n", err);
        return 2;
    }
    if (cfg.model_given && !cfg.source_given) cfg.source = FBD_SOURCE_ENGINE;
    fb_log_set_level((fb_log_level)cfg.log_level);
    fb_log_route_lws();
    const fb_source_ops *source =
        fb_source_find(cfg.source == FBD_SOURCE_ENGINE ? "engine" : "testpattern");

    char web_root[PATH_MAX];
    if (find_web_root(&cfg, web_root, sizeof web_root) != 0) {
        fprintf(stderr, "flipbookd: --web-root: '%s' is not a directory\n", cfg.web_root);
        return 2;
    }
    if (!web_root[0])
        FB_LOG_WARN("daemon", "no web client found (clients/web); '/' will answer 404 - "
                              "use --web-root DIR");

    char record_dir[PATH_MAX];
    if (mkdir_p(cfg.record_dir) != 0) {
        FB_LOG_WARN("daemon", "cannot create the record directory %s: %s; recordings will fail",
                    cfg.record_dir, strerror(errno));
        snprintf(record_dir, sizeof record_dir, "%s", cfg.record_dir);
    } else if (!realpath(cfg.record_dir, record_dir)) {
        snprintf(record_dir, sizeof record_dir, "%s", cfg.record_dir);
    }
    if (access(record_dir, W_OK) != 0)
        FB_LOG_WARN("daemon", "the record directory %s is not writable; recordings will fail",
                    record_dir);

    char host[INET6_ADDRSTRLEN];
    if (resolve_host(cfg.host, host, sizeof host) != 0) {
        fprintf(stderr, "flipbookd: --host: cannot resolve '%s'\n", cfg.host);
        return 2;
    }

    /* Signals: blocked here, so every thread created from now on inherits the mask and only
     * the signal thread receives them. A full disk or file-size limit must be an error from
     * write(), not a process-ending signal; a closed socket likewise. */
    static sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);

    /* After the signal mask: the engine's worker threads inherit it. */
    fbd_sched *sched = NULL;
    if (cfg.source == FBD_SOURCE_ENGINE && !(sched = start_engine(&cfg))) return 1;

    fbd_hub *hub = fbd_hub_new(&cfg, source, record_dir);
    if (!hub) {
        fprintf(stderr, "flipbookd: out of memory\n");
        fbd_sched_stop(sched);
        return 1;
    }
    fbd_hub_set_engine(hub, sched);
    fb_ws_config wc;
    fb_ws_config_default(&wc);
    wc.host = host;
    wc.port = cfg.port;
    wc.web_root = web_root[0] ? web_root : NULL;
    wc.record_dir = record_dir;
    wc.tls_cert = cfg.tls_cert[0] ? cfg.tls_cert : NULL;
    wc.tls_key = cfg.tls_key[0] ? cfg.tls_key : NULL;
    wc.server_name = "flipbookd/" FLIPBOOKD_VERSION;
    fb_ws_hooks hooks;
    fbd_hub_hooks(hub, &hooks);
    fb_ws_server *srv = NULL;
    if (fb_ws_server_new(&wc, &hooks, &srv, err, sizeof err) != 0) {
        fprintf(stderr, "flipbookd: %s\n", err);
        fbd_hub_free(hub);
        fbd_sched_stop(sched);
        return 1;
    }
    fbd_hub_attach(hub, srv);

    const char *scheme = fb_ws_server_is_tls(srv) ? "https" : "http";
    int v6 = strchr(host, ':') != NULL;
    /* Tests read this exact line to learn the port (--port 0). */
    fprintf(stderr, "listening on %s://%s%s%s:%d/\n", scheme, v6 ? "[" : "", host, v6 ? "]" : "",
            fb_ws_server_port(srv));
    fflush(stderr);
    FB_LOG_INFO("daemon", "flipbookd %s: serving %s://%s%s%s:%d/ (source %s, web root %s, "
                "recordings in %s)", FLIPBOOKD_VERSION, scheme, v6 ? "[" : "", host,
                v6 ? "]" : "", fb_ws_server_port(srv), source->name,
                web_root[0] ? web_root : "none", record_dir);

    pthread_mutex_lock(&signal_mu);
    signal_hub = hub;
    signal_srv = srv;
    pthread_mutex_unlock(&signal_mu);
    if (pthread_create(&signal_thread, NULL, signal_main, &set) != 0) {
        fprintf(stderr, "flipbookd: cannot start the signal thread\n");
        return 1;
    }
    pthread_detach(signal_thread);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int rc = fb_ws_server_run(srv);
    if (rc != 0) FB_LOG_ERROR("daemon", "the service loop failed");

    pthread_mutex_lock(&signal_mu);
    signal_hub = NULL;
    signal_srv = NULL;
    pthread_mutex_unlock(&signal_mu);
    fbd_hub_stop_sessions(hub);
    fb_ws_server_free(srv);
    fbd_hub_free(hub);
    fbd_sched_stop(sched);  /* every session (and its engine stream) is gone by now */
    return rc ? 1 : 0;
}
