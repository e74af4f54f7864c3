/* The `modserve bench` command (bench/cmd_bench.c), for the binary's dispatcher (server/cli/main.c). */
#ifndef MS_BENCH_COMMANDS_H
#define MS_BENCH_COMMANDS_H

int ms_cmd_bench(int argc, char **argv);

#endif
