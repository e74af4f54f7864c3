/*
 * Image input: decode (PNG through stb_image, JPEG through libjpeg-turbo, both from
 * memory, dimensions checked before any pixel is decoded) to RGB as PIL's
 * convert("RGB") gives it, and CLIPImageProcessor's geometry as transformers does it
 * with PIL: resize the shortest edge (PIL's filter), center crop. Rescale + normalise
 * run on the device (ms_op_image_normalize). tests/ref/test_image_pixels.py checks the
 * whole chain against Pillow and CLIPImageProcessor.
 */
#ifndef MS_ENCODER_IMAGE_H
#define MS_ENCODER_IMAGE_H

#include "kernels/backend.h"
#include "llm/config.h"

typedef struct ms_image_limits {
    int32_t max_width;         /* default 8192 */
    int32_t max_height;        /* default 8192 */
    int64_t max_pixels;        /* default 33,554,432 (32 MP) */
    size_t max_bytes;          /* encoded size, default 20 MiB */
} ms_image_limits;

typedef struct ms_image_u8 {
    int32_t width, height;
    uint8_t *rgb;              /* (height, width, 3) */
} ms_image_u8;

void ms_image_limits_default(ms_image_limits *lim);
/* PNG or JPEG (gray, RGB, CMYK, YCCK) bytes to RGB; anything else, a corrupt file or one over a limit is an
 * error that says which. */
ms_status ms_image_decode(const uint8_t *bytes, size_t n, const ms_image_limits *lim,
                          ms_image_u8 *out, ms_error *err);
void ms_image_free(ms_image_u8 *img);
/* The name of a format ms_image_decode refuses ("GIF", "BMP", "WebP", "TIFF", ...) read
 * from its magic bytes, or NULL for PNG, JPEG and bytes of no known format. For error
 * messages that tell the user what they sent. */
const char *ms_image_format_name(const uint8_t *bytes, size_t n);
/* Every check ms_image_decode makes before decoding a pixel, alone: encoded size,
 * format (PNG/JPEG by magic bytes), width/height/pixels against the limits, and the
 * structural guards stb_image needs (JPEG Huffman tables, PNG chunk lengths and
 * inflated size). For front ends that refuse bad images early. w/h may be NULL. */
ms_status ms_image_probe(const uint8_t *bytes, size_t n, const ms_image_limits *lim,
                         int32_t *w, int32_t *h, ms_error *err);
/* Resize (shortest edge) + center crop per cfg: out is crop_height x crop_width. */
ms_status ms_image_resize_crop(const ms_image_u8 *in, const ms_image_proc_config *cfg,
                               ms_image_u8 *out, ms_error *err);
/* Host reference of the whole preprocessing: out f32 [3, crop_h, crop_w]. */
ms_status ms_image_preprocess_f32(const ms_image_u8 *in, const ms_image_proc_config *cfg,
                                  float *out, ms_error *err);

/* The pixel tensor the vision tower takes, from n crops of cfg's crop size: act[N, 3, H, W]
 * (scratch on ctx), rescaled and normalised per cfg by ms_op_image_normalize with the
 * arguments ms_vision_pixels gives it. `modserve image preprocess` writes it out. */
ms_tensor ms_image_pixels(ms_ctx *ctx, const ms_image_proc_config *cfg, const ms_image_u8 *crops, int32_t n);

/* (encoder additions) Size after transformers' shortest-edge resize
 * (get_resize_output_image_size, default_to_square=False): the short side becomes
 * shortest_edge, the long side int(shortest_edge * long / short) (truncated). */
void ms_image_resize_size(int32_t w, int32_t h, int32_t shortest_edge, int64_t *out_w,
                          int64_t *out_h);
/* PIL's Image.resize((out_w, out_h), resample) of an RGB image, with Pillow's Resample.c
 * arithmetic (8-bit path): the same bytes wherever tests/ref/test_image_pixels.py looks. resample is PIL's code: 1 lanczos, 2 bilinear, 3 bicubic,
 * 4 box, 5 hamming; 0 (nearest) is refused as unsupported. */
ms_status ms_image_resize_pil(const ms_image_u8 *in, int32_t out_w, int32_t out_h,
                              int32_t resample, ms_image_u8 *out, ms_error *err);

#endif
