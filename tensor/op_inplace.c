// In-place writes: copy_ (slice assignment), fill_, zero_, add_, mul_. Each
// writes into input 0 (which may be a view) and returns it; dispatch bumps
// the storage's version counter so autograd can detect stale saved values.
// https://pytorch.org/docs/stable/generated/torch.Tensor.copy_.html
#include <string.h>

#include "tensor/op_params.h"
#include "tensor/tensor_impl.h"

// Refuses destinations where two elements share memory (stride 0 from expand).
static nsc_status check_writable(nsci_call *c) {
    const nsc_tensor *dst = c->in[0];
    for (int d = 0; d < dst->ndim; d++) {
        if (dst->stride[d] == 0 && dst->shape[d] > 1) {
            return nsci_call_fail(c, NSC_ERR_ARG,
                                  "dim %d of the destination repeats one memory location (stride "
                                  "0): write into a contiguous tensor instead",
                                  d);
        }
    }
    return NSC_OK;
}

static void meta_of_dst(nsci_call *c) {
    const nsc_tensor *dst = c->in[0];
    nsci_meta *m = &c->meta[0];
    m->dtype = (nsc_dtype)dst->dtype;
    m->ndim = dst->ndim;
    memcpy(m->shape, dst->shape, sizeof dst->shape);
}

// src must broadcast to dst's shape (never the other way round).
static nsc_status check_src_broadcasts(nsci_call *c) {
    nsci_meta joint;
    if (nsci_broadcast_meta(c, 2, c->in, &joint) != NSC_OK) {
        return nsc_last_status();
    }
    const nsc_tensor *dst = c->in[0];
    if (joint.ndim != dst->ndim || memcmp(joint.shape, dst->shape, (size_t)dst->ndim * 8) != 0) {
        char buf[160];
        return nsci_call_fail(c, NSC_ERR_SHAPE, "the source broadcasts to %s, not to the "
                                                "destination's shape",
                              nsci_shape_str(buf, sizeof buf, joint.ndim, joint.shape));
    }
    return NSC_OK;
}

static nsc_status copy_infer(nsci_call *c) {
    if (check_writable(c) != NSC_OK || check_src_broadcasts(c) != NSC_OK) {
        return nsc_last_status();
    }
    meta_of_dst(c);
    return NSC_OK;
}

// bool < integer < float: torch's can_cast allows a result into a
// destination of the same kind or a higher one (f64 into f32 too).
static int kind_of(nsc_dtype t) {
    return t == NSC_BOOL ? 0 : nsci_is_float(t) ? 2 : 1;
}

// add_ and mul_ also require the result type to fit the destination's kind
// (a float result into an integer tensor is refused); the kernel computes
// in the destination's dtype, converting the source first.
static nsc_status arith_infer(nsci_call *c) {
    if (copy_infer(c) != NSC_OK) {
        return nsc_last_status();
    }
    nsc_dtype dst = (nsc_dtype)c->in[0]->dtype;
    nsc_dtype result = nsci_result_type(2, c->in);
    if (kind_of(result) > kind_of(dst)) {
        return nsci_call_fail(c, NSC_ERR_DTYPE,
                              "result type %s cannot be written into a %s destination",
                              nsc_dtype_name(result), nsc_dtype_name(dst));
    }
    return NSC_OK;
}

static nsc_status fill_infer(nsci_call *c) {
    if (check_writable(c) != NSC_OK) {
        return nsc_last_status();
    }
    double value = c->op == NSC_OP_fill_ ? ((const fill_params *)c->params)->value : 0.0;
    if (!nsci_scalar_fits((nsc_dtype)c->in[0]->dtype, value)) {
        return nsci_call_fail(c, NSC_ERR_ARG, "value %g " NSCI_I64_RANGE, value);
    }
    meta_of_dst(c);
    return NSC_OK;
}

// --- kernels ---

static nsc_status copy_cpu(nsci_call *c) {
    return nsci_copy_into(c->in[0], c->in[1]);
}

static const nsci_param_desc fill_desc[] = {
    { "value", NSCI_PARAM_F64, offsetof(fill_params, value), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

#define FILL_LOOP(NAME, T, CONVERT)                                                                \
    static void NAME(int64_t n, char **p, const int64_t *s, void *ctx) {                           \
        double v = *(const double *)ctx;                                                           \
        T value = CONVERT;                                                                         \
        if (s[0] == (int64_t)sizeof(T)) {                                                          \
            T *restrict o = (T *)p[0];                                                             \
            for (int64_t i = 0; i < n; i++) {                                                      \
                o[i] = value;                                                                      \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        for (int64_t i = 0; i < n; i++) {                                                          \
            *(T *)(p[0] + i * s[0]) = value;                                                       \
        }                                                                                          \
    }

FILL_LOOP(fill_f32, float, (float)v)
FILL_LOOP(fill_f64, double, v)
FILL_LOOP(fill_i64, int64_t, nsci_float_to_i64(v))
FILL_LOOP(fill_bool, uint8_t, (uint8_t)(v != 0.0))

static void fill_value(nsc_tensor *dst, double value) {
    static const nsci_inner_fn loops[NSC_N_DTYPES] = { fill_f32, fill_f64, fill_i64, fill_bool };
    nsci_iter it;
    nsci_iter_init(&it, 1, &dst);
    nsci_iter_run(&it, loops[dst->dtype], &value, NSCI_GRAIN);
}

static nsc_status fill_cpu(nsci_call *c) {
    fill_value(c->in[0], ((const fill_params *)c->params)->value);
    return NSC_OK;
}

static nsc_status zero_cpu(nsci_call *c) {
    nsc_tensor *dst = c->in[0];
    if (nsci_numel(dst->ndim, dst->shape) == 0) {
        return NSC_OK; // an empty tensor may have no data pointer at all
    }
    if (nsci_is_contiguous(dst)) {
        memset(nsci_data_ptr(dst), 0,
               (size_t)nsci_numel(dst->ndim, dst->shape) * nsc_dtype_size(dst->dtype));
        return NSC_OK;
    }
    fill_value(dst, 0.0);
    return NSC_OK;
}

static nsc_status add_cpu(nsci_call *c) {
    return nsci_binary_cpu(NSC_OP_add, c->in[0], c->in[0], c->in[1]);
}

static nsc_status mul_cpu(nsci_call *c) {
    return nsci_binary_cpu(NSC_OP_mul, c->in[0], c->in[0], c->in[1]);
}

// --- backward rules ---
// The destination's old value is overwritten, so its gradient is what the
// write let through: nothing for copy_/fill_/zero_, all of it for add_, and
// grad * src for mul_. The autograd layer re-points the destination's history.

static nsc_status overwrite_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                     nsc_tensor **grad_in) {
    if (g->n_in > 1 && g->needs_grad[1]) {
        grad_in[1] = nsc_retain(grad_out[0]); // copy_: the source receives it all
    }
    return NSC_OK; // grad_in[0] NULL: the old value got none
}

static nsc_status add_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                               nsc_tensor **grad_in) {
    for (int i = 0; i < 2; i++) {
        if (g->needs_grad[i]) {
            grad_in[i] = nsc_retain(grad_out[0]);
        }
    }
    return NSC_OK;
}

// Needs the destination's value from before the write: autograd saves a copy
// of input 0 ahead of the kernel for in-place ops that save it.
static nsc_status mul_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                               nsc_tensor **grad_in) {
    if (g->needs_grad[0] && !(grad_in[0] = nsc_mul(grad_out[0], g->in[1]))) {
        return nsc_last_status();
    }
    if (g->needs_grad[1] && !(grad_in[1] = nsc_mul(grad_out[0], g->in[0]))) {
        return nsc_last_status();
    }
    return NSC_OK;
}

// --- rows and public functions ---

const nsci_op_def nsci_op_copy_ = {
    .name = "copy_",
    .arity = 2,
    .n_outputs = 1,
    .infer = copy_infer,
    .cpu = copy_cpu,
    .backward = overwrite_backward,
    .flags = NSCI_OP_INPLACE | NSCI_OP_BROADCAST,
};

const nsci_op_def nsci_op_fill_ = {
    .name = "fill_",
    .arity = 1,
    .n_outputs = 1,
    .params_size = sizeof(fill_params),
    .params = fill_desc,
    .infer = fill_infer,
    .cpu = fill_cpu,
    .backward = overwrite_backward,
    .flags = NSCI_OP_INPLACE,
    .exempt = { [NSCI_CASE_EXPANDED] = "an expanded destination is an error (test_errors)" },
};

const nsci_op_def nsci_op_zero_ = {
    .name = "zero_",
    .arity = 1,
    .n_outputs = 1,
    .infer = fill_infer,
    .cpu = zero_cpu,
    .backward = overwrite_backward,
    .flags = NSCI_OP_INPLACE,
    .exempt = { [NSCI_CASE_EXPANDED] = "an expanded destination is an error (test_errors)" },
};

const nsci_op_def nsci_op_add_ = {
    .name = "add_",
    .arity = 2,
    .n_outputs = 1,
    .infer = arith_infer,
    .cpu = add_cpu,
    .backward = add_backward,
    .flags = NSCI_OP_INPLACE | NSCI_OP_BROADCAST,
};

const nsci_op_def nsci_op_mul_ = {
    .name = "mul_",
    .arity = 2,
    .n_outputs = 1,
    .infer = arith_infer,
    .cpu = mul_cpu,
    .backward = mul_backward,
    .flags = NSCI_OP_INPLACE | NSCI_OP_BROADCAST,
    .save_inputs = 3,
};

nsc_status nsc_copy_(nsc_tensor *dst, nsc_tensor *src) {
    nsc_tensor *in[2] = { dst, src };
    return nsci_run_inplace(NSC_OP_copy_, 2, in, NULL);
}

nsc_status nsc_fill_(nsc_tensor *dst, double value) {
    fill_params p = { value };
    return nsci_run_inplace(NSC_OP_fill_, 1, &dst, &p);
}

nsc_status nsc_zero_(nsc_tensor *dst) {
    return nsci_run_inplace(NSC_OP_zero_, 1, &dst, NULL);
}

nsc_status nsc_add_(nsc_tensor *dst, nsc_tensor *src) {
    nsc_tensor *in[2] = { dst, src };
    return nsci_run_inplace(NSC_OP_add_, 2, in, NULL);
}

nsc_status nsc_mul_(nsc_tensor *dst, nsc_tensor *src) {
    nsc_tensor *in[2] = { dst, src };
    return nsci_run_inplace(NSC_OP_mul_, 2, in, NULL);
}
