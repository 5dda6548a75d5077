// Reductions, softmax and layer_norm. dims lists may be negative; ndims = 0
// reduces over every dim. See nsc/ops.h for the rules every op follows.
#ifndef NSC_OPS_REDUCE_H
#define NSC_OPS_REDUCE_H

#include "nsc/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

// Sum over dims (bool and i64 sum to i64).
nsc_tensor *nsc_sum(nsc_tensor *x, int ndims, const int *dims, bool keepdim);
// Sum over every dim: a 0-dim tensor.
nsc_tensor *nsc_sum_all(nsc_tensor *x);
// Mean over dims (float inputs only, as torch.mean).
nsc_tensor *nsc_mean(nsc_tensor *x, int ndims, const int *dims, bool keepdim);
// Sums x down to shape (which x's shape broadcasts from): undoes a broadcast.
nsc_tensor *nsc_sum_to_size(nsc_tensor *x, int ndim, const int64_t *shape);

// Largest / smallest element: a 0-dim tensor (NaN propagates, as torch.max).
nsc_tensor *nsc_max(nsc_tensor *x);
nsc_tensor *nsc_min(nsc_tensor *x);
// Along dim: values and i64 indices (first occurrence), both new references.
nsc_status nsc_max_dim(nsc_tensor *x, int dim, bool keepdim, nsc_tensor **values,
                       nsc_tensor **indices);
nsc_status nsc_min_dim(nsc_tensor *x, int dim, bool keepdim, nsc_tensor **values,
                       nsc_tensor **indices);
// Index of the largest / smallest along dim (i64).
nsc_tensor *nsc_argmax(nsc_tensor *x, int dim, bool keepdim);
nsc_tensor *nsc_argmin(nsc_tensor *x, int dim, bool keepdim);
// Over the flattened tensor: a 0-dim i64.
nsc_tensor *nsc_argmax_all(nsc_tensor *x);
nsc_tensor *nsc_argmin_all(nsc_tensor *x);

// Variance / standard deviation over dims; unbiased divides by n - 1.
nsc_tensor *nsc_var(nsc_tensor *x, int ndims, const int *dims, bool unbiased, bool keepdim);
nsc_tensor *nsc_std(nsc_tensor *x, int ndims, const int *dims, bool unbiased, bool keepdim);

// True where every / any element over dims is nonzero (bool).
nsc_tensor *nsc_all(nsc_tensor *x, int ndims, const int *dims, bool keepdim);
nsc_tensor *nsc_any(nsc_tensor *x, int ndims, const int *dims, bool keepdim);

// log(sum(exp(x))) over dims, computed stably.
nsc_tensor *nsc_logsumexp(nsc_tensor *x, int ndims, const int *dims, bool keepdim);

// Vector norm over dims (torch.linalg.vector_norm, Tensor.norm(p, dim)):
// ord 2 is sqrt(sum x^2), 1 sum |x|, INFINITY max |x|, -INFINITY min |x|,
// 0 the number of nonzero elements, any other p (sum |x|^p)^(1/p). Float
// inputs; the result has x's dtype, accumulated in double (torch sums f32
// in f32, so where f32 squares overflow torch gives inf and nsc the norm).
// Over one element the norm is |x|. Over no elements ord >= 0 gives 0 and
// the others are refused (no identity), as in torch. Backward as torch's:
// (x / n) g for ord 2 (0 where n is 0), ties of +-inf share the gradient
// evenly, sgn(NaN) is 0, ord 0 has gradient 0.
nsc_tensor *nsc_norm(nsc_tensor *x, double ord, int ndims, const int *dims, bool keepdim);
// The same with the result (and its accumulation's rounding) in dtype, which
// may widen x's but not narrow it (torch's dtype= argument): the f64 norm
// of an f32 tensor without an f64 copy of it.
nsc_tensor *nsc_vector_norm(nsc_tensor *x, double ord, int ndims, const int *dims, bool keepdim,
                            nsc_dtype dtype);

// torch.nn.functional.normalize: x / max(||x||_p over dim, eps) (torch's
// defaults: p 2, eps 1e-12); the clamp's gradient is 0 where it binds.
nsc_tensor *nsc_normalize(nsc_tensor *x, double p, int dim, double eps);
// torch.nn.functional.cosine_similarity along dim (torch's eps 1e-8): x1 and
// x2 broadcast, then sum((x1 / max(||x1||, eps)) * (x2 / max(||x2||, eps)))
// over dim, as torch 2 computes it (each divided by its norm first). The max
// with eps bounds the value only, the norms' gradient passes through it; the
// result is clamped to [-1, 1] the same way (rounding can pass 1 by an ulp).
// Composed of public ops: every device, graphs.
nsc_tensor *nsc_cosine_similarity(nsc_tensor *x1, nsc_tensor *x2, int dim, double eps);

// Softmax / log-softmax along dim, subtracting the max first.
nsc_tensor *nsc_softmax(nsc_tensor *x, int dim);
nsc_tensor *nsc_log_softmax(nsc_tensor *x, int dim);

// Layer normalization over the last n_normalized dims (torch.nn.functional.
// layer_norm): (x - mean) / sqrt(var + eps) * weight + bias, biased variance.
// weight and bias have the normalized shape and may be NULL.
nsc_tensor *nsc_layer_norm(nsc_tensor *x, int n_normalized, nsc_tensor *weight,
                           nsc_tensor *bias, double eps);

#ifdef __cplusplus
}
#endif

#endif
