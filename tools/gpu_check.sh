#!/bin/sh
# The one GPU check of the CUDA backend (docs/CUDA.md): run `sh
# tools/gpu_check.sh prepare` here (builds with make CUDA=1 and copies the
# shared libraries the binaries need that a bare machine may lack into
# build/release-cuda/libs), then on the borrowed GPU machine `sh
# tools/gpu_check.sh` with build/release-cuda carried. Logs go to $OUT.
set -u
cd "$(dirname "$0")/.."
B=build/release-cuda

if [ "${1:-run}" = prepare ]; then
    make -j2 CUDA=1 WERROR=1 all test-bin bench-bins || exit 1
    mkdir -p "$B/libs"
    # Criterion, OpenBLAS and their dependencies; not libc, not the CUDA
    # libraries (too large to carry: the GPU machine's own are used).
    for bin in "$B/tests/nsc_tests" "$B/bench/bench_cuda"; do
        ldd "$bin" | awk '/=> \// {print $3}' |
            grep -v -E 'lib(c|m|dl|pthread|rt|cuda|cudart|cublas|cublasLt)\.so|ld-linux' |
            while read -r lib; do cp -L "$lib" "$B/libs/"; done
    done
    rm -f "$B/tests/"*.o "$B/bench/"*.o
    du -sh "$B" "$B/libs"
    echo "prepared: carry $B (run: sh tools/gpu_check.sh)"
    exit 0
fi

OUT=${OUT:-/tmp/nsc_gpu_check}
mkdir -p "$OUT"
export NSC_NO_DEPS=1 NSC_BUILD="$B"
# The CUDA 13 runtime and cuBLAS: the toolkit's, or a PyTorch wheel's.
cudalibs=$(find /usr/local/cuda*/lib64 /usr/lib /opt /usr/local/lib /root \
    -name 'libcublas.so.13*' 2>/dev/null | head -1)
extra=""
[ -n "$cudalibs" ] && extra=$(dirname "$cudalibs")
for lib in libcudart.so.13 libcublasLt.so.13; do
    f=$(find /usr/local/cuda*/lib64 /usr/lib /opt /usr/local/lib /root -name "$lib*" 2>/dev/null | head -1)
    [ -n "$f" ] && extra="$extra:$(dirname "$f")"
done
export LD_LIBRARY_PATH="$PWD/$B/libs:$extra:${LD_LIBRARY_PATH:-}"
{
    date
    nvidia-smi || echo "nvidia-smi missing"
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    ldd "$B/tests/nsc_tests" | grep -E 'not found|cuda|cublas|criterion|openblas'
} > "$OUT/env.txt" 2>&1
# The CUDA suites first (they are what this machine is for), then the rest.
timeout 300 "$B/tests/nsc_tests" --filter 'cuda*/*' --jobs 1 --verbose > "$OUT/test_cuda.log" 2>&1
echo "rc=$?" >> "$OUT/test_cuda.log"
timeout 180 "$B/bench/bench_cuda" > "$OUT/bench_cuda.log" 2>&1
echo "rc=$?" >> "$OUT/bench_cuda.log"
if python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
    timeout 120 python3 bench/compare_cuda.py > "$OUT/compare_cuda.log" 2>&1
fi
tail -3 "$OUT/test_cuda.log" "$OUT/bench_cuda.log"
