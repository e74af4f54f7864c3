# Tokenizer unit checks (the tiny tokenizer, errors, chat formats). The comparison with
# Hugging Face's library is a reference test: tests/ref_tokenizer.cmake.
ms_add_test(test_tokenizer SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenizer.c LABELS tokenizer)
# Streaming decode over byte-fallback id sequences: exact, flowing, bounded work.
ms_add_test(test_tokenizer_stream SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenizer_stream.c LABELS tokenizer)
# The same end to end: `modserve serve` on a random tiny model streams greedy
# completions in many SSE events that join to the non-streamed text.
ms_add_test(test_server_stream SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_server_stream.c
            ${CMAKE_CURRENT_SOURCE_DIR}/test_server_util.c LABELS "tokenizer;server")
target_link_libraries(test_server_stream PRIVATE PkgConfig::CURL)
add_dependencies(test_server_stream modserve)
