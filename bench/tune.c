/*
 * `modserve bench tune`: the fewest GPUs (one worker = one GPU; preprocessing is CPU)
 * whose per-stage worker counts meet an SLO-attainment target on a trace window, found
 * by simulation, beside (a) ModServe's rule and (b) the best monolithic count.
 *
 * Search (disagg): for G = 3, 4, ..., --gpus-max every split encode + prefill + decode
 * = G (each >= 1) is simulated; the first G with a split meeting the target wins, and
 * among its splits the highest attainment (then goodput). Monolithic: 1, 2, ... LLM
 * workers until the target is met.
 *
 * ModServe's rule (paper, section on autoscaling): per stage, replicas = ceil(load /
 * the load one replica carries within the SLO), with encoder load in image tokens/s,
 * prefill load in prompt tokens/s and decode load in output tokens/s over the window.
 * "Within the SLO" here: an encode or prefill batch may take at most half the TTFT SLO
 * (the two share it), a decode step at most the TPOT SLO; one replica's capacity is its
 * best throughput over the batch sizes the engine allows under that bound.
 *
 * Speed: the simulations of one step (the splits of one G; the ModServe rule, the two
 * autoscaled runs and --jobs monolithic counts) run on --jobs threads; each simulation
 * has its own core and state (the cost model and the trace are shared read-only), and
 * results land in a slot per allocation and are reduced in the sequential order, so the
 * output does not depend on --jobs. Pruning (exact, --no-prune turns it off): a
 * simulation stops once its missed requests exceed those of a finished run of its group
 * (attainment = 1 - misses / requests, so it is strictly worse than that run and cannot
 * be the group's pick; ties run to the end); monolithic runs are cut only when also past
 * the misses that still meet --target, since there the first count meeting it wins.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/cmd_autoscale.h"
#include "bench/simulate.h"

typedef struct tune_result {
    int32_t workers[MS_STAGE_COUNT];
    bool monolithic;
    int32_t gpus;
    double attainment, goodput;
    double worker_seconds;     /* GPU-hours x 3600 (autoscaled: varies over the run) */
    int64_t scale_events;
    bool meets;
    bool valid;
    bool cut_short; /* pruned: strictly worse than another run of its group (not valid) */
} tune_result;

/* A group's pruning bound: the fewest misses of its finished runs, never below floor
 * (the monolithic search's misses that still meet the target). NULL task bound: none. */
typedef struct tune_bound {
    _Atomic int64_t misses;
    int64_t floor;
} tune_bound;

static void evaluate(const ms_sim_options *base, const ms_trace_set *set, bool mono, int32_t e, int32_t p, int32_t d,
                     double target, tune_bound *bound, tune_result *out) {
    ms_sim_options o = *base;
    o.record_itl = 0;
    o.stop_misses_above = bound ? &bound->misses : NULL;
    o.core.mode = mono ? MS_MODE_MONOLITHIC : MS_MODE_DISAGG;
    o.core.workers[MS_STAGE_ENCODE] = mono ? 0 : e;
    o.core.workers[MS_STAGE_PREFILL] = mono ? 0 : p;
    o.core.workers[MS_STAGE_DECODE] = d;
    memset(out, 0, sizeof *out);
    out->monolithic = mono;
    out->workers[MS_STAGE_ENCODE] = mono ? 0 : e;
    out->workers[MS_STAGE_PREFILL] = mono ? 0 : p;
    out->workers[MS_STAGE_DECODE] = d;
    out->gpus = mono ? d : e + p + d;
    ms_bench_run run;
    ms_sim_stats ss;
    ms_error err = {0};
    if (ms_simulate_run(&o, set, &run, &ss, &err) != MS_OK) {
        ms_log(MS_LOG_WARN, "tune", "%s", err.msg);
        return;
    }
    out->worker_seconds = ss.worker_seconds;
    out->scale_events = ss.n_scale_events;
    const int64_t misses = ss.missed + (int64_t)ss.stalled;
    out->cut_short = ss.cut_short;
    ms_sim_stats_free(&ss);
    if (out->cut_short) {
        ms_bench_run_free(&run);
        return;
    }
    if (bound) { /* lower the group's bound to max(misses, floor) */
        const int64_t want = misses > bound->floor ? misses : bound->floor;
        int64_t cur = atomic_load(&bound->misses);
        while (want < cur && !atomic_compare_exchange_weak(&bound->misses, &cur, want)) {
        }
    }
    ms_bench_metrics m;
    ms_run_metrics(&run, -1, &m);
    out->attainment = o.slo_factor > 0 ? ms_slo_attainment(&run, -1, o.slo_factor) : m.attainment;
    out->goodput = m.goodput;
    out->meets = out->attainment >= target;
    out->valid = true;
    ms_bench_run_free(&run);
}

/* One simulation to run: an allocation (or an autoscaled run) and its result slot. */
typedef struct tune_task {
    ms_sim_options o;        /* autoscaled: o.autoscale points at cfg */
    ms_autoscale_config cfg;
    bool mono, autoscaled;
    bool skip;               /* the autoscale setup failed (result stays invalid) */
    int32_t e, p, d;
    tune_bound *bound;
    tune_result out;
} tune_task;

/* One autoscaled run (disagg, starting from the minimum pools); the setup runs here, on
 * the calling thread, the simulation later on the pool. */
static void autoscaled_task(const ms_sim_options *base, const ms_trace_set *set, const ms_sim_autoscale_args *as,
                            ms_autoscale_policy policy, double target, tune_task *t) {
    memset(t, 0, sizeof *t);
    t->o = *base;
    ms_sim_autoscale_args a = *as;
    a.policy = policy;
    a.target = target;
    ms_error err = {0};
    for (int k = 1; k < MS_STAGE_COUNT; k++) t->o.core.workers[k] = a.min[k];
    if (ms_sim_autoscale_setup(&a, &t->o, set, &t->cfg, &err) != MS_OK) {
        ms_log(MS_LOG_WARN, "tune", "%s", err.msg);
        t->skip = true;
        return;
    }
    t->autoscaled = true;
    t->o.autoscale_interval_s = a.interval_s;
    t->e = a.min[MS_STAGE_ENCODE];
    t->p = a.min[MS_STAGE_PREFILL];
    t->d = a.min[MS_STAGE_DECODE];
}

static tune_task static_task(const ms_sim_options *base, bool mono, int32_t e, int32_t p, int32_t d, tune_bound *b) {
    return (tune_task){.o = *base, .mono = mono, .e = e, .p = p, .d = d, .bound = b};
}

typedef struct tune_pool {
    tune_task *tasks;
    const int *order; /* the order to start them in (NULL: as given) */
    int n;
    atomic_int next;
    const ms_trace_set *set;
    double target;
} tune_pool;

static void *pool_worker(void *arg) {
    tune_pool *pl = arg;
    for (int i; (i = atomic_fetch_add(&pl->next, 1)) < pl->n;) {
        tune_task *t = &pl->tasks[pl->order ? pl->order[i] : i];
        if (t->skip) continue;
        if (t->autoscaled) t->o.autoscale = &t->cfg; /* the task's own copy, set where it stays put */
        evaluate(&t->o, pl->set, t->mono, t->e, t->p, t->d, pl->target, t->bound, &t->out);
    }
    return NULL;
}

/* Runs tasks[0..n) on up to jobs threads (the caller's among them); returns how many were
 * cut short. */
static int run_tasks(tune_task *tasks, const int *order, int n, int jobs, const ms_trace_set *set, double target) {
    tune_pool pl = {.tasks = tasks, .order = order, .n = n, .set = set, .target = target};
    atomic_init(&pl.next, 0);
    const int extra = (jobs < n ? jobs : n) - 1;
    pthread_t th[64];
    int started = 0;
    for (; started < extra && started < 64; started++)
        if (pthread_create(&th[started], NULL, pool_worker, &pl) != 0) break; /* fewer threads: still correct */
    pool_worker(&pl);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    int cut = 0;
    for (int i = 0; i < n; i++) cut += tasks[i].out.cut_short;
    return cut;
}

static bool better(const tune_result *a, const tune_result *b) {
    if (!b->valid) return a->valid;
    if (a->attainment != b->attainment) return a->attainment > b->attainment;
    return a->goodput > b->goodput;
}

/* Best throughput of one replica whose batch latency stays within bound (0 = none). */
static double capacity(double (*lat)(const ms_cost_model *, int32_t), const ms_cost_model *m, int32_t max_batch,
                       double units_per_item, double bound) {
    double best = 0;
    for (int32_t b = 1; b <= max_batch; b = b < 64 ? b + 1 : b + b / 16) {
        const double t = lat(m, b);
        if (t <= 0 || (bound > 0 && t > bound)) continue;
        best = fmax(best, b * units_per_item / t);
    }
    return best;
}

static double prefill_lat(const ms_cost_model *m, int32_t tokens) { return ms_cost_prefill(m, tokens); }
static double encode_lat(const ms_cost_model *m, int32_t images) { return ms_cost_encode(m, images); }

static void modserve_rule(const ms_sim_options *o, const ms_trace_set *set, int32_t out[3], double load[3], double cap[3]) {
    const ms_cost_model *m = o->cost;
    const ms_prompt_plan plan = {.per_word = 1, .image_tokens = m->image_tokens};
    double img_tok = 0, prompt_tok = 0, out_tok = 0, ctx = 0;
    for (int64_t i = 0; i < set->n; i++) {
        int32_t imgs, words, expect;
        ms_prompt_size(&plan, o->policy, o->max_images, set->reqs[i].n_images, set->reqs[i].context_tokens, &imgs,
                       &words, &expect);
        img_tok += (double)imgs * m->image_tokens;
        prompt_tok += expect;
        out_tok += set->reqs[i].generated_tokens;
        ctx += expect + 0.5 * set->reqs[i].generated_tokens;
    }
    const double window = set->n ? fmax(set->reqs[set->n - 1].send_s - set->reqs[0].send_s, 1.0) : 1.0;
    const double mean_ctx = set->n ? ctx / (double)set->n : 0;
    load[0] = img_tok / window;
    load[1] = prompt_tok / window;
    load[2] = out_tok / window;
    const double half_ttft = o->slo.ttft_s > 0 ? 0.5 * o->slo.ttft_s : 0;
    cap[0] = capacity(encode_lat, m, o->core.encode_max_batch_images, m->image_tokens, half_ttft);
    cap[1] = capacity(prefill_lat, m, o->core.max_num_batched_tokens, 1, half_ttft);
    cap[2] = 0;
    for (int32_t b = 1; b <= o->core.max_num_seqs; b++) {
        const double t = ms_cost_decode(m, b, mean_ctx);
        if (t > 0 && (o->slo.tpot_s <= 0 || t <= o->slo.tpot_s)) cap[2] = fmax(cap[2], b / t);
    }
    for (int k = 0; k < 3; k++) out[k] = cap[k] > 0 ? (int32_t)fmax(1, ceil(load[k] / cap[k])) : 1;
}

static void print_row(const char *name, const tune_result *r) {
    if (!r->valid) {
        printf("%-22s %5s\n", name, "-");
        return;
    }
    if (r->monolithic)
        printf("%-22s %5d %8s %8s %8d %10.2f%% %9.3f %9.2f %s\n", name, r->gpus, "-", "-", r->workers[MS_STAGE_DECODE],
               100 * r->attainment, r->goodput, r->worker_seconds / 3600, r->meets ? "meets" : "misses");
    else
        printf("%-22s %5d %8d %8d %8d %10.2f%% %9.3f %9.2f %s\n", name, r->gpus, r->workers[MS_STAGE_ENCODE],
               r->workers[MS_STAGE_PREFILL], r->workers[MS_STAGE_DECODE], 100 * r->attainment, r->goodput,
               r->worker_seconds / 3600, r->meets ? "meets" : "misses");
}

static void print_autoscaled(const char *name, const tune_result *r) {
    if (!r->valid) {
        printf("%-22s %5s\n", name, "-");
        return;
    }
    printf("%-22s %5s %8s %8s %8s %10.2f%% %9.3f %9.2f %s (%lld scaling events)\n", name, "auto", "-", "-", "-",
           100 * r->attainment, r->goodput, r->worker_seconds / 3600, r->meets ? "meets" : "misses",
           (long long)r->scale_events);
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: modserve bench tune --trace F --profile P --goodput ttft:MS,tpot:MS --gpus-max N [options]\n\n"
            "Finds, by simulation on the selected window, the per-stage worker counts (disagg; one\n"
            "worker = one GPU) with the fewest GPUs that meet the SLO-attainment target, and prints\n"
            "them beside ModServe's scaling rule and the best monolithic count.\n\n"
            "  --trace F --profile P --goodput ...   as for simulate (--goodput or --slo-factor is\n"
            "                      required; --profile may repeat: their mean)\n"
            "  --slo-factor F      SLO = F x each request's latency alone (ModServe's); with --goodput\n"
            "                      too, a request must meet both\n"
            "  --gpus-max N        largest total to try (default 8)\n"
            "  --target X          SLO attainment to meet, 0-1 (default 0.99)\n"
            "  --image-policy keep|fit  --max-images N\n"
            "  --jobs N            simulations run in parallel, 1-64 (default: the online cores;\n"
            "                      the output does not depend on it)\n"
            "  --no-prune          run every simulation to its end (by default one already worse\n"
            "                      than another of its step is cut short; same output)\n"
            "  --interval D --autoscale-min E,P,D --autoscale-max E,P,D   the autoscaled runs printed\n"
            "                      beside the static frontier (modserve and trend policies, as\n"
            "                      `bench simulate --autoscale`; default 5m, 1,1,1, 64,64,64)\n\n%s\n%s",
            ms_sim_core_help, ms_trace_select_help);
}

int ms_bench_tune_main(int argc, char **argv) {
    ms_sim_options o = {.max_images = 100, .record_itl = 0};
    ms_sim_core_options_default(&o.core);
    ms_trace_select_default(&o.sel);
    ms_profile_paths profiles = {0};
    int32_t gpus_max = 8;
    int jobs = 0; /* 0: the online cores */
    bool prune = true;
    double target = 0.99;
    ms_error err = {0};
    ms_sim_autoscale_args as;
    ms_sim_autoscale_args_default(&as);
    for (int i = 1; i < argc; i++) {
        int r = ms_trace_select_flag(&o.sel, argc, argv, &i, &err);
        if (r == 0) r = ms_sim_core_flag(&o.core, argc, argv, &i, &err);
        if (r == 0) r = ms_sim_input_flag(&o, &profiles, argc, argv, &i, &err);
        /* --target is tune's own (the autoscaled runs use it too); --autoscale is not
         * taken: tune runs both policies */
        if (r == 0 && strcmp(argv[i], "--target") && strcmp(argv[i], "--autoscale"))
            r = ms_sim_autoscale_flag(&as, argc, argv, &i, &err);
        if (r < 0) {
            fprintf(stderr, "bench tune: %s\n", err.msg);
            return 2;
        }
        if (r > 0) continue;
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--no-prune")) {
            prune = false;
            continue;
        }
        bool ok = v != NULL;
        if (!ok) {
        } else if (!strcmp(a, "--jobs")) ok = (jobs = atoi(v)) >= 1 && jobs <= 64;
        else if (!strcmp(a, "--gpus-max")) ok = (gpus_max = atoi(v)) >= 1 && gpus_max <= 256;
        else if (!strcmp(a, "--target")) ok = (target = atof(v)) > 0 && target <= 1;
        else {
            fprintf(stderr, "bench tune: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "bench tune: bad or missing value for %s %s\n", a, err.msg);
            return 2;
        }
        i++;
    }
    if (!o.trace_path || !profiles.n || !(o.slo.ttft_s > 0 || o.slo.tpot_s > 0 || o.slo.e2e_s > 0 || o.slo_factor > 0)) {
        usage(stderr);
        return 2;
    }
    if (o.shared_cores > 0) { /* tune counts GPUs: one worker each, nothing shared */
        fprintf(stderr, "bench tune: --shared-cores models workers sharing one CPU host; tune sizes pools of "
                        "one GPU per worker (use it with simulate)\n");
        return 2;
    }
    ms_cost_model cost;
    if (ms_cost_model_load_mean(profiles.path, profiles.n, &cost, &err) != MS_OK) {
        fprintf(stderr, "bench tune: %s\n", err.msg);
        return 1;
    }
    o.cost = &cost;
    ms_trace_set set;
    if (ms_trace_load(o.trace_path, &o.sel, &set, &err) != MS_OK) {
        fprintf(stderr, "bench tune: %s\n", err.msg);
        return 1;
    }
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (jobs <= 0) jobs = online > 0 ? (int)(online < 64 ? online : 64) : 1;
    const double wall0 = ms_time_now();
    tune_result best = {0};
    static tune_result frontier[257]; /* by GPU count (--gpus-max <= 256) */
    memset(frontier, 0, sizeof frontier);
    int sims = 0, ran = 0, cut = 0;
    /* every split of G = g, in the sequential order (e, then p) */
    const size_t max_splits = (size_t)(gpus_max > 3 ? (gpus_max - 1) * (gpus_max - 2) / 2 : 1) + 4;
    tune_task *tasks = ms_xcalloc(max_splits, sizeof *tasks);
    int *order = ms_xcalloc(max_splits, sizeof *order);
    for (int32_t g = 3; g <= gpus_max && !best.meets; g++) {
        tune_bound bound = {.floor = 0};
        atomic_init(&bound.misses, INT64_MAX);
        int n = 0;
        for (int32_t e = 1; e <= g - 2; e++)
            for (int32_t p = 1; p <= g - 1 - e; p++) tasks[n++] = static_task(&o, false, e, p, g - e - p, prune ? &bound : NULL);
        /* Start with the splits one GPU above the last G's pick (likely the best: their
         * misses bound the others early); the pick is still made in (e, p) order. */
        int n_order = 0;
        if (g > 3 && frontier[g - 1].valid)
            for (int i = 0; i < n; i++) {
                const int32_t *w = frontier[g - 1].workers;
                const int de = tasks[i].e - w[MS_STAGE_ENCODE], dp = tasks[i].p - w[MS_STAGE_PREFILL],
                          dd = tasks[i].d - w[MS_STAGE_DECODE];
                if (de >= 0 && dp >= 0 && dd >= 0) order[n_order++] = i; /* one of them is 1 */
            }
        for (int i = 0, k = n_order; i < n; i++) {
            bool first = false;
            for (int j = 0; j < n_order && !first; j++) first = order[j] == i;
            if (!first) order[k++] = i;
        }
        cut += run_tasks(tasks, order, n, jobs, &set, target);
        sims += n;
        ran += n;
        tune_result at_g = {0};
        for (int i = 0; i < n; i++) {
            const tune_result *r = &tasks[i].out;
            if ((r->meets && (!at_g.meets || better(r, &at_g))) || (!at_g.meets && better(r, &at_g))) at_g = *r;
        }
        frontier[g] = at_g;
        if (at_g.meets || better(&at_g, &best)) best = at_g;
    }
    int32_t rule[3];
    double load[3], cap[3];
    modserve_rule(&o, &set, rule, load, cap);
    /* the rule, the autoscaled runs and the first monolithic counts together; then further
     * monolithic counts, --jobs at a time, until one meets the target (the count printed is
     * the sequential search's: monolithic runs past the first meeting one are not counted) */
    tune_task *side = ms_xcalloc((size_t)jobs + 3, sizeof *side);
    side[0] = static_task(&o, false, rule[0], rule[1], rule[2], NULL);
    autoscaled_task(&o, &set, &as, MS_AUTOSCALE_MODSERVE, target, &side[1]);
    autoscaled_task(&o, &set, &as, MS_AUTOSCALE_TREND, target, &side[2]);
    sims += 3;
    tune_bound mono_bound = {.floor = 0};
    atomic_init(&mono_bound.misses, INT64_MAX);
    /* the most misses that still meet the target: a monolithic run past them and past
     * another's misses neither meets nor is the best */
    while (mono_bound.floor < set.n && (double)(set.n - mono_bound.floor - 1) / (double)set.n >= target) mono_bound.floor++;
    tune_result ruled = {0}, autoscaled[2], mono = {0};
    memset(autoscaled, 0, sizeof autoscaled);
    int n_side = 3;
    for (int32_t d0 = 1; d0 <= gpus_max && !mono.meets; d0 += jobs) {
        int n = d0 == 1 ? n_side : 0;
        for (int32_t d = d0; d < d0 + jobs && d <= gpus_max; d++)
            side[n++] = static_task(&o, true, 0, 0, d, prune ? &mono_bound : NULL);
        cut += run_tasks(side, NULL, n, jobs, &set, target);
        ran += n;
        int i = 0;
        if (d0 == 1) {
            ruled = side[0].out;
            autoscaled[0] = side[1].out;
            autoscaled[1] = side[2].out;
            i = n_side;
        }
        for (; i < n && !mono.meets; i++) {
            const tune_result *r = &side[i].out;
            sims++;
            if (r->meets || better(r, &mono)) mono = *r;
        }
    }
    free(side);
    free(order);
    free(tasks);
    ms_log(MS_LOG_INFO, "tune", "%d simulations run on %d threads in %.1f s, %d cut short (pruning%s)", ran, jobs,
           ms_time_now() - wall0, cut, prune ? "" : " off");
    printf("tune: %lld requests, SLO attainment target %.1f%%, profile %s on %s, %d simulations\n", (long long)set.n,
           100 * target, cost.model, cost.device, sims);
    printf("ModServe rule loads: %.0f image tok/s (one encoder carries %.0f), %.0f prompt tok/s (one prefill worker "
           "%.0f), %.1f output tok/s (one decode worker %.1f)\n\n",
           load[0], cap[0], load[1], cap[1], load[2], cap[2]);
    printf("%-22s %5s %8s %8s %8s %11s %9s %9s\n", "configuration", "GPUs", "encode", "prefill", "decode", "attainment",
           "goodput", "GPU-hours");
    print_row(best.meets ? "tuned (disagg)" : "best disagg (misses)", &best);
    print_row("ModServe rule", &ruled);
    print_row(mono.meets ? "monolithic" : "best monolithic", &mono);
    char name[64];
    snprintf(name, sizeof name, "autoscale modserve %gs", as.interval_s);
    print_autoscaled(name, &autoscaled[0]);
    snprintf(name, sizeof name, "autoscale trend %gs", as.interval_s);
    print_autoscaled(name, &autoscaled[1]);
    printf("\nfrontier (static disagg, best split per GPU count):\n");
    for (int32_t g = 3; g <= gpus_max; g++) {
        if (!frontier[g].valid) continue;
        snprintf(name, sizeof name, "  %d GPUs", g);
        print_row(name, &frontier[g]);
    }
    ms_trace_set_free(&set);
    return 0;
}
