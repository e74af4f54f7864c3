# Benchmark tooling (bench/): trace reader, synthetic traces, metrics, replayer.
ms_add_test(test_trace SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_trace.c LABELS bench)
ms_add_test(test_synth SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_synth.c LABELS bench)
ms_add_test(test_metrics SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_metrics.c LABELS bench)
ms_add_test(test_replay SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_replay.c LABELS bench)
ms_add_test(test_simulate SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_simulate.c LABELS bench)
ms_add_test(test_autoscale SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_autoscale.c LABELS bench)
ms_add_test(test_tune SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/test_tune.c LABELS bench)
