/* A stand-in `flipbook` for the engine's two subcommands until clients/cli/main.c lists them:
 * `engine_cli generate ...` and `engine_cli bench ...`. */
#include <stdio.h>
#include <string.h>

int fb_cmd_generate(int argc, char **argv);
int fb_cmd_bench(int argc, char **argv);

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "generate") == 0)
        return fb_cmd_generate(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "bench") == 0)
        return fb_cmd_bench(argc - 1, argv + 1);
    fprintf(stderr, "usage: %s generate|bench [OPTIONS]\n", argv[0]);
    return 2;
}
