/*
 * The discrete-event loop of the simulator (see simulate.h). Events are arrivals (in
 * trace order) and batch completions (a binary heap by end time). After every event
 * each idle worker asks the core for a batch, exactly as an engine worker thread would;
 * its duration comes from the cost model:
 *   preprocess: per request, by its images (each image's own cost when the profile
 *               measured the run's image pool, else by count);  encode: by images;
 *   LLM batch:  prefill(tokens of its prefill chunks) + for each chunk after cached
 *               tokens the extra attention cost prefill(pos0 + n) - prefill(pos0) -
 *               prefill(n) + decode_step(decode items, mean context) (a monolithic
 *               batch can hold both).
 * A request reaches the core at its send time plus the profile's front-end time for its
 * images (none without one), which also counts in its TTFT and E2E; stage times are from
 * the core's arrival, as the server reports them.
 * The virtual clock starts at 1 s, because the core's timestamps use 0 for "never".
 *
 * With --shared-cores (all workers on one CPU host) the cost is a batch's work at full
 * speed, and the running batches share the cores (processor sharing): whenever one starts
 * or ends, each one's remaining work is charged at the old rate and its end event is
 * pushed again at the new one; the superseded events carry an older version and are
 * skipped when they come up.
 */
#include "bench/simulate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { SIM_T0 = 1 };

typedef struct sim_event {
    double t;
    int32_t stage, worker;
    const ms_core_batch *batch;
    uint64_t version;          /* shared cores: must equal the job's to count */
} sim_event;

/* A worker's running batch under --shared-cores. */
typedef struct sim_job {
    const ms_core_batch *batch; /* NULL: idle */
    double remaining;           /* seconds of work at full speed */
    uint64_t version;
} sim_job;

/* The host every worker shares (--shared-cores), processor sharing over its cores. */
typedef struct sim_host {
    int32_t cores, threads[MS_STAGE_COUNT]; /* threads a batch of each stage wants */
    sim_job *jobs[MS_STAGE_COUNT];
    double rate, last;                      /* speed of every running job since `last` */
} sim_host;

typedef struct sim {
    double now;
    sim_event *heap;
    int64_t n_heap, cap_heap;
} sim;

/* The embedding cache model: LRU over pool image ids. */
typedef struct sim_image_cache {
    int32_t cap, n, pool;
    int64_t *stamp;            /* (pool) last use; -1: not cached */
    int64_t clock;
} sim_image_cache;

static bool simc_lookup(sim_image_cache *c, int32_t id) {
    if (c->cap <= 0 || c->stamp[id] < 0) return false;
    c->stamp[id] = ++c->clock;
    return true;
}

static void simc_insert(sim_image_cache *c, int32_t id) {
    if (c->cap <= 0) return;
    if (c->stamp[id] < 0 && c->n == c->cap) { /* evict the least recently used */
        int32_t lru = -1;
        for (int32_t k = 0; k < c->pool; k++)
            if (c->stamp[k] >= 0 && (lru < 0 || c->stamp[k] < c->stamp[lru])) lru = k;
        c->stamp[lru] = -1;
        c->n--;
    }
    if (c->stamp[id] < 0) c->n++;
    c->stamp[id] = ++c->clock;
}

typedef struct arrival_key {
    double t; /* send + front end, from the first send */
    int64_t index;
} arrival_key;

static int arrival_cmp(const void *a, const void *b) {
    const arrival_key *x = a, *y = b;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index); /* stable: trace order on ties */
}

static double sim_clock(void *ctx) { return ((sim *)ctx)->now; }

/* Fields rather than a sim_event by value: passing the struct through the stack cost a
 * store-forwarding stall on every push, a few percent of a simulated week. */
static void heap_push(sim *s, double t, int32_t stage, int32_t worker, const ms_core_batch *batch, uint64_t version) {
    const sim_event e = {t, stage, worker, batch, version};
    if (s->n_heap == s->cap_heap) {
        s->cap_heap = s->cap_heap ? s->cap_heap * 2 : 64;
        s->heap = ms_xrealloc(s->heap, (size_t)s->cap_heap * sizeof *s->heap);
    }
    int64_t i = s->n_heap++;
    while (i > 0 && s->heap[(i - 1) / 2].t > e.t) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = e;
}

static sim_event heap_pop(sim *s) {
    const sim_event top = s->heap[0], last = s->heap[--s->n_heap];
    int64_t i = 0;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= s->n_heap) break;
        if (c + 1 < s->n_heap && s->heap[c + 1].t < s->heap[c].t) c++;
        if (s->heap[c].t >= last.t) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->n_heap) s->heap[i] = last;
    return top;
}

/* Charges the running jobs their work since host->last at the rate they had. */
static void host_advance(sim_host *h, const int32_t *slots, double now) {
    for (int k = 0; k < MS_STAGE_COUNT; k++)
        for (int32_t w = 0; w < slots[k]; w++)
            if (h->jobs[k][w].batch) h->jobs[k][w].remaining = fmax(0.0, h->jobs[k][w].remaining - (now - h->last) * h->rate);
    h->last = now;
}

/* Pops end events that a reschedule superseded, so the heap's top is a real event. */
static void drop_superseded(sim *s, const sim_host *h) {
    while (h->cores > 0 && s->n_heap > 0 && s->heap[0].version != h->jobs[s->heap[0].stage][s->heap[0].worker].version)
        heap_pop(s);
}

/* After jobs started or ended: the new rate, and every running job's end at it. */
static void host_reschedule(sim_host *h, sim *s, const int32_t *slots) {
    int64_t wanted = 0;
    for (int k = 0; k < MS_STAGE_COUNT; k++)
        for (int32_t w = 0; w < slots[k]; w++) wanted += h->jobs[k][w].batch ? h->threads[k] : 0;
    h->rate = wanted > h->cores ? (double)h->cores / (double)wanted : 1.0;
    for (int k = 0; k < MS_STAGE_COUNT; k++)
        for (int32_t w = 0; w < slots[k]; w++) {
            sim_job *j = &h->jobs[k][w];
            if (!j->batch) continue;
            j->version++;
            heap_push(s, s->now + j->remaining / h->rate, k, w, j->batch, j->version);
        }
}

/* preprocess_s: per request of the run (reqs), its images' preprocess time. */
static double batch_cost(const ms_cost_model *m, const ms_core_batch *b, const ms_run_request *reqs,
                         const double *preprocess_s) {
    if (b->stage == MS_STAGE_PREPROCESS) {
        double t = 0;
        for (int32_t i = 0; i < b->n_items; i++) t += preprocess_s[(const ms_run_request *)b->items[i].user - reqs];
        return t;
    }
    if (b->stage == MS_STAGE_ENCODE) return ms_cost_encode(m, b->n_items);
    int64_t prefill_tokens = 0, n_decode = 0;
    double ctx = 0, extra = 0;
    for (int32_t i = 0; i < b->n_items; i++) {
        const ms_core_item *it = &b->items[i];
        if (it->is_prefill) {
            prefill_tokens += it->n_tokens;
            /* A chunk after cached tokens also attends to them: the profile measured
             * fresh prompts, so charge what prefilling pos0 + n costs beyond pos0 and
             * beyond a fresh n (the attention over the cached part). */
            if (it->pos0 > 0)
                extra += fmax(0.0, ms_cost_prefill(m, it->pos0 + it->n_tokens) - ms_cost_prefill(m, it->pos0) -
                                       ms_cost_prefill(m, it->n_tokens));
        } else {
            n_decode++;
            ctx += it->pos0 + it->n_tokens;
        }
    }
    double t = extra;
    if (prefill_tokens) t += ms_cost_prefill(m, (int32_t)prefill_tokens);
    if (n_decode) t += ms_cost_decode(m, (int32_t)n_decode, ctx / (double)n_decode);
    return t;
}

static void fail(ms_run_request *r, const char *msg) {
    ms_run_request_fail(r, msg);
    r->m.ok = false;
}

/* A finished request: copy the core's timestamps into the report's fields. */
static void finish(ms_run_request *r, const ms_core_finished *f, double frontend_s) {
    const ms_request_times *t = &f->times;
    const double a = t->arrival;
    /* From the client's send: the front end's time before the engine saw the request. */
    r->m.ttft_s = t->first_token > 0 ? t->first_token - a + frontend_s : 0;
    r->m.e2e_s = (t->last_token > 0 ? t->last_token : t->finished) - a + frontend_s;
    r->m.output_tokens = f->completion_tokens;
    r->actual_prompt = f->prompt_tokens;
    r->m.prompt_tokens = f->prompt_tokens;
    r->chunks = f->completion_tokens;
    r->http_status = f->status == MS_OK ? 200 : 500;
    r->m.itl = r->itl_buf;
    if (f->status != MS_OK || f->finish == MS_FINISH_ERROR || f->finish == MS_FINISH_CANCELLED)
        fail(r, f->finish == MS_FINISH_CANCELLED ? "cancelled" : ms_status_name(f->status));
    else
        r->m.ok = true;
    const double q[MS_RUN_STAGES] = {t->preprocess_queued, t->encode_queued, t->prefill_queued, t->decode_queued};
    const double s[MS_RUN_STAGES] = {t->preprocess_start, t->encode_start, t->prefill_start, t->decode_start};
    const double e[MS_RUN_STAGES] = {t->preprocess_end, t->encode_end, t->prefill_end, t->last_token};
    for (int k = 0; k < MS_RUN_STAGES; k++) {
        r->stage_queued[k] = q[k] > 0 ? q[k] - a : -1;
        r->stage_start[k] = s[k] > 0 ? s[k] - a : -1;
        r->stage_end[k] = e[k] > 0 ? e[k] - a : -1;
    }
    r->has_stages = true;
}

/* Autoscaling driver state: what each stage saw since the last tick. */
typedef struct sim_scale {
    ms_autoscaler policy;
    double interval, next_tick, last_t;   /* absolute virtual times */
    double t_first;                       /* the first send (the report's time 0) */
    int32_t workers[MS_STAGE_COUNT];      /* current pool sizes */
    ms_autoscale_stage_load load[MS_STAGE_COUNT];
    int64_t arrived_reqs, finished, good; /* this interval */
    double wait_sum[MS_STAGE_COUNT];      /* this interval: queueing delays of finished requests */
    int64_t wait_n[MS_STAGE_COUNT];
    double units_total[MS_STAGE_COUNT];   /* all arrivals so far: mean units per queued item */
    int64_t items_total[MS_STAGE_COUNT];
    int64_t cap_events, cap_ticks;
} sim_scale;

static double gpu_workers(const sim_scale *sc, ms_engine_mode mode) {
    return mode == MS_MODE_MONOLITHIC ? sc->workers[MS_STAGE_DECODE]
                                      : sc->workers[MS_STAGE_ENCODE] + sc->workers[MS_STAGE_PREFILL] + sc->workers[MS_STAGE_DECODE];
}

static void scale_arrival(sim_scale *sc, int32_t image_tokens, int32_t prompt, int32_t out) {
    const double u[MS_STAGE_COUNT] = {0, image_tokens, prompt, out};
    const int64_t n[MS_STAGE_COUNT] = {0, image_tokens > 0, 1, 1};
    for (int k = 0; k < MS_STAGE_COUNT; k++) {
        sc->load[k].arrived += u[k];
        sc->units_total[k] += u[k];
        sc->items_total[k] += n[k];
    }
    sc->arrived_reqs++;
}

/* One tick: the policy's decision, applied through the core's resize path (the driver
 * then grows its per-worker arrays to the core's slot counts). */
static void scale_tick(sim_scale *sc, ms_core *core, ms_engine_mode mode, int32_t image_tokens, ms_sim_stats *stats) {
    const double now = sc->next_tick;
    stats->worker_seconds += gpu_workers(sc, mode) * (now - sc->last_t);
    sc->last_t = now;
    ms_core_stats cs;
    ms_core_stats_get(core, &cs);
    ms_autoscale_input in = {.interval_s = sc->interval, .attainment = sc->finished ? (double)sc->good / (double)sc->finished : -1};
    for (int k = 0; k < MS_STAGE_COUNT; k++) {
        in.stage[k] = sc->load[k];
        in.current[k] = sc->workers[k];
        /* queued units: images x image tokens; requests / sequences x their mean units */
        const double per_item = k == MS_STAGE_ENCODE ? image_tokens
                                : sc->items_total[k] ? sc->units_total[k] / (double)sc->items_total[k] : 0;
        in.stage[k].queued = cs.stage[k].queued * per_item;
        in.stage[k].wait_s = sc->wait_n[k] ? sc->wait_sum[k] / (double)sc->wait_n[k] : 0;
        sc->wait_sum[k] = 0;
        sc->wait_n[k] = 0;
    }
    int32_t target[MS_STAGE_COUNT];
    ms_autoscaler_decide(&sc->policy, &in, target);
    if (stats->n_ticks == sc->cap_ticks) {
        sc->cap_ticks = sc->cap_ticks ? 2 * sc->cap_ticks : 64;
        stats->ticks = ms_xrealloc(stats->ticks, (size_t)sc->cap_ticks * sizeof *stats->ticks);
    }
    ms_sim_scale_tick *tk = &stats->ticks[stats->n_ticks++];
    *tk = (ms_sim_scale_tick){.t = now - sc->interval - sc->t_first, .arrival_rate = (double)sc->arrived_reqs / sc->interval};
    for (int k = 0; k < MS_STAGE_COUNT; k++) {
        if (target[k] != sc->workers[k] && target[k] >= 1) {
            ms_error err = {0};
            if (ms_core_resize(core, (ms_stage)k, target[k], &err) == MS_OK) {
                sc->workers[k] = target[k];
                if (stats->n_scale_events == sc->cap_events) {
                    sc->cap_events = sc->cap_events ? 2 * sc->cap_events : 64;
                    stats->scale_events = ms_xrealloc(stats->scale_events, (size_t)sc->cap_events * sizeof *stats->scale_events);
                }
                stats->scale_events[stats->n_scale_events++] = (ms_sim_scale_event){now - sc->t_first, k, target[k]};
            } else {
                ms_log(MS_LOG_WARN, "simulate", "autoscale: %s", err.msg);
            }
        }
        tk->workers[k] = sc->workers[k];
        sc->load[k] = (ms_autoscale_stage_load){0};
    }
    sc->arrived_reqs = sc->finished = sc->good = 0;
    sc->next_tick += sc->interval;
}

/* Grows a stage's per-worker arrays after a resize added slots (new ones idle). */
static void grow_slots(bool **busy, sim_job **jobs, int32_t *slots, int32_t n) {
    if (n <= *slots) return;
    *busy = ms_xrealloc(*busy, (size_t)(n + 1) * sizeof **busy);
    memset(*busy + *slots, 0, (size_t)(n + 1 - *slots) * sizeof **busy);
    if (*jobs) {
        *jobs = ms_xrealloc(*jobs, (size_t)(n + 1) * sizeof **jobs);
        memset(*jobs + *slots, 0, (size_t)(n + 1 - *slots) * sizeof **jobs);
    }
    *slots = n;
}

void ms_sim_stats_free(ms_sim_stats *s) {
    free(s->scale_events);
    free(s->ticks);
    s->scale_events = NULL;
    s->ticks = NULL;
    s->n_scale_events = s->n_ticks = 0;
}

int32_t ms_sim_max_model_len(const ms_core_options *c, const ms_cost_model *cost) {
    if (c->max_model_len > 0) return c->max_model_len;
    return cost && cost->max_model_len > 0 ? cost->max_model_len : 4096;
}

ms_status ms_simulate_run(const ms_sim_options *o, const ms_trace_set *set, ms_bench_run *run, ms_sim_stats *stats,
                          ms_error *err) {
    memset(run, 0, sizeof *run);
    memset(stats, 0, sizeof *stats);
    const double wall0 = ms_time_now();
    sim s = {.now = SIM_T0};
    ms_core_options co = o->core;
    co.max_model_len = ms_sim_max_model_len(&o->core, o->cost);
    co.clock = (ms_clock){sim_clock, &s};
    ms_core *core;
    ms_status st = ms_core_create(&co, &core, err);
    if (st != MS_OK) return ms_error_wrap(err, "simulate");
    if (o->autoscale && (co.mode != MS_MODE_DISAGG || !(o->autoscale_interval_s > 0))) {
        ms_core_destroy(core);
        return ms_errorf(err, MS_ERR_INVALID, "simulate: --autoscale needs --mode disagg and an --interval > 0");
    }
    run->kind = "simulate";
    run->trace_path = o->trace_path;
    run->sel = o->sel;
    run->slo = o->slo;
    run->image_policy = o->policy == MS_IMAGE_POLICY_FIT ? "fit" : "keep";
    run->image_tokens = o->cost->image_tokens;
    run->image_tokens_source = "profile";
    run->tokens_per_word = 1;
    run->n = set->n;
    run->reqs = ms_xcalloc((size_t)(set->n ? set->n : 1), sizeof *run->reqs);
    const ms_prompt_plan plan = {.overhead = 0, .per_word = 1, .image_tokens = o->cost->image_tokens};
    int64_t out_tokens = 0;
    for (int64_t i = 0; i < set->n; i++) {
        ms_run_request *r = &run->reqs[i];
        r->trace = set->reqs[i];
        r->m.cls = r->trace.n_images > 0 ? MS_CLASS_IMAGE : MS_CLASS_TEXT;
        r->m.send_s = r->trace.send_s;
        r->target_prompt = r->trace.context_tokens;
        r->actual_prompt = -1;
        ms_prompt_size(&plan, o->policy, o->max_images, r->trace.n_images, r->trace.context_tokens, &r->images_sent,
                       &r->text_words, &r->expected_prompt);
        if (r->images_sent < r->trace.n_images) run->images_capped++;
        for (int k = 0; k < MS_RUN_STAGES; k++) r->stage_queued[k] = r->stage_start[k] = r->stage_end[k] = -1;
        out_tokens += r->trace.generated_tokens;
    }
    const bool itl = o->record_itl > 0 || (o->record_itl < 0 && out_tokens < 50000000);
    /* Engine arrival order: send + front end, which can overtake (a text request sent just
     * after one with many images reaches the engine first). */
    double *frontend = ms_xcalloc((size_t)(set->n + 1), sizeof *frontend);
    double *preprocess = ms_xcalloc((size_t)(set->n + 1), sizeof *preprocess);
    arrival_key *order = ms_xcalloc((size_t)(set->n + 1), sizeof *order);
    /* The images each request sends are the replayer's (same pool, same seed): charge
     * their own measured costs when the profile has them for this pool. */
    stats->per_image = ms_cost_images_match(o->cost, o->image_pool > 0 ? o->image_pool : 16, o->sel.seed);
    for (int64_t i = 0; i < set->n; i++) {
        frontend[i] = ms_cost_frontend_request(o->cost, stats->per_image, i, run->reqs[i].images_sent);
        preprocess[i] = ms_cost_preprocess_request(o->cost, stats->per_image, i, run->reqs[i].images_sent);
        order[i] = (arrival_key){set->reqs[i].send_s + frontend[i], i};
        ms_run_request *r = &run->reqs[i];
        const ms_alone_latency al = ms_slo_alone(o->cost, co.max_num_batched_tokens, r->expected_prompt > 0 ? r->expected_prompt : 1,
                                                 r->images_sent, r->trace.generated_tokens, preprocess[i], frontend[i]);
        r->alone_ttft_s = al.ttft_s;
        r->alone_tpot_s = al.tpot_s;
    }
    /* the embedding cache: which of each request's images missed (image k of request i
     * is pool image ms_image_pool_pick(i, k, pool), as the replayer sends it) */
    sim_image_cache icache = {.cap = o->embedding_cache_images, .pool = o->image_pool > 0 ? o->image_pool : 16};
    icache.stamp = ms_xmalloc((size_t)icache.pool * sizeof *icache.stamp);
    for (int32_t k = 0; k < icache.pool; k++) icache.stamp[k] = -1;
    int64_t *miss_off = ms_xcalloc((size_t)(set->n + 1), sizeof *miss_off);
    for (int64_t i = 0; i < set->n; i++) miss_off[i + 1] = miss_off[i] + run->reqs[i].images_sent;
    int32_t *miss_img = ms_xcalloc((size_t)(miss_off[set->n] + 1), sizeof *miss_img);
    if (o->cost->frontend.n > 0 || (stats->per_image && o->cost->images.has_frontend)) qsort(order, (size_t)set->n, sizeof *order, arrival_cmp);
    bool *busy[MS_STAGE_COUNT];
    int32_t slots[MS_STAGE_COUNT];
    for (int k = 0; k < MS_STAGE_COUNT; k++) {
        slots[k] = ms_core_worker_slots(core, (ms_stage)k);
        busy[k] = ms_xcalloc((size_t)(slots[k] + 1), sizeof *busy[k]);
    }
    sim_host host = {.cores = o->shared_cores, .rate = 1.0, .last = SIM_T0};
    if (host.cores > 0) {
        for (int k = 0; k < MS_STAGE_COUNT; k++) {
            /* A batch alone runs at the profile's speed however many threads it has. */
            const int32_t t = k == MS_STAGE_PREPROCESS ? 1 : o->worker_threads > 0 ? o->worker_threads : host.cores;
            host.threads[k] = t < host.cores ? t : host.cores;
            host.jobs[k] = ms_xcalloc((size_t)(slots[k] + 1), sizeof *host.jobs[k]);
        }
    }
    const double t_first = SIM_T0 + (set->n ? set->reqs[0].send_s : 0);
    sim_scale scale = {.interval = o->autoscale_interval_s, .t_first = t_first, .last_t = t_first,
                       .next_tick = t_first + o->autoscale_interval_s};
    for (int k = 0; k < MS_STAGE_COUNT; k++) scale.workers[k] = co.workers[k];
    if (o->autoscale) ms_autoscaler_init(&scale.policy, o->autoscale);
    int64_t next = 0, finished = 0;
    double last_done = SIM_T0;
    bool host_dirty = false; /* jobs started or ended since the last reschedule */
    for (;;) {
        drop_superseded(&s, &host); /* a reschedule may have left superseded events on top */
        if (next >= set->n && s.n_heap == 0) break;
        const double t_arr = next < set->n ? SIM_T0 + order[next].t : INFINITY;
        if (o->autoscale && scale.next_tick < t_arr && (s.n_heap == 0 || scale.next_tick < s.heap[0].t)) {
            s.now = scale.next_tick;
            if (host.cores > 0) host_advance(&host, slots, s.now);
            scale_tick(&scale, core, co.mode, o->cost->image_tokens, stats);
            for (int k = 0; k < MS_STAGE_COUNT; k++)
                grow_slots(&busy[k], &host.jobs[k], &slots[k], ms_core_worker_slots(core, (ms_stage)k));
        } else if (s.n_heap > 0 && s.heap[0].t <= t_arr) {
            const sim_event e = heap_pop(&s);
            if (host.cores > 0) {
                host_advance(&host, slots, e.t);
                host.jobs[e.stage][e.worker].batch = NULL;
                host_dirty = true;
            }
            s.now = e.t;
            const ms_core_batch *b = e.batch;
            if (b->stage != MS_STAGE_PREPROCESS && b->stage != MS_STAGE_ENCODE)
                for (int32_t i = 0; i < b->n_items; i++) {
                    ms_run_request *r = b->items[i].user;
                    if (!b->items[i].samples) continue;
                    if (itl && r->chunks > 0) ms_run_request_itl_push(r, s.now - r->m.e2e_s); /* e2e_s holds the last token time here */
                    r->m.e2e_s = s.now;
                    r->chunks++;
                }
            if (b->stage == MS_STAGE_ENCODE) /* encoded images enter the cache */
                for (int32_t i = 0; i < b->n_items; i++) {
                    const int64_t ri = (ms_run_request *)b->items[i].user - run->reqs;
                    const int32_t k = miss_img[miss_off[ri] + b->items[i].image];
                    simc_insert(&icache, ms_image_pool_pick(ri, k, icache.pool));
                }
            ms_core_batch_done(core, b, NULL);
            busy[e.stage][e.worker] = false;
            stats->batches++;
        } else {
            s.now = t_arr;
            const int64_t ri = order[next++].index;
            ms_run_request *r = &run->reqs[ri];
            int32_t misses = 0;
            double pre = 0;
            for (int32_t k = 0; k < r->images_sent; k++) {
                const int32_t id = ms_image_pool_pick(ri, k, icache.pool);
                if (simc_lookup(&icache, id)) {
                    stats->image_hits++;
                    continue;
                }
                stats->image_misses++;
                miss_img[miss_off[ri] + misses++] = k;
                if (stats->per_image) pre += o->cost->images.preprocess[ms_image_pool_pick(ri, k, o->cost->images.n)];
            }
            if (misses < r->images_sent) /* hits skip preprocess: charge the misses only */
                preprocess[ri] = stats->per_image ? pre : ms_cost_preprocess(o->cost, misses);
            const ms_core_req_desc d = {.n_prompt = r->expected_prompt > 0 ? r->expected_prompt : 1,
                                        .n_images = misses,
                                        .image_tokens = o->cost->image_tokens,
                                        .max_tokens = r->trace.generated_tokens > 0 ? r->trace.generated_tokens : 1,
                                        .user = r};
            uint64_t id;
            ms_error aerr = {0};
            if (ms_core_arrive(core, &d, &id, &aerr) != MS_OK) {
                fail(r, aerr.msg);
                stats->rejected++;
                stats->missed++;
                finished++;
            }
            else
                scale_arrival(&scale, misses * o->cost->image_tokens, d.n_prompt, d.max_tokens);
        }
        stats->events++;
        ms_core_finished f;
        while (ms_core_pop_finished(core, &f)) {
            ms_run_request *r = f.user;
            r->chunks = 0;
            finish(r, &f, frontend[r - run->reqs]);
            for (int k = 0; k < MS_STAGE_COUNT && k < MS_RUN_STAGES; k++) /* the policy's waits */
                if (r->stage_queued[k] >= 0 && r->stage_start[k] >= 0) {
                    scale.wait_sum[k] += r->stage_start[k] - r->stage_queued[k];
                    scale.wait_n[k]++;
                }
            /* The policy's attainment leaves out requests that miss the absolute SLO even
             * alone: no number of workers helps them, and counting them would keep a
             * reactive policy adding workers forever. */
            const bool good = r->m.ok && (o->slo_factor <= 0 || ms_slo_factor_meets(r, o->slo_factor)) &&
                              ms_req_meets_slo(&r->m, &o->slo);
            stats->missed += !good;
            if (!ms_slo_cannot_meet_alone(r, &o->slo)) {
                scale.finished++;
                scale.good += good;
            }
            last_done = fmax(last_done, s.now);
            finished++;
        }
        if (o->stop_misses_above &&
            stats->missed > atomic_load_explicit(o->stop_misses_above, memory_order_relaxed)) {
            stats->cut_short = true;
            break;
        }
        /* Events at the same instant all land before any worker picks work, so requests
         * arriving together can share a batch. */
        const double t_next_arr = next < set->n ? SIM_T0 + order[next].t : INFINITY;
        drop_superseded(&s, &host);
        if (t_next_arr == s.now || (s.n_heap > 0 && s.heap[0].t == s.now)) continue;
        if (host.cores > 0) host_advance(&host, slots, s.now);
        for (int k = 0; k < MS_STAGE_COUNT; k++) {
            if (!ms_core_stage_may_have_work(core, (ms_stage)k)) continue;
            for (int32_t w = 0; w < slots[k]; w++) {
                if (busy[k][w] || !ms_core_has_work(core, (ms_stage)k, w)) continue;
                const ms_core_batch *b = ms_core_next_batch(core, (ms_stage)k, w);
                if (!b) continue;
                busy[k][w] = true;
                const double cost = batch_cost(o->cost, b, run->reqs, preprocess);
                scale.load[k].busy_s += cost;
                if (host.cores > 0) {
                    host.jobs[k][w] = (sim_job){b, cost, host.jobs[k][w].version};
                    host_dirty = true;
                } else {
                    heap_push(&s, s.now + cost, k, w, b, 0);
                }
            }
        }
        if (host_dirty) host_reschedule(&host, &s, slots);
        host_dirty = false;
    }
    stats->worker_seconds += gpu_workers(&scale, co.mode) * fmax(0.0, last_done - scale.last_t);
    ms_core_stats_get(core, &stats->end);
    for (int64_t i = 0; i < set->n && !stats->cut_short; i++)
        if (!run->reqs[i].m.ok && !run->reqs[i].error) {
            fail(&run->reqs[i], "never finished (simulation stalled)");
            stats->stalled++;
        }
    run->duration_s = set->n ? last_done - SIM_T0 - set->reqs[0].send_s : 0;
    free(frontend);
    free(preprocess);
    free(order);
    free(icache.stamp);
    free(miss_off);
    free(miss_img);
    for (int k = 0; k < MS_STAGE_COUNT; k++) {
        free(busy[k]);
        free(host.jobs[k]);
    }
    free(s.heap);
    ms_core_destroy(core);
    stats->wall_s = ms_time_now() - wall0;
    return MS_OK;
}
