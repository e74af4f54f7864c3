/* PLACEHOLDER until its issue lands: replace this whole file. */
#include <stdio.h>

#include "server/commands.h"

int ms_cmd_bench(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "modserve bench: not built yet\n");
    return 2;
}
