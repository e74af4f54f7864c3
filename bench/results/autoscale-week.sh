M=${M:-./modserve}
# beside week.csv.gz and prof-week.json (see autoscale-2h-2026-12-08.md)
COMMON="--trace week.csv.gz --profile prof-week.json --slo-factor 5 --goodput ttft:2000,tpot:100 --max-model-len 65536 --kv-blocks 100000 --max-queued-requests 0 --max-num-seqs 256 --encode-max-batch-images 16 --no-plots"
row() { echo "$1 | $(echo "$2" | grep -E '^SLO 5' | sed 's/.*all //') | abs $(echo "$2" | grep -E '^overall  ' | awk '{print $NF}') | GPU-h $(echo "$2" | grep GPU-hours | sed 's/.*: //') | $(echo "$2" | grep -o '[0-9]* scaling events') | $(echo "$2" | grep -o '[0-9]* stalled')"; }
for P in trend modserve; do
  row "$P" "$($M bench simulate $COMMON --autoscale $P --interval 5m --target 0.95 --out out-week-$P)"
done
for s in "1 2 1" "1 3 1" "2 2 1"; do set -- $s
  row "static $1,$2,$3" "$($M bench simulate $COMMON --encode-workers $1 --prefill-workers $2 --decode-workers $3)"
done
