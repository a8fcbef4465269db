/* clients/cli/cli.h - the `flipbook` command: subcommand table entries and the option parser
 * that every subcommand shares.
 *
 * A subcommand is one file (cmd_<name>.c) that defines an fb_cli_command; main.c lists them in
 * a table, so adding one (generate, bench, ...) is one file plus one table line. Each command
 * describes its options as a table of fb_cli_opt; fb_cli_parse() fills the values, checks
 * required options and ranges, and prints uniform errors and help.
 *
 * Exit codes (docs/cli.md): 0 success, 1 runtime failure (cannot connect, server error, I/O),
 * 2 usage error (unknown option, bad value, bad URL), 130 interrupted by Ctrl-C or SIGTERM.
 *
 * Thread-safety: the parser is plain functions over caller-owned tables; the CLI is
 * single-threaded.
 */
#ifndef FLIPBOOK_CLIENTS_CLI_CLI_H
#define FLIPBOOK_CLIENTS_CLI_CLI_H

#include <stddef.h>
#include <stdio.h>

#define FB_CLI_OK 0
#define FB_CLI_FAIL 1
#define FB_CLI_USAGE 2
#define FB_CLI_INTERRUPTED 130 /* Ctrl-C, as shells report it */

typedef enum {
    FB_OPT_STRING, /* value: const char ** */
    FB_OPT_INT,    /* value: long long *, checked against [min, max] */
    FB_OPT_NUMBER, /* value: double *, checked against [min, max] */
    FB_OPT_FLAG,   /* value: int *, set to 1; takes no argument */
    FB_OPT_LIST    /* value: fb_cli_list *; repeatable, every value kept in order */
} fb_opt_kind;

/* The values of a repeatable option: `items` has room for `cap` of them (at most `cap` may be
 * given); fb_cli_parse sets `n`. */
typedef struct fb_cli_list {
    const char **items;
    int n, cap;
} fb_cli_list;

typedef struct fb_cli_opt {
    const char *name;    /* long name without the leading "--" */
    char short_name;     /* e.g. 'o' for -o, or 0 */
    fb_opt_kind kind;
    const char *metavar; /* shown in help, e.g. "URL" */
    const char *help;    /* one line */
    void *value;         /* where the parsed value goes (see fb_opt_kind) */
    int required;
    double min, max;     /* range for INT and NUMBER (ignored when min > max) */
    int seen;            /* set by fb_cli_parse */
} fb_cli_opt;

typedef struct fb_cli_command {
    const char *name;
    const char *summary;   /* one line for `flipbook --help` */
    const char *usage;     /* the synopsis line(s) after "usage: flipbook " */
    const char *details;   /* a paragraph printed under the options in `flipbook CMD --help` */
    int (*run)(const struct fb_cli_command *self, int argc, char **argv);
} fb_cli_command;

/* Parses argv[1..argc) (argv[0] is the subcommand name) against the NULL-name-terminated table.
 * Returns FB_CLI_OK, FB_CLI_USAGE after printing an error to stderr, or -1 when --help/-h was
 * given and the help has been printed to stdout (the caller then exits 0). Positional arguments
 * are refused. */
int fb_cli_parse(const fb_cli_command *cmd, fb_cli_opt *opts, int argc, char **argv);

/* Prints `flipbook CMD` help (usage, options, details) to `out`. */
void fb_cli_print_help(const fb_cli_command *cmd, const fb_cli_opt *opts, FILE *out);

/* Installs SIGINT/SIGTERM handlers that only set a flag, and ignores SIGPIPE. */
void fb_cli_install_signals(void);
/* Nonzero once SIGINT or SIGTERM arrived. */
int fb_cli_interrupted(void);

/* CLOCK_MONOTONIC in microseconds. */
long long fb_cli_now_us(void);

#endif
