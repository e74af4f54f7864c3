# scheduler: the core on a virtual clock, the engine with real threads on the tiny model,
# and a smoke run of `modserve bench sched`.
ms_add_test(test_sched_core SOURCES test_sched_core.c sched_harness.c LABELS scheduler)
ms_add_test(test_sched_engine SOURCES test_sched_engine.c LABELS scheduler)
ms_add_test(test_sched_engine_faults SOURCES test_sched_engine_faults.c LABELS scheduler)
# OpenBLAS's own threads are not instrumented by ThreadSanitizer (false reports inside
# sgemm); the CPU backend's pool does the threading, so keep BLAS single-threaded here.
set_tests_properties(test_sched_engine test_sched_engine_faults PROPERTIES ENVIRONMENT "OPENBLAS_NUM_THREADS=1")
ms_add_test(test_sched_bench SOURCES test_sched_bench.c LABELS scheduler)
