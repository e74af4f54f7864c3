# Llama decoder, KV cache, prompt expansion, sampler; `modserve run` end to end.
ms_add_test(test_llama SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_llama.c LABELS llm)
ms_add_test(test_run SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_run.c LABELS llm cli)
# test_run runs the real binary.
add_dependencies(test_run modserve)
add_dependencies(test_llama modserve)
