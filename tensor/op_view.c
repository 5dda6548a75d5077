// View ops: new geometry over the same storage, never a copy (reshape and
// flatten copy only when strides force it). Each op: params, infer (the only
// validation), backward, table row, public function. Views run no kernel.
// https://pytorch.org/docs/stable/tensor_view.html
#include <string.h>

#include "tensor/tensor_impl.h"

typedef struct shape_params {
    int ndim;
    int64_t shape[NSC_MAX_DIMS];
} shape_params;

static const nsci_param_desc shape_desc[] = {
    { "shape", NSCI_PARAM_I64_ARRAY, offsetof(shape_params, shape), offsetof(shape_params, ndim) },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

static nsc_tensor *grad_reshape_to_input(const nsci_grad_ctx *g, nsc_tensor *grad) {
    return nsc_reshape(grad, g->in_meta[0].ndim, g->in_meta[0].shape);
}

// --- view / reshape / flatten ---

// Strides for x viewed as shape, or false when x's layout does not allow it
// (the dims being merged or split must be contiguous with each other).
static bool view_strides(const nsc_tensor *x, int ndim, const int64_t *shape, int64_t *stride) {
    if (nsci_numel(x->ndim, x->shape) == 0 || x->ndim == 0) {
        nsci_contiguous_strides(ndim, shape, stride);
        return true;
    }
    int view_d = ndim - 1;
    int64_t chunk_stride = x->stride[x->ndim - 1];
    int64_t x_numel = 1, view_numel = 1;
    for (int d = x->ndim - 1; d >= 0; d--) {
        x_numel *= x->shape[d];
        bool chunk_ends = d == 0 || (x->shape[d - 1] != 1 &&
                                     x->stride[d - 1] != x_numel * chunk_stride);
        if (!chunk_ends) {
            continue;
        }
        while (view_d >= 0 && (view_numel < x_numel || shape[view_d] == 1)) {
            stride[view_d] = view_numel * chunk_stride;
            view_numel *= shape[view_d];
            view_d--;
        }
        if (view_numel != x_numel) {
            return false;
        }
        if (d > 0) {
            chunk_stride = x->stride[d - 1];
            x_numel = 1;
            view_numel = 1;
        }
    }
    return view_d == -1;
}

// Fills meta's shape from p, resolving one -1 against x's element count.
static nsc_status infer_shape_arg(nsci_call *c, const shape_params *p, nsci_meta *m) {
    if (p->ndim < 0 || p->ndim > NSC_MAX_DIMS) {
        return nsci_call_fail(c, NSC_ERR_SHAPE, "rank %d: expected 0..%d dims", p->ndim,
                              NSC_MAX_DIMS);
    }
    const nsc_tensor *x = c->in[0];
    int64_t numel = nsci_numel(x->ndim, x->shape), known = 1;
    int infer_at = -1;
    char want[160];
    nsci_shape_str(want, sizeof want, p->ndim, p->shape);
    for (int d = 0; d < p->ndim; d++) {
        if (p->shape[d] == -1 && infer_at < 0) {
            infer_at = d;
        } else if (p->shape[d] < 0) {
            return nsci_call_fail(c, NSC_ERR_SHAPE, "target shape %s: bad size %lld", want,
                                  (long long)p->shape[d]);
        } else if (nsci_mul_overflows(known, p->shape[d], &known)) {
            return nsci_call_fail(c, NSC_ERR_SHAPE, "target shape %s overflows int64", want);
        }
    }
    m->ndim = p->ndim;
    memcpy(m->shape, p->shape, sizeof p->shape);
    if (infer_at >= 0) {
        if (known == 0 || numel % known != 0) {
            return nsci_call_fail(c, NSC_ERR_SHAPE, "target shape %s: %lld elements do not fit",
                                  want, (long long)numel);
        }
        m->shape[infer_at] = numel / known;
    } else if (known != numel) {
        return nsci_call_fail(c, NSC_ERR_SHAPE, "target shape %s has %lld elements: expected %lld",
                              want, (long long)known, (long long)numel);
    }
    m->dtype = (nsc_dtype)x->dtype;
    return NSC_OK;
}

static nsc_status view_infer(nsci_call *c) {
    nsci_meta *m = &c->meta[0];
    if (infer_shape_arg(c, c->params, m) != NSC_OK) {
        return nsc_last_status();
    }
    if (!view_strides(c->in[0], m->ndim, m->shape, m->stride)) {
        return nsci_call_fail(c, NSC_ERR_SHAPE,
                              "the input's strides do not allow a view: use reshape");
    }
    m->offset = c->in[0]->offset;
    m->is_view = true;
    return NSC_OK;
}

static nsc_status reshape_infer(nsci_call *c) {
    nsci_meta *m = &c->meta[0];
    if (infer_shape_arg(c, c->params, m) != NSC_OK) {
        return nsc_last_status();
    }
    m->is_view = view_strides(c->in[0], m->ndim, m->shape, m->stride);
    m->offset = c->in[0]->offset;
    return NSC_OK;
}

// reshape's copy path: out (contiguous) receives x in row-major order.
static nsc_status reshape_cpu(nsci_call *c) {
    nsc_tensor *x = c->in[0];
    nsc_tensor as_x = *c->out[0]; // out's data seen with x's shape
    as_x.ndim = x->ndim;
    memcpy(as_x.shape, x->shape, sizeof x->shape);
    nsci_contiguous_strides(x->ndim, x->shape, as_x.stride);
    return nsci_copy_into(&as_x, x);
}

static nsc_status reshape_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                   nsc_tensor **grad_in) {
    grad_in[0] = grad_reshape_to_input(g, grad_out[0]);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

const nsci_op_def nsci_op_view = {
    .name = "view",
    .arity = 1,
    .n_outputs = 1,
    .params_size = sizeof(shape_params),
    .params = shape_desc,
    .infer = view_infer,
    .backward = reshape_backward,
    .flags = NSCI_OP_VIEW,
};

const nsci_op_def nsci_op_reshape = {
    .name = "reshape",
    .arity = 1,
    .n_outputs = 1,
    .params_size = sizeof(shape_params),
    .params = shape_desc,
    .infer = reshape_infer,
    .cpu = reshape_cpu,
    .backward = reshape_backward,
    .flags = NSCI_OP_VIEW,
};

nsc_tensor *nsc_view(nsc_tensor *x, int ndim, const int64_t *shape) {
    shape_params p = { .ndim = ndim };
    if (ndim >= 0 && ndim <= NSC_MAX_DIMS && ndim > 0 && shape) {
        memcpy(p.shape, shape, (size_t)ndim * sizeof *shape);
    }
    return nsci_run(NSC_OP_view, 1, &x, &p);
}

nsc_tensor *nsc_reshape(nsc_tensor *x, int ndim, const int64_t *shape) {
    shape_params p = { .ndim = ndim };
    if (ndim >= 0 && ndim <= NSC_MAX_DIMS && ndim > 0 && shape) {
        memcpy(p.shape, shape, (size_t)ndim * sizeof *shape);
    }
    return nsci_run(NSC_OP_reshape, 1, &x, &p);
}

typedef struct flatten_params {
    int start_dim, end_dim;
} flatten_params;

static const nsci_param_desc flatten_desc[] = {
    { "start_dim", NSCI_PARAM_INT, offsetof(flatten_params, start_dim), 0 },
    { "end_dim", NSCI_PARAM_INT, offsetof(flatten_params, end_dim), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

static nsc_status flatten_infer(nsci_call *c) {
    const flatten_params *p = c->params;
    const nsc_tensor *x = c->in[0];
    int start = nsci_wrap_dim(p->start_dim, x->ndim), end = nsci_wrap_dim(p->end_dim, x->ndim);
    if (start < 0 || end < 0 || (x->ndim > 0 && start > end)) {
        return nsci_call_fail(c, NSC_ERR_ARG, "start_dim %d, end_dim %d: bad dims for rank %d",
                              p->start_dim, p->end_dim, x->ndim);
    }
    shape_params target = { 0 };
    if (x->ndim == 0) {
        target.ndim = 1;
        target.shape[0] = 1;
    } else {
        for (int d = 0; d < start; d++) {
            target.shape[target.ndim++] = x->shape[d];
        }
        target.shape[target.ndim++] = nsci_numel(end - start + 1, x->shape + start);
        for (int d = end + 1; d < x->ndim; d++) {
            target.shape[target.ndim++] = x->shape[d];
        }
    }
    nsci_meta *m = &c->meta[0];
    if (infer_shape_arg(c, &target, m) != NSC_OK) {
        return nsc_last_status();
    }
    m->is_view = view_strides(x, m->ndim, m->shape, m->stride);
    m->offset = x->offset;
    return NSC_OK;
}

const nsci_op_def nsci_op_flatten = {
    .name = "flatten",
    .arity = 1,
    .n_outputs = 1,
    .params_size = sizeof(flatten_params),
    .params = flatten_desc,
    .infer = flatten_infer,
    .cpu = reshape_cpu,
    .backward = reshape_backward,
    .flags = NSCI_OP_VIEW,
};

nsc_tensor *nsc_flatten(nsc_tensor *x, int start_dim, int end_dim) {
    flatten_params p = { start_dim, end_dim };
    return nsci_run(NSC_OP_flatten, 1, &x, &p);
}

// --- squeeze / unsqueeze ---

typedef struct dim_params {
    int dim;
} dim_params;

static const nsci_param_desc dim_desc[] = {
    { "dim", NSCI_PARAM_INT, offsetof(dim_params, dim), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

static void meta_from(nsci_meta *m, const nsc_tensor *x) {
    m->dtype = (nsc_dtype)x->dtype;
    m->ndim = x->ndim;
    memcpy(m->shape, x->shape, sizeof x->shape);
    memcpy(m->stride, x->stride, sizeof x->stride);
    m->offset = x->offset;
    m->is_view = true;
}

static nsc_status squeeze_infer(nsci_call *c) {
    const dim_params *p = c->params;
    const nsc_tensor *x = c->in[0];
    int d = nsci_wrap_dim(p->dim, x->ndim);
    if (d < 0) {
        return nsci_call_fail(c, NSC_ERR_ARG, "dim %d is out of range for rank %d", p->dim,
                              x->ndim);
    }
    nsci_meta *m = &c->meta[0];
    meta_from(m, x);
    if (x->ndim > 0 && x->shape[d] == 1) {
        for (int k = d; k + 1 < x->ndim; k++) {
            m->shape[k] = x->shape[k + 1];
            m->stride[k] = x->stride[k + 1];
        }
        m->ndim--;
    }
    return NSC_OK;
}

static nsc_status unsqueeze_infer(nsci_call *c) {
    const dim_params *p = c->params;
    const nsc_tensor *x = c->in[0];
    int d = nsci_wrap_dim(p->dim, x->ndim + 1);
    if (d < 0 || x->ndim >= NSC_MAX_DIMS) {
        return nsci_call_fail(c, NSC_ERR_ARG, "dim %d is out of range for rank %d (max %d)",
                              p->dim, x->ndim, NSC_MAX_DIMS);
    }
    nsci_meta *m = &c->meta[0];
    meta_from(m, x);
    for (int k = x->ndim; k > d; k--) {
        m->shape[k] = x->shape[k - 1];
        m->stride[k] = x->stride[k - 1];
    }
    m->shape[d] = 1;
    m->stride[d] = d < x->ndim ? x->shape[d] * x->stride[d] : 1;
    m->ndim++;
    return NSC_OK;
}

const nsci_op_def nsci_op_squeeze = {
    .name = "squeeze",
    .arity = 1,
    .n_outputs = 1,
    .params_size = sizeof(dim_params),
    .params = dim_desc,
    .infer = squeeze_infer,
    .backward = reshape_backward,
    .flags = NSCI_OP_VIEW,
};

const nsci_op_def nsci_op_unsqueeze = {
    .name = "unsqueeze",
    .arity = 1,
    .n_outputs = 1,
    .params_size = sizeof(dim_params),
    .params = dim_desc,
    .infer = unsqueeze_infer,
    .backward = reshape_backward,
    .flags = NSCI_OP_VIEW,
};

nsc_tensor *nsc_squeeze(nsc_tensor *x, int dim) {
    dim_params p = { dim };
    return nsci_run(NSC_OP_squeeze, 1, &x, &p);
}

nsc_tensor *nsc_unsqueeze(nsc_tensor *x, int dim) {
    dim_params p = { dim };
    return nsci_run(NSC_OP_unsqueeze, 1, &x, &p);
}
