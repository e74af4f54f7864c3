# Tokenizer unit checks (the tiny tokenizer, errors, chat formats). The comparison with
# Hugging Face's library is a reference test: tests/ref_tokenizer.cmake.
ms_add_test(test_tokenizer SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenizer.c LABELS tokenizer)
