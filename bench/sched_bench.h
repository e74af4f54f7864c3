/*
 * `modserve bench sched`: the scheduler core's overhead per decision, with many queued
 * requests and many workers, on a virtual clock (no model, no threads): the time the
 * core itself takes in ms_core_next_batch / ms_core_batch_done / ms_core_arrive.
 */
#ifndef MS_BENCH_SCHED_BENCH_H
#define MS_BENCH_SCHED_BENCH_H

/* Options: --requests N (queued, default 10000) --workers W (default 64)
 * --decisions D (default 200000) --mode disagg|monolithic --seed S --out FILE.md.
 * Returns a process exit code. */
int ms_bench_sched_main(int argc, char **argv);

#endif
