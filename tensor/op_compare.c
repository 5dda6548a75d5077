// Comparisons (bool results), logic, and selection: eq, ne, lt, le, gt, ge
// (tensor and scalar forms), logical_and/or/not, where, masked_fill. Inputs
// broadcast; comparisons run in the promoted dtype.
// https://pytorch.org/docs/stable/torch.html#comparison-ops
#include <math.h>
#include <string.h>

#include "tensor/convert.h"
#include "tensor/op_params.h"
#include "tensor/pointwise.h"

// --- comparison loops: (op, compute dtype) ---

#define CMP_SET(OP, EXPR)                                                                          \
    NSCI_BINARY_TO_LOOP(OP##_f32, uint8_t, float, EXPR)                                            \
    NSCI_BINARY_TO_LOOP(OP##_f64, uint8_t, double, EXPR)                                           \
    NSCI_BINARY_TO_LOOP(OP##_i64, uint8_t, int64_t, EXPR)                                          \
    NSCI_BINARY_TO_LOOP(OP##_bool, uint8_t, uint8_t, EXPR)                                         \
    NSCI_SCALAR_LOOP(OP##_s_f32, uint8_t, float, (a EXPR_OP_##OP s))                               \
    NSCI_SCALAR_LOOP(OP##_s_f64, uint8_t, double, (a EXPR_OP_##OP s))                              \
    NSCI_SCALAR_LOOP(OP##_s_i64, uint8_t, int64_t, (a EXPR_OP_##OP s))

#define EXPR_OP_eq ==
#define EXPR_OP_ne !=
#define EXPR_OP_lt <
#define EXPR_OP_le <=
#define EXPR_OP_gt >
#define EXPR_OP_ge >=

CMP_SET(eq, a == b)
CMP_SET(ne, a != b)
CMP_SET(lt, a < b)
CMP_SET(le, a <= b)
CMP_SET(gt, a > b)
CMP_SET(ge, a >= b)

NSCI_BINARY_TO_LOOP(and_bool, uint8_t, uint8_t, (uint8_t)(a && b))
NSCI_BINARY_TO_LOOP(or_bool, uint8_t, uint8_t, (uint8_t)(a || b))
NSCI_UNARY_LOOP(not_bool, uint8_t, uint8_t, (uint8_t)!a)

typedef struct compare_loops {
    nsci_inner_fn tensor[NSC_N_DTYPES]; // f32, f64, i64, bool
    nsci_inner_fn scalar[3];            // f32, f64, i64
} compare_loops;

static const compare_loops *loops_of(nsc_op op) {
#define LOOPS(OP)                                                                                  \
    { { OP##_f32, OP##_f64, OP##_i64, OP##_bool }, { OP##_s_f32, OP##_s_f64, OP##_s_i64 } }
    static const compare_loops eq = LOOPS(eq), ne = LOOPS(ne), lt = LOOPS(lt), le = LOOPS(le),
                               gt = LOOPS(gt), ge = LOOPS(ge);
#undef LOOPS
    switch (op) {
        case NSC_OP_eq:
        case NSC_OP_eq_scalar:
            return &eq;
        case NSC_OP_ne:
        case NSC_OP_ne_scalar:
            return &ne;
        case NSC_OP_lt:
        case NSC_OP_lt_scalar:
            return &lt;
        case NSC_OP_le:
        case NSC_OP_le_scalar:
            return &le;
        case NSC_OP_gt:
        case NSC_OP_gt_scalar:
            return &gt;
        default:
            return &ge;
    }
}

// --- tensor-tensor comparisons ---

static nsc_status compare_infer(nsci_call *c) {
    if (nsci_broadcast_meta(c, 2, c->in, &c->meta[0]) != NSC_OK) {
        return nsc_last_status();
    }
    c->meta[0].dtype = NSC_BOOL;
    return NSC_OK;
}

static nsc_status compare_cpu(nsci_call *c) {
    nsc_dtype t = nsci_result_type(2, c->in);
    return nsci_pointwise_run(c->out[0], 2, c->in, t, loops_of(c->op)->tensor[t], NULL);
}

// --- tensor-scalar comparisons ---

static const nsci_param_desc scalar_desc[] = {
    { "value", NSCI_PARAM_F64, offsetof(scalar_params, value), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

static nsc_status compare_scalar_infer(nsci_call *c) {
    nsci_meta_same_shape(&c->meta[0], c->in[0], NSC_BOOL);
    return NSC_OK;
}

// Compares in the dtype x and the scalar promote to (bool compares as i64).
static nsc_status compare_scalar_cpu(nsci_call *c) {
    double value = ((const scalar_params *)c->params)->value;
    nsc_dtype t = nsci_scalar_result_type((nsc_dtype)c->in[0]->dtype, value);
    if (!nsci_scalar_fits(t, value)) {
        t = NSC_F64; // a huge or infinite scalar compares exactly in f64
    }
    int col = t == NSC_F32 ? 0 : t == NSC_F64 ? 1 : 2;
    return nsci_pointwise_run(c->out[0], 1, c->in, t, loops_of(c->op)->scalar[col], &value);
}

// --- logic ---

static nsc_status logical_cpu(nsci_call *c) {
    nsci_inner_fn loop = c->op == NSC_OP_logical_and  ? and_bool
                         : c->op == NSC_OP_logical_or ? or_bool
                                                      : not_bool;
    return nsci_pointwise_run(c->out[0], c->n_in, c->in, NSC_BOOL, loop, NULL);
}

// --- where(cond, a, b) ---

#define WHERE_LOOP(NAME, T)                                                                        \
    static void NAME(int64_t n, char **p, const int64_t *s, void *ctx) {                           \
        (void)ctx;                                                                                 \
        for (int64_t i = 0; i < n; i++) {                                                          \
            bool take_a = *(const uint8_t *)(p[1] + i * s[1]);                                     \
            *(T *)(p[0] + i * s[0]) = take_a ? *(const T *)(p[2] + i * s[2])                       \
                                             : *(const T *)(p[3] + i * s[3]);                      \
        }                                                                                          \
    }
WHERE_LOOP(where_f32, float)
WHERE_LOOP(where_f64, double)
WHERE_LOOP(where_i64, int64_t)
WHERE_LOOP(where_bool, uint8_t)

static nsc_status where_infer(nsci_call *c) {
    if (c->in[0]->dtype != NSC_BOOL) {
        return nsci_call_fail(c, NSC_ERR_DTYPE, "condition is %s: expected bool",
                              nsc_dtype_name((nsc_dtype)c->in[0]->dtype));
    }
    if (nsci_broadcast_meta(c, 3, c->in, &c->meta[0]) != NSC_OK) {
        return nsc_last_status();
    }
    c->meta[0].dtype = nsci_result_type(2, c->in + 1);
    return NSC_OK;
}

static nsc_status where_cpu(nsci_call *c) {
    static const nsci_inner_fn loops[] = { where_f32, where_f64, where_i64, where_bool };
    nsc_dtype t = (nsc_dtype)c->out[0]->dtype;
    nsc_tensor *cond = c->in[0];
    nsc_tensor *ab[2] = { c->in[1], c->in[2] };
    nsc_tensor *converted[2] = { 0 };
    for (int i = 0; i < 2; i++) {
        if (ab[i]->dtype != t && !(ab[i] = converted[i] = nsci_cpu_convert(ab[i], t))) {
            nsc_free(converted[0]);
            return nsc_last_status();
        }
    }
    nsc_tensor *ops[4] = { c->out[0], cond, ab[0], ab[1] };
    nsci_iter it;
    nsci_iter_init(&it, 4, ops);
    nsci_iter_run(&it, loops[t], NULL, NSCI_GRAIN);
    nsc_free(converted[0]);
    nsc_free(converted[1]);
    return NSC_OK;
}

static nsc_status where_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                 nsc_tensor **grad_in) {
    nsc_tensor *zeros = nsc_zeros_like(grad_out[0]);
    if (g->needs_grad[1]) {
        grad_in[1] = nsc_where(g->in[0], grad_out[0], zeros);
    }
    if (g->needs_grad[2]) {
        grad_in[2] = nsc_where(g->in[0], zeros, grad_out[0]);
    }
    nsc_free(zeros);
    bool ok = (!g->needs_grad[1] || grad_in[1]) && (!g->needs_grad[2] || grad_in[2]);
    return ok ? NSC_OK : nsc_last_status();
}

// --- masked_fill(x, mask, value) ---

static nsc_status masked_fill_infer(nsci_call *c) {
    if (c->in[1]->dtype != NSC_BOOL) {
        return nsci_call_fail(c, NSC_ERR_DTYPE, "mask is %s: expected bool",
                              nsc_dtype_name((nsc_dtype)c->in[1]->dtype));
    }
    nsci_meta joint;
    if (nsci_broadcast_meta(c, 2, c->in, &joint) != NSC_OK) {
        return nsc_last_status();
    }
    const nsc_tensor *x = c->in[0];
    if (joint.ndim != x->ndim || memcmp(joint.shape, x->shape, (size_t)x->ndim * 8) != 0) {
        return nsci_call_fail(c, NSC_ERR_SHAPE, "the mask must broadcast to the input's shape");
    }
    double value = ((const scalar_params *)c->params)->value;
    if (!nsci_scalar_fits((nsc_dtype)x->dtype, value)) { // even where no mask is set, as torch
        return nsci_call_fail(c, NSC_ERR_ARG, "value %g " NSCI_I64_RANGE, value);
    }
    nsci_meta_same_shape(&c->meta[0], x, (nsc_dtype)x->dtype);
    return NSC_OK;
}

static nsc_status masked_fill_cpu(nsci_call *c) {
    static const nsci_inner_fn loops[] = { where_f32, where_f64, where_i64, where_bool };
    nsc_tensor *out = c->out[0];
    nsc_tensor *fill = nsc_full((nsc_dtype)out->dtype, NSC_CPU, 0, NULL,
                                ((const scalar_params *)c->params)->value);
    if (!fill) {
        return nsc_last_status();
    }
    nsc_tensor *ops[4] = { out, c->in[1], fill, c->in[0] };
    nsci_iter it;
    nsci_iter_init(&it, 4, ops);
    nsci_iter_run(&it, loops[out->dtype], NULL, NSCI_GRAIN);
    nsc_free(fill);
    return NSC_OK;
}

static nsc_status masked_fill_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                       nsc_tensor **grad_in) {
    grad_in[0] = nsc_masked_fill(grad_out[0], g->in[1], 0.0);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

// --- rows and public functions ---

static nsc_status logical_infer(nsci_call *c) {
    return compare_infer(c);
}

#define BOOL_RESULT_REASON "its result is bool: comparisons and logic have no gradient"

#define COMPARE_ROWS(OP)                                                                           \
    const nsci_op_def nsci_op_##OP = {                                                             \
        .name = #OP,                                                                               \
        .arity = 2,                                                                                \
        .n_outputs = 1,                                                                            \
        .infer = compare_infer,                                                                    \
        .cpu = compare_cpu,                                                                        \
        .no_grad = BOOL_RESULT_REASON,                                                             \
        .flags = NSCI_OP_BROADCAST,                                                                \
    };                                                                                             \
    const nsci_op_def nsci_op_##OP##_scalar = {                                                    \
        .name = #OP "_scalar",                                                                     \
        .arity = 1,                                                                                \
        .n_outputs = 1,                                                                            \
        .params_size = sizeof(scalar_params),                                                      \
        .params = scalar_desc,                                                                     \
        .infer = compare_scalar_infer,                                                             \
        .cpu = compare_scalar_cpu,                                                                 \
        .no_grad = BOOL_RESULT_REASON,                                                             \
    };                                                                                             \
    nsc_tensor *nsc_##OP(nsc_tensor *a, nsc_tensor *b) {                                           \
        nsc_tensor *in[2] = { a, b };                                                              \
        return nsci_run(NSC_OP_##OP, 2, in, NULL);                                                 \
    }                                                                                              \
    nsc_tensor *nsc_##OP##_scalar(nsc_tensor *x, double s) {                                       \
        scalar_params p = { s };                                                                   \
        return nsci_run(NSC_OP_##OP##_scalar, 1, &x, &p);                                          \
    }

COMPARE_ROWS(eq)
COMPARE_ROWS(ne)
COMPARE_ROWS(lt)
COMPARE_ROWS(le)
COMPARE_ROWS(gt)
COMPARE_ROWS(ge)

const nsci_op_def nsci_op_logical_and = {
    .name = "logical_and", .arity = 2, .n_outputs = 1, .infer = logical_infer,
    .cpu = logical_cpu, .no_grad = BOOL_RESULT_REASON, .flags = NSCI_OP_BROADCAST,
};

const nsci_op_def nsci_op_logical_or = {
    .name = "logical_or", .arity = 2, .n_outputs = 1, .infer = logical_infer,
    .cpu = logical_cpu, .no_grad = BOOL_RESULT_REASON, .flags = NSCI_OP_BROADCAST,
};

static nsc_status logical_not_infer(nsci_call *c) {
    return compare_scalar_infer(c);
}

const nsci_op_def nsci_op_logical_not = {
    .name = "logical_not", .arity = 1, .n_outputs = 1, .infer = logical_not_infer,
    .cpu = logical_cpu, .no_grad = BOOL_RESULT_REASON,
};

const nsci_op_def nsci_op_where = {
    .name = "where", .arity = 3, .n_outputs = 1, .infer = where_infer, .cpu = where_cpu,
    .backward = where_backward, .flags = NSCI_OP_BROADCAST, .save_inputs = 1,
};

const nsci_op_def nsci_op_masked_fill = {
    .name = "masked_fill", .arity = 2, .n_outputs = 1, .params_size = sizeof(scalar_params),
    .params = scalar_desc, .infer = masked_fill_infer, .cpu = masked_fill_cpu,
    .backward = masked_fill_backward, .flags = NSCI_OP_BROADCAST, .save_inputs = 2,
};

nsc_tensor *nsc_logical_and(nsc_tensor *a, nsc_tensor *b) {
    nsc_tensor *in[2] = { a, b };
    return nsci_run(NSC_OP_logical_and, 2, in, NULL);
}

nsc_tensor *nsc_logical_or(nsc_tensor *a, nsc_tensor *b) {
    nsc_tensor *in[2] = { a, b };
    return nsci_run(NSC_OP_logical_or, 2, in, NULL);
}

nsc_tensor *nsc_logical_not(nsc_tensor *x) {
    return nsci_run(NSC_OP_logical_not, 1, &x, NULL);
}

nsc_tensor *nsc_where(nsc_tensor *cond, nsc_tensor *a, nsc_tensor *b) {
    nsc_tensor *in[3] = { cond, a, b };
    return nsci_run(NSC_OP_where, 3, in, NULL);
}

nsc_tensor *nsc_masked_fill(nsc_tensor *x, nsc_tensor *mask, double value) {
    nsc_tensor *in[2] = { x, mask };
    scalar_params p = { value };
    return nsci_run(NSC_OP_masked_fill, 2, in, &p);
}
