// CUDA kernels of the pointwise families, as nsci_call entries: copies and
// conversions (contiguous, clone, to_dtype, reshape, flatten, to_device),
// in-place writes, binary and scalar arithmetic, unary functions, fused
// activation gradients, comparisons, logic, where, masked_fill, tril/triu,
// dropout and mse_loss. Dtype choices are the CPU kernels' (tensor/op_*.c);
// the arithmetic runs in cuda/op_pointwise.cu.
#ifdef NSC_HAVE_CUDA
#include <math.h>
#include <string.h>

#include "cuda/cuda_impl.h"
#include "tensor/convert.h"
#include "tensor/op_params.h"

// out = fn(in...) computed in dtype compute.
static nsc_status ew(nsc_tensor *out, int n_in, nsc_tensor *const *in, nsci_cuda_ew_fn fn,
                     nsc_dtype compute, double a, double b) {
    nsci_cuda_ew e;
    nsci_cuda_ew_make(&e, out, n_in, in);
    return nsci_cuda_ew_run(fn, compute, &e, a, b);
}

// --- copies ---

static nsc_status copy_cuda(nsci_call *c) {
    return nsci_cuda_copy_into(c->out[0], c->in[0]);
}

// reshape's and flatten's copy path: out (contiguous) receives x in
// row-major order, so out is written through x's shape (as reshape_cpu).
static nsc_status reshape_copy_cuda(nsci_call *c) {
    nsc_tensor *x = c->in[0];
    nsc_tensor as_x = *c->out[0];
    as_x.ndim = x->ndim;
    memcpy(as_x.shape, x->shape, sizeof x->shape);
    nsci_contiguous_strides(x->ndim, x->shape, as_x.stride);
    return nsci_cuda_copy_into(&as_x, x);
}

// Host <-> device: the host side is made contiguous first (no dispatch).
static nsc_status to_device_cuda(nsci_call *c) {
    nsc_tensor *x = c->in[0], *out = c->out[0];
    size_t bytes = (size_t)nsci_numel(x->ndim, x->shape) * nsc_dtype_size((nsc_dtype)x->dtype);
    if (bytes == 0) {
        return NSC_OK;
    }
    bool upload = x->device == NSC_CPU;
    nsc_tensor *src = upload ? nsci_cpu_contiguous(x) : nsci_cuda_contig(x, (nsc_dtype)x->dtype);
    if (!src) {
        return nsc_last_status();
    }
    nsc_status s = upload ? nsci_cuda_from_host(nsci_data_ptr(out), nsci_data_ptr(src), bytes)
                          : nsci_cuda_to_host(nsci_data_ptr(out), nsci_data_ptr(src), bytes);
    nsc_free(src);
    return s;
}

// --- in-place ---

static nsc_status copy__cuda(nsci_call *c) {
    return nsci_cuda_copy_into(c->in[0], c->in[1]);
}

static nsc_status fill__cuda(nsci_call *c) {
    double v = c->op == NSC_OP_fill_ ? ((const fill_params *)c->params)->value : 0.0;
    nsc_tensor *dst = c->in[0];
    return ew(dst, 0, NULL, NSCI_EW_FILL, (nsc_dtype)dst->dtype, v, 0);
}

static nsc_status arith__cuda(nsci_call *c) {
    nsc_tensor *dst = c->in[0];
    nsc_tensor *in[2] = { c->in[0], c->in[1] };
    return ew(dst, 2, in, c->op == NSC_OP_add_ ? NSCI_EW_ADD : NSCI_EW_MUL,
              (nsc_dtype)dst->dtype, 0, 0);
}

// --- binary, scalar, unary, gradients ---

static nsc_status binary_cuda(nsci_call *c) {
    static const nsci_cuda_ew_fn fns[] = {
        [NSC_OP_add] = NSCI_EW_ADD,         [NSC_OP_sub] = NSCI_EW_SUB,
        [NSC_OP_mul] = NSCI_EW_MUL,         [NSC_OP_div] = NSCI_EW_DIV,
        [NSC_OP_pow] = NSCI_EW_POW,         [NSC_OP_maximum] = NSCI_EW_MAXIMUM,
        [NSC_OP_minimum] = NSCI_EW_MINIMUM,
    };
    nsc_dtype t = (nsc_dtype)c->out[0]->dtype;
    return ew(c->out[0], 2, c->in, fns[c->op], t, 0, 0);
}

static nsc_status scalar_cuda(nsci_call *c) {
    nsci_cuda_ew_fn fn = c->op == NSC_OP_add_scalar   ? NSCI_EW_ADD_S
                         : c->op == NSC_OP_sub_scalar ? NSCI_EW_SUB_S
                         : c->op == NSC_OP_mul_scalar ? NSCI_EW_MUL_S
                         : c->op == NSC_OP_div_scalar ? NSCI_EW_DIV_S
                                                      : NSCI_EW_POW_S;
    double v = ((const scalar_params *)c->params)->value;
    return ew(c->out[0], 1, c->in, fn, (nsc_dtype)c->out[0]->dtype, v, 0);
}

static nsc_status unary_cuda(nsci_call *c) {
    static const nsci_cuda_ew_fn fns[] = {
        [NSC_OP_neg] = NSCI_EW_NEG,       [NSC_OP_abs] = NSCI_EW_ABS,
        [NSC_OP_exp] = NSCI_EW_EXP,       [NSC_OP_log] = NSCI_EW_LOG,
        [NSC_OP_sqrt] = NSCI_EW_SQRT,     [NSC_OP_rsqrt] = NSCI_EW_RSQRT,
        [NSC_OP_sin] = NSCI_EW_SIN,       [NSC_OP_cos] = NSCI_EW_COS,
        [NSC_OP_tanh] = NSCI_EW_TANH,     [NSC_OP_sigmoid] = NSCI_EW_SIGMOID,
        [NSC_OP_relu] = NSCI_EW_RELU,     [NSC_OP_clamp] = NSCI_EW_CLAMP,
        [NSC_OP_gelu] = NSCI_EW_GELU_ERF,
    };
    nsci_cuda_ew_fn fn = fns[c->op];
    double a = 0, b = 0;
    if (c->op == NSC_OP_gelu && ((const gelu_params *)c->params)->approximate == NSC_GELU_TANH) {
        fn = NSCI_EW_GELU_TANH;
    }
    if (c->op == NSC_OP_clamp) {
        a = ((const clamp_params *)c->params)->min;
        b = ((const clamp_params *)c->params)->max;
    }
    return ew(c->out[0], 1, c->in, fn, (nsc_dtype)c->out[0]->dtype, a, b);
}

static nsc_status grad_cuda(nsci_call *c) {
    nsci_cuda_ew_fn fn = c->op == NSC_OP_tanh_backward      ? NSCI_EW_TANH_GRAD
                         : c->op == NSC_OP_sigmoid_backward ? NSCI_EW_SIGMOID_GRAD
                         : c->op == NSC_OP_relu_backward    ? NSCI_EW_RELU_GRAD
                         : ((const gelu_grad_params *)c->params)->approximate == NSC_GELU_TANH
                             ? NSCI_EW_GELU_TANH_GRAD
                             : NSCI_EW_GELU_ERF_GRAD;
    return ew(c->out[0], 2, c->in, fn, (nsc_dtype)c->out[0]->dtype, 0, 0);
}

// --- comparisons, logic, selection ---

static nsc_status compare_cuda(nsci_call *c) {
    nsci_cuda_ew_fn fn = (nsci_cuda_ew_fn)(NSCI_EW_EQ + (c->op - NSC_OP_eq));
    return ew(c->out[0], 2, c->in, fn, nsci_result_type(2, c->in), 0, 0);
}

// Compares in the dtype x and the scalar promote to (bool compares as i64).
static nsc_status compare_scalar_cuda(nsci_call *c) {
    double v = ((const scalar_params *)c->params)->value;
    nsc_dtype t = nsci_scalar_result_type((nsc_dtype)c->in[0]->dtype, v);
    if (!nsci_scalar_fits(t, v)) {
        t = NSC_F64; // a huge or infinite scalar compares exactly in f64
    }
    nsci_cuda_ew_fn fn = (nsci_cuda_ew_fn)(NSCI_EW_EQ_S + (c->op - NSC_OP_eq_scalar));
    return ew(c->out[0], 1, c->in, fn, t, v, 0);
}

static nsc_status logical_cuda(nsci_call *c) {
    nsci_cuda_ew_fn fn = c->op == NSC_OP_logical_and  ? NSCI_EW_AND
                         : c->op == NSC_OP_logical_or ? NSCI_EW_OR
                                                      : NSCI_EW_NOT;
    return ew(c->out[0], c->n_in, c->in, fn, NSC_BOOL, 0, 0);
}

static nsc_status where_cuda(nsci_call *c) {
    return ew(c->out[0], 3, c->in, NSCI_EW_WHERE, (nsc_dtype)c->out[0]->dtype, 0, 0);
}

static nsc_status masked_fill_cuda(nsci_call *c) {
    double v = ((const scalar_params *)c->params)->value;
    return ew(c->out[0], 2, c->in, NSCI_EW_MASKED_FILL, (nsc_dtype)c->out[0]->dtype, v, 0);
}

// Operands (out, x) without coalescing: the kernel needs the last two dims.
static nsc_status tri_cuda(nsci_call *c) {
    nsc_tensor *out = c->out[0], *x = c->in[0];
    nsci_cuda_ew e = { .ndim = out->ndim, .n_operands = 2 };
    memcpy(e.shape, out->shape, sizeof out->shape);
    e.numel = nsci_numel(out->ndim, out->shape);
    e.data[0] = nsci_data_ptr(out);
    e.data[1] = nsci_data_ptr(x);
    e.dtype[0] = e.dtype[1] = out->dtype;
    memcpy(e.stride[0], out->stride, sizeof out->stride);
    memcpy(e.stride[1], x->stride, sizeof x->stride);
    int64_t rows = out->shape[out->ndim - 2], cols = out->shape[out->ndim - 1];
    int64_t d = ((const tri_params *)c->params)->diagonal;
    d = NSCI_MAX(NSCI_MIN(d, cols + 1), -rows - 1); // as the CPU kernel: no overflow
    return nsci_cuda_tri(&e, rows, cols, d, c->op == NSC_OP_tril);
}

// --- dropout, mse_loss ---

static nsc_status dropout_cuda(nsci_call *c) {
    const dropout_params *p = c->params;
    nsci_cuda_ew e;
    nsci_cuda_ew_make(&e, c->out[0], 1, c->in);
    double scale = p->p < 1.0 ? 1.0 / (1.0 - p->p) : 0.0;
    return nsci_cuda_dropout(&e, (uint8_t *)nsci_data_ptr(c->out[1]), (uint64_t)p->seed,
                             (uint64_t)ldexp(p->p, 32), scale, p->p == 0.0);
}

static nsc_status mse_cuda(nsci_call *c) {
    const mse_params *p = c->params;
    nsc_tensor *out = c->out[0];
    nsc_dtype dt = (nsc_dtype)out->dtype;
    if (p->reduction == NSC_REDUCTION_NONE) {
        return ew(out, 2, c->in, NSCI_EW_SQUARE_DIFF, dt, 0, 0);
    }
    nsci_meta joint;
    nsci_broadcast_meta(c, 2, c->in, &joint); // checked by infer
    nsc_tensor *sq = nsci_cuda_empty(dt, joint.ndim, joint.shape);
    nsc_status s = sq ? ew(sq, 2, c->in, NSCI_EW_SQUARE_DIFF, dt, 0, 0) : nsc_last_status();
    if (s == NSC_OK) {
        nsci_cuda_red r = { .x = nsci_data_ptr(sq), .x_dtype = dt, .n_red = sq->ndim };
        memcpy(r.red_shape, sq->shape, sizeof sq->shape);
        memcpy(r.red_stride, sq->stride, sizeof sq->stride);
        r.n_out = 1;
        r.n_red_elems = nsci_numel(sq->ndim, sq->shape);
        r.out = nsci_data_ptr(out);
        r.out_dtype = dt;
        r.kind = p->reduction == NSC_REDUCTION_MEAN ? NSCI_RED_MEAN : NSCI_RED_SUM;
        s = nsci_cuda_reduce(&r);
    }
    nsc_free(sq);
    return s;
}

void nsci_cuda_fill_pointwise(nsci_kernel_fn *t) {
    t[NSC_OP_reshape] = t[NSC_OP_flatten] = reshape_copy_cuda;
    t[NSC_OP_contiguous] = copy_cuda;
    t[NSC_OP_clone] = t[NSC_OP_to_dtype] = copy_cuda;
    t[NSC_OP_to_device] = to_device_cuda;
    t[NSC_OP_copy_] = copy__cuda;
    t[NSC_OP_fill_] = t[NSC_OP_zero_] = fill__cuda;
    t[NSC_OP_add_] = t[NSC_OP_mul_] = arith__cuda;
    nsc_op binary[] = { NSC_OP_add, NSC_OP_sub, NSC_OP_mul, NSC_OP_div,
                        NSC_OP_pow, NSC_OP_maximum, NSC_OP_minimum };
    for (int i = 0; i < NSCI_ARRAY_LEN(binary); i++) {
        t[binary[i]] = binary_cuda;
    }
    for (int op = NSC_OP_add_scalar; op <= NSC_OP_pow_scalar; op++) {
        t[op] = scalar_cuda;
    }
    for (int op = NSC_OP_neg; op <= NSC_OP_clamp; op++) {
        t[op] = unary_cuda;
    }
    for (int op = NSC_OP_tanh_backward; op <= NSC_OP_gelu_backward; op++) {
        t[op] = grad_cuda;
    }
    for (int op = NSC_OP_eq; op <= NSC_OP_ge; op++) {
        t[op] = compare_cuda;
    }
    for (int op = NSC_OP_eq_scalar; op <= NSC_OP_ge_scalar; op++) {
        t[op] = compare_scalar_cuda;
    }
    t[NSC_OP_logical_and] = t[NSC_OP_logical_or] = t[NSC_OP_logical_not] = logical_cuda;
    t[NSC_OP_where] = where_cuda;
    t[NSC_OP_masked_fill] = masked_fill_cuda;
    t[NSC_OP_tril] = t[NSC_OP_triu] = tri_cuda;
    t[NSC_OP_dropout] = dropout_cuda;
    t[NSC_OP_mse_loss] = mse_cuda;
}
#endif
