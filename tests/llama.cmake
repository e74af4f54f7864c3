# Llama decoder, KV cache, prompt expansion, sampler; `modserve run` end to end.
ms_add_test(test_llama SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_llama.c LABELS llm)
ms_add_test(test_run SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_run.c LABELS llm cli)
# End-of-sequence ids (config lists, generation_config.json, tokenizer, ChatML) stop.
ms_add_test(test_eos SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_eos.c LABELS llm scheduler)
# test_run and test_eos run the real binary.
add_dependencies(test_run modserve)
add_dependencies(test_eos modserve)
add_dependencies(test_llama modserve)
