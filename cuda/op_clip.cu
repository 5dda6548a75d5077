// Gradient clipping's list ops on the GPU (tensor/op_clip.c): contiguous
// tensors go 64 to a launch, as the optimizer's lists (cuda/op_optim.cu),
// each getting ceil(numel / LIST_CHUNK) consecutive blocks; a strided tensor
// takes a launch of its own. The sum of squares writes one double per block
// into a scratch array, summed by one more block in a fixed order, so the
// value does not depend on scheduling; scaling multiplies in the tensor's
// dtype, the CPU kernel's one rounding.
#include "cuda/list_launch.cuh"
#include "cuda/op_optim.h"

namespace {

const int THREADS = 256;
// The block sum's shared array, passed as dynamic shared memory: a static
// one would count against every kernel's limit on the emulator.
const size_t SUM_SMEM = THREADS * sizeof(double);

struct clip_table {
    void *data[NSCI_CUDA_LIST_MAX];
    int64_t numel[NSCI_CUDA_LIST_MAX];
    int dtype[NSCI_CUDA_LIST_MAX];
    int block_start[NSCI_CUDA_LIST_MAX + 1];
    int n;
};

static_assert(sizeof(clip_table) + 64 <= 4096,
              "the clip table outgrows the 4 KiB kernel argument limit");

// The sum of every thread's v, in a fixed tree order; thread 0 gets it.
__device__ inline double block_sum(double v, double *shared) {
    shared[threadIdx.x] = v;
    __syncthreads();
    for (int w = THREADS / 2; w > 0; w >>= 1) {
        if ((int)threadIdx.x < w) {
            shared[threadIdx.x] += shared[threadIdx.x + w];
        }
        __syncthreads();
    }
    return shared[0];
}

template <typename T> __device__ inline double sq(const void *data, int64_t i) {
    double v = (double)((const T *)data)[i];
    return v * v;
}

__global__ void sumsq_list_kernel(clip_table t, double *partial) {
    NSCI_DYNAMIC_SHARED(double, shared); // THREADS doubles (SUM_SMEM)
    int64_t begin, end;
    int j = list_slot(t.block_start, t.numel, t.n, &begin, &end);
    double s = 0;
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
        s += t.dtype[j] == NSC_F64 ? sq<double>(t.data[j], i) : sq<float>(t.data[j], i);
    }
    double total = block_sum(s, shared);
    if (threadIdx.x == 0) {
        partial[blockIdx.x] = total;
    }
}

// One strided tensor, LIST_CHUNK elements a block (row-major order).
template <typename T> __global__ void sumsq_strided_kernel(nsci_cuda_ew e, double *partial) {
    NSCI_DYNAMIC_SHARED(double, shared); // THREADS doubles (SUM_SMEM)
    int64_t begin = (int64_t)blockIdx.x * LIST_CHUNK;
    int64_t end = begin + LIST_CHUNK < e.numel ? begin + LIST_CHUNK : e.numel;
    double s = 0;
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
        double v = (double)((const T *)e.data[0])[nsci_cuda_ew_offset(&e, 0, i)];
        s += v * v;
    }
    double total = block_sum(s, shared);
    if (threadIdx.x == 0) {
        partial[blockIdx.x] = total;
    }
}

__global__ void fold_kernel(const double *partial, int64_t n, double *out) {
    NSCI_DYNAMIC_SHARED(double, shared); // THREADS doubles (SUM_SMEM)
    double s = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        s += partial[i];
    }
    double total = block_sum(s, shared);
    if (threadIdx.x == 0) {
        *out = total;
    }
}

// x * coef, coef already rounded to T: one rounding, as the CPU.
template <typename T> __device__ inline void scale_at(void *data, int64_t i, double coef) {
    T *x = (T *)data + i;
    *x = *x * (T)coef;
}

__global__ void scale_list_kernel(clip_table t, double coef) {
    int64_t begin, end;
    int j = list_slot(t.block_start, t.numel, t.n, &begin, &end);
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
        if (t.dtype[j] == NSC_F64) {
            scale_at<double>(t.data[j], i, coef);
        } else {
            scale_at<float>(t.data[j], i, coef);
        }
    }
}

template <typename T> __global__ void scale_strided_kernel(nsci_cuda_ew e, double coef) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < e.numel; i += step) {
        scale_at<T>(e.data[0], nsci_cuda_ew_offset(&e, 0, i), coef);
    }
}

int blocks_of(int64_t numel) {
    return (int)((numel + LIST_CHUNK - 1) / LIST_CHUNK);
}

clip_table table_of(const nsci_cuda_clip_list &l, int *blocks) {
    clip_table t = {};
    t.n = l.n;
    for (int j = 0; j < l.n; j++) {
        t.data[j] = l.data[j];
        t.numel[j] = l.numel[j];
        t.dtype[j] = l.dtype[j];
    }
    *blocks = list_block_starts(t.numel, t.n, t.block_start);
    return t;
}

} // namespace

int64_t nsci_cuda_clip_blocks(int64_t numel) {
    return numel == 0 ? 0 : blocks_of(numel);
}

nsc_status nsci_cuda_sumsq_list(const nsci_cuda_clip_list *l, double *partial) {
    if (l->n == 0) {
        return NSC_OK;
    }
    int blocks;
    clip_table t = table_of(*l, &blocks);
    NSCI_LAUNCH((sumsq_list_kernel), blocks, THREADS, SUM_SMEM, t, partial);
    return nsci_cuda_check_launch("clip_sumsq");
}

nsc_status nsci_cuda_sumsq_strided(const nsci_cuda_ew *e, double *partial) {
    if (e->dtype[0] == NSC_F64) {
        NSCI_LAUNCH((sumsq_strided_kernel<double>), blocks_of(e->numel), THREADS, SUM_SMEM, *e,
                    partial);
    } else {
        NSCI_LAUNCH((sumsq_strided_kernel<float>), blocks_of(e->numel), THREADS, SUM_SMEM, *e,
                    partial);
    }
    return nsci_cuda_check_launch("clip_sumsq");
}

nsc_status nsci_cuda_sumsq_fold(const double *partial, int64_t n, double *out) {
    NSCI_LAUNCH((fold_kernel), 1, THREADS, SUM_SMEM, partial, n, out);
    return nsci_cuda_check_launch("clip_sumsq");
}

nsc_status nsci_cuda_scale_list(const nsci_cuda_clip_list *l, double coef) {
    if (l->n == 0) {
        return NSC_OK;
    }
    int blocks;
    clip_table t = table_of(*l, &blocks);
    NSCI_LAUNCH((scale_list_kernel), blocks, THREADS, 0, t, coef);
    return nsci_cuda_check_launch("clip_scale_");
}

nsc_status nsci_cuda_scale_strided(const nsci_cuda_ew *e, double coef) {
    int64_t b = (e->numel + THREADS - 1) / THREADS;
    int blocks = (int)(b < (1 << 20) ? b : (1 << 20));
    if (e->dtype[0] == NSC_F64) {
        NSCI_LAUNCH((scale_strided_kernel<double>), blocks, THREADS, 0, *e, coef);
    } else {
        NSCI_LAUNCH((scale_strided_kernel<float>), blocks, THREADS, 0, *e, coef);
    }
    return nsci_cuda_check_launch("clip_scale_");
}
