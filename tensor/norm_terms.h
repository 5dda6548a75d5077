// norm's per-element formulas (tensor/op_reduce_norm.c), shared by the CPU
// kernel and the CUDA kernels (cuda/op_reduce*.cu), which compile them as
// __host__ __device__: one definition, so both devices do the same double
// arithmetic. Plain C, also compiled as C++ by nvcc and by the emulator.
#ifndef NSC_TENSOR_NORM_TERMS_H
#define NSC_TENSOR_NORM_TERMS_H

#include <math.h>
#include <stdbool.h>

#if defined(__CUDACC__)
#define NSCI_NORM_HD __host__ __device__
#else
#define NSCI_NORM_HD
#endif

// One element's term of an ord norm's sum: |v|^ord (v^2 for 2, |v| for 1;
// for 0, 1 when v is nonzero: NaN counts).
static inline NSCI_NORM_HD double nsci_norm_term(double v, double ord) {
    double a = fabs(v);
    if (ord == 2.0) {
        return a * a;
    }
    if (ord == 1.0) {
        return a;
    }
    if (ord == 0.0) {
        return v != 0.0 ? 1.0 : 0.0;
    }
    return pow(a, ord);
}

// The norm from the accumulated sum (or max / min |v| for +-inf).
static inline NSCI_NORM_HD double nsci_norm_finish(double acc, double ord) {
    if (ord == 2.0) {
        return sqrt(acc);
    }
    if (ord == 1.0 || ord == 0.0 || isinf(ord)) {
        return acc;
    }
    return pow(acc, 1.0 / ord);
}

// The norm over one element v: |v| itself (ord 0: v != 0), with no
// overflow through v^2 or rounding through (|v|^p)^(1/p), as torch 2.
static inline NSCI_NORM_HD double nsci_norm_single(double v, double ord) {
    return ord == 0.0 ? (v != 0.0 ? 1.0 : 0.0) : fabs(v);
}

// Max (or min) of |x| so far and a = |x|, where NaN wins (it never compares
// larger, so it is kept explicitly).
static inline NSCI_NORM_HD double nsci_norm_pick_abs(double acc, double a, bool max) {
    if (isnan(acc) || isnan(a)) {
        return isnan(acc) ? acc : a;
    }
    return (max ? a > acc : a < acc) ? a : acc;
}

#endif
