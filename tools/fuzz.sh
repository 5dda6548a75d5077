#!/bin/sh
# Builds one libFuzzer target against the library compiled with clang in
# MODE=fuzz, then runs it for SECONDS and prints libFuzzer's final stats.
#   tools/fuzz.sh TARGET SECONDS [extra libFuzzer flags...]
#   TARGET: json | safetensors | bpe | graph_text | config
#           (fuzz/fuzz_TARGET.c, seeds in fuzz/seeds/TARGET)
# The growing corpus is kept in fuzz/corpus-TARGET/ (ignored by git); crashes
# are written to build/fuzz/crashes/. Run from the repository root.
set -e
target=${1:?usage: tools/fuzz.sh TARGET SECONDS}
seconds=${2:-60}
shift 2 || shift $#
[ -f "fuzz/fuzz_$target.c" ] || { echo "fuzz.sh: no fuzz/fuzz_$target.c" >&2; exit 2; }
command -v clang >/dev/null || { echo "fuzz.sh: clang not found (make deps installs it)" >&2; exit 2; }

jobs=$(nproc 2>/dev/null || echo 2)
# Abort on the first UB report: the Makefile's fuzz mode leaves recovery on.
mkdir -p build
make --no-print-directory -j"$jobs" MODE=fuzz CC=clang \
    EXTRA_CFLAGS=-fno-sanitize-recover=undefined lib >build/fuzz-make.log 2>&1 ||
    { tail -n 30 build/fuzz-make.log; echo "fuzz.sh: building the library failed" >&2; exit 1; }

out=build/fuzz/fuzz_$target
mkdir -p build/fuzz/crashes "fuzz/corpus-$target"
clang -std=c11 -D_GNU_SOURCE -g -O1 -Iinclude -I. -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    "fuzz/fuzz_$target.c" build/fuzz/libnsc.a -lopenblas -lm -pthread -o "$out"

echo "fuzz.sh: running $out for ${seconds}s"
NSC_SOURCE_DIR=. NSC_NUM_THREADS=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    "$out" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=4096 \
    -artifact_prefix=build/fuzz/crashes/"$target"- "$@" \
    "fuzz/corpus-$target" "fuzz/seeds/$target" 2>&1 |
    grep -E '^(stat::|Done|#[0-9]+ *DONE|==[0-9]+==|SUMMARY|.*(ERROR|crash|leak|timeout|deadly))' || true
