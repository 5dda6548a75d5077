#!/bin/sh
# Reproduces the shipped model: reruns examples/train_induction into a
# temporary directory with the recorded command (seed, steps, 2 threads) and
# compares its final loss with the one recorded in models/induction/README.md
# (within 5%), then its accuracies with the same bounds as tests/test_induction.c.
# Not part of `make test`: it trains for a few minutes (docs/SHIPPED_MODEL.md).
# Usage: sh tools/check_induction.sh [BUILD_DIR]   (default build/release)
set -eu
build=${1:-build/release}
trainer="$build/examples/train_induction"
readme=models/induction/README.md
[ -x "$trainer" ] || { echo "check_induction: $trainer is missing: run make first" >&2; exit 1; }
[ -f "$readme" ] || { echo "check_induction: $readme is missing" >&2; exit 1; }

# The recorded run: "final loss: X" and "command: ..." lines of the README.
want=$(sed -n 's/^final loss: *\([0-9.]*\).*/\1/p' "$readme" | head -n 1)
[ -n "$want" ] || { echo "check_induction: no 'final loss:' line in $readme" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
start=$(date +%s)
NSC_NUM_THREADS=${NSC_NUM_THREADS:-2} "$trainer" "$tmp/model" | tee "$tmp/log"
end=$(date +%s)

got=$(sed -n 's/^final loss: *\([0-9.]*\).*/\1/p' "$tmp/log" | head -n 1)
copy=$(sed -n 's/^second copy accuracy: *\([0-9.]*\)%.*/\1/p' "$tmp/log" | head -n 1)
first=$(sed -n 's/^first copy accuracy: *\([0-9.]*\)%.*/\1/p' "$tmp/log" | head -n 1)
[ -n "$got" ] && [ -n "$copy" ] && [ -n "$first" ] ||
    { echo "check_induction: the run printed no final loss or accuracies" >&2; exit 1; }
awk -v g="$got" -v w="$want" -v c="$copy" -v f="$first" -v s="$((end - start))" 'BEGIN {
    d = (g - w) / w; if (d < 0) d = -d
    printf "check_induction: final loss %s, recorded %s (%.2f%% apart, limit 5%%); " \
           "second copy %s%%, first copy %s%%; %d s\n", g, w, 100 * d, c, f, s
    exit (d <= 0.05 && c >= 90 && f <= 15) ? 0 : 1
}'
