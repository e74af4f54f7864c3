/* GET /v1/models and GET /metrics. */
#include <string.h>
#include <time.h>

#include "server/http_server.h"

enum MHD_Result ms_api_models(ms_conn *c) {
    ms_http_server *s = c->srv;
    ms_sbuf b = {0};
    ms_sbuf_adds(&b, "{\"object\":\"list\",\"data\":[{\"id\":");
    ms_sbuf_add_json_str(&b, s->cfg.model_name, strlen(s->cfg.model_name));
    ms_sbuf_addf(&b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"modserve\",\"max_model_len\":%d",
                 (long long)time(NULL), s->max_model_len);
    /* Extension: what a client needs to size prompts with images (the replayer reads it). */
    ms_sbuf_addf(&b, ",\"modserve\":{\"image_seq_length\":%d,\"max_model_len\":%d,\"image_size\":%d,"
                     "\"vocab_size\":%d,\"image_token_id\":%d,\"mode\":\"%s\",\"chat_template\":",
                 s->mcfg->image_seq_length, s->max_model_len, s->mcfg->vision.image_size, s->mcfg->text.vocab_size,
                 s->mcfg->image_token_index, ms_engine_mode_name(ms_engine_mode_of(s->engine)));
    if (s->has_chat_format) ms_sbuf_addf(&b, "\"%s\"", ms_chat_format_name(s->chat_format));
    else ms_sbuf_adds(&b, "null");
    ms_sbuf_adds(&b, "}}]}");
    return ms_http_reply(c, 200, "application/json", b.p);
}

enum MHD_Result ms_api_metrics(ms_conn *c) {
    ms_http_server *s = c->srv;
    ms_engine_stats st;
    const bool ready = atomic_load(&s->ready);
    ms_engine_cache_stats caches;
    if (ready) ms_engine_stats_get(s->engine, &st);
    if (ready) ms_engine_cache_stats_get(s->engine, &caches);
    char *text = ms_metrics_render(&s->metrics, ready ? &st : NULL, ready ? &caches : NULL, ready);
    return ms_http_reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", text);
}
