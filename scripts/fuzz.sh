#!/usr/bin/env bash
# Fuzzing with libFuzzer (docs/fuzz.md). Builds the fuzz targets with clang, ASan and
# UBSan in their own build folder, then either
#   scripts/fuzz.sh --smoke                 the short ctest runs (seeds, regressions, 2000 mutations each)
#   scripts/fuzz.sh [--time 1800] [TARGET...] a campaign: each target for --time seconds, one
#                                            after the other, one process each
# Campaign output goes to --out (default <build>/campaign-<UTC time>): <target>.log, the grown
# corpus in corpus/<target>/, crash/leak/timeout inputs in artifacts/, and summary.md with
# executions, coverage and findings per target. Exit status 1 when any target found
# something. Per-target limits (timeout, rss, malloc) come from the build's
# fuzz/<target>.options, written by tests/fuzz/CMakeLists.txt.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-fuzz
time_s=1800
out=""
smoke=0
jobs=2
targets=()
all_targets=(fuzz_image fuzz_safetensors fuzz_config fuzz_trace_line fuzz_sse fuzz_tokenizer)
[ -f "$root/server/request_parse.h" ] && all_targets+=(fuzz_request)

usage() {
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    cat <<EOF
Options:
  --smoke          build, then run the ctest fuzz label (what scripts/test.sh runs)
  --time SECONDS   campaign length per target (default $time_s)
  --out DIR        campaign output folder (default <build>/campaign-<UTC time>)
  --build DIR      build folder (default build-fuzz)
  --jobs N         build parallelism (default $jobs)
  --no-build       use the existing build
  --skip-known     filter the known open findings (tests/fuzz/fuzz_util.h) to look past them
  TARGET...        targets to run (default: ${all_targets[*]})
EOF
}

do_build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) smoke=1 ;;
        --time) time_s=$2; shift ;;
        --out) out=$2; shift ;;
        --build) build=$2; shift ;;
        --jobs) jobs=$2; shift ;;
        --no-build) do_build=0 ;;
        --skip-known) export MS_FUZZ_SKIP_KNOWN=1 UBSAN_OPTIONS=suppressions=$root/tests/fuzz/ubsan_known.supp ;;
        -h|--help) usage; exit 0 ;;
        fuzz_*) targets+=("$1") ;;
        *) echo "fuzz.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")

if ! command -v clang >/dev/null; then
    echo "fuzz.sh: clang not found (libFuzzer needs clang; apt-get install clang libclang-rt-dev)" >&2
    exit 2
fi

if [ $do_build = 1 ]; then
    cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DMODSERVE_FUZZ=ON -DMODSERVE_CUDA=OFF \
        -DMODSERVE_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$build" -j"$jobs" --target "${targets[@]}"
fi

if [ $smoke = 1 ]; then
    regex=$(printf '%s_|' "${targets[@]}")
    exec ctest --test-dir "$build" -L fuzz -R "^(${regex%|})" --output-on-failure
fi

[ -n "$out" ] || out=$build/campaign-$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$out/artifacts"
summary=$out/summary.md
{
    echo "# Fuzz campaign $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "commit $(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet 2>/dev/null || echo ' (with uncommitted changes)'), ${time_s} s per target, $(nproc) cores, MS_FUZZ_SKIP_KNOWN=${MS_FUZZ_SKIP_KNOWN:-0}"
    echo
    echo "| target | seconds | executions | exec/s | coverage (edges) | features | corpus | findings |"
    echo "|---|---|---|---|---|---|---|---|"
} >"$summary"

found=0
for t in "${targets[@]}"; do
    bin=$build/fuzz/$t
    [ -x "$bin" ] || { echo "fuzz.sh: $bin is not built" >&2; exit 2; }
    read -r -a opts <"$build/fuzz/$t.options"
    mkdir -p "$out/corpus/$t"
    inputs=("$root/tests/fuzz/corpus/$t")
    [ -d "$root/tests/fuzz/regressions/$t" ] && inputs+=("$root/tests/fuzz/regressions/$t")
    echo "== $t: ${time_s}s, log $out/$t.log"
    rc=0
    "$bin" "${opts[@]}" -max_total_time="$time_s" -print_final_stats=1 \
        -artifact_prefix="$out/artifacts/$t-" "$out/corpus/$t" "${inputs[@]}" >"$out/$t.log" 2>&1 || rc=$?
    # The last status line ("#N DONE cov: C ft: F corp: K/...") and the final stats.
    last=$(grep -E '^#[0-9]+' "$out/$t.log" | tail -1 || true)
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    corp=$(sed -nE 's/.* corp: ([0-9]+)\/.*/\1/p' <<<"$last")
    execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$out/$t.log")
    eps=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$out/$t.log")
    secs=$(sed -nE 's/.*Done [0-9]+ runs in ([0-9]+) second.*/\1/p' "$out/$t.log")
    # A run stopped by a finding prints no "Done" line: executions / rate, marked "~".
    if [ -z "$secs" ] && [ -n "$execs" ] && [ -n "$eps" ] && [ "$eps" -gt 0 ]; then secs="~$((execs / eps))"; fi
    finding=none
    if [ $rc -ne 0 ]; then
        found=1
        finding=$(grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|SUMMARY' "$out/$t.log" \
                  | sed 's/|/\\|/g' | cut -c1-120)
        finding="exit $rc: ${finding:-see log}"
    fi
    echo "| $t | ${secs:-$time_s} | ${execs:-?} | ${eps:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | $finding |" >>"$summary"
    echo "   $finding (executions ${execs:-?}, cov ${cov:-?})"
done
echo
cat "$summary"
exit $found
