#!/usr/bin/env bash
# The test command: install what is missing (Debian packages, the Python reference
# environment of scripts/pyref.sh), build with ASan + UBSan (the CUDA backend
# too when a toolkit is present, so it always compiles), run the short fuzz runs (when
# clang is present) and then every test with ctest. GPU tests report "skipped" on a
# machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# The reference environment (transformers, tokenizers, Pillow, openai; tests/ref/). If it
# cannot be built the reference tests fail; MODSERVE_NO_PYREF=1 skips them by choice.
pyref=""
if [ "${MODSERVE_NO_PYREF:-0}" != 1 ]; then
  pyref=$(bash scripts/pyref.sh | tail -n 1) || { echo "test.sh: the reference environment could not be built: reference tests will fail"; pyref=""; }
fi
build=${MODSERVE_TEST_BUILD:-build-test}
jobs=$(nproc)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DMODSERVE_SANITIZE=ON -DMODSERVE_PYREF_PYTHON="$pyref"
cmake --build "$build" -j "$jobs"
# The engine tests and the parallel tuner again under ThreadSanitizer (data races
# between their threads):
# a small second tree, CUDA off, only what those tests need. Its result is reported
# below and fails the script.
tsan_build=${MODSERVE_TSAN_BUILD:-build-tsan}
tsan_rc=0
{ cmake -S . -B "$tsan_build" -DCMAKE_BUILD_TYPE=Debug -DMODSERVE_TSAN=ON -DMODSERVE_CUDA=OFF \
    -DMODSERVE_PYREF_PYTHON= >/dev/null &&
  cmake --build "$tsan_build" -j "$jobs" --target modserve test_sched_engine test_sched_engine_faults test_tune &&
  (cd "$tsan_build" && ctest -R '^(test_sched_engine|test_tune)' --output-on-failure -j "$jobs" --timeout 900); } || tsan_rc=$?
# CUDA's runtime needs the shadow gap unprotected to even report "no device" under ASan.
export ASAN_OPTIONS=${ASAN_OPTIONS:-protect_shadow_gap=0:detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# OpenBLAS's own threads are not used (the CPU backend splits work itself).
export OPENBLAS_NUM_THREADS=1
fuzz_rc=0
if command -v clang >/dev/null 2>&1; then
  # libFuzzer targets over every parser of outside input: seeds, regression inputs and
  # 2,000 mutations each (docs/fuzz.md). Its own build tree, clang + ASan/UBSan.
  bash scripts/fuzz.sh --smoke --jobs "$jobs" || fuzz_rc=$?
else
  echo "test.sh: clang not found: fuzz smoke runs skipped"
fi
# The main suite last, so its summary closes the output.
rc=0
(cd "$build" && ctest --output-on-failure -j "$jobs" --timeout 1500) || rc=$?
if [ "$tsan_rc" -ne 0 ]; then
  echo "test.sh: the engine tests under ThreadSanitizer ($tsan_build) failed (see above)"
  [ "$rc" -ne 0 ] || rc=$tsan_rc
fi
if [ "$fuzz_rc" -ne 0 ]; then
  echo "test.sh: the fuzz smoke runs failed (see above)"
  [ "$rc" -ne 0 ] || rc=$fuzz_rc
fi
exit "$rc"
