/*
 * `modserve image preprocess`: image files to the pixel tensor the vision tower takes,
 * through the serving path's steps (ms_image_decode with the default limits,
 * ms_image_resize_crop, ms_image_pixels on a backend), written as raw float32. It
 * exists so tests (tests/ref/test_image_pixels.py) and people can compare modserve's
 * preprocessing with CLIPImageProcessor's output, and see why an image is refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoder/image.h"
#include "kernels/backend.h"
#include "llm/config.h"
#include "server/commands.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: modserve image preprocess (--model DIR | --config FILE) --out FILE\n"
            "                                 [--device cpu|cuda|auto | --host-reference] IMAGE...\n"
            "\n"
            "Decodes each IMAGE (PNG or JPEG, the server's default limits), resizes and\n"
            "center-crops it and rescales + normalises it as the model's\n"
            "preprocessor_config.json says (CLIPImageProcessor), on the chosen backend,\n"
            "with the steps the server uses to prepare images for the vision tower.\n"
            "Writes the pixels as raw little-endian float32 [N, 3, H, W] (N images in the\n"
            "order given, H x W the crop size; converted to float32 where the backend\n"
            "computes in bf16) and prints one line per image. A refused image is an error\n"
            "naming why.\n"
            "  --model DIR    model folder: its config.json and preprocessor_config.json\n"
            "  --config FILE  a preprocessor_config.json alone (instead of --model)\n"
            "  --out FILE     where the float32 pixels go\n"
            "  --device NAME  cpu (default), cuda or auto\n"
            "  --host-reference  rescale + normalise with the host reference\n"
            "                 (ms_image_preprocess_f32) instead of the backend's kernel\n"
            "  -h, --help     this text\n");
}

typedef struct image_opts {
    const char *model, *config, *out, *device;
    const char **images;
    int n_images;
    bool host_reference;
} image_opts;

static int parse(int argc, char **argv, image_opts *o) {
    o->device = "cpu";
    o->images = calloc((size_t)argc, sizeof *o->images);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        const char **dst = !strcmp(a, "--model")    ? &o->model
                           : !strcmp(a, "--config") ? &o->config
                           : !strcmp(a, "--out")    ? &o->out
                           : !strcmp(a, "--device") ? &o->device
                                                    : NULL;
        if (!strcmp(a, "--host-reference")) {
            o->host_reference = true;
            continue;
        }
        if (dst) {
            if (i + 1 >= argc) {
                fprintf(stderr, "modserve image preprocess: %s needs a value\n", a);
                return 2;
            }
            *dst = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "modserve image preprocess: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else {
            o->images[o->n_images++] = a;
        }
    }
    if (!o->model == !o->config || !o->out || o->n_images == 0) {
        fprintf(stderr, "modserve image preprocess: needs --model DIR or --config FILE, --out FILE and an IMAGE\n");
        usage(stderr);
        return 2;
    }
    return -1; /* go on */
}

/* The file's bytes, at most max + 1 of them (enough for the decoder to say "over the
 * limit" without reading a huge file whole). */
static ms_status read_file(const char *path, size_t max, uint8_t **out, size_t *n, ms_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return ms_errorf(err, MS_ERR_IO, "%s: cannot open", path);
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = ms_xmalloc(cap);
    size_t got;
    while (len <= max && (got = fread(buf + len, 1, (cap - len < max + 1 - len ? cap - len : max + 1 - len), f)) > 0) {
        len += got;
        if (len == cap) buf = ms_xrealloc(buf, cap *= 2);
    }
    const bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return ms_errorf(err, MS_ERR_IO, "%s: read error", path);
    }
    *out = buf;
    *n = len;
    return MS_OK;
}

static ms_status load_config(const image_opts *o, ms_image_proc_config *p, ms_error *err) {
    if (o->model) {
        ms_llava_config cfg;
        ms_status s = ms_llava_config_load(o->model, &cfg, err);
        if (s == MS_OK) *p = cfg.image;
        return s;
    }
    uint8_t *text;
    size_t n;
    ms_status s = read_file(o->config, 16u << 20, &text, &n, err);
    if (s != MS_OK) return s;
    if (n > 16u << 20) {
        free(text);
        return ms_errorf(err, MS_ERR_LIMIT, "%s: larger than 16 MiB", o->config);
    }
    s = ms_image_proc_config_parse((const char *)text, n, p, err);
    free(text);
    return s == MS_OK ? MS_OK : ms_error_wrap(err, "%s", o->config);
}

/* Decodes and crops every image; crops[n_images] are filled (caller frees); with
 * --host-reference the decoded images are kept there instead. */
static ms_status prepare_crops(const image_opts *o, const ms_image_proc_config *p, ms_image_u8 *crops,
                               ms_error *err) {
    ms_image_limits lim;
    ms_image_limits_default(&lim);
    for (int i = 0; i < o->n_images; i++) {
        uint8_t *bytes;
        size_t n;
        ms_status s = read_file(o->images[i], lim.max_bytes, &bytes, &n, err);
        if (s != MS_OK) return s;
        ms_image_u8 img = {0};
        s = ms_image_decode(bytes, n, &lim, &img, err);
        free(bytes);
        if (s == MS_OK) s = ms_image_resize_crop(&img, p, &crops[i], err);
        if (s == MS_OK && (crops[i].width != p->crop_width || crops[i].height != p->crop_height))
            s = ms_errorf(err, MS_ERR_UNSUPPORTED, "preprocessing gives %dx%d, the tower takes %dx%d (do_center_crop)",
                          crops[i].width, crops[i].height, p->crop_width, p->crop_height);
        if (s == MS_OK)
            printf("%s: %dx%d -> 3x%dx%d\n", o->images[i], img.width, img.height, crops[i].height, crops[i].width);
        if (s == MS_OK && o->host_reference) {
            ms_image_free(&crops[i]);
            crops[i] = img; /* ms_image_preprocess_f32 resizes and crops itself */
        } else {
            ms_image_free(&img);
        }
        if (s != MS_OK) return ms_error_wrap(err, "%s", o->images[i]);
    }
    return MS_OK;
}

static ms_status write_floats(const char *path, const float *x, size_t count, ms_error *err) {
    FILE *f = fopen(path, "wb");
    if (!f) return ms_errorf(err, MS_ERR_IO, "%s: cannot create", path);
    /* raw little-endian float32: every platform we build for is little-endian */
    const bool ok = fwrite(x, sizeof *x, count, f) == count;
    if (fclose(f) != 0 || !ok) return ms_errorf(err, MS_ERR_IO, "%s: write error", path);
    return MS_OK;
}

/* --host-reference: the uncropped images through ms_image_preprocess_f32. */
static ms_status write_host_reference(const image_opts *o, const ms_image_proc_config *p, const ms_image_u8 *images,
                                      ms_error *err) {
    const size_t plane = 3 * (size_t)p->crop_height * (size_t)p->crop_width;
    float *host = ms_xmalloc(plane * (size_t)o->n_images * sizeof *host);
    ms_status s = MS_OK;
    for (int i = 0; i < o->n_images && s == MS_OK; i++)
        s = ms_image_preprocess_f32(&images[i], p, host + plane * (size_t)i, err);
    if (s == MS_OK) s = write_floats(o->out, host, plane * (size_t)o->n_images, err);
    free(host);
    return s;
}

static ms_status write_pixels(const image_opts *o, const ms_image_proc_config *p, const ms_image_u8 *crops,
                              ms_error *err) {
    ms_backend *be = ms_backend_create(o->device, 0, 1, err);
    if (!be) return err->status ? err->status : MS_ERR_UNSUPPORTED;
    ms_ctx *ctx = ms_ctx_create(be);
    ms_tensor px = ms_image_pixels(ctx, p, crops, o->n_images); /* act[N, 3, H, W] */
    const int64_t shape[4] = {o->n_images, 3, p->crop_height, p->crop_width};
    const size_t count = (size_t)o->n_images * 3 * (size_t)p->crop_height * (size_t)p->crop_width;
    ms_tensor f32 = px;
    if (px.dtype != MS_DTYPE_F32) {
        f32 = ms_ctx_tensor(ctx, MS_DTYPE_F32, 4, shape);
        ms_op_convert(ctx, &f32, &px);
    }
    float *host = ms_xmalloc(count * sizeof *host);
    ms_op_download(ctx, host, &f32);
    ms_ctx_sync(ctx);
    ms_ctx_destroy(ctx);
    ms_backend_destroy(be);
    ms_status s = write_floats(o->out, host, count, err);
    free(host);
    return s;
}

static int cmd_preprocess(int argc, char **argv) {
    image_opts o = {0};
    int rc = parse(argc, argv, &o);
    if (rc >= 0) {
        free(o.images);
        return rc;
    }
    ms_error err = {0};
    ms_image_proc_config p;
    ms_image_u8 *crops = calloc((size_t)o.n_images, sizeof *crops);
    ms_status s = load_config(&o, &p, &err);
    if (s == MS_OK && !p.do_center_crop)
        s = ms_errorf(&err, MS_ERR_UNSUPPORTED, "the preprocessor config must center-crop (do_center_crop)");
    if (s == MS_OK) s = prepare_crops(&o, &p, crops, &err);
    if (s == MS_OK && o.host_reference) s = write_host_reference(&o, &p, crops, &err);
    else if (s == MS_OK) s = write_pixels(&o, &p, crops, &err);
    for (int i = 0; i < o.n_images; i++) ms_image_free(&crops[i]);
    free(crops);
    free(o.images);
    if (s != MS_OK) {
        fprintf(stderr, "modserve image preprocess: %s\n", err.msg);
        return 1;
    }
    return 0;
}

int ms_cmd_image(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "preprocess")) return cmd_preprocess(argc - 1, argv + 1);
    fprintf(stderr, "modserve image: unknown subcommand '%s' (preprocess)\n", argv[1]);
    return 2;
}
