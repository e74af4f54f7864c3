/*
 * The pixel tensor of CLIPImageProcessor (rescale, normalise, channels first) from
 * resized and cropped images, computed by the backend's ms_op_image_normalize exactly
 * as the serving path's ms_vision_pixels calls it (same mean, std and rescale
 * arguments), so what `modserve image preprocess` writes out is what the tower takes.
 */
#include <stdlib.h>
#include <string.h>

#include "encoder/image.h"

ms_tensor ms_image_pixels(ms_ctx *ctx, const ms_image_proc_config *cfg, const ms_image_u8 *crops, int32_t n) {
    MS_CHECK(ctx && cfg && crops && n > 0);
    const int64_t H = crops[0].height, W = crops[0].width, plane = H * W;
    int32_t *host = ms_xmalloc((size_t)(n * plane * 3) * sizeof *host); /* [N, H, W, 3] */
    for (int32_t i = 0; i < n; i++) {
        MS_CHECKF(crops[i].width == W && crops[i].height == H, "crop %d is %dx%d, crop 0 is %lldx%lld", i,
                  crops[i].width, crops[i].height, (long long)W, (long long)H);
        for (int64_t j = 0; j < plane * 3; j++) host[i * plane * 3 + j] = crops[i].rgb[j];
    }
    const int64_t rgb_shape[4] = {n, H, W, 3}, px_shape[4] = {n, 3, H, W};
    ms_tensor rgb = ms_ctx_upload_i32(ctx, host, 4, rgb_shape);
    free(host);
    ms_tensor px = ms_ctx_tensor(ctx, ctx->backend->act_dtype, 4, px_shape);
    float mean[3] = {0, 0, 0}, stdv[3] = {1, 1, 1};
    if (cfg->do_normalize) {
        memcpy(mean, cfg->image_mean, sizeof mean);
        memcpy(stdv, cfg->image_std, sizeof stdv);
    }
    const float rescale = cfg->do_rescale ? cfg->rescale_factor : 1.0f;
    ms_op_image_normalize(ctx, &px, &rgb, mean, stdv, rescale);
    return px;
}
