#!/bin/sh
# Compiles and runs every README snippet marked <!-- readme:NAME:begin/end -->
# against the built library, on the model directory given (default: the tiny
# GPT-2 fixture, which every checkout has), so the README stays true.
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
    echo "check_readme: $name: $(head -1 "$tmp/$name.out")"
done
