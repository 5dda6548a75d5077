// Shared machinery of the one-input pointwise families (op_unary.c,
// op_scalar.c, op_compare.c, op_unary_grad.c): loop generators over the
// elementwise iterator, each with a contiguous path the compiler vectorizes.
#ifndef NSC_TENSOR_POINTWISE_H
#define NSC_TENSOR_POINTWISE_H

#include "tensor/tensor_impl.h"

// out = EXPR(a) with `a` the input element; ctx unused.
#define NSCI_UNARY_LOOP(NAME, TO, TI, EXPR)                                                        \
    static void NAME(int64_t n, char **p, const int64_t *s, void *ctx) {                           \
        (void)ctx;                                                                                 \
        if (s[0] == (int64_t)sizeof(TO) && s[1] == (int64_t)sizeof(TI)) {                          \
            TO *restrict o = (TO *)p[0];                                                           \
            const TI *restrict x = (const TI *)p[1];                                               \
            for (int64_t i = 0; i < n; i++) {                                                      \
                TI a = x[i];                                                                       \
                o[i] = EXPR;                                                                       \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        for (int64_t i = 0; i < n; i++) {                                                          \
            TI a = *(const TI *)(p[1] + i * s[1]);                                                 \
            *(TO *)(p[0] + i * s[0]) = EXPR;                                                       \
        }                                                                                          \
    }

// out = EXPR(a, s) with `s` the double scalar at *ctx, converted to TI once.
#define NSCI_SCALAR_LOOP(NAME, TO, TI, EXPR)                                                       \
    static void NAME(int64_t n, char **p, const int64_t *st, void *ctx) {                          \
        const TI s = (TI)(*(const double *)ctx);                                                   \
        if (st[0] == (int64_t)sizeof(TO) && st[1] == (int64_t)sizeof(TI)) {                       \
            TO *restrict o = (TO *)p[0];                                                           \
            const TI *restrict x = (const TI *)p[1];                                               \
            for (int64_t i = 0; i < n; i++) {                                                      \
                TI a = x[i];                                                                       \
                o[i] = EXPR;                                                                       \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        for (int64_t i = 0; i < n; i++) {                                                          \
            TI a = *(const TI *)(p[1] + i * st[1]);                                                \
            *(TO *)(p[0] + i * st[0]) = EXPR;                                                      \
        }                                                                                          \
    }

// out = EXPR(a, b) over two inputs of type TI.
#define NSCI_BINARY_TO_LOOP(NAME, TO, TI, EXPR)                                                    \
    static void NAME(int64_t n, char **p, const int64_t *s, void *ctx) {                           \
        (void)ctx;                                                                                 \
        if (s[0] == (int64_t)sizeof(TO) && s[1] == (int64_t)sizeof(TI) &&                          \
            s[2] == (int64_t)sizeof(TI)) {                                                         \
            TO *restrict o = (TO *)p[0];                                                           \
            const TI *restrict x = (const TI *)p[1];                                               \
            const TI *restrict y = (const TI *)p[2];                                               \
            for (int64_t i = 0; i < n; i++) {                                                      \
                TI a = x[i], b = y[i];                                                             \
                o[i] = EXPR;                                                                       \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        for (int64_t i = 0; i < n; i++) {                                                          \
            TI a = *(const TI *)(p[1] + i * s[1]), b = *(const TI *)(p[2] + i * s[2]);             \
            *(TO *)(p[0] + i * s[0]) = EXPR;                                                       \
        }                                                                                          \
    }

// gelu_new (tanh form) of x[0..n) into y, and its gradient g * gelu_new'(x)
// into out, on f32 vectors (tensor/op_unary_vec.c).
void nsci_gelu_tanh_f32_vec(float *y, const float *x, int64_t n);
void nsci_gelu_tanh_grad_f32_vec(float *out, const float *g, const float *x, int64_t n);
// sum(exp(x[i] - shift)) over x[0..n), exponentials in f32 (1 ulp), the sum
// in double; and out[i] = scale * exp(x[i] - shift) (op_unary_vec.c).
double nsci_exp_sum_f32_f64(const float *x, int64_t n, float shift);
void nsci_exp_scaled_f32(float *out, const float *x, int64_t n, float shift, float scale);

#endif
