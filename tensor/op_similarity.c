// torch.nn.functional.normalize and cosine_similarity, composed of norm and
// pointwise ops: they run on every device, record as several nodes in a
// graph, and differentiate through the ops' own rules.
// https://pytorch.org/docs/stable/generated/torch.nn.functional.cosine_similarity.html
#include <math.h>

#include "tensor/tensor_impl.h"

// n clamped to [lo, hi] in value only: n + detach(clamp(n, lo, hi) - n). Its
// gradient is n's, as torch 2's cosine_similarity (clamp_min_ under
// no_grad), so a vector shorter than eps still passes its norm's gradient.
static nsc_tensor *clamp_value(nsc_tensor *n, double lo, double hi) {
    nsc_tensor *clamped = nsc_clamp(n, lo, hi);
    nsc_tensor *shift = nsc_sub(clamped, n);
    nsc_tensor *fixed = nsc_detach(shift);
    nsc_tensor *out = nsc_add(n, fixed);
    nsc_free(clamped);
    nsc_free(shift);
    nsc_free(fixed);
    return out;
}

nsc_tensor *nsc_normalize(nsc_tensor *x, double p, int dim, double eps) {
    if (!(eps >= 0)) {
        return nsci_fail_null(NSC_ERR_ARG, "normalize: eps %g: expected eps >= 0", eps);
    }
    nsc_tensor *n = nsc_norm(x, p, 1, &dim, true);
    nsc_tensor *denom = nsc_clamp(n, eps, HUGE_VAL); // torch: clamp_min, differentiable
    nsc_tensor *out = nsc_div(x, denom);
    nsc_free(n);
    nsc_free(denom);
    return out;
}

// The broadcast shape of a and b into shape (rank *ndim); false if none.
static bool broadcast_shape(const nsc_tensor *a, const nsc_tensor *b, int *ndim, int64_t *shape) {
    *ndim = NSCI_MAX(a->ndim, b->ndim);
    for (int d = 0; d < *ndim; d++) {
        int da = d - (*ndim - a->ndim), db = d - (*ndim - b->ndim);
        int64_t sa = da >= 0 ? a->shape[da] : 1, sb = db >= 0 ? b->shape[db] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            return false;
        }
        shape[d] = sa == 1 ? sb : sa;
    }
    return true;
}

nsc_tensor *nsc_cosine_similarity(nsc_tensor *x1, nsc_tensor *x2, int dim, double eps) {
    if (!x1 || !x2 || !(eps >= 0)) {
        return nsci_fail_null(NSC_ERR_ARG,
                              "cosine_similarity: %s, %s, eps %g: expected two "
                              "tensors and eps >= 0",
                              x1 ? "x1" : "x1 NULL", x2 ? "x2" : "x2 NULL", eps);
    }
    int ndim;
    int64_t shape[NSC_MAX_DIMS];
    char a[160], b[160];
    if (!broadcast_shape(x1, x2, &ndim, shape)) {
        return nsci_fail_null(NSC_ERR_SHAPE, "cosine_similarity: %s and %s do not broadcast",
                              nsci_shape_str(a, sizeof a, x1->ndim, x1->shape),
                              nsci_shape_str(b, sizeof b, x2->ndim, x2->shape));
    }
    if (nsci_wrap_dim(dim, ndim) < 0) {
        return nsci_fail_null(NSC_ERR_ARG,
                              "cosine_similarity: %s and %s: dim %d is out of range for rank %d",
                              nsci_shape_str(a, sizeof a, x1->ndim, x1->shape),
                              nsci_shape_str(b, sizeof b, x2->ndim, x2->shape), dim, ndim);
    }
    // As torch: both broadcast first, so each norm runs over the common dim.
    nsc_tensor *e1 = nsc_expand(x1, ndim, shape), *e2 = nsc_expand(x2, ndim, shape);
    nsc_tensor *n1 = nsc_norm(e1, 2, 1, &dim, true), *n2 = nsc_norm(e2, 2, 1, &dim, true);
    nsc_tensor *c1 = clamp_value(n1, eps, HUGE_VAL), *c2 = clamp_value(n2, eps, HUGE_VAL);
    nsc_tensor *u1 = nsc_div(e1, c1), *u2 = nsc_div(e2, c2);
    nsc_tensor *prod = nsc_mul(u1, u2);
    nsc_tensor *sum = nsc_sum(prod, 1, &dim, false);
    // Rounding can take the sum just past 1 (1.00000012 for two equal f32
    // vectors); the value is clamped to [-1, 1], the gradient left as is.
    nsc_tensor *out = clamp_value(sum, -1, 1);
    nsc_tensor *temps[] = { e1, e2, n1, n2, c1, c2, u1, u2, prod, sum };
    for (int i = 0; i < NSCI_ARRAY_LEN(temps); i++) {
        nsc_free(temps[i]);
    }
    return out;
}
