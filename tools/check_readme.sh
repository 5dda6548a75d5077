#!/bin/sh
# Compiles and runs every README snippet marked <!-- readme:NAME:begin/end -->
# against the built library: once on the model directory given (default: the
# tiny GPT-2 fixture, which every checkout has) and once with no argument, as
# a reader runs it (the snippet's own default, the shipped models/induction),
# so the README stays true for both. Run from the repository root.
# NSC_LDLIBS: the libraries the build links (make test passes its own).
set -e
build=${1:-build/release}
model=${2:-tests/fixtures/gpt2_tiny}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
names=$(sed -n 's/^<!-- readme:\([a-z0-9_]*\):begin -->$/\1/p' README.md)
for name in $names; do
    awk -v n="$name" '$0 == "<!-- readme:" n ":begin -->" {f=1; next}
                      $0 == "<!-- readme:" n ":end -->" {f=0} f' README.md | grep -v '^```' > "$tmp/$name.c"
    cc -std=c11 -Wall -Werror -Wno-unused-result -o "$tmp/$name" "$tmp/$name.c" -Iinclude \
        "$build/libnsc.a" ${NSC_LDLIBS:--lopenblas -lm -pthread}
    "$tmp/$name" "$model" > "$tmp/$name.out"
    echo "check_readme: $name ($model): $(head -1 "$tmp/$name.out")"
    "$tmp/$name" > "$tmp/$name.default.out"
    echo "check_readme: $name (no argument): $(head -1 "$tmp/$name.default.out")"
done
