// Gradient clipping's two pieces as ops over lists of tensors, for the
// gradients on a device (nn/optim_clip_device.c; torch's clip_grad_norm_
// runs _foreach_norm and _foreach_mul_ there): the sum of the squares of
// every element of every tensor, accumulated in double into one 0-dim f64
// tensor, and every tensor multiplied in place by one coefficient rounded to
// its dtype (as torch multiplies by a coefficient tensor). On CUDA each is a
// few launches for all the tensors (cuda/op_clip.cu), where a per-tensor
// norm and multiply took two launches a gradient.
#include <string.h>

#include "tensor/op_params.h"
#include "tensor/tensor_impl.h"

// --- kernels ---

typedef struct sumsq_acc {
    double sum;
} sumsq_acc;

#define SUMSQ_INNER(NAME, T)                                                                       \
    static void NAME(int64_t n, char **ptrs, const int64_t *strides, void *ctx) {                  \
        sumsq_acc *acc = ctx;                                                                      \
        double s = acc->sum;                                                                       \
        for (int64_t k = 0; k < n; k++) {                                                          \
            double v = (double)*(const T *)(ptrs[0] + k * strides[0]);                             \
            s += v * v;                                                                            \
        }                                                                                          \
        acc->sum = s;                                                                              \
    }

SUMSQ_INNER(sumsq_f32, float)
SUMSQ_INNER(sumsq_f64, double)

// Serial, in each tensor's element order: one double accumulator, so the
// value does not depend on the thread count.
static nsc_status clip_sumsq_cpu(nsci_call *c) {
    sumsq_acc acc = { 0 };
    for (int i = 0; i < c->n_in; i++) {
        nsci_iter it;
        nsci_iter_init(&it, 1, &c->in[i]);
        nsci_iter_run(&it, c->in[i]->dtype == NSC_F32 ? sumsq_f32 : sumsq_f64, &acc, INT64_MAX);
    }
    *(double *)nsci_data_ptr(c->out[0]) = acc.sum;
    return NSC_OK;
}

#define SCALE_INNER(NAME, T)                                                                       \
    static void NAME(int64_t n, char **ptrs, const int64_t *strides, void *ctx) {                  \
        const T coef = (T) * (const double *)ctx;                                                  \
        for (int64_t k = 0; k < n; k++) {                                                          \
            T *x = (T *)(ptrs[0] + k * strides[0]);                                                \
            *x = *x * coef;                                                                        \
        }                                                                                          \
    }

SCALE_INNER(scale_f32, float)
SCALE_INNER(scale_f64, double)

static nsc_status clip_scale_cpu(nsci_call *c) {
    const clip_scale_params *p = c->params;
    double coef = p->coef;
    for (int i = 0; i < c->n_in; i++) {
        nsci_iter it;
        nsci_iter_init(&it, 1, &c->in[i]);
        nsci_iter_run(&it, c->in[i]->dtype == NSC_F32 ? scale_f32 : scale_f64, &coef, NSCI_GRAIN);
    }
    return NSC_OK;
}

// --- shape rules ---

static nsc_status check_floats(nsci_call *c) {
    if (c->n_in == 0) {
        return nsci_call_fail(c, NSC_ERR_ARG, "no tensors: expected one or more");
    }
    for (int i = 0; i < c->n_in; i++) {
        nsc_dtype dt = (nsc_dtype)c->in[i]->dtype;
        if (dt != NSC_F32 && dt != NSC_F64) {
            return nsci_call_fail(c, NSC_ERR_DTYPE, "tensors[%d] is %s: expected f32 or f64", i,
                                  nsc_dtype_name(dt));
        }
    }
    return NSC_OK;
}

static nsc_status clip_sumsq_infer(nsci_call *c) {
    if (check_floats(c) != NSC_OK) {
        return nsc_last_status();
    }
    c->meta[0].dtype = NSC_F64;
    c->meta[0].ndim = 0;
    return NSC_OK;
}

// Every tensor is written: none may repeat an element or share memory with
// another, and with grad mode on none may require grad (autograd guards the
// write into tensors[0] only).
static nsc_status clip_scale_infer(nsci_call *c) {
    if (check_floats(c) != NSC_OK) {
        return nsc_last_status();
    }
    bool recording = nsci_hook_table.grad_enabled && nsci_hook_table.grad_enabled();
    for (int i = 0; i < c->n_in; i++) {
        const nsc_tensor *t = c->in[i];
        for (int d = 0; d < t->ndim; d++) {
            if (t->stride[d] == 0 && t->shape[d] > 1) {
                return nsci_call_fail(c, NSC_ERR_ARG,
                                      "dim %d of tensors[%d] repeats one memory location (stride "
                                      "0): it is written in place",
                                      d, i);
            }
        }
        if (i > 0 && recording && t->requires_grad) {
            return nsci_call_fail(c, NSC_ERR_STATE,
                                  "tensors[%d] requires grad and is written in place with grad "
                                  "mode on: scale under nsc_no_grad_begin()",
                                  i);
        }
    }
    int first, second;
    if (nsci_optim_shared_operands(c->n_in, 1, c->in, &first, &second) != NSC_OK) {
        return nsc_last_status();
    }
    if (first >= 0) {
        return nsci_call_fail(c, NSC_ERR_ARG,
                              "tensors[%d] and tensors[%d] share memory: both are written in "
                              "place",
                              first, second);
    }
    nsci_meta *m = &c->meta[0];
    m->dtype = (nsc_dtype)c->in[0]->dtype;
    m->ndim = c->in[0]->ndim;
    memcpy(m->shape, c->in[0]->shape, sizeof m->shape);
    return NSC_OK;
}

// --- rows and entry points ---

static const nsci_param_desc clip_scale_desc[] = {
    { "coef", NSCI_PARAM_F64, offsetof(clip_scale_params, coef), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

const nsci_op_def nsci_op_clip_sumsq = {
    .name = "clip_sumsq",
    .arity = -1,
    .n_outputs = 1,
    .infer = clip_sumsq_infer,
    .cpu = clip_sumsq_cpu,
    .no_grad = "clipping's sum of squares: clip_grad_norm_ runs under no_grad",
    .exempt = { [NSCI_CASE_BROADCAST] = "no broadcasting: every tensor is summed whole" },
};

const nsci_op_def nsci_op_clip_scale_ = {
    .name = "clip_scale_",
    .arity = -1,
    .n_outputs = 1,
    .params_size = sizeof(clip_scale_params),
    .params = clip_scale_desc,
    .infer = clip_scale_infer,
    .cpu = clip_scale_cpu,
    .no_grad = "clipping's scaling: clip_grad_norm_ runs under no_grad",
    .no_graph = "a graph tracks writes into an op's first input only, and this op writes every "
                "input",
    .flags = NSCI_OP_INPLACE,
    .exempt = { [NSCI_CASE_BROADCAST] = "no broadcasting: every tensor is scaled whole",
                [NSCI_CASE_EXPANDED] = "written in place: a repeated element is refused" },
};

nsc_tensor *nsci_clip_sumsq(int64_t n, nsc_tensor *const *tensors) {
    if (n < 0 || n > INT32_MAX) {
        return nsci_fail_null(NSC_ERR_ARG, "clip_sumsq: %lld tensors", (long long)n);
    }
    return nsci_run(NSC_OP_clip_sumsq, (int)n, tensors, NULL);
}

nsc_status nsci_clip_scale_(int64_t n, nsc_tensor *const *tensors, double coef) {
    if (n < 0 || n > INT32_MAX) {
        return nsci_fail(NSC_ERR_ARG, "clip_scale_: %lld tensors", (long long)n);
    }
    clip_scale_params p = { coef };
    nsc_status status = nsci_run_inplace(NSC_OP_clip_scale_, (int)n, tensors, &p);
    for (int64_t i = 1; status == NSC_OK && i < n; i++) {
        if (tensors[i]->storage) {
            atomic_fetch_add(&tensors[i]->storage->version, 1);
        }
    }
    return status;
}
