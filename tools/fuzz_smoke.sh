#!/bin/sh
# Fuzz smoke test (CI): builds and runs every libFuzzer target in fuzz/
# (fuzz/fuzz_*.c) for SECONDS each through tools/fuzz.sh, prints each
# target's final libFuzzer stats, and fails when any target crashed, leaked,
# timed out, hit a UB report or did not build.
#   tools/fuzz_smoke.sh SECONDS        (CI uses 30)
# Crash inputs are kept in build/fuzz/crashes/ (see fuzz/README.md).
set -u
seconds=${1:?usage: tools/fuzz_smoke.sh SECONDS}
cd "$(dirname "$0")/.." || exit 2
[ -x tools/fuzz.sh ] || [ -f tools/fuzz.sh ] || { echo "fuzz_smoke: tools/fuzz.sh is missing" >&2; exit 2; }

failed=""
ran=0
mkdir -p build/fuzz/crashes
for src in fuzz/fuzz_*.c; do
    [ -f "$src" ] || continue
    target=${src#fuzz/fuzz_}
    target=${target%.c}
    ran=$((ran + 1))
    before=$(ls build/fuzz/crashes/"$target"-* 2>/dev/null | wc -l)
    log=build/fuzz/smoke-$target.log
    echo "=== fuzz $target: ${seconds}s"
    # fuzz.sh filters libFuzzer's output and exits 0 whatever the run did:
    # judge the run by its lines and by new artifacts.
    sh tools/fuzz.sh "$target" "$seconds" >"$log" 2>&1
    status=$?
    grep -E '^(stat::|Done|#[0-9]+ *DONE)' "$log"
    after=$(ls build/fuzz/crashes/"$target"-* 2>/dev/null | wc -l)
    problem=""
    if [ "$status" -ne 0 ]; then
        problem="tools/fuzz.sh exited with $status"
    elif ! grep -q '^stat::number_of_executed_units' "$log"; then
        problem="no final stats (the target did not run to the end)"
    elif grep -qE 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)|runtime error:|deadly signal|SUMMARY: ' "$log"; then
        problem="a sanitizer or libFuzzer reported an error"
    elif [ "$after" -gt "$before" ]; then
        problem="new crash inputs in build/fuzz/crashes/"
    fi
    if [ -n "$problem" ]; then
        echo "fuzz $target: FAILED: $problem" >&2
        grep -vE '^(stat::|Done|#[0-9]+ *DONE)' "$log" | tail -n 40 >&2
        failed="$failed $target"
    fi
done

if [ "$ran" -eq 0 ]; then
    echo "fuzz_smoke: no fuzz/fuzz_*.c targets" >&2
    exit 2
fi
if [ -n "$failed" ]; then
    echo "fuzz_smoke: failed:$failed" >&2
    exit 1
fi
echo "fuzz_smoke: $ran targets, ${seconds}s each: no crash, leak, UB or timeout"
