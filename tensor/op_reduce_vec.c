// f32 kernels on 4-lane vectors, shared by softmax (op_softmax.c) and
// logsumexp (op_reduce_stat.c): exp dominates both, and glibc's expf does
// not vectorize. GCC vector extensions (SSE2 on x86-64, NEON on arm64) and
// this exp: Cody-Waite reduction x = n ln2 + r, Cephes' degree-6 polynomial
// for e^r, and 2^n built in the exponent bits in two halves, so results
// underflow gradually to 0 below -87.3 and overflow to inf above 88.72.
// Within 1 ulp of exp in double over [-103, 88.7] (torch's Sleef expf: 1
// ulp); NaN passes through. Shapes: rows [rows, K].
#include <math.h>
#include <string.h>

#include "tensor/reduce.h"

// Largest of n >= 1 elements in 8 partial maxima (a shape GCC vectorizes);
// a NaN need not win: it turns the row's sum of exponentials into NaN anyway.
static float row_max_f32(const float *x, int64_t n) {
    float part[8];
    for (int k = 0; k < 8; k++) {
        part[k] = x[0];
    }
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int k = 0; k < 8; k++) {
            part[k] = x[i + k] > part[k] ? x[i + k] : part[k];
        }
    }
    for (; i < n; i++) {
        part[0] = x[i] > part[0] ? x[i] : part[0];
    }
    float m = part[0];
    for (int k = 1; k < 8; k++) {
        m = part[k] > m ? part[k] : m;
    }
    return m;
}

typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef uint32_t v4u __attribute__((vector_size(16)));

static inline v4f splat(float v) {
    return (v4f){ v, v, v, v };
}

// v, with lanes where mask is set replaced by c.
static inline v4f select_const(v4f v, v4i mask, float c) {
    return (v4f)(((v4i)v & ~mask) | ((v4i)splat(c) & mask));
}

static inline v4f vexp(v4f x) {
    const v4f magic = splat(12582912.0f);         // 1.5 * 2^23: adding it rounds to an integer
    x = select_const(x, x > splat(89.0f), 89.0f); // NaN fails both tests and stays
    x = select_const(x, x < splat(-104.0f), -104.0f);
    v4f t = x * splat(1.44269504088896341f) + magic;
    v4f n = t - magic;
    v4f r = (x - n * splat(0.693359375f)) - n * splat(-2.12194440e-4f);
    v4f p = splat(1.9875691500e-4f);
    p = p * r + splat(1.3981999507e-3f);
    p = p * r + splat(8.3334519073e-3f);
    p = p * r + splat(4.1665795894e-2f);
    p = p * r + splat(1.6666665459e-1f);
    p = p * r + splat(5.0000001201e-1f);
    v4f y = p * r * r + r + splat(1.0f);
    v4i ni = (v4i)t - (v4i)magic; // n as an integer, from t's mantissa bits
    v4i n1 = ni >> 1, n2 = ni - n1;
    v4u s1 = (v4u)(n1 + 127) << 23, s2 = (v4u)(n2 + 127) << 23;
    return y * (v4f)s1 * (v4f)s2;
}

// Lanes [0, n) of p (n <= 4), the others fill.
static inline v4f load4(const float *p, int64_t n, float fill) {
    v4f v = splat(fill);
    if (n == 4) {
        memcpy(&v, p, sizeof v);
        return v;
    }
    for (int64_t k = 0; k < n; k++) {
        v[k] = p[k];
    }
    return v;
}

static inline void store4(float *p, v4f v, int64_t n) {
    if (n == 4) {
        memcpy(p, &v, sizeof v);
        return;
    }
    for (int64_t k = 0; k < n; k++) {
        p[k] = v[k];
    }
}

static inline float lane_sum(v4f v) {
    return (v[0] + v[2]) + (v[1] + v[3]);
}

// Sum of exp(x[i] - max), the exponentials stored in y unless y is NULL.
// Padding lanes hold -inf, whose exponential is 0.
static float exp_sum_f32(const float *x, float *y, int64_t n, float max) {
    v4f acc = splat(0.0f), m = splat(max);
    for (int64_t i = 0; i < n; i += 4) {
        int64_t w = NSCI_MIN(4, n - i);
        v4f e = vexp(load4(x + i, w, -INFINITY) - m);
        if (y) {
            store4(y + i, e, w);
        }
        acc += e;
    }
    return lane_sum(acc);
}

float nsci_row_max_f32(const float *x, int64_t n) {
    return row_max_f32(x, n);
}

float nsci_exp_sum_f32(const float *x, int64_t n, float shift) {
    return exp_sum_f32(x, NULL, n, shift);
}

void nsci_softmax_rows_f32(void *ctx, int64_t begin, int64_t end) {
    const nsci_softmax_job *j = ctx;
    int64_t n = j->k;
    for (int64_t r = begin; r < end; r++) {
        const float *x = (const float *)j->a + r * n;
        float *y = (float *)j->out + r * n;
        float max = row_max_f32(x, n);
        if (j->log_form) { // (x - max) - log(sum)
            v4f m = splat(max), lse = splat(logf(exp_sum_f32(x, NULL, n, max)));
            for (int64_t i = 0; i < n; i += 4) {
                int64_t w = NSCI_MIN(4, n - i);
                store4(y + i, (load4(x + i, w, 0.0f) - m) - lse, w);
            }
        } else { // exp(x - max) / sum
            v4f inv = splat(1.0f / exp_sum_f32(x, y, n, max));
            for (int64_t i = 0; i < n; i += 4) {
                int64_t w = NSCI_MIN(4, n - i);
                store4(y + i, load4(y + i, w, 0.0f) * inv, w);
            }
        }
    }
}

// softmax: gx = y * (g - sum(g * y)); log_softmax: gx = g - exp(y) * sum(g).
void nsci_softmax_grad_rows_f32(void *ctx, int64_t begin, int64_t end) {
    const nsci_softmax_job *j = ctx;
    int64_t n = j->k;
    for (int64_t r = begin; r < end; r++) {
        const float *g = (const float *)j->a + r * n, *y = (const float *)j->b + r * n;
        float *gx = (float *)j->out + r * n;
        v4f acc = splat(0.0f);
        for (int64_t i = 0; i < n; i += 4) {
            int64_t w = NSCI_MIN(4, n - i);
            v4f gv = load4(g + i, w, 0.0f);
            acc += j->log_form ? gv : gv * load4(y + i, w, 0.0f);
        }
        v4f s = splat(lane_sum(acc));
        for (int64_t i = 0; i < n; i += 4) {
            int64_t w = NSCI_MIN(4, n - i);
            v4f gv = load4(g + i, w, 0.0f), yv = load4(y + i, w, 0.0f);
            store4(gx + i, j->log_form ? gv - vexp(yv) * s : yv * (gv - s), w);
        }
    }
}
