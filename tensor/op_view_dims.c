// View ops that reorder, pick or stretch dims: permute, transpose, slice,
// select, narrow, expand, as_strided; and split/chunk built from narrow.
// https://pytorch.org/docs/stable/tensor_view.html
#include <string.h>

#include "tensor/tensor_impl.h"

static void meta_from(nsci_meta *m, const nsc_tensor *x) {
    m->dtype = (nsc_dtype)x->dtype;
    m->ndim = x->ndim;
    memcpy(m->shape, x->shape, sizeof x->shape);
    memcpy(m->stride, x->stride, sizeof x->stride);
    m->offset = x->offset;
    m->is_view = true;
}

// The gradient of a view that picks part of its input: zeros of the input's
// shape with grad written through the same view.
static nsc_tensor *scatter_into_zeros(const nsci_grad_ctx *g, nsc_tensor *grad,
                                      nsc_tensor *(*same_view)(const nsci_grad_ctx *,
                                                               nsc_tensor *)) {
    const nsci_meta *in = &g->in_meta[0];
    nsc_tensor *zeros = nsc_zeros(in->dtype, nsc_tensor_device(grad), in->ndim, in->shape);
    nsc_tensor *part = same_view(g, zeros);
    if (!part || nsc_copy_(part, grad) != NSC_OK) {
        nsc_free(part);
        nsc_free(zeros);
        return NULL;
    }
    nsc_free(part);
    return zeros;
}

// --- permute / transpose ---

typedef struct permute_params {
    int ndim;
    int dims[NSC_MAX_DIMS];
} permute_params;

static const nsci_param_desc permute_desc[] = {
    { "dims", NSCI_PARAM_INT_ARRAY, offsetof(permute_params, dims),
      offsetof(permute_params, ndim) },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

static nsc_status permute_infer(nsci_call *c) {
    const permute_params *p = c->params;
    const nsc_tensor *x = c->in[0];
    if (p->ndim != x->ndim) {
        return nsci_call_fail(c, NSC_ERR_ARG, "%d dims given for a rank-%d input", p->ndim,
                              x->ndim);
    }
    nsci_meta *m = &c->meta[0];
    meta_from(m, x);
    bool seen[NSC_MAX_DIMS] = { false };
    for (int i = 0; i < p->ndim; i++) {
        int d = nsci_wrap_dim(p->dims[i], x->ndim);
        if (d < 0 || seen[d]) {
            return nsci_call_fail(c, NSC_ERR_ARG, "dims are not a permutation (entry %d is %d)",
                                  i, p->dims[i]);
        }
        seen[d] = true;
        m->shape[i] = x->shape[d];
        m->stride[i] = x->stride[d];
    }
    return NSC_OK;
}

static nsc_status permute_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                   nsc_tensor **grad_in) {
    const permute_params *p = g->params;
    int inverse[NSC_MAX_DIMS];
    for (int i = 0; i < p->ndim; i++) {
        inverse[nsci_wrap_dim(p->dims[i], p->ndim)] = i;
    }
    grad_in[0] = nsc_permute(grad_out[0], p->ndim, inverse);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

const nsci_op_def nsci_op_permute = {
    .name = "permute",
    .arity = 1,
    .n_outputs = 1,
    .params_size = sizeof(permute_params),
    .params = permute_desc,
    .infer = permute_infer,
    .backward = permute_backward,
    .flags = NSCI_OP_VIEW,
};

nsc_tensor *nsc_permute(nsc_tensor *x, int ndim, const int *dims) {
    permute_params p = { .ndim = ndim };
    if (ndim > 0 && ndim <= NSC_MAX_DIMS && dims) {
        memcpy(p.dims, dims, (size_t)ndim * sizeof *dims);
    } else if (ndim != 0) {
        p.ndim = -1; // reported by infer as a rank mismatch
    }
    return nsci_run(NSC_OP_permute, 1, &x, &p);
}

typedef struct transpose_params {
    int dim0, dim1;
} transpose_params;

static const nsci_param_desc transpose_desc[] = {
    { "dim0", NSCI_PARAM_INT, offsetof(transpose_params, dim0), 0 },
    { "dim1", NSCI_PARAM_INT, offsetof(transpose_params, dim1), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

static nsc_status transpose_infer(nsci_call *c) {
    const transpose_params *p = c->params;
    const nsc_tensor *x = c->in[0];
    int a = nsci_wrap_dim(p->dim0, x->ndim), b = nsci_wrap_dim(p->dim1, x->ndim);
    if (a < 0 || b < 0) {
        return nsci_call_fail(c, NSC_ERR_ARG, "dims %d, %d are out of range for rank %d",
                              p->dim0, p->dim1, x->ndim);
    }
    nsci_meta *m = &c->meta[0];
    meta_from(m, x);
    if (x->ndim > 0) {
        m->shape[a] = x->shape[b];
        m->stride[a] = x->stride[b];
        m->shape[b] = x->shape[a];
        m->stride[b] = x->stride[a];
    }
    return NSC_OK;
}

static nsc_status transpose_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                     nsc_tensor **grad_in) {
    const transpose_params *p = g->params;
    grad_in[0] = nsc_transpose(grad_out[0], p->dim0, p->dim1);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

const nsci_op_def nsci_op_transpose = {
    .name = "transpose",
    .arity = 1,
    .n_outputs = 1,
    .params_size = sizeof(transpose_params),
    .params = transpose_desc,
    .infer = transpose_infer,
    .backward = transpose_backward,
    .flags = NSCI_OP_VIEW,
};

nsc_tensor *nsc_transpose(nsc_tensor *x, int dim0, int dim1) {
    transpose_params p = { dim0, dim1 };
    return nsci_run(NSC_OP_transpose, 1, &x, &p);
}

// --- slice / narrow / select ---

typedef struct slice_params {
    int dim;
    int64_t start, stop, step;
} slice_params;

static const nsci_param_desc slice_desc[] = {
    { "dim", NSCI_PARAM_INT, offsetof(slice_params, dim), 0 },
    { "start", NSCI_PARAM_I64, offsetof(slice_params, start), 0 },
    { "stop", NSCI_PARAM_I64, offsetof(slice_params, stop), 0 },
    { "step", NSCI_PARAM_I64, offsetof(slice_params, step), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

// Python's rule: negative counts from the end, then clamp to [0, size].
static int64_t clamp_index(int64_t i, int64_t size) {
    if (i < 0) {
        i = i < -size ? 0 : i + size;
    }
    return i > size ? size : i;
}

static nsc_status slice_infer(nsci_call *c) {
    const slice_params *p = c->params;
    const nsc_tensor *x = c->in[0];
    int d = nsci_wrap_dim(p->dim, x->ndim);
    if (d < 0 || x->ndim == 0) {
        return nsci_call_fail(c, NSC_ERR_ARG, "dim %d is out of range for rank %d", p->dim,
                              x->ndim);
    }
    if (p->step <= 0) {
        return nsci_call_fail(c, NSC_ERR_ARG, "step %lld: expected a positive step",
                              (long long)p->step);
    }
    int64_t size = x->shape[d];
    int64_t start = clamp_index(p->start, size);
    int64_t stop = p->stop == NSC_END ? size : clamp_index(p->stop, size);
    // ceil((stop - start) / step) without forming stop - start + step - 1,
    // which overflows for a step near INT64_MAX.
    int64_t len = stop > start ? (stop - start - 1) / p->step + 1 : 0;
    int64_t stride;
    if (__builtin_mul_overflow(x->stride[d], p->step, &stride)) {
        return nsci_call_fail(c, NSC_ERR_ARG,
                              "step %lld: stride %lld x step overflows int64: expected a "
                              "smaller step",
                              (long long)p->step, (long long)x->stride[d]);
    }
    nsci_meta *m = &c->meta[0];
    meta_from(m, x);
    m->shape[d] = len;
    m->stride[d] = stride;
    if (len > 0) {
        m->offset = x->offset + start * x->stride[d];
    }
    return NSC_OK;
}

static nsc_tensor *slice_same_view(const nsci_grad_ctx *g, nsc_tensor *t) {
    const slice_params *p = g->params;
    return nsc_slice(t, p->dim, p->start, p->stop, p->step);
}

static nsc_status slice_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                 nsc_tensor **grad_in) {
    grad_in[0] = scatter_into_zeros(g, grad_out[0], slice_same_view);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

const nsci_op_def nsci_op_slice = {
    .name = "slice",
    .arity = 1,
    .n_outputs = 1,
    .params_size = sizeof(slice_params),
    .params = slice_desc,
    .infer = slice_infer,
    .backward = slice_backward,
    .flags = NSCI_OP_VIEW,
    .exempt = { [NSCI_CASE_RANK0] = "needs a dim" },
};

nsc_tensor *nsc_slice(nsc_tensor *x, int dim, int64_t start, int64_t stop, int64_t step) {
    slice_params p = { dim, start, stop, step };
    return nsci_run(NSC_OP_slice, 1, &x, &p);
}

typedef struct narrow_params {
    int dim;
    int64_t start, length;
} narrow_params;

static const nsci_param_desc narrow_desc[] = {
    { "dim", NSCI_PARAM_INT, offsetof(narrow_params, dim), 0 },
    { "start", NSCI_PARAM_I64, offsetof(narrow_params, start), 0 },
    { "length", NSCI_PARAM_I64, offsetof(narrow_params, length), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

static nsc_status narrow_infer(nsci_call *c) {
    const narrow_params *p = c->params;
    const nsc_tensor *x = c->in[0];
    int d = nsci_wrap_dim(p->dim, x->ndim);
    if (d < 0 || x->ndim == 0) {
        return nsci_call_fail(c, NSC_ERR_ARG, "dim %d is out of range for rank %d", p->dim,
                              x->ndim);
    }
    int64_t size = x->shape[d];
    int64_t start = p->start < 0 ? p->start + size : p->start;
    if (start < 0 || start > size || p->length < 0) {
        return nsci_call_fail(c, NSC_ERR_ARG,
                              "start %lld, length %lld are out of range for dim %d of size %lld",
                              (long long)p->start, (long long)p->length, p->dim, (long long)size);
    }
    if (p->length > size - start) { // start + length could overflow
        return nsci_call_fail(c, NSC_ERR_ARG,
                              "start %lld, length %lld are out of range: start (%lld) + length "
                              "(%lld) exceeds dimension size (%lld)",
                              (long long)p->start, (long long)p->length, (long long)start,
                              (long long)p->length, (long long)size);
    }
    nsci_meta *m = &c->meta[0];
    meta_from(m, x);
    m->shape[d] = p->length;
    m->offset = x->offset + start * x->stride[d];
    return NSC_OK;
}

static nsc_tensor *narrow_same_view(const nsci_grad_ctx *g, nsc_tensor *t) {
    const narrow_params *p = g->params;
    return nsc_narrow(t, p->dim, p->start, p->length);
}

static nsc_status narrow_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                  nsc_tensor **grad_in) {
    grad_in[0] = scatter_into_zeros(g, grad_out[0], narrow_same_view);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

const nsci_op_def nsci_op_narrow = {
    .name = "narrow",
    .arity = 1,
    .n_outputs = 1,
    .params_size = sizeof(narrow_params),
    .params = narrow_desc,
    .infer = narrow_infer,
    .backward = narrow_backward,
    .flags = NSCI_OP_VIEW,
    .exempt = { [NSCI_CASE_RANK0] = "needs a dim" },
};

nsc_tensor *nsc_narrow(nsc_tensor *x, int dim, int64_t start, int64_t length) {
    narrow_params p = { dim, start, length };
    return nsci_run(NSC_OP_narrow, 1, &x, &p);
}

typedef struct select_params {
    int dim;
    int64_t index;
} select_params;

static const nsci_param_desc select_desc[] = {
    { "dim", NSCI_PARAM_INT, offsetof(select_params, dim), 0 },
    { "index", NSCI_PARAM_I64, offsetof(select_params, index), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

static nsc_status select_infer(nsci_call *c) {
    const select_params *p = c->params;
    const nsc_tensor *x = c->in[0];
    int d = nsci_wrap_dim(p->dim, x->ndim);
    if (d < 0 || x->ndim == 0) {
        return nsci_call_fail(c, NSC_ERR_ARG, "dim %d is out of range for rank %d", p->dim,
                              x->ndim);
    }
    int64_t size = x->shape[d];
    if (p->index < -size || p->index >= size) {
        return nsci_call_fail(c, NSC_ERR_ARG, "index %lld is out of range for dim %d of size %lld",
                              (long long)p->index, p->dim, (long long)size);
    }
    int64_t index = p->index < 0 ? p->index + size : p->index;
    nsci_meta *m = &c->meta[0];
    meta_from(m, x);
    m->offset = x->offset + index * x->stride[d];
    for (int k = d; k + 1 < x->ndim; k++) {
        m->shape[k] = x->shape[k + 1];
        m->stride[k] = x->stride[k + 1];
    }
    m->ndim--;
    return NSC_OK;
}

static nsc_tensor *select_same_view(const nsci_grad_ctx *g, nsc_tensor *t) {
    const select_params *p = g->params;
    return nsc_select(t, p->dim, p->index);
}

static nsc_status select_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                  nsc_tensor **grad_in) {
    grad_in[0] = scatter_into_zeros(g, grad_out[0], select_same_view);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

const nsci_op_def nsci_op_select = {
    .name = "select",
    .arity = 1,
    .n_outputs = 1,
    .params_size = sizeof(select_params),
    .params = select_desc,
    .infer = select_infer,
    .backward = select_backward,
    .flags = NSCI_OP_VIEW,
    .exempt = { [NSCI_CASE_RANK0] = "needs a dim",
                [NSCI_CASE_EMPTY] = "selecting from a size-0 dim is an index error" },
};

nsc_tensor *nsc_select(nsc_tensor *x, int dim, int64_t index) {
    select_params p = { dim, index };
    return nsci_run(NSC_OP_select, 1, &x, &p);
}

// --- split / chunk: narrow views, not rows of their own ---

nsc_status nsc_split(nsc_tensor *x, int64_t split_size, int dim, int max_out, nsc_tensor **out,
                     int *n_out) {
    if (!x) {
        return nsc_last_status() != NSC_OK ? nsc_last_status()
                                           : nsci_fail(NSC_ERR_ARG, "split: input is NULL");
    }
    if (!out || !n_out) {
        return nsci_fail(NSC_ERR_ARG, "split: out and n_out must not be NULL");
    }
    int d = nsci_wrap_dim(dim, x->ndim);
    if (d < 0 || x->ndim == 0 || split_size < 0) {
        return nsci_fail(NSC_ERR_ARG, "split: dim %d, split_size %lld: bad arguments for rank %d",
                         dim, (long long)split_size, x->ndim);
    }
    int64_t size = x->shape[d];
    if (split_size == 0 && size != 0) { // torch: a size-0 dim splits into one empty piece
        return nsci_fail(NSC_ERR_ARG,
                         "split: split_size 0 along dim %d of size %lld: expected "
                         "split_size >= 1 (0 only for a size-0 dim)",
                         dim, (long long)size);
    }
    int64_t pieces = size == 0 ? 1 : 1 + (size - 1) / split_size; // no overflow near INT64_MAX
    if (pieces > max_out) {
        return nsci_fail(NSC_ERR_ARG, "split: %lld pieces do not fit in %d outputs",
                         (long long)pieces, max_out);
    }
    for (int64_t i = 0; i < pieces; i++) {
        int64_t start = i * split_size;
        out[i] = nsc_narrow(x, d, start, NSCI_MIN(split_size, size - start));
        if (!out[i]) {
            for (int64_t k = 0; k < i; k++) {
                nsc_free(out[k]);
                out[k] = NULL;
            }
            return nsc_last_status();
        }
    }
    *n_out = (int)pieces;
    return NSC_OK;
}

nsc_status nsc_chunk(nsc_tensor *x, int chunks, int dim, int max_out, nsc_tensor **out,
                     int *n_out) {
    if (!x) {
        return nsc_last_status() != NSC_OK ? nsc_last_status()
                                           : nsci_fail(NSC_ERR_ARG, "chunk: input is NULL");
    }
    int d = nsci_wrap_dim(dim, x->ndim);
    if (d < 0 || x->ndim == 0 || chunks <= 0) {
        return nsci_fail(NSC_ERR_ARG, "chunk: dim %d, chunks %d: bad arguments for rank %d", dim,
                         chunks, x->ndim);
    }
    int64_t size = x->shape[d];
    if (size > 0 || !out || !n_out) {
        int64_t split_size = NSCI_MAX((size + chunks - 1) / chunks, 1);
        return nsc_split(x, split_size, dim, max_out, out, n_out);
    }
    // An empty dim gives `chunks` empty pieces (torch.chunk), where split gives one.
    if (chunks > max_out) {
        return nsci_fail(NSC_ERR_ARG, "chunk: %d pieces do not fit in %d outputs", chunks, max_out);
    }
    for (int i = 0; i < chunks; i++) {
        if (!(out[i] = nsc_narrow(x, d, 0, 0))) {
            for (int k = 0; k < i; k++) {
                nsc_free(out[k]);
                out[k] = NULL;
            }
            return nsc_last_status();
        }
    }
    *n_out = chunks;
    return NSC_OK;
}
