// Joins of n tensors: cat and stack (variadic ops, arity -1). Each input is
// copied (converted to the promoted dtype) into its slice of the output.
// https://pytorch.org/docs/stable/generated/torch.cat.html
#include <string.h>

#include "tensor/op_params.h"
#include "tensor/tensor_impl.h"

static const nsci_param_desc join_desc[] = {
    { "dim", NSCI_PARAM_INT, offsetof(join_params, dim), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

// Copies x into out's slice that starts at offset (elements) and has x's
// shape with out's strides (stride[] of length x->ndim). out (contiguous) is
// [outer, out_row] with the joined dim inside the row, so a contiguous x of
// out's dtype is outer rows of x_row elements, each one memcpy at column offset.
static nsc_status copy_to_slice(nsc_tensor *out, nsc_tensor *x, const int64_t *stride,
                                int64_t offset, int64_t outer) {
    int64_t n = nsci_numel(x->ndim, x->shape);
    if (n == 0) {
        return NSC_OK;
    }
    if (x->dtype == out->dtype && nsci_is_contiguous(x)) {
        size_t elem = nsc_dtype_size((nsc_dtype)x->dtype);
        int64_t x_row = n / outer, out_row = nsci_numel(out->ndim, out->shape) / outer;
        char *dst = nsci_data_ptr(out) + (size_t)offset * elem;
        const char *src = nsci_data_ptr(x);
        for (int64_t o = 0; o < outer; o++) {
            memcpy(dst + (size_t)(o * out_row) * elem, src + (size_t)(o * x_row) * elem,
                   (size_t)x_row * elem);
        }
        return NSC_OK;
    }
    nsc_tensor *slice = nsci_tensor_view(out, x->ndim, x->shape, stride, out->offset + offset);
    if (!slice) {
        return nsc_last_status();
    }
    nsc_status status = nsci_copy_into(slice, x);
    nsc_free(slice);
    return status;
}

// Product of out's sizes before dim.
static int64_t outer_of(const nsc_tensor *out, int dim) {
    int64_t outer = 1;
    for (int d = 0; d < dim; d++) {
        outer *= out->shape[d];
    }
    return outer;
}

// A gradient piece in the input's dtype (inputs of other float dtypes were promoted).
static nsc_tensor *in_dtype(nsc_tensor *piece, const nsci_meta *in) {
    if (!piece || piece->dtype == in->dtype) {
        return piece;
    }
    nsc_tensor *converted = nsc_to_dtype(piece, in->dtype);
    nsc_free(piece);
    return converted;
}

// --- cat ---
// Concatenates along dim; sizes agree elsewhere; dtypes promote (torch.result_type).
// 1-D inputs of size 0 are skipped whatever their shape, as torch 1.13 does for
// legacy reasons; dim is wrapped by the first input not skipped.
// Saves nothing: input i's gradient is the output gradient's narrow at its
// offset (a skipped input's is empty, [0]).

static bool cat_skipped(int ndim, const int64_t *shape) {
    return ndim == 1 && shape[0] == 0;
}

// Index of the input that sets rank and dim, or -1 when all are skipped.
static int cat_reference(int n, const nsci_meta *metas, nsc_tensor *const *in) {
    for (int i = 0; i < n; i++) {
        bool skipped = metas ? cat_skipped(metas[i].ndim, metas[i].shape)
                             : cat_skipped(in[i]->ndim, in[i]->shape);
        if (!skipped) {
            return i;
        }
    }
    return -1;
}

static nsc_status cat_check(nsci_call *c, int ref, int dim, int64_t *total) {
    const nsc_tensor *r = c->in[ref];
    *total = 0;
    for (int i = 0; i < c->n_in; i++) {
        const nsc_tensor *x = c->in[i];
        if (cat_skipped(x->ndim, x->shape)) {
            continue;
        }
        if (x->ndim != r->ndim) {
            return nsci_call_fail(c, NSC_ERR_SHAPE,
                                  "input %d has rank %d and input %d rank %d: "
                                  "expected equal ranks",
                                  i, x->ndim, ref, r->ndim);
        }
        for (int d = 0; d < x->ndim; d++) {
            if (d != dim && x->shape[d] != r->shape[d]) {
                return nsci_call_fail(c, NSC_ERR_SHAPE,
                                      "input %d has size %lld at dim %d and "
                                      "input %d size %lld: expected equal "
                                      "sizes except at dim %d",
                                      i, (long long)x->shape[d], d, ref, (long long)r->shape[d],
                                      dim);
            }
        }
        if (nsci_add_overflows(*total, x->shape[dim], total)) {
            return nsci_call_fail(c, NSC_ERR_SHAPE, "the joined size overflows int64");
        }
    }
    return NSC_OK;
}

static nsc_status join_inputs_check(nsci_call *c) {
    if (c->n_in < 1) {
        return nsci_call_fail(c, NSC_ERR_ARG, "expected at least one tensor");
    }
    return NSC_OK;
}

static nsc_status cat_infer(nsci_call *c) {
    const join_params *p = c->params;
    if (join_inputs_check(c) != NSC_OK) {
        return nsc_last_status();
    }
    for (int i = 0; i < c->n_in; i++) {
        if (c->in[i]->ndim == 0) {
            return nsci_call_fail(c, NSC_ERR_SHAPE,
                                  "input %d is 0-dim: it cannot be "
                                  "concatenated (use stack)",
                                  i);
        }
    }
    nsci_meta *m = &c->meta[0];
    m->dtype = nsci_result_type(c->n_in, c->in);
    int ref = cat_reference(c->n_in, NULL, c->in);
    if (ref < 0) { // every input is a skipped [0]
        m->ndim = 1;
        m->shape[0] = 0;
        return NSC_OK;
    }
    const nsc_tensor *r = c->in[ref];
    int dim = nsci_wrap_dim(p->dim, r->ndim);
    if (dim < 0) {
        return nsci_call_fail(c, NSC_ERR_ARG, "dim %d is out of range for rank %d", p->dim,
                              r->ndim);
    }
    int64_t total;
    if (cat_check(c, ref, dim, &total) != NSC_OK) {
        return nsc_last_status();
    }
    m->ndim = r->ndim;
    memcpy(m->shape, r->shape, sizeof r->shape);
    m->shape[dim] = total;
    return NSC_OK;
}

static nsc_status cat_cpu(nsci_call *c) {
    const join_params *p = c->params;
    nsc_tensor *out = c->out[0];
    int ref = cat_reference(c->n_in, NULL, c->in);
    if (ref < 0) {
        return NSC_OK;
    }
    int dim = nsci_wrap_dim(p->dim, out->ndim);
    int64_t pos = 0, outer = outer_of(out, dim);
    for (int i = 0; i < c->n_in; i++) {
        nsc_tensor *x = c->in[i];
        if (cat_skipped(x->ndim, x->shape)) {
            continue;
        }
        if (copy_to_slice(out, x, out->stride, pos * out->stride[dim], outer) != NSC_OK) {
            return nsc_last_status();
        }
        pos += x->shape[dim];
    }
    return NSC_OK;
}

static nsc_status cat_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                               nsc_tensor **grad_in) {
    const join_params *p = g->params;
    int ref = cat_reference(g->n_in, g->in_meta, NULL);
    int dim = ref < 0 ? 0 : nsci_wrap_dim(p->dim, g->in_meta[ref].ndim); // used when ref >= 0
    int64_t pos = 0;
    for (int i = 0; i < g->n_in; i++) {
        const nsci_meta *m = &g->in_meta[i];
        bool skipped = cat_skipped(m->ndim, m->shape);
        if (g->needs_grad[i]) {
            // A skipped [0] input's gradient is empty, as torch's, not none.
            grad_in[i] = skipped ? nsc_zeros(m->dtype, m->device, m->ndim, m->shape)
                                 : in_dtype(nsc_narrow(grad_out[0], dim, pos, m->shape[dim]), m);
            if (!grad_in[i]) {
                return nsc_last_status();
            }
        }
        pos += skipped ? 0 : m->shape[dim];
    }
    return NSC_OK;
}

const nsci_op_def nsci_op_cat = {
    .name = "cat",
    .arity = -1,
    .n_outputs = 1,
    .params_size = sizeof(join_params),
    .params = join_desc,
    .infer = cat_infer,
    .cpu = cat_cpu,
    .backward = cat_backward,
    .exempt = { [NSCI_CASE_RANK0] = "0-dim tensors cannot be concatenated (as torch.cat)" },
};

nsc_tensor *nsc_cat(int n, nsc_tensor *const *xs, int dim) {
    if (n > 0 && !xs) {
        return nsci_fail_null(NSC_ERR_ARG, "cat: the tensor list is NULL");
    }
    join_params p = { dim };
    return nsci_run(NSC_OP_cat, n, xs, &p);
}

// --- stack ---
// Joins n same-shaped tensors along a new dim (in [-(rank+1), rank]); dtypes promote.
// https://pytorch.org/docs/stable/generated/torch.stack.html
// Saves nothing: input i's gradient is select(grad, dim, i).

static nsc_status stack_infer(nsci_call *c) {
    const join_params *p = c->params;
    if (join_inputs_check(c) != NSC_OK) {
        return nsc_last_status();
    }
    const nsc_tensor *r = c->in[0];
    for (int i = 1; i < c->n_in; i++) {
        const nsc_tensor *x = c->in[i];
        if (x->ndim != r->ndim || memcmp(x->shape, r->shape, (size_t)r->ndim * 8) != 0) {
            char a[160], b[160];
            return nsci_call_fail(c, NSC_ERR_SHAPE,
                                  "input %d is %s and input 0 %s: expected "
                                  "equal shapes",
                                  i, nsci_shape_str(a, sizeof a, x->ndim, x->shape),
                                  nsci_shape_str(b, sizeof b, r->ndim, r->shape));
        }
    }
    int dim = nsci_wrap_dim(p->dim, r->ndim + 1);
    if (dim < 0 || r->ndim + 1 > NSC_MAX_DIMS) {
        return nsci_call_fail(c, NSC_ERR_ARG, "dim %d is out of range for a result of rank %d",
                              p->dim, r->ndim + 1);
    }
    nsci_meta *m = &c->meta[0];
    m->dtype = nsci_result_type(c->n_in, c->in);
    m->ndim = r->ndim + 1;
    for (int d = 0, k = 0; d < m->ndim; d++) {
        m->shape[d] = d == dim ? c->n_in : r->shape[k++];
    }
    return NSC_OK;
}

static nsc_status stack_cpu(nsci_call *c) {
    const join_params *p = c->params;
    nsc_tensor *out = c->out[0];
    int dim = nsci_wrap_dim(p->dim, out->ndim);
    int64_t stride[NSC_MAX_DIMS];
    for (int d = 0, k = 0; d < out->ndim; d++) {
        if (d != dim) {
            stride[k++] = out->stride[d];
        }
    }
    int64_t outer = outer_of(out, dim);
    for (int i = 0; i < c->n_in; i++) {
        if (copy_to_slice(out, c->in[i], stride, i * out->stride[dim], outer) != NSC_OK) {
            return nsc_last_status();
        }
    }
    return NSC_OK;
}

static nsc_status stack_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                 nsc_tensor **grad_in) {
    const join_params *p = g->params;
    int dim = nsci_wrap_dim(p->dim, g->in_meta[0].ndim + 1);
    for (int i = 0; i < g->n_in; i++) {
        if (g->needs_grad[i]) {
            grad_in[i] = in_dtype(nsc_select(grad_out[0], dim, i), &g->in_meta[i]);
            if (!grad_in[i]) {
                return nsc_last_status();
            }
        }
    }
    return NSC_OK;
}

const nsci_op_def nsci_op_stack = {
    .name = "stack",
    .arity = -1,
    .n_outputs = 1,
    .params_size = sizeof(join_params),
    .params = join_desc,
    .infer = stack_infer,
    .cpu = stack_cpu,
    .backward = stack_backward,
};

nsc_tensor *nsc_stack(int n, nsc_tensor *const *xs, int dim) {
    if (n > 0 && !xs) {
        return nsci_fail_null(NSC_ERR_ARG, "stack: the tensor list is NULL");
    }
    join_params p = { dim };
    return nsci_run(NSC_OP_stack, n, xs, &p);
}
