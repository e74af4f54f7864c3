/*
 * In-process replay: the same open-loop schedule and report as `bench replay`, but the
 * requests go straight to the engine (scheduler/engine.h) instead of over HTTP. It
 * exists to check the simulator against the real engine without the HTTP layer, and to
 * benchmark the engine alone. Prompts are token ids, so the prompt is exactly the
 * planned size: text tokens + one image token per image, which the engine expands to
 * image_seq_length tokens each.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/replay.h"
#include "llm/config.h"
#include "scheduler/engine.h"

typedef struct engine_req {
    ms_run_request *r;
    double t0;                /* send time (ms_time_now) */
    double last;
    int32_t *ids;
    ms_image_input *images;
    atomic_int *done;
} engine_req;

static void on_token(void *user, int32_t token, int32_t index) {
    engine_req *q = user;
    const double now = ms_time_now();
    ms_run_request *r = q->r;
    if (index == 0) r->m.ttft_s = now - q->t0;
    else {
        if (r->m.n_itl == r->itl_cap) {
            r->itl_cap = r->itl_cap ? r->itl_cap * 2 : 64;
            r->itl_buf = ms_xrealloc(r->itl_buf, (size_t)r->itl_cap * sizeof *r->itl_buf);
        }
        r->itl_buf[r->m.n_itl++] = now - q->last;
    }
    q->last = now;
    r->chunks++;
}

static void on_done(void *user, const ms_request_result *res) {
    engine_req *q = user;
    ms_run_request *r = q->r;
    const ms_request_times *t = &res->times;
    r->m.e2e_s = (t->last_token > 0 ? t->last_token : ms_time_now()) - q->t0;
    r->m.output_tokens = res->completion_tokens;
    r->actual_prompt = res->prompt_tokens;
    r->m.prompt_tokens = res->prompt_tokens;
    r->m.itl = r->itl_buf;
    r->m.ok = res->status == MS_OK && res->finish != MS_FINISH_ERROR && res->finish != MS_FINISH_CANCELLED &&
              r->chunks > 0;
    if (!r->m.ok) r->error = ms_xstrdup(res->error[0] ? res->error : ms_status_name(res->status));
    r->http_status = r->m.ok ? 200 : 500;
    const double a = t->arrival;
    const double qd[MS_RUN_STAGES] = {t->preprocess_queued, t->encode_queued, t->prefill_queued, t->decode_queued};
    const double st[MS_RUN_STAGES] = {t->preprocess_start, t->encode_start, t->prefill_start, t->decode_start};
    const double en[MS_RUN_STAGES] = {t->preprocess_end, t->encode_end, t->prefill_end, t->last_token};
    for (int k = 0; k < MS_RUN_STAGES; k++) {
        r->stage_queued[k] = qd[k] > 0 ? qd[k] - a : -1;
        r->stage_start[k] = st[k] > 0 ? st[k] - a : -1;
        r->stage_end[k] = en[k] > 0 ? en[k] - a : -1;
    }
    r->has_stages = true;
    atomic_fetch_add(q->done, 1);
}

static void sleep_until(double t) {
    for (;;) {
        const double d = t - ms_time_now();
        if (d <= 0) return;
        const double s = d > 0.05 ? 0.05 : d;
        struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

ms_status ms_replay_engine_run(const ms_engine_options *eo, const ms_replay_options *o, const ms_trace_set *set,
                               ms_bench_run *run, ms_error *err) {
    memset(run, 0, sizeof *run);
    ms_engine *e;
    ms_status st = ms_engine_create(eo, &e, err);
    if (st != MS_OK) return st;
    const ms_llava_config *cfg = ms_engine_model_config(e);
    ms_image_pool pool;
    ms_image_pool_build(&pool, o->image_pool, o->sel.seed);
    const ms_prompt_plan plan = {.per_word = 1, .image_tokens = ms_llava_image_tokens(cfg)};
    run->kind = "replay (in-process engine)";
    run->trace_path = o->trace;
    run->target = eo->model_dir;
    run->sel = o->sel;
    run->slo = o->slo;
    run->image_policy = o->policy == MS_IMAGE_POLICY_FIT ? "fit" : "keep";
    run->image_tokens = plan.image_tokens;
    run->image_tokens_source = "model";
    run->tokens_per_word = 1;
    run->calibrated = true;
    run->n = set->n;
    run->reqs = ms_xcalloc((size_t)(set->n ? set->n : 1), sizeof *run->reqs);
    engine_req *qs = ms_xcalloc((size_t)(set->n ? set->n : 1), sizeof *qs);
    atomic_int done = 0;
    int64_t accepted = 0;
    const int32_t vocab = cfg->text.vocab_size;
    const double t_start = ms_time_now();
    double last_end = t_start;
    for (int64_t i = 0; i < set->n; i++) {
        ms_run_request *r = &run->reqs[i];
        r->trace = set->reqs[i];
        r->m.cls = r->trace.n_images > 0 ? MS_CLASS_IMAGE : MS_CLASS_TEXT;
        r->target_prompt = r->trace.context_tokens;
        r->actual_prompt = -1;
        for (int k = 0; k < MS_RUN_STAGES; k++) r->stage_queued[k] = r->stage_start[k] = r->stage_end[k] = -1;
        ms_prompt_size(&plan, o->policy, o->max_images, r->trace.n_images, r->trace.context_tokens, &r->images_sent,
                       &r->text_words, &r->expected_prompt);
        if (r->images_sent < r->trace.n_images) run->images_capped++;
        engine_req *q = &qs[i];
        q->r = r;
        q->done = &done;
        const int32_t n_prompt = r->images_sent + (r->text_words > 0 ? r->text_words : 1);
        q->ids = ms_xmalloc((size_t)n_prompt * sizeof *q->ids);
        for (int32_t k = 0; k < r->images_sent; k++) q->ids[k] = cfg->image_token_index;
        for (int32_t k = r->images_sent; k < n_prompt; k++) {
            int32_t id = 3 + (int32_t)(((uint32_t)(i * 131 + k) * 7919u) % (uint32_t)(vocab - 3));
            q->ids[k] = id == cfg->image_token_index ? 3 : id;
        }
        q->images = ms_xcalloc((size_t)(r->images_sent + 1), sizeof *q->images);
        for (int32_t k = 0; k < r->images_sent; k++) {
            const ms_bench_image *im = &pool.images[ms_image_pool_pick(i, k, pool.n)];
            q->images[k] = (ms_image_input){im->raw, im->bytes};
        }
        sleep_until(t_start + r->trace.send_s);
        ms_request_desc d = {.prompt = q->ids, .n_prompt = n_prompt, .images = q->images,
                             .n_images = r->images_sent, .on_token = on_token, .on_done = on_done, .user = q};
        ms_request_params_default(&d.params);
        d.params.max_tokens = r->trace.generated_tokens > 0 ? r->trace.generated_tokens : 1;
        d.params.min_tokens = d.params.max_tokens;
        d.params.ignore_eos = true;
        q->t0 = ms_time_now();
        r->m.send_s = q->t0 - t_start;
        uint64_t id;
        ms_error serr = {0};
        if (ms_engine_submit(e, &d, &id, &serr) == MS_OK) {
            accepted++;
        } else {
            r->error = ms_xstrdup(serr.msg);
            r->http_status = serr.status == MS_ERR_BUSY ? 503 : 400;
        }
    }
    while (atomic_load(&done) < accepted) sleep_until(ms_time_now() + 0.01);
    for (int64_t i = 0; i < set->n; i++)
        if (run->reqs[i].m.ok) {
            const double end = t_start + run->reqs[i].m.send_s + run->reqs[i].m.e2e_s;
            last_end = end > last_end ? end : last_end;
        }
    run->duration_s = set->n ? last_end - t_start - run->reqs[0].m.send_s : 0;
    ms_engine_destroy(e);
    for (int64_t i = 0; i < set->n; i++) {
        free(qs[i].ids);
        free(qs[i].images);
    }
    free(qs);
    ms_image_pool_free(&pool);
    return MS_OK;
}
