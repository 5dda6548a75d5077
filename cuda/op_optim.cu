// The fused optimizer updates on the GPU: one thread per element runs the
// op sequence of tensor/op_optim.c's CPU loops, with every scalar rounded to
// the parameter's dtype first and every product and sum rounded on its own,
// so a step gives the CPU's bits. One kernel for a list of up to 64
// contiguous parameters (torch's multi-tensor apply), or one per strided
// parameter, where torch's single-tensor path runs ~17 per parameter
// (docs/CUDA.md).
#include <math.h>

#include "cuda/list_launch.cuh"
#include "cuda/op_optim.h"

namespace {

const int THREADS = 256;

// nvcc contracts a * b + c into one FMA (one rounding) unless told not to;
// the CPU loops round the product and the sum separately (-std=c11 keeps
// fp-contract off), and so must these. The emulator's g++ (-std=c++17) does
// not contract either.
#ifdef __CUDACC__
__device__ inline float mul(float a, float b) {
    return __fmul_rn(a, b);
}
__device__ inline float add(float a, float b) {
    return __fadd_rn(a, b);
}
__device__ inline double mul(double a, double b) {
    return __dmul_rn(a, b);
}
__device__ inline double add(double a, double b) {
    return __dadd_rn(a, b);
}
#else
template <typename T> __device__ inline T mul(T a, T b) {
    return a * b;
}
template <typename T> __device__ inline T add(T a, T b) {
    return a + b;
}
#endif

// Element i's operand k: flat runs index directly, strided ones unravel.
template <typename T> __device__ inline T *at(const nsci_cuda_ew &e, int k, int64_t i, bool flat) {
    int64_t off = flat ? i : nsci_cuda_ew_offset(&e, k, i);
    return (T *)e.data[k] + off;
}

template <typename T> struct sgd_k {
    T wd, mom, keep, neg_lr;
    bool decay, has_buf, first, nesterov, maximize;
};

// One element's update; buf is used when k.has_buf.
template <typename T> __device__ inline void sgd_elem(T *p, T d, T *buf, const sgd_k<T> &k) {
    if (k.maximize) {
        d = -d;
    }
    if (k.decay) {
        d = add(d, mul(k.wd, *p));
    }
    if (k.has_buf) {
        *buf = k.first ? d : add(mul(*buf, k.mom), mul(k.keep, d));
        d = k.nesterov ? add(d, mul(k.mom, *buf)) : *buf;
    }
    *p = add(*p, mul(k.neg_lr, d));
}

// Operands: 0 param, 1 grad, 2 momentum_buffer (has_buf only).
template <typename T> __global__ void sgd_kernel(nsci_cuda_ew e, sgd_k<T> k, bool flat) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < e.numel; i += step) {
        sgd_elem(at<T>(e, 0, i, flat), *at<T>(e, 1, i, flat),
                 k.has_buf ? at<T>(e, 2, i, flat) : (T *)0, k);
    }
}

template <typename T> struct adamw_k {
    T decay, b1, omb1, b2, omb2, bc2_sqrt, eps, neg_step;
    bool amsgrad;
};

// One element's update; vmax is used when k.amsgrad.
template <typename T>
__device__ inline void adamw_elem(T *p, T g, T *m, T *v, T *vmax, const adamw_k<T> &k) {
    T pv = mul(*p, k.decay);
    T mv = add(mul(*m, k.b1), mul(k.omb1, g));
    T vv = add(mul(*v, k.b2), mul(mul(k.omb2, g), g));
    *m = mv;
    *v = vv;
    if (k.amsgrad) {
        vv = *vmax > vv ? *vmax : vv;
        *vmax = vv;
    }
    // sqrt and / are correctly rounded (nvcc's default -prec-sqrt and -prec-div).
    T denom = add(sqrt(vv) / k.bc2_sqrt, k.eps);
    *p = add(pv, mul(k.neg_step, mv) / denom);
}

// Operands: 0 param, 1 grad, 2 exp_avg, 3 exp_avg_sq, 4 max_exp_avg_sq (amsgrad).
template <typename T> __global__ void adamw_kernel(nsci_cuda_ew e, adamw_k<T> k, bool flat) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < e.numel; i += step) {
        adamw_elem(at<T>(e, 0, i, flat), *at<T>(e, 1, i, flat), at<T>(e, 2, i, flat),
                   at<T>(e, 3, i, flat), k.amsgrad ? at<T>(e, 4, i, flat) : (T *)0, k);
    }
}

// --- lists: one launch for many contiguous parameters (cuda/list_launch.cuh) ---

struct list_table {
    void *data[NSCI_CUDA_LIST_MAX][NSCI_OPTIM_ROLES];
    int64_t numel[NSCI_CUDA_LIST_MAX];
    int block_start[NSCI_CUDA_LIST_MAX + 1];
    int n;
};

// A kernel's arguments may take 4 KiB (CUDA before 12.1; more needs Volta
// and a 12.1 driver): the table and the widest scalars must fit.
static_assert(sizeof(list_table) + sizeof(adamw_k<double>) + 64 <= 4096,
              "the list table outgrows the 4 KiB kernel argument limit");

template <typename T> __global__ void sgd_list_kernel(list_table t, sgd_k<T> k) {
    int64_t begin, end;
    int j = list_slot(t.block_start, t.numel, t.n, &begin, &end);
    T *p = (T *)t.data[j][0], *g = (T *)t.data[j][1], *buf = (T *)t.data[j][2];
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
        sgd_elem(p + i, g[i], k.has_buf ? buf + i : (T *)0, k);
    }
}

template <typename T> __global__ void adamw_list_kernel(list_table t, adamw_k<T> k) {
    int64_t begin, end;
    int j = list_slot(t.block_start, t.numel, t.n, &begin, &end);
    T *p = (T *)t.data[j][0], *g = (T *)t.data[j][1], *m = (T *)t.data[j][2];
    T *v = (T *)t.data[j][3], *vmax = (T *)t.data[j][4];
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
        adamw_elem(p + i, g[i], m + i, v + i, k.amsgrad ? vmax + i : (T *)0, k);
    }
}

// The table for l and its block count.
list_table table_of(const nsci_cuda_list &l, int *blocks) {
    list_table t = {};
    t.n = l.n;
    for (int j = 0; j < l.n; j++) {
        for (int r = 0; r < l.roles; r++) {
            t.data[j][r] = l.data[j][r];
        }
        t.numel[j] = l.numel[j];
    }
    *blocks = list_block_starts(t.numel, t.n, t.block_start);
    return t;
}

int blocks_for(int64_t n) {
    int64_t b = (n + THREADS - 1) / THREADS;
    return (int)(b < (1 << 20) ? b : (1 << 20));
}

template <typename T> sgd_k<T> sgd_scalars(const fused_sgd_params &p, bool has_buf) {
    const nsc_sgd_config &a = p.config;
    return { (T)a.weight_decay, (T)a.momentum,       (T)(1.0 - a.dampening),
             (T)(-a.lr),        a.weight_decay != 0, has_buf,
             p.first_step,      a.nesterov,          a.maximize };
}

template <typename T> adamw_k<T> adamw_scalars(const nsci_adamw_scalars &a) {
    return { (T)a.decay,    (T)a.beta1, (T)a.one_minus_beta1, (T)a.beta2, (T)a.one_minus_beta2,
             (T)a.bc2_sqrt, (T)a.eps,   (T)a.neg_step_size,   a.amsgrad };
}

template <typename T> nsc_status sgd_launch(const nsci_cuda_ew &e, const fused_sgd_params &p) {
    sgd_k<T> k = sgd_scalars<T>(p, e.n_operands == 3);
    NSCI_LAUNCH((sgd_kernel<T>), blocks_for(e.numel), THREADS, 0, e, k, nsci_cuda_ew_flat(&e));
    return nsci_cuda_check_launch("fused_sgd_");
}

template <typename T> nsc_status adamw_launch(const nsci_cuda_ew &e, const nsci_adamw_scalars &a) {
    adamw_k<T> k = adamw_scalars<T>(a);
    NSCI_LAUNCH((adamw_kernel<T>), blocks_for(e.numel), THREADS, 0, e, k, nsci_cuda_ew_flat(&e));
    return nsci_cuda_check_launch("fused_adamw_");
}

template <typename T>
nsc_status sgd_list_launch(const nsci_cuda_list &l, const fused_sgd_params &p) {
    int blocks;
    list_table t = table_of(l, &blocks);
    NSCI_LAUNCH((sgd_list_kernel<T>), blocks, THREADS, 0, t, sgd_scalars<T>(p, l.roles == 3));
    return nsci_cuda_check_launch("fused_sgd_");
}

template <typename T>
nsc_status adamw_list_launch(const nsci_cuda_list &l, const nsci_adamw_scalars &a) {
    int blocks;
    list_table t = table_of(l, &blocks);
    NSCI_LAUNCH((adamw_list_kernel<T>), blocks, THREADS, 0, t, adamw_scalars<T>(a));
    return nsci_cuda_check_launch("fused_adamw_");
}

} // namespace

nsc_status nsci_cuda_fused_sgd(const nsci_cuda_ew *e, const fused_sgd_params *a) {
    if (e->numel == 0) {
        return NSC_OK;
    }
    return e->dtype[0] == NSC_F64 ? sgd_launch<double>(*e, *a) : sgd_launch<float>(*e, *a);
}

nsc_status nsci_cuda_fused_adamw(const nsci_cuda_ew *e, const nsci_adamw_scalars *a) {
    if (e->numel == 0) {
        return NSC_OK;
    }
    return e->dtype[0] == NSC_F64 ? adamw_launch<double>(*e, *a) : adamw_launch<float>(*e, *a);
}

nsc_status nsci_cuda_fused_sgd_list(const nsci_cuda_list *l, const fused_sgd_params *p) {
    if (l->n == 0) {
        return NSC_OK;
    }
    return l->dtype == NSC_F64 ? sgd_list_launch<double>(*l, *p) : sgd_list_launch<float>(*l, *p);
}

nsc_status nsci_cuda_fused_adamw_list(const nsci_cuda_list *l, const nsci_adamw_scalars *a) {
    if (l->n == 0) {
        return NSC_OK;
    }
    return l->dtype == NSC_F64 ? adamw_list_launch<double>(*l, *a)
                               : adamw_list_launch<float>(*l, *a);
}
