# Tokenizer: unit checks, and the comparison with Hugging Face tokenizers (node + npm;
# skipped when they or the npm registry are unavailable).
ms_add_test(test_tokenizer SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenizer.c LABELS tokenizer)
ms_add_test(test_tokenizer_compare SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenizer.c ARGS --compare
            LABELS tokenizer)
