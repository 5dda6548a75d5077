// Fused gradients of the activation functions, as single passes over
// (g, y) or (g, x): the backward rules of tanh, sigmoid, relu and gelu use
// them instead of chains of pointwise ops (one pass instead of three to ten).
// PyTorch's counterparts: aten::tanh_backward, sigmoid_backward,
// threshold_backward, gelu_backward.
#include <math.h>

#include "tensor/op_params.h"
#include "tensor/pointwise.h"

#define GRAD_PAIR(OP, EXPR_F, EXPR_D)                                                              \
    NSCI_BINARY_TO_LOOP(OP##_f32, float, float, EXPR_F)                                            \
    NSCI_BINARY_TO_LOOP(OP##_f64, double, double, EXPR_D)

// a is the incoming gradient g, b the saved value (y or x).
GRAD_PAIR(tanh_grad, a * (1.0f - b * b), a * (1.0 - b * b))
GRAD_PAIR(sigmoid_grad, a * b * (1.0f - b), a * b * (1.0 - b))
GRAD_PAIR(relu_grad, b <= 0 ? 0.0f : a, b <= 0 ? 0.0 : a) // NaN passes, as threshold_backward

// d/dx [x Phi(x)] = Phi(x) + x phi(x).
static inline double gelu_erf_d(double x) {
    double cdf = 0.5 * (1.0 + erf(x * M_SQRT1_2));
    double pdf = exp(-0.5 * x * x) * 0.3989422804014327; // 1/sqrt(2 pi)
    return cdf + x * pdf;
}

// d/dx of 0.5 x (1 + tanh(k (x + c x^3))).
static inline double gelu_tanh_d(double x) {
    const double k = 0.7978845608028654, c = 0.044715;
    double t = tanh(k * (x + c * x * x * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * c * x * x);
}

static inline float gelu_erf_df(float x) {
    float cdf = 0.5f * (1.0f + erff(x * (float)M_SQRT1_2));
    float pdf = expf(-0.5f * x * x) * 0.3989422804014327f;
    return cdf + x * pdf;
}

GRAD_PAIR(gelu_erf_grad, a *gelu_erf_df(b), a *gelu_erf_d(b))
NSCI_BINARY_TO_LOOP(gelu_tanh_grad_f64, double, double, a *gelu_tanh_d(b))

// gelu_new's gradient in f32 runs on the vector kernel (op_unary_vec.c:
// the formula above at 8 lanes); strided runs are gathered in blocks, so
// every layout rounds alike.
static void gelu_tanh_grad_f32(int64_t n, char **p, const int64_t *s, void *ctx) {
    (void)ctx;
    if (s[0] == 4 && s[1] == 4 && s[2] == 4) {
        nsci_gelu_tanh_grad_f32_vec((float *)p[0], (const float *)p[1], (const float *)p[2], n);
        return;
    }
    float g[64], x[64], out[64];
    for (int64_t i = 0; i < n; i += 64) {
        int64_t w = NSCI_MIN(64, n - i);
        for (int64_t k = 0; k < w; k++) {
            g[k] = *(const float *)(p[1] + (i + k) * s[1]);
            x[k] = *(const float *)(p[2] + (i + k) * s[2]);
        }
        nsci_gelu_tanh_grad_f32_vec(out, g, x, w);
        for (int64_t k = 0; k < w; k++) {
            *(float *)(p[0] + (i + k) * s[0]) = out[k];
        }
    }
}

static const nsci_param_desc gelu_grad_desc[] = {
    { "approximate", NSCI_PARAM_INT, offsetof(gelu_grad_params, approximate), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

static nsc_status grad_infer(nsci_call *c) {
    nsci_meta *m = &c->meta[0];
    if (nsci_broadcast_meta(c, 2, c->in, m) != NSC_OK) {
        return nsc_last_status();
    }
    nsc_dtype t = nsci_result_type(2, c->in);
    if (!nsci_is_float(t)) {
        return nsci_call_fail(c, NSC_ERR_DTYPE, "%s needs float inputs, got %s", c->def->name,
                              nsc_dtype_name(t));
    }
    m->dtype = t;
    return NSC_OK;
}

static nsc_status grad_cpu(nsci_call *c) {
    bool f32 = c->out[0]->dtype == NSC_F32;
    nsci_inner_fn loop = NULL;
    switch (c->op) {
        case NSC_OP_tanh_backward:
            loop = f32 ? tanh_grad_f32 : tanh_grad_f64;
            break;
        case NSC_OP_sigmoid_backward:
            loop = f32 ? sigmoid_grad_f32 : sigmoid_grad_f64;
            break;
        case NSC_OP_relu_backward:
            loop = f32 ? relu_grad_f32 : relu_grad_f64;
            break;
        default: {
            bool tanh_form = ((const gelu_grad_params *)c->params)->approximate == NSC_GELU_TANH;
            loop = tanh_form ? (f32 ? gelu_tanh_grad_f32 : gelu_tanh_grad_f64)
                             : (f32 ? gelu_erf_grad_f32 : gelu_erf_grad_f64);
        }
    }
    return nsci_pointwise_run(c->out[0], 2, c->in, (nsc_dtype)c->out[0]->dtype, loop, NULL);
}

#define GRAD_ROW(OP, PARAMS_SIZE, PARAMS)                                                          \
    const nsci_op_def nsci_op_##OP = {                                                             \
        .name = #OP,                                                                               \
        .arity = 2,                                                                                \
        .n_outputs = 1,                                                                            \
        .params_size = PARAMS_SIZE,                                                                \
        .params = PARAMS,                                                                          \
        .infer = grad_infer,                                                                       \
        .cpu = grad_cpu,                                                                           \
        .no_grad = "a gradient kernel: double backward is not supported",                         \
        .flags = NSCI_OP_BROADCAST,                                                                \
    };

GRAD_ROW(tanh_backward, 0, NULL)
GRAD_ROW(sigmoid_backward, 0, NULL)
GRAD_ROW(relu_backward, 0, NULL)
GRAD_ROW(gelu_backward, sizeof(gelu_grad_params), gelu_grad_desc)

static nsc_tensor *run2(nsc_op op, nsc_tensor *g, nsc_tensor *v, const void *params) {
    nsc_tensor *in[2] = { g, v };
    return nsci_run(op, 2, in, params);
}

nsc_tensor *nsci_tanh_backward(nsc_tensor *g, nsc_tensor *y) {
    return run2(NSC_OP_tanh_backward, g, y, NULL);
}

nsc_tensor *nsci_sigmoid_backward(nsc_tensor *g, nsc_tensor *y) {
    return run2(NSC_OP_sigmoid_backward, g, y, NULL);
}

nsc_tensor *nsci_relu_backward(nsc_tensor *g, nsc_tensor *y) {
    return run2(NSC_OP_relu_backward, g, y, NULL);
}

nsc_tensor *nsci_gelu_backward(nsc_tensor *g, nsc_tensor *x, int approx) {
    gelu_grad_params p = { approx };
    return run2(NSC_OP_gelu_backward, g, x, &p);
}
