/*
 * stb_image's implementation compiled from Debian's installed header (libstb-dev), for
 * the fuzz build only: instrumented for ASan and coverage, unlike libstb.so. The options
 * match Debian's build of libstb: PNG and JPEG are what ms_image_decode passes on, but
 * the decoder keeps every format, as the shared library does.
 */
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
