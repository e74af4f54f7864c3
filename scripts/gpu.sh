#!/usr/bin/env bash
# The GPU check of modserve in one call: build for the present GPU, ctest (all labels,
# gpu included), compute-sanitizer (memcheck, racecheck) on the CUDA op tests, golden
# logits from transformers, and the kernel benchmarks beside PyTorch's. Logs and
# results go under $OUT (the device tool brings back at most 8 files): summary.txt,
# build.log, ctest.log, sanitizer.log, golden/tiny_s1_logits.f32,
# golden/tiny_s1_inputs.json, bench.txt.
#
#   scripts/gpu.sh [STEP...]      on the GPU machine; STEPs: build test sanitize golden
#                                 bench (default: all, in that order)
#   scripts/gpu.sh --prepare-deps here, before the call: copies the Debian build
#                                 dependencies (headers, .pc files, shared libraries)
#                                 into build-gpudeps/deps.tar.xz, for a GPU image that
#                                 lacks them (it cannot download); carry build-gpudeps
#
# Device tool: all steps take longer than one call's 10 minutes, so split them:
#   run(command="scripts/gpu.sh build test sanitize", carry=["build-gpudeps"], timeout_s=600)
#   run(command="scripts/gpu.sh golden bench", carry=["build-gpudeps"], timeout_s=600)
# The build folder build-gpu stays on the warm machine between the calls (if the machine
# went back meanwhile, name build first again).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEPS_DIR=$ROOT/build-gpudeps

# ---------------------------------------------------------------- --prepare-deps
prepare_deps() {
    set -e
    local stage; stage=$(mktemp -d)
    local root=$stage/deps
    mkdir -p "$root/lib" "$root/pkgconfig" "$root/bin" "$root/include"
    # Modules the top CMakeLists.txt asks pkg-config for (ICU is optional: left out).
    local mods="openblas libcjson stb libmicrohttpd libcurl libpcre2-8 zlib"
    local m
    for m in $mods; do
        local pc; pc=$(readlink -f "$(pkg-config --path "$m")")
        local pkg; pkg=$(dpkg -S "$pc" | head -1 | cut -d: -f1)
        # headers of the -dev package, mirrored under include/
        dpkg -L "$pkg" | grep '^/usr/include/' | while read -r f; do
            if [ -f "$f" ]; then mkdir -p "$root/include$(dirname "$f")"; cp -L "$f" "$root/include$f"; fi
        done
        local cflags="" flag
        for flag in $(pkg-config --cflags-only-I "$m"); do
            cflags="$cflags -I\${prefix}/include${flag#-I}"
            mkdir -p "$root/include${flag#-I}" # CMake wants every include dir to exist
        done
        [ -n "$cflags" ] || cflags="-I\${prefix}/include/usr/include"
        local libs="" ldirs; ldirs="$(pkg-config --libs-only-L "$m" | sed 's/-L//g') /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu"
        for flag in $(pkg-config --libs-only-l "$m"); do
            local name=${flag#-l} d
            for d in $ldirs; do
                if [ -e "$d/lib$name.so" ]; then
                    local real; real=$(readlink -f "$d/lib$name.so")
                    local soname; soname=$(objdump -p "$real" | awk '/SONAME/{print $2}')
                    cp -L "$real" "$root/lib/${soname:-lib$name.so}"
                    [ -n "$soname" ] && ln -sf "$soname" "$root/lib/lib$name.so"
                    break
                fi
            done
            libs="$libs -l$name"
        done
        cat >"$root/pkgconfig/$m.pc" <<EOF
prefix=@DEPS@
Name: $m
Description: $m (Debian $(dpkg-query -W -f='${Version}' "$pkg"), carried by scripts/gpu.sh)
Version: $(pkg-config --modversion "$m")
Cflags: $cflags
Libs: -L\${prefix}/lib $libs
EOF
    done
    # Runtime dependencies of those libraries, except the C runtime and CUDA's own.
    local lib
    for lib in "$root"/lib/*.so.*; do
        ldd "$lib" | awk '$3 ~ /^\// {print $3}'
    done | sort -u | while read -r f; do
        case "$(basename "$f")" in
            libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|libresolv.so*|libgcc_s.so*|\
            libstdc++.so*|ld-linux*|libcuda*|libcublas*|libcudart*) ;;
            *) [ -e "$root/lib/$(basename "$f")" ] || cp -L "$f" "$root/lib/" ;;
        esac
    done
    # pkg-config itself (pkgconf), in case the image has none.
    cp -L "$(readlink -f "$(command -v pkg-config)")" "$root/bin/pkgconf"
    for f in $(ldd "$root/bin/pkgconf" | awk '$3 ~ /libpkgconf/ {print $3}'); do cp -L "$f" "$root/lib/"; done
    mkdir -p "$DEPS_DIR"
    tar -C "$stage" -cJf "$DEPS_DIR/deps.tar.xz" deps
    rm -rf "$stage"
    echo "gpu.sh: wrote $DEPS_DIR/deps.tar.xz ($(du -h "$DEPS_DIR/deps.tar.xz" | cut -f1)); carry build-gpudeps"
}

if [ "${1:-}" = "--prepare-deps" ]; then
    prepare_deps
    exit $?
fi

# ---------------------------------------------------------------- on the GPU machine
OUT=${OUT:-$ROOT/build-gpu-out}
mkdir -p "$OUT/golden"
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
BUILD=$ROOT/build-gpu
STEPS=${*:-build test sanitize golden bench}
JOBS=$(nproc 2>/dev/null || echo 8)
FAILED=0

note() { echo "gpu.sh: $*" | tee -a "$SUMMARY"; }
result() { # NAME RC [detail]
    if [ "$2" -eq 0 ]; then note "PASS $1 ${3:-}"
    elif [ "$2" -eq 77 ]; then note "SKIP $1 ${3:-}"
    else note "FAIL $1 (exit $2) ${3:-}"; FAILED=1; fi
}
has_step() { case " $STEPS " in *" $1 "*) return 0 ;; esac; return 1; }

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo "unknown (no .git)")
note "start $(date -u +%FT%TZ), commit $COMMIT, steps: $STEPS"
nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$SUMMARY"
CC_CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
ARCH=${CUDA_ARCH:-${CC_CAP:-90}}
note "nvcc: $(nvcc --version 2>/dev/null | tail -1); building for sm_$ARCH"

# Dependencies: the system's when pkg-config finds them all, else the carried ones.
MODS="openblas libcjson stb libmicrohttpd libcurl libpcre2-8"
CMAKE_EXTRA=()
RUN_LD=""
if ! { command -v pkg-config >/dev/null && pkg-config --exists $MODS 2>/dev/null; }; then
    if [ -f "$DEPS_DIR/deps.tar.xz" ]; then
        D=/tmp/modserve-deps
        rm -rf "$D" && mkdir -p /tmp && tar -C /tmp -xJf "$DEPS_DIR/deps.tar.xz" && mv /tmp/deps "$D"
        sed -i "s|@DEPS@|$D|" "$D"/pkgconfig/*.pc
        cat >"$D/bin/pkg-config" <<EOF
#!/bin/sh
LD_LIBRARY_PATH=$D/lib PKG_CONFIG_LIBDIR=$D/pkgconfig exec $D/bin/pkgconf "\$@"
EOF
        chmod +x "$D/bin/pkg-config"
        CMAKE_EXTRA+=(-DPKG_CONFIG_EXECUTABLE="$D/bin/pkg-config" -DCMAKE_PREFIX_PATH="$D/include/usr;$D"
                      -DZLIB_INCLUDE_DIR="$D/include/usr/include" -DZLIB_LIBRARY="$D/lib/libz.so"
                      -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$D/lib" -DCMAKE_BUILD_RPATH="$D/lib")
        RUN_LD=$D/lib
        note "using the carried Debian dependencies in $D"
    else
        note "FAIL: build dependencies missing and build-gpudeps/deps.tar.xz not carried (run scripts/gpu.sh --prepare-deps here first)"
        exit 1
    fi
fi
# Our binaries see the carried libraries; python (torch) keeps the system's.
with_libs() { if [ -n "$RUN_LD" ]; then LD_LIBRARY_PATH="$RUN_LD${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"; else "$@"; fi; }

# ---- build (also when a later step finds no build: a machine that went cold is bare)
if has_step build || [ ! -x "$BUILD/modserve" ]; then
    GEN=()
    command -v ninja >/dev/null && GEN=(-G Ninja)
    [ -f "$BUILD/CMakeCache.txt" ] && GEN=()
    t0=$(date +%s)
    { cmake -S . -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DMODSERVE_CUDA=ON \
            -DCMAKE_CUDA_ARCHITECTURES="$ARCH" "${CMAKE_EXTRA[@]}" &&
      cmake --build "$BUILD" -j"$JOBS"; } >"$OUT/build.log" 2>&1
    rc=$?
    result build $rc "($(( $(date +%s) - t0 )) s, log build.log)"
    [ $rc -eq 0 ] || { tail -40 "$OUT/build.log"; cat "$SUMMARY"; exit 1; }
fi

# ---- ctest: every test, the gpu label included
if has_step test; then
    t0=$(date +%s)
    (cd "$BUILD" && with_libs ctest --output-on-failure -j4 --timeout 300) >"$OUT/ctest.log" 2>&1
    rc=$?
    result ctest $rc "($(( $(date +%s) - t0 )) s): $(grep -E 'tests passed|tests failed' "$OUT/ctest.log" | tail -1)"
    grep -E '\*\*\*|Failed|Not Run|Skipped' "$OUT/ctest.log" | grep -v '^[0-9]*% tests' | tee -a "$SUMMARY" | head -40
    for t in test_backend_ops_cuda test_cuda_kernels test_golden_cpu test_golden_cuda; do
        grep -E "^ *[0-9]+/[0-9]+ Test +#[0-9]+: $t " "$OUT/ctest.log" | tee -a "$SUMMARY"
    done
fi

# ---- compute-sanitizer on the CUDA op tests
sanitize() { # TOOL TEST [ARGS...]
    local tool=$1 name=$2; shift 2
    if [ ! -x "$BUILD/tests/$name" ]; then note "SKIP $tool $name: not built"; return; fi
    echo "==== compute-sanitizer --tool $tool $name $*" >>"$OUT/sanitizer.log"
    (cd "$BUILD" && with_libs timeout 150 compute-sanitizer --tool "$tool" --error-exitcode 9 \
        "./tests/$name" "$@") >>"$OUT/sanitizer.log" 2>&1
    local rc=$?
    result "$tool $name" $rc "$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer.log" | tail -1)"
}
if has_step sanitize; then
    : >"$OUT/sanitizer.log"
    if ! command -v compute-sanitizer >/dev/null; then
        note "SKIP sanitize: no compute-sanitizer"
    else
        for tool in memcheck racecheck; do
            sanitize $tool test_backend_ops --backend cuda
            sanitize $tool test_cuda_kernels
        done
    fi
fi

# ---- golden logits from transformers, then the golden tests against them
if has_step golden; then
    MODEL=/tmp/modserve-golden-tiny-s1-f32
    rm -rf "$MODEL"
    with_libs "$BUILD/modserve" model init --preset tiny --seed 1 --dtype f32 --out "$MODEL" \
        >"$OUT/golden/make_golden.log" 2>&1
    PYTHONUNBUFFERED=1 python3 tests/golden/make_golden.py --model "$MODEL" --out "$OUT/golden" \
        >>"$OUT/golden/make_golden.log" 2>&1
    rc=$?
    result make_golden $rc "$(tail -1 "$OUT/golden/make_golden.log")"
    if [ $rc -eq 0 ]; then
        cp "$OUT/golden/tiny_s1_logits.f32" "$OUT/golden/tiny_s1_inputs.json" tests/golden/
        for dev in cpu cuda; do
            (cd "$BUILD" && with_libs ./tests/test_golden_$dev $dev) >>"$OUT/golden/make_golden.log" 2>&1
            rc=$?
            result "golden $dev" $rc "$(grep "^test_golden_$dev:" "$OUT/golden/make_golden.log" | head -1)"
        done
    fi
    # Keep the file count down: the log's end rides in the summary.
    tail -25 "$OUT/golden/make_golden.log" >>"$SUMMARY"
    rm -f "$OUT/golden/make_golden.log"
fi

# ---- benchmarks: torch's first (its SDPA time is handed to ours), then ours
if has_step bench; then
    {
        echo "==== bench/kernels_torch.py ($(date -u +%FT%TZ))"
        PYTHONUNBUFFERED=1 timeout 240 python3 bench/kernels_torch.py
        echo "exit $?"
    } >"$OUT/bench_torch.tmp" 2>&1
    SDPA_MS=$(sed -n 's/^sdpa_causal_4k_ms=//p' "$OUT/bench_torch.tmp" | head -1)
    {
        echo "==== modserve bench kernels ($(date -u +%FT%TZ), commit $COMMIT)"
        (cd "$BUILD" && MS_BENCH_TORCH_SDPA_MS=${SDPA_MS:-0} with_libs timeout 420 ./modserve bench kernels)
        echo "exit $?"
        cat "$OUT/bench_torch.tmp"
    } >"$OUT/bench.txt" 2>&1
    rm -f "$OUT/bench_torch.tmp"
    rc=$(sed -n 's/^exit //p' "$OUT/bench.txt" | head -1)
    result "bench kernels" "${rc:-1}" "(bench.txt)"
    grep -E '^TARGET|^ceiling' "$OUT/bench.txt" | tee -a "$SUMMARY"
fi

note "end $(date -u +%FT%TZ): $([ $FAILED -eq 0 ] && echo 'ALL PASSED' || echo 'SOME FAILED')"
echo "================ summary"
cat "$SUMMARY"
exit $FAILED
