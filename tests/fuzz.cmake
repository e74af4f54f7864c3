# Fuzzing (issue 8): the libFuzzer targets live in tests/fuzz and are built only with
# -DMODSERVE_FUZZ=ON and clang (see docs/fuzz.md). Each target then gets a short ctest
# run over its seed corpus (labels "fuzz"), registered by tests/fuzz/CMakeLists.txt.
if(MODSERVE_FUZZ)
  add_subdirectory(${CMAKE_SOURCE_DIR}/tests/fuzz ${CMAKE_BINARY_DIR}/fuzz)
endif()
