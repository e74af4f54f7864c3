#!/usr/bin/env bash
# The main job: install what is missing, build (Release; the CUDA backend too when a
# toolkit is present), write the tiny random-weight model, and run it on an image
# (on the GPU when there is one, else the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build=${MODSERVE_BUILD:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$(nproc)"
ms="$build/modserve"
work="$build/demo"
mkdir -p "$work"
"$ms" model init --preset tiny --seed 1 --out "$work/tiny"
"$ms" run --model "$work/tiny" --device auto --image tests/data/demo.png \
  --prompt-ids 1,1000,15,16,17 --max-tokens 16 --seed 1
