/*
 * bench tune's speed-ups change nothing it prints: the output with --jobs 1 and
 * --no-prune (every simulation run to its end, one after another) is identical to the
 * output with pruning and with --jobs 2 or 3. And the simulator's early stop (the hook
 * pruning uses) stops a run after the given number of misses and counts misses as the
 * attainment does. No timing is asserted.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/simulate.h"
#include "tests/test_util.h"

/* The hand-made GPU-like profile of bench/results/simulate-week-timing.md (not a
 * measurement; 576 tokens per image). */
static const char k_profile[] =
    "{\"model\":\"hand-made test profile\",\"device\":\"none\",\"image_tokens\":576,\n"
    " \"preprocess\":{\"images\":[1,10],\"seconds\":[0.005,0.05]},\n"
    " \"encode\":{\"images\":[1,8,16],\"seconds\":[0.02,0.08,0.15]},\n"
    " \"prefill\":{\"tokens\":[16,512,2048],\"seconds\":[0.01,0.05,0.18]},\n"
    " \"decode\":{\"batch\":[1,32,256],\"context\":[128,4096],\"seconds\":[[0.012,0.015,0.03],[0.013,0.02,0.06]]}}\n";

/* Runs fn(argc, argv) with stdout and stderr in files; returns the exit status, *text the
 * output and *log the log lines. */
static int captured(int (*fn)(int, char **), char **argv, int argc, char **text, char **log) {
    char path[64], lpath[64];
    snprintf(path, sizeof path, "testdata/tune-out-%d.txt", (int)getpid());
    snprintf(lpath, sizeof lpath, "testdata/tune-log-%d.txt", (int)getpid());
    fflush(stdout);
    fflush(stderr);
    const int saved = dup(1), saved_err = dup(2);
    const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644), lfd = open(lpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(lfd, 2);
    const int rc = fn(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved, 1);
    dup2(saved_err, 2);
    close(fd);
    close(lfd);
    close(saved);
    close(saved_err);
    *text = ms_test_read_file(path, NULL);
    *log = ms_test_read_file(lpath, NULL);
    remove(path);
    remove(lpath);
    return rc;
}

static char g_ppath[64], g_tpath[64];

/* 30 s of 20 requests/s, a third with images, prompts of 200-2,000 tokens: the prefill
 * pool decides the attainment (3 GPUs miss badly, 5 meet), so the splits differ, the
 * monolithic search runs to --gpus-max, and pruning has runs to cut. */
static void write_inputs(void) {
    snprintf(g_ppath, sizeof g_ppath, "testdata/tune-prof-%d.json", (int)getpid());
    snprintf(g_tpath, sizeof g_tpath, "testdata/tune-trace-%d.csv", (int)getpid());
    FILE *f = fopen(g_ppath, "w");
    MS_CHECK(f != NULL);
    fputs(k_profile, f);
    fclose(f);
    f = fopen(g_tpath, "w");
    MS_CHECK(f != NULL);
    fprintf(f, "TIMESTAMP,NumImages,ContextTokens,GeneratedTokens\n");
    for (int i = 0; i < 600; i++) {
        const int ms = i * 50;
        fprintf(f, "2024-10-15T12:%02d:%02d.%03dZ,%d,%d,%d\n", ms / 60000, ms / 1000 % 60, ms % 1000,
                i % 3 == 0 ? 1 + i % 2 : 0, 200 + (i * 677) % 1800, 20 + (i * 31) % 150);
    }
    fclose(f);
}

/* One tune run with extra flags; *out its output (without the log). */
static void tune(const char *a, const char *b, const char *c, char **out, char **log) {
    char *argv[] = {"tune", "--trace", g_tpath, "--profile", g_ppath, "--goodput", "ttft:250,tpot:40",
                    "--gpus-max", "6", "--interval", "10s", (char *)a, (char *)b, (char *)c};
    int argc = 11 + (a != NULL) + (b != NULL) + (c != NULL);
    EXPECT(captured(ms_bench_tune_main, argv, argc, out, log) == 0);
}

static void test_same_output(void) {
    char *ref, *ref_log, *out, *log;
    tune("--jobs", "1", "--no-prune", &ref, &ref_log);
    MS_CHECK(ref != NULL && ref_log != NULL);
    EXPECTF(strstr(ref, "frontier") && strstr(ref, "5 GPUs") && strstr(ref_log, " 0 cut short"), "%s\n%s", ref, ref_log);
    /* the splits differ: not every frontier row has the same attainment */
    EXPECTF(strstr(ref, " misses") && strstr(ref, " meets"), "%s", ref);
    tune("--jobs", "1", NULL, &out, &log);
    EXPECTF(out && !strcmp(out, ref), "pruned:\n%s\nunpruned:\n%s", out ? out : "(none)", ref);
    /* with one thread the cuts are deterministic: some run must have been cut here */
    EXPECTF(log && strstr(log, "cut short") && !strstr(log, " 0 cut short"), "%s", log ? log : "(none)");
    free(out);
    free(log);
    const char *jobs[] = {"2", "3"};
    for (int j = 0; j < 2; j++) {
        tune("--jobs", jobs[j], NULL, &out, &log);
        EXPECTF(out && !strcmp(out, ref), "--jobs %s:\n%s\n--jobs 1 --no-prune:\n%s", jobs[j], out ? out : "(none)", ref);
        free(out);
        free(log);
        tune("--jobs", jobs[j], "--no-prune", &out, &log);
        EXPECTF(out && !strcmp(out, ref), "--jobs %s --no-prune:\n%s", jobs[j], out ? out : "(none)");
        free(out);
        free(log);
    }
    free(ref);
    free(ref_log);
    char *bad[] = {"tune", "--trace", g_tpath, "--profile", g_ppath, "--goodput", "ttft:400", "--jobs", "0"};
    EXPECT(captured(ms_bench_tune_main, bad, 9, &out, &log) == 2);
    free(out);
    free(log);
}

/* The early stop: a run told to stop past 3 misses stops with 4 and says so; run to the
 * end, its misses are the requests the attainment counts as not meeting the SLO. */
static void test_early_stop(void) {
    ms_cost_model cost;
    ms_error err = {0};
    const char *paths[1] = {g_ppath};
    MS_CHECK(ms_cost_model_load_mean(paths, 1, &cost, &err) == MS_OK);
    ms_sim_options o = {.max_images = 100, .record_itl = 0, .cost = &cost};
    ms_sim_core_options_default(&o.core);
    ms_trace_select_default(&o.sel);
    MS_CHECK(ms_slo_parse("ttft:250,tpot:40", &o.slo, &err) == MS_OK);
    ms_trace_set set;
    MS_CHECK(ms_trace_load(g_tpath, &o.sel, &set, &err) == MS_OK);
    ms_bench_run run;
    ms_sim_stats ss;
    MS_CHECK(ms_simulate_run(&o, &set, &run, &ss, &err) == MS_OK);
    ms_bench_metrics m;
    ms_run_metrics(&run, -1, &m);
    EXPECTF(!ss.cut_short && ss.missed == m.requests - m.good && ss.missed > 10, "missed %lld, requests %lld good %lld",
            (long long)ss.missed, (long long)m.requests, (long long)m.good);
    ms_bench_run_free(&run);
    ms_sim_stats_free(&ss);
    _Atomic int64_t bound = 3;
    o.stop_misses_above = &bound;
    MS_CHECK(ms_simulate_run(&o, &set, &run, &ss, &err) == MS_OK);
    EXPECTF(ss.cut_short && ss.missed == 4, "cut %d missed %lld", ss.cut_short, (long long)ss.missed);
    ms_bench_run_free(&run);
    ms_sim_stats_free(&ss);
    ms_trace_set_free(&set);
}

int main(void) {
    write_inputs();
    test_early_stop();
    test_same_output();
    remove(g_ppath);
    remove(g_tpath);
    return ms_test_finish("test_tune");
}
