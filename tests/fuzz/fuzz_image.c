/*
 * Fuzz target: the image path of a request, bytes to model input geometry.
 * ms_image_decode under small limits (1024 x 1024, 1 MP, 1 MiB encoded), then
 * ms_image_resize_crop with one of a few processor configs.
 *
 * Allocation bound (why -malloc_limit_mb=64 in CMakeLists.txt): a 1 MP image decodes
 * into at most 8 bytes a pixel inside stb_image (16-bit RGBA PNG, 8 MiB), progressive
 * JPEG keeps 2-byte coefficients per component (3 components: 6 MiB), our copy is 3 MiB,
 * and the compressed stream is at most the 1 MiB input. Anything asking for 64 MiB got
 * past the limits: a finding.
 */
#include <stdint.h>
#include <string.h>

#include "encoder/image.h"

/* Processor configs picked by input length, so no input byte is spent on them: CLIP's
 * own (336, bicubic, crop), tiny ones with other filters, and one without crop (the
 * resized image itself is the output). */
static void pick_config(size_t n, ms_image_proc_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->do_resize = true;
    cfg->do_center_crop = true;
    cfg->do_convert_rgb = true;
    switch (n % 4) {
    case 0: cfg->shortest_edge = 336; cfg->resample = 3; cfg->crop_width = cfg->crop_height = 336; break;
    case 1: cfg->shortest_edge = 24; cfg->resample = 1; cfg->crop_width = 20; cfg->crop_height = 28; break;
    case 2: cfg->shortest_edge = 7; cfg->resample = (int32_t)(2 + n / 4 % 4); cfg->crop_width = cfg->crop_height = 32; break;
    default: cfg->shortest_edge = 16; cfg->resample = 3; cfg->do_center_crop = false; break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ms_image_limits lim = {.max_width = 1024, .max_height = 1024, .max_pixels = 1 << 20,
                           .max_bytes = 1u << 20};
    ms_image_u8 img;
    ms_error err = {0};
    if (ms_image_decode(data, size, &lim, &img, &err) != MS_OK) {
        if (img.rgb != NULL || err.msg[0] == 0) __builtin_trap(); /* failure must be clean and say why */
        return 0;
    }
    /* The limits held. */
    if (img.width <= 0 || img.height <= 0 || img.width > lim.max_width ||
        img.height > lim.max_height || (int64_t)img.width * img.height > lim.max_pixels)
        __builtin_trap();
    /* Touch every byte so ASan checks the buffer really is w * h * 3. */
    volatile uint8_t sink = img.rgb[(size_t)img.width * img.height * 3 - 1];
    (void)sink;

    ms_image_proc_config cfg;
    pick_config(size, &cfg);
    ms_image_u8 out;
    if (ms_image_resize_crop(&img, &cfg, &out, &err) == MS_OK) {
        if (cfg.do_center_crop && (out.width != cfg.crop_width || out.height != cfg.crop_height))
            __builtin_trap();
        sink = out.rgb[(size_t)out.width * out.height * 3 - 1];
        ms_image_free(&out);
    }
    ms_image_free(&img);
    return 0;
}
