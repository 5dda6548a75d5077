#!/bin/sh
# Runs the Criterion suite under valgrind's memcheck on a subset that
# finishes in under 10 minutes on 2 cores (`make valgrind` calls it with the
# MODE=debug binary). Exits non-zero on any memcheck error or definite leak
# in the test binary or the test processes it starts, and on failing tests.
#   tools/valgrind.sh BINARY
#
# The subset: every suite the binary lists, minus
#   SKIP_SUITES: numerical suites whose work is arithmetic over large
#     tensors (PyTorch case tables, gradient checks, matmul layouts, GPT-2 and
#     generation against transformers, training to 95%, the shipped
#     model's accuracy checks), and the
#     allocation-failure sweeps of the reliability suites: valgrind adds
#     nothing there that ASan does not, at 30-50x the time;
#   SKIP_TESTS, in the suites kept: the other allocation-failure sweeps
#     (they count blocks themselves), large-tensor and thread-count tests,
#     and op_edges' exact int64 -> f32 rounding check (valgrind's CPU
#     emulation converts through double, rounding twice: 2^54 + 2^30 + 1
#     becomes 2^54 there, 2^54 + 2^31 on the machine and in torch).
# One valgrind run per suite, two at a time (Criterion's extended-glob
# filter grows slow with many alternatives over "suite/test"; one negation
# over the test name stays cheap). Override the lists through the
# environment. Logs: build/valgrind/<suite>/vg.<pid>.log.
set -u
bin=${1:?usage: tools/valgrind.sh BINARY}
cd "$(dirname "$0")/.." || exit 2
command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind not found (make deps)" >&2; exit 2; }
[ -x "$bin" ] || { echo "valgrind.sh: $bin is not built" >&2; exit 2; }

SKIP_SUITES=${SKIP_SUITES:-"cases gradcheck matmul_values optim_training graph_ops generate classic classic_shipped
    gpt2 induction reliability_oom reliability_gpt2"}
SKIP_TESTS=${SKIP_TESTS:-"*out_of_memory*|*oom_sweep*|*large*|*at_scale|*spread_over_threads|\
*across_the_pool|*depend_on_threads*|statistics*|bpe_round_trips*|ops_from*|gpt2_forwards*|\
copy_to_keeps_int64_exact*"}

logs=build/valgrind
rm -rf "$logs"
mkdir -p "$logs"
start=$(date +%s)

suites=$("$bin" --list 2>/dev/null | sed -n 's/^\([A-Za-z0-9_]*\): [0-9]* tests*$/\1/p')
[ -n "$suites" ] || { echo "valgrind.sh: $bin --list gave no suites" >&2; exit 2; }
keep=""
for s in $suites; do
    case " $(echo $SKIP_SUITES) " in
        *" $s "*) ;;
        *) keep="$keep $s" ;;
    esac
done

# One suite under valgrind; prints "suite status" for the summary. System
# programs a test may start (graphviz's dot for the DOT exports) are not
# traced: their leaks are not ours.
run_suite() {
    mkdir -p "$logs/$1"
    NSC_SOURCE_DIR=. valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite \
        --error-exitcode=1 --trace-children=yes --trace-children-skip='/usr/*,/bin/*,/sbin/*' \
        --suppressions=tools/valgrind.supp --num-callers=30 --log-file="$logs/$1/vg.%p.log" \
        "$bin" --jobs 1 --filter "$1/!($SKIP_TESTS)" >"$logs/$1/run.txt" 2>&1
    echo "$1 $?"
}

# Two suites at a time.
results=$logs/results.txt
: >"$results"
set -- $keep
while [ $# -gt 0 ]; do
    run_suite "$1" >>"$results" &
    if [ $# -gt 1 ]; then
        run_suite "$2" >>"$results" &
        shift
    fi
    shift
    wait
done

failed=$(awk '$2 != 0 {print $1}' "$results")
bad=$(grep -lE 'ERROR SUMMARY: [1-9]|definitely lost: [1-9]' "$logs"/*/vg.*.log 2>/dev/null)
for log in $bad; do
    echo "=== $log" >&2
    sed -n '/Command:/p;/Invalid\|uninitialised\|definitely lost in\|Mismatched\|overlap/,/^==[0-9]*== $/p' \
        "$log" >&2
done
for s in $failed; do
    echo "=== suite $s failed under valgrind:" >&2
    grep -E '^\[(FAIL|----)\]|Synthesis' "$logs/$s/run.txt" | tail -n 20 >&2
done
tests=$(cat "$logs"/*/run.txt | sed -n 's/.*Tested: \([0-9]*\).*/\1/p' | awk '{s += $1} END {print s}')
echo "valgrind.sh: $(echo $keep | wc -w) suites, $tests tests, $(ls "$logs"/*/vg.*.log | wc -l)" \
     "processes in $(($(date +%s) - start)) s; $(echo "$bad" | grep -c .) with memcheck errors," \
     "$(echo "$failed" | grep -c .) suites failing"
[ -z "$bad" ] && [ -z "$failed" ]
