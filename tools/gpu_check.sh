#!/bin/sh
# The one GPU check of the CUDA backend (docs/CUDA.md): run `sh
# tools/gpu_check.sh prepare` here (builds what the check runs and packs it,
# with the shared libraries a bare machine may lack, into build/gpu-carry),
# then on the borrowed GPU machine `sh tools/gpu_check.sh` with
# build/gpu-carry carried. Logs go to $OUT.
#
# What travels is limited to 64 MiB (the tracked tree, ~19 MiB, included),
# so the carried build is lean: sm_90 code only (the H200; the default build
# also has sm_80), the portable GEMM instead of OpenBLAS (36 MiB of library;
# the CPU side of the CUDA tests only computes reference values), stripped
# binaries, libnsc.a without debug sections for the link test, all in one
# gzip'd tar unpacked on arrival.
set -u
cd "$(dirname "$0")/.."
B=build/gpu-carry
SRC=build/release-noblas-cuda-sm90

if [ "${1:-run}" = prepare ]; then
    make -j2 CUDA=1 BLAS=none CUDA_ARCHS=90 WERROR=1 "$SRC/tests/nsc_tests" \
        "$SRC/bench/bench_cuda" "$SRC/nsc" || exit 1
    rm -rf "$B"
    P=build/gpu-pack
    rm -rf "$P"
    mkdir -p "$P/tests" "$P/bench" "$P/libs" "$B"
    strip -o "$P/tests/nsc_tests" "$SRC/tests/nsc_tests" &&
        strip -o "$P/bench/bench_cuda" "$SRC/bench/bench_cuda" &&
        strip -o "$P/nsc" "$SRC/nsc" &&
        strip --strip-debug -o "$P/libnsc.a" "$SRC/libnsc.a" || exit 1
    # Criterion and its dependencies; not libc, not the CUDA libraries (the
    # GPU machine's own are used).
    for bin in "$P/tests/nsc_tests" "$P/bench/bench_cuda" "$P/nsc"; do
        ldd "$bin" | awk '/=> \// {print $3}' |
            grep -v -E 'lib(c|m|dl|pthread|rt|cuda|cudart|cublas|cublasLt)\.so|ld-linux' |
            while read -r lib; do cp -L "$lib" "$P/libs/"; done
    done
    # What was built: the run prints it, so that a stale carry shows.
    { git rev-parse HEAD; git status --short | sha1sum | cut -c1-12; date -u; } > "$P/built_from.txt"
    tar -C "$P" -czf "$B/carry.tar.gz" . || exit 1
    rm -rf "$P"
    carry=$(du -sb "$B" | cut -f1)
    tree=$(git ls-files -z | du --files0-from=- -cb | tail -1 | cut -f1)
    echo "gpu_check: carry $((carry >> 20)) MiB + tracked tree $((tree >> 20)) MiB (limit 64)"
    if [ $((carry + tree)) -gt $((62 << 20)) ]; then
        echo "gpu_check: too large to travel; carry less" >&2
        exit 1
    fi
    echo "prepared: carry $B (run: sh tools/gpu_check.sh)"
    exit 0
fi

OUT=${OUT:-/tmp/nsc_gpu_check}
mkdir -p "$OUT"
if [ -f "$B/carry.tar.gz" ] && ! tar -C "$B" -xzf "$B/carry.tar.gz"; then
    echo "gpu_check: cannot unpack $B/carry.tar.gz" | tee "$OUT/env.txt"
    exit 1
fi
export NSC_NO_DEPS=1 NSC_BUILD="$B" PYTHONUNBUFFERED=1
SYSTEM_LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
# Carried libraries the machine has itself (glibc's, libstdc++, zlib, ...)
# are dropped: only the missing ones (Criterion and its own) are used, so the
# machine's Python and torch load their own.
for lib in "$B"/libs/*; do
    if [ -f "$lib" ] && ldconfig -p | awk '{print $1}' | grep -qxF "$(basename "$lib")"; then
        rm -f "$lib"
    fi
done
# The CUDA 13 runtime and cuBLAS: the toolkit's, or a PyTorch wheel's.
cudalibs=$(find /usr/local/cuda*/lib64 /usr/lib /opt /usr/local/lib /root \
    -name 'libcublas.so.13*' 2>/dev/null | head -1)
extra=""
[ -n "$cudalibs" ] && extra=$(dirname "$cudalibs")
for lib in libcudart.so.13 libcublasLt.so.13; do
    f=$(find /usr/local/cuda*/lib64 /usr/lib /opt /usr/local/lib /root -name "$lib*" 2>/dev/null | head -1)
    [ -n "$f" ] && extra="$extra:$(dirname "$f")"
done
export LD_LIBRARY_PATH="$PWD/$B/libs:$extra:${LD_LIBRARY_PATH:-}"
# cuda_link::a_program_linked_with_libnsc_runs_a_cuda_op links $B/libnsc.a
# (built without OpenBLAS) with this machine's cc against its CUDA 13
# libraries, named by version since a wheel ships no unversioned .so.
ldirs=$(echo "$extra" | tr ':' '\n' | sed -n 's/^\(.\)/-L\1/p' | tr '\n' ' ')
export NSC_LINK_FLAGS="-lm -pthread $ldirs -l:libcublas.so.13 -l:libcudart.so.13 -lstdc++"
{
    date
    echo "carry built from: $(tr '\n' ' ' < "$B/built_from.txt" 2>/dev/null)"
    echo "tree here: $(git rev-parse HEAD 2>/dev/null)"
    echo "carried libraries used: $(ls "$B/libs" | tr '\n' ' ')"
    "$B/tests/nsc_tests" --list > /dev/null 2>&1 || echo "CANNOT START nsc_tests"
    nvidia-smi || echo "nvidia-smi missing"
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    echo "NSC_LINK_FLAGS=$NSC_LINK_FLAGS"
    ldd "$B/tests/nsc_tests" | grep -E 'not found|cuda|cublas|criterion'
} > "$OUT/env.txt" 2>&1
# The time limits sum to 425 s, under the run's timeout_s=450: a hang in one
# step still leaves the others their time. The CUDA suites first (what this
# machine is for; every one has passed on the CUDA emulator), then the rest
# of the suite, which holds the other tests with device rows (optimizer
# lists, clipping, profiling, norms, the tool, graph texts).
timeout 120 "$B/tests/nsc_tests" --filter 'cuda*/*' --jobs 1 --verbose > "$OUT/test_cuda.log" 2>&1
echo "rc=$?" >> "$OUT/test_cuda.log"
timeout 60 "$B/tests/nsc_tests" --filter '!(cuda*)/*' --jobs 8 --verbose > "$OUT/test_all.log" 2>&1
echo "rc=$?" >> "$OUT/test_all.log"
# A device fault surfaces at the next check, under another kernel's name:
# the first failed CUDA tests run again one launch at a time, so that the
# fault names its kernel.
grep -h -o -E "^\[FAIL\] [a-z_0-9]+::[a-z_0-9]+" "$OUT/test_cuda.log" |
    sed 's/^\[FAIL\] //; s|::|/|' | sort -u | head -n 3 | while read -r t; do
    CUDA_LAUNCH_BLOCKING=1 timeout 15 "$B/tests/nsc_tests" --filter "$t" --jobs 1 --verbose \
        >> "$OUT/test_blocking.log" 2>&1
done
timeout 130 "$B/bench/bench_cuda" > "$OUT/bench_cuda.log" 2>&1
echo "rc=$?" >> "$OUT/bench_cuda.log"
rm -f "$OUT/ratios.txt"
export LD_LIBRARY_PATH="$SYSTEM_LD_LIBRARY_PATH"
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    timeout 70 python3 bench/compare_cuda.py > "$OUT/compare_cuda.log" 2>&1
    # nsc's median over torch eager's, case by case (the issue's ratio).
    # A result line ends "<median_ms> - -" (the shape may have a space in it).
    awk '$(NF-2) ~ /^[0-9]+\.[0-9]+$/ && $(NF-1) == "-" && $(NF-2) > 0 {
             split($1, p, "."); t[p[2] "." p[3]] = $(NF-2) }
         END { for (c in t) { split(c, q, "."); if (q[2] == "cuda") {
                   for (d in t) { split(d, r, "."); if (r[1] == q[1] && r[2] != "cuda")
                       printf "ratio %s nsc/%s %.3f\n", q[1], r[2] == "torch" ? "eager" : r[2],
                              t[c] / t[d] } } } }' \
        "$OUT/bench_cuda.log" "$OUT/compare_cuda.log" | sort > "$OUT/ratios.txt"
fi
grep -h -E "^\[(FAIL|====\] Synthesis)" "$OUT/test_cuda.log" "$OUT/test_all.log"
grep -E "^(name|gpt2_small|# gpt2|# cuda|bench_cuda|rc=)" "$OUT/bench_cuda.log"
sed -n '/^# profile of/,/^total /p' "$OUT/bench_cuda.log" | head -n 16 # where a step's time goes
grep -v -E "^(name|gpt2_small|# |rc=|bench_cuda)|^[a-z_0-9]+ +cuda +[0-9]|^op |^total " "$OUT/bench_cuda.log" | tail -n 5
if [ -f "$OUT/ratios.txt" ]; then cat "$OUT/ratios.txt"; fi
