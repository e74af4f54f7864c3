/* Deterministic virtual-clock driver of the scheduler core for tests (see the header). */
#include "tests/sched_harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/test_util.h"

static double sim_clock(void *ctx) { return ((sim *)ctx)->now; }

void sim_init(sim *s, ms_core_options *o, sim_req *reqs, int32_t n) {
    memset(s, 0, sizeof *s);
    s->reqs = reqs;
    s->n_reqs = n;
    s->image_tokens = 8;
    s->cost = (sim_cost){.preprocess = 0.01, .encode_per_image = 0.05, .prefill_per_token = 0.0005,
                         .decode_step = 0.01, .batch_overhead = 0.001};
    o->clock.now = sim_clock;
    o->clock.ctx = s;
}

static uint32_t mix(uint32_t h, int32_t v) {
    h ^= (uint32_t)v + 0x9e3779b9u + (h << 6) + (h >> 2);
    return h * 2654435761u;
}

static void expand_prompt(sim *s, sim_req *r, int32_t idx) {
    /* text tokens seeded per request; images as -1 - image index, repeated */
    uint32_t seed = r->prompt_seed ? r->prompt_seed : (uint32_t)idx + 1u;
    uint32_t h = 12345u + seed * 7919u;
    int32_t n = 0;
    int32_t text_before = r->n_images > 0 ? r->n_text / 2 : r->n_text;
    for (int32_t i = 0; i < text_before; i++) {
        if (r->diverge_at > 0 && i == r->diverge_at) h = 12345u + r->diverge_seed * 7919u;
        r->tokens[n++] = (int32_t)((h = mix(h, i)) % 1000u) + 1;
    }
    for (int32_t k = 0; k < r->n_images; k++)
        for (int32_t t = 0; t < s->image_tokens; t++) r->tokens[n++] = -1 - k;
    for (int32_t i = text_before; i < r->n_text; i++) {
        if (r->diverge_at > 0 && i == r->diverge_at) h = 12345u + r->diverge_seed * 7919u;
        r->tokens[n++] = (int32_t)((h = mix(h, i)) % 1000u) + 1;
    }
    r->n_tokens = r->n_prompt = n;
}

/* The content key of position p: the token, or the image's id for an image token. */
static uint64_t key_of(const sim *s, const sim_req *r, int32_t p) {
    int32_t tok = r->tokens[p];
    if (tok >= 0) return (uint64_t)tok;
    int32_t k = -1 - tok;
    uint64_t id = k < 8 && r->image_id[k] ? r->image_id[k] : 0x100000u + (uint64_t)(r - s->reqs) * 64u + (uint64_t)k;
    return MS_CORE_IMAGE_KEY(id);
}

static uint64_t ctx_mix(uint64_t h, uint64_t key) { return ms_core_hash_bytes(&key, sizeof key, h); }

static void submit_due(sim *s) {
    for (int32_t i = 0; i < s->n_reqs; i++) {
        sim_req *r = &s->reqs[i];
        if (r->submitted || r->at > s->now) continue;
        expand_prompt(s, r, i);
        uint64_t *keys = NULL;
        if (r->keys) {
            keys = malloc((size_t)r->n_prompt * sizeof *keys);
            for (int32_t p = 0; p < r->n_prompt; p++) keys[p] = key_of(s, r, p);
        }
        ms_core_req_desc d = {.n_prompt = r->n_prompt, .n_images = r->n_images,
                              .image_tokens = s->image_tokens, .max_tokens = r->max_tokens,
                              .priority = r->priority, .user = r, .token_keys = keys};
        ms_error err;
        ms_status st = ms_core_arrive(s->core, &d, &r->id, &err);
        free(keys); /* the core keeps a copy */
        MS_CHECKF(st == MS_OK, "arrive: %s", err.msg);
        r->submitted = true;
    }
    for (int32_t i = 0; i < s->n_reqs; i++) {
        sim_req *r = &s->reqs[i];
        if (r->submitted && !r->done && r->cancel_at > 0 && r->cancel_at <= s->now) {
            ms_core_cancel(s->core, r->id);
            r->cancel_at = 0;
        }
    }
    for (int32_t i = 0; i < s->n_resizes; i++) {
        if (s->resizes[i].at < 0 || s->resizes[i].at > s->now) continue;
        ms_error err;
        MS_CHECK(ms_core_resize(s->core, s->resizes[i].stage, s->resizes[i].workers, &err) == MS_OK);
        s->resizes[i].at = -1;
    }
}

static double batch_cost(const sim *s, const ms_core_batch *b) {
    switch (b->stage) {
    case MS_STAGE_PREPROCESS: return s->cost.preprocess;
    case MS_STAGE_ENCODE: return s->cost.batch_overhead + s->cost.encode_per_image * b->n_items;
    case MS_STAGE_PREFILL: return s->cost.batch_overhead + s->cost.prefill_per_token * b->n_tokens;
    default: return s->cost.batch_overhead + s->cost.decode_step;
    }
}

static int32_t slot_of(const sim *s, const ms_core_item *it, int32_t pos) {
    int32_t bs = ms_core_block_size(s->core);
    MS_CHECK(pos / bs < it->n_blocks);
    return it->block_table[pos / bs] * bs + pos % bs;
}

/* The fake model: checks the cached prefix, writes the chunk, samples a token. */
static void run_llm_item(sim *s, const ms_core_item *it, ms_core_item_result *res) {
    sim_req *r = it->user;
    int32_t idx = (int32_t)(r - s->reqs);
    int32_t dev = it->device;
    MS_CHECK(dev >= 0 && dev < 4 && s->kv_owner[dev]);
    MS_CHECK(it->n_known == r->n_tokens);
    if (it->n_copy > 0) {
        int32_t bs = ms_core_block_size(s->core);
        for (int32_t b = 0; b < it->n_copy; b++)
            for (int32_t o = 0; o < bs; o++) {
                int32_t src = it->copy_src[b] * bs + o, dst = it->block_table[b] * bs + o;
                s->kv_owner[dev][dst] = s->kv_owner[it->copy_device][src];
                s->kv_token[dev][dst] = s->kv_token[it->copy_device][src];
                s->kv_ctx[dev][dst] = s->kv_ctx[it->copy_device][src];
            }
        s->copies++;
    }
    uint32_t h = 77u;
    uint64_t ctx = 0; /* what a real model's KV at p depends on: every key up to p */
    for (int32_t p = 0; p < it->pos0; p++) {
        int32_t sl = slot_of(s, it, p);
        ctx = ctx_mix(ctx, key_of(s, r, p));
        bool other = s->kv_owner[dev][sl] != idx + 1;
        if ((other && !r->keys) || s->kv_token[dev][sl] != r->tokens[p] || s->kv_ctx[dev][sl] != ctx)
            s->kv_errors++;
        s->shared_reads += other;
        h = mix(h, s->kv_token[dev][sl]);
    }
    for (int32_t p = it->pos0; p < it->pos0 + it->n_tokens; p++) {
        int32_t tok = r->tokens[p];
        if (tok < 0 && r->image_done_at[-1 - tok] == 0) s->gather_errors++;
        int32_t sl = slot_of(s, it, p);
        ctx = ctx_mix(ctx, key_of(s, r, p));
        s->kv_owner[dev][sl] = idx + 1;
        s->kv_token[dev][sl] = tok;
        s->kv_ctx[dev][sl] = ctx;
        h = mix(h, tok);
    }
    if (!it->samples) return;
    int32_t next = (int32_t)(h % 1000u) + 1;
    MS_CHECK(r->n_tokens < SIM_MAX_TOKENS);
    r->tokens[r->n_tokens++] = next;
    r->out[r->n_out++] = next;
    if (!r->no_stop && next % 97 == 0) res->finish = MS_FINISH_STOP;
}

static void complete(sim *s, ms_stage pool, int32_t w) {
    const ms_core_batch *b = s->out[pool][w];
    ms_core_item_result res[1024];
    MS_CHECK(b->n_items <= 1024);
    if (b->stage == MS_STAGE_PREFILL && b->n_tokens > s->max_prefill_tokens_seen)
        s->max_prefill_tokens_seen = b->n_tokens;
    for (int32_t i = 0; i < b->n_items; i++) {
        const ms_core_item *it = &b->items[i];
        sim_req *r = it->user;
        res[i] = (ms_core_item_result){MS_OK, MS_FINISH_NONE};
        if (b->stage == MS_STAGE_PREPROCESS) {
            if (r->fail_preprocess) res[i].status = MS_ERR_INVALID;
        } else if (b->stage == MS_STAGE_ENCODE) {
            r->encoder_of[it->image] = w;
            r->image_done_at[it->image] = s->now;
            r->images_encoded++;
        } else {
            run_llm_item(s, it, &res[i]);
        }
    }
    s->batches++;
    s->out[pool][w] = NULL;
    ms_core_batch_done(s->core, b, res);
    ms_core_finished f;
    while (ms_core_pop_finished(s->core, &f)) {
        sim_req *r = f.user;
        MS_CHECK(!r->done);
        r->done = true;
        r->fin = f;
    }
}

bool sim_run(sim *s, double max_time) {
    int32_t bs = ms_core_block_size(s->core);
    s->kv_slots = ms_core_kv_blocks(s->core) * bs;
    for (int d = 0; d < 4; d++) {
        s->kv_owner[d] = calloc((size_t)s->kv_slots, sizeof(int32_t));
        s->kv_token[d] = calloc((size_t)s->kv_slots, sizeof(int32_t));
        s->kv_ctx[d] = calloc((size_t)s->kv_slots, sizeof(uint64_t));
    }
    for (;;) {
        submit_due(s);
        /* hand work to every free worker */
        for (int st = 0; st < MS_STAGE_COUNT; st++) {
            int32_t n = ms_core_worker_slots(s->core, (ms_stage)st);
            MS_CHECK(n <= SIM_MAX_WORKERS);
            for (int32_t w = 0; w < n; w++) {
                if (s->out[st][w]) continue;
                const ms_core_batch *b = ms_core_next_batch(s->core, (ms_stage)st, w);
                if (!b) continue;
                s->out[st][w] = b;
                s->until[st][w] = s->now + batch_cost(s, b);
            }
        }
        double next = 1e300;
        for (int32_t i = 0; i < s->n_reqs; i++) {
            if (!s->reqs[i].submitted && s->reqs[i].at < next) next = s->reqs[i].at;
            if (s->reqs[i].cancel_at > 0 && !s->reqs[i].done && s->reqs[i].cancel_at < next)
                next = s->reqs[i].cancel_at;
        }
        for (int32_t i = 0; i < s->n_resizes; i++)
            if (s->resizes[i].at >= 0 && s->resizes[i].at < next) next = s->resizes[i].at;
        for (int st = 0; st < MS_STAGE_COUNT; st++)
            for (int32_t w = 0; w < SIM_MAX_WORKERS; w++)
                if (s->out[st][w] && s->until[st][w] < next) next = s->until[st][w];
        if (next == 1e300) break;
        if (next > max_time) return false;
        if (next > s->now) s->now = next;
        for (int st = 0; st < MS_STAGE_COUNT; st++)
            for (int32_t w = 0; w < SIM_MAX_WORKERS; w++)
                if (s->out[st][w] && s->until[st][w] <= s->now) complete(s, (ms_stage)st, w);
    }
    for (int32_t i = 0; i < s->n_reqs; i++)
        if (!s->reqs[i].done) return false;
    return true;
}

void sim_free(sim *s) {
    for (int d = 0; d < 4; d++) {
        free(s->kv_owner[d]);
        free(s->kv_token[d]);
        free(s->kv_ctx[d]);
    }
    ms_core_destroy(s->core);
    s->core = NULL;
}

int32_t sim_compare_alone(const sim_req *reqs, int32_t n, int32_t image_tokens) {
    int32_t mismatches = 0;
    sim_req *one = calloc(1, sizeof *one);
    for (int32_t i = 0; i < n; i++) {
        if (reqs[i].fin.finish != MS_FINISH_STOP && reqs[i].fin.finish != MS_FINISH_LENGTH) continue;
        memset(one, 0, sizeof *one);
        one->n_text = reqs[i].n_text;
        one->n_images = reqs[i].n_images;
        one->max_tokens = reqs[i].max_tokens;
        one->no_stop = reqs[i].no_stop;
        one->diverge_at = reqs[i].diverge_at; /* alone and without keys: nothing cached */
        one->diverge_seed = reqs[i].diverge_seed;
        sim s;
        ms_core_options o;
        ms_core_options_default(&o);
        o.kv_blocks = 4096;
        sim_init(&s, &o, one, 1);
        s.image_tokens = image_tokens;
        ms_error err;
        MS_CHECK(ms_core_create(&o, &s.core, &err) == MS_OK);
        one->prompt_seed = reqs[i].prompt_seed ? reqs[i].prompt_seed : (uint32_t)i + 1u;
        bool ok = sim_run(&s, 1e9);
        if (!ok || one->n_out != reqs[i].n_out ||
            memcmp(one->out, reqs[i].out, (size_t)one->n_out * sizeof(int32_t)) != 0) {
            fprintf(stderr, "request %d: output differs from running it alone (%d vs %d tokens)\n",
                    i, reqs[i].n_out, one->n_out);
            mismatches++;
        }
        sim_free(&s);
    }
    free(one);
    return mismatches;
}

void sim_make_mixed(sim_req *reqs, int32_t n, uint64_t seed, double rate) {
    uint32_t h = (uint32_t)seed * 2654435761u + 1u;
    double t = 0;
    for (int32_t i = 0; i < n; i++) {
        sim_req *r = &reqs[i];
        memset(r, 0, sizeof *r);
        h = mix(h, i);
        t += (double)(h % 1000u) / 1000.0 * 2.0 / rate;
        r->at = t;
        r->n_text = 4 + (int32_t)((h >> 8) % 60u);
        r->n_images = (h >> 16) % 2u ? (int32_t)((h >> 20) % 4u) + 1 : 0;
        r->max_tokens = 2 + (int32_t)((h >> 24) % 12u);
    }
}
