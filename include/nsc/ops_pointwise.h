// Elementwise ops with PyTorch broadcasting and type promotion. See
// nsc/ops.h for the rules every op follows.
#ifndef NSC_OPS_POINTWISE_H
#define NSC_OPS_POINTWISE_H

#include "nsc/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

// --- binary (broadcasting; result dtype by PyTorch promotion) ---

nsc_tensor *nsc_add(nsc_tensor *a, nsc_tensor *b);
nsc_tensor *nsc_sub(nsc_tensor *a, nsc_tensor *b);
nsc_tensor *nsc_mul(nsc_tensor *a, nsc_tensor *b);
// True division: integer inputs give f32 (torch.div).
nsc_tensor *nsc_div(nsc_tensor *a, nsc_tensor *b);
nsc_tensor *nsc_pow(nsc_tensor *a, nsc_tensor *b);
nsc_tensor *nsc_maximum(nsc_tensor *a, nsc_tensor *b);
nsc_tensor *nsc_minimum(nsc_tensor *a, nsc_tensor *b);

// --- with a scalar ---
// A scalar with a fractional part turns integer and bool tensors into f32;
// an integral one keeps the tensor's dtype (bool becomes i64). C has one
// number type, so this stands in for Python's int/float distinction. An
// integral scalar an i64 result cannot hold (outside [-2^63, 2^63)) is
// NSC_ERR_ARG.

nsc_tensor *nsc_add_scalar(nsc_tensor *x, double s);
nsc_tensor *nsc_sub_scalar(nsc_tensor *x, double s);
nsc_tensor *nsc_mul_scalar(nsc_tensor *x, double s);
nsc_tensor *nsc_div_scalar(nsc_tensor *x, double s);
nsc_tensor *nsc_pow_scalar(nsc_tensor *x, double exponent);

// --- unary (integer inputs to exp/log/sqrt/rsqrt/sin/cos/tanh/sigmoid/gelu give f32) ---

nsc_tensor *nsc_neg(nsc_tensor *x);
nsc_tensor *nsc_abs(nsc_tensor *x);
nsc_tensor *nsc_exp(nsc_tensor *x);
nsc_tensor *nsc_log(nsc_tensor *x);
nsc_tensor *nsc_sqrt(nsc_tensor *x);
nsc_tensor *nsc_rsqrt(nsc_tensor *x);
nsc_tensor *nsc_sin(nsc_tensor *x);
nsc_tensor *nsc_cos(nsc_tensor *x);
nsc_tensor *nsc_tanh(nsc_tensor *x);
nsc_tensor *nsc_sigmoid(nsc_tensor *x);
nsc_tensor *nsc_relu(nsc_tensor *x);

typedef enum nsc_gelu_approx {
    NSC_GELU_ERF,  // exact: x * Phi(x) (approximate='none')
    NSC_GELU_TANH, // approximate='tanh', GPT-2's gelu_new
} nsc_gelu_approx;
nsc_tensor *nsc_gelu(nsc_tensor *x, nsc_gelu_approx approx);

// Clamps to [min, max] (min first, then max); min -INFINITY / max INFINITY
// mean no bound, any other bound binds (clamp(x, INFINITY, INFINITY) is inf).
// Bounds that bind promote as scalars do (bool with integral bounds gives
// i64); for i64, integral bounds beyond its range saturate to it. NaN bounds fail.
nsc_tensor *nsc_clamp(nsc_tensor *x, double min, double max);

// --- comparisons (bool results) and logic ---

nsc_tensor *nsc_eq(nsc_tensor *a, nsc_tensor *b);
nsc_tensor *nsc_ne(nsc_tensor *a, nsc_tensor *b);
nsc_tensor *nsc_lt(nsc_tensor *a, nsc_tensor *b);
nsc_tensor *nsc_le(nsc_tensor *a, nsc_tensor *b);
nsc_tensor *nsc_gt(nsc_tensor *a, nsc_tensor *b);
nsc_tensor *nsc_ge(nsc_tensor *a, nsc_tensor *b);
nsc_tensor *nsc_eq_scalar(nsc_tensor *x, double s);
nsc_tensor *nsc_ne_scalar(nsc_tensor *x, double s);
nsc_tensor *nsc_lt_scalar(nsc_tensor *x, double s);
nsc_tensor *nsc_le_scalar(nsc_tensor *x, double s);
nsc_tensor *nsc_gt_scalar(nsc_tensor *x, double s);
nsc_tensor *nsc_ge_scalar(nsc_tensor *x, double s);
// Any dtype; nonzero is true.
nsc_tensor *nsc_logical_and(nsc_tensor *a, nsc_tensor *b);
nsc_tensor *nsc_logical_or(nsc_tensor *a, nsc_tensor *b);
nsc_tensor *nsc_logical_not(nsc_tensor *x);

// cond ? a : b elementwise, all three broadcast; cond is bool.
nsc_tensor *nsc_where(nsc_tensor *cond, nsc_tensor *a, nsc_tensor *b);
// x with value where mask (bool, broadcast to x) is true. value must fit
// x's dtype (an i64 x refuses NaN or 1e30, even with no mask set, as torch).
nsc_tensor *nsc_masked_fill(nsc_tensor *x, nsc_tensor *mask, double value);

#ifdef __cplusplus
}
#endif

#endif
