#!/bin/sh
# Runs every benchmark program built by `make bench` (bench/bench_*.c, built
# into <dir>/bench/) and prints their tables; each also appends JSON lines to
# bench/results.jsonl (see bench/README.md). Usage: bench/run.sh [build dir]
dir=${1:-build/bench}
status=0
found=0
for bin in "$dir"/bench/bench_* "$dir"/bench_*; do
    case $bin in *.o | *.d) continue ;; esac
    [ -f "$bin" ] && [ -x "$bin" ] || continue
    found=1
    echo "== $(basename "$bin")"
    "$bin" || { echo "bench/run.sh: $bin failed" >&2; status=1; }
done
[ $found = 1 ] || { echo "bench/run.sh: no bench_* programs under $dir (run make bench)" >&2; exit 1; }
exit $status
