/* clients/cli/opts.c - option parsing, help text and signal flags shared by subcommands. */
#include "clients/cli/cli.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static fb_cli_opt *find_long(fb_cli_opt *opts, const char *name, size_t len) {
    for (fb_cli_opt *o = opts; o->name; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0) return o;
    return NULL;
}

static fb_cli_opt *find_short(fb_cli_opt *opts, char c) {
    for (fb_cli_opt *o = opts; o->name; o++)
        if (o->short_name && o->short_name == c) return o;
    return NULL;
}

/* Stores `text` into the option's value; prints the error and returns FB_CLI_USAGE on a bad
 * value. Numbers must be complete (no trailing junk) and inside [min, max]. */
static int set_value(const char *cmd, fb_cli_opt *o, const char *text) {
    switch (o->kind) {
    case FB_OPT_STRING:
        *(const char **)o->value = text;
        return FB_CLI_OK;
    case FB_OPT_INT: {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(text, &end, 10);
        if (errno || end == text || *end != '\0') {
            fprintf(stderr, "flipbook %s: --%s wants an integer, got '%s'\n", cmd, o->name, text);
            return FB_CLI_USAGE;
        }
        if (o->min <= o->max && ((double)v < o->min || (double)v > o->max)) {
            fprintf(stderr, "flipbook %s: --%s must be between %.0f and %.0f, got %lld\n", cmd,
                    o->name, o->min, o->max, v);
            return FB_CLI_USAGE;
        }
        *(long long *)o->value = v;
        return FB_CLI_OK;
    }
    case FB_OPT_NUMBER: {
        char *end = NULL;
        errno = 0;
        double v = strtod(text, &end);
        if (errno || end == text || *end != '\0' || !isfinite(v)) {
            fprintf(stderr, "flipbook %s: --%s wants a number, got '%s'\n", cmd, o->name, text);
            return FB_CLI_USAGE;
        }
        if (o->min <= o->max && (v < o->min || v > o->max)) {
            fprintf(stderr, "flipbook %s: --%s must be between %g and %g, got %g\n", cmd, o->name,
                    o->min, o->max, v);
            return FB_CLI_USAGE;
        }
        *(double *)o->value = v;
        return FB_CLI_OK;
    }
    case FB_OPT_FLAG:
        *(int *)o->value = 1;
        return FB_CLI_OK;
    case FB_OPT_LIST: {
        fb_cli_list *l = o->value;
        if (l->n >= l->cap) {
            fprintf(stderr, "flipbook %s: --%s may be given at most %d times\n", cmd, o->name,
                    l->cap);
            return FB_CLI_USAGE;
        }
        l->items[l->n++] = text;
        return FB_CLI_OK;
    }
    }
    return FB_CLI_USAGE;
}

int fb_cli_parse(const fb_cli_command *cmd, fb_cli_opt *opts, int argc, char **argv) {
    for (fb_cli_opt *o = opts; o->name; o++) {
        o->seen = 0;
        if (o->kind == FB_OPT_LIST) ((fb_cli_list *)o->value)->n = 0;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fb_cli_print_help(cmd, opts, stdout);
            return -1;
        }
        fb_cli_opt *o = NULL;
        const char *inline_value = NULL;
        if (strncmp(arg, "--", 2) == 0 && arg[2]) {
            const char *name = arg + 2;
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            o = find_long(opts, name, len);
            if (eq) inline_value = eq + 1;
        } else if (arg[0] == '-' && arg[1] && !arg[2]) {
            o = find_short(opts, arg[1]);
        } else {
            fprintf(stderr, "flipbook %s: unexpected argument '%s' (see flipbook %s --help)\n",
                    cmd->name, arg, cmd->name);
            return FB_CLI_USAGE;
        }
        if (!o) {
            fprintf(stderr, "flipbook %s: unknown option '%s' (see flipbook %s --help)\n",
                    cmd->name, arg, cmd->name);
            return FB_CLI_USAGE;
        }
        const char *value;
        if (o->kind == FB_OPT_FLAG) {
            if (inline_value) {
                fprintf(stderr, "flipbook %s: --%s takes no value\n", cmd->name, o->name);
                return FB_CLI_USAGE;
            }
            value = "";
        } else if (inline_value) {
            value = inline_value;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            fprintf(stderr, "flipbook %s: --%s needs a value (%s)\n", cmd->name, o->name,
                    o->metavar ? o->metavar : "VALUE");
            return FB_CLI_USAGE;
        }
        int rc = set_value(cmd->name, o, value);
        if (rc != FB_CLI_OK) return rc;
        o->seen = 1;
    }
    for (fb_cli_opt *o = opts; o->name; o++) {
        if (o->required && !o->seen) {
            fprintf(stderr, "flipbook %s: --%s is required (see flipbook %s --help)\n", cmd->name,
                    o->name, cmd->name);
            return FB_CLI_USAGE;
        }
    }
    return FB_CLI_OK;
}

void fb_cli_print_help(const fb_cli_command *cmd, const fb_cli_opt *opts, FILE *out) {
    fprintf(out, "usage: flipbook %s\n\n%s\n\noptions:\n", cmd->usage, cmd->summary);
    for (const fb_cli_opt *o = opts; o->name; o++) {
        char left[96];
        char shortpart[8] = "    ";
        if (o->short_name) snprintf(shortpart, sizeof shortpart, "-%c, ", o->short_name);
        if (o->kind == FB_OPT_FLAG)
            snprintf(left, sizeof left, "%s--%s", shortpart, o->name);
        else
            snprintf(left, sizeof left, "%s--%s %s", shortpart, o->name,
                     o->metavar ? o->metavar : "VALUE");
        fprintf(out, "  %-26s %s%s\n", left, o->help, o->required ? " (required)" : "");
    }
    fprintf(out, "  %-26s %s\n", "-h, --help", "show this help");
    if (cmd->details && cmd->details[0]) fprintf(out, "\n%s\n", cmd->details);
}

/* The only process-wide state of the CLI: written by the signal handler, read by the loops. */
static volatile sig_atomic_t g_interrupted;

static void on_signal(int sig) {
    (void)sig;
    g_interrupted = 1;
}

void fb_cli_install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int fb_cli_interrupted(void) { return g_interrupted != 0; }

long long fb_cli_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}
