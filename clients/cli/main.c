/* clients/cli/main.c - `flipbook`, the command-line client: dispatches to a subcommand.
 *
 * To add a subcommand, write cmd_<name>.c defining `const fb_cli_command fb_cmd_<name>`, add
 * it to the CMake sources and one line to the table below.
 */
#include <stdio.h>
#include <string.h>

#include "clients/cli/cli.h"

extern const fb_cli_command fb_cmd_record;
extern const fb_cli_command fb_cmd_prompt;
extern const fb_cli_command fb_cmd_watch;
extern const fb_cli_command fb_cmd_generate;
extern const fb_cli_command fb_cmd_bench;

static const fb_cli_command *const commands[] = {
    &fb_cmd_record,
    &fb_cmd_prompt,
    &fb_cmd_watch,
    &fb_cmd_generate,
    &fb_cmd_bench,
    NULL,
};

#ifndef FLIPBOOK_VERSION
#define FLIPBOOK_VERSION "unknown"
#endif

static void print_usage(FILE *out) {
    fprintf(out,
            "usage: flipbook COMMAND [OPTIONS]\n\n"
            "The command-line client of flipbook, live video from a diffusion model.\n\n"
            "commands:\n");
    for (int i = 0; commands[i]; i++)
        fprintf(out, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
    fprintf(out,
            "\n`flipbook COMMAND --help` describes a command's options.\n"
            "Exit status: 0 success, 1 failure (cannot connect, server error, I/O),\n"
            "2 usage error, 130 interrupted.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_usage(stderr);
        return FB_CLI_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        print_usage(stdout);
        return FB_CLI_OK;
    }
    if (strcmp(name, "--version") == 0) {
        printf("flipbook %s\n", FLIPBOOK_VERSION);
        return FB_CLI_OK;
    }
    int help_for = strcmp(name, "help") == 0;
    if (help_for) {
        if (argc < 3) {
            print_usage(stdout);
            return FB_CLI_OK;
        }
        name = argv[2];
    }
    for (int i = 0; commands[i]; i++) {
        if (strcmp(commands[i]->name, name) != 0) continue;
        if (help_for) {
            char *help_argv[] = {(char *)name, "--help", NULL};
            return commands[i]->run(commands[i], 2, help_argv);
        }
        return commands[i]->run(commands[i], argc - 1, argv + 1);
    }
    fprintf(stderr, "flipbook: unknown command '%s'\n\n", name);
    print_usage(stderr);
    return FB_CLI_USAGE;
}
