// Fused causal attention, flash-style: a warp per query row walks its keys
// 32 at a time with an online softmax (running max and sum rescale the
// accumulator), so the [T, S] scores never exist in memory. Lane j of a
// chunk scores key base + j against q (kept in shared memory); each lane
// owns Dv/32 output dims and accumulates p_j v_j. Blocks of 8 rows stage
// each chunk's keys and values in shared memory when they fit (the tiled
// kernel), else each warp reads them from global memory (the row kernel). Masked keys and keys past
// the causal limit weigh 0; a row with no allowed key averages all S values,
// as tensor/op_attention.c (Hugging Face's additive mask) does.
// q: [B, H, T, D]; k: [B, H, S, D]; v: [B, H, S, Dv]; out: [B, T, H, Dv].
#include <math.h>

#include "cuda/cuda_impl.h"

namespace {

const int WARPS = 4;

// NaN wins, so every lane ends with the same maximum: a lane holding NaN
// and lanes with only -inf must agree on absorb_chunk's early return, or
// the warp splits before its shuffles (a NaN query failed the launch).
template <typename T> __device__ T warp_max(T v) {
    for (int o = 16; o > 0; o >>= 1) {
        T w = __shfl_xor_sync(0xffffffffu, v, o);
        v = (w != w || w > v) ? w : v;
    }
    return v;
}
template <typename T> __device__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, o);
    }
    return v;
}

// One query row's running softmax: max m, sum l, and the accumulator
// (lane owns output dims lane + 32 u).
template <typename T, int NV> struct row_state {
    T m, l;
    T acc[NV];
};

template <typename T, int NV> __device__ void row_state_init(row_state<T, NV> &st) {
    st.m = -INFINITY;
    st.l = T(0);
#pragma unroll
    for (int u = 0; u < NV; u++) {
        st.acc[u] = T(0);
    }
}

// Keys [base, base + 32) of one query row: lane j scores key base + j
// against sq, then st absorbs the chunk. kc and vc point at key and value
// row `base` (global memory or a staged tile) with their row and element
// strides, so both kernels below run the same arithmetic in the same order.
template <typename T, int NV>
__device__ void absorb_chunk(const nsci_cuda_attention &a, int lane, const T *sq, const T *kc,
                             int64_t k_row, int64_t k_col, const T *vc, int64_t v_row,
                             int64_t v_col, int64_t base, int64_t limit, int64_t last, bool any,
                             const uint8_t *keep, row_state<T, NV> &st) {
    int64_t j = base + lane;
    T score = -INFINITY;
    if (!any) {
        score = j <= last ? T(0) : T(-INFINITY); // no allowed key: every key weighs 1/S
    } else if (j <= limit && (!keep || keep[j])) {
        const T *kj = kc + lane * k_row;
        T dot = T(0);
        for (int64_t dd = 0; dd < a.d; dd++) {
            dot += sq[dd] * kj[dd * k_col];
        }
        score = dot * (T)a.scale;
    }
    T new_m = warp_max(score);
    new_m = st.m > new_m ? st.m : new_m;
    if (new_m == T(-INFINITY)) {
        return; // nothing allowed so far
    }
    T p = score == T(-INFINITY) ? T(0) : exp(score - new_m);
    T corr = st.m == T(-INFINITY) ? T(0) : exp(st.m - new_m);
    st.l = st.l * corr + warp_sum(p);
#pragma unroll
    for (int u = 0; u < NV; u++) {
        st.acc[u] *= corr;
    }
    int64_t n_keys = last - base + 1 < 32 ? last - base + 1 : 32;
    for (int jj = 0; jj < n_keys; jj++) {
        T pj = __shfl_sync(0xffffffffu, p, jj);
        if (pj == T(0)) {
            continue;
        }
        const T *vj = vc + jj * v_row;
#pragma unroll
        for (int u = 0; u < NV; u++) {
            int64_t dd = lane + 32 * u;
            if (dd < a.dv) {
                st.acc[u] += pj * vj[dd * v_col];
            }
        }
    }
    st.m = new_m;
}

// Query row i's last key to visit: its causal limit, or the last key when
// the mask allows none of them (then every key weighs 1/S). Whole warp.
__device__ inline int64_t row_last(const nsci_cuda_attention &a, int lane, int64_t bi, int64_t i,
                                   int64_t *limit, bool *any) {
    *limit = a.causal ? (a.s - a.t) + i : a.s - 1;
    const uint8_t *keep = a.keep ? a.keep + bi * a.s : nullptr;
    bool found = !keep;
    for (int64_t j = lane; keep && j <= *limit; j += 32) {
        found = found || keep[j];
    }
    *any = __any_sync(0xffffffffu, found);
    return *any ? *limit : a.s - 1;
}

template <typename T, int NV>
__device__ void row_store(const nsci_cuda_attention &a, int lane, int64_t bi, int64_t hi, int64_t i,
                          const row_state<T, NV> &st) {
    T *o = (T *)a.out + bi * a.out_stride[0] + i * a.out_stride[1] + hi * a.out_stride[2];
#pragma unroll
    for (int u = 0; u < NV; u++) {
        int64_t dd = lane + 32 * u;
        if (dd < a.dv) {
            o[dd * a.out_stride[3]] = st.acc[u] / st.l;
        }
    }
}

// Rows of one (batch, head) share their keys: a block of TILE_WARPS warps
// takes TILE_WARPS consecutive query rows and stages each chunk of 32 key
// and value rows in shared memory once for all of them (coalesced loads;
// key rows padded to an odd stride, D | 1, so that the 32 lanes' reads of one
// dim hit 32 banks). Used when the tiles fit in 48 KiB: f32 up to
// D = Dv = 170, f64 up to 85.
const int TILE_WARPS = 8;

template <typename T> size_t tiled_smem_bytes(const nsci_cuda_attention *a) {
    size_t elems = (size_t)TILE_WARPS * a->d + 32 * (size_t)(a->d | 1) + 32 * (size_t)a->dv;
    return (elems * sizeof(T) + 7) / 8 * 8 + TILE_WARPS * sizeof(int64_t);
}

template <typename T, int NV> __global__ void attention_tiled_kernel(nsci_cuda_attention a) {
    NSCI_DYNAMIC_SHARED(unsigned char, smem);
    int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
    int d = (int)a.d, dv = (int)a.dv, d1 = d | 1;
    int64_t row_tiles = (a.t + TILE_WARPS - 1) / TILE_WARPS;
    int64_t bh = blockIdx.x / row_tiles, hi = bh % a.h, bi = bh / a.h;
    int64_t i = (blockIdx.x % row_tiles) * TILE_WARPS + warp;
    bool valid = i < a.t;
    T *sq = (T *)smem + warp * d;
    T *sk = (T *)smem + TILE_WARPS * d;
    T *sv = sk + 32 * d1;
    size_t tile_bytes = ((size_t)(TILE_WARPS * d + 32 * d1 + 32 * dv) * sizeof(T) + 7) / 8 * 8;
    int64_t *lasts = (int64_t *)(smem + tile_bytes);
    const T *k = (const T *)a.k + bi * a.k_stride[0] + hi * a.k_stride[1];
    const T *v = (const T *)a.v + bi * a.v_stride[0] + hi * a.v_stride[1];
    int64_t limit = -1, last = -1;
    bool any = false;
    if (valid) { // warp-uniform
        const T *q = (const T *)a.q + bi * a.q_stride[0] + hi * a.q_stride[1] + i * a.q_stride[2];
        for (int dd = lane; dd < d; dd += 32) {
            sq[dd] = q[dd * a.q_stride[3]];
        }
        last = row_last(a, lane, bi, i, &limit, &any);
    }
    if (lane == 0) {
        lasts[warp] = last;
    }
    __syncthreads();
    int64_t block_last = -1;
    for (int w = 0; w < TILE_WARPS; w++) {
        block_last = lasts[w] > block_last ? lasts[w] : block_last;
    }
    row_state<T, NV> st;
    row_state_init(st);
    const uint8_t *keep = a.keep ? a.keep + bi * a.s : nullptr;
    for (int64_t base = 0; base <= block_last; base += 32) {
        __syncthreads(); // every warp is done with the previous tile
        int n_rows = block_last - base + 1 < 32 ? (int)(block_last - base + 1) : 32;
        for (int e = threadIdx.x; e < n_rows * d; e += blockDim.x) {
            int r = e / d, c = e - r * d;
            sk[r * d1 + c] = k[(base + r) * a.k_stride[2] + c * a.k_stride[3]];
        }
        for (int e = threadIdx.x; e < n_rows * dv; e += blockDim.x) {
            int r = e / dv, c = e - r * dv;
            sv[r * dv + c] = v[(base + r) * a.v_stride[2] + c * a.v_stride[3]];
        }
        __syncthreads();
        if (valid && base <= last) {
            absorb_chunk<T, NV>(a, lane, sq, sk, d1, 1, sv, dv, 1, base, limit, last, any, keep,
                                st);
        }
    }
    if (valid) {
        row_store(a, lane, bi, hi, i, st);
    }
}

// A warp per query row reading keys and values from global memory: the
// kernel for head sizes whose tiles do not fit in shared memory.
template <typename T, int NV> __global__ void attention_row_kernel(nsci_cuda_attention a) {
    NSCI_DYNAMIC_SHARED(unsigned char, smem);
    int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
    int64_t row = (int64_t)blockIdx.x * WARPS + warp;
    if (row >= a.b * a.h * a.t) {
        return;
    }
    int64_t i = row % a.t, hi = (row / a.t) % a.h, bi = row / (a.t * a.h);
    T *sq = (T *)smem + warp * a.d;
    const T *q = (const T *)a.q + bi * a.q_stride[0] + hi * a.q_stride[1] + i * a.q_stride[2];
    const T *k = (const T *)a.k + bi * a.k_stride[0] + hi * a.k_stride[1];
    const T *v = (const T *)a.v + bi * a.v_stride[0] + hi * a.v_stride[1];
    for (int64_t dd = lane; dd < a.d; dd += 32) {
        sq[dd] = q[dd * a.q_stride[3]];
    }
    __syncwarp();
    int64_t limit;
    bool any;
    int64_t last = row_last(a, lane, bi, i, &limit, &any);
    const uint8_t *keep = a.keep ? a.keep + bi * a.s : nullptr;
    row_state<T, NV> st;
    row_state_init(st);
    for (int64_t base = 0; base <= last; base += 32) {
        absorb_chunk<T, NV>(a, lane, sq, k + base * a.k_stride[2], a.k_stride[2], a.k_stride[3],
                            v + base * a.v_stride[2], a.v_stride[2], a.v_stride[3], base, limit,
                            last, any, keep, st);
    }
    row_store(a, lane, bi, hi, i, st);
}

const size_t SHARED_LIMIT = 48 * 1024;

template <typename T, int NV> nsc_status launch_nv(const nsci_cuda_attention *a) {
    size_t tiled = tiled_smem_bytes<T>(a);
    if (tiled <= SHARED_LIMIT) {
        int64_t blocks = a->b * a->h * ((a->t + TILE_WARPS - 1) / TILE_WARPS);
        NSCI_LAUNCH((attention_tiled_kernel<T, NV>), (unsigned)blocks, TILE_WARPS * 32, tiled, *a);
    } else {
        int64_t rows = a->b * a->h * a->t;
        unsigned blocks = (unsigned)((rows + WARPS - 1) / WARPS);
        size_t smem = (size_t)WARPS * (size_t)a->d * sizeof(T);
        NSCI_LAUNCH((attention_row_kernel<T, NV>), blocks, WARPS * 32, smem, *a);
    }
    return nsci_cuda_check_launch("attention");
}

// NV: output dims per lane (Dv <= 32 NV).
template <typename T> nsc_status launch(const nsci_cuda_attention *a) {
    if (a->dv <= 32) {
        return launch_nv<T, 1>(a);
    }
    if (a->dv <= 64) {
        return launch_nv<T, 2>(a);
    }
    if (a->dv <= 128) {
        return launch_nv<T, 4>(a);
    }
    return launch_nv<T, 8>(a);
}

} // namespace

extern "C" nsc_status nsci_cuda_attention_run(const nsci_cuda_attention *a) {
    int64_t rows = a->b * a->h * a->t;
    if (rows == 0 || a->dv == 0) {
        return NSC_OK;
    }
    if (a->dv > 256 || a->d > 1024) {
        return nsci_fail(NSC_ERR_UNSUPPORTED,
                         "attention: head sizes D %lld, Dv %lld: the CUDA kernel takes D <= 1024 "
                         "and Dv <= 256",
                         (long long)a->d, (long long)a->dv);
    }
    if (a->s == 0) { // no keys: a sum over nothing (out is contiguous)
        size_t bytes = (size_t)(rows * a->dv) * nsc_dtype_size(a->dtype);
        NSCI_CUDA_TRY(cudaMemsetAsync(a->out, 0, bytes, 0));
        return NSC_OK;
    }
    return a->dtype == NSC_F64 ? launch<double>(a) : launch<float>(a);
}
