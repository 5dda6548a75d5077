#!/bin/sh
# Installs nsc into a temporary prefix and builds the README's example
# against it with pkg-config, then runs it: the install and the README stay true.
set -e
mode=${MODE:-release}
blas=${BLAS:-openblas}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
make --no-print-directory -s MODE="$mode" BLAS="$blas" install PREFIX="$tmp/prefix" >/dev/null
# The README's example is the code block between the example markers.
awk '/<!-- example:begin -->/{f=1;next}/<!-- example:end -->/{f=0}f' README.md | grep -v '^```' > "$tmp/example.c"
if [ ! -s "$tmp/example.c" ]; then
    echo "check_install: no example found in README.md" >&2
    exit 1
fi
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
cc -std=c11 -o "$tmp/example" "$tmp/example.c" $(pkg-config --cflags --libs nsc)
"$tmp/example" > "$tmp/out.txt"
if ! grep -q "grad" "$tmp/out.txt"; then
    echo "check_install: unexpected output:" >&2
    cat "$tmp/out.txt" >&2
    exit 1
fi
# The README's plain command line works too (with the default build).
if [ "$mode" = release ] && [ "$blas" != none ]; then
    make --no-print-directory -s libnsc.a >/dev/null
    cc "$tmp/example.c" -o "$tmp/example2" -Iinclude -L. -lnsc -lopenblas -lm
    "$tmp/example2" > /dev/null
fi
echo "check_install: installed into a temporary prefix; the README example builds (pkg-config and -L.) and runs"
