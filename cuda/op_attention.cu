// Fused causal attention, flash-style: a warp per query row walks its keys
// 32 at a time with an online softmax (running max and sum rescale the
// accumulator), so the [T, S] scores never exist in memory. Lane j of a
// chunk scores key base + j against q (kept in shared memory); each lane
// owns Dv/32 output dims and accumulates p_j v_j. Masked keys and keys past
// the causal limit weigh 0; a row with no allowed key averages all S values,
// as tensor/op_attention.c (Hugging Face's additive mask) does.
// q: [B, H, T, D]; k: [B, H, S, D]; v: [B, H, S, Dv]; out: [B, T, H, Dv].
#include <math.h>

#include "cuda/cuda_impl.h"

namespace {

const int WARPS = 4;

template <typename T> __device__ T warp_max(T v) {
    for (int o = 16; o > 0; o >>= 1) {
        T w = __shfl_xor_sync(0xffffffffu, v, o);
        v = w > v ? w : v;
    }
    return v;
}
template <typename T> __device__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, o);
    }
    return v;
}

// NV: output dims per lane (Dv <= 32 NV).
template <typename T, int NV> __global__ void attention_kernel(nsci_cuda_attention a) {
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
    int64_t limit = a.causal ? (a.s - a.t) + i : a.s - 1;
    const uint8_t *keep = a.keep ? a.keep + bi * a.s : nullptr;
    bool any = !keep;
    for (int64_t j = lane; keep && j <= limit; j += 32) {
        any = any || keep[j];
    }
    any = __any_sync(0xffffffffu, any);
    T acc[NV];
#pragma unroll
    for (int u = 0; u < NV; u++) {
        acc[u] = T(0);
    }
    T m = -INFINITY, l = T(0);
    int64_t last = any ? limit : a.s - 1;
    for (int64_t base = 0; base <= last; base += 32) {
        int64_t j = base + lane;
        T score = -INFINITY;
        if (!any) {
            score = j <= last ? T(0) : T(-INFINITY); // no allowed key: every key weighs 1/S
        } else if (j <= limit && (!keep || keep[j])) {
            const T *kj = k + j * a.k_stride[2];
            T dot = T(0);
            for (int64_t dd = 0; dd < a.d; dd++) {
                dot += sq[dd] * kj[dd * a.k_stride[3]];
            }
            score = dot * (T)a.scale;
        }
        T new_m = warp_max(score);
        new_m = m > new_m ? m : new_m;
        if (new_m == T(-INFINITY)) {
            continue; // nothing allowed so far
        }
        T p = score == T(-INFINITY) ? T(0) : exp(score - new_m);
        T corr = m == T(-INFINITY) ? T(0) : exp(m - new_m);
        l = l * corr + warp_sum(p);
#pragma unroll
        for (int u = 0; u < NV; u++) {
            acc[u] *= corr;
        }
        int64_t n_keys = last - base + 1 < 32 ? last - base + 1 : 32;
        for (int jj = 0; jj < n_keys; jj++) {
            T pj = __shfl_sync(0xffffffffu, p, jj);
            if (pj == T(0)) {
                continue;
            }
            const T *vj = v + (base + jj) * a.v_stride[2];
#pragma unroll
            for (int u = 0; u < NV; u++) {
                int64_t dd = lane + 32 * u;
                if (dd < a.dv) {
                    acc[u] += pj * vj[dd * a.v_stride[3]];
                }
            }
        }
        m = new_m;
    }
    T *o = (T *)a.out + bi * a.out_stride[0] + i * a.out_stride[1] + hi * a.out_stride[2];
#pragma unroll
    for (int u = 0; u < NV; u++) {
        int64_t dd = lane + 32 * u;
        if (dd < a.dv) {
            o[dd * a.out_stride[3]] = acc[u] / l;
        }
    }
}

template <typename T> nsc_status launch(const nsci_cuda_attention *a) {
    int64_t rows = a->b * a->h * a->t;
    unsigned blocks = (unsigned)((rows + WARPS - 1) / WARPS);
    size_t smem = (size_t)WARPS * (size_t)a->d * sizeof(T);
    if (a->dv <= 32) {
        NSCI_LAUNCH((attention_kernel<T, 1>), blocks, WARPS * 32, smem, *a);
    } else if (a->dv <= 64) {
        NSCI_LAUNCH((attention_kernel<T, 2>), blocks, WARPS * 32, smem, *a);
    } else if (a->dv <= 128) {
        NSCI_LAUNCH((attention_kernel<T, 4>), blocks, WARPS * 32, smem, *a);
    } else {
        NSCI_LAUNCH((attention_kernel<T, 8>), blocks, WARPS * 32, smem, *a);
    }
    return nsci_cuda_check_launch("attention");
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
