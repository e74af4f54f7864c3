/*
 * `modserve serve`: the OpenAI-style HTTP server (docs/server.md). Starts listening at
 * once (GET /health answers 503 while the model loads), loads the model and its
 * tokenizer, then prints "listening on http://HOST:PORT". SIGTERM/SIGINT: stop
 * accepting, let in-flight requests finish for up to --shutdown-timeout seconds
 * (ms_engine_drain cancels the rest), flush their responses, exit 0.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server/autoscale_ctl.h"
#include "server/commands.h"
#include "server/http_server.h"

typedef struct serve_opts {
    ms_engine_options eng;
    ms_server_config srv;
    const char *chat_template;
    double shutdown_timeout;
    ms_autoscale_ctl_options autoscale;
} serve_opts;

static void serve_usage(FILE *out) {
    fprintf(out,
            "usage: modserve serve --model DIR [--host 127.0.0.1] [--port 8000] [options]\n"
            "\n"
            "OpenAI-style HTTP API: POST /v1/chat/completions, POST /v1/completions, GET /v1/models,\n"
            "GET /health, GET /metrics, POST /admin/workers. Prints 'listening on http://HOST:PORT'\n"
            "once the model is loaded.\n"
            "\n"
            "  --model DIR                 Hugging Face LLaVA folder (required)\n"
            "  --host ADDR                 IPv4 address to bind (default 127.0.0.1)\n"
            "  --port N                    port (default 8000; 0 = a free port, printed)\n"
            "  --served-model-name NAME    model id in the API (default: the --model value)\n"
            "  --chat-template NAME        llava-1.5, llama-2, chatml or qwen2 (default: match\n"
            "                              the folder's tokenizer_config.json chat_template)\n"
            "  --api-key KEY               require 'Authorization: Bearer KEY' (not on /health,\n"
            "                              /metrics)\n"
            "  --allowed-media-path DIR    local image paths are allowed under DIR only\n"
            "  --device D                  cpu, cuda or auto (default auto)\n"
            "  --threads N                 CPU backend threads (default 0 = all cores)\n"
            "  --mode M                    disagg or monolithic (default disagg)\n"
            "  --encode-workers N          encode pool size (default 1)\n"
            "  --prefill-workers N         prefill pool size (default 1)\n"
            "  --decode-workers N          decode pool size (default 1)\n"
            "  --encode-devices LIST       GPU index per encode worker, e.g. 0,1 (cycled;\n"
            "                              default 0); likewise --prefill-devices,\n"
            "                              --decode-devices\n"
            "  --preprocess-threads N      image decode threads (default 2)\n"
            "  --max-num-seqs N            decode running set per worker (default 64)\n"
            "  --max-num-batched-tokens N  prefill token budget per batch (default 2048)\n"
            "  --encode-max-batch-images N images one encode batch holds (default 8)\n"
            "  --max-model-len N           prompt + output tokens (default: the model's)\n"
            "  --kv-blocks N               KV blocks per device (default: from memory)\n"
            "  --gpu-memory-utilization F  share of GPU memory for weights + KV (default 0.9)\n"
            "  --max-queued-requests N     active requests before 503 (default 1024)\n"
            "  --http-threads N            HTTP thread pool size (default 4)\n"
            "  --shutdown-timeout S        seconds in-flight requests get on SIGTERM (default 30)\n"
            "  --allowed-origins LIST      comma-separated browser origins (scheme://host[:port], or *)\n"
            "                              given CORS access; any other Origin is refused with 403,\n"
            "                              and /admin/workers refuses every cross-origin request\n"
            "  --allowed-hosts LIST        comma-separated Host names accepted besides IP literals\n"
            "                              and localhost (DNS-rebinding check; default: checked when\n"
            "                              bound to 127.x, else off unless this is given; * = any)\n"
            "  --admin-max-workers N       most workers /admin/workers gives one pool (default from\n"
            "                              the machine: preprocess 2 x cores, CPU pools 1 x cores,\n"
            "                              GPU pools 8 x devices; at least 4, at most 256; the\n"
            "                              engine's own limit of 1024 slots per pool still applies)\n"
            "  --image-cache-bytes N       resized images kept by their bytes (host; a hit skips\n"
            "                              decode + resize); suffix K, M or G; 0 = off\n"
            "                              (default 512M)\n"
            "  --embedding-cache-bytes N   image embeddings kept by the image's bytes (on the\n"
            "                              encoding device; a hit skips preprocess + encode);\n"
            "                              0 = off (default 2G on CUDA, 256M on the CPU)\n"
            "  --enable-prefix-caching     reuse the KV of cached prompt prefixes (default on);\n"
            "  --no-enable-prefix-caching  turns it off\n"
            "  --autoscale POLICY          resize the encode, prefill and decode pools while serving\n"
            "                              (disagg mode): static (keep the start sizes), modserve or\n"
            "                              trend (the policies of `bench simulate --autoscale`).\n"
            "                              Workflow: `bench profile` on this machine, `bench simulate\n"
            "                              --autoscale` on a trace to choose, then serve with the\n"
            "                              same policy and profile (docs/server.md \"Autoscaling\")\n"
            "  --autoscale-interval S      seconds between decisions (default 10)\n"
            "  --autoscale-min E,P,D       fewest encode,prefill,decode workers (default 1,1,1)\n"
            "  --autoscale-max E,P,D       most (default: the --admin-max-workers cap)\n"
            "  --profile FILE              profile.json of `modserve bench profile` on this machine:\n"
            "                              each worker's capacity (needed by modserve and trend)\n"
            "  --autoscale-ttft S          TTFT bound the capacities keep batches within (half of\n"
            "                              it per encode/prefill batch; default none)\n"
            "  --autoscale-tpot S          time-per-output-token bound for decode steps (default none)\n"
            "%s"
            "\n"
            "Exit status: 0 after a clean shutdown, 1 on a startup error, 2 on a usage error.\n",
            ms_server_limits_help());
}

static bool parse_int(const char *flag, const char *v, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "modserve serve: %s '%s' is not an integer in [%lld, %lld]\n", flag, v, lo, hi);
        return false;
    }
    *out = x;
    return true;
}

static bool parse_num(const char *flag, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x) || x < lo || x > hi) {
        fprintf(stderr, "modserve serve: %s '%s' is not a number in [%g, %g]\n", flag, v, lo, hi);
        return false;
    }
    *out = x;
    return true;
}

/* "N", "NK", "NM", "NG" (binary units) -> bytes; the image cache flags. */
static bool parse_bytes(const char *flag, const char *v, int64_t *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    int shift = 0;
    if (end != v && (*end == 'K' || *end == 'k')) shift = 10, end++;
    else if (end != v && (*end == 'M' || *end == 'm')) shift = 20, end++;
    else if (end != v && (*end == 'G' || *end == 'g')) shift = 30, end++;
    if (errno || end == v || *end || x < 0 || x > ((long long)1 << 50) >> shift) {
        fprintf(stderr, "modserve serve: %s '%s' is not a byte count (an integer >= 0, "
                "optionally with K, M or G)\n", flag, v);
        return false;
    }
    *out = (int64_t)x << shift;
    return true;
}

/* Returns -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, serve_opts *o) {
    memset(o, 0, sizeof *o);
    ms_engine_options_default(&o->eng);
    ms_server_limits_default(&o->srv.limits);
    o->srv.host = "127.0.0.1";
    o->srv.port = 8000;
    o->srv.http_threads = 4;
    o->shutdown_timeout = 30;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            serve_usage(stdout);
            return 0;
        }
        if (strncmp(a, "--", 2)) {
            fprintf(stderr, "modserve serve: unexpected argument '%s' (see --help)\n", a);
            return 2;
        }
        if (!strcmp(a, "--enable-prefix-caching") || !strcmp(a, "--no-enable-prefix-caching")) {
            o->eng.enable_prefix_caching = a[2] == 'e'; /* switches: no value */
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "modserve serve: %s needs a value (see --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        long long x = 0;
        double d = 0;
        bool ok = true, lim_ok = true;
        if (ms_server_limits_flag(&o->srv.limits, a, v, &lim_ok)) {
            if (!lim_ok) {
                fprintf(stderr, "modserve serve: %s '%s' is not a positive integer in range\n", a, v);
                return 2;
            }
            continue;
        }
        if (!strcmp(a, "--model")) o->eng.model_dir = v;
        else if (!strcmp(a, "--host")) o->srv.host = v;
        else if (!strcmp(a, "--port") && (ok = parse_int(a, v, 0, 65535, &x))) o->srv.port = (int)x;
        else if (!strcmp(a, "--served-model-name")) o->srv.model_name = v;
        else if (!strcmp(a, "--chat-template")) o->chat_template = v;
        else if (!strcmp(a, "--api-key")) o->srv.api_key = v;
        else if (!strcmp(a, "--allowed-media-path")) o->srv.allowed_media_path = v;
        else if (!strcmp(a, "--device")) o->eng.device = v;
        else if (!strcmp(a, "--threads") && (ok = parse_int(a, v, 0, 4096, &x))) o->eng.cpu_threads = (int)x;
        else if (!strcmp(a, "--mode")) {
            if (!(ok = ms_engine_mode_parse(v, &o->eng.mode)))
                fprintf(stderr, "modserve serve: --mode '%s' is not disagg or monolithic\n", v);
        } else if (!strcmp(a, "--encode-workers") && (ok = parse_int(a, v, 1, 256, &x))) o->eng.encode_workers = (int32_t)x;
        else if (!strcmp(a, "--prefill-workers") && (ok = parse_int(a, v, 1, 256, &x))) o->eng.prefill_workers = (int32_t)x;
        else if (!strcmp(a, "--decode-workers") && (ok = parse_int(a, v, 1, 256, &x))) o->eng.decode_workers = (int32_t)x;
        else if (!strcmp(a, "--encode-devices")) o->eng.encode_devices = v;
        else if (!strcmp(a, "--prefill-devices")) o->eng.prefill_devices = v;
        else if (!strcmp(a, "--decode-devices")) o->eng.decode_devices = v;
        else if (!strcmp(a, "--preprocess-threads") && (ok = parse_int(a, v, 1, 256, &x)))
            o->eng.preprocess_threads = (int32_t)x;
        else if (!strcmp(a, "--max-num-seqs") && (ok = parse_int(a, v, 1, 1 << 16, &x))) o->eng.max_num_seqs = (int32_t)x;
        else if (!strcmp(a, "--max-num-batched-tokens") && (ok = parse_int(a, v, 1, 1 << 24, &x)))
            o->eng.max_num_batched_tokens = (int32_t)x;
        else if (!strcmp(a, "--encode-max-batch-images") && (ok = parse_int(a, v, 1, 4096, &x)))
            o->eng.encode_max_batch_images = (int32_t)x;
        else if (!strcmp(a, "--max-model-len") && (ok = parse_int(a, v, 1, 1 << 24, &x))) o->eng.max_model_len = (int32_t)x;
        else if (!strcmp(a, "--kv-blocks") && (ok = parse_int(a, v, 1, 1 << 24, &x))) o->eng.kv_blocks = (int32_t)x;
        else if (!strcmp(a, "--gpu-memory-utilization") && (ok = parse_num(a, v, 0.01, 1.0, &d)))
            o->eng.gpu_memory_utilization = (float)d;
        else if (!strcmp(a, "--max-queued-requests") && (ok = parse_int(a, v, 1, 1 << 24, &x)))
            o->eng.max_queued_requests = (int32_t)x;
        else if (!strcmp(a, "--http-threads") && (ok = parse_int(a, v, 1, 256, &x))) o->srv.http_threads = (int)x;
        else if (!strcmp(a, "--shutdown-timeout") && (ok = parse_num(a, v, 0, 86400, &d))) o->shutdown_timeout = d;
        /* Browser and admin hardening (docs/server.md). */
        else if (!strcmp(a, "--allowed-origins")) {
            char bad[128];
            if (!(ok = ms_http_origin_list_ok(v, bad, sizeof bad)))
                fprintf(stderr, "modserve serve: --allowed-origins entry '%s' is not an origin like "
                                "http://localhost:3000 (scheme://host[:port], no path) or *\n", bad);
            o->srv.allowed_origins = v;
        } else if (!strcmp(a, "--allowed-hosts")) o->srv.allowed_hosts = v;
        else if (!strcmp(a, "--admin-max-workers") && (ok = parse_int(a, v, 1, 1 << 16, &x)))
            o->srv.admin_max_workers = (int32_t)x;
        /* image caches (docs/server.md) */
        else if (!strcmp(a, "--image-cache-bytes")) ok = parse_bytes(a, v, &o->eng.image_cache_bytes);
        else if (!strcmp(a, "--embedding-cache-bytes")) ok = parse_bytes(a, v, &o->eng.embedding_cache_bytes);
        /* autoscaling (server/autoscale_ctl.h) */
        else if (!strcmp(a, "--autoscale")) {
            ms_error e;
            if (!(ok = ms_autoscale_policy_parse(v, &o->autoscale.policy, &e) == MS_OK))
                fprintf(stderr, "modserve serve: %s\n", e.msg);
            o->autoscale.on = true;
        } else if (!strcmp(a, "--autoscale-interval") && (ok = parse_num(a, v, 0.05, 86400, &d)))
            o->autoscale.interval_s = d;
        else if (!strcmp(a, "--autoscale-min") || !strcmp(a, "--autoscale-max")) {
            if (!(ok = ms_autoscale_parse_counts(v, 1, a[13] == 'i' ? o->autoscale.min : o->autoscale.max)))
                fprintf(stderr, "modserve serve: %s '%s' is not three worker counts E,P,D (integers >= 1)\n", a, v);
        } else if (!strcmp(a, "--profile")) o->autoscale.profile = v;
        else if (!strcmp(a, "--autoscale-ttft") && (ok = parse_num(a, v, 0, 86400, &d))) o->autoscale.ttft_slo_s = d;
        else if (!strcmp(a, "--autoscale-tpot") && (ok = parse_num(a, v, 0, 86400, &d))) o->autoscale.tpot_slo_s = d;
        else if (ok) {
            fprintf(stderr, "modserve serve: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (!ok) return 2;
    }
    if (!o->eng.model_dir) {
        fprintf(stderr, "modserve serve: --model DIR is required (see --help)\n");
        return 2;
    }
    if (o->autoscale.on && o->autoscale.policy != MS_AUTOSCALE_STATIC && !o->autoscale.profile) {
        fprintf(stderr, "modserve serve: --autoscale %s needs --profile profile.json (from `modserve bench "
                        "profile` on this machine) for the workers' capacities\n",
                ms_autoscale_policy_name(o->autoscale.policy));
        return 2;
    }
    if (!o->srv.model_name) o->srv.model_name = o->eng.model_dir;
    o->srv.pool_devices[MS_STAGE_ENCODE] = o->eng.encode_devices;
    o->srv.pool_devices[MS_STAGE_PREFILL] = o->eng.prefill_devices;
    o->srv.pool_devices[MS_STAGE_DECODE] = o->eng.decode_devices;
    o->eng.max_images_per_request = o->srv.limits.max_images;
    o->eng.image_limits = (ms_image_limits){.max_width = o->srv.limits.max_image_width,
                                            .max_height = o->srv.limits.max_image_height,
                                            .max_pixels = o->srv.limits.max_image_pixels,
                                            .max_bytes = o->srv.limits.max_image_bytes};
    return -1;
}

/* Tokenizer and chat format; the engine loads the weights. */
static ms_status load_text_side(ms_http_server *s, const serve_opts *o, ms_error *err) {
    ms_status st = ms_tokenizer_load(o->eng.model_dir, &s->tok, err);
    if (st != MS_OK) return st;
    if (o->chat_template) {
        st = ms_chat_format_by_name(o->chat_template, &s->chat_format, err);
        if (st != MS_OK) return st;
        s->has_chat_format = true;
    } else {
        ms_error e2;
        s->has_chat_format = ms_chat_format_match(ms_tokenizer_chat_template(s->tok), &s->chat_format, &e2) == MS_OK;
        if (!s->has_chat_format)
            ms_log(MS_LOG_WARN, "server", "no known chat template (%s); /v1/chat/completions is off", e2.msg);
    }
    return MS_OK;
}

static void shutdown_server(ms_http_server *s, double timeout, ms_autoscale_ctl *autoscale) {
    ms_autoscale_ctl_stop(autoscale); /* no resize while draining */
    atomic_store(&s->draining, true);
    ms_http_server_quiesce(s);
    ms_log(MS_LOG_INFO, "server", "draining (up to %g s)", timeout);
    if (s->engine) ms_engine_drain(s->engine, timeout);
    /* Every request is done now; give their connections a moment to send the rest. */
    const double until = ms_time_now() + 5.0;
    while (atomic_load(&s->open_requests) > 0 && ms_time_now() < until) usleep(10000);
    ms_http_server_stop(s);
    if (s->engine) ms_engine_destroy(s->engine);
    if (s->tok) ms_tokenizer_free(s->tok);
}

int ms_cmd_serve(int argc, char **argv) {
    serve_opts o;
    const int rc = parse_args(argc, argv, &o);
    if (rc >= 0) return rc;
    char media[PATH_MAX];
    if (o.srv.allowed_media_path) {
        if (!realpath(o.srv.allowed_media_path, media)) {
            fprintf(stderr, "modserve serve: --allowed-media-path '%s': %s\n", o.srv.allowed_media_path,
                    strerror(errno));
            return 1;
        }
        o.srv.allowed_media_path = media;
    }
    /* Every thread started from here on inherits the mask: the signals are only
     * taken by sigwait below. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    ms_http_server *s = ms_xcalloc(1, sizeof *s);
    s->cfg = o.srv;
    ms_server_metrics_init(&s->metrics);
    ms_error err = {0};
    int code = 0;
    if (ms_http_server_start(s, &err) != MS_OK) {
        fprintf(stderr, "modserve serve: %s\n", err.msg);
        code = 1;
        goto out;
    }
    ms_log(MS_LOG_INFO, "server", "loading %s (port %u answers 503 until ready)", o.eng.model_dir, s->port);
    if (load_text_side(s, &o, &err) != MS_OK || ms_engine_create(&o.eng, &s->engine, &err) != MS_OK) {
        fprintf(stderr, "modserve serve: %s\n", err.msg);
        code = 1;
        shutdown_server(s, 0, NULL);
        goto out;
    }
    s->mcfg = ms_engine_model_config(s->engine);
    s->max_model_len = o.eng.max_model_len ? o.eng.max_model_len : s->mcfg->text.max_position_embeddings;
    ms_autoscale_ctl *autoscale = NULL;
    if (o.autoscale.on && ms_autoscale_ctl_start(s, &o.autoscale, &o.eng, &autoscale, &err) != MS_OK) {
        fprintf(stderr, "modserve serve: %s\n", err.msg);
        code = 1;
        shutdown_server(s, 0, NULL);
        goto out;
    }
    atomic_store(&s->ready, true);
    printf("listening on http://%s:%u\n", s->cfg.host, s->port);
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    ms_log(MS_LOG_INFO, "server", "signal %d: shutting down", sig);
    shutdown_server(s, o.shutdown_timeout, autoscale);
    ms_log(MS_LOG_INFO, "server", "stopped");
out:
    ms_server_metrics_destroy(&s->metrics);
    free(s);
    return code;
}
