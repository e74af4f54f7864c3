#!/usr/bin/env bash
# The test command: install what is missing, build with ASan + UBSan (the CUDA backend
# too when a toolkit is present, so it always compiles), run every test with ctest.
# GPU tests report "skipped" on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build=${MODSERVE_TEST_BUILD:-build-test}
jobs=$(nproc)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DMODSERVE_SANITIZE=ON
cmake --build "$build" -j "$jobs"
# CUDA's runtime needs the shadow gap unprotected to even report "no device" under ASan.
export ASAN_OPTIONS=${ASAN_OPTIONS:-protect_shadow_gap=0:detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$build"
ctest --output-on-failure -j "$jobs" --timeout 1500
