#!/bin/sh
# make demo: the shipped induction model (models/induction, or $NSC_MODEL)
# generates from a text prompt, then the logit lens and the activation
# patching examples print their tables and write their heatmaps, and the
# patching graph text runs through `nsc run`. Called by the Makefile after
# `make all` as: sh tools/demo.sh BUILD_DIR (default build/release).
set -e
build=${1:-build/release}
model=${NSC_MODEL:-models/induction}
out=${NSC_DEMO_OUT:-$build/demo}

for f in "$build/nsc" "$build/examples/logit_lens" "$build/examples/patching"; do
    [ -x "$f" ] || { echo "demo: $f is missing: run make all first" >&2; exit 1; }
done
[ -f "$model/model.safetensors" ] || {
    echo "demo: no model in $model (config.json, model.safetensors, vocab.json);" \
         "set NSC_MODEL to a model directory" >&2
    exit 1
}
mkdir -p "$out"
start=$(date +%s.%N)

echo "== nsc generate: the model continues \"qzkfebmw|\" by copying the string"
"$build/nsc" generate "$model" --prompt "qzkfebmw|" --max-new-tokens 9
echo

echo "== logit lens (examples/logit_lens.c): the guess after each layer"
"$build/examples/logit_lens" "$model" --svg "$out/logit_lens.svg"
echo

echo "== activation patching (examples/patching.c): where the copied letter lives"
"$build/examples/patching" "$model" --svg "$out/patching.svg"
echo

echo "== the same patching as a graph text: nsc run --graph examples/graphs/patching.json"
"$build/nsc" run "$model" --graph examples/graphs/patching.json \
    --save "$out/patching.safetensors" | head -n 6
echo "   ..."
echo

end=$(date +%s.%N)
echo "pictures: $out/logit_lens.svg, $out/patching.svg (open them in a browser)"
echo "saved values: $out/patching.safetensors (PyTorch, numpy: safetensors.numpy.load_file)"
awk -v s="$start" -v e="$end" 'BEGIN { printf "demo done in %.1f s\n", e - s }'
