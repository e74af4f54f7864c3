/* modserve: the command-line entry point; dispatches to the subcommands of the server
 * and of bench (the one place that knows both, so neither library depends on the other). */
#include <stdio.h>
#include <string.h>

#include "bench/autoscale_capacity.h"
#include "bench/commands.h"
#include "server/autoscale_ctl.h"
#include "server/commands.h"

typedef struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} subcommand;

static const subcommand k_commands[] = {
    {"serve", ms_cmd_serve, "run the OpenAI-style HTTP server"},
    {"run", ms_cmd_run, "generate from a prompt (and images) in this process"},
    {"model", ms_cmd_model, "model folders: `model init` writes a random-weight model"},
    {"tokenize", ms_cmd_tokenize, "text to token ids (or --decode ids to text)"},
    {"image", ms_cmd_image, "`image preprocess`: images to the vision tower's pixel tensor"},
    {"bench", ms_cmd_bench, "traces, replay, profile, simulate, tune, kernels"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: modserve <command> [options]   (modserve <command> --help)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        fprintf(out, "  %-10s %s\n", k_commands[i].name, k_commands[i].summary);
}

int main(int argc, char **argv) {
    ms_autoscale_set_capacity_loader(ms_autoscale_profile_capacities); /* serve --profile */
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        if (!strcmp(argv[1], k_commands[i].name)) return k_commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "modserve: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
