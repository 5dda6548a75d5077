// The fused optimizer updates on the GPU: one thread per element runs the
// op sequence of tensor/op_optim.c's CPU loops, with every scalar rounded to
// the parameter's dtype first and every product and sum rounded on its own,
// so a step gives the CPU's bits. One kernel per parameter, where the
// tensor-op sequence it replaces ran ~12 (docs/CUDA.md).
#include <math.h>

#include "cuda/cuda_impl.h"
#include "tensor/op_params.h"

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

// Operands: 0 param, 1 grad, 2 momentum_buffer (has_buf only).
template <typename T> __global__ void sgd_kernel(nsci_cuda_ew e, sgd_k<T> k, bool flat) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < e.numel; i += step) {
        T *p = at<T>(e, 0, i, flat);
        T d = *at<T>(e, 1, i, flat);
        if (k.maximize) {
            d = -d;
        }
        if (k.decay) {
            d = add(d, mul(k.wd, *p));
        }
        if (k.has_buf) {
            T *buf = at<T>(e, 2, i, flat);
            *buf = k.first ? d : add(mul(*buf, k.mom), mul(k.keep, d));
            d = k.nesterov ? add(d, mul(k.mom, *buf)) : *buf;
        }
        *p = add(*p, mul(k.neg_lr, d));
    }
}

template <typename T> struct adamw_k {
    T decay, b1, omb1, b2, omb2, bc2_sqrt, eps, neg_step;
    bool amsgrad;
};

// Operands: 0 param, 1 grad, 2 exp_avg, 3 exp_avg_sq, 4 max_exp_avg_sq (amsgrad).
template <typename T> __global__ void adamw_kernel(nsci_cuda_ew e, adamw_k<T> k, bool flat) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < e.numel; i += step) {
        T *p = at<T>(e, 0, i, flat), *m = at<T>(e, 2, i, flat), *v = at<T>(e, 3, i, flat);
        T g = *at<T>(e, 1, i, flat);
        T pv = mul(*p, k.decay);
        T mv = add(mul(*m, k.b1), mul(k.omb1, g));
        T vv = add(mul(*v, k.b2), mul(mul(k.omb2, g), g));
        *m = mv;
        *v = vv;
        if (k.amsgrad) {
            T *vmax = at<T>(e, 4, i, flat);
            vv = *vmax > vv ? *vmax : vv;
            *vmax = vv;
        }
        // sqrt and / are correctly rounded (nvcc's default -prec-sqrt and -prec-div).
        T denom = add(sqrt(vv) / k.bc2_sqrt, k.eps);
        *p = add(pv, mul(k.neg_step, mv) / denom);
    }
}

int blocks_for(int64_t n) {
    int64_t b = (n + THREADS - 1) / THREADS;
    return (int)(b < (1 << 20) ? b : (1 << 20));
}

template <typename T> nsc_status sgd_launch(const nsci_cuda_ew &e, const fused_sgd_params &p) {
    const nsc_sgd_config &a = p.config;
    sgd_k<T> k = { (T)a.weight_decay, (T)a.momentum,       (T)(1.0 - a.dampening),
                   (T)(-a.lr),        a.weight_decay != 0, e.n_operands == 3,
                   p.first_step,      a.nesterov,          a.maximize };
    NSCI_LAUNCH((sgd_kernel<T>), blocks_for(e.numel), THREADS, 0, e, k, nsci_cuda_ew_flat(&e));
    return nsci_cuda_check_launch("fused_sgd_");
}

template <typename T> nsc_status adamw_launch(const nsci_cuda_ew &e, const nsci_adamw_scalars &a) {
    adamw_k<T> k = { (T)a.decay, (T)a.beta1,           (T)a.one_minus_beta1,
                     (T)a.beta2, (T)a.one_minus_beta2, (T)a.bc2_sqrt,
                     (T)a.eps,   (T)a.neg_step_size,   a.amsgrad };
    NSCI_LAUNCH((adamw_kernel<T>), blocks_for(e.numel), THREADS, 0, e, k, nsci_cuda_ew_flat(&e));
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
