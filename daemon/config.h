/* daemon/config.h - flipbookd's options, from the command line and from a config file.
 *
 * One table in config.c describes every option once (name, type, bounds, default, help); it
 * drives the command-line parser (`--name VALUE` or `--name=VALUE`), the config-file parser
 * (`name = value` lines, `#` comments) and the --help text. Precedence: built-in defaults, then
 * the file named by --config, then the command line.
 *
 * Errors name the option (and the file and line) and make the caller exit with status 2.
 *
 * Thread-safety: parse on one thread at start-up; afterwards the struct is read-only.
 */
#ifndef FLIPBOOK_DAEMON_CONFIG_H
#define FLIPBOOK_DAEMON_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#define FBD_PATH_MAX 4096

typedef enum fbd_source_kind { FBD_SOURCE_TESTPATTERN = 0, FBD_SOURCE_ENGINE = 1 } fbd_source_kind;

typedef struct fbd_config {
    char host[256];
    int port;
    char model[FBD_PATH_MAX];      /* "" = none given; "default" or a path */
    int source;                    /* fbd_source_kind */
    char record_dir[FBD_PATH_MAX];
    char config_file[FBD_PATH_MAX];
    int max_sessions;
    int overcommit;                /* fbd_overcommit (daemon/scheduler.h) */
    size_t kv_budget;              /* bytes; 0 = room for max_sessions engine streams */
    int engine_threads;            /* 0 = one per core */
    int engine_workers;
    int batch;
    int owner_grace;               /* seconds */
    int log_level;                 /* fb_log_level */
    int width, height, fps;        /* test-pattern defaults; `start` may override (the engine
                                    * source always uses the model's size and rate) */
    int bitrate_kbps;              /* 0 = the encoder's default for the size */
    int keyframe_interval;         /* frames; 0 = two seconds' worth */
    int cpu_used;
    int encoder_threads;           /* 0 = the encoder's choice */
    char web_root[FBD_PATH_MAX];   /* "" = found next to the executable */
    char tls_cert[FBD_PATH_MAX];
    char tls_key[FBD_PATH_MAX];

    /* set by the parser */
    int help, version;
    int source_given, model_given;
} fbd_config;

/* Fills the defaults. */
void fbd_config_init(fbd_config *c);

/* Parses argv (with argv[0] the program name): defaults, the --config file if any, then the
 * flags. Returns 0, or -1 with a message (naming the option) in err. --help and --version set
 * c->help / c->version and stop parsing. */
int fbd_config_parse(fbd_config *c, int argc, char **argv, char *err, size_t err_size);

/* Applies one config file on top of *c. Returns 0 or -1 with "FILE:LINE: ..." in err. */
int fbd_config_load_file(fbd_config *c, const char *path, char *err, size_t err_size);

/* Cross-option checks after parsing (TLS pair, even sizes, ...). Returns 0 or -1 with err. */
int fbd_config_check(const fbd_config *c, char *err, size_t err_size);

void fbd_config_usage(FILE *out);

/* Writes every option as a `name = value` line (the effective configuration, for logs). */
void fbd_config_dump(const fbd_config *c, FILE *out);

#endif
