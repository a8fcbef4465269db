/* daemon/config.c - the option table and the flag / config-file parsers (see config.h). */
#include "daemon/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef enum opt_type { OPT_STRING, OPT_INT, OPT_SIZE, OPT_CHOICE, OPT_ACTION } opt_type;

static const char *const source_names[] = {"testpattern", "engine", NULL};
static const char *const level_names[] = {"error", "warn", "info", "debug", NULL};
static const char *const overcommit_names[] = {"refuse", "slow", NULL};

#define STR(field) offsetof(fbd_config, field), sizeof(((fbd_config *)0)->field)
#define INT(field) offsetof(fbd_config, field), sizeof(int)
#define SIZE(field) offsetof(fbd_config, field), sizeof(size_t)

typedef struct option_row {
    const char *name;
    opt_type type;
    size_t offset, size;
    long min, max;                 /* OPT_INT */
    const char *const *choices;    /* OPT_CHOICE */
    const char *dflt;              /* default, as text */
    int in_file;                   /* may appear in a config file */
    const char *arg;               /* placeholder in --help */
    const char *help;
} option_row;

/* The one list of options. Defaults are text so one parser handles defaults, flags and files. */
static const option_row options[] = {
    {"host", OPT_STRING, STR(host), 0, 0, NULL, "127.0.0.1", 1, "ADDR",
     "address to listen on (127.0.0.1; 0.0.0.0 or :: for every interface)"},
    {"port", OPT_INT, INT(port), 0, 65535, NULL, "8080", 1, "N",
     "TCP port; 0 picks a free one (the 'listening on' line tells which)"},
    {"model", OPT_STRING, STR(model), 0, 0, NULL, "", 1, "PATH|default",
     "model weights; implies --source engine unless --source is given"},
    {"source", OPT_CHOICE, INT(source), 0, 0, source_names, "testpattern", 1, "NAME",
     "frame source: testpattern | engine"},
    {"record-dir", OPT_STRING, STR(record_dir), 0, 0, NULL, "./recordings", 1, "DIR",
     "where recordings are written (created if missing)"},
    {"config", OPT_STRING, STR(config_file), 0, 0, NULL, "", 0, "FILE",
     "read options from FILE ('name = value' lines); flags override it"},
    {"max-sessions", OPT_INT, INT(max_sessions), 1, 1024, NULL, "4", 1, "N",
     "sessions that may run at once"},
    {"overcommit", OPT_CHOICE, INT(overcommit), 0, 0, overcommit_names, "refuse", 1, "MODE",
     "engine, past what runs at full frame rate: refuse new sessions, or slow all evenly: "
     "refuse | slow"},
    {"kv-budget", OPT_SIZE, SIZE(kv_budget), 0, 0, NULL, "0", 1, "BYTES",
     "engine: KV cache pool shared by all sessions (suffix k, M, G); 0 = room for "
     "--max-sessions sessions"},
    {"engine-threads", OPT_INT, INT(engine_threads), 0, 256, NULL, "0", 1, "N",
     "engine: CPU threads per engine call; 0 = one per core"},
    {"engine-workers", OPT_INT, INT(engine_workers), 1, 64, NULL, "1", 1, "N",
     "engine: scheduler threads running chunks"},
    {"batch", OPT_INT, INT(batch), 1, 64, NULL, "4", 1, "N",
     "engine: most sessions whose chunks run in one batched call"},
    {"owner-grace", OPT_INT, INT(owner_grace), 0, 86400, NULL, "30", 1, "SECONDS",
     "end a session when no owner connection has been open this long"},
    {"log-level", OPT_CHOICE, INT(log_level), 0, 0, level_names, "info", 1, "LEVEL",
     "error | warn | info | debug"},
    {"width", OPT_INT, INT(width), 32, 4096, NULL, "256", 1, "PX",
     "test pattern: default frame width (even; engines use the model's)"},
    {"height", OPT_INT, INT(height), 32, 4096, NULL, "256", 1, "PX",
     "test pattern: default frame height (even)"},
    {"fps", OPT_INT, INT(fps), 1, 60, NULL, "30", 1, "N", "test pattern: default frames per second"},
    {"bitrate-kbps", OPT_INT, INT(bitrate_kbps), 0, 100000, NULL, "0", 1, "N",
     "VP9 target bitrate; 0 = chosen from the frame size (1000 at 256x256@30)"},
    {"keyframe-interval", OPT_INT, INT(keyframe_interval), 0, 100000, NULL, "0", 1, "FRAMES",
     "frames between periodic keyframes; 0 = two seconds' worth"},
    {"cpu-used", OPT_INT, INT(cpu_used), 5, 9, NULL, "8", 1, "N",
     "libvpx speed 5..9 (higher is faster)"},
    {"encoder-threads", OPT_INT, INT(encoder_threads), 0, 16, NULL, "0", 1, "N",
     "VP9 encoder threads per session; 0 = chosen from the frame size"},
    {"web-root", OPT_STRING, STR(web_root), 0, 0, NULL, "", 1, "DIR",
     "folder served at / (default: clients/web found next to the executable)"},
    {"tls-cert", OPT_STRING, STR(tls_cert), 0, 0, NULL, "", 1, "FILE",
     "PEM certificate: serve https/wss (needs --tls-key)"},
    {"tls-key", OPT_STRING, STR(tls_key), 0, 0, NULL, "", 1, "FILE", "PEM private key"},
    {"help", OPT_ACTION, INT(help), 0, 0, NULL, NULL, 0, NULL, "show this help and exit"},
    {"version", OPT_ACTION, INT(version), 0, 0, NULL, NULL, 0, NULL,
     "show the version and exit"},
};
#define N_OPTIONS (sizeof options / sizeof options[0])

static int errorf(char *err, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return -1;
}

static const option_row *find_option(const char *name, size_t len) {
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strlen(options[i].name) == len && strncmp(options[i].name, name, len) == 0)
            return &options[i];
    return NULL;
}

/* Stores `value` into the field of `o`. `where` prefixes messages ("--port" or "f.conf:3"). */
static int set_value(fbd_config *c, const option_row *o, const char *value, const char *where,
                     char *err, size_t n) {
    char *field = (char *)c + o->offset;
    switch (o->type) {
    case OPT_STRING: {
        size_t len = strlen(value);
        if (len >= o->size) return errorf(err, n, "%s: value is too long", where);
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)value[i] < 0x20)
                return errorf(err, n, "%s: value contains a control character", where);
        memcpy(field, value, len + 1);
        break;
    }
    case OPT_INT: {
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (!*value || *end || errno)
            return errorf(err, n, "%s: '%s' is not an integer", where, value);
        if (v < o->min || v > o->max)
            return errorf(err, n, "%s: %ld is out of range (%ld..%ld)", where, v, o->min, o->max);
        *(int *)field = (int)v;
        break;
    }
    case OPT_SIZE: {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(value, &end, 10);
        if (!*value || *value == '-' || end == value || errno)
            return errorf(err, n, "%s: '%s' is not a size (bytes, or a number with k, M or G)",
                          where, value);
        unsigned long long mult = 1;
        if (*end == 'k' || *end == 'K') mult = 1ull << 10, end++;
        else if (*end == 'M' || *end == 'm') mult = 1ull << 20, end++;
        else if (*end == 'G' || *end == 'g') mult = 1ull << 30, end++;
        if (*end == 'B' || *end == 'b') end++;
        if (*end)
            return errorf(err, n, "%s: '%s' is not a size (bytes, or a number with k, M or G)",
                          where, value);
        if (v > (1ull << 50) / mult) return errorf(err, n, "%s: '%s' is too large", where, value);
        *(size_t *)field = (size_t)(v * mult);
        break;
    }
    case OPT_CHOICE: {
        for (int i = 0; o->choices[i]; i++) {
            if (strcmp(value, o->choices[i]) == 0) {
                *(int *)field = i;
                goto stored;
            }
        }
        char list[128] = "";
        for (int i = 0; o->choices[i]; i++) {
            strncat(list, i ? " | " : "", sizeof list - strlen(list) - 1);
            strncat(list, o->choices[i], sizeof list - strlen(list) - 1);
        }
        return errorf(err, n, "%s: '%s' is not one of %s", where, value, list);
    }
    case OPT_ACTION:
        *(int *)field = 1;
        break;
    }
stored:
    if (strcmp(o->name, "source") == 0) c->source_given = 1;
    if (strcmp(o->name, "model") == 0) c->model_given = value[0] != '\0';
    return 0;
}

void fbd_config_init(fbd_config *c) {
    memset(c, 0, sizeof *c);
    char err[128];
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (options[i].dflt) (void)set_value(c, &options[i], options[i].dflt, "default", err, sizeof err);
    c->source_given = c->model_given = 0;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

int fbd_config_load_file(fbd_config *c, const char *path, char *err, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f) return errorf(err, n, "cannot read config file %s: %s", path, strerror(errno));
    char line[FBD_PATH_MAX + 256];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char where[FBD_PATH_MAX + 32];
        snprintf(where, sizeof where, "%s:%d", path, lineno);
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            rc = errorf(err, n, "%s: line is too long", where);
            break;
        }
        /* '#' starts a comment at the start of a line or after whitespace, so values such as
         * paths may still contain '#'. */
        for (char *p = line; *p; p++) {
            if (*p == '#' && (p == line || isspace((unsigned char)p[-1]))) {
                *p = '\0';
                break;
            }
        }
        char *s = trim(line);
        if (!*s) continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = errorf(err, n, "%s: expected 'name = value', got '%s'", where, s);
            break;
        }
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        size_t vl = strlen(value);
        if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') {
            value[vl - 1] = '\0';
            value++;
        }
        const option_row *o = find_option(key, strlen(key));
        if (!o) {
            rc = errorf(err, n, "%s: unknown option '%s'", where, key);
            break;
        }
        if (!o->in_file) {
            rc = errorf(err, n, "%s: option '%s' is not allowed in a config file", where, key);
            break;
        }
        char w2[FBD_PATH_MAX + 300];
        snprintf(w2, sizeof w2, "%s: %s", where, key);
        if (set_value(c, o, value, w2, err, n)) { rc = -1; break; }
    }
    if (!rc && ferror(f)) rc = errorf(err, n, "cannot read config file %s", path);
    fclose(f);
    return rc;
}

/* Walks argv calling fn for every option; shared by the two passes below. */
typedef int (*opt_fn)(fbd_config *c, const option_row *o, const char *value, char *err, size_t n);

static int walk_args(fbd_config *c, int argc, char **argv, opt_fn fn, char *err, size_t n) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0) a = "--help";
        else if (strcmp(a, "-V") == 0) a = "--version";
        if (strncmp(a, "--", 2) != 0 || !a[2])
            return errorf(err, n, "unexpected argument '%s' (options start with --)", argv[i]);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const option_row *o = find_option(name, len);
        if (!o) return errorf(err, n, "unknown option '--%.*s'", (int)len, name);
        const char *value = NULL;
        if (o->type == OPT_ACTION) {
            if (eq) return errorf(err, n, "option '--%s' takes no value", o->name);
        } else if (eq) {
            value = eq + 1;
        } else {
            if (i + 1 >= argc) return errorf(err, n, "option '--%s' needs a value (%s)", o->name, o->arg);
            value = argv[++i];
        }
        int rc = fn(c, o, value, err, n);
        if (rc) return rc < 0 ? -1 : 0;  /* >0: stop early (help/version) */
    }
    return 0;
}

static int pass_config(fbd_config *c, const option_row *o, const char *value, char *err, size_t n) {
    if (o->type == OPT_ACTION) {
        *(int *)((char *)c + o->offset) = 1;
        return 1;
    }
    if (strcmp(o->name, "config") == 0) {
        char where[64];
        snprintf(where, sizeof where, "--%s", o->name);
        return set_value(c, o, value, where, err, n);
    }
    return 0;
}

static int pass_all(fbd_config *c, const option_row *o, const char *value, char *err, size_t n) {
    if (o->type == OPT_ACTION) {
        *(int *)((char *)c + o->offset) = 1;
        return 1;
    }
    char where[64];
    snprintf(where, sizeof where, "--%s", o->name);
    return set_value(c, o, value ? value : "", where, err, n);
}

int fbd_config_parse(fbd_config *c, int argc, char **argv, char *err, size_t n) {
    fbd_config_init(c);
    /* First pass: --config (and --help/--version, which win over everything). A syntax error
     * in argv is reported by this pass already, before the file is read. */
    if (walk_args(c, argc, argv, pass_config, err, n)) return -1;
    if (c->help || c->version) return 0;
    if (c->config_file[0] && fbd_config_load_file(c, c->config_file, err, n)) return -1;
    return walk_args(c, argc, argv, pass_all, err, n);
}

int fbd_config_check(const fbd_config *c, char *err, size_t n) {
    if (c->width % 2 || c->height % 2)
        return errorf(err, n, "--width and --height must be even (got %dx%d)", c->width, c->height);
    if (!c->tls_cert[0] != !c->tls_key[0])
        return errorf(err, n, "--tls-cert and --tls-key must be given together");
    if (c->bitrate_kbps && c->bitrate_kbps < 50)
        return errorf(err, n, "--bitrate-kbps must be 0 (automatic) or at least 50 (got %d)",
                      c->bitrate_kbps);
    if (!c->host[0]) return errorf(err, n, "--host must not be empty");
    if (!c->record_dir[0]) return errorf(err, n, "--record-dir must not be empty");
    return 0;
}

void fbd_config_usage(FILE *out) {
    fprintf(out,
            "usage: flipbookd [options]\n"
            "Generates endless live video and streams it over WebSocket (flipbook.v1 on /ws).\n\n"
            "options (each may also be set as 'name = value' in the --config file):\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const option_row *o = &options[i];
        char left[64];
        if (o->arg) snprintf(left, sizeof left, "--%s %s", o->name, o->arg);
        else snprintf(left, sizeof left, "--%s", o->name);
        fprintf(out, "  %-32s %s", left, o->help);
        if (o->dflt && o->dflt[0]) fprintf(out, " [%s]", o->dflt);
        fputc('\n', out);
    }
    fprintf(out, "\nexit status: 0 after a clean shutdown (SIGINT/SIGTERM), 1 on a runtime "
                 "error, 2 on a bad option or config file\n");
}

void fbd_config_dump(const fbd_config *c, FILE *out) {
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const option_row *o = &options[i];
        const char *field = (const char *)c + o->offset;
        switch (o->type) {
        case OPT_STRING: fprintf(out, "%s = %s\n", o->name, field); break;
        case OPT_INT: fprintf(out, "%s = %d\n", o->name, *(const int *)field); break;
        case OPT_SIZE: fprintf(out, "%s = %zu\n", o->name, *(const size_t *)field); break;
        case OPT_CHOICE: fprintf(out, "%s = %s\n", o->name, o->choices[*(const int *)field]); break;
        case OPT_ACTION: break;
        }
    }
}
