#!/bin/sh
# make lint: global symbols carry nsc_/nsci_, files stay within their size
# limits, and each folder includes only its own layer and the layers below
# it (DESIGN.md). Prints every problem; exits 1 if there is any.
lib=${1:-build/release/libnsc.a}
status=0
fail() { echo "lint: $*"; status=1; }

# 1. Symbols: every global defined in libnsc.a starts with nsc_ or nsci_.
if [ -f "$lib" ]; then
    bad=$(nm -g --defined-only "$lib" 2>/dev/null | awk 'NF == 3 {print $3}' |
          grep -v -E '^(nsc_|nsci_)' | grep -v -E '^(_Z|__cuda|__nv|__device_stub|_GLOBAL__|__sti____cudaRegisterAll|__fatbinwrap|_fatbin|DW\.ref\.__gxx_personality|\.)' | sort -u)
    [ -n "$bad" ] && fail "global symbols without the nsc_/nsci_ prefix: $(echo $bad | tr '\n' ' ')"
else
    fail "$lib not found (run make first)"
fi

# 2. Sizes: .c/.cu <= 800 lines, headers <= 400 lines.
for f in $(git ls-files '*.c' '*.cu' '*.cc' | grep -v '^tests/fixtures/'); do
    n=$(wc -l < "$f"); [ "$n" -gt 800 ] && fail "$f has $n lines (limit 800)"
done
for f in $(git ls-files '*.h' '*.cuh'); do
    n=$(wc -l < "$f"); [ "$n" -gt 400 ] && fail "$f has $n lines (limit 400)"
done

# 3. Layering: a folder's files include project headers only from the folders
# its row allows (public headers in include/ belong to their layer too).
allowed() {
    case $1 in
        util) echo "util nsc/base.h" ;;
        tensor) echo "util tensor nsc/base.h nsc/tensor.h nsc/ops nsc/io.h nsc/profile.h" ;;
        cuda) echo "util tensor cuda nsc/base.h nsc/tensor.h nsc/ops nsc/cuda.h" ;;
        autograd) echo "util tensor autograd nsc/base.h nsc/tensor.h nsc/ops nsc/io.h nsc/profile.h nsc/autograd.h" ;;
        nn) echo "util tensor autograd nn nsc/base.h nsc/tensor.h nsc/ops nsc/io.h nsc/profile.h nsc/autograd.h nsc/nn.h nsc/tokenizer.h nsc/module.h nsc/gpt2.h nsc/optim.h nsc/generate.h nsc/check.h" ;;
        graph|protocols) echo "ANY-BUT-CLI" ;;
        *) echo "ANY" ;;
    esac
}
for f in $(git ls-files '*.c' '*.h' '*.cu' '*.cc' | grep -E '^(util|tensor|cuda|autograd|nn|graph|protocols)/'); do
    dir=${f%%/*}
    rules=$(allowed "$dir")
    [ "$rules" = ANY ] && continue
    for inc in $(grep -E '^#include "' "$f" | sed -E 's/#include "([^"]+)".*/\1/'); do
        case $inc in */*) ;; *) inc="$dir/$inc" ;; esac
        [ "$inc" = "nsc.h" ] && { [ "$rules" = ANY-BUT-CLI ] || fail "$f includes the umbrella nsc.h"; continue; }
        top=${inc%%/*}
        if [ "$rules" = ANY-BUT-CLI ]; then
            [ "$top" = cli ] && fail "$f includes $inc (cli is above graph)"
            continue
        fi
        ok=0
        for r in $rules; do
            case $inc in "$r"|"$r"/*|"$r"*) ok=1 ;; esac
        done
        [ $ok = 1 ] || fail "$f includes $inc: $dir/ may include only: $rules"
    done
done
# 4. The same-named source macros cover every graph-building call.
if command -v python3 >/dev/null 2>&1; then
    python3 tools/gen_source_macros.py --check || status=1
fi
[ $status = 0 ] && echo "lint: ok"
exit $status
