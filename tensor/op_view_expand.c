// Views that stretch or reinterpret storage: expand (stride 0 on broadcast
// dims) and as_strided (raw geometry over the storage).
// https://pytorch.org/docs/stable/generated/torch.Tensor.expand.html
#include <string.h>

#include "tensor/tensor_impl.h"

typedef struct expand_params {
    int ndim;
    int64_t shape[NSC_MAX_DIMS];
} expand_params;

static const nsci_param_desc expand_desc[] = {
    { "shape", NSCI_PARAM_I64_ARRAY, offsetof(expand_params, shape),
      offsetof(expand_params, ndim) },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

static nsc_status expand_infer(nsci_call *c) {
    const expand_params *p = c->params;
    const nsc_tensor *x = c->in[0];
    char want[160];
    if (p->ndim < x->ndim || p->ndim > NSC_MAX_DIMS) {
        return nsci_call_fail(c, NSC_ERR_SHAPE, "target rank %d is below the input's rank %d",
                              p->ndim, x->ndim);
    }
    nsci_shape_str(want, sizeof want, p->ndim, p->shape);
    nsci_meta *m = &c->meta[0];
    m->dtype = (nsc_dtype)x->dtype;
    m->ndim = p->ndim;
    m->offset = x->offset;
    m->is_view = true;
    int lead = p->ndim - x->ndim;
    for (int d = 0; d < p->ndim; d++) {
        int64_t size = p->shape[d];
        if (d < lead) {
            if (size < 0) {
                return nsci_call_fail(c, NSC_ERR_SHAPE, "to %s: size %lld at new dim %d", want,
                                      (long long)size, d);
            }
            m->shape[d] = size;
            m->stride[d] = 0;
            continue;
        }
        int k = d - lead;
        if (size == -1 || size == x->shape[k]) {
            m->shape[d] = x->shape[k];
            m->stride[d] = x->stride[k];
        } else if (x->shape[k] == 1 && size >= 0) {
            m->shape[d] = size;
            m->stride[d] = 0;
        } else {
            return nsci_call_fail(c, NSC_ERR_SHAPE,
                                  "to %s: size %lld at dim %d cannot expand to %lld", want,
                                  (long long)x->shape[k], k, (long long)size);
        }
    }
    return NSC_OK;
}

static nsc_status expand_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                  nsc_tensor **grad_in) {
    grad_in[0] = nsc_sum_to_size(grad_out[0], g->in_meta[0].ndim, g->in_meta[0].shape);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

const nsci_op_def nsci_op_expand = {
    .name = "expand",
    .arity = 1,
    .n_outputs = 1,
    .params_size = sizeof(expand_params),
    .params = expand_desc,
    .infer = expand_infer,
    .backward = expand_backward,
    .flags = NSCI_OP_VIEW,
};

nsc_tensor *nsc_expand(nsc_tensor *x, int ndim, const int64_t *shape) {
    expand_params p = { .ndim = ndim };
    if (ndim > 0 && ndim <= NSC_MAX_DIMS && shape) {
        memcpy(p.shape, shape, (size_t)ndim * sizeof *shape);
    } else if (ndim != 0) {
        p.ndim = NSC_MAX_DIMS + 1;
    }
    return nsci_run(NSC_OP_expand, 1, &x, &p);
}

nsc_tensor *nsc_broadcast_to(nsc_tensor *x, int ndim, const int64_t *shape) {
    return nsc_expand(x, ndim, shape);
}

typedef struct as_strided_params {
    int ndim;
    int64_t shape[NSC_MAX_DIMS];
    int64_t stride[NSC_MAX_DIMS];
    int64_t offset;
} as_strided_params;

static const nsci_param_desc as_strided_desc[] = {
    { "shape", NSCI_PARAM_I64_ARRAY, offsetof(as_strided_params, shape),
      offsetof(as_strided_params, ndim) },
    { "stride", NSCI_PARAM_I64_ARRAY, offsetof(as_strided_params, stride),
      offsetof(as_strided_params, ndim) },
    { "offset", NSCI_PARAM_I64, offsetof(as_strided_params, offset), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

static nsc_status as_strided_infer(nsci_call *c) {
    const as_strided_params *p = c->params;
    const nsc_tensor *x = c->in[0];
    // torch differentiates as_strided; nsc has no rule, and a view that
    // silently drops the input's gradient would be worse than a refusal.
    if (x->requires_grad && nsci_hook_table.grad_enabled && nsci_hook_table.grad_enabled()) {
        return nsci_call_fail(c, NSC_ERR_UNSUPPORTED,
                              "the input requires grad and as_strided has no backward rule: "
                              "use slice, select, expand and permute, or detach the input");
    }
    if (p->ndim < 0 || p->ndim > NSC_MAX_DIMS || p->offset < 0) {
        return nsci_call_fail(c, NSC_ERR_ARG, "rank %d, offset %lld: bad geometry", p->ndim,
                              (long long)p->offset);
    }
    int64_t last = p->offset; // largest element offset the view reaches
    bool empty = false;
    for (int d = 0; d < p->ndim; d++) {
        if (p->shape[d] < 0 || p->stride[d] < 0) {
            return nsci_call_fail(c, NSC_ERR_ARG, "size %lld, stride %lld at dim %d: expected "
                                                  "non-negative values",
                                  (long long)p->shape[d], (long long)p->stride[d], d);
        }
        empty |= p->shape[d] == 0;
        int64_t reach;
        if (p->shape[d] > 0 && (nsci_mul_overflows(p->shape[d] - 1, p->stride[d], &reach) ||
                                nsci_add_overflows(last, reach, &last))) {
            return nsci_call_fail(c, NSC_ERR_ARG, "geometry overflows int64");
        }
    }
    if (x->storage && !empty) {
        int64_t capacity = (int64_t)(x->storage->bytes / nsc_dtype_size((nsc_dtype)x->dtype));
        if (last >= capacity) {
            return nsci_call_fail(c, NSC_ERR_ARG,
                                  "reaches element %lld of a storage of %lld elements",
                                  (long long)last, (long long)capacity);
        }
    }
    nsci_meta *m = &c->meta[0];
    m->dtype = (nsc_dtype)x->dtype;
    m->ndim = p->ndim;
    memcpy(m->shape, p->shape, sizeof p->shape);
    memcpy(m->stride, p->stride, sizeof p->stride);
    m->offset = p->offset;
    m->is_view = true;
    return NSC_OK;
}

// PyTorch's reference input is a fresh contiguous tensor, so only a
// contiguous input has the same storage geometry on both sides.
#define AS_STRIDED_LAYOUT "addresses storage: only contiguous inputs compare with PyTorch"

const nsci_op_def nsci_op_as_strided = {
    .name = "as_strided",
    .arity = 1,
    .n_outputs = 1,
    .params_size = sizeof(as_strided_params),
    .params = as_strided_desc,
    .infer = as_strided_infer,
    .no_grad = "its geometry addresses the storage, not the input's elements; differentiate "
               "through slice, select, expand and permute instead",
    .flags = NSCI_OP_VIEW,
    .exempt = { [NSCI_CASE_TRANSPOSED] = AS_STRIDED_LAYOUT,
                [NSCI_CASE_STEPPED] = AS_STRIDED_LAYOUT,
                [NSCI_CASE_EXPANDED] = AS_STRIDED_LAYOUT },
};

nsc_tensor *nsc_as_strided(nsc_tensor *x, int ndim, const int64_t *shape, const int64_t *stride,
                           int64_t offset) {
    as_strided_params p = { .ndim = ndim, .offset = offset };
    if (ndim > 0 && ndim <= NSC_MAX_DIMS && shape && stride) {
        memcpy(p.shape, shape, (size_t)ndim * sizeof *shape);
        memcpy(p.stride, stride, (size_t)ndim * sizeof *stride);
    } else if (ndim != 0) {
        p.ndim = -1;
    }
    return nsci_run(NSC_OP_as_strided, 1, &x, &p);
}

// --- detach: same storage, no history (torch.Tensor.detach) ---

static nsc_status detach_infer(nsci_call *c) {
    const nsc_tensor *x = c->in[0];
    nsci_meta *m = &c->meta[0];
    m->dtype = (nsc_dtype)x->dtype;
    m->ndim = x->ndim;
    memcpy(m->shape, x->shape, sizeof x->shape);
    memcpy(m->stride, x->stride, sizeof x->stride);
    m->offset = x->offset;
    m->is_view = true;
    return NSC_OK;
}

const nsci_op_def nsci_op_detach = {
    .name = "detach",
    .arity = 1,
    .n_outputs = 1,
    .infer = detach_infer,
    .no_grad = "detach cuts the history: no gradient flows through it",
    .flags = NSCI_OP_VIEW,
};

// Its output has no base (tensor/dispatch.c): not a view for autograd, so
// writes into it are the caller's business, and it never follows x's
// history, in graphs too (where the op runs without this wrapper).
nsc_tensor *nsc_detach(nsc_tensor *x) {
    return nsci_run(NSC_OP_detach, 1, &x, NULL);
}
