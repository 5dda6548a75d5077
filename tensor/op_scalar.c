// Tensor (op) scalar: add_scalar, sub_scalar, mul_scalar, div_scalar,
// pow_scalar. x: any shape; out: x's shape. The scalar is a double; whether
// it is "integral" stands in for Python's int/float (see nsc/ops_pointwise.h).
// https://pytorch.org/docs/stable/generated/torch.add.html
#include <math.h>

#include "tensor/op_params.h"
#include "tensor/pointwise.h"

static const nsci_param_desc scalar_desc[] = {
    { "value", NSCI_PARAM_F64, offsetof(scalar_params, value), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

#define SCALAR_TRIPLE(OP, EXPR_F, EXPR_D, EXPR_I)                                                  \
    NSCI_SCALAR_LOOP(OP##_f32, float, float, EXPR_F)                                               \
    NSCI_SCALAR_LOOP(OP##_f64, double, double, EXPR_D)                                             \
    NSCI_SCALAR_LOOP(OP##_i64, int64_t, int64_t, EXPR_I)

SCALAR_TRIPLE(add_s, a + s, a + s, (int64_t)((uint64_t)a + (uint64_t)s))
SCALAR_TRIPLE(sub_s, a - s, a - s, (int64_t)((uint64_t)a - (uint64_t)s))
SCALAR_TRIPLE(mul_s, a *s, a *s, (int64_t)((uint64_t)a * (uint64_t)s))
NSCI_SCALAR_LOOP(div_s_f32, float, float, a / s)
NSCI_SCALAR_LOOP(div_s_f64, double, double, a / s)
// Exponent 2 is a plain square, as PyTorch special-cases it (and bit-matches).
NSCI_SCALAR_LOOP(pow_s_f32, float, float, s == 2.0f ? a * a : powf(a, s))
NSCI_SCALAR_LOOP(pow_s_f64, double, double, s == 2.0 ? a * a : pow(a, s))

static int64_t ipow(int64_t base, int64_t exp) {
    uint64_t result = 1, b = (uint64_t)base;
    for (; exp > 0; exp >>= 1) {
        if (exp & 1) {
            result *= b;
        }
        b *= b;
    }
    return (int64_t)result;
}
NSCI_SCALAR_LOOP(pow_s_i64, int64_t, int64_t, ipow(a, s))

static nsc_status scalar_infer(nsci_call *c) {
    const scalar_params *p = c->params;
    const nsc_tensor *x = c->in[0];
    nsc_dtype dtype = nsci_scalar_result_type((nsc_dtype)x->dtype, p->value);
    if (c->op == NSC_OP_div_scalar && !nsci_is_float(dtype)) {
        dtype = NSC_F32; // true division
    }
    if (c->op == NSC_OP_pow_scalar && dtype == NSC_I64 && p->value < 0) {
        return nsci_call_fail(c, NSC_ERR_ARG, "exponent %g: integers to negative integer powers "
                                              "are not allowed",
                              p->value);
    }
    if (!nsci_scalar_fits(dtype, p->value)) {
        return nsci_call_fail(c, NSC_ERR_ARG, "scalar %g " NSCI_I64_RANGE, p->value);
    }
    nsci_meta_same_shape(&c->meta[0], x, dtype);
    return NSC_OK;
}

static nsc_status scalar_cpu(nsci_call *c) {
    nsc_dtype t = (nsc_dtype)c->out[0]->dtype;
    static const nsci_inner_fn loops[][3] = {
        { add_s_f32, add_s_f64, add_s_i64 }, { sub_s_f32, sub_s_f64, sub_s_i64 },
        { mul_s_f32, mul_s_f64, mul_s_i64 }, { div_s_f32, div_s_f64, NULL },
        { pow_s_f32, pow_s_f64, pow_s_i64 },
    };
    int row = c->op == NSC_OP_add_scalar   ? 0
              : c->op == NSC_OP_sub_scalar ? 1
              : c->op == NSC_OP_mul_scalar ? 2
              : c->op == NSC_OP_div_scalar ? 3
                                           : 4;
    int col = t == NSC_F32 ? 0 : t == NSC_F64 ? 1 : 2;
    double value = ((const scalar_params *)c->params)->value;
    return nsci_pointwise_run(c->out[0], 1, c->in, t, loops[row][col], &value);
}

// --- backward rules ---

static nsc_status add_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                               nsc_tensor **grad_in) {
    (void)g;
    grad_in[0] = nsc_retain(grad_out[0]);
    return NSC_OK;
}

static nsc_status mul_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                               nsc_tensor **grad_in) {
    grad_in[0] = nsc_mul_scalar(grad_out[0], ((const scalar_params *)g->params)->value);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

static nsc_status div_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                               nsc_tensor **grad_in) {
    grad_in[0] = nsc_div_scalar(grad_out[0], ((const scalar_params *)g->params)->value);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

// d x^s = s x^(s-1); zero for s == 0 (torch: the gradient of a constant).
static nsc_status pow_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                               nsc_tensor **grad_in) {
    double s = ((const scalar_params *)g->params)->value;
    if (s == 0.0) {
        grad_in[0] = nsc_zeros_like(grad_out[0]);
        return grad_in[0] ? NSC_OK : nsc_last_status();
    }
    nsc_tensor *p = nsc_pow_scalar(g->in[0], s - 1.0);
    nsc_tensor *d = nsc_mul_scalar(p, s);
    grad_in[0] = nsc_mul(grad_out[0], d);
    nsc_free(p);
    nsc_free(d);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

#define SCALAR_ROW(OP, BACKWARD, SAVES_IN)                                                         \
    const nsci_op_def nsci_op_##OP##_scalar = {                                                    \
        .name = #OP "_scalar",                                                                     \
        .arity = 1,                                                                                \
        .n_outputs = 1,                                                                            \
        .params_size = sizeof(scalar_params),                                                      \
        .params = scalar_desc,                                                                     \
        .infer = scalar_infer,                                                                     \
        .cpu = scalar_cpu,                                                                         \
        .backward = BACKWARD,                                                                      \
        .save_inputs = SAVES_IN,                                                                   \
    };                                                                                             \
    nsc_tensor *nsc_##OP##_scalar(nsc_tensor *x, double s) {                                       \
        scalar_params p = { s };                                                                   \
        return nsci_run(NSC_OP_##OP##_scalar, 1, &x, &p);                                          \
    }

SCALAR_ROW(add, add_backward, 0)
SCALAR_ROW(sub, add_backward, 0)
SCALAR_ROW(mul, mul_backward, 0)
SCALAR_ROW(div, div_backward, 0)
SCALAR_ROW(pow, pow_backward, 1)
