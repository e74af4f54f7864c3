# Model files: safetensors, config.json, random-weight model init (docs/model-files.md).
ms_add_test(test_safetensors SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_safetensors.c LABELS model_files)
ms_add_test(test_config SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_config.c LABELS model_files)
ms_add_test(test_model_init SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_model_init.c LABELS model_files)
# test_model_init runs the real binary.
add_dependencies(test_model_init modserve)
