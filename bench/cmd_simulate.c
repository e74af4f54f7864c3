/* `modserve bench simulate`: flags, then load -> simulate -> report. */
#include <stdlib.h>
#include <string.h>

#include "bench/cmd_autoscale.h"
#include "bench/simulate.h"
#include "scheduler/engine.h"

const char ms_sim_core_help[] =
    "engine configuration (as `modserve serve`):\n"
    "  --mode disagg|monolithic   default disagg\n"
    "  --encode-workers N --prefill-workers N --decode-workers N   (default 1 each; monolithic:\n"
    "                             --decode-workers is the number of LLM workers)\n"
    "  --preprocess-threads N     default 2\n"
    "  --max-num-seqs N (64)  --max-num-batched-tokens N (2048)  --encode-max-batch-images N (8)\n"
    "  --kv-blocks N (4096 per device; serve sizes it from memory and logs the number)\n"
    "  --block-size N (16)  --max-model-len N (default: the profile's, as serve's is the\n"
    "                             model's; 4096 for a profile that does not record it)\n"
    "  --max-queued-requests N (1024, 0 = none)  --priority-aging S (2.0)\n";

void ms_sim_core_options_default(ms_core_options *c) {
    ms_core_options_default(c);
    ms_engine_options e;
    ms_engine_options_default(&e);
    c->workers[MS_STAGE_PREPROCESS] = e.preprocess_threads;
    c->max_num_seqs = e.max_num_seqs;
    c->max_num_batched_tokens = e.max_num_batched_tokens;
    c->encode_max_batch_images = e.encode_max_batch_images;
    c->block_size = e.block_size;
    c->max_queued_requests = e.max_queued_requests;
    c->priority_aging_s = e.priority_aging_s;
    c->short_prompt_tokens = e.short_prompt_tokens;
    c->max_model_len = 0; /* the profile's, as serve takes the model's: ms_sim_max_model_len */
}

int ms_sim_core_flag(ms_core_options *c, int argc, char **argv, int *i, ms_error *err) {
    static const char *const k_int_flags[] = {"--encode-workers", "--prefill-workers", "--decode-workers",
                                              "--preprocess-threads", "--max-num-seqs", "--max-num-batched-tokens",
                                              "--encode-max-batch-images", "--kv-blocks", "--block-size",
                                              "--max-model-len", "--max-queued-requests"};
    int32_t *const k_targets[] = {&c->workers[MS_STAGE_ENCODE], &c->workers[MS_STAGE_PREFILL],
                                  &c->workers[MS_STAGE_DECODE], &c->workers[MS_STAGE_PREPROCESS], &c->max_num_seqs,
                                  &c->max_num_batched_tokens, &c->encode_max_batch_images, &c->kv_blocks,
                                  &c->block_size, &c->max_model_len, &c->max_queued_requests};
    const char *a = argv[*i];
    const bool is_mode = !strcmp(a, "--mode"), is_aging = !strcmp(a, "--priority-aging");
    size_t k = 0;
    for (; k < sizeof k_int_flags / sizeof k_int_flags[0]; k++)
        if (!strcmp(a, k_int_flags[k])) break;
    if (k == sizeof k_int_flags / sizeof k_int_flags[0] && !is_mode && !is_aging) return 0;
    if (*i + 1 >= argc) {
        ms_errorf(err, MS_ERR_INVALID, "%s needs a value", a);
        return -1;
    }
    const char *v = argv[++*i];
    char *end;
    if (is_mode) {
        if (!strcmp(v, "disagg")) c->mode = MS_MODE_DISAGG;
        else if (!strcmp(v, "monolithic")) c->mode = MS_MODE_MONOLITHIC;
        else {
            ms_errorf(err, MS_ERR_INVALID, "--mode '%s': expected disagg or monolithic", v);
            return -1;
        }
        return 1;
    }
    if (is_aging) {
        c->priority_aging_s = strtod(v, &end);
        if (*end || !(c->priority_aging_s >= 0)) {
            ms_errorf(err, MS_ERR_INVALID, "--priority-aging '%s': expected seconds >= 0", v);
            return -1;
        }
        return 1;
    }
    const long x = strtol(v, &end, 10);
    if (end == v || *end || x < 0 || x > 1 << 30) {
        ms_errorf(err, MS_ERR_INVALID, "%s '%s': expected a non-negative integer", a, v);
        return -1;
    }
    *k_targets[k] = (int32_t)x;
    return 1;
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: modserve bench simulate --trace F --profile P [--out DIR] [options]\n\n"
            "Discrete-event simulation of the engine on a virtual clock: the scheduler core of\n"
            "`modserve serve` makes every decision, batch times come from profile.json (written by\n"
            "`modserve bench profile`). Prints the replay report; with --out also summary.json,\n"
            "requests.csv and plots.\n\n"
            "  --trace F           trace (.csv or .csv.gz)\n"
            "  --profile P         cost model (profile.json); given several times, their mean\n"
            "                      (profiles taken before and after a replay, say)\n"
            "  --out DIR           report folder\n"
            "  --goodput ttft:MS,tpot:MS[,e2el:MS]   absolute SLOs; the report also counts the\n"
            "                      requests that miss them even alone (latency alone from the profile)\n"
            "  --slo-factor F      ModServe's SLO: F x each request's own latency alone (TTFT and\n"
            "                      time between tokens, from the profile, per size and images);\n"
            "                      attainment per class beside the absolute one\n"
            "  --image-policy keep|fit  --max-images N (100)   prompt sizing as in replay, with the\n"
            "                      profile's image tokens\n"
            "  --image-pool N      the replay's --image-pool (default 16): when the profile measured\n"
            "                      that pool with this --seed, each request is charged the images\n"
            "                      the replayer sends it; otherwise the mean by image count\n"
            "  --shared-cores N    the workers share one host's N cores (CPU backend runs): while\n"
            "                      running batches want more threads than N, each runs at\n"
            "                      N / (threads wanted) of its measured speed; default 0: each\n"
            "                      worker has its own device (one GPU per worker)\n"
            "  --worker-threads N  threads an encode or LLM worker wants under --shared-cores\n"
            "                      (default N, as `serve --threads 0`); preprocess wants 1\n"
            "  --embedding-cache-images N  model the server's embedding cache as an LRU of N of\n"
            "                      the pool's images (ids as the replayer sends them): a hit\n"
            "                      skips preprocess and encode (default 0: no cache; a server's\n"
            "                      N is --embedding-cache-bytes / bytes of one image's embedding)\n"
            "  --no-plots\n\n%s\n%s\n%s",
            ms_sim_core_help, ms_sim_autoscale_help, ms_trace_select_help);
}

/* Input flags shared by simulate and tune (see simulate.h). Same return convention as
 * ms_trace_select_flag. */
int ms_sim_input_flag(ms_sim_options *o, ms_profile_paths *profiles, int argc, char **argv, int *i, ms_error *err) {
    const char *a = argv[*i];
    static const char *const k_flags[] = {"--trace",        "--profile",      "--goodput",       "--max-images",
                                          "--image-policy", "--shared-cores", "--worker-threads", "--image-pool",
                                          "--embedding-cache-images", "--slo-factor"};
    size_t k = 0;
    for (; k < sizeof k_flags / sizeof k_flags[0]; k++)
        if (!strcmp(a, k_flags[k])) break;
    if (k == sizeof k_flags / sizeof k_flags[0]) return 0;
    if (*i + 1 >= argc) {
        ms_errorf(err, MS_ERR_INVALID, "%s needs a value", a);
        return -1;
    }
    const char *v = argv[++*i];
    bool ok = true;
    if (k == 0) o->trace_path = v;
    else if (k == 1) {
        if (profiles->n == MS_COST_MAX_PROFILES) {
            ms_errorf(err, MS_ERR_INVALID, "--profile: at most %d", MS_COST_MAX_PROFILES);
            return -1;
        }
        profiles->path[profiles->n++] = v;
    }
    else if (k == 2) ok = ms_slo_parse(v, &o->slo, err) == MS_OK;
    else if (k == 9) ok = ms_slo_factor_parse(v, &o->slo_factor, err) == MS_OK;
    else if (k == 3) ok = (o->max_images = atoi(v)) > 0;
    else if (k == 7) ok = (o->image_pool = atoi(v)) > 0 && o->image_pool <= 1024;
    else if (k == 8) {
        char *end;
        const long x = strtol(v, &end, 10);
        ok = end != v && !*end && x >= 0 && x <= 1024;
        if (ok) o->embedding_cache_images = (int32_t)x;
    }
    else if (k == 5 || k == 6) {
        char *end;
        const long x = strtol(v, &end, 10);
        ok = end != v && !*end && x >= 0 && x <= 4096;
        if (ok) *(k == 5 ? &o->shared_cores : &o->worker_threads) = (int32_t)x;
    } else if (!strcmp(v, "keep")) o->policy = MS_IMAGE_POLICY_KEEP;
    else if (!strcmp(v, "fit")) o->policy = MS_IMAGE_POLICY_FIT;
    else ok = false;
    if (!ok) {
        if (k != 2 && k != 9) ms_errorf(err, MS_ERR_INVALID, "bad value for %s: '%s'", a, v);
        return -1;
    }
    return 1;
}

int ms_bench_simulate_main(int argc, char **argv) {
    ms_sim_options o = {.max_images = 100, .record_itl = -1};
    ms_sim_core_options_default(&o.core);
    ms_trace_select_default(&o.sel);
    ms_profile_paths profiles = {0};
    const char *out_dir = NULL;
    bool plots = true;
    ms_error err = {0};
    ms_sim_autoscale_args as;
    ms_sim_autoscale_args_default(&as);
    ms_autoscale_config as_cfg = {0};
    for (int i = 1; i < argc; i++) {
        int r = ms_trace_select_flag(&o.sel, argc, argv, &i, &err);
        if (r == 0) r = ms_sim_core_flag(&o.core, argc, argv, &i, &err);
        if (r == 0) r = ms_sim_input_flag(&o, &profiles, argc, argv, &i, &err);
        if (r == 0) r = ms_sim_autoscale_flag(&as, argc, argv, &i, &err);
        if (r < 0) {
            fprintf(stderr, "bench simulate: %s\n", err.msg);
            return 2;
        }
        if (r > 0) continue;
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--no-plots")) { plots = false; continue; }
        bool ok = v != NULL;
        if (!ok) {
        } else if (!strcmp(a, "--out")) out_dir = v;
        else {
            fprintf(stderr, "bench simulate: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "bench simulate: bad or missing value for %s %s\n", a, err.msg);
            return 2;
        }
        i++;
    }
    if (!o.trace_path || !profiles.n) {
        usage(stderr);
        return 2;
    }
    ms_cost_model cost;
    if (ms_cost_model_load_mean(profiles.path, profiles.n, &cost, &err) != MS_OK) {
        fprintf(stderr, "bench simulate: %s\n", err.msg);
        return 1;
    }
    o.cost = &cost;
    const double t0 = ms_time_now();
    ms_trace_set set;
    if (ms_trace_load(o.trace_path, &o.sel, &set, &err) != MS_OK) {
        fprintf(stderr, "bench simulate: %s\n", err.msg);
        return 1;
    }
    const double t_read = ms_time_now() - t0;
    if (as.on) {
        if (ms_sim_autoscale_setup(&as, &o, &set, &as_cfg, &err) != MS_OK) {
            fprintf(stderr, "bench simulate: %s\n", err.msg);
            ms_trace_set_free(&set);
            return 2;
        }
        o.autoscale = &as_cfg;
        o.autoscale_interval_s = as.interval_s;
    }
    ms_bench_run run;
    ms_sim_stats ss;
    if (ms_simulate_run(&o, &set, &run, &ss, &err) != MS_OK) {
        fprintf(stderr, "bench simulate: %s\n", err.msg);
        ms_trace_set_free(&set);
        return 1;
    }
    char target[512];
    if (o.core.mode == MS_MODE_MONOLITHIC) /* one pool of LLM workers runs every stage */
        snprintf(target, sizeof target, "monolithic: %d LLM workers (profile %s on %s)",
                 o.core.workers[MS_STAGE_DECODE], cost.model, cost.device);
    else
        snprintf(target, sizeof target, "disagg: encode %d, prefill %d, decode %d (profile %s on %s)",
                 o.core.workers[MS_STAGE_ENCODE], o.core.workers[MS_STAGE_PREFILL], o.core.workers[MS_STAGE_DECODE],
                 cost.model, cost.device);
    run.target = target;
    ms_report_console(&run, stdout);
    ms_slo_summary slo_sum;
    ms_slo_summarize(&run, o.slo_factor, &slo_sum);
    ms_slo_summary_print(&slo_sum, &o.slo, stdout);
    ms_sim_autoscale_print(&as, &as_cfg, &ss, stdout);
    printf("\nimage costs: %s\n", ss.per_image ? "each request's own images (the profile measured this pool)"
           : cost.images.n ? "mean by image count (the profile measured another pool or seed than --image-pool/--seed)"
                           : "mean by image count");
    printf("simulated %lld requests (%.1f s of virtual time) in %.2f s: %llu events, %llu batches, %llu refused at "
           "arrival, %llu stalled; reading the trace took %.2f s\n",
           (long long)set.n, run.duration_s, ss.wall_s, (unsigned long long)ss.events, (unsigned long long)ss.batches,
           (unsigned long long)ss.rejected, (unsigned long long)ss.stalled, t_read);
    if (o.embedding_cache_images > 0)
        printf("embedding cache (%d images): %llu hits, %llu misses\n", o.embedding_cache_images,
               (unsigned long long)ss.image_hits, (unsigned long long)ss.image_misses);
    if (ss.stalled) {
        const ms_core_stats *c = &ss.end;
        printf("STALLED: the core still held %d requests with no batch to run: queued preprocess %d, encode %d, "
               "prefill %d, decode %d; running decode %d; KV blocks used %d of %d\n",
               c->active, c->stage[MS_STAGE_PREPROCESS].queued, c->stage[MS_STAGE_ENCODE].queued,
               c->stage[MS_STAGE_PREFILL].queued, c->stage[MS_STAGE_DECODE].queued, c->stage[MS_STAGE_DECODE].running,
               c->kv_blocks_used, c->kv_blocks_total);
    }
    int rc = 0;
    if (out_dir) {
        if (ms_report_write(&run, out_dir, plots, &err) != MS_OK) {
            fprintf(stderr, "bench simulate: %s\n", err.msg);
            rc = 1;
        } else {
            printf("report: %s/summary.json, %s/requests.csv%s\n", out_dir, out_dir, plots ? ", plots *.png" : "");
        }
        if (rc == 0 && as.on) {
            if (ms_sim_autoscale_write(&ss, out_dir, plots, &err) != MS_OK) {
                fprintf(stderr, "bench simulate: %s\n", err.msg);
                rc = 1;
            } else {
                printf("autoscale: %s/scaling.csv, %s/workers.dat%s\n", out_dir, out_dir, plots ? ", workers.png" : "");
            }
        }
    }
    ms_sim_stats_free(&ss);
    ms_bench_run_free(&run);
    ms_trace_set_free(&set);
    return rc;
}
