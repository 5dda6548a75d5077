// The block layout the list launches share (cuda/op_optim.cu,
// cuda/op_clip.cu): tensor j of a list gets ceil(numel[j] / LIST_CHUNK)
// consecutive blocks from block_start[j], and a block finds its tensor by a
// binary search of the starts. The list travels in the kernel's arguments.
#ifndef NSC_CUDA_LIST_LAUNCH_CUH
#define NSC_CUDA_LIST_LAUNCH_CUH

#include "cuda/cuda_impl.h"

namespace {

const int LIST_CHUNK = 4096; // elements a block

// Fills block_start[0..n] for tensors of numel[0..n) and returns the total.
inline int list_block_starts(const int64_t *numel, int n, int *block_start) {
    int next = 0;
    for (int j = 0; j < n; j++) {
        block_start[j] = next;
        next += (int)((numel[j] + LIST_CHUNK - 1) / LIST_CHUNK);
    }
    block_start[n] = next;
    return next;
}

// This block's tensor (the last j with block_start[j] <= blockIdx.x) and
// its element range [*begin, *end).
__device__ inline int list_slot(const int *block_start, const int64_t *numel, int n, int64_t *begin,
                                int64_t *end) {
    int b = (int)blockIdx.x, lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (block_start[mid] <= b) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    *begin = (int64_t)(b - block_start[lo]) * LIST_CHUNK;
    *end = *begin + LIST_CHUNK < numel[lo] ? *begin + LIST_CHUNK : numel[lo];
    return lo;
}

} // namespace

#endif
