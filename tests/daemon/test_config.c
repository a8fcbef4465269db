/* tests/daemon/test_config.c - flipbookd options: the parser (flags, config file, precedence,
 * bounds) and the binary's behaviour on bad input (a message naming the option, exit 2), on
 * --help/--version, on a model that is missing (exit 1 with a message), and a start from a
 * config file.
 *
 * The commented sample docs/flipbookd.conf is checked against the option table as well.
 *
 * usage: test_daemon_config PATH/TO/flipbookd PATH/TO/docs/flipbookd.conf */
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/config.h"
#include "tests/net/check.h"
#include "tests/net/wstest.h"

static const char *daemon_path;
static char tmp[] = "/tmp/fbconfXXXXXX";

static int parse(fbd_config *c, char *err, size_t n, ...) {
    char *argv[32] = {"flipbookd"};
    int argc = 1;
    va_list ap;
    va_start(ap, n);
    for (char *a; argc < 31 && (a = va_arg(ap, char *));) argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    err[0] = '\0';
    return fbd_config_parse(c, argc, argv, err, n);
}

static const char *write_conf(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_parser(void) {
    fbd_config c;
    char err[512];
    CHECK(parse(&c, err, sizeof err, NULL) == 0);
    CHECK_STR(c.host, "127.0.0.1");
    CHECK(c.port == 8080 && c.max_sessions == 4 && c.owner_grace == 30 && c.log_level == 2);
    CHECK(c.width == 256 && c.height == 256 && c.fps == 30 && c.cpu_used == 8);
    CHECK(c.source == FBD_SOURCE_TESTPATTERN && !c.source_given && !c.model_given);
    CHECK_STR(c.record_dir, "./recordings");

    CHECK(parse(&c, err, sizeof err, "--port", "0", "--host=0.0.0.0", "--fps=25",
                "--log-level", "debug", "--source", "engine", "--model", "m.safetensors", NULL) == 0);
    CHECK(c.port == 0 && c.fps == 25 && c.log_level == 3 && c.source == FBD_SOURCE_ENGINE);
    CHECK_STR(c.host, "0.0.0.0");
    CHECK(c.source_given && c.model_given);
    CHECK_STR(c.model, "m.safetensors");

    /* errors name the option */
    CHECK(parse(&c, err, sizeof err, "--bogus", NULL) == -1);
    CHECK_STR(err, "unknown option '--bogus'");
    CHECK(parse(&c, err, sizeof err, "--port", "http", NULL) == -1);
    CHECK_STR(err, "--port: 'http' is not an integer");
    CHECK(parse(&c, err, sizeof err, "--port", "70000", NULL) == -1);
    CHECK_STR(err, "--port: 70000 is out of range (0..65535)");
    CHECK(parse(&c, err, sizeof err, "--port", NULL) == -1);
    CHECK_STR(err, "option '--port' needs a value (N)");
    CHECK(parse(&c, err, sizeof err, "--log-level", "loud", NULL) == -1);
    CHECK_STR(err, "--log-level: 'loud' is not one of error | warn | info | debug");
    CHECK(parse(&c, err, sizeof err, "--fps", "0", NULL) == -1);
    CHECK(parse(&c, err, sizeof err, "--cpu-used", "12", NULL) == -1);
    CHECK(parse(&c, err, sizeof err, "--help=yes", NULL) == -1);
    CHECK(parse(&c, err, sizeof err, "stray", NULL) == -1);
    CHECK_STR(err, "unexpected argument 'stray' (options start with --)");
    CHECK(parse(&c, err, sizeof err, "--width", "12x", NULL) == -1);

    /* --help wins over everything after it */
    CHECK(parse(&c, err, sizeof err, "--help", "--bogus", NULL) == 0 && c.help);
    CHECK(parse(&c, err, sizeof err, "-V", NULL) == 0 && c.version);

    /* cross-option checks */
    CHECK(parse(&c, err, sizeof err, "--width", "101", NULL) == 0);
    CHECK(fbd_config_check(&c, err, sizeof err) == -1);
    CHECK_STR(err, "--width and --height must be even (got 101x256)");
    CHECK(parse(&c, err, sizeof err, "--tls-cert", "a.pem", NULL) == 0);
    CHECK(fbd_config_check(&c, err, sizeof err) == -1);

    /* config file: comments, quotes, spaces; flags override the file wherever they appear */
    const char *conf = write_conf("good.conf",
                                  "# flipbookd test config\n"
                                  "\n"
                                  "port = 9001\n"
                                  "  max-sessions=7   # inline comment\n"
                                  "record-dir = \"/tmp/with space#hash\"\n"
                                  "log-level = error\n");
    CHECK(parse(&c, err, sizeof err, "--log-level", "warn", "--config", conf, NULL) == 0);
    CHECK(c.port == 9001 && c.max_sessions == 7 && c.log_level == 1);
    CHECK_STR(c.record_dir, "/tmp/with space#hash");

    conf = write_conf("unknown.conf", "port = 1\n\ncolour = blue\n");
    CHECK(parse(&c, err, sizeof err, "--config", conf, NULL) == -1);
    CHECK(strstr(err, "unknown.conf:3: unknown option 'colour'") != NULL);
    conf = write_conf("badval.conf", "fps = fast\n");
    CHECK(parse(&c, err, sizeof err, "--config", conf, NULL) == -1);
    CHECK(strstr(err, "badval.conf:1: fps: 'fast' is not an integer") != NULL);
    conf = write_conf("noeq.conf", "port 8080\n");
    CHECK(parse(&c, err, sizeof err, "--config", conf, NULL) == -1);
    CHECK(strstr(err, "noeq.conf:1: expected 'name = value'") != NULL);
    conf = write_conf("nested.conf", "config = other.conf\n");
    CHECK(parse(&c, err, sizeof err, "--config", conf, NULL) == -1);
    CHECK(strstr(err, "not allowed in a config file") != NULL);
    CHECK(parse(&c, err, sizeof err, "--config", "/nonexistent/flipbookd.conf", NULL) == -1);
    CHECK(strstr(err, "cannot read config file /nonexistent/flipbookd.conf") != NULL);
    /* a model in the file counts as given (it implies the engine source) */
    conf = write_conf("model.conf", "model = default\n");
    CHECK(parse(&c, err, sizeof err, "--config", conf, NULL) == 0 && c.model_given && !c.source_given);
}

/* Runs the binary; returns its exit status; output (stdout+stderr) goes to *out (malloc'd). */
static int run(char **out, ...) {
    char *argv[32] = {(char *)daemon_path};
    int argc = 1;
    va_list ap;
    va_start(ap, out);
    for (char *a; argc < 31 && (a = va_arg(ap, char *));) argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/out.txt", tmp);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    int st = -1;
    int64_t end = wstest_now_ms() + 10000;
    while (waitpid(pid, &st, WNOHANG) != pid) {
        if (wstest_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        usleep(10000);
    }
    FILE *f = fopen(path, "r");
    *out = calloc(1, 65536);
    if (f) {
        size_t n = fread(*out, 1, 65535, f);
        (*out)[n] = '\0';
        fclose(f);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define RUN(code, text, ...)                                                               \
    do {                                                                                   \
        char *out_;                                                                        \
        int rc_ = run(&out_, __VA_ARGS__, NULL);                                           \
        if (rc_ != (code) || !strstr(out_, (text))) {                                      \
            fprintf(stderr, "%s:%d: flipbookd exited %d (want %d), output:\n%s\n(wanted \"%s\")\n", \
                    __FILE__, __LINE__, rc_, (code), out_, (text));                       \
            check_failures++;                                                              \
        }                                                                                  \
        free(out_);                                                                        \
    } while (0)

static void test_binary(void) {
    RUN(0, "usage: flipbookd", "--help");
    RUN(0, "--record-dir DIR", "--help");
    RUN(0, "flipbookd 0.1.0", "--version");
    RUN(2, "flipbookd: unknown option '--bogus'", "--bogus");
    RUN(2, "Try 'flipbookd --help'", "--bogus");
    RUN(2, "--port: 'abc' is not an integer", "--port", "abc");
    RUN(2, "option '--owner-grace' needs a value", "--owner-grace");
    RUN(2, "--max-sessions: 0 is out of range (1..1024)", "--max-sessions", "0");
    RUN(2, "--source: 'camera' is not one of testpattern | engine", "--source", "camera");
    RUN(2, "must be even", "--height", "99");
    RUN(2, "--bitrate-kbps must be 0 (automatic) or at least 50 (got 10)", "--bitrate-kbps", "10");
    RUN(2, "--tls-cert and --tls-key must be given together", "--tls-key", "k.pem");
    RUN(2, "--web-root: '/nonexistent/web' is not a directory", "--port", "0", "--web-root",
        "/nonexistent/web");
    const char *bad = write_conf("bin-bad.conf", "# ok\nport = 0\nframes-per-second = 30\n");
    RUN(2, "bin-bad.conf:3: unknown option 'frames-per-second'", "--config", bad);
    RUN(2, "cannot read config file", "--config", "/nonexistent.conf");
    /* the engine source without its model: "default" not installed (FLIPBOOK_MODELS names an
     * empty folder, so this holds once a default model exists too), or a missing file */
    setenv("FLIPBOOK_MODELS", tmp, 1);
    RUN(1, "the default model is not installed yet", "--model", "default");
    RUN(1, "flipbookd --source testpattern", "--source", "engine");
    unsetenv("FLIPBOOK_MODELS");
    RUN(1, "cannot load the model", "--model", "/nonexistent/model.safetensors");

    /* a start from a config file (port 0, log level from the file, overridden by a flag) with
     * --model stored but the test pattern chosen explicitly */
    char rec[400], log[400], conf_text[1024];
    snprintf(rec, sizeof rec, "%s/rec", tmp);
    snprintf(log, sizeof log, "%s/daemon.log", tmp);
    snprintf(conf_text, sizeof conf_text,
             "port = 0\nrecord-dir = %s\nlog-level = error\nmodel = default\nsource = testpattern\n",
             rec);
    const char *conf = write_conf("start.conf", conf_text);
    char *argv[] = {(char *)daemon_path, "--config", (char *)conf, "--log-level", "info", NULL};
    pid_t pid;
    int port = wstest_spawn_daemon(argv, log, &pid, 10000);
    CHECK(port > 0);
    if (port > 0) {
        struct stat st;
        CHECK(stat(rec, &st) == 0 && S_ISDIR(st.st_mode));  /* created */
        CHECK(wstest_http("127.0.0.1", port, "GET", "/metrics", NULL, NULL, NULL, NULL) == 200);
        kill(pid, SIGTERM);
        int status = -1;
        int64_t end = wstest_now_ms() + 5000;
        while (waitpid(pid, &status, WNOHANG) != pid && wstest_now_ms() < end) usleep(10000);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        FILE *f = fopen(log, "r");
        char text[8192] = "";
        if (f) {
            size_t n = fread(text, 1, sizeof text - 1, f);
            text[n] = '\0';
            fclose(f);
        }
        CHECK(strstr(text, " info  daemon: flipbookd 0.1.0: serving http://127.0.0.1:") != NULL);
        CHECK(strstr(text, "source testpattern") != NULL);
        CHECK(strstr(text, "shutdown complete") != NULL);
    }
}

/* docs/flipbookd.conf parses as shipped, its commented "# name = value" lines parse when
 * uncommented, and every option of --help is documented in it. */
static void test_sample_config(const char *sample) {
    fbd_config c;
    char err[512];
    fbd_config_init(&c);
    CHECK(fbd_config_load_file(&c, sample, err, sizeof err) == 0);
    FILE *in = fopen(sample, "r");
    CHECK(in != NULL);
    if (!in) return;
    char out_path[400], line[1024], all[65536] = "";
    snprintf(out_path, sizeof out_path, "%s/uncommented.conf", tmp);
    FILE *out = fopen(out_path, "w");
    int settings = 0;
    while (fgets(line, sizeof line, in)) {
        char name[64];
        if (strlen(all) + strlen(line) < sizeof all - 1) strcat(all, line);
        if (sscanf(line, "# %63[a-z-] =", name) == 1 && strchr(line, '=')) {
            fputs(line + 2, out);
            settings++;
        }
    }
    fclose(in);
    fclose(out);
    CHECK(settings >= 18);
    fbd_config_init(&c);
    if (fbd_config_load_file(&c, out_path, err, sizeof err) != 0) fprintf(stderr, "%s\n", err);
    CHECK(fbd_config_load_file(&c, out_path, err, sizeof err) == 0);
    char *help;
    CHECK(run(&help, "--help", NULL) == 0);
    for (char *p = help; (p = strstr(p, "  --")); p += 4) {
        char name[64], key[80];
        if (sscanf(p + 4, "%63[a-z-]", name) != 1) continue;
        if (!strcmp(name, "help") || !strcmp(name, "version") || !strcmp(name, "config")) continue;
        snprintf(key, sizeof key, "\n# %s =", name);
        if (!strstr(all, key)) fprintf(stderr, "option %s is not in %s\n", name, sample);
        CHECK(strstr(all, key) != NULL);
    }
    free(help);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s PATH/TO/flipbookd PATH/TO/docs/flipbookd.conf\n", argv[0]);
        return 2;
    }
    daemon_path = argv[1];
    if (!mkdtemp(tmp)) return 2;
    test_parser();
    test_binary();
    test_sample_config(argv[2]);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return check_exit("daemon_config");
}
