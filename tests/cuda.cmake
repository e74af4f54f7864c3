# CUDA backend: kernels against the CPU at the fast paths' shapes (GPU only), and the
# golden test against transformers' logits on the CPU (runs in CI when the golden files
# are present) and on CUDA (GPU only). Tests that need a GPU exit 77 without one.
ms_add_test(test_cuda_kernels SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_cuda_kernels.c LABELS gpu cuda)
target_link_libraries(test_cuda_kernels PRIVATE ms_test_backend_ops) # tests/kernels.cmake
ms_add_test(test_golden_cpu SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_golden.c ARGS cpu LABELS golden)
ms_add_test(test_golden_cuda SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_golden.c ARGS cuda LABELS gpu golden)
# Both golden tests run the real binary and write the tiny model with it.
add_dependencies(test_golden_cpu modserve)
add_dependencies(test_golden_cuda modserve)
# The kernel benchmark's harness at small shapes on the CPU (the GPU run is scripts/gpu.sh).
ms_add_test(test_bench_kernels SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_bench_kernels.c LABELS bench)
