# kernels: tensor helpers and the table-driven backend op test (every op, every backend).
ms_add_test(test_tensor SOURCES test_tensor.c)
ms_add_test(test_cpu_threads SOURCES test_cpu_threads.c)

# One binary, one ctest entry per backend: the CUDA entry skips (77) without a GPU.
# The harness, references and cases are a library: test_cuda_kernels (tests/cuda.cmake)
# runs the same cases at full size on a GPU.
add_library(ms_test_backend_ops STATIC ${CMAKE_CURRENT_SOURCE_DIR}/test_backend_ops_harness.c
            ${CMAKE_CURRENT_SOURCE_DIR}/test_backend_ops_ref.c
            ${CMAKE_CURRENT_SOURCE_DIR}/test_backend_ops_cases.c
            ${CMAKE_CURRENT_SOURCE_DIR}/test_backend_ops_cases_attn.c
            ${CMAKE_CURRENT_SOURCE_DIR}/test_backend_ops_cases_image.c
            ${CMAKE_CURRENT_SOURCE_DIR}/test_backend_ops_cases_paths.c)
target_include_directories(ms_test_backend_ops PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(ms_test_backend_ops PUBLIC ms_kernels Threads::Threads)
add_executable(test_backend_ops ${CMAKE_CURRENT_SOURCE_DIR}/test_backend_ops.c
               ${CMAKE_CURRENT_SOURCE_DIR}/test_util.c)
target_link_libraries(test_backend_ops PRIVATE ms_test_backend_ops ms_server)
target_compile_definitions(test_backend_ops PRIVATE MS_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
foreach(be cpu cuda)
  add_test(NAME test_backend_ops_${be} COMMAND test_backend_ops --backend ${be}
           WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  set_tests_properties(test_backend_ops_${be} PROPERTIES SKIP_RETURN_CODE 77)
endforeach()
set_tests_properties(test_backend_ops_cuda PROPERTIES LABELS gpu)

# The index contract (bad cu_seqlens, ctx_lens, block ids, slots, row ids abort with a
# message) on every backend; the CUDA entry skips (77) without a GPU.
add_executable(test_backend_contract ${CMAKE_CURRENT_SOURCE_DIR}/test_backend_contract.c
               ${CMAKE_CURRENT_SOURCE_DIR}/test_util.c)
target_link_libraries(test_backend_contract PRIVATE ms_server)
foreach(be cpu cuda)
  add_test(NAME test_backend_contract_${be} COMMAND test_backend_contract --backend ${be}
           WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  set_tests_properties(test_backend_contract_${be} PROPERTIES SKIP_RETURN_CODE 77)
endforeach()
set_tests_properties(test_backend_contract_cuda PROPERTIES LABELS gpu)
