// Device helpers the reduction kernels share (cuda/op_reduce.cu, the
// warp-per-output and fused kernels; cuda/op_reduce_split.cu, few outputs
// over many elements; cuda/op_reduce_cols.cu, sums down columns): warp sums and maxima, loads and
// stores in any dtype, max/min's (value, position) order and norm's terms. .cu files only.
#ifndef NSC_CUDA_REDUCE_DEVICE_CUH
#define NSC_CUDA_REDUCE_DEVICE_CUH

#include <math.h>

#include "cuda/cuda_impl.h"
#include "tensor/norm_terms.h"

namespace {

const int WARPS = 8; // warps per block: one output (row) each

__device__ inline double warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, o);
    }
    return v;
}
__device__ inline int64_t warp_sum_i(int64_t v) {
    for (int o = 16; o > 0; o >>= 1) {
        v = (int64_t)((uint64_t)v + (uint64_t)__shfl_xor_sync(0xffffffffu, v, o));
    }
    return v;
}
// Max where NaN wins (as the CPU's logsumexp max).
__device__ inline double warp_max_nan(double v) {
    for (int o = 16; o > 0; o >>= 1) {
        double w = __shfl_xor_sync(0xffffffffu, v, o);
        v = (isnan(v) || v >= w) ? v : w;
        v = isnan(w) ? w : v;
    }
    return v;
}
// norm's terms (tensor/norm_terms.h, shared with the CPU) and the warp's
// max / min of |x| where NaN wins.
__device__ inline double warp_pick_abs(double v, bool max) {
    for (int o = 16; o > 0; o >>= 1) {
        v = nsci_norm_pick_abs(v, __shfl_xor_sync(0xffffffffu, v, o), max);
    }
    return v;
}
template <typename T> __device__ T warp_max(T v) {
    for (int o = 16; o > 0; o >>= 1) {
        T w = __shfl_xor_sync(0xffffffffu, v, o);
        v = w > v ? w : v;
    }
    return v;
}

template <typename T> __device__ T load_as(const char *p, int dtype, int64_t off) {
    switch (dtype) {
        case NSC_F32:
            return (T)((const float *)p)[off];
        case NSC_F64:
            return (T)((const double *)p)[off];
        case NSC_I64:
            return (T)((const int64_t *)p)[off];
        default:
            return (T)(((const uint8_t *)p)[off] != 0);
    }
}

__device__ inline void store_as(char *p, int dtype, int64_t off, double v, int64_t iv,
                                bool integer) {
    switch (dtype) {
        case NSC_F32:
            ((float *)p)[off] = integer ? (float)iv : (float)v;
            break;
        case NSC_F64:
            ((double *)p)[off] = integer ? (double)iv : v;
            break;
        case NSC_I64:
            ((int64_t *)p)[off] = integer ? iv : (int64_t)v;
            break;
        default:
            ((uint8_t *)p)[off] = integer ? iv != 0 : v != 0;
    }
}

template <typename T> __device__ bool is_nan(T v) {
    return v != v;
}

// (value, position) pairs of max/min: NaN first, then the better value,
// then the lower position; pos < 0 is "none yet".
template <typename T> struct pick {
    T v;
    int64_t i;
};
template <typename T> __device__ bool takes(pick<T> a, pick<T> b, bool max) {
    if (a.i < 0) {
        return false;
    }
    if (b.i < 0) {
        return true;
    }
    bool an = is_nan(a.v), bn = is_nan(b.v);
    if (an != bn) {
        return an;
    }
    if (an || a.v == b.v) {
        return a.i < b.i;
    }
    return max ? a.v > b.v : a.v < b.v;
}

inline int warp_blocks(int64_t n) {
    return (int)((n + WARPS - 1) / WARPS);
}

} // namespace

// Few outputs over many elements: every reduction kind in two launches
// (cuda/op_reduce_split.cu); false from wants_split leaves r to a warp per output.
bool nsci_cuda_wants_split(const nsci_cuda_red *r);
nsc_status nsci_cuda_reduce_split(const nsci_cuda_red *r);

// Float sums and means down columns (outputs adjacent in memory, reduced
// dims strided), coalesced (cuda/op_reduce_cols.cu); checked before split.
bool nsci_cuda_wants_columns(const nsci_cuda_red *r);
nsc_status nsci_cuda_reduce_columns(const nsci_cuda_red *r);

#endif
