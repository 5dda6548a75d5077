#!/bin/sh
# Installs (with apt-get) the Debian packages the build and tests need, only
# those missing; silent when everything is there. NSC_NO_DEPS=1 skips it.
[ "${NSC_NO_DEPS:-0}" = 1 ] && exit 0
want="libopenblas-dev libcriterion-dev pkg-config graphviz valgrind clang libclang-rt-14-dev g++"
missing=""
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
command -v apt-get >/dev/null 2>&1 || { echo "deps: missing:$missing (no apt-get here; install them or set NSC_NO_DEPS=1)" >&2; exit 1; }
SUDO=""
[ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1 && SUDO=sudo
echo "deps: installing$missing"
$SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
