// Elementwise kernels: one strided, broadcasting launcher for every
// pointwise op (copies and conversions, fills, arithmetic, scalar forms,
// unary functions, fused activation gradients, comparisons, logic, where,
// masked_fill), plus dropout's Philox mask and tril/triu. The formulas are
// the CPU loops' (tensor/op_binary.c, op_scalar.c, op_unary.c,
// op_unary_grad.c, op_compare.c, op_copy.c), element for element.
#include <math.h>

#include "cuda/cuda_impl.h"

namespace {

const int THREADS = 256;

// --- conversions, as the CPU copy loops do them ---

template <typename T> struct conv {
    template <typename S> __device__ static T from(S v) {
        return (T)v;
    }
};
// float -> int64 as nsci_float_to_i64: truncation; NaN and out of range give INT64_MIN.
template <> struct conv<int64_t> {
    __device__ static int64_t from(double v) {
        if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0)) {
            return INT64_MIN;
        }
        return (int64_t)v;
    }
    __device__ static int64_t from(float v) {
        return from((double)v);
    }
    __device__ static int64_t from(int64_t v) {
        return v;
    }
    __device__ static int64_t from(uint8_t v) {
        return v != 0;
    }
};
template <> struct conv<uint8_t> {
    template <typename S> __device__ static uint8_t from(S v) {
        return v != 0;
    }
};
template <> struct conv<float> {
    template <typename S> __device__ static float from(S v) {
        return (float)v;
    }
    __device__ static float from(uint8_t v) {
        return v != 0 ? 1.0f : 0.0f;
    }
};

// Element off of a buffer of dtype, converted to T.
template <typename T> __device__ T load(const char *p, int dtype, int64_t off) {
    switch (dtype) {
        case NSC_F32:
            return conv<T>::from(((const float *)p)[off]);
        case NSC_F64:
            return conv<T>::from(((const double *)p)[off]);
        case NSC_I64:
            return conv<T>::from(((const int64_t *)p)[off]);
        default:
            return conv<T>::from(((const uint8_t *)p)[off]);
    }
}

// --- arithmetic with PyTorch's integer wrap-around and bool forms ---

__device__ float op_add(float a, float b) { return a + b; }
__device__ double op_add(double a, double b) { return a + b; }
__device__ int64_t op_add(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }
__device__ uint8_t op_add(uint8_t a, uint8_t b) { return a | b; }
__device__ float op_sub(float a, float b) { return a - b; }
__device__ double op_sub(double a, double b) { return a - b; }
__device__ int64_t op_sub(int64_t a, int64_t b) { return (int64_t)((uint64_t)a - (uint64_t)b); }
__device__ float op_mul(float a, float b) { return a * b; }
__device__ double op_mul(double a, double b) { return a * b; }
__device__ int64_t op_mul(int64_t a, int64_t b) { return (int64_t)((uint64_t)a * (uint64_t)b); }
__device__ uint8_t op_mul(uint8_t a, uint8_t b) { return a & b; }
// A negative exponent: torch's integer answers (tensor/op_binary.c).
__device__ int64_t ipow(int64_t base, int64_t exp) {
    if (exp < 0) {
        return base == 1 ? 1 : base == -1 ? ((exp & 1) ? -1 : 1) : 0;
    }
    uint64_t result = 1, b = (uint64_t)base;
    for (; exp > 0; exp >>= 1) {
        if (exp & 1) {
            result *= b;
        }
        b *= b;
    }
    return (int64_t)result;
}
__device__ float op_pow(float a, float b) { return powf(a, b); }
__device__ double op_pow(double a, double b) { return pow(a, b); }
__device__ int64_t op_pow(int64_t a, int64_t b) { return ipow(a, b); }
// maximum/minimum propagate NaN (a != a); bool: or / and.
template <typename T> __device__ T op_max(T a, T b) { return (a != a || a > b) ? a : b; }
template <typename T> __device__ T op_min(T a, T b) { return (a != a || a < b) ? a : b; }
__device__ uint8_t op_max(uint8_t a, uint8_t b) { return a | b; }
__device__ uint8_t op_min(uint8_t a, uint8_t b) { return a & b; }

__device__ float fexp(float a) { return expf(a); }
__device__ double fexp(double a) { return exp(a); }
__device__ float flog(float a) { return logf(a); }
__device__ double flog(double a) { return log(a); }
__device__ float fsqrt(float a) { return sqrtf(a); }
__device__ double fsqrt(double a) { return sqrt(a); }
__device__ float fsin(float a) { return sinf(a); }
__device__ double fsin(double a) { return sin(a); }
__device__ float fcos(float a) { return cosf(a); }
__device__ double fcos(double a) { return cos(a); }
__device__ float ftanh(float a) { return tanhf(a); }
__device__ double ftanh(double a) { return tanh(a); }
__device__ float ferf(float a) { return erff(a); }
__device__ double ferf(double a) { return erf(a); }
__device__ float fabs_(float a) { return fabsf(a); }
__device__ double fabs_(double a) { return fabs(a); }
__device__ int64_t fabs_(int64_t a) { return a < 0 ? (int64_t)(0 - (uint64_t)a) : a; }
__device__ float fneg(float a) { return -a; }
__device__ double fneg(double a) { return -a; }
__device__ int64_t fneg(int64_t a) { return (int64_t)(0 - (uint64_t)a); }

template <typename T> __device__ T sigmoid(T a) {
    return a >= 0 ? T(1) / (T(1) + fexp(-a)) : fexp(a) / (T(1) + fexp(a));
}
template <typename T> __device__ T gelu_erf(T a) {
    return T(0.5) * a * (T(1) + ferf(a * T(0.70710678118654752440)));
}
template <typename T> __device__ T gelu_tanh(T a) {
    return T(0.5) * a * (T(1) + ftanh(T(0.7978845608028654) * (a + T(0.044715) * a * a * a)));
}
// d/dx [x Phi(x)] = Phi(x) + x phi(x).
template <typename T> __device__ T gelu_erf_d(T x) {
    T cdf = T(0.5) * (T(1) + ferf(x * T(0.70710678118654752440)));
    T pdf = fexp(T(-0.5) * x * x) * T(0.3989422804014327);
    return cdf + x * pdf;
}
template <typename T> __device__ T gelu_tanh_d(T x) {
    const T k = T(0.7978845608028654), c = T(0.044715);
    T t = ftanh(k * (x + c * x * x * x));
    return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * k * (T(1) + T(3) * c * x * x);
}

// --- functors: x[0..2] are the inputs in the compute dtype ---

#define ARITH(NAME, EXPR)                                                                          \
    struct NAME {                                                                                  \
        double s0, s1;                                                                             \
        template <typename T> __device__ T operator()(const T *x) const {                          \
            T a = x[0], b = x[1];                                                                  \
            (void)a;                                                                               \
            (void)b;                                                                               \
            return (T)(EXPR);                                                                      \
        }                                                                                          \
    };
#define TEST(NAME, EXPR)                                                                           \
    struct NAME {                                                                                  \
        double s0, s1;                                                                             \
        template <typename T> __device__ uint8_t operator()(const T *x) const {                    \
            T a = x[0], b = x[1], s = (T)s0;                                                       \
            (void)a;                                                                               \
            (void)b;                                                                               \
            (void)s;                                                                               \
            return (uint8_t)(EXPR);                                                                \
        }                                                                                          \
    };

ARITH(f_copy, a)
ARITH(f_fill, conv<T>::from(s0))
ARITH(f_add, op_add(a, b))
ARITH(f_sub, op_sub(a, b))
ARITH(f_mul, op_mul(a, b))
ARITH(f_div, a / b)
ARITH(f_pow, op_pow(a, b))
ARITH(f_maximum, op_max(a, b))
ARITH(f_minimum, op_min(a, b))
ARITH(f_add_s, op_add(a, (T)s0))
ARITH(f_sub_s, op_sub(a, (T)s0))
ARITH(f_mul_s, op_mul(a, (T)s0))
ARITH(f_div_s, a / (T)s0)
// Exponent 2 is a plain square, as PyTorch special-cases it.
ARITH(f_pow_s, (T)s0 == T(2) ? op_mul(a, a) : op_pow(a, (T)s0))
ARITH(f_neg, fneg(a))
ARITH(f_abs, fabs_(a))
ARITH(f_exp, fexp(a))
ARITH(f_log, flog(a))
ARITH(f_sqrt, fsqrt(a))
ARITH(f_rsqrt, T(1) / fsqrt(a))
ARITH(f_sin, fsin(a))
ARITH(f_cos, fcos(a))
ARITH(f_tanh, ftanh(a))
ARITH(f_sigmoid, sigmoid(a))
ARITH(f_relu, (a > 0 || a != a) ? a : T(0))
ARITH(f_gelu_erf, gelu_erf(a))
ARITH(f_gelu_tanh, gelu_tanh(a))
ARITH(f_tanh_grad, a *(T(1) - b * b))
ARITH(f_sigmoid_grad, a *b *(T(1) - b))
ARITH(f_relu_grad, b <= 0 ? T(0) : a) // NaN passes, as threshold_backward
ARITH(f_gelu_erf_grad, a *gelu_erf_d(b))
ARITH(f_gelu_tanh_grad, a *gelu_tanh_d(b))
ARITH(f_where, a != 0 ? b : x[2])
ARITH(f_masked_fill, b != 0 ? conv<T>::from(s0) : a)
ARITH(f_square_diff, (a - b) * (a - b))
TEST(f_eq, a == b)
TEST(f_ne, a != b)
TEST(f_lt, a < b)
TEST(f_le, a <= b)
TEST(f_gt, a > b)
TEST(f_ge, a >= b)
TEST(f_eq_s, a == s)
TEST(f_ne_s, a != s)
TEST(f_lt_s, a < s)
TEST(f_le_s, a <= s)
TEST(f_gt_s, a > s)
TEST(f_ge_s, a >= s)
TEST(f_and, a && b)
TEST(f_or, a || b)
TEST(f_not, !a)

// A clamp bound as T, as tensor/op_unary.c's bound_*: for int64 the
// infinities (no bound) and integral bounds beyond its range saturate.
template <typename T> __device__ T clamp_bound(double v) {
    return (T)v;
}
template <> __device__ int64_t clamp_bound<int64_t>(double v) {
    return v >= 9223372036854775808.0    ? INT64_MAX
           : v <= -9223372036854775808.0 ? INT64_MIN
                                         : (int64_t)v;
}

// NaN stays NaN; bounds as torch.clamp (min first, then max). -inf as min
// and inf as max never bind; an infinity on the other side does.
struct f_clamp {
    double s0, s1;
    template <typename T> __device__ T operator()(const T *x) const {
        T a = x[0];
        const T lo = clamp_bound<T>(s0), hi = clamp_bound<T>(s1);
        if (a < lo) {
            a = lo;
        }
        if (a > hi) {
            a = hi;
        }
        return a;
    }
};

// --- the kernels ---

// Any layout: each operand's offset from its strides (32-bit math when small).
template <typename T, typename F> __global__ void ew_strided(nsci_cuda_ew e, F f) {
    using TO = decltype(f((const T *)nullptr));
    bool small = nsci_cuda_ew_small(&e);
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < e.numel; i += step) {
        T x[3] = { T(0), T(0), T(0) };
        int64_t off[NSCI_CUDA_MAX_OPERANDS];
#pragma unroll
        for (int k = 0; k < NSCI_CUDA_MAX_OPERANDS; k++) {
            if (k < e.n_operands) {
                off[k] = small ? nsci_cuda_unravel32(e.ndim, e.shape, e.stride[k], (uint32_t)i)
                               : nsci_cuda_ew_offset(&e, k, i);
            }
            if (k > 0 && k < e.n_operands) {
                x[k - 1] = load<T>(e.data[k], e.dtype[k], off[k]);
            }
        }
        ((TO *)e.data[0])[off[0]] = f(x);
    }
}

// Every operand one unit-stride run already in the compute dtype.
template <typename T, typename F> __global__ void ew_flat(nsci_cuda_ew e, F f) {
    using TO = decltype(f((const T *)nullptr));
    const T *in0 = (const T *)e.data[1], *in1 = (const T *)e.data[2], *in2 = (const T *)e.data[3];
    int n_in = e.n_operands - 1;
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < e.numel; i += step) {
        T x[3] = { n_in > 0 ? in0[i] : T(0), n_in > 1 ? in1[i] : T(0), n_in > 2 ? in2[i] : T(0) };
        ((TO *)e.data[0])[i] = f(x);
    }
}

int blocks_for(int64_t n) {
    int64_t b = (n + THREADS - 1) / THREADS;
    return (int)(b < (1 << 20) ? b : (1 << 20));
}

template <typename T> int dtype_of();
template <> int dtype_of<float>() { return NSC_F32; }
template <> int dtype_of<double>() { return NSC_F64; }
template <> int dtype_of<int64_t>() { return NSC_I64; }
template <> int dtype_of<uint8_t>() { return NSC_BOOL; }

template <typename T, typename F> nsc_status launch(const nsci_cuda_ew &e, F f) {
    bool same = true;
    for (int k = 1; k < e.n_operands; k++) {
        same = same && e.dtype[k] == dtype_of<T>();
    }
    if (same && nsci_cuda_ew_flat(&e)) {
        NSCI_LAUNCH((ew_flat<T>), blocks_for(e.numel), THREADS, 0, e, f);
    } else {
        NSCI_LAUNCH((ew_strided<T>), blocks_for(e.numel), THREADS, 0, e, f);
    }
    return nsci_cuda_check_launch("elementwise kernel");
}

nsc_status bad_dtype(int fn, nsc_dtype dt) {
    return nsci_fail(NSC_ERR_DTYPE, "cuda elementwise function %d: no kernel for dtype %s", fn,
                     nsc_dtype_name(dt));
}

// Instantiations only for the dtypes each CPU loop table has.
#define FLOATS(FN, F)                                                                              \
    case FN:                                                                                       \
        if (dt == NSC_F32) {                                                                       \
            return launch<float>(*e, F{ a, b });                                                   \
        }                                                                                          \
        if (dt == NSC_F64) {                                                                       \
            return launch<double>(*e, F{ a, b });                                                  \
        }                                                                                          \
        return bad_dtype(fn, dt);
#define NUMBERS(FN, F)                                                                             \
    case FN:                                                                                       \
        if (dt == NSC_I64) {                                                                       \
            return launch<int64_t>(*e, F{ a, b });                                                 \
        }                                                                                          \
        if (dt == NSC_F32) {                                                                       \
            return launch<float>(*e, F{ a, b });                                                   \
        }                                                                                          \
        if (dt == NSC_F64) {                                                                       \
            return launch<double>(*e, F{ a, b });                                                  \
        }                                                                                          \
        return bad_dtype(fn, dt);
#define ALL(FN, F)                                                                                 \
    case FN:                                                                                       \
        if (dt == NSC_BOOL) {                                                                      \
            return launch<uint8_t>(*e, F{ a, b });                                                 \
        }                                                                                          \
        if (dt == NSC_I64) {                                                                       \
            return launch<int64_t>(*e, F{ a, b });                                                 \
        }                                                                                          \
        if (dt == NSC_F32) {                                                                       \
            return launch<float>(*e, F{ a, b });                                                   \
        }                                                                                          \
        if (dt == NSC_F64) {                                                                       \
            return launch<double>(*e, F{ a, b });                                                  \
        }                                                                                          \
        return bad_dtype(fn, dt);
#define BOOLS(FN, F)                                                                               \
    case FN:                                                                                       \
        return launch<uint8_t>(*e, F{ a, b });

nsc_status run_arith(nsci_cuda_ew_fn fn, nsc_dtype dt, const nsci_cuda_ew *e, double a, double b) {
    switch (fn) {
        ALL(NSCI_EW_COPY, f_copy)
        ALL(NSCI_EW_FILL, f_fill)
        ALL(NSCI_EW_ADD, f_add)
        NUMBERS(NSCI_EW_SUB, f_sub)
        ALL(NSCI_EW_MUL, f_mul)
        FLOATS(NSCI_EW_DIV, f_div)
        NUMBERS(NSCI_EW_POW, f_pow)
        ALL(NSCI_EW_MAXIMUM, f_maximum)
        ALL(NSCI_EW_MINIMUM, f_minimum)
        NUMBERS(NSCI_EW_ADD_S, f_add_s)
        NUMBERS(NSCI_EW_SUB_S, f_sub_s)
        NUMBERS(NSCI_EW_MUL_S, f_mul_s)
        FLOATS(NSCI_EW_DIV_S, f_div_s)
        NUMBERS(NSCI_EW_POW_S, f_pow_s)
        NUMBERS(NSCI_EW_NEG, f_neg)
        NUMBERS(NSCI_EW_ABS, f_abs)
        NUMBERS(NSCI_EW_RELU, f_relu)
        NUMBERS(NSCI_EW_CLAMP, f_clamp)
        ALL(NSCI_EW_WHERE, f_where)
        ALL(NSCI_EW_MASKED_FILL, f_masked_fill)
        default:
            return NSC_ERR_STATE;
    }
}

nsc_status run_float(nsci_cuda_ew_fn fn, nsc_dtype dt, const nsci_cuda_ew *e, double a, double b) {
    switch (fn) {
        FLOATS(NSCI_EW_EXP, f_exp)
        FLOATS(NSCI_EW_LOG, f_log)
        FLOATS(NSCI_EW_SQRT, f_sqrt)
        FLOATS(NSCI_EW_RSQRT, f_rsqrt)
        FLOATS(NSCI_EW_SIN, f_sin)
        FLOATS(NSCI_EW_COS, f_cos)
        FLOATS(NSCI_EW_TANH, f_tanh)
        FLOATS(NSCI_EW_SIGMOID, f_sigmoid)
        FLOATS(NSCI_EW_GELU_ERF, f_gelu_erf)
        FLOATS(NSCI_EW_GELU_TANH, f_gelu_tanh)
        FLOATS(NSCI_EW_TANH_GRAD, f_tanh_grad)
        FLOATS(NSCI_EW_SIGMOID_GRAD, f_sigmoid_grad)
        FLOATS(NSCI_EW_RELU_GRAD, f_relu_grad)
        FLOATS(NSCI_EW_GELU_ERF_GRAD, f_gelu_erf_grad)
        FLOATS(NSCI_EW_GELU_TANH_GRAD, f_gelu_tanh_grad)
        FLOATS(NSCI_EW_SQUARE_DIFF, f_square_diff)
        default:
            return NSC_ERR_STATE;
    }
}

nsc_status run_test(nsci_cuda_ew_fn fn, nsc_dtype dt, const nsci_cuda_ew *e, double a, double b) {
    switch (fn) {
        ALL(NSCI_EW_EQ, f_eq)
        ALL(NSCI_EW_NE, f_ne)
        ALL(NSCI_EW_LT, f_lt)
        ALL(NSCI_EW_LE, f_le)
        ALL(NSCI_EW_GT, f_gt)
        ALL(NSCI_EW_GE, f_ge)
        NUMBERS(NSCI_EW_EQ_S, f_eq_s)
        NUMBERS(NSCI_EW_NE_S, f_ne_s)
        NUMBERS(NSCI_EW_LT_S, f_lt_s)
        NUMBERS(NSCI_EW_LE_S, f_le_s)
        NUMBERS(NSCI_EW_GT_S, f_gt_s)
        NUMBERS(NSCI_EW_GE_S, f_ge_s)
        BOOLS(NSCI_EW_AND, f_and)
        BOOLS(NSCI_EW_OR, f_or)
        BOOLS(NSCI_EW_NOT, f_not)
        default:
            return NSC_ERR_STATE;
    }
}

// --- dropout's mask: Philox4x32-10 as tensor/random.c ---

__device__ uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Word w (0..3) of the Philox block at counter (ctr, 0, 0, 0) under key.
__device__ uint32_t philox_word(uint64_t key64, uint32_t ctr, int w) {
    uint32_t key[2] = { (uint32_t)key64, (uint32_t)(key64 >> 32) };
    uint32_t c[4] = { ctr, 0, 0, 0 };
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c[0];
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c[2];
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ key[0];
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ key[1];
        uint32_t n3 = (uint32_t)p0;
        c[0] = n0;
        c[1] = n1;
        c[2] = n2;
        c[3] = n3;
        key[0] += 0x9E3779B9u;
        key[1] += 0xBB67AE85u;
    }
    return c[w];
}

// Element i: stream i / 2^14 keyed by mix64(seed + stream * golden), word i % 2^14.
template <typename T>
__global__ void dropout_kernel(nsci_cuda_ew e, uint8_t *mask, uint64_t seed, uint64_t threshold,
                               T scale, bool keep_all) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < e.numel; i += step) {
        bool keep = true;
        if (!keep_all) {
            uint64_t stream = (uint64_t)i >> 14;
            uint32_t local = (uint32_t)(i & ((1 << 14) - 1));
            uint64_t key = mix64(seed + stream * 0x9E3779B97F4A7C15ull);
            keep = philox_word(key, local / 4, (int)(local % 4)) >= threshold;
        }
        mask[i] = keep;
        T x = ((const T *)e.data[1])[nsci_cuda_ew_offset(&e, 1, i)];
        ((T *)e.data[0])[nsci_cuda_ew_offset(&e, 0, i)] = x * (keep ? scale : T(0));
    }
}

// Keeps element (row, col) of each matrix when col - row <= diagonal (lower)
// or >= diagonal (upper); raw element copies of elem bytes.
template <typename E>
__global__ void tri_kernel(nsci_cuda_ew e, int64_t rows, int64_t cols, int64_t diagonal,
                           bool lower) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < e.numel; i += step) {
        int64_t col = i % cols, row = (i / cols) % rows;
        bool keep = lower ? col - row <= diagonal : col - row >= diagonal;
        E v = keep ? ((const E *)e.data[1])[nsci_cuda_ew_offset(&e, 1, i)] : E(0);
        ((E *)e.data[0])[nsci_cuda_ew_offset(&e, 0, i)] = v;
    }
}

} // namespace

extern "C" {

nsc_status nsci_cuda_ew_run(nsci_cuda_ew_fn fn, nsc_dtype compute, const nsci_cuda_ew *e,
                            double a, double b) {
    if (e->numel == 0) {
        return NSC_OK;
    }
    nsc_status s = run_arith(fn, compute, e, a, b);
    if (s == NSC_ERR_STATE) {
        s = run_float(fn, compute, e, a, b);
    }
    if (s == NSC_ERR_STATE) {
        s = run_test(fn, compute, e, a, b);
    }
    if (s == NSC_ERR_STATE) {
        return nsci_fail(NSC_ERR_STATE, "cuda: unknown elementwise function %d", (int)fn);
    }
    return s;
}

nsc_status nsci_cuda_dropout(const nsci_cuda_ew *e, uint8_t *mask, uint64_t seed,
                             uint64_t threshold, double scale, bool keep_all) {
    if (e->numel == 0) {
        return NSC_OK;
    }
    if (e->dtype[0] == NSC_F64) {
        NSCI_LAUNCH((dropout_kernel<double>), blocks_for(e->numel), THREADS, 0, *e, mask, seed,
                    threshold, scale, keep_all);
    } else {
        NSCI_LAUNCH((dropout_kernel<float>), blocks_for(e->numel), THREADS, 0, *e, mask, seed,
                    threshold, (float)scale, keep_all);
    }
    return nsci_cuda_check_launch("dropout");
}

nsc_status nsci_cuda_tri(const nsci_cuda_ew *e, int64_t rows, int64_t cols, int64_t diagonal,
                         bool lower) {
    if (e->numel == 0) {
        return NSC_OK;
    }
    size_t elem = nsc_dtype_size((nsc_dtype)e->dtype[0]);
    int blocks = blocks_for(e->numel);
    if (elem == 1) {
        NSCI_LAUNCH((tri_kernel<uint8_t>), blocks, THREADS, 0, *e, rows, cols, diagonal, lower);
    } else if (elem == 4) {
        NSCI_LAUNCH((tri_kernel<uint32_t>), blocks, THREADS, 0, *e, rows, cols, diagonal, lower);
    } else {
        NSCI_LAUNCH((tri_kernel<uint64_t>), blocks, THREADS, 0, *e, rows, cols, diagonal, lower);
    }
    return nsci_cuda_check_launch("tril/triu");
}

} // extern "C"
