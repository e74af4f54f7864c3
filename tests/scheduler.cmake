# scheduler: the core on a virtual clock, and the engine with real threads on the tiny model.
ms_add_test(test_sched_core SOURCES test_sched_core.c sched_harness.c LABELS scheduler)
ms_add_test(test_sched_engine SOURCES test_sched_engine.c LABELS scheduler)
