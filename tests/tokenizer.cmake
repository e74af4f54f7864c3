# Tokenizer: unit checks, and the comparison with Hugging Face tokenizers (node + npm;
# skipped when they or the npm registry are unavailable).
ms_add_test(test_tokenizer SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenizer.c LABELS tokenizer)
ms_add_test(test_tokenizer_compare SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenizer.c ARGS --compare
            LABELS tokenizer)

# NFC (Qwen2 family normalizer) uses ICU's normalizer when present (Debian libicu-dev).
# TODO(lead): move into llm/CMakeLists.txt and add libicu-dev to scripts/install-deps.sh.
pkg_check_modules(ICU_UC IMPORTED_TARGET icu-uc)
if(ICU_UC_FOUND)
  target_link_libraries(ms_llm PUBLIC PkgConfig::ICU_UC)
  target_compile_definitions(ms_llm PRIVATE MS_HAVE_ICU=1)
endif()
