// f32 kernels of gelu_new (GPT-2's tanh GELU) and its gradient, and of
// cross-entropy's exponentials, on vectors: glibc's tanhf and expf do not
// vectorize (tanhf took a fifth of a GPT-2 forward, expf most of a
// cross-entropy over 50257 classes). GCC
// vector extensions (SSE on the baseline x86-64 build, AVX under
// -march=native). tanh follows Cephes' tanhf:
// an odd polynomial below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1) above, with
// op_reduce_vec.c's exp (the same reduction and polynomial, 1 ulp); within
// 2 ulp of tanhf, tanh(+-inf) = +-1, NaN passes through. The formulas around
// tanh are the scalar loops' (tensor/op_unary.c, op_unary_grad.c), operation
// for operation, so -inf, inf and NaN inputs give what they gave.
#include <math.h>
#include <string.h>

#include "tensor/pointwise.h"

// One AVX register where the build has AVX, else one SSE register (32-byte
// vectors without AVX draw GCC's ABI warning); lanes never mix, so the
// results are the same at either width.
#ifdef __AVX__
enum {
    LANES = 8
};
#else
enum {
    LANES = 4
};
#endif
typedef float vf __attribute__((vector_size(LANES * 4)));
typedef int32_t vi __attribute__((vector_size(LANES * 4)));
typedef uint32_t vu __attribute__((vector_size(LANES * 4)));

static inline vf splat(float v) {
    vf r;
    for (int k = 0; k < LANES; k++) {
        r[k] = v;
    }
    return r;
}

// v where mask is clear, c where it is set.
static inline vf blend(vf v, vi mask, vf c) {
    return (vf)(((vi)v & ~mask) | ((vi)c & mask));
}

// e^x: x = n ln2 + r, Cephes' degree-6 polynomial for e^r, 2^n in two halves.
static inline vf vexp(vf x) {
    const vf magic = splat(12582912.0f);          // 1.5 * 2^23
    x = blend(x, x > splat(89.0f), splat(89.0f)); // NaN fails both tests
    x = blend(x, x < splat(-104.0f), splat(-104.0f));
    vf t = x * splat(1.44269504088896341f) + magic;
    vf n = t - magic;
    vf r = (x - n * splat(0.693359375f)) - n * splat(-2.12194440e-4f);
    vf p = splat(1.9875691500e-4f);
    p = p * r + splat(1.3981999507e-3f);
    p = p * r + splat(8.3334519073e-3f);
    p = p * r + splat(4.1665795894e-2f);
    p = p * r + splat(1.6666665459e-1f);
    p = p * r + splat(5.0000001201e-1f);
    vf y = p * r * r + r + splat(1.0f);
    vi ni = (vi)t - (vi)magic;
    vi n1 = ni >> 1, n2 = ni - n1;
    vu s1 = (vu)(n1 + 127) << 23, s2 = (vu)(n2 + 127) << 23;
    return y * (vf)s1 * (vf)s2;
}

static inline vf vtanh(vf x) {
    const vi sign = (vi)splat(-0.0f);
    vf ax = (vf)((vi)x & ~sign);
    vf z = x * x;
    vf p = splat(-5.70498872745e-3f);
    p = p * z + splat(2.06390887954e-2f);
    p = p * z - splat(5.37397155531e-2f);
    p = p * z + splat(1.33314422036e-1f);
    p = p * z - splat(3.33332819422e-1f);
    vf small = p * z * x + x;
    vf large = splat(1.0f) - splat(2.0f) / (vexp(ax + ax) + splat(1.0f)); // +inf: 1
    large = (vf)((vi)large | ((vi)x & sign));
    return blend(large, ax < splat(0.625f), small); // NaN: large, which is NaN
}

// Lanes [0, n) of p (n <= LANES), the others 0.
static inline vf load_lanes(const float *p, int64_t n) {
    vf v = splat(0.0f);
    if (n == LANES) {
        memcpy(&v, p, sizeof v);
        return v;
    }
    for (int64_t k = 0; k < n; k++) {
        v[k] = p[k];
    }
    return v;
}

static inline void store_lanes(float *p, vf v, int64_t n) {
    if (n == LANES) {
        memcpy(p, &v, sizeof v);
        return;
    }
    for (int64_t k = 0; k < n; k++) {
        p[k] = v[k];
    }
}

// 0.5 a (1 + tanh(k (a + c a^3))), as gelu_tanh_f32 in op_unary.c.
static inline vf gelu_lanes(vf a) {
    vf u = splat(0.7978845608028654f) * (a + splat(0.044715f) * a * a * a);
    return splat(0.5f) * a * (splat(1.0f) + vtanh(u));
}

// g * d/dx of gelu_new at x, as gelu_tanh_df in op_unary_grad.c.
static inline vf gelu_grad_lanes(vf g, vf x) {
    const vf k = splat(0.7978845608028654f), c = splat(0.044715f);
    vf t = vtanh(k * (x + c * x * x * x));
    vf d = splat(0.5f) * (splat(1.0f) + t) +
            splat(0.5f) * x * (splat(1.0f) - t * t) * k * (splat(1.0f) + splat(3.0f) * c * x * x);
    return g * d;
}

void nsci_gelu_tanh_f32_vec(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i += LANES) {
        int64_t w = NSCI_MIN(LANES, n - i);
        store_lanes(y + i, gelu_lanes(load_lanes(x + i, w)), w);
    }
}

void nsci_gelu_tanh_grad_f32_vec(float *out, const float *g, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i += LANES) {
        int64_t w = NSCI_MIN(LANES, n - i);
        store_lanes(out + i, gelu_grad_lanes(load_lanes(g + i, w), load_lanes(x + i, w)), w);
    }
}

// sum(exp(x[i] - shift)) over x[0..n): the exponentials in f32, the sum in
// double (each lane its own partial sum), as cross-entropy's scalar loop.
double nsci_exp_sum_f32_f64(const float *x, int64_t n, float shift) {
    double acc[LANES] = { 0 };
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        vf e = vexp(load_lanes(x + i, LANES) - splat(shift));
        for (int k = 0; k < LANES; k++) {
            acc[k] += (double)e[k];
        }
    }
    if (i < n) {
        vf e = vexp(load_lanes(x + i, n - i) - splat(shift));
        for (int k = 0; k < n - i; k++) {
            acc[k] += (double)e[k];
        }
    }
    double sum = 0.0;
    for (int k = 0; k < LANES; k++) {
        sum += acc[k];
    }
    return sum;
}

// out[i] = scale * exp(x[i] - shift) over x[0..n).
void nsci_exp_scaled_f32(float *out, const float *x, int64_t n, float shift, float scale) {
    for (int64_t i = 0; i < n; i += LANES) {
        int64_t w = NSCI_MIN(LANES, n - i);
        store_lanes(out + i, splat(scale) * vexp(load_lanes(x + i, w) - splat(shift)), w);
    }
}
