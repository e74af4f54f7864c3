# encoder: image decode + preprocessing, CLIP vision tower + projector.
ms_add_test(test_image SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_image.c LABELS encoder)
target_link_libraries(test_image PRIVATE ZLIB::ZLIB)
# CMYK/YCCK JPEG, 16-bit gray PNG, refused formats named (decoder and request parser)
ms_add_test(test_image_formats SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_image_formats.c LABELS encoder)
target_link_libraries(test_image_formats PRIVATE ZLIB::ZLIB PkgConfig::JPEG)
ms_add_test(test_vision SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_vision.c LABELS encoder)
# test_vision writes the tiny model with ./modserve
add_dependencies(test_vision modserve)
# image caches: the LRU by bytes, and the engine's outputs with the caches on and off
ms_add_test(test_image_cache SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_image_cache.c LABELS encoder)
set_tests_properties(test_image_cache PROPERTIES ENVIRONMENT "OPENBLAS_NUM_THREADS=1")
add_dependencies(test_image_cache modserve)
