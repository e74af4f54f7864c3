#!/bin/bash
# bench/results/autoscale-2h-2026-12-08.md: run beside week.csv.gz (bench synth --duration 7d --seed 1)
# and prof-week.json (the hand-made profile of simulate-week-timing.md); M= the modserve binary.
# usage: sweep2.sh START DURATION TAG
M=${M:-./modserve}
COMMON="--trace week.csv.gz --profile prof-week.json --start $1 --duration $2 --slo-factor 5 --goodput ttft:2000,tpot:100 --max-model-len 65536 --kv-blocks 100000 --max-queued-requests 0 --max-num-seqs 256 --encode-max-batch-images 16 --no-plots"
row() { echo "$1 | $(echo "$2" | grep -E '^SLO 5' | sed 's/.*all //') | abs $(echo "$2" | grep -E '^overall  ' | awk '{print $NF}') | GPU-h $(echo "$2" | grep GPU-hours | sed 's/.*: //') | $(echo "$2" | grep -o '[0-9]* scaling events')"; }
for P in modserve trend; do
  row "$P" "$($M bench simulate $COMMON --autoscale $P --interval 5m --target 0.95 --out out-$3-$P)"
done
for e in 1 2; do for p in 1 2 3 4; do for d in 1 2; do
  row "static $e,$p,$d" "$($M bench simulate $COMMON --encode-workers $e --prefill-workers $p --decode-workers $d)"
done; done; done
