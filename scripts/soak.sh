#!/usr/bin/env bash
# Soak: one `modserve serve` on the tiny model under the main job's replay for a long
# time, with cancels and client disconnects mixed in, RSS sampled every minute.
#
#   bash scripts/soak.sh [--minutes 60] [--rate-scale 0.15] [--out DIR]
#
# Traffic, all against the one server:
#   - back-to-back `bench replay` runs of the synthetic sample (streaming chat, images at
#     the trace's counts up to 8, fit policy), each a 2-minute window at a different
#     start, 2x time-compressed, thinned to --rate-scale;
#   - every 5 s a client that gives up: a streaming chat with an image cut after 0.5 s
#     and a non-streaming completion cut after 0.3 s (the server must cancel both);
#   - every 30 s a request the server must refuse with 400 (malformed image data).
# Writes DIR/rss.csv (minute, RSS kB, active requests, KV blocks used), every replay's
# report, DIR/errors.txt (failed replay requests) and DIR/summary.txt: RSS first, last
# and peak, growth, replay requests sent/completed/failed, cancels sent, 400s seen.
# Exit 0 when RSS grew less than 50 MB after the first sample, no replay request failed,
# and every refusal probe got its 400.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=60 rate=0.15 out=build/soak
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --rate-scale) rate=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "soak: unknown argument $1" >&2; exit 2 ;;
  esac
done
build=${MODSERVE_BUILD:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)" --target modserve >/dev/null
ms="$build/modserve"
rm -rf "$out" && mkdir -p "$out"
"$ms" model init --preset tiny --seed 1 --out "$out/tiny" >/dev/null
"$ms" serve --model "$out/tiny" --served-model-name tiny --device cpu --port 0 --encode-workers 2 >"$out/server.log" 2>&1 &
server=$!
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
            kill -TERM $server 2>/dev/null || true; wait $server 2>/dev/null || true; }
trap cleanup EXIT
url=
for _ in $(seq 1 300); do
  url=$(grep -o 'http://[0-9.]*:[0-9]*' "$out/server.log" | head -1 || true)
  [ -n "$url" ] && curl -sf "$url/health" >/dev/null && break
  sleep 0.1
done
[ -n "$url" ] || { cat "$out/server.log"; echo "soak: the server did not come up"; exit 1; }
echo "soak: server pid $server at $url for $minutes minutes (rate scale $rate)"
end=$(( $(date +%s) + minutes * 60 ))
img=$(base64 -w0 tests/data/demo.png)
metric() { curl -s "$url/metrics" | awk -v m="$1" '$1 == m {print $2; exit}'; }

# RSS every minute.
( echo "minute,rss_kb,requests_active,kv_blocks_used" > "$out/rss.csv"
  m=0
  while [ "$(date +%s)" -lt "$end" ]; do
    rss=$(awk '/^VmRSS/ {print $2}' /proc/$server/status)
    echo "$m,$rss,$(metric modserve_requests_active),$(metric modserve_kv_blocks_used)" >> "$out/rss.csv"
    m=$((m + 1)); sleep 60
  done ) & pids+=($!)

# Clients that give up, and requests that must be refused.
( n=0 bad=0 bad_ok=0
  chat='{"model":"tiny","stream":true,"max_tokens":400,"ignore_eos":true,"messages":[{"role":"user","content":[{"type":"text","text":"describe"},{"type":"image_url","image_url":{"url":"data:image/png;base64,'"$img"'"}}]}]}'
  comp='{"model":"tiny","prompt":"tell a long story","max_tokens":400,"ignore_eos":true}'
  while [ "$(date +%s)" -lt "$end" ]; do
    curl -s -m 0.5 -o /dev/null -H 'Content-Type: application/json' -d "$chat" "$url/v1/chat/completions" || true
    curl -s -m 0.3 -o /dev/null -H 'Content-Type: application/json' -d "$comp" "$url/v1/completions" || true
    n=$((n + 2))
    if [ $((n % 12)) -eq 0 ]; then
      code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
        -d '{"model":"tiny","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}' \
        "$url/v1/chat/completions")
      bad=$((bad + 1)); [ "$code" = 400 ] && bad_ok=$((bad_ok + 1))
    fi
    echo "$n $bad $bad_ok" > "$out/cancels.txt"
    sleep 5
  done ) & pids+=($!)

# Back-to-back replays over different windows of the sample.
i=0
while [ "$(date +%s)" -lt "$end" ]; do
  start=$(( (i * 2) % 30 ))m
  "$ms" bench replay --trace bench/data/synthetic-sample.csv.gz --url "$url" --start "$start" \
    --duration 2m --time-scale 0.5 --rate-scale "$rate" --seed "$i" --image-policy fit \
    --max-images 8 --no-plots --no-progress --out "$out/replay-$i" > "$out/replay-$i.txt" 2>&1 || true
  i=$((i + 1))
done
wait "${pids[0]}" 2>/dev/null || true
kill "${pids[1]}" 2>/dev/null || true
alive=yes; kill -0 $server 2>/dev/null || alive=no

sent=0 done_=0 failed=0
for f in "$out"/replay-*.txt; do
  row=$(awk '$1 == "overall" {print $2, $3, $4; exit}' "$f")
  [ -n "$row" ] || { echo "soak: no report in $f" >> "$out/errors.txt"; failed=$((failed + 1)); continue; }
  set -- $row; sent=$((sent + $1)); done_=$((done_ + $2)); failed=$((failed + $3))
  grep 'failed request' "$f" >> "$out/errors.txt" || true
done
touch "$out/errors.txt"
read -r cancels bad bad_ok < "$out/cancels.txt"
first=$(awk -F, 'NR == 2 {print $2}' "$out/rss.csv"); last=$(awk -F, 'END {print $2}' "$out/rss.csv")
peak=$(awk -F, 'NR > 1 && $2 > p {p = $2} END {print p}' "$out/rss.csv")
growth=$(( (last - first) / 1024 ))
{ echo "soak: $minutes minutes, $i replays, server alive at the end: $alive"
  echo "RSS kB: first $first, last $last, peak $peak; growth ${growth} MB"
  echo "replay requests: $sent sent, $done_ completed, $failed failed"
  echo "clients that gave up: $cancels (server counted $(metric modserve_client_disconnects_total) disconnects); refusal probes: $bad sent, $bad_ok answered 400"
  echo "requests active at the end: $(metric modserve_requests_active), KV blocks used: $(metric modserve_kv_blocks_used)"
} | tee "$out/summary.txt"
[ "$alive" = yes ] && [ "$growth" -lt 50 ] && [ "$failed" -eq 0 ] && [ "$bad" -eq "$bad_ok" ]
