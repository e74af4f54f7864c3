/*
 * `modserve bench ...`: the benchmark tooling's dispatcher. The kernels, scheduler and
 * tokenizer micro-benchmarks belong to their areas and join when their headers exist.
 */
#include <stdio.h>
#include <string.h>

#include "bench/commands.h"
#include "bench/replay.h"
#include "bench/simulate.h"
#include "bench/stats.h"

#if __has_include("bench/kernels_bench.h")
#include "bench/kernels_bench.h"
#define MS_HAVE_KERNELS_BENCH 1
#endif
#if __has_include("bench/sched_bench.h")
#include "bench/sched_bench.h"
#define MS_HAVE_SCHED_BENCH 1
#endif
#if __has_include("bench/tokenizer_bench.h")
#include "bench/tokenizer_bench.h"
#define MS_HAVE_TOKENIZER_BENCH 1
#endif

typedef struct bench_command {
    const char *name;
    int (*run)(int argc, char **argv); /* NULL: not in this build */
    const char *summary;
} bench_command;

static const bench_command k_bench[] = {
    {"stats", ms_bench_stats_main, "figures of a trace (Azure LMM format, .csv or .csv.gz)"},
    {"synth", ms_bench_synth_main, "write a synthetic look-alike of the Azure LMM trace"},
    {"replay", ms_bench_replay_main, "open-loop replay of a trace against a server, with report and plots"},
    {"simulate", ms_bench_simulate_main, "discrete-event simulation of the engine on a trace (same report)"},
    {"tune", ms_bench_tune_main, "fewest GPUs per stage meeting an SLO, by simulation"},
    {"profile", ms_bench_profile_main, "measure the real engine and write the simulator's profile.json"},
    {"compare", ms_bench_compare_main, "two reports side by side (simulate vs replay: the simulator's check)"},
#ifdef MS_HAVE_KERNELS_BENCH
    {"kernels", ms_bench_kernels_main, "backend op micro-benchmarks"},
#else
    {"kernels", NULL, "backend op micro-benchmarks"},
#endif
#ifdef MS_HAVE_SCHED_BENCH
    {"sched", ms_bench_sched_main, "scheduler core micro-benchmarks"},
#else
    {"sched", NULL, "scheduler core micro-benchmarks"},
#endif
#ifdef MS_HAVE_TOKENIZER_BENCH
    {"tokenizer", ms_bench_tokenizer_main, "tokenizer throughput"},
#else
    {"tokenizer", NULL, "tokenizer throughput"},
#endif
};

static void usage(FILE *out) {
    fprintf(out, "usage: modserve bench <command> [options]   (modserve bench <command> --help)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof k_bench / sizeof k_bench[0]; i++)
        fprintf(out, "  %-10s %s%s\n", k_bench[i].name, k_bench[i].summary,
                k_bench[i].run ? "" : " (not available in this build)");
}

int ms_cmd_bench(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof k_bench / sizeof k_bench[0]; i++) {
        if (strcmp(argv[1], k_bench[i].name)) continue;
        if (!k_bench[i].run) {
            fprintf(stderr, "modserve bench %s: not available in this build\n", argv[1]);
            return 2;
        }
        return k_bench[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "modserve bench: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
