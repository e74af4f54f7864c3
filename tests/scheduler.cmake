# scheduler: the core on a virtual clock, the engine with real threads on the tiny model,
# and a smoke run of `modserve bench sched`.
ms_add_test(test_sched_core SOURCES test_sched_core.c sched_harness.c LABELS scheduler)
ms_add_test(test_sched_prefix SOURCES test_sched_prefix.c sched_harness.c LABELS scheduler)
ms_add_test(test_sched_engine SOURCES test_sched_engine.c LABELS scheduler)
ms_add_test(test_sched_engine_faults SOURCES test_sched_engine_faults.c LABELS scheduler)
ms_add_test(test_prefix_cache SOURCES test_prefix_cache.c LABELS scheduler)
# OpenBLAS's own threads are not instrumented by ThreadSanitizer (false reports inside
# sgemm); the CPU backend's pool does the threading, so keep BLAS single-threaded here.
# The ThreadSanitizer build (scripts/test.sh) runs the engine test with 60 requests, not
# 200, to stay short; a race report makes the test exit non-zero (TSan's exit code 66).
set(_engine_env "OPENBLAS_NUM_THREADS=1")
if(MODSERVE_TSAN)
  list(APPEND _engine_env "MS_ENGINE_TEST_REQS=60")
endif()
set_tests_properties(test_sched_engine test_sched_engine_faults test_prefix_cache PROPERTIES ENVIRONMENT "${_engine_env}")
ms_add_test(test_sched_bench SOURCES test_sched_bench.c LABELS scheduler)
