/* Private to encoder/image*.c: pieces of decoding and resizing shared between files. */
#ifndef MS_ENCODER_IMAGE_INTERNAL_H
#define MS_ENCODER_IMAGE_INTERNAL_H

#include "encoder/image.h"

/* Refuses a PNG whose compressed pixel stream inflates to more than twice what its
 * header (w x h, checked against the limits already) can need: stb_image would grow its
 * buffer for such a stream up to 4 GiB. Corrupt streams pass here; stb reports them. */
ms_status ms_image_png_guard(const uint8_t *bytes, size_t n, int32_t w, int32_t h, ms_error *err);

/* A copy of the PNG without its zero-length IDAT chunks (stb_image does undefined pointer
 * arithmetic on an empty first one), or NULL when it has none; free() the copy. */
uint8_t *ms_image_png_drop_empty_idat(const uint8_t *bytes, size_t n, size_t *out_n);

/* JPEG through libjpeg-turbo (image_jpeg.c): header size only; and the whole decode to
 * RGB with the limits applied before any pixel. */
ms_status ms_image_jpeg_info(const uint8_t *bytes, size_t n, int32_t *w, int32_t *h, ms_error *err);
ms_status ms_image_jpeg_decode(const uint8_t *bytes, size_t n, const ms_image_limits *lim, ms_image_u8 *out,
                               ms_error *err);

#endif
