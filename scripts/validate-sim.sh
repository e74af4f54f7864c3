#!/usr/bin/env bash
# The simulator's validation: replay a 10-minute window of the shipped SYNTHETIC sample
# against `modserve serve` on the tiny model (CPU), simulate the same window with the
# same engine settings from profiles measured on this machine, and compare TTFT p50 and
# p99 (`bench compare`, tolerance 15%), for monolithic (1 LLM worker) and disagg
# (1 encode / 1 prefill / 1 decode).
#
# One CPU thread per worker (`--threads 1`), and simulate shares the host's cores among
# the workers (--shared-cores). The machine's speed can drift between minutes, so the
# profile is taken before and after the replays (with --rounds) and simulate uses the
# mean of the two. Nothing else should run on the machine meanwhile. About 20 minutes.
#
# usage: scripts/validate-sim.sh [OUT_DIR]   (default build-rel/validate)
# env:   MODSERVE_BUILD (default build-rel), VALIDATE_ROUNDS (profile rounds, default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${MODSERVE_BUILD:-build-rel}
out=${1:-$build/validate}
rounds=${VALIDATE_ROUNDS:-2}
cores=$(nproc)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$cores" >/dev/null
ms="$build/modserve"
rm -rf "$out" && mkdir -p "$out"
"$ms" model init --preset tiny --seed 1 --out "$out/tiny" >/dev/null

# --seed also picks the replayer's images (a pool of --image-pool 16); the profile
# measures the same images, so simulate charges each request the images it sends.
window=(--trace bench/data/synthetic-sample.csv.gz --duration 10m --time-scale 0.5 --rate-scale 0.3
        --seed 7 --image-pool 16 --image-policy fit --max-images 8 --goodput ttft:2000,tpot:100)
# Spelled out for serve and simulate alike (they share the defaults, but the KV pool
# serve would size from memory). --max-model-len 4096: the context of the recorded runs
# (bench/results/validation-tiny-cpu.md); the tiny preset's own is 40,960, whose longest
# prompts take minutes to prefill on a CPU.
engine=(--max-num-seqs 64 --max-num-batched-tokens 2048 --encode-max-batch-images 8 --kv-blocks 16384
        --max-model-len 4096)

server=
stop_server() { [ -z "$server" ] || { kill -TERM "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; server=; }; }
trap stop_server EXIT
start_server() { # MODE: starts `serve` with the engine settings above, sets $url
  # image and prefix caches off: the 16 pool images repeat, and the simulator's cost
  # model is of the uncached work (simulate --embedding-cache-images models only the
  # embedding cache; prefix caching is not simulated)
  "$ms" serve --model "$out/tiny" --device cpu --port 0 --mode "$1" --threads 1 "${engine[@]}" \
    --image-cache-bytes 0 --embedding-cache-bytes 0 --no-enable-prefix-caching >"$out/server-$1.log" 2>&1 &
  server=$!
  url=
  for _ in $(seq 1 300); do
    url=$(grep -o 'http://[0-9.]*:[0-9]*' "$out/server-$1.log" | head -1 || true)
    [ -n "$url" ] && curl -sf "$url/health" >/dev/null && return 0
    sleep 0.1
  done
  cat "$out/server-$1.log"; echo "validate-sim: the $1 server did not come up"; exit 1
}
profile() { # NAME: the engine alone, plus the front end through $url
  echo "validate-sim: profile $1 ($(date -u +%H:%M:%S))"
  "$ms" bench profile --model "$out/tiny" --device cpu --threads 1 --rounds "$rounds" --repeats 3 \
    --encode-images 1,2,4,8 --prefill-tokens 16,64,256,512,1024,2048,3072,4000 \
    --decode-batch 1,2,4,8 --decode-context 64,512,2048 --url "$url" --seed 7 --image-pool 16 \
    --out "$out/profile-$1.json" >"$out/profile-$1.log"
  tail -2 "$out/profile-$1.log"
}
replay() { # MODE
  echo "validate-sim: replay $1 ($(date -u +%H:%M:%S))"
  "$ms" bench replay --url "$url" "${window[@]}" --out "$out/replay-$1" >"$out/replay-$1.txt"
}

start_server monolithic
profile before
replay monolithic
stop_server
start_server disagg
replay disagg
profile after
stop_server

status=0
for mode in monolithic disagg; do
  "$ms" bench simulate "${window[@]}" "${engine[@]}" --mode "$mode" --shared-cores "$cores" --worker-threads 1 \
    --profile "$out/profile-before.json" --profile "$out/profile-after.json" \
    --out "$out/simulate-$mode" >"$out/simulate-$mode.txt"
  echo; echo "== $mode: replay (BASE) vs simulate (NEW)"
  "$ms" bench compare "$out/replay-$mode" "$out/simulate-$mode" >"$out/compare-$mode.txt" || status=1
  grep -A3 '^checks' "$out/compare-$mode.txt"
done
echo; echo "validate-sim: reports in $out/ (compare-*.txt: every number side by side)"
exit $status
