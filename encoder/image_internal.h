/* Private to encoder/image*.c: pieces of decoding and resizing shared between files. */
#ifndef MS_ENCODER_IMAGE_INTERNAL_H
#define MS_ENCODER_IMAGE_INTERNAL_H

#include "encoder/image.h"

/* Refuses a PNG whose compressed pixel stream inflates to more than twice what its
 * header (w x h, checked against the limits already) can need: stb_image would grow its
 * buffer for such a stream up to 4 GiB. Corrupt streams pass here; stb reports them. */
ms_status ms_image_png_guard(const uint8_t *bytes, size_t n, int32_t w, int32_t h, ms_error *err);

/* Refuses a JPEG with a Huffman table of more than 256 codes (stb_image does not check
 * and overflows its tables). Not-JPEG input passes. */
ms_status ms_image_jpeg_guard(const uint8_t *bytes, size_t n, ms_error *err);

#endif
