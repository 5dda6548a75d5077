// Indexing kernels: index range checks (first bad position, as the CPU's
// messages need), row takes (embedding, index_select), atomic adds
// (index_add, scatter_add; float sums may differ from the CPU's order by
// rounding), gather, topk (a block per line, k selection rounds in the
// CPU's total order), nonzero (one block, ordered prefix sums) and one_hot.
#include <math.h>

#include "cuda/cuda_impl.h"

namespace {

const int THREADS = 256;

int blocks_for(int64_t n) {
    int64_t b = (n + THREADS - 1) / THREADS;
    return (int)(b < (1 << 20) ? b : (1 << 20));
}

#define GRID_LOOP(i, n)                                                                            \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                      \
         i += (int64_t)gridDim.x * blockDim.x)

// res[0]: first bad position (INT64_MAX when none); res[1]: kept count.
__global__ void check_init(unsigned long long *res) {
    res[0] = 0x7fffffffffffffffull;
    res[1] = 0;
}

__global__ void check_kernel(const int64_t *idx, int64_t n, int64_t size, bool has_ignore,
                             int64_t ignore, unsigned long long *res) {
    GRID_LOOP(i, n) {
        int64_t v = idx[i];
        if (has_ignore && v == ignore) {
            continue;
        }
        if ((uint64_t)v >= (uint64_t)size) { // negatives wrap to huge values
            atomicMin(&res[0], (unsigned long long)i);
        } else {
            atomicAdd(&res[1], 1ull);
        }
    }
}

template <typename E>
__global__ void take_kernel(const E *x, const int64_t *idx, E *out, int64_t outer, int64_t size,
                            int64_t inner, int64_t n_idx) {
    GRID_LOOP(p, outer * n_idx * inner) {
        int64_t i = p % inner, j = (p / inner) % n_idx, o = p / (inner * n_idx);
        out[p] = x[(o * size + idx[j]) * inner + i];
    }
}

__device__ void add_at(float *p, float v) {
    atomicAdd(p, v);
}
__device__ void add_at(double *p, double v) {
    atomicAdd(p, v);
}
__device__ void add_at(int64_t *p, int64_t v) {
    atomicAdd((unsigned long long *)p, (unsigned long long)v); // wraps as PyTorch's
}
// bool adds as "or": a 32-bit atomicOr on the aligned word holding the byte
// (allocations are 512-byte granules, so the word is always ours).
__device__ void add_at(uint8_t *p, uint8_t v) {
    if (v) {
        uintptr_t a = (uintptr_t)p;
        atomicOr((unsigned int *)(a & ~(uintptr_t)3), 1u << ((a & 3) * 8));
    }
}

template <typename T>
__global__ void index_add_kernel(T *out, const int64_t *idx, const T *src, int64_t outer,
                                 int64_t size, int64_t inner, int64_t n_idx) {
    GRID_LOOP(p, outer * n_idx * inner) {
        int64_t i = p % inner, j = (p / inner) % n_idx, o = p / (inner * n_idx);
        add_at(&out[(o * size + idx[j]) * inner + i], src[p]);
    }
}

// Over the index's positions p: a is operand 0's offset, b operand 1's with
// the dim coordinate replaced by idx[p].
template <typename T>
__global__ void gather_kernel(bool scatter, nsci_cuda_ew e, const int64_t *idx, int dim) {
    GRID_LOOP(p, e.numel) {
        int64_t a = 0, b = 0, rest = p;
        for (int d = e.ndim - 1; d >= 0; d--) {
            int64_t c = rest % e.shape[d];
            rest /= e.shape[d];
            a += c * e.stride[0][d];
            b += (d == dim ? idx[p] : c) * e.stride[1][d];
        }
        if (e.ndim == 0) {
            b = idx[p] * 0; // a 0-dim x: index 0 is the only valid one
        }
        if (scatter) {
            add_at(&((T *)e.data[1])[b], ((const T *)e.data[0])[a]);
        } else {
            ((T *)e.data[0])[a] = ((const T *)e.data[1])[b];
        }
    }
}

// --- topk: the CPU's order (NaN above every number, then the lower index) ---

template <typename T> __device__ bool greater(T a, T b) {
    return (a != a && b == b) || a > b;
}
template <typename T> __device__ bool before(T av, int64_t ai, T bv, int64_t bi, bool largest) {
    if (bi < 0) {
        return ai >= 0;
    }
    if (ai < 0) {
        return false;
    }
    bool a_gt = greater(av, bv), b_gt = greater(bv, av);
    return largest ? (a_gt || (!b_gt && ai < bi)) : (b_gt || (!a_gt && ai < bi));
}

// Block per line; round r picks the best element ranking after round r-1's.
template <typename T>
__global__ void topk_kernel(const T *x, T *values, int64_t *indices, int64_t n, int64_t inner,
                            int64_t k, bool largest) {
    __shared__ T sv[THREADS];
    __shared__ int64_t si[THREADS];
    __shared__ T prev_v;
    __shared__ int64_t prev_i;
    int64_t line = blockIdx.x, o = line / inner, in = line % inner;
    const T *xl = x + o * n * inner + in;
    if (threadIdx.x == 0) {
        prev_i = -1;
    }
    __syncthreads();
    for (int64_t r = 0; r < k; r++) {
        T bv = T(0);
        int64_t bi = -1;
        for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
            T v = xl[j * inner];
            bool after = prev_i < 0 || before(prev_v, prev_i, v, j, largest);
            if (after && before(v, j, bv, bi, largest)) {
                bv = v;
                bi = j;
            }
        }
        sv[threadIdx.x] = bv;
        si[threadIdx.x] = bi;
        __syncthreads();
        for (int s = blockDim.x / 2; s > 0; s >>= 1) {
            if (threadIdx.x < s &&
                before(sv[threadIdx.x + s], si[threadIdx.x + s], sv[threadIdx.x], si[threadIdx.x],
                       largest)) {
                sv[threadIdx.x] = sv[threadIdx.x + s];
                si[threadIdx.x] = si[threadIdx.x + s];
            }
            __syncthreads();
        }
        if (threadIdx.x == 0) {
            values[(o * k + r) * inner + in] = sv[0];
            indices[(o * k + r) * inner + in] = si[0];
            prev_v = sv[0];
            prev_i = si[0];
        }
        __syncthreads();
    }
}

// --- nonzero: one block walks the elements in order, 1024 at a time ---

template <typename T> __device__ bool nonzero_at(const nsci_cuda_ew &e, int64_t i) {
    return ((const T *)e.data[0])[nsci_cuda_ew_offset(&e, 0, i)] != T(0);
}

// The launch bound makes ptxas keep the kernel within 64 registers a thread,
// so that its 1024-thread block fits a multiprocessor's 64K registers (a
// launch over the limit fails only on a GPU, never on the emulator).
__global__ void __launch_bounds__(1024)
    nonzero_kernel(nsci_cuda_ew e, int ndim, nsci_cuda_ew coords, int64_t *out) {
    __shared__ int warp_counts[32];
    __shared__ int64_t base;
    int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
    if (threadIdx.x == 0) {
        base = 0;
    }
    __syncthreads();
    for (int64_t start = 0; start < e.numel; start += blockDim.x) {
        int64_t i = start + threadIdx.x;
        bool flag = false;
        if (i < e.numel) {
            switch (e.dtype[0]) {
                case NSC_F32:
                    flag = nonzero_at<float>(e, i);
                    break;
                case NSC_F64:
                    flag = nonzero_at<double>(e, i);
                    break;
                case NSC_I64:
                    flag = nonzero_at<int64_t>(e, i);
                    break;
                default:
                    flag = nonzero_at<uint8_t>(e, i);
            }
        }
        unsigned ballot = __ballot_sync(0xffffffffu, flag);
        if (lane == 0) {
            warp_counts[warp] = __popc(ballot);
        }
        __syncthreads();
        int64_t before_me = base;
        for (int w = 0; w < warp; w++) {
            before_me += warp_counts[w];
        }
        before_me += __popc(ballot & ((1u << lane) - 1));
        if (flag) {
            int64_t rest = i;
            for (int d = ndim - 1; d >= 0; d--) {
                out[before_me * ndim + d] = rest % coords.shape[d];
                rest /= coords.shape[d];
            }
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            for (int w = 0; w < (int)(blockDim.x / 32); w++) {
                base += warp_counts[w];
            }
        }
        __syncthreads();
    }
}

__global__ void one_hot_kernel(const int64_t *ids, int64_t n, int64_t classes, int64_t *out) {
    GRID_LOOP(p, n * classes) {
        out[p] = ids[p / classes] == p % classes;
    }
}

} // namespace

extern "C" {

nsc_status nsci_cuda_index_check(const int64_t *idx, int64_t n, int64_t size, bool has_ignore,
                                 int64_t ignore, int64_t *bad_pos, int64_t *bad_value,
                                 int64_t *kept) {
    *bad_pos = -1;
    *kept = 0;
    if (n == 0) {
        return NSC_OK;
    }
    unsigned long long *res = (unsigned long long *)nsci_cuda_alloc(2 * sizeof *res);
    if (!res) {
        return NSC_ERR_OOM;
    }
    unsigned long long host[2] = { 0, 0 };
    NSCI_LAUNCH((check_init), 1, 1, 0, res);
    NSCI_LAUNCH((check_kernel), blocks_for(n), THREADS, 0, idx, n, size, has_ignore, ignore, res);
    nsc_status s = nsci_cuda_check_launch("index check");
    if (s == NSC_OK) {
        s = nsci_cuda_read(host, res, sizeof host);
    }
    nsci_cuda_free(res);
    if (s == NSC_OK && host[0] != 0x7fffffffffffffffull) {
        *bad_pos = (int64_t)host[0];
        s = nsci_cuda_read(bad_value, idx + *bad_pos, sizeof *bad_value);
    }
    *kept = (int64_t)host[1];
    return s;
}

nsc_status nsci_cuda_take(const void *x, const int64_t *idx, void *out, int64_t outer,
                          int64_t size, int64_t inner, int64_t n_idx, size_t elem) {
    int64_t n = outer * n_idx * inner;
    if (n == 0) {
        return NSC_OK;
    }
    if (elem == 1) {
        NSCI_LAUNCH((take_kernel), blocks_for(n), THREADS, 0, (const uint8_t *)x, idx,
                    (uint8_t *)out, outer, size, inner, n_idx);
    } else if (elem == 4) {
        NSCI_LAUNCH((take_kernel), blocks_for(n), THREADS, 0, (const uint32_t *)x, idx,
                    (uint32_t *)out, outer, size, inner, n_idx);
    } else {
        NSCI_LAUNCH((take_kernel), blocks_for(n), THREADS, 0, (const uint64_t *)x, idx,
                    (uint64_t *)out, outer, size, inner, n_idx);
    }
    return nsci_cuda_check_launch("take rows");
}

nsc_status nsci_cuda_index_add(nsc_dtype dtype, void *out, const int64_t *idx, const void *src,
                               int64_t outer, int64_t size, int64_t inner, int64_t n_idx) {
    int64_t n = outer * n_idx * inner;
    if (n == 0) {
        return NSC_OK;
    }
    int b = blocks_for(n);
    switch (dtype) {
        case NSC_F32:
            NSCI_LAUNCH((index_add_kernel), b, THREADS, 0, (float *)out, idx, (const float *)src,
                        outer, size, inner, n_idx);
            break;
        case NSC_F64:
            NSCI_LAUNCH((index_add_kernel), b, THREADS, 0, (double *)out, idx, (const double *)src,
                        outer, size, inner, n_idx);
            break;
        case NSC_I64:
            NSCI_LAUNCH((index_add_kernel), b, THREADS, 0, (int64_t *)out, idx,
                        (const int64_t *)src, outer, size, inner, n_idx);
            break;
        default:
            NSCI_LAUNCH((index_add_kernel), b, THREADS, 0, (uint8_t *)out, idx,
                        (const uint8_t *)src, outer, size, inner, n_idx);
    }
    return nsci_cuda_check_launch("index_add");
}

nsc_status nsci_cuda_gather(bool scatter, nsc_dtype dtype, const nsci_cuda_ew *e,
                            const int64_t *idx, int dim) {
    if (e->numel == 0) {
        return NSC_OK;
    }
    int b = blocks_for(e->numel);
    switch (dtype) {
        case NSC_F32:
            NSCI_LAUNCH((gather_kernel<float>), b, THREADS, 0, scatter, *e, idx, dim);
            break;
        case NSC_F64:
            NSCI_LAUNCH((gather_kernel<double>), b, THREADS, 0, scatter, *e, idx, dim);
            break;
        case NSC_I64:
            NSCI_LAUNCH((gather_kernel<int64_t>), b, THREADS, 0, scatter, *e, idx, dim);
            break;
        default:
            NSCI_LAUNCH((gather_kernel<uint8_t>), b, THREADS, 0, scatter, *e, idx, dim);
    }
    return nsci_cuda_check_launch(scatter ? "scatter_add" : "gather");
}

nsc_status nsci_cuda_topk(nsc_dtype dtype, const void *x, void *values, int64_t *indices,
                          int64_t outer, int64_t n, int64_t inner, int64_t k, bool largest) {
    int64_t lines = outer * inner;
    if (lines == 0 || k == 0) {
        return NSC_OK;
    }
    if (dtype == NSC_F32) {
        NSCI_LAUNCH((topk_kernel<float>), (unsigned)lines, THREADS, 0, (const float *)x,
                    (float *)values, indices, n, inner, k, largest);
    } else if (dtype == NSC_F64) {
        NSCI_LAUNCH((topk_kernel<double>), (unsigned)lines, THREADS, 0, (const double *)x,
                    (double *)values, indices, n, inner, k, largest);
    } else {
        NSCI_LAUNCH((topk_kernel<int64_t>), (unsigned)lines, THREADS, 0, (const int64_t *)x,
                    (int64_t *)values, indices, n, inner, k, largest);
    }
    return nsci_cuda_check_launch("topk");
}

nsc_status nsci_cuda_nonzero(const nsci_cuda_ew *e, int ndim, const int64_t *shape,
                             int64_t *out) {
    if (e->numel == 0) {
        return NSC_OK;
    }
    nsci_cuda_ew coords = *e;
    for (int d = 0; d < ndim; d++) {
        coords.shape[d] = shape[d];
    }
    NSCI_LAUNCH((nonzero_kernel), 1, 1024, 0, *e, ndim, coords, out);
    return nsci_cuda_check_launch("nonzero");
}

nsc_status nsci_cuda_one_hot(const int64_t *ids, int64_t n, int64_t classes, int64_t *out) {
    if (n * classes == 0) {
        return NSC_OK;
    }
    NSCI_LAUNCH((one_hot_kernel), blocks_for(n * classes), THREADS, 0, ids, n, classes, out);
    return nsci_cuda_check_launch("one_hot");
}

} // extern "C"
